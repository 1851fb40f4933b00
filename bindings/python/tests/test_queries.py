"""Every query of the Rust AuditStore, from Python, on one small log."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import auditlog
from conftest import T0, finished, logged, started

HOUR = 3_600_000_000


@pytest.fixture
def filled(store: auditlog.Store) -> auditlog.Store:
    """Three skills, sub-runs, a dry run, failing tool calls, one running."""
    ev = []
    for i in range(6):
        rid = f"run-{i}"
        skill = "search" if i % 2 == 0 else "write"
        ev.append(started(rid, T0 + i * HOUR, skill_id=skill, caller_id=f"u-{i % 2}",
                          channel_id=f"sess-{i % 3}", inputs={"i": i}))
        ev.append(logged(rid, T0 + i * HOUR + 1, seq=0, event_type="tool_call",
                         payload={"tool": "http.get", "status": "error" if i % 2 else "ok",
                                  "error_type": "timeout", "duration_ms": 10 * i}))
        if i != 5:
            ev.append(finished(rid, T0 + i * HOUR + 2, status="error" if i == 3 else "ok"))
    ev.append(started("child-1", T0 + 10, skill_id="sub", parent_run_id="run-0"))
    ev.append(started("child-2", T0 + 11, skill_id="sub", parent_run_id="child-1"))
    ev.append(started("dry", T0 - 1, skill_id="search", dry_run=True))
    store.append_batch(ev)
    store.flush()
    return store


def ids(runs: list[auditlog.Run]) -> list[str]:
    return [r.id for r in runs]


def test_runs_and_count_filters(filled: auditlog.Store) -> None:
    s = filled
    assert ids(s.runs(skill="search")) == ["run-4", "run-2", "run-0"]
    assert ids(s.runs(skill="search", include_dry_run=True))[-1] == "dry"
    assert ids(s.runs(skill="search", limit=2, offset=1)) == ["run-2", "run-0"]
    assert ids(s.runs(caller="u-1")) == ["run-5", "run-3", "run-1"]
    assert ids(s.runs(channel="sess-0")) == ["run-3", "run-0"]
    assert ids(s.runs(status="running")) == ["run-5", "child-2", "child-1"]
    assert ids(s.runs(parent="run-0")) == ["child-1"]
    assert "child-1" not in ids(s.runs(top_level=True))
    since = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    assert ids(s.runs(since=since, until=T0 + 4 * HOUR)) == ["run-4", "run-3", "run-2"]
    assert ids(s.runs(since="2026-11-23T12:00:00Z")) == ["run-5", "run-4"]
    assert s.count() == 8
    assert s.count(skill="search", include_dry_run=True) == 4
    assert s.count(status="error") == 1


def test_rust_named_aliases(filled: auditlog.Store) -> None:
    s = filled
    assert ids(s.list_runs_by_skill("search")) == ids(s.runs(skill="search"))
    assert ids(s.list_runs_by_skill("search", limit=1, offset=1)) == ["run-2"]
    assert s.count_by_skill("search", True) == 4
    assert ids(s.list_runs_by_caller("u-0", limit=2)) == ["run-4", "run-2"]
    assert ids(s.parent_chain("child-2")) == ["child-2", "child-1", "run-0"]
    assert ids(s.finished_runs_before(T0 + 2 * HOUR)) == ids(s.finished_before(T0 + 2 * HOUR))
    assert s.last_run_per_skill(["write"]) == s.last_run(["write"])


def test_run_logs_children_chain(filled: auditlog.Store) -> None:
    s = filled
    r = s.get_run("run-3")
    assert r is not None
    assert r.to_dict()["inputs"] == {"i": 3}
    assert list(r.to_dict()) == ["id", "skill_id", "caller_id", "channel_id", "parent_run_id",
                                 "inputs", "dry_run", "started_at", "finished_at", "status",
                                 "output", "error", "tool_calls", "runtime_seconds",
                                 "input_tokens", "output_tokens", "thinking_tokens"]
    assert s.get_run("nope") is None
    (log,) = s.list_logs("run-3")
    assert log.to_dict()["payload"]["duration_ms"] == 30
    assert log.ts_us == T0 + 3 * HOUR + 1
    assert ids(s.children("run-0")) == ["child-1"]
    assert s.children("nope") == []
    assert ids(s.chain("child-2")) == ["child-2", "child-1", "run-0"]
    with pytest.raises(auditlog.NotFoundError):
        s.chain("nope")


def test_finished_before_and_last_run(filled: auditlog.Store) -> None:
    s = filled
    assert ids(s.finished_before(T0 + 2 * HOUR)) == ["run-1", "run-0"]
    last = s.last_run(["search", "write", "nothing"])
    assert list(last) == ["search", "write", "nothing"]
    assert last["search"] == datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)  # run-4
    assert last["nothing"] is None
    # run-3 (write) failed; run-5 (write) still runs and counts
    assert last["write"] == datetime(2026, 11, 23, 13, 0, tzinfo=timezone.utc)
    assert s.last_run(["search"], include_failed=True)["search"] == last["search"]


def test_tool_errors(filled: auditlog.Store) -> None:
    groups = filled.tool_errors()
    assert [(g.channel_id, g.tool, g.error_type, g.count) for g in groups] == [
        ("sess-0", "http.get", "timeout", 1),
        ("sess-1", "http.get", "timeout", 1),
        ("sess-2", "http.get", "timeout", 1),
    ]
    g = groups[0]
    assert g.run_ids == ["run-3"] and g.caller_ids == ["u-1"]
    assert g.avg_duration_ms == 30.0
    assert g.first_ts == g.last_ts == datetime(2026, 11, 23, 11, 0, 0, 1, tzinfo=timezone.utc)
    assert g.to_dict()["count"] == 1
    only = filled.tool_errors(since=T0 + 4 * HOUR, until=T0 + 6 * HOUR)
    assert [x.channel_id for x in only] == ["sess-2"]


def test_replay_ranges(filled: auditlog.Store) -> None:
    s = filled
    all_events = list(s.replay())
    assert len(all_events) == 20
    assert [e["lsn"] for e in s.replay(from_lsn=18)] == [18, 19]
    window = list(s.replay(since=T0 + HOUR, until=T0 + HOUR + 2))
    assert [e["kind"] for e in window] == ["run_started", "run_log", "run_finished"]
    from_disk = list(auditlog.replay(s.dir))
    assert from_disk == all_events


def test_tail_and_follow(store: auditlog.Store) -> None:
    store.append_batch([started(f"t-{i}", T0 + i) for i in range(20)])
    store.flush()
    assert [e["run_id"] for e in store.tail(3)] == ["t-17", "t-18", "t-19"]
    assert len(list(store.tail(100))) == 20

    seen: list[str] = []

    def follow() -> None:
        for e in store.tail(0, follow=True, idle_timeout=3.0):
            seen.append(e["run_id"])
            if len(seen) == 5:
                break

    th = threading.Thread(target=follow)
    th.start()
    time.sleep(0.2)
    for i in range(5):
        store.append(started(f"new-{i}"))
    store.flush()
    th.join(10)
    assert not th.is_alive()
    assert seen == [f"new-{i}" for i in range(5)]


def test_tail_follow_ends_when_idle_or_closed(log_dir: Path) -> None:
    s = auditlog.open(log_dir)
    t0 = time.monotonic()
    assert list(s.tail(5, follow=True, idle_timeout=0.3)) == []
    assert time.monotonic() - t0 >= 0.25
    it = s.tail(follow=True)
    threading.Timer(0.3, s.close).start()
    assert list(it) == []  # stops once the store is closed


def test_retain(log_dir: Path) -> None:
    day = 86_400_000_000
    with auditlog.open(log_dir) as s:
        for d in range(3):  # one segment per UTC day of the events
            s.append(started(f"d-{d}", T0 + d * day))
        s.flush()
        before = s.stats()["segments"]
        rep = s.retain(before=T0 + day)
        assert [x["events"] for x in rep["dropped_segments"]] == [1]
        assert rep["dropped_events"] == 1 and rep["first_kept_lsn"] == 1
        assert rep["cutoff"] == datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
        # d-0 is still running: retention carries it forward, never drops
        # its start (docs/queries.md, "Retention"; issue 14).
        assert s.get_run("d-0") is not None and s.get_run("d-1") is not None
        assert s.stats()["segments"] == before - 1
        assert s.stats()["dropped_events"] == 1
        assert s.retain(older_than=timedelta(days=365 * 100))["dropped_events"] == 0
        with pytest.raises(auditlog.InvalidArgumentError):
            s.retain()
        assert s.verify()["ok"] is True


def test_verify_stats_counters(filled: auditlog.Store) -> None:
    s = filled
    v = s.verify()
    assert v["ok"] is True and v["events"] == 20 and v["head_lsn"] == 20
    digest = v["head_digest"]
    assert auditlog.verify(s.dir, expect=digest)["ok"] is True
    missing = auditlog.verify(s.dir, expect="ab" * 32)
    assert missing["ok"] is False and missing["expect_found_at"] is None
    with pytest.raises(auditlog.InvalidArgumentError):
        s.verify(expect="xyz")
    st = s.stats()
    assert st["events"] == 20 and st["head_digest"] == digest
    assert st["anomalies"] == {"duplicate_run_started": 0, "duplicate_run_finished": 0,
                               "orphan_logs": 0, "finishes_without_start": 0}
    assert st["oldest_ts"] == datetime(2026, 11, 23, 7, 59, 59, 999999, tzinfo=timezone.utc)
    assert "anomalies" not in s.stats(anomalies=False)
    c = s.counters()
    assert c["appended"] == 20 and c["durable_lsn"] == 20 and c["queue_depth"] == 0


def test_verify_names_the_damage(log_dir: Path) -> None:
    with auditlog.open(log_dir) as s:
        s.append_batch([started(f"v-{i}", T0 + i, inputs={"pad": "x" * 100}) for i in range(50)])
    seg = sorted(p for p in log_dir.iterdir() if p.suffix == ".seg")[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    v = auditlog.verify(log_dir)
    assert v["ok"] is False
    assert v["segment"] == seg.name and v["offset"] > 0 and v["reason"]


def test_missing_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(auditlog.NoLogError):
        auditlog.open(tmp_path / "missing", create=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(auditlog.NotALogError):
        auditlog.open(foreign)
    with pytest.raises(auditlog.NoLogError):
        auditlog.verify(tmp_path / "missing")


def test_second_writer_is_refused(store: auditlog.Store, log_dir: Path) -> None:
    with pytest.raises(auditlog.LockedError) as e:
        auditlog.open(log_dir)
    assert "already open for writing" in str(e.value)


def test_closed_store_raises(log_dir: Path) -> None:
    s = auditlog.open(log_dir)
    s.close()
    s.close()  # idempotent
    for call in (lambda: s.append(started("x")), s.flush, lambda: s.runs(), lambda: s.get_run("x")):
        with pytest.raises(auditlog.ClosedError):
            call()
    assert "closed" in repr(s)


def test_replay_of_a_damaged_segment_raises(log_dir: Path) -> None:
    with auditlog.open(log_dir) as s:
        s.append_batch([started(f"c-{i}", T0 + i, inputs={"pad": "z" * 100}) for i in range(50)])
        s.append(started("next-day", T0 + 86_400_000_000))  # seals the first day's segment
    seg = sorted(p for p in log_dir.iterdir() if p.suffix == ".seg")[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(auditlog.CorruptError) as e:
        for _ in auditlog.replay(log_dir):
            pass
    assert e.value.segment == seg.name and e.value.offset is not None


def test_small_accessors(log_dir: Path) -> None:
    now = auditlog.utc_now()
    assert now.tzinfo is not None
    with auditlog.open(log_dir, fire_and_forget=True) as s:
        assert s.fire_and_forget is True
        assert Path(s.dir) == log_dir.resolve()
        s.append(started("w"), wait=True)  # durable when it returns
        assert s.counters()["durable_lsn"] >= 1 or sum(1 for _ in s.replay()) == 1
        assert set(s.failures()) == {"invalid", "queue_full", "closed", "writer_failed",
                                     "not_found", "forked", "other"}
