"""SerialReader end to end over pty pairs: swipes, framing, unplug and replug."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lobbypay_hw import READERS
from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed, ReadFailure
from lobbypay_hw.reader_serial import SerialReader

from tests.fakes.pty import EventLog, PtyPort, Replug

pytestmark = pytest.mark.pty

SWIPE = b"%B4111111111111111^DOE/JOHN^2812101000?;4111111111111111=28121010000?"
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}


@contextlib.asynccontextmanager
async def running(reader: SerialReader, log: EventLog) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run(log))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def statuses(log: EventLog) -> list[bool]:
    return [e.connected for e in log.of(ReaderStatus)]  # type: ignore[attr-defined]


async def test_swipes_are_parsed_and_reported() -> None:
    port = PtyPort()
    log = EventLog()
    reader = READERS["serial"](path=port.path, baudrate=9600, **FAST)
    try:
        async with running(reader, log):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            assert reader.connected
            port.write(SWIPE + b"\r\n")
            port.write(b";4111111111111112=2812101?\r")  # Luhn failure
            port.write(b"\x02\x1b" + SWIPE[:30])  # MagTek wrapper, in two writes
            await asyncio.sleep(0.02)
            port.write(SWIPE[30:] + b"0\r\x03")
            port.write(b"%E?;E?\n")
            await log.wait_for(lambda ev: len(ev) >= 5)
        cards = log.of(CardRead)
        assert [c.card.last4 for c in cards] == ["1111", "1111"]  # type: ignore[attr-defined]
        assert cards[0].card.trackdata() == SWIPE.decode()  # type: ignore[attr-defined]
        assert cards[1].card.trackdata() == SWIPE.decode()  # type: ignore[attr-defined]
        assert log.of(ReadFailed) == [
            ReadFailed(ReadFailure.BAD_CHECK_DIGIT),
            ReadFailed(ReadFailure.UNREADABLE),
        ]
        assert not reader.connected
    finally:
        port.close()


async def test_missing_terminator_is_flushed_after_idle() -> None:
    port = PtyPort()
    log = EventLog()
    reader = SerialReader(port.path, idle_flush_s=0.1, **FAST)
    try:
        async with running(reader, log):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            port.write(SWIPE)  # reader configured without CR
            await log.wait_for(lambda ev: bool(log.of(CardRead)), timeout_s=3)
    finally:
        port.close()


async def test_stuck_key_garbage_is_too_long_then_recovers() -> None:
    port = PtyPort()
    log = EventLog()
    reader = SerialReader(port.path, max_frame=128, **FAST)
    try:
        async with running(reader, log):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            port.write(b"5" * 1000 + b"\r" + SWIPE + b"\r")
            await log.wait_for(lambda ev: bool(log.of(CardRead)))
        assert log.of(ReadFailed) == [ReadFailed(ReadFailure.TOO_LONG)]
    finally:
        port.close()


async def test_absent_port_reports_disconnected_and_keeps_trying(tmp_path: Path) -> None:
    link = tmp_path / "lobbypay-reader"
    replug = Replug(link)
    log = EventLog()
    reader = SerialReader(str(link), **FAST)
    try:
        async with running(reader, log) as task:
            await log.wait_for(lambda ev: len(ev) >= 1)
            assert statuses(log) == [False]
            assert "no such device" in log.of(ReaderStatus)[0].detail  # type: ignore[attr-defined]
            await asyncio.sleep(0.3)
            assert not task.done()
            assert statuses(log) == [False]  # reported once, not once per retry
            port = replug.plug()
            await log.wait_for(lambda ev: statuses(log) == [False, True])
            port.write(SWIPE + b"\r")
            await log.wait_for(lambda ev: bool(log.of(CardRead)))
    finally:
        replug.close()


async def test_unplug_and_replug_at_the_same_path(tmp_path: Path) -> None:
    link = tmp_path / "lobbypay-reader"
    replug = Replug(link)
    log = EventLog()
    port = replug.plug()
    reader = SerialReader(str(link), **FAST)
    try:
        async with running(reader, log):
            await log.wait_for(lambda ev: statuses(log) == [True])
            port.write(SWIPE[:20])  # a partial swipe when the cable is pulled
            await asyncio.sleep(0.05)
            replug.unplug()
            await log.wait_for(lambda ev: statuses(log) == [True, False])
            assert not reader.connected
            await asyncio.sleep(0.2)  # retries against a missing path
            port = replug.plug()  # a new device node behind the same symlink
            await log.wait_for(lambda ev: statuses(log) == [True, False, True])
            assert reader.connected
            port.write(SWIPE + b"\r")
            await log.wait_for(lambda ev: bool(log.of(CardRead)))
        # the partial swipe from before the unplug was dropped, not glued to the new one
        assert log.of(ReadFailed) == []
        assert len(log.of(CardRead)) == 1
    finally:
        replug.close()


async def test_sink_exceptions_do_not_stop_the_reader() -> None:
    port = PtyPort()
    seen: list[object] = []

    def bad_sink(event: object) -> None:
        seen.append(event)
        raise RuntimeError("consumer bug")

    reader = SerialReader(port.path, **FAST)
    task = asyncio.create_task(reader.run(bad_sink))
    try:
        for _ in range(500):
            if reader.connected:
                break
            await asyncio.sleep(0.01)
        port.write(SWIPE + b"\r" + SWIPE + b"\r")
        for _ in range(500):
            if len([e for e in seen if isinstance(e, CardRead)]) == 2:
                break
            await asyncio.sleep(0.01)
        assert len([e for e in seen if isinstance(e, CardRead)]) == 2
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        port.close()


def test_config_is_checked_without_io() -> None:
    with pytest.raises(ValueError, match="reader.path"):
        READERS["serial"](path=None)
    with pytest.raises(ValueError, match="reader.baudrate"):
        READERS["serial"](path="/dev/ttyACM0", baudrate=1234)
    with pytest.raises(TypeError):
        READERS["serial"](path="/dev/ttyACM0", bogus=1)
