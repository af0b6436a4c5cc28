"""lobbypay.core.balance at its edges: a claim listed twice in either order, service dates
across months and forms, ids at the range limit, and the error-message snippet
(scripts/mutate found these unchecked; the main rules are in test_balance.py)."""

from __future__ import annotations

import itertools

import pytest
from lobbypay.core import balance as bal
from lobbypay.core.balance import (
    NOT_CLEAN,
    OTHER_PROVIDER_GROUP,
    BalancePayloadError,
    department_info,
    evaluate_balances,
)


def claim(claim_id: object, amount: object, clean: object = True, date: object = None,
          **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"claimid": claim_id, "patientbalance": amount,
                              "cleanbalance": clean, "servicedate": date}
    out.update(extra)
    return out


def group(pg: object, depts: object, *claims: dict[str, object]) -> dict[str, object]:
    return {"providergroupid": pg, "departmentids": depts, "claimdetails": list(claims)}


def patient(*groups: dict[str, object]) -> list[dict[str, object]]:
    return [{"patientid": "p", "claimbalancedetails": list(groups)}]


def listed(*claims: dict[str, object]) -> bal.BalanceView:
    return evaluate_balances(patient(group(10, "1", *claims)), "p", "1")


# ---------------------------------------------------------------- a claim listed twice

#: (first listing, second listing) of claim 1 in our group, both orders are tried
NOT_CLEAN_AND_CLEAN = (claim(1, "30.00", False, "01/02/2024", departmentid=7),
                       claim(1, "50.00", True, "03/04/2024", departmentid=8))


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["not-clean-first", "clean-first"])
def test_not_clean_in_any_listing_wins_in_either_order(order: tuple[int, int]) -> None:
    view = listed(*(NOT_CLEAN_AND_CLEAN[i] for i in order))
    assert view.collectible == ()
    (nc,) = view.not_collectible
    assert (nc.claim.claim_id, nc.reason, nc.claim.balance) == ("1", NOT_CLEAN, 3000)
    # the date and department come from the listing that set the status
    assert (nc.claim.service_date, nc.claim.department_id) == ("01/02/2024", "7")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["clean-first", "not-clean-first"])
def test_the_smaller_balance_is_kept_whichever_listing_has_it(order: tuple[int, int]) -> None:
    pair = (claim(1, "30.00", True, "01/02/2024"), claim(1, "50.00", False, "03/04/2024"))
    view = listed(*(pair[i] for i in order))
    assert view.collectible == ()
    (nc,) = view.not_collectible
    assert (nc.reason, nc.claim.balance, nc.claim.service_date) == (NOT_CLEAN, 3000, "03/04/2024")


@pytest.mark.parametrize("ours_first", [True, False])
def test_another_group_in_any_listing_wins_in_either_order(ours_first: bool) -> None:
    ours = group(10, "1", claim(1, "20.00", False, "01/01/2024"))
    theirs = group(11, "2", claim(1, "60.00", True, "05/05/2024"))
    groups = (ours, theirs) if ours_first else (theirs, ours)
    view = evaluate_balances(patient(*groups), "p", "1")
    assert view.collectible == ()
    (nc,) = view.not_collectible
    assert (nc.reason, nc.claim.balance) == (OTHER_PROVIDER_GROUP, 2000)
    assert (nc.claim.provider_group_id, nc.claim.service_date) == ("11", "05/05/2024")


def test_on_a_tie_the_first_listing_gives_date_and_department() -> None:
    for first, second in itertools.permutations(("01/05/2024", "02/06/2024")):
        view = listed(claim(1, "40.00", True, first, departmentid=first[:2]),
                      claim(1, "40.00", True, second, departmentid=second[:2]))
        (c,) = view.collectible
        assert (c.service_date, c.department_id, c.balance) == (first, first[:2], 4000)


@pytest.mark.parametrize("paid_first", [True, False])
@pytest.mark.parametrize("paid", ["0.00", "-5.00", 0])
def test_a_paid_listing_leaves_the_claim_out_in_either_order(paid_first: bool,
                                                             paid: object) -> None:
    pair = [claim(1, paid, True), claim(1, "40.00", True, "01/01/2024")]
    view = listed(*(pair if paid_first else pair[::-1]))
    assert view.collectible == () and view.not_collectible == ()


