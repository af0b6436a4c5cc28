"""Displays without hardware: a box drawn on a terminal (demo), and none at all."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from lobbypay_hw.api import ScreenView
from lobbypay_hw.screen import DEFAULT_COLS, DEFAULT_ROWS, blank, check_geometry, render


def draw_box(frame: tuple[str, ...]) -> str:
    """The frame inside an ASCII box, one text block ending in a newline."""
    cols = len(frame[0]) if frame else 0
    edge = "+" + "-" * cols + "+"
    return "\n".join([edge, *(f"|{line}|" for line in frame), edge]) + "\n"


class ConsoleDisplay:
    """Draws each new screen as a box on a text stream (stdout by default).

    ``show()`` only records the frame; ``run()`` writes it, so a slow terminal never
    blocks the agent. Identical consecutive frames are drawn once.
    """

    driver = "console"

    def __init__(
        self, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS, stream: TextIO | None = None
    ) -> None:
        check_geometry(rows, cols)
        self.rows = rows
        self.cols = cols
        self._stream = stream
        self._wanted = blank(rows, cols)
        self._drawn: tuple[str, ...] | None = None
        self._wake = asyncio.Event()
        self._running = False

    @property
    def connected(self) -> bool:
        return self._running

    @property
    def frame(self) -> tuple[str, ...]:
        return self._wanted

    def show(self, view: ScreenView) -> tuple[str, ...]:
        lines = render(view, self.rows, self.cols)
        self._wanted = lines
        self._wake.set()
        return lines

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                self._wake.clear()
                frame = self._wanted
                if frame != self._drawn:
                    stream = self._stream or sys.stdout
                    stream.write(draw_box(frame))
                    stream.flush()
                    self._drawn = frame
                if self._wanted == frame:
                    await self._wake.wait()
        finally:
            self._running = False


class NoneDisplay:
    """No display: ``show()`` still renders, so the screen mirror in ``state`` works."""

    driver = "none"

    def __init__(self, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS) -> None:
        check_geometry(rows, cols)
        self.rows = rows
        self.cols = cols
        self._wanted = blank(rows, cols)

    @property
    def connected(self) -> bool:
        return True  # nothing to lose

    @property
    def frame(self) -> tuple[str, ...]:
        return self._wanted

    def show(self, view: ScreenView) -> tuple[str, ...]:
        self._wanted = render(view, self.rows, self.cols)
        return self._wanted

    async def run(self) -> None:
        await asyncio.Future()  # nothing to drive; runs until cancelled
