#!/usr/bin/env bash
# The demo, from a fresh clone: installs what is missing (scripts/setup.sh), builds and installs
# qobra_sync, starts a throwaway PostgreSQL cluster (loopback only, qobra_sync preloaded,
# database `sales`) and the fake Qobra, loads sample sales data (demo/sales.sql), then walks
# through what a DBA and a Qobra admin do: a least-privileged reader, the destination, the column
# mapping, the data table created in Qobra from the CSV template, the registration with a filter,
# validate, preview, a first push, what Qobra now holds, and a push by the background worker.
# Everything is stopped at the end, whatever happens.
#
# Usage: scripts/demo.sh            (as root or as a user with sudo)
# Environment: QS_DEMO_DIR (default /tmp/qobra_sync-demo), QS_DEMO_PORT (default 54345).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

source scripts/setup.sh
source scripts/cluster.sh


WORK=${QS_DEMO_DIR:-/tmp/qobra_sync-demo}
PORT=${QS_DEMO_PORT:-54345}
CLUSTER=$WORK/cluster
FAKE_PID=

if [ -t 1 ]; then BOLD=$'\033[1m' DIM=$'\033[2m' OFF=$'\033[0m'; else BOLD= DIM= OFF=; fi
step=0
section() { step=$((step + 1)); printf '\n%s== %d. %s%s\n\n' "$BOLD" "$step" "$*" "$OFF"; }
say() { printf '%s%s%s\n' "$DIM" "$*" "$OFF"; }

cleanup() {
    local rc=$?
    cluster_stop "$CLUSTER"
    if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null; fi
    if [ $rc -eq 0 ]; then
        printf '\n%sDone.%s The cluster and the fake Qobra are stopped; logs in %s.\n' "$BOLD" "$OFF" "$WORK"
    else
        printf '\nThe demo failed (exit %d); the cluster and the fake Qobra are stopped. Logs in %s.\n' "$rc" "$WORK" >&2
    fi
}
trap cleanup EXIT

# psql on the demo database; `sql -c "..."` echoes the statement, then prints its result.
sql() { cluster_psql "$CLUSTER" "$PORT" -d sales -P pager=off "$@"; }
show() { sql -e -c "$1"; }

# curl (for the fake Qobra) is the one more tool this demo needs.
if ! command -v curl >/dev/null; then
    echo "==> installing curl"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl ca-certificates
fi

section "Build and install qobra_sync, build the fake Qobra"
mkdir -p "$WORK"
say "cargo pgrx install --pg-config $PG_CONFIG"
cargo pgrx install --pg-config "$PG_CONFIG" >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log"; exit 1; }
say "cargo build --release -p fake_qobra"
cargo build -q --release -p fake_qobra

section "Start PostgreSQL $PG_MAJOR: loopback only, qobra_sync preloaded, database 'sales'"
# A fresh data directory each run (cluster_start empties $CLUSTER first).
cluster_start "$CLUSTER" "$PORT" "qobra_sync.database_name = 'sales'"
cluster_psql "$CLUSTER" "$PORT" -q -c "CREATE DATABASE sales"
say "cluster in $CLUSTER (port $PORT), running as the OS user $QS_PGUSER:"
sql -At -c "SELECT '  ' || version()"
sql -At -c "SELECT '  shared_preload_libraries = ' || current_setting('shared_preload_libraries')
                || ', qobra_sync.database_name = ' || current_setting('qobra_sync.database_name')"

section "Sample sales data (demo/sales.sql)"
sql -q -f demo/sales.sql
show "SELECT id, email, full_name, team, region FROM users ORDER BY id LIMIT 5"
show "SELECT stage, count(*) AS deals, sum(amount) AS total FROM opportunities GROUP BY stage ORDER BY deals DESC"

section "Install the extension and create a read-only role for it"
say "qobra_sync reads as a role that can only read what it pushes, as Qobra's own PostgreSQL"
say "connector recommends (least privilege, read-only access to the synchronised tables)."
sql -e -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION qobra_sync;
CREATE ROLE qobra_reader NOLOGIN;
GRANT USAGE ON SCHEMA public TO qobra_reader;
GRANT SELECT ON public.opportunities, public.users TO qobra_reader;
SQL

