#!/usr/bin/env python3
"""Checks that the extension's own SQL cannot be re-resolved through a search_path.

Every operator the extension's SQL uses must be written OPERATOR(pg_catalog.op), every function
call schema-qualified (pg_catalog., qobra_sync. or @extschema@.), and no construct may name an
operator implicitly (IN lists, LIKE, BETWEEN, simple CASE): a session, or code of a source that
was just read, could otherwise put its own schema first and have the extension call its code.

What is checked: the SQL files of sql/ that CREATE EXTENSION runs (the released install scripts
are frozen history and left out), and every string literal in src/ that holds SQL (a SELECT,
INSERT, UPDATE, DELETE or WITH statement), with format! placeholders read as names.

Usage: qualified_sql.py [ROOT]      exit 1 and a list of findings when there are any.
       qualified_sql.py --self-test  proves the checks find what they must.
"""

import re
import sys
from pathlib import Path

# Words followed by "(" that are SQL syntax, not calls of a function found by name.
SYNTAX = {
    "select", "from", "where", "and", "or", "not", "exists", "any", "all", "some", "array",
    "values", "row", "filter", "over", "as", "on", "using", "join", "with", "check",
    "key", "unique", "references", "into", "table", "setof", "coalesce", "nullif", "greatest",
    "least", "cast", "extract", "position", "substring", "trim", "overlay", "interval",
    "numeric", "varchar", "char", "character", "bit", "varying", "timestamp", "time",
    "decimal", "float", "partition", "by", "recursive", "lateral", "returning", "then", "else",
    "when", "in", "is", "operator", "union", "except", "intersect", "case", "set", "conflict",
    "do", "update", "default", "distinct", "grouping", "view", "primary", "foreign", "index",
    "limit", "offset", "order", "group", "having", "end", "null", "true", "false",
}
# Constructs that resolve an operator by name although no operator is written.
IMPLICIT = [
    (re.compile(r"\bNOT\s+IN\s*\(|\bIN\s*\(", re.I), "IN (…) resolves = by name: use OPERATOR(pg_catalog.=) ANY (ARRAY[…])"),
    (re.compile(r"\b(I?LIKE)\b", re.I), "LIKE resolves ~~ by name: use OPERATOR(pg_catalog.~~)"),
    (re.compile(r"\bBETWEEN\b", re.I), "BETWEEN resolves <= and >= by name"),
    (re.compile(r"\bCASE\s+(?!WHEN\b)[\w.\"]+\s+WHEN\b", re.I), "a simple CASE resolves = by name"),
    (re.compile(r"\bIS\s+(NOT\s+)?DISTINCT\s+FROM\b", re.I), "IS DISTINCT FROM resolves = by name"),
]
OPERATOR_CHARS = re.compile(r"[+\-*/<>=~!@#%^&|`?]+")
QUALIFIED_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\s*\.\s*[^)\s]+\s*\)", re.I)
CALL = re.compile(r"(?<![\w.\"])([A-Za-z_][\w$]*)\s*\(")
SQL_START = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|WITH\s+\w+)\b")


# The functions of core/src/names.rs: a placeholder naming one stands for its qualified name.
NAMES_RS = Path(__file__).resolve().parents[2] / "core/src/names.rs"
QUALIFIED_CONSTANTS = (
    set(re.findall(r"(\w+) = Object\(", NAMES_RS.read_text())) if NAMES_RS.exists() else set()
)