# ---------------------------------------------------------------- service dates

#: oldest first, across days, months, years and both forms
DATED = [("12/31/2023", "50"), ("1/2/2024", "40"), ("01/15/2024", "30"), ("02/03/2024", "20"),
         ("2024-03-01", "10"), ("3/9/2024", "60"), ("2024-03-10", "5"), ("2024-12-01", "1"),
         ("11/30/2025", "2")]


@pytest.mark.parametrize("rotate", range(3))
def test_collectible_are_oldest_first_across_months_and_forms(rotate: int) -> None:
    rows = DATED[rotate:] + DATED[:rotate]
    view = listed(*(claim(cid, "1.00", True, date) for date, cid in reversed(rows)))
    assert [c.claim_id for c in view.collectible] == [cid for _, cid in DATED]


def test_not_collectible_are_oldest_first_too() -> None:
    view = listed(*(claim(cid, "1.00", False, date) for date, cid in reversed(DATED)))
    assert [n.claim.claim_id for n in view.not_collectible] == [cid for _, cid in DATED]


@pytest.mark.parametrize(
    ("earlier", "later"),
    [("01/31/2024", "02/01/2024"), ("12/01/2023", "01/01/2024"), ("2024-01-31", "2024-02-01"),
     ("2023-12-31", "2024-01-01"), ("02/01/2024", "2024-02-02"), ("2024-02-01", "02/02/2024"),
     ("9/30/2024", "10/1/2024")],
)
def test_day_month_and_year_each_count(earlier: str, later: str) -> None:
    for a, b in ((earlier, later), (later, earlier)):
        view = listed(claim("2", "1.00", True, a), claim("1", "1.00", True, b))
        first = "2" if a == earlier else "1"
        assert view.collectible[0].claim_id == first


@pytest.mark.parametrize("odd", ["2024/01/02", "13-01-2024", "01-02-2024", "20240102",
                                 "2024-1-2", "01/02/24", "Jan 2 2024"])
def test_unreadable_dates_go_last_and_are_kept_as_written(odd: str) -> None:
    view = listed(claim("1", "1.00", True, odd), claim("9", "1.00", True, "12/31/2099"))
    assert [c.claim_id for c in view.collectible] == ["9", "1"]
    assert view.collectible[1].service_date == odd


# ---------------------------------------------------------------- ids at the range limit

BIG = 10**64 - 1  # 64 digits: the longest id


@pytest.mark.parametrize("dept", [640, 641, 999, 10**6, BIG])
@pytest.mark.parametrize("form", ["int", "list", "text"])
def test_large_integer_department_ids_are_read(dept: int, form: str) -> None:
    depts: object = {"int": dept, "list": [1, dept], "text": f"1, {dept}"}[form]
    view = evaluate_balances(patient(group(700, depts, claim(1, "5.00"))), "p", str(dept))
    assert view.group_found and view.provider_group_id == "700"
    assert [c.claim_id for c in view.collectible] == ["1"]


@pytest.mark.parametrize("where", ["departmentids", "providergroupid"])
def test_an_integer_id_of_65_digits_is_refused(where: str) -> None:
    g = group(700, 1, claim(1, "5.00"))
    g[where] = 10**64
    with pytest.raises(BalancePayloadError):
        evaluate_balances(patient(g), "p", "1")


@pytest.mark.parametrize("pg", [640, 641, BIG])
def test_large_integer_provider_groups_are_read(pg: int) -> None:
    view = evaluate_balances(patient(group(pg, "1", claim(1, "5.00"))), "p", "1")
    assert view.provider_group_id == str(pg)


def test_large_integer_ids_in_departments() -> None:
    payload = {"departments": [{"departmentid": 640, "providergroupid": 641},
                               {"departmentid": BIG, "providergroupid": 999}]}
    info = department_info(payload, "640")
    assert (info.found, info.provider_group_id, info.enterprise) == (True, "641", True)
    assert department_info(payload, str(BIG)).provider_group_id == "999"
    with pytest.raises(BalancePayloadError):
        department_info({"departments": [{"departmentid": 10**64}]}, "1")


