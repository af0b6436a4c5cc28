"""lobbypay.core.balance: athena's collection rules on claimbalancedetails, copay, departments."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lobbypay.core.balance import (
    NOT_CLEAN,
    OTHER_PROVIDER_GROUP,
    AppointmentNotFoundInPayload,
    BalancePayloadError,
    BalanceView,
    ClaimBalance,
    NotCollectible,
    PatientNotFoundInPayload,
    _cents,
    department_info,
    evaluate_balances,
    parse_copay,
)
from lobbypay.core.money import (
    Cents,
    InvalidAmount,
    format_cents,
    parse_athena_amount,
    parse_wire_amount,
)

# ---------------------------------------------------------------- fixtures (athena's shapes)


def claim(claim_id: object, balance: object, clean: object = True,
          date: object = "09/15/2021", **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"claimid": claim_id, "servicedate": date, "cleanbalance": clean,
                              "patientbalance": balance, "amount": 189.0,
                              "supervisingproviderid": 20}
    out.update(extra)
    return out


def patient(*groups: dict[str, object], **extra: object) -> list[dict[str, object]]:
    p: dict[str, object] = {"patientid": "60178", "firstname": "Gary", "lastname": "Sandboxtest",
                            "balances": [{"balance": "-25.15", "departmentlist": "1",
                                          "providergroupid": 1, "cleanbalance": True}],
                            "claimbalancedetails": list(groups)}
    p.update(extra)
    return [p]


def group(pg: object, depts: object, *claims: dict[str, object]) -> dict[str, object]:
    return {"providergroupid": pg, "departmentids": depts, "claimdetails": list(claims)}


#: an enterprise practice: three provider groups (the one of department 1 is 10)
ENTERPRISE = patient(
    group(10, "1,2,5",
          claim(5569, 40.00, True, "09/15/2021", departmentid=1),
          claim(5570, "12.00", False, "10/01/2021", departmentid=2),
          claim(5571, 0, True, "11/01/2021"),            # paid
          claim(5572, "-5.00", True, "11/02/2021"),      # credit
          claim("5580", "15.50", "true", "01/02/2022", departmentid="5")),
    group("11", "3, 4", claim(7001, 90, True, "03/03/2020"), claim(7002, "10.00", False, None)),
    group(12, [6], claim(8001, "0.00", True)),
)

#: a non-enterprise practice: one group, blank provider group, every department listed
NON_ENTERPRISE = patient(
    group("", "1,2,21,22",
          claim(100, "25.00", True, "02/01/2023"),
          claim(101, "30.00", False, "01/15/2023"),
          claim(102, "-10.00", True)),
)

#: the Ruby-gem sample's names: outstandingp (and fromdate on charges), strings everywhere
OUTSTANDINGP = [{
    "patientid": "60179",
    "claimbalancedetails": [{
        "providergroupid": "", "departmentids": "1,2",
        "claimdetails": [
            {"claimid": "9001", "servicedate": "07/04/2022", "cleanbalance": "true",
             "outstandingp": "75.25", "chargeleveldetail": [{"fromdate": "07/04/2022"}]},
            {"claimid": "9002", "servicedate": "07/05/2022", "cleanbalance": "false",
             "outstandingp": "5"},
            {"claimid": "9003", "servicedate": "07/06/2022", "cleanbalance": "TRUE",
             "outstandingp": "0.00"},
        ],
    }],
}]


def ids(items: tuple[ClaimBalance, ...] | tuple[NotCollectible, ...]) -> list[str]:
    return [i.claim_id if isinstance(i, ClaimBalance) else i.claim.claim_id for i in items]


# ---------------------------------------------------------------- the rules, table-driven


def test_enterprise_department_in_first_group() -> None:
    view = evaluate_balances(ENTERPRISE, "60178", "1")
    assert view.group_found and view.provider_group_id == "10"
    assert ids(view.collectible) == ["5569", "5580"]  # by service date
    assert {(n.claim.claim_id, n.reason) for n in view.not_collectible} == {
        ("5570", NOT_CLEAN), ("7001", OTHER_PROVIDER_GROUP), ("7002", OTHER_PROVIDER_GROUP)}
    assert ids(view.not_collectible) == ["7001", "5570", "7002"]  # 2020, 2021, no date
    assert view.collectible_total == 4000 + 1550
    c = view.claim("5569")
    assert c == ClaimBalance("5569", "09/15/2021", 4000, True, "10", "1")  # type: ignore[arg-type]
    assert view.claim("5570") is None and view.claim("5571") is None
    assert view.not_collectible_reason("5570") == NOT_CLEAN
    assert view.not_collectible_reason("7001") == OTHER_PROVIDER_GROUP
    assert view.not_collectible_reason("5569") is None
    assert view.not_collectible_reason("5572") is None  # credits are left out


def test_enterprise_other_department_takes_its_own_group() -> None:
    view = evaluate_balances(ENTERPRISE, "60178", "4")
    assert view.provider_group_id == "11" and view.group_found
    assert ids(view.collectible) == ["7001"]
    assert {(n.claim.claim_id, n.reason) for n in view.not_collectible} == {
        ("7002", NOT_CLEAN), ("5569", OTHER_PROVIDER_GROUP), ("5570", OTHER_PROVIDER_GROUP),
        ("5580", OTHER_PROVIDER_GROUP)}


def test_department_in_no_group_makes_everything_other_provider_group() -> None:
    view = evaluate_balances(ENTERPRISE, "60178", "99")
    assert not view.group_found and view.provider_group_id is None
    assert view.collectible == ()
    assert {n.reason for n in view.not_collectible} == {OTHER_PROVIDER_GROUP}
    assert set(ids(view.not_collectible)) == {"5569", "5570", "5580", "7001", "7002"}


def test_protocol_example_to_wire() -> None:
    payload = patient(
        group(10, "1", claim(5569, "40.00", True, "09/15/2021"),
              claim(5570, "12.00", False, "09/16/2021")),
        group(20, "7", claim(7001, "90.00", True, "09/17/2021")),
    )
    wire = evaluate_balances(payload, "60178", "1").to_wire()
    assert wire == {
        "patient_id": "60178", "department_id": "1", "provider_group_id": "10",
        "collectible": [{"claim_id": "5569", "service_date": "09/15/2021", "balance": "40.00"}],
        "not_collectible": [{"claim_id": "5570", "balance": "12.00", "reason": "not_clean"},
                            {"claim_id": "7001", "balance": "90.00",
                             "reason": "other_provider_group"}],
        "collectible_total": "40.00",
    }
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.parametrize("blank", ["", "   ", None, 0, "0", "absent"])
def test_non_enterprise_blank_provider_group(blank: object) -> None:
    payload = copy.deepcopy(NON_ENTERPRISE)
    g = payload[0]["claimbalancedetails"][0]  # type: ignore[index]
    if blank == "absent":
        del g["providergroupid"]
    else:
        g["providergroupid"] = blank
    view = evaluate_balances(payload, "60178", "21")
    assert view.group_found and view.provider_group_id is None
    assert ids(view.collectible) == ["100"]
    assert [(n.claim.claim_id, n.reason) for n in view.not_collectible] == [("101", NOT_CLEAN)]
    assert view.to_wire()["provider_group_id"] is None
    assert view.to_wire()["collectible_total"] == "25.00"


def test_non_enterprise_department_not_listed() -> None:
    view = evaluate_balances(NON_ENTERPRISE, "60178", "3")
    assert not view.group_found
    assert ids(view.collectible) == []
    assert {n.reason for n in view.not_collectible} == {OTHER_PROVIDER_GROUP}


@pytest.mark.parametrize("depts", [None, "", " , ", []])
def test_lone_blank_group_without_department_list_spans_the_practice(depts: object) -> None:
    payload = patient(group("", depts, claim(1, "5.00")))
    view = evaluate_balances(payload, "60178", "42")
    assert view.group_found and ids(view.collectible) == ["1"]


def test_lone_group_with_a_provider_group_and_no_departments_is_not_ours() -> None:
    payload = patient(group(10, "", claim(1, "5.00")))
    view = evaluate_balances(payload, "60178", "42")
    assert not view.group_found and ids(view.collectible) == []


def test_outstandingp_variant() -> None:
    view = evaluate_balances(OUTSTANDINGP, "60179", "2")
    assert [(c.claim_id, c.balance) for c in view.collectible] == [("9001", 7525)]
    assert [(n.claim.claim_id, n.claim.balance, n.reason) for n in view.not_collectible] == [
        ("9002", 500, NOT_CLEAN)]


def test_patientbalance_wins_over_outstandingp() -> None:
    payload = patient(group("", "1", claim(1, "5.00", outstandingp="7.00")))
    assert evaluate_balances(payload, "p", "1").collectible[0].balance == 500


@pytest.mark.parametrize(
    ("money", "cents"),
    [(40, 4000), (40.0, 4000), (40.5, 4050), ("40", 4000), ("40.5", 4050), ("40.00", 4000),
     ("$40.00", 4000), (" 40.00 ", 4000), ("1,040.00", 104000), (0.01, 1)],
)
def test_money_as_numbers_or_strings(money: object, cents: int) -> None:
    view = evaluate_balances(patient(group(1, "1", claim(1, money))), "p", "1")
    assert view.collectible[0].balance == cents


@pytest.mark.parametrize(
    ("flag", "clean"),
    [(True, True), (False, False), ("true", True), ("false", False), ("TRUE", True),
     (" False ", False), (None, False), ("absent", False)],
)
def test_cleanbalance_forms(flag: object, clean: bool) -> None:
    c = claim(1, "5.00", flag)
    if flag == "absent":
        del c["cleanbalance"]
    view = evaluate_balances(patient(group(1, "1", c)), "p", "1")
    assert (view.claim("1") is not None) is clean
    assert view.not_collectible_reason("1") == (None if clean else NOT_CLEAN)


@pytest.mark.parametrize(
    "depts",
    ["1,2,3", "3, 2 ,1", " 1 ", "1", 1, [1, 2], ["2", "1"], [" 1 ", None, ""], "5,,1,"],
)
def test_department_lists(depts: object) -> None:
    view = evaluate_balances(patient(group(9, depts, claim(1, "5.00"))), "p", "1")
    assert view.group_found and view.provider_group_id == "9"


def test_string_and_int_ids_are_the_same_ids() -> None:
    a = evaluate_balances(patient(group(10, "1", claim(5569, 40, departmentid=1))), "p", "1")
    b = evaluate_balances(patient(group("10", [" 1"], claim(" 5569 ", "40.00",
                                                             departmentid="1"))), "p", " 1 ")
    assert a == b
    assert a.collectible[0] == ClaimBalance("5569", "09/15/2021", 4000, True, "10", "1")  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", [None, [], "absent"])
def test_no_claimbalancedetails_is_an_empty_view(missing: object) -> None:
    p = patient()
    if missing == "absent":
        del p[0]["claimbalancedetails"]
    else:
        p[0]["claimbalancedetails"] = missing
    view = evaluate_balances(p, "60178", "1")
    assert view == BalanceView("60178", "1", None, (), (), False)
    assert view.collectible_total == 0
    assert view.to_wire()["collectible"] == [] and view.to_wire()["collectible_total"] == "0.00"


def test_group_without_claimdetails() -> None:
    view = evaluate_balances(patient({"providergroupid": 10, "departmentids": "1"}), "p", "1")
    assert view.group_found and view.provider_group_id == "10" and view.collectible == ()


def test_bare_patient_object_is_accepted() -> None:
    assert evaluate_balances(ENTERPRISE[0], "60178", "1") == evaluate_balances(
        ENTERPRISE, "60178", "1")


def test_empty_array_is_patient_not_found() -> None:
    with pytest.raises(PatientNotFoundInPayload):
        evaluate_balances([], "60178", "1")


def test_several_patients_take_the_one_asked_for() -> None:
    other = copy.deepcopy(NON_ENTERPRISE[0])
    other["patientid"] = 1
    mine = copy.deepcopy(ENTERPRISE[0])
    view = evaluate_balances([other, mine], "60178", "1")
    assert ids(view.collectible) == ["5569", "5580"]
    with pytest.raises(BalancePayloadError, match="2 patients"):
        evaluate_balances([other, other], "60178", "1")


# ---------------------------------------------------------------- duplicates and order


def test_claim_listed_in_our_group_and_another_is_not_collectible() -> None:
    payload = patient(group(10, "1", claim(1, "40.00")), group(11, "2", claim(1, "30.00")))
    view = evaluate_balances(payload, "p", "1")
    assert view.collectible == ()
    (nc,) = view.not_collectible
    assert (nc.claim.claim_id, nc.claim.balance, nc.reason) == ("1", 3000, OTHER_PROVIDER_GROUP)
    assert nc.claim.provider_group_id == "11"


def test_claim_listed_twice_in_our_group_keeps_the_smaller_balance() -> None:
    payload = patient(group(10, "1", claim(1, "40.00"), claim("1", "25.00")))
    view = evaluate_balances(payload, "p", "1")
    assert [(c.claim_id, c.balance) for c in view.collectible] == [("1", 2500)]


def test_claim_listed_clean_and_unclean_is_not_clean() -> None:
    payload = patient(group(10, "1", claim(1, "40.00", True), claim(1, "40.00", False)))
    view = evaluate_balances(payload, "p", "1")
    assert view.collectible == () and view.not_collectible_reason("1") == NOT_CLEAN


def test_claim_listed_once_paid_is_left_out() -> None:
    payload = patient(group(10, "1", claim(1, "40.00"), claim(1, "0.00")))
    view = evaluate_balances(payload, "p", "1")
    assert view.collectible == () and view.not_collectible == ()


def test_same_provider_group_split_over_two_entries_merges() -> None:
    payload = patient(group(10, "1,2", claim(1, "1.00")), group(10, "1,3", claim(2, "2.00")))
    view = evaluate_balances(payload, "p", "1")
    assert view.provider_group_id == "10" and ids(view.collectible) == ["1", "2"]


def test_department_in_two_different_provider_groups_is_refused() -> None:
    payload = patient(group(10, "1,2", claim(1, "1.00")), group(11, "1", claim(2, "2.00")))
    with pytest.raises(BalancePayloadError, match="more than one provider group"):
        evaluate_balances(payload, "p", "1")


def test_order_by_service_date_then_claim_id() -> None:
    payload = patient(group(10, "1",
                            claim("100", "1.00", date="01/01/2021"),
                            claim("99", "1.00", date="01/01/2021"),
                            claim("B7", "1.00", date="01/01/2021"),
                            claim("A7", "1.00", date="01/01/2021"),
                            claim("5", "1.00", date="12/31/2020"),
                            claim("6", "1.00", date="2020-06-01"),
                            claim("1", "1.00", date=None),
                            claim("2", "1.00", date="someday"),
                            claim("3", "1.00", date="1/2/2021")))
    view = evaluate_balances(payload, "p", "1")
    assert ids(view.collectible) == ["6", "5", "99", "100", "A7", "B7", "3", "1", "2"]
    assert view.claim("2").service_date == "someday"  # type: ignore[union-attr]
    assert view.claim("1").service_date is None  # type: ignore[union-attr]


def test_blank_service_date_is_none() -> None:
    view = evaluate_balances(patient(group(1, "1", claim(1, "1.00", date="  "))), "p", "1")
    assert view.collectible[0].service_date is None


# ---------------------------------------------------------------- bad payloads


def _with(path: tuple[Any, ...], value: object) -> object:
    payload = copy.deepcopy(ENTERPRISE)
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    if value == "<delete>":
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


G0 = (0, "claimbalancedetails", 0)
C0 = (*G0, "claimdetails", 0)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ("nope", "patient payload"),
        (42, "patient payload"),
        (None, "patient payload"),
        ([1], "patient[0]"),
        ([[]], "patient[0]"),
        (_with((0, "claimbalancedetails"), {"a": 1}), "claimbalancedetails"),
        (_with(G0, "group"), "claimbalancedetails[0]"),
        (_with((*G0, "claimdetails"), "x"), "claimbalancedetails[0].claimdetails"),
        (_with((*G0, "departmentids"), {"1": 1}), "claimbalancedetails[0].departmentids"),
        (_with((*G0, "departmentids"), "1,two words"), "departmentids"),
        (_with((*G0, "departmentids"), 1.5), "departmentids"),
        (_with((*G0, "providergroupid"), True), "claimbalancedetails[0].providergroupid"),
        (_with((*G0, "providergroupid"), [10]), "providergroupid"),
        (_with((*G0, "providergroupid"), -1), "providergroupid"),
        (_with(C0, 5569), "claimbalancedetails[0].claimdetails[0]"),
        (_with((*C0, "claimid"), "<delete>"), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), None), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), ""), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), "55 69"), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), True), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), 5569.0), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), -5), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), "x" * 65), "claimdetails[0].claimid"),
        (_with((*C0, "claimid"), "\u0665\u0665"), "claimdetails[0].claimid"),
        (_with((*C0, "patientbalance"), "<delete>"), "claimdetails[0] has no patientbalance"),
        (_with((*C0, "patientbalance"), "abc"), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), "40.123"), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), 40.123), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), True), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), float("nan")), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), 1e300), "claimdetails[0].patientbalance"),
        (_with((*C0, "patientbalance"), [40]), "claimdetails[0].patientbalance"),
        (_with((*C0, "cleanbalance"), "yes"), "claimdetails[0].cleanbalance"),
        (_with((*C0, "cleanbalance"), 1), "claimdetails[0].cleanbalance"),
        (_with((*C0, "servicedate"), 20210915), "claimdetails[0].servicedate"),
        (_with((*C0, "servicedate"), "09/15\x00/2021"), "claimdetails[0].servicedate"),
        (_with((*C0, "servicedate"), "9" * 40), "claimdetails[0].servicedate"),
        (_with((*C0, "departmentid"), {"id": 1}), "claimdetails[0].departmentid"),
        (_with((0, "claimbalancedetails", 1, "claimdetails", 1, "claimid"), None),
         "claimbalancedetails[1].claimdetails[1].claimid"),
    ],
)
def test_bad_payloads_name_the_place(payload: object, where: str) -> None:
    with pytest.raises(BalancePayloadError) as err:
        evaluate_balances(payload, "60178", "1")
    assert where in str(err.value)
    assert not isinstance(err.value, PatientNotFoundInPayload)


@pytest.mark.parametrize("field", ["claimid", "patientbalance", "servicedate", "cleanbalance"])
def test_errors_never_echo_big_values(field: str) -> None:
    canary = "4111111111111111" * 1000
    payload = _with((*C0, field), canary)
    with pytest.raises(BalancePayloadError) as err:
        evaluate_balances(payload, "60178", "1")
    assert len(str(err.value)) < 160
    assert "4111111111111111" not in str(err.value)


def test_paid_claims_are_not_read_past_their_balance() -> None:
    # Decision (docs/balance-rules.md): a claim with nothing owed is never shown, so its
    # other fields are not checked; a broken flag there does not block the patient.
    payload = _with((0, "claimbalancedetails", 0, "claimdetails", 2, "cleanbalance"), "maybe")
    assert ids(evaluate_balances(payload, "60178", "1").collectible) == ["5569", "5580"]


# ---------------------------------------------------------------- properties

ids_st = st.one_of(st.integers(min_value=1, max_value=10**9),
                   st.from_regex(r"\A[1-9][0-9]{0,8}\Z"),
                   st.from_regex(r"\A[A-Za-z][A-Za-z0-9._-]{0,10}\Z"))
cents_st = st.integers(min_value=-50_000, max_value=5_000_000)


@st.composite
def money_st(draw: st.DrawFn, cents: int) -> object:
    form = draw(st.sampled_from(["text", "float", "int", "dollar"]))
    if form == "text":
        return format_cents(cents)
    if form == "float":
        return cents / 100
    if form == "int" and cents % 100 == 0:
        return cents // 100
    return ("-$" if cents < 0 else "$") + format_cents(abs(cents))


@st.composite
def payloads(draw: st.DrawFn) -> tuple[object, str, dict[str, tuple[int, bool, int]]]:
    """A valid patient payload, the department, and the truth:
    claim id -> (cents, clean, group index); group 0 holds the department unless absent."""
    n_groups = draw(st.integers(min_value=0, max_value=4))
    department = str(draw(st.integers(min_value=1, max_value=50)))
    has_group = draw(st.booleans())
    claim_ids = draw(st.lists(ids_st, unique_by=lambda v: str(v).strip(), max_size=25))
    truth: dict[str, tuple[int, bool, int]] = {}
    groups: list[dict[str, object]] = []
    for gi in range(n_groups):
        depts = [str(100 + gi * 10 + k) for k in range(draw(st.integers(0, 3)))]
        if gi == 0 and has_group:
            depts.insert(draw(st.integers(0, len(depts))), department)
        dept_form = draw(st.sampled_from(["text", "spaced", "list", "ints"]))
        dept_value: object = {
            "text": ",".join(depts), "spaced": " , ".join(depts), "list": depts,
            "ints": [int(d) for d in depts],
        }[dept_form]
        groups.append({"providergroupid": draw(st.sampled_from([gi + 1, str(gi + 1)])),
                       "departmentids": dept_value, "claimdetails": []})
    for cid in claim_ids:
        if not groups:
            break
        gi = draw(st.integers(0, n_groups - 1))
        cents = draw(cents_st)
        clean = draw(st.booleans())
        key = "outstandingp" if draw(st.booleans()) else "patientbalance"
        flag: object = draw(st.sampled_from([clean, str(clean).lower(), str(clean).upper()]))
        item = {"claimid": cid, key: draw(money_st(cents)), "cleanbalance": flag,
                "servicedate": draw(st.sampled_from(
                    [None, "01/02/2020", "12/31/2019", "2021-03-04", "06/07/2021"]))}
        groups[gi]["claimdetails"].append(item)  # type: ignore[attr-defined]
        truth[str(cid).strip()] = (cents, clean, gi)
    body: dict[str, object] = {"patientid": "1"}
    keep_empty: bool = draw(st.booleans())
    if groups or keep_empty:
        body["claimbalancedetails"] = groups
    return [body], department, truth


@given(payloads())
@settings(max_examples=200, deadline=None)
def test_partition_and_totals(case: tuple[object, str, dict[str, tuple[int, bool, int]]]) -> None:
    payload, department, truth = case
    view = evaluate_balances(payload, "1", department)
    groups = payload[0].get("claimbalancedetails") or []  # type: ignore[index]
    ours = 0 if groups and department in {
        str(d).strip() for d in (groups[0]["departmentids"] if isinstance(
            groups[0]["departmentids"], list) else groups[0]["departmentids"].split(","))
    } else None
    assert view.group_found is (ours is not None)

    owed = {cid for cid, (cents, _, _) in truth.items() if cents > 0}
    col = ids(view.collectible)
    nco = ids(view.not_collectible)
    # a partition of every claim with a positive balance
    assert set(col) | set(nco) == owed
    assert not set(col) & set(nco)
    assert len(col) == len(set(col)) and len(nco) == len(set(nco))
    for c in view.collectible:
        cents, clean, gi = truth[c.claim_id]
        assert (c.balance, clean, gi) == (cents, True, ours)
    for n in view.not_collectible:
        cents, clean, gi = truth[n.claim.claim_id]
        assert n.claim.balance == cents
        assert n.reason == (NOT_CLEAN if gi == ours else OTHER_PROVIDER_GROUP)
        assert gi != ours or not clean
    assert view.collectible_total == sum(c.balance for c in view.collectible)

    wire: Any = view.to_wire()
    assert parse_athena_amount(wire["collectible_total"]) == view.collectible_total
    assert sum(parse_wire_amount(c["balance"]) for c in wire["collectible"]) == (
        view.collectible_total)
    assert [c["claim_id"] for c in wire["collectible"]] == col
    assert json.loads(json.dumps(wire)) == wire


@given(payloads())
@settings(max_examples=100, deadline=None)
def test_order_is_date_then_claim_id(case: tuple[object, str, dict[str, tuple[int, bool, int]]]
                                     ) -> None:
    payload, department, _ = case
    view = evaluate_balances(payload, "1", department)

    def key(c: ClaimBalance) -> tuple[object, ...]:
        d = c.service_date
        if d is None:
            dk: tuple[int, ...] = (1,)
        elif "-" in d:
            y, m, dd = d.split("-")
            dk = (0, int(y), int(m), int(dd))
        else:
            m, dd, y = d.split("/")
            dk = (0, int(y), int(m), int(dd))
        return (dk, (0, int(c.claim_id), "") if c.claim_id.isdigit() else (1, 0, c.claim_id))

    for seq in (list(view.collectible), [n.claim for n in view.not_collectible]):
        assert seq == sorted(seq, key=key)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                      st.sampled_from(["1", "40.00", "true", "false", "1,2", "", " 7 "]))
json_any = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["claimbalancedetails", "claimdetails", "claimid", "patientbalance",
                         "outstandingp", "cleanbalance", "servicedate", "departmentids",
                         "departmentid", "providergroupid", "patientid", "copay",
                         "insurancecopay", "collectedforappointment", "departments", "x"]),
        inner, max_size=5),
    max_leaves=20,
)


@given(json_any)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_json_gives_a_view_or_a_payload_error(value: object) -> None:
    for payload in (value, [value], [{"claimbalancedetails": value}],
                    [{"claimbalancedetails": [{"departmentids": "1", "claimdetails": value}]}],
                    [{"claimbalancedetails": [{"departmentids": "1", "claimdetails": [value]}]}]):
        try:
            view = evaluate_balances(payload, "1", "1")
        except BalancePayloadError as exc:
            assert len(str(exc)) < 200
        else:
            assert isinstance(view, BalanceView)
            json.dumps(view.to_wire())
    for fn in (parse_copay, lambda v: department_info(v, "1")):
        for payload in (value, [value], {"copay": value}, [{"copay": value}],
                        {"departments": value}):
            try:
                fn(payload)
            except BalancePayloadError:
                pass


@given(payloads(), st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_one_corrupted_field_gives_a_view_or_a_payload_error(
    case: tuple[object, str, dict[str, tuple[int, bool, int]]], data: st.DataObject
) -> None:
    payload, department, _ = case
    groups = payload[0].get("claimbalancedetails")  # type: ignore[index]
    claims = [c for g in groups or [] for c in g["claimdetails"]]
    assume(claims)
    target = data.draw(st.sampled_from(claims + list(groups)))
    field = data.draw(st.sampled_from(sorted(target)))
    target[field] = data.draw(json_any)
    try:
        evaluate_balances(payload, "1", department)
    except BalancePayloadError:
        pass


# ---------------------------------------------------------------- the fast paths


@given(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e10, max_value=1e10).map(lambda f: round(f, 2)),
    st.integers(min_value=-(10**12), max_value=10**12).map(lambda c: c / 100),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.integers(min_value=-(10**12), max_value=10**12).map(format_cents),
    st.text(alphabet="0123456789.-$, ", max_size=16),
    st.from_regex(r"\A-?[0-9]{1,12}\.[0-9]{2}\Z"),
))
@settings(max_examples=500)
def test_inline_money_agrees_with_parse_athena_amount(value: object) -> None:
    try:
        expected: object = parse_athena_amount(value)
    except InvalidAmount:
        expected = BalancePayloadError
    try:
        got: object = _cents(value, "x")
    except BalancePayloadError:
        got = BalancePayloadError
    assert got == expected
    # and the hot loop gives the same again
    try:
        view = evaluate_balances(patient(group(1, "1", claim(1, value))), "p", "1")
        loop: object = view.claim("1").balance if view.claim("1") else None  # type: ignore[union-attr]
    except BalancePayloadError:
        loop = BalancePayloadError
    if expected is BalancePayloadError:
        assert loop is BalancePayloadError
    else:
        assert loop == (expected if expected > 0 else None)  # type: ignore[operator]


def test_objects_from_the_fast_builder_are_real_dataclasses() -> None:
    view = evaluate_balances(ENTERPRISE, "60178", "1")
    for c in view.collectible + tuple(n.claim for n in view.not_collectible):
        rebuilt = ClaimBalance(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)})
        assert rebuilt == c and hash(rebuilt) == hash(c) and repr(rebuilt) == repr(c)
        with pytest.raises(dataclasses.FrozenInstanceError):
            c.balance = Cents(1)  # type: ignore[misc]
    for n in view.not_collectible:
        assert NotCollectible(n.claim, n.reason) == n
        with pytest.raises(dataclasses.FrozenInstanceError):
            n.reason = "x"  # type: ignore[misc]


def test_ten_thousand_claims_evaluate() -> None:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        from bench_balance import build_payload
    finally:
        sys.path.pop(0)
    payload: Any = build_payload(10_000, 4)
    view = evaluate_balances(json.loads(json.dumps(payload)), "60178", "1")
    n_owed = sum(1 for g in payload[0]["claimbalancedetails"]
                 for c in g["claimdetails"]
                 if parse_athena_amount(c.get("patientbalance", c.get("outstandingp"))) > 0)
    assert len(view.collectible) + len(view.not_collectible) == n_owed
    assert len(view.collectible) > 0


# ---------------------------------------------------------------- copay


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([{"appointmentid": "1234", "copay": {"insurancecopay": "25.00",
                                              "collectedforappointment": "0.00",
                                              "collectedforother": "0.00"}}], 2500),
        ([{"copay": {"insurancecopay": 25, "collectedforappointment": 10}}], 1500),
        ({"copay": {"insurancecopay": 25.5, "collectedforappointment": "30.00"}}, 0),
        ({"copay": {"insurancecopay": "25.00", "collectedforother": "25.00"}}, 2500),
        ({"copay": {"insurancecopay": "25.00", "collectedforappointment": None}}, 2500),
        ({"copay": {"insurancecopay": "25.00", "collectedforappointment": ""}}, 2500),
        ({"copay": {"insurancecopay": "-5.00"}}, 0),
        ({"copay": {"collectedforappointment": "5.00"}}, None),
        ({"copay": {"insurancecopay": None}}, None),
        ({"copay": {"insurancecopay": " "}}, None),
        ({"copay": {}}, None),
        ({"copay": 20}, 2000),
        ({"copay": "20.00"}, 2000),
        ({"copay": "$20"}, 2000),
        ({"copay": -3}, 0),
        ({"copay": ""}, None),
        ({"copay": None}, None),
        ([{"appointmentid": "1234"}], None),
    ],
)
def test_parse_copay(payload: object, expected: int | None) -> None:
    assert parse_copay(payload) == expected


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        ([], AppointmentNotFoundInPayload, "no appointment"),
        ([{}, {}], BalancePayloadError, "2 objects"),
        ("x", BalancePayloadError, "appointment payload"),
        ([7], BalancePayloadError, r"appointment\[0\]"),
        ({"copay": "abc"}, BalancePayloadError, "copay"),
        ({"copay": True}, BalancePayloadError, "copay"),
        ({"copay": [25]}, BalancePayloadError, "copay"),
        ({"copay": {"insurancecopay": "2.555"}}, BalancePayloadError, "copay.insurancecopay"),
        ({"copay": {"insurancecopay": "25", "collectedforappointment": "x"}},
         BalancePayloadError, "copay.collectedforappointment"),
    ],
)
def test_parse_copay_errors(payload: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_copay(payload)


# ---------------------------------------------------------------- departments

DEPARTMENTS = {"departments": [
    {"departmentid": "1", "providergroupid": "1", "name": "Lobby A"},
    {"departmentid": "2", "providergroupid": "1"},
    {"departmentid": 21, "providergroupid": 2},
], "totalcount": 3}


def test_department_info_enterprise() -> None:
    info = department_info(DEPARTMENTS, "21")
    assert (info.department_id, info.provider_group_id, info.enterprise, info.found) == (
        "21", "2", True, True)


def test_department_info_non_enterprise_and_bare_array() -> None:
    items = DEPARTMENTS["departments"][:2]  # type: ignore[index]
    for payload in (items, {"departments": items}):
        info = department_info(payload, " 1")
        assert (info.provider_group_id, info.enterprise, info.found) == ("1", False, True)


def test_department_info_not_found_and_blanks() -> None:
    payload = [{"departmentid": "1", "providergroupid": ""}, {"departmentid": "2"},
               {"departmentid": "3", "providergroupid": 0}]
    assert department_info(payload, "9") == department_info(payload, "9")
    info = department_info(payload, "9")
    assert (info.provider_group_id, info.enterprise, info.found) == (None, False, False)
    assert department_info(payload, "1").found
    assert department_info({}, "1").found is False
    assert department_info({"departments": None}, "1").found is False


@pytest.mark.parametrize(
    ("payload", "match"),
    [("x", "departments payload"), ({"departments": "x"}, "departments"),
     ([1], r"departments\[0\]"), ([{"providergroupid": 1}], r"departments\[0\].departmentid"),
     ([{"departmentid": "1", "providergroupid": [1]}], r"departments\[0\].providergroupid")],
)
def test_department_info_errors(payload: object, match: str) -> None:
    with pytest.raises(BalancePayloadError, match=match):
        department_info(payload, "1")
