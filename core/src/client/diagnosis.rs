//! What a failure below HTTP says: a certificate problem in plain words, a proxy that refused
//! the tunnel, the kind of transport failure; and the short, scrubbed excerpt of an answer.

use super::*;
use crate::names::setting::HTTPS_PROXY_AUTH_FILE;
use crate::retry::TransportKind;
use crate::secret::Scrub;
use rustls::CertificateError;
use url::Url;

/// The rustls error somewhere in an error's chain (tokio-rustls wraps it in an `io::Error`,
/// whose `source` skips it, so each `io::Error` is opened too).
pub(super) fn rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(r) = rustls_error(inner) {
                return Some(r);
            }
        }
        source = s.source();
    }
    None
}

/// What is wrong with the server's certificate, in plain words, when that is why the request
/// failed; `None` for any other failure (TLS or not).
pub(super) fn certificate_problem(e: &reqwest::Error, url: &Url) -> Option<String> {
    let host = url.host_str().unwrap_or("the destination");
    let problem = match rustls_error(e)? {
        rustls::Error::InvalidCertificate(problem) => problem,
        rustls::Error::NoCertificatesPresented => {
            return Some(format!("{host} presented no certificate"))
        }
        _ => return None,
    };
    Some(match problem {
        CertificateError::UnknownIssuer => format!(
            "the certificate of {host} is not signed by a trusted certificate authority (it is self-signed, or its CA is unknown)"
        ),
        CertificateError::NotValidForName => {
            format!("the certificate is not valid for the host name {host}")
        }
        CertificateError::NotValidForNameContext { presented, .. } => {
            let mut names: Vec<String> = presented.iter().take(3).map(|n| plain_name(n)).collect();
            if presented.len() > 3 {
                names.push("…".into());
            }
            format!(
                "the certificate is not valid for the host name {host} (it is for {})",
                names.join(", ")
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("the certificate of {host} has expired")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("the certificate of {host} is not valid yet (check this machine's clock)")
        }
        CertificateError::Revoked => format!("the certificate of {host} has been revoked"),
        CertificateError::BadEncoding | CertificateError::BadSignature => {
            format!("the certificate of {host} is malformed or its signature is invalid")
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("the certificate of {host} is not meant for a TLS server")
        }
        // webpki's refusal of a CA certificate presented as a server's: what openssl's
        // default self-signed certificate is.
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "the certificate of {host} is self-signed (a CA certificate, not signed by a trusted certificate authority)"
        ),
        other => format!("the certificate of {host} was refused ({other:?})"),
    })
}

/// A name a certificate presents, as rustls describes it (`DnsName("api.qobra.co")`), without
/// the wrapping.
pub(super) fn plain_name(presented: &str) -> String {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .unwrap_or(presented)
        .to_owned()
}

/// Why the proxy refused the CONNECT tunnel, from the error's text (hyper's tunnel error is
/// not public); `None` when the failure was something else (the proxy unreachable, a reset).
pub(super) fn tunnel_refusal(chain: &str) -> Option<String> {
    if chain.contains("tunnel error: proxy authorization required") {
        Some(format!("The proxy asks for credentials (HTTP 407): give them in {HTTPS_PROXY_AUTH_FILE} as user:password, or check them."))
    } else if chain.contains("tunnel error: unsuccessful") {
        Some("The proxy answered CONNECT with a status other than 200 (it may forbid this destination).".to_owned())
    } else if chain.contains("tunnel error: proxy response headers too long") {
        Some("The proxy answered CONNECT with an answer too long to be a tunnel's.".to_owned())
    } else {
        None
    }
}

/// Which kind of transport failure a reqwest error is.
pub(super) fn transport_kind(e: &reqwest::Error) -> TransportKind {
    if e.is_timeout() {
        return TransportKind::Timeout;
    }
    if e.is_connect() {
        return TransportKind::Connect;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return TransportKind::Reset;
            }
        }
        source = s.source();
    }
    let text = error_chain(e).to_ascii_lowercase();
    if text.contains("closed") || text.contains("reset") || text.contains("incomplete") {
        TransportKind::Reset
    } else {
        TransportKind::Other
    }
}

/// An error and its sources, joined by `: ` (repeated texts dropped).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A short excerpt of an answer body for an error message: the JSON `detail`, `message` or
/// `error` string when there is one, else the text; control characters dropped, whitespace
/// collapsed, the key scrubbed, at most [`EXCERPT_CHARS`] characters.
pub fn excerpt(body: &[u8], key: &impl Scrub) -> String {
    let text = String::from_utf8_lossy(body);
    let chosen = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["detail", "message", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|d| d.as_str()).map(str::to_owned))
        })
        .unwrap_or_else(|| text.into_owned());
    let flat: String = chosen
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let scrubbed = key.scrub(&flat);
    if scrubbed.is_empty() {
        return "(empty answer)".to_owned();
    }
    let mut chars = scrubbed.chars();
    let mut cut: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

/// Where a redirect points, resolved against the request URL, without user info, query or
/// fragment: `https://host:port/path`. `None` when it does not parse.
pub(super) fn describe_location(request: &Url, location: &str) -> Option<String> {
    let target = request.join(location).ok()?;
    let host = target.host_str()?;
    let port = target.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut path: String = target.path().chars().take(200).collect();
    if target.path().chars().count() > 200 {
        path.push('…');
    }
    Some(format!("{}://{host}{port}{path}", target.scheme()))
}
