//! Destination: `set_destination`.

use super::writes;
use crate::pg::error::OrRaise;
use crate::registry::destination;
use pgrx::prelude::*;
use qobra_sync_core::destination::DEFAULT_BASE_URL;

/// Sets Qobra's API key and base URL (superuser only). The key is never shown again; it may be
/// NULL when `qobra_sync.api_key_file` provides it.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_destination(
    api_key: Option<&str>,
    base_url: default!(Option<&str>, "'https://api.qobra.co'"),
) {
    if api_key.is_some() {
        // First of all, so that even a call refused below is kept out of the log and of
        // pg_stat_activity.
        crate::pg::log_filter::passing_secret("set_destination()").or_raise();
    }
    let _entered = writes("set_destination()").or_raise();
    destination::set(api_key, base_url.unwrap_or(DEFAULT_BASE_URL)).or_raise()
}