@pytest.mark.parametrize("value", [-1, -640])
def test_negative_integer_ids_are_refused(value: int) -> None:
    with pytest.raises(BalancePayloadError):
        department_info([{"departmentid": value}], "1")


# ---------------------------------------------------------------- the message snippet


@pytest.mark.parametrize("n", range(0, 20))
def test_snippet_shows_short_text_whole_and_at_most_8_characters_of_longer(n: int) -> None:
    hint = bal._snippet("7" * n)
    assert len(hint) <= 12
    assert hint.count("7") == (n if n <= 10 else 8)
    assert hint.endswith("...") is (n > 10)


def test_snippet_never_echoes_a_number_or_a_container() -> None:
    for value in (4111111111111111, 4111111111111111.0, [4111111111111111],
                  {"pan": "4111111111111111"}, True):
        hint = bal._snippet(value)
        assert "41" not in hint and hint.isprintable() and len(hint) <= 20


def test_a_bad_value_in_a_claim_is_named_by_place_with_a_clipped_hint() -> None:
    with pytest.raises(BalancePayloadError) as err:
        listed(claim(1, "1.00", "4111111111111111"))
    text = str(err.value)
    assert text.startswith("claimbalancedetails[0].claimdetails[0].cleanbalance")
    assert bal._snippet("4111111111111111") in text and "4111111111111111" not in text


@pytest.mark.parametrize(
    ("claims", "order"),
    [((123, "0123"), ["0123", "123"]), (("0123", 123), ["0123", "123"]),
     ((0, "00"), ["0", "00"]), (("00", 0), ["0", "00"]), ((7, "007", "07"), ["007", "07", "7"])],
)
def test_same_valued_digit_ids_are_ordered_as_text_whether_int_or_string(
        claims: tuple[object, ...], order: list[str]) -> None:
    view = listed(*(claim(cid, "1.00") for cid in claims))
    assert [c.claim_id for c in view.collectible] == order


# ---------------------------------------------------------------- service date limits


@pytest.mark.parametrize("n", [31, 32])
def test_a_service_date_of_up_to_32_characters_is_kept(n: int) -> None:
    text = ("01/02/2024 " + "x" * 40)[:n]
    (c,) = listed(claim(1, "1.00", True, text)).collectible
    assert c.service_date == text


def test_a_service_date_of_33_characters_is_refused() -> None:
    with pytest.raises(BalancePayloadError) as err:
        listed(claim(1, "1.00", True, "01/02/2024 " + "x" * 22))
    assert "claimdetails[0].servicedate" in str(err.value)


# ---------------------------------------------------------------- the place is named


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ([{"claimbalancedetails": {"a": 1}}], "claimbalancedetails"),
        (patient(group(10, 10**64, claim(1, "1.00"))), "claimbalancedetails[0].departmentids"),
        (patient(group(10, [1, "a b"], claim(1, "1.00"))),
         "claimbalancedetails[0].departmentids[1]"),
    ],
)
def test_patient_errors_name_the_place(payload: object, where: str) -> None:
    with pytest.raises(BalancePayloadError) as err:
        evaluate_balances(payload, "p", "1")
    assert str(err.value).startswith(where)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"copay": {"insurancecopay": "abc"}}, "copay.insurancecopay"),
        ({"copay": {"insurancecopay": "5.00", "collectedforappointment": "abc"}},
         "copay.collectedforappointment"),
        ({"copay": "abc"}, "copay"),
    ],
)
def test_copay_errors_name_the_place(payload: object, where: str) -> None:
    with pytest.raises(BalancePayloadError) as err:
        bal.parse_copay(payload)
    assert str(err.value).startswith(where + ":")


def test_departments_errors_name_the_place() -> None:
    with pytest.raises(BalancePayloadError) as err:
        department_info({"departments": "1,2"}, "1")
    assert str(err.value).split()[0] == "departments"
