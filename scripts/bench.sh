#!/usr/bin/env bash
# Benchmark of a push (a script, not a test; see `docs/design.md`). For each table size it measures, side by side
# on the same table of realistic sales data (12 columns, one of each supported type):
#   copy      COPY (SELECT <the 12 columns> FROM t) TO STDOUT, to /dev/null          (the floor)
#   json_agg  SELECT json_agg(t) FROM t piped into curl as one bulk request to the fake Qobra
#             (the do-it-yourself route)
#   push      SELECT qobra_sync.sync_now('t'), batch_rows 5000 and 20000
# and for each, the wall time and the memory of the backend that did the work: its peak RSS growth
# (VmHWM after - before, from /proc/<pid>/status) and its private memory sampled every 100 ms.
# It writes the results, the command and the machine into docs/benchmarks.md (between markers).
#
# Usage: scripts/bench.sh [--sizes 1000000,10000000] [--batch-rows 5000,20000] [--doc PATH | --no-doc]
# Runs as root or as a user with sudo; the cluster runs as $QS_PGUSER (default postgres).
# Environment: QS_BENCH_DIR (default /tmp/qobra_sync-bench), QS_BENCH_PORT (default 54325),
# QS_BENCH_REVISION (the revision to report, for a tree exported with `git archive`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="scripts/bench.sh${*:+ $*}"

SIZES=1000000,10000000
BATCHES=5000,20000
DOC=docs/benchmarks.md
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) SIZES=$2; shift 2 ;;
        --batch-rows) BATCHES=$2; shift 2 ;;
        --doc) DOC=$2; shift 2 ;;
        --no-doc) DOC=; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

source scripts/setup.sh
source scripts/cluster.sh

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
WORK=${QS_BENCH_DIR:-/tmp/qobra_sync-bench}
PORT=${QS_BENCH_PORT:-54325}
DB=bench
KEY="qk_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
RESULTS=$WORK/results
CLUSTER=$WORK/cluster
FAKE_PID=

