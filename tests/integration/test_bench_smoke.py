"""scripts/bench --quick end to end (mosquitto, the simulator and the real agent as
processes): it finishes in time and its JSON holds every figure with a value, a verdict
and the parts behind it. Checks the harness, not the machine: a MISS is fine here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.mosquitto import MOSQUITTO, mosquitto_available

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {
    "swipe_to_final_p50", "swipe_to_final_p99", "swipe_to_final_human_p50",
    "command_to_reply_p50", "command_to_reply_p99", "ping_p50", "cpu_per_charge",
    "swipe_to_final_p50_vs_raw", "command_to_reply_p50_vs_raw",
    "disk_write_per_charge", "idle_disk_write", "fsyncs_per_charge", "idle_cpu", "peak_rss",
    "rss_growth_after_warmup", "startup", "balance_10k_claims",
    *(f"throughput_{k}_c{c}" for k in ("ping", "balance_get") for c in (1, 4, 16)),
}
TARGETED = (FIGURES - {"command_to_reply_p99"} - {f for f in FIGURES if f.endswith("_vs_raw")}
            - {f for f in FIGURES if f.startswith("throughput")})

pytestmark = [pytest.mark.broker, pytest.mark.pty, pytest.mark.e2e]


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    if not mosquitto_available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"mosquitto ({MOSQUITTO}) is required under CI=true")
        pytest.skip("mosquitto not installed")
    out = tmp_path / "bench.json"
    t0 = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - our interpreter and script
        [sys.executable, str(ROOT / "scripts" / "benchlib" / "run.py"), "--quick",
         "--no-tls", "--no-nagle", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    took = time.monotonic() - t0
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 2 = the run itself failed
    assert took < 80, f"--quick took {took:.1f} s"

    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert set(data["figures"]) == FIGURES
    for name, fig in data["figures"].items():
        assert isinstance(fig["value"], (int, float)) and fig["value"] >= 0, name
        if name in TARGETED:
            assert fig["result"] in ("PASS", "MISS"), name
        else:
            assert fig["result"] == "info", name
    assert (proc.returncode == 0) == all(
        f["result"] != "MISS" for f in data["figures"].values())

    d = data["details"]
    charges = d["charges"]
    assert charges["swipe_to_final"]["n"] == charges["charges"] == 8
    # the baseline is the sum of its measured parts, each taken in this run
    assert set(charges["bare_swipe_path"]) == {"total", "fsync", "post", "mqtt_oneway",
                                               "post_raw", "total_raw"}
    assert set(charges["bare_command_path"]) == {"total", "mqtt_round_trip", "get",
                                                 "get_appointment", "get_raw",
                                                 "get_appointment_raw", "total_raw"}
    assert d["idle"]["io"]["write_bytes"] >= 0 and charges["io_per_charge"]["write_bytes"] > 0
    assert d["imports"]["by_package_ms"]
    # the import total holds its parts (self times on one thread sum to it)
    assert d["imports"]["total_ms"] >= max(d["imports"]["by_package_ms"].values())
    # the swipe path's steps from the agent's step trace, in order, for every charge
    steps = charges["steps"]
    assert list(steps)[0] == "reader.bytes" and list(steps)[-1] == "end_received"
    for name in ("journal.card_read", "journal.submitting", "post.answer", "journal.final"):
        assert steps[name]["n"] == 8, (name, steps[name])
    assert steps["journal.submitting"]["p50_ms"] <= steps["end_received"]["p50_ms"]
    cmd_steps = charges["command_steps"]
    assert list(cmd_steps)[-1] == "end_received" and cmd_steps["journal.pending"]["n"] == 8
    assert charges["bare_swipe_path"]["total"]["p50"] > 0
    # every command of the memory run was answered; RSS read three times
    assert d["memory"]["commands"] == 1000
    assert {"VmRSS", "VmHWM"} <= set(d["memory"]["end_kb"])
    assert d["memory"]["after_warmup_kb"]["VmRSS"] > 0 and d["memory"]["start_kb"]["VmRSS"] > 0
    assert len(d["startup"]["starts_s"]) == 3
    for kind in ("ping", "balance.get", "bare_mqtt_echo", "bare_get"):
        assert [r["concurrency"] for r in d["throughput"][kind]] == [1, 4, 16]
        assert all(r["done"] > 0 for r in d["throughput"][kind])
    assert data["machine"]["cores"] >= 1
    # the table went to stdout
    assert "swipe_to_final_p50" in proc.stdout and "JSON:" in proc.stdout
