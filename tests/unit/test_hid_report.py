"""MagTek HID swipe reports -> swipe frames, checked against the published layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay_hw.api import ReadFailure
from lobbypay_hw.hid_report import REPORT_SIZE, decode_report
from lobbypay_hw.tracks import SwipeError, parse_swipe

from tests.fakes.hidraw import magtek_report

CANARY = "4111111111111111"
T1 = f"%B{CANARY}^DOE/JOHN^2812101000000?".encode()
T2 = f";{CANARY}=28121010000000?".encode()
T3 = b";0123456789012345678901234567890?"


def frame(report: bytes) -> bytearray | ReadFailure:
    buf = bytearray(report) + bytearray(100)  # the driver's buffer is larger than a report
    return decode_report(buf, len(report))


def test_layout_offsets_match_magtek() -> None:
    r = magtek_report(T1, T2, T3)
    assert len(r) == REPORT_SIZE == 337
    assert r[0:3] == b"\0\0\0" and r[3:6] == bytes([len(T1), len(T2), len(T3)])
    assert r[7:7 + len(T1)] == T1 and r[117:117 + len(T2)] == T2 and r[227:227 + len(T3)] == T3


def test_good_report_gives_tracks_1_and_2_as_swiped() -> None:
    f = frame(magtek_report(T1, T2, T3))
    assert f == bytearray(T1 + T2)
    card = parse_swipe(f)
    assert (card.brand, card.last4) == ("visa", "1111")
    assert card.trackdata() == (T1 + T2).decode()


def test_track2_only() -> None:
    assert frame(magtek_report(b"", T2)) == bytearray(T2)


def test_track_errors_become_error_marks() -> None:
    f = frame(magtek_report(T1, T2, status=(1, 0, 0)))
    assert f == bytearray(b"%E?" + T2)
    assert parse_swipe(f).last4 == "1111"  # track 2 is enough
    f = frame(magtek_report(T1, T2, status=(0, 1, 0)))
    assert f == bytearray(T1 + b";E?")
    with pytest.raises(SwipeError) as info:
        parse_swipe(f)
    assert info.value.reason is ReadFailure.NO_TRACK2
    f = frame(magtek_report(status=(1, 1, 1)))
    with pytest.raises(SwipeError) as info:
        parse_swipe(f)
    assert info.value.reason is ReadFailure.UNREADABLE


def test_sentinels_put_back_when_the_reader_strips_them() -> None:
    f = frame(magtek_report(T1[1:-1], T2[1:-1]))
    assert f == bytearray(T1 + T2)


def test_blank_card_is_unreadable() -> None:
    f = frame(magtek_report(encode_type=3))
    assert f == bytearray()
    with pytest.raises(SwipeError) as info:
        parse_swipe(f)
    assert info.value.reason is ReadFailure.UNREADABLE


@pytest.mark.parametrize("n", [0, 1, 7, 200, 336, 338, 674])
def test_other_sizes_are_unreadable(n: int) -> None:
    assert decode_report(bytearray(max(n, 1)), n) is ReadFailure.UNREADABLE


def test_magnesafe_report_is_an_encrypting_reader() -> None:
    assert decode_report(bytearray(887), 887) is ReadFailure.ENCRYPTED_READER


def test_length_over_the_field_is_unreadable() -> None:
    r = bytearray(magtek_report(T1, T2))
    r[4] = 111
    assert decode_report(r, len(r)) is ReadFailure.UNREADABLE


@given(st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE))
def test_any_report_gives_a_frame_or_a_reason(raw: bytes) -> None:
    out = decode_report(bytearray(raw), len(raw))
    assert isinstance(out, (bytearray, ReadFailure))
