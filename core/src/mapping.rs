//! Column mapping: which columns of a source become which Qobra fields, under which field key.
//!
//! The input is the source as the catalog describes it ([`Source`]) and the column options of a
//! registration ([`ColumnOptions`]); the output is one [`ColumnMapping`] per column, and the wire
//! order of the synced ones (id field first, name field second, then the others by position).

use crate::error::{quoted, Error, Result, SqlState};
use crate::names::function::ALTER_TABLE;
use crate::source::{Source, SourceColumn};
use crate::types::{join, PgType, QobraType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How user values identify a Qobra user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UserKey {
    /// User values are emails (Qobra's default).
    #[default]
    Email,
    /// User values are identifiers: any non-empty value.
    Id,
}

impl UserKey {
    /// Parses `'email'` or `'id'`.
    pub fn parse(text: &str) -> Result<UserKey> {
        match text {
            "email" => Ok(UserKey::Email),
            "id" => Ok(UserKey::Id),
            other => Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("invalid user_key {}", quoted(other)),
            )
            .hint("user_key is 'email' (user values are emails) or 'id' (any non-empty value).")),
        }
    }

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserKey::Email => "email",
            UserKey::Id => "id",
        }
    }
}

/// The column options of a registration; everything optional for inspection before registering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnOptions {
    pub id_column: Option<String>,
    pub name_column: Option<String>,
    #[serde(default)]
    pub user_columns: Vec<String>,
    #[serde(default)]
    pub user_key: UserKey,
    /// Column → Qobra type name, as given by the user (checked by [`map_columns`]).
    #[serde(default)]
    pub column_types: BTreeMap<String, String>,
    /// Column → Qobra field API key.
    #[serde(default)]
    pub field_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

/// Column options a call gives (`register_table`, `alter_table`, the inspection functions);
/// None keeps the value of the options they apply to: the registration's, or the defaults.
#[derive(Debug, Clone, Default)]
pub struct ColumnChanges {
    pub id_column: Option<String>,
    pub name_column: Option<String>,
    pub user_columns: Option<Vec<String>>,
    pub user_key: Option<String>,
    pub column_types: Option<serde_json::Value>,
    pub field_keys: Option<serde_json::Value>,
    pub exclude_columns: Option<Vec<String>>,
}

impl ColumnChanges {
    /// Whether no option is changed.
    pub fn is_empty(&self) -> bool {
        self.id_column.is_none()
            && self.name_column.is_none()
            && self.user_columns.is_none()
            && self.user_key.is_none()
            && self.column_types.is_none()
            && self.field_keys.is_none()
            && self.exclude_columns.is_none()
    }

    /// `base` with these changes, each parsed and checked in itself (the mapping checks them
    /// against the source).
    pub fn apply(self, mut base: ColumnOptions) -> Result<ColumnOptions> {
        if self.id_column.is_some() {
            base.id_column = self.id_column;
        }
        if self.name_column.is_some() {
            base.name_column = self.name_column;
        }
        if let Some(v) = self.user_columns {
            base.user_columns = v;
        }
        if let Some(v) = self.user_key {
            base.user_key = UserKey::parse(&v)?;
        }
        if let Some(v) = self.column_types {
            base.column_types = string_map("column_types", &v)?;
        }
        if let Some(v) = self.field_keys {
            base.field_keys = string_map("field_keys", &v)?;
        }
        if let Some(v) = self.exclude_columns {
            base.exclude_columns = v;
        }
        Ok(base)
    }
}

/// The part a synced column plays in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The record's unique identifier, sent as text.
    Id,
    /// The record's name, sent as text.
    Name,
    /// Any other field.
    Field,
}

/// One row of `column_mapping()`: what happens to one column of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    pub column_name: String,
    pub pg_type: String,
    /// The supported type behind the column, if any.
    pub kind: Option<PgType>,
    pub qobra_type: Option<QobraType>,
    pub allowed_types: Vec<QobraType>,
    pub field_key: Option<String>,
    pub synced: bool,
    pub role: Role,
    pub note: Option<Note>,
}

