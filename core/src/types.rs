//! Type mapping: which Qobra field types a Postgres column type may become
//! (`docs/qobra-api.md` §4).
//!
//! Postgres types are recognised by the OID of their base type (domains map as their base type).
//! Built-in type OIDs are fixed by Postgres' catalog and never change between versions.

use crate::error::{quoted, Error, Result, SqlState};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Postgres type qobra_sync knows how to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Text,
    Character,
    CharacterVarying,
    Date,
    Timestamp,
    Timestamptz,
    Integer,
    Smallint,
    Bigint,
    DoublePrecision,
    Numeric,
    Real,
    Money,
    Boolean,
    Bit,
    BitVarying,
}

impl PgType {
    /// Every supported type, in the order of the mapping table.
    pub const ALL: [PgType; 16] = [
        PgType::Text,
        PgType::Character,
        PgType::CharacterVarying,
        PgType::Date,
        PgType::Timestamp,
        PgType::Timestamptz,
        PgType::Integer,
        PgType::Smallint,
        PgType::Bigint,
        PgType::DoublePrecision,
        PgType::Numeric,
        PgType::Real,
        PgType::Money,
        PgType::Boolean,
        PgType::Bit,
        PgType::BitVarying,
    ];

    /// The supported type whose built-in OID is `oid`, if any.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        Some(match oid {
            25 => PgType::Text,
            1042 => PgType::Character,
            1043 => PgType::CharacterVarying,
            1082 => PgType::Date,
            1114 => PgType::Timestamp,
            1184 => PgType::Timestamptz,
            23 => PgType::Integer,
            21 => PgType::Smallint,
            20 => PgType::Bigint,
            701 => PgType::DoublePrecision,
            1700 => PgType::Numeric,
            700 => PgType::Real,
            790 => PgType::Money,
            16 => PgType::Boolean,
            1560 => PgType::Bit,
            1562 => PgType::BitVarying,
            _ => return None,
        })
    }

    /// The built-in OID of this type.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Text => 25,
            PgType::Character => 1042,
            PgType::CharacterVarying => 1043,
            PgType::Date => 1082,
            PgType::Timestamp => 1114,
            PgType::Timestamptz => 1184,
            PgType::Integer => 23,
            PgType::Smallint => 21,
            PgType::Bigint => 20,
            PgType::DoublePrecision => 701,
            PgType::Numeric => 1700,
            PgType::Real => 700,
            PgType::Money => 790,
            PgType::Boolean => 16,
            PgType::Bit => 1560,
            PgType::BitVarying => 1562,
        }
    }

    /// The Qobra types this Postgres type may map to; the first is the default.
    pub fn allowed(self) -> &'static [QobraType] {
        use QobraType::*;
        match self {
            PgType::Text | PgType::Character | PgType::CharacterVarying => {
                &[String, Picklist, Multipicklist, User]
            }
            PgType::Date | PgType::Timestamp | PgType::Timestamptz => &[Date],
            PgType::Integer | PgType::Smallint | PgType::Bigint => {
                &[Number, Amount, Percentage, User]
            }
            PgType::DoublePrecision | PgType::Numeric | PgType::Real => {
                &[Number, Amount, Percentage]
            }
            PgType::Money => &[Amount],
            PgType::Boolean => &[Bool],
            PgType::Bit | PgType::BitVarying => &[String],
        }
    }

    /// The Qobra type a column of this type gets when nothing is said.
    pub fn default_qobra_type(self) -> QobraType {
        self.allowed()[0]
    }

    /// The type's name as SQL writes it.
    pub fn sql_name(self) -> &'static str {
        match self {
            PgType::Text => "text",
            PgType::Character => "character",
            PgType::CharacterVarying => "character varying",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Integer => "integer",
            PgType::Smallint => "smallint",
            PgType::Bigint => "bigint",
            PgType::DoublePrecision => "double precision",
            PgType::Numeric => "numeric",
            PgType::Real => "real",
            PgType::Money => "money",
            PgType::Boolean => "boolean",
            PgType::Bit => "bit",
            PgType::BitVarying => "bit varying",
        }
    }

    /// The kind of values the type holds.
    pub fn family(self) -> Family {
        match self {
            PgType::Text | PgType::Character | PgType::CharacterVarying => Family::Text,
            PgType::Date | PgType::Timestamp | PgType::Timestamptz => Family::DateTime,
            PgType::Integer | PgType::Smallint | PgType::Bigint => Family::Integer,
            PgType::Numeric => Family::Numeric,
            PgType::DoublePrecision | PgType::Real => Family::Float,
            PgType::Money => Family::Money,
            PgType::Boolean => Family::Boolean,
            PgType::Bit | PgType::BitVarying => Family::Bit,
        }
    }

    /// Whether values of this type can identify a record (the id column): exact values only.
    pub fn can_identify(self) -> bool {
        self.family().identifies()
    }

    /// Whether the type holds text (user emails must).
    pub fn is_text(self) -> bool {
        self.family() == Family::Text
    }
}

/// The kinds of values of the supported types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Text,
    DateTime,
    Integer,
    Numeric,
    Float,
    Money,
    Boolean,
    Bit,
}

