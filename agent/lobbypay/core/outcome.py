"""What an athena call's outcome means (pure): the job input a payment POST's result or
error becomes, the reply a failed read or staff call gets, and what each says about
athena itself (``state.athena``).

The engine makes the call, catches whatever comes back (a result, an ``AthenaError``, its
own ``TimeoutError`` deadline, or, for the POST, any other exception) and asks here.
Every rule reads the error's ``code`` (``lobbypay.core.athena``), never a chain of
``except`` clauses:

==============================  ==========================  ==========================
error ``code``                  payment POST -> job input   read -> reply code
==============================  ==========================  ==========================
``athena_unavailable``          ``NotSent`` (``failed``)    ``athena_unavailable``
``athena_rejected``             ``Rejected`` (``failed``)   ``athena_unavailable``
``athena_bad_response``         ``OutcomeUncertain``        ``athena_bad_response``
``outcome_unknown`` (and any    ``OutcomeUncertain``        ``athena_unavailable``
other)                          (``unknown``: reconcile)
==============================  ==========================  ==========================

``NotFound`` on a read names what was missing (``patient_not_found``,
``appointment_not_found``): athena answered, so it counts as athena being up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lobbypay.core import job as jm
from lobbypay.core.athena import Approved, AthenaError, Declined, NotFound, PaymentResult
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.text import QUOTE_MAX, printable

#: Longest errortext a declined job keeps (the job clips its messages to this too).
DECLINE_TEXT_MAX_CHARS = 200



# ---------------------------------------------------------------- what athena's health is


@dataclass(frozen=True, slots=True)
class Answered:
    """athena answered (whatever it said): ``state.athena.last_ok_at`` moves on and the
    standing ``last_error`` is cleared."""


@dataclass(frozen=True, slots=True)
class Failed:
    """athena could not be used: ``state.athena.last_error`` becomes ``code``/``message``."""

    code: Code
    message: str


#: What one call says about athena; None: nothing (the call failed inside the agent).
AthenaNote = Answered | Failed | None

ANSWERED = Answered()

#: The codes a failed read reports as they are; every other error reads as
#: ``athena_unavailable`` (a refusal or an unclear answer: athena could not be used).
_READ_CODES = frozenset({Code.ATHENA_UNAVAILABLE, Code.ATHENA_BAD_RESPONSE})


def read_code(exc: AthenaError) -> Code:
    """The code a failed athena read (or start-up check) reports for ``exc``."""
    return exc.code if exc.code in _READ_CODES else Code.ATHENA_UNAVAILABLE


# ---------------------------------------------------------------- the payment POST


@dataclass(frozen=True, slots=True)
class PaymentVerdict:
    """The job input a POST's outcome becomes, and what it says about athena."""

    input: jm.PaymentInput
    athena: AthenaNote


def payment_input(outcome: PaymentResult | Exception, *, posted: bool,
                  attempt_end: datetime | None) -> PaymentVerdict:
    """The input for a job whose payment POST ended with ``outcome``.

    ``outcome``: athena's result, or what the call raised (an ``AthenaError``, the
    engine's own ``TimeoutError`` backstop, any other exception). ``posted``: the call was
    made (False: the request could not even be built, so nothing left). ``attempt_end``:
    the latest athena-clock time the attempt can have ended by, kept on an ``unknown`` job
    for reconciliation (None: athena's clock is not known).
    """
    match outcome:
        case Approved(epayment_id=eid):
            return PaymentVerdict(jm.PaymentApproved(str(eid)), ANSWERED)
        case Declined(errortext=text):
            return PaymentVerdict(jm.PaymentDeclined(printable(text, DECLINE_TEXT_MAX_CHARS)),
                                  ANSWERED)
        case AthenaError(message=msg, code=Code.ATHENA_UNAVAILABLE):
            return PaymentVerdict(
                jm.NotSent(Code.ATHENA_UNAVAILABLE,
                           f"athena unreachable: {printable(msg, QUOTE_MAX)}"),
                Failed(Code.ATHENA_UNAVAILABLE, msg))
        case AthenaError(message=msg, code=Code.ATHENA_REJECTED):
            return PaymentVerdict(
                jm.Rejected(Code.ATHENA_REJECTED, f"athena refused: {printable(msg, QUOTE_MAX)}"),
                Failed(Code.ATHENA_REJECTED, msg))
        case AthenaError(message=msg):  # outcome_unknown, bad_response: may have landed
            return PaymentVerdict(jm.OutcomeUncertain(printable(msg, QUOTE_MAX), attempt_end),
                                  Failed(Code.OUTCOME_UNKNOWN, msg))
        case TimeoutError():
            return PaymentVerdict(
                jm.OutcomeUncertain("no answer from athena in time", attempt_end),
                Failed(Code.OUTCOME_UNKNOWN, "POST timed out"))
        case Exception() if posted:  # any other failure once the call was made: sent?
            return PaymentVerdict(
                jm.OutcomeUncertain(f"payment call failed ({type(outcome).__name__})",
                                    attempt_end), None)
        case Exception():
            return PaymentVerdict(
                jm.NotSent(Code.INTERNAL_ERROR, "could not build the payment request"), None)
        case _:  # a client that answered something else: it did answer, but what?
            return PaymentVerdict(
                jm.OutcomeUncertain("unexpected result type from the athena client"),
                ANSWERED)


