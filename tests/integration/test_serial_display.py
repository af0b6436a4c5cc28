"""SerialDisplay over pty pairs: golden bytes on the wire, diffs, coalescing, replug;
and the console / none displays."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from lobbypay_hw import DISPLAYS
from lobbypay_hw.api import Align, ScreenView
from lobbypay_hw.display_serial import SerialDisplay

from tests.fakes.aio import running
from tests.fakes.pty import PtyPort, Replug

FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}
DUE = ScreenView(("Total due", "65.00"))
SWIPE = ScreenView(("Total due", "Swipe card"))


async def until(pred: object, timeout_s: float = 5.0) -> None:
    assert callable(pred)
    for _ in range(int(timeout_s / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


@pytest.mark.pty
async def test_serlcd_bytes_on_the_wire() -> None:
    port = PtyPort()
    lcd = DISPLAYS["serlcd"](path=port.path, baudrate=115200, rows=2, cols=16, **FAST)
    try:
        async with running(lcd):
            await until(lambda: lcd.connected)
            # blank screen on connect
            await port.wait_for(lambda d: d == b"|-\xfe\x80" + b" " * 16 + b"\xfe\xc0" + b" " * 16)
            port.clear()
            assert lcd.show(DUE) == ("   Total due    ", "     65.00      ")
            await port.wait_for(lambda d: d == b"\xfe\x83Total due\xfe\xc565.00")
            port.clear()
            lcd.show(SWIPE)
            await port.wait_for(lambda d: d == b"\xfe\xc3Swipe card")
            port.clear()
            lcd.show(SWIPE)  # unchanged: nothing is sent
            await asyncio.sleep(0.1)
            assert port.drain() == b""
    finally:
        port.close()


@pytest.mark.pty
async def test_matrixorbital_bytes_on_the_wire() -> None:
    port = PtyPort()
    lcd = DISPLAYS["matrixorbital"](path=port.path, baudrate=115200, rows=4, cols=20, **FAST)
    lcd.show(DUE)  # shown before the port is even open
    try:
        async with running(lcd):
            await port.wait_for(
                lambda d: (
                    d
                    == b"\xfeR\xfeX"
                    + b"\xfeG\x01\x01"
                    + b"     Total due      "
                    + b"\xfeG\x01\x02"
                    + b"       65.00        "
                    + b"\xfeG\x01\x03"
                    + b" " * 20
                    + b"\xfeG\x01\x04"
                    + b" " * 20
                )
            )
            port.clear()
            lcd.show(ScreenView(("Total due", "70.00")))
            await port.wait_for(lambda d: d == b"\xfeG\x08\x0270")
    finally:
        port.close()


def serlcd_replay(data: bytes, rows: int = 2, cols: int = 16) -> tuple[str, ...]:
    """A tiny SerLCD: apply clear / cursor / text bytes to a grid."""
    offsets = {0: 0, 64: 1, 20: 2, 84: 3}
    grid = [[" "] * cols for _ in range(rows)]
    row = col = 0
    i = 0
    while i < len(data):
        b = data[i]
        if data[i : i + 2] == b"|-":
            grid = [[" "] * cols for _ in range(rows)]
            row = col = 0
            i += 2
        elif b == 0xFE:
            addr = data[i + 1] - 0x80
            base = max(o for o in offsets if o <= addr)
            row, col = offsets[base], addr - base
            i += 2
        else:
            grid[row][col] = chr(b)
            col += 1
            i += 1
    return tuple("".join(r) for r in grid)


@pytest.mark.pty
async def test_frames_shown_while_writing_coalesce() -> None:
    port = PtyPort()
    lcd = SerialDisplay("serlcd", port.path, baudrate=1200, **FAST)  # ~120 bytes/s
    try:
        async with running(lcd):
            await until(lambda: lcd.connected and lcd.writes == 1)  # the blank screen
            for n in range(30):  # a new amount every 10 ms for 300 ms
                lcd.show(ScreenView(("Total due", f"{n}.00")))
                await asyncio.sleep(0.01)
            final = lcd.show(ScreenView(("Thank you", "")))
            await until(lambda: lcd.frame == final and serlcd_replay(port.drain()) == final)
            # each update is ~70 ms on the wire at 1200 baud: far fewer than 31 writes
            assert lcd.writes - 1 <= 10
    finally:
        port.close()


@pytest.mark.pty
async def test_unplug_and_replug_resends_the_full_frame(tmp_path: Path) -> None:
    link = tmp_path / "lobbypay-display"
    replug = Replug(link)
    port = replug.plug()
    lcd = SerialDisplay("serlcd", str(link), baudrate=115200, **FAST)
    try:
        async with running(lcd):
            lcd.show(DUE)
            await port.wait_for(lambda d: d.endswith(b"\xfe\xc0     65.00      "))
            replug.unplug()
            await until(lambda: not lcd.connected)
            lcd.show(SWIPE)  # while unplugged: never blocks, never raises
            port = replug.plug()
            await until(lambda: lcd.connected)
            await port.wait_for(
                lambda d: d == b"|-\xfe\x80   Total due    \xfe\xc0   Swipe card   "
            )
    finally:
        replug.close()


@pytest.mark.pty
async def test_missing_port_is_not_connected_and_show_still_works(tmp_path: Path) -> None:
    lcd = SerialDisplay("serlcd", str(tmp_path / "nope"), **FAST)
    async with running(lcd) as task:
        await asyncio.sleep(0.2)
        assert not lcd.connected
        assert lcd.show(DUE) == ("   Total due    ", "     65.00      ")
        assert not task.done()


def test_display_config_is_checked() -> None:
    with pytest.raises(ValueError, match="display.path"):
        DISPLAYS["serlcd"](path=None)
    with pytest.raises(ValueError, match="rows"):
        DISPLAYS["matrixorbital"](path="/dev/ttyUSB0", rows=5)
    with pytest.raises(ValueError, match="display.baudrate"):
        DISPLAYS["serlcd"](path="/dev/ttyUSB0", baudrate=7)
    with pytest.raises(TypeError):
        DISPLAYS["none"](colour="red")


async def test_console_display_draws_boxes() -> None:
    out = io.StringIO()
    con = DISPLAYS["console"](rows=2, cols=16, stream=out)
    assert con.driver == "console"
    async with running(con):
        await until(lambda: con.connected)
        con.show(DUE)
        await until(lambda: "65.00" in out.getvalue())
        con.show(DUE)  # unchanged: not drawn again
        await asyncio.sleep(0.05)
    assert out.getvalue().endswith(
        "+----------------+\n|   Total due    |\n|     65.00      |\n+----------------+\n"
    )
    assert out.getvalue().count("65.00") == 1
    assert not con.connected


async def test_none_display_renders_for_the_mirror() -> None:
    none = DISPLAYS["none"](rows=2, cols=8)
    assert none.show(ScreenView(("Hello", "x"), align=Align.LEFT)) == ("Hello   ", "x       ")
    assert none.connected
    async with running(none) as task:
        await asyncio.sleep(0.01)
        assert not task.done()
