#!/usr/bin/env bash
# Every test of the project, in every language: README's test command, and
# what CI (.ci/run) runs on a clean clone. Each part installs what it needs
# from the registries (crates.io, PyPI, npm, the Go module proxy) on first
# use; all Rust crates share one target folder (./target).
#
#   tests/run-all.sh          everything
#   tests/run-all.sh rust     only the Rust workspace
#   tests/run-all.sh python   only the Python binding (bindings/python/test.sh)
#   tests/run-all.sh c        only the C example (bindings/c)
#   tests/run-all.sh go       only the Go module (bindings/go)
#   tests/run-all.sh node     only the Node binding (bindings/node/test.sh)
#   tests/run-all.sh serve    only the server with the OpenTelemetry SDK
#   tests/run-all.sh proofs   only the Go check of the proofs (tests/proofs-go/run.sh)
#   tests/run-all.sh export   only the export's Python-driven tests
#
# A part's own script can be run alone too (see its folder's README).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
only="${1:-all}"

step() { printf '\n=== %s\n' "$*" >&2; }

if [[ $only == all || $only == rust ]]; then
  step "Rust workspace: engine, command line, load run, benches (cargo test)"
  cargo test --workspace --all-targets
  step "Rust documentation examples (cargo test --doc)"
  cargo test --workspace --doc
fi

if [[ $only == all || $only == python ]]; then
  step "Python binding: build into a virtualenv (maturin develop), pytest, mypy"
  bindings/python/test.sh
fi

if [[ $only == all || $only == c ]]; then
  step "C ABI: compile and run the C example against the static library"
  bindings/c/run-example.sh
fi

if [[ $only == all || $only == go ]]; then
  step "Go module: gofmt, go vet, go test ./... (auditlog beside the SQLite reference)"
  bindings/go/test.sh
fi

if [[ $only == all || $only == node ]]; then
  step "Node binding: build the addon (dev profile), type-check, node --test (bindings/node/test.sh)"
  bindings/node/test.sh
fi

if [[ $only == all || $only == serve ]]; then
  step "auditlog serve with a real OpenTelemetry client (Python SDK, OTLP/HTTP)"
  server/test.sh
fi

if [[ $only == all || $only == proofs ]]; then
  step "Proofs: checked by Go's golang.org/x/mod/sumdb/tlog and sumdb/note (tests/proofs-go)"
  tests/proofs-go/run.sh
fi

if [[ $only == all || $only == export ]]; then
  step "Export: DuckDB differential, crash (kill) and S3 (moto) tests (export/test.sh)"
  export/test.sh
fi
