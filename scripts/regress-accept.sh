#!/usr/bin/env bash
# After a reviewed change of output: copies tests/pg_regress/results/*.out over expected/.
set -euo pipefail
cd "$(dirname "$0")/../tests/pg_regress"
for f in results/*.out; do cp "$f" "expected/$(basename "$f")"; done
echo "accepted: $(ls results/*.out | xargs -n1 basename | tr '\n' ' ')"
