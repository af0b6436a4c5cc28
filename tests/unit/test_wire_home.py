"""lobbypay.core.protocol as the one home of the wire format: topics, time, the retained
messages, and the order its modules depend on each other."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lobbypay.core import job as jm
from lobbypay.core import protocol
from lobbypay.core.protocol import (
    FINAL_JOB_STATES,
    JOB_STATES,
    PROTOCOL_VERSION,
    TOPIC_ROOT,
    Topics,
    encode_json,
    format_seconds,
    format_time,
    parse_time,
    state_object,
    status_object,
)

T = datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)
PACKAGE = Path(protocol.__file__).resolve().parent


# ---------------------------------------------------------------- topics


def test_the_topics_of_a_terminal_are_the_contracts() -> None:
    t = Topics.of("lobby-1")
    assert TOPIC_ROOT == "lobbypay/v1"
    assert t.prefix == "lobbypay/v1/lobby-1"
    assert (t.cmd, t.reply, t.events, t.status, t.state, t.staff_cmd, t.staff_reply) == (
        "lobbypay/v1/lobby-1/cmd", "lobbypay/v1/lobby-1/reply", "lobbypay/v1/lobby-1/events",
        "lobbypay/v1/lobby-1/status", "lobbypay/v1/lobby-1/state",
        "lobbypay/v1/lobby-1/staff/cmd", "lobbypay/v1/lobby-1/staff/reply")


def test_topics_by_their_protocol_names() -> None:
    named = Topics.of("t").by_name()
    assert list(named) == ["cmd", "reply", "events", "status", "state", "staff/cmd",
                           "staff/reply"]
    assert all(topic == f"lobbypay/v1/t/{name}" for name, topic in named.items())


def test_a_site_goes_in_front_and_plus_is_the_wildcard() -> None:
    assert Topics.of("t", site="north").events == "north/lobbypay/v1/t/events"
    assert Topics.of("+").status == "lobbypay/v1/+/status"
    assert Topics.of("+", site="+").state == "+/lobbypay/v1/+/state"


# ---------------------------------------------------------------- time


@pytest.mark.parametrize(("at", "seconds", "precise"), [
    (T, "2026-11-27T14:03:07Z", "2026-11-27T14:03:07Z"),
    (T.replace(microsecond=250000), "2026-11-27T14:03:07Z", "2026-11-27T14:03:07.250000Z"),
    (T.astimezone(timezone(timedelta(hours=-5))), "2026-11-27T14:03:07Z",
     "2026-11-27T14:03:07Z"),
    (T.replace(microsecond=1).astimezone(timezone(timedelta(hours=3))),
     "2026-11-27T14:03:07Z", "2026-11-27T14:03:07.000001Z"),
])
def test_the_two_forms_are_the_ones_each_place_wrote(at: datetime, seconds: str,
                                                      precise: str) -> None:
    # whole seconds: strftime("%Y-%m-%dT%H:%M:%SZ") (events, status, client); precise:
    # isoformat with "+00:00" as "Z" (replies, journal records)
    assert format_seconds(at) == seconds == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert format_time(at) == precise == at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert parse_time(precise) == at
    assert parse_time(precise).tzinfo is UTC


@pytest.mark.parametrize("fmt", [format_seconds, format_time])
def test_a_naive_time_is_refused(fmt: Callable[[datetime], str]) -> None:
    with pytest.raises(ValueError):
        fmt(T.replace(tzinfo=None))


def test_encode_json_writes_datetimes_in_the_precise_form() -> None:
    assert encode_json({"at": T.replace(microsecond=5)}) == b'{"at":"2026-11-27T14:03:07.000005Z"}'


# ---------------------------------------------------------------- status and state


def test_status_has_the_shape_and_bytes_of_protocol_8() -> None:
    obj = status_object(True, session=3, since=T.replace(microsecond=9), version="1.2.3")
    assert encode_json(obj) == (
        b'{"v":1,"online":true,"session":3,"since":"2026-11-27T14:03:07Z","version":"1.2.3"}')


def _state(**change: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        job_id=None, job_state=None, screen=("Welcome", ""), reader_driver="sim",
        reader_connected=True, display_driver="console", display_connected=False,
        athena_last_ok_at=None, athena_last_error=None, outbox=0,
        clock={"synchronized": True, "athena_offset_s": None, "uncertainty_s": None})
    args.update(change)
    return state_object(**args)


def test_state_has_the_key_order_the_engine_wrote() -> None:
    assert json.loads(encode_json(_state())) == _state()
    assert list(_state()) == ["v", "job_id", "job_state", "screen", "reader", "display",
                              "athena", "outbox", "clock"]
    assert encode_json(_state()) == (
        b'{"v":1,"job_id":null,"job_state":"idle","screen":["Welcome",""],'
        b'"reader":{"driver":"sim","connected":true},'
        b'"display":{"driver":"console","connected":false},'
        b'"athena":{"last_ok_at":null,"last_error":null},"outbox":0,'
        b'"clock":{"synchronized":true,"athena_offset_s":null,"uncertainty_s":null}}')


def test_state_of_a_job_with_a_reader_error() -> None:
    s = _state(job_id="j-1", job_state=jm.JobState.PENDING, reader_error="unplugged",
               athena_last_error={"code": "athena_unavailable", "message": "m", "at": "x"})
    assert s["job_id"] == "j-1" and s["job_state"] == "pending"
    assert type(s["job_state"]) is str
    assert s["reader"] == {"driver": "sim", "connected": True, "last_error": "unplugged"}
    assert s["athena"] == {"last_ok_at": None, "last_error": {
        "code": "athena_unavailable", "message": "m", "at": "x"}}


# ---------------------------------------------------------------- one home each


def test_the_job_machine_has_one_state_per_protocol_name() -> None:
    assert [s.value for s in jm.JobState] == list(JOB_STATES)
    assert {s.value for s in jm.FINAL_STATES} == FINAL_JOB_STATES
    assert PROTOCOL_VERSION == 1


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


#: the package's modules, each allowed to use only those after it (as __init__ lists them)
ORDER = ("decode", "events", "retained", "topics", "envelope", "times")


def test_the_protocol_modules_depend_only_downwards_and_never_on_the_job_machine() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == {*ORDER, "__init__"}
    for i, name in enumerate(ORDER):
        used = {m.rsplit(".", 1)[1] for m in _imports(PACKAGE / f"{name}.py")
                if m.startswith("lobbypay.core.protocol.")}
        assert used <= set(ORDER[i + 1:]), name
        assert not any(m.startswith("lobbypay.core.job") for m in _imports(PACKAGE / f"{name}.py"))
