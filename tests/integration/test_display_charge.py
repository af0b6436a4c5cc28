"""A whole charge through the engine on each new display: the ``state.screen`` mirror and
what the display itself shows agree at every step (pending, swipe again, processing,
approved).

The engine runs in this process with the real driver from the ``DISPLAYS`` registry,
built from a parsed config exactly as ``app.py`` builds it; only the device under the
driver is the model (the PCF8574/HD44780 bus model, luma's dummy device, a framebuffer
file with a fake sysfs). An agent subprocess (tests/e2e) cannot be given a fake bus
without shipping a test-only bus in the agent, so this tier is where the two meet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lobbypay.core.athena import Approved
from lobbypay.core.config import parse_config
from lobbypay.core.money import Cents
from lobbypay.engine import Engine
from lobbypay.shell.journal import Journal
from lobbypay_hw import DISPLAYS
from lobbypay_hw.api import CardRead, Display, ReadFailed, ReadFailure
from luma.core.device import dummy

from tests.fakes.engine import (
    HANG,
    SETTLE_S,
    TID,
    TOPIC,
    FakeAthena,
    FakeCard,
    ManualClock,
    patient_payload,
    settle,
    start_cmd,
)
from tests.fakes.i2c import Backpack
from tests.fakes.screens import assert_shows, fb_image

CONFIG: dict[str, Any] = {
    "terminal": {"id": TID, "department_id": "1", "state_dir": "/tmp/unused",
                 "max_charge": "5000.00"},
    "athena": {"base_url": "http://127.0.0.1:9", "practice_id": "195900", "client_id": "c",
               "client_secret_file": "/dev/null"},
    "mqtt": {"host": "127.0.0.1", "port": 1883},
}


@dataclass
class Panel:
    display: Display
    glass: Callable[[tuple[str, ...]], bool]  # does the device show these lines?
    backpack: Backpack | None = None


def build(kind: str, tmp_path: Path) -> Panel:
    """The display as app.py builds it from ``[display]``, plus the test's device seam."""
    table: dict[str, Any] = {"driver": kind}
    seam: dict[str, Any] = {"retry_base_s": 0.02, "retry_cap_s": 0.05}
    if kind == "hd44780-i2c":
        table |= {"address": 0x3F, "rows": 4, "cols": 20}
        bp = Backpack(address=0x3F)
        seam["bus_opener"] = bp.opener
    elif kind == "ssd1306":
        holder: list[dummy] = []

        def opener(port: object) -> dummy:
            holder.append(dummy(width=128, height=64, mode="1"))
            return holder[-1]

        seam["device_opener"] = opener
    else:
        fb, sysfs = tmp_path / "fb0", tmp_path / "sys"
        (sysfs / "fb0").mkdir(parents=True)
        (sysfs / "fb0" / "virtual_size").write_text("480,320\n")
        (sysfs / "fb0" / "bits_per_pixel").write_text("16\n")
        fb.write_bytes(bytes(480 * 320 * 2))
        table["path"] = str(fb)
        seam["sysfs"] = str(sysfs)
    d = parse_config({**CONFIG, "display": table}).display
    display = DISPLAYS[d.driver](path=d.path, baudrate=d.baudrate, rows=d.rows, cols=d.cols,
                                 **d.options, **seam)
    shots = iter(range(100))

    def glass(lines: tuple[str, ...]) -> bool:
        if kind == "hd44780-i2c":
            return bp.lcd.text(4, 20) == lines
        if kind == "ssd1306":
            image = holder[-1].image if holder else None
        else:
            image = fb_image(fb, 480, 320, 16, 960)
        if image is None:
            return False
        try:
            assert_shows(image, lines, display)
        except AssertionError:
            return False
        image.save(tmp_path / f"{kind}-{next(shots)}.png")
        return True

    return Panel(display, glass, bp if kind == "hd44780-i2c" else None)


@contextlib.asynccontextmanager
async def charging(panel: Panel, state_dir: Path) -> AsyncIterator[tuple[Engine, FakeAthena]]:
    clock = ManualClock()
    athena = FakeAthena(patients={"60178": patient_payload()},
                        appointments={"1234": {"copay": "25.00"}})
    journal = Journal(state_dir)
    engine = Engine(
        terminal_id=TID, department_id="1", max_charge=Cents(500000),
        reconcile_settle_s=SETTLE_S, athena_timeout_s=0.5, athena=athena, journal=journal,
        display=panel.display, clock=clock, outbox_wakeup=lambda: None,
        on_state_change=lambda: None, events_topic=TOPIC, sleep=clock.sleep,
    )
    task = asyncio.create_task(panel.display.run())
    await engine.start()
    try:
        yield engine, athena
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.aclose()
        journal.close()


