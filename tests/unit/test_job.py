"""The charge job machine (lobbypay.core.job): table, step, events, records."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lobbypay.core import job as jm
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code
from lobbypay.core.job import JobState
from lobbypay.core.money import Cents
from lobbypay.core.protocol import check_event, to_event
from lobbypay.shell.journal_codec import job_from_record, job_to_record

T0 = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def cmd(**kw: object) -> ChargeStart:
    base: dict[str, object] = dict(
        request_id="r-1", job_id="j-1", patient_id="60178", department_id="1",
        appointment_id="1234", copay=Cents(2500),
        claims=(ClaimAmount("5569", Cents(4000)),), allow_duplicate=False, deadline_s=120,
        expires_at=datetime(2026, 11, 27, 15, 0, tzinfo=UTC),
    )
    base.update(kw)
    return ChargeStart(**base)  # type: ignore[arg-type]


def new_job() -> jm.Job:
    return jm.start_job(cmd(), department_id="1", now=T0).job


# one sample input per type, for walking the table
SAMPLES: dict[type, object] = {
    jm.CardAccepted: jm.CardAccepted("visa", "1111"),
    jm.SubmitStarted: jm.SubmitStarted(),
    jm.PaymentApproved: jm.PaymentApproved("123456"),
    jm.PaymentDeclined: jm.PaymentDeclined("Insufficient funds"),
    jm.NotSent: jm.NotSent(Code.ATHENA_UNAVAILABLE, "connect refused"),
    jm.Rejected: jm.Rejected(Code.ATHENA_REJECTED, "bad department"),
    jm.OutcomeUncertain: jm.OutcomeUncertain("read timeout"),
    jm.AttemptClosed: jm.AttemptClosed(T0 + timedelta(minutes=1)),
    jm.ReconcileFound: jm.ReconcileFound("777"),
    jm.ReconcileMissed: jm.ReconcileMissed(settled=True),
    jm.ReconcileGaveUp: jm.ReconcileGaveUp(),
    jm.Cancel: jm.Cancel(),
    jm.DeadlineHit: jm.DeadlineHit(),
    jm.Restarted: jm.Restarted(),
    jm.Voided: jm.Voided(),
}

# how to reach each state from a fresh job (a path of inputs)
PATHS: dict[JobState, list[object]] = {
    JobState.PENDING: [],
    JobState.CARD_READ: [SAMPLES[jm.CardAccepted]],
    JobState.SUBMITTING: [SAMPLES[jm.CardAccepted], jm.SubmitStarted()],
    JobState.UNKNOWN: [SAMPLES[jm.CardAccepted], jm.SubmitStarted(), jm.OutcomeUncertain("t/o")],
    JobState.SUCCEEDED: [SAMPLES[jm.CardAccepted], jm.SubmitStarted(), jm.PaymentApproved("1")],
    JobState.DECLINED: [SAMPLES[jm.CardAccepted], jm.SubmitStarted(), jm.PaymentDeclined("no")],
    JobState.FAILED: [SAMPLES[jm.CardAccepted], jm.SubmitStarted(),
                      jm.Rejected(Code.ATHENA_REJECTED, "x")],
    JobState.CANCELED: [jm.Cancel()],
    JobState.EXPIRED: [jm.DeadlineHit()],
    JobState.VOIDED: [SAMPLES[jm.CardAccepted], jm.SubmitStarted(), jm.PaymentApproved("1"),
                      jm.Voided()],
}


def job_in(state: JobState) -> jm.Job:
    j = new_job()
    for i, inp in enumerate(PATHS[state]):
        j = jm.step(j, inp, T0 + timedelta(seconds=i + 1)).job  # type: ignore[arg-type]
    assert j.state is state
    return j


# the table, written out independently of TRANSITIONS (spec §5 + issue rules)
EXPECTED = {
    (JobState.PENDING, jm.CardAccepted): JobState.CARD_READ,
    (JobState.PENDING, jm.Cancel): JobState.CANCELED,
    (JobState.PENDING, jm.DeadlineHit): JobState.EXPIRED,
    (JobState.PENDING, jm.Restarted): JobState.EXPIRED,
    (JobState.CARD_READ, jm.SubmitStarted): JobState.SUBMITTING,
    (JobState.CARD_READ, jm.NotSent): JobState.FAILED,
    (JobState.CARD_READ, jm.Restarted): JobState.EXPIRED,
    (JobState.SUBMITTING, jm.PaymentApproved): JobState.SUCCEEDED,
    (JobState.SUBMITTING, jm.PaymentDeclined): JobState.DECLINED,
    (JobState.SUBMITTING, jm.NotSent): JobState.FAILED,
    (JobState.SUBMITTING, jm.Rejected): JobState.FAILED,
    (JobState.SUBMITTING, jm.OutcomeUncertain): JobState.UNKNOWN,
    (JobState.SUBMITTING, jm.Restarted): JobState.UNKNOWN,
    (JobState.UNKNOWN, jm.AttemptClosed): JobState.UNKNOWN,
    (JobState.UNKNOWN, jm.ReconcileFound): JobState.SUCCEEDED,
    (JobState.UNKNOWN, jm.ReconcileMissed): JobState.UNKNOWN,
    (JobState.UNKNOWN, jm.ReconcileGaveUp): JobState.FAILED,
    # protocol 10: staff void a succeeded payment; the only edge out of a final state
    (JobState.SUCCEEDED, jm.Voided): JobState.VOIDED,
}


@pytest.mark.parametrize("state", list(JobState), ids=str)
@pytest.mark.parametrize("input_type", jm.INPUT_TYPES, ids=lambda t: t.__name__)
def test_every_state_input_pair(state: JobState, input_type: type) -> None:
    j = job_in(state)
    inp = SAMPLES[input_type]
    expected = EXPECTED.get((state, input_type))
    assert jm.TRANSITIONS[state].get(input_type) == expected
    assert jm.accepts(state, input_type) == (expected is not None)
    if expected is None:
        before = j
        with pytest.raises(jm.IllegalInput) as ei:
            jm.step(j, inp, T0 + timedelta(minutes=5))  # type: ignore[arg-type]
        assert ei.value.state is state and ei.value.input_type is input_type
        assert j == before and j.state is state  # nothing changed
        return
    st = jm.step(j, inp, T0 + timedelta(minutes=5))  # type: ignore[arg-type]
    assert st.job.state is expected
    if expected is state:
        assert st.events == () and st.job.seq == j.seq
    else:
        assert len(st.events) == 1
        assert st.job.seq == j.seq + 1
        assert st.events[0] == to_event(st.job)
        assert st.events[0]["seq"] == st.job.seq
    assert j.state is state  # the input job object itself is never mutated


def test_final_states_accept_nothing_but_the_void() -> None:
    for s in jm.FINAL_STATES - {JobState.SUCCEEDED}:
        assert jm.TRANSITIONS[s] == {}
    assert jm.TRANSITIONS[JobState.SUCCEEDED] == {jm.Voided: JobState.VOIDED}
    assert JobState.VOIDED in jm.FINAL_STATES
    assert JobState.UNKNOWN not in jm.FINAL_STATES
    assert JobState.UNKNOWN not in jm.ACTIVE_STATES  # unknown frees the terminal
    assert set(jm.TRANSITIONS) == set(JobState)


@pytest.mark.parametrize("state,code", [
    (JobState.CARD_READ, Code.TOO_LATE),
    (JobState.SUBMITTING, Code.TOO_LATE),
    (JobState.UNKNOWN, Code.TOO_LATE),
    (JobState.SUCCEEDED, Code.NOT_ACTIVE),
    (JobState.DECLINED, Code.NOT_ACTIVE),
    (JobState.CANCELED, Code.NOT_ACTIVE),
    (JobState.EXPIRED, Code.NOT_ACTIVE),
    (JobState.FAILED, Code.NOT_ACTIVE),
])
def test_cancel_refusal_codes(state: JobState, code: Code) -> None:
    with pytest.raises(jm.IllegalInput) as ei:
        jm.step(job_in(state), jm.Cancel(), T0)
    assert ei.value.code is code


def test_engine_only_inputs_map_to_internal_error() -> None:
    with pytest.raises(jm.IllegalInput) as ei:
        jm.step(new_job(), jm.PaymentApproved("1"), T0)
    assert ei.value.code is Code.INTERNAL_ERROR


def test_first_event_is_pending_seq_1_golden() -> None:
    st = jm.start_job(cmd(), department_id="1", now=T0)
    assert st.events == ({
        "v": 1, "type": "charge.event", "job_id": "j-1", "seq": 1, "state": "pending",
        "final": False, "at": "2026-11-27T14:00:00Z",
        "amounts": {"copay": "25.00", "other": "40.00", "total": "65.00",
                    "claims": [{"claim_id": "5569", "amount": "40.00"}]},
        "error": None,
    },)


def test_succeeded_event_golden() -> None:
    j = new_job()
    j = jm.step(j, jm.CardAccepted("visa", "1111"), T0 + timedelta(seconds=3)).job
    j = jm.step(j, jm.SubmitStarted(), T0 + timedelta(seconds=4)).job
    assert j.submitted_at == T0 + timedelta(seconds=4)
    st = jm.step(j, jm.PaymentApproved("123456"), T0 + timedelta(seconds=7))
    assert st.events[0] == {
        "v": 1, "type": "charge.event", "job_id": "j-1", "seq": 4, "state": "succeeded",
        "final": True, "at": "2026-11-27T14:00:07Z",
        "card": {"brand": "visa", "last4": "1111"},
        "amounts": {"copay": "25.00", "other": "40.00", "total": "65.00",
                    "claims": [{"claim_id": "5569", "amount": "40.00"}]},
        "epayment_id": "123456",
        "error": None,
    }


@pytest.mark.parametrize("state,code", [
    (JobState.DECLINED, "declined"),
    (JobState.FAILED, "athena_rejected"),
    (JobState.CANCELED, "canceled"),
    (JobState.EXPIRED, "expired"),
    (JobState.UNKNOWN, "outcome_unknown"),
])
def test_error_states_carry_error(state: JobState, code: str) -> None:
    ev = to_event(job_in(state))
    assert ev["error"]["code"] == code and ev["error"]["message"]
    assert ev["final"] is (state is not JobState.UNKNOWN)
    assert "epayment_id" not in ev


def test_declined_message_is_athena_errortext() -> None:
    ev = to_event(job_in(JobState.DECLINED))
    assert ev["error"] == {"code": "declined", "message": "no"}


def test_card_appears_only_once_read() -> None:
    assert "card" not in to_event(job_in(JobState.PENDING))
    assert "card" not in to_event(job_in(JobState.CANCELED))
    assert to_event(job_in(JobState.CARD_READ))["card"] == {"brand": "visa", "last4": "1111"}


def test_restart_paths() -> None:
    e = jm.step(job_in(JobState.PENDING), jm.Restarted(), T0).job
    assert (e.state, e.error_code) == (JobState.EXPIRED, "agent_restarted")
    e = jm.step(job_in(JobState.CARD_READ), jm.Restarted(), T0).job
    assert (e.state, e.error_code) == (JobState.EXPIRED, "agent_restarted")
    u = jm.step(job_in(JobState.SUBMITTING), jm.Restarted(), T0).job
    assert (u.state, u.error_code, u.final) == (JobState.UNKNOWN, "outcome_unknown", False)


def test_reconcile_bookkeeping() -> None:
    u = job_in(JobState.UNKNOWN)
    u1 = jm.step(u, jm.ReconcileMissed(settled=False), T0).job
    assert (u1.reconcile_reads, u1.reconcile_attempts, u1.seq) == (0, 1, u.seq)
    u2 = jm.step(u1, jm.ReconcileMissed(settled=True), T0).job
    assert (u2.reconcile_reads, u2.reconcile_attempts) == (1, 2)
    f = jm.step(u2, jm.ReconcileGaveUp(), T0).job
    assert (f.state, f.error_code, f.seq) == (JobState.FAILED, "not_charged", u.seq + 1)
    s = jm.step(u, jm.ReconcileFound("999"), T0)
    assert s.events[0]["epayment_id"] == "999" and s.events[0]["error"] is None


def test_deadline_at_and_totals() -> None:
    j = new_job()
    assert j.deadline_at == T0 + timedelta(seconds=120)
    assert (j.copay, j.other, j.total) == (2500, 4000, 6500)


def test_naive_now_refused() -> None:
    with pytest.raises(TypeError):
        jm.step(new_job(), jm.Cancel(), datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize("last4", ["111", "11111", "abcd", "4111111111111111"])
def test_card_accepted_takes_only_last4(last4: str) -> None:
    with pytest.raises(ValueError):
        jm.CardAccepted("visa", last4)


def test_record_round_trip_for_every_state() -> None:
    for state in JobState:
        j = job_in(state)
        rec = job_to_record(j)
        json.dumps(rec)  # plain JSON
        assert job_from_record(json.loads(json.dumps(rec))) == j


def test_check_event_refuses_foreign_things() -> None:
    good = to_event(job_in(JobState.CARD_READ))
    check_event(good)

    class FakeCard:
        def __repr__(self) -> str:
            return "<card>"

    bad_variants = [
        {**good, "card": FakeCard()},
        {**good, "card": {"brand": "visa", "last4": "1111", "pan": "4111111111111111"}},
        {**good, "card": {"brand": "visa", "last4": "4111111111111111"}},
        {**good, "trackdata": ";4111111111111111=3012?"},
        {**good, "amounts": {**good["amounts"], "x": FakeCard()}},
        {**good, "seq": "2"},
        {**good, "error": "oops"},
        "not a dict",
    ]
    for bad in bad_variants:
        with pytest.raises(ValueError):
            check_event(bad)


def test_body_key_ignores_request_id_and_sees_everything_else() -> None:
    a = jm.body_key_of(cmd())
    assert jm.body_key_of(cmd(request_id="other")) == a
    for change in [dict(copay=Cents(2501)), dict(claims=()), dict(allow_duplicate=True),
                   dict(deadline_s=60), dict(expires_at=None), dict(patient_id="1"),
                   dict(appointment_id=None), dict(department_id=None)]:
        assert jm.body_key_of(cmd(**change)) != a, change


def test_illegal_error_message_names_state_and_input() -> None:
    with pytest.raises(jm.IllegalInput, match="can't handle PaymentApproved in state pending"):
        jm.step(new_job(), jm.PaymentApproved("1"), T0)


def test_mermaid_and_table_come_from_transitions() -> None:
    mer = jm.render_mermaid()
    for state, edges in jm.TRANSITIONS.items():
        for inp, nxt in edges.items():
            assert f"{state.value} --> {nxt.value}: {inp.__name__}" in mer
    table = jm.render_table()
    assert table.count("\n") == len(JobState) + 1


def test_docs_diagram_is_current() -> None:
    """docs/jobs.md embeds the generated diagram and table; regenerate with
    `python -m lobbypay.core.job` if this fails."""
    doc = (ROOT / "docs" / "jobs.md").read_text()
    assert jm.render_mermaid() in doc
    assert jm.render_table() in doc


def test_core_job_and_screen_import_no_io() -> None:
    code = (
        "import sys; import lobbypay.core.job, lobbypay.core.screen;"
        "bad = {'asyncio','sqlite3','httpx','aiomqtt','serial','evdev','socket'}"
        " & set(sys.modules);"
        "print(sorted(bad))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": f"{ROOT / 'agent'}:{ROOT / 'drivers'}"},
    ).stdout.strip()
    assert out == "[]"


def test_voided_event_keeps_card_amounts_and_payment() -> None:
    ok = job_in(JobState.SUCCEEDED)
    st = jm.step(ok, jm.Voided(), T0 + timedelta(hours=1))
    ev = st.events[0]
    assert ev["state"] == "voided" and ev["final"] is True
    assert ev["seq"] == ok.seq + 1
    assert ev["card"] == {"brand": "visa", "last4": "1111"}
    assert ev["epayment_id"] == ok.epayment_id == "1"
    assert ev["amounts"] == to_event(ok)["amounts"]
    assert ev["error"] is None


@pytest.mark.parametrize("state", [s for s in JobState if s is not JobState.SUCCEEDED], ids=str)
def test_only_a_succeeded_job_can_be_voided(state: JobState) -> None:
    with pytest.raises(jm.IllegalInput) as ei:
        jm.step(job_in(state), jm.Voided(), T0 + timedelta(hours=1))
    assert ei.value.code is Code.NOT_VOIDABLE


def test_language_is_kept_and_not_part_of_the_body_key() -> None:
    j = job_in(JobState.SUCCEEDED)
    es = dataclasses.replace(j, language="es")
    assert job_from_record(json.loads(json.dumps(job_to_record(es)))).language == "es"
    rec = job_to_record(j)
    del rec["language"]  # a job journaled before the field existed
    assert job_from_record(rec).language == "en"