def neutral(sql):
    """SQL with comments, literals, quoted names and format! placeholders made neutral; a
    placeholder of a names.rs constant reads as the qualified name it displays."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    sql = re.sub(r"\$(\w*)\$.*?\$\1\$", " 'lit' ", sql, flags=re.S)
    sql = re.sub(r"[Ee]?'(?:[^']|'')*'", " 'lit' ", sql)
    sql = re.sub(r'"(?:[^"]|"")*"', " qname ", sql)
    sql = re.sub(r"\{(\w+)\}", lambda m: " qobra_sync.name " if m[1] in QUALIFIED_CONSTANTS else m[0], sql)
    sql = re.sub(r"\{[^{}]*\}", " name ", sql)
    sql = sql.replace("@extschema@", "qobra_sync")
    return sql


def assignments_removed(text):
    """`text` without the `column =` of UPDATE … SET lists, which assign and resolve nothing."""
    def strip(m):
        return re.sub(r"(^|,)(\s*[\w.]+\s*)=(?!>)", r"\1\2 ", m.group(0))
    return re.sub(r"(?<=\bSET\b).*?(?=\bWHERE\b|\bRETURNING\b|\bFROM\b|;|$)", strip, text,
                  flags=re.I | re.S)


def mixed_operators(text):
    """Places where two different OPERATOR(…) follow each other without parentheses: written
    that way every operator binds at one precedence, left to right, so `a < b - c` would mean
    `(a < b) - c`."""
    out = []
    tokens = re.findall(r"OPERATOR\s*\(\s*pg_catalog\s*\.\s*([^)\s]+)\s*\)|(\()|(\))|\b(AND|OR|NOT|THEN|WHEN|ELSE|END|FROM|WHERE|ON|AS|SELECT)\b|(,)",
                        text, flags=re.I)
    last = {}  # depth -> the previous operator at that depth since a separator
    depth = 0
    for op, opening, closing, word, comma in tokens:
        if opening:
            depth += 1
        elif closing:
            last.pop(depth, None)
            depth -= 1
        elif word or comma:
            last.pop(depth, None)
        elif op:
            previous = last.get(depth)
            if previous and previous != op and not (previous == op == "||"):
                out.append(f"OPERATOR(pg_catalog.{previous}) then OPERATOR(pg_catalog.{op}) without "
                           "parentheses bind left to right at one precedence: add parentheses")
            last[depth] = op
    return out


def findings(sql):
    """What is unqualified in one piece of SQL: a list of messages."""
    text = neutral(sql)
    out = mixed_operators(text)
    for pattern, why in IMPLICIT:
        for m in pattern.finditer(text):
            out.append(f"{why}: …{text[max(0, m.start() - 30):m.end() + 30].strip()}…")
    bare = QUALIFIED_OPERATOR.sub(" ", text)
    bare = assignments_removed(bare)
    bare = re.sub(r"::", " ", bare)            # casts
    bare = re.sub(r"=>", " ", bare)            # named arguments
    bare = re.sub(r"\$\d+", " ", bare)         # parameters
    bare = re.sub(r"(?<=[(,.\s])\*(?=\s*[),]|\s+FROM\b)", " ", bare, flags=re.I)  # count(*), SELECT *, r.*
    bare = re.sub(r"'lit'", " ", bare)
    for m in OPERATOR_CHARS.finditer(bare):
        context = bare[max(0, m.start() - 30):m.end() + 30].strip()
        out.append(f"unqualified operator {m.group()!r}: …{context}…")
    for m in CALL.finditer(text):
        word = m.group(1)
        if word.lower() in SYNTAX:
            continue
        if re.match(r"\([^()]*\)\s*AS\s*(NOT\s+MATERIALIZED\s*|MATERIALIZED\s*)?\(", text[m.end() - 1:], re.I):
            continue  # a common table expression's column list
        before = text[:m.start()].rstrip()
        if re.search(r"(pg_catalog|qobra_sync)\s*\.\s*$", before):
            continue
        out.append(f"unqualified function {word}(): …{text[max(0, m.start() - 30):m.end() + 30].strip()}…")
    return out


def rust_strings(source):
    """The string literals of a Rust file, with their line numbers: "…" and r#"…"#."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
            continue
        raw = re.match(r'r(#*)"', source[i:])
        if raw and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            hashes = raw.group(1)
            end = source.find('"' + hashes, i + len(raw.group()))
            out.append((source.count("\n", 0, i) + 1, source[i + len(raw.group()):end]))
            i = end + 1 + len(hashes)
            continue
        if c == "'" and re.match(r"'(\\.|[^\\'])'", source[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", source[i:]).group())
            continue
        if c == '"':
            j, chunk = i + 1, []
            while j < n and source[j] != '"':
                if source[j] == "\\":
                    nxt = source[j + 1]
                    if nxt == "\n":
                        j += 2
                        while j < n and source[j] in " \t\n":
                            j += 1
                        continue
                    chunk.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, nxt))
                    j += 2
                    continue
                chunk.append(source[j])
                j += 1
            out.append((source.count("\n", 0, i) + 1, "".join(chunk)))
            i = j + 1
            continue
        i += 1
    return out


