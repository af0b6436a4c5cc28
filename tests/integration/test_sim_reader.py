"""SimReader: a Unix socket (mode 0600) where each line is a swipe, inject(), send_swipe()."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lobbypay_hw import READERS
from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed, ReadFailure
from lobbypay_hw.reader_sim import SimReader, SimReaderError, send_swipe

from tests.fakes.pty import EventLog

SWIPE = b"%B4111111111111111^DOE/JOHN^2812101000?;4111111111111111=28121010000?"
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}


@contextlib.asynccontextmanager
async def running(reader: SimReader, log: EventLog) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run(log))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_socket_swipes_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "swipe.sock"
    log = EventLog()
    reader = READERS["sim"](path=str(path), **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        assert reader.connected
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        await asyncio.to_thread(send_swipe, str(path), SWIPE)
        await asyncio.to_thread(send_swipe, str(path), b";4111111111111112=2812101?\r\n")
        await log.wait_for(lambda ev: len(ev) >= 3)
        # several lines on one connection, the last one without newline
        r, w = await asyncio.open_unix_connection(str(path))
        w.write(b"%E?;E?\n" + SWIPE)
        await w.drain()
        w.close()
        await w.wait_closed()
        await log.wait_for(lambda ev: len(ev) >= 5)
    assert [e.card.trackdata() for e in log.of(CardRead)] == [SWIPE.decode()] * 2  # type: ignore[attr-defined]
    assert log.of(ReadFailed) == [
        ReadFailed(ReadFailure.BAD_CHECK_DIGIT),
        ReadFailed(ReadFailure.UNREADABLE),
    ]
    assert not path.exists()  # removed on stop
    assert not reader.connected


async def test_inject_in_process(tmp_path: Path) -> None:
    log = EventLog()
    reader = SimReader(str(tmp_path / "s.sock"), **FAST)
    with pytest.raises(SimReaderError):
        reader.inject(SWIPE)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        reader.inject(SWIPE)
        reader.inject(b"x" * 5000)
    assert len(log.of(CardRead)) == 1
    assert log.of(ReadFailed) == [ReadFailed(ReadFailure.TOO_LONG)]


async def test_stale_socket_is_replaced_but_other_files_are_not(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    log = EventLog()
    async with running(SimReader(str(stale), **FAST), log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)

    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    log2 = EventLog()
    async with running(SimReader(str(regular), **FAST), log2) as task:
        await log2.wait_for(lambda ev: len(ev) >= 1)
        assert log2.items[0] == ReaderStatus(False, "eexist: path exists and is not a socket")
        assert not task.done()
    assert regular.read_text() == "keep me"


def test_send_swipe_errors_are_clear_and_data_free(tmp_path: Path) -> None:
    with pytest.raises(SimReaderError) as info:
        send_swipe(str(tmp_path / "none.sock"), SWIPE)
    assert "4111" not in str(info.value)
    with pytest.raises(SimReaderError):
        send_swipe(str(tmp_path / "none.sock"), b"two\nlines")
    with pytest.raises(SimReaderError):
        send_swipe(str(tmp_path / "none.sock"), b"\r\n")


def test_sim_needs_a_path() -> None:
    with pytest.raises(ValueError, match="reader.path"):
        READERS["sim"](path="")
