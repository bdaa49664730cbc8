//! The destination: Qobra's API base URL (`qobra_sync.destination`) and where its key comes
//! from (`qobra_sync.destination_key`, never dumped, or the file `qobra_sync.api_key_file` names).

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::gucs;
use crate::pg::roles;
use crate::pg::spi::{execute, first_value};
use pgrx::JsonB;
use qobra_sync_core::destination::{
    check_api_key, check_base_url, read_key_file, DEFAULT_BASE_URL,
};
use qobra_sync_core::home::Home;
use qobra_sync_core::names::{function::SET_DESTINATION, setting::API_KEY_FILE};
use qobra_sync_core::wire::BodyFormat;

/// Where pushes go and how they authenticate and frame their records.
pub struct Destination {
    pub base_url: String,
    pub api_key: String,
    pub body_format: BodyFormat,
}

/// Stores the destination (superuser only), and this database as its home: pushes run only
/// from it (see `home`), so calling it again in a copy confirms that the copy is to push.
/// NULL keeps what is stored (Qobra's production API and the `data` format at first); the key
/// may be NULL when `qobra_sync.api_key_file` provides it (the stored one is then dropped) or
/// when one is stored. Errors never echo the key; the statement, which holds it, is kept out
/// of the server log by `log_filter`.
pub fn set(api_key: Option<&str>, base_url: Option<&str>, body_format: Option<&str>) -> Result<()> {
    if !roles::caller_is_superuser() {
        return Err(Error::new(
            SqlState::InsufficientPrivilege,
            "permission denied to set the destination",
        )
        .detail("The API key gives write access to your Qobra data tables.")
        .hint(format!("Call {SET_DESTINATION}() as a superuser.")));
    }
    let keep_stored_key = match api_key {
        Some(key) => {
            check_api_key(key)?;
            false
        }
        None if key_file_configured()? => false,
        None if key_stored()? => true,
        None => {
            return Err(Error::null_argument("api_key").hint(
                format!("Pass the API key, or set {API_KEY_FILE} to a file that holds it and pass api_key => NULL."),
            ))
        }
    };
    let base_url = base_url.map(check_base_url).transpose()?;
    let body_format = body_format.map(BodyFormat::parse).transpose()?;
    execute(
        "INSERT INTO qobra_sync.destination (singleton, base_url, body_format, home)
             VALUES (true, COALESCE($1, $4), COALESCE($2, $5), $3)
             ON CONFLICT (singleton) DO UPDATE SET base_url = COALESCE($1, qobra_sync.destination.base_url),
                                                   body_format = COALESCE($2, qobra_sync.destination.body_format),
                                                   home = excluded.home, updated_at = pg_catalog.now()",
        &[
            base_url.into(),
            body_format.map(|f| f.as_str()).into(),
            here()?.to_string().into(),
            DEFAULT_BASE_URL.into(),
            BodyFormat::default().as_str().into(),
        ],
    )?;
    match (api_key, keep_stored_key) {
        (Some(key), _) => execute(
            "INSERT INTO qobra_sync.destination_key (singleton, api_key) VALUES (true, $1)
                 ON CONFLICT (singleton) DO UPDATE SET api_key = excluded.api_key",
            &[key.into()],
        ),
        (None, true) => Ok(()),
        (None, false) => execute("DELETE FROM qobra_sync.destination_key", &[]),
    }
}

/// Whether `set_destination` stored a key.
fn key_stored() -> Result<bool> {
    Ok(first_value::<bool>("SELECT true FROM qobra_sync.destination_key", &[])?.is_some())
}

/// SQL for this database as the destination's home records it, '<system identifier>/<database
/// OID>' (a scalar subquery).
pub const THIS_DATABASE: &str =
    "(SELECT s.system_identifier::pg_catalog.text OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) d.oid::pg_catalog.text
        FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())";

/// This database, as the destination's home records it: the cluster's system identifier and
/// the database's OID.
pub fn here() -> Result<Home> {
    let text: Option<String> = first_value(&format!("SELECT {THIS_DATABASE}"), &[])?;
    text.as_deref()
        .and_then(Home::parse)
        .ok_or_else(|| Error::internal("this database's system identifier and OID cannot be read"))
}

/// Why pushes from this database are refused, if they are: it is a copy of the destination's
/// home (a restored dump, a template's copy, a cluster upgraded with pg_upgrade).
pub fn copy_refusal() -> Result<Option<Error>> {
    let stored: Option<String> = first_value("SELECT home FROM qobra_sync.destination", &[])?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let Some(home) = Home::parse(&stored) else {
        return Ok(Some(
            Error::new(
                SqlState::ObjectNotInPrerequisiteState,
                "pushes are paused: the database the destination was set in cannot be read",
            )
            .hint(format!(
                "Call SELECT {SET_DESTINATION}(); in the database that is to push."
            )),
        ));
    };
    Ok(home.refuses(&here()?))
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
          WHERE name OPERATOR(pg_catalog.=) $1 AND error IS NULL
          ORDER BY seqno DESC LIMIT 1",
        &[API_KEY_FILE.name().into()],
    )?;
    Ok(pending.is_some_and(|file| !file.is_empty()))
}

/// Where pushes take the key from, as messages name it.
pub fn key_source() -> String {
    match gucs::text(&gucs::API_KEY_FILE).is_empty() {
        true => "set_destination()".to_owned(),
        false => format!("the file {API_KEY_FILE} names"),
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
        .hint(format!("Call {SET_DESTINATION}(api_key) first.")));
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
        let server_uid = crate::pg::lifecycle::server_uid();
        let key = read_key_file(std::path::Path::new(&key_file), server_uid)?;
        return Ok(destination(key));
    }
    match v.get(1).and_then(|x| x.as_str()) {
        Some(key) => Ok(destination(key.to_owned())),
        None => Err(Error::new(SqlState::ObjectNotInPrerequisiteState, "no API key is set")
            .detail(format!("No key is stored (set_destination() was called without one, or the database was restored from a dump, which never holds the key) and {API_KEY_FILE} is not set."))
            .hint(format!("Set {API_KEY_FILE} to the file that holds the key, or call {SET_DESTINATION}(api_key)."))),
    }
}
