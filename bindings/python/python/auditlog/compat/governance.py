"""Drop-in for a tool-governance layer's audit store.

The store it replaces logs one record per governed tool call, by request:
``write(event)`` (non-blocking, never raises), ``read(from_ts, to_ts, tool,
agent_id, workspace_id, limit)`` (the same dicts, oldest first),
``close()``, with a backend chosen by ``AUDIT_BACKEND`` (``jsonl``,
``postgres``, ``memory``) behind a ``get_audit_store()`` /
``set_audit_store()`` singleton. Its rule: the payload is never stored,
only its hash and sizes.

Swap it in with one line: ``AUDIT_BACKEND=auditlog`` (and ``AUDIT_DIR``),
or ``set_audit_store(auditlog.compat.AuditStore(dir))``.

How records are stored
----------------------
Each record becomes a standalone ``tool_call`` event (no run; the engine's
first-class tool-call kind, docs/tool-calls.md): ``request_id`` is
``req_id``, ``caller_id`` is ``agent_id``, and ``workspace_id``, ``tool``,
``status``, ``duration_ms``, ``input_bytes`` (``in_size``),
``result_bytes`` (``out_size``) and ``input_hash`` are the call's typed,
indexed fields (each set only when it has the type the engine asks for:
a string of at most 1,024 bytes, a finite number, a size >= 0). The whole
governance record (and only it) is the event's ``payload``, so ``read()``
returns exactly what was written.

``read()`` is the engine's ``calls`` query (oldest first): served from the
per-segment call indexes by tool, agent, workspace and time, not a scan.
``tool_errors()`` on ``store`` groups the failing calls, and
``store.count_calls(by="tool")`` counts them.

Records written by earlier versions of this adapter (a ``run_log`` of
``event_type`` ``tool_call`` under the request id, with no run) are not
tool calls for the engine (a log of a run that was never started); they
stay in the log and in ``replay``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Union

import auditlog

log = logging.getLogger("auditlog.compat")

#: The fields a governance record has; nothing else is ever stored.
FIELDS = (
    "ts",
    "req_id",
    "workspace_id",
    "user_id",
    "agent_id",
    "tool",
    "action",
    "status",
    "duration_ms",
    "in_size",
    "out_size",
    "input_hash",
    "graph_run_id",
    "graph_node",
    "job_id",
)

#: Keys that may carry the call's content: never stored; their hash and
#: size fill ``input_hash`` / ``in_size`` / ``out_size`` when those are absent.
INPUT_KEYS = ("input", "inputs", "payload", "args", "arguments", "params", "request")
OUTPUT_KEYS = ("output", "result", "response")


class GovernanceStore(Protocol):
    """What every backend offers."""

    def write(self, event: Mapping[str, Any]) -> None: ...

    def read(
        self,
        from_ts: Any = None,
        to_ts: Any = None,
        tool: Optional[str] = None,
        agent_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[Dict[str, Any]]: ...

    def close(self) -> None: ...


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_of(event: Mapping[str, Any]) -> Dict[str, Any]:
    """The record stored for ``event``: the governance fields only, with
    the content's hash and sizes derived when the caller left them out."""
    rec = {k: event[k] for k in FIELDS if k in event and event[k] is not None}
    if "ts" not in rec:
        rec["ts"] = time.time()
    elif isinstance(rec["ts"], datetime):
        rec["ts"] = rec["ts"].isoformat()
    content_in = next((event[k] for k in INPUT_KEYS if k in event), None)
    content_out = next((event[k] for k in OUTPUT_KEYS if k in event), None)
    if content_in is not None:
        raw = _canonical(content_in)
        rec.setdefault("input_hash", "sha256:" + hashlib.sha256(raw).hexdigest())
        rec.setdefault("in_size", len(raw))
    if content_out is not None:
        rec.setdefault("out_size", len(_canonical(content_out)))
    return rec


