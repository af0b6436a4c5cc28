"""HD44780 character LCD on a PCF8574 I2C backpack (``hd44780-i2c``), through smbus2.

``show(view)`` renders and records the wanted frame and returns at once. ``run()`` opens
``/dev/i2c-<bus>``, resets and sets up the LCD (``hd44780.init_steps``), writes the full
frame, then for each change only the changed cells. Each update is one I2C write
(``i2c_rdwr``) run in a worker thread, so a slow or stuck bus never blocks the event loop;
frames shown meanwhile coalesce into the next diff. Any bus error (no bus, errno 121
"remote I/O error" for a wrong address or wiring, an unplugged backpack) marks the
display disconnected and the writer retries with backoff, starting again with the reset
(the LCD may have lost power).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from lobbypay_hw._common import RETRY_BASE_S, RETRY_CAP_S
from lobbypay_hw._display import DeviceDisplay
from lobbypay_hw.hd44780 import CHARSET, WIRINGS, Encoder, encode, init_steps
from lobbypay_hw.screen import DEFAULT_COLS, DEFAULT_ROWS

if TYPE_CHECKING:
    from smbus2 import i2c_msg

DEFAULT_BUS = 1  # /dev/i2c-1: the Pi's GPIO header pins 3 (SDA) and 5 (SCL)
DEFAULT_ADDRESS = 0x27  # PCF8574; 0x3F on the PCF8574A version
# Bytes per I2C write: i2c-dev takes up to 8192; a full 20x4 frame is about 350.
MAX_WRITE = 1024


class I2cBus(Protocol):
    """The part of ``smbus2.SMBus`` the I2C displays use."""

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None: ...

    def close(self) -> None: ...


BusOpener = Callable[[int], I2cBus]


def open_smbus(bus: int) -> I2cBus:
    from smbus2 import SMBus  # lazy: only a configured I2C display loads it

    return SMBus(bus)


def check_address(address: int) -> None:
    if not isinstance(address, int) or not 0x03 <= address <= 0x77:
        raise ValueError("display.address must be a 7-bit I2C address (0x03-0x77)")


def check_bus(bus: int) -> None:
    if not isinstance(bus, int) or not 0 <= bus <= 255:
        raise ValueError("display.bus must be an I2C bus number (0-255)")


class Hd44780I2cDisplay(DeviceDisplay):
    driver = "hd44780-i2c"
    charset = CHARSET

    def __init__(
        self,
        *,
        bus: int = DEFAULT_BUS,
        address: int = DEFAULT_ADDRESS,
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLS,
        backlight: bool = True,
        wiring: str = "standard",
        bus_opener: BusOpener | None = None,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        check_bus(bus)
        check_address(address)
        if wiring not in WIRINGS:
            raise ValueError(f"display.wiring must be one of {sorted(WIRINGS)}")
        super().__init__(rows, cols, retry_base_s=retry_base_s, retry_cap_s=retry_cap_s)
        self.bus = bus
        self.address = address
        self._encoder = Encoder(WIRINGS[wiring], backlight=bool(backlight))
        self._open = bus_opener or open_smbus
        self._bus: I2cBus | None = None
        self.bytes_sent = 0  # for tests and diagnostics
        self.writes = 0

    async def _session(self) -> None:
        bus = self._bus = await self._blocking(self._open, self.bus)
        for data, wait_s in init_steps(self._encoder, self.rows):
            await self._write(bus, data)
            if wait_s:
                await asyncio.sleep(wait_s)
        self._up(f"bus {self.bus}, 0x{self.address:02x}")

        async def update(sent: tuple[str, ...] | None, wanted: tuple[str, ...]) -> None:
            await self._write(bus, encode(self._encoder, sent, wanted))

        await self._write_frames(update)

    async def _close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()

    async def _write(self, bus: I2cBus, data: bytes) -> None:
        from smbus2 import i2c_msg  # lazy, as in open_smbus

        for start in range(0, len(data), MAX_WRITE):
            msg = i2c_msg.write(self.address, data[start:start + MAX_WRITE])
            await self._blocking(bus.i2c_rdwr, msg)
        self.bytes_sent += len(data)
        self.writes += 1
