"""The fast path of append(dict) (src/direct.rs) against the line path
(dict -> JSON line -> the engine's parser): for every dict the fast path
takes, both store byte-identical events; every dict it declines goes the
line path, which stores it or raises the ValueError naming the field."""

from __future__ import annotations

import enum
import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional

import pytest

import auditlog
from auditlog import _native
from conftest import T0

NOW = T0 + 123


def fast(ev: Any) -> Optional[bytes]:
    return _native._event_bytes(ev, fast=True, now=NOW)


def line(ev: Any) -> Optional[bytes]:
    return _native._event_bytes(ev, fast=False, now=NOW)


class Color(enum.IntEnum):
    RED = 1


class Tag(str, enum.Enum):
    A = "tag-a"


class Loud(int):
    def __str__(self) -> str:
        return "not a number"


# Valid events the fast path must take, and store as the line path does.
TAKEN: List[Dict[str, Any]] = [
    {"kind": "run_started", "run_id": "r-1", "ts": T0, "skill_id": "web.search", "caller_id": "u-42",
     "channel_id": "sess-7", "parent_run_id": "p", "inputs": {"q": "x", "n": [1, 2.5, None, True]}, "dry_run": True},
    {"kind": "run_started", "run_id": "r-2"},  # ts missing: now
    {"kind": "run_started", "run_id": "r-3", "ts": None, "inputs": None, "skill_id": None},
    {"ts": T0, "run_id": "r-4", "kind": "run_started", "inputs": []},  # kind last
    {"kind": "run_started", "run_id": "ünï-cødé ✓", "skill_id": "日本語", "inputs": {"emoji": "🦀", "ctl": "a\u0001\n\"\\b"}},
    {"kind": "run_started", "run_id": "r", "inputs": {"big": 2**64, "neg": -(2**70), "small": -5, "u": 2**63}},
    {"kind": "run_started", "run_id": "r", "inputs": {"f": 0.1, "g": -0.0, "h": 1e300, "i": 5e-324}},
    {"kind": "run_started", "run_id": "r", "inputs": {"deep": [[[[{"a": [[[1]]]}]]]]}},
    {"kind": "run_started", "run_id": "r", "inputs": (1, "two", (3,))},
    {"kind": "run_started", "run_id": "r", "inputs": {"e": Color.RED, "t": Tag.A, "loud": Loud(2**80)}},
    {"kind": "run_started", "run_id": "r", "inputs": {"at": datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=timezone.utc),
                                                        "there": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5)))}},
    {"kind": "run_started", "run_id": "r", "inputs": "just a string"},
    {"kind": "run_started", "run_id": "r", "seq": 4, "payload": {"x": 1}, "status": "ok"},  # other kinds' keys
    {"kind": "run_started", "run_id": "r", "custom": {"a": 1}, "more": None, "replace": False},
    {"kind": "run_started", "run_id": Tag.A, "ts": "2026-11-23T08:00:00.123456Z"},
    {"kind": "run_started", "run_id": "r", "ts": "2026-11-23T09:00:00+01:00"},
    {"kind": "run_log", "run_id": "r", "ts": T0 + 1, "seq": 3, "event_type": "tool_call",
     "payload": {"tool": "http.get", "status": "ok", "duration_ms": 12, "args_summary": "GET x"}},
    {"kind": "run_log", "run_id": "r", "seq": 2**64 - 1, "payload": None},
    {"kind": "run_log", "run_id": "r", "payload": [1, "a", {"b": None}], "seq": None, "event_type": None},
    {"kind": "run_log", "run_id": "r", "payload": 3.25},
    {"kind": "run_finished", "run_id": "r", "ts": T0, "status": "error", "output": "o", "error": "boom",
     "tool_calls": 3, "runtime_seconds": 0.5, "input_tokens": 120, "output_tokens": 40, "thinking_tokens": 7},
    {"kind": "run_finished", "run_id": "r", "runtime_seconds": 3, "status": None},
    {"kind": "run_finished", "run_id": "r", "runtime_seconds": 2**63 + 1},
    {"kind": "run_finished", "run_id": "r", "runtime_seconds": 0.1 + 0.2, "status": ""},
    {"kind": "run_finished", "run_id": "r", "runtime_seconds": -1.5e-7},
    {"kind": "tool_call", "tool": "fs.read"},  # no run, status from error fields: ok
    {"kind": "tool_call", "run_id": "", "tool": "x", "error_type": "timeout"},  # status: error
    {"kind": "tool_call", "run_id": "r", "tool": "x", "error": "boom", "status": "weird"},
    {"kind": "tool_call", "run_id": "r", "call_id": "c", "channel_id": "s", "caller_id": "a", "workspace_id": "w",
     "request_id": "q", "tool": "t", "engine": "e", "status": "ok", "error_type": "", "error": "",
     "duration_ms": 12.5, "input_bytes": 10, "result_bytes": 20, "exit_code": -3, "http_status": 999,
     "input_hash": "h", "args_summary": "s", "payload": {"k": "v"}, "extra": 1},
    {"kind": "tool_call", "tool": "t", "duration_ms": 7, "exit_code": 2**63 - 1, "http_status": 0},
    {"kind": "tool_call", "tool": "t", "skill_id": "not mine", "seq": 1, "inputs": {}, "output": "x"},
]

