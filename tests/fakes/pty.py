"""Pseudo-terminal pairs standing in for serial ports.

The driver opens ``PtyPort.path`` (the slave, e.g. ``/dev/pts/7``) with pyserial; the
test writes what the device would send to the master and reads back what the driver
wrote. ``close()`` closes both ends, which the driver sees as an unplug (EIO).
``Replug`` keeps a stable symlink (like ``/dev/lobbypay-reader``) pointing at the current
pty, so a test can unplug and plug a "new" device at the same configured path.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path


class PtyPort:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo / CR translation before the driver opens it
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.received = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def drain(self) -> bytes:
        """Read whatever the driver has written so far (non-blocking)."""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            self.received += chunk
        return bytes(self.received)

    async def wait_for(self, predicate: Callable[[bytes], bool], timeout_s: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while True:
            data = self.drain()
            if predicate(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting on pty output; got {data!r}")
            await asyncio.sleep(0.01)

    def clear(self) -> None:
        self.drain()
        self.received.clear()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self.slave)


class Replug:
    """A symlink at ``link`` that follows a fresh PtyPort on each ``plug()``."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.port: PtyPort | None = None

    def plug(self) -> PtyPort:
        port = PtyPort()
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(port.path)
        tmp.replace(self.link)
        self.port = port
        return port

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.port is not None:
            self.port.close()
            self.port = None

    def close(self) -> None:
        self.unplug()


class EventLog:
    """A reader sink for tests: records events and lets a test await a condition."""

    def __init__(self) -> None:
        self.items: list[object] = []

    def __call__(self, event: object) -> None:
        self.items.append(event)

    def of(self, kind: type) -> list[object]:
        return [e for e in self.items if isinstance(e, kind)]

    async def wait_for(
        self, predicate: Callable[[list[object]], bool], timeout_s: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.items):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events so far: {self.items!r}")
            await asyncio.sleep(0.005)
