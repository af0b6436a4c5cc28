"""What each display loads into the agent (docs/PERFORMANCE.md, "Peak RSS with each
display"): Pillow and luma only when a graphic display is configured, smbus2 only when an
I2C one runs, never cbor2 or pickle (luma imports them for devices an SSD1306 is not), and
never fontTools (it cuts the fonts down in a child process). Each case runs
in a fresh interpreter: the agent's own imports, the display built as the agent builds it,
its writer run for a moment (an I2C bus that does not exist here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("PIL", "luma", "cbor2", "smbus2", "fontTools", "pickle", "_pickle",
           "lobbypay_hw.display_graphic")

PROBE = """
import asyncio, json, sys
import lobbypay.cli, lobbypay.app
from lobbypay_hw import DISPLAYS
from lobbypay_hw.api import ScreenView

name, kwargs = sys.argv[1], json.loads(sys.argv[2])
display = DISPLAYS[name](**kwargs)
display.show(ScreenView(("Total $65.00", "Deslice su tarjeta")))

async def run_a_moment() -> None:
    task = asyncio.create_task(display.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

asyncio.run(run_a_moment())
from lobbypay_hw._deferred import deferred
print(json.dumps(sorted(deferred(STAND_INS))))
print(json.dumps(sorted({m for m in sys.modules if m.split(".")[0] in WATCHED
                         or m in WATCHED})))
"""
# what the graphic displays give stand-ins (lobbypay_hw/_deferred.py)
STAND_INS = ("PIL.ExifTags", "PIL.TiffTags", "cbor2", "multiprocessing.reduction")


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with the agent and the drivers on its path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "agent"),
                                                       str(ROOT / "drivers")])}
    return subprocess.run(  # noqa: S603 - our interpreter and code
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def run_probe(name: str, **kwargs: object) -> tuple[set[str], set[str]]:
    """(the watched modules loaded, the stand-ins still standing in)"""
    proc = run_python(f"WATCHED = {WATCHED!r}\nSTAND_INS = {STAND_INS!r}\n" + PROBE,
                      name, json.dumps(kwargs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = json.loads(proc.stdout.splitlines()[-1])
    standing = set(json.loads(proc.stdout.splitlines()[-2]))
    # a stand-in (lobbypay_hw/_deferred.py) is not a module loaded: only the real one counts
    return {m.split(".")[0] if not m.startswith("lobbypay_hw") else m
            for m in names if m not in standing}, standing


def loaded(name: str, **kwargs: object) -> set[str]:
    return run_probe(name, **kwargs)[0]


@pytest.mark.parametrize(("name", "kwargs"), [
    ("none", {}),
    ("console", {}),
    ("serlcd", {"path": "/nonexistent/tty"}),
    ("matrixorbital", {"path": "/nonexistent/tty"}),
])
def test_character_displays_load_no_graphics_and_no_i2c(name: str,
                                                        kwargs: dict[str, object]) -> None:
    assert loaded(name, **kwargs) == set()


def test_the_i2c_lcd_loads_smbus2_only() -> None:
    assert loaded("hd44780-i2c", bus=250) == {"smbus2"}


@pytest.mark.parametrize("name", ["ssd1306", "sh1106"])
def test_an_oled_loads_pillow_and_luma_but_not_cbor2(name: str) -> None:
    pytest.importorskip("luma.oled")
    assert loaded(name, bus=250) == {"PIL", "luma", "smbus2", "lobbypay_hw.display_graphic"}


def test_the_framebuffer_loads_pillow_only(tmp_path: Path) -> None:
    assert loaded("framebuffer", path=str(tmp_path / "fb0")) == {
        "PIL", "lobbypay_hw.display_graphic"}


@pytest.mark.parametrize(("name", "kwargs", "standing"), [
    ("ssd1306", {"bus": 250}, set(STAND_INS)),
    ("framebuffer", {"path": "/nonexistent/fb0"}, {"PIL.ExifTags", "PIL.TiffTags"}),
])
def test_what_the_displays_never_use_stays_a_stand_in(
        name: str, kwargs: dict[str, object], standing: set[str]) -> None:
    """After screens are laid out and drawn: not one of them was needed."""
    if name == "ssd1306":
        pytest.importorskip("luma.oled")
    assert run_probe(name, **kwargs)[1] == standing


def test_multiprocessing_still_starts_processes_after_luma_is_loaded() -> None:
    """The stand-in for multiprocessing.reduction loads the real module when a process
    is started (with pickling: the spawn start method pickles the process object)."""
    pytest.importorskip("luma.oled")
    code = ("import sys; from lobbypay_hw._deferred import defer_import\n"
            "from lobbypay_hw.display_graphic import UNUSED_BY_OLEDS\n"
            "defer_import(*UNUSED_BY_OLEDS)\n"
            "import luma.oled.device, multiprocessing\n"
            "assert 'pickle' not in sys.modules\n"
            "if __name__ == '__main__':\n"
            "    p = multiprocessing.get_context('spawn').Process(target=print, args=('x',))\n"
            "    p.start(); p.join(60)\n"
            "    assert p.exitcode == 0 and 'pickle' in sys.modules\n"
            "    print('ok')\n")
    proc = run_python(code, timeout=120)
    assert proc.stdout.split() == ["x", "ok"], proc.stderr[-2000:]


def test_luma_still_reads_its_bitmap_fonts_when_asked() -> None:
    """The stand-in for cbor2 loads the real module on first use."""
    pytest.importorskip("luma.oled")
    code = ("import sys; from lobbypay_hw._deferred import defer_import; "
            "defer_import('cbor2'); import luma.core.bitmap_font as bf; "
            "assert 'cbor2._cbor2' not in sys.modules; "
            "assert bf.cbor2.loads(bf.cbor2.dumps({'a': [1]})) == {'a': [1]}; "
            "assert bf.cbor2.loads is sys.modules['cbor2'].loads; print('ok')")
    proc = run_python(code)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
