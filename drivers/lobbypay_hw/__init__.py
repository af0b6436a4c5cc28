"""Card readers and displays for the lobbypay terminal (imports nothing from ``lobbypay``).

The interfaces are in ``lobbypay_hw.api``. Build drivers through the registries, with
plain keyword arguments (the ``[reader]`` / ``[display]`` config keys):

``READERS[name](**kwargs) -> CardReader``
    ``"serial"``  ``path`` (tty, e.g. ``/dev/lobbypay-reader`` or ``/dev/serial/by-id/...``,
                  required), ``baudrate`` (default 9600); ``grab`` is accepted and ignored.
    ``"evdev"``   ``path`` (``/dev/input/by-id/...-event-kbd`` or ``/dev/lobbypay-reader``,
                  required), ``grab`` (default True: exclusive grab); ``baudrate`` ignored.
    ``"hidraw"``  ``path`` (a MagTek reader in HID mode: ``/dev/lobbypay-reader`` from the
                  udev rule, or ``/dev/hidrawN``, required); ``baudrate``/``grab`` ignored.
    ``"sim"``     ``path`` (Unix socket path to listen on, required: the caller passes its
                  default, e.g. ``<state_dir>/swipe.sock``); ``baudrate``/``grab`` ignored.
    Tuning, all optional: ``retry_base_s``, ``retry_cap_s`` (reopen backoff), ``max_frame``;
    evdev ``idle_gap_s`` and ``opener`` (tests); serial ``idle_flush_s``.

``DISPLAYS[name](**kwargs) -> Display``
    ``"serlcd"``, ``"matrixorbital"``  ``path`` (required), ``baudrate`` (9600), ``rows`` (2),
                  ``cols`` (16); tuning ``retry_base_s``, ``retry_cap_s``.
    ``"console"`` ``rows``, ``cols``, ``stream`` (text stream, default stdout); ``path`` and
                  ``baudrate`` ignored.
    ``"none"``    ``rows``, ``cols``; ``path`` and ``baudrate`` ignored.
    ``"hd44780-i2c"`` ``bus`` (1: ``/dev/i2c-1``), ``address`` (0x27; 0x3F common),
                  ``rows``, ``cols``, ``backlight`` (True), ``wiring`` ("standard" or
                  "mjkdz"); tuning ``retry_base_s``, ``retry_cap_s``, ``bus_opener``
                  (tests: bus number -> an ``smbus2.SMBus``-like object).
    ``"ssd1306"``, ``"sh1106"``  128x64 OLEDs through luma.oled: ``interface`` ("i2c" or
                  "spi"), ``bus`` (I2C bus or SPI port), ``address`` (0x3C), ``spi_device``,
                  ``gpio_dc``, ``gpio_rst``, ``rotate`` (quarter turns), ``rows`` (4),
                  ``cols`` (20), ``font`` (a TTF; default DejaVu Sans); tuning
                  ``device_opener`` (tests: an ``OledPort`` -> a luma device).
    ``"framebuffer"`` HDMI/DSI screens: ``path`` (/dev/fb0), ``rows`` (4), ``cols`` (20),
                  ``font``; tuning ``sysfs`` (the /sys/class/graphics directory).
    The graphic drivers import Pillow (and luma) when built, never before.

Unknown keyword arguments raise ``TypeError``; bad values raise ``ValueError`` naming the
config key. Constructing a driver does no I/O: devices are opened by ``run()``.

Other entry points: ``tracks.parse_swipe`` (bytes -> ``BankCard`` or ``SwipeError``),
``reader_sim.send_swipe(path, raw)`` (client for ``lobbypay swipe``), ``screen.render``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, TextIO

from lobbypay_hw.api import CardReader, Display
from lobbypay_hw.display_console import ConsoleDisplay, NoneDisplay
from lobbypay_hw.display_i2c import DEFAULT_ADDRESS, DEFAULT_BUS, Hd44780I2cDisplay
from lobbypay_hw.display_serial import SerialDisplay
from lobbypay_hw.reader_evdev import EvdevReader
from lobbypay_hw.reader_hidraw import HidrawReader
from lobbypay_hw.reader_serial import SerialReader
from lobbypay_hw.reader_sim import SimReader, send_swipe
from lobbypay_hw.screen import DEFAULT_COLS, DEFAULT_ROWS
from lobbypay_hw.tracks import SwipeError, parse_swipe


def make_serial_reader(
    *, path: str | None = None, baudrate: int = 9600, grab: bool = True, **tuning: Any
) -> CardReader:
    return SerialReader(path or "", baudrate=baudrate, **tuning)


def make_evdev_reader(
    *, path: str | None = None, baudrate: int = 9600, grab: bool = True, **tuning: Any
) -> CardReader:
    return EvdevReader(path or "", grab=grab, **tuning)


def make_hidraw_reader(
    *, path: str | None = None, baudrate: int = 9600, grab: bool = True, **tuning: Any
) -> CardReader:
    return HidrawReader(path or "", **tuning)


def make_sim_reader(
    *, path: str | None = None, baudrate: int = 9600, grab: bool = True, **tuning: Any
) -> CardReader:
    return SimReader(path or "", **tuning)


def make_serlcd(
    *,
    path: str | None = None,
    baudrate: int = 9600,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    **tuning: Any,
) -> Display:
    return SerialDisplay("serlcd", path or "", baudrate=baudrate, rows=rows, cols=cols, **tuning)


def make_matrixorbital(
    *,
    path: str | None = None,
    baudrate: int = 9600,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    **tuning: Any,
) -> Display:
    return SerialDisplay(
        "matrixorbital", path or "", baudrate=baudrate, rows=rows, cols=cols, **tuning
    )


def make_console(
    *,
    path: str | None = None,
    baudrate: int = 9600,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    stream: TextIO | None = None,
) -> Display:
    return ConsoleDisplay(rows=rows, cols=cols, stream=stream)


def make_none(
    *,
    path: str | None = None,
    baudrate: int = 9600,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
) -> Display:
    return NoneDisplay(rows=rows, cols=cols)


def make_hd44780_i2c(
    *,
    path: str | None = None,
    baudrate: int = 9600,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    bus: int = DEFAULT_BUS,
    address: int = DEFAULT_ADDRESS,
    backlight: bool = True,
    wiring: str = "standard",
    **tuning: Any,
) -> Display:
    if "bus_opener" not in tuning and importlib.util.find_spec("smbus2") is None:
        # a pip install always has it; the Debian package only suggests python3-smbus2
        raise ValueError("display.driver: hd44780-i2c needs smbus2 "
                         "(apt install python3-smbus2, or pip install smbus2)")
    return Hd44780I2cDisplay(
        bus=bus, address=address, rows=rows, cols=cols, backlight=backlight, wiring=wiring,
        **tuning,
    )


#: What Pillow's ``PIL.Image`` imports for image files, which the graphic displays never
#: open (they draw new images): the EXIF and TIFF tag tables, hundreds of enum members
#: and dicts (0.3 MB in the agent's peak). Given stand-ins (lobbypay_hw/_deferred.py)
#: before Pillow is first imported.
UNUSED_BY_GRAPHIC_DISPLAYS = ("PIL.ExifTags", "PIL.TiffTags")


def _graphic(extra: str) -> Any:
    """The graphic drivers' module (imports Pillow), or ValueError naming the extra."""
    from lobbypay_hw._deferred import defer_import

    defer_import(*UNUSED_BY_GRAPHIC_DISPLAYS)
    try:
        display_graphic = importlib.import_module("lobbypay_hw.display_graphic")
    except ImportError as exc:
        raise ValueError(f"display.driver: this display needs lobbypay[{extra}] "
                         f"(pip install 'lobbypay[{extra}]'; missing {exc.name})") from None
    return display_graphic


