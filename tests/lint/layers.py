#!/usr/bin/env python3
"""Checks the shape of the code: the extension's layers import only downward, and no crate of
the repository has an import circle between its modules.

The extension (src/) is in layers, top to bottom:
    api       the SQL functions
    inspect   column mapping, validate, preview, csv_template  \
    sync      pushes, runs, imports, the worker                 / side by side: neither imports the other
    registry  what is registered, the destination
    pg        PostgreSQL's machinery (SPI, catalog, parser, locks, settings, shared memory, log)
A module may import its own layer and the layers below it, never one above or beside it, nor
call into the crate root (lib.rs), which is above them all. `unsafe` and `pg_sys` are written in
src/pg/ only.
In every crate (src/, core/src/, fake_qobra/src/) the modules' `use` graph has no cycle.
Test modules (the `#[cfg(test)]` / `pg_test` module that ends a file) are left out.

Usage: layers.py [ROOT]        exit 1 with the findings when there are any.
       layers.py --self-test   proves the checks find a layering breach and a cycle.
"""

import re
import sys
from pathlib import Path

LAYERS = {"api": 4, "inspect": 3, "sync": 3, "registry": 2, "pg": 1}
TEST_MODULE = re.compile(r'^#\[cfg\((test|any\(test, feature = "pg_test"\))\)\]\s*\n(#\[pg_schema\]\s*\n)?(pub(\(crate\))? )?mod tests', re.M)
PATH = re.compile(r"\b(crate|super)((?:::\w+)*)(::\{([^}]*)\})?")


def module_name(crate_src, path):
    """The module path of a file: src/pg/catalog.rs -> ('pg', 'catalog'); lib.rs -> ()."""
    parts = list(path.relative_to(crate_src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def modules_of(crate_src):
    """Every module of a crate by its path, with the file's text (test module cut off)."""
    out = {}
    for path in sorted(crate_src.rglob("*.rs")):
        text = path.read_text()
        cut = TEST_MODULE.search(text)
        out[module_name(crate_src, path)] = text[:cut.start()] if cut else text
    return out


def references(module, text, known):
    """The modules `module`'s code names (`crate::a::b…`, `super::…`, brace lists), each
    resolved to the longest known module prefix."""
    found = set()
    for m in PATH.finditer(text):
        head, rest, _, braced = m.groups()
        base = () if head == "crate" else module[:-1]
        segments = tuple(s for s in rest.split("::") if s)
        targets = [base + segments]
        if braced:
            for item in braced.split(","):
                item = item.strip().split(" as ")[0].split("::")
                if item and item[0] and item[0] != "self":
                    targets.append(base + segments + tuple(item))
        for t in targets:
            while t and t not in known:
                t = t[:-1]
            if t and t != module:
                found.add(t)
            elif not t and head == "crate" and segments:
                found.add(())  # an item of the crate root (lib.rs)
    return found


def graph(crate_src):
    """The crate's module graph: module -> the modules it references."""
    mods = modules_of(crate_src)
    return {m: references(m, text, mods.keys()) for m, text in mods.items()}


def cycles(edges):
    """One cycle per strongly connected group of modules that import each other, as a list
    of module names."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted("::".join(g) or "crate" for g in group))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def layer_breaches(edges):
    """Imports of the extension that go up a layer or sideways between inspect and sync."""
    out = []
    for src, targets in sorted(edges.items()):
        if not src or src[0] not in LAYERS:
            continue
        for dst in sorted(targets):
            if not dst:
                out.append(f"src/{'/'.join(src)}: calls into the crate root (lib.rs), above every layer")
                continue
            if dst[0] not in LAYERS or dst[0] == src[0]:
                continue
            if LAYERS[dst[0]] >= LAYERS[src[0]]:
                out.append(f"src/{'/'.join(src)}: imports {'::'.join(dst)}, "
                           f"a layer {'beside' if LAYERS[dst[0]] == LAYERS[src[0]] else 'above'} it")
    return out


UNSAFE = re.compile(r"\b(unsafe|pg_sys)\b")
COMMENT = re.compile(r"//.*")


def unsafe_outside_pg(crate_src):
    """The lines of the extension outside src/pg/ that use `unsafe` or `pg_sys`: only the
    PostgreSQL layer may (each unsafe block with its SAFETY comment)."""
    out = []
    for path in sorted(crate_src.rglob("*.rs")):
        if path.relative_to(crate_src).parts[0] == "pg":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found = UNSAFE.search(COMMENT.sub("", line))
            if found:
                out.append(f"src/{path.relative_to(crate_src)}:{n}: {found[1]} outside src/pg/")
    return out


def check(root):
    """Every finding in the repository under `root`."""
    out = []
    for crate in ["src", "core/src", "fake_qobra/src"]:
        if not (root / crate).is_dir():
            continue
        edges = graph(root / crate)
        for c in cycles(edges):
            out.append(f"{crate}: import circle between {', '.join(c)}")
        if crate == "src":
            out.extend(layer_breaches(edges))
            out.extend(unsafe_outside_pg(root / crate))
    return out


def self_test():
    """The checks see a breach and a circle in a small made-up crate."""
    import tempfile
    failures = []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        for name, text in {
            "lib.rs": "mod pg; mod sync; mod registry; mod inspect;",
            "inspect/mod.rs": "",
            "pg/mod.rs": "pub mod a; pub mod b;",
            "pg/a.rs": "use crate::pg::b::thing;\nfn f() { crate::preloaded(); }",
            "pg/b.rs": "use crate::pg::{a, self};\nuse crate::inspect::look;",
            "registry/mod.rs": "use super::pg::a::x;",
            "sync/mod.rs": "use crate::{registry, pg::a};\n#[cfg(test)]\nmod tests { use crate::api::x; }",
            "sync/raw.rs": "// unsafe in a comment is fine\nfn f() { unsafe { g() } }\nfn h() -> pg_sys::Oid { 0 }",
        }.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        edges = graph(src)
        if ("pg", "a") not in edges[("registry",)]:
            failures.append(f"super:: not resolved: {edges[('registry',)]}")
        if edges[("sync",)] != {("registry",), ("pg", "a")}:
            failures.append(f"brace lists or test modules read wrong: {edges[('sync',)]}")
        if cycles(edges) != [["pg::a", "pg::b"]]:
            failures.append(f"cycle not found: {cycles(edges)}")
        breaches = layer_breaches(edges)
        if not any("pg/b: imports inspect" in b for b in breaches):
            failures.append(f"upward import not found: {breaches}")
        if not any("pg/a: calls into the crate root" in b for b in breaches):
            failures.append(f"call into the crate root not found: {breaches}")
        raw = unsafe_outside_pg(src)
        if raw != ["src/sync/raw.rs:2: unsafe outside src/pg/", "src/sync/raw.rs:3: pg_sys outside src/pg/"]:
            failures.append(f"unsafe outside src/pg/ read wrong: {raw}")
    return failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        failures = self_test()
        print("\n".join(failures) or "layers self-test: ok")
        return 1 if failures else 0
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    out = check(root)
    print("\n".join(out) or "layers: imports go only downward, and no crate has an import circle")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
