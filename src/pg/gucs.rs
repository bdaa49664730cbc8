//! Settings (`qobra_sync.*`), each with the reason for its default.
//!
//! Secrets are never setting values: the API key lives in an owner-only table or in the file
//! `api_key_file` names, the proxy's credentials in the file `https_proxy_auth_file` names
//! (PostgreSQL writes a reloaded setting's value to the server log).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use qobra_sync_core::names::setting;
use std::ffi::CString;

/// The databases where a worker runs and `CREATE EXTENSION` is allowed, separated by commas.
/// `postgres` because every cluster has it; set it to the database(s) that hold your sales data.
pub static DATABASE_NAME: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Whether the worker starts scheduled pushes. On: registering a table is opting in.
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Records per request, at most. 50,000: most records close their chunk at `batch_bytes` first
/// (50,000 of 84 bytes fill 4 MiB); this bounds chunks of very narrow records, so that a push
/// of a million rows takes a few dozen round trips, not hundreds.
pub static BATCH_ROWS: GucSetting<i32> = GucSetting::<i32>::new(50_000);
/// Bytes per request, at most; a record larger than this alone is rejected. 4 MiB: about 12,000
/// typical records per round trip, well under the 10 MB body limit common at API gateways. A
/// push holds up to `max_in_flight` + 2 chunks (in flight, read ahead, being read): 32 MiB at
/// the defaults, leaving room for the fetched rows inside the 64 MB a push may grow a backend
/// by. A receiver that takes less answers 413 and the push halves its chunks.
pub static BATCH_BYTES: GucSetting<i32> = GucSetting::<i32>::new(4 << 20);
/// Requests in flight at once, after the first of a push was accepted (1 = one at a time). 6:
/// with 100 ms a round trip, six chunks of 4 MiB on their way carry 240 MiB/s, more than a
/// backend encodes (about 190 MB/s), so a push far from Qobra is bound by reading the table,
/// not by round trips (4 falls just short at 100 ms, 8 gains nothing more and holds more); each
/// chunk in flight holds up to `batch_bytes`, 32 MiB at the defaults with the two being read.
pub static MAX_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(6);
/// Pushes of sessions (`sync_now`) in flight at once in the cluster; each holds a slot of
/// shared memory until its transaction ends, so that a run a rollback takes away is still
/// recorded. 64: far more than a cluster pushes at once; one role may hold a quarter of them and
/// one database half, so that neither can keep the others from pushing. Past it `sync_now`
/// refuses before sending anything. The workers' pushes have slots of their own.
pub static MAX_PUSHES: GucSetting<i32> = GucSetting::<i32>::new(64);
/// The most `max_pushes` may be: the slots shared memory holds for sessions.
pub const MAX_PUSHES_LIMIT: usize = 256;
/// Seconds Qobra waits before importing, so all chunks of a push land in one import. 60 s covers
/// a slow link between two chunks.
pub static DEBOUNCE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
/// Total time allowed for one HTTP request, answer included. 30 s: a 4 MiB body over a
/// 10 Mbit/s uplink takes 4 s (six at once, 20 s); longer is a hung server, not a slow link.
pub static HTTP_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
/// Retries of one request before the run fails. 5 retries with backoff span about a minute.
pub static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(5);
/// Longest wait between two tries of a request, including a server's `Retry-After`. 60 s: past
/// that, the run had better fail and be retried at the next schedule than hold a backend.
pub static RETRY_WAIT_MAX_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
/// Longest a run may take before it is stopped (0 = no limit). 30 minutes: far more than a
/// 10M-row push needs, short enough that a stuck destination does not hold a table for hours.
pub static RUN_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30 * 60 * 1000);
/// Statement timeout of each fetch of a snapshot read (0 = none; the run's deadline applies
/// anyway). 10 minutes: one fetch is a cursor batch, or the census's count of the whole
/// snapshot, which takes a few minutes at 100M rows without a unique index on the id; longer
/// than that, a read is stuck (a lock, a runaway view), not slow.
pub static STATEMENT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10 * 60 * 1000);
/// A file holding the API key, read at every push (so a rotated key is used at once). Empty:
/// the key stored by `set_destination` is used. A file keeps the key out of every SQL
/// statement, and so out of the server log; it also fits mounted secrets.
pub static API_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// A PEM file of CA certificates trusted besides the built-in roots. Empty: only the built-in
/// roots. For networks whose proxy inspects TLS with the company's own CA.
pub static CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The HTTP proxy every request to Qobra goes through (`http://[user:password@]host:port`).
/// Empty: direct connections. The server's environment (`https_proxy`, …) is never used, so
/// that where the key goes is decided here, by a superuser, and nowhere else.
pub static HTTPS_PROXY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// A file holding the proxy's credentials as `user:password`, read at every push. A file keeps
/// them out of the server log, where PostgreSQL writes a changed setting's value on reload.
pub static HTTPS_PROXY_AUTH_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
/// A snapshot smaller than this fraction of the last successful one is blocked unless forced.
/// 0.5: losing half the rows is more likely a broken filter or view than real deletions.
pub static DELETION_GUARD: GucSetting<f64> = GucSetting::<f64>::new(0.5);
/// Skip a push whose payload equals the last successful one: saves Qobra an import.
pub static SKIP_UNCHANGED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Days of run history kept. 30: a month of audits without unbounded growth.
pub static HISTORY_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
/// Time zone cron schedules are evaluated in. UTC: the same everywhere unless said otherwise.
pub static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"UTC"));

