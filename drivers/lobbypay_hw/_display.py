"""What every display driver shares: the frame it should show, and the writer's wake-up.

``show(view)`` renders the view to exactly ``rows`` x ``cols``, records it as the wanted
frame, wakes the driver's writer loop (``run()``) and returns the rendered lines at once;
the writer reads ``frame`` and waits on ``_wake``.
"""

from __future__ import annotations

import asyncio

from lobbypay_hw.api import ScreenView
from lobbypay_hw.screen import SAFE_CHARS, blank, check_geometry, render


class FrameSlot:
    # The characters this display shows as themselves; the rest are folded (screen.py).
    charset: frozenset[str] = SAFE_CHARS

    def __init__(self, rows: int, cols: int) -> None:
        check_geometry(rows, cols)
        self.rows = rows
        self.cols = cols
        self._wanted: tuple[str, ...] = blank(rows, cols)
        self._wake = asyncio.Event()

    @property
    def frame(self) -> tuple[str, ...]:
        """The frame the display should be showing (the last ``show()``)."""
        return self._wanted

    def show(self, view: ScreenView) -> tuple[str, ...]:
        lines = render(view, self.rows, self.cols, self.charset)
        self._wanted = lines
        self._wake.set()
        return lines
