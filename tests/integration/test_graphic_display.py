"""The graphic displays: SSD1306/SH1106 through luma.core's dummy device, and the
framebuffer on a regular file with a fake sysfs geometry. Every test writes the PNG of
what the display shows under its tmp dir (``pytest --basetemp DIR`` keeps them)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest
from lobbypay_hw import DISPLAYS
from lobbypay_hw.api import ScreenView
from lobbypay_hw.display_graphic import FramebufferDisplay, OledDisplay, OledPort
from lobbypay_hw.graphic import load_fonts
from luma.core.device import dummy
from PIL import Image

from tests.fakes.aio import running, until
from tests.fakes.screens import assert_shows, boxes_apart, fb_image, ink

FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.05}
PENDING_ES = ScreenView(("Total $65.00", "Deslice su tarjeta"))
SPANISH = [
    ("Total $65.00", "Deslice su tarjeta"),
    ("Total $65.00", "¿Otra tarjeta?"),
    ("Total $65.00", "Tarjeta vencida"),
    ("Aprobado", "Visa ****1111"),
    ("Cancelado", "Consulte en recepción"),
]


class DummyOpener:
    """Opens luma.core's dummy device; ``failures`` errors first (as luma raises them)."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = failures or []
        self.device: dummy | None = None
        self.ports: list[OledPort] = []

    def __call__(self, port: OledPort) -> dummy:
        self.ports.append(port)
        if self.failures:
            raise self.failures.pop(0)
        self.device = dummy(width=128, height=64, mode="1")
        return self.device

    def image(self) -> Image.Image | None:
        return None if self.device is None else self.device.image


def oled(opener: DummyOpener, driver: str = "ssd1306", **kw: object) -> OledDisplay:
    d = DISPLAYS[driver](path=None, baudrate=9600, device_opener=opener, **{**FAST, **kw})
    assert isinstance(d, OledDisplay)
    return d


# ---------------------------------------------------------------- OLED


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
async def test_oled_draws_the_mirror_with_the_amount_large(driver: str, tmp_path: Path) -> None:
    opener = DummyOpener()
    d = oled(opener, driver)
    async with running(d):
        await until(lambda: d.connected)
        # the engine's four-line pending screen: the amount alone on its line
        shown = d.show(ScreenView(("Total a pagar", "$65.00", "", "Deslice su tarjeta")))
        await until(lambda: opener.image() is not None and opener.image() == d.image())
        img = opener.image()
        assert img is not None and img.size == (128, 64) and img.mode == "1"
        img.save(tmp_path / f"{driver}-pending.png")
        assert [line.strip() for line in shown] == ["Total a pagar", "$65.00", "",
                                                    "Deslice su tarjeta"]
        assert_shows(img, shown, d)
        label, amount, prompt = d._placed
        assert amount.bold and amount.size > 1.5 * max(label.size, prompt.size)
        assert amount.box[3] - amount.box[1] > 1.5 * (prompt.box[3] - prompt.box[1])
        assert boxes_apart(d._placed)
        # the two-line version: the amount line is still the bold, bigger one
        shown = d.show(PENDING_ES)
        await until(lambda: opener.image() == d.image())
        assert_shows(opener.image(), shown, d)  # type: ignore[arg-type]
        amount, prompt = d._placed
        assert amount.bold and amount.size > prompt.size
    assert opener.ports[0] == OledPort(driver, "i2c", 1, 0x3C, 0, 24, 25, 0)


@pytest.mark.parametrize("lines", SPANISH)
async def test_oled_spanish_lines_keep_their_letters(lines: tuple[str, str],
                                                     tmp_path: Path) -> None:
    opener = DummyOpener()
    d = oled(opener, rows=2, cols=24)
    async with running(d):
        await until(lambda: d.connected)
        shown = d.show(ScreenView(lines))
        await until(lambda: opener.image() == d.image())
        img = opener.image()
        assert img is not None
        img.save(tmp_path / "oled.png")
        assert [s.strip() for s in shown if s.strip()] == list(lines)
        assert_shows(img, shown, d)


async def test_oled_accent_is_drawn_not_folded() -> None:
    # the check can fail: the same line without its accent is a different picture
    opener = DummyOpener()
    d = oled(opener)
    async with running(d):
        await until(lambda: d.connected)
        shown = d.show(ScreenView(("Cancelado", "Consulte en recepción")))
        await until(lambda: opener.image() == d.image())
        img = opener.image()
        assert img is not None
        folded = tuple(s.replace("ó", "o") for s in shown)
        with pytest.raises(AssertionError):
            assert_shows(img, folded, d)


async def test_oled_long_line_is_cut_and_the_mirror_says_so() -> None:
    opener = DummyOpener()
    d = oled(opener, rows=2, cols=40)
    shown = d.show(ScreenView(("WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW", "ok")))
    assert 0 < len(shown[0].strip()) < 40
    async with running(d):
        await until(lambda: opener.image() is not None and opener.image() == d.image())
        img = opener.image()
        assert img is not None
        assert_shows(img, shown, d)


