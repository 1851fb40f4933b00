"""Export to S3-compatible storage: moto's server on a free loopback port,
started by the test (never the internet)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import boto3
import pytest

import workload
from conftest import BIN, auditlog, lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3() -> Iterator[dict[str, str]]:
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    p = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or p.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="audit")
        yield env
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def download(env: dict[str, str], prefix: str, to: Path) -> None:
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="audit", Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            dest = to / o["Key"][len(prefix) + 1:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file("audit", o["Key"], str(dest))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_s3_export_is_the_local_export_byte_for_byte(tmp: Path, s3: dict[str, str]) -> None:
    log = tmp / "log"
    workload.write(str(tmp / "w.jsonl"), workload.generate(3, 800, 3))
    auditlog(log, "ingest", str(tmp / "w.jsonl"))
    auditlog(log, "export", "--to", str(tmp / "local"), "--seal", "--host", "gw-1")
    r = lines(auditlog(log, "export", "--to", "s3://audit/fleet/a", "--host", "gw-1", env=s3))[0]
    assert r["destination"] == "s3://audit/fleet/a" and r["events"] > 0
    ok = lines(auditlog(log, "verify-export", "s3://audit/fleet/a", env=s3))[0]
    assert ok["ok"] and ok["logs"][0]["segments_checked_against_log"] > 0
    download(s3, "fleet/a", tmp / "copy")
    assert tree(tmp / "copy") == tree(tmp / "local")
    again = lines(auditlog(log, "export", "--to", "s3://audit/fleet/a", env=s3))[0]
    assert again["segments"] == [] and again["files"] == 0
    # A bucket that does not exist is a clear error naming it.
    nobucket = auditlog(log, "export", "--to", "s3://no-such-bucket/x", check=False, env=s3)
    assert nobucket.returncode != 0 and "no-such-bucket" in nobucket.stderr


def test_s3_export_killed_then_rerun(tmp: Path, s3: dict[str, str]) -> None:
    log = tmp / "log"
    workload.write(str(tmp / "w.jsonl"), workload.generate(4, 3000, 5))
    auditlog(log, "ingest", str(tmp / "w.jsonl"))
    auditlog(log, "export", "--to", str(tmp / "local"), "--seal", "--host", "gw-2")
    rng = random.Random(9)
    full_env = dict(os.environ, **s3)
    for _ in range(6):
        p = subprocess.Popen([BIN, "--dir", str(log), "export", "--to", "s3://audit/fleet/k",
                              "--host", "gw-2", "--max-segments", "2"],
                             env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 1.0))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
    auditlog(log, "export", "--to", "s3://audit/fleet/k", "--host", "gw-2", env=s3)
    ok = lines(auditlog(log, "verify-export", "s3://audit/fleet/k", env=s3))[0]
    assert ok["ok"] and ok["logs"][0]["segments_checked_against_log"] == ok["logs"][0]["segments"]
    download(s3, "fleet/k", tmp / "copy")
    # Events and tool calls are the same bytes as a one-step export. Runs
    # rows were folded as of whichever segment each step reached, so only
    # their content is the same: verify-export above folded them again.
    def facts(root: Path) -> dict[str, bytes]:
        return {k: v for k, v in tree(root).items() if not k.startswith(("table=runs/", "_auditlog/"))}
    assert facts(tmp / "copy") == facts(tmp / "local")
    assert {k for k in tree(tmp / "copy")} == {k for k in tree(tmp / "local")}
