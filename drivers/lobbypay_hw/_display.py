"""What every display driver shares: the frame it should show, and the writer's wake-up;
for displays on a device that can fail, the reconnect loop too (``DeviceDisplay``).

``show(view)`` renders the view to exactly ``rows`` x ``cols``, records it as the wanted
frame, wakes the driver's writer loop (``run()``) and returns the rendered lines at once;
the writer reads ``frame`` and waits on ``_wake``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lobbypay_hw._common import RETRY_BASE_S, RETRY_CAP_S, Backoff, describe
from lobbypay_hw.api import ScreenView
from lobbypay_hw.screen import SAFE_CHARS, blank, check_geometry, render

log = logging.getLogger("lobbypay_hw")

T = TypeVar("T")


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


class DeviceDisplay(FrameSlot):
    """A display on a device that can fail: the reconnect loop and the frame writer.

    ``run()`` calls ``_session()`` (open the device, call ``_up()``, then usually
    ``_write_frames``) until it raises, then ``_close()``, a backoff sleep, and again. A
    failure is ``connected = False`` with ``detail`` saying why; it never ends ``run()``.
    """

    driver: str

    def __init__(
        self, rows: int, cols: int, *, retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        super().__init__(rows, cols)
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._connected = False
        self._was_up = True  # so the first failure is logged
        self.detail = ""  # why it is not connected: an errno name and a phrase
        self._worker: ThreadPoolExecutor | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking device call in this display's one worker thread.

        One thread, not the loop's default pool: each thread that allocates gets its
        own malloc arena, and the drawing would otherwise spread over several.
        """
        if self._worker is None:
            name = f"lobbypay.display.{self.driver}"
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=name)
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def _session(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        return None

    def _up(self, where: str) -> None:
        self._connected = True
        self._was_up = True
        self.detail = ""
        self._backoff.reset()
        log.info("%s display connected (%s)", self.driver, where)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._session()
                except Exception as exc:  # noqa: BLE001 - device trouble: reconnect
                    self.detail = describe(exc)
                    if self._was_up:
                        log.warning("%s display unavailable: %s", self.driver, self.detail)
                    self._was_up = False
                finally:
                    self._connected = False
                    with contextlib.suppress(Exception):
                        await self._close()
                await asyncio.sleep(self._backoff.next())
        finally:
            self._connected = False
            if self._worker is not None:
                self._worker.shutdown(wait=False)
                self._worker = None

    async def _write_frames(
        self, write: Callable[[tuple[str, ...] | None, tuple[str, ...]], Awaitable[None]]
    ) -> None:
        """Forever: ``write(sent, wanted)`` whenever the wanted frame changes (None first).

        Frames shown while a write is in progress coalesce into the next one.
        """
        sent: tuple[str, ...] | None = None
        while True:
            self._wake.clear()
            wanted = self._wanted
            if wanted != sent:
                await write(sent, wanted)
                sent = wanted
            if self._wanted == sent:
                await self._wake.wait()
