"""DuckDB over an export beside `auditlog` on its log, for the same
questions (docs/benchmarks.md, "Parquet export").

    python export/bench/query_bench.py LOG_DIR PARQUET_DIR AUDITLOG_BIN

Each question is asked 1 + 5 times of each (the first is a warm-up: page
cache, DuckDB's metadata cache); the medians of the 5 are printed, with the
size of each answer (which must agree). auditlog is timed as a command-line
process (open + query + print), DuckDB in one Python process over views of
the Parquet files (query + fetch). Uses the export's test venv (duckdb).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "py"))
os.environ.setdefault("AUDITLOG_BIN", sys.argv[3])

import sql  # noqa: E402


def timed(f, n: int = 5):
    f()
    times, last = [], None
    for _ in range(n):
        t = time.perf_counter()
        last = f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), last


def main() -> None:
    log, out, binary = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    c = sql.connect(out)
    skill = sql.one(c, "SELECT skill_id FROM runs GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0]
    skills = [r[0] for r in c.execute("SELECT skill_id FROM runs GROUP BY 1 ORDER BY 1 LIMIT 3").fetchall()]
    parent = sql.one(
        c,
        "SELECT parent_run_id FROM runs WHERE parent_run_id <> '' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )[0]
    deep = sql.one(
        c,
        "SELECT r.id FROM runs r JOIN runs p ON p.id = r.parent_run_id WHERE p.parent_run_id <> '' LIMIT 1"
    )[0]
    day0 = sql.one(c, "SELECT epoch_us(date_trunc('day', min(ts))) FROM tool_calls")[0]
    since, until = day0 + 10 * 86_400_000_000, day0 + 11 * 86_400_000_000 - 1

    def cli(*args: str):
        def f():
            p = subprocess.run([binary, "--dir", str(log), *args], capture_output=True, text=True, check=True)
            return [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
        return f

    newest50 = sql.RUNS_OF_SKILL + " LIMIT 50"
    questions = [
        ("runs_by_skill", "newest 50 runs of one skill",
         cli("runs", "--skill", skill, "--limit", "50"),
         lambda: c.execute(newest50, {"skill": skill}).fetchall()),
        ("count_by_status", "count of runs with status error",
         cli("count", "--status", "error"),
         lambda: c.execute(sql.COUNT_BY_STATUS, {"status": "error"}).fetchall()),
        ("errors_1d", "failing tool calls of one day, grouped",
         cli("errors", "--since", str(since), "--until", str(until)),
         lambda: sql.errors(c, since, until)),
        ("children", "the sub-runs of a run",
         cli("children", parent), lambda: sql.children(c, parent)),
        ("chain", "a sub-run's chain of parents",
         cli("chain", deep), lambda: sql.chain(c, deep)),
        ("last_run", "latest start of 3 skills, failed excluded",
         cli("last-run", "--skills", ",".join(skills)),
         lambda: sql.last_run(c, skills, False)),
    ]
    print("| question | what | auditlog CLI p50 ms | DuckDB p50 ms | DuckDB/auditlog | answer size (auditlog, DuckDB) |")
    print("|---|---|---:|---:|---:|---|")
    for name, what, a, d in questions:
        ta, ra = timed(a)
        td, rd = timed(d)
        size_a = ra[0]["count"] if name == "count_by_status" else (len(ra[0]) if name == "last_run" else len(ra))
        size_d = rd[0][0] if name == "count_by_status" else len(rd)
        print(f"| {name} | {what} | {ta:.1f} | {td:.1f} | {td / ta:.2f}x | {size_a}, {size_d} |")


if __name__ == "__main__":
    main()