async def test_oled_not_found_then_found() -> None:
    from luma.core.error import DeviceNotFoundError

    opener = DummyOpener([DeviceNotFoundError("I2C device not found on address: 0x3C"),
                          OSError(errno.EREMOTEIO, "Remote I/O error")])
    d = oled(opener)
    async with running(d) as task:
        shown = d.show(ScreenView(("Aprobado",)))
        await until(lambda: len(opener.ports) >= 2)
        assert d.detail.startswith("eremoteio") and not task.done()
        await until(lambda: d.connected and opener.image() == d.image())
        assert shown[0].strip() == "Aprobado"


async def test_oled_real_luma_on_a_missing_bus_is_a_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = DISPLAYS["ssd1306"](bus=250, **FAST)  # real luma.core i2c: /dev/i2c-250 is absent
    async with running(d) as task:
        await until(lambda: bool(d.detail))
        await asyncio.sleep(0.1)
        assert not d.connected and not task.done()
    assert "display unavailable" in caplog.text


def test_oled_config_errors() -> None:
    with pytest.raises(ValueError, match="display.interface"):
        DISPLAYS["ssd1306"](interface="usb")
    with pytest.raises(ValueError, match="display.address"):
        DISPLAYS["sh1106"](address=0x99)
    with pytest.raises(ValueError, match="display.font"):
        DISPLAYS["ssd1306"](font="/nonexistent/font.ttf")


def test_without_dejavu_letters_fold_and_the_mirror_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lobbypay_hw import graphic

    monkeypatch.setattr(graphic, "FONT_DIRS", ("/nonexistent",))
    fonts = load_fonts()
    assert fonts.regular is None and "ó" not in fonts.charset and "a" in fonts.charset
    d = DISPLAYS["ssd1306"](device_opener=DummyOpener(), rows=2, cols=24)
    shown = d.show(ScreenView(("¿Otra tarjeta?", "Consulte en recepción")))
    assert [s.strip() for s in shown][:2] == ["Otra tarjeta?", "Consulte en recepcion"]
    img = graphic.draw(d._placed, d.fonts, (128, 64))  # type: ignore[attr-defined]
    assert_shows(img, shown, d)


# ---------------------------------------------------------------- framebuffer


