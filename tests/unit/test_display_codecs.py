"""Golden bytes for the SerLCD and Matrix Orbital command sets, and diff-only updates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay_hw.display_codecs import changed_runs, encode_matrixorbital, encode_serlcd

BLANK = ("                ", "                ")
DUE = ("   Total due    ", "     65.00      ")
DUE2 = ("   Total due    ", "     70.00      ")
SWIPE = ("   Total due    ", "   Swipe card   ")


# ---------------------------------------------------------------- SerLCD


def test_serlcd_full_frame() -> None:
    assert encode_serlcd(None, DUE) == (
        b"|-" + b"\xfe\x80" + b"   Total due    " + b"\xfe\xc0" + b"     65.00      "
    )


def test_serlcd_unchanged_frame_is_zero_bytes() -> None:
    assert encode_serlcd(DUE, DUE) == b""


def test_serlcd_one_changed_run() -> None:
    # "65" -> "70": columns 5-6 of row 1 (0x80 + 64 + 5)
    assert encode_serlcd(DUE, DUE2) == b"\xfe\xc5" + b"70"


def test_serlcd_runs_merge_across_short_gaps_only() -> None:
    prev = ("abcdefghijklmnop", BLANK[1])
    near = ("XbXdefghijklmnop", BLANK[1])  # gap of 1 <= move cost 2: one run "XbX"
    far = ("XbcdefghijklmnoX", BLANK[1])  # gap of 14: two runs
    assert encode_serlcd(prev, near) == b"\xfe\x80XbX"
    assert encode_serlcd(prev, far) == b"\xfe\x80X\xfe\x8fX"


def test_serlcd_4x20_row_offsets_0_64_20_84() -> None:
    prev = (" " * 20,) * 4
    new = ("a" + " " * 19, " b" + " " * 18, "  c" + " " * 17, " " * 19 + "d")
    assert encode_serlcd(prev, new) == (
        b"\xfe\x80a" + b"\xfe\xc1b" + b"\xfe\x96c" + b"\xfe" + bytes([0x80 + 84 + 19]) + b"d"
    )


def test_serlcd_swipe_prompt_rewrites_row_1_only() -> None:
    assert encode_serlcd(DUE, SWIPE) == b"\xfe\xc3Swipe card"


# ---------------------------------------------------------------- Matrix Orbital


def test_matrixorbital_full_frame() -> None:
    assert encode_matrixorbital(None, DUE) == (
        b"\xfe\x52"
        + b"\xfe\x58"
        + b"\xfe\x47\x01\x01"
        + b"   Total due    "
        + b"\xfe\x47\x01\x02"
        + b"     65.00      "
    )


def test_matrixorbital_unchanged_frame_is_zero_bytes() -> None:
    assert encode_matrixorbital(DUE, DUE) == b""


def test_matrixorbital_cursor_is_one_based_col_then_row() -> None:
    assert encode_matrixorbital(DUE, DUE2) == b"\xfe\x47\x06\x02" + b"70"


def test_matrixorbital_merge_gap_is_its_move_cost() -> None:
    prev = ("abcdefghijklmnop", BLANK[1])
    gap4 = ("XbcdeXghijklmnop", BLANK[1])  # gap 4 <= 4: one run
    gap5 = ("XbcdefXhijklmnop", BLANK[1])  # gap 5: two runs
    assert encode_matrixorbital(prev, gap4) == b"\xfe\x47\x01\x01XbcdeX"
    assert encode_matrixorbital(prev, gap5) == b"\xfe\x47\x01\x01X\xfe\x47\x07\x01X"


def test_matrixorbital_4x20_last_cell() -> None:
    prev = (" " * 20,) * 4
    new = (*prev[:3], " " * 19 + "z")
    assert encode_matrixorbital(prev, new) == b"\xfe\x47\x14\x04z"


# ---------------------------------------------------------------- checks


@pytest.mark.parametrize("enc", [encode_serlcd, encode_matrixorbital])
def test_geometry_and_charset_are_checked(enc: object) -> None:
    assert callable(enc)
    with pytest.raises(ValueError):
        enc(DUE, ("short", "frame"))
    with pytest.raises(ValueError):
        enc(None, ("a|b" + " " * 13, BLANK[1]))  # '|' would start a SerLCD command
    with pytest.raises(ValueError):
        enc(None, ("é" + " " * 15, BLANK[1]))


def _apply(prev: tuple[str, ...], runs: list[tuple[int, int, str]]) -> tuple[str, ...]:
    rows = [list(r) for r in prev]
    for row, col, text in runs:
        rows[row][col : col + len(text)] = text
    return tuple("".join(r) for r in rows)


_line = st.text(alphabet="ab ", min_size=16, max_size=16)


@given(st.tuples(_line, _line), st.tuples(_line, _line), st.sampled_from([2, 4]))
def test_runs_always_reproduce_the_new_frame(
    prev: tuple[str, str], new: tuple[str, str], gap: int
) -> None:
    runs = changed_runs(prev, new, gap)
    assert _apply(prev, runs) == new
    assert (runs == []) == (prev == new)
