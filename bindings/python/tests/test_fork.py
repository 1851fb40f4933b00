"""Fork safety: an inherited handle raises ForkedError (never deadlocks),
the child can open its own handle, and it does not keep the parent's
writer lock alive once the parent closes."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from pathlib import Path

import pytest

import auditlog
from conftest import started

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _child_uses_inherited(store: auditlog.Store, own_dir: str, q: "mp.Queue[str]") -> None:
    outcomes = []
    for call in (lambda: store.append(started("from-child")), store.flush, lambda: store.runs()):
        try:
            call()
            outcomes.append("no error")
        except auditlog.ForkedError as e:
            outcomes.append("forked" if "fork" in str(e) else str(e))
    with auditlog.open(own_dir) as mine:
        mine.append(started("child-run"))
        mine.flush()
        outcomes.append(f"own:{mine.count()}")
    store.close()  # in a child: only lets go of the handle
    q.put(",".join(outcomes))


def test_inherited_handle_raises_and_child_opens_its_own(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    with auditlog.open(tmp_path / "parent") as store:
        # A busy parent: other threads hold the store's locks at fork time.
        stop = threading.Event()

        def busy() -> None:
            while not stop.is_set():
                store.append(started("busy"))
                store.count()

        threads = [threading.Thread(target=busy) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            q: "mp.Queue[str]" = ctx.Queue()
            p = ctx.Process(target=_child_uses_inherited, args=(store, str(tmp_path / "child"), q))
            p.start()
            p.join(30)
            assert p.exitcode == 0, "the child must not hang or crash"
            assert q.get(timeout=5) == "forked,forked,forked,own:1"
        finally:
            stop.set()
            for t in threads:
                t.join()
        # The parent's handle is untouched by the child.
        store.append(started("parent-after"))
        store.flush()
        assert store.get_run("parent-after") is not None


def test_child_does_not_keep_the_parents_lock(tmp_path: Path) -> None:
    log = tmp_path / "shared"
    store = auditlog.open(log)
    store.append(started("before-fork"))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait until the parent has closed, then open the log
        code = 1
        try:
            os.close(w)
            os.read(r, 1)
            with auditlog.open(log) as mine:
                mine.append(started("child-writer"))
                mine.flush()
                code = 0 if mine.count() == 2 else 3
        except auditlog.LockedError:
            code = 2
        finally:
            os._exit(code)
    os.close(r)
    store.close()
    os.write(w, b"x")
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "child could not take over the log (2: still locked)"
    with auditlog.open(log) as again:
        assert {x.id for x in again.runs()} == {"before-fork", "child-writer"}


def test_read_only_replay_works_in_any_process(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    with auditlog.open(tmp_path / "log") as store:
        store.append_batch([started(f"r-{i}") for i in range(10)])
        store.flush()
        q: "mp.Queue[int]" = ctx.Queue()
        p = ctx.Process(target=lambda: q.put(sum(1 for _ in auditlog.replay(tmp_path / "log"))))
        p.start()
        p.join(30)
        assert q.get(timeout=5) == 10
