#!/usr/bin/env python3
"""Names users read in messages come from one place: core/src/names.rs.

The settings, functions and relations it lists may not be written as string literals in the
Rust code of the extension and its core (src/, core/src/), outside names.rs itself and outside
test modules: a message writes them with `{}` from the constants, so a rename is one edit that
the extension's tests check. SQL text may name relations (queries read them), and a default of
a function's argument is a literal by pgrx's rule; settings and functions SQL text names come
from the constants too.

Usage: names.py [ROOT]        exit 1 with the findings when there are any.
       names.py --self-test   proves the check finds a literal and leaves the rest alone.
"""

import re
import sys
from pathlib import Path

NAMES_RS = "core/src/names.rs"
TEST_MODULE = re.compile(r'^#\[cfg\((test|any\(test, feature = "pg_test"\))\)\]\s*\n(#\[(pgrx::)?pg_schema\]\s*\n)?(pub(\(crate\))? )?mod (tests|pg_test)', re.M)
LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
# A default of a SQL function's argument: pgrx takes only a literal there.
PGRX_DEFAULT = re.compile(r"default!\(\s*[\w<>&' ]+,\s*$")
COMMENT = re.compile(r"^[ \t]*//.*$", re.M)


def guarded(names_rs):
    """The names whose literal spelling is refused: settings and functions anywhere, relations
    outside SQL text."""
    settings = re.findall(r'Setting\(c"qobra_sync\.(\w+)"\)', names_rs)
    block = names_rs[names_rs.index("pub mod function"):names_rs.index("pub mod relation")]
    functions = re.findall(r'Object\("(\w+)"\)', block)
    relations = re.findall(r'Object\("(\w+)"\)', names_rs[names_rs.index("pub mod relation"):])
    return settings + functions, relations


# SQL text: a query may name the relations it reads.
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|WITH)\b|::regclass")


def findings_in(path, text, names):
    """Each literal in `text` (test module and comments left out) that spells a guarded name."""
    anywhere, outside_sql = names
    cut = TEST_MODULE.search(text)
    body = COMMENT.sub("", text[: cut.start()] if cut else text)
    pattern = re.compile(r"qobra_sync\.(%s)\b" % "|".join(map(re.escape, anywhere)))
    in_messages = re.compile(r"qobra_sync\.(%s)\b" % "|".join(map(re.escape, outside_sql)))
    out = []
    for lit in LITERAL.finditer(body):
        if PGRX_DEFAULT.search(body, 0, lit.start()):
            continue
        hits = list(pattern.finditer(lit.group(0)))
        if not SQL.search(lit.group(0)):
            hits += in_messages.finditer(lit.group(0))
        for hit in hits:
            line = body.count("\n", 0, lit.start()) + 1
            out.append(f"{path}:{line}: qobra_sync.{hit[1]} spelled out; use the constant of {NAMES_RS}")
    return out


def check(root):
    """Every finding under `root`."""
    names = guarded((root / NAMES_RS).read_text())
    out = []
    for crate in ["src", "core/src"]:
        for path in sorted((root / crate).rglob("*.rs")):
            rel = path.relative_to(root).as_posix()
            if rel == NAMES_RS:
                continue
            out.extend(findings_in(rel, path.read_text(), names))
    return out


def self_test():
    """The check sees a spelled-out setting and function, and nothing in comments or tests."""
    names = (["api_key_file", "set_destination"], ["runs"])
    text = (
        '// qobra_sync.api_key_file in a comment\n'
        'fn f() { e.hint("set qobra_sync.api_key_file"); }\n'
        'fn g() { q("SELECT qobra_sync.set_destination()"); q("FROM qobra_sync.runs"); }\n'
        'fn h() { e.hint(format!("set {}", API_KEY_FILE)); e.hint("see qobra_sync.runs"); }\n'
        'fn n(zone: default!(Option<&str>, "current_setting(\'qobra_sync.api_key_file\')")) {}\n'
        '#[cfg(test)]\nmod tests { fn t() { assert!(m.contains("qobra_sync.api_key_file")); } }\n'
    )
    got = findings_in("x.rs", text, names)
    want = [
        f"x.rs:2: qobra_sync.api_key_file spelled out; use the constant of {NAMES_RS}",
        f"x.rs:3: qobra_sync.set_destination spelled out; use the constant of {NAMES_RS}",
        f"x.rs:4: qobra_sync.runs spelled out; use the constant of {NAMES_RS}",
    ]
    return [] if got == want else [f"names self-test: {got}"]


def main():
    if sys.argv[1:] == ["--self-test"]:
        failures = self_test()
        print("\n".join(failures) or "names self-test: ok")
        return 1 if failures else 0
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    out = check(root)
    print("\n".join(out) or "names: every setting, function and relation in messages comes from names.rs")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
