"""parse_swipe and the card object: ISO/IEC 7813 tracks, reader quirks, no data leaks."""

from __future__ import annotations

import copy
import pickle
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lobbypay_hw.api import Card, ReadFailure
from lobbypay_hw.card import BankCard, CardWipedError
from lobbypay_hw.tracks import MAX_SWIPE_BYTES, SwipeError, parse_swipe

CANARY = "4111111111111111"

TEST_PANS = [
    ("4111111111111111", "visa"),
    ("5555555555554444", "mastercard"),
    ("2223000048400011", "mastercard"),
    ("378282246310005", "amex"),
    ("6011111111111117", "discover"),
    ("3530111333300000", "jcb"),
    ("30569309025904", "diners"),
    ("4222222222222", "visa"),  # 13 digits
]


def t1(
    pan: str = CANARY,
    name: str = "DOE/JOHN Q",
    exp: str = "2812",
    rest: str = "1010000000000000000000",
) -> str:
    return f"%B{pan}^{name}^{exp}{rest}?"


def t2(pan: str = CANARY, exp: str = "2812", rest: str = "1010000000000000") -> str:
    return f";{pan}={exp}{rest}?"


def reason(raw: bytes) -> ReadFailure:
    with pytest.raises(SwipeError) as info:
        parse_swipe(raw)
    return info.value.reason


# ---------------------------------------------------------------- good swipes


@pytest.mark.parametrize(("pan", "brand"), TEST_PANS)
def test_both_tracks_parse_with_brand_and_last4(pan: str, brand: str) -> None:
    text = t1(pan) + t2(pan)
    card = parse_swipe(text.encode())
    assert isinstance(card, Card)
    assert card.brand == brand
    assert card.last4 == pan[-4:]
    assert card.trackdata() == text


@pytest.mark.parametrize(("pan", "brand"), TEST_PANS)
def test_track2_alone_is_enough(pan: str, brand: str) -> None:
    card = parse_swipe(t2(pan).encode())
    assert (card.brand, card.last4, card.trackdata()) == (brand, pan[-4:], t2(pan))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # MagTek serial: STX ESC tracks <sensor digit> CR ETX
        (b"\x02\x1b" + (t1() + t2()).encode() + b"0\r\x03", t1() + t2()),
        (b"\x02" + (t1() + t2()).encode() + b"\x03", t1() + t2()),
        ((t1() + t2()).encode() + b"\r\n", t1() + t2()),
        (b"  junk" + t2().encode() + b"trailing", t2()),
        # track 1 error mark: charge on track 2, don't send the mark on
        (b"%E?" + t2().encode(), t2()),
        # track 3 after track 2 is not ours to keep
        ((t1() + t2()).encode() + b";0123456789=123?", t1() + t2()),
        ((t1() + t2()).encode() + b"+E?", t1() + t2()),
        # track 1 without its start sentinel is noise; track 2 stands alone
        (t1()[1:].encode() + t2().encode(), t2()),
        (bytearray((t1() + t2()).encode()), t1() + t2()),
    ],
)
def test_wrappers_noise_and_error_marks(raw: bytes, expected: str) -> None:
    assert parse_swipe(raw).trackdata() == expected


def test_minimal_track2_and_long_names() -> None:
    assert parse_swipe(b";4111111111111111=2812101?").last4 == "1111"
    name = "A" * 26
    assert parse_swipe((t1(name=name) + t2()).encode()).brand == "visa"


# ---------------------------------------------------------------- bad swipes


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", ReadFailure.UNREADABLE),
        (b"\r\n", ReadFailure.UNREADABLE),
        (b"hello world", ReadFailure.UNREADABLE),
        (b"%E?;E?", ReadFailure.UNREADABLE),
        (b";E?", ReadFailure.UNREADABLE),
        (b"%E?", ReadFailure.UNREADABLE),
        (t1().encode(), ReadFailure.NO_TRACK2),
        ((t1() + ";E?").encode(), ReadFailure.NO_TRACK2),
        ((t1() + "\r").encode(), ReadFailure.NO_TRACK2),
        # missing end sentinels / truncated tracks
        (t1()[:-1].encode() + t2().encode(), ReadFailure.UNREADABLE),
        (t1().encode() + t2()[:-1].encode(), ReadFailure.UNREADABLE),
        (t1()[:20].encode(), ReadFailure.UNREADABLE),
        # structure
        (t1(name="X").encode() + t2().encode(), ReadFailure.UNREADABLE),
        (t1(name="A" * 27).encode() + t2().encode(), ReadFailure.UNREADABLE),
        (t1(exp="2813").encode() + t2(exp="2813").encode(), ReadFailure.UNREADABLE),
        (t2(exp="28").replace("1010000000000000", "").encode(), ReadFailure.UNREADABLE),
        (t2(exp="2800").encode(), ReadFailure.UNREADABLE),
        (b";4111111111111111=28A2101?", ReadFailure.UNREADABLE),
        (b";4111111111111111=2812101" + b"0" * 30 + b"?", ReadFailure.UNREADABLE),  # > 40
        (b"%b4111111111111111^doe/john^2812101?" + t2().encode(), ReadFailure.UNREADABLE),
        (b"%B4111111111111111^DOE\xe9^2812101?" + t2().encode(), ReadFailure.UNREADABLE),
        # tracks disagree
        (t1(pan="4012888888881881").encode() + t2().encode(), ReadFailure.UNREADABLE),
        (t1(exp="2901").encode() + t2().encode(), ReadFailure.UNREADABLE),
        # Luhn
        (t2(pan="4111111111111112").encode(), ReadFailure.BAD_CHECK_DIGIT),
        ((t1("5555555555554445") + t2("5555555555554445")).encode(), ReadFailure.BAD_CHECK_DIGIT),
        # not bank cards
        (
            b"%CAANYTOWN^DOE$JOHN$Q^123 MAIN ST^?;6360141234567890123=2512197001019?",
            ReadFailure.NOT_A_BANK_CARD,
        ),
        (b"%CAANYTOWN^DOE$JOHN^?", ReadFailure.NOT_A_BANK_CARD),
        (b";6360141234567890=2512197001019?", ReadFailure.NOT_A_BANK_CARD),
        (b";12345678?", ReadFailure.NOT_A_BANK_CARD),  # loyalty / access number
        (b";12345=2512101?", ReadFailure.NOT_A_BANK_CARD),  # PAN too short
        (b";41111111111111111111=2512101?", ReadFailure.NOT_A_BANK_CARD),  # 20 digits
        # too long
        (b"5" * (MAX_SWIPE_BYTES + 1), ReadFailure.TOO_LONG),
    ],
)
def test_bad_swipes_have_a_reason(raw: bytes, why: ReadFailure) -> None:
    assert reason(raw) is why


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_swipe(t2())  # type: ignore[arg-type]


