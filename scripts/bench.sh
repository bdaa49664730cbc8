#!/usr/bin/env bash
# Benchmark of a push (a script, not a test; see `docs/design.md`; results in docs/benchmarks.md).
# For each table size it measures, side by side on the same table of realistic sales data (12
# columns, one of each supported type):
#   copy      COPY (SELECT <the 12 columns> FROM t) TO STDOUT, to /dev/null          (the floor)
#   json_agg  SELECT json_agg(t) FROM t piped into curl as one bulk request to the fake Qobra
#             (the do-it-yourself route)
#   push      SELECT qobra_sync.sync_now('t'), batch_rows 50000 (the default) and 5000
#   preview, csv_template, validate   each called once, as a user setting up does
#   far push  the same at the default settings with the fake answering each request 50, 100
#             and 200 ms after it arrived (a Qobra far away), max_in_flight 1, 4, 6 (the default) and 8 (1M rows)
# and for each, the wall time and the memory of the backend that did the work: its peak RSS growth
# (VmHWM after - before, from /proc/<pid>/status) and its private memory sampled every 100 ms
# (scripts/bench_sampler.sh). This script only measures: it writes the raw readings, the command
# and the machine as one JSON file ($QS_BENCH_DIR/results/results.json), then hands it to
# scripts/bench_report.py, which prints the results and writes them into docs/benchmarks.md
# (between markers).
#
# Usage: scripts/bench.sh [--sizes 1000000,10000000] [--batch-rows 50000,5000]
#                        [--latencies 50,100,200] [--in-flight 1,4,6,8] [--far-sizes 1000000]
#                        [--doc PATH | --no-doc] [--profile]
# (`--profile` also profiles one push at the defaults of the first size with perf:
# $QS_BENCH_DIR/results/profile-<size>.profile.txt, see scripts/bench_profile.sh.)
# (`--latencies ''` leaves the far pushes out.)
# Runs as root or as a user with sudo; the cluster runs as $QS_PGUSER (default postgres).
# Environment: QS_BENCH_DIR (default /tmp/qobra_sync-bench), QS_BENCH_PORT (default 54325),
# QS_BENCH_REVISION (the revision to report, for a tree exported with `git archive`).
# Render raw results again: python3 scripts/bench_report.py RESULTS.json [--doc PATH].
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="scripts/bench.sh${*:+ $*}"

SIZES=1000000,10000000
BATCHES=50000,5000
LATENCIES=50,100,200
IN_FLIGHT=1,4,6,8
FAR_SIZES=1000000
DOC=docs/benchmarks.md
PROFILE=
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) SIZES=$2; shift 2 ;;
        --batch-rows) BATCHES=$2; shift 2 ;;
        --latencies) LATENCIES=$2; shift 2 ;;
        --in-flight) IN_FLIGHT=$2; shift 2 ;;
        --far-sizes) FAR_SIZES=$2; shift 2 ;;
        --doc) DOC=$2; shift 2 ;;
        --no-doc) DOC=; shift ;;
        --profile) PROFILE=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

source scripts/setup.sh
source scripts/cluster.sh

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

# The sampler, run by psql's \! around the measured statement (see the script). psql hands the
# rest of a \! line to /bin/sh as it is: the path is quoted for it.
SAMPLER="bash '$ROOT/scripts/bench_sampler.sh'"
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
FAKE_TABLE='{"id_field": "id", "name_field": "name", "user_key": "email", "fields": {
  "owner_email": "user", "stage": "picklist", "probability": "number", "amount": "number",
  "discount": "number", "list_price": "amount", "is_renewal": "bool", "close_date": "date",
  "updated_at": "date", "flags": "string"}}'
COLUMNS_LIST="id, name, owner_email, stage, probability, amount, discount, list_price, is_renewal, close_date, updated_at, flags"

label() { case $1 in 1000000) echo 1M ;; 10000000) echo 10M ;; 100000) echo 100k ;; *) echo "$1" ;; esac; }

