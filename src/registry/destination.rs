//! The destination: Qobra's API base URL (`qobra_sync.destination`) and where its key comes
//! from (`qobra_sync.destination_key`, never dumped, or the file `qobra_sync.api_key_file` names).

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::gucs;
use crate::pg::roles;
use crate::pg::spi::{execute, first_value};
use pgrx::JsonB;
use qobra_sync_core::destination::{check_api_key, check_base_url, read_key_file};
use qobra_sync_core::wire::BodyFormat;

/// Where pushes go and how they authenticate and frame their records.
pub struct Destination {
    pub base_url: String,
    pub api_key: String,
    pub body_format: BodyFormat,
}

/// Stores the destination (superuser only). The key may be NULL when `qobra_sync.api_key_file`
/// provides it. Errors never echo the key; the statement, which holds it, is kept out of the
/// server log by `log_filter`.
pub fn set(api_key: Option<&str>, base_url: &str, body_format: &str) -> Result<()> {
    if !roles::caller_is_superuser() {
        return Err(Error::new(
            SqlState::InsufficientPrivilege,
            "permission denied to set the destination",
        )
        .detail("The API key gives write access to your Qobra data tables.")
        .hint("Call qobra_sync.set_destination() as a superuser."));
    }
    match api_key {
        Some(key) => check_api_key(key)?,
        None if !key_file_configured()? => {
            return Err(Error::null_argument("api_key").hint(
                "Pass the API key, or set qobra_sync.api_key_file to a file that holds it and pass api_key => NULL.",
            ))
        }
        None => {}
    }
    let base_url = check_base_url(base_url)?;
    let body_format = BodyFormat::parse(body_format)?;
    execute(
        "INSERT INTO qobra_sync.destination (singleton, base_url, body_format) VALUES (true, $1, $2)
             ON CONFLICT (singleton) DO UPDATE SET base_url = excluded.base_url, body_format = excluded.body_format,
                                                   updated_at = pg_catalog.now()",
        &[base_url.into(), body_format.as_str().into()],
    )?;
    match api_key {
        Some(key) => execute(
            "INSERT INTO qobra_sync.destination_key (singleton, api_key) VALUES (true, $1)
                 ON CONFLICT (singleton) DO UPDATE SET api_key = excluded.api_key",
            &[key.into()],
        ),
        None => execute("DELETE FROM qobra_sync.destination_key", &[]),
    }
}

/// Whether `qobra_sync.api_key_file` is set, in this session or in the configuration files.
/// A reload (`pg_reload_conf()`) reaches a session a moment after the statement that asked for
/// it, so `ALTER SYSTEM SET qobra_sync.api_key_file …; SELECT pg_reload_conf();
/// SELECT qobra_sync.set_destination(api_key => NULL);` sent at once would otherwise fail.
fn key_file_configured() -> Result<bool> {
    if !gucs::text(&gucs::API_KEY_FILE).is_empty() {
        return Ok(true);
    }
    let pending: Option<String> = first_value(
        "SELECT setting FROM pg_catalog.pg_file_settings
          WHERE name OPERATOR(pg_catalog.=) 'qobra_sync.api_key_file' AND error IS NULL
          ORDER BY seqno DESC LIMIT 1",
        &[],
    )?;
    Ok(pending.is_some_and(|file| !file.is_empty()))
}

/// Where pushes take the key from, as messages name it.
pub fn key_source() -> &'static str {
    match gucs::text(&gucs::API_KEY_FILE).is_empty() {
        true => "set_destination()",
        false => "the file qobra_sync.api_key_file names",
    }
}

/// The destination, or the error saying to set it. The key comes from the file
/// `qobra_sync.api_key_file` names when it is set (read now, so a rotated key is used at once),
/// else from `set_destination`.
pub fn load() -> Result<Destination> {
    let json: Option<JsonB> = first_value(
        "SELECT pg_catalog.jsonb_build_array(d.base_url, k.api_key, d.body_format)
           FROM qobra_sync.destination d LEFT JOIN qobra_sync.destination_key k ON true",
        &[],
    )?;
    let Some(JsonB(serde_json::Value::Array(v))) = json else {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            "no destination is set",
        )
        .hint("Call qobra_sync.set_destination(api_key) first."));
    };
    let base_url = v
        .first()
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_owned();
    let body_format = BodyFormat::parse(v.get(2).and_then(|x| x.as_str()).unwrap_or_default())?;
    let destination = |api_key| Destination {
        base_url,
        api_key,
        body_format,
    };
    let key_file = gucs::text(&gucs::API_KEY_FILE);
    if !key_file.is_empty() {
        // SAFETY: geteuid only reads the process's effective user id.
        let server_uid = unsafe { libc::geteuid() };
        let key = read_key_file(std::path::Path::new(&key_file), server_uid)?;
        return Ok(destination(key));
    }
    match v.get(1).and_then(|x| x.as_str()) {
        Some(key) => Ok(destination(key.to_owned())),
        None => Err(Error::new(SqlState::ObjectNotInPrerequisiteState, "no API key is set")
            .detail("No key is stored (set_destination() was called without one, or the database was restored from a dump, which never holds the key) and qobra_sync.api_key_file is not set.")
            .hint("Set qobra_sync.api_key_file to the file that holds the key, or call qobra_sync.set_destination(api_key).")),
    }
}
