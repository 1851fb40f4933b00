"""Export to S3-compatible storage: moto's server on a free loopback port,
started by the test (never the internet)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

# moto's server and boto3 come from PyPI (export/test.sh installs them);
# where they cannot be installed the S3 tests are skipped, saying why,
# and the rest of the export's tests still run.
boto3 = pytest.importorskip(
    "boto3", reason="boto3 is not installed: S3 export NOT tested (export/test.sh installs it)")
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
if not MOTO_SERVER.exists():
    pytest.skip(f"{MOTO_SERVER} is missing (pip install 'moto[server]'): S3 export NOT tested",
                allow_module_level=True)

import workload  # noqa: E402
from conftest import BIN, auditlog, lines  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto(min_part: int | None = None) -> Iterator[dict[str, str]]:
    """moto's S3 server with a bucket `audit`; the environment that points
    `auditlog` at it. `min_part`: the smallest part (but the last) that the
    server takes in a multipart upload, instead of S3's 5 MiB."""
    port = free_port()
    server = MOTO_SERVER
    server_env = dict(os.environ)
    if min_part is not None:
        server_env["S3_UPLOAD_PART_MIN_SIZE"] = str(min_part)
    p = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], env=server_env,
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


@pytest.fixture
def s3() -> Iterator[dict[str, str]]:
    with moto() as env:
        yield env


def client_of(env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


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


PART = 16 * 1024  # parts of 16 KiB: files of 64 KiB or more go up as multipart uploads


def objects(env: dict[str, str], prefix: str) -> dict[str, str]:
    """Key -> ETag of every object under `prefix`."""
    out: dict[str, str] = {}
    for page in client_of(env).get_paginator("list_objects_v2").paginate(Bucket="audit", Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["ETag"]
    return out


def test_s3_multipart_uploads(tmp: Path) -> None:
    """Big files go up in parts; the objects are the local export's bytes.
    Parts are refused at completion by a server that wants bigger ones (as
    S3 wants 5 MiB): the export fails naming the file, leaves no object of
    it and no unfinished upload, and a rerun with parts the server takes
    completes the same export."""
    log = tmp / "log"
    workload.write(str(tmp / "w.jsonl"), workload.generate(5, 2500, 2))
    auditlog(log, "ingest", str(tmp / "w.jsonl"))
    auditlog(log, "export", "--to", str(tmp / "local"), "--seal", "--host", "gw-3")
    local = tree(tmp / "local")
    big = {k for k, v in local.items() if len(v) >= 4 * PART}
    assert len(big) >= 2, {k: len(v) for k, v in local.items()}

    with moto(min_part=PART) as env:
        r = lines(auditlog(log, "export", "--to", "s3://audit/fleet/m", "--host", "gw-3",
                           "--part-bytes", str(PART), env=env))[0]
        assert r["files"] == len(local) - 1  # all but the manifest
        etags = objects(env, "fleet/m")
        # A multipart upload's ETag ends in "-N", N its number of parts.
        multipart = {k[len("fleet/m/"):] for k, e in etags.items() if "-" in e}
        assert multipart == big, (multipart, big)
        for k in big:
            n = int(etags["fleet/m/" + k].strip('"').rsplit("-", 1)[1])
            assert n == -(-len(local[k]) // PART), (k, n)
        download(env, "fleet/m", tmp / "copy")
        assert tree(tmp / "copy") == local
        ok = lines(auditlog(log, "verify-export", "s3://audit/fleet/m", env=env))[0]
        assert ok["ok"], ok

    with moto(min_part=4 * PART) as env:
        bad = auditlog(log, "export", "--to", "s3://audit/fleet/n", "--host", "gw-3",
                       "--part-bytes", str(PART), check=False, env=env)
        assert bad.returncode != 0 and "table=" in bad.stderr, bad.stderr
        left = {k[len("fleet/n/"):] for k in objects(env, "fleet/n")}
        assert not left & big, left & big
        assert "_auditlog" not in " ".join(left), left
        assert client_of(env).list_multipart_uploads(Bucket="audit").get("Uploads", []) == []
        lines(auditlog(log, "export", "--to", "s3://audit/fleet/n", "--host", "gw-3",
                       "--part-bytes", str(4 * PART), env=env))
        download(env, "fleet/n", tmp / "again")
        assert tree(tmp / "again") == local

    bad_size = auditlog(log, "export", "--to", str(tmp / "x"), "--part-bytes", "10", check=False)
    assert bad_size.returncode != 0 and "10 bytes" in bad_size.stderr, bad_size.stderr
