"""The exceptions auditlog raises, all under :class:`Error`.

Each also derives from the builtin a caller would catch for that kind of
problem: bad input is a :class:`ValueError`, an unknown run a
:class:`LookupError`, an I/O failure an :class:`OSError`. The native
extension raises these classes (it looks them up here), with the
attributes documented on each.
"""

from __future__ import annotations

from typing import Any, Optional


class Error(Exception):
    """Base class of every auditlog failure. ``retryable`` tells a failure
    worth retrying (a full queue, a write that was cut back cleanly) from
    one that is not."""

    retryable: bool = False

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        for key, value in attrs.items():
            setattr(self, key, value)


class InvalidEventError(Error, ValueError):
    """An event (or a value inside it) breaks the contract; nothing of it
    was stored. ``field`` names the field (``payload.args[2]`` for a value
    deep inside), ``index`` the event's place in a batch (None for a single
    append), ``reason`` what is wrong."""

    field: Optional[str] = None
    index: Optional[int] = None
    reason: Optional[str] = None


class InvalidArgumentError(Error, ValueError):
    """A bad argument (a configuration value, a time, a digest...)."""


class NotFoundError(Error, LookupError):
    """No such run (``chain`` of an unknown id, ``finish_run`` of a run that
    was never started)."""


class StorageError(Error, OSError):
    """The disk failed (``errno`` when the OS gave one)."""


class NoLogError(Error):
    """The folder holds no log and ``create=False`` (``path``)."""

    path: Any = None


class NotALogError(Error):
    """The folder holds files but no log; auditlog refuses to touch it."""

    path: Any = None


class LockedError(Error):
    """Another process has the log open for writing (``path``, ``holder``).
    One writer per folder; see the multi-process notes in the README."""

    path: Any = None
    holder: Optional[str] = None


class CorruptError(Error):
    """Stored data does not check out (``segment``, ``offset``, ``reason``)."""

    segment: Any = None
    offset: Optional[int] = None
    reason: Optional[str] = None


class UnsupportedVersionError(Error):
    """The log was written by a newer format version."""


class QueueFullError(Error):
    """The ingest queue is full and ``on_full="fail"`` (``capacity``).
    Retryable."""

    capacity: Optional[int] = None
    retryable = True


class DroppedError(Error):
    """Waited on events that ``on_full="drop"`` dropped from a full queue."""


class ClosedError(Error):
    """The store is closed."""


class WriteRolledBackError(Error):
    """A write failed and was cut back cleanly; the log carries on and the
    events may be appended again (``retryable`` is True)."""

    retryable = True


class WriterFailedError(Error):
    """The writer stopped after an I/O failure; reopen the store."""


class ForkedError(Error):
    """The handle was opened before ``fork()``; open a new one in the child."""


class UnsupportedError(Error):
    """This build lacks the feature (full-text search without ``search``)."""


class SearchError(Error):
    """The full-text index failed."""


class QuerySyntaxError(SearchError, ValueError):
    """A search query does not parse; the message says where."""


__all__ = [
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