def test_parser_leaves_the_callers_buffer_alone() -> None:
    buf = bytearray((t1() + t2()).encode())
    before = bytes(buf)
    card = parse_swipe(buf)
    assert bytes(buf) == before
    buf[:] = b"\0" * len(buf)  # the caller wipes its buffer; the card has its own copy
    assert card.trackdata() == t1() + t2()


# ---------------------------------------------------------------- the card object


def test_expiry_is_the_end_of_the_month() -> None:
    card = parse_swipe(t2(exp="2602").encode())
    assert not card.is_expired(date(2026, 2, 28))
    assert not card.is_expired(date(2025, 12, 31))
    assert card.is_expired(date(2026, 3, 1))
    assert card.is_expired(date(2027, 1, 1))


def test_card_text_shows_brand_and_last4_only() -> None:
    card = parse_swipe((t1() + t2()).encode())
    for text in (
        repr(card),
        str(card),
        f"{card}",
        f"{card!r}",
        f"{card:>40}",
        "%s" % card,
        repr([card]),
        repr({"card": card}),
    ):
        assert CANARY not in text
        assert "DOE" not in text
        assert "2812" not in text
    assert repr(card) == "<Card visa ****1111>"


def test_card_has_no_dict_and_refuses_copies() -> None:
    card = parse_swipe(t2().encode())
    assert not hasattr(card, "__dict__")
    with pytest.raises(TypeError):
        vars(card)
    with pytest.raises(TypeError):
        pickle.dumps(card)
    with pytest.raises(TypeError):
        copy.copy(card)
    with pytest.raises(TypeError):
        copy.deepcopy(card)
    with pytest.raises(AttributeError):
        card.extra = 1  # type: ignore[attr-defined]


def test_wipe_overwrites_the_bytes() -> None:
    card = parse_swipe(t2().encode())
    raw = card._raw  # the buffer itself, to check it is overwritten in place
    card.wipe()
    assert set(raw) <= {0}
    assert card.wiped
    with pytest.raises(CardWipedError) as info:
        card.trackdata()
    assert CANARY not in str(info.value)
    card.wipe()  # idempotent
    assert (card.brand, card.last4) == ("visa", "1111")


def test_card_constructor_validates() -> None:
    with pytest.raises(TypeError):
        BankCard(b"x", brand="visa", last4="1111", exp_year=2028, exp_month=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BankCard(bytearray(b"x"), brand="visa", last4="11", exp_year=2028, exp_month=1)
    with pytest.raises(ValueError):
        BankCard(bytearray(b"x"), brand="visa", last4="1111", exp_year=2028, exp_month=13)


# ---------------------------------------------------------------- properties

_track_chars = st.sampled_from(list(b"%;?^=+EB0123456789 /AZ\x02\x03\x1b\r\n") + [0x00, 0xFF])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=700), st.lists(_track_chars, max_size=120).map(bytes)))
def test_no_input_raises_anything_but_swipe_error(raw: bytes) -> None:
    try:
        card = parse_swipe(raw)
    except SwipeError as exc:
        assert isinstance(exc.reason, ReadFailure)
        assert str(exc) == f"swipe rejected: {exc.reason.value}"
        assert exc.__context__ is None and exc.__cause__ is None
    else:
        assert len(card.last4) == 4


@st.composite
def mangled_swipes(draw: st.DrawFn) -> bytes:
    """A real canary swipe with random damage: cut, byte flips, insertions, noise."""
    raw = bytearray((t1() + t2()).encode())
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "prefix", "suffix"]))
        pos = draw(st.integers(0, len(raw)))
        b = draw(st.integers(0, 255))
        if op == "cut":
            del raw[pos:]
        elif op == "flip" and pos < len(raw):
            raw[pos] = b
        elif op == "insert":
            raw.insert(pos, b)
        elif op == "prefix":
            raw[:0] = bytes([b])
        else:
            raw.append(b)
    return bytes(raw)


@settings(max_examples=400)
@given(mangled_swipes())
def test_neither_card_text_nor_errors_contain_the_pan(raw: bytes) -> None:
    try:
        card = parse_swipe(raw)
    except SwipeError as exc:
        for text in (str(exc), repr(exc), repr(exc.args)):
            assert CANARY not in text
    else:
        assert card.last4 == "1111"
        for text in (repr(card), str(card), format(card), format(card, "^60")):
            assert CANARY not in text
