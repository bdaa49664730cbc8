//! Cloud SQL: the IAM database user that a GCP service account becomes.
//!
//! On Cloud SQL, a service account logs in as a database user named after its email without the
//! `.gserviceaccount.com` suffix. Only `type`, `client_email` and `project_id` are read; the rest
//! of the JSON (the private key above all) is never copied, stored or echoed.

use crate::error::{quoted, Error, Result, SqlState};
use serde_json::Value;

/// The suffix every service account email ends with.
const SUFFIX: &str = ".gserviceaccount.com";

/// Checks a service-account JSON and returns the Cloud SQL IAM user name to use as `run_as`.
pub fn iam_user(account: &Value) -> Result<String> {
    let invalid = |what: String| {
        Error::new(SqlState::InvalidParameterValue, format!("invalid service account: {what}"))
            .hint("Pass the JSON key file of a Google Cloud service account (\"type\": \"service_account\").")
    };
    let object = account
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    let field = |name: &str| -> Result<&str> {
        match object.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(invalid(format!("\"{name}\" is not a non-empty string"))),
            None => Err(invalid(format!("\"{name}\" is missing"))),
        }
    };
    let kind = field("type")?;
    if kind != "service_account" {
        return Err(invalid(format!(
            "\"type\" is {}, not \"service_account\"",
            quoted(kind)
        )));
    }
    let project = field("project_id")?;
    let email = field("client_email")?;
    let Some(user) = email.strip_suffix(SUFFIX) else {
        return Err(invalid(format!(
            "client_email {} is not a service account email",
            quoted(email)
        ))
        .detail(format!("Service account emails end with {SUFFIX}.")));
    };
    let (local, domain) = user
        .split_once('@')
        .ok_or_else(|| invalid(format!("client_email {} has no @", quoted(email))))?;
    if local.is_empty() || !domain.starts_with(project) {
        return Err(invalid(format!(
            "client_email {} does not belong to project {}",
            quoted(email),
            quoted(project)
        )));
    }
    if user.len() > 63 {
        return Err(invalid(format!(
            "the IAM user name {} is longer than 63 bytes",
            quoted(user)
        ))
        .hint(
            "Postgres role names have at most 63 bytes; use a service account with a shorter name.",
        ));
    }
    Ok(user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account() -> Value {
        json!({
            "type": "service_account", "project_id": "acme-prod", "private_key_id": "k1",
            "private_key": "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
            "client_email": "qobra-reader@acme-prod.iam.gserviceaccount.com", "client_id": "1"
        })
    }

    #[test]
    fn the_iam_user_is_the_email_without_the_suffix() {
        assert_eq!(iam_user(&account()).unwrap(), "qobra-reader@acme-prod.iam");
    }

    #[test]
    fn wrong_shapes_are_refused_without_echoing_the_key() {
        let mut cases = vec![json!([]), json!("x")];
        for (k, v) in [
            ("type", json!("authorized_user")),
            ("type", json!(1)),
            ("client_email", json!("ana@acme.com")),
            ("client_email", json!("")),
            ("project_id", json!("other")),
            ("client_email", json!("@acme-prod.iam.gserviceaccount.com")),
        ] {
            let mut a = account();
            a[k] = v;
            cases.push(a);
        }
        for missing in ["type", "client_email", "project_id"] {
            let mut a = account();
            a.as_object_mut().unwrap().remove(missing);
            cases.push(a);
        }
        for case in cases {
            let err = iam_user(&case).unwrap_err();
            assert_eq!(err.state, SqlState::InvalidParameterValue, "{case}");
            let text = format!("{} {:?} {:?}", err.message, err.detail, err.hint);
            assert!(
                !text.contains("SECRET") && !text.contains("PRIVATE"),
                "{text}"
            );
        }
    }
}
