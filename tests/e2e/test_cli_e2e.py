"""The `lobbypay` entry point as a subprocess (what a maintainer or a script runs): exit
codes through the real process, and a charge driven by `lobbypay charge --wait` while
`lobbypay swipe` feeds the real agent's sim reader."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.harness import CANARY_PAN, AthenaSimProcess, subprocess_env
from tests.fakes.mosquitto import free_port


def lobbypay(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own entry point
        [sys.executable, "-m", "lobbypay", *argv], capture_output=True, text=True,
        timeout=timeout, env=subprocess_env())


def start_agent(tmp_path: Path, mosquitto: Any, athena_sim: AthenaSimProcess, tid: str,
                extra: str = "") -> tuple[Path, subprocess.Popen[bytes]]:
    """A config with the sim reader and console display, the agent running on it, and
    `lobbypay status` answering."""
    info = athena_sim.info
    secret = tmp_path / "secret"
    secret.write_text(info["client_secret"] + "\n")
    sock = tmp_path / "swipe.sock"
    cfg = tmp_path / "lobbypay.toml"
    cfg.write_text(f"""
[terminal]
id = "{tid}"
department_id = "1"
state_dir = "{tmp_path / 'state'}"
[athena]
base_url = "{info['base_url']}"
practice_id = "{info['practice_id']}"
client_id = "{info['client_id']}"
client_secret_file = "{secret}"
timeout_s = 5
[mqtt]
port = {mosquitto.port}
[reader]
driver = "sim"
path = "{sock}"
[display]
driver = "console"
{extra}""")
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "lobbypay", "run", "--config", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, env=subprocess_env())
    deadline = time.monotonic() + 20
    while lobbypay("status", "--config", str(cfg)).returncode != 0:
        assert agent.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    return cfg, agent


def test_exit_codes_through_the_entry_point(tmp_path: Path) -> None:
    r = lobbypay("--help")
    assert r.returncode == 0 and "doctor" in r.stdout and "exit codes" in r.stdout
    r = lobbypay("check-config", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = lobbypay("status", "--host", "127.0.0.1", "--port", str(free_port()),
                 "--terminal", "t-1")
    assert r.returncode == 3, r.stderr
    r = lobbypay("charge", "--terminal", "t-1", "--patient", "60178", "--claim", "x")
    assert r.returncode == 2 and "CLAIM_ID=AMOUNT" in r.stderr
    r = lobbypay("swipe", "--test-card", "nosuch", "--socket", "/nonexistent")
    assert r.returncode == 2  # argparse: invalid choice


def test_charge_wait_and_swipe_drive_the_real_agent(
        tmp_path: Path, mosquitto: Any, athena_sim: AthenaSimProcess) -> None:
    cfg, agent = start_agent(tmp_path, mosquitto, athena_sim, "e2e-cli")
    try:
        charge = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "lobbypay", "charge", "--config", str(cfg), "--json",
             "--job-id", "e2e-c1", "--patient", "60178", "--copay", "25.00",
             "--appointment", "1001", "--claim", "5569=40.00", "--wait", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        assert charge.stdout is not None
        first = json.loads(charge.stdout.readline())  # the start reply: job is pending
        assert first["ok"] is True and first["state"] == "pending"
        for card in ("expired", "visa"):
            r = lobbypay("swipe", "--config", str(cfg), "--test-card", card)
            assert r.returncode == 0, r.stderr
        # Read on from the same buffered stream: readline() may have buffered more lines
        # already, which communicate() (reading the raw pipe) would never see.
        rest = charge.stdout.read()
        charge.wait(60)
        assert charge.stderr is not None
        err = charge.stderr.read()
        charge.stdout.close()
        charge.stderr.close()
        events = [json.loads(x) for x in rest.splitlines()]
        assert charge.returncode == 0, err
        assert [e["state"] for e in events] == ["pending", "card_read", "submitting",
                                                "succeeded"], (first, rest)
        assert events[-1]["card"] == {"brand": "visa", "last4": "1111"}

        r = lobbypay("jobs", "--config", str(cfg), "--json")
        assert r.returncode == 0
        assert json.loads(r.stdout)["jobs"][0]["state"] == "succeeded"
        assert CANARY_PAN not in rest + err + r.stdout
    finally:
        agent.terminate()
        assert agent.wait(15) == 0
    assert CANARY_PAN.encode() not in (tmp_path / "agent.log").read_bytes()


def test_void_receipt_and_spanish_charge_from_the_cli(
        tmp_path: Path, mosquitto: Any, athena_sim: AthenaSimProcess) -> None:
    """`lobbypay charge --language es`, `lobbypay receipt JOB --email ADDR` and
    `lobbypay void JOB` against the real agent (with [staff] enabled)."""
    address = "cli.canary@example.net"
    cfg, agent = start_agent(tmp_path, mosquitto, athena_sim, "e2e-cli-staff",
                             "[staff]\nenabled = true\n")
    try:
        r = lobbypay("charge", "--config", str(cfg), "--patient", "60178",
                     "--claim", "5569=7.00", "--language", "fr")
        assert r.returncode == 2 and "invalid choice" in r.stderr
        charge = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "lobbypay", "charge", "--config", str(cfg), "--json",
             "--job-id", "cli-v1", "--patient", "60178", "--claim", "5569=7.00",
             "--language", "es", "--wait", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        assert charge.stdout is not None and charge.stderr is not None
        assert json.loads(charge.stdout.readline())["state"] == "pending"
        r = lobbypay("status", "--config", str(cfg), "--json")
        assert "Pase su tarjeta" in r.stdout, r.stdout
        assert lobbypay("swipe", "--config", str(cfg), "--test-card", "visa").returncode == 0
        charge.stdout.read()
        assert charge.wait(60) == 0, charge.stderr.read()
        charge.stdout.close()
        charge.stderr.close()

        r = lobbypay("receipt", "cli-v1", "--config", str(cfg), "--email", "not-an-address")
        assert r.returncode == 2 and "not-an-address" not in r.stderr
        r = lobbypay("receipt", "cli-v1", "--config", str(cfg), "--email", address)
        assert r.returncode == 0, r.stderr
        assert "c***@example.net" in r.stdout and address not in r.stdout
        emails = athena_sim.control("/_sim/emails")["emails"]
        assert [e["email"] for e in emails] == [address]

        r = lobbypay("void", "cli-v1", "--config", str(cfg), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "voided"
        r = lobbypay("void", "cli-v1", "--config", str(cfg))
        assert r.returncode == 0 and "cli-v1: voided" in r.stdout
        r = lobbypay("void", "nosuch", "--config", str(cfg))
        assert r.returncode == 1 and "unknown_job" in r.stderr
        r = lobbypay("receipt", "cli-v1", "--config", str(cfg), "--email", address)
        assert r.returncode == 1 and "no_receipt" in r.stderr
        r = lobbypay("jobs", "--config", str(cfg), "--json")
        assert json.loads(r.stdout)["jobs"][0]["state"] == "voided"
    finally:
        agent.terminate()
        assert agent.wait(15) == 0
    assert address.encode() not in (tmp_path / "agent.log").read_bytes()
    for p in (tmp_path / "state").rglob("*"):
        if p.is_file():
            assert address.encode() not in p.read_bytes(), p
