"""Write failures seen from Python, provoked through the engine's I/O fault
seam (``auditlog._testing.Faults``, test-only): the behaviour documented in
docs/reliability.md and bindings/python/README.md ("Write failures").

- A block write that fails (ENOSPC, EIO, short) is cut back: the events in
  it are not stored, the failure reaches the caller as a retryable
  ``WriteRolledBackError`` (at ``flush()``, at once with ``wait=True``),
  and the log carries on once the disk has room again.
- A failed fdatasync stops the writer: ``WriterFailedError`` now and for
  every later write; a reopen recovers every acknowledged event and the
  folder verifies.
- In fire-and-forget mode none of this raises from an append: the lost
  events are counted under ``failures()["writer_failed"]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

import pytest

import auditlog
from auditlog._testing import Faults
from conftest import T0, started


def run_ids(log_dir: Path) -> List[str]:
    return [str(ev["run_id"]) for ev in auditlog.replay(log_dir)]


def assert_verifies(log_dir: Path) -> None:
    report = auditlog.verify(log_dir)
    assert report["ok"], report


def test_enospc_on_write_is_a_retryable_rolled_back_write_and_the_log_carries_on(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "log"
    faults = Faults()
    s = auditlog.open(log_dir, _faults=faults)
    s.append(started("ok-1", T0 + 1))
    s.append_batch([started("ok-2", T0 + 2), started("ok-3", T0 + 3)])
    s.flush()

    faults.fail("write", "ENOSPC")  # the disk is full until cleared
    # A staged append returns at once; the flush that follows says its
    # write was cut back (it must not return as if the event were stored).
    s.append(started("lost-1", T0 + 4))
    with pytest.raises(auditlog.WriteRolledBackError) as e:
        s.flush()
    assert e.value.retryable is True
    assert isinstance(e.value, auditlog.Error)
    msg = str(e.value)
    assert "No space left on device" in msg, msg
    assert "1 event(s) appended earlier were not stored" in msg, msg

    s.append_batch([started("lost-2", T0 + 5), started("lost-3", T0 + 6)])
    with pytest.raises(auditlog.WriteRolledBackError, match="2 event"):
        s.flush()
    # Waiting appends raise at once.
    with pytest.raises(auditlog.WriteRolledBackError, match="No space left"):
        s.append(started("lost-4", T0 + 7), wait=True)
    with pytest.raises(auditlog.WriteRolledBackError):
        s.append_batch([started("lost-5", T0 + 8)], wait=True)
    assert s.counters()["dropped"] == 0

    faults.clear()  # space freed: the same handle works again
    s.append(started("ok-4", T0 + 9))
    s.append_batch([started("ok-5", T0 + 10)])
    s.append(started("ok-6", T0 + 11), wait=True)
    s.flush()
    assert s.count() == 6
    s.close()

    assert faults.injected()["write ENOSPC"] >= 4
    assert run_ids(log_dir) == ["ok-1", "ok-2", "ok-3", "ok-4", "ok-5", "ok-6"]
    assert_verifies(log_dir)
    with auditlog.open(log_dir) as again:
        assert again.count() == 6


@pytest.mark.parametrize("short", [0, 1, 9, 100])
def test_short_write_then_eio_is_cut_back(tmp_path: Path, short: int) -> None:
    log_dir = tmp_path / "log"
    faults = Faults()
    with auditlog.open(log_dir, _faults=faults) as s:
        s.append(started("ok-1", T0 + 1), wait=True)
        faults.fail("write", "EIO", times=1, short=short)
        with pytest.raises(auditlog.WriteRolledBackError, match="Input/output error"):
            s.append(started("lost", T0 + 2, inputs={"pad": "p" * 300}), wait=True)
        s.append(started("ok-2", T0 + 3))
        s.flush()
    assert faults.injected() == {"write EIO": 1}
    assert run_ids(log_dir) == ["ok-1", "ok-2"]
    assert_verifies(log_dir)


def test_eio_on_fdatasync_stops_the_writer_and_a_reopen_recovers_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "log"
    faults = Faults()
    s = auditlog.open(log_dir, _faults=faults)
    s.append_batch([started(f"acked-{i}", T0 + i) for i in range(3)])
    s.flush()
    s.append(started("acked-3", T0 + 3), wait=True)
    acknowledged = [f"acked-{i}" for i in range(4)]

    faults.fail("fdatasync", "EIO", times=1)
    s.append(started("unacked-1", T0 + 10))
    with pytest.raises(auditlog.WriterFailedError) as e:
        s.flush()
    assert "Input/output error" in str(e.value), str(e.value)
    assert e.value.retryable is False

    # The writer stays stopped (the fault fired once; a sync that failed is
    # never retried as if the data were safe): every later write fails.
    with pytest.raises(auditlog.WriterFailedError, match="must be reopened"):
        s.append(started("unacked-2", T0 + 11), wait=True)
    with pytest.raises(auditlog.WriterFailedError):
        s.append_batch([started("unacked-3", T0 + 12)], wait=True)
    # A batch without wait is staged (it returns at once, or raises if the
    # failure of the stage is already known); flush then raises for sure.
    try:
        s.append_batch([started("unacked-4", T0 + 13)])
    except auditlog.WriterFailedError:
        pass
    with pytest.raises(auditlog.WriterFailedError):
        s.flush()
    # Queries answer from what was committed.
    assert s.count() >= 4
    with pytest.raises(auditlog.Error):
        s.close()
    assert s.closed

    # A reopen recovers every acknowledged event, in order, and verifies.
    assert_verifies(log_dir)
    with auditlog.open(log_dir) as again:
        ids = [str(ev["run_id"]) for ev in again.replay()]
        assert ids[: len(acknowledged)] == acknowledged
        # Beyond those only what was appended (whatever reached the disk).
        assert set(ids[len(acknowledged) :]) <= {"unacked-1"}
        again.append(started("after-reopen", T0 + 20))
        again.flush()
    assert run_ids(log_dir)[-1] == "after-reopen"
    assert_verifies(log_dir)
    assert faults.injected() == {"fdatasync EIO": 1}


def test_fire_and_forget_never_raises_under_write_failures_and_counts_the_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_dir = tmp_path / "log"
    faults = Faults()
    s = auditlog.open(log_dir, fire_and_forget=True, _faults=faults)
    s.append(started("ok-1", T0 + 1))
    s.flush()

    faults.fail("write", "ENOSPC")
    with caplog.at_level(logging.WARNING, logger="auditlog"):
        for i in range(10):
            s.append(started(f"lost-{i}", T0 + 10 + i))
        s.append_batch([started(f"lost-b{i}", T0 + 30 + i) for i in range(5)])
        s.append(started("lost-w", T0 + 40), wait=True)
        # flush counts the appends it finds lost. Whether it then raises
        # depends on whether it had a block of its own to write while the
        # disk was full (it asks for durability: it says when it cannot).
        try:
            s.flush()
        except auditlog.WriteRolledBackError:
            pass
    assert s.failures()["writer_failed"] == 16
    assert any("writer_failed" in r.getMessage() for r in caplog.records)

    faults.clear()
    s.append(started("ok-2", T0 + 50))
    s.flush()

    # A failed fdatasync stops the writer: appends and helpers still never
    # raise, and every event they could not store is counted.
    faults.fail("fdatasync", "EIO", times=1)
    s.append(started("maybe", T0 + 60))
    with pytest.raises(auditlog.WriterFailedError):
        s.flush()  # flush asks for durability: it says when it cannot
    before = s.failures()["writer_failed"]
    for i in range(5):
        s.append(started(f"after-{i}", T0 + 70 + i), wait=True)
    s.append_batch([started(f"after-b{i}", T0 + 80 + i) for i in range(3)])
    s.tool_call("ok-1", "http.get", ts=T0 + 90)
    # The waiting appends failed at once; the staged batch and tool call
    # fail on the flusher thread, and are counted by close at the latest.
    assert s.failures()["writer_failed"] >= before + 5
    s.close()  # what closing could not store is counted, not raised
    assert s.failures()["writer_failed"] >= before + 9

    ids = run_ids(log_dir)
    assert ids[:2] == ["ok-1", "ok-2"]
    assert set(ids[2:]) <= {"maybe"}
    assert_verifies(log_dir)


def test_faults_reject_bad_rules() -> None:
    faults = Faults()
    with pytest.raises(auditlog.InvalidArgumentError, match="on"):
        faults.fail("read", "EIO")
    with pytest.raises(auditlog.InvalidArgumentError, match="errno"):
        faults.fail("write", "EWHAT")
    with pytest.raises(auditlog.InvalidArgumentError, match="short"):
        faults.fail("fdatasync", "EIO", short=3)
    assert faults.injected() == {}
