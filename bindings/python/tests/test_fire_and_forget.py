"""Fire-and-forget: never raises into the caller, counts what it dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import auditlog
from conftest import T0, started


def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    s = auditlog.open(tmp_path / "log", fire_and_forget=True, queue_capacity=1)
    # Whether the flusher's batches outrun the writer is a matter of timing
    # (on a loaded machine the writer may keep up with 20,000 events): keep
    # appending, 20,000 at a time, until the queue has overflowed.
    n = 0
    for _ in range(10):
        for i in range(n, n + 20_000):
            s.append(started(f"r-{i}", T0 + i, inputs={"pad": "x" * 200}))
        n += 20_000
        s.flush()
        if s.counters()["dropped"] > 0:
            break
    c = s.counters()
    assert c["dropped"] > 0, "a 1-slot queue under a tight loop must overflow"
    assert c["appended"] + c["dropped"] == n
    stored = sum(1 for _ in s.replay())
    assert stored == c["appended"]
    s.close()


def test_bad_input_and_closed_store_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = auditlog.open(tmp_path / "log", fire_and_forget=True)
    with caplog.at_level(logging.WARNING, logger="auditlog"):
        s.append({"kind": "nope"})
        s.append({"kind": "run_log", "run_id": "r", "payload": {"b": b"x"}})
        s.append_batch([started("ok"), {"kind": "bad"}])
        s.start_run("", skill_id="x")
        s.finish_run("never-started")
        s.append(started("good"))
        s.flush()
        assert s.count() == 1
        s.close()
        s.append(started("after-close"))
        s.log("r", "t")
    f = s.failures()
    assert f["invalid"] == 5  # 2 appends + the 2-event strict batch + start_run
    assert f["not_found"] == 1
    assert f["closed"] == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "failures are logged"
    assert any("invalid" in r.getMessage() for r in warnings)


def test_fire_and_forget_with_fail_policy_counts_queue_full(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log", fire_and_forget=True, queue_capacity=1, on_full="fail") as s:
        for i in range(20_000):
            s.append(started(f"r-{i}", inputs={"pad": "y" * 200}))
        s.flush()
        assert s.failures()["queue_full"] > 0
        assert s.failures()["queue_full"] + s.counters()["appended"] == 20_000


def test_blocking_queue_loses_nothing(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log", queue_capacity=1) as s:
        for i in range(5000):
            s.append(started(f"r-{i}"))
        s.flush()
        assert s.count() == 5000
        assert s.counters()["dropped"] == 0


def test_waiting_on_a_dropped_event_raises(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log", queue_capacity=1, on_full="drop") as s:
        dropped = 0
        # As above: append in rounds until the queue has overflowed (an
        # idle machine's writer may keep up with a round).
        n = 0
        for _ in range(10):
            for i in range(n, n + 20_000):
                try:
                    s.append(started(f"r-{i}", inputs={"pad": "q" * 200}), wait=(i % 50 == 0))
                except auditlog.DroppedError:
                    dropped += 1
            n += 20_000
            s.flush()
            if s.counters()["dropped"] > 0:
                break
        assert s.counters()["dropped"] > 0
        # Only waited-on drops raise; the others are counted.
        assert dropped <= s.counters()["dropped"]


def test_queue_full_raises_a_retryable_error(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log", queue_capacity=1, on_full="fail") as s:
        with pytest.raises(auditlog.QueueFullError) as e:
            for i in range(50_000):
                s.append(started(f"r-{i}", inputs={"pad": "w" * 200}))
        assert e.value.retryable is True and e.value.capacity == 1
        assert auditlog.InvalidEventError("x").retryable is False
