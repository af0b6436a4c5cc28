"""The charge job state machine (pure: no I/O, no clock reads; time is passed in).

Rules, h11-style:

1. Everything that decides a job's state lives in this file: the ``TRANSITIONS`` table
   and ``step``. The engine (``lobbypay.engine``) only feeds inputs and carries out what
   a step asks for (journal, display, athena).
2. ``step`` validates first and mutates nothing on a miss: an input the table does not
   allow in the job's state raises ``IllegalInput`` and the job is unchanged (``Job`` is
   frozen; a step returns a new one).
3. One event per state change. ``seq`` rises by one per event; the first event is
   ``pending`` with ``seq`` 1 (``start_job``). An input that keeps the state
   (``ReconcileMissed``) updates bookkeeping and emits no event.
4. Card data never enters a ``Job``: only brand and last 4 (``CardAccepted``). A job's
   fields are plain str/int/bool/None/datetime values, and the event
   (``lobbypay.core.protocol.to_event``) and the journal's record
   (``lobbypay.shell.journal_codec``) refuse anything else.

What a job looks like on the wire is not here: ``lobbypay.core.protocol`` builds its
events (``step`` returns them) and names the states as events spell them; ``JobState``
must have one member per name (checked below).

Protocol references: protocol.md section 5 (states, events), 4 (cancel), 6 (unknown and
reconciliation). docs/jobs.md shows the table as a diagram (``render_mermaid``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code
from lobbypay.core.money import Cents
from lobbypay.core.protocol import FINAL_JOB_STATES, JOB_STATES, format_seconds, to_event
from lobbypay.core.text import printable

#: Longest error message a job keeps (and its events carry).
_MESSAGE_MAX = 200


class JobState(StrEnum):
    PENDING = "pending"
    CARD_READ = "card_read"
    SUBMITTING = "submitting"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    VOIDED = "voided"  # a succeeded job whose payment staff voided (protocol 10)


FINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.DECLINED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED,
     JobState.VOIDED}
)
#: States that hold the terminal (protocol 4: "another job active"). ``unknown`` frees it.
ACTIVE_STATES: frozenset[JobState] = frozenset(
    {JobState.PENDING, JobState.CARD_READ, JobState.SUBMITTING}
)
# the states as the protocol names them: one member each, final exactly where it says
assert tuple(JobState) == JOB_STATES
assert FINAL_STATES == FINAL_JOB_STATES


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class CardAccepted:
    """A usable, unexpired card was swiped. Only brand and last 4 come along."""

    brand: str
    last4: str

    def __post_init__(self) -> None:
        if not (isinstance(self.last4, str) and len(self.last4) == 4 and self.last4.isdigit()):
            raise ValueError("last4 must be exactly 4 digits")
        if not (isinstance(self.brand, str) and 0 < len(self.brand) <= 20):
            raise ValueError("brand must be a short name")


@dataclass(frozen=True, slots=True)
class SubmitStarted:
    """The POST is about to be sent (the point of no return). ``athena_from``: the
    earliest athena-clock time it can leave at (None: athena's clock is not known)."""

    athena_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentApproved:
    """athena approved the POST (``lobbypay.core.athena.Approved``)."""

    epayment_id: str


@dataclass(frozen=True, slots=True)
class PaymentDeclined:
    """athena declined the card (``lobbypay.core.athena.Declined``): nothing was charged."""

    errortext: str


@dataclass(frozen=True, slots=True)
class NotSent:
    """The POST certainly did not reach athena (or was never attempted)."""

    code: Code
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """athena answered the POST with an error: nothing was charged."""

    code: Code
    message: str


@dataclass(frozen=True, slots=True)
class OutcomeUncertain:
    """The POST may have landed (timeout after sending, 5xx, unreadable reply: athena's
    ``OutcomeUnknown`` and its kin). ``athena_to``: the latest athena-clock time the
    attempt can have ended by."""

    message: str
    athena_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptClosed:
    """An ``unknown`` job whose attempt had no end on athena's clock (the agent restarted
    during the POST) gets one: the first athena-clock "now" after the restart."""

    athena_to: datetime


@dataclass(frozen=True, slots=True)
class ReconcileFound:
    epayment_id: str


@dataclass(frozen=True, slots=True)
class ReconcileMissed:
    """A receipts read found no match. ``settled``: the read started at least
    ``reconcile_settle_s`` after the submission, so it counts toward giving up."""

    settled: bool


@dataclass(frozen=True, slots=True)
class ReconcileGaveUp:
    """Enough settled reads found nothing: the card was not charged."""


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class DeadlineHit:
    pass


@dataclass(frozen=True, slots=True)
class Restarted:
    """The agent started and found this job unfinished in the journal."""


@dataclass(frozen=True, slots=True)
class Voided:
    """athena confirmed the void of the job's payment (``charge.void``, protocol 10). A
    final state that takes one more input: the only such edge in the table."""


Input = (
    CardAccepted | SubmitStarted | PaymentApproved | PaymentDeclined | NotSent | Rejected
    | OutcomeUncertain | AttemptClosed | ReconcileFound | ReconcileMissed | ReconcileGaveUp
    | Cancel | DeadlineHit | Restarted | Voided
)
#: What the payment POST's outcome can be for a job (``lobbypay.core.outcome``).
PaymentInput = PaymentApproved | PaymentDeclined | NotSent | Rejected | OutcomeUncertain
INPUT_TYPES: tuple[type[Input], ...] = (
    CardAccepted, SubmitStarted, PaymentApproved, PaymentDeclined, NotSent, Rejected,
    OutcomeUncertain, AttemptClosed, ReconcileFound, ReconcileMissed, ReconcileGaveUp, Cancel,
    DeadlineHit, Restarted, Voided,
)


# ---------------------------------------------------------------- the table

_S = JobState
#: state -> {input type -> next state}. Everything not listed is illegal.
TRANSITIONS: Mapping[JobState, Mapping[type[Input], JobState]] = {
    _S.PENDING: {
        CardAccepted: _S.CARD_READ,
        Cancel: _S.CANCELED,
        DeadlineHit: _S.EXPIRED,
        Restarted: _S.EXPIRED,
    },
    _S.CARD_READ: {
        SubmitStarted: _S.SUBMITTING,
        # nothing was sent (e.g. the journal could not record "submitting")
        NotSent: _S.FAILED,
        # the card data lived only in the dead process
        Restarted: _S.EXPIRED,
    },
    _S.SUBMITTING: {
        PaymentApproved: _S.SUCCEEDED,
        PaymentDeclined: _S.DECLINED,
        NotSent: _S.FAILED,
        Rejected: _S.FAILED,
        OutcomeUncertain: _S.UNKNOWN,
        # the POST may have been in flight when the agent died
        Restarted: _S.UNKNOWN,
    },
    _S.UNKNOWN: {
        AttemptClosed: _S.UNKNOWN,
        ReconcileFound: _S.SUCCEEDED,
        ReconcileMissed: _S.UNKNOWN,
        ReconcileGaveUp: _S.FAILED,
    },
    _S.SUCCEEDED: {
        # staff voided the payment at athena before it settled
        Voided: _S.VOIDED,
    },
    _S.DECLINED: {},
    _S.FAILED: {},
    _S.CANCELED: {},
    _S.EXPIRED: {},
    _S.VOIDED: {},
}


class IllegalInput(Exception):
    """``step`` was given an input its table does not allow in the job's state.

    ``code`` is the wire code to answer with when the input came from a command
    (``charge.cancel``): ``too_late`` once a card is in, ``not_active`` for a finished
    job; ``not_voidable`` for ``Voided`` on a job that is not ``succeeded``;
    ``internal_error`` for inputs only the engine sends.
    """

    def __init__(self, job_id: str, state: JobState, input_type: type[Input]) -> None:
        super().__init__(
            f"can't handle {input_type.__name__} in state {state} (job {job_id})"
        )
        self.job_id = job_id
        self.state = state
        self.input_type = input_type

    @property
    def code(self) -> Code:
        if self.input_type is Cancel:
            if self.state in FINAL_STATES:
                return Code.NOT_ACTIVE
            return Code.TOO_LATE
        if self.input_type is Voided:
            return Code.NOT_VOIDABLE
        return Code.INTERNAL_ERROR


def accepts(state: JobState, input_type: type[Input]) -> bool:
    return input_type in TRANSITIONS[state]


# ---------------------------------------------------------------- the job


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    seq: int
    state: JobState
    patient_id: str
    department_id: str  # resolved (terminal default applied)
    appointment_id: str | None
    copay: Cents
    claims: tuple[ClaimAmount, ...]
    allow_duplicate: bool
    deadline_s: int
    expires_at: datetime | None
    body_key: str  # canonical request body, for idempotency (see ``body_key_of``)
    created_at: datetime
    updated_at: datetime
    card_brand: str | None = None
    card_last4: str | None = None
    epayment_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    submitted_at: datetime | None = None
    #: The POST attempt on athena's clock (core.reconcile): earliest send, latest end.
    attempt_from: datetime | None = None
    attempt_to: datetime | None = None
    reconcile_reads: int = 0  # settled receipt reads that found nothing
    reconcile_attempts: int = 0  # every receipts read, settled or not (for docs/ops)
    #: the display's language for this job (a ``screen_text.LANGUAGES`` code)
    language: str = "en"

    @property
    def other(self) -> Cents:
        return Cents(sum(c.amount for c in self.claims))

    @property
    def total(self) -> Cents:
        return Cents(self.copay + self.other)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def deadline_at(self) -> datetime:
        return self.created_at + timedelta(seconds=self.deadline_s)


@dataclass(frozen=True, slots=True)
class Step:
    job: Job
    events: tuple[dict[str, Any], ...]


def body_key_of(cmd: ChargeStart) -> str:
    """Canonical text of what must match for a repeated ``job_id`` to be 'the same body'.

    ``language`` is left out: it only changes the display, never what is charged, and
    jobs journaled before it existed keep their keys."""
    body = {
        "patient_id": cmd.patient_id,
        "department_id": cmd.department_id,
        "appointment_id": cmd.appointment_id,
        "copay": int(cmd.copay),
        "claims": [[c.claim_id, int(c.amount)] for c in cmd.claims],
        "allow_duplicate": cmd.allow_duplicate,
        "deadline_s": cmd.deadline_s,
        "expires_at": format_seconds(cmd.expires_at) if cmd.expires_at else None,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def start_job(cmd: ChargeStart, *, department_id: str, copay: Cents | None = None,
              claims: tuple[ClaimAmount, ...] | None = None, now: datetime,
              language: str = "en") -> Step:
    """A new job in ``pending`` (seq 1) from an accepted ``charge.start``.

    ``copay``/``claims`` default to the command's; the engine passes the charge plan's.
    ``language``: the command's, else the terminal's (the engine resolves it).
    """
    _check_now(now)
    job = Job(
        job_id=cmd.job_id,
        seq=1,
        state=JobState.PENDING,
        patient_id=cmd.patient_id,
        department_id=department_id,
        appointment_id=cmd.appointment_id,
        copay=cmd.copay if copay is None else copay,
        claims=cmd.claims if claims is None else tuple(claims),
        allow_duplicate=cmd.allow_duplicate,
        deadline_s=cmd.deadline_s,
        expires_at=cmd.expires_at,
        body_key=body_key_of(cmd),
        created_at=now,
        updated_at=now,
        language=cmd.language or language,
    )
    return Step(job, (to_event(job),))


def step(job: Job, inp: Input, now: datetime) -> Step:
    """Apply one input. Illegal input: ``IllegalInput``, nothing changed."""
    _check_now(now)
    table = TRANSITIONS[job.state]
    try:
        new_state = table[type(inp)]
    except KeyError:
        raise IllegalInput(job.job_id, job.state, type(inp)) from None

    changes: dict[str, Any] = {"state": new_state, "updated_at": now}
    match inp:
        case CardAccepted(brand=brand, last4=last4):
            changes.update(card_brand=brand, card_last4=last4)
        case SubmitStarted(athena_from=athena_from):
            changes.update(submitted_at=now, attempt_from=_aware_or_none(athena_from))
        case PaymentApproved(epayment_id=eid) | ReconcileFound(epayment_id=eid):
            changes.update(epayment_id=str(eid), error_code=None, error_message=None)
        case PaymentDeclined(errortext=text):
            changes.update(error_code=Code.DECLINED.value,
                           error_message=printable(text, _MESSAGE_MAX) or "card declined")
        case NotSent(code=code, message=msg) | Rejected(code=code, message=msg):
            changes.update(error_code=Code(code).value,
                           error_message=printable(msg, _MESSAGE_MAX))
        case OutcomeUncertain(message=msg, athena_to=athena_to):
            changes.update(
                error_code=Code.OUTCOME_UNKNOWN.value,
                error_message=printable(f"outcome not known, reconciling: {msg}", _MESSAGE_MAX),
                attempt_to=_aware_or_none(athena_to),
            )
        case AttemptClosed(athena_to=athena_to):
            if job.attempt_to is None:
                changes.update(attempt_to=_aware_or_none(athena_to))
        case ReconcileMissed(settled=settled):
            changes.update(
                reconcile_attempts=job.reconcile_attempts + 1,
                reconcile_reads=job.reconcile_reads + (1 if settled else 0),
            )
        case ReconcileGaveUp():
            changes.update(
                error_code=Code.NOT_CHARGED.value,
                error_message="no matching payment found at athena: the card was not charged",
            )
        case Cancel():
            changes.update(error_code=Code.CANCELED.value, error_message="canceled by the app")
        case DeadlineHit():
            changes.update(error_code=Code.EXPIRED.value,
                           error_message=f"no card within {job.deadline_s} s")
        case Restarted():
            if new_state is JobState.UNKNOWN:
                changes.update(
                    error_code=Code.OUTCOME_UNKNOWN.value,
                    error_message="agent restarted while the payment was being sent; reconciling",
                )
            else:
                changes.update(
                    error_code=Code.AGENT_RESTARTED.value,
                    error_message="agent restarted before the payment was sent; card not charged",
                )

    if new_state is job.state:
        # bookkeeping only: no event, seq unchanged
        return Step(replace(job, **changes), ())
    new_job = replace(job, seq=job.seq + 1, **changes)
    return Step(new_job, (to_event(new_job),))


def _aware_or_none(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    if not isinstance(t, datetime) or t.tzinfo is None:
        raise TypeError("athena-clock times must be aware datetimes")
    return t.astimezone(UTC)


def _check_now(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("now must be an aware datetime")


# ---------------------------------------------------------------- docs


def render_mermaid() -> str:
    """The state diagram of ``TRANSITIONS`` (mermaid), for docs/jobs.md."""
    lines = ["stateDiagram-v2", "    [*] --> pending: charge.start accepted"]
    for state, edges in TRANSITIONS.items():
        for inp, nxt in edges.items():
            lines.append(f"    {state.value} --> {nxt.value}: {inp.__name__}")
    for state in JobState:
        if state in FINAL_STATES:
            lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines)


def render_table() -> str:
    """The transition table as a markdown table (rows: states, columns: inputs)."""
    head = "| state | " + " | ".join(t.__name__ for t in INPUT_TYPES) + " |"
    sep = "|---" * (len(INPUT_TYPES) + 1) + "|"
    rows = [head, sep]
    for state in JobState:
        cells = [TRANSITIONS[state].get(t) for t in INPUT_TYPES]
        rows.append(f"| {state.value} | " + " | ".join(c.value if c else "·" for c in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - `python -m lobbypay.core.job` prints the docs
    print("```mermaid")
    print(render_mermaid())
    print("```")
    print()
    print(render_table())