/// Parses a JSON value that must be an object whose values are all strings.
pub fn string_map(argument: &str, value: &serde_json::Value) -> Result<BTreeMap<String, String>> {
    let not_object = || {
        Error::new(
            SqlState::InvalidParameterValue,
            format!("{argument} must be a JSON object of strings"),
        )
    };
    let object = value
        .as_object()
        .ok_or_else(|| not_object().detail(format!("Got: {value}")))?;
    object
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_owned())),
            None => Err(not_object()
                .detail(format!("The value for key {} is {v}.", quoted(k)))
                .hint(format!(
                    "Write {argument} as '{{\"column\": \"value\"}}'::jsonb."
                ))),
        })
        .collect()
}

/// Checks a Qobra field API key: non-empty, at most 255 characters, no control characters.
pub fn check_field_key(column: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > 255 || key.chars().any(char::is_control) {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid field key {} for column {}", quoted(key), quoted(column)),
        )
        .hint("A field key is the field's API key in Qobra: 1 to 255 characters, no control characters."));
    }
    Ok(())
}

/// Maps every column of `source` under `options`, refusing any option that does not fit.
pub fn map_columns(source: &Source, options: &ColumnOptions) -> Result<Vec<ColumnMapping>> {
    check_named_columns(source, options)?;
    let overrides = parse_overrides(&options.column_types)?;
    let mut rows = Vec::with_capacity(source.columns.len());
    for column in &source.columns {
        rows.push(map_column(column, options, &overrides, &source.name)?);
    }
    check_unique_field_keys(&rows)?;
    Ok(rows)
}

/// Refuses options that name a column the source does not have.
fn check_named_columns(source: &Source, options: &ColumnOptions) -> Result<()> {
    if let Some(id) = &options.id_column {
        source.require_column(id, "id_column")?;
    }
    if let Some(name) = &options.name_column {
        source.require_column(name, "name_column")?;
    }
    for c in &options.user_columns {
        source.require_column(c, "user_columns")?;
    }
    for c in options.column_types.keys() {
        source.require_column(c, "column_types")?;
    }
    for (c, key) in &options.field_keys {
        source.require_column(c, "field_keys")?;
        check_field_key(c, key)?;
    }
    for c in &options.exclude_columns {
        source.require_column(c, "exclude_columns")?;
    }
    Ok(())
}

/// Parses the type names of `column_types`.
fn parse_overrides(column_types: &BTreeMap<String, String>) -> Result<BTreeMap<&str, QobraType>> {
    column_types
        .iter()
        .map(|(column, name)| {
            let t = name.parse::<QobraType>().map_err(|e| {
                e.detail(format!(
                    "It is given for column {} in column_types.",
                    quoted(column)
                ))
            })?;
            Ok((column.as_str(), t))
        })
        .collect()
}

/// What `column_mapping()` says of a column beyond its types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Listed in `exclude_columns`.
    Excluded,
    /// Of a type qobra_sync cannot send (its name as Postgres formats it).
    Unsupported(String),
    /// The record's id or name, sent as text.
    Record(Role),
    /// A user column, its values read as `user_key` says.
    User(UserKey),
    /// Its Qobra type comes from `column_types`.
    TypeSet,
    /// Added to the source since its shape was recorded: not sent until `alter_table(source)`
    /// accepts it.
    New,
}

impl std::fmt::Display for Note {
    /// The note's text in `column_mapping()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Excluded => f.write_str("excluded"),
            Note::Unsupported(type_name) => write!(
                f,
                "type {type_name} is not supported: not synced (add it to exclude_columns, or cast it in a view)"
            ),
            Note::Record(role) => write!(f, "record {} (sent as text)", role.what()),
            Note::User(key) => write!(f, "user ({})", key.as_str()),
            Note::TypeSet => f.write_str("type set in column_types"),
            Note::New => write!(
                f,
                "new since the source was registered: not sent until {ALTER_TABLE}(source) accepts it"
            ),
        }
    }
}

impl Role {
    /// The role's name in messages: "id", "name" or "field".
    pub fn what(self) -> &'static str {
        match self {
            Role::Id => "id",
            Role::Name => "name",
            Role::Field => "field",
        }
    }
}

