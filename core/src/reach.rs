//! Whether the destination can be reached and takes the key, checked by requests that change
//! nothing in Qobra (`check_destination()`, and `validate()`): the address resolves, a
//! connection opens with a verified certificate (through the proxy, when there is one), Qobra's
//! API answers and accepts the key, and how records will be framed.

use crate::client::{Probe, PushError, QobraClient};
use crate::wire::BodyFormat;

/// One finding of a check, as `check_destination()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Finding {
    /// A finding that holds.
    fn ok(name: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    /// A finding that does not.
    fn failed(name: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The findings' names, in order.
pub const RESOLVES: &str = "address resolves";
pub const CONNECTS: &str = "connection and certificate";
pub const KEY_ACCEPTED: &str = "API key accepted";
pub const FRAMING: &str = "body format";

/// Checks the destination `client` talks to (`shown_url`, its base URL as it may be shown;
/// `via_proxy`, whether requests go through `qobra_sync.https_proxy`).
pub fn check(
    client: &QobraClient,
    shown_url: &str,
    via_proxy: bool,
    interrupted: &dyn Fn() -> bool,
) -> Vec<Finding> {
    let mut findings = vec![resolves(client, via_proxy, interrupted)];
    let probe = client.probe(interrupted);
    findings.push(connects(&probe, shown_url, via_proxy));
    findings.push(key_accepted(&probe, shown_url));
    findings.push(framing(client.body_format()));
    findings
}

/// Whether the host requests connect to resolves.
fn resolves(client: &QobraClient, via_proxy: bool, interrupted: &dyn Fn() -> bool) -> Finding {
    let (host, found) = client.resolve(interrupted);
    let whose = if via_proxy { "the proxy's host " } else { "" };
    match found {
        Ok(addresses) if !addresses.is_empty() => {
            Finding::ok(RESOLVES, format!("{whose}{host}: {}", addresses.join(", ")))
        }
        Ok(_) => Finding::failed(RESOLVES, format!("{whose}{host} resolves to no address")),
        Err(why) => Finding::failed(RESOLVES, format!("{whose}{host} does not resolve: {why}")),
    }
}

/// Whether a connection opened (and its certificate was verified), from the probe's outcome.
fn connects(probe: &Result<Probe, PushError>, shown_url: &str, via_proxy: bool) -> Finding {
    let how = match (shown_url.starts_with("https://"), via_proxy) {
        (true, true) => "through the proxy's tunnel; Qobra's certificate verified",
        (true, false) => "Qobra's certificate verified",
        (false, _) => "plain HTTP to a loopback host",
    };
    match probe {
        Ok(_)
        | Err(PushError::KeyRejected { .. })
        | Err(PushError::Refused { .. })
        | Err(PushError::Redirected { .. })
        | Err(PushError::Server { .. }) => {
            Finding::ok(CONNECTS, format!("connected to {shown_url} ({how})"))
        }
        Err(e) => Finding::failed(CONNECTS, e.to_string()),
    }
}

/// Whether Qobra's API answered and took the key: asked for an import that cannot exist, it
/// answers 404 with a JSON error when the key works, 401 or 403 when it does not; anything else
/// (a web page, a redirect) is not Qobra's API.
fn key_accepted(probe: &Result<Probe, PushError>, shown_url: &str) -> Finding {
    let answer = match probe {
        Ok(answer) => answer,
        Err(PushError::KeyRejected { status, .. }) => {
            return Finding::failed(
                KEY_ACCEPTED,
                format!("Qobra rejected the key (HTTP {status}): create a new one in Qobra's global settings"),
            )
        }
        Err(_) => return Finding::failed(KEY_ACCEPTED, "not checked: no connection"),
    };
    match (answer.status, answer.json) {
        (401 | 403, _) => Finding::failed(
            KEY_ACCEPTED,
            format!(
                "Qobra rejected the key (HTTP {}): create a new one in Qobra's global settings",
                answer.status
            ),
        ),
        (404 | 410, true) | (200..=299, true) => Finding::ok(
            KEY_ACCEPTED,
            "Qobra's API answered, with the key, that the import asked for does not exist: the key is accepted",
        ),
        (300..=399, _) => Finding::failed(
            KEY_ACCEPTED,
            format!(
                "{shown_url} answered with a redirect (HTTP {}) to {}, which is not followed: check base_url",
                answer.status,
                answer.location.as_deref().unwrap_or("nowhere said")
            ),
        ),
        (status, false) if answer.excerpt.trim_start().starts_with('<') => Finding::failed(
            KEY_ACCEPTED,
            format!("{shown_url} answered HTTP {status} with a web page, not Qobra's API: check base_url ({})", answer.excerpt),
        ),
        (status, _) => Finding::failed(
            KEY_ACCEPTED,
            format!("{shown_url} answered HTTP {status} ({}), not as Qobra's API does: check base_url", answer.excerpt),
        ),
    }
}

/// How requests frame their records.
fn framing(format: BodyFormat) -> Finding {
    let shape = match format {
        BodyFormat::Data => r#"{"data": [records]}, as Qobra's other bulk endpoints take"#,
        BodyFormat::Array => "a bare JSON array of records",
    };
    Finding::ok(
        FRAMING,
        format!("'{}': records are sent as {shape}", format.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, json: bool, excerpt: &str) -> Result<Probe, PushError> {
        Ok(Probe {
            status,
            json,
            excerpt: excerpt.to_owned(),
            location: Some("https://elsewhere.example/login".to_owned()),
        })
    }

    #[test]
    fn answers_say_whether_the_key_works_and_the_api_is_qobras() {
        let url = "https://api.qobra.co";
        assert!(key_accepted(&answer(404, true, "Import not found"), url).ok);
        let refused = Err(PushError::KeyRejected {
            request: "GET /v1/imports/x".into(),
            status: 401,
            excerpt: "Invalid API key".into(),
        });
        let f = key_accepted(&refused, url);
        assert!(
            !f.ok && f.detail.contains("rejected the key (HTTP 401)"),
            "{}",
            f.detail
        );
        assert!(
            connects(&refused, url, false).ok,
            "the connection itself worked"
        );
        let f = key_accepted(
            &answer(404, false, "<html><body>Not Found</body></html>"),
            url,
        );
        assert!(
            !f.ok && f.detail.contains("web page, not Qobra's API"),
            "{}",
            f.detail
        );
        let f = key_accepted(&answer(302, false, ""), url);
        assert!(
            !f.ok
                && f.detail
                    .contains("redirect (HTTP 302) to https://elsewhere.example/login"),
            "{}",
            f.detail
        );
        let f = key_accepted(&answer(500, false, "oops"), url);
        assert!(
            !f.ok && f.detail.contains("HTTP 500 (oops)"),
            "{}",
            f.detail
        );
        let tls = Err(PushError::Tls {
            request: "GET /v1/imports/x".into(),
            message:
                "the certificate of api.qobra.co is not signed by a trusted certificate authority"
                    .into(),
        });
        let f = connects(&tls, url, false);
        assert!(
            !f.ok
                && f.detail
                    .contains("not signed by a trusted certificate authority"),
            "{}",
            f.detail
        );
        assert_eq!(key_accepted(&tls, url).detail, "not checked: no connection");
    }

    #[test]
    fn the_framing_is_named() {
        assert!(framing(BodyFormat::Data)
            .detail
            .starts_with("'data': records are sent as {\"data\""));
        assert!(framing(BodyFormat::Array)
            .detail
            .contains("bare JSON array"));
    }
}
