"""auditlog.connect(path): the store's API over `auditlog serve`, for many
processes at once, answering like an open store."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import auditlog

from conftest import T0, finished, logged, started

BIN = os.environ.get("AUDITLOG_BIN", "")

pytestmark = pytest.mark.skipif(
    not BIN or not Path(BIN).exists(),
    reason="needs the auditlog binary (AUDITLOG_BIN; test.sh builds it)",
)


class Server:
    def __init__(self, log_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [BIN, "--dir", str(log_dir), "serve", "--no-http"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.socket: str = ready["socket"]

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "served")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def workload() -> List[Dict[str, Any]]:
    return [
        started("p-1", T0, skill_id="web.search", caller_id="u-1", channel_id="s-1", inputs={"q": "needle"}),
        started("c-1", T0 + 10, skill_id="web.fetch", caller_id="u-1", channel_id="s-1", parent_run_id="p-1"),
        logged("c-1", T0 + 20, seq=0, event_type="tool_call",
               payload={"tool": "http.get", "status": "error", "error_type": "timeout", "duration_ms": 5000}),
        finished("c-1", T0 + 30, status="error", error="upstream timeout"),
        started("d-1", T0 + 40, skill_id="web.search", dry_run=True),
    ]


def answers(s: Any) -> Dict[str, Any]:
    """Every query's answer, in plain values."""
    return {
        "runs": [r.to_dict() for r in s.runs()],
        "runs_dry": [r.to_dict() for r in s.runs(include_dry_run=True)],
        "count": s.count(skill="web.search"),
        "get": s.get_run("c-1").to_dict(),
        "logs": [entry.to_dict() for entry in s.list_logs("c-1")],
        "children": [r.id for r in s.children("p-1")],
        "chain": [r.id for r in s.chain("c-1")],
        "finished_before": [r.id for r in s.finished_before(T0 + 31)],
        "last_run": s.last_run(["web.search", "web.fetch", "none"], include_failed=True),
        "errors": [g.to_dict() for g in s.tool_errors()],
        "replay": [(e["lsn"], e["kind"], e["run_id"]) for e in s.replay()],
        "by_skill": [r.id for r in s.list_runs_by_skill("web.search", True)],
    }


def test_a_served_log_answers_like_an_open_one(tmp_path: Path, server: Server) -> None:
    with auditlog.open(tmp_path / "embedded") as embedded:
        embedded.append_batch(workload())
        embedded.flush()
        want = answers(embedded)
    with auditlog.connect(server.socket) as served:
        assert served.append_batch(workload()) == []
        got = answers(served)
    assert got == want


def test_writes_are_durable_on_return_and_errors_are_the_same_types(server: Server) -> None:
    s = auditlog.connect(server.socket)
    s.start_run("r-1", skill_id="web.search", ts=T0)
    s.tool_call("r-1", "http.get", status="ok", duration_ms=1.5, ts=T0 + 1)
    with pytest.raises(auditlog.NotFoundError):
        s.finish_run("never-started")
    with pytest.raises(auditlog.InvalidEventError) as bad:
        s.append({"kind": "run_started", "run_id": "", "ts": T0})
    assert "run_id" in str(bad.value)
    refused = s.append_batch([started("ok-1", T0), {"kind": "nope"}], strict=False)
    assert [i for i, _ in refused] == [1]
    with s.run("mail.send", run_id="g-1", caller_id="u-2") as run:
        run.tool_call("smtp.send", duration_ms=3.0)
        run.output = "sent"
    r = s.get_run("g-1")
    assert r is not None and (r.status, r.output, r.tool_calls) == ("ok", "sent", 1)
    # Durable on return: a SIGTERM right now keeps all of it.
    assert server.stop() == 0
    ids = [json.loads(line)["run_id"] for line in subprocess.run(
        [BIN, "--dir", str(Path(server.socket).parent), "replay"],
        check=True, capture_output=True, text=True).stdout.splitlines()]
    assert ids == ["r-1", "r-1", "ok-1", "g-1", "g-1", "g-1"]


def _worker(socket: str, n: int, q: "multiprocessing.Queue[int]") -> None:
    s = auditlog.connect(socket)
    for i in range(50):
        s.append_batch([started(f"w{n}-{i}-{j}", T0 + j) for j in range(4)])
    q.put(n)


def test_many_processes_append_at_once(server: Server) -> None:
    ctx = multiprocessing.get_context("fork")
    q: "multiprocessing.Queue[int]" = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(server.socket, n, q)) for n in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = auditlog.connect(server.socket)
    ids = [e["run_id"] for e in s.replay()]
    assert len(ids) == 6 * 50 * 4 == len(set(ids))
    assert s.count() == 6 * 50 * 4


def test_tail_follows_and_search_runs_on_the_server(server: Server) -> None:
    s = auditlog.connect(server.socket)
    s.append_batch(workload())
    assert [e["run_id"] for e in s.tail(2)] == ["c-1", "d-1"]
    follow = s.tail(0, follow=True, idle_timeout=0.5)
    s.append(started("late-1", T0 + 50))
    assert next(follow)["run_id"] == "late-1"
    if auditlog.HAS_SEARCH:
        hits = s.search("needle", timeout=180.0)
        assert [h.run.id for h in hits] == ["p-1"]
    st = s.stats()
    assert st["events"] == 6 and "counters" in st
    assert s.verify()["ok"] is True
