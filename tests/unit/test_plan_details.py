"""lobbypay.core.plan: the smallest copay, the detail fields of a refusal, and what a plan
carries over from the command (scripts/mutate found these unchecked; the rules are in
test_plan.py)."""

from __future__ import annotations

import pytest
from lobbypay.core.balance import BalanceView, evaluate_balances
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents
from lobbypay.core.plan import ChargePlan, plan_charge, validate_charge

MAX = Cents(500_000)


def cmd(copay: int = 0, claims: tuple[tuple[str, int], ...] = (), *,
        appointment_id: str | None = "1234", allow_duplicate: bool = False) -> ChargeStart:
    return ChargeStart(
        request_id="r-1", job_id="j-1", patient_id="60178", department_id="1",
        appointment_id=appointment_id, copay=Cents(copay),
        claims=tuple(ClaimAmount(cid, Cents(a)) for cid, a in claims),
        allow_duplicate=allow_duplicate, deadline_s=120, expires_at=None,
    )


def view() -> BalanceView:
    payload = [{"patientid": "60178", "claimbalancedetails": [
        {"providergroupid": 10, "departmentids": "1", "claimdetails": [
            {"claimid": 5569, "patientbalance": "40.00", "cleanbalance": True},
            {"claimid": 5580, "patientbalance": "0.01", "cleanbalance": True},
            {"claimid": 5570, "patientbalance": "12.00", "cleanbalance": False},
        ]},
    ]}]
    return evaluate_balances(payload, "60178", "1")


@pytest.mark.parametrize("appointment_id", [None, ""])
def test_a_one_cent_copay_needs_an_appointment(appointment_id: str | None) -> None:
    for check in (lambda c: validate_charge(c, MAX), lambda c: plan_charge(view(), c, "1")):
        with pytest.raises(DomainError) as err:
            check(cmd(1, appointment_id=appointment_id))
        assert err.value.code == Code.COPAY_NEEDS_APPOINTMENT


@pytest.mark.parametrize(
    ("claims", "claim_id", "balance"),
    [((("5569", 4001),), "5569", "40.00"), ((("5569", 100), ("5580", 2)), "5580", "0.01")],
)
def test_amount_exceeds_balance_names_the_claim_and_its_balance(
        claims: tuple[tuple[str, int], ...], claim_id: str, balance: str) -> None:
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, claims), "1")
    assert err.value.code == Code.AMOUNT_EXCEEDS_BALANCE
    assert err.value.extra == {"claim_id": claim_id, "balance": balance}


def test_claim_not_collectible_names_the_claim_and_why() -> None:
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, (("5580", 1), ("5570", 1))), "1")
    assert err.value.code == Code.CLAIM_NOT_COLLECTIBLE
    assert err.value.extra == {"claim_id": "5570", "reason": "not_clean"}


@pytest.mark.parametrize(
    "command",
    [cmd(-1), cmd(100, (("5569", 0),)), cmd(0, (("5569", 1), ("5569", 2))),
     cmd(1, appointment_id=None), cmd(0), cmd(MAX + 1)],
)
def test_every_refusal_has_a_wire_message(command: ChargeStart) -> None:
    with pytest.raises(DomainError) as err:
        validate_charge(command, MAX)
    wire = err.value.to_wire()
    assert set(wire) == {"code", "message"}
    assert isinstance(wire["message"], str) and wire["message"].strip()


def test_the_plan_carries_the_command_over() -> None:
    c = cmd(2500, (("5580", 1), ("5569", 4000)), allow_duplicate=True)
    plan = plan_charge(view(), c, " 1 ")
    assert plan == ChargePlan(patient_id="60178", department_id="1", appointment_id="1234",
                              copay=Cents(2500), claims=c.claims, allow_duplicate=True)


def test_a_copay_plan_without_appointment_is_refused_at_the_form() -> None:
    plan = ChargePlan("60178", "1", None, Cents(1), (), False)
    with pytest.raises(ValueError):
        plan.form_fields()
