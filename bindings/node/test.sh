#!/usr/bin/env bash
# The Node binding's checks: install the npm tooling, build the addon
# (dev profile: CI builds must stay cheap) and the TypeScript, type-check
# the package and its tests, run the tests with Node's own runner (the
# served ones against a real `auditlog serve`).
#
#   bindings/node/test.sh                  everything, without full-text search
#   AUDITLOG_NODE_SEARCH=1 bindings/node/test.sh
#                                          with the `search` feature (builds
#                                          tantivy: minutes more on 2 cores)
#
# The Rust build shares the workspace's target folder (CARGO_TARGET_DIR,
# ./target by default).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}"

if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

features=()
if [[ ${AUDITLOG_NODE_SEARCH:-0} == 1 ]]; then
  features=(--features search)
fi
# The served tests (test/served.test.js) start `auditlog serve`: the
# command line's dev build, shared with the Rust tests.
cargo build --quiet -p auditlog-cli --manifest-path ../../Cargo.toml
export AUDITLOG_BIN="$CARGO_TARGET_DIR/debug/auditlog"
npx napi build --platform --js native.js --dts native.d.ts --no-dts-header "${features[@]}"
npx tsc -p tsconfig.json
npx tsc -p test/tsconfig.json
node --test --test-reporter=spec test/*.test.js
