"""The stable error codes of protocol v1, and the one domain error type that carries them.

``Code`` values are the wire strings (``Code.INVALID_AMOUNT == "invalid_amount"``).
Codes named by ../shared/spec/protocol.md come first; the ones after the marked line are
lobbypay's own additions (allowed by the spec: "additive only"), documented in
docs/protocol.md.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    # --- named by protocol v1 ---
    BAD_REQUEST = "bad_request"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_AMOUNT = "invalid_amount"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    COPAY_NEEDS_APPOINTMENT = "copay_needs_appointment"
    NOTHING_TO_CHARGE = "nothing_to_charge"
    CLAIM_NOT_COLLECTIBLE = "claim_not_collectible"
    AMOUNT_EXCEEDS_BALANCE = "amount_exceeds_balance"
    ATHENA_UNAVAILABLE = "athena_unavailable"
    PATIENT_NOT_FOUND = "patient_not_found"
    EXPIRED = "expired"
    TERMINAL_BUSY = "terminal_busy"
    TOO_LATE = "too_late"
    NOT_ACTIVE = "not_active"
    UNKNOWN_JOB = "unknown_job"
    DECLINED = "declined"
    NOT_CHARGED = "not_charged"
    COPAY_ALREADY_COLLECTED = "copay_already_collected"
    # --- named by protocol v1 section 10 (staff commands, emailed receipts) ---
    FORBIDDEN = "forbidden"
    NOT_VOIDABLE = "not_voidable"
    VOID_REJECTED = "void_rejected"
    NO_RECEIPT = "no_receipt"
    # --- lobbypay additions (events and replies) ---
    #: the job's outcome is being reconciled (on the ``unknown`` event)
    OUTCOME_UNKNOWN = "outcome_unknown"
    #: athena answered the POST with an error (4xx with an error body): nothing was charged
    ATHENA_REJECTED = "athena_rejected"
    #: athena's answer could not be read (bad payload); for reads only
    ATHENA_BAD_RESPONSE = "athena_bad_response"
    #: the job was canceled by the app
    CANCELED = "canceled"
    #: the agent restarted while the job waited for a card (the card data died with it)
    AGENT_RESTARTED = "agent_restarted"
    #: the appointment given for the copay does not exist
    APPOINTMENT_NOT_FOUND = "appointment_not_found"
    #: something inside the agent failed; the command changed nothing
    INTERNAL_ERROR = "internal_error"


class DomainError(Exception):
    """A rule said no. ``code`` is a stable wire code; ``message`` is for humans.

    Messages never contain card data (no caller has any to put there: card objects only
    expose brand and last 4).
    """

    def __init__(self, code: Code, message: str, **extra: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.extra = extra

    def to_wire(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}
