#!/usr/bin/env bash
# Throwaway PostgreSQL clusters (of the major scripts/postgres.sh names) for the regression, end-to-end and demo tiers.
# Source this file, then: cluster_start DIR PORT [extra postgresql.conf lines...]; cluster_stop DIR.
# Clusters run as the unprivileged OS user $QS_PGUSER (default: postgres; Postgres refuses root),
# listen on 127.0.0.1 only, keep their socket in DIR, and preload qobra_sync.

QS_PGUSER=${QS_PGUSER:-postgres}
source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"

# Runs a command as the cluster's OS user (directly when we already are that user).
as_pguser() {
    if [ "$(id -un)" = "$QS_PGUSER" ]; then "$@"; else runuser -u "$QS_PGUSER" -- "$@"; fi
}

# Creates and starts a cluster in DIR on PORT; extra arguments are postgresql.conf lines.
cluster_start() {
    local dir=$1 port=$2
    shift 2
    rm -rf "$dir"
    install -d -o "$QS_PGUSER" -m 700 "$dir"
    # QS_INITDB_OPTIONS: more options of initdb (e.g. --no-data-checksums).
    as_pguser "$PGBIN/initdb" -D "$dir/data" --locale=C.UTF-8 -E UTF8 -A trust -U postgres \
        ${QS_INITDB_OPTIONS:-} >"$dir/initdb.log" 2>&1
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'qobra_sync'"
        echo "client_min_messages = warning"
        echo "log_min_messages = info"
        for line in "$@"; do echo "$line"; done
    } | as_pguser tee -a "$dir/data/postgresql.auto.conf" >/dev/null
    # Without RUST_BACKTRACE, errors carry no Rust backtrace in their DETAIL.
    as_pguser env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

# Stops the cluster in DIR, fast (in-flight transactions are rolled back).
cluster_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] && as_pguser "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# psql against the cluster in DIR as the postgres superuser.
cluster_psql() {
    local dir=$1 port=$2
    shift 2
    psql -h "$dir" -p "$port" -U postgres -X -v ON_ERROR_STOP=1 "$@"
}

# Starts the fake Qobra (built with `cargo build --release -p fake_qobra`) on a free loopback port
# with API key KEY, logging to LOG; sets FAKE_PID and FAKE_URL. The caller stops it (kill $FAKE_PID).
fake_start() {
    local key=$1 log=$2 port_file
    port_file=$(mktemp)
    rm -f "$port_file"
    "$(dirname "${BASH_SOURCE[0]}")/../target/release/fake-qobra" --listen 127.0.0.1:0 --api-key "$key" \
        --port-file "$port_file" >"$log" 2>&1 &
    FAKE_PID=$!
    for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
    [ -s "$port_file" ] || { echo "the fake Qobra did not start:"; cat "$log"; return 1; }
    FAKE_URL=http://127.0.0.1:$(cat "$port_file")
    rm -f "$port_file"
}
