"""auditlog.compat.AuditStore against the store it replaces (its memory
backend is the reference), never raising, never storing the payload."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import auditlog
from auditlog import compat
from auditlog.compat import governance
from conftest import sentinel_in_folder

BASE = 1_795_420_800.0  # 2026-11-23T08:00:00Z, epoch seconds as the gateway writes them


def calls(n: int = 60) -> List[Dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "ts": BASE + i * 60.5,
                "req_id": f"req-{i}",
                "workspace_id": f"ws-{i % 3}",
                "user_id": f"user-{i % 4}",
                "agent_id": f"agent-{i % 5}",
                "tool": ["fs.read", "http.get", "shell"][i % 3],
                "action": "invoke",
                "status": "error" if i % 7 == 0 else "ok",
                "duration_ms": 10 + i,
                "input": {"path": f"/tmp/{i}", "token": "t"},
                "output": "x" * i,
                "graph_run_id": f"g-{i // 10}",
                "graph_node": "node",
                "job_id": None,
            }
        )
    return out


@pytest.fixture
def both(tmp_path: Path):  # type: ignore[no-untyped-def]
    ours = compat.AuditStore(tmp_path / "log")
    ref = compat.MemoryAuditStore()
    for c in calls():
        ours.write(c)
        ref.write(c)
    yield ours, ref
    ours.close()


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"limit": 5},
        {"tool": "http.get"},
        {"agent_id": "agent-2"},
        {"workspace_id": "ws-1", "tool": "shell"},
        {"from_ts": BASE + 600, "to_ts": BASE + 1800},
        {"from_ts": "2026-11-23T08:10:00+00:00", "limit": 3},
        {"tool": "nope"},
        {"limit": 0},
    ],
)
def test_read_matches_the_replaced_store(both: Any, query: Dict[str, Any]) -> None:
    ours, ref = both
    assert ours.read(**query) == ref.read(**query)


def test_records_keep_only_governance_fields(both: Any) -> None:
    ours, _ = both
    rec = ours.read(limit=1)[0]
    assert set(rec) <= set(governance.FIELDS)
    assert rec["input_hash"].startswith("sha256:") and rec["in_size"] > 0
    assert rec["ts"] == BASE and rec["req_id"] == "req-0" and "job_id" not in rec
    assert ours.read(limit=1000)[-1]["out_size"] == len('"' + "x" * 59 + '"')


def test_payload_never_reaches_the_disk(tmp_path: Path) -> None:
    secret = "SENTINEL-gov-7f3a"
    store = compat.AuditStore(tmp_path / "log")
    store.write({"req_id": "r1", "tool": "http.post", "status": "ok", "input": {"body": secret},
                 "output": secret, "payload": secret, "response_body": secret, "args": [secret],
                 "unknown_key": secret, "nested": {"deep": secret}})
    store.write({"req_id": "r2", "tool": "fs.read", "request": {"q": secret}, "result": {"r": secret}})
    assert len(store.read()) == 2
    store.store.verify()
    store.close()
    assert sentinel_in_folder(tmp_path / "log", secret) == []


def test_write_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = compat.AuditStore(tmp_path / "log")
    with caplog.at_level(logging.WARNING):
        store.write(None)  # type: ignore[arg-type]
        store.write({"ts": "not a time", "tool": "x"})
        store.write({"ts": object(), "tool": "x"})
        store.write({"tool": "x", "duration_ms": object()})
        store.write({"req_id": "r" * 2_000_000, "tool": "x"})  # over the engine's event size
        store.write({"req_id": "fine", "tool": "x"})
    assert [r["req_id"] for r in store.read()] == ["fine"]
    assert store.dropped() == 5
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    store.close()
    store.write({"req_id": "after-close", "tool": "x"})  # closed: still no exception
    store.close()


def test_write_does_not_block_on_a_full_queue(tmp_path: Path) -> None:
    # The queue holds one batch, so a write that finds the log busy (a
    # block being synced) drops its record and counts it instead of
    # waiting. How soon that happens depends on this machine's disk and
    # load: write until the first drop, in rounds, rather than a fixed
    # count that an idle machine's writer may keep up with.
    store = compat.AuditStore(tmp_path / "log", queue_capacity=1)
    n = 0
    t0 = time.perf_counter()
    while store.dropped() == 0 and time.perf_counter() - t0 < 30:
        for _ in range(20_000):
            store.write({"req_id": f"r{n}", "tool": "t", "input": "x" * 100})
            n += 1
    elapsed = time.perf_counter() - t0
    store.store.flush()
    stored = store.store.count_calls(tool="t")
    assert stored + store.dropped() == n, (stored, store.dropped(), n)
    assert store.dropped() > 0, f"no write found the queue full in {n} writes"
    assert elapsed < 90  # a sanity bound only; the property is that nothing waits
    store.close()


def test_backend_selection_and_singleton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compat.set_audit_store(None)
    monkeypatch.setenv("AUDIT_BACKEND", "auditlog")
    monkeypatch.setenv("AUDIT_DIR", str(tmp_path / "env-log"))
    s = compat.get_audit_store()
    assert isinstance(s, compat.AuditStore)
    assert compat.get_audit_store() is s
    s.write({"req_id": "env", "tool": "t"})
    assert s.read()[0]["req_id"] == "env"
    s.close()
    mem = compat.MemoryAuditStore()
    compat.set_audit_store(mem)
    assert compat.get_audit_store() is mem
    compat.set_audit_store(None)
    monkeypatch.setenv("AUDIT_BACKEND", "jsonl")
    j = compat.get_audit_store()
    assert isinstance(j, compat.JsonlAuditStore)
    j.write({"req_id": "j", "tool": "t", "ts": BASE})
    assert j.read()[0]["req_id"] == "j"
    j.close()
    compat.set_audit_store(None)
    monkeypatch.setenv("AUDIT_BACKEND", "memory")
    assert isinstance(compat.get_audit_store(), compat.MemoryAuditStore)
    compat.set_audit_store(None)
    monkeypatch.setenv("AUDIT_BACKEND", "postgres")
    with pytest.raises(ValueError, match="AUDIT_BACKEND"):
        compat.get_audit_store()
    compat.set_audit_store(None)


def test_jsonl_backend_matches_memory(tmp_path: Path) -> None:
    j = compat.JsonlAuditStore(tmp_path / "jsonl")
    m = compat.MemoryAuditStore()
    for c in calls(20):
        j.write(c)
        m.write(c)
    assert j.read(tool="shell") == m.read(tool="shell")
    j.close()


def test_failing_governance_calls_reach_tool_errors(both: Any) -> None:
    ours, _ = both
    ours.store.flush()
    assert sum(g.count for g in ours.store.tool_errors()) == 9  # i % 7 == 0 for 60 calls


def test_governance_calls_are_first_class_tool_calls(both: Any) -> None:
    """Standalone calls (no run): counted and grouped by the engine's calls
    indexes, by their own agent, workspace and request, no run made."""
    ours, _ = both
    ours.store.flush()
    assert ours.store.count() == 0, "no fake runs"
    assert ours.store.count_calls() == 60
    assert ours.store.count_calls(by="tool") == [("fs.read", 20), ("http.get", 20), ("shell", 20)]
    assert ours.store.count_calls(agent="agent-2", status="error") == sum(
        1 for i in range(60) if i % 5 == 2 and i % 7 == 0)
    [c] = [c for c in ours.store.calls(workspace="ws-1", oldest_first=True) if c["request_id"] == "req-7"]
    assert (c["run_id"], c["caller_id"], c["tool"], c["status"], c["duration_ms"]) == ("", "agent-2", "http.get", "error", 17.0)
    assert c["input_bytes"] == c["payload"]["in_size"] and c["input_hash"].startswith("sha256:")