def fake_fb(tmp_path: Path, width: int = 800, height: int = 480, bpp: int = 32,
            pad: int = 64, create: bool = True) -> tuple[Path, Path, int]:
    stride = width * bpp // 8 + pad
    sysfs = tmp_path / "sys" / "class" / "graphics"
    (sysfs / "fb0").mkdir(parents=True)
    (sysfs / "fb0" / "virtual_size").write_text(f"{width},{height * 2}\n")  # double-buffered
    (sysfs / "fb0" / "modes").write_text(f"U:{width}x{height}p-0\n")
    (sysfs / "fb0" / "bits_per_pixel").write_text(f"{bpp}\n")
    (sysfs / "fb0" / "stride").write_text(f"{stride}\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    if create:
        (dev / "fb0").write_bytes(b"\x00" * stride * height * 2)
    return dev / "fb0", sysfs, stride


def framebuffer(path: Path, sysfs: Path, **kw: object) -> FramebufferDisplay:
    d = DISPLAYS["framebuffer"](path=str(path), sysfs=str(sysfs), **{**FAST, **kw})
    assert isinstance(d, FramebufferDisplay)
    return d


@pytest.mark.parametrize("bpp", [32, 16, 24])
async def test_framebuffer_full_screen_patient_view(bpp: int, tmp_path: Path) -> None:
    w, h = 800, 480
    path, sysfs, stride = fake_fb(tmp_path, w, h, bpp)
    d = framebuffer(path, sysfs)
    view = ScreenView(("Total a pagar", "$65.00", "", "Deslice su tarjeta"))
    async with running(d):
        await until(lambda: d.connected)
        assert d.geometry is not None and (d.geometry.width, d.geometry.height) == (w, h)
        shown = d.show(view)

        def on_glass() -> Image.Image:
            return fb_image(path, w, h, bpp, stride)

        await until(lambda: ink(on_glass()).getbbox() is not None
                    and _close(on_glass(), d.image(), bpp))
        img = on_glass()
        img.save(tmp_path / f"fb-{bpp}.png")
        assert_shows(img, shown, d)
        total, amount, prompt = d._placed
        assert amount.bold and amount.size > 2 * prompt.size * 0.9
        assert amount.box[3] - amount.box[1] > h // 4  # large type: over a quarter of the height
        # high contrast: black background, white text, the amount in yellow
        assert img.getpixel((2, 2)) == (0, 0, 0)
        colours = img.crop(amount.box).getcolors(1 << 16) or []
        assert max(colours)[1] in ((0, 0, 0), _quant((255, 214, 0), bpp))
        assert _quant((255, 214, 0), bpp) in [c for _, c in colours]
        prompt_colours = img.crop(prompt.box).getcolors(1 << 16) or []
        assert _quant((255, 255, 255), bpp) in [c for _, c in prompt_colours]
        # the second half of the double buffer and the stride padding are not touched
        raw = path.read_bytes()
        assert raw[stride * h:] == b"\x00" * (stride * h)
        row = w * bpp // 8
        assert all(raw[y * stride + row:(y + 1) * stride] == b"\x00" * (stride - row)
                   for y in range(h))


def _quant(rgb: tuple[int, int, int], bpp: int) -> tuple[int, int, int]:
    if bpp != 16:
        return rgb
    r, g, b = rgb
    return (r >> 3 << 3, g >> 2 << 2, b >> 3 << 3)


def _close(a: Image.Image, b: Image.Image, bpp: int) -> bool:
    """Same picture (at 16 bpp, within RGB565's quantisation)."""
    if bpp != 16:
        return a.tobytes() == b.tobytes()
    return all(0 <= y - x < 8 for x, y in zip(a.tobytes(), b.tobytes(), strict=True))


async def test_framebuffer_missing_then_present(tmp_path: Path) -> None:
    path, sysfs, _ = fake_fb(tmp_path, 320, 240, 16, pad=0, create=False)
    d = framebuffer(path, sysfs)
    async with running(d) as task:
        shown = d.show(ScreenView(("Aprobado", "Gracias")))
        await until(lambda: d.detail.startswith("enoent"))
        assert not d.connected and not task.done()
        path.write_bytes(b"\x00" * 320 * 240 * 2)
        await until(lambda: d.connected)
        await until(lambda: ink(fb_image(path, 320, 240, 16, 640)).getbbox() is not None)
        img = fb_image(path, 320, 240, 16, 640)
        img.save(tmp_path / "fb-small.png")
        assert_shows(img, d.show(ScreenView(("Aprobado", "Gracias"))), d)
        assert [s.strip() for s in shown if s.strip()] == ["Aprobado", "Gracias"]


def test_framebuffer_bad_geometry_is_an_error(tmp_path: Path) -> None:
    from lobbypay_hw.display_graphic import read_geometry

    path, sysfs, _ = fake_fb(tmp_path, 800, 480, 8)
    with pytest.raises(ValueError, match="bits per pixel"):
        read_geometry(str(path), str(sysfs))
    with pytest.raises(OSError):
        read_geometry(str(tmp_path / "fb7"), str(sysfs))


def test_a_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "lobbypay_hw.display_graphic", None)  # not installed
    for driver, extra in (("ssd1306", "oled"), ("framebuffer", "framebuffer")):
        with pytest.raises(ValueError, match=rf"lobbypay\[{extra}\]"):
            DISPLAYS[driver]()


@pytest.mark.parametrize("driver", ["ssd1306", "framebuffer"])
@pytest.mark.parametrize("text", ["", " ", "\x00\x1b[2J", "🙂" * 50, "W" * 200, "\u202e$65.00",
                                  "a\nb\tc", "ÿ" * 30])
def test_odd_text_never_raises_and_stays_in_the_frame(driver: str, text: str,
                                                      tmp_path: Path) -> None:
    d = DISPLAYS[driver](device_opener=DummyOpener()) if driver == "ssd1306" else \
        DISPLAYS[driver](path=str(tmp_path / "fb0"))
    shown = d.show(ScreenView((text, text[:5], "Aprobado")))
    assert len(shown) == d.rows and all(len(line) == d.cols for line in shown)
    assert_shows(d.image(), shown, d)  # type: ignore[attr-defined]


@pytest.mark.parametrize("driver", ["ssd1306", "sh1106"])
async def test_luma_drives_the_controller_model(driver: str, tmp_path: Path) -> None:
    """luma.oled's real device class, on a model of the controller's RAM: the panel shows
    the driver's image (SH1106: from RAM column 2, as that chip's panels are wired)."""
    from luma.oled.device import sh1106, ssd1306

    from tests.fakes.oled import OledBus, OledModel

    model = OledModel(driver)
    cls = ssd1306 if driver == "ssd1306" else sh1106

    def opener(port: OledPort) -> object:
        return cls(OledBus(model), width=128, height=64, rotate=port.rotate)

    d = DISPLAYS[driver](device_opener=opener, **FAST)
    async with running(d):
        await until(lambda: d.connected)
        shown = d.show(ScreenView(("Total a pagar", "$65.00", "", "Deslice su tarjeta")))
        await until(lambda: model.image().tobytes() == d.image().tobytes())
        glass = model.image()
        glass.save(tmp_path / f"{driver}-ram.png")
        assert_shows(glass, shown, d)
        assert model.on
