#!/usr/bin/env python3
"""Reports the benchmark: turns the raw results of scripts/bench.sh into its tables.

scripts/bench.sh measures and writes one JSON file of raw readings (SAMPLE below has its shape):
the command, the date, the machine and the software, the tables it loaded, and one entry per
measurement (`runs`) with the clock before and after the statement (ns), the backend's VmHWM,
VmRSS and RssAnon (kB) and the CPU ticks of the backend and of the fake Qobra before and after,
the memory samples taken every 100 ms, what qobra_sync.runs or curl said (status, bytes,
requests), the fake's request log and its answer about the data table. This tool derives the
figures (wall time, memory growth, CPU seconds, ratio to COPY, time spent in the fake, records
held), prints the results table and the targets, and with --doc rewrites the block between the
bench markers of a Markdown file (docs/benchmarks.md), leaving the rest of the file as it is.

Usage: bench_report.py RESULTS.json [--doc PATH]   print the report (and rewrite PATH's block)
       bench_report.py --self-test                 render an embedded sample and check the block

Python 3.11, standard library only.
"""

import argparse
import difflib
import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

BEGIN = "<!-- bench:begin"
BEGIN_LINE = "<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
END = "<!-- bench:end -->"
METHODS = ["copy", "json_agg", "preview", "csv_template", "validate", "push"]
HEADER = ["rows", "method", "wall", "× COPY", "peak RSS growth (VmHWM)",
          "peak private growth (RssAnon)", "backend CPU", "fake CPU",
          "requests' time in the fake", "sent", "requests", "in Qobra", "status"]
# The targets: at most this many MB of growth (both measures); on loopback, at most this many
# times COPY; with this latency per request (ms), at most that many times the loopback COPY.
RSS_TARGET_MB, WALL_TARGET = 64, 1.25
FAR_LATENCY_MS, FAR_TARGET = 100, 2.0


# Seconds the fake spent on the bulk requests of its log (received → answered), summed; None
# when the measurement sent nothing to the fake (no log).
def time_in_fake(requests):
    if requests is None:
        return None
    total = 0.0
    for e in requests:
        if e.get("method") == "POST" and "/records/bulk" in e.get("path", "") and e.get("finished_at"):
            total += (datetime.fromisoformat(e["finished_at"].replace("Z", "+00:00"))
                      - datetime.fromisoformat(e["received_at"].replace("Z", "+00:00"))).total_seconds()
    return total


# The figures of one measurement, from its raw readings; `clk_tck` converts CPU ticks to seconds.
def figures(run, clk_tck):
    before, after = run["before"], run["after"]
    anon = [s[1] for s in run["samples"]] + [before["rss_anon_kb"], after["rss_anon_kb"]]
    table = run.get("fake_table")
    return dict(
        size=run["label"], method=run["method"], batch=run["batch_rows"], status=run["status"],
        latency=run.get("latency_ms") or 0, in_flight=run.get("max_in_flight"),
        bytes=run["bytes"], requests=run["requests"],
        stored=table["record_count"] if table else None,
        wall=(run["t1_ns"] - run["t0_ns"]) / 1e9,
        hwm=(after["vm_hwm_kb"] - before["vm_hwm_kb"]) / 1024,
        anon=(max(anon) - before["rss_anon_kb"]) / 1024,
        cpu=(after["backend_ticks"] - before["backend_ticks"]) / clk_tck,
        fake=(after["fake_ticks"] - before["fake_ticks"]) / clk_tck,
        in_fake=time_in_fake(run.get("fake_requests")))


# Report order: by size (1M, then 10M, others first), then copy, json_agg, push, then latency,
# batch_rows and requests in flight.
def order(r):
    return ({"1M": 1, "10M": 10}.get(r["size"], 0), r["size"], METHODS.index(r["method"]),
            r["latency"], r["batch"], r["in_flight"] or 0)


# How a push was run: its batch_rows, and the latency and max_in_flight of a far-away Qobra.
def push_setting(r):
    far = f", {r['latency']} ms per request, max_in_flight {r['in_flight']}" if r["latency"] else ""
    return f"batch_rows {r['batch']}{far}"