def _make_oled(driver: str, rows: int, cols: int, **kwargs: Any) -> Display:
    # lazy: Pillow loads only when an OLED is configured (luma when it opens)
    oled: Display = _graphic("oled").OledDisplay(driver, rows=rows, cols=cols, **kwargs)
    return oled


def make_ssd1306(
    *, path: str | None = None, baudrate: int = 9600, rows: int = 4, cols: int = 20,
    **kwargs: Any,
) -> Display:
    return _make_oled("ssd1306", rows, cols, **kwargs)


def make_sh1106(
    *, path: str | None = None, baudrate: int = 9600, rows: int = 4, cols: int = 20,
    **kwargs: Any,
) -> Display:
    return _make_oled("sh1106", rows, cols, **kwargs)


def make_framebuffer(
    *, path: str | None = None, baudrate: int = 9600, rows: int = 4, cols: int = 20,
    **kwargs: Any,
) -> Display:
    fb: Display = _graphic("framebuffer").FramebufferDisplay(  # lazy: Pillow
        path=path or "/dev/fb0", rows=rows, cols=cols, **kwargs)
    return fb


READERS: dict[str, Callable[..., CardReader]] = {
    "serial": make_serial_reader,
    "evdev": make_evdev_reader,
    "hidraw": make_hidraw_reader,
    "sim": make_sim_reader,
}

DISPLAYS: dict[str, Callable[..., Display]] = {
    "serlcd": make_serlcd,
    "matrixorbital": make_matrixorbital,
    "console": make_console,
    "none": make_none,
    "hd44780-i2c": make_hd44780_i2c,
    "ssd1306": make_ssd1306,
    "sh1106": make_sh1106,
    "framebuffer": make_framebuffer,
}

__all__ = [
    "DISPLAYS",
    "READERS",
    "SwipeError",
    "parse_swipe",
    "send_swipe",
]
