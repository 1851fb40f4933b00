"""Appends: dicts in the contract's shape, batches, keyword helpers, the
run context manager, flush and its awaitable variant."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import auditlog
from conftest import T0, finished, logged, started


def test_dict_append_round_trips_through_replay(store: auditlog.Store) -> None:
    store.append(started("r-1", skill_id="web.search", caller_id="u-42", channel_id="sess-7",
                         inputs={"q": "x", "nested": {"k": [1, 2.5, None, True]}}, extra_field="kept"))
    store.append(logged("r-1", T0 + 100, seq=0, event_type="tool_call",
                        payload={"tool": "http.get", "status": "error", "error_type": "timeout"}))
    store.append(finished("r-1", T0 + 1_500_000, status="error", error="upstream timeout",
                          tool_calls=1, runtime_seconds=1.5, input_tokens=120))
    assert store.flush() == 3
    events = list(store.replay())
    assert [e["lsn"] for e in events] == [0, 1, 2]
    first = events[0]
    assert first["kind"] == "run_started"
    assert first["ts"] == datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    assert first["inputs"] == {"q": "x", "nested": {"k": [1, 2.5, None, True]}}
    assert first["extra_field"] == "kept"
    assert events[1]["payload"]["error_type"] == "timeout"
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.error, run.tool_calls, run.runtime_seconds) == ("error", "upstream timeout", 1, 1.5)
    assert run.started_at_us == T0
    assert run.finished_at == datetime(2026, 11, 23, 8, 0, 1, 500000, tzinfo=timezone.utc)
    assert run.inputs["nested"]["k"][1] == 2.5


def test_ts_forms_and_default(store: auditlog.Store) -> None:
    aware = datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    before = int(datetime.now(timezone.utc).timestamp() * 1e6)
    store.append(started("a", ts=aware))
    store.append(started("b", ts="2026-11-23T08:00:00.000001Z"))
    store.append({"kind": "run_started", "run_id": "c"})  # no ts: the time of the call
    store.append({"kind": "run_started", "run_id": "d", "ts": None})  # None is absent
    store.flush()
    runs = {r.id: r for r in store.runs()}
    assert runs["a"].started_at == aware
    assert runs["b"].started_at_us == T0 + 1
    for rid in ("c", "d"):
        assert before <= runs[rid].started_at_us <= before + 60_000_000


def test_datetime_inside_payload_becomes_rfc3339(store: auditlog.Store) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    store.append(started("r"))
    store.append(logged("r", payload={"at": at, "tuple": (1, "two")}))
    store.flush()
    (entry,) = store.list_logs("r")
    assert entry.payload == {"at": "2026-01-02T03:04:05.000006Z", "tuple": [1, "two"]}


def test_batch_strict_and_lenient(store: auditlog.Store) -> None:
    good = [started(f"r-{i}", T0 + i, skill_id="s") for i in range(10)]
    assert store.append_batch(good) == []
    bad = [started("x-1"), {"kind": "nope", "run_id": "x-2"}, started("x-3")]
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.append_batch(bad)
    assert e.value.index == 1 and e.value.field == "kind"
    assert "event 1" in str(e.value)
    store.flush()
    assert store.count() == 10  # strict: nothing of the bad batch stored
    rejected = store.append_batch(bad + [{"kind": "run_started", "run_id": "x-4", "inputs": {b"k": 1}}], strict=False)
    assert [i for i, _ in rejected] == [1, 3]
    assert "kind" in rejected[0][1] and "inputs" in rejected[1][1]
    store.flush()
    assert store.count() == 12
    assert store.counters()["appended"] == 12


def test_batch_accepts_any_iterable_and_waits(store: auditlog.Store) -> None:
    store.append_batch((started(f"g-{i}", T0 + i) for i in range(5000)), wait=True)
    # wait=True: durable, and so committed and replayable, when it returns
    assert sum(1 for _ in store.replay()) == 5000


def test_batch_limit(store: auditlog.Store) -> None:
    def many() -> Iterator[dict[str, Any]]:  # one past the limit; generated lazily
        for i in range(auditlog.MAX_BATCH_EVENTS + 1):
            yield started(f"m-{i}")
    with pytest.raises(auditlog.InvalidArgumentError, match="at most"):
        store.append_batch(many())
    store.flush()
    assert store.count() == 0


def test_keyword_helpers(store: auditlog.Store) -> None:
    store.start_run("k-1", skill_id="sk", caller_id="c", channel_id="ch", inputs={"a": 1}, ts=T0)
    store.log("k-1", "thinking", {"text": "hmm"}, seq=0, ts=T0 + 1)
    store.tool_call("k-1", "http.get", status="error", error_type="timeout", duration_ms=50.0,
                    seq=1, ts=T0 + 2, http_status=504)
    store.finish_run("k-1", status="error", output="", error="boom", tool_calls=1,
                     runtime_seconds=0.5, input_tokens=1, output_tokens=2, thinking_tokens=3, ts=T0 + 3)
    store.flush()
    run = store.get_run("k-1")
    assert run is not None and run.to_dict()["thinking_tokens"] == 3
    logs = store.list_logs("k-1")
    assert [(l.seq, l.event_type) for l in logs] == [(0, "thinking")], "a tool call is a record of its own"
    [call] = store.calls(run_id="k-1")
    assert (call["source"], call["tool"], call["status"], call["error_type"], call["duration_ms"],
            call["http_status"], call["payload"]) == ("tool_call", "http.get", "error", "timeout", 50.0, 504, None)
    with pytest.raises(auditlog.NotFoundError):
        store.finish_run("never-started")
    with pytest.raises(LookupError):  # NotFoundError is a LookupError
        store.finish_run("never-started-2")


def test_run_context_manager_ok_error_and_cancelled(store: auditlog.Store) -> None:
    with store.run("web.search", run_id="ok-run", caller_id="u", channel_id="s", inputs={"q": 1}) as run:
        run.log("thinking", {"t": 1})
        run.tool_call("http.get", duration_ms=3.0)
        run.add_tokens(input=10, output=5)
        run.output = "3 results"
        with run.child("summarize", run_id="child-run") as sub:
            sub.output = "short"
    with pytest.raises(RuntimeError):
        with store.run("web.search", run_id="bad-run"):
            raise RuntimeError("kaput")
    with pytest.raises(KeyboardInterrupt):
        with store.run("web.search", run_id="stopped-run"):
            raise KeyboardInterrupt
    store.flush()
    ok = store.get_run("ok-run")
    assert ok is not None
    assert (ok.status, ok.output, ok.tool_calls, ok.input_tokens, ok.output_tokens) == ("ok", "3 results", 1, 10, 5)
    assert ok.runtime_seconds >= 0 and ok.is_finished
    assert [l.seq for l in store.list_logs("ok-run")] == [0], "the tool call is a record of its own"
    assert [(c["tool"], c["duration_ms"]) for c in store.calls(run_id="ok-run")] == [("http.get", 3.0)]
    assert [r.id for r in store.children("ok-run")] == ["child-run"]
    bad = store.get_run("bad-run")
    assert bad is not None and bad.status == "error" and bad.error == "RuntimeError: kaput"
    stopped = store.get_run("stopped-run")
    assert stopped is not None and stopped.status == "cancelled"


def test_async_run_and_aflush(store: auditlog.Store) -> None:
    async def main() -> int:
        async with store.run("agent", run_id="async-run") as run:
            run.tool_call("db.query")
            await asyncio.sleep(0)
        return await store.aflush()
    head = asyncio.run(main())
    assert head == 3
    run = store.get_run("async-run")
    assert run is not None and run.status == "ok" and run.tool_calls == 1


def test_reopen_keeps_everything(log_dir: Path) -> None:
    with auditlog.open(log_dir) as s:
        s.append_batch([started(f"p-{i}", T0 + i) for i in range(100)])
    with auditlog.open(log_dir, create=False) as s:
        assert s.count() == 100
        assert s.closed is False
    assert s.closed is True


def test_durability_options(tmp_path: Path) -> None:
    for d in ("every_batch", "never", 0.05, timedelta(milliseconds=20)):
        with auditlog.open(tmp_path / str(d).replace(":", "_"), durability=d) as s:
            s.append(started("r"))
            assert s.flush() == 1


def test_large_batch_keeps_order_and_refuses_precisely(store: auditlog.Store) -> None:
    # Long batches are parsed and encoded on two threads: order and the
    # strict all-or-nothing rule must hold across the split.
    n = 9000
    evs = [started(f"o-{i}", T0 + i) for i in range(n)]
    bad = dict(evs[7001])
    bad["skill_id"] = 7
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.append_batch(evs[:7001] + [bad] + evs[7002:])
    assert e.value.index == 7001 and e.value.field == "skill_id"
    store.flush()
    assert store.count() == 0
    refused = store.append_batch(evs[:7001] + [bad] + evs[7002:] + [{"kind": "x", "run_id": "y"}], strict=False)
    assert [i for i, _ in refused] == [7001, n]
    store.flush()
    ids = [ev["run_id"] for ev in store.replay()]
    assert ids == [f"o-{i}" for i in range(n) if i != 7001]


def test_single_appends_stay_in_order_with_every_other_path(store: auditlog.Store) -> None:
    # Single appends are staged for a flusher thread; every other write path
    # goes after what was staged before it.
    store.append(started("s-1", T0))
    store.finish_run("s-1", ts=T0 + 5)  # its start is still staged: found, not NotFound
    store.append(logged("s-1", T0 + 1, seq=0, event_type="a"))
    store.append_batch([logged("s-1", T0 + 2, seq=1, event_type="b")])
    store.append(logged("s-1", T0 + 3, seq=2, event_type="c"))
    store.log("s-1", "d", seq=3, ts=T0 + 4)
    store.append(logged("s-1", T0 + 6, seq=4, event_type="e"), wait=True)
    store.flush()
    kinds = [(e["kind"], e.get("event_type")) for e in store.replay()]
    assert kinds == [("run_started", None), ("run_finished", None), ("run_log", "a"),
                     ("run_log", "b"), ("run_log", "c"), ("run_log", "d"), ("run_log", "e")]
    assert store.counters()["staged"] == 0


def test_staged_events_survive_close_and_garbage_collection(log_dir: Path) -> None:
    import gc

    s = auditlog.open(log_dir)
    for i in range(1000):
        s.append(started(f"c-{i}", T0 + i))
    s.close()  # no flush: close appends what is staged
    s2 = auditlog.open(log_dir)
    for i in range(1000, 1500):
        s2.append(started(f"c-{i}", T0 + i))
    del s2  # never closed: collection appends what is staged
    gc.collect()
    with auditlog.open(log_dir) as again:
        assert again.count() == 1500


def test_batch_of_large_events_is_split_under_the_append_limit(store: auditlog.Store) -> None:
    # 40 events of ~900 KB: more than one append may carry (64 MiB by
    # default); the binding splits the batch into units below it.
    big = "x" * 900_000
    store.append_batch([logged(f"big-{i}", T0 + i, payload={"blob": big}) for i in range(40)], wait=True)
    assert sum(1 for _ in store.replay()) == 40


def test_standalone_tool_calls_are_queried_by_their_own_scope(store: auditlog.Store) -> None:
    """A call with no run (run_id ""): its session, agent and workspace are
    its own; typed keywords become fields, any other keyword joins payload."""
    for i in range(6):
        store.tool_call("", "fs.read" if i % 2 else "http.get", status="error" if i % 3 == 0 else "ok",
                        error_type="denied" if i % 3 == 0 else None, duration_ms=float(i), ts=T0 + i,
                        channel_id=f"sess-{i % 2}", caller_id="agent-1", workspace_id="ws-1",
                        request_id=f"req-{i}", engine="openai", input_bytes=10 * i, retry=i)
    store.flush()
    assert store.count() == 0, "no run was made"
    got = store.calls(session="sess-1", oldest_first=True)
    assert [(c["request_id"], c["tool"], c["run_id"]) for c in got] == [
        ("req-1", "fs.read", ""), ("req-3", "fs.read", ""), ("req-5", "fs.read", "")]
    assert got[1]["payload"] == {"retry": 3} and got[1]["input_bytes"] == 30
    page = store.calls(agent="agent-1", limit=4)
    assert [c["request_id"] for c in page] == ["req-5", "req-4", "req-3", "req-2"]
    rest = store.calls(agent="agent-1", cursor=f'{page[-1]["ts"]},{page[-1]["lsn"]}')
    assert [c["request_id"] for c in rest] == ["req-1", "req-0"]
    assert store.count_calls(status="error") == 2
    assert store.count_calls(by="tool") == [("fs.read", 3), ("http.get", 3)]
    assert store.count_calls(by="status", workspace="ws-1", since=T0 + 3) == [("ok", 2), ("error", 1)]
    assert sorted((g.channel_id, g.tool, g.error_type, g.count) for g in store.tool_errors()) == [
        ("sess-0", "http.get", "denied", 1), ("sess-1", "fs.read", "denied", 1)]
    with pytest.raises(auditlog.InvalidEventError) as bad:
        store.tool_call("", "x", http_status=1000)
    assert "http_status" in str(bad.value)
    with pytest.raises(auditlog.InvalidArgumentError):
        store.count_calls(by="colour")


def test_staged_batches_stay_under_the_append_limit_and_in_order(store: auditlog.Store) -> None:
    # Without wait=True a batch is staged for the flusher thread; 80 events
    # of ~900 KB (72 MB, more than one append may carry) must still be cut
    # into appends the engine takes, in order, with the other paths.
    big = "x" * 900_000
    store.append(started("first", T0))
    store.append_batch([logged(f"big-{i}", T0 + 1 + i, payload={"blob": big}) for i in range(80)])
    store.append(started("last", T0 + 100))
    store.flush()
    ids = [ev["run_id"] for ev in store.replay()]
    assert ids == ["first"] + [f"big-{i}" for i in range(80)] + ["last"]


def test_many_staged_batches_interleaved_with_single_appends(store: auditlog.Store) -> None:
    want = []
    for b in range(30):
        batch = [started(f"b{b}-{i}", T0 + i) for i in range(700)]
        store.append_batch(batch)
        store.append(started(f"s{b}", T0))
        want += [f"b{b}-{i}" for i in range(700)] + [f"s{b}"]
    store.flush()
    assert [ev["run_id"] for ev in store.replay()] == want
    assert store.counters()["staged"] == 0


def test_single_appends_past_a_full_stage_keep_every_event_in_order(store: auditlog.Store) -> None:
    # At most 4,096 events are staged; an append that finds the stage full
    # waits for the flusher to take them (or drains it itself after 20 ms).
    # A tight loop of several times that, from four threads at once: every
    # event stored once, each thread's in its order.
    import threading

    per_thread = 3 * 4096 + 17

    def appender(t: int) -> None:
        for i in range(per_thread):
            store.append(logged(f"t{t}", T0 + i, seq=i, event_type="step"))

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.flush()
    seqs: dict[str, list[int]] = {}
    for ev in store.replay():
        seqs.setdefault(ev["run_id"], []).append(ev["seq"])
    assert seqs == {f"t{t}": list(range(per_thread)) for t in range(4)}
    c = store.counters()
    assert c["staged"] == 0
    assert c["appended"] == 4 * per_thread
    assert 0 <= c["stage_full_drained"] <= c["stage_full"]


FLUSHER_NICE_PROBE = r"""
import os, sys, time
from pathlib import Path
import auditlog

