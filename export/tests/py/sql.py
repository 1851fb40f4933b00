"""The command line's questions asked in SQL of an export, with DuckDB. The
same statements are in docs/export.md for auditors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from conftest import rfc3339


def run_columns(p: str = "") -> str:
    """The run view's columns in contract order, instants as µs."""
    return (
        f"{p}id, {p}skill_id, {p}caller_id, {p}channel_id, {p}parent_run_id, {p}inputs, {p}dry_run, "
        f"epoch_us({p}started_at), epoch_us({p}finished_at), {p}status, {p}output, {p}error, "
        f"{p}tool_calls, {p}runtime_seconds, {p}input_tokens, {p}output_tokens, {p}thinking_tokens"
    )


RUN_COLUMNS = run_columns()

RUNS_OF_SKILL = f"""
SELECT {RUN_COLUMNS} FROM runs
WHERE skill_id = $skill AND NOT dry_run
ORDER BY started_at DESC, id DESC"""

COUNT_BY_STATUS = """
SELECT count(*) FROM runs WHERE status = $status AND NOT dry_run"""

CHILDREN = f"""
SELECT {RUN_COLUMNS} FROM runs
WHERE parent_run_id = $id AND NOT dry_run
ORDER BY started_at DESC, id DESC"""

CHAIN = f"""
WITH RECURSIVE chain(depth, log_id, id, parent_run_id, seen) AS (
    SELECT 0, log_id, id, parent_run_id, [id] FROM runs WHERE id = $id
  UNION ALL
    SELECT c.depth + 1, r.log_id, r.id, r.parent_run_id, list_append(c.seen, r.id)
    FROM chain c JOIN runs r ON r.log_id = c.log_id AND r.id = c.parent_run_id
    WHERE c.parent_run_id <> '' AND NOT list_contains(c.seen, r.id)
)
SELECT {run_columns('r.')}
FROM chain c JOIN runs r ON r.log_id = c.log_id AND r.id = c.id
ORDER BY c.depth"""

LAST_RUN = """
SELECT skill_id, epoch_us(max(started_at)) FROM runs
WHERE NOT dry_run AND skill_id IN (SELECT unnest($skills))
  AND ($include_failed OR status NOT IN ('error', 'timeout'))
GROUP BY skill_id"""

# Each tool call once, as its run's logs show it: a row that a later
# amending log of the same run and seq replaced (a gateway rewriting a log
# line, or retention carrying a still-running run forward) does not count.
CALLS = """
SELECT t.* FROM tool_calls t
WHERE NOT EXISTS (
    SELECT 1 FROM tool_calls n
    WHERE n.log_id = t.log_id AND n.run_id = t.run_id AND n.seq = t.seq
      AND n.lsn > t.lsn AND n.replace)"""

ERRORS = f"""
WITH calls AS ({CALLS})
SELECT r.channel_id, coalesce(t.tool, '') AS tool, coalesce(t.error_type, '') AS error_type,
       count(*) AS count, epoch_us(min(t.ts)) AS first_ts, epoch_us(max(t.ts)) AS last_ts,
       avg(t.duration_ms) AS avg_duration_ms,
       list_sort(list_distinct(list(r.caller_id)))[1:10] AS caller_ids,
       list_sort(list_distinct(list(t.run_id)))[1:10] AS run_ids
FROM calls t JOIN runs r ON r.log_id = t.log_id AND r.id = t.run_id
WHERE t.status = 'error' AND NOT r.dry_run
  AND t.ts BETWEEN make_timestamptz($since) AND make_timestamptz($until)
GROUP BY ALL
ORDER BY count DESC, r.channel_id, tool, error_type"""


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    for t in ("events", "runs", "tool_calls"):
        c.execute(
            f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{root}/table={t}/*/*/*.parquet', hive_partitioning = true)"
        )
    return c


def one(c: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The one row a query answers."""
    row = c.execute(query, params or {}).fetchone()
    assert row is not None, query
    return row


def run_json(row: tuple[Any, ...]) -> dict[str, Any]:
    (rid, skill, caller, channel, parent, inputs, dry, started, finished, status, output, error,
     tool_calls, runtime, tin, tout, tthink) = row
    return {
        "id": rid, "skill_id": skill, "caller_id": caller, "channel_id": channel,
        "parent_run_id": parent, "inputs": json.loads(inputs), "dry_run": dry,
        "started_at": rfc3339(started), "finished_at": rfc3339(finished), "status": status,
        "output": output, "error": error, "tool_calls": tool_calls, "runtime_seconds": runtime,
        "input_tokens": tin, "output_tokens": tout, "thinking_tokens": tthink,
    }


def runs_of_skill(c: duckdb.DuckDBPyConnection, skill: str) -> list[dict[str, Any]]:
    return [run_json(r) for r in c.execute(RUNS_OF_SKILL, {"skill": skill}).fetchall()]


def count_by_status(c: duckdb.DuckDBPyConnection, status: str) -> int:
    return int(one(c, COUNT_BY_STATUS, {"status": status})[0])


def children(c: duckdb.DuckDBPyConnection, rid: str) -> list[dict[str, Any]]:
    return [run_json(r) for r in c.execute(CHILDREN, {"id": rid}).fetchall()]


def chain(c: duckdb.DuckDBPyConnection, rid: str) -> list[dict[str, Any]]:
    return [run_json(r) for r in c.execute(CHAIN, {"id": rid}).fetchall()]


def last_run(c: duckdb.DuckDBPyConnection, skills: list[str], include_failed: bool) -> dict[str, Any]:
    got = dict(c.execute(LAST_RUN, {"skills": skills, "include_failed": include_failed}).fetchall())
    return {s: rfc3339(got.get(s)) for s in skills}


def errors(c: duckdb.DuckDBPyConnection, since: int, until: int) -> list[dict[str, Any]]:
    out = []
    for ch, tool, et, n, first, last, avg, callers, runs in c.execute(
        ERRORS, {"since": since, "until": until}
    ).fetchall():
        out.append({
            "channel_id": ch, "tool": tool, "error_type": et, "count": n,
            "first_ts": rfc3339(first), "last_ts": rfc3339(last), "avg_duration_ms": avg,
            "caller_ids": callers, "run_ids": runs,
        })
    return out
