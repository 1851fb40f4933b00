"""The tool-error aggregation against what the extractor computed from a
sessions database (here an in-memory SQLite with the same rows)."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timezone
from typing import Any, List, Tuple

import auditlog
from auditlog import compat
from conftest import T0


def extractor(rows: List[Tuple[Any, ...]]) -> List[Tuple[Any, ...]]:
    """The extractor's SQL over tool calls joined to their session/agent."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE calls (session TEXT, tool TEXT, error_type TEXT, status TEXT, ts INTEGER, duration REAL, agent TEXT, task TEXT)")
    db.executemany("INSERT INTO calls VALUES (?,?,?,?,?,?,?,?)", rows)
    groups = db.execute(
        """SELECT session, tool, error_type, COUNT(*), MIN(ts), MAX(ts), AVG(duration)
           FROM calls WHERE status = 'error' GROUP BY session, tool, error_type
           ORDER BY COUNT(*) DESC, session, tool, error_type"""
    ).fetchall()
    out = []
    for s, t, e, n, lo, hi, avg in groups:
        agents = [r[0] for r in db.execute(
            "SELECT DISTINCT agent FROM calls WHERE status='error' AND session=? AND tool=? AND error_type=? ORDER BY agent LIMIT 10", (s, t, e))]
        tasks = [r[0] for r in db.execute(
            "SELECT DISTINCT task FROM calls WHERE status='error' AND session=? AND tool=? AND error_type=? ORDER BY task LIMIT 10", (s, t, e))]
        out.append((s, t, e, n, lo, hi, avg, agents, tasks))
    return out


def test_matches_the_extractor(store: auditlog.Store) -> None:
    rnd = random.Random(7)
    rows = []
    events = []
    for i in range(300):
        run, session, agent = f"task-{i:03d}", f"sess-{rnd.randrange(4)}", f"agent-{rnd.randrange(15):02d}"
        events.append({"kind": "run_started", "run_id": run, "ts": T0 + i * 1000, "caller_id": agent, "channel_id": session})
        for k in range(rnd.randrange(4)):
            tool = rnd.choice(["http.get", "sql", "shell"])
            failed = rnd.random() < 0.4
            err = rnd.choice(["timeout", "denied"]) if failed else ""
            dur = float(rnd.randrange(1, 500))
            ts = T0 + i * 1000 + k + 1
            payload = {"tool": tool, "status": "error" if failed else "ok", "duration_ms": dur}
            if failed:
                payload["error_type"] = err
            events.append({"kind": "run_log", "run_id": run, "ts": ts, "seq": k, "event_type": "tool_call", "payload": payload})
            rows.append((session, tool, err, "error" if failed else "ok", ts, dur, agent, run))
    store.append_batch(events)
    store.flush()
    got = [
        (g.session_id, g.tool, g.error_type, g.count, auditlog.to_micros(g.first_seen),
         auditlog.to_micros(g.last_seen), g.avg_duration_ms, g.agents, g.tasks)
        for g in compat.tool_errors(store)
    ]
    want = extractor(rows)
    assert len(got) == len(want) > 5
    for a, b in zip(got, want):
        assert a[:6] == b[:6] and a[7:] == b[7:]
        assert abs((a[6] or 0) - b[6]) < 1e-9
    some = compat.tool_errors(store, since=T0 + 100_000, until=T0 + 200_000)
    assert sum(g.count for g in some) == sum(
        1 for r in rows if r[3] == "error" and T0 + 100_000 <= r[4] <= T0 + 200_000)
    d = some[0].to_dict()
    assert set(d) == {"session_id", "tool", "error_type", "count", "first_seen", "last_seen",
                      "avg_duration_ms", "agents", "tasks"}
    assert isinstance(d["first_seen"], datetime) and d["first_seen"].tzinfo == timezone.utc
