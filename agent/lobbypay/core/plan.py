"""The charge plan (pure): from a checked ``charge.start`` to athena's collectpayment form.

Two steps, in the order the agent runs them:

1. :func:`validate_charge` - the static rules of protocol.md section 4, checked before
   any athena read (copay needs an appointment, something to charge, at most
   ``terminal.max_charge``).
2. :func:`plan_charge` - the rules that need the patient's balances, checked against a
   fresh :class:`~lobbypay.core.balance.BalanceView`: every claim must be collectible,
   and no claim amount may exceed its balance (partial payments are fine).

The resulting :class:`ChargePlan` knows the exact form fields of the POST (protocol.md
section 6) except ``trackdata``, which only the card-handling code ever holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lobbypay.core.balance import NOT_CLEAN, OTHER_PROVIDER_GROUP, BalanceView
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents, format_cents

#: what a patient is told to do about a claim the terminal cannot take
FRONT_DESK = "please ask at the front desk"


def _check_shape(cmd: ChargeStart) -> None:
    """Rules on the command alone that every plan relies on (decode checks them too)."""
    if cmd.copay < 0 or any(c.amount <= 0 for c in cmd.claims):
        raise DomainError(Code.INVALID_AMOUNT, "amounts must be above 0.00")
    ids = [c.claim_id for c in cmd.claims]
    if len(set(ids)) != len(ids):
        raise DomainError(Code.BAD_REQUEST, "each claim may be listed only once")
    if cmd.copay > 0 and not cmd.appointment_id:
        raise DomainError(
            Code.COPAY_NEEDS_APPOINTMENT, "a copay needs the appointment_id it is paid for"
        )
    if cmd.total <= 0:
        raise DomainError(Code.NOTHING_TO_CHARGE, "the total to charge is 0.00")


def validate_charge(cmd: ChargeStart, max_charge: Cents) -> None:
    """Static checks before any athena read; raises DomainError.

    copay > 0 without appointment_id -> ``copay_needs_appointment``; total 0 ->
    ``nothing_to_charge``; total above ``max_charge`` -> ``invalid_amount``.
    """
    _check_shape(cmd)
    if cmd.total > max_charge:
        raise DomainError(
            Code.INVALID_AMOUNT,
            f"the total {format_cents(cmd.total)} is above this terminal's limit of "
            f"{format_cents(max_charge)}",
        )


@dataclass(frozen=True, slots=True)
class ChargePlan:
    """One accepted charge: what to send athena, amounts in cents."""

    patient_id: str
    department_id: str
    appointment_id: str | None
    copay: Cents
    claims: tuple[ClaimAmount, ...]
    allow_duplicate: bool

    @property
    def other(self) -> Cents:
        return Cents(sum(c.amount for c in self.claims))

    @property
    def total(self) -> Cents:
        return Cents(self.copay + self.other)

    def form_fields(self) -> dict[str, str]:
        """The collectpayment form of protocol.md section 6, without ``trackdata``.

        ``departmentid``; ``copayamount`` + ``appointmentid`` when the copay is above 0;
        ``otheramount`` (the claims' sum) + ``claimpayment`` (a JSON string,
        ``[{"5569": "40.00"}]``, in the request's claim order) when claims are paid;
        ``allowduplicatepayments=true`` only when asked. Zero amounts are left out.
        """
        form = {"departmentid": self.department_id}
        if self.copay > 0:
            if not self.appointment_id:  # ChargePlan is built by plan_charge, which checks
                raise ValueError("a copay needs an appointment id")
            form["copayamount"] = format_cents(self.copay)
            form["appointmentid"] = self.appointment_id
        paid = [c for c in self.claims if c.amount > 0]
        if paid:
            form["otheramount"] = format_cents(sum(c.amount for c in paid))
            form["claimpayment"] = json.dumps(
                [{c.claim_id: format_cents(c.amount)} for c in paid]
            )
        if self.allow_duplicate:
            form["allowduplicatepayments"] = "true"
        return form


def _not_collectible_message(view: BalanceView, claim_id: str) -> str:
    reason = view.not_collectible_reason(claim_id)
    if reason == NOT_CLEAN:
        why = "it is part of a payment plan or contract (not a clean balance)"
    elif reason == OTHER_PROVIDER_GROUP:
        why = "it belongs to another provider group than this department"
    else:
        why = "it is not an open patient balance of this patient"
    return f"claim {claim_id} cannot be paid here: {why}; {FRONT_DESK}"


def plan_charge(view: BalanceView, cmd: ChargeStart, department_id: str) -> ChargePlan:
    """Check a charge against freshly read balances and build its plan.

    ``department_id`` is the one the charge runs in (the command's, or the terminal's);
    ``view`` must have been evaluated for that department and the command's patient.
    Raises DomainError: ``claim_not_collectible`` (with why, and the front desk) or
    ``amount_exceeds_balance``, for the first claim in request order that fails.
    """
    department_id = department_id.strip()
    if view.department_id != department_id or view.patient_id != cmd.patient_id:
        # A wiring mistake, not input: never plan against another patient or group.
        raise ValueError(
            "balance view is for another patient or department than the charge"
        )
    _check_shape(cmd)
    for c in cmd.claims:
        owed = view.claim(c.claim_id)
        if owed is None:
            raise DomainError(
                Code.CLAIM_NOT_COLLECTIBLE,
                _not_collectible_message(view, c.claim_id),
                claim_id=c.claim_id,
                reason=view.not_collectible_reason(c.claim_id) or "unknown_claim",
            )
        if c.amount > owed.balance:
            raise DomainError(
                Code.AMOUNT_EXCEEDS_BALANCE,
                f"claim {c.claim_id}: {format_cents(c.amount)} is above its balance of "
                f"{format_cents(owed.balance)}",
                claim_id=c.claim_id,
                balance=format_cents(owed.balance),
            )
    return ChargePlan(
        patient_id=cmd.patient_id,
        department_id=department_id,
        appointment_id=cmd.appointment_id,
        copay=cmd.copay,
        claims=cmd.claims,
        allow_duplicate=cmd.allow_duplicate,
    )
