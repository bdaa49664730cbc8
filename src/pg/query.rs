//! The SQL texts of snapshot reads, built in one place: the snapshot's SELECT and the census's
//! counts, for pushes and inspection alike.

use crate::pg::quote::quote_ident;
use qobra_sync_core::source::Source;
use qobra_sync_core::types::PgType;
use qobra_sync_core::wire::RecordEncoder;

/// The SELECT that reads the encoder's fields of `source` as text, with the filter and order.
/// Sampling reads (`limit` given) are ordered by `order_by`, or the first column, to be
/// repeatable; in ascending order with NULLs last, the order of a default btree index, so that
/// with the id column indexed a sample reads only the rows it shows.
pub fn snapshot_query(
    source: &Source,
    encoder: &RecordEncoder,
    filter: Option<&str>,
    order_by: Option<&str>,
    limit: Option<i64>,
) -> String {
    let list: Vec<String> = encoder
        .fields
        .iter()
        .map(|f| {
            let column = source
                .column(&f.column)
                .expect("encoder fields come from the source");
            let ident = quote_ident(&f.column);
            // money prints with a currency symbol; its numeric value is what Qobra takes.
            if column.pg_type() == Some(PgType::Money) {
                format!("{ident}::pg_catalog.numeric")
            } else {
                ident
            }
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        if list.is_empty() {
            "NULL".into()
        } else {
            list.join(", ")
        },
        source.name
    );
    sql.push_str(&where_clause(filter));
    match order_by {
        Some(column) => sql.push_str(&format!(" ORDER BY {}", quote_ident(column))),
        None if limit.is_some() && !list.is_empty() => sql.push_str(" ORDER BY 1"),
        None => {}
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    sql
}

/// ` WHERE (filter)`, or nothing.
fn where_clause(filter: Option<&str>) -> String {
    filter.map(|f| format!(" WHERE ({f})")).unwrap_or_default()
}

/// The census of a snapshot in one pass: its rows, its rows with a NULL id, and its id values
/// that appear more than once, each as text. Without an id column to check (the catalog already
/// guarantees it NOT NULL and unique), only the rows are counted.
pub fn census(source: &Source, filter: Option<&str>, id_column: Option<&str>) -> String {
    let from = format!("{}{}", source.name, where_clause(filter));
    let Some(id) = id_column.map(quote_ident) else {
        return format!("SELECT pg_catalog.count(*)::pg_catalog.text, '0', '0' FROM {from}");
    };
    format!(
        "SELECT COALESCE(pg_catalog.sum(g.n), 0)::pg_catalog.text,
                COALESCE(pg_catalog.sum(g.n) FILTER (WHERE g.v IS NULL), 0)::pg_catalog.text,
                pg_catalog.count(*) FILTER (WHERE g.v IS NOT NULL AND g.n OPERATOR(pg_catalog.>) 1)::pg_catalog.text
           FROM (SELECT {id} AS v, pg_catalog.count(*) AS n FROM {from} GROUP BY {id}) g"
    )
}

/// The five id values of a snapshot that appear most often (more than once), as one text
/// `value (n times), …`, most repeated first.
pub fn duplicate_ids(source: &Source, filter: Option<&str>, id_column: &str) -> String {
    let id = quote_ident(id_column);
    format!(
        "SELECT pg_catalog.string_agg(d.v OPERATOR(pg_catalog.||) ' (' OPERATOR(pg_catalog.||) d.n OPERATOR(pg_catalog.||) ' times)', ', ' ORDER BY d.n DESC, d.v) FILTER (WHERE d.rank OPERATOR(pg_catalog.<=) 5)
           FROM (SELECT {id}::pg_catalog.text AS v, pg_catalog.count(*) AS n, pg_catalog.row_number() OVER (ORDER BY pg_catalog.count(*) DESC, {id}::pg_catalog.text) AS rank
                   FROM {}{} GROUP BY {id} HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1) d",
        source.name,
        where_clause(filter)
    )
}
