"""Shared fixtures: a fresh log folder and an open store on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

import auditlog

# A fixed base instant (2026-11-23T08:00:00Z) so tests do not depend on the clock.
T0 = 1_795_420_800_000_000


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def store(log_dir: Path) -> Iterator[auditlog.Store]:
    s = auditlog.open(log_dir)
    try:
        yield s
    finally:
        s.close()


def started(run_id: str, ts: Any = T0, **fields: Any) -> Dict[str, Any]:
    return {"kind": "run_started", "run_id": run_id, "ts": ts, **fields}


def logged(run_id: str, ts: Any = T0, **fields: Any) -> Dict[str, Any]:
    return {"kind": "run_log", "run_id": run_id, "ts": ts, **fields}


def finished(run_id: str, ts: Any = T0, **fields: Any) -> Dict[str, Any]:
    return {"kind": "run_finished", "run_id": run_id, "ts": ts, **fields}


def files_under(path: Path) -> Iterator[Path]:
    for root, _dirs, names in os.walk(path):
        for n in names:
            yield Path(root) / n


def sentinel_in_folder(path: Path, sentinel: str) -> list[Path]:
    """Every file under `path` whose bytes contain `sentinel`."""
    needle = sentinel.encode()
    return [p for p in files_under(path) if needle in p.read_bytes()]