def check_tree(root):
    """Every finding in the extension's SQL under `root`, as 'path:line: message'."""
    out = []
    for path in sorted((root / "sql").glob("*.sql")):
        if re.match(r"qobra_sync--[^-]+\.sql$", path.name):
            continue  # a released install script: history, not what CREATE EXTENSION runs now
        for f in findings(path.read_text()):
            out.append(f"{path.relative_to(root)}: {f}")
    for path in sorted((root / "src").rglob("*.rs")):
        if path.name == "testing.rs":
            continue  # the fixtures of the pg_tests: their SQL, not the extension's
        source = path.read_text()
        # Test modules run SQL of their own, not the extension's: they end the file.
        tests = re.search(r'^#\[cfg\(any\(test, feature = "pg_test"\)\)\]', source, re.M)
        for line, text in rust_strings(source[:tests.start()] if tests else source):
            if SQL_START.search(text) and not text.lstrip().startswith(("qobra_sync", "run ")):
                for f in findings(text):
                    out.append(f"{path.relative_to(root)}:{line}: {f}")
    return out


def self_test():
    """The checks find each kind of unqualified name, and pass what is qualified."""
    bad = {
        "SELECT 1 FROM t WHERE a = $1": "operator '='",
        "SELECT count(*) FROM t": "function count()",
        "SELECT x FROM t WHERE y IN ('a', 'b')": "IN (",
        "SELECT x FROM t WHERE y LIKE 'a%'": "LIKE",
        "SELECT a || b FROM t": "operator '||'",
        "SELECT now() - started_at FROM t": "function now()",
        "UPDATE t SET n = n + 1 WHERE id OPERATOR(pg_catalog.=) $1": "operator '+'",
        "UPDATE t SET n = 1 WHERE id = $1": "operator '='",
        "SELECT 1 WHERE a OPERATOR(pg_catalog.<) pg_catalog.now() OPERATOR(pg_catalog.-) b": "without parentheses",
        "SELECT CASE s WHEN 'a' THEN 1 END FROM t": "simple CASE",
        "SELECT {} FROM t WHERE {} > 1": "operator '>'",
        "SELECT {ANY_NAME}(1)": "unqualified function name()",
    }
    good = [
        "SELECT pg_catalog.count(*) FROM t WHERE a OPERATOR(pg_catalog.=) $1::pg_catalog.int4",
        "SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::qobra_sync.runs, $1) r",
        "SELECT x FROM t WHERE y OPERATOR(pg_catalog.=) ANY (ARRAY['a', 'b']) -- a = b",
        "SELECT pg_catalog.make_interval(days => $1), 'a = b', \"odd=name\" FROM {}",
        "INSERT INTO qobra_sync.runs (a, b) VALUES ($1, $2) RETURNING run_id",
        "WITH RECURSIVE base(a, b) AS (SELECT 1) SELECT 1 FROM @extschema@.f() x",
        "Unregister it: SELECT {UNREGISTER_TABLE}(data_table_key => 'k')",
        "UPDATE t SET a = $1, b = pg_catalog.now() WHERE c OPERATOR(pg_catalog.=) $2",
        "SELECT 1 WHERE a OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) b)",
        "SELECT a OPERATOR(pg_catalog.||) b OPERATOR(pg_catalog.||) c WHERE x OPERATOR(pg_catalog.=) 1 AND y OPERATOR(pg_catalog.<>) 2",
    ]
    failures = []
    for sql, expected in bad.items():
        found = findings(sql)
        if not any(expected in f for f in found):
            failures.append(f"not found in {sql!r}: {expected} (found {found})")
    for sql in good:
        if findings(sql):
            failures.append(f"false finding in {sql!r}: {findings(sql)}")
    strings = rust_strings('let a = "SELECT 1 \\\n    FROM t"; let b = r#"SELECT "x" = 1"#; // "no"\n')
    if [s for _, s in strings] != ["SELECT 1 FROM t", 'SELECT "x" = 1']:
        failures.append(f"Rust strings read wrong: {strings}")
    return failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        failures = self_test()
        print("\n".join(failures) or "qualified_sql self-test: ok")
        return 1 if failures else 0
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    out = check_tree(root)
    print("\n".join(out) or "qualified_sql: every operator and function of the extension's SQL is qualified")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
