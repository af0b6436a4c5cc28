"""Keyboard-wedge MSR through Linux evdev.

Opens ONE input device node (configure the stable ``/dev/input/by-id/...-event-kbd`` or
the ``/dev/lobbypay-reader`` udev symlink, never ``eventN``), takes an exclusive grab so
swipes never reach a console or desktop, decodes key events with the fixed US table in
``keymap`` and parses each frame with ``tracks.parse_swipe``.

Before the grab, the reader checks that the device it opened is the node ``reader.path``
names at that moment (``fstat`` of the descriptor against ``stat`` of the path): after a
replug, a stale by-id or udev symlink can briefly name an ``eventN`` that now belongs to
another device, such as the front desk's keyboard, and a grab would lock that keyboard
out. Such a device is left alone (not grabbed, not read) and the path is tried again.
The path is used exactly as configured: no globbing, no matching by device name.

Unplug shows up as ``OSError(ENODEV)`` from the read loop (and ``ENOENT`` when reopening
a vanished path): the reader reports ``ReaderStatus(False)``, drops the device and its
partial frame, and retries opening with a jittered backoff until the device is back.

Reading: a pump task iterates ``device.async_read_loop()`` into a queue, and the reader
waits on the queue with the idle-gap timeout. Timing out a ``queue.get()`` is safe,
whereas cancelling evdev's ``__anext__`` future would drop the batch it was waiting for.
``close()`` does not end ``async_read_loop()`` (python-evdev #248), so the pump task is
cancelled explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from lobbypay_hw._common import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    Backoff,
    ReopeningReader,
    StatusReporter,
    deliver,
)
from lobbypay_hw.api import ReaderSink
from lobbypay_hw.framing import DEFAULT_MAX_FRAME
from lobbypay_hw.keymap import DEFAULT_IDLE_GAP_S, LED_CAPSL, KeyDecoder


class InputEventLike(Protocol):
    type: int
    code: int
    value: int

    def timestamp(self) -> float: ...


class InputDeviceLike(Protocol):
    """What we use of ``evdev.InputDevice`` (the fake in tests/fakes/evdev.py has it too)."""

    fd: int

    def leds(self) -> list[int]: ...

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def close(self) -> None: ...

    def async_read_loop(self) -> AsyncIterator[Any]: ...


DeviceOpener = Callable[[str], InputDeviceLike]


def open_input_device(path: str) -> InputDeviceLike:
    """The default opener: a real ``evdev.InputDevice`` (imported lazily)."""
    import evdev

    device: InputDeviceLike = evdev.InputDevice(path)
    return device


class _Gone:
    """Queue item: the pump stopped, with the reason."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc


class EvdevReader(ReopeningReader):
    driver = "evdev"

    def __init__(
        self,
        path: str,
        *,
        grab: bool = True,
        opener: DeviceOpener | None = None,
        idle_gap_s: float = DEFAULT_IDLE_GAP_S,
        max_frame: int = DEFAULT_MAX_FRAME,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if not path:
            raise ValueError("reader.path is required for the evdev reader")
        self.path = path
        self.grab = grab
        self._opener = opener or open_input_device
        self._idle_gap_s = idle_gap_s
        self._max_frame = max_frame
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._connected = False

    async def _open_session(self, sink: ReaderSink, status: StatusReporter) -> None:
        # the opener raises OSError, or ImportError without evdev: both a status
        await self._session(self._opener(self.path), sink, status)

    async def _session(
        self, device: InputDeviceLike, sink: ReaderSink, status: StatusReporter
    ) -> None:
        """One open device: grab, read until it goes away (raises OSError)."""
        grabbed = False
        pump: asyncio.Task[None] | None = None
        decoder = KeyDecoder(idle_gap_s=self._idle_gap_s, max_frame=self._max_frame)
        try:
            self._identify(device)
            if self.grab:
                device.grab()  # EBUSY if another process holds it
                grabbed = True
            decoder.set_caps_lock(LED_CAPSL in device.leds())
            queue: asyncio.Queue[Any] = asyncio.Queue()
            pump = asyncio.create_task(self._pump(device, queue), name="lobbypay_hw.evdev.pump")
            self._connected = True
            self._backoff.reset()
            status.up()
            while True:
                timeout = decoder.idle_gap_s if decoder.pending else None
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    for frame in decoder.flush():
                        deliver("evdev", frame, sink)
                    continue
                if isinstance(item, _Gone):
                    if item.exc is None:
                        raise OSError(0, "input device closed")
                    raise item.exc
                for frame in decoder.feed(item.type, item.code, item.value, item.timestamp()):
                    deliver("evdev", frame, sink)
        finally:
            self._connected = False
            decoder.reset()  # a partial swipe from before the unplug is dropped (wiped)
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if grabbed:
                with contextlib.suppress(OSError):
                    device.ungrab()
            with contextlib.suppress(OSError):
                device.close()

    def _identify(self, device: InputDeviceLike) -> None:
        """Raise unless ``device`` is open on the node ``self.path`` names now."""
        opened = os.fstat(device.fd)
        named = os.stat(self.path)
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
            raise OSError(errno.ESTALE, "reader.path names another device")

    @staticmethod
    async def _pump(device: InputDeviceLike, queue: asyncio.Queue[Any]) -> None:
        try:
            async for event in device.async_read_loop():
                queue.put_nowait(event)
        except OSError as exc:
            queue.put_nowait(_Gone(exc))
        else:
            queue.put_nowait(_Gone(None))
