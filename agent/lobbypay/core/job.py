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
   fields are plain str/int/bool/None/datetime values, and ``job_to_record`` /
   ``to_event`` refuse anything else.

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
from lobbypay.core.money import Cents, format_cents
from lobbypay.core.text import printable

EVENT_TYPE = "charge.event"
PROTOCOL_VERSION = 1
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
#: States whose event carries ``epayment_id``: the payment athena made (and, once voided,
#: the payment that was voided).
_PAYMENT_STATES: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.VOIDED})
#: States that hold the terminal (protocol 4: "another job active"). ``unknown`` frees it.
ACTIVE_STATES: frozenset[JobState] = frozenset(
    {JobState.PENDING, JobState.CARD_READ, JobState.SUBMITTING}
)
#: States whose event carries ``error`` (protocol 5).
_ERROR_STATES: frozenset[JobState] = frozenset(
    {JobState.DECLINED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELED, JobState.UNKNOWN}
)


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
class Approved:
    epayment_id: str


@dataclass(frozen=True, slots=True)
class Declined:
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
class OutcomeUnknown:
    """The POST may have landed (timeout after sending, 5xx, unreadable reply).
    ``athena_to``: the latest athena-clock time the attempt can have ended by."""

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
    CardAccepted | SubmitStarted | Approved | Declined | NotSent | Rejected | OutcomeUnknown
    | AttemptClosed | ReconcileFound | ReconcileMissed | ReconcileGaveUp | Cancel
    | DeadlineHit | Restarted | Voided
)
INPUT_TYPES: tuple[type[Any], ...] = (
    CardAccepted, SubmitStarted, Approved, Declined, NotSent, Rejected, OutcomeUnknown,
    AttemptClosed, ReconcileFound, ReconcileMissed, ReconcileGaveUp, Cancel, DeadlineHit,
    Restarted, Voided,
)


# ---------------------------------------------------------------- the table

_S = JobState
#: state -> {input type -> next state}. Everything not listed is illegal.
TRANSITIONS: Mapping[JobState, Mapping[type[Any], JobState]] = {
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
        Approved: _S.SUCCEEDED,
        Declined: _S.DECLINED,
        NotSent: _S.FAILED,
        Rejected: _S.FAILED,
        OutcomeUnknown: _S.UNKNOWN,
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

    def __init__(self, job_id: str, state: JobState, input_type: type[Any]) -> None:
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


def accepts(state: JobState, input_type: type[Any]) -> bool:
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
        "expires_at": iso_seconds(cmd.expires_at) if cmd.expires_at else None,
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
        case Approved(epayment_id=eid) | ReconcileFound(epayment_id=eid):
            changes.update(epayment_id=str(eid), error_code=None, error_message=None)
        case Declined(errortext=text):
            changes.update(error_code=Code.DECLINED.value,
                           error_message=printable(text, _MESSAGE_MAX) or "card declined")
        case NotSent(code=code, message=msg) | Rejected(code=code, message=msg):
            changes.update(error_code=Code(code).value,
                           error_message=printable(msg, _MESSAGE_MAX))
        case OutcomeUnknown(message=msg, athena_to=athena_to):
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


def iso_seconds(t: datetime) -> str:
    """The protocol's timestamp form: UTC, whole seconds, "Z" ("2026-11-27T14:03:07Z")."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_precise(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------- wire event


def amounts_of(job: Job) -> dict[str, Any]:
    return {
        "copay": format_cents(job.copay),
        "other": format_cents(job.other),
        "total": format_cents(job.total),
        "claims": [{"claim_id": c.claim_id, "amount": format_cents(c.amount)} for c in job.claims],
    }


def to_event(job: Job) -> dict[str, Any]:
    """The protocol 5 ``charge.event`` object for the job's current state."""
    ev: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": EVENT_TYPE,
        "job_id": job.job_id,
        "seq": job.seq,
        "state": job.state.value,
        "final": job.final,
        "at": iso_seconds(job.updated_at),
    }
    if job.card_last4 is not None:
        ev["card"] = {"brand": job.card_brand or "unknown", "last4": job.card_last4}
    ev["amounts"] = amounts_of(job)
    if job.state in _PAYMENT_STATES:
        ev["epayment_id"] = job.epayment_id
    if job.state in _ERROR_STATES:
        ev["error"] = {"code": job.error_code or "internal_error",
                       "message": job.error_message or ""}
    else:
        ev["error"] = None
    check_event(ev)
    return ev


_EVENT_KEYS = {"v", "type", "job_id", "seq", "state", "final", "at", "amounts", "error"}
_EVENT_OPTIONAL = {"card", "epayment_id"}


