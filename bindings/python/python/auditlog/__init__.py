"""auditlog: an embedded, append-only audit log for AI-agent gateways.

Open a log, append events (dicts in the contract's shape, or through the
keyword helpers and the ``run(...)`` context manager), query runs, replay,
tail, search, verify and retain::

    import auditlog

    with auditlog.open("/var/lib/gateway/audit") as store:
        with store.run("web.search", caller_id="u-42", channel_id="sess-7") as run:
            run.tool_call("http.get", status="ok", duration_ms=12.5)
            run.output = "3 results"
        store.flush()
        print(store.runs(skill="web.search", limit=10))

Drop-in adapters for the audit stores gateways use today are in
:mod:`auditlog.compat`. See bindings/python/README.md.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union
import os

from . import _native
from ._errors import (
    ClosedError,
    CorruptError,
    DroppedError,
    Error,
    ForkedError,
    InvalidArgumentError,
    InvalidEventError,
    LockedError,
    NoLogError,
    NotALogError,
    NotFoundError,
    QueueFullError,
    QuerySyntaxError,
    SearchError,
    StorageError,
    UnsupportedError,
    UnsupportedVersionError,
    WriteRolledBackError,
    WriterFailedError,
)
from ._native import ErrorGroup, Hit, LogEntry, Run
from ._served import ServedStore, connect
from ._store import Instant, RunScope, Store, open, utc_now

HAS_SEARCH: bool = _native.HAS_SEARCH
"""Whether this build has full-text search (the ``search`` feature)."""

MAX_BATCH_EVENTS: int = _native.MAX_BATCH_EVENTS
"""Most events one ``append_batch`` call takes."""

MAX_EVENT_BYTES: int = _native.MAX_EVENT_BYTES
"""Largest event, in bytes of JSON."""

__version__: str = _native.ENGINE_VERSION


def verify(dir: Union[str, "os.PathLike[str]"], *, expect: Optional[str] = None) -> "dict[str, Any]":
    """Verify the log in ``dir`` read-only (beside any writer): every
    frame's checksum and the integrity chain. Returns ``{"ok": True, ...}``
    with counts and the head digest, or ``{"ok": False, "segment",
    "offset", "reason"}`` naming the first bad place. ``expect``: a head
    digest (hex) anchored earlier that must appear in the chain."""
    return _native.verify_dir(dir, expect=expect)


def replay(
    dir: Union[str, "os.PathLike[str]"],
    *,
    since: Optional[Instant] = None,
    until: Optional[Instant] = None,
    from_lsn: Optional[int] = None,
) -> Iterator["dict[str, Any]"]:
    """Replay the log in ``dir`` read-only, from any process (beside the
    one that writes it): every stored event in log order, as dicts."""
    return _native.replay_dir(dir, since=since, until=until, from_lsn=from_lsn)


def to_micros(value: Instant, field: str = "ts") -> int:
    """Microseconds since the epoch of an int, aware datetime or RFC 3339
    string (InvalidArgumentError naming ``field`` otherwise)."""
    return _native.to_micros(value, field)


def from_micros(us: int) -> Any:
    """The aware UTC datetime of microseconds since the epoch."""
    return _native.from_micros(us)


__all__ = [
    "open",
    "connect",
    "Store",
    "ServedStore",
    "RunScope",
    "Run",
    "LogEntry",
    "ErrorGroup",
    "Hit",
    "Instant",
    "verify",
    "replay",
    "to_micros",
    "from_micros",
    "utc_now",
    "HAS_SEARCH",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "Error",
    "InvalidEventError",
    "InvalidArgumentError",
    "NotFoundError",
    "StorageError",
    "NoLogError",
    "NotALogError",
    "LockedError",
    "CorruptError",
    "UnsupportedVersionError",
    "QueueFullError",
    "DroppedError",
    "ClosedError",
    "WriteRolledBackError",
    "WriterFailedError",
    "ForkedError",
    "UnsupportedError",
    "SearchError",
    "QuerySyntaxError",
]
