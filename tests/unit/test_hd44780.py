"""The HD44780/PCF8574 encoder against the LCD model: tests read what the glass shows."""

from __future__ import annotations

import pytest
from lobbypay_hw import hd44780
from lobbypay_hw.api import ScreenView
from lobbypay_hw.screen import render

from tests.fakes.i2c import MJKDZ, STANDARD, Hd44780, Pcf8574, Pins

SPANISH = [
    ("Total $65.00", "Deslice su tarjeta"),
    ("¿Otra tarjeta?", "Tarjeta vencida"),
    ("Aprobado", "Visa ****1111"),
    ("Cancelado", "Consulte en recepción"),
    ("¡Gracias!", "Año: pingüino"),
]


def feed(exp: Pcf8574, data: bytes, t0: float = 0.0) -> float:
    for i, b in enumerate(data):
        exp.write(b, t0 + i * 90e-6)
    return t0 + len(data) * 90e-6


def boot(pins: Pins = STANDARD, wiring: str = "standard", rows: int = 4,
         lcd: Hd44780 | None = None) -> tuple[Pcf8574, hd44780.Encoder, float]:
    exp = Pcf8574(lcd or Hd44780(), pins)
    enc = hd44780.Encoder(hd44780.WIRINGS[wiring])
    t = 0.0
    for data, wait in hd44780.init_steps(enc, rows):
        t = feed(exp, data, t) + wait
    return exp, enc, t


@pytest.mark.parametrize(("pins", "wiring"), [(STANDARD, "standard"), (MJKDZ, "mjkdz")])
def test_init_then_full_frame_shows_the_text(pins: Pins, wiring: str) -> None:
    exp, enc, t = boot(pins, wiring)
    frame = render(ScreenView(("Total due", "$65.00", "", "Please swipe card")), 4, 20)
    feed(exp, hd44780.encode(enc, None, frame), t)
    assert exp.lcd.text(4, 20) == frame
    assert exp.lcd.violations == 0 and not exp.lcd.eight_bit and exp.lcd.two_lines
    assert exp.backlight


@pytest.mark.parametrize("lines", SPANISH)
def test_spanish_letters_through_custom_characters(lines: tuple[str, str]) -> None:
    exp, enc, t = boot()
    frame = render(ScreenView(lines), 2, 20, hd44780.CHARSET)
    feed(exp, hd44780.encode(enc, None, frame), t)
    assert exp.lcd.text(2, 20) == frame  # the mirror is what the glass shows


def test_spanish_frames_keep_their_letters_and_fold_the_rest() -> None:
    view = ScreenView(("¿Otra tarjeta?", "Año: pingüino"))
    assert render(view, 2, 16, hd44780.CHARSET) == (" ¿Otra tarjeta? ", " Año: pinguino  ")
    assert render(ScreenView(("Consulte en recepción",)), 1, 20, hd44780.CHARSET) == (
        "Consulte en recepció",
    )
    # the serial LCDs have no custom characters here: plain letters, ¿ and ¡ dropped
    assert render(ScreenView(("¿Otra tarjeta?", "¡Sí, señor!")), 2, 16) == (
        " Otra tarjeta?  ", "   Si, senor!   ",
    )


def test_diff_sends_only_changed_cells() -> None:
    exp, enc, t = boot(rows=2)
    a = render(ScreenView(("Total $65.00", "Deslice tarjeta")), 2, 16, hd44780.CHARSET)
    b = render(ScreenView(("Total $65.00", "¿Otra tarjeta?")), 2, 16, hd44780.CHARSET)
    t = feed(exp, hd44780.encode(enc, None, a), t)
    before = exp.lcd.data_writes
    diff = hd44780.encode(enc, a, b)
    feed(exp, diff, t)
    assert exp.lcd.text(2, 16) == b
    changed = sum(x != y for x, y in zip(a[1], b[1], strict=True))
    assert exp.lcd.data_writes - before <= changed + 1  # merged gaps of one cell at most
    assert hd44780.encode(enc, b, b) == b""
    assert len(diff) < len(hd44780.encode(enc, None, b)) / 2


@pytest.mark.parametrize("half_way", [False, True])
def test_reset_recovers_an_lcd_left_in_4_bit_mode(half_way: bool) -> None:
    # the agent restarted while the LCD kept power: 4-bit mode, maybe one nibble in
    lcd = Hd44780(eight_bit=False, pending_high=0x0 if half_way else None, display_on=True,
                  two_lines=True)
    exp, enc, t = boot(lcd=lcd, rows=2)
    frame = render(ScreenView(("Aprobado", "Gracias")), 2, 16, hd44780.CHARSET)
    feed(exp, hd44780.encode(enc, None, frame), t)
    assert exp.lcd.text(2, 16) == frame
    assert exp.lcd.violations == 0


def test_skipping_the_reset_waits_loses_nibbles() -> None:
    # the model's busy time is real: the same bytes without the waits garble the LCD
    exp = Pcf8574(Hd44780())
    enc = hd44780.Encoder(hd44780.WIRINGS["standard"])
    data = b"".join(step for step, _ in hd44780.init_steps(enc, 2))
    t = feed(exp, data)
    feed(exp, hd44780.encode(enc, None, ("Aprobado        ", "                ")), t)
    assert exp.lcd.violations > 0
    assert exp.lcd.text(2, 16)[0] != "Aprobado        "


def test_backlight_off_and_rs_before_e() -> None:
    enc = hd44780.Encoder(hd44780.WIRINGS["standard"], backlight=False)
    data = enc.send([(True, ord("A"))])
    assert all(not b & 0x08 for b in data)  # backlight bit low on every byte
    # RS is up one byte before E rises; E falls with RS still up
    assert data[0] & 0x01 and not data[0] & 0x04 and data[1] & 0x05 == 0x05
    mj = hd44780.Encoder(hd44780.WIRINGS["mjkdz"], backlight=True)
    assert all(not b & 0x80 for b in mj.send([(True, 0x41)]))  # mjkdz: low = on


def test_encode_refuses_unrendered_text() -> None:
    enc = hd44780.Encoder(hd44780.WIRINGS["standard"])
    with pytest.raises(ValueError):
        hd44780.encode(enc, None, ("ü",))
    with pytest.raises(ValueError):
        hd44780.encode(enc, ("ab",), ("abc",))