impl Family {
    /// Every family, in the order of the mapping table.
    pub const ALL: [Family; 8] = [
        Family::Text,
        Family::DateTime,
        Family::Integer,
        Family::Numeric,
        Family::Float,
        Family::Money,
        Family::Boolean,
        Family::Bit,
    ];

    /// The family's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::Text => "text",
            Family::DateTime => "date/time",
            Family::Integer => "integer",
            Family::Numeric => "numeric",
            Family::Float => "floating-point",
            Family::Money => "money",
            Family::Boolean => "boolean",
            Family::Bit => "bit",
        }
    }

    /// Whether its values are exact enough to identify a record.
    pub fn identifies(self) -> bool {
        matches!(
            self,
            Family::Text | Family::Integer | Family::Numeric | Family::Bit
        )
    }
}

/// The families whose types can be the id column, for messages: "text, integer, numeric or bit".
pub fn identifying_kinds() -> String {
    let names: Vec<&str> = Family::ALL
        .iter()
        .filter(|f| f.identifies())
        .map(|f| f.name())
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// Every supported type's SQL name, in the order of the mapping table, for messages.
pub fn supported_type_names() -> String {
    PgType::ALL
        .iter()
        .map(|t| t.sql_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Declares [`QobraType`] from one list of (variant, name): the enum, [`QobraType::ALL`] and
/// [`QobraType::as_str`] cannot drift apart.
macro_rules! qobra_types {
    ($($variant:ident => $name:literal,)*) => {
        /// A Qobra field type, as chosen when the data table is created in Qobra.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum QobraType {
            $($variant,)*
        }

        impl QobraType {
            /// Every Qobra field type, in the order of the list.
            pub const ALL: [QobraType; [$($name,)*].len()] = [$(QobraType::$variant,)*];

            /// The name Qobra and our SQL API use for this type.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(QobraType::$variant => $name,)*
                }
            }
        }
    };
}

qobra_types! {
    String => "string",
    Picklist => "picklist",
    Multipicklist => "multipicklist",
    User => "user",
    Date => "date",
    Number => "number",
    Amount => "amount",
    Percentage => "percentage",
    Bool => "bool",
}

impl fmt::Display for QobraType {
    /// Writes the type's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QobraType {
    type Err = Error;

    /// Parses a Qobra type name, refusing unknown ones with the list of known ones.
    fn from_str(s: &str) -> Result<Self> {
        QobraType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    SqlState::InvalidParameterValue,
                    format!("unknown Qobra type {}", quoted(s)),
                )
                .hint(format!("Qobra types are: {}.", join(&QobraType::ALL)))
            })
    }
}

/// Joins type names with ", " for messages.
pub fn join(types: &[QobraType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_oid() {
        for t in PgType::ALL {
            assert_eq!(PgType::from_oid(t.oid()), Some(t));
        }
        assert_eq!(PgType::from_oid(2950), None, "uuid is not supported");
        assert_eq!(PgType::from_oid(0), None);
    }

    #[test]
    fn the_seed_table_is_binding() {
        use QobraType::*;
        let expect: [(u32, &[QobraType]); 16] = [
            (25, &[String, Picklist, Multipicklist, User]),
            (1042, &[String, Picklist, Multipicklist, User]),
            (1043, &[String, Picklist, Multipicklist, User]),
            (1082, &[Date]),
            (1114, &[Date]),
            (1184, &[Date]),
            (23, &[Number, Amount, Percentage, User]),
            (21, &[Number, Amount, Percentage, User]),
            (20, &[Number, Amount, Percentage, User]),
            (701, &[Number, Amount, Percentage]),
            (1700, &[Number, Amount, Percentage]),
            (700, &[Number, Amount, Percentage]),
            (790, &[Amount]),
            (16, &[Bool]),
            (1560, &[String]),
            (1562, &[String]),
        ];
        for (oid, allowed) in expect {
            let t = PgType::from_oid(oid).unwrap();
            assert_eq!(t.allowed(), allowed, "{t:?}");
            assert_eq!(t.default_qobra_type(), allowed[0]);
        }
    }

    #[test]
    fn type_lists_in_messages_come_from_the_enum() {
        assert_eq!(identifying_kinds(), "text, integer, numeric or bit");
        assert_eq!(
            supported_type_names(),
            "text, character, character varying, date, timestamp, timestamptz, integer, smallint, bigint, double precision, numeric, real, money, boolean, bit, bit varying"
        );
        let identifying: Vec<PgType> = PgType::ALL
            .into_iter()
            .filter(|t| t.can_identify())
            .collect();
        assert!(!identifying.contains(&PgType::DoublePrecision));
        assert!(identifying.contains(&PgType::BitVarying));
    }

    #[test]
    fn qobra_type_names_parse_and_unknown_ones_are_refused() {
        for t in QobraType::ALL {
            assert_eq!(t.as_str().parse::<QobraType>().unwrap(), t);
        }
        let err = "currency".parse::<QobraType>().unwrap_err();
        assert_eq!(err.state, SqlState::InvalidParameterValue);
        assert!(err.message.contains("\"currency\""));
        assert!(err.hint.unwrap().contains("multipicklist"));
        assert!(
            "String".parse::<QobraType>().is_err(),
            "names are lower case"
        );
    }
}
