"""Displays without hardware: a box drawn on a terminal (demo), and none at all."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from lobbypay_hw._display import FrameSlot
from lobbypay_hw.screen import DEFAULT_COLS, DEFAULT_ROWS


def draw_box(frame: tuple[str, ...]) -> str:
    """The frame inside an ASCII box, one text block ending in a newline."""
    cols = len(frame[0]) if frame else 0
    edge = "+" + "-" * cols + "+"
    return "\n".join([edge, *(f"|{line}|" for line in frame), edge]) + "\n"


class ConsoleDisplay(FrameSlot):
    """Draws each new screen as a box on a text stream (stdout by default).

    ``show()`` only records the frame; ``run()`` writes it, so a slow terminal never
    blocks the agent. Identical consecutive frames are drawn once.
    """

    driver = "console"

    def __init__(
        self, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS, stream: TextIO | None = None
    ) -> None:
        super().__init__(rows, cols)
        self._stream = stream
        self._drawn: tuple[str, ...] | None = None
        self._running = False

    @property
    def connected(self) -> bool:
        return self._running

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


class NoneDisplay(FrameSlot):
    """No display: ``show()`` still renders, so the screen mirror in ``state`` works."""

    driver = "none"

    def __init__(self, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS) -> None:
        super().__init__(rows, cols)

    @property
    def connected(self) -> bool:
        return True  # nothing to lose

    async def run(self) -> None:
        await asyncio.Future()  # nothing to drive; runs until cancelled
