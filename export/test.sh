#!/usr/bin/env bash
# The export's Python-driven tests: DuckDB over the exported Parquet against
# `auditlog` (differential), crash (kill) tests, and S3 through moto's server
# on a loopback port, after a mypy check of this Python. Makes its own
# virtualenv under target/ on first use and installs what it needs from
# PyPI; the tests never reach anything but localhost.
#
#   export/test.sh            all of them
#   export/test.sh -k s3      pytest's selection
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$CARGO_TARGET_DIR/export-venv"
want="duckdb>=1.1,<3 pytest>=8,<9 mypy>=1.10,<2"
# The S3 tests' local server: optional. If PyPI cannot give it, those
# tests are skipped with a message saying S3 was not tested.
want_s3="moto[server]>=5,<6 boto3>=1.34,<2"
stamp="$venv/.installed"
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want $want_s3" ]]; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  # shellcheck disable=SC2086
  if "$venv/bin/pip" install --quiet --disable-pip-version-check $want_s3; then
    echo "$want $want_s3" > "$stamp"
  else
    echo "export/test.sh: cannot install $want_s3: the S3 tests will be SKIPPED" >&2
  fi
fi
# The Python here is type-checked like the rest of the project's code.
"$venv/bin/python" -m mypy --ignore-missing-imports --no-error-summary \
  export/tests/py export/bench
cargo build --quiet -p auditlog-cli
export AUDITLOG_BIN="$CARGO_TARGET_DIR/debug/auditlog"
cd export/tests/py
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
