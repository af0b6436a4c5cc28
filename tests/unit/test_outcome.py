"""What an athena call's outcome means (lobbypay.core.outcome): every athena error class's
code, the job input each payment outcome becomes, the reply each failed read or staff call
gets, and what each says about athena (state.athena)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest
from lobbypay.core import athena as ath
from lobbypay.core import job as jm
from lobbypay.core import outcome as oc
from lobbypay.core.errors import Code

END = datetime(2026, 11, 27, 14, 0, 9, tzinfo=UTC)

#: every error class of lobbypay.core.athena -> its protocol code
CODES: dict[type[ath.AthenaError], Code] = {
    ath.AthenaError: Code.OUTCOME_UNKNOWN,
    ath.AthenaUnavailable: Code.ATHENA_UNAVAILABLE,
    ath.AthenaThrottled: Code.ATHENA_UNAVAILABLE,
    ath.OutcomeUnknown: Code.OUTCOME_UNKNOWN,
    ath.AthenaRejected: Code.ATHENA_REJECTED,
    ath.NotFound: Code.ATHENA_REJECTED,
    ath.AthenaAuthError: Code.ATHENA_REJECTED,
    ath.AthenaBadResponse: Code.ATHENA_BAD_RESPONSE,
    ath.AthenaParseError: Code.ATHENA_BAD_RESPONSE,
    ath.OutcomeUnknownText: Code.OUTCOME_UNKNOWN,
}


def test_the_table_covers_every_athena_error_class() -> None:
    found = {c for _, c in inspect.getmembers(ath, inspect.isclass)
             if issubclass(c, ath.AthenaError) and c.__module__ == ath.__name__}
    assert found == set(CODES)


@pytest.mark.parametrize(("cls", "code"), CODES.items(), ids=lambda v: getattr(v, "__name__", v))
def test_each_error_class_carries_its_code(cls: type[ath.AthenaError], code: Code) -> None:
    assert cls.code is code
    assert cls("x").code is code


# ---------------------------------------------------------------- the payment POST

#: error class -> (job input type, its error code on the job, the code state.athena records)
PAYMENT: dict[type[ath.AthenaError], tuple[type[jm.PaymentInput], Code, Code]] = {
    ath.AthenaError: (jm.OutcomeUncertain, Code.OUTCOME_UNKNOWN, Code.OUTCOME_UNKNOWN),
    ath.AthenaUnavailable: (jm.NotSent, Code.ATHENA_UNAVAILABLE, Code.ATHENA_UNAVAILABLE),
    ath.AthenaThrottled: (jm.NotSent, Code.ATHENA_UNAVAILABLE, Code.ATHENA_UNAVAILABLE),
    ath.OutcomeUnknown: (jm.OutcomeUncertain, Code.OUTCOME_UNKNOWN, Code.OUTCOME_UNKNOWN),
    ath.AthenaRejected: (jm.Rejected, Code.ATHENA_REJECTED, Code.ATHENA_REJECTED),
    ath.NotFound: (jm.Rejected, Code.ATHENA_REJECTED, Code.ATHENA_REJECTED),
    ath.AthenaAuthError: (jm.Rejected, Code.ATHENA_REJECTED, Code.ATHENA_REJECTED),
    ath.AthenaBadResponse: (jm.OutcomeUncertain, Code.OUTCOME_UNKNOWN, Code.OUTCOME_UNKNOWN),
    ath.AthenaParseError: (jm.OutcomeUncertain, Code.OUTCOME_UNKNOWN, Code.OUTCOME_UNKNOWN),
    ath.OutcomeUnknownText: (jm.OutcomeUncertain, Code.OUTCOME_UNKNOWN, Code.OUTCOME_UNKNOWN),
}
assert set(PAYMENT) == set(CODES)

_MESSAGES = {
    jm.NotSent: "athena unreachable: boom",
    jm.Rejected: "athena refused: boom",
    jm.OutcomeUncertain: "boom",
}


@pytest.mark.parametrize(("cls", "expected"), PAYMENT.items(),
                         ids=lambda v: getattr(v, "__name__", ""))
def test_every_athena_error_becomes_its_payment_input(
    cls: type[ath.AthenaError], expected: tuple[type[jm.PaymentInput], Code, Code]
) -> None:
    input_type, job_code, athena_code = expected
    v = oc.payment_input(cls("boom"), posted=True, attempt_end=END)
    assert type(v.input) is input_type
    assert v.athena == oc.Failed(athena_code, "boom")
    match v.input:
        case jm.NotSent(code=code, message=msg) | jm.Rejected(code=code, message=msg):
            assert (code, msg) == (job_code, _MESSAGES[input_type])
        case jm.OutcomeUncertain(message=msg, athena_to=to):
            assert (msg, to) == ("boom", END)
        case _:
            pytest.fail(f"unexpected input {v.input!r}")


def test_only_the_certainly_unsent_and_the_refused_fail_the_job() -> None:
    # the rule the charge-once guarantee rests on: every other error may have landed
    for cls, (input_type, _, _) in PAYMENT.items():
        safe = issubclass(cls, ath.AthenaUnavailable | ath.AthenaRejected)
        assert (input_type is not jm.OutcomeUncertain) is safe, cls


def test_a_job_in_submitting_accepts_every_payment_input() -> None:
    for input_type, _, _ in PAYMENT.values():
        assert jm.accepts(jm.JobState.SUBMITTING, input_type)


def test_results_become_approved_and_declined() -> None:
    v = oc.payment_input(ath.Approved("900001"), posted=True, attempt_end=None)
    assert v == oc.PaymentVerdict(jm.PaymentApproved("900001"), oc.ANSWERED)
    v = oc.payment_input(ath.Declined("Insufficient\nfunds"), posted=True, attempt_end=None)
    assert v == oc.PaymentVerdict(jm.PaymentDeclined("Insufficient funds"), oc.ANSWERED)
    long = oc.payment_input(ath.Declined("d" * 300), posted=True, attempt_end=None).input
    assert isinstance(long, jm.PaymentDeclined) and len(long.errortext) == 200


def test_our_own_deadline_is_an_uncertain_outcome() -> None:
    v = oc.payment_input(TimeoutError(), posted=True, attempt_end=END)
    assert v == oc.PaymentVerdict(jm.OutcomeUncertain("no answer from athena in time", END),
                                  oc.Failed(Code.OUTCOME_UNKNOWN, "POST timed out"))


def test_a_failure_inside_the_agent_depends_on_whether_the_post_was_made() -> None:
    sent = oc.payment_input(RuntimeError("bug"), posted=True, attempt_end=END)
    assert sent == oc.PaymentVerdict(
        jm.OutcomeUncertain("payment call failed (RuntimeError)", END), None)
    unsent = oc.payment_input(KeyError("x"), posted=False, attempt_end=END)
    assert unsent == oc.PaymentVerdict(
        jm.NotSent(Code.INTERNAL_ERROR, "could not build the payment request"), None)


def test_a_result_of_another_type_is_uncertain() -> None:
    v = oc.payment_input(object(), posted=True, attempt_end=END)  # type: ignore[arg-type]
    assert v == oc.PaymentVerdict(
        jm.OutcomeUncertain("unexpected result type from the athena client"), oc.ANSWERED)


def test_peer_text_in_a_payment_input_is_cleaned() -> None:
    v = oc.payment_input(ath.AthenaUnavailable("a\x1b[2Jb" + "x" * 300), posted=True,
                         attempt_end=None)
    assert isinstance(v.input, jm.NotSent)
    assert "\x1b" not in v.input.message and v.input.message.endswith("...")
    assert len(v.input.message) == len("athena unreachable: ") + 160


# ---------------------------------------------------------------- reads

#: error class -> (reply code, reply message for a patient read, state.athena's code)
READS: dict[type[ath.AthenaError], tuple[Code, str, Code | None]] = {
    ath.AthenaError: (Code.ATHENA_UNAVAILABLE, "athena refused the patient read: boom",
                      Code.ATHENA_UNAVAILABLE),
    ath.AthenaUnavailable: (Code.ATHENA_UNAVAILABLE, "athena unavailable: boom",
                            Code.ATHENA_UNAVAILABLE),
    ath.AthenaThrottled: (Code.ATHENA_UNAVAILABLE, "athena unavailable: boom",
                          Code.ATHENA_UNAVAILABLE),
    ath.OutcomeUnknown: (Code.ATHENA_UNAVAILABLE, "athena refused the patient read: boom",
                         Code.ATHENA_UNAVAILABLE),
    ath.AthenaRejected: (Code.ATHENA_UNAVAILABLE, "athena refused the patient read: boom",
                         Code.ATHENA_UNAVAILABLE),
    ath.NotFound: (Code.PATIENT_NOT_FOUND, "athena has no such patient", None),
    ath.AthenaAuthError: (Code.ATHENA_UNAVAILABLE, "athena refused the patient read: boom",
                          Code.ATHENA_UNAVAILABLE),
    ath.AthenaBadResponse: (Code.ATHENA_BAD_RESPONSE, "athena's patient answer was unreadable",
                            Code.ATHENA_BAD_RESPONSE),
    ath.AthenaParseError: (Code.ATHENA_BAD_RESPONSE, "athena's patient answer was unreadable",
                           Code.ATHENA_BAD_RESPONSE),
    ath.OutcomeUnknownText: (Code.ATHENA_UNAVAILABLE, "athena refused the patient read: boom",
                             Code.ATHENA_UNAVAILABLE),
}
assert set(READS) == set(CODES)


@pytest.mark.parametrize(("cls", "expected"), READS.items(),
                         ids=lambda v: getattr(v, "__name__", ""))
def test_every_athena_error_on_a_read_gets_its_reply(
    cls: type[ath.AthenaError], expected: tuple[Code, str, Code | None]
) -> None:
    code, message, athena_code = expected
    f = oc.read_error(cls("boom"), "patient", 0.5)
    assert (f.error.code, f.error.message) == (code, message)
    assert f.athena == (oc.ANSWERED if athena_code is None else oc.Failed(athena_code, "boom"))
    if athena_code is not None:
        # the start-up check records the same code as a read
        assert oc.read_code(cls("boom")) is athena_code


def test_not_found_names_what_was_read() -> None:
    f = oc.read_error(ath.NotFound("nope"), "appointment", 0.5)
    assert (f.error.code, f.error.message) == (Code.APPOINTMENT_NOT_FOUND,
                                               "athena has no such appointment")
    bad = oc.read_error(ath.AthenaBadResponse("html"), "appointment", 0.5)
    assert bad.error.message == "athena's appointment answer was unreadable"


def test_a_read_past_its_deadline() -> None:
    f = oc.read_error(TimeoutError(), "patient", 2.5)
    assert (f.error.code, f.error.message) == (
        Code.ATHENA_UNAVAILABLE, "athena did not answer the patient read within 2.5 s")
    assert f.athena == oc.Failed(Code.ATHENA_UNAVAILABLE, "patient read timed out")


# ---------------------------------------------------------------- staff calls


@pytest.mark.parametrize("cls", CODES, ids=lambda c: c.__name__)
def test_a_void_is_refused_or_unconfirmed(cls: type[ath.AthenaError]) -> None:
    v = oc.void_error(cls("too late to void"))
    e = oc.email_error(cls("too late to void"))
    if cls.code is Code.ATHENA_REJECTED:
        assert (v.error.code, v.error.message) == (Code.VOID_REJECTED, "too late to void")
        assert (e.error.code, e.error.message) == (Code.ATHENA_REJECTED, "too late to void")
        assert v.athena == e.athena == oc.ANSWERED
    else:
        assert (v.error.code, v.error.message) == (
            Code.ATHENA_UNAVAILABLE,
            "athena did not confirm the void; sending charge.void again is safe")
        assert (e.error.code, e.error.message) == (
            Code.ATHENA_UNAVAILABLE, "athena did not confirm the receipt email")
        assert v.athena == e.athena == oc.Failed(Code.ATHENA_UNAVAILABLE, "too late to void")


def test_a_staff_call_past_its_deadline() -> None:
    f = oc.void_error(TimeoutError())
    assert f.error.code is Code.ATHENA_UNAVAILABLE
    assert f.athena == oc.Failed(Code.ATHENA_UNAVAILABLE, "no answer in time")


@pytest.mark.parametrize("cls", CODES, ids=lambda c: c.__name__)
def test_a_failed_receipts_read_leaves_athena_unavailable(cls: type[ath.AthenaError]) -> None:
    assert oc.receipts_error(cls("boom")) == oc.Failed(Code.ATHENA_UNAVAILABLE, "boom")
    assert oc.receipts_error(TimeoutError()) == oc.Failed(Code.ATHENA_UNAVAILABLE, "timed out")