# Bad events: the fast path declines, the line path raises naming the field.
BAD: List[tuple[Any, str]] = [
    ({"kind": "run_started"}, "run_id"),
    ({"kind": "run_started", "run_id": ""}, "run_id"),
    ({"kind": "run_started", "run_id": "x" * 300}, "run_id"),
    ({"kind": "run_started", "run_id": "r", "skill_id": "s" * 2000}, "skill_id"),
    ({"kind": "bogus", "run_id": "r"}, "kind"),
    ({"kind": "system", "run_id": "r"}, "kind"),
    ({"kind": 3, "run_id": "r"}, "kind"),
    ({"run_id": "r"}, "kind"),
    ({"kind": "run_started", "run_id": "r", "ts": "yesterday"}, "ts"),
    ({"kind": "run_started", "run_id": "r", "ts": 1.5}, "ts"),
    ({"kind": "run_started", "run_id": "r", "ts": True}, "ts"),
    ({"kind": "run_started", "run_id": "r", "ts": 2**70}, "ts"),
    ({"kind": "run_started", "run_id": "r", "ts": 10**18}, "ts"),
    ({"kind": "run_started", "run_id": "r", "skill_id": 5}, "skill_id"),
    ({"kind": "run_started", "run_id": 7}, "run_id"),
    ({"kind": "run_started", "run_id": "r", "dry_run": "yes"}, "dry_run"),
    ({"kind": "run_started", "run_id": "r", "dry_run": 1}, "dry_run"),
    ({"kind": "run_log", "run_id": "r", "seq": -1}, "seq"),
    ({"kind": "run_log", "run_id": "r", "seq": 2**64}, "seq"),
    ({"kind": "run_log", "run_id": "r", "seq": 1.0}, "seq"),
    ({"kind": "run_log", "run_id": "r", "seq": True}, "seq"),
    ({"kind": "run_finished", "run_id": "r", "status": "running"}, "status"),
    ({"kind": "run_finished", "run_id": "r", "runtime_seconds": math.nan}, "runtime_seconds"),
    ({"kind": "run_finished", "run_id": "r", "runtime_seconds": math.inf}, "runtime_seconds"),
    ({"kind": "run_finished", "run_id": "r", "runtime_seconds": "1"}, "runtime_seconds"),
    ({"kind": "run_finished", "run_id": "r", "runtime_seconds": False}, "runtime_seconds"),
    ({"kind": "run_finished", "run_id": "r", "tool_calls": -2}, "tool_calls"),
    ({"kind": "tool_call", "tool": "t", "http_status": 1000}, "http_status"),
    ({"kind": "tool_call", "tool": "t", "exit_code": 2**63}, "exit_code"),
    ({"kind": "tool_call", "tool": "t", "duration_ms": math.nan}, "duration_ms"),
    ({"kind": "tool_call", "tool": 5}, "tool"),
    ({"kind": "run_log", "run_id": "r", "payload": {"blob": b"raw"}}, "payload.blob"),
    ({"kind": "run_log", "run_id": "r", "payload": {"xs": [1, {2, 3}]}}, "payload.xs[1]"),
    ({"kind": "run_log", "run_id": "r", "payload": {"x": math.nan}}, "payload.x"),
    ({"kind": "run_log", "run_id": "r", "payload": {"x": -math.inf}}, "payload.x"),
    ({"kind": "run_log", "run_id": "r", "payload": {1: "int key"}}, "payload"),
    ({"kind": "run_log", "run_id": "r", "payload": {"at": datetime(2026, 1, 1)}}, "payload.at"),
    ({"kind": "run_log", "run_id": "r", "payload": {"o": object()}}, "payload.o"),
    ({"kind": "run_log", "run_id": "r", "custom": {"s": "\ud800"}}, "custom.s"),
    ({"kind": "run_log", "run_id": "r", 5: "int key at the top"}, "event"),
    ({"kind": "run_started", "run_id": "r", "inputs": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "inputs"),
    ({"kind": "run_started", "run_id": "r", "replace": 5}, "replace"),
    (["kind", "run_started"], "event"),
]


@pytest.mark.parametrize("ev", TAKEN, ids=range(len(TAKEN)))
def test_fast_path_takes_valid_events_and_stores_the_same_bytes(ev: Dict[str, Any]) -> None:
    got = fast(ev)
    assert got is not None, f"the fast path declined {ev!r}"
    assert got == line(ev)


@pytest.mark.parametrize("ev, field", BAD, ids=range(len(BAD)))
def test_bad_events_take_the_line_path_and_raise_naming_the_field(ev: Any, field: str, store: auditlog.Store) -> None:
    assert fast(ev) is None
    with pytest.raises(ValueError) as direct_err:
        store.append(ev)
    with pytest.raises(ValueError) as line_err:
        line(ev)
    assert str(direct_err.value) == str(line_err.value)
    assert type(direct_err.value) is type(line_err.value)
    if isinstance(direct_err.value, auditlog.InvalidEventError) and field != "event":
        assert direct_err.value.field == field, str(direct_err.value)


def test_declined_but_valid_events_are_still_stored(store: auditlog.Store) -> None:
    """What the fast path leaves to the line path is still taken there."""
    aware = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    odd: List[Dict[str, Any]] = [
        {"kind": "run_started", "run_id": "dt", "ts": aware},  # datetime ts
        {"kind": "run_started", "run_id": "lsn", "ts": T0, "lsn": 17},  # replayed event
    ]
    for ev in odd:
        assert fast(ev) is None
        assert line(ev) is not None
        store.append(ev)
    store.flush()
    assert [e["run_id"] for e in store.replay()] == ["dt", "lsn"]


def test_stored_events_read_back_as_appended(store: auditlog.Store) -> None:
    for ev in TAKEN:
        store.append(ev)
    store.flush()
    back = list(store.replay())
    assert len(back) == len(TAKEN)
    assert back[4]["run_id"] == "ünï-cødé ✓"
    assert back[4]["inputs"] == {"emoji": "🦀", "ctl": "a\u0001\n\"\\b"}
    assert back[5]["inputs"]["big"] == 2**64
    assert back[1]["ts"] is not None


# -- random dicts: the two paths agree on every one -------------------------------

KEYS = ["kind", "run_id", "ts", "skill_id", "caller_id", "channel_id", "parent_run_id", "inputs", "dry_run",
        "seq", "event_type", "payload", "status", "output", "error", "tool_calls", "runtime_seconds",
        "input_tokens", "output_tokens", "thinking_tokens", "call_id", "workspace_id", "request_id", "tool",
        "engine", "error_type", "duration_ms", "input_bytes", "result_bytes", "exit_code", "http_status",
        "input_hash", "args_summary", "custom", "x-y", "ünï"]
KINDS = ["run_started", "run_log", "run_finished", "tool_call"]


def scalar(rnd: random.Random) -> Any:
    return rnd.choice([
        None, True, False, 0, 1, -1, 7, 999, 1000, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
        0.0, -0.0, 0.5, 1e-7, 1e300, math.nan, math.inf, "", "ok", "running", "é", "a\"b", "\x00", "x" * 300,
        "2026-11-23T08:00:00Z", T0, b"bytes", Color.RED, Tag.A,
    ])


def value(rnd: random.Random, depth: int = 0) -> Any:
    r = rnd.random()
    if depth < 3 and r < 0.15:
        return {rnd.choice(["a", "b", "ü", "k"]): value(rnd, depth + 1) for _ in range(rnd.randrange(3))}
    if depth < 3 and r < 0.25:
        return [value(rnd, depth + 1) for _ in range(rnd.randrange(3))]
    return scalar(rnd)


def random_event(rnd: random.Random) -> Dict[str, Any]:
    ev: Dict[str, Any] = {}
    for k in rnd.sample(KEYS, rnd.randrange(1, 8)):
        ev[k] = value(rnd)
    if rnd.random() < 0.9:
        ev["kind"] = rnd.choice(KINDS)
    if rnd.random() < 0.8:
        ev["run_id"] = rnd.choice(["r-1", "", "run ✓"])
    return ev


def test_random_dicts_agree() -> None:
    rnd = random.Random(12)
    taken = 0
    for _ in range(20_000):
        ev = random_event(rnd)
        try:
            want: Optional[bytes] = line(ev)
        except ValueError:
            want = None
        got = fast(ev)
        if got is not None:
            taken += 1
            assert got == want, ev
    # The corpus is mostly bad on purpose; enough of it must be taken for
    # the comparison to mean something.
    assert taken > 1_000, taken


class Key(str):
    pass


def fresh(s: Any) -> Any:
    """An equal str that is not the interned literal (a new object)."""
    return (s + "!")[:-1] if type(s) is str else s


def test_keys_and_kinds_that_are_not_the_interned_literals() -> None:
    """The fast path finds a dict literal's keys (and its kind) by pointer
    among interned copies; keys made at run time, str subclasses and kinds
    read from elsewhere are read as text and store the same bytes (or are
    declined alike); keys in another order agree with the line path."""
    rnd = random.Random(29)
    same_forms: List[Callable[[Dict[str, Any]], Dict[str, Any]]] = [
        lambda ev: {fresh(k): v for k, v in ev.items()},
        lambda ev: {Key(k): v for k, v in ev.items()},
        lambda ev: {k: fresh(v) if k == "kind" else v for k, v in ev.items()},
        lambda ev: {k: Key(v) if k == "kind" and type(v) is str else v for k, v in ev.items()},
    ]
    taken = 0
    for _ in range(5_000):
        ev = random_event(rnd)
        want = fast(ev)
        taken += want is not None
        for form in same_forms:
            assert fast(form(ev)) == want, ev
        backwards = dict(reversed(list(ev.items())))
        got = fast(backwards)
        if got is not None:
            assert got == line(backwards), backwards
    assert taken > 250, taken


def test_random_dicts_stored_one_per_call_as_the_line_path_stores_them(tmp_path: Any) -> None:
    """Appended one per call (staged: built in the thread's reused event,
    encoded on the calling thread), valid random dicts read back exactly as
    the same dicts appended as one batch (the line path)."""
    rnd = random.Random(27)
    taken: List[Dict[str, Any]] = []
    while len(taken) < 3_000:
        ev = random_event(rnd)
        # Declined dicts in between leave the reused event half filled.
        if fast(ev) is not None:
            ev["ts"] = T0 + len(taken)
            taken.append(ev)
    with auditlog.open(tmp_path / "one") as one, auditlog.open(tmp_path / "batch") as batch:
        for ev in taken:
            one.append(ev)
        batch.append_batch(taken)
        one.flush()
        batch.flush()
        assert list(one.replay()) == list(batch.replay())


class Sneaky(datetime):
    """A datetime whose `utcoffset` appends to a store: an append entered
    again from Python code while the conversion runs."""

    target: Optional[auditlog.Store] = None

    def utcoffset(self) -> Optional[timedelta]:
        if Sneaky.target is not None:
            store, Sneaky.target = Sneaky.target, None
            store.append({"kind": "run_log", "run_id": "inner", "ts": T0, "seq": 9, "event_type": "x",
                          "payload": {"k": "v" * 40}})
        return timedelta(0)


def test_an_append_entered_again_from_the_conversion(store: auditlog.Store) -> None:
    Sneaky.target = store
    at = Sneaky(2026, 1, 2, tzinfo=timezone.utc)
    store.append({"kind": "run_log", "run_id": "outer", "ts": T0 + 1, "seq": 1, "event_type": "y",
                  "payload": {"at": at, "n": 5}})
    store.flush()
    back = list(store.replay())
    assert [(e["run_id"], e["seq"]) for e in back] == [("inner", 9), ("outer", 1)]
    assert back[0]["payload"] == {"k": "v" * 40}
    assert back[1]["payload"]["n"] == 5
    assert back[1]["payload"]["at"].startswith("2026-01-02T00:00:00")


class Shrinking(datetime):
    """A datetime whose `utcoffset` empties the dict it is written from:
    dict items are walked borrowed (src/convert.rs, `for_each_item`)."""

    victim: Dict[str, Any] = {}

    def utcoffset(self) -> Optional[timedelta]:
        for k in [k for k in Shrinking.victim if k != "at"]:
            del Shrinking.victim[k]
        return timedelta(0)


def test_a_dict_changed_while_it_is_written(store: auditlog.Store) -> None:
    payload: Dict[str, Any] = {"at": Shrinking(2026, 1, 2, tzinfo=timezone.utc), "b": "x" * 50, "c": [1, 2]}
    Shrinking.victim = payload
    # Either refused as Python refuses it, or stored as it is once changed:
    # never a crash, and the store goes on.
    try:
        store.append({"kind": "run_log", "run_id": "m", "ts": T0, "seq": 1, "event_type": "x", "payload": payload})
    except RuntimeError as e:
        assert "changed size" in str(e)
    store.append({"kind": "run_log", "run_id": "after", "ts": T0, "seq": 2, "event_type": "x", "payload": {}})
    store.flush()
    back = list(store.replay())
    assert back[-1]["run_id"] == "after"
    assert all(set(e["payload"]) <= {"at", "b", "c"} for e in back)


def nested(levels: int, inner: Any) -> Any:
    v = inner
    for _ in range(levels):
        v = [v]
    return v


def test_nesting_at_the_limit(store: auditlog.Store) -> None:
    limit = 64  # MAX_JSON_DEPTH (docs/contract.md)
    at_limit = {"kind": "run_started", "run_id": "r", "inputs": nested(limit - 1, [])}
    assert fast(at_limit) == line(at_limit) is not None
    # One level more: the parser refuses it; the fast path declines it.
    over = {"kind": "run_started", "run_id": "r", "inputs": nested(limit, [])}
    assert fast(over) is None
    with pytest.raises(ValueError, match="nested too deeply"):
        store.append(over)
    # At the limit and holding a value: declined early, stored by the line path.
    holding = {"kind": "run_started", "run_id": "r", "inputs": nested(limit - 1, [1])}
    assert fast(holding) is None
    assert line(holding) is not None


def test_strings_that_need_escapes_at_every_position(store: auditlog.Store) -> None:
    """JSON escapes are found eight bytes at a time (convert.rs,
    `needs_escape`): a character that needs one, at any position of a
    string of any length, in a key or a value, reads back as appended."""
    specials = ['"', "\\", "\x00", "\x1f", "\n", "\x7f", "é", " ", "\U0001f980"]
    sent: List[Dict[str, Any]] = []
    for n in range(1, 26):
        for pos in range(n):
            for ch in specials:
                s = "a" * pos + ch + "b" * (n - pos - 1)
                payload = {"s": s, s: n}
                sent.append(payload)
                store.append({"kind": "run_log", "run_id": "esc", "payload": payload})
    store.flush()
    back = [e["payload"] for e in store.replay()]
    assert back == sent


def test_payload_keys_remembered_by_object_read_back_as_appended(store: auditlog.Store) -> None:
    """Payload keys' JSON text is remembered per key object (convert.rs,
    `KeyTexts`, 128 slots): far more keys than slots, used again after
    others took their slots, interned and built at run time, with the same
    text in other objects, all read back as appended."""
    import sys

    interned = [sys.intern(f"key-{i}") for i in range(400)]
    sent: List[Dict[str, Any]] = []
    for r in range(3):
        for i in range(0, 400, 7):
            built = "".join(["key-", str(i)])  # same text, another object
            payload = {interned[i]: r, interned[(i * 13) % 400]: "x", built + "-b": i, "tool": "t"}
            sent.append(payload)
            store.append({"kind": "run_log", "run_id": "keys", "payload": payload})
            assert fast({"kind": "run_log", "run_id": "keys", "payload": payload}) == line(
                {"kind": "run_log", "run_id": "keys", "payload": payload}
            )
    store.flush()
    assert [e["payload"] for e in store.replay()] == sent