section "Start the fake Qobra and set the destination"
API_KEY="qk_demo_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
fake_start "$API_KEY" "$WORK/fake-qobra.log"
QOBRA=$FAKE_URL
say "fake Qobra listening on $QOBRA (pid $FAKE_PID), API key ${API_KEY:0:8}…"
fake() { curl -sS -f -X "$1" "$QOBRA$2" "${@:3}"; }
# JSON without extra tools: Postgres formats it (pretty DOC) or reads a field of it (field DOC KEY).
pretty() { echo "SELECT jsonb_pretty(:'doc'::jsonb)" | sql -At -v doc="$1"; }
field() { echo "SELECT (:'doc'::jsonb) ->> :'key'" | sql -At -v doc="$1" -v key="$2"; }
held() { field "$(fake GET /_fake/tables/opportunities)" record_count; }

say "The key goes in a file only the server's OS user can read, so that it never passes through SQL."
KEY_FILE=$WORK/qobra.key
as_root install -m 600 -o "$QS_PGUSER" /dev/null "$KEY_FILE"
printf '%s\n' "$API_KEY" | as_root tee "$KEY_FILE" >/dev/null
echo "\$ install -m 600 -o $QS_PGUSER /dev/null $KEY_FILE && echo '${API_KEY:0:8}…' > $KEY_FILE"
show "ALTER SYSTEM SET qobra_sync.api_key_file = '$KEY_FILE'"
show "SELECT pg_reload_conf()"
# The postmaster reloads a moment later; new sessions see the file from then on.
for _ in $(seq 50); do
    [ "$(sql -At -c "SHOW qobra_sync.api_key_file")" = "$KEY_FILE" ] && break
    sleep 0.1
done
show "SELECT qobra_sync.set_destination(api_key => NULL, base_url => '$QOBRA')"
show "SELECT * FROM qobra_sync.destination_status"
say "Before anything is sent: the address, the certificate, the proxy and the key, checked by"
say "requests that change nothing in Qobra."
show "SELECT * FROM qobra_sync.check_destination()"
[ "$(sql -At -c "SELECT bool_and(ok) FROM qobra_sync.check_destination()")" = t ] || { echo "the destination does not check out"; exit 1; }

section "How the columns map to Qobra field types"
MAPPING_ARGS="user_columns => '{owner_email}', column_types => '{\"amount\": \"amount\", \"probability\": \"percentage\"}'"
show "SELECT column_name, pg_type, qobra_type, allowed_types, synced, note
        FROM qobra_sync.column_mapping('opportunities', $MAPPING_ARGS)"

section "Create the data table in Qobra from the CSV template"
say "Qobra needs the data table before the first push: an admin imports a CSV whose header is the"
say "field keys, choosing each field's type as column_mapping() says. Here the fake Qobra does that."
say "Before registering, inspection reads as the reader it is told to (never as a superuser), and"
say "takes the options the registration will have, so the header is what pushes will send."
TEMPLATE_ARGS="run_as => 'qobra_reader', id_column => 'id', name_column => 'name', $MAPPING_ARGS, exclude_columns => '{tags}'"
sql -At -c "SELECT qobra_sync.csv_template('opportunities', 3, $TEMPLATE_ARGS)" >"$WORK/opportunities.csv"
echo "\$ psql -At -c \"SELECT qobra_sync.csv_template('opportunities', 3, $TEMPLATE_ARGS)\" > opportunities.csv"
sed '/^$/d; s/^/  /' "$WORK/opportunities.csv"
HEADER=$(head -n 1 "$WORK/opportunities.csv")
TYPES=$(sql -At -c "SELECT string_agg(field_key || ':' || qobra_type, ',' ORDER BY field_key)
                      FROM qobra_sync.column_mapping('opportunities', $MAPPING_ARGS)
                     WHERE synced AND field_key = ANY (string_to_array('$HEADER', ','))")
echo "\$ curl -X PUT '$QOBRA/_fake/tables/opportunities/csv?types=…&user_key=email' --data-binary @opportunities.csv"
definition=$(fake PUT "/_fake/tables/opportunities/csv?id_field=id&name_field=name&user_key=email&types=$TYPES" \
    -H 'Content-Type: text/csv' --data-binary "@$WORK/opportunities.csv")
pretty "$definition"

section "Register opportunities: closed-won deals of the last 12 months, read as qobra_reader"
show "SELECT qobra_sync.register_table('public.opportunities', 'opportunities',
             id_column       => 'id',
             name_column     => 'name',
             user_columns    => '{owner_email}',
             column_types    => '{\"amount\": \"amount\", \"probability\": \"percentage\"}',
             exclude_columns => '{tags}',
             filter          => \$\$stage = 'Closed Won' AND close_date > current_date - 365\$\$,
             schedule        => '0 */6 * * *',
             run_as          => 'qobra_reader')"
