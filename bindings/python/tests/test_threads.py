"""Threads: appends while others query; the GIL is released while waiting."""

from __future__ import annotations

import threading
import time

import auditlog
from conftest import T0, finished, started


def test_appenders_and_queriers_together(store: auditlog.Store) -> None:
    writers, per_writer = 4, 2000
    errors: list[BaseException] = []
    done = threading.Event()
    answers = 0

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                rid = f"w{w}-{i}"
                if i % 2:
                    store.append_batch([started(rid, T0 + i, skill_id=f"s{w}"), finished(rid, T0 + i + 1)])
                else:
                    store.start_run(rid, skill_id=f"s{w}", ts=T0 + i)
                    store.finish_run(rid, ts=T0 + i + 1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def query() -> None:
        nonlocal answers
        try:
            while not done.is_set():
                store.count(skill="s0")
                store.runs(skill="s1", limit=5)
                store.get_run("w0-0")
                store.tool_errors()
                answers += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ws = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    qs = [threading.Thread(target=query) for _ in range(2)]
    for t in ws + qs:
        t.start()
    for t in ws:
        t.join()
    done.set()
    for t in qs:
        t.join()
    assert errors == []
    assert answers > 0
    store.flush()
    assert store.count() == writers * per_writer
    assert store.count(status="running") == 0
    for w in range(writers):
        assert store.count(skill=f"s{w}") == per_writer


def test_gil_is_released_while_a_call_waits(store: auditlog.Store) -> None:
    # A following tail waits on the log without the GIL: this thread keeps
    # running Python code meanwhile.
    waiting = threading.Thread(target=lambda: list(store.tail(0, follow=True, idle_timeout=1.0)))
    spins = 0
    waiting.start()
    t0 = time.monotonic()
    while waiting.is_alive() and time.monotonic() - t0 < 5:
        spins += 1
    waiting.join()
    # With the GIL held through the wait this loop would barely run.
    assert spins > 100_000


def test_flush_from_many_threads(store: auditlog.Store) -> None:
    heads: list[int] = []

    def work(w: int) -> None:
        for i in range(50):
            store.append(started(f"f{w}-{i}"))
            heads.append(store.flush())

    ts = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert max(heads) == 200
    assert store.count() == 200
