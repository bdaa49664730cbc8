//! Table definitions and the per-field-type parsing rules that decide whether
//! a pushed record is stored or reported as a parsing error.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A Qobra field type, chosen by an admin when the table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Picklist,
    Multipicklist,
    User,
    Number,
    Amount,
    Percentage,
    Date,
    Bool,
}

impl FieldType {
    /// Parses a type name as written in a table definition.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "string" => FieldType::String,
            "picklist" => FieldType::Picklist,
            "multipicklist" => FieldType::Multipicklist,
            "user" => FieldType::User,
            "number" => FieldType::Number,
            "amount" => FieldType::Amount,
            "percentage" => FieldType::Percentage,
            "date" => FieldType::Date,
            "bool" | "boolean" => FieldType::Bool,
            _ => return None,
        })
    }

    /// The type's name as written in a table definition.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::User => "user",
            FieldType::Number => "number",
            FieldType::Amount => "amount",
            FieldType::Percentage => "percentage",
            FieldType::Date => "date",
            FieldType::Bool => "bool",
        }
    }

    /// Whether values of this type are numeric.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Number | FieldType::Amount | FieldType::Percentage
        )
    }
}

/// How user values are keyed in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKey {
    Email,
    Id,
}

impl UserKey {
    /// Parses `email` or `id`.
    pub fn parse(name: &str) -> Option<UserKey> {
        match name.trim().to_ascii_lowercase().as_str() {
            "email" => Some(UserKey::Email),
            "id" => Some(UserKey::Id),
            _ => None,
        }
    }

    /// The key's name, `email` or `id`.
    pub fn name(self) -> &'static str {
        match self {
            UserKey::Email => "email",
            UserKey::Id => "id",
        }
    }
}

/// A data table's definition: its id and name fields and the type of each field.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub id_field: String,
    pub name_field: String,
    pub user_key: UserKey,
    /// Field API keys in definition order.
    pub order: Vec<String>,
    types: HashMap<String, FieldType>,
}

impl TableDef {
    /// Builds a definition; the id and name fields default to `string` when not typed.
    pub fn new(
        id_field: &str,
        name_field: &str,
        user_key: UserKey,
        fields: Vec<(String, FieldType)>,
    ) -> Result<TableDef, String> {
        if id_field.is_empty() || name_field.is_empty() {
            return Err("id_field and name_field must be non-empty".into());
        }
        let mut order = Vec::new();
        let mut types = HashMap::new();
        for key in [id_field, name_field] {
            if !fields.iter().any(|(k, _)| k == key) && !types.contains_key(key) {
                order.push(key.to_string());
                types.insert(key.to_string(), FieldType::String);
            }
        }
        for (key, ty) in fields {
            if key.is_empty() {
                return Err("field API keys must be non-empty".into());
            }
            if types.insert(key.clone(), ty).is_some() {
                return Err(format!("field '{key}' is defined twice"));
            }
            order.push(key);
        }
        match types.get(id_field) {
            Some(FieldType::String | FieldType::Number) => {}
            Some(t) => return Err(format!("id field must be string or number, not {}", t.name())),
            None => {}
        }
        Ok(TableDef {
            id_field: id_field.to_string(),
            name_field: name_field.to_string(),
            user_key,
            order,
            types,
        })
    }

    /// The type of a field, if it is defined.
    pub fn field_type(&self, key: &str) -> Option<FieldType> {
        self.types.get(key).copied()
    }

    /// The definition as JSON: `{id_field, name_field, user_key, fields: {key: type}}`.
    pub fn to_json(&self) -> Value {
        let fields: Map<String, Value> = self
            .order
            .iter()
            .map(|k| {
                let t = self.types.get(k).map_or("string", |t| t.name());
                (k.clone(), Value::from(t))
            })
            .collect();
        serde_json::json!({
            "id_field": self.id_field,
            "name_field": self.name_field,
            "user_key": self.user_key.name(),
            "fields": fields,
        })
    }

    /// Checks a pushed record: returns its id (as text) and the values to store
    /// (known fields only, normalised), or the parsing error text.
    pub fn parse_record(&self, record: &Map<String, Value>) -> Result<(String, Map<String, Value>), String> {
        let id = match record.get(&self.id_field) {
            None | Some(Value::Null) => {
                return Err(format!("Missing value for id field {}", self.id_field))
            }
            Some(v) => v,
        };
        let id_type = self.field_type(&self.id_field).unwrap_or(FieldType::String);
        let id_value = parse_value(id_type, self.user_key, &self.id_field, id)?;
        let id_text = match &id_value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if id_text.trim().is_empty() {
            return Err(format!("Empty value for id field {}", self.id_field));
        }
        let mut stored = Map::new();
        for (key, value) in record {
            if let Some(ty) = self.field_type(key) {
                stored.insert(key.clone(), parse_value(ty, self.user_key, key, value)?);
            }
        }
        Ok((id_text, stored))
    }
}

