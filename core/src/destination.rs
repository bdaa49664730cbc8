//! The destination: where pushes go (Qobra's API base URL) and the checks on it.

use crate::error::{quoted, Error, Result, SqlState};
use std::net::IpAddr;
use url::{Host, Url};

/// Qobra's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.qobra.co";

/// Checks a base URL and returns it normalised (no trailing slash).
///
/// `https://` is required; plain `http://` only for loopback hosts (tests, the demo). User names,
/// passwords, queries and fragments are refused: the key travels in a header, nowhere else.
pub fn check_base_url(text: &str) -> Result<String> {
    let invalid = |why: &str| {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid base_url {}", quoted(text)),
        )
        .detail(why.to_owned())
        .hint(format!("Use Qobra's API address, {DEFAULT_BASE_URL}."))
    };
    let url =
        Url::parse(text).map_err(|e| invalid(&format!("It does not parse as a URL: {e}.")))?;
    let host = url.host().ok_or_else(|| invalid("It has no host."))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "It carries credentials; the API key is given separately.",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("It has a query or a fragment."));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("base_url {} is not https", quoted(text)),
            )
            .detail("Plain http is only allowed to a loopback host (127.0.0.0/8, ::1, localhost).")
            .hint("Use https:// so that the API key and your data are encrypted in transit."))
        }
        _ => return Err(invalid("Only https:// URLs are accepted.")),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether the host is this machine.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert_eq!(
            check_base_url("https://api.qobra.co").unwrap(),
            "https://api.qobra.co"
        );
        assert_eq!(
            check_base_url("https://api.qobra.co/").unwrap(),
            "https://api.qobra.co"
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert!(check_base_url("http://[::1]:9/").is_ok());
        assert!(check_base_url("http://127.8.9.10/").is_ok());
        for bad in [
            "http://api.qobra.co",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "ftp://x",
            "file:///etc/passwd",
            "https://user:pw@api.qobra.co",
            "https://api.qobra.co?x=1",
            "not a url",
            "",
            "https://",
        ] {
            let err = check_base_url(bad).unwrap_err();
            assert_eq!(err.state, SqlState::InvalidParameterValue, "{bad}");
        }
        assert!(check_base_url("http://api.qobra.co")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("https"));
    }
}
