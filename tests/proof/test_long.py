"""The long runs, as tests (LOBBYPAY_SLOW=1): the same code as `scripts/prove`."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.harness import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("args", [
    ["crash-matrix", "--runs", "20"],
    ["fuzz", "--cases", "100000"],
    ["load", "--seconds", "60"],
], ids=["crash-matrix-20", "fuzz-100k", "load-60s"])
def test_long_run(args: list[str]) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "prove"), *args], capture_output=True,
                          text=True, timeout=1700)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
