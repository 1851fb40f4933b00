#!/bin/bash
# ABBA rounds of the tree bench (benches/tree.rs) for two builds of it, in
# one call: docs/benchmarks.md, "Tree and checkpoints, sign38 round".
#
#   tree_abba.sh BEFORE AFTER OUT REGIME ROUNDS ORDER...
#     BEFORE, AFTER  the tree bench binaries (cargo bench -p auditlog-benches --bench tree --no-run)
#     OUT            folder for the logs (REGIME-STAMP-I-LETTER.log), read by tree_abba.py
#     REGIME         sat30 | sat1 | q30 | q1: 30 simulated days or 1, saturated (two busy
#                    loops beside the bench, killed on exit) or quiet
#     ROUNDS         rounds of the three variants per run
#     ORDER          letters A (after) and B (before), e.g. B A A B
# Run it under the machine's lock for timed work; each run asks 2,000,000
# workload events per variant and round.
set -u
before=$1; after=$2; out=$3; regime=$4; rounds=$5; shift 5
case $regime in
  sat30) days=30; sat=1;; sat1) days=1; sat=1;; q30) days=30; sat=0;; q1) days=1; sat=0;;
  *) echo "regime: sat30|sat1|q30|q1" >&2; exit 2;;
esac
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
if [ "$sat" = 1 ]; then
  ( while :; do :; done ) & pids+=($!)
  ( while :; do :; done ) & pids+=($!)
fi
stamp=$(date -u +%H%M%S)
echo "start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) regime $regime order $*"
i=0
for v in "$@"; do
  i=$((i+1))
  case $v in A) bin=$after;; B) bin=$before;; *) echo "order: A or B" >&2; exit 2;; esac
  log=$out/$regime-$stamp-$i-$v.log
  "$bin" --bench --events 2000000 --rounds "$rounds" --proof-events 0 --days "$days" > "$log" 2>&1
  echo "$v done $(date -u +%H:%M:%S) -> $log"
done
echo "end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
