"""Serial character LCDs: SparkFun SerLCD and Matrix Orbital / Adafruit backpack.

``show(view)`` renders and records the wanted frame, wakes the writer and returns at
once. ``run()`` is the writer: it opens the port, sends the full frame (clear + every
row), then for each change sends only the diff against what was actually sent. Frames
shown while a write is still on the wire coalesce: the writer waits about the wire time
of what it sent, then diffs the newest wanted frame against the last sent one, so a
burst of screens costs one update. On unplug the port is reopened with backoff and the
current frame is resent in full (the panel may have been power-cycled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lobbypay_hw._common import RETRY_BASE_S, RETRY_CAP_S, Backoff, describe
from lobbypay_hw._display import FrameSlot
from lobbypay_hw._serial import SerialLink, open_port
from lobbypay_hw.display_codecs import CODECS, Codec, encode
from lobbypay_hw.reader_serial import BAUDRATES
from lobbypay_hw.screen import DEFAULT_COLS, DEFAULT_ROWS

log = logging.getLogger("lobbypay_hw")

# 8N1: ten bits on the wire per byte.
BITS_PER_BYTE = 10


class SerialDisplay(FrameSlot):
    def __init__(
        self,
        driver: str,
        path: str,
        *,
        baudrate: int = 9600,
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLS,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if driver not in CODECS:
            raise ValueError(f"display.driver must be one of {sorted(CODECS)}")
        if not path:
            raise ValueError(f"display.path is required for the {driver} display")
        if baudrate not in BAUDRATES:
            raise ValueError(f"display.baudrate must be one of {sorted(BAUDRATES)}")
        super().__init__(rows, cols)
        self.driver = driver
        self.path = path
        self.baudrate = baudrate
        self._codec: Codec = CODECS[driver]
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._connected = False
        self.bytes_sent = 0  # for tests and diagnostics
        self.writes = 0

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self) -> None:
        first_failure = True
        try:
            while True:
                link: SerialLink | None = None
                try:
                    link = await open_port(self.path, self.baudrate)
                    self._connected = True
                    self._backoff.reset()
                    log.info("%s display connected", self.driver)
                    first_failure = False
                    await self._write_loop(link)
                except Exception as exc:  # noqa: BLE001 - device trouble: reconnect
                    if self._connected or first_failure:
                        log.warning("%s display unavailable: %s", self.driver, describe(exc))
                    first_failure = False
                finally:
                    self._connected = False
                    if link is not None:
                        with contextlib.suppress(Exception):
                            await link.close()
                await asyncio.sleep(self._backoff.next())
        finally:
            self._connected = False

    async def _write_loop(self, link: SerialLink) -> None:
        sent: tuple[str, ...] | None = None
        while True:
            wanted = self._wanted
            if sent is None:
                # Fresh connection: clear and write everything (blank until the first show).
                data = encode(self._codec, None, wanted)
            else:
                data = encode(self._codec, sent, wanted)
            if data:
                link.write(data)
                self.bytes_sent += len(data)
                self.writes += 1
                sent = wanted
                # Let the bytes drain before looking again, so newer frames coalesce.
                await self._wait_or_lost(link, len(data) * BITS_PER_BYTE / self.baudrate)
                continue
            sent = wanted
            self._wake.clear()
            if self._wanted != sent:
                continue
            await self._wait_or_lost(link, None)

    async def _wait_or_lost(self, link: SerialLink, delay_s: float | None) -> None:
        """Sleep ``delay_s`` (or until woken, when None); raise if the port goes away."""
        waiter: asyncio.Future[object]
        if delay_s is None:
            waiter = asyncio.ensure_future(self._wake.wait())
        else:
            waiter = asyncio.ensure_future(asyncio.sleep(delay_s))
        try:
            await asyncio.wait((waiter, link.lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if link.lost.done():
            exc = link.lost.result()
            raise exc if exc is not None else OSError(0, "port closed")