# Bytes as decimal megabytes with thousands separators (`3,121 MB`); empty when unknown or 0.
def mb(b):
    return f"{int(b) / 1e6:,.0f} MB" if b else ""


# A value for a table cell: empty when unknown.
def cell(v):
    return "" if v is None else str(v)


# The results table (Markdown), one line per measurement, in report order.
def results_table(rows):
    copy = {r["size"]: r["wall"] for r in rows if r["method"] == "copy"}
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        method = {"copy": "`COPY … TO STDOUT` → /dev/null", "json_agg": "`json_agg` + curl (one request)",
                  "preview": "`preview(t, 10)`", "csv_template": "`csv_template(t)`",
                  "validate": "`validate(t)`",
                  "push": f"`sync_now`, {push_setting(r)}"}[r["method"]]
        ratio = f"{r['wall'] / copy[r['size']]:.2f}×" if copy.get(r["size"]) else ""
        lines.append("| " + " | ".join([
            r["size"], method, f"{r['wall']:.2f} s", ratio, f"{r['hwm']:.1f} MB", f"{r['anon']:.1f} MB",
            f"{r['cpu']:.2f} s", f"{r['fake']:.2f} s" if r["method"] in ("json_agg", "push") else "",
            f"{r['in_fake']:.2f} s" if r["in_fake"] is not None else "",
            mb(r["bytes"]), cell(r["requests"]), cell(r["stored"]),
            r["status"].replace("|", "\\|")]) + " |")
    return "\n".join(lines)


# One line per push: its memory against the target, and its wall time against COPY's (on
# loopback, and at FAR_LATENCY_MS per request; other latencies are shown without a target).
def verdicts(rows):
    copy = {r["size"]: r["wall"] for r in rows if r["method"] == "copy"}
    out = []
    for r in rows:
        if r["method"] != "push":
            continue
        ok_rss = r["hwm"] <= RSS_TARGET_MB and r["anon"] <= RSS_TARGET_MB
        line = (f"- {r['size']}, {push_setting(r)}: RSS growth {r['hwm']:.1f} MB "
                f"({'met' if ok_rss else 'NOT met'}: ≤ {RSS_TARGET_MB} MB)")
        target = {0: WALL_TARGET, FAR_LATENCY_MS: FAR_TARGET}.get(r["latency"])
        if copy.get(r["size"]):
            ratio = r["wall"] / copy[r["size"]]
            if target is None:
                line += f"; wall {ratio:.2f}× COPY (no target at this latency)"
            else:
                line += f"; wall {ratio:.2f}× COPY ({'met' if ratio <= target else 'NOT met'}: ≤ {target}×)"
        out.append(line)
    return out


# The docs block, markers included: command, machine, tables, the results table, the targets.
def docs_block(raw, table, lines):
    m, sw = raw["machine"], raw["software"]
    date = datetime.strptime(raw["date"], "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%dT%H:%MZ")
    tables = "; ".join(f"{t['label']} rows = {t['heap_size']}" for t in raw["tables"])
    return f"""{BEGIN_LINE}
Command: `{raw['command']}` (from the repository root, as root), {date}.

Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memtotal_kb'] / 1048576:.1f} GiB of memory, Linux {m['kernel']};
{sw['postgres']}; {sw['rustc']}; qobra_sync at commit {sw['commit']}, built with
`cargo pgrx install --release` (library md5 {sw['library_md5']}…). Cluster settings: {sw['settings']}.
Load average before the run: {m['load_before']}.

Tables: {tables} (heap, without the index).

{table}

Targets:
{chr(10).join(lines)}
{END}"""


# `text` with its docs block replaced by `block` (appended when it has no markers).
def replace_block(text, block):
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:start] + block + text[end + len(END):]


# Prints the report of `raw`; with `doc`, rewrites that file's block (creating the file if need be).
def report(raw, doc=None):
    rows = sorted((figures(r, raw["machine"]["clk_tck"]) for r in raw["runs"]), key=order)
    table, lines = results_table(rows), verdicts(rows)
    print(table)
    if doc:
        path = Path(doc)
        text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{BEGIN} -->\n{END}\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(replace_block(text, docs_block(raw, table, lines)), encoding="utf-8")
        print(f"\nwritten to {doc}")
    print("\n" + "\n".join(lines))


