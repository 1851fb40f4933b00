"""The store: `auditlog.open(...)`, the run context manager, asyncio helpers.

The heavy lifting is native (``auditlog._native.Store``); this module adds
what is best said in Python: keyword defaults that depend on each other,
the ``run(...)`` context manager, an awaitable flush, the Rust API's names
as aliases, and process hygiene (close at exit, let go of inherited handles
after ``fork()``).
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import time
import uuid
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Type, Union

from . import _native
from ._native import Run

Instant = Union[int, datetime, str]
"""Integer microseconds since the Unix epoch, an aware datetime, or an RFC
3339 string."""

_OPEN: "weakref.WeakSet[Store]" = weakref.WeakSet()


class Store(_native.Store):
    """An open audit log: append events, query runs, replay, verify, retain.

    Open it with :func:`auditlog.open`. One store may be shared by every
    thread of a process; calls that touch the disk or run a query release
    the GIL. Use it as a context manager, or call :meth:`close`.
    """

    # -- ergonomics -----------------------------------------------------

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
    ) -> "RunScope":
        """A context manager (sync or async) recording one run.

        Entering records ``run_started``; leaving records ``run_finished``
        with the measured runtime, the tool calls counted and the tokens
        added: status ``ok``, or ``error`` (with the exception's type and
        message) if the block raised, or ``cancelled`` for
        ``KeyboardInterrupt`` and ``asyncio.CancelledError``. The exception
        is never swallowed.

        >>> with store.run("web.search", caller_id="u-42") as run:
        ...     run.tool_call("http.get", duration_ms=12.5)
        ...     run.output = "3 results"
        """
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
        """Awaitable :meth:`flush`: waits for durability on a worker thread,
        so the event loop keeps running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.flush)

    def retain(
        self,
        *,
        older_than: Union[timedelta, float, None] = None,
        before: Optional[Instant] = None,
    ) -> Dict[str, Any]:
        """Drop whole sealed segments whose newest event is older than
        ``older_than`` (a timedelta, or seconds) or than ``before``.

        Returns what was dropped: ``cutoff``, ``dropped_segments`` (each
        with ``segment``, ``first_lsn``, ``events``, ``bytes``, ``oldest``,
        ``newest``), ``dropped_events``, ``dropped_bytes``,
        ``first_kept_lsn``. Evidence newer than the cutoff is never dropped.
        """
        if (older_than is None) == (before is None):
            raise _native_errors().InvalidArgumentError(
                "retain: give exactly one of older_than= or before="
            )
        if older_than is not None:
            seconds = (
                older_than.total_seconds()
                if isinstance(older_than, timedelta)
                else float(older_than)
            )
            if not seconds >= 0:
                raise _native_errors().InvalidArgumentError(
                    f"retain: older_than={older_than!r} must be >= 0"
                )
            cutoff: Instant = int(time.time() * 1_000_000) - int(seconds * 1_000_000)
        else:
            assert before is not None
            cutoff = before
        return self.purge_older_than(cutoff)

    # -- the Rust AuditStore's names ------------------------------------

    def list_runs_by_skill(
        self,
        skill: str,
        include_dry_run: bool = False,
        *,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> List[Run]:
        """Runs of one skill, newest first (``AuditStore::list_runs_by_skill``
        and ``_page``)."""
        return self.runs(
            skill=skill, include_dry_run=include_dry_run, limit=limit, offset=offset
        )

    def count_by_skill(self, skill: str, include_dry_run: bool = False) -> int:
        """How many runs of one skill (``AuditStore::count_by_skill``)."""
        return self.count(skill=skill, include_dry_run=include_dry_run)

    def list_runs_by_caller(
        self, caller: str, *, limit: Optional[int] = None, offset: int = 0
    ) -> List[Run]:
        """Runs of one caller, newest first (``AuditStore::list_runs_by_caller``)."""
        return self.runs(caller=caller, limit=limit, offset=offset)

    def parent_chain(self, run_id: str) -> List[Run]:
        """Same as :meth:`chain` (``AuditStore::parent_chain``)."""
        return self.chain(run_id)

    def finished_runs_before(self, before: Instant) -> List[Run]:
        """Same as :meth:`finished_before` (``AuditStore::finished_runs_before``)."""
        return self.finished_before(before)

    def last_run_per_skill(
        self, skills: List[str], include_failed: bool = False
    ) -> Dict[str, Optional[datetime]]:
        """Same as :meth:`last_run` (``AuditStore::last_run_per_skill``)."""
        return self.last_run(skills, include_failed=include_failed)


def _native_errors() -> Any:
    from . import _errors

    return _errors


class RunScope:
    """One run being recorded (see :meth:`Store.run`).

    Set ``output`` (and, to override the outcome, ``status`` / ``error``)
    before the block ends; log lines and tool calls are numbered in order.
    """

    def __init__(
        self,
        # A Store, or a ServedStore (auditlog.connect): the same methods.
        store: Any,
        run_id: str,
        skill_id: str,
        caller_id: str,
        channel_id: str,
        parent_run_id: str,
        inputs: Any,
        dry_run: bool,
    ) -> None:
        self.store = store
        self.id = run_id
        self.skill_id = skill_id
        self.caller_id = caller_id
        self.channel_id = channel_id
        self.parent_run_id = parent_run_id
        self.inputs = inputs
        self.dry_run = dry_run
        self.output = ""
        self.status: Optional[str] = None
        self.error = ""
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.thinking_tokens = 0
        self._seq = itertools.count()
        self._began = 0.0
        self._done = False

    # -- recording --------------------------------------------------------

    def log(self, event_type: str, payload: Any = None) -> None:
        """Record a log line of this run (seq numbered in order)."""
        if event_type == "tool_call":
            self.tool_calls += 1
        self.store.log(self.id, event_type, payload, seq=next(self._seq))

    def tool_call(
        self,
        tool: str,
        *,
        status: str = "ok",
        error_type: Optional[str] = None,
        duration_ms: Optional[float] = None,
        **fields: Any,
    ) -> None:
        """Record a tool call of this run: a ``tool_call`` record (listed by
        ``store.calls(run_id=...)``, not by ``list_logs``), counted in
        ``tool_calls``."""
        self.tool_calls += 1
        self.store.tool_call(
            self.id,
            tool,
            status=status,
            error_type=error_type,
            duration_ms=duration_ms,
            seq=next(self._seq),
            **fields,
        )

    def add_tokens(self, input: int = 0, output: int = 0, thinking: int = 0) -> None:
        """Add to the run's token totals."""
        self.input_tokens += input
        self.output_tokens += output
        self.thinking_tokens += thinking

    def child(self, skill_id: str, **kwargs: Any) -> "RunScope":
        """A sub-run of this run (its ``parent_run_id`` is this run's id)."""
        kwargs.setdefault("caller_id", self.caller_id)
        kwargs.setdefault("channel_id", self.channel_id)
        child: RunScope = self.store.run(skill_id, parent_run_id=self.id, **kwargs)
        return child

    def finish(self, status: str = "ok", *, output: Optional[str] = None, error: str = "") -> None:
        """Record the finish now (leaving the block then records nothing)."""
        if self._done:
            return
        self._done = True
        self.store.finish_run(
            self.id,
            status=status,
            output=self.output if output is None else output,
            error=error,
            tool_calls=self.tool_calls,
            runtime_seconds=time.perf_counter() - self._began,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            thinking_tokens=self.thinking_tokens,
        )

    # -- context manager --------------------------------------------------

    def __enter__(self) -> "RunScope":
        self.store.start_run(
            self.id,
            skill_id=self.skill_id,
            caller_id=self.caller_id,
            channel_id=self.channel_id,
            parent_run_id=self.parent_run_id,
            inputs=self.inputs,
            dry_run=self.dry_run,
        )
        self._began = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Any,
    ) -> Literal[False]:
        if exc_type is None:
            self.finish(self.status or "ok", error=self.error)
        elif issubclass(exc_type, (KeyboardInterrupt, asyncio.CancelledError)):
            self.finish("cancelled", error=self.error or exc_type.__name__)
        else:
            self.finish(
                self.status if self.status not in (None, "ok") else "error",
                error=self.error or f"{exc_type.__name__}: {exc}",
            )
        return False

    async def __aenter__(self) -> "RunScope":
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Any,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


