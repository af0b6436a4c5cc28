"""Graphic displays: SSD1306 / SH1106 OLEDs (luma.oled) and a Linux framebuffer (HDMI, DSI).

Imported only when one of them is configured (the registry imports this module lazily),
so Pillow and luma stay out of the agent's memory otherwise.

``show(view)`` renders the text frame with the font's charset, lays it out on the
canvas (``graphic.layout``: the amount large and bold) and returns the lines as drawn.
The writer (``run()``) draws the image and sends it to the device in a worker thread,
so neither an I2C transfer of 1 KB (about 0.1 s at 100 kHz) nor a framebuffer write
blocks the event loop. A device error marks the display disconnected and it retries.

Framebuffer: geometry from sysfs (``/sys/class/graphics/fbN/virtual_size``,
``bits_per_pixel``, ``stride``), pixels written with ``os.pwrite`` in bands of rows, in
the fb's own format (RGB565 little-endian, BGR 24-bit or BGRX 32-bit). luma.core's
``linux_framebuffer`` was not used: it converts RGB565 one pixel at a time in Python
(seconds per frame on a Pi for 800x480), ignores the stride, and hard-codes ``/dev`` and
``/sys`` paths, so it can be tested only on a real framebuffer.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageChops

from lobbypay_hw._common import RETRY_BASE_S, RETRY_CAP_S
from lobbypay_hw._deferred import defer_import
from lobbypay_hw._display import DeviceDisplay
from lobbypay_hw.api import ScreenView
from lobbypay_hw.display_i2c import check_address, check_bus
from lobbypay_hw.graphic import FontSet, Placed, draw, layout, load_fonts, shown_lines
from lobbypay_hw.screen import render

OLED_SIZE = (128, 64)
SYSFS_GRAPHICS = "/sys/class/graphics"  # where each /dev/fbN's geometry is (fbN/...)
BAND_ROWS = 16  # framebuffer rows per write: a 1920-wide 32-bit band is 120 KB


class GraphicDisplay(DeviceDisplay):
    """A text frame drawn as an image; subclasses open the device and paint it."""

    size: tuple[int, int]
    min_px = 8  # smallest type before a line is cut
    pixel_mode = "L"  # "1" for 1-bit panels (text is hinted differently)

    def __init__(self, rows: int, cols: int, font: str | None, cache_dir: str | None,
                 **tuning: float) -> None:
        super().__init__(rows, cols, **tuning)
        self.fonts: FontSet = load_fonts(font, Path(cache_dir) if cache_dir else None)
        self.charset = self.fonts.charset
        self._placed: list[Placed] = []

    def show(self, view: ScreenView) -> tuple[str, ...]:
        frame = render(view, self.rows, self.cols, self.charset)
        placed = layout(frame, *self.size, self.fonts, min_px=self.min_px, mode=self.pixel_mode)
        lines = shown_lines(frame, placed, self.cols, self.charset)
        self._wanted, self._placed = lines, placed
        self._wake.set()
        return lines

    def image(self) -> Image.Image:
        """The current frame as the device gets it (tests, and the writer)."""
        raise NotImplementedError


# ---------------------------------------------------------------- OLED


class LumaDevice(Protocol):
    """The part of a luma.core device the OLED driver uses."""

    mode: str
    size: tuple[int, int]

    def display(self, image: Image.Image) -> None: ...

    def cleanup(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OledPort:
    driver: str  # "ssd1306" | "sh1106"
    interface: str  # "i2c" | "spi"
    bus: int  # I2C bus or SPI port
    address: int
    spi_device: int
    gpio_dc: int
    gpio_rst: int
    rotate: int


#: What luma imports for devices an SSD1306 or SH1106 is not, given stand-ins by
#: ``open_luma`` (each is imported for real the first time it is used, so a luma that
#: uses them after all still works, only without the saving):
#: * cbor2, a 1.4 MB extension (0.8 MB of it resident): ``luma.core.bitmap_font`` reads
#:   the bitmap fonts of character OLEDs (ws0010) with it;
#: * ``multiprocessing.reduction`` and with it pickle (0.3 MB in the agent's peak): the
#:   PWM backlight of ``luma.core.interface.serial`` imports ``multiprocessing.Process``
#:   in a class body, and ``multiprocessing.context`` imports ``reduction``, which only
#:   starting a process uses.
UNUSED_BY_OLEDS = ("cbor2", "multiprocessing.reduction")


def open_luma(port: OledPort) -> LumaDevice:
    defer_import(*UNUSED_BY_OLEDS)  # lobbypay_hw/_deferred.py
    # lazy: luma is loaded only when an OLED is configured. luma ships no type hints:
    # these two imports are the project's only ignores for an untyped library.
    from luma.core.interface.serial import i2c, spi  # type: ignore[import-untyped]
    from luma.oled.device import sh1106, ssd1306  # type: ignore[import-untyped]

    serial: Any
    if port.interface == "i2c":
        serial = i2c(port=port.bus, address=port.address)
    else:
        serial = spi(port=port.bus, device=port.spi_device, gpio_DC=port.gpio_dc,
                     gpio_RST=port.gpio_rst)
    cls = ssd1306 if port.driver == "ssd1306" else sh1106
    device: LumaDevice = cls(serial, width=OLED_SIZE[0], height=OLED_SIZE[1],
                             rotate=port.rotate)
    return device


class OledDisplay(GraphicDisplay):
    size = OLED_SIZE
    pixel_mode = "1"

    def __init__(
        self,
        driver: str,
        *,
        interface: str = "i2c",
        bus: int = 1,
        address: int = 0x3C,
        spi_device: int = 0,
        gpio_dc: int = 24,
        gpio_rst: int = 25,
        rotate: int = 0,
        rows: int = 4,
        cols: int = 20,
        font: str | None = None,
        cache_dir: str | None = None,
        device_opener: Callable[[OledPort], LumaDevice] | None = None,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if driver not in ("ssd1306", "sh1106"):
            raise ValueError("OLED driver must be ssd1306 or sh1106")
        if interface not in ("i2c", "spi"):
            raise ValueError("display.interface must be i2c or spi")
        check_bus(bus)
        check_address(address)
        if rotate not in (0, 1, 2, 3):
            raise ValueError("display.rotate must be 0-3 (quarter turns)")
        self.driver = driver
        self.port = OledPort(driver, interface, bus, address, spi_device, gpio_dc, gpio_rst,
                             rotate)
        if rotate in (1, 3):
            self.size = (OLED_SIZE[1], OLED_SIZE[0])
        super().__init__(rows, cols, font, cache_dir, retry_base_s=retry_base_s,
                         retry_cap_s=retry_cap_s)
        self._opener = device_opener or open_luma
        self._device: LumaDevice | None = None

    def image(self) -> Image.Image:
        return draw(self._placed, self.fonts, self.size, "1")

    def _where(self) -> str:
        p = self.port
        if p.interface == "i2c":
            return f"i2c bus {p.bus}, 0x{p.address:02x}"
        return f"spi {p.bus}.{p.spi_device}"

    async def _session(self) -> None:
        device = self._device = await self._blocking(self._opener, self.port)
        self._up(self._where())

        async def update(sent: tuple[str, ...] | None, wanted: tuple[str, ...]) -> None:
            image = draw(self._placed, self.fonts, self.size, device.mode)
            await self._blocking(device.display, image)

        await self._write_frames(update)

    async def _close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            atexit.unregister(device.cleanup)  # luma registers one per device
            await self._blocking(device.cleanup)


# ---------------------------------------------------------------- framebuffer


@dataclass(frozen=True, slots=True)
class FbGeometry:
    width: int
    height: int
    bits_per_pixel: int
    stride: int  # bytes per row, with any padding


def _ints(path: Path) -> list[int]:
    return [int(v) for v in path.read_text().strip().split(",") if v.strip()]


def read_geometry(fb_path: str, sysfs: str = SYSFS_GRAPHICS) -> FbGeometry:
    """Geometry of ``/dev/fbN`` from ``<sysfs>/fbN/`` (raises OSError if it is missing)."""
    name = Path(os.path.realpath(fb_path)).name
    base = Path(sysfs, name)
    width, height = _ints(base / "virtual_size")[:2]
    modes = base / "modes"  # the visible mode ("U:800x480p-0") when double-buffered
    if modes.is_file():
        first = modes.read_text().split("\n", 1)[0]
        if ":" in first and "x" in first:
            w, _, rest = first.split(":", 1)[1].partition("x")
            digits = "".join(c for c in rest if c.isdigit() or c == "p").split("p")[0]
            if w.isdigit() and digits.isdigit():
                width, height = min(width, int(w)), min(height, int(digits))
    bpp = _ints(base / "bits_per_pixel")[0]
    stride_file = base / "stride"
    stride = _ints(stride_file)[0] if stride_file.is_file() else width * bpp // 8
    if bpp not in (16, 24, 32):
        raise ValueError(f"framebuffer {name}: {bpp} bits per pixel is not supported")
    if width <= 0 or height <= 0 or stride < width * bpp // 8:
        raise ValueError(f"framebuffer {name}: bad geometry")
    return FbGeometry(width, height, bpp, stride)


def fb_bytes(image: Image.Image, bits_per_pixel: int) -> bytes:
    """An RGB image in the framebuffer's pixel format, row after row, no padding."""
    if bits_per_pixel == 32:
        return image.tobytes("raw", "BGRX")
    if bits_per_pixel == 24:
        return image.tobytes("raw", "BGR")
    # RGB565 little-endian: low byte ggg bbbbb, high byte rrrrr ggg (C-speed channel ops)
    r, g, b = image.split()
    low = ImageChops.add(g.point(lambda v: (v >> 2 & 7) << 5), b.point(lambda v: v >> 3))
    high = ImageChops.add(r.point(lambda v: v >> 3 << 3), g.point(lambda v: v >> 5))
    return Image.merge("LA", (low, high)).tobytes()


