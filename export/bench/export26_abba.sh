#!/bin/bash
# ABBA rounds in one window (docs/benchmarks.md, "export26 round"): export of
# LOG with BEFORE, with BEFORE and MIMALLOC_ALLOW_THP=0, with AFTER, and
# `AFTER ingest JSONL` into a fresh folder (the same events as LOG holds).
# One line per run: name, events, wall s, Parquet bytes, segment bytes,
# CPU ms (perf stat task-clock, all threads), load average. Needs perf.
#
#   export/bench/export26_abba.sh LOG JSONL BEFORE AFTER [ROUNDS]
set -u
LOG=$1 JSONL=$2 B=$3 A=$4 ROUNDS=${5:-3}
W=$(mktemp -d /tmp/export26-abba.XXXXXX)
one() { # name cmd...
  local name=$1; shift
  rm -rf "$W/o" "$W/ing"
  perf stat -x, -e task-clock -o "$W/st.txt" "$@" > "$W/r.json" 2>/dev/null
  echo "$name $(python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(d.get('events',d.get('accepted')),d['seconds'],d.get('parquet_bytes',0),d.get('segment_bytes',0))" "$W/r.json") $(grep task-clock "$W/st.txt" | cut -d, -f1) load=$(cut -d' ' -f1 /proc/loadavg)"
}
for round in $(seq 1 "$ROUNDS"); do
  order="before thpoff after ingest"; [ $((round%2)) = 0 ] && order="ingest after thpoff before"
  for n in $order; do
    case $n in
      before) one before "$B" --dir "$LOG" export --threads 2 --to "$W/o";;
      thpoff) one thpoff env MIMALLOC_ALLOW_THP=0 "$B" --dir "$LOG" export --threads 2 --to "$W/o";;
      after) one after "$A" --dir "$LOG" export --threads 2 --to "$W/o";;
      ingest) one ingest "$A" --dir "$W/ing" ingest "$JSONL";;
    esac
  done
done
rm -rf "$W"
