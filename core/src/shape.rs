//! The synced shape of a registration: which columns it sends, under which type and key, as
//! recorded when it was registered or last altered; and the drift of the source since.
//!
//! Qobra ignores keys it does not know: a renamed column would silently empty a field in Qobra,
//! a dropped one likewise. So before every push the source is described again and compared
//! with its recorded shape, column by column (by `attnum`, which a rename keeps): a synced
//! column renamed, dropped, or whose type now maps to another Qobra type (or none) blocks the
//! run until `accept_shape(source)` accepts the new shape; a column added since is not sent
//! until `alter_table(source)` (or `accept_shape`) accepts it. Confirming a renamed relation
//! with `alter_table(source)` accepts added columns only: a lost or changed column is accepted
//! by `accept_shape` alone, as a separate act.

use crate::error::quoted;
use crate::mapping::{ColumnMapping, Note};
use crate::names::function::{ACCEPT_SHAPE, ALTER_TABLE};
use crate::source::Source;
use crate::types::QobraType;
use serde::{Deserialize, Serialize};

/// One synced column as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeColumn {
    /// The column's `attnum` in the source.
    pub attnum: i32,
    pub column: String,
    /// Its type as Postgres formats it, and the base type's OID.
    pub pg_type: String,
    pub base_type_oid: u32,
    pub qobra_type: QobraType,
    pub field_key: String,
    /// The part it plays: "id", "name" (both sent as text) or "field".
    pub role: String,
}

impl ShapeColumn {
    /// Whether a column of the type described by `now` can still be sent as recorded.
    fn still_sendable(&self, now: &crate::source::SourceColumn) -> bool {
        let Some(kind) = now.pg_type() else {
            return false;
        };
        match self.role.as_str() {
            "id" => kind.can_identify(),
            "name" => true,
            _ => kind.allowed().contains(&self.qobra_type),
        }
    }
}

/// What changed in a source since its shape was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A synced column has another name now; `key` is the field key it was sent under.
    Renamed {
        from: String,
        to: String,
        key: String,
    },
    /// A synced column is gone.
    Dropped { column: String },
    /// A synced column's type now maps to another Qobra type, or to none.
    Retyped {
        column: String,
        was: String,
        now: String,
        qobra_type: QobraType,
    },
    /// A column that would be synced and is not in the recorded shape.
    Added { column: String },
}

impl Change {
    /// Whether the change blocks pushes until accepted (an added column only waits to be sent).
    pub fn blocks(&self) -> bool {
        !matches!(self, Change::Added { .. })
    }

    /// The change in words.
    pub fn describe(&self) -> String {
        match self {
            Change::Renamed { from, to, .. } => {
                format!("column {} was renamed to {}", quoted(from), quoted(to))
            }
            Change::Dropped { column } => format!("column {} was dropped", quoted(column)),
            Change::Retyped {
                column,
                was,
                now,
                qobra_type,
            } => format!(
                "column {} is now of type {now} (was {was}), which cannot be sent as {qobra_type}",
                quoted(column)
            ),
            Change::Added { column } => format!("column {} is new", quoted(column)),
        }
    }
}

/// The shape to record for `mapping` (its synced columns) of `source`.
pub fn record(source: &Source, mapping: &[ColumnMapping]) -> Vec<ShapeColumn> {
    mapping
        .iter()
        .filter(|m| m.synced)
        .filter_map(|m| {
            let column = source.column(&m.column_name)?;
            Some(ShapeColumn {
                attnum: column.attnum,
                column: m.column_name.clone(),
                pg_type: m.pg_type.clone(),
                base_type_oid: column.base_type_oid,
                qobra_type: m.qobra_type?,
                field_key: m.field_key.clone()?,
                role: m.role.what().to_owned(),
            })
        })
        .collect()
}

/// The recorded `shape` with each column's `attnum` taken again from the column of the same
/// name in `source`: for a shape recorded on another copy of the relation (a restored dump
/// numbers the columns afresh, leaving out dropped ones). A column not found by name gets
/// attnum 0, which no column has, so that it shows as dropped rather than as another column.
pub fn rebind(shape: &[ShapeColumn], source: &Source) -> Vec<ShapeColumn> {
    shape
        .iter()
        .map(|recorded| ShapeColumn {
            attnum: source.column(&recorded.column).map_or(0, |c| c.attnum),
            ..recorded.clone()
        })
        .collect()
}

