"""hd44780-i2c through the registry, on a fake SMBus with the PCF8574 + HD44780 model:
what the LCD shows, diffs, coalescing, wrong address, missing bus, unplug and replug."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest
from lobbypay_hw import DISPLAYS
from lobbypay_hw.api import ScreenView
from lobbypay_hw.display_i2c import Hd44780I2cDisplay

from tests.fakes.aio import running, until
from tests.fakes.i2c import MJKDZ, Backpack

FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.05}


def lcd(backpack: Backpack, **kw: object) -> Hd44780I2cDisplay:
    d = DISPLAYS["hd44780-i2c"](path=None, baudrate=9600, bus_opener=backpack.opener,
                                **{**FAST, **kw})
    assert isinstance(d, Hd44780I2cDisplay)
    return d


async def test_shows_text_and_keeps_the_mirror_exact() -> None:
    bp = Backpack()
    d = lcd(bp, rows=2, cols=16)
    async with running(d):
        await until(lambda: d.connected)
        assert bp.opened == [1]
        shown = d.show(ScreenView(("Total $65.00", "Deslice tarjeta")))
        await until(lambda: bp.lcd.text(2, 16) == shown)
        assert shown == ("  Total $65.00  ", "Deslice tarjeta ")
        shown = d.show(ScreenView(("¿Otra tarjeta?", "Consulte en recepción")))
        await until(lambda: bp.lcd.text(2, 16) == shown)
        assert shown == (" ¿Otra tarjeta? ", "Consulte en rece")
        assert bp.lcd.violations == 0 and bp.expander.rw_writes == 0
        assert bp.expander.backlight


async def test_20x4_at_0x3f_mjkdz_wiring_backlight_off() -> None:
    bp = Backpack(address=0x3F, pins=MJKDZ)
    d = lcd(bp, rows=4, cols=20, address=0x3F, wiring="mjkdz", backlight=False)
    async with running(d):
        await until(lambda: d.connected)
        shown = d.show(ScreenView(("Total a pagar", "$65.00", "", "Deslice su tarjeta")))
        await until(lambda: bp.lcd.text(4, 20) == shown)
        assert shown[1].strip() == "$65.00" and shown[3].strip() == "Deslice su tarjeta"
        assert not bp.expander.backlight


async def test_only_changed_cells_are_written_and_bursts_coalesce() -> None:
    bp = Backpack()
    d = lcd(bp, rows=2, cols=16)
    async with running(d):
        await until(lambda: d.connected)
        d.show(ScreenView(("Total $65.00", "Deslice tarjeta")))
        await until(lambda: bp.lcd.text(2, 16)[0].strip() == "Total $65.00")
        before = bp.lcd.data_writes
        d.show(ScreenView(("Total $65.00", "Tarjeta vencida")))
        final = d.show(ScreenView(("Total $65.00", "Aprobado")))
        await until(lambda: bp.lcd.text(2, 16) == final)
        await asyncio.sleep(0.05)
        assert bp.lcd.data_writes - before <= 16  # the second row at most, never row 1
        transfers = bp.bus.transfers
        d.show(ScreenView(("Total $65.00", "Aprobado")))  # unchanged: nothing sent
        await asyncio.sleep(0.05)
        assert bp.bus.transfers == transfers


async def test_wrong_address_is_disconnected_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lobbypay_hw")
    bp = Backpack(address=0x3F)  # the backpack is a PCF8574A; config says 0x27
    d = lcd(bp)
    async with running(d) as task:
        shown = d.show(ScreenView(("Aprobado",)))  # show() works while disconnected
        assert shown[0].strip() == "Aprobado"
        await until(lambda: d.detail.startswith("eremoteio"))
        await asyncio.sleep(0.15)
        assert not d.connected and not task.done()
        assert len(bp.opened) >= 2  # it keeps retrying, with backoff
        assert bp.bus.closed
    assert "wrong address or wiring" in caplog.text


async def test_missing_bus_then_plugged_in_shows_the_current_frame() -> None:
    bp = Backpack()
    bp.missing_bus = True  # i2c-dev not loaded / I2C disabled in raspi-config
    d = lcd(bp)
    async with running(d) as task:
        await until(lambda: d.detail.startswith("enoent"))
        shown = d.show(ScreenView(("Procesando...",)))
        assert not d.connected and not task.done()
        bp.missing_bus = False
        await until(lambda: d.connected and bp.lcd.text(2, 16) == shown)


async def test_unplug_and_replug_resets_and_redraws() -> None:
    bp = Backpack()
    d = lcd(bp)
    async with running(d):
        await until(lambda: d.connected)
        d.show(ScreenView(("Total $65.00", "Deslice tarjeta")))
        await until(lambda: bp.lcd.text(2, 16)[0].strip() == "Total $65.00")
        bp.bus.unplugged = True
        shown = d.show(ScreenView(("Aprobado", "Visa ****1111")))
        await until(lambda: not d.connected)
        assert d.detail.startswith("eremoteio")
        # the backpack comes back after a power cycle: a fresh LCD in 8-bit mode
        bp.lcd.__init__()  # type: ignore[misc]
        bp.bus.unplugged = False
        await until(lambda: d.connected and bp.lcd.text(2, 16) == shown)
        assert bp.lcd.violations == 0


def test_bad_config_values() -> None:
    with pytest.raises(ValueError, match="display.address"):
        DISPLAYS["hd44780-i2c"](address=0x80)
    with pytest.raises(ValueError, match="display.bus"):
        DISPLAYS["hd44780-i2c"](bus=-1)
    with pytest.raises(ValueError, match="display.wiring"):
        DISPLAYS["hd44780-i2c"](wiring="other")
    with pytest.raises(TypeError):
        DISPLAYS["hd44780-i2c"](speed=3)
    assert errno.EREMOTEIO == 121