# One sampler reading of the self-test's sample (kB and CPU ticks).
def _readings(hwm, anon, backend, fake):
    return {"vm_hwm_kb": hwm, "vm_rss_kb": hwm, "rss_anon_kb": anon,
            "backend_ticks": backend, "fake_ticks": fake}


# The fake's request log of a sample measurement: the bulk requests, taking `bulk_ms` each, and
# two entries that do not count (a request that is not bulk, a bulk request never answered).
def _log(bulk_ms):
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    log = [{"method": "GET", "path": "/_fake/tables/t",
            "received_at": "2026-11-25T05:50:00.000000Z", "finished_at": "2026-11-25T05:50:09.000000Z"},
           {"method": "POST", "path": "/v1/tables/t/records/bulk",
            "received_at": "2026-11-25T05:50:00.000000Z", "finished_at": None}]
    at = datetime(2026, 11, 25, 5, 50, 0, 100_000)
    for ms in bulk_ms:
        done = at + timedelta(milliseconds=ms)
        log.append({"method": "POST", "path": "/v1/tables/t/records/bulk",
                    "received_at": at.strftime(stamp), "finished_at": done.strftime(stamp)})
        at = done + timedelta(milliseconds=3)
    return log


# One raw measurement of the sample, built from the figures it must give (see SAMPLE).
def _run(label, method, batch, status, wall_ms, hwm_kb, anon_kb, cpu, fake,
         rows=None, nbytes=None, requests=None, bulk_ms=None, stored=None, far=None):
    t0 = 1_764_049_800_000_000_000
    latency, in_flight = far or (None, None)
    return {"name": f"{method}-{label}-{batch}", "label": label, "method": method, "batch_rows": batch,
            "latency_ms": latency, "max_in_flight": in_flight,
            "status": status, "rows": rows, "bytes": nbytes, "requests": requests,
            "t0_ns": t0, "t1_ns": t0 + wall_ms * 1_000_000,
            "before": _readings(200_000, 10_000, 1000, 5000),
            "after": _readings(200_000 + hwm_kb, 10_000, 1000 + cpu, 5000 + fake),
            "samples": [[210_000, 10_000, 150_000], [220_000, 10_000 + anon_kb, 150_000],
                        [215_000, 10_000, 150_000]],
            "fake_requests": None if bulk_ms is None else _log(bulk_ms),
            "fake_table": None if stored is None else {"id_field": "id", "record_count": stored}}


# A small set of raw results, as bench.sh writes them, and the docs block they must render.
SAMPLE = {
    "command": "scripts/bench.sh", "date": "2026-11-25T05:54:31Z",
    "machine": {"nproc": 2, "cpu_model": "Intel(R) Xeon(R) Processor", "memtotal_kb": 24_600_000,
                "kernel": "6.18.44-fc-v669", "clk_tck": 100, "load_before": "0.00 0.00 0.00"},
    "software": {"postgres": "PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, "
                             "compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit",
                 "rustc": "rustc 1.95.0 (59807616e 2026-04-14)", "commit": "d40917f",
                 "library_md5": "961726c35d91",
                 "settings": "jit = on, max_parallel_workers_per_gather = 2, shared_buffers = 4GB, "
                             "work_mem = 64MB"},
    "tables": [{"label": "1M", "rows": 1_000_000, "heap_size": "172 MB"},
               {"label": "10M", "rows": 10_000_000, "heap_size": "1722 MB"}],
    # label, method, batch_rows, status, wall (ms), VmHWM and peak RssAnon growth (kB), backend
    # and fake CPU (ticks); then, when there are any: rows, bytes, requests, the bulk requests'
    # times in the fake (ms), the records the fake holds. Listed out of report order on purpose.
    "runs": [
        _run("10M", "push", 20000, "succeeded", 13_760, 54_170, 41_677, 1356, 1296,
             10_000_000, 3_121_234_567, 500, [4000, 4220], 10_000_000),
        _run("1M", "copy", 0, "ok", 977, 102, 0, 96, 3, 1_000_000),
        _run("1M", "json_agg", 0, "ok", 8_820, 1_263_411, 1_263_411, 544, 45,
             1_000_000, 323_456_789, 1, [550]),
        _run("1M", "push", 5000, "succeeded", 1_462, 18_944, 9_728, 136, 142,
             1_000_000, 310_987_654, 200, [400, 330], 1_000_000),
        _run("1M", "push", 20000, "succeeded", 1_482, 45_158, 35_635, 143, 138,
             1_000_000, 310_987_654, 50, [780], 1_000_000),
        _run("10M", "copy", 0, "ok", 10_120, 102, 0, 999, 0, 10_000_000),
        _run("10M", "json_agg", 0, "failed: ERROR:  out of memory", 8_390, 1_108_173, 1_051_136, 836, 0,
             bulk_ms=[]),
        _run("10M", "push", 5000, "succeeded", 17_320, 21_504, 11_162, 1485, 1766,
             10_000_000, 3_121_234_567, 2000, [5000, 4240], 10_000_000),
        _run("1M", "push", 50000, "succeeded", 1_900, 30_000, 25_000, 140, 140,
             1_000_000, 310_987_654, 75, [7500], 1_000_000, far=(100, 4)),
        _run("1M", "push", 50000, "succeeded", 15_400, 20_000, 15_000, 140, 140,
             1_000_000, 310_987_654, 75, [15000], 1_000_000, far=(200, 1)),
    ],
}

