//! Destination: `set_destination`, `check_destination`.

use super::{belongs_to_0_1_0, reads, writes};
use crate::pg::error::OrRaise;
use crate::registry::destination;
use pgrx::prelude::*;

/// Sets Qobra's API key and base URL (superuser only), and how requests frame their records;
/// NULL keeps what is stored. Pushes then run from this database only: calling it again in a
/// copy of the database confirms that the copy is to push. The key is never shown again; it
/// may be NULL when `qobra_sync.api_key_file` provides it or when one is stored.
#[pg_extern(volatile, name = "set_destination")]
#[search_path(pg_catalog, pg_temp)]
fn set_destination_with_format(
    api_key: default!(Option<&str>, "NULL"),
    base_url: default!(Option<&str>, "NULL"),
    body_format: default!(Option<&str>, "NULL"),
) {
    if api_key.is_some() {
        // First of all, so that even a call refused below is kept out of the log and of
        // pg_stat_activity.
        crate::pg::log_filter::passing_secret("set_destination()").or_raise();
    }
    let _entered = writes("set_destination()").or_raise();
    destination::set(api_key, base_url, body_format).or_raise()
}

/// `set_destination(api_key, base_url)` of version 0.1.0, whose SQL still calls it between a
/// library upgrade and `ALTER EXTENSION … UPDATE`: it says to update (the current
/// `set_destination` has another argument list, hence another symbol).
#[pg_extern(sql = false)]
fn set_destination(_api_key: Option<&str>, _base_url: Option<&str>) {
    belongs_to_0_1_0("set_destination(text, text)")
}

/// Whether the destination can be reached and takes the key, by requests that change nothing
/// in Qobra: the destination set, the address resolved, the connection (TLS verified, through
/// the proxy), the key accepted, the body format.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn check_destination() -> TableIterator<
    'static,
    (
        name!(check_name, String),
        name!(ok, bool),
        name!(detail, String),
    ),
> {
    let _entered = reads("check_destination()").or_raise();
    let findings = crate::registry::client::check(&crate::pg::deadline::must_stop);
    TableIterator::new(
        findings
            .into_iter()
            .map(|f| (f.name.to_owned(), f.ok, f.detail)),
    )
}
