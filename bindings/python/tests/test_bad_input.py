"""Bad input raises ValueError naming the field; nothing of it is stored."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import auditlog
from conftest import T0, logged, started


@pytest.mark.parametrize(
    "event, field",
    [
        ({"kind": "run_started"}, "run_id"),
        ({"kind": "run_started", "run_id": ""}, "run_id"),
        ({"kind": "run_started", "run_id": "x" * 300}, "run_id"),
        ({"kind": "bogus", "run_id": "r"}, "kind"),
        ({"run_id": "r"}, "kind"),
        ({"kind": "run_started", "run_id": "r", "ts": "yesterday"}, "ts"),
        ({"kind": "run_started", "run_id": "r", "skill_id": 5}, "skill_id"),
        ({"kind": "run_started", "run_id": "r", "dry_run": "yes"}, "dry_run"),
        ({"kind": "run_log", "run_id": "r", "seq": -1}, "seq"),
        ({"kind": "run_finished", "run_id": "r", "status": "running"}, "status"),
        ({"kind": "run_log", "run_id": "r", "payload": {"blob": b"raw"}}, "payload.blob"),
        ({"kind": "run_log", "run_id": "r", "payload": {"xs": [1, {2, 3}]}}, "payload.xs[1]"),
        ({"kind": "run_log", "run_id": "r", "payload": {"x": math.nan}}, "payload.x"),
        ({"kind": "run_log", "run_id": "r", "payload": {1: "int key"}}, "payload"),
        ({"kind": "run_log", "run_id": "r", "payload": {"at": datetime(2026, 1, 1)}}, "payload.at"),
        ({"kind": "run_log", "run_id": "r", "payload": {"o": object()}}, "payload.o"),
    ],
)
def test_field_is_named(store: auditlog.Store, event: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as e:
        store.append(event)
    assert isinstance(e.value, auditlog.InvalidEventError)
    assert isinstance(e.value, auditlog.Error)
    assert e.value.field == field, str(e.value)
    assert f"`{field}`" in str(e.value)
    store.flush()
    assert list(store.replay()) == []


def test_not_a_dict(store: auditlog.Store) -> None:
    with pytest.raises(auditlog.InvalidEventError, match="expected a dict"):
        store.append(["kind", "run_started"])  # type: ignore[arg-type]
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.append_batch([started("ok"), "nope"])  # type: ignore[list-item]
    assert e.value.index == 1


def test_self_containing_value(store: auditlog.Store) -> None:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    with pytest.raises(auditlog.InvalidEventError, match="nested more than"):
        store.append(logged("r", payload=loop))


def test_too_large_event(store: auditlog.Store) -> None:
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.append(logged("r", payload={"big": "x" * (auditlog.MAX_EVENT_BYTES + 10)}))
    assert "bytes" in str(e.value)


def test_helpers_name_fields(store: auditlog.Store) -> None:
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.start_run("", skill_id="s")
    assert e.value.field == "run_id"
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.log("r", "t", {"b": b"x"})
    assert e.value.field == "payload.b"
    with pytest.raises(auditlog.InvalidEventError) as e:
        store.start_run("r", inputs={"s": {1, 2}})
    assert e.value.field == "inputs.s"
    with pytest.raises(auditlog.InvalidArgumentError) as e2:
        store.start_run("r", ts=1.5)  # type: ignore[arg-type]
    assert "ts" in str(e2.value)
    with pytest.raises(auditlog.InvalidArgumentError, match="naive"):
        store.start_run("r", ts=datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        store.start_run("r", skill_id=3)  # type: ignore[arg-type]


def test_query_arguments(store: auditlog.Store) -> None:
    with pytest.raises(auditlog.InvalidArgumentError, match="since"):
        store.runs(since=3.5)  # type: ignore[arg-type]
    with pytest.raises(auditlog.InvalidArgumentError, match="until"):
        store.count(until="not a time")
    with pytest.raises(auditlog.InvalidArgumentError, match="idle_timeout"):
        store.tail(follow=True, idle_timeout=-1)
    assert auditlog.to_micros("2026-11-23T08:00:00Z") == T0
    assert auditlog.to_micros(auditlog.from_micros(T0 + 7)) == T0 + 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"durability": "sometimes"}, "durability"),
        ({"durability": -1.0}, "durability"),
        ({"on_full": "wait"}, "on_full"),
        ({"queue_capacity": 0}, "queue_capacity"),
        ({"segment_max_bytes": 10}, "segment_max_bytes"),
        ({"max_batch_bytes": 10}, "max_batch_bytes"),
        ({"redaction": "inputs.password shred"}, "redaction"),
        ({"redaction": [("run_id", "drop")]}, "run_id"),
        ({"redaction": 42}, "redaction"),
    ],
)
def test_bad_configuration(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        auditlog.open(tmp_path / "log", **kwargs)


def test_search_unavailable_or_off(store: auditlog.Store) -> None:
    # The store was opened without search=True.
    with pytest.raises(auditlog.UnsupportedError):
        store.search("anything")