EXPECTED_BLOCK = """<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->
Command: `scripts/bench.sh` (from the repository root, as root), 2026-11-25T05:54Z.

Machine: 2 cores (Intel(R) Xeon(R) Processor), 23.5 GiB of memory, Linux 6.18.44-fc-v669;
PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit; rustc 1.95.0 (59807616e 2026-04-14); qobra_sync at commit d40917f, built with
`cargo pgrx install --release` (library md5 961726c35d91…). Cluster settings: jit = on, max_parallel_workers_per_gather = 2, shared_buffers = 4GB, work_mem = 64MB.
Load average before the run: 0.00 0.00 0.00.

Tables: 1M rows = 172 MB; 10M rows = 1722 MB (heap, without the index).

| rows | method | wall | × COPY | peak RSS growth (VmHWM) | peak private growth (RssAnon) | backend CPU | fake CPU | requests' time in the fake | sent | requests | in Qobra | status |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| 1M | `COPY … TO STDOUT` → /dev/null | 0.98 s | 1.00× | 0.1 MB | 0.0 MB | 0.96 s |  |  |  |  |  | ok |
| 1M | `json_agg` + curl (one request) | 8.82 s | 9.03× | 1233.8 MB | 1233.8 MB | 5.44 s | 0.45 s | 0.55 s | 323 MB | 1 |  | ok |
| 1M | `sync_now`, batch_rows 5000 | 1.46 s | 1.50× | 18.5 MB | 9.5 MB | 1.36 s | 1.42 s | 0.73 s | 311 MB | 200 | 1000000 | succeeded |
| 1M | `sync_now`, batch_rows 20000 | 1.48 s | 1.52× | 44.1 MB | 34.8 MB | 1.43 s | 1.38 s | 0.78 s | 311 MB | 50 | 1000000 | succeeded |
| 1M | `sync_now`, batch_rows 50000, 100 ms per request, max_in_flight 4 | 1.90 s | 1.94× | 29.3 MB | 24.4 MB | 1.40 s | 1.40 s | 7.50 s | 311 MB | 75 | 1000000 | succeeded |
| 1M | `sync_now`, batch_rows 50000, 200 ms per request, max_in_flight 1 | 15.40 s | 15.76× | 19.5 MB | 14.6 MB | 1.40 s | 1.40 s | 15.00 s | 311 MB | 75 | 1000000 | succeeded |
| 10M | `COPY … TO STDOUT` → /dev/null | 10.12 s | 1.00× | 0.1 MB | 0.0 MB | 9.99 s |  |  |  |  |  | ok |
| 10M | `json_agg` + curl (one request) | 8.39 s | 0.83× | 1082.2 MB | 1026.5 MB | 8.36 s | 0.00 s | 0.00 s |  |  |  | failed: ERROR:  out of memory |
| 10M | `sync_now`, batch_rows 5000 | 17.32 s | 1.71× | 21.0 MB | 10.9 MB | 14.85 s | 17.66 s | 9.24 s | 3,121 MB | 2000 | 10000000 | succeeded |
| 10M | `sync_now`, batch_rows 20000 | 13.76 s | 1.36× | 52.9 MB | 40.7 MB | 13.56 s | 12.96 s | 8.22 s | 3,121 MB | 500 | 10000000 | succeeded |

Targets:
- 1M, batch_rows 5000: RSS growth 18.5 MB (met: ≤ 64 MB); wall 1.50× COPY (NOT met: ≤ 1.25×)
- 1M, batch_rows 20000: RSS growth 44.1 MB (met: ≤ 64 MB); wall 1.52× COPY (NOT met: ≤ 1.25×)
- 1M, batch_rows 50000, 100 ms per request, max_in_flight 4: RSS growth 29.3 MB (met: ≤ 64 MB); wall 1.94× COPY (met: ≤ 2.0×)
- 1M, batch_rows 50000, 200 ms per request, max_in_flight 1: RSS growth 19.5 MB (met: ≤ 64 MB); wall 15.76× COPY (no target at this latency)
- 10M, batch_rows 5000: RSS growth 21.0 MB (met: ≤ 64 MB); wall 1.71× COPY (NOT met: ≤ 1.25×)
- 10M, batch_rows 20000: RSS growth 52.9 MB (met: ≤ 64 MB); wall 1.36× COPY (NOT met: ≤ 1.25×)
<!-- bench:end -->"""


