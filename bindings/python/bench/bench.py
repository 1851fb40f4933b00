"""Appends and queries from Python: auditlog beside the stores Python
gateways use today, in one run (docs/benchmarks.md, "Python binding").

Ingest: events/s appended from 1 and 4 threads, one event per call and in
batches, into
- auditlog (durability every_batch: durable; and never: not synced),
- daily JSONL files: one file per UTC day, one lock, line buffering (one
  write(2) per event, never synced), json.dumps per event: as a gateway's
  JSONL audit store does it;
- sqlite3 with the engine's SQLite baseline schema and indexes (runs +
  run_logs; WAL, synchronous=NORMAL), one connection behind a lock, a
  commit per call (per event, or per batch), INSERT OR IGNORE a start,
  UPDATE ... WHERE finished_at IS NULL a finish: as a gateway's SQLite
  store does it.
Each timing ends when everything is written (auditlog: flushed).

Queries: the same questions asked of the log from Python (through the
binding) and natively in Rust (`query_latency` example, same log, same
process state: opened, warmed, then timed), medians in microseconds.

Run (release build):
    bindings/python/bench/run.sh            # builds, then runs this
    python bindings/python/bench/bench.py --events 200000 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import auditlog

T0 = 1_795_420_800_000_000  # 2026-11-23T08:00:00Z
SKILLS = [f"skill-{i}" for i in range(12)]
TOOLS = ["http.get", "sql.query", "fs.read", "shell", "search"]

Event = Dict[str, Any]


def workload(n: int, seed: int = 1) -> List[Event]:
    """Runs of 12 skills, 2,000 callers, 500 channels, 0-6 tool calls each
    (5% failing), over 3 simulated days; ~250 bytes an event as JSON."""
    rnd = random.Random(seed)
    out: List[Event] = []
    r = 0
    span = 3 * 86_400_000_000
    while len(out) < n:
        rid = f"run-{r:08d}"
        ts = T0 + (r * 7919) % span
        out.append({"kind": "run_started", "run_id": rid, "ts": ts, "skill_id": rnd.choice(SKILLS),
                    "caller_id": f"user-{rnd.randrange(2000)}", "channel_id": f"sess-{rnd.randrange(500)}",
                    "inputs": {"query": f"find {rnd.randrange(10**6)} things", "max": 10}})
        calls = rnd.randrange(7)
        for k in range(calls):
            fail = rnd.random() < 0.05
            payload: Dict[str, Any] = {"tool": rnd.choice(TOOLS), "status": "error" if fail else "ok",
                                       "duration_ms": rnd.randrange(1, 5000), "args_summary": "GET example.org/x"}
            if fail:
                payload["error_type"] = rnd.choice(["timeout", "denied", "http_500"])
            out.append({"kind": "run_log", "run_id": rid, "ts": ts + 1000 * (k + 1), "seq": k,
                        "event_type": "tool_call", "payload": payload})
        out.append({"kind": "run_finished", "run_id": rid, "ts": ts + 1000 * (calls + 2),
                    "status": "error" if rnd.random() < 0.05 else "ok", "output": "done",
                    "tool_calls": calls, "runtime_seconds": 0.5, "input_tokens": 120, "output_tokens": 40})
        r += 1
    return out[:n]


# -- the stores --------------------------------------------------------------


class Sink:
    """One system under test: append one event, or a batch; finish."""

    def one(self, ev: Event) -> None: ...
    def many(self, evs: Sequence[Event]) -> None: ...
    def finish(self) -> None: ...


class AuditlogSink(Sink):
    def __init__(self, dir: Path, durability: str) -> None:
        self.store = auditlog.open(dir, durability=durability)
        self.one = self.store.append  # type: ignore[assignment]

    def many(self, evs: Sequence[Event]) -> None:
        self.store.append_batch(evs)

    def finish(self) -> None:
        self.store.flush()
        self.store.close()


class JsonlSink(Sink):
    """Daily JSONL files, a lock, line buffering."""

    def __init__(self, dir: Path) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        self.dir = dir
        self.lock = threading.Lock()
        self.files: Dict[int, Any] = {}

    def _file(self, ts: int) -> Any:
        day = ts // 86_400_000_000
        f = self.files.get(day)
        if f is None:
            name = datetime.fromtimestamp(day * 86_400, timezone.utc).strftime("%Y-%m-%d")
            f = open(self.dir / f"audit-{name}.jsonl", "a", buffering=1, encoding="utf-8")
            self.files[day] = f
        return f

    def one(self, ev: Event) -> None:
        line = json.dumps(ev) + "\n"
        with self.lock:
            self._file(ev["ts"]).write(line)

    def many(self, evs: Sequence[Event]) -> None:
        lines = [(ev["ts"], json.dumps(ev) + "\n") for ev in evs]
        with self.lock:
            for ts, line in lines:
                self._file(ts).write(line)

    def finish(self) -> None:
        for f in self.files.values():
            f.close()


SQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, skill_id TEXT NOT NULL, caller_id TEXT NOT NULL,
  channel_id TEXT NOT NULL, parent_run_id TEXT NOT NULL, inputs TEXT NOT NULL, dry_run INTEGER NOT NULL,
  started_at INTEGER NOT NULL, finished_at INTEGER, status TEXT NOT NULL, output TEXT NOT NULL,
  error TEXT NOT NULL, tool_calls INTEGER NOT NULL, runtime_seconds REAL NOT NULL,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, thinking_tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_logs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL,
  ts INTEGER NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_skill ON runs(skill_id, started_at);
CREATE INDEX IF NOT EXISTS runs_caller ON runs(caller_id, started_at);
CREATE INDEX IF NOT EXISTS runs_channel ON runs(channel_id, started_at);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id, started_at);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, started_at);
CREATE INDEX IF NOT EXISTS run_logs_run ON run_logs(run_id, seq);
CREATE INDEX IF NOT EXISTS run_logs_type_ts ON run_logs(event_type, ts);
"""


