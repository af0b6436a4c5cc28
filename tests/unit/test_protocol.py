"""protocol.md sections 2-4 as golden tables: payload in -> Command or (code, echo) out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from lobbypay.core.commands import (
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ChargeStart,
    ChargeVoid,
    ClaimAmount,
    Ping,
    ReceiptEmail,
    mask_email,
)
from lobbypay.core.errors import Code
from lobbypay.core.protocol import (
    MAX_PAYLOAD_BYTES,
    ProtocolError,
    decode_command,
    encode_json,
    encode_reply,
    error_reply,
    format_time,
    peek_envelope,
)

SPEC_CHARGE_START = {
    "v": 1, "type": "charge.start", "request_id": "r-1", "job_id": "j-1",
    "patient_id": "60178", "department_id": "1", "appointment_id": "1234",
    "copay": "25.00", "claims": [{"claim_id": "5569", "amount": "40.00"}],
    "allow_duplicate": False, "deadline_s": 120, "expires_at": "2026-11-27T15:00:00Z",
}


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def cmd(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "type": kind, "request_id": "r-9", **fields}


def start(**changes: Any) -> dict[str, Any]:
    body = dict(SPEC_CHARGE_START)
    for k, v in changes.items():
        if v is _DROP:
            body.pop(k, None)
        else:
            body[k] = v
    return body


_DROP = object()


def fails(payload: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_command(payload)
    return info.value


# ------------------------------------------------------------------ valid commands


def test_spec_charge_start_example_decodes_exactly() -> None:
    got = decode_command(enc(SPEC_CHARGE_START))
    assert got == ChargeStart(
        request_id="r-1", job_id="j-1", patient_id="60178", department_id="1",
        appointment_id="1234", copay=2500, claims=(ClaimAmount("5569", 4000),),  # type: ignore[arg-type]
        allow_duplicate=False, deadline_s=120,
        expires_at=datetime(2026, 11, 27, 15, 0, tzinfo=UTC),
    )
    assert got.total == 6500


def test_charge_start_defaults() -> None:
    got = decode_command(enc(cmd("charge.start", job_id="j", patient_id="1",
                                 claims=[{"claim_id": "7", "amount": "1.00"}])))
    assert isinstance(got, ChargeStart)
    assert (got.copay, got.allow_duplicate, got.deadline_s, got.expires_at) == (0, False, 120, None)
    assert got.department_id is None and got.appointment_id is None


def test_null_optional_fields_take_defaults() -> None:
    got = decode_command(enc(start(copay=None, claims=None, allow_duplicate=None, deadline_s=None,
                                   expires_at=None, department_id=None, appointment_id=None)))
    assert isinstance(got, ChargeStart)
    assert (got.copay, got.claims, got.deadline_s, got.department_id) == (0, (), 120, None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (cmd("balance.get", patient_id="60178"), BalanceGet("r-9", "60178")),
        (cmd("balance.get", patient_id="60178", department_id="1", appointment_id="99"),
         BalanceGet("r-9", "60178", "1", "99")),
        (cmd("charge.cancel", job_id="j:1.a_b-c"), ChargeCancel("r-9", "j:1.a_b-c")),
        (cmd("charge.get", job_id="j-1"), ChargeGet("r-9", "j-1")),
        (cmd("charge.list"), ChargeList("r-9", 20)),
        (cmd("charge.list", limit=1), ChargeList("r-9", 1)),
        (cmd("charge.list", limit=100), ChargeList("r-9", 100)),
        (cmd("charge.list", limit=101), ChargeList("r-9", 100)),
        (cmd("charge.list", limit=10**9), ChargeList("r-9", 100)),
        (cmd("ping"), Ping("r-9")),
        (cmd("ping", extra={"ignored": True}, sent_at="x"), Ping("r-9")),  # unknown fields ignored
        ({"v": 1, "type": "ping", "request_id": "x" * 64}, Ping("x" * 64)),
        ({"v": 1, "type": "ping", "request_id": "é"}, Ping("é")),
    ],
)
def test_valid_commands(body: dict[str, Any], expected: object) -> None:
    assert decode_command(enc(body)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T15:00:00Z", datetime(2026, 11, 27, 15, tzinfo=UTC)),
        ("2026-11-27T10:00:00-05:00", datetime(2026, 11, 27, 15, tzinfo=UTC)),
        ("2026-11-27T15:00:00.5+00:00", datetime(2026, 11, 27, 15, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-27T15:00:00.123456789Z", datetime(2026, 11, 27, 15, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_expires_at_becomes_aware_utc(text: str, expected: datetime) -> None:
    got = decode_command(enc(start(expires_at=text)))
    assert isinstance(got, ChargeStart)
    assert got.expires_at == expected and got.expires_at.utcoffset() is not None


@pytest.mark.parametrize("deadline", [10, 300])
def test_deadline_bounds_inclusive(deadline: int) -> None:
    got = decode_command(enc(start(deadline_s=deadline)))
    assert isinstance(got, ChargeStart) and got.deadline_s == deadline


def test_static_checks_left_to_the_plan() -> None:
    # copay without appointment, nothing to charge, huge total: valid at this layer
    got = decode_command(enc(start(appointment_id=_DROP, copay="9999999.99", claims=[])))
    assert isinstance(got, ChargeStart) and got.copay == 999999999
    got = decode_command(enc(start(copay="0.00", claims=[])))
    assert isinstance(got, ChargeStart) and got.total == 0


# ------------------------------------------------------------------ envelope errors

ENVELOPE_CASES: list[tuple[bytes, str | None, str | None]] = [
    # payload, request_id echoed, command echoed
    (b"", None, None),
    (b"not json", None, None),
    (b"\xff\xfe{}", None, None),
    (b"[1, 2]", None, None),
    (b'"ping"', None, None),
    (b"null", None, None),
    (b"{", None, None),
    (enc({"v": 1, "type": "ping"}), None, "ping"),
    (enc({"v": 1, "type": "ping", "request_id": ""}), None, "ping"),
    (enc({"v": 1, "type": "ping", "request_id": "x" * 65}), None, "ping"),
    (enc({"v": 1, "type": "ping", "request_id": 7}), None, "ping"),
    (enc({"v": 1, "type": "ping", "request_id": ["r"]}), None, "ping"),
    (enc({"type": "ping", "request_id": "r"}), "r", "ping"),
    (enc({"v": 2, "type": "ping", "request_id": "r"}), "r", "ping"),
    (enc({"v": "1", "type": "ping", "request_id": "r"}), "r", "ping"),
    (enc({"v": True, "type": "ping", "request_id": "r"}), "r", "ping"),
    (enc({"v": 1.0, "type": "ping", "request_id": "r"}), "r", "ping"),
    (enc({"v": 1, "request_id": "r"}), "r", None),
    (enc({"v": 1, "type": 5, "request_id": "r"}), "r", None),
    (enc({"v": 1, "type": None, "request_id": "r"}), "r", None),
    (b"[" * 100_000 + b"]" * 100_000, None, None),  # too big
    (b"[" * 30_000 + b"]" * 30_000, None, None),  # deep nesting under the size cap
    (b'{"v":1,"type":"ping","request_id":"r","n":' + b"9" * 30_000 + b"}", None, None),
]


@pytest.mark.parametrize(("payload", "rid", "command"), ENVELOPE_CASES)
def test_envelope_errors_are_bad_request_with_echo(
    payload: bytes, rid: str | None, command: str | None
) -> None:
    err = fails(payload)
    assert err.code is Code.BAD_REQUEST
    assert (err.request_id, err.command) == (rid, command)
    reply = json.loads(err.to_reply())
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert (reply["request_id"], reply["command"]) == (rid, command)


def test_oversize_is_rejected_before_parsing() -> None:
    big = b'{"v":1,"type":"ping","request_id":"r","pad":"' + b"a" * MAX_PAYLOAD_BYTES + b'"}'
    err = fails(big)
    assert err.code is Code.BAD_REQUEST and err.request_id is None
    assert "larger than" in err.message


def test_unknown_type_is_unknown_command() -> None:
    err = fails(enc({"v": 1, "type": "charge.refund", "request_id": "r-3"}))
    assert (err.code, err.request_id, err.command) == (Code.UNKNOWN_COMMAND, "r-3", None)


def test_envelope_wins_over_unknown_type() -> None:
    err = fails(enc({"v": 1, "type": "charge.refund", "request_id": ""}))
    assert err.code is Code.BAD_REQUEST


# ------------------------------------------------------------------ field errors

BAD = Code.BAD_REQUEST
AMT = Code.INVALID_AMOUNT

FIELD_CASES: list[tuple[dict[str, Any], Code]] = [
    # balance.get
    (cmd("balance.get"), BAD),
    (cmd("balance.get", patient_id=60178), BAD),
    (cmd("balance.get", patient_id=""), BAD),
    (cmd("balance.get", patient_id="../x"), BAD),
    (cmd("balance.get", patient_id=".."), BAD),
    (cmd("balance.get", patient_id="1/2"), BAD),
    (cmd("balance.get", patient_id="1" * 33), BAD),
    (cmd("balance.get", patient_id="1", department_id=1), BAD),
    (cmd("balance.get", patient_id="1", appointment_id=True), BAD),
    # charge.start: job_id
    (start(job_id=_DROP), BAD),
    (start(job_id=""), BAD),
    (start(job_id="j" * 65), BAD),
    (start(job_id="j 1"), BAD),
    (start(job_id="j/1"), BAD),
    (start(job_id=12), BAD),
    (start(patient_id=_DROP), BAD),
    (start(patient_id=60178), BAD),
    # copay
    (start(copay=25), AMT),
    (start(copay=25.0), AMT),
    (start(copay="-25.00"), AMT),
    (start(copay="25.001"), AMT),
    (start(copay="25"), AMT),
    (start(copay="25.0"), AMT),
    (start(copay="NaN"), AMT),
    (start(copay=float("nan")), AMT),
    (start(copay=" 25.00"), AMT),
    (start(copay="12345678.00"), AMT),
    (start(copay=True), AMT),
    # claims
    (start(claims={"claim_id": "1", "amount": "1.00"}), BAD),
    (start(claims=["5569"]), BAD),
    (start(claims=[{"amount": "1.00"}]), BAD),
    (start(claims=[{"claim_id": "1"}]), BAD),
    (start(claims=[{"claim_id": 5569, "amount": "1.00"}]), BAD),
    (start(claims=[{"claim_id": "1", "amount": "1.00"}, {"claim_id": "1", "amount": "2.00"}]),
     BAD),
    (start(claims=[{"claim_id": "1", "amount": "0.00"}]), AMT),
    (start(claims=[{"claim_id": "1", "amount": 40}]), AMT),
    (start(claims=[{"claim_id": "1", "amount": "-1.00"}]), AMT),
    (start(claims=[{"claim_id": str(i), "amount": "1.00"} for i in range(101)]), BAD),
    # flags and numbers
    (start(allow_duplicate="false"), BAD),
    (start(allow_duplicate=0), BAD),
    (start(deadline_s=9), BAD),
    (start(deadline_s=301), BAD),
    (start(deadline_s=True), BAD),
    (start(deadline_s=120.0), BAD),
    (start(deadline_s="120"), BAD),
    # expires_at
    (start(expires_at="2026-11-27T15:00:00"), BAD),
    (start(expires_at="2026-11-27"), BAD),
    (start(expires_at="tomorrow"), BAD),
    (start(expires_at="2026-13-27T15:00:00Z"), BAD),
    (start(expires_at=1795000000), BAD),
    (start(expires_at="2026-11-27T15:00:00Z" + " " * 30), BAD),
    # cancel / get / list
    (cmd("charge.cancel"), BAD),
    (cmd("charge.cancel", job_id="bad id"), BAD),
    (cmd("charge.get", job_id=None), BAD),
    (cmd("charge.get", job_id=["j-1"]), BAD),
    (cmd("charge.list", limit=0), BAD),
    (cmd("charge.list", limit="5"), BAD),
    (cmd("charge.list", limit=5.0), BAD),
    (cmd("charge.list", limit=False), BAD),
]


@pytest.mark.parametrize(("body", "code"), FIELD_CASES)
def test_field_errors(body: dict[str, Any], code: Code) -> None:
    err = fails(enc(body))
    assert err.code is code, err.message
    assert err.request_id == body["request_id"]
    assert err.command == body["type"]
    assert err.message


def test_messages_do_not_echo_long_input() -> None:
    err = fails(enc(start(copay="9" * 5000)))
    assert len(err.message) < 200
    err = fails(enc({"v": 1, "type": "x" * 5000, "request_id": "r"}))
    assert len(err.message) < 200


def test_first_failure_wins_in_field_order() -> None:
    err = fails(enc(start(job_id="bad id", copay=5)))
    assert err.code is BAD and "job_id" in err.message


# ------------------------------------------------------------------ peek and encode


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (enc(cmd("ping")), ("r-9", "ping")),
        (enc({"type": "nope", "request_id": "q"}), ("q", None)),
        (b"garbage", (None, None)),
        (b"[]", (None, None)),
        (b"[" * 50_000, (None, None)),
    ],
)
def test_peek_envelope_never_raises(
    payload: bytes, expected: tuple[str | None, str | None]
) -> None:
    assert peek_envelope(payload) == expected


def test_encode_reply_envelope() -> None:
    raw = encode_reply("r-1", "charge.start", job_id="j-1", state="pending")
    assert raw == (
        b'{"v":1,"type":"reply","request_id":"r-1","command":"charge.start","ok":true,'
        b'"job_id":"j-1","state":"pending"}'
    )


def test_error_reply_with_extra_beside_error() -> None:
    obj = json.loads(error_reply("r-2", "charge.start", Code.TERMINAL_BUSY, "busy",
                                 active_job_id="j-0"))
    assert obj == {"v": 1, "type": "reply", "request_id": "r-2", "command": "charge.start",
                   "ok": False, "error": {"code": "terminal_busy", "message": "busy"},
                   "active_job_id": "j-0"}


def test_reply_cannot_override_envelope() -> None:
    with pytest.raises(ValueError):
        encode_reply("r", "ping", ok=True, v=2)
    with pytest.raises(ValueError):
        error_reply("r", "ping", Code.BAD_REQUEST, "m", error="x")


def test_encode_json_is_compact_utf8_and_refuses_nan() -> None:
    at = datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)
    assert encode_json({"a": "é", "at": at, "t": (1, 2)}) == (
        '{"a":"é","at":"2026-11-27T14:03:07Z","t":[1,2]}'.encode()
    )
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_json({"x": object()})
    assert encode_json({"b": 1, "a": 2}) == encode_json({"b": 1, "a": 2})


def test_format_time_requires_aware() -> None:
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 1))  # noqa: DTZ001


def test_a_lone_surrogate_gets_bad_request() -> None:
    from lobbypay.core import protocol

    payload = b'{"v":1,"type":"ping","request_id":"\\ud800"}'
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.decode_command(payload)
    assert ei.value.code == "bad_request" and ei.value.request_id is None
    encoded = protocol.error_reply(ei.value.request_id, ei.value.command, ei.value.code,
                                   ei.value.message)
    assert json.loads(encoded)["error"]["code"] == "bad_request"
    # a surrogate pair (an emoji) is ordinary text
    ok = protocol.decode_command(b'{"v":1,"type":"ping","request_id":"\\ud83d\\ude00"}')
    assert ok.request_id == "\U0001f600"


# ---------------------------------------------------------------- protocol 10


def test_language_on_charge_start() -> None:
    assert decode_command(enc(start())).language is None  # type: ignore[union-attr]
    assert decode_command(enc(start(language="es"))).language == "es"  # type: ignore[union-attr]
    assert decode_command(enc(start(language=None))).language is None  # type: ignore[union-attr]
    for bad in ("fr", "ES", "", 1, True, ["es"], {"code": "es"}):
        err = fails(enc(start(language=bad)))
        assert err.code is Code.BAD_REQUEST and err.command == "charge.start"


def test_charge_void_and_receipt_email_decode() -> None:
    v = decode_command(enc(cmd("charge.void", job_id="j-1")), staff=True)
    assert v == ChargeVoid(request_id="r-9", job_id="j-1")
    e = decode_command(enc(cmd("receipt.email", job_id="j-1", email="jane@example.com")))
    assert e == ReceiptEmail(request_id="r-9", job_id="j-1", email="jane@example.com")
    assert "jane@" not in repr(e) and "j***@example.com" in repr(e)
    with pytest.raises(ProtocolError) as ei:
        decode_command(enc(cmd("charge.void")), staff=True)
    assert ei.value.code is Code.BAD_REQUEST


@pytest.mark.parametrize("fields", [{"job_id": "j-1"}, {}, {"job_id": "a b"}, {"job_id": 5}])
def test_charge_void_off_the_staff_topic_is_forbidden_before_its_fields(
        fields: dict[str, Any]) -> None:
    err = fails(enc(cmd("charge.void", **fields)))
    assert err.code is Code.FORBIDDEN
    assert (err.request_id, err.command) == ("r-9", "charge.void")
    # a bad envelope is still bad_request: the forbidden check needs a readable command
    bad = fails(enc({"type": "charge.void", "request_id": "r-9", **fields}))
    assert bad.code is Code.BAD_REQUEST


@pytest.mark.parametrize("email", [
    None, 5, "", "a@", "@b", "ab", "a@b@c", "abc", "a" * 250 + "@b.co",
    "a b@c.d", "a@b.c ", "a\t@b.c", "a\n@b.c", "a\x00@b.c", "a\x7f@b.c", "a\u200b@b.c",
    "a\u00a0@b.c", "a\u2028@b.c",
])
def test_receipt_email_address_rules(email: object) -> None:
    fields: dict[str, Any] = {"job_id": "j-1"}
    if email is not None:
        fields["email"] = email
    err = fails(enc(cmd("receipt.email", **fields)))
    assert err.code is Code.BAD_REQUEST and err.request_id == "r-9"
    if isinstance(email, str) and len(email) > 3:
        assert email not in err.message


@pytest.mark.parametrize("email", ["a@b", "x" * 242 + "@example.com", "jöse@exämple.es",
                                   "a+tag@sub.example.org", "\"q\"@b"])
def test_receipt_email_addresses_that_pass(email: str) -> None:
    e = decode_command(enc(cmd("receipt.email", job_id="j-1", email=email)))
    assert isinstance(e, ReceiptEmail) and e.email == email


def test_mask_email() -> None:
    assert mask_email("jane@example.com") == "j***@example.com"
    assert mask_email("x") == "***"