/// Registers every setting; `database_name` is postmaster-level only when preloaded.
// One call per setting, in the order of the README's table: long, but flat.
pub fn register(preloaded: bool) {
    let db_context = if preloaded {
        GucContext::Postmaster
    } else {
        GucContext::Sighup
    };
    GucRegistry::define_string_guc(
        setting::DATABASE_NAME.c_name(),
        c"Databases where a qobra_sync worker runs, separated by commas.",
        c"CREATE EXTENSION qobra_sync is only allowed in these databases.",
        &DATABASE_NAME,
        db_context,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        setting::ENABLED.c_name(),
        c"Whether the worker starts scheduled pushes.",
        c"",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::BATCH_ROWS.c_name(),
        c"Records per request to Qobra.",
        c"",
        &BATCH_ROWS,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::BATCH_BYTES.c_name(),
        c"Bytes per request to Qobra, at most.",
        c"A record larger than this alone is rejected into run_errors.",
        &BATCH_BYTES,
        64 << 10,
        256 << 20,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        setting::MAX_IN_FLIGHT.c_name(),
        c"Requests to Qobra in flight at once during a push.",
        c"The first request of a push is always sent alone.",
        &MAX_IN_FLIGHT,
        1,
        16,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::MAX_PUSHES.c_name(),
        c"Pushes of sessions (sync_now) in flight at once in the cluster.",
        c"One role may hold a quarter of them, one database half.",
        &MAX_PUSHES,
        4,
        MAX_PUSHES_LIMIT as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::DEBOUNCE_SECONDS.c_name(),
        c"Debounce Qobra applies before importing a push.",
        c"",
        &DEBOUNCE_SECONDS,
        0,
        3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        setting::HTTP_TIMEOUT_MS.c_name(),
        c"Total timeout of one HTTP request.",
        c"",
        &HTTP_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        setting::MAX_RETRIES.c_name(),
        c"Retries of one request before a run fails.",
        c"",
        &MAX_RETRIES,
        0,
        100,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::RETRY_WAIT_MAX_MS.c_name(),
        c"Longest wait before retrying a request, Retry-After included.",
        c"",
        &RETRY_WAIT_MAX_MS,
        0,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        setting::RUN_TIMEOUT_MS.c_name(),
        c"Longest a run may take before it is stopped (0 = no limit).",
        c"",
        &RUN_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        setting::STATEMENT_TIMEOUT_MS.c_name(),
        c"Statement timeout of each fetch of a snapshot read (0 = none).",
        c"",
        &STATEMENT_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_float_guc(
        setting::DELETION_GUARD.c_name(),
        c"Smallest allowed snapshot, as a fraction of the last successful one.",
        c"",
        &DELETION_GUARD,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        setting::SKIP_UNCHANGED.c_name(),
        c"Skip pushes whose payload equals the last successful one.",
        c"",
        &SKIP_UNCHANGED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        setting::HISTORY_DAYS.c_name(),
        c"Days of run history kept.",
        c"",
        &HISTORY_DAYS,
        1,
        36_500,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        setting::API_KEY_FILE.c_name(),
        c"File holding Qobra's API key (instead of set_destination's).",
        c"Readable only by the server's OS user, as ssl_key_file is.",
        &API_KEY_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        setting::CA_FILE.c_name(),
        c"PEM file of CA certificates trusted besides the built-in roots.",
        c"For a proxy that inspects TLS; Qobra's certificate is always verified.",
        &CA_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // Superuser-only: the URL may carry the proxy's password.
    GucRegistry::define_string_guc(
        setting::HTTPS_PROXY.c_name(),
        c"HTTP proxy for every request to Qobra (http://[user:password@]host:port).",
        c"The environment's proxy variables are never used.",
        &HTTPS_PROXY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        setting::HTTPS_PROXY_AUTH_FILE.c_name(),
        c"File holding the proxy's credentials as user:password.",
        c"Readable only by the server's OS user, as ssl_key_file is.",
        &HTTPS_PROXY_AUTH_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        setting::TIMEZONE.c_name(),
        c"Time zone of cron schedules.",
        c"",
        &TIMEZONE,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The databases `qobra_sync.database_name` lists, in order, each once (names are separated by
/// commas, trimmed and cut at 63 bytes as PostgreSQL cuts them; at most [`MAX_DATABASES`], the
/// rest are ignored).
pub fn databases() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in text(&DATABASE_NAME).split(',').map(str::trim) {
        // As PostgreSQL cuts identifiers: at 63 bytes, on a character boundary.
        let mut end = name.len().min(MAX_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let name = &name[..end];
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names.truncate(MAX_DATABASES);
    names
}

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_NAME_BYTES: usize = 63;

/// How many databases can have a worker at once. 16: far more than a cluster's sales
/// databases, each worker a process of its own.
pub const MAX_DATABASES: usize = 16;

/// A string setting's value, or `None` when it is unset or empty.
pub fn optional_text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    Some(text(setting)).filter(|t| !t.is_empty())
}

/// A string setting's current value ("" when unset).
pub fn text(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}