# The raw results are written as JSON by hand: a string (control characters escaped or dropped)
# and a whole number (or null when the reading is empty, as for a failed step).
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    s=${s//$'\n'/\\n}
    printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}
json_num() { if [[ $1 =~ ^-?[0-9]+$ ]]; then printf '%s' "$1"; else printf 'null'; fi; }
# A file's JSON as it is (an answer of the fake), or null when there is no such file.
json_file() { if [ -s "$1" ]; then cat "$1"; else printf 'null'; fi; }
# A sampler file of five numbers (VmHWM VmRSS RssAnon kB, backend and fake CPU ticks) as an object.
json_readings() {
    local hwm rss anon backend fake
    read -r hwm rss anon backend fake <"$1"
    printf '{"vm_hwm_kb": %s, "vm_rss_kb": %s, "rss_anon_kb": %s, "backend_ticks": %s, "fake_ticks": %s}' \
        "$(json_num "$hwm")" "$(json_num "$rss")" "$(json_num "$anon")" \
        "$(json_num "$backend")" "$(json_num "$fake")"
}

# The raw readings of one measurement NAME, as one JSON object in $RESULTS/NAME.json:
#   record NAME LABEL METHOD BATCH STATUS ROWS BYTES REQUESTS [LATENCY_MS MAX_IN_FLIGHT]
# with what the sampler wrote (NAME.t0, .t1, .before, .after, .samples) and, when they exist, the
# fake's request log (NAME.requests) and its answer about the data table (NAME.table).
RUNS=()
record() {
    local name=$1 samples=[]
    if [ -f "$RESULTS/$name.samples" ]; then
        # Lines of "VmRSS RssAnon RssShmem"; a line cut short when the sampler was stopped is left out.
        samples=$(awk 'BEGIN {printf "["}
                       /^[0-9]+ [0-9]+ [0-9]+$/ {printf "%s[%s, %s, %s]", sep, $1, $2, $3; sep = ", "}
                       END {printf "]"}' "$RESULTS/$name.samples")
    fi
    {
        printf '{"name": %s, "label": %s, "method": %s, "batch_rows": %s,\n' \
            "$(json_str "$name")" "$(json_str "$2")" "$(json_str "$3")" "$(json_num "$4")"
        printf ' "latency_ms": %s, "max_in_flight": %s,\n' "$(json_num "${9:-}")" "$(json_num "${10:-}")"
        printf ' "status": %s, "rows": %s, "bytes": %s, "requests": %s,\n' \
            "$(json_str "$5")" "$(json_num "$6")" "$(json_num "$7")" "$(json_num "$8")"
        printf ' "t0_ns": %s, "t1_ns": %s,\n' \
            "$(json_num "$(cat "$RESULTS/$name.t0")")" "$(json_num "$(cat "$RESULTS/$name.t1")")"
        printf ' "before": %s,\n "after": %s,\n' \
            "$(json_readings "$RESULTS/$name.before")" "$(json_readings "$RESULTS/$name.after")"
        printf ' "samples": %s,\n' "$samples"
        printf ' "fake_requests": %s,\n' "$(json_file "$RESULTS/$name.requests")"
        printf ' "fake_table": %s}' "$(json_file "$RESULTS/$name.table")"
    } >"$RESULTS/$name.json"
    RUNS+=("$RESULTS/$name.json")
}
# Measures one push of public.TABLE: measure_push NAME LABEL TABLE SETTINGS_SQL BATCH
# [LATENCY_MS MAX_IN_FLIGHT]; SETTINGS_SQL is run in the session first. The fake's table is
# emptied afterwards (which frees its memory).
measure_push() {
    local name=$1 lbl=$2 t=$3 settings=$4
    { prologue "$t"; cat <<SQL; } | psql_db -q -At -F $'\t' >/dev/null
SET qobra_sync.skip_unchanged = off;
SET qobra_sync.debounce_seconds = 0;
$settings
\! $SAMPLER start $name
SELECT qobra_sync.sync_now('public.$t') AS run_id \gset
\! $SAMPLER stop $name
\o $RESULTS/$name.run
SELECT status, rows_sent, bytes_sent, requests, coalesce(error, '') FROM qobra_sync.runs WHERE run_id = :run_id;
\o
SQL
    local status rows bytes requests error
    IFS=$'\t' read -r status rows bytes requests error <"$RESULTS/$name.run"
    fake GET /_fake/requests >"$RESULTS/$name.requests" && fake DELETE /_fake/requests >/dev/null
    fake POST /_fake/imports/flush >/dev/null
    fake GET "/_fake/tables/$t" >"$RESULTS/$name.table"   # its record_count: what Qobra holds
    record "$name" "$lbl" push "$5" "$status${error:+: $error}" "$rows" "$bytes" "$requests" "${6:-}" "${7:-}"
    fake PUT "/_fake/tables/$t" "$FAKE_TABLE" >/dev/null
}

# Profiles one push of public.TABLE at the default settings (not a measurement: perf slows
# the backend a little): profile_push NAME TABLE.
profile_push() {
    { prologue "$2"; cat <<SQL; } | psql_db -q -At >/dev/null
SET qobra_sync.skip_unchanged = off;
SET qobra_sync.debounce_seconds = 0;
\! bash '$ROOT/scripts/bench_profile.sh' start $1
SELECT qobra_sync.sync_now('public.$2');
\! bash '$ROOT/scripts/bench_profile.sh' stop $1
SQL
    fake DELETE /_fake/requests >/dev/null
    fake POST /_fake/imports/flush >/dev/null
    fake PUT "/_fake/tables/$2" "$FAKE_TABLE" >/dev/null
    echo "    profile: $RESULTS/$1.profile.txt"
    head -40 "$RESULTS/$1.profile.txt" | grep -v '^#' | grep -v '^$' | head -25
}

# The tables loaded, as JSON objects: label, rows, heap size.
TABLES=()

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
    TABLES+=("{\"label\": $(json_str "$lbl"), \"rows\": $(json_num "$size"), \"heap_size\": $(json_str "$table_size")}")
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
    record "$name" "$lbl" copy 0 ok "$size" "" ""

