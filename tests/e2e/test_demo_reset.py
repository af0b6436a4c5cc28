"""The interactive demo as a newcomer uses it: the default `charge` works again after it
was paid (`reset`), and `patients` shows the simulator's other test patients."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_demo import Demo
from tests.fakes.mosquitto import mosquitto_available

pytestmark = pytest.mark.skipif(
    not mosquitto_available() and os.environ.get("CI", "").lower() != "true",
    reason="mosquitto not installed",
)


def wait_count(demo: Demo, text: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while demo.output.count(text) < n:
        assert demo.proc.poll() is None, demo.output
        assert time.monotonic() < deadline, f"fewer than {n} {text!r}:\n{demo.output}"
        time.sleep(0.05)


def test_the_default_charge_twice_with_a_reset_between(tmp_path: Path) -> None:
    demo = Demo("--interactive", "--workdir", str(tmp_path / "w"), stdin=subprocess.PIPE)
    assert demo.proc.stdin is not None
    stdin = demo.proc.stdin

    def say(line: str) -> None:
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    try:
        demo.wait_for("lobbypay> ")
        assert "reset" in demo.output and "patients" in demo.output  # the help lists them
        say("charge")
        demo.wait_for("event #1  pending")
        say("swipe visa")
        demo.wait_for("succeeded")
        paid = demo.output.count("succeeded")

        say("charge")  # the same default again: claim 5569 and the copay are paid now
        demo.wait_for("`reset` puts the simulator's patients back")
        assert demo.output.count("event #1  pending") == 1

        say("reset")
        demo.wait_for("patients are back as they were")
        say("charge")
        wait_count(demo, "event #1  pending", 2)
        say("swipe visa")
        wait_count(demo, "succeeded", paid + 1)

        say("patients")
        demo.wait_for("Dolores Sandbox-Test")
        assert "1002 (30.00)" in demo.output and "60184" in demo.output
        say("quit")
        rc = demo.finish(60)
    finally:
        stdin.close()
        demo.kill()
    assert rc == 0, demo.output
