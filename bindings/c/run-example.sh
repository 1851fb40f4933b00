#!/usr/bin/env bash
# Build the C library (release), compile examples/basic.c against the
# static library and the checked-in header, and run it twice: on a fresh
# folder (auditlog_open), then through `auditlog serve` started here
# (auditlog_connect; the command line's dev build, shared with the Rust
# tests), checking afterwards that the server stored what was acknowledged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p auditlog-c --manifest-path "$root/Cargo.toml"
cargo build --quiet -p auditlog-cli --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/debug/auditlog"
work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cc -std=c11 -Wall -Wextra -Werror -I"$here/include" "$here/examples/basic.c" \
   "$CARGO_TARGET_DIR/release/libauditlog_c.a" -lpthread -ldl -lm -o "$work/basic"

echo "--- embedded: basic $work/log"
"$work/basic" "$work/log"

echo "--- served: basic --connect (auditlog serve on $work/served)"
"$bin" --dir "$work/served" serve --no-http --no-search >"$work/ready" 2>"$work/serve.log" &
server=$!
for _ in $(seq 600); do
  [[ -s $work/ready ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
socket="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["socket"])' "$work/ready")"
"$work/basic" --connect "$socket"
kill -TERM "$server"
wait "$server"
server=""
# The server stopped; what it acknowledged is in its log: start, tool
# call, finish of c-1 and nothing of the refused orphan finish.
stored="$("$bin" --dir "$work/served" replay | python3 -c 'import json,sys; print(" ".join(json.loads(l)["kind"] + ":" + json.loads(l)["run_id"] for l in sys.stdin))')"
if [[ $stored != "run_started:c-1 run_log:c-1 run_finished:c-1" ]]; then
  echo "the served log holds: $stored" >&2
  exit 1
fi
echo "served log: $stored"
