"""A generated gateway workload for the export tests: runs of skills that
call tools (some failing), sub-runs, dry runs, runs that never finish or
finish on a later day, and the adversarial orders of the run view (a finish
before its start, duplicate starts and finishes, orphan logs). Deterministic
for a seed. Events come out in ingest order, mostly by time, as JSON lines.
"""

from __future__ import annotations

import json
import random
from typing import Any, Iterator

DAY_US = 86_400_000_000
# 2026-11-20T00:00:00Z
START_US = 1_795_132_800_000_000

SKILLS = ["web.search", "web.fetch", "code.exec", "mail.send", "docs.summarize", "db.query"]
TOOLS = ["http.get", "http.post", "sql.query", "fs.read", "python.exec", "kv.get"]
ERRORS = ["timeout", "http_5xx", "rate_limited", "denied"]


def generate(seed: int, runs: int, days: int, amend: bool = False) -> list[dict[str, Any]]:
    """The workload's events, in the order they are to be ingested. With
    `amend`, some runs are amended later (docs/queries.md, "Amending
    events"), within seconds or about a day later (another segment): an
    upserted start, a replaced finish, a finish by an amending event, a
    rewritten note line."""
    rng = random.Random(seed)
    out: list[tuple[int, int, dict[str, Any]]] = []
    order = 0

    def emit(ts: int, ev: dict[str, Any]) -> None:
        nonlocal order
        order += 1
        out.append((ts, order, ev))

    span = days * DAY_US
    started: list[tuple[str, int]] = []
    for i in range(runs):
        rid = f"r-{seed}-{i:06d}"
        t0 = START_US + rng.randrange(span - 3_600_000_000)
        parent = ""
        if started and rng.random() < 0.25:
            parent = rng.choice(started)[0]
        if rng.random() < 0.01:
            parent = f"missing-{i}"
        start = {
            "kind": "run_started",
            "run_id": rid,
            "ts": t0,
            "skill_id": rng.choice(SKILLS),
            "caller_id": f"u-{rng.randrange(40)}",
            "channel_id": f"ch-{rng.randrange(12)}",
            "parent_run_id": parent,
            "inputs": {"q": f"question {i}", "n": rng.randrange(100), "nested": {"z": 1, "a": [1, 2.50]}},
            "dry_run": rng.random() < 0.05,
        }
        if rng.random() < 0.05:
            start["x_gateway"] = {"region": "eu", "v": 2}
        if rng.random() < 0.03:
            del start["inputs"]
        emit(t0, start)
        started.append((rid, t0))
        t = t0
        calls = rng.randrange(5)
        for seq in range(calls):
            t += rng.randrange(1, 20_000_000)
            failed = rng.random() < 0.2
            payload: dict[str, Any] = {
                "tool": rng.choice(TOOLS),
                "status": "error" if failed else "ok",
                "args_summary": f"arg {seq}",
                "result_bytes": rng.randrange(10_000),
            }
            if failed:
                payload["error_type"] = rng.choice(ERRORS)
            if rng.random() < 0.9:
                payload["duration_ms"] = rng.randrange(1, 5000) if rng.random() < 0.7 else rng.random() * 1000
            if rng.random() < 0.05:
                payload["tool"] = 7  # a non-string tool: grouped by its JSON text
            if rng.random() < 0.1:
                payload["http_status"] = rng.choice([200, 404, 503])
                payload["exit_code"] = rng.choice([0, 1])
                payload["input_hash"] = f"h{rng.randrange(1 << 30):x}"
            if rng.random() < 0.05:
                payload["extra_key"] = {"kept": True}
            emit(t, {"kind": "run_log", "run_id": rid, "ts": t, "seq": seq,
                     "event_type": "tool_call", "payload": payload})
        if rng.random() < 0.3:
            t += 1000
            emit(t, {"kind": "run_log", "run_id": rid, "ts": t, "seq": calls,
                     "event_type": "note", "payload": "free text"})
        if amend and rng.random() < 0.05:
            at = t0 + (DAY_US if rng.random() < 0.5 else rng.randrange(1, 5_000_000))
            emit(at, dict(start, ts=at, replace=True, caller_id=f"u-amended-{rng.randrange(3)}",
                          skill_id=rng.choice(SKILLS), inputs={"amended": i}))
        if amend and rng.random() < 0.04:
            at = t + rng.randrange(1, 1000)
            emit(at, {"kind": "run_log", "run_id": rid, "ts": at, "seq": calls, "replace": True,
                      "event_type": "note", "payload": {"rewritten": True}})
        r = rng.random()
        if r < 0.05:
            if amend and rng.random() < 0.3:
                # An amending finish of a running run finishes it.
                at = t + DAY_US // 2
                emit(at, {"kind": "run_finished", "run_id": rid, "ts": at, "status": "ok",
                          "replace": True, "output": "finished by an amending event"})
            continue  # never finishes
        if r < 0.10:
            t += DAY_US // 2 + rng.randrange(DAY_US)  # finishes a day later
        else:
            t += rng.randrange(1, 60_000_000)
        status = rng.choice(["ok", "ok", "ok", "error", "timeout", "cancelled"])
        fin = {
            "kind": "run_finished", "run_id": rid, "ts": t, "status": status,
            "output": f"out {i}", "error": "boom" if status == "error" else "",
            "tool_calls": calls, "runtime_seconds": (t - t0) / 1e6,
            "input_tokens": rng.randrange(1000), "output_tokens": rng.randrange(1000),
            "thinking_tokens": 0,
        }
        emit(t, fin)
        if amend and rng.random() < 0.06:
            at = t + (DAY_US if rng.random() < 0.5 else rng.randrange(1, 5_000_000))
            emit(at, dict(fin, ts=at, replace=True, status=rng.choice(["ok", "error", "dry_run"]),
                          output=f"amended {i}"))
        if rng.random() < 0.02:
            dup = dict(fin, status="ok", output="second finish")
            emit(t + 5, dup)
    # Adversarial orders of the run view.
    for j in range(max(3, runs // 50)):
        rid = f"adv-{seed}-{j}"
        t = START_US + rng.randrange(span - 3_600_000_000)
        fin = {"kind": "run_finished", "run_id": rid, "ts": t, "status": "error",
               "output": "early", "error": "finish before start"}
        emit(t, fin)
        emit(t + 10, {"kind": "run_started", "run_id": rid, "ts": t + 10, "skill_id": "web.search",
                      "caller_id": "u-adv", "channel_id": "ch-adv"})
        emit(t + 20, {"kind": "run_started", "run_id": rid, "ts": t + 20, "skill_id": "dup.skill",
                      "caller_id": "u-dup", "channel_id": "ch-dup"})
        emit(t + 30, {"kind": "run_log", "run_id": f"orphan-{seed}-{j}", "ts": t + 30, "seq": 0,
                      "event_type": "tool_call",
                      "payload": {"tool": "http.get", "status": "error", "error_type": "orphan"}})
    # A cycle: two runs naming each other as parent.
    t = START_US + 1000
    emit(t, {"kind": "run_started", "run_id": f"cyc-a-{seed}", "ts": t, "skill_id": "code.exec",
             "parent_run_id": f"cyc-b-{seed}"})
    emit(t + 1, {"kind": "run_started", "run_id": f"cyc-b-{seed}", "ts": t + 1, "skill_id": "code.exec",
                 "parent_run_id": f"cyc-a-{seed}"})
    out.sort(key=lambda x: (x[0] // 1_000_000, x[1]))
    # A few late events (a day early) in the middle: they land in a later
    # day's segment and in their own day's partition.
    events = [ev for _, _, ev in out]
    for k in range(3):
        pos = len(events) * (k + 2) // 5
        ts = events[pos]["ts"] - DAY_US
        events.insert(pos, {"kind": "run_log", "run_id": events[pos]["run_id"], "ts": ts,
                            "seq": 99, "event_type": "late", "payload": {"late": True}})
    return events


def jsonl(events: list[dict[str, Any]]) -> Iterator[str]:
    for ev in events:
        yield json.dumps(ev, separators=(",", ":")) + "\n"


def write(path: str, events: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(jsonl(events))


if __name__ == "__main__":
    import sys

    seed, runs, days, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    write(path, generate(seed, runs, days))
