"""``lobbypay doctor`` on the I2C and framebuffer displays: bus present, device answering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from lobbypay import cli
from lobbypay.cli import doctor
from lobbypay.core.config import parse_config
from lobbypay_hw.probe import probe_display, probe_framebuffer, probe_i2c

from tests.fakes.i2c import Backpack

BASE: dict[str, Any] = {
    "terminal": {"id": "t", "department_id": "1", "state_dir": "/tmp/unused"},
    "athena": {"base_url": "http://127.0.0.1:1", "practice_id": "1", "client_id": "c",
               "client_secret_file": "/x"},
}


def test_i2c_device_answering_or_not() -> None:
    bp = Backpack(address=0x27)
    ok = probe_i2c(1, 0x27, bp.opener)
    assert ok.ok and "0x27" in ok.detail and bp.bus.closed
    wrong = probe_i2c(1, 0x3F, bp.opener)
    assert not wrong.ok and "nothing answers at 0x3f" in wrong.detail
    assert "eremoteio" in wrong.detail and "i2cdetect -y 1" in wrong.hint
    bp.missing_bus = True
    absent = probe_i2c(1, 0x27, bp.opener)
    assert not absent.ok and "/dev/i2c-1 does not exist" in absent.detail
    assert "raspi-config" in absent.hint


@pytest.mark.skipif(os.path.exists("/dev/i2c-250"), reason="this machine has that bus")
def test_doctor_with_the_real_smbus2_on_a_missing_bus() -> None:
    for driver in ("hd44780-i2c", "ssd1306"):
        cfg = parse_config({**BASE, "display": {"driver": driver, "bus": 250}})
        check = doctor.check_display(cfg)
        assert check.result == "FAIL" and "I2C bus 250 absent" in check.detail, check
        assert check.hint


def test_oled_over_spi_needs_the_spidev_node() -> None:
    probe = probe_display("sh1106", None, {"interface": "spi", "bus": 9, "spi_device": 9})
    assert probe is not None and not probe.ok and "/dev/spidev9.9" in probe.detail


def test_framebuffer_geometry(tmp_path: Path) -> None:
    fb = tmp_path / "fb0"
    sysfs = tmp_path / "graphics"
    assert not probe_framebuffer(str(fb), str(sysfs)).ok  # no such device
    fb.write_bytes(bytes(16))
    bad = probe_framebuffer(str(fb), str(sysfs))
    assert not bad.ok and "geometry" in bad.detail
    (sysfs / "fb0").mkdir(parents=True)
    (sysfs / "fb0" / "virtual_size").write_text("1024,600\n")
    (sysfs / "fb0" / "bits_per_pixel").write_text("32\n")
    good = probe_framebuffer(str(fb), str(sysfs))
    assert good.ok and "1024x600, 32 bpp" in good.detail


def test_doctor_framebuffer_missing_device(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "display": {"driver": "framebuffer",
                                            "path": str(tmp_path / "fb9")}})
    check = doctor.check_display(cfg)
    assert check.result == "FAIL" and "does not exist" in check.detail


def test_serial_displays_keep_their_device_check() -> None:
    cfg = parse_config({**BASE, "display": {"driver": "serlcd", "path": "/dev/null"}})
    assert doctor.check_display(cfg).result == "PASS"
    assert probe_display("serlcd", "/dev/null", {}) is None


def test_graphic_display_without_dejavu_is_a_warning(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lobbypay_hw import graphic

    fb, sysfs = tmp_path / "fb0", tmp_path / "graphics"
    fb.write_bytes(bytes(16))
    (sysfs / "fb0").mkdir(parents=True)
    (sysfs / "fb0" / "virtual_size").write_text("800,480\n")
    (sysfs / "fb0" / "bits_per_pixel").write_text("16\n")
    assert probe_display("framebuffer", str(fb), {}, sysfs=str(sysfs)) == probe_framebuffer(
        str(fb), str(sysfs))  # DejaVu is here: a plain PASS
    monkeypatch.setattr(graphic, "FONT_DIRS", ("/nonexistent",))
    probe = probe_display("framebuffer", str(fb), {}, sysfs=str(sysfs))
    assert probe is not None and probe.ok and probe.warning
    assert "fonts-dejavu-core" in probe.hint
    font = probe_display("framebuffer", str(fb), {"font": "/x.ttf"}, sysfs=str(sysfs))
    assert font is not None and not font.warning  # a configured font: no DejaVu needed


def test_run_with_a_missing_font_exits_2_naming_the_key(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    cfg = tmp_path / "lobbypay.toml"
    cfg.write_text(f"""
[terminal]
id = "t-font"
department_id = "1"
state_dir = "{tmp_path / 'state'}"
[athena]
base_url = "http://127.0.0.1:9"
practice_id = "1"
client_id = "c"
client_secret_file = "{secret}"
[mqtt]
host = "127.0.0.1"
port = 9
[reader]
driver = "sim"
path = "{tmp_path / 'r.sock'}"
[display]
driver = "ssd1306"
font = "{tmp_path / 'missing.ttf'}"
""")
    assert cli.main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "display.font" in err and "missing.ttf" in err and "Traceback" not in err
