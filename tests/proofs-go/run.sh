#!/usr/bin/env bash
# The independent check of auditlog's proofs (docs/proofs.md): builds the
# auditlog binary, makes a signed log (three UTC days, two retentions
# that drop the first two, several writer sessions, so several
# checkpoints), writes tlog-tiles folders before and after the cuts,
# writes inclusion and consistency proofs with `auditlog prove`, then runs
# the Go test beside this script, which checks them with Go's
# golang.org/x/mod/sumdb/tlog and sumdb/note (and tampered copies with both
# Go and `auditlog check-proof`). Go fetches x/mod from the module proxy on
# first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if ! command -v go >/dev/null 2>&1; then
  echo "go not found: install Go (>= 1.26) to run the proof check" >&2
  exit 1
fi
cargo build --quiet -p auditlog-cli --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/debug/auditlog"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/log"
keys="$work/keys"
out="$work/proofs"
mkdir -p "$keys" "$out"

"$bin" keygen --name auditlog.test/proofs-go --out "$keys/key" >/dev/null

# Events of three UTC days (2026-11-23..25), 400 per day, ingested in
# three sessions: each close signs a checkpoint, each day's roll seals the
# day before (with a checkpoint).
events() { # day-index count
  local day=$1 n=$2 base
  base=$(( 1795392000000000 + day * 86400000000 ))
  for ((i = 0; i < n; i += 2)); do
    printf '{"kind":"run_started","run_id":"d%s-r%s","ts":%s,"skill_id":"web.search","caller_id":"c%s","inputs":{"q":"item %s"}}\n' \
      "$day" "$i" $(( base + i * 1000000 )) $(( i % 7 )) "$i"
    printf '{"kind":"run_finished","run_id":"d%s-r%s","ts":%s,"status":"ok","output":"done %s"}\n' \
      "$day" "$i" $(( base + i * 1000000 + 500 )) "$i"
  done
}
for day in 0 1 2; do
  events "$day" 400 >"$work/day$day.jsonl"
  "$bin" --dir "$log" --signing-key "$keys/key" ingest "$work/day$day.jsonl" >/dev/null
done
# The tree as tlog-tiles (docs/proofs.md, "Tiles"), before the retention.
"$bin" --dir "$log" tiles --to "$out/tiles" >"$out/tiles-first.json"
cp "$out/tiles/checkpoint" "$out/tiles-first.checkpoint"
# Drop the first day (its segment is sealed): the tree keeps its frontier.
"$bin" --dir "$log" --signing-key "$keys/key" retain --before 2026-11-24T00:00:00Z >/dev/null
events 3 100 >"$work/day3.jsonl"
"$bin" --dir "$log" --signing-key "$keys/key" ingest "$work/day3.jsonl" >/dev/null
"$bin" --dir "$log" verify --key "$keys/key.pub" >/dev/null
# The same folder again (it keeps the tiles over the dropped leaves), and
# a new one (it lacks the tiles wholly over them; those spanning the cut
# come from the hashes the retention record kept, format 5).
"$bin" --dir "$log" tiles --to "$out/tiles" >"$out/tiles-rerun.json"
"$bin" --dir "$log" tiles --to "$out/tiles-fresh" >"$out/tiles-fresh.json"
"$bin" --dir "$log" replay | head -n 1 | sed -n 's/.*"lsn":\([0-9]*\).*/\1/p' >"$out/tiles-fresh.cut"
# A second retention (the next day), whose cut lies in the same level-1
# tile as the first: its kept hashes come partly from the first record's.
"$bin" --dir "$log" --signing-key "$keys/key" retain --before 2026-11-25T00:00:00Z >/dev/null
events 4 100 >"$work/day4.jsonl"
"$bin" --dir "$log" --signing-key "$keys/key" ingest "$work/day4.jsonl" >/dev/null
"$bin" --dir "$log" verify --key "$keys/key.pub" >/dev/null
"$bin" --dir "$log" tiles --to "$out/tiles" >"$out/tiles-rerun2.json"
"$bin" --dir "$log" tiles --to "$out/tiles-fresh2" >"$out/tiles-fresh2.json"
"$bin" --dir "$log" replay | head -n 1 | sed -n 's/.*"lsn":\([0-9]*\).*/\1/p' >"$out/tiles-fresh2.cut"

cp "$keys/key" "$keys/key.pub" "$out/"
"$bin" --dir "$log" replay >"$out/replay.jsonl"
"$bin" --dir "$log" checkpoints >"$work/checkpoints.jsonl"
sizes=$(sed -n 's/.*"tree_size":\([0-9]*\).*/\1/p' "$work/checkpoints.jsonl")
first_kept=$(sed -n '1s/.*"lsn":\([0-9]*\).*/\1/p' "$out/replay.jsonl")
newest=$(echo "$sizes" | tail -n 1)
# Inclusion: the first kept event, every 97th, and the newest covered one,
# against the newest checkpoint; and some against older checkpoints.
for lsn in "$first_kept" $(seq $((first_kept + 1)) 97 $((newest - 1))) $((newest - 1)); do
  "$bin" --dir "$log" prove "$lsn" --out "$out/inclusion-$lsn.json"
done
for size in $sizes; do
  if (( size > first_kept + 1 )); then
    "$bin" --dir "$log" prove "$first_kept" --tree-size "$size" --out "$out/inclusion-$first_kept-in-$size.json"
  fi
done
# Consistency: from the retention's kept tree and from every checkpoint to
# the newest.
retained=$(sed -n 's/.*"record":"retention".*"tree_size":\([0-9]*\).*/\1/p' "$out/replay.jsonl" | tail -n 1)
for old in $retained $sizes; do
  "$bin" --dir "$log" prove --consistency "$old" --out "$out/consistency-$old.json"
done

echo "proofs-go: $(ls "$out"/inclusion-*.json | wc -l) inclusion and $(ls "$out"/consistency-*.json | wc -l) consistency proofs from a log of $(wc -l <"$out/replay.jsonl") kept events, $(echo "$sizes" | wc -w) checkpoints" >&2
cd "$here"
go vet ./...
AUDITLOG_BIN="$bin" PROOFS_DIR="$out" go test -count=1 -v ./...