# ---------------------------------------------------------------- reads


#: What a read looked up (the wording of its replies, and which ``*_not_found``).
ReadTarget = Literal["patient", "appointment"]

_NOT_FOUND: Mapping[ReadTarget, Code] = {
    "patient": Code.PATIENT_NOT_FOUND,
    "appointment": Code.APPOINTMENT_NOT_FOUND,
}


@dataclass(frozen=True, slots=True)
class CallFailure:
    """A failed athena call as the command's reply (``error``) and as athena's health."""

    error: DomainError
    athena: AthenaNote


def read_error(exc: AthenaError | TimeoutError, what: ReadTarget,
               timeout_s: float) -> CallFailure:
    """The reply to a command whose athena read of ``what`` failed with ``exc`` (the
    engine's own deadline of ``timeout_s`` is a ``TimeoutError``)."""
    if isinstance(exc, NotFound):
        return CallFailure(DomainError(_NOT_FOUND[what], f"athena has no such {what}"),
                           ANSWERED)
    if isinstance(exc, TimeoutError):
        return CallFailure(
            DomainError(Code.ATHENA_UNAVAILABLE, f"athena did not answer the {what} read "
                        f"within {timeout_s:g} s"),
            Failed(Code.ATHENA_UNAVAILABLE, f"{what} read timed out"))
    code = read_code(exc)
    match exc.code:
        case Code.ATHENA_UNAVAILABLE:
            message = f"athena unavailable: {printable(exc.message, QUOTE_MAX)}"
        case Code.ATHENA_BAD_RESPONSE:
            message = f"athena's {what} answer was unreadable"
        case _:
            message = f"athena refused the {what} read: {printable(exc.message, QUOTE_MAX)}"
    return CallFailure(DomainError(code, message), Failed(code, exc.message))


def receipts_error(exc: AthenaError | TimeoutError) -> Failed:
    """A reconciliation's receipts read that failed: athena could not be used (the job
    stays ``unknown`` and the read is tried again)."""
    return Failed(Code.ATHENA_UNAVAILABLE,
                  exc.message if isinstance(exc, AthenaError) else "timed out")


# ---------------------------------------------------------------- staff calls


def _staff_call_error(exc: AthenaError | TimeoutError, *, rejected: Code,
                      unconfirmed: str) -> CallFailure:
    """A void or receipt email athena refused (``rejected``, with its reason), or did not
    confirm (``athena_unavailable``: asking again is safe, athena does it at most once)."""
    if isinstance(exc, AthenaError) and exc.code is Code.ATHENA_REJECTED:
        return CallFailure(DomainError(rejected, printable(exc.message, 200)), ANSWERED)
    msg = exc.message if isinstance(exc, AthenaError) else "no answer in time"
    return CallFailure(DomainError(Code.ATHENA_UNAVAILABLE, unconfirmed),
                       Failed(Code.ATHENA_UNAVAILABLE, msg))


def void_error(exc: AthenaError | TimeoutError) -> CallFailure:
    """The reply to a ``charge.void`` whose athena call failed with ``exc``."""
    return _staff_call_error(exc, rejected=Code.VOID_REJECTED, unconfirmed=(
        "athena did not confirm the void; sending charge.void again is safe"))


def email_error(exc: AthenaError | TimeoutError) -> CallFailure:
    """The reply to a ``receipt.email`` whose athena call failed with ``exc``."""
    return _staff_call_error(exc, rejected=Code.ATHENA_REJECTED,
                             unconfirmed="athena did not confirm the receipt email")
