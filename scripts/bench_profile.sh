#!/bin/bash
# The profiler of scripts/bench.sh --profile, run by psql's \! around one measured push:
# `bench_profile.sh start|stop NAME`, with the backend's pid in QS_PID and the results
# directory in QS_RESULTS.
#   start  samples every thread of the backend (its own and the HTTP client's) with
#          `perf record -e cpu-clock -F 2000` (the machine has no hardware counters) into
#          NAME.perf.data, in the background;
#   stop   stops perf and writes the flat profile, by library and symbol, to NAME.profile.txt.
set -u
name=$2 pid=$QS_PID d=$QS_RESULTS
case $1 in
start)
    perf record -e cpu-clock -F 2000 -p "$pid" -o "$d/$name.perf.data" >"$d/$name.perf.log" 2>&1 &
    echo $! >"$d/$name.perf.pid"
    # perf needs a moment to attach to every thread.
    sleep 0.5 ;;
stop)
    kill -INT "$(cat "$d/$name.perf.pid")" 2>/dev/null
    while kill -0 "$(cat "$d/$name.perf.pid")" 2>/dev/null; do sleep 0.1; done
    rm -f "$d/$name.perf.pid"
    perf report -i "$d/$name.perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.4 \
        >"$d/$name.profile.txt" 2>>"$d/$name.perf.log" ;;
esac
