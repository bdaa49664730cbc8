//! Filters: a WHERE condition over a source, parsed and analysed by Postgres itself.
//!
//! The text is parsed as the WHERE clause of `SELECT FROM <source> WHERE …`; the parse tree must
//! be exactly that one statement (so `; DROP …`, `UNION …`, `ORDER BY …` and friends are refused
//! by structure, not by string matching). The analysed expression is then walked node by node and
//! accepted only when every node is of an allowed kind: columns of the source, constants and
//! casts of built-in types, built-in operators and functions that are immutable (or a short list
//! of stable date/time ones), CASE, COALESCE, NULLIF, IN lists, IS [NOT] NULL, boolean logic.
//! What is stored and executed is the canonical text Postgres deparses from the analysed tree.

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::reader::as_reader;
use crate::pg::subxact::attempt;
use pgrx::pg_sys::{self, NodeTag};
use pgrx::{is_a, pg_guard, PgList};
use qobra_sync_core::source::Source;
use std::ffi::{c_void, CStr, CString};

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;

/// Stable built-in functions a filter may call: the clock, and date/time arithmetic on it.
const STABLE_ALLOWED: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "date",
    "timestamptz",
    "timestamp",
    "date_trunc",
    "date_part",
    "extract",
    "to_char",
    "age",
    "timezone",
    "isfinite",
];

/// Stable input and output functions a constant or a cast through text may go through: the
/// date/time ones, whose only dependency (DateStyle, TimeZone, IntervalStyle) every read pins.
/// Any other one that is not immutable (the reg* types, aclitem, money…) depends on the catalog
/// or on a setting a read does not pin, so the same text could mean something else next time.
const STABLE_IO_ALLOWED: &[&str] = &[
    "date_in",
    "date_out",
    "time_in",
    "timetz_in",
    "timestamp_in",
    "timestamp_out",
    "timestamptz_in",
    "timestamptz_out",
    "interval_in",
    "interval_out",
];

/// Parses, checks and canonicalises `text` as a filter over `source`, as the reader role and
/// under the reader's pinned settings (so constants deparse the same way they will be read).
pub fn canonical(source: &Source, text: &str, reader: pg_sys::Oid) -> Result<String> {
    let refuse = |what: String| {
        Error::new(SqlState::FeatureNotSupported, format!("filter refused: {what}"))
            .hint("A filter is one boolean condition over the source's columns, using built-in operators and functions, e.g. stage = 'Closed Won' AND close_date >= date '2026-01-01'.")
    };
    if text.trim().is_empty() {
        return Err(
            Error::new(SqlState::InvalidParameterValue, "filter is empty")
                .hint("Pass NULL for no filter."),
        );
    }
    if text.len() > MAX_FILTER_BYTES {
        return Err(refuse(format!(
            "it is {} bytes long, more than {MAX_FILTER_BYTES}",
            text.len()
        )));
    }
    let sql = format!("SELECT FROM {} WHERE {}", source.name, text);
    let sql_c = CString::new(sql).map_err(|_| refuse("it contains a NUL character".into()))?;
    let relid = pg_sys::Oid::from(source.oid);
    // SAFETY: `analyse` runs inside a transaction, in the subtransaction `attempt` opens, which
    // catches its errors; `sql_c` is NUL-terminated and outlives it.
    let outcome = as_reader(reader, || Ok(attempt(|| unsafe { analyse(&sql_c, relid) })))?;
    match outcome {
        Ok(Ok(canonical)) => Ok(canonical),
        Ok(Err(construct)) => Err(refuse(construct)),
        Err(caught) => Err(Error::new(SqlState::SyntaxError, format!("invalid filter: {}", caught.message))
            .detail(caught.detail.unwrap_or_else(|| format!("Filter: {text}")))
            .hint(caught.hint.unwrap_or_else(|| "A filter is one boolean condition over the source's columns, e.g. stage = 'Closed Won'.".into()))),
    }
}

