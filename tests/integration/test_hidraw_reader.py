"""The hidraw reader against a FIFO standing in for /dev/hidrawN, fed real MagTek HID
report bytes: good swipes, a short read, track errors, a MagneSafe report, unplug and
replug at the same path, and no CPU spent while the node is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lobbypay_hw import READERS
from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed, ReadFailure

from tests.fakes.hidraw import HidrawNode, magtek_report
from tests.fakes.pty import EventLog

CANARY = "4111111111111111"
T1 = f"%B{CANARY}^DOE/JOHN^2812101000000?".encode()
T2 = f";{CANARY}=28121010000000?".encode()
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.05}


@contextlib.asynccontextmanager
async def running(path: Path, log: EventLog) -> AsyncIterator[object]:
    reader = READERS["hidraw"](path=str(path), **FAST)
    task = asyncio.create_task(reader.run(log))
    try:
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_swipes_errors_and_short_reads(tmp_path: Path) -> None:
    node = HidrawNode(tmp_path / "hidraw0")
    log = EventLog()
    try:
        async with running(node.path, log) as reader:
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            assert reader.connected  # type: ignore[attr-defined]
            node.send(magtek_report(T1, T2))
            await log.wait_for(lambda ev: len(log.of(CardRead)) == 1)
            card = log.of(CardRead)[0].card  # type: ignore[attr-defined]
            assert (card.brand, card.last4) == ("visa", "1111")
            assert card.trackdata() == (T1 + T2).decode()
            card.wipe()
            # a short read: not a swipe report
            node.send(magtek_report(T1, T2)[:200])
            await log.wait_for(lambda ev: len(log.of(ReadFailed)) == 1)
            # track 2 could not be decoded
            node.send(magtek_report(T1, T2, status=(0, 1, 0)))
            await log.wait_for(lambda ev: len(log.of(ReadFailed)) == 2)
            # track 1 error, track 2 good: a card
            node.send(magtek_report(T1, T2, status=(1, 0, 0)))
            await log.wait_for(lambda ev: len(log.of(CardRead)) == 2)
            # a MagneSafe report (longer, encrypted tracks)
            node.send(bytes(887))
            await log.wait_for(lambda ev: len(log.of(ReadFailed)) == 3)
    finally:
        node.close()
    reasons = [e.reason for e in log.of(ReadFailed)]  # type: ignore[attr-defined]
    assert reasons == [ReadFailure.UNREADABLE, ReadFailure.NO_TRACK2,
                       ReadFailure.ENCRYPTED_READER]
    assert log.of(ReaderStatus) == [ReaderStatus(True)]


async def test_vanished_node_replug_and_no_spinning(tmp_path: Path) -> None:
    node = HidrawNode(tmp_path / "hidraw0")
    link = tmp_path / "lobbypay-reader"
    link.symlink_to(node.path)
    log = EventLog()
    try:
        async with running(link, log):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            node.send(magtek_report(T1, T2)[:100])  # half a report, then the node goes
            await log.wait_for(lambda ev: len(log.of(ReadFailed)) == 1)
            node.unplug()
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) == 2)
            down = log.of(ReaderStatus)[1]
            assert down.connected is False  # type: ignore[attr-defined]
            assert down.detail.startswith("enodev")  # type: ignore[attr-defined]
            # while the node is gone the reader sleeps between reopen attempts
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(0.5)
            cpu = time.process_time() - cpu0
            assert cpu < 0.25 * (time.monotonic() - wall0), f"{cpu:.3f}s CPU in 0.5 s"
            assert len(log.of(ReaderStatus)) == 2  # ENOENT: still down, no flapping
            node.plug()  # a new node behind the same symlink
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) == 3)
            node.send(magtek_report(T1, T2))
            await log.wait_for(lambda ev: len(log.of(CardRead)) == 1)
    finally:
        node.close()
    assert [s.connected for s in log.of(ReaderStatus)] == [True, False, True]  # type: ignore[attr-defined]


async def test_missing_or_unreadable_node_is_a_status(tmp_path: Path) -> None:
    log = EventLog()
    async with running(tmp_path / "nothing", log):
        await log.wait_for(lambda ev: len(log.of(ReaderStatus)) == 1)
    assert log.of(ReaderStatus) == [ReaderStatus(False, "enoent: no such device")]
    if os.geteuid() == 0:
        pytest.skip("root reads any node: the permission case needs an unprivileged user")
    node = HidrawNode(tmp_path / "hidraw1")
    os.chmod(node.path, 0o200)
    log = EventLog()
    try:
        async with running(node.path, log):
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) == 1)
    finally:
        node.close()
    assert log.of(ReaderStatus) == [ReaderStatus(False, "eacces: permission denied")]


async def test_a_second_process_on_the_same_reader_is_told_it_is_busy(tmp_path: Path) -> None:
    node = HidrawNode(tmp_path / "hidraw0")
    first, second = EventLog(), EventLog()
    try:
        async with running(node.path, first):
            await first.wait_for(lambda ev: ReaderStatus(True) in ev)
            async with running(node.path, second):
                await second.wait_for(lambda ev: len(second.of(ReaderStatus)) == 1)
                node.send(magtek_report(T1, T2))
                await first.wait_for(lambda ev: len(first.of(CardRead)) == 1)
            assert second.of(ReaderStatus) == [
                ReaderStatus(False, "eagain: device busy (held by another process)")]
            assert second.of(CardRead) == []
    finally:
        node.close()
