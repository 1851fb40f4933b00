#!/usr/bin/env bash
# The Python benchmark, release build: install the extension optimised into
# the binding's virtualenv, build the native query example, run bench.py.
# Arguments go to bench.py (e.g. --events 200000 --out results.json).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="${AUDITLOG_PY_VENV:-$CARGO_TARGET_DIR/python-venv}"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-dev.txt"
# shellcheck disable=SC1091
source "$venv/bin/activate"
maturin develop --profile release-python --manifest-path "$here/Cargo.toml"
cargo build --release --manifest-path "$here/Cargo.toml" --example query_latency
python "$here/bench/bench.py" --native "$CARGO_TARGET_DIR/release/examples/query_latency" "$@"