/// Parses and analyses the wrapped statement; the inner error names a refused construct.
unsafe fn analyse(sql: &CStr, relid: pg_sys::Oid) -> std::result::Result<String, String> {
    // SAFETY: the caller runs this in a transaction, with a NUL-terminated statement that outlives
    // it. The trees raw_parser and parse_analyze_fixedparams return live in the current memory
    // context for this whole function; `stmt` is checked to be a SelectStmt before the cast, and a
    // SELECT's Query always has a jointree. `relid` is the source the statement names, which parse
    // analysis just opened and locked, so get_rel_name finds it.
    unsafe {
        let raw = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            sql.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        if raw.len() != 1 {
            return Err("it must be one condition, not several statements".into());
        }
        let rawstmt = raw.get_ptr(0).expect("one statement");
        let stmt = (*rawstmt).stmt;
        if !is_a(stmt, NodeTag::T_SelectStmt) {
            return Err("it must be one condition".into());
        }
        let select = stmt as *mut pg_sys::SelectStmt;
        let s = &*select;
        let extra = [
            (
                s.op != pg_sys::SetOperation::SETOP_NONE,
                "UNION, INTERSECT or EXCEPT",
            ),
            (!s.withClause.is_null(), "WITH"),
            (!s.distinctClause.is_null(), "DISTINCT"),
            (!s.intoClause.is_null(), "INTO"),
            (!s.targetList.is_null(), "a select list"),
            (
                PgList::<pg_sys::Node>::from_pg(s.fromClause).len() != 1,
                "another FROM item",
            ),
            (!s.groupClause.is_null(), "GROUP BY"),
            (!s.havingClause.is_null(), "HAVING"),
            (!s.windowClause.is_null(), "WINDOW"),
            (!s.valuesLists.is_null(), "VALUES"),
            (!s.sortClause.is_null(), "ORDER BY"),
            (
                !s.limitOffset.is_null() || !s.limitCount.is_null(),
                "LIMIT or OFFSET",
            ),
            (!s.lockingClause.is_null(), "a locking clause"),
            (s.whereClause.is_null(), "an empty condition"),
        ];
        if let Some((_, what)) = extra.iter().find(|(present, _)| *present) {
            return Err(format!("it contains {what}"));
        }
        let query = pg_sys::parse_analyze_fixedparams(
            rawstmt,
            sql.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        let q = &*query;
        if q.hasSubLinks {
            return Err("it contains a subquery".into());
        }
        if q.hasAggs {
            return Err("it contains an aggregate function".into());
        }
        if q.hasWindowFuncs {
            return Err("it contains a window function".into());
        }
        if q.hasTargetSRFs {
            return Err("it contains a set-returning function".into());
        }
        let quals = (*q.jointree).quals;
        let mut refused: Option<String> = None;
        check_node(quals, &mut refused);
        if let Some(what) = refused {
            return Err(what);
        }
        let relname = pg_sys::get_rel_name(relid);
        let context = pg_sys::deparse_context_for(relname, relid);
        let text = pg_sys::deparse_expression(quals, context, false, false);
        Ok(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

/// Checks `node` and everything below it; records the first refused construct.
unsafe fn check_node(node: *mut pg_sys::Node, refused: &mut Option<String>) -> bool {
    // SAFETY: `refused` is a live &mut for the whole walk; only `walker` reads the context pointer
    // back, as the same type.
    unsafe { walker(node, (refused as *mut Option<String>).cast()) }
}

/// The tree walker: returns true (stop) as soon as a node is refused. Guarded: an error inside
/// (too deep a filter for `check_stack_depth`) goes back to PostgreSQL as its own error, never
/// as a Rust panic unwinding through `expression_tree_walker`'s C frames.
#[pg_guard]
unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    // SAFETY: expression_tree_walker hands us each node (or null) of the analysed tree and the
    // context `check_node` made from a live &mut Option<String>; check_stack_depth bounds
    // recursion.
    unsafe {
        if node.is_null() {
            return false;
        }
        pg_sys::check_stack_depth();
        let refused = &mut *(context as *mut Option<String>);
        if let Some(why) = refuse_node(node) {
            *refused = Some(why);
            return true;
        }
        pg_sys::expression_tree_walker(node, Some(walker), context)
    }
}

/// Whether an OID names a built-in object (created by initdb, not by users or extensions).
fn builtin(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < pg_sys::FirstNormalObjectId
}

/// A function's name, for messages.
unsafe fn function_name(funcid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup by OID, inside a transaction; get_func_name returns a palloc'd,
    // NUL-terminated copy or null, checked before it is read.
    unsafe {
        let name = pg_sys::get_func_name(funcid);
        if name.is_null() {
            format!("function {}", funcid.to_u32())
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// Why a function may not be called from a filter, or None when it may.
unsafe fn refuse_function(funcid: pg_sys::Oid) -> Option<String> {
    // SAFETY: syscache lookups by function OID, inside a transaction; a missing function raises an
    // error, which `attempt` catches.
    unsafe {
        let name = function_name(funcid);
        if !builtin(funcid) {
            return Some(format!("user-defined function {name}()"));
        }
        if pg_sys::get_func_retset(funcid) {
            return Some(format!("set-returning function {name}()"));
        }
        match pg_sys::func_volatile(funcid) as u8 {
            b'i' => None,
            b's' if STABLE_ALLOWED.contains(&name.as_str())
                || is_datetime_operator_function(&name) =>
            {
                None
            }
            b's' => Some(format!("function {name}() is not immutable")),
            _ => Some(format!("volatile function {name}()")),
        }
    }
}

/// Which of a type's text conversions a constant or cast goes through.
#[derive(Clone, Copy)]
enum Io {
    /// Text to value (a literal, the target of a cast through text).
    Input,
    /// Value to text (the source of a cast through text).
    Output,
}

/// Why a constant or cast (`what`) going through `typid`'s input or output function is refused:
/// the function is neither immutable nor a date/time one ([`STABLE_IO_ALLOWED`]). Arrays and
/// ranges are judged by their element type, whose conversion theirs calls.
unsafe fn refuse_io(typid: pg_sys::Oid, io: Io, what: &str) -> Option<String> {
    // SAFETY: syscache lookups by type OID, inside a transaction; getTypeInputInfo and
    // getTypeOutputInfo write into locals and raise an error for a missing or shell type.
    unsafe {
        let mut typid = typid;
        for _ in 0..4 {
            let element = pg_sys::get_element_type(typid);
            let element = if element != pg_sys::InvalidOid {
                element
            } else {
                pg_sys::get_range_subtype(typid)
            };
            if element == pg_sys::InvalidOid {
                break;
            }
            typid = element;
        }
        let mut function = pg_sys::InvalidOid;
        match io {
            Io::Input => {
                let mut param = pg_sys::InvalidOid;
                pg_sys::getTypeInputInfo(typid, &mut function, &mut param);
            }
            Io::Output => {
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(typid, &mut function, &mut varlena);
            }
        }
        let name = function_name(function);
        match pg_sys::func_volatile(function) as u8 {
            b'i' => None,
            b's' if STABLE_IO_ALLOWED.contains(&name.as_str()) => None,
            _ => Some(format!(
                "{what} through {name}(), which is not immutable (its meaning depends on the catalog or on settings)"
            )),
        }
    }
}

/// Whether a stable built-in function is date/time comparison or arithmetic (`date < timestamptz`…).
fn is_datetime_operator_function(name: &str) -> bool {
    ["date_", "timestamp_", "timestamptz_"]
        .iter()
        .any(|p| name.starts_with(p))
        && [
            "_eq_", "_ne_", "_lt_", "_le_", "_gt_", "_ge_", "_cmp_", "_pl_", "_mi_",
        ]
        .iter()
        .any(|op| name.contains(op))
}

/// Why `node` is refused, or None when this node (not its children) is acceptable.
// One arm per kind of node, in one match: the whole list of what a filter may hold reads at a
// glance, which matters more here than a short function.
unsafe fn refuse_node(node: *mut pg_sys::Node) -> Option<String> {
    // SAFETY: `node` is a non-null node of the analysed tree (`walker` checked); each cast is to
    // the struct its tag names (DistinctExpr and NullIfExpr are typedefs of OpExpr), and
    // set_opfuncid and set_sa_opfuncid only fill in a field of that node, which our tree owns.
    unsafe {
        let tag = (*node).type_;
        match tag {
            NodeTag::T_Var => {
                let var = &*(node as *mut pg_sys::Var);
                if var.varattno <= 0 {
                    return Some("a system column or whole-row reference".into());
                }
                None
            }
            NodeTag::T_Const => {
                let c = &*(node as *mut pg_sys::Const);
                if !builtin(c.consttype) {
                    return Some("a constant of a user-defined type".into());
                }
                refuse_io(c.consttype, Io::Input, "a constant")
            }
            NodeTag::T_FuncExpr => refuse_function((*(node as *mut pg_sys::FuncExpr)).funcid),
            NodeTag::T_OpExpr | NodeTag::T_DistinctExpr | NodeTag::T_NullIfExpr => {
                let op = node as *mut pg_sys::OpExpr;
                if !builtin((*op).opno) {
                    return Some("a user-defined operator".into());
                }
                pg_sys::set_opfuncid(op);
                refuse_function((*op).opfuncid)
            }
            NodeTag::T_ScalarArrayOpExpr => {
                let op = node as *mut pg_sys::ScalarArrayOpExpr;
                if !builtin((*op).opno) {
                    return Some("a user-defined operator".into());
                }
                pg_sys::set_sa_opfuncid(op);
                refuse_function((*op).opfuncid)
            }
            NodeTag::T_RowCompareExpr => {
                let rc = &*(node as *mut pg_sys::RowCompareExpr);
                let ops = PgList::<pg_sys::Oid>::from_pg(rc.opnos);
                let user_defined = ops.iter_oid().any(|o| !builtin(o));
                user_defined.then(|| "a user-defined operator".into())
            }
            NodeTag::T_RelabelType => {
                let r = &*(node as *mut pg_sys::RelabelType);
                (!builtin(r.resulttype)).then(|| "a cast to a user-defined type".into())
            }
            NodeTag::T_CoerceViaIO => {
                let c = &*(node as *mut pg_sys::CoerceViaIO);
                if !builtin(c.resulttype) {
                    return Some("a cast to a user-defined type".into());
                }
                let from = pg_sys::exprType(c.arg.cast());
                refuse_io(from, Io::Output, "a cast")
                    .or_else(|| refuse_io(c.resulttype, Io::Input, "a cast"))
            }
            NodeTag::T_ArrayCoerceExpr => {
                let c = &*(node as *mut pg_sys::ArrayCoerceExpr);
                (!builtin(c.resulttype)).then(|| "a cast to a user-defined type".into())
            }
            NodeTag::T_CollateExpr => {
                let c = &*(node as *mut pg_sys::CollateExpr);
                (!builtin(c.collOid)).then(|| "a user-defined collation".into())
            }
            NodeTag::T_SQLValueFunction => {
                use pg_sys::SQLValueFunctionOp::*;
                let f = &*(node as *mut pg_sys::SQLValueFunction);
                match f.op {
                    SVFOP_CURRENT_DATE
                    | SVFOP_CURRENT_TIME
                    | SVFOP_CURRENT_TIME_N
                    | SVFOP_CURRENT_TIMESTAMP
                    | SVFOP_CURRENT_TIMESTAMP_N
                    | SVFOP_LOCALTIME
                    | SVFOP_LOCALTIME_N
                    | SVFOP_LOCALTIMESTAMP
                    | SVFOP_LOCALTIMESTAMP_N => None,
                    _ => Some("a session information function (current_user…)".into()),
                }
            }
            NodeTag::T_BoolExpr
            | NodeTag::T_NullTest
            | NodeTag::T_BooleanTest
            | NodeTag::T_CaseExpr
            | NodeTag::T_CaseWhen
            | NodeTag::T_CaseTestExpr
            | NodeTag::T_CoalesceExpr
            | NodeTag::T_MinMaxExpr
            | NodeTag::T_ArrayExpr
            | NodeTag::T_List => None,
            NodeTag::T_SubLink | NodeTag::T_SubPlan | NodeTag::T_AlternativeSubPlan => {
                Some("a subquery".into())
            }
            NodeTag::T_Aggref | NodeTag::T_GroupingFunc => Some("an aggregate function".into()),
            NodeTag::T_WindowFunc => Some("a window function".into()),
            NodeTag::T_Param => Some("a parameter".into()),
            NodeTag::T_NextValueExpr => Some("a sequence function".into()),
            NodeTag::T_CoerceToDomain | NodeTag::T_CoerceToDomainValue => {
                Some("a cast to a domain".into())
            }
            other => Some(format!("an unsupported construct ({other:?})")),
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn filters_are_canonicalised_and_checked_by_postgres() {
        crate::testing::fixture();
        let reader = crate::testing::role("t_reader");
        let source = crate::pg::catalog::describe_source(crate::testing::oid("t_deals")).unwrap();
        Spi::run("SET DateStyle = 'SQL, DMY'").unwrap();
        let canonical = crate::pg::filter::canonical(
            &source,
            "closed >= '2026-01-01' and title <> 'x'",
            reader,
        )
        .unwrap();
        assert_eq!(
            canonical,
            "((closed >= '2026-01-01'::date) AND (title <> 'x'::text))"
        );
        for bad in [
            "true; delete from t_deals",
            "id in (select 1)",
            "pg_sleep(1) is null",
            "xmin = '1'",
            "title",
        ] {
            assert!(
                crate::pg::filter::canonical(&source, bad, reader).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM t_deals").unwrap(),
            Some(2)
        );
    }
}
