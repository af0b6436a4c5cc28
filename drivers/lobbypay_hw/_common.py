"""Pieces every reader shares: reconnect backoff, status reporting, frame delivery."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Awaitable, Callable

from lobbypay_hw.api import CardRead, ReaderEvent, ReaderSink, ReaderStatus, ReadFailed, ReadFailure
from lobbypay_hw.framing import Frame, wipe
from lobbypay_hw.tracks import SwipeError, parse_swipe

log = logging.getLogger("lobbypay_hw")

# Reopen attempts after an unplug: fast enough that a replugged reader is back within a
# second or two, capped so a missing device costs almost nothing.
RETRY_BASE_S = 0.5
RETRY_CAP_S = 10.0
#: Set by the agent's step trace (lobbypay.shell.steptrace, scripts/bench only): called
#: with a step name (no data) as a swipe is framed and handed on. None: no tracing.
TRACE: Callable[[str], None] | None = None


class Backoff:
    """Jittered, capped exponential delays: uniform(base/2, min(cap, base * 2**n))."""

    __slots__ = ("_base", "_cap", "_n")

    def __init__(self, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self._base = base_s
        self._cap = cap_s
        self._n = 0

    def next(self) -> float:
        high = min(self._cap, self._base * 2**self._n)
        self._n = min(self._n + 1, 30)
        return random.uniform(min(high, self._base) / 2, high)  # noqa: S311 - not crypto

    def reset(self) -> None:
        self._n = 0


def describe(exc: BaseException) -> str:
    """A short, data-free description of a device error for status and logs."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{name.lower()}: {_ERRNO_TEXT.get(exc.errno, 'device error')}"
    inner = exc.__cause__ or exc.__context__
    if isinstance(inner, OSError) and inner is not exc:
        return describe(inner)
    if isinstance(exc, OSError):
        # e.g. pyserial's "readiness to read but returned no data": the port hung up.
        return f"device lost ({type(exc).__name__})"
    return type(exc).__name__


_ERRNO_TEXT = {
    errno.ENOENT: "no such device",
    errno.ENODEV: "device unplugged",
    errno.EIO: "device i/o error",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EBUSY: "device busy (grabbed by another process)",
    errno.EAGAIN: "device busy (held by another process)",
    errno.ENXIO: "device not configured",
    errno.EEXIST: "path exists and is not a socket",
    errno.ECONNREFUSED: "nothing listening",
    errno.ENOTDIR: "no such directory",
    errno.ESTALE: "reader.path now names another device (not grabbed)",
    errno.EREMOTEIO: "no answer at that I2C address (wrong address or wiring)",
}


class StatusReporter:
    """Sends ``ReaderStatus`` only on change, and logs the change (never data)."""

    __slots__ = ("_name", "_sink", "connected")

    def __init__(self, name: str, sink: ReaderSink) -> None:
        self._name = name
        self._sink = sink
        self.connected: bool | None = None

    def up(self) -> None:
        if self.connected is not True:
            self.connected = True
            log.info("%s reader connected", self._name)
            emit(self._sink, ReaderStatus(True))

    def down(self, detail: str) -> None:
        if self.connected is not False:
            first = self.connected is None
            self.connected = False
            if first:
                log.warning("%s reader not available: %s", self._name, detail)
            else:
                log.warning("%s reader disconnected: %s", self._name, detail)
            emit(self._sink, ReaderStatus(False, detail))


async def keep_open(
    name: str,
    sink: ReaderSink,
    backoff: Backoff,
    session: Callable[[StatusReporter], Awaitable[None]],
) -> None:
    """A reader's ``run()``: run ``session`` (open, read until the device goes) again and
    again until cancelled. Device trouble of any kind (OSError from open or read, a
    missing device library) is a status, never an exception out of ``run()``; between
    tries it waits the backoff, so a missing device costs almost nothing."""
    status = StatusReporter(name, sink)
    while True:
        try:
            await session(status)
        except Exception as exc:  # noqa: BLE001 - device trouble is a status
            status.down(describe(exc))
        await asyncio.sleep(backoff.next())


class ReopeningReader:
    """The ``run()`` and ``connected`` of a reader on a device that comes and goes
    (serial, evdev, hidraw): a subclass sets ``driver``, ``_backoff`` and
    ``_connected``, and implements ``_open_session`` (open the device, read until it goes
    away; raising is how it goes away)."""

    driver: str
    _backoff: Backoff
    _connected: bool

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self, sink: ReaderSink) -> None:
        try:
            await keep_open(self.driver, sink, self._backoff,
                            lambda status: self._open_session(sink, status))
        finally:
            self._connected = False

    async def _open_session(self, sink: ReaderSink, status: StatusReporter) -> None:
        raise NotImplementedError


def emit(sink: ReaderSink, event: ReaderEvent) -> None:
    """Call the sink; a failing sink is logged (type only) and never stops the reader."""
    try:
        sink(event)
    except Exception as exc:  # noqa: BLE001 - the reader must outlive its consumer's bugs
        log.error("reader sink raised %s", type(exc).__name__)


def deliver(name: str, frame: Frame, sink: ReaderSink) -> None:
    """Parse one frame and report it; the frame buffer is wiped whatever happens."""
    if TRACE is not None:
        TRACE("reader.frame")
    if isinstance(frame, ReadFailure):
        log.info("%s reader: swipe rejected (%s)", name, frame.value)
        emit(sink, ReadFailed(frame))
        return
    event: ReaderEvent
    try:
        try:
            event = CardRead(parse_swipe(frame))
        except SwipeError as exc:
            event = ReadFailed(exc.reason)
    finally:
        wipe(frame)
    if isinstance(event, ReadFailed):
        log.info("%s reader: swipe rejected (%s)", name, event.reason.value)
    else:
        log.info("%s reader: card read (%s)", name, event.card.brand)
    if TRACE is not None:
        TRACE("reader.callback")
    emit(sink, event)