def ts_micros(ts: Any) -> int:
    """A record's ``ts`` as microseconds: epoch seconds (int or float),
    an ISO 8601 string, or a datetime (naive ones are taken as UTC, as the
    stores this replaces wrote them)."""
    if isinstance(ts, bool):
        raise ValueError(f"ts: {ts!r} is not a time")
    if isinstance(ts, (int, float)):
        return int(round(ts * 1_000_000))
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        return auditlog.to_micros(ts)
    raise ValueError(f"ts: {ts!r} is not a time")


#: Typed string fields of a tool_call: (its field, the record's key).
_CALL_STRINGS = (
    ("request_id", "req_id"),
    ("caller_id", "agent_id"),
    ("workspace_id", "workspace_id"),
    ("tool", "tool"),
    ("status", "status"),
    ("input_hash", "input_hash"),
)
#: The engine's bound on a tool_call's short strings (docs/tool-calls.md).
_MAX_SHORT = 1024


def call_event(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """The standalone ``tool_call`` event of a governance record: its
    typed fields where the record's values have the right type, and the
    record itself as ``payload``."""
    ev: Dict[str, Any] = {"kind": "tool_call", "run_id": "", "ts": ts_micros(rec["ts"]), "payload": dict(rec)}
    for field, key in _CALL_STRINGS:
        v = rec.get(key)
        if isinstance(v, str) and len(v.encode()) <= _MAX_SHORT:
            ev[field] = v
    if "status" not in ev:
        ev["status"] = "ok"
    d = rec.get("duration_ms")
    if isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        ev["duration_ms"] = float(d)
    for field, key in (("input_bytes", "in_size"), ("result_bytes", "out_size")):
        v = rec.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63:
            ev[field] = v
    return ev


def _matches(rec: Mapping[str, Any], tool: Optional[str], agent_id: Optional[str], workspace_id: Optional[str]) -> bool:
    return (
        (tool is None or rec.get("tool") == tool)
        and (agent_id is None or rec.get("agent_id") == agent_id)
        and (workspace_id is None or rec.get("workspace_id") == workspace_id)
    )


class AuditStore:
    """The tool-governance audit store on an auditlog log folder.

    ``write`` never blocks (an append into the log's queue; a full queue
    drops and counts) and never raises (failures are counted in
    ``failures`` and logged at WARNING). ``read`` returns the records
    written, oldest first.
    """

    def __init__(self, dir: Union[str, "os.PathLike[str]"], *, durability: Any = "every_batch", queue_capacity: int = 16384) -> None:
        self.dir = Path(dir)
        self.failures = 0
        self._store = auditlog.open(
            self.dir,
            durability=durability,
            fire_and_forget=True,
            queue_capacity=queue_capacity,
        )

    def write(self, event: Mapping[str, Any]) -> None:
        """Record one governed call. Never raises, never blocks."""
        try:
            self._store.append(call_event(record_of(event)))
        except Exception as e:  # noqa: BLE001 - the contract: never raise
            self.failures += 1
            log.warning("audit write failed (record not stored): %s", e)

    def read(
        self,
        from_ts: Any = None,
        to_ts: Any = None,
        tool: Optional[str] = None,
        agent_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        """Records in ``[from_ts, to_ts]`` matching the filters, oldest
        first, at most ``limit`` (the oldest ones). What was written and
        not yet flushed is made visible first."""
        if limit <= 0:
            return []
        self._store.flush()
        found = self._store.calls(
            tool=tool,
            agent=agent_id,
            workspace=workspace_id,
            since=None if from_ts is None else ts_micros(from_ts),
            until=None if to_ts is None else ts_micros(to_ts),
            oldest_first=True,
            limit=limit,
        )
        return [c["payload"] for c in found if isinstance(c.get("payload"), dict)]

    @property
    def store(self) -> auditlog.Store:
        """The underlying auditlog store (queries, verify, retention)."""
        return self._store

    def dropped(self) -> int:
        """Records not stored: refused input, a full queue, a closed store."""
        n = self.failures + sum(self._store.failures().values())
        if not self._store.closed:
            n += self._store.counters()["dropped"]
        return n

    def close(self) -> None:
        try:
            self._store.close()
        except Exception as e:  # noqa: BLE001 - closing must not raise either
            log.warning("audit store close failed: %s", e)


class MemoryAuditStore:
    """The in-memory backend of the store replaced (tests, development)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: List[Dict[str, Any]] = []

    def write(self, event: Mapping[str, Any]) -> None:
        try:
            rec = record_of(event)
            with self._lock:
                self._records.append(rec)
        except Exception as e:  # noqa: BLE001
            log.warning("audit write failed: %s", e)

    def read(
        self,
        from_ts: Any = None,
        to_ts: Any = None,
        tool: Optional[str] = None,
        agent_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        lo = None if from_ts is None else ts_micros(from_ts)
        hi = None if to_ts is None else ts_micros(to_ts)
        with self._lock:
            recs = sorted(self._records, key=lambda r: ts_micros(r["ts"]))
        out = [
            r
            for r in recs
            if (lo is None or ts_micros(r["ts"]) >= lo)
            and (hi is None or ts_micros(r["ts"]) <= hi)
            and _matches(r, tool, agent_id, workspace_id)
        ]
        return out[: max(limit, 0)]

    def close(self) -> None:
        pass


class JsonlAuditStore:
    """The JSONL backend of the store replaced: one file per UTC day, a
    lock, line buffering (each record is one ``write(2)``)."""

    def __init__(self, dir: Union[str, "os.PathLike[str]"]) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: Dict[str, Any] = {}

    def _file(self, day: str) -> Any:
        f = self._files.get(day)
        if f is None:
            f = open(self.dir / f"audit-{day}.jsonl", "a", buffering=1, encoding="utf-8")
            self._files[day] = f
        return f

    def write(self, event: Mapping[str, Any]) -> None:
        try:
            rec = record_of(event)
            day = datetime.fromtimestamp(ts_micros(rec["ts"]) / 1e6, timezone.utc).strftime("%Y-%m-%d")
            line = json.dumps(rec, default=str) + "\n"
            with self._lock:
                self._file(day).write(line)
        except Exception as e:  # noqa: BLE001
            log.warning("audit write failed: %s", e)

    def read(
        self,
        from_ts: Any = None,
        to_ts: Any = None,
        tool: Optional[str] = None,
        agent_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        limit: int = 100,
    ) -> List[Dict[str, Any]]:
        lo = None if from_ts is None else ts_micros(from_ts)
        hi = None if to_ts is None else ts_micros(to_ts)
        out: List[Dict[str, Any]] = []
        for path in sorted(self.dir.glob("audit-*.jsonl")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    t = ts_micros(r["ts"])
                    if (lo is None or t >= lo) and (hi is None or t <= hi) and _matches(r, tool, agent_id, workspace_id):
                        out.append(r)
        out.sort(key=lambda r: ts_micros(r["ts"]))
        return out[: max(limit, 0)]

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()


_store: Optional[GovernanceStore] = None
_store_lock = threading.Lock()


def store_from_env() -> GovernanceStore:
    """A backend as ``AUDIT_BACKEND`` names it: ``auditlog`` (the default;
    folder ``AUDIT_DIR``, default ``./audit``), ``jsonl`` (``AUDIT_DIR``)
    or ``memory``. ``postgres`` is the replaced system's own and is not
    offered here."""
    backend = os.environ.get("AUDIT_BACKEND", "auditlog").strip().lower()
    directory = os.environ.get("AUDIT_DIR", "./audit")
    if backend == "auditlog":
        return AuditStore(directory)
    if backend == "jsonl":
        return JsonlAuditStore(directory)
    if backend == "memory":
        return MemoryAuditStore()
    raise ValueError(
        f"AUDIT_BACKEND={backend!r}: this module offers auditlog, jsonl and memory"
    )


def get_audit_store() -> GovernanceStore:
    """The process-wide store, created from the environment on first use."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                _store = store_from_env()
    return _store


def set_audit_store(store: Optional[GovernanceStore]) -> None:
    """Replace the process-wide store (None: the next get creates one)."""
    global _store
    with _store_lock:
        _store = store