def check_event(ev: object) -> None:
    """Raise ``ValueError`` unless ``ev`` is exactly a charge.event as ``to_event`` builds it.

    The journal calls this before writing, so nothing but these plain fields (no card
    object, no track text: ``card`` holds only brand and a 4-digit last4) reaches disk.
    """
    if not isinstance(ev, dict):
        raise ValueError("event must be a dict")
    keys = set(ev)
    if not (_EVENT_KEYS <= keys <= _EVENT_KEYS | _EVENT_OPTIONAL):
        raise ValueError(f"event has unexpected keys: {sorted(keys ^ _EVENT_KEYS)}")
    if ev["v"] != PROTOCOL_VERSION or ev["type"] != EVENT_TYPE:
        raise ValueError("not a charge.event")
    for k in ("job_id", "state", "at"):
        if not isinstance(ev[k], str):
            raise ValueError(f"event.{k} must be a string")
    JobState(ev["state"])
    if type(ev["seq"]) is not int or ev["seq"] < 1 or type(ev["final"]) is not bool:
        raise ValueError("event.seq/final have the wrong type")
    card = ev.get("card")
    if "card" in ev:
        if (not isinstance(card, dict) or set(card) != {"brand", "last4"}
                or not isinstance(card["brand"], str) or len(card["brand"]) > 20
                or not isinstance(card["last4"], str) or len(card["last4"]) != 4
                or not card["last4"].isdigit()):
            raise ValueError("event.card must be {brand, last4} only")
    if "epayment_id" in ev and not isinstance(ev["epayment_id"], str):
        raise ValueError("event.epayment_id must be a string")
    err = ev["error"]
    if err is not None and (
        not isinstance(err, dict) or set(err) != {"code", "message"}
        or not all(isinstance(v, str) for v in err.values())
    ):
        raise ValueError("event.error must be null or {code, message}")
    _check_plain(ev["amounts"])


def _check_plain(value: object) -> None:
    """Only JSON-plain values (no objects that could hide card data)."""
    if value is None or type(value) in (str, int, bool):
        return
    if type(value) is list:
        for v in value:
            _check_plain(v)
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise ValueError("keys must be strings")
            _check_plain(v)
        return
    raise ValueError(f"{type(value).__name__} is not a plain JSON value")


# ---------------------------------------------------------------- journal records


def job_to_record(job: Job) -> dict[str, Any]:
    """A plain-JSON dict of the whole job (for the journal's ``jobs`` table)."""
    rec: dict[str, Any] = {
        "job_id": job.job_id,
        "seq": job.seq,
        "state": job.state.value,
        "patient_id": job.patient_id,
        "department_id": job.department_id,
        "appointment_id": job.appointment_id,
        "copay": int(job.copay),
        "claims": [[c.claim_id, int(c.amount)] for c in job.claims],
        "allow_duplicate": job.allow_duplicate,
        "deadline_s": job.deadline_s,
        "expires_at": _iso_precise(job.expires_at) if job.expires_at else None,
        "body_key": job.body_key,
        "created_at": _iso_precise(job.created_at),
        "updated_at": _iso_precise(job.updated_at),
        "card_brand": job.card_brand,
        "card_last4": job.card_last4,
        "epayment_id": job.epayment_id,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "submitted_at": _iso_precise(job.submitted_at) if job.submitted_at else None,
        "attempt_from": _iso_precise(job.attempt_from) if job.attempt_from else None,
        "attempt_to": _iso_precise(job.attempt_to) if job.attempt_to else None,
        "reconcile_reads": job.reconcile_reads,
        "reconcile_attempts": job.reconcile_attempts,
        "language": job.language,
    }
    _check_plain(rec)
    if job.card_last4 is not None and not (len(job.card_last4) == 4 and job.card_last4.isdigit()):
        raise ValueError("card_last4 must be 4 digits")
    return rec


def job_from_record(rec: Mapping[str, Any]) -> Job:
    def t(key: str) -> datetime | None:
        v = rec.get(key)
        return _parse_iso(v) if v else None

    created = t("created_at")
    updated = t("updated_at")
    assert created is not None and updated is not None
    return Job(
        job_id=rec["job_id"],
        seq=int(rec["seq"]),
        state=JobState(rec["state"]),
        patient_id=rec["patient_id"],
        department_id=rec["department_id"],
        appointment_id=rec.get("appointment_id"),
        copay=Cents(int(rec["copay"])),
        claims=tuple(ClaimAmount(str(cid), Cents(int(a))) for cid, a in rec["claims"]),
        allow_duplicate=bool(rec["allow_duplicate"]),
        deadline_s=int(rec["deadline_s"]),
        expires_at=t("expires_at"),
        body_key=rec["body_key"],
        created_at=created,
        updated_at=updated,
        card_brand=rec.get("card_brand"),
        card_last4=rec.get("card_last4"),
        epayment_id=rec.get("epayment_id"),
        error_code=rec.get("error_code"),
        error_message=rec.get("error_message"),
        submitted_at=t("submitted_at"),
        attempt_from=t("attempt_from"),
        attempt_to=t("attempt_to"),
        reconcile_reads=int(rec.get("reconcile_reads", 0)),
        reconcile_attempts=int(rec.get("reconcile_attempts", 0)),
        language=str(rec.get("language") or "en"),
    )


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