# The differences between what was wanted and what was got, as a unified diff.
def _diff(want, got):
    return "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "wanted", "got"))


# Renders SAMPLE into a document with text around the markers, into a new document and into one
# without markers, and checks each; returns the failures.
def self_test():
    failures = []
    raw = json.loads(json.dumps(SAMPLE))  # the sample as read back from a file
    with tempfile.TemporaryDirectory() as tmp:
        around = Path(tmp, "around.md")
        around.write_text(f"# Benchmarks\n\nbefore\n\n{BEGIN} (old) -->\nold results\n{END}\n\nafter\n")
        fresh, bare = Path(tmp, "new", "fresh.md"), Path(tmp, "bare.md")
        bare.write_text("# Benchmarks\n\nno markers yet\n")
        out = Path(tmp, "stdout.txt")
        with out.open("w") as stdout:
            saved, sys.stdout = sys.stdout, stdout
            try:
                for doc in (around, fresh, bare):
                    report(raw, str(doc))
                report(raw)
            finally:
                sys.stdout = saved
        expect = {
            around: f"# Benchmarks\n\nbefore\n\n{EXPECTED_BLOCK}\n\nafter\n",
            fresh: f"# Benchmarks\n\n{EXPECTED_BLOCK}\n",
            bare: f"# Benchmarks\n\nno markers yet\n\n{EXPECTED_BLOCK}\n",
        }
        for doc, want in expect.items():
            got = doc.read_text() if doc.exists() else "(no file)"
            if got != want:
                failures.append(f"{doc.name}: the rendered document differs:\n{_diff(want, got)}")
        # What is printed: the table, where the block was written (with --doc), the targets.
        body = EXPECTED_BLOCK.split("\n\n")
        table, targets = body[3], body[4].removeprefix("Targets:\n").removesuffix(f"\n{END}")
        want = "".join(f"{table}\n\nwritten to {doc}\n\n{targets}\n" for doc in (around, fresh, bare))
        want += f"{table}\n\n{targets}\n"
        if out.read_text() != want:
            failures.append(f"the printed report differs:\n{_diff(want, out.read_text())}")
    return failures


# Runs the self-test, or reports a results file.
def main():
    parser = argparse.ArgumentParser(description="Report the raw results of scripts/bench.sh.")
    parser.add_argument("results", nargs="?", help="the JSON file scripts/bench.sh wrote")
    parser.add_argument("--doc", help="the Markdown file whose bench block to rewrite")
    parser.add_argument("--self-test", action="store_true", help="render an embedded sample and check it")
    args = parser.parse_args()
    if args.self_test:
        failures = self_test()
        print("\n".join(failures) or "bench_report self-test: ok")
        return 1 if failures else 0
    if not args.results:
        parser.error("a results file is needed (or --self-test)")
    with open(args.results, encoding="utf-8", errors="replace") as f:
        report(json.load(f), args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
