"""lobbypay.core.plan: static charge checks, checks against balances, the collectpayment form."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.core.balance import NOT_CLEAN, OTHER_PROVIDER_GROUP, BalanceView, evaluate_balances
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents, format_cents, parse_wire_amount
from lobbypay.core.plan import ChargePlan, plan_charge, validate_charge

MAX = Cents(500_000)  # terminal.max_charge "5000.00"
FORM_KEYS = {"departmentid", "copayamount", "appointmentid", "otheramount", "claimpayment",
             "allowduplicatepayments"}
WIRE = re.compile(r"[0-9]{1,7}\.[0-9]{2}")


def cmd(copay: int = 0, claims: tuple[tuple[str, int], ...] = (), *,
        appointment_id: str | None = "1234", allow_duplicate: bool = False,
        patient_id: str = "60178", department_id: str | None = "1") -> ChargeStart:
    return ChargeStart(
        request_id="r-1", job_id="j-1", patient_id=patient_id, department_id=department_id,
        appointment_id=appointment_id, copay=Cents(copay),
        claims=tuple(ClaimAmount(cid, Cents(a)) for cid, a in claims),
        allow_duplicate=allow_duplicate, deadline_s=120, expires_at=None,
    )


def view() -> BalanceView:
    payload = [{"patientid": "60178", "claimbalancedetails": [
        {"providergroupid": 10, "departmentids": "1,2", "claimdetails": [
            {"claimid": 5569, "patientbalance": "40.00", "cleanbalance": True,
             "servicedate": "09/15/2021"},
            {"claimid": 5580, "patientbalance": "15.50", "cleanbalance": True,
             "servicedate": "01/02/2022"},
            {"claimid": 5570, "patientbalance": "12.00", "cleanbalance": False},
            {"claimid": 5571, "patientbalance": "0.00", "cleanbalance": True},
        ]},
        {"providergroupid": 11, "departmentids": "3", "claimdetails": [
            {"claimid": 7001, "patientbalance": "90.00", "cleanbalance": True},
        ]},
    ]}]
    return evaluate_balances(payload, "60178", "1")


# ---------------------------------------------------------------- validate_charge


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (cmd(2500, appointment_id=None), Code.COPAY_NEEDS_APPOINTMENT),
        (cmd(2500, appointment_id=""), Code.COPAY_NEEDS_APPOINTMENT),
        (cmd(MAX + 1, appointment_id=None), Code.COPAY_NEEDS_APPOINTMENT),  # checked first
        (cmd(0), Code.NOTHING_TO_CHARGE),
        (cmd(0, appointment_id=None), Code.NOTHING_TO_CHARGE),
        (cmd(MAX + 1), Code.INVALID_AMOUNT),
        (cmd(1, (("5569", MAX),)), Code.INVALID_AMOUNT),
        (cmd(0, (("1", 300_000), ("2", 200_001))), Code.INVALID_AMOUNT),
        # rules decode already enforces, checked again here
        (cmd(-100), Code.INVALID_AMOUNT),
        (cmd(100, (("5569", 0),)), Code.INVALID_AMOUNT),
        (cmd(0, (("5569", 100), ("5569", 200))), Code.BAD_REQUEST),
    ],
)
def test_validate_charge_refuses(command: ChargeStart, code: Code) -> None:
    with pytest.raises(DomainError) as err:
        validate_charge(command, MAX)
    assert err.value.code == code
    assert err.value.to_wire()["code"] == str(code)


@pytest.mark.parametrize(
    "command",
    [cmd(2500), cmd(0, (("5569", 4000),), appointment_id=None), cmd(MAX), cmd(1),
     cmd(0, (("1", 250_000), ("2", 250_000)), appointment_id=None)],
)
def test_validate_charge_accepts(command: ChargeStart) -> None:
    validate_charge(command, MAX)


def test_limit_message_names_the_limit() -> None:
    with pytest.raises(DomainError) as err:
        validate_charge(cmd(MAX + 1), MAX)
    assert "5000.00" in err.value.message and "5000.01" in err.value.message


# ---------------------------------------------------------------- plan_charge


def test_plan_full_charge_form() -> None:
    plan = plan_charge(view(), cmd(2500, (("5569", 4000),)), "1")
    assert (plan.copay, plan.other, plan.total) == (2500, 4000, 6500)
    assert plan.form_fields() == {
        "departmentid": "1", "copayamount": "25.00", "appointmentid": "1234",
        "otheramount": "40.00", "claimpayment": '[{"5569": "40.00"}]',
    }


def test_plan_keeps_request_order_and_allows_partial_payments() -> None:
    plan = plan_charge(view(), cmd(0, (("5580", 1550), ("5569", 1)), appointment_id=None,
                                   allow_duplicate=True), "1")
    assert plan.form_fields() == {
        "departmentid": "1", "otheramount": "15.51",
        "claimpayment": '[{"5580": "15.50"}, {"5569": "0.01"}]',
        "allowduplicatepayments": "true",
    }


def test_copay_only_form_leaves_claim_fields_out() -> None:
    plan = plan_charge(view(), cmd(2500), "1")
    assert plan.form_fields() == {"departmentid": "1", "copayamount": "25.00",
                                  "appointmentid": "1234"}


def test_appointment_without_copay_is_not_sent() -> None:
    plan = plan_charge(view(), cmd(0, (("5569", 4000),), appointment_id="1234"), "1")
    assert plan.appointment_id == "1234"
    assert "appointmentid" not in plan.form_fields()
    assert "copayamount" not in plan.form_fields()


def test_form_never_has_trackdata_or_unknown_keys() -> None:
    plan = plan_charge(view(), cmd(1, (("5569", 1),), allow_duplicate=True), "1")
    assert set(plan.form_fields()) == FORM_KEYS


def test_zero_claim_amounts_are_left_out_of_the_form() -> None:
    plan = ChargePlan("60178", "1", "1234", Cents(100),
                      (ClaimAmount("1", Cents(0)), ClaimAmount("2", Cents(50))), False)
    assert plan.form_fields()["claimpayment"] == '[{"2": "0.50"}]'
    assert plan.form_fields()["otheramount"] == "0.50"


@pytest.mark.parametrize(
    ("claim_id", "reason", "words"),
    [("5570", NOT_CLEAN, "payment plan or contract"),
     ("7001", OTHER_PROVIDER_GROUP, "another provider group"),
     ("5571", "unknown_claim", "not an open patient balance"),  # paid: unknown here
     ("9999", "unknown_claim", "not an open patient balance")],
)
def test_claim_not_collectible_says_why(claim_id: str, reason: str, words: str) -> None:
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, (("5569", 100), (claim_id, 100))), "1")
    assert err.value.code == Code.CLAIM_NOT_COLLECTIBLE
    assert words in err.value.message and "front desk" in err.value.message
    assert claim_id in err.value.message
    assert err.value.extra == {"claim_id": claim_id, "reason": reason}


@pytest.mark.parametrize(("claim_id", "amount"), [("5569", 4001), ("5580", 100_000)])
def test_amount_above_balance(claim_id: str, amount: int) -> None:
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, ((claim_id, amount),)), "1")
    assert err.value.code == Code.AMOUNT_EXCEEDS_BALANCE
    balance = view().claim(claim_id).balance  # type: ignore[union-attr]
    assert format_cents(balance) in err.value.message
    assert format_cents(amount) in err.value.message


def test_exact_balance_is_fine() -> None:
    plan = plan_charge(view(), cmd(0, (("5569", 4000), ("5580", 1550))), "1")
    assert plan.other == 5550


def test_first_failing_claim_in_request_order_is_reported() -> None:
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, (("5569", 9999), ("7001", 1))), "1")
    assert err.value.code == Code.AMOUNT_EXCEEDS_BALANCE
    with pytest.raises(DomainError) as err:
        plan_charge(view(), cmd(0, (("7001", 1), ("5569", 9999))), "1")
    assert err.value.code == Code.CLAIM_NOT_COLLECTIBLE


def test_plan_rechecks_the_static_rules() -> None:
    for bad, code in ((cmd(0), Code.NOTHING_TO_CHARGE),
                      (cmd(100, appointment_id=None), Code.COPAY_NEEDS_APPOINTMENT)):
        with pytest.raises(DomainError) as err:
            plan_charge(view(), bad, "1")
        assert err.value.code == code


def test_plan_against_a_view_of_another_department_or_patient_is_a_wiring_error() -> None:
    with pytest.raises(ValueError, match="another patient or department"):
        plan_charge(view(), cmd(100), "2")
    with pytest.raises(ValueError, match="another patient or department"):
        plan_charge(view(), cmd(100, patient_id="60179"), "1")


# ---------------------------------------------------------------- properties


@st.composite
def charges(draw: st.DrawFn) -> tuple[BalanceView, ChargeStart]:
    balances = draw(st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=0,
                             max_size=12))
    claims = [{"claimid": 1000 + i, "patientbalance": format_cents(b), "cleanbalance": True}
              for i, b in enumerate(balances)]
    v = evaluate_balances([{"claimbalancedetails": [
        {"providergroupid": "", "departmentids": "7", "claimdetails": claims}]}], "p", "7")
    chosen = draw(st.lists(st.sampled_from(list(v.collectible)), unique=True) if v.collectible
                  else st.just([]))
    picks = tuple((c.claim_id, draw(st.integers(min_value=1, max_value=c.balance)))
                  for c in chosen)
    copay = draw(st.integers(min_value=0 if picks else 1, max_value=9_999_999))
    command = cmd(copay, picks, patient_id="p", department_id=None,
                  allow_duplicate=draw(st.booleans()))
    return v, command


@given(charges())
@settings(max_examples=300, deadline=None)
def test_form_amounts_sum_to_total_and_parse_back(case: tuple[BalanceView, ChargeStart]) -> None:
    v, command = case
    plan = plan_charge(v, command, "7")
    form = plan.form_fields()
    assert set(form) <= FORM_KEYS and form["departmentid"] == "7"
    for key in ("copayamount", "otheramount"):
        if key in form:
            assert WIRE.fullmatch(form[key])
            assert parse_wire_amount(form[key]) > 0
    copay = parse_wire_amount(form["copayamount"]) if "copayamount" in form else 0
    other = parse_wire_amount(form["otheramount"]) if "otheramount" in form else 0
    assert copay == command.copay and other == command.other
    assert copay + other == plan.total == command.total
    assert ("appointmentid" in form) is (command.copay > 0)
    if command.claims:
        pairs = json.loads(form["claimpayment"])
        assert all(len(p) == 1 for p in pairs)
        back = [(cid, parse_wire_amount(a)) for p in pairs for cid, a in p.items()]
        assert back == [(c.claim_id, c.amount) for c in command.claims]
        assert sum(a for _, a in back) == other
    else:
        assert "claimpayment" not in form and "otheramount" not in form
    assert (form.get("allowduplicatepayments") == "true") is command.allow_duplicate


@given(charges(), st.integers(min_value=1, max_value=1_000))
@settings(max_examples=100, deadline=None)
def test_any_amount_above_a_balance_is_refused(case: tuple[BalanceView, ChargeStart],
                                               over: int) -> None:
    v, command = case
    if not command.claims:
        return
    first = command.claims[0]
    bumped = (ClaimAmount(first.claim_id, Cents(v.claim(first.claim_id).balance + over)),  # type: ignore[union-attr]
              *command.claims[1:])
    bad = dataclasses.replace(command, claims=bumped)
    with pytest.raises(DomainError) as err:
        plan_charge(v, bad, "7")
    assert err.value.code == Code.AMOUNT_EXCEEDS_BALANCE
