"""MagTek reader in USB HID mode, through Linux hidraw.

Configure the ``/dev/lobbypay-reader`` symlink that config/udev/70-lobbypay.rules makes
for the reader's hidraw node (or ``/dev/hidrawN`` for a try; N changes on replug). Each
``read()`` of a hidraw node returns exactly one input report; ``hid_report`` decodes it
into the swipe frame the other readers produce, which ``tracks.parse_swipe`` parses.

* The node is opened ``O_RDONLY | O_NONBLOCK`` and watched with ``loop.add_reader``: no
  thread, no polling. Reports are read with ``os.readv`` into one buffer allocated at
  start, so no ``bytes`` copy of a swipe is ever made; the buffer is zeroed after every
  report and when the session ends.
* Unplug: the read fails (``ENODEV``/``EIO``) or returns end of file. The callback
  removes the descriptor from the loop at once and closes it (a dead descriptor left in
  the selector is readable forever: 100 % CPU), reports ``ReaderStatus(False)``, and the
  path is reopened with the shared backoff (``ENOENT`` while the node is gone).
* The node is locked with ``flock`` (as the serial reader opens its port exclusively):
  hidraw gives each report to every open descriptor, so a second lobbypay process on the
  same reader (``doctor --swipe`` while the agent runs) is told the reader is busy.
* Nothing is written to the device: the reader's mode (HID vs keyboard) is set with
  MagTek's tools, and ``lobbypay devices`` / ``doctor`` tell which mode it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os

from lobbypay_hw._common import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    Backoff,
    ReopeningReader,
    StatusReporter,
    deliver,
)
from lobbypay_hw.api import ReaderSink, ReadFailure
from lobbypay_hw.hid_report import REPORT_SIZE, decode_report

log = logging.getLogger("lobbypay_hw")

# hidraw hands out one report per read, truncated to the buffer: this is larger than any
# MagTek report (MagneSafe's is under 900 bytes), so a report's true size is seen.
READ_BUFFER = 4096


class HidrawReader(ReopeningReader):
    driver = "hidraw"

    def __init__(
        self,
        path: str,
        *,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if not path:
            raise ValueError("reader.path is required for the hidraw reader")
        self.path = path
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._connected = False

    async def _open_session(self, sink: ReaderSink, status: StatusReporter) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # hidraw hands every report to every reader of the node: like the serial
            # reader's exclusive=True, one lobbypay process at a time (EAGAIN: busy)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        buf = bytearray(READ_BUFFER)
        gone: asyncio.Future[OSError] = loop.create_future()
        watching = False

        def stop(exc: OSError) -> None:
            nonlocal watching
            if watching:
                loop.remove_reader(fd)  # never leave a dead descriptor in the selector
                watching = False
            if not gone.done():
                gone.set_result(exc)

        def on_readable() -> None:
            try:
                n = os.readv(fd, [buf])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                stop(exc)
                return
            if n == 0:
                stop(OSError(errno.ENODEV, "end of file"))
                return
            try:
                if n != REPORT_SIZE:
                    log.info("hidraw reader: a %d-byte report (a swipe report is %d)",
                             n, REPORT_SIZE)
                frame = decode_report(buf, n)
            except Exception:  # noqa: BLE001 - a decoder bug must not stop the reader
                frame = ReadFailure.UNREADABLE
            finally:
                _zero(buf, n)
            deliver("hidraw", frame, sink)

        try:
            loop.add_reader(fd, on_readable)
            watching = True
            self._connected = True
            self._backoff.reset()
            status.up()
            raise await gone
        finally:
            self._connected = False
            if watching:
                loop.remove_reader(fd)
            _zero(buf, len(buf))
            with contextlib.suppress(OSError):
                os.close(fd)


def _zero(buf: bytearray, n: int) -> None:
    for i in range(n):
        buf[i] = 0
