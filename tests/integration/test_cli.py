"""Every ``lobbypay`` maintenance subcommand, in process (``cli.main``), against real parts:
mosquitto, the athena simulator over loopback HTTP, and the real agent (``lobbypay run``
as a subprocess) with the sim reader. Happy paths, failure exit codes, and ``--json``
output that parses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lobbypay import cli
from lobbypay.cli import configfile, doctor
from lobbypay.core.config import parse_config
from lobbypay.shell.journal import recent_jobs
from lobbypay.sim.athena import AthenaSim
from lobbypay.sim.cards import TEST_CARDS

from tests.e2e.harness import CANARY_PAN, subprocess_env
from tests.fakes.mosquitto import Mosquitto, free_port

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3


def write_config(tmp: Path, *, broker_port: int, sim: AthenaSim, tid: str,
                 secret: str | None = None, reader: str = "", display: str = "") -> Path:
    secret_file = tmp / "athena-secret"
    secret_file.write_text((secret or sim.client_secret) + "\n")
    path = tmp / "lobbypay.toml"
    path.write_text(f"""
[terminal]
id = "{tid}"
department_id = "1"
state_dir = "{tmp / 'state'}"

[athena]
base_url = "{sim.base_url}"
practice_id = "{sim.practice_id}"
client_id = "{sim.client_id}"
client_secret_file = "{secret_file}"
timeout_s = 5
reconcile_settle_s = 5

[mqtt]
host = "127.0.0.1"
port = {broker_port}

[reader]
{reader or f'driver = "sim"{chr(10)}path = "{tmp / "swipe.sock"}"'}

[display]
{display or 'driver = "console"'}