/// What the options say of one column.
struct Asked<'a> {
    name: &'a str,
    role: Role,
    excluded: bool,
    is_user: bool,
    /// Its type in `column_types`, if any.
    override_type: Option<QobraType>,
    /// Whether it has a key in `field_keys`.
    keyed: bool,
}

impl<'a> Asked<'a> {
    /// Reads what `options` say of `column`.
    fn of(
        column: &'a SourceColumn,
        options: &ColumnOptions,
        overrides: &BTreeMap<&str, QobraType>,
    ) -> Asked<'a> {
        let name = column.name.as_str();
        let role = if options.id_column.as_deref() == Some(name) {
            Role::Id
        } else if options.name_column.as_deref() == Some(name) {
            Role::Name
        } else {
            Role::Field
        };
        Asked {
            name,
            role,
            excluded: options.exclude_columns.iter().any(|c| c == name),
            is_user: options.user_columns.iter().any(|c| c == name),
            override_type: overrides.get(name).copied(),
            keyed: options.field_keys.contains_key(name),
        }
    }
}

/// Decides what happens to one column: excluded, not synced (unsupported type), or synced as
/// the record's id or name or as a field, with its Qobra type and field key.
fn map_column(
    column: &SourceColumn,
    options: &ColumnOptions,
    overrides: &BTreeMap<&str, QobraType>,
    relation: &str,
) -> Result<ColumnMapping> {
    let asked = Asked::of(column, options, overrides);
    let kind = column.pg_type();
    let mut row = ColumnMapping {
        column_name: asked.name.to_owned(),
        pg_type: column.type_name.clone(),
        kind,
        qobra_type: None,
        allowed_types: kind.map(|k| k.allowed().to_vec()).unwrap_or_default(),
        field_key: None,
        synced: false,
        role: asked.role,
        note: None,
    };
    let fail = |state, message: String| {
        Error::new(state, message).detail(format!(
            "Column {} of relation {} is of type {}.",
            quoted(asked.name),
            relation,
            column.type_name
        ))
    };
    if asked.excluded {
        check_excludable(&asked, &fail)?;
        row.note = Some(Note::Excluded);
        return Ok(row);
    }
    let Some(kind) = kind else {
        if asked.role != Role::Field || asked.is_user || asked.override_type.is_some() {
            return Err(fail(
                SqlState::DatatypeMismatch,
                format!(
                    "column {} has type {}, which qobra_sync cannot send",
                    quoted(asked.name),
                    column.type_name
                ),
            )
            .hint(unsupported_hint(asked.name, asked.role)));
        }
        row.note = Some(Note::Unsupported(column.type_name.clone()));
        return Ok(row);
    };
    match asked.role {
        Role::Id | Role::Name => {
            check_record_column(&asked, kind, &fail)?;
            row.qobra_type = Some(QobraType::String);
            row.allowed_types = vec![QobraType::String];
            row.note = Some(Note::Record(asked.role));
        }
        Role::Field => {
            let chosen = field_type(&asked, kind, column, options.user_key, &fail)?;
            row.qobra_type = Some(chosen);
            row.note = if asked.is_user {
                Some(Note::User(options.user_key))
            } else {
                asked.override_type.map(|_| Note::TypeSet)
            };
        }
    }
    row.synced = true;
    row.field_key = Some(
        options
            .field_keys
            .get(asked.name)
            .cloned()
            .unwrap_or_else(|| asked.name.to_owned()),
    );
    Ok(row)
}

/// An error about a column, with the DETAIL that names it, its relation and its type.
type ColumnError<'f> = &'f dyn Fn(SqlState, String) -> Error;

/// Refuses to exclude the id or name column, or a column the options also configure.
fn check_excludable(asked: &Asked<'_>, fail: ColumnError<'_>) -> Result<()> {
    if asked.role != Role::Field {
        return Err(fail(
            SqlState::InvalidParameterValue,
            format!(
                "the {} column {} cannot be excluded",
                asked.role.what(),
                quoted(asked.name)
            ),
        )
        .hint(format!(
            "Remove {} from exclude_columns.",
            quoted(asked.name)
        )));
    }
    if asked.is_user || asked.override_type.is_some() || asked.keyed {
        return Err(fail(
            SqlState::InvalidParameterValue,
            format!(
                "column {} is excluded but also configured",
                quoted(asked.name)
            ),
        )
        .hint(
            "Remove it from exclude_columns, or from user_columns, column_types and field_keys.",
        ));
    }
    Ok(())
}