cleanup() {
    local rc=$?
    for f in "$RESULTS"/*.sampler; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
    cluster_stop "$CLUSTER"
    if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null; fi
    [ $rc -eq 0 ] || echo "bench.sh failed (exit $rc); logs in $WORK" >&2
}
trap cleanup EXIT

mkdir -p "$WORK"
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
chmod 755 "$WORK" "$RESULTS"

echo "==> building the fake Qobra"
cargo build -q --release -p fake_qobra
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# The installed library is shared by everything on this machine (a test run installs a debug
# build there): install the release build, start the cluster (which maps the library once, at
# preload), and check that what it loaded is the release build; try again if something else
# installed in between.
LIB=$("$PG_CONFIG" --pkglibdir)/qobra_sync.so
for attempt in 1 2 3; do
    echo "==> installing qobra_sync (release) and starting a cluster (port $PORT)"
    cargo pgrx install --release --pg-config "$PG_CONFIG" >"$WORK/install.log" 2>&1 ||
        { tail -30 "$WORK/install.log"; exit 1; }
    # 24 GiB machine: a sixth of it to shared_buffers (every table here fits), generous
    # work_mem; the load is bulk, so minimal WAL and no synchronous commit (a throwaway
    # cluster). The worker starts no scheduled push during the measurements.
    cluster_start "$CLUSTER" "$PORT" \
        "qobra_sync.database_name = '$DB'" "qobra_sync.enabled = off" \
        "shared_buffers = '4GB'" "effective_cache_size = '16GB'" "work_mem = '64MB'" \
        "maintenance_work_mem = '1GB'" "max_wal_size = '16GB'" "checkpoint_timeout = '30min'" \
        "wal_level = minimal" "max_wal_senders = 0" "synchronous_commit = off"
    cmp -s "$LIB" target/release/libqobra_sync.so && break
    cluster_stop "$CLUSTER"
    [ "$attempt" = 3 ] && { echo "the installed library keeps being replaced; giving up"; exit 1; }
    echo "    another build replaced $LIB meanwhile; again"
done
LIB_MD5=$(md5sum "$LIB" | cut -c1-12)

echo "==> starting the fake Qobra"
psql_db() { cluster_psql "$CLUSTER" "$PORT" -d "$DB" "$@"; }
cluster_psql "$CLUSTER" "$PORT" -q -c "CREATE DATABASE $DB"

fake_start "$KEY" "$WORK/fake.log"
FAKE=$FAKE_URL

psql_db -q <<SQL
CREATE EXTENSION qobra_sync;
-- The reader: can read what it pushes and nothing else (as Qobra's own connector recommends).
CREATE ROLE qobra_reader NOLOGIN;
GRANT USAGE ON SCHEMA public TO qobra_reader;
SELECT qobra_sync.set_destination('$KEY', '$FAKE') \g /dev/null
SQL

# The sampler, run by psql's \! around the measured statement: `sampler start|stop NAME`, with the
# backend's pid in QS_PID. Start records VmHWM, the CPU time of the backend and of the fake, then
# samples VmRSS/RssAnon/RssShmem every 100 ms in the background; stop records the same again.
SAMPLER=$WORK/sampler.sh
cat >"$SAMPLER" <<'EOF'
#!/bin/bash
set -u
name=$2 pid=$QS_PID d=$QS_RESULTS
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
case $1 in
start)
    echo "$(kb VmHWM) $(kb VmRSS) $(kb RssAnon) $(ticks "$pid") $(ticks "$QS_FAKE_PID")" >"$d/$name.before"
    ( while [ -e "/proc/$pid/status" ]; do
          awk '$1 == "VmRSS:" {r = $2} $1 == "RssAnon:" {a = $2} $1 == "RssShmem:" {s = $2}
               END {print r, a, s}' "/proc/$pid/status" >>"$d/$name.samples"
          sleep 0.1
      done ) >/dev/null 2>&1 &
    echo $! >"$d/$name.sampler"
    date +%s%N >"$d/$name.t0" ;;
stop)
    date +%s%N >"$d/$name.t1"
    kill "$(cat "$d/$name.sampler")" 2>/dev/null; rm -f "$d/$name.sampler"
    echo "$(kb VmHWM) $(kb VmRSS) $(kb RssAnon) $(ticks "$pid") $(ticks "$QS_FAKE_PID")" >"$d/$name.after" ;;
esac
EOF
chmod 755 "$SAMPLER"
export QS_RESULTS=$RESULTS QS_FAKE_PID=$FAKE_PID

# The prologue of every measured session: maps the table's shared buffers into this backend (a
# serial sequential scan of the heap, then count(*), an index-only scan of the primary key), so
# that the RSS growth measured next is the statement's own memory and not shared_buffers pages
# the backend touches for the first time; without JIT, so that the memory LLVM takes when a
# costly query is compiled (tens of MB; jit is on by default) is counted where it happens, in the
# measured statement; then hands the pid over.
prologue() {
    cat <<SQL
SET max_parallel_workers_per_gather = 0;
SET jit = off;
SELECT sum(length(name)) FROM public.$1;
SELECT count(*) FROM public.$1;
RESET max_parallel_workers_per_gather;
RESET jit;
SELECT pg_backend_pid() AS pid \gset
\setenv QS_PID :pid
SQL
}

# A call to the fake's API: fake METHOD PATH [JSON BODY].
fake() {
    if [ $# -gt 2 ]; then
        curl -sS -f -X "$1" "$FAKE$2" -H 'Content-Type: application/json' --data-binary "$3"
    else
        curl -sS -f -X "$1" "$FAKE$2"
    fi
}
fake_count() { fake GET "/_fake/tables/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["record_count"])'; }
FAKE_TABLE='{"id_field": "id", "name_field": "name", "user_key": "email", "fields": {
  "owner_email": "user", "stage": "picklist", "probability": "number", "amount": "number",
  "discount": "number", "list_price": "amount", "is_renewal": "bool", "close_date": "date",
  "updated_at": "date", "flags": "string"}}'
COLUMNS_LIST="id, name, owner_email, stage, probability, amount, discount, list_price, is_renewal, close_date, updated_at, flags"

label() { case $1 in 1000000) echo 1M ;; 10000000) echo 10M ;; 100000) echo 100k ;; *) echo "$1" ;; esac; }

# One line of results: size method batch status rows bytes requests verified
note() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS/$2-$1-$3.info"; }

for size in ${SIZES//,/ }; do
    lbl=$(label "$size")
    t=deals_$(echo "$lbl" | tr 'A-Z' 'a-z')
    echo "==> $lbl rows: loading public.$t"
    start=$(date +%s)
    psql_db -q <<SQL
BEGIN;
-- Opportunities as a CRM exports them: one of each supported type.
CREATE TABLE public.$t (
    id          bigint NOT NULL,
    name        text NOT NULL,
    owner_email varchar(254),
    stage       char(13),
    probability integer,
    amount      numeric(12,2),
    discount    double precision,
    list_price  money,
    is_renewal  boolean,
    close_date  date,
    updated_at  timestamptz,
    flags       bit varying(8)
);
INSERT INTO public.$t
SELECT i,
       (ARRAY['Acme','Globex','Initech','Umbrella','Stark Industries','Wayne Enterprises','Wonka',
              'Tyrell','Cyberdyne','Soylent','Hooli','Vandelay','Massive Dynamic','Aperture',
              'Black Mesa','Oscorp'])[1 + (i * 7) % 16]
       || ' ' || (ARRAY['Corp','GmbH','SAS','Ltd','Inc','BV','AG','SA'])[1 + (i * 13) % 8]
       || ' — ' || (ARRAY['New business','Renewal','Upsell','Cross-sell','Expansion'])[1 + (i * 11) % 5]
       || ' ' || (2022 + i % 4),
       lower((ARRAY['Alice','Bruno','Chloé','David','Emma','Farid','Grace','Hugo','Inès','Jonas',
                    'Karim','Léa','Marco','Nina','Oscar','Paula','Quentin','Rosa','Sami','Tess'])[1 + (i * 3) % 20])
       || '.' || lower((ARRAY['Martin','Bernard','Dubois','Thomas','Robert','Richard','Petit',
                              'Durand','Leroy','Moreau'])[1 + (i * 7) % 10])
       || '@northwind-sales.example',
       (ARRAY['Prospecting','Qualification','Proposal','Negotiation','Closed Won','Closed Lost'])[1 + (i * 17) % 6],
       (i * 37) % 101,
       round(500 + ((i::numeric * 7919) % 2000000) / 10, 2),
       ((i * 31) % 4000) / 10000.0,
       (round(500 + ((i::numeric * 7919) % 2000000) / 10, 2) * 1.2)::money,
       i % 5 = 0,
       DATE '2022-01-01' + ((i * 29) % 1460)::int,
       TIMESTAMPTZ '2024-01-01 08:00:00+00' + ((i::bigint * 104729) % 31536000) * INTERVAL '1 second'
           + (i % 1000) * INTERVAL '1 millisecond',
       ((i * 3) % 256)::bit(8)::varbit
  FROM generate_series(1, $size) AS i;
ALTER TABLE public.$t ADD PRIMARY KEY (id);
GRANT SELECT ON public.$t TO qobra_reader;
COMMIT;
VACUUM (FREEZE, ANALYZE) public.$t;
SELECT qobra_sync.register_table('public.$t', '$t', id_column => 'id', name_column => 'name',
       user_columns => '{owner_email}', run_as => 'qobra_reader') \g /dev/null
SQL
    table_size=$(psql_db -At -c "SELECT pg_size_pretty(pg_table_size('public.$t'))")
    echo "    loaded in $(( $(date +%s) - start )) s; table size $table_size"
    echo "$lbl	$size	$table_size" >>"$RESULTS/tables.tsv"
    fake PUT "/_fake/tables/$t" "$FAKE_TABLE" >/dev/null
    fake PUT "/_fake/tables/${t}_diy" "$FAKE_TABLE" >/dev/null

    # COPY to /dev/null: psql sends COPY TO STDOUT's rows to its own output, here /dev/null.
    name=copy-$lbl-0
    echo "    copy"
    { prologue "$t"; cat <<SQL; } | psql_db -q -o /dev/null >/dev/null
\! $SAMPLER start $name
COPY (SELECT $COLUMNS_LIST FROM public.$t) TO STDOUT;
\! $SAMPLER stop $name
SQL
    note "$lbl" copy 0 ok "$size" "" "" ""

    # The do-it-yourself route: one json_agg, its text piped by psql into curl, one bulk request.
    name=json_agg-$lbl-0
    echo "    json_agg + curl"
    set +e
    { prologue "$t"; cat <<SQL; } | psql_db -q -At -v ON_ERROR_STOP=0 >/dev/null 2>"$RESULTS/$name.err"
\! $SAMPLER start $name
\o | curl -sS -o $RESULTS/$name.body -w '%{http_code} %{size_upload} %{time_total}' -H 'X-API-Key: $KEY' -H 'Content-Type: application/json' --data-binary @- '$FAKE/v1/tables/${t}_diy/records/bulk?all=true&debounce=0' >$RESULTS/$name.curl 2>&1
SELECT json_agg(t) FROM public.$t AS t;
\o
\! $SAMPLER stop $name
SQL
    set -e
    read -r code upload _ <"$RESULTS/$name.curl" || true
    if [ "${code:-}" = 200 ]; then
        note "$lbl" json_agg 0 ok "$size" "$upload" 1 ""
    else
        why=$(grep -m1 -E 'ERROR|FATAL' "$RESULTS/$name.err" || head -c 200 "$RESULTS/$name.body" 2>/dev/null || true)
        note "$lbl" json_agg 0 "failed: ${why:-HTTP $code}" "" "" "" ""
    fi
    fake GET /_fake/requests >"$RESULTS/$name.requests" && fake DELETE /_fake/requests >/dev/null
    fake POST /_fake/imports/flush >/dev/null
    fake PUT "/_fake/tables/${t}_diy" "$FAKE_TABLE" >/dev/null

    for batch in ${BATCHES//,/ }; do
        name=push-$lbl-$batch
        echo "    push, batch_rows $batch"
        { prologue "$t"; cat <<SQL; } | psql_db -q -At -F $'\t' >/dev/null
SET qobra_sync.skip_unchanged = off;
SET qobra_sync.debounce_seconds = 0;
SET qobra_sync.batch_rows = $batch;
\! $SAMPLER start $name
SELECT qobra_sync.sync_now('public.$t') AS run_id \gset
\! $SAMPLER stop $name
\o $RESULTS/$name.run
SELECT status, rows_sent, bytes_sent, requests, coalesce(error, '') FROM qobra_sync.runs WHERE run_id = :run_id;
\o
SQL
        IFS=$'\t' read -r status rows bytes requests error <"$RESULTS/$name.run"
        fake GET /_fake/requests >"$RESULTS/$name.requests" && fake DELETE /_fake/requests >/dev/null
        fake POST /_fake/imports/flush >/dev/null
        stored=$(fake_count "$t")
        note "$lbl" push "$batch" "$status${error:+: $error}" "$rows" "$bytes" "$requests" "$stored"
        fake PUT "/_fake/tables/$t" "$FAKE_TABLE" >/dev/null   # empties it, frees the fake's memory
    done
    psql_db -q -o /dev/null -c "SELECT qobra_sync.unregister_table('public.$t')" -c "DROP TABLE public.$t"
    fake DELETE "/_fake/tables/$t" >/dev/null
    fake DELETE "/_fake/tables/${t}_diy" >/dev/null
done

echo "==> results"
PG_VERSION=$(psql_db -At -c "SELECT version()")
SETTINGS=$(psql_db -At -c "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name)
                              FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'jit')")
if [ -n "${QS_BENCH_REVISION:-}" ]; then
    COMMIT=$QS_BENCH_REVISION   # a tree exported with `git archive`, which has no .git
else
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT (with uncommitted changes)"
fi
export PG_VERSION SETTINGS COMMIT COMMAND
export CPU_MODEL=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
export NPROC=$(nproc) MEMORY=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
export KERNEL=$(uname -r) RUSTC=$(rustc --version) DATE=$(date -u +%Y-%m-%dT%H:%MZ)
export LOAD_BEFORE LIB_MD5
python3 - "$RESULTS" "$DOC" <<'EOF'
import glob, json, os, sys
from datetime import datetime

results, doc = sys.argv[1], sys.argv[2]
HZ = os.sysconf("SC_CLK_TCK")

def nums(path):
    return [int(x) for x in open(path).read().split()]

rows = []
for info in sorted(glob.glob(f"{results}/*.info")):
    size, method, batch, status, nrows, nbytes, requests, stored = open(info).read().rstrip("\n").split("\t")
    name = f"{method}-{size}-{batch}"
    t0, t1 = nums(f"{results}/{name}.t0")[0], nums(f"{results}/{name}.t1")[0]
    hwm0, rss0, anon0, cpu0, fake0 = nums(f"{results}/{name}.before")
    hwm1, rss1, anon1, cpu1, fake1 = nums(f"{results}/{name}.after")
    path = f"{results}/{name}.samples"
    samples = [list(map(int, l.split())) for l in open(path) if len(l.split()) == 3] if os.path.exists(path) else []
    peak_anon = max([s[1] for s in samples] + [anon0, anon1])
    # Time the fake spent on the bulk requests (received -> answered), summed.
    in_fake = None
    if os.path.exists(f"{results}/{name}.requests"):
        in_fake = 0.0
        for e in json.load(open(f"{results}/{name}.requests")):
            if e.get("method") == "POST" and "/records/bulk" in e.get("path", "") and e.get("finished_at"):
                in_fake += (datetime.fromisoformat(e["finished_at"].replace("Z", "+00:00"))
                            - datetime.fromisoformat(e["received_at"].replace("Z", "+00:00"))).total_seconds()
    rows.append(dict(size=size, method=method, batch=int(batch), status=status,
                     rows=nrows, bytes=nbytes, requests=requests, stored=stored,
                     wall=(t1 - t0) / 1e9, hwm=(hwm1 - hwm0) / 1024, anon=(peak_anon - anon0) / 1024,
                     cpu=(cpu1 - cpu0) / HZ, fake=(fake1 - fake0) / HZ, in_fake=in_fake,
                     samples=len(samples)))

def order(r):
    return ({"1M": 1, "10M": 10}.get(r["size"], 0), r["size"], ["copy", "json_agg", "push"].index(r["method"]), r["batch"])
rows.sort(key=order)
copy = {r["size"]: r["wall"] for r in rows if r["method"] == "copy"}

def mb(b):
    return f"{int(b) / 1e6:,.0f} MB" if b else ""

header = ["rows", "method", "wall", "× COPY", "peak RSS growth (VmHWM)", "peak private growth (RssAnon)",
          "backend CPU", "fake CPU", "requests' time in the fake", "sent", "requests", "in Qobra", "status"]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
for r in rows:
    method = {"copy": "`COPY … TO STDOUT` → /dev/null", "json_agg": "`json_agg` + curl (one request)",
              "push": f"`sync_now`, batch_rows {r['batch']}"}[r["method"]]
    ratio = f"{r['wall'] / copy[r['size']]:.2f}×" if copy.get(r["size"]) else ""
    lines.append("| " + " | ".join([
        r["size"], method, f"{r['wall']:.2f} s", ratio, f"{r['hwm']:.1f} MB", f"{r['anon']:.1f} MB",
        f"{r['cpu']:.2f} s", f"{r['fake']:.2f} s" if r["method"] != "copy" else "",
        f"{r['in_fake']:.2f} s" if r["in_fake"] is not None else "",
        mb(r["bytes"]), r["requests"], r["stored"], r["status"].replace("|", "\\|")]) + " |")
table = "\n".join(lines)
print(table)

tables = [l.split("\t") for l in open(f"{results}/tables.tsv").read().splitlines()]
verdicts = []
for r in rows:
    if r["method"] != "push":
        continue
    ok_rss = r["hwm"] <= 64 and r["anon"] <= 64
    verdicts.append(f"- {r['size']}, batch_rows {r['batch']}: RSS growth {r['hwm']:.1f} MB "
                    f"({'met' if ok_rss else 'NOT met'}: ≤ 64 MB)")
    if r["size"] == "1M" and copy.get("1M"):
        ratio = r["wall"] / copy["1M"]
        met = "met" if ratio <= 2.5 else "NOT met"
        aim = ", aim of 1.5× met" if ratio <= 1.5 else ", aim of 1.5× not met"
        verdicts[-1] += f"; wall {ratio:.2f}× COPY ({met}: ≤ 2.5×{aim})"

env = os.environ
block = f"""<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->
Command: `{env['COMMAND']}` (from the repository root, as root), {env['DATE']}.

Machine: {env['NPROC']} cores ({env['CPU_MODEL']}), {env['MEMORY']} of memory, Linux {env['KERNEL']};
{env['PG_VERSION']}; {env['RUSTC']}; qobra_sync at commit {env['COMMIT']}, built with
`cargo pgrx install --release` (library md5 {env['LIB_MD5']}…). Cluster settings: {env['SETTINGS']}.
Load average before the run: {env['LOAD_BEFORE']}.

Tables: {"; ".join(f"{t[0]} rows = {t[2]}" for t in tables)} (heap, without the index).

{table}

Targets:
{chr(10).join(verdicts)}
<!-- bench:end -->"""

if doc:
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
    start, end = text.find("<!-- bench:begin"), text.find("<!-- bench:end -->")
    if start < 0 or end < 0:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len("<!-- bench:end -->"):]
    os.makedirs(os.path.dirname(doc) or ".", exist_ok=True)
    open(doc, "w").write(text)
    print(f"\nwritten to {doc}")
print("\n" + "\n".join(verdicts))
EOF
