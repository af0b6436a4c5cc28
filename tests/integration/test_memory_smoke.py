"""scripts/memory end to end with a few commands (mosquitto, the simulator and the real
agent as processes, one display without Pillow and one graphic display): it finishes,
its JSON holds start, after-charges and end figures for each display, and its verdict
follows the target it was given. Checks the harness, not the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.mosquitto import MOSQUITTO, mosquitto_available

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "memory.json"
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "scripts" / "memorylib.py"), "--charges", "2",
         "--commands", "40", "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_memory_run_reports_each_display(tmp_path: Path) -> None:
    if not mosquitto_available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"mosquitto ({MOSQUITTO}) is required under CI=true")
        pytest.skip("mosquitto not installed")
    pytest.importorskip("luma.oled")
    proc, data = _run(tmp_path, "--display", "none", "--display", "ssd1306")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_display = {r["display"]: r for r in data["results"]}
    assert set(by_display) == {"none", "ssd1306"}
    for r in by_display.values():
        start, end = r["start_kb"], r["end_kb"]
        assert 10_000 < start["VmRSS"] <= end["VmHWM"]
        assert r["peak_mb"] == round(end["VmHWM"] / 1024, 1)
    # Pillow, luma and the fonts are loaded only for the graphic display
    assert by_display["ssd1306"]["peak_mb"] > by_display["none"]["peak_mb"]
    assert "PASS" in proc.stdout


def test_a_target_below_the_peak_is_a_miss(tmp_path: Path) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed")
    proc, data = _run(tmp_path, "--display", "none", "--target-mb", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISS" in proc.stdout
