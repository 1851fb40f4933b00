"""Type stubs of the native extension (src/*.rs of bindings/python)."""

import os
from datetime import datetime, timedelta
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypedDict,
    TypeVar,
    Union,
    final,
    overload,
)

Instant = Union[int, datetime, str]
_Path = Union[str, "os.PathLike[str]"]
_S = TypeVar("_S", bound="Store")
_V = TypeVar("_V", bound="Served")

HAS_SEARCH: bool
MAX_EVENT_BYTES: int
MAX_BATCH_EVENTS: int
ENGINE_VERSION: str

class Counters(TypedDict):
    appended: int
    dropped: int
    rejected: int
    durable_lsn: int
    queue_depth: int
    skipped: int
    staged: int
    stage_full: int
    stage_full_drained: int
    failures: int

@final
class Run:
    """A run (contract section 2). Instants are aware UTC datetimes; the
    ``*_us`` attributes give them as integer microseconds."""

    @property
    def id(self) -> str: ...
    @property
    def skill_id(self) -> str: ...
    @property
    def caller_id(self) -> str: ...
    @property
    def channel_id(self) -> str: ...
    @property
    def parent_run_id(self) -> str: ...
    @property
    def inputs(self) -> Any: ...
    @property
    def inputs_json(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def started_at_us(self) -> int: ...
    @property
    def finished_at(self) -> Optional[datetime]: ...
    @property
    def finished_at_us(self) -> Optional[int]: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def tool_calls(self) -> int: ...
    @property
    def runtime_seconds(self) -> float: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def thinking_tokens(self) -> int: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class LogEntry:
    """One log line of a run."""

    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def ts_us(self) -> int: ...
    @property
    def event_type(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def payload_json(self) -> str: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class ErrorGroup:
    """Failing tool calls of one (channel, tool, error type)."""

    @property
    def channel_id(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def error_type(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def first_ts(self) -> datetime: ...
    @property
    def first_ts_us(self) -> int: ...
    @property
    def last_ts(self) -> datetime: ...
    @property
    def last_ts_us(self) -> int: ...
    @property
    def avg_duration_ms(self) -> Optional[float]: ...
    @property
    def caller_ids(self) -> List[str]: ...
    @property
    def run_ids(self) -> List[str]: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Hit:
    """A full-text search hit."""

    @property
    def run(self) -> Run: ...
    @property
    def score(self) -> float: ...
    @property
    def snippet(self) -> str: ...

@final
class ReplayIter(Iterator[Dict[str, Any]]):
    def __iter__(self) -> "ReplayIter": ...
    def __next__(self) -> Dict[str, Any]: ...

@final
class TailIter(Iterator[Dict[str, Any]]):
    def __iter__(self) -> "TailIter": ...
    def __next__(self) -> Dict[str, Any]: ...

class _Faults:
    """TEST-ONLY, not a stable API: scripted I/O faults for the writer
    (``auditlog._testing.Faults``)."""

    def __new__(cls) -> "_Faults": ...
    def fail(
        self,
        on: str,
        errno: Union[str, int],
        *,
        times: Optional[int] = None,
        skip: int = 0,
        short: Optional[int] = None,
    ) -> None: ...
    def clear(self) -> None: ...
    def injected(self) -> Dict[str, int]: ...

class Store:
    """An open audit log (see ``auditlog.open``)."""

    def __new__(
        cls,
        dir: _Path,
        *,
        durability: Union[str, timedelta, float, None] = None,
        create: bool = True,
        queue_capacity: int = 16384,
        on_full: str = "block",
        segment_max_bytes: int = 268435456,
        max_batch_bytes: int = 1048576,
        redaction: Union[str, Mapping[str, Any], Sequence[Any], None] = None,
        search: bool = False,
        fire_and_forget: bool = False,
        _faults: Optional["_Faults"] = None,
    ) -> "Store": ...
    @property
    def dir(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def fire_and_forget(self) -> bool: ...
    @property
    def _generation(self) -> int: ...

    # appends (return at once)
    def append(self, event: Mapping[str, Any], *, wait: bool = False) -> None:
        """Append one event: a dict in the contract's shape (``kind``,
        ``run_id``, ``ts``, the kind's fields, unknown fields kept). A
        missing ``ts`` is the time of the call. ``wait``: block (without the
        GIL) until it is durable."""
    def append_batch(
        self, events: Iterable[Mapping[str, Any]], *, strict: bool = True, wait: bool = False
    ) -> List[Tuple[int, str]]:
        """Append events as one unit (faster per event). ``strict``: any bad
        event raises and nothing is stored; else the good ones are stored and
        the bad ones returned as ``(index, message)``."""
    def start_run(
        self,
        run_id: str,
        *,
        skill_id: str = "",
        caller_id: str = "",
        channel_id: str = "",
        parent_run_id: str = "",
        inputs: Any = None,
        dry_run: bool = False,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def log(
        self,
        run_id: str,
        event_type: str,
        payload: Any = None,
        *,
        seq: int = 0,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def tool_call(
        self,
        run_id: str,
        tool: str,
        *,
        status: str = "ok",
        error_type: Optional[str] = None,
        duration_ms: Optional[float] = None,
        seq: int = 0,
        ts: Optional[Instant] = None,
        **fields: Any,
    ) -> None: ...
    def finish_run(
        self,
        run_id: str,
        *,
        status: str = "ok",
        output: str = "",
        error: str = "",
        tool_calls: int = 0,
        runtime_seconds: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        thinking_tokens: int = 0,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def flush(self) -> int:
        """Make everything appended durable and visible to queries."""

    # queries
    def get_run(self, run_id: str) -> Optional[Run]: ...
    def list_logs(self, run_id: str) -> List[LogEntry]: ...
    def runs(
        self,
        *,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        parent: Optional[str] = None,
        top_level: bool = False,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> List[Run]: ...
    def count(
        self,
        *,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        parent: Optional[str] = None,
        top_level: bool = False,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> int: ...
    def children(self, run_id: str, *, include_dry_run: bool = False) -> List[Run]: ...
    def chain(self, run_id: str) -> List[Run]: ...
    def finished_before(self, before: Instant) -> List[Run]: ...
    def last_run(
        self, skills: Sequence[str], *, include_failed: bool = False
    ) -> Dict[str, Optional[datetime]]: ...
    def tool_errors(
        self, *, since: Optional[Instant] = None, until: Optional[Instant] = None
    ) -> List[ErrorGroup]: ...
    def calls(
        self,
        *,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
        oldest_first: bool = False,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> List[Dict[str, Any]]: ...
    @overload
    def count_calls(
        self,
        *,
        by: None = None,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> int: ...
    @overload
    def count_calls(
        self,
        *,
        by: str,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> List[Tuple[str, int]]: ...
    def purge_older_than(self, cutoff: Instant) -> Dict[str, Any]: ...
    def replay(
        self,
        *,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        from_lsn: Optional[int] = None,
    ) -> ReplayIter: ...
    def tail(
        self, n: int = 10, *, follow: bool = False, idle_timeout: Optional[float] = None
    ) -> TailIter: ...
    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        timeout: float = 10.0,
    ) -> List[Hit]: ...
    def verify(self, *, expect: Optional[str] = None) -> Dict[str, Any]: ...
    def stats(self, *, anomalies: bool = True) -> Dict[str, Any]: ...
    def counters(self) -> Counters: ...
    def failures(self) -> Dict[str, int]:
        """Events not stored in fire-and-forget mode, per reason: invalid,
        queue_full, closed, writer_failed, not_found, forked, other."""
    def close(self) -> None: ...
    def __enter__(self: _S) -> _S: ...
    def __exit__(self, *args: Any) -> bool: ...
    def _disown_after_fork(self) -> int: ...

class Served:
    """A log served by ``auditlog serve`` (see ``auditlog.connect``)."""

    def __new__(cls, socket: _Path, *, retry_for: float = 30.0) -> "Served": ...
    @property
    def socket(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def fire_and_forget(self) -> bool: ...
    def append(self, event: Mapping[str, Any], *, wait: bool = False) -> None: ...
    def append_batch(
        self, events: Iterable[Mapping[str, Any]], *, strict: bool = True, wait: bool = False
    ) -> List[Tuple[int, str]]: ...
    def start_run(
        self,
        run_id: str,
        *,
        skill_id: str = "",
        caller_id: str = "",
        channel_id: str = "",
        parent_run_id: str = "",
        inputs: Any = None,
        dry_run: bool = False,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def log(
        self,
        run_id: str,
        event_type: str,
        payload: Any = None,
        *,
        seq: int = 0,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def tool_call(
        self,
        run_id: str,
        tool: str,
        *,
        status: str = "ok",
        error_type: Optional[str] = None,
        duration_ms: Optional[float] = None,
        seq: int = 0,
        ts: Optional[Instant] = None,
        **fields: Any,
    ) -> None: ...
    def finish_run(
        self,
        run_id: str,
        *,
        status: str = "ok",
        output: str = "",
        error: str = "",
        tool_calls: int = 0,
        runtime_seconds: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        thinking_tokens: int = 0,
        ts: Optional[Instant] = None,
    ) -> None: ...
    def flush(self) -> int: ...
    def get_run(self, run_id: str) -> Optional[Run]: ...
    def list_logs(self, run_id: str) -> List[LogEntry]: ...
    def runs(
        self,
        *,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        parent: Optional[str] = None,
        top_level: bool = False,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> List[Run]: ...
    def count(
        self,
        *,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        parent: Optional[str] = None,
        top_level: bool = False,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> int: ...
    def children(self, run_id: str, *, include_dry_run: bool = False) -> List[Run]: ...
    def chain(self, run_id: str) -> List[Run]: ...
    def finished_before(self, before: Instant) -> List[Run]: ...
    def last_run(
        self, skills: Sequence[str], *, include_failed: bool = False
    ) -> Dict[str, Optional[datetime]]: ...
    def tool_errors(
        self, *, since: Optional[Instant] = None, until: Optional[Instant] = None
    ) -> List[ErrorGroup]: ...
    def calls(
        self,
        *,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
        oldest_first: bool = False,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> List[Dict[str, Any]]: ...
    @overload
    def count_calls(
        self,
        *,
        by: None = None,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> int: ...
    @overload
    def count_calls(
        self,
        *,
        by: str,
        tool: Optional[str] = None,
        engine: Optional[str] = None,
        session: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[str] = None,
        status: Optional[str] = None,
        error_type: Optional[str] = None,
        run_id: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        include_dry_run: bool = False,
    ) -> List[Tuple[str, int]]: ...
    def purge_older_than(self, cutoff: Instant) -> Dict[str, Any]: ...
    def _replay_page(
        self,
        *,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        from_lsn: Optional[int] = None,
        limit: int = 1000,
        wait_ms: Optional[int] = None,
    ) -> Tuple[List[Dict[str, Any]], int]: ...
    def _head_lsn(self) -> int: ...
    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        skill: Optional[str] = None,
        caller: Optional[str] = None,
        channel: Optional[str] = None,
        status: Optional[str] = None,
        since: Optional[Instant] = None,
        until: Optional[Instant] = None,
        timeout: float = 10.0,
    ) -> List[Hit]: ...
    def verify(self, *, expect: Optional[str] = None) -> Dict[str, Any]: ...
    def stats(self, *, anomalies: bool = True) -> Dict[str, Any]: ...
    def counters(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self: _V) -> _V: ...
    def __exit__(self, *args: Any) -> bool: ...

def verify_dir(dir: _Path, *, expect: Optional[str] = None) -> Dict[str, Any]: ...
def replay_dir(
    dir: _Path,
    *,
    since: Optional[Instant] = None,
    until: Optional[Instant] = None,
    from_lsn: Optional[int] = None,
) -> ReplayIter: ...
def to_micros(value: Instant, field: str = "ts") -> int: ...
def from_micros(us: int) -> datetime: ...
def fork_generation() -> int: ...
def _event_bytes(event: Any, *, fast: bool, now: int = 0) -> Optional[bytes]:
    """TEST-ONLY: the stored bytes of the event ``append(event)`` would
    store, by the fast path (None when it declines) or the line path."""
    ...
