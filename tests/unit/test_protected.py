"""Masked and encrypted reader output is recognised and refused as ``encrypted_reader``;
clear swipes are not mistaken for it; nothing of the input reaches the error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay_hw.api import ReadFailure
from lobbypay_hw.framing import LineFramer
from lobbypay_hw.protected import is_protected
from lobbypay_hw.tracks import SwipeError, parse_swipe

CANARY = "4111111111111111"
CLEAR = f"%B{CANARY}^DOE/JOHN^2812101000000?;{CANARY}=28121010000000?"

# MagneSafe V5 keyboard emulation at security level 3 (MagTek 99875475, "Masked Track
# Data"): first 6 / last 4 kept, the rest of the PAN and the discretionary data masked
# with '0', the expiry in clear; then '|' fields: card encode type, track 1/2/3 TDES
# ciphertext (hex), MagnePrint status, MagnePrint data, device serial, KSN.
KSN = "9011880B0BB8E7000007"
ENC_T1 = "C1A4D8E6F2B3" * 14
ENC_T2 = "7E21D04B9A33C5F1" * 5
ENC_T3 = "5D" * 56
MAGNESAFE_KB = (
    "%B4111110000001111^DOE/JOHN^2812000000000000000?"
    ";4111110000001111=28120000000000000000?"
    f"|0600|{ENC_T1}|{ENC_T2}|{ENC_T3}|61403000|{'A5' * 54}|B0D14A0C10128AA|{KSN}|"
)
# The same reader with '*' as its mask character (a property of the reader).
MAGNESAFE_STAR = MAGNESAFE_KB.replace("4111110000001111", "411111******1111")
# IDTech SecureMag: '*' masking, the format code masked too, then the encrypted block.
SECUREMAG = (
    "%*4111********1111^DOE/JOHN^*******************?"
    ";4111********1111=****************?"
    f"|{ENC_T2}|{KSN}|"
)

PROTECTED = {
    "magnesafe keyboard (0-masked + fields)": MAGNESAFE_KB,
    "magnesafe with * mask": MAGNESAFE_STAR,
    "securemag": SECUREMAG,
    "masked track 2 alone (*)": ";411111******1111=2812?",
    "masked track 2 alone (0, discretionary 0)": ";4111110000001111=28120000000000000?",
    "masked track 1 only": "%B411111******1111^DOE/JOHN^2812?",
    "clear tracks + encrypted fields": CLEAR + f"|{ENC_T2}|{KSN}|",
    "fields ended by CR": f";411111******1111=2812?|{KSN}\r",
}


@pytest.mark.parametrize("raw", list(PROTECTED.values()), ids=list(PROTECTED))
def test_protected_output_is_recognised(raw: str) -> None:
    assert is_protected(raw.encode())
    with pytest.raises(SwipeError) as info:
        parse_swipe(raw.encode())
    assert info.value.reason is ReadFailure.ENCRYPTED_READER
    assert str(info.value) == "swipe rejected: encrypted_reader"
    text = str(info.value) + repr(info.value)
    for secret in ("411111", "1111^", KSN, ENC_T2[:16], "DOE"):
        assert secret not in text
    assert info.value.__context__ is None


CLEAR_CASES = {
    "clear track 1 + 2": CLEAR,
    "clear track 2": f";{CANARY}=28121010000000?",
    "zeros in the middle but real discretionary data": ";4111110000001111=2812101123456?",
    # Visa's test card: zeros in the middle and in the discretionary data, but Luhn-valid
    "visa test card 4000 0000 0000 0002": (
        "%B4000000000000002^TEST/LOBBYPAY^3012101000000000000000?"
        ";4000000000000002=30121010000000000000?"),
    "a '|' in noise before any track": f"|ABCDEF0123456789ABCD|;{CANARY}=2812101?",
    "a '|' with a short field": f";{CANARY}=2812101?|12|",
    "a '|' with non-hex text": f";{CANARY}=2812101?|THIS IS NOT HEX AT ALL|",
    "licence": "%CAANYTOWN^DOE$JOHN^123 MAIN ST^?;6360141234567890123=2512197001019?",
}


@pytest.mark.parametrize("raw", list(CLEAR_CASES.values()), ids=list(CLEAR_CASES))
def test_clear_output_is_not_mistaken(raw: str) -> None:
    assert not is_protected(raw.encode())


def test_clear_swipe_still_parses() -> None:
    card = parse_swipe(CLEAR.encode())
    assert (card.brand, card.last4) == ("visa", "1111")


def test_encrypted_output_fits_the_framer_and_the_parser() -> None:
    # about 600 bytes: it must be refused as encrypted, not cut as too long
    assert len(MAGNESAFE_KB) > 512
    frames = LineFramer().feed(MAGNESAFE_KB.encode() + b"\r")
    assert len(frames) == 1 and isinstance(frames[0], bytearray)
    with pytest.raises(SwipeError) as info:
        parse_swipe(frames[0])
    assert info.value.reason is ReadFailure.ENCRYPTED_READER


@given(st.binary(max_size=300))
def test_any_input_gives_a_bool(raw: bytes) -> None:
    assert is_protected(raw) in (True, False)
