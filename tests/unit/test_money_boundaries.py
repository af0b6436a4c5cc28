"""lobbypay.core.money at its edges: the largest athena amount, the padded-text limit, and
what a rejection message may echo (scripts/mutate found these unchecked)."""

from __future__ import annotations

import pytest
from lobbypay.core import money
from lobbypay.core.money import (
    MAX_ATHENA_CENTS,
    InvalidAmount,
    parse_athena_amount,
    parse_wire_amount,
)

MAX_DOLLARS = MAX_ATHENA_CENTS // 100
#: the longest text parse_athena_amount reads at all (padding included)
MAX_TEXT = 40


# ---------------------------------------------------------------- the largest amount


@pytest.mark.parametrize(
    "value",
    [MAX_DOLLARS, -MAX_DOLLARS, float(MAX_DOLLARS), -float(MAX_DOLLARS),
     "10000000000.00", "-10000000000.00", "$10,000,000,000.00", "-$10,000,000,000"],
)
def test_the_largest_amount_is_accepted_in_every_form(value: object) -> None:
    cents = parse_athena_amount(value)
    assert abs(cents) == MAX_ATHENA_CENTS
    assert (cents < 0) is (str(value).startswith("-"))


@pytest.mark.parametrize(
    "value",
    [MAX_DOLLARS + 1, -(MAX_DOLLARS + 1), float(MAX_DOLLARS) + 0.01, -float(MAX_DOLLARS) - 0.01,
     "10000000000.01", "-10000000000.01", "$10,000,000,000.01", "10000000001"],
)
def test_one_cent_above_the_largest_amount_is_refused(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_athena_amount(value)


# ---------------------------------------------------------------- padded text


@pytest.mark.parametrize("text", ["1.00", "-10000000000.00", "$10,000,000,000.00"])
def test_padding_up_to_the_limit_is_read(text: str) -> None:
    expected = parse_athena_amount(text)
    for padded in (text.rjust(MAX_TEXT), text.ljust(MAX_TEXT), text.center(MAX_TEXT, "\n")):
        assert len(padded) == MAX_TEXT
        assert parse_athena_amount(padded) == expected


@pytest.mark.parametrize("text", ["1.00", "-10000000000.00"])
def test_one_character_past_the_limit_is_refused(text: str) -> None:
    for padded in (text.rjust(MAX_TEXT + 1), text.ljust(MAX_TEXT + 1)):
        with pytest.raises(InvalidAmount):
            parse_athena_amount(padded)


# ---------------------------------------------------------------- what a refusal echoes


class _Noisy:
    """An object whose repr carries terminal escapes and a line break."""

    def __repr__(self) -> str:
        return "\x1b[2J\n\x07ok"


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_wire_amount, "abc"), (parse_wire_amount, 25), (parse_wire_amount, None),
        (parse_athena_amount, True), (parse_athena_amount, float("nan")),
        (parse_athena_amount, float("-inf")), (parse_athena_amount, 1e300),
        (parse_athena_amount, 40.123), (parse_athena_amount, "abc"),
        (parse_athena_amount, "x" * (MAX_TEXT + 1)), (parse_athena_amount, "10000000000.01"),
    ],
)
def test_a_refusal_carries_the_sanitised_hint_of_the_value(parse: object, value: object) -> None:
    with pytest.raises(InvalidAmount) as err:
        parse(value)  # type: ignore[operator]
    assert money._snippet(value) in str(err.value)


@pytest.mark.parametrize(("value", "name"), [([1], "list"), ({"a": 1}, "dict"), (b"1", "bytes")])
def test_a_refusal_of_a_foreign_type_names_the_type(value: object, name: str) -> None:
    with pytest.raises(InvalidAmount) as err:
        parse_athena_amount(value)
    assert name in str(err.value)


@pytest.mark.parametrize("n", range(0, 20))
def test_snippet_shows_short_text_whole_and_at_most_8_characters_of_longer(n: int) -> None:
    text = "7" * n
    hint = money._snippet(text)
    assert len(hint) <= 12
    assert hint.count("7") == (n if n <= 10 else 8)
    assert hint.endswith("...") is (n > 10)
    assert hint.isprintable()


def test_snippet_replaces_each_unprintable_character_by_one_question_mark() -> None:
    hint = money._snippet(_Noisy())
    assert hint.isprintable()
    assert hint == "?[2J??ok"
    with pytest.raises(InvalidAmount) as err:
        parse_wire_amount(_Noisy())
    assert str(err.value).isprintable()


@pytest.mark.parametrize("value", [10**5000, -(10**5000)], ids=["huge", "huge-negative"])
def test_a_huge_integer_is_refused_without_being_written_out(value: int) -> None:
    # str()/repr() of an int past 4300 digits raises ValueError: the message must not try
    with pytest.raises(InvalidAmount) as err:
        parse_wire_amount(value)
    assert len(str(err.value)) < 120


@pytest.mark.parametrize("value", [[4111111111111111], {"pan": "4111111111111111"}, ("1",)])
def test_a_container_is_never_echoed(value: object) -> None:
    hint = money._snippet(value)
    assert "1" not in hint and type(value).__name__ in hint