/// How `source` differs from the recorded `shape`; `mapping` is the source mapped under the
/// registration's options now, which tells the columns that would be synced.
pub fn drift(shape: &[ShapeColumn], source: &Source, mapping: &[ColumnMapping]) -> Vec<Change> {
    let mut changes: Vec<Change> = shape
        .iter()
        .filter_map(|recorded| {
            let Some(now) = source.columns.iter().find(|c| c.attnum == recorded.attnum) else {
                return Some(Change::Dropped {
                    column: recorded.column.clone(),
                });
            };
            if now.name != recorded.column {
                return Some(Change::Renamed {
                    from: recorded.column.clone(),
                    to: now.name.clone(),
                    key: recorded.field_key.clone(),
                });
            }
            (!recorded.still_sendable(now)).then(|| Change::Retyped {
                column: recorded.column.clone(),
                was: recorded.pg_type.clone(),
                now: now.type_name.clone(),
                qobra_type: recorded.qobra_type,
            })
        })
        .collect();
    let recorded = |name: &str| {
        source
            .column(name)
            .is_some_and(|c| shape.iter().any(|s| s.attnum == c.attnum))
    };
    let added = mapping
        .iter()
        .filter(|m| m.synced && !recorded(&m.column_name))
        .map(|m| Change::Added {
            column: m.column_name.clone(),
        });
    changes.extend(added);
    changes
}

/// The error text of a push the drift blocks, or None when nothing blocks it.
pub fn blocked(source: &str, changes: &[Change]) -> Option<String> {
    let blocking: Vec<String> = changes
        .iter()
        .filter(|c| c.blocks())
        .map(Change::describe)
        .collect();
    (!blocking.is_empty()).then(|| {
        format!(
            "the synced columns of {source} changed since it was registered: {}",
            blocking.join("; ")
        )
    })
}

/// The hint of a blocked push: how to accept the new shape, or keep renamed columns' keys.
/// `field_keys` are the registration's: the call given keeps them, since `field_keys`
/// replaces the whole map.
pub fn hint(
    source: &str,
    changes: &[Change],
    field_keys: &std::collections::BTreeMap<String, String>,
) -> String {
    let source = source.replace('\'', "''");
    let mut hint =
        format!("Check the source, then accept its new shape with {ACCEPT_SHAPE}('{source}').");
    // The columns gone under their old names first, then the renamed ones under their new
    // names: a swap or a chain of renames must not lose a key.
    let mut keys = field_keys.clone();
    for change in changes {
        match change {
            Change::Renamed { from, .. } => keys.remove(from),
            Change::Dropped { column } => keys.remove(column),
            _ => None,
        };
    }
    let mut renamed = false;
    for change in changes {
        if let Change::Renamed { to, key, .. } = change {
            keys.insert(to.clone(), key.clone());
            renamed = true;
        }
    }
    if renamed {
        let keys = serde_json::to_string(&keys)
            .expect("a map of strings serialises")
            .replace('\'', "''");
        hint.push_str(&format!(
            " To keep sending a renamed column under its old key: {ALTER_TABLE}('{source}', field_keys => '{keys}')."
        ));
    }
    hint
}