    # The do-it-yourself route: one json_agg, its text piped by psql into curl, one bulk request.
    name=json_agg-$lbl-0
    echo "    json_agg + curl"
    set +e
    { prologue "$t"; cat <<SQL; } | psql_db -q -At -v ON_ERROR_STOP=0 >/dev/null 2>"$RESULTS/$name.err"
\! $SAMPLER start $name
\o | curl -sS -o $RESULTS/$name.body -w '%{http_code} %{size_upload} %{time_total}' -H 'X-API-Key: $KEY' -H 'Content-Type: application/json' --data-binary @- '$FAKE/v1/tables/${t}_diy/records/bulk?all=true&debounce=0' >$RESULTS/$name.curl 2>&1
SELECT json_build_object('data', json_agg(t)) FROM public.$t AS t;
\o
\! $SAMPLER stop $name
SQL
    set -e
    read -r code upload _ <"$RESULTS/$name.curl" || true
    fake GET /_fake/requests >"$RESULTS/$name.requests" && fake DELETE /_fake/requests >/dev/null
    if [ "${code:-}" = 200 ]; then
        record "$name" "$lbl" json_agg 0 ok "$size" "$upload" 1
    else
        why=$(grep -m1 -E 'ERROR|FATAL' "$RESULTS/$name.err" || head -c 200 "$RESULTS/$name.body" 2>/dev/null || true)
        record "$name" "$lbl" json_agg 0 "failed: ${why:-HTTP $code}" "" "" ""
    fi
    fake POST /_fake/imports/flush >/dev/null
    fake PUT "/_fake/tables/${t}_diy" "$FAKE_TABLE" >/dev/null

