#!/usr/bin/env bash
# The Go module's tests: build the C library (release, shared target
# folder) and the command line (dev build: the served tests start
# `auditlog serve`), then go vet and go test ./... with cgo linking the
# library statically.
#   bindings/go/test.sh            tests
#   bindings/go/test.sh -bench .   extra arguments go to `go test`
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p auditlog-c --manifest-path "$root/Cargo.toml"
cargo build -p auditlog-cli --manifest-path "$root/Cargo.toml"
export AUDITLOG_BIN="$CARGO_TARGET_DIR/debug/auditlog"
export CGO_ENABLED=1
export CGO_LDFLAGS="-L$CARGO_TARGET_DIR/release ${CGO_LDFLAGS:-}"
cd "$here"
test -z "$(gofmt -l .)" || { echo "gofmt: these files need formatting:"; gofmt -l .; exit 1; }
go vet ./...
go test -count=1 "$@" ./...
