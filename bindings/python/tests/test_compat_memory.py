"""auditlog.compat.AuditLogger against the memory service's logger."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import auditlog
from auditlog import compat
from auditlog.compat import AuditEntry, AuditLogger


def test_disabled_by_default_and_allowlist(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log") as store:
        lg = AuditLogger(store)
        assert lg.enabled is False and lg.is_enabled("recall") is False
        lg.log(AuditEntry(action="recall", bank_id="b"))
        lg.enabled = True
        assert lg.is_enabled("recall") and not lg.is_enabled("not-listed")
        lg.log(AuditEntry(action="not-listed", bank_id="b"))
        lg.log(AuditEntry(action="recall", transport="http", bank_id="b", request={"q": "x"},
                          response={"memories": [1, 2]}, metadata={"user": "u"}))
        custom = AuditLogger(store, enabled=True, allowed_actions={"only-this"})
        assert custom.is_enabled("only-this") and not custom.is_enabled("recall")
        (e,) = lg.entries()
        assert (e.action, e.transport, e.bank_id) == ("recall", "http", "b")
        assert e.request == {"q": "x"} and e.response == {"memories": [1, 2]}
        assert e.metadata == {"user": "u"}
        assert store.count(skill="recall", channel="b") == 1


def test_log_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = auditlog.open(tmp_path / "log")  # not fire-and-forget: errors would raise
    lg = AuditLogger(store, enabled=True)
    store.close()
    with caplog.at_level(logging.WARNING, logger="auditlog.compat"):
        lg.log(AuditEntry(action="retain", bank_id="b"))
        lg.log(AuditEntry(action="retain", request={"bad": b"bytes"}))
    assert lg.failures == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_log_with_timing(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log") as store:
        lg = AuditLogger(store, enabled=True)

        async def main() -> None:
            async with lg.log_with_timing(AuditEntry(action="reflect", bank_id="b")) as e:
                await asyncio.sleep(0.05)
                e.response = {"answer": 42}
            with pytest.raises(ValueError):
                async with lg.log_with_timing(AuditEntry(action="recall", bank_id="b")):
                    raise ValueError("no memories")

        asyncio.run(main())
        store.flush()
        runs = {r.skill_id: r for r in store.runs()}
        ok, bad = runs["reflect"], runs["recall"]
        assert ok.status == "ok" and ok.runtime_seconds >= 0.04
        assert ok.finished_at is not None and ok.finished_at > ok.started_at
        assert bad.status == "error" and bad.error == "ValueError: no memories"


def test_retention_sweep(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    with auditlog.open(tmp_path / "log") as store:
        lg = AuditLogger(store, enabled=True, retention_days=30, sweep_interval=0.05)
        for days_ago in (100, 60, 1):
            t = now - timedelta(days=days_ago)
            lg.log(AuditEntry(action="retain", bank_id=f"b{days_ago}", started_at=t, ended_at=t))
        lg.log(AuditEntry(action="retain", bank_id="today"))
        store.flush()
        lg.start_retention_sweep()
        deadline = time.monotonic() + 10
        while store.count() != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        lg.stop_retention_sweep()
        assert sorted(e.bank_id or "" for e in lg.entries()) == ["b1", "today"]
        assert lg.last_sweep is not None
        assert store.verify()["ok"] is True


def test_default_logger_is_a_noop(tmp_path: Path) -> None:
    default = compat.get_audit_logger()
    assert default.store is None and not default.is_enabled("recall")
    default.enabled = True
    default.log(AuditEntry(action="recall"))  # nowhere to write: nothing happens
    default.enabled = False
    with auditlog.open(tmp_path / "log") as store:
        mine = AuditLogger(store, enabled=True)
        compat.set_audit_logger(mine)
        assert compat.get_audit_logger() is mine
        compat.set_audit_logger(None)
        assert compat.get_audit_logger().store is None


def test_logger_opens_a_folder(tmp_path: Path) -> None:
    lg = AuditLogger(tmp_path / "log", enabled=True)
    lg.log(AuditEntry(action="create_bank", bank_id="b"))
    assert [e.action for e in lg.entries()] == ["create_bank"]
    lg.close()
