"""Character-LCD command sets (pure): frame diffs -> the bytes to send.

A frame is what ``screen.render`` returns: ``rows`` strings of ``cols`` LCD-safe ASCII
characters. ``encode(prev, new)`` sends only what changed: for each row, the runs of
changed columns, each preceded by one cursor move. Two runs separated by a gap no longer
than a cursor move are sent as one run (rewriting the unchanged characters between them
costs no more than moving the cursor). An unchanged frame encodes to ``b""``.
``prev=None`` (first frame, or after a reconnect) clears the screen and writes every row
in full.

SparkFun SerLCD / OpenLCD
    ``|-`` (0x7C 0x2D) clears and homes. The cursor is placed with the HD44780
    pass-through ``0xFE, 0x80 + row_offset + col`` with row offsets 0, 64, 20, 84.
Matrix Orbital (and the Adafruit USB/serial backpack)
    ``0xFE 0x58`` clears; ``0xFE 0x47 col row`` moves the cursor, 1-based. Init also
    sends ``0xFE 0x52`` (autoscroll off) so writing the last cell does not scroll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lobbypay_hw.screen import SAFE_CHARS

Frame = Sequence[str]


class Codec(Protocol):
    name: str
    move_cost: int  # bytes per cursor move

    def init(self) -> bytes: ...

    def clear(self) -> bytes: ...

    def move(self, row: int, col: int) -> bytes: ...


class SerLcd:
    name = "serlcd"
    move_cost = 2
    ROW_OFFSETS = (0, 64, 20, 84)

    def init(self) -> bytes:
        return b""  # geometry and contrast live in the panel's EEPROM: don't rewrite them

    def clear(self) -> bytes:
        return b"|-"

    def move(self, row: int, col: int) -> bytes:
        return bytes((0xFE, 0x80 + self.ROW_OFFSETS[row] + col))


class MatrixOrbital:
    name = "matrixorbital"
    move_cost = 4

    def init(self) -> bytes:
        return b"\xfe\x52"  # autoscroll off

    def clear(self) -> bytes:
        return b"\xfe\x58"

    def move(self, row: int, col: int) -> bytes:
        return bytes((0xFE, 0x47, col + 1, row + 1))


CODECS: dict[str, Codec] = {"serlcd": SerLcd(), "matrixorbital": MatrixOrbital()}


def _check(frame: Frame, rows: int, cols: int) -> None:
    if len(frame) != rows or any(len(line) != cols for line in frame):
        raise ValueError("frames must have the same geometry")
    for line in frame:
        if not all(c in SAFE_CHARS for c in line):
            # '|' would start a SerLCD command; render() never produces these.
            raise ValueError("frame text must be LCD-safe ASCII (render it first)")


def changed_runs(prev: Frame, new: Frame, merge_gap: int) -> list[tuple[int, int, str]]:
    """(row, col, text) runs where ``new`` differs from ``prev``; gaps <= merge_gap merge."""
    runs: list[tuple[int, int, str]] = []
    for row, (old_line, new_line) in enumerate(zip(prev, new, strict=True)):
        start: int | None = None
        end = 0  # exclusive end of the current run
        for col, (a, b) in enumerate(zip(old_line, new_line, strict=True)):
            if a == b:
                continue
            if start is not None and col - end <= merge_gap:
                end = col + 1
                continue
            if start is not None:
                runs.append((row, start, new_line[start:end]))
            start, end = col, col + 1
        if start is not None:
            runs.append((row, start, new_line[start:end]))
    return runs


def encode(codec: Codec, prev: Frame | None, new: Frame) -> bytes:
    """Bytes that turn ``prev`` (what the panel shows) into ``new``."""
    rows = len(new)
    cols = len(new[0]) if rows else 0
    _check(new, rows, cols)
    if prev is None:
        out = bytearray(codec.init() + codec.clear())
        for row, line in enumerate(new):
            out += codec.move(row, 0) + line.encode("ascii")
        return bytes(out)
    _check(prev, rows, cols)
    out = bytearray()
    for row, col, text in changed_runs(prev, new, codec.move_cost):
        out += codec.move(row, col) + text.encode("ascii")
    return bytes(out)


def encode_serlcd(prev: Frame | None, new: Frame) -> bytes:
    return encode(CODECS["serlcd"], prev, new)


def encode_matrixorbital(prev: Frame | None, new: Frame) -> bytes:
    return encode(CODECS["matrixorbital"], prev, new)