    # What a user runs while setting up, each as one statement: a preview, a CSV template and
    # a validation (which reads the whole table by nature).
    for what in preview csv_template validate; do
        name=$what-$lbl-0
        echo "    $what"
        case $what in
            preview) call="SELECT count(*) FROM qobra_sync.preview('public.$t', 10)" ;;
            csv_template) call="SELECT length(qobra_sync.csv_template('public.$t'))" ;;
            validate) call="SELECT count(*) FROM qobra_sync.validate('public.$t')" ;;
        esac
        { prologue "$t"; cat <<SQL; } | psql_db -q -o /dev/null >/dev/null
\! $SAMPLER start $name
$call;
\! $SAMPLER stop $name
SQL
        record "$name" "$lbl" "$what" 0 ok "" "" ""
    done

    for batch in ${BATCHES//,/ }; do
        echo "    push, batch_rows $batch"
        measure_push "push-$lbl-$batch" "$lbl" "$t" "SET qobra_sync.batch_rows = $batch;" "$batch"
    done
    if [ -n "$PROFILE" ] && [ "$size" = "${SIZES%%,*}" ]; then
        echo "    profiling a push at the defaults"
        profile_push "profile-$lbl" "$t"
    fi
    if [[ ",$FAR_SIZES," == *",$size,"* ]]; then
        for latency in ${LATENCIES//,/ }; do
            fake PUT /_fake/settings "{\"latency_ms\": $latency}" >/dev/null
            for n in ${IN_FLIGHT//,/ }; do
                echo "    push, $latency ms per request, max_in_flight $n"
                measure_push "push-$lbl-far$latency-$n" "$lbl" "$t" \
                    "SET qobra_sync.max_in_flight = $n;" "$(psql_db -At -c 'SHOW qobra_sync.batch_rows')" "$latency" "$n"
            done
        done
        fake PUT /_fake/settings '{"latency_ms": 0}' >/dev/null
    fi
    psql_db -q -o /dev/null -c "SELECT qobra_sync.unregister_table('public.$t')" -c "DROP TABLE public.$t"
    fake DELETE "/_fake/tables/$t" >/dev/null
    fake DELETE "/_fake/tables/${t}_diy" >/dev/null
done

echo "==> results"
# The machine and the software, then every measurement: one JSON file of raw readings.
if [ -n "${QS_BENCH_REVISION:-}" ]; then
    COMMIT=$QS_BENCH_REVISION   # a tree exported with `git archive`, which has no .git
else
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT (with uncommitted changes)"
fi
PG_VERSION=$(psql_db -At -c "SELECT version()")
SETTINGS=$(psql_db -At -c "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name)
                              FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'jit')")
CPU_MODEL=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
MEMTOTAL_KB=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
RAW=$RESULTS/results.json
{
    printf '{"command": %s,\n "date": %s,\n' "$(json_str "$COMMAND")" "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
    printf ' "machine": {"nproc": %s, "cpu_model": %s, "memtotal_kb": %s, "kernel": %s, "clk_tck": %s, "load_before": %s},\n' \
        "$(json_num "$(nproc)")" "$(json_str "$CPU_MODEL")" "$(json_num "$MEMTOTAL_KB")" \
        "$(json_str "$(uname -r)")" "$(json_num "$(getconf CLK_TCK)")" "$(json_str "$LOAD_BEFORE")"
    printf ' "software": {"postgres": %s, "rustc": %s, "commit": %s, "library_md5": %s, "settings": %s},\n' \
        "$(json_str "$PG_VERSION")" "$(json_str "$(rustc --version)")" "$(json_str "$COMMIT")" \
        "$(json_str "$LIB_MD5")" "$(json_str "$SETTINGS")"
    printf ' "tables": [%s],\n' "$(IFS=,; printf '%s' "${TABLES[*]}")"
    printf ' "runs": [\n'
    sep=
    for run in "${RUNS[@]}"; do printf '%s' "$sep"; cat "$run"; sep=$',\n'; done
    printf '\n]}\n'
} >"$RAW"
echo "    raw results in $RAW"

python3 scripts/bench_report.py "$RAW" ${DOC:+--doc "$DOC"}
