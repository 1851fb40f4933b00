#!/usr/bin/env bash
# The server driven by a real OpenTelemetry client: the official Python SDK
# (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http from PyPI, in a
# virtual environment under target/) sends GenAI spans and log records to
# `auditlog serve`; server/tests/otel_genai.py checks them through the
# server's queries, then this script checks them again with the command
# line on the stopped server's folder (runs, run, search).
#
#   server/test.sh            (from the repository root or anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$CARGO_TARGET_DIR/serve-venv"
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "opentelemetry-sdk==1.45.2" "opentelemetry-exporter-otlp-proto-http==1.45.2"
fi
cargo build --quiet -p auditlog-cli
bin="$CARGO_TARGET_DIR/debug/auditlog"
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
dir="$work/log"

"$bin" --dir "$dir" serve --http 127.0.0.1:0 >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 300); do [[ -s $work/ready ]] && break; sleep 0.05; done
addr=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/ready")
echo "server at $addr (pid $server_pid)" >&2

"$venv/bin/python" server/tests/otel_genai.py "$addr" >"$work/result"
run_id=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent_run"])' "$work/result")

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
grep -q 'everything acknowledged is durable' "$work/server.log"

# The same events, read by the command line from the folder.
"$bin" --dir "$dir" runs --skill travel-planner >"$work/runs"
"$bin" --dir "$dir" run "$run_id" >"$work/run"
"$bin" --dir "$dir" search '"hotel API returned 502"' >"$work/search"
"$venv/bin/python" - "$work" "$run_id" <<'PY'
import json, sys
work, run_id = sys.argv[1], sys.argv[2]
runs = [json.loads(l) for l in open(f"{work}/runs")]
assert [r["id"] for r in runs] == [run_id], runs
run = json.load(open(f"{work}/run"))
calls = sorted(l["payload"]["tool"] for l in run["logs"] if l["event_type"] == "tool_call")
assert calls == ["book_hotel", "search_flights"], calls
hits = [json.loads(l) for l in open(f"{work}/search")]
assert [h["id"] for h in hits] == [run_id], hits
print("command line: runs, run and search agree", file=sys.stderr)
PY
echo "server/test.sh: the OpenTelemetry SDK's spans and logs came back through runs, run and search" >&2
