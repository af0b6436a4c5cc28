"""The canary PAN 4111111111111111 goes through every reader path (good swipes, bad
swipes, device and consumer failures) and must never appear in a log record (DEBUG and
up, every logger), an event's text, an exception's text, or the loop's error reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lobbypay_hw import READERS, tracks
from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed
from lobbypay_hw.reader_sim import send_swipe
from lobbypay_hw.tracks import SwipeError, parse_swipe

from tests.fakes.evdev import FakeInputDevice, FakeOpener, typed
from tests.fakes.pty import EventLog, Replug

CANARY = "4111111111111111"
GOOD = f"%B{CANARY}^DOE/JOHN^2812101000?;{CANARY}=28121010000?"
# An encrypting reader's swipe (MagneSafe keyboard emulation, security level 3): neither
# the masked tracks nor the hex fields may reach a log either.
MASKED = "411111******1111"
KSN = "9011880B0BB8E7000007"
ENCRYPTED = f"%B{MASKED}^DOE/JOHN^2812?;{MASKED}=2812?|0600|{'C1A4D8E6F2B3C5D7' * 4}|{KSN}|"
SECRETS = (CANARY, MASKED, KSN, "C1A4D8E6F2B3C5D7")
BAD = [
    f"%B{CANARY}^DOE/JOHN^2812101000?",  # no track 2
    f"%B{CANARY}^DOE/JOHN^2812101000?;{CANARY}=2912101?",  # tracks disagree
    f";{CANARY}=2812101",  # truncated
    f";{CANARY}=28A2101?",  # bad character
    f";{CANARY}1=2812101?",  # Luhn
    ENCRYPTED,
    CANARY * 140,  # too long
]
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}


def text_of(value: object) -> str:
    if isinstance(value, BaseException):
        return "".join(traceback.format_exception(value)) + repr(value.args)
    return f"{value!s} {value!r}"


class Leaks(list[str]):
    """Texts a test collected (events, exceptions, loop reports) to check for the canary."""

    reader_test = True


@pytest.fixture
def no_leak(caplog: pytest.LogCaptureFixture) -> Iterator[Leaks]:
    """Yields a list the test appends texts to; checks them and every log record."""
    caplog.set_level(logging.DEBUG)
    texts = Leaks()
    yield texts
    records = caplog.get_records("setup") + caplog.get_records("call")
    for record in records:
        rendered = record.getMessage() + " " + repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            rendered += text_of(record.exc_info[1])
        for secret in SECRETS:
            assert secret not in rendered, f"card data in log record from {record.name}"
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    assert texts, "nothing was checked"
    if texts.reader_test:
        # the readers really ran and logged (otherwise this file proves nothing)
        messages = [r.getMessage() for r in records]
        assert any("card read" in m for m in messages)
        assert any("swipe rejected" in m for m in messages)
        assert any("swipe rejected (encrypted_reader)" in m for m in messages)
        assert any("sink raised RuntimeError" in m for m in messages)


def recording_sink(log: EventLog, texts: list[str]) -> Callable[[object], None]:
    def sink(event: object) -> None:
        texts.append(text_of(event))
        log(event)
        if isinstance(event, CardRead):
            # a consumer that blows up with the card in its exception
            raise RuntimeError(f"consumer failed on {event.card}")

    return sink


def watch_loop(texts: list[str]) -> None:
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        texts.append(repr(context))
        exc = context.get("exception")
        if exc is not None:
            texts.append(text_of(exc))

    asyncio.get_running_loop().set_exception_handler(handler)


@contextlib.asynccontextmanager
async def running(reader: Any, sink: Callable[[object], None]) -> AsyncIterator[None]:
    task = asyncio.create_task(reader.run(sink))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_parser_paths(no_leak: Leaks, monkeypatch: pytest.MonkeyPatch) -> None:
    no_leak.reader_test = False
    card = parse_swipe(GOOD.encode())
    no_leak += [text_of(card), format(card, ">80")]
    for bad in BAD:
        with pytest.raises(SwipeError) as info:
            parse_swipe(bad.encode())
        no_leak.append(text_of(info.value))

    # a bug inside the parser whose exception carries the input
    def explode(raw: bytes, start: int, end: int) -> object:
        raise ValueError(f"cannot parse {bytes(raw)!r}")

    monkeypatch.setattr(tracks, "_parse_t2", explode)
    with pytest.raises(SwipeError) as info:
        parse_swipe(GOOD.encode())
    assert info.value.__context__ is None
    no_leak.append(text_of(info.value))
    card.wipe()
    with pytest.raises(Exception) as wiped:
        card.trackdata()
    no_leak.append(text_of(wiped.value))


@pytest.mark.pty
async def test_serial_reader_paths(no_leak: Leaks, tmp_path: Path) -> None:
    watch_loop(no_leak)
    replug = Replug(tmp_path / "reader")
    port = replug.plug()
    log = EventLog()
    reader = READERS["serial"](path=str(replug.link), idle_flush_s=0.1, **FAST)
    try:
        async with running(reader, recording_sink(log, no_leak)):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            port.write(GOOD.encode() + b"\r\n")
            for bad in BAD:
                port.write(bad.encode() + b"\r\n")
            port.write(b"\x02\x1b" + GOOD.encode() + b"0\r\x03")
            await log.wait_for(lambda ev: len(ev) >= 1 + 2 + len(BAD))
            port.write(GOOD.encode()[:30])  # half a swipe, then unplug
            await asyncio.sleep(0.05)
            replug.unplug()
            await log.wait_for(
                lambda ev: ReaderStatus(True) in ev and len(log.of(ReaderStatus)) >= 2
            )
            port = replug.plug()
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) >= 3)
            port.write(GOOD.encode())  # no terminator: idle flush
            await log.wait_for(lambda ev: len(log.of(CardRead)) >= 3)
    finally:
        replug.close()
    assert len(log.of(ReadFailed)) == len(BAD)


async def test_evdev_reader_paths(no_leak: Leaks) -> None:
    watch_loop(no_leak)
    dev = FakeInputDevice()
    opener = FakeOpener(dev)
    log = EventLog()
    reader = READERS["evdev"](path=dev.path, opener=opener, idle_gap_s=0.1, max_frame=256, **FAST)
    async with running(reader, recording_sink(log, no_leak)):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        dev.feed(typed(GOOD))
        for bad in BAD[:-1]:
            dev.feed(typed(bad))
        dev.feed(typed(CANARY * 20))  # too long for the 256-byte frame
        await log.wait_for(lambda ev: len(ev) >= 1 + 1 + len(BAD))
        dev.feed(typed(GOOD[:30], enter=None))
        await asyncio.sleep(0.02)
        opener.unplug()
        await log.wait_for(lambda ev: len(log.of(ReaderStatus)) >= 2)
        new = FakeInputDevice()
        opener.plug(new)
        await log.wait_for(lambda ev: len(log.of(ReaderStatus)) >= 3)
        new.feed(typed(GOOD, enter=None))  # idle gap ends it
        await log.wait_for(lambda ev: len(log.of(CardRead)) >= 2)
    assert len(log.of(ReadFailed)) == len(BAD)


async def test_sim_reader_paths(no_leak: Leaks, tmp_path: Path) -> None:
    watch_loop(no_leak)
    path = str(tmp_path / "swipe.sock")
    log = EventLog()
    reader = READERS["sim"](path=path, **FAST)
    async with running(reader, recording_sink(log, no_leak)):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        await asyncio.to_thread(send_swipe, path, GOOD.encode())
        for bad in BAD:
            await asyncio.to_thread(send_swipe, path, bad.encode())
        reader.inject(GOOD.encode())
        await log.wait_for(lambda ev: len(ev) >= 1 + 2 + len(BAD))
    assert len(log.of(CardRead)) == 2


async def test_hidraw_reader_paths(no_leak: Leaks, tmp_path: Path) -> None:
    from tests.fakes.hidraw import HidrawNode, magtek_report

    watch_loop(no_leak)
    node = HidrawNode(tmp_path / "hidraw0")
    log = EventLog()
    reader = READERS["hidraw"](path=str(node.path), **FAST)
    t1, t2 = GOOD.encode().split(b"?", 1)
    reports = [magtek_report(t1 + b"?", t2)]
    reports += [magtek_report(bad.encode()[:110]) for bad in BAD[:-1]]
    reports += [magtek_report(t1 + b"?", t2, status=(0, 1, 0)), magtek_report(t1 + b"?", t2)[:90]]
    try:
        async with running(reader, recording_sink(log, no_leak)):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            for n, report in enumerate(reports, start=1):
                node.send(report)
                await log.wait_for(lambda ev, n=n: len(ev) >= 1 + n)
            node.unplug()
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) >= 2)
            node.plug()
            await log.wait_for(lambda ev: len(log.of(ReaderStatus)) >= 3)
            node.send(reports[0])
            await log.wait_for(lambda ev: len(log.of(CardRead)) >= 2)
    finally:
        node.close()
    assert len(log.of(ReadFailed)) == len(reports) - 1