/// Checks the id or name column: the id of a type that can identify a record, neither a user
/// column, nor given another Qobra type than string.
fn check_record_column(asked: &Asked<'_>, kind: PgType, fail: ColumnError<'_>) -> Result<()> {
    let what = asked.role.what();
    if asked.role == Role::Id && !kind.can_identify() {
        return Err(fail(
            SqlState::DatatypeMismatch,
            format!("column {} cannot be the id column", quoted(asked.name)),
        )
        .hint(format!(
            "The id column must be of a {} type.",
            crate::types::identifying_kinds()
        )));
    }
    if asked.is_user {
        return Err(fail(
            SqlState::InvalidParameterValue,
            format!(
                "the {what} column {} cannot also be a user column",
                quoted(asked.name)
            ),
        )
        .hint(format!("Remove {} from user_columns.", quoted(asked.name))));
    }
    match asked.override_type {
        Some(t) if t != QobraType::String => Err(fail(
            SqlState::InvalidParameterValue,
            format!(
                "the {what} column {} cannot be sent as {t}",
                quoted(asked.name)
            ),
        )
        .hint(format!(
            "The {what} field is always sent as text; remove {} from column_types.",
            quoted(asked.name)
        ))),
        _ => Ok(()),
    }
}

/// The Qobra type of a field column: user for a user column, else the override or the type's
/// default; refused when outside the types its Postgres type allows, or a number asked to be an
/// email.
fn field_type(
    asked: &Asked<'_>,
    kind: PgType,
    column: &SourceColumn,
    user_key: UserKey,
    fail: ColumnError<'_>,
) -> Result<QobraType> {
    let chosen = if asked.is_user {
        if let Some(t) = asked.override_type.filter(|t| *t != QobraType::User) {
            return Err(fail(
                SqlState::InvalidParameterValue,
                format!(
                    "column {} is a user column but column_types says {t}",
                    quoted(asked.name)
                ),
            )
            .hint("Remove it from user_columns or from column_types."));
        }
        QobraType::User
    } else {
        asked.override_type.unwrap_or(kind.default_qobra_type())
    };
    if !kind.allowed().contains(&chosen) {
        return Err(fail(
            SqlState::DatatypeMismatch,
            format!("column {} cannot be sent as {chosen}", quoted(asked.name)),
        )
        .hint(format!(
            "Allowed Qobra types for {}: {}.",
            column.type_name,
            join(kind.allowed())
        )));
    }
    if chosen == QobraType::User && user_key == UserKey::Email && !kind.is_text() {
        return Err(fail(
            SqlState::DatatypeMismatch,
            format!(
                "user column {} holds numbers, which cannot be emails",
                quoted(asked.name)
            ),
        )
        .hint(
            "Use user_key => 'id' when user values are identifiers, or a text column of emails.",
        ));
    }
    Ok(chosen)
}

/// The hint for a column of an unsupported type asked to play a part.
fn unsupported_hint(name: &str, role: Role) -> String {
    let types = crate::types::supported_type_names();
    match role {
        Role::Id | Role::Name => format!(
            "Supported types are {types}. Register a view that casts {} to one of them.",
            quoted(name)
        ),
        Role::Field => format!("Supported types are {types}."),
    }
}

/// Refuses two synced columns that would be sent under the same field key.
fn check_unique_field_keys(rows: &[ColumnMapping]) -> Result<()> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.synced) {
        let key = row.field_key.as_deref().unwrap_or_default();
        if let Some(other) = seen.insert(key, &row.column_name) {
            return Err(Error::new(
                SqlState::DuplicateObject,
                format!(
                    "field key {} is used by columns {} and {}",
                    quoted(key),
                    quoted(other),
                    quoted(&row.column_name)
                ),
            )
            .hint("Give each synced column its own key in field_keys, or exclude one of them."));
        }
    }
    Ok(())
}

