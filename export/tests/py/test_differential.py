"""DuckDB over the exported Parquet answers the command line's questions
exactly as `auditlog` does, on a generated workload exported in two steps
(so runs rows are rewritten when their finishes arrive later)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

import sql
import workload
from conftest import BIN, auditlog, lines

SEED, RUNS, DAYS = 7, 2500, 4


def build(tmp: Path) -> tuple[Path, Path]:
    """A log exported in two steps; the log itself answers for the export."""
    log, out = tmp / "log", tmp / "out"
    events = workload.generate(SEED, RUNS, DAYS, amend=True)
    cut = workload.START_US + 2 * workload.DAY_US
    first = [e for e in events if e["ts"] < cut]
    rest = [e for e in events if e["ts"] >= cut]
    workload.write(str(tmp / "a.jsonl"), first)
    workload.write(str(tmp / "b.jsonl"), rest)
    auditlog(log, "ingest", str(tmp / "a.jsonl"))
    step1 = lines(auditlog(log, "export", "--to", str(out)))[0]
    assert step1["segments"], step1
    auditlog(log, "ingest", str(tmp / "b.jsonl"))
    step2 = lines(auditlog(log, "export", "--to", str(out), "--seal"))[0]
    assert step2["runs_rewritten"], "a run of an exported segment finished later"
    ok = lines(auditlog(log, "verify-export", str(out)))[0]
    assert ok["ok"] and ok["logs"][0]["segments_checked_against_log"] == ok["logs"][0]["segments"]
    return log, out


def build_with_retention(tmp: Path) -> tuple[Path, Path]:
    """A log exported in three steps with a retention "exported first" in
    between, which drops day 0 and carries its still-running runs forward;
    and a twin log of the same events that never dropped anything. The
    export keeps the history, so the twin answers for it."""
    log, twin, out = tmp / "log", tmp / "twin", tmp / "out"
    events = workload.generate(SEED, RUNS, DAYS, amend=True)
    day = workload.DAY_US
    bounds = [workload.START_US + 2 * day, workload.START_US + 3 * day]
    parts = [
        [e for e in events if e["ts"] < bounds[0]],
        [e for e in events if bounds[0] <= e["ts"] < bounds[1]],
        [e for e in events if e["ts"] >= bounds[1]],
    ]
    for k, part in enumerate(parts):
        workload.write(str(tmp / f"p{k}.jsonl"), part)
        auditlog(twin, "ingest", str(tmp / f"p{k}.jsonl"))
    auditlog(log, "ingest", str(tmp / "p0.jsonl"))
    auditlog(log, "export", "--to", str(out))
    auditlog(log, "ingest", str(tmp / "p1.jsonl"))
    auditlog(log, "export", "--to", str(out), "--seal")
    cutoff = str(workload.START_US + day)
    kept = lines(auditlog(log, "retain", "--before", cutoff, "--exported-first"))[0]
    assert len(kept["dropped_segments"]) == 1, kept
    auditlog(log, "ingest", str(tmp / "p2.jsonl"))
    auditlog(log, "export", "--to", str(out), "--seal")
    # The export outlived day 0's segment: checked against what is left of
    # the log, and alone.
    ok = lines(auditlog(log, "verify-export", str(out)))[0]
    assert ok["ok"], ok
    alone = subprocess.run([BIN, "verify-export", str(out)], capture_output=True, text=True, check=True)
    assert json.loads(alone.stdout)["ok"], alone.stdout
    return twin, out


def close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def same_groups(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert close(g[k], w[k]), (k, g, w)


@pytest.mark.parametrize("how", ["two_steps", "retention"])
def test_duckdb_answers_like_auditlog(tmp: Path, how: str) -> None:
    log, out = build(tmp) if how == "two_steps" else build_with_retention(tmp)
    c = sql.connect(out)
    skills = sorted(r[0] for r in c.execute("SELECT DISTINCT skill_id FROM runs").fetchall())
    assert len(skills) >= 6
    asked = 0
    for s in skills:
        assert sql.runs_of_skill(c, s) == lines(auditlog(log, "runs", "--skill", s)), s
        asked += 1
    statuses = ["ok", "error", "timeout", "cancelled", "running", "nonesuch"]
    for st in statuses:
        want = lines(auditlog(log, "count", "--status", st))[0]["count"]
        assert sql.count_by_status(c, st) == want, st
    for day in range(-1, DAYS + 1):
        since = workload.START_US + day * workload.DAY_US
        until = since + workload.DAY_US - 1
        want = lines(auditlog(log, "errors", "--since", str(since), "--until", str(until)))
        same_groups(sql.errors(c, since, until), want)
        asked += 1
    parents = [r[0] for r in c.execute(
        "SELECT parent_run_id FROM runs WHERE parent_run_id <> '' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 40"
    ).fetchall()]
    for p in parents + ["no-such-run"]:
        assert sql.children(c, p) == lines(auditlog(log, "children", p)), p
    ids = [r[0] for r in c.execute(
        "SELECT id FROM runs WHERE parent_run_id <> '' ORDER BY id LIMIT 60"
    ).fetchall()]
    ids += [f"cyc-a-{SEED}", f"cyc-b-{SEED}", f"adv-{SEED}-0"]
    for rid in ids:
        assert sql.chain(c, rid) == lines(auditlog(log, "chain", rid)), rid
    assert sql.chain(c, "no-such-run") == []
    assert auditlog(log, "chain", "no-such-run", check=False).returncode != 0
    for failed in (False, True):
        args = ["last-run", "--skills", ",".join(skills + ["no.skill"])]
        if failed:
            args.append("--include-failed")
        assert sql.last_run(c, skills + ["no.skill"], failed) == lines(auditlog(log, *args))[0]
    assert asked > 10


def test_every_event_once_in_log_order(tmp: Path) -> None:
    log, out = build(tmp)
    c = sql.connect(out)
    n, distinct, lo, hi = sql.one(
        c,
        "SELECT count(*), count(DISTINCT lsn), min(lsn), max(lsn) FROM events"
    )
    stats = lines(auditlog(log, "stats"))[0]
    assert n == distinct == stats["events"] and (lo, hi) == (0, n - 1)
    # The events come back as ingested: compare with replay, field by field.
    replay = lines(auditlog(log, "replay"))
    rows = c.execute(
        "SELECT lsn, kind, run_id, epoch_us(ts), payload, inputs, extra FROM events ORDER BY lsn"
    ).fetchall()
    import json
    for ev, (lsn, kind, rid, ts, payload, inputs, extra) in zip(replay, rows):
        assert (ev["lsn"], ev["kind"], ev["run_id"]) == (lsn, kind, rid)
        if kind == "run_log":
            assert ev["payload"] == json.loads(payload)
        if kind == "run_started":
            assert ev["inputs"] == json.loads(inputs)
        for k, v in (json.loads(extra) if extra else {}).items():
            assert ev[k] == v
    calls = sql.one(c, "SELECT count(*) FROM tool_calls")[0]
    assert calls == sum(1 for e in replay if e.get("event_type") == "tool_call")
    # tool_calls holds each call's typed fields and, in `extra`, only the
    # payload's members they do not hold; the whole payload is in the
    # call's events row (export layout 2: a join on lsn, no second copy).
    typed = ("tool", "status", "error_type", "args_summary", "input_hash",
             "duration_ms", "result_bytes", "exit_code", "http_status")
    joined = c.execute(
        f"SELECT e.payload, t.extra, {', '.join('t.' + k for k in typed)} "
        "FROM tool_calls t JOIN events e ON e.log_id = t.log_id AND e.lsn = t.lsn ORDER BY t.lsn"
    ).fetchall()
    assert len(joined) == calls
    with_extra = 0
    for payload, extra, *cols in joined:
        whole = json.loads(payload)
        rest = json.loads(extra) if extra is not None else {}
        with_extra += extra is not None
        assert set(rest) <= set(whole)
        for k, v in whole.items():
            if k in rest:
                assert rest[k] == v, (k, payload, extra)
            elif isinstance(v, float):  # serde_json's parse: within an ulp
                assert math.isclose(cols[typed.index(k)], v, rel_tol=1e-15), (k, payload)
            else:
                assert cols[typed.index(k)] == v, (k, payload, extra)
    assert with_extra > 0  # the workload's unknown keys and non-string tools
