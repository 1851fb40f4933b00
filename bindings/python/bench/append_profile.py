"""Micro-benchmark of the append paths from ONE Python thread, durable
(every_batch): one event per call, 1,000 per call (staged), and 1,000 per
call unstaged (encoded on the calling thread, as before batches were
staged), in alternating rounds, with the CPU seconds each thread of the process used (from
/proc/self/task), so that the cost of the batched path can be told apart
from the single path's (docs/benchmarks.md, "Python binding").

    bindings/python/bench/run.sh   # installs the release build first, or:
    python bindings/python/bench/append_profile.py --events 200000 --rounds 3

Run it under ``perf record -g -p PID`` (or ``perf record -g -- python ...``)
to see where the time goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import auditlog
from bench import Event, JsonlSink, workload


def thread_cpu() -> Dict[str, float]:
    """CPU seconds per thread name of this process (schedstat: on the CPU),
    ``NAME wait``: seconds it waited in the run queue, and ``process``: the
    whole process's CPU (threads that ended included)."""
    out: Dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            on_cpu, waited, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
        except OSError:
            continue  # the thread ended
        out[comm] = out.get(comm, 0.0) + int(on_cpu) / 1e9
        out[comm + " wait"] = out.get(comm + " wait", 0.0) + int(waited) / 1e9
    t = os.times()
    out["process"] = t.user + t.system
    return out


def jsonl_run(dir: Path, events: List[Event]) -> Tuple[float, Dict[str, float]]:
    """The JSONL store of bench.py, one event per call, for a ratio taken
    in the same process and the same minutes."""
    if dir.exists():
        shutil.rmtree(dir)
    sink = JsonlSink(dir)
    before = thread_cpu()
    t0 = time.perf_counter()
    one = sink.one
    for ev in events:
        one(ev)
    sink.finish()
    elapsed = time.perf_counter() - t0
    after = thread_cpu()
    shutil.rmtree(dir)
    cpu = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after}
    return len(events) / elapsed, {k: v for k, v in cpu.items() if v > 0}


def one_run(dir: Path, events: List[Event], batch: int, staged: bool = True) -> Tuple[float, Dict[str, float]]:
    if dir.exists():
        shutil.rmtree(dir)
    # on_full="fail" turns staging off (README, "Threads"): batches are then
    # encoded and handed over on the calling thread, as every batch was
    # before they were staged; the queue (16,384 appends) never fills here.
    store = auditlog.open(dir, durability="every_batch", on_full="block" if staged else "fail")
    before = thread_cpu()
    t0 = time.perf_counter()
    if batch == 1:
        append = store.append
        for ev in events:
            append(ev)
    else:
        append_batch = store.append_batch
        for i in range(0, len(events), batch):
            append_batch(events[i : i + batch])
    store.flush()
    elapsed = time.perf_counter() - t0
    after = thread_cpu()
    store.close()
    shutil.rmtree(dir)
    cpu = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after}
    return len(events) / elapsed, {k: v for k, v in cpu.items() if v > 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--only", choices=["one", "batch", "unstaged"], help="time one path only (for perf)")
    ap.add_argument("--modes", help="comma-separated modes to time, of one, batch, unstaged, jsonl "
                    "(jsonl: the JSONL store of bench.py, one event per call)")
    a = ap.parse_args()
    events = workload(a.events)
    scratch = Path(tempfile.mkdtemp(prefix="auditlog-append-profile-"))
    modes = {"one": 1, "batch": a.batch, "unstaged": a.batch}
    modes["jsonl"] = 1
    if a.only:
        modes = {a.only: modes[a.only]}
    elif a.modes:
        modes = {m: modes[m] for m in a.modes.split(",")}
    else:
        del modes["jsonl"]
    figures: Dict[str, List[float]] = {m: [] for m in modes}
    # CPU of the calling thread (named "python") per event, µs.
    caller_us: Dict[str, List[float]] = {m: [] for m in modes}
    print(f"pid {os.getpid()}, {a.events} events, load {os.getloadavg()[0]:.1f}", flush=True)
    for r in range(a.rounds):
        for mode, batch in modes.items():
            if mode == "jsonl":
                eps, cpu = jsonl_run(scratch / "log", events)
            else:
                eps, cpu = one_run(scratch / "log", events, batch, staged=mode != "unstaged")
            figures[mode].append(eps)
            caller_us[mode].append(cpu.get("python", 0.0) * 1e6 / a.events)
            print(f"round {r} {mode:5s} {eps:>10,.0f} events/s  cpu s by thread: {cpu}", flush=True)
    for mode, f in figures.items():
        print(f"{mode:5s} median {statistics.median(f):>10,.0f} events/s over {len(f)} rounds, "
              f"calling thread {statistics.median(caller_us[mode]):.2f} µs CPU per event", flush=True)
    if "one" in figures and "jsonl" in figures:
        ratio = statistics.median(figures["one"]) / statistics.median(figures["jsonl"])
        print(f"one / jsonl: {ratio:.2f}x (load {os.getloadavg()[0]:.1f})", flush=True)
    if set(figures) == {"one", "batch", "unstaged"}:
        med = {m: statistics.median(f) for m, f in figures.items()}
        print(f"batch / one: {med['batch'] / med['one']:.2f}x, batch / unstaged batch: "
              f"{med['batch'] / med['unstaged']:.2f}x (load {os.getloadavg()[0]:.1f})", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