/// Applies one field type's parsing rule to a value; returns the value to store.
pub fn parse_value(ty: FieldType, user_key: UserKey, field: &str, value: &Value) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fail = |what: &str| {
        Err(format!(
            "Can't parse '{}' as {what} for user attribute {field}",
            shown(value)
        ))
    };
    match ty {
        FieldType::String | FieldType::Picklist | FieldType::Multipicklist => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => fail("string"),
        },
        FieldType::Number | FieldType::Amount | FieldType::Percentage => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => match decimal(s) {
                Some(n) => Ok(Value::Number(n)),
                None => fail("float"),
            },
            _ => fail("float"),
        },
        FieldType::Date => match value {
            Value::String(s) if crate::clock::is_valid_date(s) => Ok(value.clone()),
            _ => fail("date"),
        },
        FieldType::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => fail("bool"),
        },
        FieldType::User => match (user_key, value) {
            (UserKey::Email, Value::String(s)) if looks_like_email(s) => Ok(value.clone()),
            (UserKey::Email, _) => fail("user email"),
            (UserKey::Id, Value::String(s)) if !s.trim().is_empty() => Ok(value.clone()),
            (UserKey::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            (UserKey::Id, _) => fail("user id"),
        },
    }
}

/// A value as shown in error messages: strings without quotes, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses decimal text (`-12`, `3.50`, `+1e3`, ` 7 `) into a JSON number.
pub fn decimal(text: &str) -> Option<Number> {
    let s = text.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'-' => ("-", &s[1..]),
        b'+' => ("", &s[1..]),
        _ => ("", s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let mut out = format!("{sign}{}", if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        out.push('e');
        out.push_str(e);
    }
    serde_json::from_str(&out).ok()
}

/// A loose email check: `local@domain.tld`, no spaces.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A table with one field of each type.
    fn table(user_key: UserKey) -> TableDef {
        let fields = [
            ("id", "number"),
            ("name", "string"),
            ("stage", "picklist"),
            ("tags", "multipicklist"),
            ("owner", "user"),
            ("qty", "number"),
            ("amount", "amount"),
            ("rate", "percentage"),
            ("close_date", "date"),
            ("won", "bool"),
        ]
        .iter()
        .map(|(k, t)| (k.to_string(), FieldType::parse(t).expect("type")))
        .collect();
        TableDef::new("id", "name", user_key, fields).expect("def")
    }

    /// Parses a JSON record against a table.
    fn parse(def: &TableDef, v: Value) -> Result<(String, Map<String, Value>), String> {
        let Value::Object(m) = v else { panic!("object") };
        def.parse_record(&m)
    }

    #[test]
    fn accepts_well_typed_records() {
        let def = table(UserKey::Email);
        let (id, stored) = parse(
            &def,
            json!({"id": 42, "name": 7, "owner": "ana@acme.com", "amount": "1200.50",
                   "rate": 0.5, "close_date": "2026-03-31T12:00:00.000000Z", "won": true,
                   "tags": "a;b", "unknown": [1, 2]}),
        )
        .expect("ok");
        assert_eq!(id, "42");
        assert_eq!(stored["name"], json!("7"));
        assert_eq!(stored["amount"].to_string(), "1200.50");
        assert!(!stored.contains_key("unknown"));
        assert!(parse(&def, json!({"id": 1, "owner": null, "won": null})).is_ok());
    }

    #[test]
    fn rejects_badly_typed_values() {
        let def = table(UserKey::Email);
        let cases = [
            (json!({"id": 1, "amount": "AAAAA"}), "Can't parse 'AAAAA' as float for user attribute amount"),
            (json!({"id": 1, "qty": true}), "Can't parse 'true' as float for user attribute qty"),
            (json!({"id": 1, "close_date": "31/03/2026"}), "Can't parse '31/03/2026' as date for user attribute close_date"),
            (json!({"id": 1, "won": "yes"}), "Can't parse 'yes' as bool for user attribute won"),
            (json!({"id": 1, "owner": "ana"}), "Can't parse 'ana' as user email for user attribute owner"),
            (json!({"id": 1, "stage": {"a": 1}}), "Can't parse '{\"a\":1}' as string for user attribute stage"),
            (json!({"name": "x"}), "Missing value for id field id"),
            (json!({"id": null}), "Missing value for id field id"),
            (json!({"id": "x1"}), "Can't parse 'x1' as float for user attribute id"),
        ];
        for (record, expected) in cases {
            assert_eq!(parse(&def, record).expect_err("must fail"), expected);
        }
        let by_id = table(UserKey::Id);
        assert!(parse(&by_id, json!({"id": 1, "owner": 17})).is_ok());
        assert!(parse(&by_id, json!({"id": 1, "owner": "u-17"})).is_ok());
        assert!(parse(&by_id, json!({"id": 1, "owner": ""})).is_err());
        assert!(parse(&by_id, json!({"id": 1, "owner": 1.5})).is_err());
    }

    #[test]
    fn parses_decimal_text() {
        assert_eq!(decimal(" 12 ").map(|n| n.to_string()), Some("12".into()));
        assert_eq!(decimal("-0012.50").map(|n| n.to_string()), Some("-12.50".into()));
        assert_eq!(decimal("+1e3").map(|n| n.to_string()), Some("1e3".into()));
        assert_eq!(decimal(".5").map(|n| n.to_string()), Some("0.5".into()));
        for bad in ["", "-", ".", "1e", "1.2.3", "AAAAA", "NaN", "inf", "1,5"] {
            assert!(decimal(bad).is_none(), "{bad}");
        }
    }
}
