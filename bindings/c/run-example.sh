#!/usr/bin/env bash
# Build the C library (release), compile examples/basic.c against the
# static library and the checked-in header, and run it on a fresh folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p auditlog-c --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -std=c11 -Wall -Wextra -Werror -I"$here/include" "$here/examples/basic.c" \
   "$CARGO_TARGET_DIR/release/libauditlog_c.a" -lpthread -ldl -lm -o "$work/basic"
"$work/basic" "$work/log"