/// The synced columns in wire order: id field, name field, then the rest by position.
pub fn wire_order(rows: &[ColumnMapping]) -> Vec<&ColumnMapping> {
    let rank = |r: &ColumnMapping| match r.role {
        Role::Id => 0,
        Role::Name => 1,
        Role::Field => 2,
    };
    let mut synced: Vec<&ColumnMapping> = rows.iter().filter(|r| r.synced).collect();
    synced.sort_by_key(|r| rank(r)); // stable: position order within each rank
    synced
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A source with one column of every supported type, plus a uuid and a json column.
    pub fn deals() -> Source {
        let col = |name: &str, type_name: &str, oid: u32| SourceColumn {
            attnum: 0,
            name: name.into(),
            type_name: type_name.into(),
            base_type_oid: oid,
            not_null: false,
        };
        let mut source = Source {
            oid: 16384,
            name: "public.deals".into(),
            relkind: "r".into(),
            columns: vec![
                col("id", "bigint", 20),
                col("title", "text", 25),
                col("owner", "character varying(200)", 1043),
                col("amount", "numeric(12,2)", 1700),
                col("close_date", "date", 1082),
                col("won", "boolean", 16),
                col("fee", "money", 790),
                col("ref", "uuid", 2950),
                col("flags", "bit(4)", 1560),
            ],
        };
        for (i, c) in source.columns.iter_mut().enumerate() {
            c.attnum = i as i32 + 1;
        }
        source
    }

    fn options() -> ColumnOptions {
        ColumnOptions {
            id_column: Some("id".into()),
            name_column: Some("title".into()),
            user_columns: vec!["owner".into()],
            ..Default::default()
        }
    }

    fn row<'a>(rows: &'a [ColumnMapping], name: &str) -> &'a ColumnMapping {
        rows.iter().find(|r| r.column_name == name).unwrap()
    }

    #[test]
    fn defaults_follow_the_seed_table() {
        let rows = map_columns(&deals(), &options()).unwrap();
        assert_eq!(row(&rows, "id").qobra_type, Some(QobraType::String));
        assert_eq!(row(&rows, "id").role, Role::Id);
        assert_eq!(row(&rows, "title").role, Role::Name);
        assert_eq!(row(&rows, "owner").qobra_type, Some(QobraType::User));
        assert_eq!(row(&rows, "amount").qobra_type, Some(QobraType::Number));
        assert_eq!(row(&rows, "close_date").qobra_type, Some(QobraType::Date));
        assert_eq!(row(&rows, "won").qobra_type, Some(QobraType::Bool));
        assert_eq!(row(&rows, "fee").qobra_type, Some(QobraType::Amount));
        assert_eq!(row(&rows, "flags").qobra_type, Some(QobraType::String));
        let uuid = row(&rows, "ref");
        assert!(!uuid.synced && uuid.qobra_type.is_none() && uuid.field_key.is_none());
        assert!(uuid
            .note
            .as_ref()
            .unwrap()
            .to_string()
            .contains("uuid is not supported"));
    }

    #[test]
    fn wire_order_puts_id_and_name_first() {
        let mut opts = options();
        opts.id_column = Some("amount".into());
        opts.name_column = Some("owner".into());
        opts.user_columns.clear();
        let rows = map_columns(&deals(), &opts).unwrap();
        let order: Vec<&str> = wire_order(&rows)
            .iter()
            .map(|r| r.column_name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "amount",
                "owner",
                "id",
                "title",
                "close_date",
                "won",
                "fee",
                "flags"
            ]
        );
    }

    #[test]
    fn overrides_inside_the_allowed_set_apply() {
        let mut opts = options();
        opts.column_types.insert("amount".into(), "amount".into());
        opts.column_types.insert("title".into(), "string".into());
        let rows = map_columns(&deals(), &opts).unwrap();
        assert_eq!(row(&rows, "amount").qobra_type, Some(QobraType::Amount));
    }

    #[test]
    fn an_override_outside_the_allowed_set_names_the_allowed_ones() {
        let mut opts = options();
        opts.column_types
            .insert("close_date".into(), "number".into());
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert_eq!(err.state, SqlState::DatatypeMismatch);
        assert_eq!(
            err.message,
            "column \"close_date\" cannot be sent as number"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("Allowed Qobra types for date: date.")
        );
    }

    #[test]
    fn unknown_columns_and_types_are_refused() {
        let mut opts = options();
        opts.exclude_columns.push("nope".into());
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert_eq!(err.state, SqlState::UndefinedColumn);
        assert!(err.detail.unwrap().contains("exclude_columns"));

        let mut opts = options();
        opts.column_types.insert("amount".into(), "currency".into());
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert_eq!(err.state, SqlState::InvalidParameterValue);
        assert!(err.detail.unwrap().contains("amount"));
    }

    #[test]
    fn roles_need_fitting_types() {
        let mut opts = options();
        opts.id_column = Some("ref".into());
        assert_eq!(
            map_columns(&deals(), &opts).unwrap_err().state,
            SqlState::DatatypeMismatch
        );
        opts.id_column = Some("close_date".into());
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert!(err.message.contains("cannot be the id column"), "{err:?}");
        let mut opts = options();
        opts.user_columns = vec!["amount".into()];
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert!(err.hint.unwrap().contains("number, amount, percentage"));
        let mut opts = options();
        opts.user_columns = vec!["id".into()];
        assert!(
            map_columns(&deals(), &opts).is_err(),
            "id cannot be a user column"
        );
    }

    #[test]
    fn integer_user_columns_need_user_key_id() {
        let mut opts = options();
        opts.id_column = Some("title".into());
        opts.name_column = Some("owner".into());
        opts.user_columns = vec!["id".into()];
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert!(err.hint.unwrap().contains("user_key => 'id'"));
        opts.user_key = UserKey::Id;
        let rows = map_columns(&deals(), &opts).unwrap();
        assert_eq!(row(&rows, "id").qobra_type, Some(QobraType::User));
    }

    #[test]
    fn excluded_and_unsupported_columns_are_reported_not_synced() {
        let mut opts = options();
        opts.exclude_columns = vec!["fee".into(), "ref".into()];
        let rows = map_columns(&deals(), &opts).unwrap();
        assert_eq!(row(&rows, "fee").note, Some(Note::Excluded));
        assert!(!row(&rows, "fee").synced);
        opts.exclude_columns = vec!["id".into()];
        assert!(map_columns(&deals(), &opts)
            .unwrap_err()
            .message
            .contains("cannot be excluded"));
    }

    #[test]
    fn field_keys_apply_and_must_be_unique() {
        let mut opts = options();
        opts.field_keys
            .insert("amount".into(), "deal_amount".into());
        let rows = map_columns(&deals(), &opts).unwrap();
        assert_eq!(
            row(&rows, "amount").field_key.as_deref(),
            Some("deal_amount")
        );
        assert_eq!(row(&rows, "won").field_key.as_deref(), Some("won"));
        opts.field_keys.insert("won".into(), "deal_amount".into());
        let err = map_columns(&deals(), &opts).unwrap_err();
        assert_eq!(err.state, SqlState::DuplicateObject);
        assert!(err.message.contains("\"amount\" and \"won\""));
        opts.field_keys.insert("won".into(), "title".into());
        assert!(
            map_columns(&deals(), &opts).is_err(),
            "clashes with another column's name"
        );
        opts.field_keys.insert("won".into(), "".into());
        assert!(map_columns(&deals(), &opts)
            .unwrap_err()
            .message
            .contains("invalid field key"));
    }

    #[test]
    fn string_maps_must_be_objects_of_strings() {
        let ok = serde_json::json!({"a": "number"});
        assert_eq!(string_map("column_types", &ok).unwrap()["a"], "number");
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({"a": 1}),
            serde_json::json!("x"),
        ] {
            let err = string_map("column_types", &bad).unwrap_err();
            assert_eq!(err.message, "column_types must be a JSON object of strings");
        }
    }

    #[test]
    fn user_key_parses() {
        assert_eq!(UserKey::parse("email").unwrap(), UserKey::Email);
        assert_eq!(UserKey::parse("id").unwrap(), UserKey::Id);
        assert!(UserKey::parse("Email").is_err());
    }
}
