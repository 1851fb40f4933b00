"""Shared helpers of the export's Python-driven tests (run by export/test.sh)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

BIN = os.environ.get("AUDITLOG_BIN", "")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rfc3339(us: int | None) -> str | None:
    """An instant as auditlog prints it: RFC 3339 UTC, 6 fraction digits, Z."""
    if us is None:
        return None
    t = EPOCH + timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def auditlog(log: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert BIN, "AUDITLOG_BIN is not set (run export/test.sh)"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run([BIN, "--dir", str(log), *args], capture_output=True, text=True, env=full_env)
    if check and p.returncode != 0:
        raise AssertionError(f"auditlog {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def lines(p: subprocess.CompletedProcess[str]) -> list[Any]:
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
