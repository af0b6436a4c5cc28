"""lobbypay.core.money: exact cents, strict wire amounts, tolerant athena amounts."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.core.money import (
    MAX_ATHENA_CENTS,
    InvalidAmount,
    format_cents,
    format_display,
    parse_athena_amount,
    parse_wire_amount,
)

#: the protocol's pattern, with ASCII digits spelled out
WIRE_PATTERN = re.compile(r"[0-9]{1,7}\.[0-9]{2}")
MAX_WIRE_CENTS = 999_999_999

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=4),
    max_leaves=10,
)


# ---------------------------------------------------------------- wire amounts


@pytest.mark.parametrize(
    ("text", "cents"),
    [("0.00", 0), ("0.01", 1), ("25.00", 2500), ("40.10", 4010), ("9999999.99", MAX_WIRE_CENTS),
     ("0000001.00", 100)],
)
def test_wire_accepts_exact_two_decimal_strings(text: str, cents: int) -> None:
    assert parse_wire_amount(text) == cents


@pytest.mark.parametrize(
    "value",
    [
        25, 25.0, 2500, True, None, [], {}, float("nan"), float("inf"),  # not strings
        "25", "25.0", "25.000", "25.", ".25", "", ".",  # wrong decimals
        "-1.00", "+1.00", "-0.00",  # signs
        "NaN", "nan", "Infinity", "1e2", "1E+02",  # float spellings
        " 25.00", "25.00 ", "25.00\n", "\t25.00", "25 .00",  # whitespace
        "10000000.00",  # 8 digits
        "$25.00", "1,000.00", "25,00", "25_0.00",  # decoration
        "\uff12\uff15.00", "\u0662\u0665.00", "25.\u0660\u0660",  # non-ASCII digits
    ],
)
def test_wire_rejects_everything_else(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_wire_amount(value)


@given(st.integers(min_value=0, max_value=MAX_WIRE_CENTS))
def test_wire_round_trip(cents: int) -> None:
    text = format_cents(cents)
    assert WIRE_PATTERN.fullmatch(text)
    assert parse_wire_amount(text) == cents
    assert format_cents(parse_wire_amount(text)) == text


@given(st.text(max_size=14))
def test_wire_text_matches_the_protocol_pattern_or_is_rejected(text: str) -> None:
    if WIRE_PATTERN.fullmatch(text):
        whole, frac = text.split(".")
        assert parse_wire_amount(text) == int(whole) * 100 + int(frac)
    else:
        with pytest.raises(InvalidAmount):
            parse_wire_amount(text)


@given(st.from_regex(r"\A-?[0-9]{1,7}(\.[0-9]{0,5})?\Z")
       | st.from_regex(r"\A[0-9]{8,12}\.[0-9]{2}\Z"))
def test_wire_rejects_near_misses(text: str) -> None:
    if WIRE_PATTERN.fullmatch(text):
        return  # the generator also makes valid ones; those are tested above
    with pytest.raises(InvalidAmount):
        parse_wire_amount(text)


@given(json_values.filter(lambda v: not isinstance(v, str)))
def test_wire_rejects_every_non_string(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_wire_amount(value)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_wire_rejects_floats_and_their_text_forms(value: float) -> None:
    with pytest.raises(InvalidAmount):
        parse_wire_amount(value)
    if not math.isfinite(value) or abs(value) >= 1e7 or "e" in repr(value):
        with pytest.raises(InvalidAmount):
            parse_wire_amount(repr(value))


@pytest.mark.parametrize(
    "value", ["9" * 5000, "4111111111111111", "4111111111111111.00", [4111111111111111],
              4111111111111111, 4111111111111111.0, {"pan": "4111111111111111"}],
)
def test_wire_error_message_is_short_and_never_holds_a_card_number(value: object) -> None:
    with pytest.raises(InvalidAmount) as err:
        parse_wire_amount(value)
    assert len(str(err.value)) < 120
    assert "4111111111111111" not in str(err.value)
    with pytest.raises(InvalidAmount) as err:
        parse_athena_amount(value)
    assert "4111111111111111" not in str(err.value)


# ---------------------------------------------------------------- athena amounts


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        (0, 0), (40, 4000), (-5, -500), (40.0, 4000), (40.1, 4010), (40.01, 4001),
        (-25.15, -2515), (0.1 + 0.2 - 0.3 + 19.99, 1999), (1e10, MAX_ATHENA_CENTS),
        ("40", 4000), ("40.5", 4050), ("40.50", 4050), ("-25.15", -2515), (" 12.00\n", 1200),
        ("$40.00", 4000), ("-$5", -500), ("1,234.56", 123456), ("$1,234,567.89", 123456789),
        ("0", 0), ("-0.00", 0), ("10000000000", MAX_ATHENA_CENTS),
    ],
)
def test_athena_amount_forms(value: object, cents: int) -> None:
    assert parse_athena_amount(value) == cents


@pytest.mark.parametrize(
    "value",
    [
        True, False, None, [], {}, "", " ", "abc", "40.123", 40.123, 0.001, 1e-05,
        float("nan"), float("inf"), float("-inf"), 1e300, -1e300,
        pytest.param(10**5000, id="huge-int"), pytest.param(-(10**5000), id="huge-negative-int"),
        10**10 + 1, "10000000000.01", "1,2,3", ",,5", "12,34.00", "$-5", "--5", "+5",
        "5.", ".5", "1e3", "\u0661\u0662.00", "\uff14\uff10", "4 0.00",
        pytest.param("x" * 100_000, id="long-text"),
    ],
)
def test_athena_amount_rejects(value: object) -> None:
    with pytest.raises(InvalidAmount) as err:
        parse_athena_amount(value)
    assert len(str(err.value)) < 120  # never echoes a big value


@given(st.integers(min_value=-MAX_ATHENA_CENTS, max_value=MAX_ATHENA_CENTS))
def test_athena_text_and_float_round_trip(cents: int) -> None:
    assert parse_athena_amount(format_cents(cents)) == cents
    assert parse_athena_amount(cents / 100) == cents


@given(st.integers(min_value=-(10**10), max_value=10**10))
def test_athena_whole_dollars(dollars: int) -> None:
    assert parse_athena_amount(dollars) == dollars * 100
    assert parse_athena_amount(str(dollars)) == dollars * 100


@given(json_values)
@settings(max_examples=300)
def test_athena_amount_never_raises_anything_else(value: object) -> None:
    try:
        cents = parse_athena_amount(value)
    except InvalidAmount:
        return
    assert type(cents) is int
    assert abs(cents) <= MAX_ATHENA_CENTS


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e10, max_value=1e10))
def test_athena_float_is_exact_or_rejected(value: float) -> None:
    try:
        cents = parse_athena_amount(value)
    except InvalidAmount:
        assert round(value * 100) / 100 != value
        return
    assert cents / 100 == value


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("cents", "text", "display"),
    [(0, "0.00", "$0.00"), (5, "0.05", "$0.05"), (4010, "40.10", "$40.10"),
     (-50, "-0.50", "-$0.50"), (123456789, "1234567.89", "$1,234,567.89")],
)
def test_formats(cents: int, text: str, display: str) -> None:
    assert format_cents(cents) == text
    assert format_display(cents) == display


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_format_cents_takes_only_ints(value: object) -> None:
    with pytest.raises(TypeError):
        format_cents(value)  # type: ignore[arg-type]
