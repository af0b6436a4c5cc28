"""EvdevReader with a fake input device fed real evdev.InputEvent sequences, plus
uinput tests where /dev/uinput is writable (skipped otherwise, e.g. in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator

import pytest
from evdev import ecodes
from lobbypay_hw import READERS
from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed, ReadFailure
from lobbypay_hw.reader_evdev import EvdevReader

from tests.fakes.evdev import Clock, FakeInputDevice, FakeOpener, fake_node, key, tap, typed
from tests.fakes.pty import EventLog

SWIPE = "%B4111111111111111^DOE/JOHN^2812101000?;4111111111111111=28121010000?"
PATH = fake_node("usb-Fake_MSR-event-kbd")
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}


@contextlib.asynccontextmanager
async def running(reader: EvdevReader, log: EventLog) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run(log))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def statuses(log: EventLog) -> list[bool]:
    return [e.connected for e in log.of(ReaderStatus)]  # type: ignore[attr-defined]


def cards(log: EventLog) -> list[str]:
    return [e.card.trackdata() for e in log.of(CardRead)]  # type: ignore[attr-defined]


async def test_grabs_decodes_and_releases() -> None:
    dev = FakeInputDevice(PATH)
    opener = FakeOpener(dev)
    log = EventLog()
    reader = READERS["evdev"](path=PATH, grab=True, opener=opener, **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        assert reader.connected and dev.grabbed
        dev.feed(typed(SWIPE))
        dev.feed(typed(";4111111111111112=2812101?", enter=ecodes.KEY_KPENTER))
        await log.wait_for(lambda ev: len(ev) >= 3)
    assert opener.paths == [PATH]
    assert cards(log) == [SWIPE]
    assert log.of(ReadFailed) == [ReadFailed(ReadFailure.BAD_CHECK_DIGIT)]
    assert dev.calls == ["grab", "ungrab", "close"]
    assert not reader.connected


async def test_no_grab_when_configured_off() -> None:
    dev = FakeInputDevice(PATH)
    log = EventLog()
    reader = EvdevReader(PATH, grab=False, opener=FakeOpener(dev), **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        dev.feed(typed(SWIPE))
        await log.wait_for(lambda ev: bool(cards(log)))
    assert "grab" not in dev.calls


async def test_missing_terminator_ends_at_the_idle_gap() -> None:
    dev = FakeInputDevice(PATH)
    log = EventLog()
    reader = EvdevReader(PATH, opener=FakeOpener(dev), idle_gap_s=0.1, **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        dev.feed(typed(SWIPE, enter=None))
        await log.wait_for(lambda ev: bool(cards(log)), timeout_s=3)
    assert cards(log) == [SWIPE]


async def test_autorepeat_and_shift_in_a_live_stream() -> None:
    dev = FakeInputDevice(PATH)
    log = EventLog()
    reader = EvdevReader(PATH, opener=FakeOpener(dev), **FAST)
    c = Clock()
    events = key(c, ecodes.KEY_SEMICOLON, 1) + key(c, ecodes.KEY_SEMICOLON, 2)
    events += key(c, ecodes.KEY_SEMICOLON, 0)
    events += typed(SWIPE.split(";", 1)[1], c)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        dev.feed(events)
        await log.wait_for(lambda ev: bool(cards(log)))
    assert cards(log) == [";" + SWIPE.split(";", 1)[1]]


async def test_a_second_keyboard_does_not_mix_in() -> None:
    """The reader reads ONE device: keys on another device object never reach it."""
    dev = FakeInputDevice(PATH)
    other = FakeInputDevice(fake_node("usb-Office_Keyboard-event-kbd"))
    log = EventLog()
    reader = EvdevReader(PATH, opener=FakeOpener(dev), **FAST)
    reader_events = typed(SWIPE, Clock(1000.0))
    other_events = key(Clock(1000.001), ecodes.KEY_LEFTSHIFT, 1) + typed("x1", Clock(1000.003))
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        for i in range(max(len(reader_events), len(other_events))):
            if i < len(reader_events):
                dev.feed([reader_events[i]])
            if i < len(other_events):
                other.feed([other_events[i]])
            if i % 20 == 0:
                await asyncio.sleep(0)
        await log.wait_for(lambda ev: bool(cards(log)))
    assert cards(log) == [SWIPE]
    assert log.of(ReadFailed) == []


async def test_unplug_then_replug() -> None:
    dev = FakeInputDevice(PATH)
    opener = FakeOpener(dev)
    log = EventLog()
    reader = EvdevReader(PATH, opener=opener, **FAST)
    async with running(reader, log) as task:
        await log.wait_for(lambda ev: statuses(log) == [True])
        dev.feed(typed(SWIPE[:25], enter=None))  # half a swipe, then the cable goes
        await asyncio.sleep(0.02)
        opener.unplug()  # ENODEV from the read loop, ENOENT on reopen
        await log.wait_for(lambda ev: statuses(log) == [True, False])
        assert not reader.connected
        assert "enodev" in log.of(ReaderStatus)[1].detail  # type: ignore[attr-defined]
        assert dev.calls == ["grab", "ungrab", "close"]
        await asyncio.sleep(0.3)
        failures = opener.failures
        assert 2 <= failures <= 40  # retried with backoff, not a busy loop
        assert not task.done()
        new = FakeInputDevice(PATH)
        opener.plug(new)
        await log.wait_for(lambda ev: statuses(log) == [True, False, True])
        new.feed(typed(SWIPE))
        await log.wait_for(lambda ev: bool(cards(log)))
    assert cards(log) == [SWIPE]  # the half swipe was dropped, not glued on
    assert log.of(ReadFailed) == []
    assert new.calls == ["grab", "ungrab", "close"]


async def test_absent_at_start_and_busy_grab() -> None:
    opener = FakeOpener(None)
    log = EventLog()
    reader = EvdevReader(PATH, opener=opener, **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: statuses(log) == [False])
        busy = FakeInputDevice(PATH)
        busy.grab_error = OSError(errno.EBUSY, "Device or resource busy")
        opener.plug(busy)
        await asyncio.sleep(0.2)
        assert statuses(log) == [False]  # grab refused: still not connected
        assert busy.calls.count("close") >= 1
        busy.grab_error = None
        busy.closed = False
        await log.wait_for(lambda ev: statuses(log) == [False, True])


async def test_opener_errors_of_any_kind_are_a_status() -> None:
    def broken_opener(path: str) -> FakeInputDevice:
        raise ModuleNotFoundError("No module named 'evdev'")

    log = EventLog()
    reader = EvdevReader(PATH, opener=broken_opener, **FAST)
    async with running(reader, log) as task:
        await log.wait_for(lambda ev: statuses(log) == [False])
        await asyncio.sleep(0.1)
        assert not task.done()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="reader.path"):
        READERS["evdev"](path=None)


# ---------------------------------------------------------------- real kernel devices

uinput_ok = os.access("/dev/uinput", os.W_OK)


@pytest.mark.skipif(not uinput_ok, reason="needs a writable /dev/uinput (root or uinput group)")
async def test_uinput_keyboard_end_to_end() -> None:
    from evdev import UInput

    keys = sorted({e.code for e in typed(SWIPE) if e.type == ecodes.EV_KEY})
    with UInput({ecodes.EV_KEY: keys}, name="lobbypay-test-msr") as ui:
        await asyncio.sleep(0.3)  # let udev create the node
        log = EventLog()
        reader = EvdevReader(ui.device.path, grab=True, **FAST)
        async with running(reader, log):
            await log.wait_for(lambda ev: ReaderStatus(True) in ev)
            for e in typed(SWIPE):
                if e.type == ecodes.EV_KEY:
                    ui.write(ecodes.EV_KEY, e.code, e.value)
                    ui.syn()
            await log.wait_for(lambda ev: bool(cards(log)))
        assert cards(log) == [SWIPE]


@pytest.mark.skipif(not uinput_ok, reason="needs a writable /dev/uinput (root or uinput group)")
async def test_uinput_device_removed_is_reported() -> None:
    from evdev import UInput

    ui = UInput({ecodes.EV_KEY: [ecodes.KEY_1, ecodes.KEY_ENTER]}, name="lobbypay-test-msr")
    await asyncio.sleep(0.3)
    log = EventLog()
    reader = EvdevReader(ui.device.path, **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: statuses(log) == [True])
        ui.close()
        await log.wait_for(lambda ev: statuses(log) == [True, False])


def test_tap_helper_is_press_then_release() -> None:
    events = [e for e in tap(Clock(), ecodes.KEY_A) if e.type == ecodes.EV_KEY]
    assert [e.value for e in events] == [1, 0]


async def test_not_grabbed_unless_the_path_names_the_opened_device(tmp_path) -> None:
    # After a replug, reader.path (a symlink) still named the old eventN, which now is
    # the front desk's keyboard: the opened device is not the node the path names.
    reader_node = fake_node("usb-Fake_MSR-event-kbd")
    keyboard_node = fake_node("usb-Office_Keyboard-event-kbd")
    link = tmp_path / "lobbypay-reader"
    link.symlink_to(reader_node)
    keyboard = FakeInputDevice(str(link), node=keyboard_node)
    opener = FakeOpener(keyboard)
    log = EventLog()
    reader = EvdevReader(str(link), opener=opener, **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: statuses(log) == [False])
        await asyncio.sleep(0.1)
        assert "grab" not in keyboard.calls and not keyboard.grabbed
        assert log.of(ReaderStatus)[0].detail.startswith("estale: reader.path now names")  # type: ignore[attr-defined]
        opener.plug(FakeInputDevice(str(link), node=reader_node))  # udev caught up
        await log.wait_for(lambda ev: statuses(log) == [False, True])
        assert opener.device is not None and opener.device.grabbed
    assert statuses(log) == [False, True]


async def test_caps_lock_lit_on_the_device() -> None:
    # The reader sees the caps lock LED lit and sends capitals without shift.
    dev = FakeInputDevice(PATH, caps_lock=True)
    log = EventLog()
    reader = EvdevReader(PATH, opener=FakeOpener(dev), **FAST)
    async with running(reader, log):
        await log.wait_for(lambda ev: ReaderStatus(True) in ev)
        dev.feed(typed(SWIPE.replace("B", "b").replace("DOE/JOHN", "doe/john")))
        await log.wait_for(lambda ev: len(log.of(CardRead)) == 1)
    assert cards(log) == [SWIPE]
