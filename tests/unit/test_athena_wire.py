"""athena's wire format, read by the pure core (lobbypay.core.athena)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.core.athena import (
    Approved,
    AthenaBadResponse,
    AthenaParseError,
    Declined,
    ErrorBody,
    Receipt,
    clean_peer_text,
    is_throttle_text,
    is_unknown_outcome_text,
    parse_eastern_datetime,
    parse_eastern_spans,
    parse_error_body,
    parse_list_page,
    parse_payment_result,
    parse_receipts,
    parse_token,
)
from lobbypay.core.money import Cents, format_cents

CANARY_PAN = "4111111111111111"

# ---------------------------------------------------------------- payment result


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([{"success": "true", "epaymentid": 123456, "errortext": ""}], Approved("123456")),
        ([{"success": "true", "epaymentid": "123456"}], Approved("123456")),
        ([{"success": True, "epaymentid": 7}], Approved("7")),
        ([{"success": "TRUE", "epaymentid": " 42 "}], Approved("42")),
        (
            [{"success": "false", "errortext": "Declined - card has been declined"}],
            Declined("Declined - card has been declined"),
        ),
        ([{"success": False, "errortext": None}], Declined("declined (athena gave no reason)")),
        ([{"success": "false"}], Declined("declined (athena gave no reason)")),
        (
            [{"success": "false", "epaymentid": "", "errortext": "Duplicate payment"}],
            Declined("Duplicate payment"),
        ),
    ],
)
def test_parse_payment_result_reads_athena_shapes(body: object, expected: object) -> None:
    assert parse_payment_result(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"success": "true", "epaymentid": 1},  # bare object, not an array
        [],
        [{"success": "true", "epaymentid": 1}, {"success": "true", "epaymentid": 2}],
        ["true"],
        [{"epaymentid": 1}],
        [{"success": "yes", "epaymentid": 1}],
        [{"success": 1, "epaymentid": 1}],
        [{"success": "true"}],
        [{"success": "true", "epaymentid": ""}],
        [{"success": "true", "epaymentid": None}],
        [{"success": "true", "epaymentid": True}],
        [{"success": "true", "epaymentid": -5}],
        [{"success": "true", "epaymentid": 1.5}],
        [{"success": "true", "epaymentid": "12/34"}],
        None,
        "garbage",
    ],
)
def test_parse_payment_result_refuses_other_shapes(body: object) -> None:
    with pytest.raises(AthenaParseError):
        parse_payment_result(body)


def test_parse_error_is_a_bad_response() -> None:
    assert issubclass(AthenaParseError, AthenaBadResponse)


def test_decline_text_is_scrubbed_of_card_data() -> None:
    body = [
        {
            "success": "false",
            "errortext": f"Card {CANARY_PAN} declined; track ;{CANARY_PAN}=2812101?",
        }
    ]
    result = parse_payment_result(body)
    assert isinstance(result, Declined)
    assert CANARY_PAN not in result.errortext
    assert "declined" in result.errortext


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("11/27/2026 09:03:07", datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)),  # EST, -5
        ("07/01/2026 09:03:07", datetime(2026, 7, 1, 13, 3, 7, tzinfo=UTC)),  # EDT, -4
        ("7/1/2026 9:03", datetime(2026, 7, 1, 13, 3, tzinfo=UTC)),
        ("11/27/2026 9:03:07 PM", datetime(2026, 11, 28, 2, 3, 7, tzinfo=UTC)),
        ("11/27/2026 12:00:00 AM", datetime(2026, 11, 27, 5, 0, tzinfo=UTC)),
        ("2026-11-27T09:03:07", datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)),
        ("2026-11-27 09:03:07.250", datetime(2026, 11, 27, 14, 3, 7, 250000, tzinfo=UTC)),
        ("2026-11-27T09:03:07-05:00", datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)),
        ("2026-11-27T14:03:07Z", datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)),
        # the repeated hour of the autumn change: the earliest reading (EDT); both are in
        # parse_eastern_spans (test_dst_fold_gives_both_readings)
        ("11/01/2026 01:30:00", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    ],
)
def test_parse_eastern_datetime(text: str, utc: datetime) -> None:
    got = parse_eastern_datetime(text)
    assert got == utc
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "11/27/2026",
        "27.11.2026 09:03",
        "13/01/2026 09:00:00",
        "11/27/2026 13:00 PM",
        "yesterday",
        "2026-02-30T10:00:00",
        20261127,
        None,
    ],
)
def test_parse_eastern_datetime_refuses(text: object) -> None:
    with pytest.raises(AthenaParseError):
        parse_eastern_datetime(text)


# ---------------------------------------------------------------- receipts

RECEIPT = {
    "amount": 65.5,
    "cardnumberlast4digits": "1111",
    "cardtypeabbreviation": "VI",
    "cardtypename": "Visa",
    "contractid": "",
    "epaymentid": 90001,
    "requestdate": "11/27/2026 09:03:07",
    "type": "PAYMENT",
}


def test_parse_receipts_envelope_and_bare_array() -> None:
    want = [
        Receipt(
            "90001", Cents(6550), "1111", parse_eastern_spans("11/27/2026 09:03:07"), "PAYMENT"
        )
    ]
    assert parse_receipts({"receipts": [RECEIPT], "totalcount": 1}) == want
    assert parse_receipts([RECEIPT]) == want
    assert parse_receipts({"receipts": [], "totalcount": 0}) == []
    assert parse_receipts({"totalcount": 0}) == []


def test_parse_receipts_string_money_and_ids() -> None:
    r = {**RECEIPT, "amount": "15.25", "epaymentid": "90002", "cardnumberlast4digits": 42}
    (receipt,) = parse_receipts([r])
    assert receipt.amount == 1525
    assert receipt.epayment_id == "90002"
    assert receipt.last4 == "0042"


@pytest.mark.parametrize(
    ("field", "value", "attr", "expected"),
    [
        ("cardnumberlast4digits", "", "last4", None),
        ("cardnumberlast4digits", "11", "last4", None),
        ("cardnumberlast4digits", None, "last4", None),
        ("requestdate", "", "requested_at", None),
        ("requestdate", None, "requested_at", None),
        ("type", None, "type", None),
    ],
)
def test_parse_receipts_optional_fields(
    field: str, value: object, attr: str, expected: object
) -> None:
    (receipt,) = parse_receipts([{**RECEIPT, field: value}])
    assert getattr(receipt, attr) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"receipts": "nope"},
        {"items": []},
        [{**RECEIPT, "amount": "12.345"}],
        [{**RECEIPT, "amount": None}],
        [{**RECEIPT, "epaymentid": None}],
        [{**RECEIPT, "requestdate": "last tuesday"}],
        ["receipt"],
        42,
    ],
)
def test_parse_receipts_refuses_unreadable(body: object) -> None:
    with pytest.raises(AthenaParseError):
        parse_receipts(body)


def test_parse_list_page_follows_next() -> None:
    assert parse_list_page(
        {"departments": [1], "next": "/v1/1/departments?offset=1"}, "departments"
    ) == (
        [1],
        "/v1/1/departments?offset=1",
    )
    assert parse_list_page([1, 2], "departments") == ([1, 2], None)
    with pytest.raises(AthenaParseError):
        parse_list_page({"departments": [], "next": 5}, "departments")


# ---------------------------------------------------------------- requestdate spans
# (matching itself: tests/unit/test_reconcile.py)


def test_spans_cover_the_text_resolution() -> None:
    (with_s,) = parse_eastern_spans("11/27/2026 09:03:07")
    assert with_s.lo == datetime(2026, 11, 27, 14, 3, 7, tzinfo=UTC)
    assert with_s.hi == datetime(2026, 11, 27, 14, 3, 7, 999999, tzinfo=UTC)
    (no_s,) = parse_eastern_spans("11/27/2026 09:03")
    assert no_s.lo == datetime(2026, 11, 27, 14, 3, 0, tzinfo=UTC)
    assert no_s.hi == datetime(2026, 11, 27, 14, 3, 59, 999999, tzinfo=UTC)
    (iso_no_s,) = parse_eastern_spans("2026-11-27T09:03")
    assert iso_no_s.width_s > 59
    (iso_frac,) = parse_eastern_spans("2026-11-27T09:03:07.250")
    assert iso_frac.lo == iso_frac.hi == datetime(2026, 11, 27, 14, 3, 7, 250000, tzinfo=UTC)


def test_dst_fold_gives_both_readings() -> None:
    # 2026-11-01 01:30:10 happens twice in New York: EDT (05:30:10Z), then EST (06:30:10Z)
    spans = parse_eastern_spans("11/01/2026 01:30:10")
    assert [s.lo for s in spans] == [datetime(2026, 11, 1, 5, 30, 10, tzinfo=UTC),
                                     datetime(2026, 11, 1, 6, 30, 10, tzinfo=UTC)]
    # the spring gap (02:30 does not exist on 2026-03-08): both readings too
    assert len(parse_eastern_spans("03/08/2026 02:30:00")) == 2
    # an ordinary hour has one
    assert len(parse_eastern_spans("11/01/2026 03:30:10")) == 1
    # an explicit offset is taken at its word
    assert len(parse_eastern_spans("2026-11-01T01:30:10-05:00")) == 1


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("Unknown", True),
        ("Unknown - contact athena with the CCP payment number", True),
        ("  UNKNOWN: processor did not answer", True),
        ("Declined - card has been declined", False),
        ("Card unknown to issuer", False),
        ("", False),
    ],
)
def test_unknown_outcome_text(text: str, unknown: bool) -> None:
    assert is_unknown_outcome_text(text) is unknown


def test_unknown_errortext_is_not_a_decline() -> None:
    with pytest.raises(AthenaParseError):
        parse_payment_result([{"success": "false", "errortext": "Unknown"}])
    assert parse_payment_result([{"success": "false", "errortext": "Declined"}]) == Declined(
        "Declined")


# ---------------------------------------------------------------- error bodies, tokens


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": "Missing parameters.", "missingfields": ["departmentid"]},
            ErrorBody("Missing parameters.", None, ("departmentid",)),
        ),
        (
            {"error": "Bad", "detailedmessage": "more", "missingfields": "a, b"},
            ErrorBody("Bad", "more", ("a", "b")),
        ),
        ({"detailedmessage": "only detail"}, ErrorBody("only detail", "only detail", ())),
        ([{"error": "in an array"}], ErrorBody("in an array", None, ())),
        ({"error": "x", "missingfields": [1, "ok", "bad name!"]}, ErrorBody("x", None, ("ok",))),
        ({"success": "true"}, None),
        ("<html>", None),
        (None, None),
        ([], None),
    ],
)
def test_parse_error_body(body: object, expected: ErrorBody | None) -> None:
    assert parse_error_body(body) == expected


def test_parse_error_body_masks_secrets_and_card_data() -> None:
    track = f"%B{CANARY_PAN}^DOE/JOHN^2812101?"
    err = parse_error_body(
        {"error": f"bad trackdata {track}", "detailedmessage": f"echo xyzsecret {CANARY_PAN}"},
        ("xyzsecret",),
    )
    assert err is not None
    assert CANARY_PAN not in err.error + (err.detailed or "")
    assert "DOE/JOHN" not in err.error
    assert "xyzsecret" not in (err.detailed or "")


def test_clean_peer_text_caps_and_strips() -> None:
    text = clean_peer_text("a\x00b\nc" + "x" * 1000)
    assert "\x00" not in text and "\n" not in text
    assert len(text) <= 300


def test_parse_token() -> None:
    assert parse_token({"access_token": "abc", "token_type": "Bearer", "expires_in": 3600}) == (
        "abc",
        3600.0,
    )
    assert parse_token({"access_token": "abc", "expires_in": "120"}) == ("abc", 120.0)
    for bad in [
        {},
        {"access_token": ""},
        {"access_token": "a b"},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "expires_in": True},
        [],
        "x",
    ]:
        with pytest.raises(AthenaParseError):
            parse_token(bad)


def test_is_throttle_text() -> None:
    assert is_throttle_text("<h1>Developer Over Qps</h1>")
    assert is_throttle_text("Developer Over Rate")
    assert not is_throttle_text("<h1>Forbidden</h1>")


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "success",
                    "epaymentid",
                    "errortext",
                    "receipts",
                    "amount",
                    "requestdate",
                    "cardnumberlast4digits",
                    "error",
                    "detailedmessage",
                    "missingfields",
                    "access_token",
                    "expires_in",
                    "totalcount",
                    "next",
                    "type",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parsers_raise_only_their_typed_error(value: object) -> None:
    for parse in (
        parse_payment_result,
        parse_receipts,
        parse_token,
        parse_eastern_datetime,
        lambda v: parse_list_page(v, "receipts"),
    ):
        try:
            parse(value)
        except AthenaParseError:
            pass
    parse_error_body(value)  # never raises


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "epaymentid": st.integers(min_value=0, max_value=10**9)
                | st.from_regex(r"\A[0-9]{1,9}\Z"),
                "amount": st.integers(min_value=-(10**6), max_value=10**8).map(format_cents),
                "cardnumberlast4digits": st.from_regex(r"\A[0-9]{4}\Z"),
                "requestdate": st.datetimes(
                    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - naive on purpose: wall text
                    max_value=datetime(2090, 1, 1),  # noqa: DTZ001
                ).map(lambda d: d.strftime("%m/%d/%Y %H:%M:%S")),
            }
        ),
        max_size=5,
    )
)
def test_receipts_round_trip(rows: list[dict[str, object]]) -> None:
    parsed = parse_receipts({"receipts": rows, "totalcount": len(rows)})
    assert [r.epayment_id for r in parsed] == [str(row["epaymentid"]) for row in rows]
    for receipt, row in zip(parsed, rows, strict=True):
        assert format_cents(receipt.amount) == row["amount"]
        assert receipt.requested_at is not None and receipt.requested_at.tzinfo is UTC


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_text_inputs_only_raise_typed_errors(text: str) -> None:
    for parse in (parse_eastern_datetime, parse_payment_result, parse_receipts):
        try:
            parse(text)
        except AthenaParseError:
            pass
    assert CANARY_PAN not in clean_peer_text(text + CANARY_PAN + text)


def test_core_athena_is_pure() -> None:
    code = (
        "import sys, lobbypay.core.athena\n"
        "bad = {'asyncio', 'httpx', 'socket', 'sqlite3'} & set(sys.modules)\n"
        "print(sorted(bad))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": "agent"},
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert out.stdout.strip() == "[]"
