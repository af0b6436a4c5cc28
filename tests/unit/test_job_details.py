"""lobbypay.core.job: what a job keeps and drops on the way, its identity key, event and
card checks at their limits, and old journal records (scripts/mutate found these
unchecked; the table itself is walked in test_job.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lobbypay.core import job as jm
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code
from lobbypay.core.job import JobState
from lobbypay.core.money import Cents
from lobbypay.core.protocol import check_event, format_seconds, to_event
from lobbypay.shell.journal_codec import job_from_record, job_to_record

T0 = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def cmd(**kw: object) -> ChargeStart:
    base: dict[str, object] = dict(
        request_id="r-1", job_id="j-7", patient_id="60178", department_id="2",
        appointment_id="1234", copay=Cents(2500),
        claims=(ClaimAmount("5569", Cents(4000)), ClaimAmount("5580", Cents(1))),
        allow_duplicate=True, deadline_s=90, expires_at=EXPIRES,
    )
    base.update(kw)
    return ChargeStart(**base)  # type: ignore[arg-type]


def run(j: jm.Job, *inputs: object) -> jm.Job:
    for i, inp in enumerate(inputs):
        j = jm.step(j, inp, T0 + timedelta(seconds=i + 1)).job  # type: ignore[arg-type]
    return j


def card_read() -> jm.Job:
    return run(jm.start_job(cmd(), department_id="1", now=T0).job, jm.CardAccepted("visa", "1111"))


# ---------------------------------------------------------------- start_job


def test_start_job_copies_the_command() -> None:
    c = cmd()
    s = jm.start_job(c, department_id="1", now=T0)
    j = s.job
    assert (j.job_id, j.seq, j.state) == ("j-7", 1, JobState.PENDING)
    assert (j.patient_id, j.appointment_id) == ("60178", "1234")
    assert j.department_id == "1"  # the resolved one, not the command's "2"
    assert (j.copay, j.claims) == (c.copay, c.claims)
    assert (j.allow_duplicate, j.deadline_s, j.expires_at) == (True, 90, EXPIRES)
    assert j.body_key == jm.body_key_of(c)
    assert j.created_at == j.updated_at == T0
    assert j.deadline_at == T0 + timedelta(seconds=90)
    assert (j.card_brand, j.card_last4, j.epayment_id, j.error_code, j.submitted_at) == (
        None, None, None, None, None)
    assert (j.reconcile_reads, j.reconcile_attempts) == (0, 0)
    assert s.events == (to_event(j),)


def test_start_job_takes_the_plans_amounts_when_given() -> None:
    claims = (ClaimAmount("5569", Cents(3000)),)
    j = jm.start_job(cmd(), department_id="1", copay=Cents(0), claims=claims, now=T0).job
    assert (j.copay, j.claims, j.total) == (0, claims, 3000)
    # the identity key is the command's, whatever the plan made of it
    assert j.body_key == jm.body_key_of(cmd())


# ---------------------------------------------------------------- body_key_of

GOLDEN_KEY = (
    '{"allow_duplicate":true,"appointment_id":"1234","claims":[["5569",4000],["5580",1]],'
    '"copay":2500,"deadline_s":90,"department_id":"2","expires_at":"2026-11-27T15:00:00Z",'
    '"patient_id":"60178"}'
)


def test_body_key_is_canonical_json() -> None:
    # Journalled jobs keep their key across restarts and upgrades: a redelivered
    # charge.start must produce the very same text, whatever order its fields came in.
    key = jm.body_key_of(cmd())
    assert key == GOLDEN_KEY
    assert key == json.dumps(json.loads(key), sort_keys=True, separators=(",", ":"))


def test_body_key_sees_claim_order_and_expiry_to_the_second() -> None:
    a = jm.body_key_of(cmd())
    swapped = cmd(claims=(ClaimAmount("5580", Cents(1)), ClaimAmount("5569", Cents(4000))))
    assert jm.body_key_of(swapped) != a
    assert jm.body_key_of(cmd(expires_at=EXPIRES + timedelta(microseconds=5))) == a
    assert jm.body_key_of(cmd(expires_at=EXPIRES.astimezone(timezone(timedelta(hours=2))))) == a
    assert jm.body_key_of(cmd(expires_at=None)) != a


# ---------------------------------------------------------------- errors kept and dropped


@pytest.mark.parametrize("through", [jm.OutcomeUncertain("read timeout"), jm.Restarted()])
def test_success_after_unknown_drops_the_error(through: object) -> None:
    unknown = run(card_read(), jm.SubmitStarted(), through)
    assert unknown.state is JobState.UNKNOWN
    assert unknown.error_code == Code.OUTCOME_UNKNOWN
    missed = run(unknown, jm.ReconcileMissed(settled=False))
    assert missed.error_code == Code.OUTCOME_UNKNOWN  # still being reconciled
    done = run(missed, jm.ReconcileFound("777"))
    assert done.state is JobState.SUCCEEDED
    assert (done.epayment_id, done.error_code, done.error_message) == ("777", None, None)
    ev = to_event(done)
    assert ev["error"] is None and ev["epayment_id"] == "777"


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ((jm.SubmitStarted(), jm.NotSent(Code.ATHENA_UNAVAILABLE, "x")), Code.ATHENA_UNAVAILABLE),
        ((jm.SubmitStarted(), jm.Rejected(Code.ATHENA_REJECTED, "x")), Code.ATHENA_REJECTED),
        ((jm.SubmitStarted(), jm.PaymentDeclined("x")), Code.DECLINED),
        ((jm.SubmitStarted(), jm.OutcomeUncertain("x"), jm.ReconcileGaveUp()), Code.NOT_CHARGED),
        ((jm.Restarted(),), Code.AGENT_RESTARTED),
    ],
)
def test_each_failure_records_its_code(inputs: tuple[object, ...], code: Code) -> None:
    j = run(card_read(), *inputs)
    assert j.error_code == code
    assert to_event(j)["error"]["code"] == code
    assert j.error_message


def test_submit_records_when_and_the_card_stays() -> None:
    j = run(card_read(), jm.SubmitStarted())
    assert j.submitted_at == T0 + timedelta(seconds=1)
    assert (j.card_brand, j.card_last4) == ("visa", "1111")


# ---------------------------------------------------------------- message clipping


@pytest.mark.parametrize(("n", "kept"), [(199, 199), (200, 200), (201, 197), (5000, 197)])
def test_athena_text_is_clipped_to_200_characters(n: int, kept: int) -> None:
    j = run(card_read(), jm.SubmitStarted(), jm.PaymentDeclined("d" * n))
    assert j.error_message is not None and len(j.error_message) <= 200
    assert j.error_message.count("d") == kept
    assert j.error_message.endswith("...") is (n > 200)


def test_athena_text_loses_unprintable_characters() -> None:
    j = run(card_read(), jm.SubmitStarted(), jm.PaymentDeclined("\x1b[2Jno\nfunds\x07"))
    assert j.error_message == "[2Jno funds"
    blank = run(card_read(), jm.SubmitStarted(), jm.PaymentDeclined(" \n\t"))
    assert blank.error_message  # never an empty message on a declined job


# ---------------------------------------------------------------- CardAccepted


@pytest.mark.parametrize("brand", ["v", "b" * 20])
def test_card_brand_up_to_20_characters(brand: str) -> None:
    assert jm.CardAccepted(brand, "0000").brand == brand


@pytest.mark.parametrize("brand", ["", "b" * 21, None, 7])
def test_card_brand_empty_or_longer_refused(brand: object) -> None:
    with pytest.raises(ValueError):
        jm.CardAccepted(brand, "1111")  # type: ignore[arg-type]


@pytest.mark.parametrize("last4", ["111", "11111", "111a", "", 1111])
def test_card_last4_is_exactly_four_digits(last4: object) -> None:
    with pytest.raises(ValueError):
        jm.CardAccepted("visa", last4)  # type: ignore[arg-type]


# ---------------------------------------------------------------- check_event


def good_event() -> dict[str, Any]:
    return to_event(card_read())


@pytest.mark.parametrize(
    "change",
    [
        {"card": {"brand": "b" * 20, "last4": "0000"}},
        {"card": {"brand": "", "last4": "9999"}},
        {"seq": 1}, {"final": True}, {"epayment_id": "1"},
        {"error": {"code": "declined", "message": ""}},
        {"amounts": {"copay": "1.00", "claims": [{"claim_id": "1", "amount": "1.00"}],
                     "n": 1, "ok": True, "none": None}},
    ],
)
def test_check_event_accepts_the_edges(change: dict[str, object]) -> None:
    check_event({**good_event(), **change})


@pytest.mark.parametrize(
    "change",
    [
        {"card": {"brand": "b" * 21, "last4": "0000"}},
        {"card": {"brand": 1, "last4": "0000"}},
        {"card": {"brand": "visa", "last4": "000"}},
        {"card": {"brand": "visa", "last4": "00000"}},
        {"card": {"brand": "visa", "last4": "000a"}},
        {"card": {"brand": "visa", "last4": 1111}},
        {"card": {"brand": "visa"}},
        {"card": ["visa", "1111"]},
        {"card": None},
        {"v": 2}, {"type": "charge.other"},
        {"job_id": 7}, {"state": 3}, {"at": None}, {"state": "paid"},
        {"seq": 0}, {"seq": True}, {"seq": 1.0}, {"final": 1}, {"final": None},
        {"epayment_id": 1}, {"epayment_id": None},
        {"error": {"code": "declined"}},
        {"error": {"code": "declined", "message": "", "pan": ""}},
        {"error": {"code": 1, "message": ""}},
        {"error": {"code": "declined", "message": None}},
        {"error": ["declined", ""]},
        {"amounts": {"copay": 1.0}},
        {"amounts": {1: "1.00"}},
        {"amounts": [{"x": object()}]},
        {"amounts": ("1.00",)},
        {"extra": 1},
    ],
)
def test_check_event_refuses_each_bad_field(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        check_event({**good_event(), **change})


@pytest.mark.parametrize("key", ["v", "type", "job_id", "seq", "state", "final", "at",
                                 "amounts", "error"])
def test_check_event_refuses_a_missing_field(key: str) -> None:
    ev = good_event()
    del ev[key]
    with pytest.raises(ValueError):
        check_event(ev)


# ---------------------------------------------------------------- journal records


def test_old_records_without_reconcile_counters_load_as_zero() -> None:
    j = run(card_read(), jm.SubmitStarted(), jm.OutcomeUncertain("t/o"))
    rec = job_to_record(j)
    del rec["reconcile_reads"], rec["reconcile_attempts"]
    back = job_from_record(rec)
    assert (back.reconcile_reads, back.reconcile_attempts) == (0, 0)
    assert back == j


def test_records_keep_the_reconcile_counters() -> None:
    j = run(card_read(), jm.SubmitStarted(), jm.OutcomeUncertain("t/o"),
            jm.ReconcileMissed(settled=False), jm.ReconcileMissed(settled=True),
            jm.ReconcileMissed(settled=True))
    assert (j.reconcile_reads, j.reconcile_attempts) == (2, 3)
    assert job_from_record(job_to_record(j)) == j


@pytest.mark.parametrize(
    "stamp", ["2026-11-27T14:00:00Z", "2026-11-27T14:00:00+00:00",
              "2026-11-27T16:00:00+02:00", "2026-11-27T14:00:00.000000Z"],
)
def test_record_timestamps_are_read_as_utc(stamp: str) -> None:
    rec = job_to_record(card_read())
    rec.update(created_at=stamp, updated_at=stamp, expires_at=stamp, submitted_at=stamp)
    back = job_from_record(rec)
    for t in (back.created_at, back.updated_at, back.expires_at, back.submitted_at):
        assert t == T0
        assert t is not None and t.tzinfo is UTC


def test_records_without_optional_fields_load() -> None:
    rec = job_to_record(jm.start_job(cmd(appointment_id=None, expires_at=None),
                                        department_id="1", now=T0).job)
    for key in ("appointment_id", "expires_at", "card_brand", "card_last4", "epayment_id",
                "error_code", "error_message", "submitted_at"):
        rec.pop(key)
    back = job_from_record(rec)
    assert (back.appointment_id, back.expires_at, back.submitted_at, back.card_last4) == (
        None, None, None, None)


def test_a_record_with_a_bad_last4_is_refused() -> None:
    j = replace(card_read(), card_last4="41111111")
    with pytest.raises(ValueError):
        job_to_record(j)


# ---------------------------------------------------------------- what errors carry


def test_an_illegal_input_names_the_job_state_and_input() -> None:
    j = card_read()
    with pytest.raises(jm.IllegalInput) as err:
        jm.step(j, jm.Cancel(), T0)
    assert (err.value.job_id, err.value.state, err.value.input_type) == (
        "j-7", JobState.CARD_READ, jm.Cancel)
    assert err.value.code == Code.TOO_LATE


@pytest.mark.parametrize(
    "inp", [jm.NotSent(Code.ATHENA_UNAVAILABLE, "connect refused"),
            jm.Rejected(Code.ATHENA_REJECTED, "connect refused"),
            jm.OutcomeUncertain("connect refused")],
)
def test_the_reason_given_reaches_the_event(inp: object) -> None:
    j = run(card_read(), jm.SubmitStarted(), inp)
    assert "connect refused" in to_event(j)["error"]["message"]


@pytest.mark.parametrize(
    "inputs",
    [(jm.SubmitStarted(), jm.Restarted()),
     (jm.SubmitStarted(), jm.OutcomeUncertain("t/o"), jm.ReconcileGaveUp()),
     (jm.SubmitStarted(), jm.Restarted(), jm.ReconcileGaveUp())],
)
def test_every_error_event_says_something_of_its_own(inputs: tuple[object, ...]) -> None:
    before = run(card_read(), *inputs[:-1])
    after = run(before, inputs[-1])
    message = to_event(after)["error"]["message"]
    assert message.strip()
    # a new state's error is not the one left over from the state before
    assert before.error_message is None or message != before.error_message


def test_an_error_state_without_a_code_reports_internal_error() -> None:
    j = replace(run(card_read(), jm.SubmitStarted(), jm.Rejected(Code.ATHENA_REJECTED, "x")),
                error_code=None, error_message=None)
    assert to_event(j)["error"] == {"code": Code.INTERNAL_ERROR.value, "message": ""}


# ---------------------------------------------------------------- UTC whatever the zone


@pytest.fixture
def local_zone_not_utc(monkeypatch: pytest.MonkeyPatch) -> Any:
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_events_and_records_are_utc_in_any_local_zone(local_zone_not_utc: Any) -> None:
    east = timezone(timedelta(hours=3))
    j = jm.start_job(cmd(expires_at=EXPIRES.astimezone(east)), department_id="1",
                     now=T0.astimezone(east)).job
    j = run(j, jm.CardAccepted("visa", "1111"), jm.SubmitStarted())
    assert to_event(j)["at"] == "2026-11-27T14:00:02Z"
    assert format_seconds(T0.astimezone(east)) == "2026-11-27T14:00:00Z"
    rec = job_to_record(j)
    for key in ("created_at", "updated_at", "expires_at", "submitted_at"):
        assert rec[key].endswith("Z"), key
    assert rec["created_at"].startswith("2026-11-27T14:00:00")
    assert job_from_record(rec) == j


def test_a_record_with_a_foreign_value_is_refused() -> None:
    j = replace(card_read(), card_brand=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        job_to_record(j)


@pytest.mark.parametrize("key", ["created_at", "updated_at"])
def test_a_record_without_its_timestamps_is_refused(key: str) -> None:
    rec = job_to_record(card_read())
    rec[key] = None
    with pytest.raises(AssertionError):
        job_from_record(rec)
