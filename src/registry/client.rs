//! The HTTP client of a push, an import poll or a check of the destination, built from the
//! destination and the settings; and that check.

use crate::pg::error::Result;
use crate::pg::gucs;
use crate::registry::destination;
use qobra_sync_core::client::{ApiKey, ClientConfig, QobraClient};
use qobra_sync_core::destination::{read_proxy_auth_file, shown_url};
use qobra_sync_core::reach::{self, Finding};
use qobra_sync_core::retry::RetryPolicy;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client for the destination, with the timeouts and retry policy the settings give.
pub fn client() -> Result<QobraClient> {
    let destination = destination::load()?;
    let mut config = ClientConfig::new(destination.base_url, ApiKey::new(destination.api_key));
    config.body_format = destination.body_format;
    let timeout = Duration::from_millis(gucs::HTTP_TIMEOUT_MS.get() as u64);
    config.request_timeout = timeout;
    config.connect_timeout = timeout.min(Duration::from_secs(10));
    let wait_max = Duration::from_millis(gucs::RETRY_WAIT_MAX_MS.get() as u64);
    config.retry = RetryPolicy {
        max_retries: gucs::MAX_RETRIES.get() as u32,
        max_backoff: wait_max,
        retry_after_cap: wait_max,
        ..RetryPolicy::default()
    };
    config.ca_file = gucs::optional_text(&gucs::CA_FILE).map(PathBuf::from);
    config.https_proxy = gucs::optional_text(&gucs::HTTPS_PROXY);
    // Only read when there is a proxy to authenticate to.
    if let (Some(auth_file), Some(_)) = (
        gucs::optional_text(&gucs::HTTPS_PROXY_AUTH_FILE),
        &config.https_proxy,
    ) {
        let server_uid = crate::pg::lifecycle::server_uid();
        config.proxy_credentials = Some(read_proxy_auth_file(Path::new(&auth_file), server_uid)?);
    }
    QobraClient::new(&config)
}

/// Whether the destination can be reached and takes the key, by requests that change nothing in
/// Qobra (see `reach`); a destination that cannot even be loaded (none set, a key file that
/// cannot be used) is the one finding.
pub fn check(interrupted: &dyn Fn() -> bool) -> Vec<Finding> {
    let loaded = destination::load().and_then(|d| {
        let shown = shown_url(&d.base_url);
        client().map(|c| (c, shown))
    });
    match loaded {
        Ok((client, shown)) => {
            let via_proxy = gucs::optional_text(&gucs::HTTPS_PROXY).is_some();
            let mut findings = vec![
                Finding {
                    name: DESTINATION_SET,
                    ok: true,
                    detail: format!("{shown}, the key from {}", destination::key_source()),
                },
                home(),
            ];
            findings.extend(reach::check(&client, &shown, via_proxy, interrupted));
            findings
        }
        Err(e) => vec![Finding {
            name: DESTINATION_SET,
            ok: false,
            detail: e.one_line(),
        }],
    }
}

/// Whether pushes may run from this database: it is the destination's home, not a copy.
fn home() -> Finding {
    let (ok, detail) = match destination::copy_refusal() {
        Ok(None) => (
            true,
            "set_destination() was called in this database".to_owned(),
        ),
        Ok(Some(e)) | Err(e) => (false, e.one_line()),
    };
    Finding {
        name: HOME,
        ok,
        detail,
    }
}

/// The finding about the destination's home.
pub const HOME: &str = "pushes from this database";

/// The first finding's name.
pub const DESTINATION_SET: &str = "destination set";