def nice_of(tid: str) -> int:
    # /proc/.../stat: fields after the command's ")"; nice is field 19.
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])

base = nice_of(str(os.getpid()))
want = int(sys.argv[2]) if sys.argv[2] != "base" else base
s = auditlog.open(sys.argv[1])
s.append({"kind": "run_started", "run_id": "r", "ts": 1})
# The flusher sets its nice value as it starts: wait (a while) for it.
deadline = time.monotonic() + 5
flusher = None
while flusher != want and time.monotonic() < deadline:
    tids = [t for t in os.listdir("/proc/self/task")
            if Path(f"/proc/self/task/{t}/comm").read_text().strip() == "auditlog-py-sta"]
    flusher = nice_of(tids[0]) if tids else None
    time.sleep(0.01)
s.close()
print(base, flusher)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values per thread are Linux's")
@pytest.mark.parametrize("setting", [None, "0", "5"])
def test_stage_flusher_yields_to_the_calling_thread(tmp_path: Path, setting: Optional[str]) -> None:
    # The flusher runs at nice 10 (AUDITLOG_PY_STAGE_NICE sets another;
    # 0 leaves it at the calling thread's), README "Threads".
    env = dict(os.environ)
    env.pop("AUDITLOG_PY_STAGE_NICE", None)
    if setting is not None:
        env["AUDITLOG_PY_STAGE_NICE"] = setting
    want = {None: "10", "0": "base", "5": "5"}[setting]
    out = subprocess.run([sys.executable, "-c", FLUSHER_NICE_PROBE, str(tmp_path / "log"), want],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    base, flusher = out.split()
    if want != "base" and int(want) < int(base):
        pytest.skip(f"the test runs at nice {base}: a lower nice needs privileges")
    assert flusher == (base if want == "base" else want)
