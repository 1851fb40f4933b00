"""Drop-in for the extractor that aggregated tool errors from a sessions
database: failing tool calls grouped by (session, tool, error type), with
the count, first and last occurrence, the average duration, and up to 10
agents and tasks.

The mapping onto the log: a session is a run's ``channel_id``, an agent its
``caller_id``, a task the run (``run_id``); a failing tool call is a
``tool_call`` log line with ``status`` ``error`` (the contract's `errors`
query). The grouping is the engine's, answered from its indexes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional

import auditlog

#: Most agents and tasks listed per group.
MAX_IDS = 10


@dataclass(frozen=True)
class ToolErrorGroup:
    """One group, in the extractor's terms."""

    session_id: str
    tool: str
    error_type: str
    count: int
    first_seen: datetime
    last_seen: datetime
    avg_duration_ms: Optional[float]
    #: Up to 10 distinct agent (caller) ids, sorted.
    agents: List[str]
    #: Up to 10 distinct task (run) ids, sorted.
    tasks: List[str]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def tool_errors(
    store: auditlog.Store,
    *,
    since: Optional[auditlog.Instant] = None,
    until: Optional[auditlog.Instant] = None,
) -> List[ToolErrorGroup]:
    """Groups ordered by count (descending), then session, tool and error
    type; ``since``/``until`` bound the tool call's own time."""
    return [
        ToolErrorGroup(
            session_id=g.channel_id,
            tool=g.tool,
            error_type=g.error_type,
            count=g.count,
            first_seen=g.first_ts,
            last_seen=g.last_ts,
            avg_duration_ms=g.avg_duration_ms,
            agents=list(g.caller_ids),
            tasks=list(g.run_ids),
        )
        for g in store.tool_errors(since=since, until=until)
    ]
