//! Registration rules: what a registration must say before it is stored (`docs/design.md`).

use crate::error::{quoted, Error, Result, SqlState};
use crate::mapping::{map_columns, ColumnMapping, ColumnOptions};
use crate::schedule::Schedule;
use crate::source::Source;
use serde::Deserialize;

/// A stored registration, as the extension reads it back (one jsonb per row, read with serde).
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// OID of the source relation.
    pub source: u32,
    /// The source's qualified name when it was last registered or altered.
    pub source_name: String,
    pub data_table_key: String,
    pub columns: ColumnOptions,
    /// The canonical filter text, if any.
    pub filter: Option<String>,
    /// When the worker pushes it; None: only when asked (`sync_now`, `request_sync`).
    pub schedule: Option<String>,
    /// The reader role's name and OID.
    pub run_as: String,
    pub run_as_oid: u32,
    /// The role that registered the source (its name, or its OID in digits once dropped) and
    /// its OID: it, its members and superusers may change, push and inspect the registration.
    pub owner: String,
    pub owner_oid: u32,
    /// The synced shape recorded when it was registered or last altered (None: registered
    /// before shapes were recorded; recorded at its next push).
    #[serde(default)]
    pub shape: Option<Vec<crate::shape::ShapeColumn>>,
    /// Whether the shape's `attnum`s are the source's, in this database: not once restored from
    /// a dump (which numbers columns afresh), and then the shape is matched by column name.
    #[serde(default)]
    pub shape_here: bool,
    pub paused: bool,
    /// Whether it follows its source by name: a relation that takes the name (a table dropped
    /// and created again) is pushed in its place once its synced columns match the shape.
    #[serde(default)]
    pub follow_name: bool,
    /// The OID of the source's owner when it was registered, altered or followed: a relation
    /// that takes its name is followed only when the same role owns it.
    #[serde(default)]
    pub source_owner: Option<u32>,
}

/// Checks a Qobra data table API name: it becomes a URL path segment, so only `[A-Za-z0-9_.-]`.
pub fn check_data_table_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid data_table_key {}", quoted(key)),
        )
        .hint(
            "Use the data table's API name from Qobra: 1 to 128 letters, digits, '_', '-' or '.'.",
        ))
    }
}

/// Checks everything a registration says about its source and returns the column mapping.
pub fn check(
    source: &Source,
    data_table_key: &str,
    columns: &ColumnOptions,
    schedule: Option<&str>,
) -> Result<Vec<ColumnMapping>> {
    check_data_table_key(data_table_key)?;
    if columns.id_column.is_none() {
        return Err(Error::null_argument("id_column")
            .hint("Name the column that uniquely identifies each row."));
    }
    if columns.name_column.is_none() {
        return Err(Error::null_argument("name_column")
            .hint("Name the column Qobra shows as each record's name."));
    }
    if let Some(schedule) = schedule {
        Schedule::parse(schedule)?;
    }
    map_columns(source, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::tests::deals;

    #[test]
    fn data_table_keys_are_url_safe() {
        for ok in ["deals", "Deals_2026", "crm.deals-v2"] {
            assert!(check_data_table_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../v1/imports",
            "a/b",
            "a b",
            "a?all=true",
            "déals",
            &"x".repeat(129),
        ] {
            assert!(check_data_table_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_registration_needs_id_and_name_and_a_valid_schedule_if_any() {
        let mut cols = ColumnOptions {
            id_column: Some("id".into()),
            name_column: Some("title".into()),
            ..Default::default()
        };
        assert!(check(&deals(), "deals", &cols, Some("0 */6 * * *")).is_ok());
        assert!(check(&deals(), "deals", &cols, None).is_ok());
        assert!(check(&deals(), "deals", &cols, Some("whenever")).is_err());
        cols.name_column = None;
        assert_eq!(
            check(&deals(), "deals", &cols, None).unwrap_err().state,
            SqlState::NullValueNotAllowed
        );
    }
}
