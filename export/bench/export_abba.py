#!/usr/bin/env python3
"""Export one log with several `auditlog` binaries, alternately (ABBA), and
print each one's median CPU time (perf stat task-clock, all threads), wall
time, events/s and MB/s of segments, per wall second and per CPU second, and
the Parquet/segments size ratio. docs/benchmarks.md, "Parquet export".

    export/bench/export_abba.py LOG_DIR THREADS ROUNDS NAME=BINARY [NAME=BINARY ...]

A BINARY may be prefixed with one environment setting: "VAR=value /path".
Each run exports to a fresh /tmp/export-abba-out, removed before the next.
Needs `perf` (linux-tools)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys

OUT = "/tmp/export-abba-out"


def run(binary: str, log: str, threads: str) -> tuple[float, dict[str, float]]:
    shutil.rmtree(OUT, ignore_errors=True)
    env = dict(os.environ)
    if " " in binary:
        setting, binary = binary.split(" ", 1)
        key, value = setting.split("=", 1)
        env[key] = value
    p = subprocess.run(
        ["perf", "stat", "-x,", "-e", "task-clock", binary, "--dir", log, "export",
         "--threads", threads, "--to", OUT],
        capture_output=True, text=True, env=env, check=True)
    report: dict[str, float] = json.loads(p.stdout)
    cpu = [float(line.split(",")[0]) for line in p.stderr.splitlines() if "task-clock" in line]
    return cpu[0] / 1000, report


def main() -> None:
    log, threads, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bins: dict[str, str] = {}
    for arg in sys.argv[4:]:
        name, binary = arg.split("=", 1)
        bins[name] = binary
    names = list(bins)
    order: list[str] = []
    for i in range(rounds):
        order += names if i % 2 == 0 else names[::-1]
    results: dict[str, list[tuple[float, dict[str, float]]]] = {n: [] for n in names}
    for name in order:
        cpu, rep = run(bins[name], log, threads)
        load = open("/proc/loadavg").read().split()[0]
        results[name].append((cpu, rep))
        print(f"{name}: cpu {cpu:.2f} s, wall {rep['seconds']:.2f} s, load average {load}", flush=True)
    shutil.rmtree(OUT, ignore_errors=True)
    for name in names:
        runs = results[name]
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(r["seconds"] for _, r in runs)
        rep = runs[0][1]
        ev, seg, pq = rep["events"], rep["segment_bytes"], rep["parquet_bytes"]
        print(f"{name}: median CPU {cpu:.2f} s ({ev / cpu:,.0f} events/CPU-s, "
              f"{seg / 1e6 / cpu:.1f} MB/CPU-s), median wall {wall:.2f} s "
              f"({ev / wall:,.0f} events/s, {seg / 1e6 / wall:.1f} MB/s), "
              f"Parquet/segments {pq / seg:.3f}, CPU s of each run {[round(c, 2) for c, _ in runs]}")


if __name__ == "__main__":
    main()
