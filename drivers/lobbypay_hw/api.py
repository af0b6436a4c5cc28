"""What the agent sees of the hardware, and nothing more.

Readers report three things: a card was read, a read failed, the reader is connected or
not. Displays take a screen view (plain text lines made of amounts, last 4 digits and
messages) and show it. This module imports no device library; ``lobbypay_hw`` imports
nothing from the agent.

Readers
    ``reader.run(sink)`` runs until cancelled: it opens the device, reports
    ``ReaderStatus(connected=True)``, parses each swipe and calls ``sink`` with
    ``CardRead(card)`` or ``ReadFailed(reason)``, and on unplug reports
    ``ReaderStatus(connected=False)`` and keeps trying to reopen. It never raises for
    device trouble. ``sink`` is a plain callable, called on the event loop thread.

Displays
    ``display.show(view)`` is synchronous and never blocks: it renders the view to exactly
    ``rows`` lines of ``cols`` characters, queues the bytes for the device, and returns the
    rendered lines (which are what the agent publishes as the screen mirror).
    ``display.run()`` is the writer loop (opens the device, drains the queue, reconnects);
    it runs until cancelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Protocol, runtime_checkable


@runtime_checkable
class Card(Protocol):
    """A parsed bank card. Only ``brand`` and ``last4`` may leave the card-handling code.

    ``track_bytes()`` returns the exact swiped text (ASCII, sentinels included) in a new
    ``bytearray`` for the athena call, which overwrites it after the POST; ``trackdata()``
    is the same as text, for tools. Nothing else may call either. ``wipe()`` overwrites
    the raw bytes; after it, both raise. ``repr``/``str``/``format`` show only brand and
    last 4.
    """

    @property
    def brand(self) -> str: ...

    @property
    def last4(self) -> str: ...

    def is_expired(self, today: date) -> bool: ...

    def trackdata(self) -> str: ...

    def track_bytes(self) -> bytearray: ...

    def wipe(self) -> None: ...


class ReadFailure(StrEnum):
    """Why a swipe gave no usable card (all safe to log and to show)."""

    UNREADABLE = "unreadable"  # reader error marks (%E?, ;E?), noise, bad structure
    BAD_CHECK_DIGIT = "bad_check_digit"  # Luhn failure
    NO_TRACK2 = "no_track2"  # track 1 only, or track 2 missing/unreadable
    NOT_A_BANK_CARD = "not_a_bank_card"  # licence, loyalty or access card
    TOO_LONG = "too_long"  # frame over the size limit (stuck key, garbage)
    # masked PAN or encrypted fields (MagneSafe, SecureMag): the reader must be set to
    # clear-text output or replaced; athena cannot take it (protected.py)
    ENCRYPTED_READER = "encrypted_reader"


@dataclass(frozen=True, slots=True)
class CardRead:
    card: Card


@dataclass(frozen=True, slots=True)
class ReadFailed:
    reason: ReadFailure


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    connected: bool
    detail: str = ""  # e.g. "no such device" (never swipe data)


ReaderEvent = CardRead | ReadFailed | ReaderStatus
ReaderSink = Callable[[ReaderEvent], None]


class CardReader(Protocol):
    driver: str  # "serial" | "evdev" | "hidraw" | "sim"

    @property
    def connected(self) -> bool: ...

    async def run(self, sink: ReaderSink) -> None: ...


# A run of 12+ digits (with optional separators) looks like a card number: a screen view
# never carries one. Amounts ("1,234.56"), last 4 and ids stay well below that.
_PAN_LIKE = re.compile(r"(?:\d[ -]?){12,}")


class Align(StrEnum):
    CENTER = "center"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class ScreenView:
    """A view model for the display: a few short text lines, nothing else.

    Built by the agent from amounts, brand/last 4 and messages. Construction refuses
    anything that is not a ``str`` line or that looks like a card number, so a card
    object or a PAN cannot reach a display by mistake.
    """

    lines: tuple[str, ...]
    align: Align = Align.CENTER

    def __post_init__(self) -> None:
        if not isinstance(self.lines, tuple):
            raise TypeError("ScreenView.lines must be a tuple of str")
        for line in self.lines:
            if not isinstance(line, str):
                raise TypeError("ScreenView lines must be plain text")
            if _PAN_LIKE.search(line):
                raise ValueError("ScreenView refuses a line that looks like a card number")


class Display(Protocol):
    driver: str  # "serlcd" | "matrixorbital" | "console" | "none"
    rows: int
    cols: int

    @property
    def connected(self) -> bool: ...

    def show(self, view: ScreenView) -> tuple[str, ...]: ...

    async def run(self) -> None: ...
