//! A source: the relation a registration reads, as the catalog describes it — its kind
//! ([`RelKind`], which kinds may be registered) and its columns.

use crate::error::{quoted, Error, Result, SqlState};
use crate::types::PgType;
use serde::{Deserialize, Serialize};

/// A column of a source relation, as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceColumn {
    /// The column's number in its relation (`attnum`): it stays when the column is renamed.
    #[serde(default)]
    pub attnum: i32,
    /// The column's name, exactly as stored in the catalog.
    pub name: String,
    /// The column's type as Postgres formats it (`numeric(12,2)`, a domain's name…).
    pub type_name: String,
    /// OID of the type after resolving domains to their base type.
    pub base_type_oid: u32,
    /// Whether the column is declared NOT NULL.
    #[serde(default)]
    pub not_null: bool,
}

impl SourceColumn {
    /// The supported Postgres type of the column, if it has one.
    pub fn pg_type(&self) -> Option<PgType> {
        PgType::from_oid(self.base_type_oid)
    }
}

/// A relation that can be registered, as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The relation's OID: registrations are stored by it.
    pub oid: u32,
    /// Its schema-qualified name, quoted by Postgres where needed.
    pub name: String,
    /// `pg_class.relkind`: r, p, v or m.
    pub relkind: String,
    /// Its live columns in position order.
    pub columns: Vec<SourceColumn>,
}

/// What kind of relation a source is, from `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    Sequence,
    Index,
    CompositeType,
    Toast,
    ForeignTable,
    Other,
}

impl RelKind {
    /// The kind behind a `relkind` letter.
    pub fn from_relkind(relkind: &str) -> RelKind {
        match relkind {
            "r" => RelKind::Table,
            "p" => RelKind::PartitionedTable,
            "v" => RelKind::View,
            "m" => RelKind::MaterializedView,
            "S" => RelKind::Sequence,
            "i" | "I" => RelKind::Index,
            "c" => RelKind::CompositeType,
            "t" => RelKind::Toast,
            "f" => RelKind::ForeignTable,
            _ => RelKind::Other,
        }
    }

    /// Whether a relation of this kind can be registered.
    pub fn can_be_source(self) -> bool {
        matches!(
            self,
            RelKind::Table
                | RelKind::PartitionedTable
                | RelKind::View
                | RelKind::MaterializedView
                | RelKind::ForeignTable
        )
    }

    /// The kind in words, as `validate()` names a source ("table", "view"…).
    pub fn name(self) -> &'static str {
        match self {
            RelKind::Table => "table",
            RelKind::PartitionedTable => "partitioned table",
            RelKind::View => "view",
            RelKind::MaterializedView => "materialized view",
            RelKind::Sequence => "sequence",
            RelKind::Index => "index",
            RelKind::CompositeType => "composite type",
            RelKind::Toast => "TOAST table",
            RelKind::ForeignTable => "foreign table",
            RelKind::Other => "relation",
        }
    }

    /// The kind with its article, as an error names what a relation is ("a sequence"…).
    pub fn with_article(self) -> String {
        match self {
            RelKind::Other => "not a table".to_owned(),
            RelKind::Index => "an index".to_owned(),
            kind => format!("a {}", kind.name()),
        }
    }
}

impl Source {
    /// The source's relation kind.
    pub fn kind(&self) -> RelKind {
        RelKind::from_relkind(&self.relkind)
    }

    /// The column called `name`, if there is one.
    pub fn column(&self, name: &str) -> Option<&SourceColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column called `name`, or an error that says which argument named it.
    pub fn require_column(&self, name: &str, argument: &str) -> Result<&SourceColumn> {
        self.column(name).ok_or_else(|| {
            let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            Error::new(
                SqlState::UndefinedColumn,
                format!(
                    "column {} of relation {} does not exist",
                    quoted(name),
                    self.name
                ),
            )
            .detail(format!("It is named in {argument}."))
            .hint(format!(
                "Columns of {} are: {}.",
                self.name,
                names.join(", ")
            ))
        })
    }
}
