#!/bin/bash
# The memory and CPU sampler of scripts/bench.sh, run by psql's \! right around the measured
# statement: `bench_sampler.sh start|stop NAME`, with the backend's pid in QS_PID, the fake
# Qobra's in QS_FAKE_PID and the results directory in QS_RESULTS.
#   start  writes NAME.before (VmHWM VmRSS RssAnon in kB, then the CPU ticks of the backend and
#          of the fake), samples VmRSS RssAnon RssShmem every 100 ms into NAME.samples in the
#          background (its pid in NAME.sampler), and last writes NAME.t0 (ns since the epoch);
#   stop   first writes NAME.t1, stops the sampling, then writes NAME.after like NAME.before.
# Plain bash and awk, so that little runs between the clock readings and the statement.
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