async def agree(engine: Engine, panel: Panel, timeout_s: float = 5.0) -> tuple[str, ...]:
    """Wait until the device shows the state's screen; return it."""
    screen = tuple(engine.state()["screen"])
    async with asyncio.timeout(timeout_s):
        while not panel.glass(screen):  # noqa: ASYNC110 - polling the device model, bounded
            await asyncio.sleep(0.01)
    return screen


@pytest.mark.parametrize("kind", ["hd44780-i2c", "ssd1306", "framebuffer"])
async def test_a_whole_charge_on_the_display(kind: str, tmp_path: Path) -> None:
    panel = build(kind, tmp_path)
    async with charging(panel, tmp_path / "state") as (engine, athena):
        await asyncio.sleep(0)
        idle = await agree(engine, panel)
        assert "Welcome" in " ".join(idle)

        await engine.charge_start(start_cmd())
        pending = await agree(engine, panel)
        assert engine.state()["job_state"] == "pending" and "$65.00" in " ".join(pending)
        assert engine.state()["display"] == {"driver": kind, "connected": True}

        engine.on_reader_event(ReadFailed(ReadFailure.UNREADABLE))
        again = await agree(engine, panel)
        assert again != pending and "again" in " ".join(again).lower()

        athena.post_script = [HANG]
        athena.after_hang = Approved("900001")
        await swipe_card(engine)
        assert engine.state()["job_state"] == "submitting"
        processing = await agree(engine, panel)
        assert "Processing..." in " ".join(processing)

        athena.release.set()
        async with asyncio.timeout(5):
            while engine.active_job is not None:  # noqa: ASYNC110 - bounded wait
                await asyncio.sleep(0.01)
        approved = await agree(engine, panel)
        assert "Approved" in " ".join(approved) and "****1111" in " ".join(approved)
    if kind != "hd44780-i2c":  # a PNG of each screen the device showed
        assert len(sorted(tmp_path.glob(f"{kind}-*.png"))) == 5


async def swipe_card(engine: Engine) -> None:
    engine.on_reader_event(CardRead(FakeCard()))
    await settle()


def test_config_keys_reach_the_driver() -> None:
    d = parse_config({**CONFIG, "display": {"driver": "hd44780-i2c", "bus": 0,
                                            "address": 0x3F, "wiring": "mjkdz",
                                            "backlight": False}}).display
    assert (d.rows, d.cols) == (2, 16)
    lcd = DISPLAYS[d.driver](path=d.path, baudrate=d.baudrate, rows=d.rows, cols=d.cols,
                             **d.options)
    assert (lcd.bus, lcd.address) == (0, 0x3F)  # type: ignore[attr-defined]
    g = parse_config({**CONFIG, "display": {"driver": "sh1106", "interface": "spi"}}).display
    assert (g.rows, g.cols) == (4, 20) and g.options["bus"] == 0
    fb = parse_config({**CONFIG, "display": {"driver": "framebuffer"}}).display
    assert fb.path == "/dev/fb0" and fb.options == {}


async def test_a_display_fault_never_stops_the_charge(tmp_path: Path) -> None:
    panel = build("hd44780-i2c", tmp_path)
    bp = panel.backpack
    assert bp is not None
    async with charging(panel, tmp_path / "state") as (engine, athena):
        await engine.charge_start(start_cmd())
        await agree(engine, panel)
        bp.bus.unplugged = True  # the backpack's cable comes off mid-charge
        async with asyncio.timeout(5):
            while engine.state()["display"]["connected"]:  # noqa: ASYNC110 - bounded wait
                engine.on_reader_event(ReadFailed(ReadFailure.UNREADABLE))  # a write to fail
                await asyncio.sleep(0.01)
        await swipe_card(engine)
        async with asyncio.timeout(5):
            while engine.active_job is not None:  # noqa: ASYNC110 - bounded wait
                await asyncio.sleep(0.01)
        assert athena.posts and "Approved" in " ".join(engine.state()["screen"])
        bp.lcd.__init__()  # type: ignore[misc]  # plugged back in, powered up afresh
        bp.bus.unplugged = False
        await agree(engine, panel)  # the approved screen, as the mirror says
        assert engine.state()["display"] == {"driver": "hd44780-i2c", "connected": True}