show "SELECT source, data_table_key, filter, schedule, run_as, next_run_at FROM qobra_sync.tables"

section "Validate: what would stop a push"
show "SELECT * FROM qobra_sync.validate('opportunities')"

section "Preview: the exact records a push sends (3 of them)"
show "SELECT qobra_sync.preview('opportunities', 3)"

section "Push now"
show "SELECT qobra_sync.sync_now('opportunities') AS run_id"
show "SELECT run_id, trigger, status, rows_read, rows_sent, rows_rejected, bytes_sent, requests, import_ids
        FROM qobra_sync.runs ORDER BY run_id"

section "What Qobra now holds"
say "Qobra imports in the background (after the push's debounce); the fake is told to import now."
fake POST /_fake/imports/flush >/dev/null
expected=$(sql -At -c "SELECT count(*) FROM opportunities WHERE stage = 'Closed Won' AND close_date > current_date - 365")
held=$(held)
echo "records in Qobra's data table: $held (closed-won deals of the last 12 months in Postgres: $expected)"
echo
echo "\$ curl -H 'X-API-Key: …' '$QOBRA/v2/reporting/opportunities/records?limit=2'"
pretty "$(fake GET '/v2/reporting/opportunities/records?limit=2' -H "X-API-Key: $API_KEY")"
echo
show "SELECT qobra_sync.poll_imports() AS runs_settled"
show "SELECT run_id, status, import_status FROM qobra_sync.runs ORDER BY run_id"
[ "$held" = "$expected" ] || { echo "Qobra holds $held records, $expected expected"; exit 1; }

section "The background worker"
# The worker started with the cluster, before the database 'sales' existed, so the postmaster
# is restarting it now: give it a few seconds to show up.
for _ in $(seq 20); do
    [ "$(sql -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'qobra_sync worker'")" != 0 ] && break
    sleep 0.5
done
show "SELECT pid, backend_type, datname, query AS doing FROM pg_stat_activity WHERE backend_type = 'qobra_sync worker'"

# Waits up to 30 s for the newest run with the given trigger to end; prints its status.
wait_run() {
    local status=
    for _ in $(seq 60); do
        status=$(sql -At -c "SELECT status FROM qobra_sync.runs WHERE trigger = '$1' ORDER BY run_id DESC LIMIT 1")
        case $status in succeeded|failed|blocked|skipped) break ;; esac
        sleep 0.5
    done
    echo "$status"
}

# The next deal in negotiation is won today.
win_a_deal() {
    show "UPDATE opportunities SET stage = 'Closed Won', probability = 100, close_date = current_date
       WHERE id = (SELECT min(id) FROM opportunities WHERE stage = 'Negotiation') RETURNING id, name, amount"
}

say "A deal is won today; ask the worker to push (it starts right after the commit)."
win_a_deal
show "SELECT qobra_sync.request_sync('opportunities')"
status=$(wait_run request)
[ "$status" = succeeded ] || { echo "the requested run did not succeed within 30 s (status: ${status:-none})"; exit 1; }

say "Another deal is won; this time the schedule pushes it (every 5 seconds for the demo)."
win_a_deal
show "SELECT qobra_sync.alter_table('opportunities', schedule => '5 seconds')"
status=$(wait_run schedule)
[ "$status" = succeeded ] || { echo "the scheduled run did not succeed within 30 s (status: ${status:-none})"; exit 1; }
show "SELECT qobra_sync.pause('opportunities')"
show "SELECT run_id, trigger, status, rows_read, rows_sent, requests, finished_at - started_at AS took, error
        FROM qobra_sync.runs ORDER BY run_id"
fake POST /_fake/imports/flush >/dev/null
held=$(held)
echo "records in Qobra's data table: $held (two more deals won)"
show "SELECT source, paused, last_status, last_success_rows, next_run_at FROM qobra_sync.status"

# What the demo ends with, kept for a look afterwards (and for the test that checks it).
fake GET /_fake/tables/opportunities/records >"$WORK/qobra-opportunities.json"
say "Qobra's records are saved in $WORK/qobra-opportunities.json; the cluster's data stays in $CLUSTER/data."
