#!/usr/bin/env bash
# The Python binding's tests: build the extension into a virtualenv with the
# documented command (README.md: `maturin develop`), then run pytest and a
# strict mypy over the package, its stubs and the tests.
#
#   bindings/python/test.sh            dev build with full-text search
#   AUDITLOG_PY_FEATURES= bindings/python/test.sh   without search (faster
#                                      first build; the search tests skip)
#
# The virtualenv lives under the Cargo target folder ($CARGO_TARGET_DIR,
# default ./target at the repository root), which the Rust build shares.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="${AUDITLOG_PY_VENV:-$CARGO_TARGET_DIR/python-venv}"
features="${AUDITLOG_PY_FEATURES-search}"

if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-dev.txt"
# shellcheck disable=SC1091
source "$venv/bin/activate"

# The documented build-and-install command (dev profile, like every test build).
if [[ -n $features ]]; then
  maturin develop --manifest-path "$here/Cargo.toml" --features "$features"
else
  maturin develop --manifest-path "$here/Cargo.toml"
fi

# `auditlog serve` for the connect() tests (a no-op when the Rust step built it).
cargo build --quiet --manifest-path "$root/Cargo.toml" -p auditlog-cli
export AUDITLOG_BIN="$CARGO_TARGET_DIR/debug/auditlog"

cd "$here"
python -m pytest tests -q
mypy python/auditlog tests bench