/// `mapping` as a push with the recorded `shape` sends it: columns not in the shape (added
/// since) are not synced, and say so.
pub fn apply(mapping: Vec<ColumnMapping>, shape: &[ShapeColumn]) -> Vec<ColumnMapping> {
    mapping
        .into_iter()
        .map(|mut m| {
            if m.synced && !shape.iter().any(|s| s.column == m.column_name) {
                m.synced = false;
                m.field_key = None;
                m.note = Some(Note::New);
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{map_columns, tests::deals, ColumnOptions};

    fn options() -> ColumnOptions {
        ColumnOptions {
            id_column: Some("id".into()),
            name_column: Some("title".into()),
            ..Default::default()
        }
    }

    /// The deals source, its mapping and its recorded shape.
    fn recorded() -> (Source, Vec<ShapeColumn>) {
        let source = deals();
        let mapping = map_columns(&source, &options()).unwrap();
        let shape = record(&source, &mapping);
        (source, shape)
    }

    #[test]
    fn an_unchanged_source_does_not_drift() {
        let (source, shape) = recorded();
        assert!(shape
            .iter()
            .any(|s| s.column == "amount" && s.qobra_type == QobraType::Number));
        assert!(
            !shape.iter().any(|s| s.column == "ref"),
            "unsupported columns are not synced"
        );
        let mapping = map_columns(&source, &options()).unwrap();
        assert_eq!(drift(&shape, &source, &mapping), vec![]);
    }

    #[test]
    fn a_shape_rebound_to_a_restored_copy_matches_columns_by_name() {
        let (source, shape) = recorded();
        // A restored copy: the columns numbered afresh (a dropped column left a gap before),
        // and one synced column missing.
        let mut restored = source.clone();
        for (i, c) in restored.columns.iter_mut().enumerate() {
            c.attnum = i as i32 + 10;
        }
        restored.columns.retain(|c| c.name != "won");
        let mapping = map_columns(&restored, &options()).unwrap();
        let stale = drift(&shape, &restored, &mapping);
        assert!(stale.iter().all(|c| !matches!(c, Change::Renamed { .. })) && !stale.is_empty());
        let rebound = rebind(&shape, &restored);
        assert_eq!(
            drift(&rebound, &restored, &mapping),
            vec![Change::Dropped {
                column: "won".into()
            }]
        );
        let amount = rebound.iter().find(|s| s.column == "amount").unwrap();
        assert_eq!(
            Some(amount.attnum),
            restored.column("amount").map(|c| c.attnum)
        );
    }

    #[test]
    fn renamed_dropped_and_retyped_columns_block_and_added_ones_wait() {
        let (mut source, shape) = recorded();
        source
            .columns
            .iter_mut()
            .find(|c| c.name == "amount")
            .unwrap()
            .name = "amount_eur".into();
        source.columns.retain(|c| c.name != "won");
        let close = source
            .columns
            .iter_mut()
            .find(|c| c.name == "close_date")
            .unwrap();
        close.type_name = "text".into();
        close.base_type_oid = 25;
        let mut extra = source.columns[1].clone();
        extra.attnum = 99;
        extra.name = "region".into();
        source.columns.push(extra);
        let mapping = map_columns(&source, &options()).unwrap();
        let changes = drift(&shape, &source, &mapping);
        let texts: Vec<String> = changes.iter().map(Change::describe).collect();
        assert!(
            texts.contains(&"column \"amount\" was renamed to \"amount_eur\"".to_owned()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"column \"won\" was dropped".to_owned()),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("column \"close_date\" is now of type text (was date)")),
            "{texts:?}"
        );
        assert!(changes.contains(&Change::Added {
            column: "region".into()
        }));
        assert!(
            !changes.contains(&Change::Added {
                column: "amount_eur".into()
            }),
            "a renamed column is not also new"
        );
        let message = blocked("public.deals", &changes).unwrap();
        assert!(
            message.starts_with("the synced columns of public.deals changed"),
            "{message}"
        );
        assert!(
            !message.contains("region"),
            "an added column does not block"
        );
        let none = std::collections::BTreeMap::new();
        assert!(hint("public.deals", &changes, &none)
            .contains(r#"field_keys => '{"amount_eur":"amount"}'"#));
        // The registration's other keys are kept in the call; the renamed column's key is the
        // one it was sent under, not its old name.
        let others = [("stage".to_owned(), "deal_stage".to_owned())].into();
        let mut custom = changes.clone();
        for c in custom.iter_mut() {
            if let Change::Renamed { key, .. } = c {
                *key = "deal_amount".into();
            }
        }
        assert!(hint("public.deals", &custom, &others)
            .contains(r#"field_keys => '{"amount_eur":"deal_amount","stage":"deal_stage"}'"#));
        let sent = apply(mapping, &shape);
        let region = sent.iter().find(|m| m.column_name == "region").unwrap();
        assert!(!region.synced && region.note == Some(Note::New));
    }

    #[test]
    fn a_type_change_within_the_same_qobra_type_does_not_block() {
        let (mut source, shape) = recorded();
        let amount = source
            .columns
            .iter_mut()
            .find(|c| c.name == "amount")
            .unwrap();
        amount.type_name = "double precision".into();
        amount.base_type_oid = 701;
        let mapping = map_columns(&source, &options()).unwrap();
        assert_eq!(
            blocked("public.deals", &drift(&shape, &source, &mapping)),
            None
        );
    }

    #[test]
    fn only_added_columns_block_nothing() {
        let changes = vec![Change::Added { column: "x".into() }];
        assert_eq!(blocked("s", &changes), None);
    }

    #[test]
    fn the_hint_keeps_every_key_through_a_swap_and_forgets_dropped_columns() {
        let renamed = |from: &str, to: &str| Change::Renamed {
            from: from.into(),
            to: to.into(),
            key: from.into(),
        };
        let changes = [
            renamed("a", "b"),
            renamed("b", "a"),
            Change::Dropped {
                column: "gone".into(),
            },
        ];
        let keys = [("gone".to_owned(), "old_gone".to_owned())].into();
        assert!(hint("public.t", &changes, &keys).contains(r#"field_keys => '{"a":"b","b":"a"}'"#));
    }
}
