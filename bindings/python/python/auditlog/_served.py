"""``auditlog.connect(path)``: the store's API over ``auditlog serve``.

Several processes (gunicorn or uvicorn workers, Celery) cannot all open
one log for writing; they connect to one ``auditlog serve --dir DIR``
instead, through its Unix socket, and use the same methods as
:func:`auditlog.open`. A gateway switches between embedded and served mode
in one line::

    store = auditlog.open("/var/lib/gateway/audit")          # one process
    store = auditlog.connect("/var/lib/gateway/audit/auditlog.sock")  # many

Differences, by the nature of a served log: every write returns once the
server has made it durable (``wait`` changes nothing); a write the server
could not answer (it restarted, or was busy) is retried with the same
idempotency key for ``retry_for`` seconds and stored exactly once; the
store is safe to use after ``fork()`` (each process opens its own
connection lazily) and a connection needs no closing for the data's sake.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional, Union

from . import _native
from ._native import Run
from ._store import Instant, RunScope

_PAGE = 1000


def _instants(report: Dict[str, Any]) -> Dict[str, Any]:
    """RFC 3339 strings of a retention report as aware datetimes."""

    def dt(v: Any) -> Any:
        return datetime.fromisoformat(v.replace("Z", "+00:00")) if isinstance(v, str) else v

    report["cutoff"] = dt(report.get("cutoff"))
    for seg in report.get("dropped_segments", []):
        for k in ("oldest", "newest"):
            seg[k] = dt(seg.get(k))
    return report


class ServedStore(_native.Served):
    """A log served by ``auditlog serve``: the methods of :class:`Store`.

    Create it with :func:`auditlog.connect`. Share it between threads; in
    a forked child, create a new one (the parent's connection belongs to
    the parent).
    """

    def run(
        self,
        skill_id: str,
        *,
        run_id: Optional[str] = None,
        caller_id: str = "",
        channel_id: str = "",
        parent_run_id: str = "",
        inputs: Any = None,
        dry_run: bool = False,
    ) -> RunScope:
        """A context manager recording one run (see :meth:`Store.run`)."""
        return RunScope(
            self,
            run_id or uuid.uuid4().hex,
            skill_id,
            caller_id,
            channel_id,
            parent_run_id,
            inputs,
            dry_run,
        )

    async def aflush(self) -> int:
        """Awaitable :meth:`flush`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.flush)

    def replay(
        self,
        *,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        from_lsn: Optional[int] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Every stored event in log order, as dicts (``lsn`` first, ``ts``
        a datetime), fetched from the server a page at a time."""
        lsn = from_lsn
        while True:
            events, nxt = self._replay_page(since=since, until=until, from_lsn=lsn, limit=_PAGE)
            yield from events
            if len(events) < _PAGE:
                return
            lsn = nxt

    def tail(
        self, n: int = 10, *, follow: bool = False, idle_timeout: Optional[float] = None
    ) -> Iterator[Dict[str, Any]]:
        """The newest ``n`` events; with ``follow``, then every new one as it
        is stored (until ``idle_timeout`` seconds pass without one)."""
        # The head is taken now, not at the first next(): like Store.tail,
        # events stored after this call are followed, not skipped.
        head = self._head_lsn()
        return self._tail_from(max(0, head - n), n, follow, idle_timeout)

    def _tail_from(
        self, lsn: int, n: int, follow: bool, idle_timeout: Optional[float]
    ) -> Iterator[Dict[str, Any]]:
        if n:
            events, lsn = self._replay_page(from_lsn=lsn, limit=n)
            yield from events
        if not follow:
            return
        quiet_since = time.monotonic()
        while True:
            events, lsn = self._replay_page(from_lsn=lsn, limit=_PAGE, wait_ms=500)
            if events:
                quiet_since = time.monotonic()
                yield from events
            elif idle_timeout is not None and time.monotonic() - quiet_since >= idle_timeout:
                return

    def retain(
        self,
        *,
        older_than: Union[timedelta, float, None] = None,
        before: Optional[Instant] = None,
    ) -> Dict[str, Any]:
        """Retention on the server (see :meth:`Store.retain`)."""
        from . import _errors

        if (older_than is None) == (before is None):
            raise _errors.InvalidArgumentError("retain: give exactly one of older_than= or before=")
        if older_than is not None:
            seconds = (
                older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
            )
            if not seconds >= 0:
                raise _errors.InvalidArgumentError(f"retain: older_than={older_than!r} must be >= 0")
            cutoff: Instant = int(time.time() * 1_000_000) - int(seconds * 1_000_000)
        else:
            assert before is not None
            cutoff = before
        return _instants(self.purge_older_than(cutoff))

    # -- the Rust AuditStore's names ------------------------------------

    def list_runs_by_skill(
        self,
        skill: str,
        include_dry_run: bool = False,
        *,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> List[Run]:
        return self.runs(skill=skill, include_dry_run=include_dry_run, limit=limit, offset=offset)

    def count_by_skill(self, skill: str, include_dry_run: bool = False) -> int:
        return self.count(skill=skill, include_dry_run=include_dry_run)

    def list_runs_by_caller(
        self, caller: str, *, limit: Optional[int] = None, offset: int = 0
    ) -> List[Run]:
        return self.runs(caller=caller, limit=limit, offset=offset)

    def parent_chain(self, run_id: str) -> List[Run]:
        return self.chain(run_id)

    def finished_runs_before(self, before: Instant) -> List[Run]:
        return self.finished_before(before)

    def last_run_per_skill(
        self, skills: List[str], include_failed: bool = False
    ) -> Dict[str, Optional[datetime]]:
        return self.last_run(skills, include_failed=include_failed)


def connect(
    path: Union[str, "os.PathLike[str]"],
    *,
    retry_for: float = 30.0,
) -> ServedStore:
    """Connect to ``auditlog serve`` on its Unix socket (``DIR/auditlog.sock``
    unless the server was given ``--socket``): the same API as
    :func:`auditlog.open`, for any number of processes at once.

    ``retry_for``: how long one call keeps retrying (same idempotency key)
    while the server is busy, restarting or unreachable.
    """
    return ServedStore(path, retry_for=retry_for)
