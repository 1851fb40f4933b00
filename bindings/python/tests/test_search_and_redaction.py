"""Full-text search (builds with the `search` feature) and redaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import auditlog
from conftest import T0, finished, logged, sentinel_in_folder, started

needs_search = pytest.mark.skipif(not auditlog.HAS_SEARCH, reason="built without the search feature")


@needs_search
def test_search_finds_what_was_appended(tmp_path: Path) -> None:
    with auditlog.open(tmp_path / "log", search=True) as s:
        s.append(started("r-1", T0, skill_id="web", channel_id="c1", inputs={"q": "quarterly revenue"}))
        s.append(logged("r-1", T0 + 1, event_type="tool_call", payload={"tool": "http.get", "status": "error", "error_type": "timeout"}))
        s.append(finished("r-1", T0 + 2, status="error", error="upstream timeout"))
        s.append(started("r-2", T0 + 3, skill_id="mail", inputs={"q": "lunch menu"}))
        s.flush()
        hits = s.search("revenue")
        assert [h.run.id for h in hits] == ["r-1"]
        assert "**revenue**" in hits[0].snippet and hits[0].score > 0
        assert [h.run.id for h in s.search("timeout", skill="web")] == ["r-1"]
        assert s.search("timeout", skill="mail") == []
        assert [h.run.id for h in s.search("lunch", since=T0 + 3)] == ["r-2"]
        with pytest.raises(auditlog.QuerySyntaxError) as e:
            s.search("nosuchfield:x")
        assert isinstance(e.value, ValueError)


@needs_search
def test_search_off_unless_asked(store: auditlog.Store) -> None:
    with pytest.raises(auditlog.UnsupportedError, match="search=True"):
        store.search("x")


@pytest.mark.skipif(auditlog.HAS_SEARCH, reason="this build has search")
def test_search_needs_the_feature(tmp_path: Path) -> None:
    with pytest.raises(auditlog.UnsupportedError, match="feature"):
        auditlog.open(tmp_path / "log", search=True)


def test_redaction_keeps_secrets_off_the_disk(tmp_path: Path) -> None:
    secret = "SENTINEL-4b1d-redact-me"
    log = tmp_path / "log"
    policies: list[Any] = [
        "inputs.password drop\npayload.body hash\n",
        {"rules": [{"path": "inputs.password", "action": "drop"}, {"path": "payload.body", "action": "hash"}]},
        [("inputs.password", "drop"), ("payload.body", "hash")],
    ]
    for n, policy in enumerate(policies):
        d = log / str(n)
        with auditlog.open(d, redaction=policy, search=auditlog.HAS_SEARCH) as s:
            s.append(started("r", inputs={"user": "u", "password": secret}))
            s.log("r", "http", {"body": secret, "status": 200})
            s.flush()
            run = s.get_run("r")
            assert run is not None and run.inputs == {"user": "u"}
            (entry,) = s.list_logs("r")
            assert entry.payload["body"]["redacted"].startswith("blake3")
            assert entry.payload["status"] == 200
        assert sentinel_in_folder(d, secret) == []


def test_a_policy_recorded_by_an_earlier_writer_still_redacts(tmp_path: Path) -> None:
    """Opened again without a policy, the log keeps the one it recorded:
    single appends (which then are not staged as pre-encoded events) are
    still redacted."""
    secret = "SENTINEL-9c2e-recorded-policy"
    d = tmp_path / "log"
    with auditlog.open(d, redaction="inputs.password drop\n") as s:
        s.append(started("r0"))
    with auditlog.open(d) as s:
        for i in range(50):
            s.append(started(f"r{i + 1}", inputs={"user": "u", "password": secret}))
        s.flush()
        run = s.get_run("r7")
        assert run is not None and run.inputs == {"user": "u"}
    assert sentinel_in_folder(d, secret) == []
