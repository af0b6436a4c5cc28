"""Serial MSR (USB CDC or RS-232) through pyserial-asyncio-fast.

The reader sends each swipe as its ASCII track text ended by CR and/or LF, or wrapped
in STX ... ETX; ``framing.LineFramer`` cuts the byte stream into frames, and a frame
left without terminator is flushed after ``idle_flush_s`` of silence. Unplug (the port
read fails, or the path vanishes) -> ``ReaderStatus(False)``; the port is reopened with a
jittered backoff, which also covers a ``/dev/serial/by-id`` or udev symlink that comes
back pointing at a new ttyACM/ttyUSB node.

The read callback does no I/O of its own: bytes go into the framer, frames are parsed
and delivered on the event loop thread, and no received byte is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib

from lobbypay_hw import _common
from lobbypay_hw._common import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    Backoff,
    ReopeningReader,
    StatusReporter,
    deliver,
)
from lobbypay_hw._serial import SerialLink, open_port
from lobbypay_hw.api import ReaderSink
from lobbypay_hw.framing import DEFAULT_MAX_FRAME, LineFramer

# A serial reader sends a whole swipe in one burst (about 120 bytes: 125 ms at 9600
# baud); this much silence with a partial frame buffered means the terminator is lost.
IDLE_FLUSH_S = 1.0

BAUDRATES = frozenset((1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200))


class SerialReader(ReopeningReader):
    driver = "serial"

    def __init__(
        self,
        path: str,
        *,
        baudrate: int = 9600,
        max_frame: int = DEFAULT_MAX_FRAME,
        idle_flush_s: float = IDLE_FLUSH_S,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if not path:
            raise ValueError("reader.path is required for the serial reader")
        if baudrate not in BAUDRATES:
            raise ValueError(f"reader.baudrate must be one of {sorted(BAUDRATES)}")
        self.path = path
        self.baudrate = baudrate
        self._max_frame = max_frame
        self._idle_flush_s = idle_flush_s
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._connected = False

    async def _open_session(self, sink: ReaderSink, status: StatusReporter) -> None:
        loop = asyncio.get_running_loop()
        framer = LineFramer(self._max_frame)
        idle: asyncio.TimerHandle | None = None

        def on_idle() -> None:
            for frame in framer.flush():
                deliver("serial", frame, sink)

        def on_data(data: bytes) -> None:
            nonlocal idle
            if _common.TRACE is not None:
                _common.TRACE("reader.bytes")
            for frame in framer.feed(data):
                deliver("serial", frame, sink)
            if idle is not None:
                idle.cancel()
                idle = None
            if framer.pending:
                idle = loop.call_later(self._idle_flush_s, on_idle)

        link: SerialLink | None = None
        try:
            link = await open_port(self.path, self.baudrate, on_data)
            self._connected = True
            self._backoff.reset()
            status.up()
            exc = await link.lost
            raise exc if exc is not None else OSError(0, "port closed")
        finally:
            self._connected = False
            if idle is not None:
                idle.cancel()
            framer.reset()  # drop (and wipe) a partial swipe
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.close()
