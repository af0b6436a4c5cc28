"""render(): a ScreenView -> exactly rows x cols LCD-safe characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay_hw.api import Align, ScreenView
from lobbypay_hw.screen import SAFE_CHARS, render, to_lcd_text


def test_default_is_2x16_centered() -> None:
    assert render(ScreenView(("Total due", "65.00"))) == (
        "   Total due    ",
        "     65.00      ",
    )


def test_left_align_truncate_and_pad() -> None:
    view = ScreenView(("Swipe card please, thank you", "ok"), align=Align.LEFT)
    assert render(view, 2, 16) == ("Swipe card pleas", "ok              ")


def test_missing_rows_are_blank_and_extra_rows_dropped() -> None:
    assert render(ScreenView(("a",)), 4, 20) == (
        "         a          ",
        " " * 20,
        " " * 20,
        " " * 20,
    )
    assert render(ScreenView(("1", "2", "3")), 2, 8) == ("   1    ", "   2    ")
    assert render(ScreenView(()), 2, 16) == (" " * 16, " " * 16)


def test_centering_strips_surrounding_spaces() -> None:
    assert render(ScreenView(("  x  ",)), 1, 5) == ("  x  ",)
    assert render(ScreenView(("ab",)), 1, 5) == (" ab  ",)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Café", "Cafe"),
        ("Müller – paid", "Muller - paid"),
        ("“ok”", '"ok"'),
        ("¥€", "??"),
        ("a|b\\c~d", "a?b?c?d"),  # not shown as themselves on HD44780 / SerLCD
        ("tab\there", "tab here"),
        ("line\nbreak", "line?break"),
        ("日本", "??"),
    ],
)
def test_non_ascii_and_unsafe_characters(text: str, shown: str) -> None:
    assert to_lcd_text(text) == shown


@pytest.mark.parametrize(("rows", "cols"), [(0, 16), (5, 20), (2, 0), (4, 21), (2, 41)])
def test_bad_geometry(rows: int, cols: int) -> None:
    with pytest.raises(ValueError):
        render(ScreenView(("x",)), rows, cols)


def test_only_screen_views_render() -> None:
    with pytest.raises(TypeError):
        render(("65.00",), 2, 16)  # type: ignore[arg-type]


def test_screen_view_refuses_a_card_number() -> None:
    with pytest.raises(ValueError):
        ScreenView(("4111 1111 1111 1111",))


@given(
    st.lists(st.text(max_size=50).filter(lambda s: not any(c.isdigit() for c in s)), max_size=6),
    st.sampled_from([(1, 8), (2, 16), (4, 20), (2, 40)]),
    st.sampled_from(list(Align)),
)
def test_always_exact_geometry_and_safe(
    lines: list[str], geom: tuple[int, int], align: Align
) -> None:
    rows, cols = geom
    out = render(ScreenView(tuple(lines), align=align), rows, cols)
    assert len(out) == rows
    assert all(len(line) == cols for line in out)
    assert all(c in SAFE_CHARS for line in out for c in line)