def write_image(fd: int, bands: Iterable[tuple[int, Image.Image]], geo: FbGeometry) -> None:
    """Write RGB bands of rows (top row, image) to the framebuffer in its pixel format."""
    row_bytes = geo.width * geo.bits_per_pixel // 8
    for y0, band in bands:
        data = fb_bytes(band, geo.bits_per_pixel)
        if geo.stride == row_bytes:
            os.pwrite(fd, data, y0 * geo.stride)
            continue
        for i in range(band.height):
            os.pwrite(fd, data[i * row_bytes:(i + 1) * row_bytes], (y0 + i) * geo.stride)


def release_free_memory() -> None:
    """Give the pages the last frame freed back to the system (glibc's ``malloc_trim``;
    elsewhere nothing). The frame is drawn in the display's worker thread, whose malloc
    arena would otherwise keep its high-water mark: about 1 MB for an 800x480 screen."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


# High contrast for a patient a metre or two away: white on black, the main line (the
# amount due, or the result) in yellow.
FB_BACKGROUND = (0, 0, 0)
FB_AMOUNT = (255, 214, 0)


class FramebufferDisplay(GraphicDisplay):
    driver = "framebuffer"
    min_px = 16

    def __init__(
        self,
        *,
        path: str = "/dev/fb0",
        rows: int = 4,
        cols: int = 20,
        font: str | None = None,
        sysfs: str | None = None,
        cache_dir: str | None = None,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if not path:
            raise ValueError("display.path is required for the framebuffer display")
        self.path = path
        self.sysfs = sysfs or SYSFS_GRAPHICS
        self.size = (800, 480)  # until the real geometry is read at open
        super().__init__(rows, cols, font, cache_dir, retry_base_s=retry_base_s,
                         retry_cap_s=retry_cap_s)
        self._fd: int | None = None
        self.geometry: FbGeometry | None = None

    def image(self) -> Image.Image:
        return draw_patient_view(self._placed, self.fonts, self.size)

    async def _session(self) -> None:
        geo = await self._blocking(read_geometry, self.path, self.sysfs)
        fd = self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        if (geo.width, geo.height) != self.size:
            self.size = (geo.width, geo.height)
            self.show(ScreenView(tuple(line.strip() for line in self._wanted)))
        self.geometry = geo
        self._up(f"{self.path} {geo.width}x{geo.height} {geo.bits_per_pixel} bpp")

        async def update(sent: tuple[str, ...] | None, wanted: tuple[str, ...]) -> None:
            bands = patient_view_bands(self._placed, self.fonts, self.size)
            await self._blocking(write_image, fd, bands, geo)
            await self._blocking(release_free_memory)

        await self._write_frames(update)

    async def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def patient_view_bands(
    placed: Sequence[Placed], fonts: FontSet, size: tuple[int, int]
) -> Iterator[tuple[int, Image.Image]]:
    """The full-screen view in bands of ``BAND_ROWS`` rows: white text on black, the main
    (bold) line yellow. Each line is drawn once, as 8-bit coverage the size of its ink
    box; each band is put together from the lines it crosses and coloured on its own, so
    no image the size of the screen is ever made (a 1920x1080 RGB frame is 8 MB, its
    coverage 2 MB)."""
    width, height = size
    lines = [(p, draw([replace(p, box=(0, 0, p.box[2] - p.box[0], p.box[3] - p.box[1]))],
                      fonts, (p.box[2] - p.box[0], p.box[3] - p.box[1]), "L", 255, 0))
             for p in placed if p.box[2] > p.box[0] and p.box[3] > p.box[1]]
    for y0 in range(0, height, BAND_ROWS):
        y1 = min(height, y0 + BAND_ROWS)
        band = Image.new("L", (width, y1 - y0), 0)
        for p, cover in lines:
            if p.box[1] < y1 and p.box[3] > y0:
                band.paste(cover, (p.box[0], p.box[1] - y0))
        rgb = Image.merge("RGB", (band, band, band))
        for p, _ in lines:
            if not p.bold:
                continue
            x0, top, x1, bottom = p.box
            top, bottom = max(top, y0), min(bottom, y1)
            if top >= bottom:
                continue
            ink = band.crop((x0, top - y0, x1, bottom - y0))
            yellow = Image.merge("RGB", (
                ink.point(lambda v: v * FB_AMOUNT[0] // 255),
                ink.point(lambda v: v * FB_AMOUNT[1] // 255),
                ink.point(lambda v: v * FB_AMOUNT[2] // 255),
            ))
            rgb.paste(yellow, (x0, top - y0))
        yield y0, rgb


def draw_patient_view(
    placed: Sequence[Placed], fonts: FontSet, size: tuple[int, int]
) -> Image.Image:
    """The whole view as one RGB image (what the framebuffer shows; for tests)."""
    image = Image.new("RGB", size, FB_BACKGROUND)
    for y0, band in patient_view_bands(placed, fonts, size):
        image.paste(band, (0, y0))
    return image