class SqliteSink(Sink):
    """The engine's SQLite baseline schema, written the way a Python
    gateway does: one connection, a lock, a commit per call."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + SQL_SCHEMA)
        self.lock = threading.Lock()

    def _apply(self, ev: Event) -> None:
        k = ev["kind"]
        if k == "run_started":
            self.db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?,?,?,?,?,?,?,?,NULL,'running','','',0,0,0,0,0)",
                (ev["run_id"], ev.get("skill_id", ""), ev.get("caller_id", ""), ev.get("channel_id", ""),
                 ev.get("parent_run_id", ""), json.dumps(ev.get("inputs", {})), int(ev.get("dry_run", False)), ev["ts"]))
        elif k == "run_log":
            self.db.execute("INSERT INTO run_logs (run_id, seq, ts, event_type, payload) VALUES (?,?,?,?,?)",
                            (ev["run_id"], ev.get("seq", 0), ev["ts"], ev.get("event_type", ""), json.dumps(ev.get("payload"))))
        else:
            self.db.execute(
                "UPDATE runs SET finished_at=?, status=?, output=?, error=?, tool_calls=?, runtime_seconds=?, "
                "input_tokens=?, output_tokens=?, thinking_tokens=? WHERE id=? AND finished_at IS NULL",
                (ev["ts"], ev.get("status", "ok"), ev.get("output", ""), ev.get("error", ""), ev.get("tool_calls", 0),
                 ev.get("runtime_seconds", 0.0), ev.get("input_tokens", 0), ev.get("output_tokens", 0),
                 ev.get("thinking_tokens", 0), ev["run_id"]))

    def one(self, ev: Event) -> None:
        with self.lock:
            self.db.execute("BEGIN")
            self._apply(ev)
            self.db.execute("COMMIT")

    def many(self, evs: Sequence[Event]) -> None:
        with self.lock:
            self.db.execute("BEGIN")
            for ev in evs:
                self._apply(ev)
            self.db.execute("COMMIT")

    def finish(self) -> None:
        self.db.close()


# -- ingest timing -------------------------------------------------------------


def run_ingest(make: Callable[[Path], Sink], events: List[Event], threads: int, batch: int, scratch: Path) -> float:
    """Events/s appending `events` split over `threads`, `batch` per call."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    sink = make(scratch)
    parts = [events[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(part: List[Event]) -> None:
        barrier.wait()
        if batch == 1:
            one = sink.one
            for ev in part:
                one(ev)
        else:
            many = sink.many
            for i in range(0, len(part), batch):
                many(part[i:i + batch])

    ts = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    sink.finish()
    elapsed = time.perf_counter() - t0
    shutil.rmtree(scratch)
    return len(events) / elapsed


# -- query timing ------------------------------------------------------------------


def median_us(f: Callable[[], Any], budget_s: float) -> float:
    f()  # warm
    samples: List[float] = []
    end = time.perf_counter() + budget_s
    while time.perf_counter() < end or len(samples) < 5:
        t = time.perf_counter()
        f()
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples)


def python_queries(store: auditlog.Store, p: Dict[str, Any], budget: float) -> Dict[str, float]:
    return {
        "get_run": median_us(lambda: store.get_run(p["run_id"]), budget),
        "list_logs": median_us(lambda: store.list_logs(p["run_id"]), budget),
        "runs_by_skill_50": median_us(lambda: store.runs(skill=p["skill"], limit=50), budget),
        "count_by_status": median_us(lambda: store.count(status="error"), budget),
        "tool_errors_1d": median_us(lambda: store.tool_errors(since=p["since"], until=p["until"]), budget),
        "last_run_3": median_us(lambda: store.last_run(p["skills"]), budget),
    }


def native_queries(dir: Path, p: Dict[str, Any], budget: float, example: Optional[str]) -> Dict[str, float]:
    cmd = [example] if example else ["cargo", "run", "--quiet", "--release", "-p", "auditlog-python", "--example", "query_latency", "--"]
    args = [str(dir), p["run_id"], p["skill"], str(p["since"]), str(p["until"]), ",".join(p["skills"]), str(budget)]
    out = subprocess.run(cmd + args, check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in json.loads(out).items()}


def markdown(r: Dict[str, Any]) -> str:
    """The results as docs/benchmarks.md's tables."""
    ing = r["ingest"]
    jsonl = {k.split("/", 1)[1]: v for k, v in ing.items() if k.startswith("jsonl/")}
    rows = ["| system | threads | events per call | events/s | x JSONL (same threads and call size) | x JSONL one event per call, 1 thread |",
            "|---|---:|---:|---:|---:|---:|"]
    for k, v in ing.items():
        name, threads, per_call = k.split("/")
        base = jsonl.get(f"{threads}/{per_call}")
        ratio = f"{v / base:.1f}x" if base else "-"
        ratio1 = f"{v / jsonl['1t/1']:.1f}x" if "1t/1" in jsonl else "-"
        rows.append(f"| {name} | {threads[:-1]} | {per_call} | {v:,.0f} | {ratio} | {ratio1} |")
    q = ["| query | answer | Python p50 µs | native Rust p50 µs | binding cost µs |", "|---|---|---:|---:|---:|"]
    what = {"get_run": "one run by id", "list_logs": "the logs of one run",
            "runs_by_skill_50": "newest 50 runs of a skill", "count_by_status": "count of runs with status error",
            "tool_errors_1d": "failing tool calls of one day, grouped", "last_run_3": "latest start of 3 skills"}
    sizes = r.get("answer_sizes", {})
    for k, v in r["queries"].items():
        answer = what.get(k, k) + (f" ({sizes[k]})" if k in sizes else "")
        q.append(f"| {k} | {answer} | {v['python_us']:.1f} | {v['native_us']:.1f} | {v['python_us'] - v['native_us']:+.1f} |")
    return "\n".join(rows) + "\n\n" + "\n".join(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events per ingest measurement")
    ap.add_argument("--batch", type=int, default=1000, help="events per batched call")
    ap.add_argument("--query-events", type=int, default=1_000_000, help="events in the log the queries run on")
    ap.add_argument("--query-budget", type=float, default=3.0, help="seconds per query kind and side, over 3 alternating rounds")
    ap.add_argument("--native", help="path of a built query_latency example (default: cargo run --release)")
    ap.add_argument("--systems", default="auditlog,auditlog-never,jsonl,sqlite")
    ap.add_argument("--dir", help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", help="write the results as JSON here too")
    ap.add_argument("--markdown", help="print the tables of a results JSON file and exit")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return

    scratch = Path(a.dir or tempfile.mkdtemp(prefix="auditlog-pybench-"))
    events = workload(a.events)
    mean_bytes = sum(len(json.dumps(e)) for e in events[:10000]) / min(len(events), 10000)
    makers: Dict[str, Callable[[Path], Sink]] = {
        "auditlog": lambda d: AuditlogSink(d, "every_batch"),
        "auditlog-never": lambda d: AuditlogSink(d, "never"),
        "jsonl": JsonlSink,
        "sqlite": lambda d: SqliteSink(d / "audit.db"),
    }
    results: Dict[str, Any] = {"events": a.events, "batch": a.batch, "mean_event_bytes": round(mean_bytes),
                               "load_avg_start": os.getloadavg()[0], "ingest": {}, "queries": {}}
    print(f"{a.events} events per measurement, mean {mean_bytes:.0f} B as JSON; load {os.getloadavg()[0]:.2f}", flush=True)
    for name in a.systems.split(","):
        for threads in (1, 4):
            for batch in (1, a.batch):
                eps = run_ingest(makers[name], events, threads, batch, scratch / "ingest")
                key = f"{name}/{threads}t/{'1' if batch == 1 else batch}"
                results["ingest"][key] = eps
                print(f"  {key:28s} {eps:>12,.0f} events/s", flush=True)

    # Queries on a bigger log, written in batches.
    qdir = scratch / "query-log"
    if qdir.exists():
        shutil.rmtree(qdir)
    qevents = workload(a.query_events, seed=2)
    with auditlog.open(qdir, durability="never") as s:
        for i in range(0, len(qevents), 10_000):
            s.append_batch(qevents[i:i + 10_000])
        s.flush()
    logs_of: Dict[str, int] = {}
    for e in qevents:
        if e["kind"] == "run_log":
            logs_of[e["run_id"]] = logs_of.get(e["run_id"], 0) + 1
    starts = [e for e in qevents if e["kind"] == "run_started"]
    # A run from the middle of the log with a few tool calls.
    pick = next(e for e in starts[len(starts) // 2:] if logs_of.get(e["run_id"], 0) >= 3)
    params = {"run_id": pick["run_id"], "skill": "skill-3", "since": T0, "until": T0 + 86_400_000_000 - 1,
              "skills": ["skill-1", "skill-2", "skill-3"]}
    # Native and Python rounds alternate, so that both see the machine in
    # the same moods; each side's figure is the median of its rounds.
    rounds = 3
    nat: List[Dict[str, float]] = []
    pys: List[Dict[str, float]] = []
    for _ in range(rounds):
        nat.append(native_queries(qdir, params, a.query_budget / rounds, a.native))
        with auditlog.open(qdir) as s:
            pys.append(python_queries(s, params, a.query_budget / rounds))
    native = {k: statistics.median(r[k] for r in nat) for k in nat[0]}
    py = {k: statistics.median(r[k] for r in pys) for k in pys[0]}
    with auditlog.open(qdir) as s:
        assert s.get_run(params["run_id"]) is not None
        sizes = {"runs_by_skill_50": len(s.runs(skill=params["skill"], limit=50)),
                 "tool_errors_1d": len(s.tool_errors(since=params["since"], until=params["until"])),
                 "list_logs": len(s.list_logs(params["run_id"]))}
    results["queries"] = {k: {"python_us": py[k], "native_us": native[k]} for k in py}
    results["query_log_events"] = a.query_events
    results["answer_sizes"] = sizes
    print(f"queries on {a.query_events} events (median µs): python / native rust", flush=True)
    for k in py:
        print(f"  {k:18s} {py[k]:10.1f} {native[k]:10.1f}  (+{py[k] - native[k]:.1f})", flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    if not a.dir:
        shutil.rmtree(scratch, ignore_errors=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
    json.dump(results, sys.stdout)
    print()


if __name__ == "__main__":
    main()