def open(
    dir: Union[str, "os.PathLike[str]"],
    *,
    durability: Union[str, timedelta, float] = "every_batch",
    create: bool = True,
    redaction: Union[str, Mapping[str, Any], Sequence[Any], None] = None,
    search: bool = False,
    fire_and_forget: bool = False,
    queue_capacity: int = 16384,
    on_full: Optional[str] = None,
    segment_max_bytes: int = 256 * 1024 * 1024,
    max_batch_bytes: int = 1024 * 1024,
    _faults: Optional["_native._Faults"] = None,
) -> Store:
    """Open (or create) the audit log in ``dir`` for writing.

    - ``durability``: ``"every_batch"`` (group commit: fdatasync before a
      write counts as durable), ``"never"`` (the OS writes back), or an
      interval (a timedelta, or seconds) between syncs.
    - ``create``: create the folder and log if missing (else NoLogError).
    - ``redaction``: a policy (text, a ``{"rules": [...]}`` dict, or
      ``(path, action)`` pairs) applied before anything reaches the disk.
    - ``search``: keep the full-text index (builds with the ``search``
      feature only; ``auditlog.HAS_SEARCH`` tells).
    - ``fire_and_forget``: appends never raise; what could not be stored is
      counted (:meth:`Store.failures`) and logged at WARNING. The queue then
      drops (and counts) events instead of blocking when it is full, unless
      ``on_full`` says otherwise.
    - ``queue_capacity`` / ``on_full`` (``"block"``, ``"fail"``,
      ``"drop"``): the ingest queue's length (appends) and what an append
      into a full queue does.
    - ``segment_max_bytes``, ``max_batch_bytes``: segment roll size and
      group-commit block size.

    One process may have a folder open for writing at a time
    (:class:`LockedError` otherwise).

    ``_faults`` is for the binding's own tests only (scripted I/O failures,
    :mod:`auditlog._testing`); it is not a stable API.
    """
    if on_full is None:
        on_full = "drop" if fire_and_forget else "block"
    store = Store(
        dir,
        durability=durability,
        create=create,
        queue_capacity=queue_capacity,
        on_full=on_full,
        segment_max_bytes=segment_max_bytes,
        max_batch_bytes=max_batch_bytes,
        redaction=redaction,
        search=search,
        fire_and_forget=fire_and_forget,
        _faults=_faults,
    )
    _OPEN.add(store)
    return store


def _close_all_at_exit() -> None:
    """Close what is still open when the interpreter exits, so that every
    event appended is written (in a forked child: only let go)."""
    for store in list(_OPEN):
        try:
            store.close()
        except Exception:  # noqa: BLE001 - exiting: nothing left to tell
            pass


def _after_fork_in_child() -> None:
    for store in list(_OPEN):
        store._disown_after_fork()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)