[logging]
level = "debug"
format = "text"
""")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    rc, out, _ = run(capsys, *argv, "--json")
    return rc, json.loads(out)


@dataclass
class Terminal:
    tmp: Path
    config: Path
    tid: str
    broker: Mosquitto
    sim: AthenaSim
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(self.tmp / "agent.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lobbypay", "run", "--config", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT, env=subprocess_env())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def logs(self) -> str:
        return (self.tmp / "agent.log").read_text(errors="replace")


@pytest.fixture
def sim() -> Iterator[AthenaSim]:
    with AthenaSim() as s:
        yield s


@pytest.fixture
def terminal(tmp_path: Path, mosquitto: Mosquitto, sim: AthenaSim,
             capsys: pytest.CaptureFixture[str]) -> Iterator[Terminal]:
    tid = f"cli-{uuid.uuid4().hex[:8]}"
    cfg = write_config(tmp_path, broker_port=mosquitto.port, sim=sim, tid=tid)
    t = Terminal(tmp_path, cfg, tid, mosquitto, sim)
    t.start()
    deadline = time.monotonic() + 20
    while True:
        rc, _, _ = run(capsys, "status", "--config", str(cfg))
        if rc == EXIT_OK:
            break
        assert t.proc is not None and t.proc.poll() is None, t.logs()
        assert time.monotonic() < deadline, f"agent did not come online\n{t.logs()}"
        time.sleep(0.1)
    yield t
    t.stop()


def wait_job_state(capsys: pytest.CaptureFixture[str], cfg: Path, job_id: str,
                   state: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rc, data = run_json(capsys, "jobs", "--config", str(cfg))
        assert rc == EXIT_OK
        found = [j for j in data["jobs"] if j["job_id"] == job_id]
        if found and found[0]["state"] == state:
            return found[0]
        assert time.monotonic() < deadline, f"job {job_id} never reached {state}: {found}"
        time.sleep(0.1)


# ---------------------------------------------------------------- check-config


def test_check_config_ok_invalid_and_missing(tmp_path: Path, sim: AthenaSim,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, broker_port=1883, sim=sim, tid="lobby-9")
    rc, out, _ = run(capsys, "check-config", "--config", str(cfg))
    assert rc == EXIT_OK and "terminal lobby-9" in out
    rc, data = run_json(capsys, "check-config", "--config", str(cfg))
    assert rc == EXIT_OK and data["ok"] is True and data["terminal"] == "lobby-9"

    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('department_id = "1"', 'department_id = "1 2"'))
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-config", "--config", str(bad)])
    assert exc.value.code == EXIT_CONFIG
    assert "terminal.department_id" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        cli.main(["check-config", "--config", str(tmp_path / "nope.toml")])
    assert exc.value.code == EXIT_CONFIG


# ---------------------------------------------------------------- doctor


def test_doctor_passes_on_a_healthy_terminal(terminal: Terminal,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, data = run_json(capsys, "doctor", "--config", str(terminal.config))
    results = {c["name"]: c["result"] for c in data["checks"]}
    assert rc == EXIT_OK, data
    assert data["ok"] is True
    assert results == {"config": "PASS", "reader": "PASS", "display": "PASS",
                       "broker": "PASS", "athena": "PASS", "clock": "PASS",
                       "state_dir": "PASS"}
    broker = next(c for c in data["checks"] if c["name"] == "broker")
    assert "agent online" in broker["detail"]

    rc, out, _ = run(capsys, "doctor", "--config", str(terminal.config))
    assert rc == EXIT_OK
    assert out.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert "\033[" not in out  # no colours when not on a tty


def test_doctor_fails_with_hints(tmp_path: Path, sim: AthenaSim,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, broker_port=free_port(), sim=sim, tid="lobby-x",
                       secret="not-the-secret",
                       reader='driver = "serial"\npath = "/dev/lobbypay-no-such-reader"',
                       display=f'driver = "serlcd"\npath = "{tmp_path / "plain-file"}"')
    (tmp_path / "plain-file").write_text("")
    rc, data = run_json(capsys, "doctor", "--config", str(cfg))
    assert rc == EXIT_FAIL and data["ok"] is False
    checks = {c["name"]: c for c in data["checks"]}
    for name in ("reader", "display", "broker", "athena"):
        assert checks[name]["result"] == "FAIL", checks[name]
        assert checks[name]["hint"], name
    assert "does not exist" in checks["reader"]["detail"]
    assert "not a character device" in checks["display"]["detail"]
    assert "refused" in checks["athena"]["detail"]
    assert checks["config"]["result"] == "PASS"
    assert checks["state_dir"]["result"] in ("PASS", "WARN")

    rc, out, _ = run(capsys, "doctor", "--config", str(cfg))
    assert rc == EXIT_FAIL
    assert "reader: plug the reader in" in out


def test_doctor_on_invalid_config_fails(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[terminal]\nid = 'x'\n")
    rc, data = run_json(capsys, "doctor", "--config", str(cfg))
    assert rc == EXIT_FAIL
    assert data["checks"][0]["name"] == "config" and data["checks"][0]["result"] == "FAIL"


def test_check_config_and_doctor_flag_template_placeholders(
        tmp_path: Path, sim: AthenaSim, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, broker_port=free_port(), sim=sim, tid="lobby-p")
    cfg.write_text(cfg.read_text().replace(f'client_id = "{sim.client_id}"',
                                           'client_id = "REPLACE-WITH-ATHENA-CLIENT-ID"'))
    (tmp_path / "athena-secret").write_text("REPLACE-WITH-ATHENA-CLIENT-SECRET\n")
    rc, out, _ = run(capsys, "check-config", "--config", str(cfg))
    assert rc == EXIT_OK
    assert "warning: athena.client_id: 'REPLACE-WITH-ATHENA-CLIENT-ID' is still" in out
    assert "warning: athena.client_secret_file: the secret is still" in out
    rc, data = run_json(capsys, "check-config", "--config", str(cfg))
    assert rc == EXIT_OK and len(data["warnings"]) == 2
    # --strict (the Debian unit's ExecCondition) refuses a config still holding placeholders
    rc, out, _ = run(capsys, "check-config", "--strict", "--config", str(cfg))
    assert rc == EXIT_FAIL and "warning: athena.client_id" in out
    rc, data = run_json(capsys, "doctor", "--config", str(cfg))
    config = data["checks"][0]
    assert config["name"] == "config" and config["result"] == "WARN", config
    assert "REPLACE-WITH" in config["hint"]
    # A filled-in config has no warnings.
    (tmp_path / "good").mkdir()
    good = write_config(tmp_path / "good", broker_port=1883, sim=sim, tid="lobby-q")
    rc, data = run_json(capsys, "check-config", "--config", str(good))
    assert rc == EXIT_OK and data["warnings"] == []
    rc, data = run_json(capsys, "check-config", "--strict", "--config", str(good))
    assert rc == EXIT_OK and data["warnings"] == []


def test_doctor_without_the_secret_still_checks_the_rest(
        tmp_path: Path, sim: AthenaSim, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The installed config names a systemd credential; run by hand without
    # $CREDENTIALS_DIRECTORY the secret cannot be found, but devices, broker, clock and
    # state_dir are still checked, and the message says how to set it.
    cfg = write_config(tmp_path, broker_port=free_port(), sim=sim, tid="lobby-c")
    cfg.write_text(cfg.read_text().replace(
        f'client_secret_file = "{tmp_path / "athena-secret"}"',
        'client_secret_credential = "athena-client-secret"'))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    rc, data = run_json(capsys, "doctor", "--config", str(cfg))
    assert rc == EXIT_FAIL
    checks = {c["name"]: c for c in data["checks"]}
    assert list(checks) == ["config", "reader", "display", "broker", "athena", "clock",
                            "state_dir"]
    assert checks["config"]["result"] == "FAIL"
    assert "CREDENTIALS_DIRECTORY=/etc/lobbypay" in checks["config"]["detail"]
    assert checks["athena"]["result"] == "WARN" and "not checked" in checks["athena"]["detail"]
    assert checks["reader"]["result"] == "PASS" and checks["clock"]["result"] == "PASS"
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-config", "--config", str(cfg)])
    assert exc.value.code == EXIT_CONFIG
    assert "CREDENTIALS_DIRECTORY=/etc/lobbypay" in capsys.readouterr().err

    # With the credential directory set, all is well.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "athena-client-secret").write_text(sim.client_secret + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    rc, data = run_json(capsys, "doctor", "--config", str(cfg))
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["config"]["result"] == "PASS" and checks["athena"]["result"] == "PASS"


def test_doctor_secret_not_readable_by_a_maintainer() -> None:
    from lobbypay.core.config import ConfigError

    base = {"terminal": {"id": "t", "department_id": "1"},
            "athena": {"base_url": "http://127.0.0.1:1", "practice_id": "1", "client_id": "c"}}
    unreadable = ConfigError("athena.client_secret_credential",
                             "secret file /etc/lobbypay/athena-client-secret is not readable "
                             "by this user")
    # A systemd credential is root's: not readable by the lobbypay user is expected.
    cred = parse_config({**base, "athena": {**base["athena"],
                                            "client_secret_credential": "athena-client-secret"}})
    check = doctor.check_secret(cred, unreadable)
    assert check.result == "WARN" and "as root" in check.hint
    # A secret file is read by the agent's own user: it must be readable.
    file_cfg = parse_config({**base, "athena": {**base["athena"], "client_secret_file": "/x"}})
    assert doctor.check_secret(file_cfg, unreadable).result == "FAIL"


def test_doctor_clock_rules() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert doctor.check_clock(now, now + timedelta(seconds=5)).result == "PASS"
    assert doctor.check_clock(now, now - timedelta(seconds=90)).result == "WARN"
    assert doctor.check_clock(now, now + timedelta(minutes=10)).result == "FAIL"
    assert doctor.check_clock(now, None).result == "WARN"
    # the detail says whether NTP keeps the clock
    assert "not NTP-synchronised" in doctor.check_clock(now, now, synced=False).detail
    ok = doctor.check_clock(now, now, synced=True)
    assert ok.result == "PASS" and "NTP-synchronised" in ok.detail
    assert "synchronisation unknown" in doctor.check_clock(now, now).detail
    assert doctor.check_clock(datetime(1970, 1, 1, tzinfo=UTC), None).result == "FAIL"


def test_doctor_devices(tmp_path: Path) -> None:
    base = {"terminal": {"id": "t", "department_id": "1", "state_dir": str(tmp_path / "s")},
            "athena": {"base_url": "http://127.0.0.1:1", "practice_id": "1",
                       "client_id": "c", "client_secret_file": "/x"}}
    cfg = parse_config({**base, "reader": {"driver": "serial", "path": "/dev/null"},
                        "display": {"driver": "serlcd", "path": "/dev/null"}})
    assert doctor.check_reader(cfg).result == "PASS"  # a readable character device
    assert doctor.check_display(cfg).result == "PASS"
    assert doctor.check_state_dir(cfg).result == "WARN"  # not created yet
    cfg = parse_config({**base, "reader": {"driver": "sim", "path": str(tmp_path / "r.sock")},
                        "display": {"driver": "none"}})
    assert doctor.check_reader(cfg).result == "PASS"
    assert doctor.check_display(cfg).result == "WARN"


# ---------------------------------------------------------------- status, fleet


def test_status_and_fleet(terminal: Terminal, capsys: pytest.CaptureFixture[str]) -> None:
    rc, data = run_json(capsys, "status", "--config", str(terminal.config))
    assert rc == EXIT_OK
    assert data["terminal"] == terminal.tid
    assert data["status"]["online"] is True and data["status"]["session"] == 1
    assert data["state"]["job_state"] == "idle"
    assert data["state"]["reader"] == {"driver": "sim", "connected": True}

    rc, out, _ = run(capsys, "status", "--config", str(terminal.config))
    assert rc == EXIT_OK
    assert f"terminal {terminal.tid}: online, session 1" in out
    assert "sim connected" in out and "Welcome" in out
    assert all(line.strip() for line in out.splitlines()), out  # no blank header line

    # Connection options alone (no config file at the default path needed).
    rc, data = run_json(capsys, "fleet", "--host", "127.0.0.1",
                        "--port", str(terminal.broker.port))
    assert rc == EXIT_OK
    rows = {r["terminal"]: r for r in data["terminals"]}
    assert rows[terminal.tid]["online"] is True
    assert rows[terminal.tid]["reader"] == "sim connected"
    rc, out, _ = run(capsys, "fleet", "--config", str(terminal.config))
    assert rc == EXIT_OK and terminal.tid in out and "online" in out

    # A terminal id nobody uses: never seen.
    rc, _, _ = run(capsys, "status", "--config", str(terminal.config), "--terminal", "nobody-1")
    assert rc == EXIT_FAIL

    # After a clean stop the retained status says offline.
    terminal.stop()
    rc, data = run_json(capsys, "status", "--config", str(terminal.config))
    assert rc == EXIT_FAIL and data["status"]["online"] is False
    rc, out, _ = run(capsys, "status", "--config", str(terminal.config))
    assert rc == EXIT_FAIL and "offline" in out and "last state it published" in out
    # doctor: the broker is fine, but the agent is not running there.
    rc, data = run_json(capsys, "doctor", "--config", str(terminal.config))
    broker = next(c for c in data["checks"] if c["name"] == "broker")
    assert broker["result"] == "WARN" and "agent offline" in broker["detail"], broker
    assert "systemctl status lobbypay" in broker["hint"]


def test_unreachable_broker_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(free_port())
    for argv in (["status", "--terminal", "t1"], ["fleet"], ["balance", "60178", "--terminal",
                                                              "t1"],
                 ["charge", "--terminal", "t1", "--patient", "60178", "--claim", "5569=1.00"]):
        rc, _, err = run(capsys, *argv, "--host", "127.0.0.1", "--port", port)
        assert rc == EXIT_UNREACHABLE, (argv, err)
        assert err.count(f"127.0.0.1:{port}") == 1, err  # named once, not twice


def test_no_terminal_and_no_config_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setattr(configfile, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["status"])
    assert exc.value.code == EXIT_CONFIG
    assert "--terminal" in capsys.readouterr().err


# ---------------------------------------------------------------- balance, charge, swipe, jobs


def test_balance(terminal: Terminal, capsys: pytest.CaptureFixture[str]) -> None:
    rc, bal = run_json(capsys, "balance", "60178", "--appointment", "1001",
                       "--config", str(terminal.config))
    assert rc == EXIT_OK
    assert [c["claim_id"] for c in bal["collectible"]] == ["5569", "5570"]
    assert {c["claim_id"]: c["reason"] for c in bal["not_collectible"]} == {
        "5571": "not_clean", "7001": "other_provider_group"}
    assert bal["copay"]["expected"] == "25.00"

    rc, out, _ = run(capsys, "balance", "60178", "--config", str(terminal.config))
    assert rc == EXIT_OK
    assert "5571" in out and "not_clean" in out and "total 65.50" in out

    rc, out, err = run(capsys, "balance", "99999", "--config", str(terminal.config), "--json")
    assert rc == EXIT_FAIL and "patient_not_found" in err
    assert json.loads(out)["error"]["code"] == "patient_not_found"


def test_charge_swipe_and_jobs(terminal: Terminal, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(terminal.config)
    rc, reply = run_json(capsys, "charge", "--config", cfg, "--job-id", "cli-j1",
                         "--patient", "60178", "--copay", "25.00", "--appointment", "1001",
                         "--claim", "5569=40.00")
    assert rc == EXIT_OK and reply["ok"] is True and reply["state"] == "pending"

    # A bad swipe first (the job stays pending), then the approved test card.
    rc, data = run_json(capsys, "swipe", "--config", cfg, "--test-card", "bad")
    assert rc == EXIT_OK and data["card"] == "bad"
    rc, out, _ = run(capsys, "swipe", "--config", cfg, "--test-card", "visa")
    assert rc == EXIT_OK and "ending 1111" in out
    job = wait_job_state(capsys, terminal.config, "cli-j1", "succeeded")
    assert job["total"] == "65.00" and job["card"] == "visa 1111" and job["epayment_id"]

    # The same job id and body again with --wait: already final, reported at once.
    rc, out, _ = run(capsys, "charge", "--config", cfg, "--job-id", "cli-j1",
                     "--patient", "60178", "--copay", "25.00", "--appointment", "1001",
                     "--claim", "5569=40.00", "--wait")
    assert rc == EXIT_OK and "succeeded" in out

    # Refused by the agent: a claim outside the department's provider group.
    rc, out, err = run(capsys, "charge", "--config", cfg, "--job-id", "cli-j2",
                       "--patient", "60178", "--claim", "7001=10.00", "--json")
    assert rc == EXIT_FAIL and "claim_not_collectible" in err
    assert json.loads(out)["ok"] is False
    # Bad usage never reaches the terminal.
    rc, _, err = run(capsys, "charge", "--config", cfg, "--patient", "60178",
                     "--claim", "5569:40")
    assert rc == EXIT_CONFIG and "CLAIM_ID=AMOUNT" in err
    rc, _, err = run(capsys, "charge", "--config", cfg, "--patient", "60178",
                     "--claim", "5569=40.5")
    assert rc == EXIT_CONFIG

    rc, out, _ = run(capsys, "jobs", "--config", cfg)
    assert rc == EXIT_OK
    assert out.splitlines()[0].split() == ["JOB", "STATE", "TOTAL", "CARD", "TIME", "ERROR"]
    assert "cli-j1" in out and "succeeded" in out and "65.00" in out
    rc, data = run_json(capsys, "jobs", "--config", cfg, "--limit", "1")
    assert rc == EXIT_OK and len(data["jobs"]) == 1
    for bad in ("0", "-1", "x"):  # SQLite reads LIMIT -1 as "all"; 0 looked like "no jobs"
        with pytest.raises(SystemExit) as exc:
            cli.main(["jobs", "--config", cfg, "--limit", bad])
        assert exc.value.code == EXIT_CONFIG
        assert "--limit" in capsys.readouterr().err

    # Stopped agent: jobs still reads the journal, and creates nothing in state_dir.
    terminal.stop()
    before = sorted(os.listdir(terminal.tmp / "state"))
    rc, data = run_json(capsys, "jobs", "--config", cfg)
    assert rc == EXIT_OK and data["jobs"][0]["job_id"] == "cli-j1"
    assert sorted(os.listdir(terminal.tmp / "state")) == before

    out_all = "".join(run(capsys, "jobs", "--config", cfg)[1:])
    assert CANARY_PAN not in out_all and CANARY_PAN not in terminal.logs()


def test_charge_wait_follows_events_to_a_decline(terminal: Terminal,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from lobbypay_hw.reader_sim import send_swipe

    def swipe_when_pending() -> None:
        # Reads the journal (read-only, like `lobbypay jobs`) until the job is pending.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                jobs = recent_jobs(str(terminal.tmp / "state"), 5)
            except FileNotFoundError:
                jobs = []
            if any(j["job_id"] == "cli-d1" and j["state"] == "pending" for j in jobs):
                send_swipe(str(terminal.tmp / "swipe.sock"),
                           TEST_CARDS["decline"][0].encode())
                return
            time.sleep(0.05)

    t = threading.Thread(target=swipe_when_pending)
    t.start()
    try:
        rc, out, _ = run(capsys, "charge", "--config", str(terminal.config), "--job-id",
                         "cli-d1", "--patient", "60178", "--claim", "5570=25.50", "--wait",
                         "--json", "--timeout", "30")
    finally:
        t.join()
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["ok"] is True
    states = [e["state"] for e in lines[1:]]
    assert states == ["pending", "card_read", "submitting", "declined"], states
    assert lines[-1]["error"]["code"] == "declined"
    assert rc == EXIT_FAIL


def test_swipe_failures(tmp_path: Path, sim: AthenaSim,
                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, broker_port=1883, sim=sim, tid="t-s")
    rc, _, err = run(capsys, "swipe", "--config", str(cfg), "--test-card", "visa")
    assert rc == EXIT_UNREACHABLE and "cannot reach the sim reader" in err
    assert CANARY_PAN not in err
    serial = write_config(tmp_path, broker_port=1883, sim=sim, tid="t-s",
                          reader='driver = "serial"\npath = "/dev/ttyS9"')
    rc, _, err = run(capsys, "swipe", "--config", str(serial), "--test-card", "visa")
    assert rc == EXIT_CONFIG and "not 'sim'" in err


def test_jobs_without_a_journal(tmp_path: Path, sim: AthenaSim,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, broker_port=1883, sim=sim, tid="t-j")
    rc, _, err = run(capsys, "jobs", "--config", str(cfg))
    assert rc == EXIT_FAIL and "no journal" in err
    assert not (tmp_path / "state").exists()


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("run", "check-config", "doctor", "jobs", "status", "fleet", "balance",
                 "charge", "swipe", "demo"):
        assert name in out
