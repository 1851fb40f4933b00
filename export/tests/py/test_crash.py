"""Kill `auditlog export` at random points, run it again: the destination
holds every row exactly once, and nothing else."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import sql
import workload
from conftest import BIN, auditlog, lines


def parquet_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def test_kill_at_random_points_then_rerun(tmp: Path) -> None:
    log, out = tmp / "log", tmp / "out"
    workload.write(str(tmp / "w.jsonl"), workload.generate(11, 4000, 6))
    auditlog(log, "ingest", str(tmp / "w.jsonl"))
    rng = random.Random(int(os.environ.get("EXPORT_CRASH_SEED", "5")))
    # Kill points spread over what one step takes here and now (the
    # machine may be loaded): timed on a scratch destination first. Most
    # steps are killed; about one in four completes, so the export moves on.
    began = time.monotonic()
    auditlog(log, "export", "--to", str(tmp / "scratch"), "--max-segments", "1")
    step = time.monotonic() - began
    kills = 0
    for _ in range(12):
        p = subprocess.Popen([BIN, "--dir", str(log), "export", "--to", str(out), "--max-segments", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 1.3 * step))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 3, f"only {kills} exports were still running when killed"
    done = lines(auditlog(log, "export", "--to", str(out), "--seal"))[0]
    assert done["through_segment"] is not None
    ok = lines(auditlog(log, "verify-export", str(out)))[0]
    assert ok["ok"], ok
    c = sql.connect(out)
    stats = lines(auditlog(log, "stats"))[0]
    n, distinct = sql.one(c, "SELECT count(*), count(DISTINCT lsn) FROM events")
    assert n == distinct == stats["events"]
    runs, ids = sql.one(c, "SELECT count(*), count(DISTINCT id) FROM runs")
    all_runs = lines(auditlog(log, "count", "--include-dry-run"))[0]["count"]
    assert runs == ids == all_runs
    calls, lsns = sql.one(c, "SELECT count(*), count(DISTINCT lsn) FROM tool_calls")
    assert calls == lsns == sql.one(
        c,
        "SELECT count(*) FROM events WHERE event_type = 'tool_call'")[0]
    manifest = next((out / "_auditlog").glob("log_id=*/manifest.json"))
    named = {f["path"] for s in json.loads(manifest.read_text())["segments"] for f in s["files"]}
    assert parquet_files(out) == named
    leftovers = [p for p in out.rglob("*") if "#" in p.name]
    assert not leftovers, leftovers
