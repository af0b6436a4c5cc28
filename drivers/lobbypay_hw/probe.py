"""One-shot checks of the I2C and framebuffer displays for ``lobbypay doctor``.

``probe_display(driver, path, options)`` says whether the configured display's bus is
there and the device answers, with a fix when not. I2C devices are probed with an SMBus
quick write (the address alone, no data: what ``i2cdetect`` does), which neither the
PCF8574 nor the OLED controllers act on. Imports smbus2 and Pillow only when asked.
"""

from __future__ import annotations

import errno
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lobbypay_hw._common import describe


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False  # works, but not as well as it could


class QuickBus(Protocol):
    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None: ...

    def close(self) -> None: ...


def _open_smbus(bus: int) -> QuickBus:
    from smbus2 import SMBus

    return SMBus(bus)


ENABLE_I2C = "enable I2C: sudo raspi-config nonint do_i2c 0 (or dtparam=i2c_arm=on), reboot"


def probe_i2c(bus: int, address: int, opener: Callable[[int], QuickBus] | None = None) -> Probe:
    dev = f"/dev/i2c-{bus}"
    try:
        handle = (opener or _open_smbus)(bus)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return Probe(False, f"I2C bus {bus} absent ({dev} does not exist)", ENABLE_I2C)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return Probe(False, f"{dev} is not accessible by this user",
                         "install config/udev/70-lobbypay.rules (group i2c) and run doctor "
                         "as the lobbypay user")
        return Probe(False, f"{dev}: {describe(exc)}", ENABLE_I2C)
    try:
        handle.write_quick(address)
    except OSError as exc:
        return Probe(False, f"nothing answers at 0x{address:02x} on {dev} ({describe(exc)})",
                     f"check the wiring and display.address; i2cdetect -y {bus} lists the "
                     "addresses that answer (a PCF8574 backpack is 0x27 or 0x3F, an OLED "
                     "0x3C or 0x3D)")
    finally:
        handle.close()
    return Probe(True, f"device answers at 0x{address:02x} on {dev}")


def probe_framebuffer(path: str, sysfs: str = "/sys/class/graphics") -> Probe:
    from lobbypay_hw.display_graphic import read_geometry

    if not os.path.exists(path):
        return Probe(False, f"{path} does not exist",
                     "connect the screen before boot; ls /dev/fb*; check display.path")
    if not os.access(path, os.W_OK):
        return Probe(False, f"{path} is not writable by this user",
                     "install config/udev/70-lobbypay.rules (group video) and run doctor as "
                     "the lobbypay user")
    try:
        geo = read_geometry(path, sysfs)
    except (OSError, ValueError) as exc:
        detail = describe(exc) if isinstance(exc, OSError) else str(exc)
        return Probe(False, f"{path}: no usable geometry in {sysfs} ({detail})",
                     "use a 16, 24 or 32 bits-per-pixel mode (fbset -depth 32)")
    return Probe(True, f"{path} {geo.width}x{geo.height}, {geo.bits_per_pixel} bpp")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def probe_display(
    driver: str, path: str | None, options: Mapping[str, Any], *,
    opener: Callable[[int], QuickBus] | None = None, sysfs: str = "/sys/class/graphics",
) -> Probe | None:
    """The check for ``driver``, or None for displays this module does not probe."""
    if driver in ("ssd1306", "sh1106", "framebuffer"):
        extra, need = ("oled", "luma.oled") if driver != "framebuffer" else ("framebuffer", "PIL")
        if _missing(need):
            return Probe(False, f"{need} is not installed (the {driver} display needs it)",
                         f"install lobbypay[{extra}] (scripts/install does it when the config "
                         "names this display)")
    if driver in ("ssd1306", "sh1106", "framebuffer") and "font" not in options:
        found = _device_probe(driver, path, options, opener, sysfs)
        if found is not None and found.ok and not _dejavu():
            return Probe(True, found.detail + "; no DejaVu font: accented letters are drawn "
                         "without their accents", "sudo apt install fonts-dejavu-core",
                         warning=True)
        return found
    return _device_probe(driver, path, options, opener, sysfs)


def _dejavu() -> bool:
    from lobbypay_hw.graphic import FONT_DIRS, REGULAR

    return any(os.path.isfile(os.path.join(d, REGULAR)) for d in FONT_DIRS)


def _device_probe(
    driver: str, path: str | None, options: Mapping[str, Any],
    opener: Callable[[int], QuickBus] | None, sysfs: str,
) -> Probe | None:
    if driver == "hd44780-i2c":
        return probe_i2c(options.get("bus", 1), options.get("address", 0x27), opener)
    if driver in ("ssd1306", "sh1106"):
        if options.get("interface", "i2c") == "spi":
            spidev = f"/dev/spidev{options.get('bus', 0)}.{options.get('spi_device', 0)}"
            if not os.path.exists(spidev):
                return Probe(False, f"{spidev} does not exist",
                             "enable SPI: sudo raspi-config nonint do_spi 0, reboot")
            return Probe(True, f"{spidev} present (SPI devices cannot be asked if they are "
                               "there)")
        return probe_i2c(options.get("bus", 1), options.get("address", 0x3C), opener)
    if driver == "framebuffer":
        return probe_framebuffer(path or "/dev/fb0", sysfs)
    return None
