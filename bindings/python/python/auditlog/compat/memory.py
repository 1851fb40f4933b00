"""Drop-in for a memory service's fire-and-forget ``AuditLogger``.

The logger it replaces records one :class:`AuditEntry` per operation of
the service (``action`` such as ``retain``/``recall``/``reflect``, the
``transport`` it came by, the memory ``bank_id``, start and end times, the
request and response, free ``metadata``), only for actions on its
allowlist and only when ``enabled`` (off by default). ``log(entry)`` never
raises and never makes the caller wait (failures are logged at WARNING);
``log_with_timing(entry)`` times a block as an async context manager; a
retention sweep drops entries older than ``retention_days``. A no-op
logger is the default singleton.

Each entry is stored as a run of the log: ``run_started`` (skill_id =
action, caller_id = transport, channel_id = bank_id, inputs = {request,
metadata}) and ``run_finished`` (status ``ok``, or ``error`` when
``metadata["error"]`` is set; output = the response as JSON; runtime from
the two times). So entries are answered from the log's indexes:
``store.runs(skill="recall", channel=bank_id)``, counts, and
:meth:`AuditLogger.entries` here. Retention drops whole daily segments
(the log never rewrites a file), so an entry is dropped once its whole
UTC day is past the retention window.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Dict, FrozenSet, Iterable, List, Optional, Union

import auditlog

log = logging.getLogger("auditlog.compat")

#: The actions logged when no allowlist is given.
DEFAULT_ACTIONS: FrozenSet[str] = frozenset(
    {
        "retain",
        "recall",
        "reflect",
        "create_bank",
        "delete_bank",
        "update_bank",
        "delete_memory",
        "clear_memories",
    }
)

#: How often the retention sweep runs by default.
SWEEP_INTERVAL_SECONDS = 3600.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class AuditEntry:
    """One audited operation."""

    action: str
    transport: str = ""
    bank_id: Optional[str] = None
    started_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    request: Any = None
    response: Any = None
    metadata: Dict[str, Any] = field(default_factory=dict)


def _aware(t: Optional[datetime]) -> datetime:
    if t is None:
        return _now()
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


class AuditLogger:
    """Fire-and-forget audit logging of a memory service into auditlog.

    ``store``: an open :class:`auditlog.Store` or a folder (opened in
    fire-and-forget mode). ``allowed_actions``: the allowlist (default
    :data:`DEFAULT_ACTIONS`). ``enabled``: off by default, as in the
    service it replaces. ``retention_days``: what the sweep keeps.
    """

    def __init__(
        self,
        store: Union[auditlog.Store, str, "os.PathLike[str]", None] = None,
        *,
        enabled: bool = False,
        allowed_actions: Optional[Iterable[str]] = None,
        retention_days: Optional[float] = None,
        sweep_interval: float = SWEEP_INTERVAL_SECONDS,
    ) -> None:
        if store is None or isinstance(store, auditlog.Store):
            self._store: Optional[auditlog.Store] = store
            self._owns_store = False
        else:
            self._store = auditlog.open(store, fire_and_forget=True)
            self._owns_store = True
        self.enabled = enabled
        self.allowed_actions: FrozenSet[str] = frozenset(
            DEFAULT_ACTIONS if allowed_actions is None else allowed_actions
        )
        self.retention_days = retention_days
        self.sweep_interval = sweep_interval
        self.failures = 0
        self.last_sweep: Optional[Dict[str, Any]] = None
        self._sweeper: Optional[threading.Thread] = None
        self._stop = threading.Event()

    @property
    def store(self) -> Optional[auditlog.Store]:
        return self._store

    def is_enabled(self, action: str) -> bool:
        """Whether entries of ``action`` are logged."""
        return self.enabled and self._store is not None and action in self.allowed_actions

    def log(self, entry: AuditEntry) -> None:
        """Record ``entry`` if its action is enabled. Returns at once; a
        failure is logged at WARNING, never raised."""
        if not self.is_enabled(entry.action):
            return
        try:
            self._write(entry)
        except Exception as e:  # noqa: BLE001 - fire and forget
            self.failures += 1
            log.warning("audit log of %r failed (entry not stored): %s", entry.action, e)

    def _write(self, entry: AuditEntry) -> None:
        assert self._store is not None
        started = _aware(entry.started_at)
        ended = _aware(entry.ended_at) if entry.ended_at is not None else started
        run_id = uuid.uuid4().hex
        error = entry.metadata.get("error") if isinstance(entry.metadata, dict) else None
        response = "" if entry.response is None else json.dumps(entry.response, default=str)
        self._store.append_batch(
            [
                {
                    "kind": "run_started",
                    "run_id": run_id,
                    "ts": started,
                    "skill_id": entry.action,
                    "caller_id": entry.transport or "",
                    "channel_id": entry.bank_id or "",
                    "inputs": {"request": entry.request, "metadata": entry.metadata},
                },
                {
                    "kind": "run_finished",
                    "run_id": run_id,
                    "ts": ended,
                    "status": "error" if error else "ok",
                    "output": response,
                    "error": str(error) if error else "",
                    "runtime_seconds": max((ended - started).total_seconds(), 0.0),
                },
            ]
        )

    @asynccontextmanager
    async def log_with_timing(self, entry: AuditEntry) -> AsyncIterator[AuditEntry]:
        """Time the block: ``started_at`` on entry, ``ended_at`` on exit,
        then log (also when the block raises: ``metadata["error"]`` is set
        and the exception goes on). Set ``entry.response`` inside."""
        entry.started_at = _now()
        try:
            yield entry
        except BaseException as e:
            entry.metadata.setdefault("error", f"{type(e).__name__}: {e}")
            raise
        finally:
            entry.ended_at = _now()
            self.log(entry)

    def entries(
        self,
        *,
        action: Optional[str] = None,
        bank_id: Optional[str] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        limit: Optional[int] = 100,
    ) -> List[AuditEntry]:
        """Logged entries, newest first (answered from the log's indexes)."""
        if self._store is None:
            return []
        self._store.flush()
        runs = self._store.runs(skill=action, channel=bank_id, since=since, until=until, limit=limit)
        out = []
        for r in runs:
            inputs = r.inputs if isinstance(r.inputs, dict) else {}
            out.append(
                AuditEntry(
                    action=r.skill_id,
                    transport=r.caller_id,
                    bank_id=r.channel_id or None,
                    started_at=r.started_at,
                    ended_at=r.finished_at,
                    request=inputs.get("request"),
                    response=json.loads(r.output) if r.output else None,
                    metadata=inputs.get("metadata") or {},
                )
            )
        return out

    # -- retention ------------------------------------------------------------

    def sweep_once(self) -> Optional[Dict[str, Any]]:
        """Drop what is older than ``retention_days`` now; what was dropped."""
        if self._store is None or self.retention_days is None:
            return None
        try:
            self.last_sweep = self._store.retain(older_than=timedelta(days=self.retention_days))
        except Exception as e:  # noqa: BLE001 - a sweep failure must not stop the service
            log.warning("audit retention sweep failed: %s", e)
            return None
        return self.last_sweep

    def start_retention_sweep(self) -> None:
        """Sweep now and then every ``sweep_interval`` seconds on a
        background thread, until :meth:`stop_retention_sweep`."""
        if self._sweeper is not None or self.retention_days is None:
            return
        self._stop.clear()

        def loop() -> None:
            while True:
                self.sweep_once()
                if self._stop.wait(self.sweep_interval):
                    return

        self._sweeper = threading.Thread(target=loop, name="auditlog-retention", daemon=True)
        self._sweeper.start()

    def stop_retention_sweep(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join()
            self._sweeper = None

    def close(self) -> None:
        """Stop the sweep; close the store if this logger opened it."""
        self.stop_retention_sweep()
        if self._owns_store and self._store is not None:
            self._store.close()


_default_logger = AuditLogger()
_logger_lock = threading.Lock()


def get_audit_logger() -> AuditLogger:
    """The process-wide logger: a no-op until :func:`set_audit_logger`."""
    return _default_logger


def set_audit_logger(logger: Optional[AuditLogger]) -> None:
    """Install the process-wide logger (None: back to the no-op one)."""
    global _default_logger
    with _logger_lock:
        _default_logger = logger if logger is not None else AuditLogger()
