"""HD44780 character LCD behind a PCF8574 I2C backpack (pure): frames -> expander bytes.

The backpack's PCF8574 drives the LCD's RS, RW, E, the backlight transistor and the data
lines D4-D7 (4-bit mode); D0-D3 are not connected. Each byte written to the expander sets
all eight lines at once. A nibble reaches the LCD on the falling edge of E, so it costs
two expander bytes (E high, then E low, same data); RS is set one byte ahead of E rising
when it changes. A byte (instruction or character) is two nibbles, high first.

The expander bytes of a whole update go out in one I2C write: at 100 kHz each byte takes
90 us on the wire, longer than the LCD's 37 us execution time, so only clear, home and the
reset sequence need a pause (``init_steps`` carries them).

Characters: the A00 ROM shows printable ASCII except ``\\`` (yen) and ``~`` (arrow), and no
accented letters. The eight CGRAM cells hold the Spanish ones: á é í ó ú ñ ¿ ¡. Other
accented letters fold to their base letter (``ü`` -> ``u``, ``É`` -> ``E``; screen.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lobbypay_hw.display_codecs import changed_runs
from lobbypay_hw.screen import SAFE_CHARS

Frame = Sequence[str]

# DDRAM address of each row's first cell (20x4 panels: rows 2 and 3 continue rows 0 and 1).
ROW_OFFSETS = (0x00, 0x40, 0x14, 0x54)

CLEAR = 0x01
ENTRY_INCREMENT = 0x06  # entry mode: cursor moves right, display does not shift
DISPLAY_OFF = 0x08
DISPLAY_ON = 0x0C  # display on, cursor and blink off
FUNCTION_4BIT = 0x20  # DL=0; | 0x08 for two (or four) lines, 5x8 font
TWO_LINES = 0x08
SET_CGRAM = 0x40
SET_DDRAM = 0x80

# Waits after the instructions that take longer than the I2C byte time.
RESET_WAIT_S = 0.005  # > 4.1 ms after each reset nibble (datasheet figure 24)
CLEAR_WAIT_S = 0.002  # > 1.52 ms for clear and home


@dataclass(frozen=True, slots=True)
class Wiring:
    """Which PCF8574 pin drives which LCD line (bit masks and the D4-D7 pin numbers)."""

    name: str
    rs: int
    rw: int
    e: int
    backlight: int
    data: tuple[int, int, int, int]  # expander bit for D4, D5, D6, D7
    backlight_on_high: bool = True

    def byte(self, nibble: int, rs: bool, e: bool, backlight: bool) -> int:
        out = 0
        for i, bit in enumerate(self.data):
            if nibble >> i & 1:
                out |= 1 << bit
        if rs:
            out |= self.rs
        if e:
            out |= self.e
        if backlight == self.backlight_on_high:
            out |= self.backlight
        return out  # RW stays low: the LCD is only written


WIRINGS = {
    # The common backpack (YwRobot/LCM1602 and its clones): P0 RS, P1 RW, P2 E,
    # P3 backlight (high = on), P4-P7 D4-D7.
    "standard": Wiring("standard", rs=0x01, rw=0x02, e=0x04, backlight=0x08, data=(4, 5, 6, 7)),
    # The "mjkdz" backpack: P0-P3 D4-D7, P4 E, P5 RW, P6 RS, P7 backlight (low = on).
    "mjkdz": Wiring(
        "mjkdz", rs=0x40, rw=0x20, e=0x10, backlight=0x80, data=(0, 1, 2, 3),
        backlight_on_high=False,
    ),
}

# 5x8 custom characters, one string of five 0/1 columns per pixel row, top row first.
GLYPHS: dict[str, tuple[str, ...]] = {
    "á": ("00010", "00100", "01110", "00001", "01111", "10001", "01111", "00000"),
    "é": ("00010", "00100", "01110", "10001", "11111", "10000", "01110", "00000"),
    "í": ("00010", "00100", "01100", "00100", "00100", "00100", "01110", "00000"),
    "ó": ("00010", "00100", "01110", "10001", "10001", "10001", "01110", "00000"),
    "ú": ("00010", "00100", "10001", "10001", "10001", "10011", "01101", "00000"),
    "ñ": ("01101", "10010", "00000", "10110", "11001", "10001", "10001", "00000"),
    "¿": ("00100", "00000", "00100", "01000", "10000", "10001", "01110", "00000"),
    "¡": ("00100", "00000", "00100", "00100", "00100", "00100", "00100", "00000"),
}
CGRAM_CODES = {ch: code for code, ch in enumerate(GLYPHS)}  # character -> CGRAM code 0-7

# What render() may put in a frame for this display.
CHARSET = SAFE_CHARS | frozenset(GLYPHS)


class Encoder:
    """Turns instructions and characters into expander bytes for one wiring."""

    def __init__(self, wiring: Wiring, backlight: bool = True) -> None:
        self.wiring = wiring
        self.backlight = backlight

    def nibbles(self, items: Iterable[tuple[bool, int]]) -> bytes:
        """Expander bytes strobing each (rs, nibble) into the LCD."""
        w, bl = self.wiring, self.backlight
        out = bytearray()
        rs_now: bool | None = None
        for rs, nibble in items:
            if rs is not rs_now:
                out.append(w.byte(nibble, rs, False, bl))  # RS settles before E rises
                rs_now = rs
            out.append(w.byte(nibble, rs, True, bl))
            out.append(w.byte(nibble, rs, False, bl))  # falling edge: the LCD takes it
        return bytes(out)

    def send(self, items: Iterable[tuple[bool, int]]) -> bytes:
        """Expander bytes for whole bytes: (rs, byte) -> high nibble, low nibble."""
        return self.nibbles(
            (rs, half) for rs, value in items for half in (value >> 4, value & 0x0F)
        )

    def idle(self) -> bytes:
        """One byte with every line low but the backlight (sets the backlight alone)."""
        return bytes((self.wiring.byte(0, False, False, self.backlight),))


def init_steps(enc: Encoder, rows: int) -> list[tuple[bytes, float]]:
    """(bytes, wait after) for a reset from any state, then setup and the custom glyphs.

    Three 0x3 nibbles bring the LCD to 8-bit mode whatever it was in (even half-way
    through a 4-bit byte after the agent restarted); 0x2 then selects 4-bit mode.
    """
    function = FUNCTION_4BIT | (TWO_LINES if rows > 1 else 0)
    glyph_data = [(True, int(row, 2)) for ch in GLYPHS for row in GLYPHS[ch]]
    return [
        (enc.idle(), 0.0),
        (enc.nibbles([(False, 0x3)]), RESET_WAIT_S),
        (enc.nibbles([(False, 0x3)]), RESET_WAIT_S),
        (enc.nibbles([(False, 0x3)]), RESET_WAIT_S),
        (enc.nibbles([(False, 0x2)]), 0.001),
        (enc.send([(False, function), (False, DISPLAY_OFF), (False, CLEAR)]), CLEAR_WAIT_S),
        (enc.send([(False, ENTRY_INCREMENT), (False, SET_CGRAM), *glyph_data]), 0.0),
        (enc.send([(False, DISPLAY_ON)]), 0.0),
    ]


def char_code(ch: str) -> int:
    code = CGRAM_CODES.get(ch)
    if code is not None:
        return code
    if ch not in SAFE_CHARS:
        raise ValueError("frame text must be in the HD44780 charset (render it first)")
    return ord(ch)


def _move(row: int, col: int) -> tuple[bool, int]:
    return (False, SET_DDRAM | (ROW_OFFSETS[row] + col))


def encode(enc: Encoder, prev: Frame | None, new: Frame) -> bytes:
    """Expander bytes that turn ``prev`` (what the LCD shows) into ``new``.

    ``prev=None`` writes every cell (after init the LCD is clear, so no clear is sent:
    clear would need a 1.52 ms pause). Otherwise only the changed runs, each after one
    cursor move; a move costs one byte, so runs one cell apart merge.
    """
    if prev is None:
        runs = [(row, 0, line) for row, line in enumerate(new)]
    else:
        if len(prev) != len(new) or any(len(a) != len(b) for a, b in zip(prev, new, strict=True)):
            raise ValueError("frames must have the same geometry")
        runs = changed_runs(prev, new, 1)
    items: list[tuple[bool, int]] = []
    for row, col, text in runs:
        items.append(_move(row, col))
        items.extend((True, char_code(ch)) for ch in text)
    return enc.send(items)
