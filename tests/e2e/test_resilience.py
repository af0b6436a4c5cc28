"""The agent's process and its broker failing under it, end to end: kill -9 of the agent
mid-charge (POST in flight, and card awaited), a broker restart while a job finishes, a
clean SIGTERM, and a broken config file. Only the contract is used: MQTT, the simulator,
the pty, the CLI and its exit code."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
    started,
    subprocess_env,
    validate_all,
    wait_until,
)

PATIENT = "60178"
CLAIMS = [{"claim_id": "5569", "amount": "12.34"}]


def states_of(app: AppClient, job_id: str) -> list[str]:
    """The job's states by seq (an event published again after a restart counts once)."""
    by_seq = {e["seq"]: e["state"] for e in app.job_events(job_id)}
    return [by_seq[s] for s in sorted(by_seq)]


async def killed(agent: AgentProcess, app: AppClient, session: int) -> None:
    """kill -9, then the broker's last will for that session: online false."""
    agent.kill9()
    await app.wait_retained(
        "status", lambda s: s["online"] is False and s["session"] == session, timeout=10)


async def test_kill9_while_the_post_is_in_flight_reconciles_never_posts_again(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        status = await started(agent, app)
        assert status["session"] == 1
        assert (await app.command("charge.start", job_id="j-k", patient_id=PATIENT,
                                  claims=CLAIMS))["ok"]
        # athena takes the payment at once but answers only after 8 s
        athena_sim.fault(kind="slow", seconds=8, apply=True)
        pty_reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-k", "submitting")
        await wait_until(lambda: len(athena_sim.posts(PATIENT)) == 1, timeout=5)
        await killed(agent, app, session=1)

        status = await started(agent, app, session=2)
        assert status["session"] == 2
        final = await app.wait_event("j-k", final=True, timeout=20)
        assert final["state"] == "succeeded", final
        receipt = [r for r in athena_sim.control("/_sim/receipts")["receipts"]
                   if r["amount"] == "12.34"]
        assert len(receipt) == 1 and final["epayment_id"] == str(receipt[0]["epaymentid"])
        assert states_of(app, "j-k") == [
            "pending", "card_read", "submitting", "unknown", "succeeded"]
        assert len(athena_sim.posts(PATIENT)) == 1
        got = await app.command("charge.get", job_id="j-k")
        assert got["job"]["state"] == "succeeded" and got["job"]["seq"] == 5

        assert agent.terminate() == 0
        await started(agent, app, session=3)
        assert len(athena_sim.posts(PATIENT)) == 1
        assert (await app.command("charge.get", job_id="j-k"))["job"] == got["job"]
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_kill9_while_pending_ends_expired_after_restart(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app, session=1)
        first = await app.command("charge.start", request_id="s-p", job_id="j-p",
                                  patient_id=PATIENT, claims=CLAIMS)
        assert first["ok"], first
        await app.wait_retained("state", lambda s: s["job_state"] == "pending")
        await killed(agent, app, session=1)

        await started(agent, app, session=2)
        final = await app.wait_event("j-p", final=True)
        assert final["state"] == "expired" and final["error"]["code"] == "agent_restarted"
        assert states_of(app, "j-p") == ["pending", "expired"]
        got = await app.command("charge.get", job_id="j-p")
        assert got["job"] == final
        listed = await app.command("charge.list")
        assert [j["job_id"] for j in listed["jobs"]] == ["j-p"]
        # the start redelivered after the restart: the same reply (kept in the journal)
        app.replies.pop("s-p")
        again = await app.command("charge.start", request_id="s-p", job_id="j-p",
                                  patient_id=PATIENT, claims=CLAIMS)
        assert again == first
        # the same job and body under a new request_id: its current state, nothing new
        same = await app.command("charge.start", job_id="j-p", patient_id=PATIENT,
                                 claims=CLAIMS)
        assert same["ok"] and same["state"] == "expired"
        assert states_of(app, "j-p") == ["pending", "expired"]
        # the retained state follows the outbox down to 0 (every ack republishes it)
        await app.wait_retained("state", lambda s: s["job_state"] == "idle" and s["outbox"] == 0)
        # a swipe now charges nothing; a new job starts normally
        pty_reader.swipe(CANARY_TRACKS)
        assert (await app.command("charge.start", job_id="j-p2", patient_id=PATIENT,
                                  claims=CLAIMS))["ok"]
        pty_reader.swipe(CANARY_TRACKS)
        assert (await app.wait_event("j-p2", final=True))["state"] == "succeeded"
        assert len(athena_sim.posts(PATIENT)) == 1
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_final_event_survives_a_broker_restart(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any,
    tmp_path: Path,
) -> None:
    # the app keeps its session (and its queued QoS 1 messages) over the broker restart
    app_id = f"app-{agent.terminal_id}"
    async with AppClient(mosquitto.port, agent.terminal_id, identifier=app_id,
                         clean_session=False) as app1:
        await started(agent, app1)
        assert (await app1.command("charge.start", job_id="j-b", patient_id=PATIENT,
                                   claims=CLAIMS))["ok"]
        await app1.wait_event("j-b", "pending")
        mosquitto.stop()
    # the broker is down: the job runs to its end anyway
    pty_reader.swipe(CANARY_TRACKS)
    await wait_until(lambda: len(athena_sim.posts(PATIENT)) == 1, timeout=10)
    await wait_until(lambda: "-> succeeded" in agent.logs() or "-> JobState.SUCCEEDED"
                     in agent.logs(), timeout=10)
    assert app1.job_events("j-b")[-1]["state"] == "pending"
    mosquitto.start()
    async with AppClient(mosquitto.port, agent.terminal_id, identifier=app_id,
                         clean_session=False) as app2:
        final = await app2.wait_event("j-b", final=True, timeout=30)
        assert final["state"] == "succeeded" and final["epayment_id"]
        await app2.wait_retained(
            "state", lambda s: s["outbox"] == 0 and s["job_state"] == "idle", timeout=15)
        assert (await app2.command("ping"))["state"]["outbox"] == 0
        seqs = {e["seq"] for e in app1.job_events("j-b") + app2.job_events("j-b")}
        assert seqs == {1, 2, 3, 4}
        assert len(athena_sim.posts(PATIENT)) == 1
        assert agent.terminate() == 0
        validate_all(app1)
        validate_all(app2)
    assert_no_canary(agent=agent, app=app1)
    assert_no_canary(agent=agent, app=app2)


async def test_sigterm_publishes_offline_itself_and_exits_0(
    agent: AgentProcess, athena_sim: AthenaSimProcess, mosquitto: Any
) -> None:
    # several quick cycles: SIGTERM lands at different points of the start-up publishes
    # (a stop racing the first state PUBACK once hung the link and skipped "offline")
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        for session in range(1, 6):
            online = await started(agent, app, session=session)
            t0 = time.monotonic()
            assert agent.terminate(timeout=10) == 0
            assert time.monotonic() - t0 < 4, "the clean stop took too long"
            off = await app.wait_retained(
                "status", lambda s, n=session: s["online"] is False and s["session"] == n)
            assert off["version"] == online["version"] and off["since"] == online["since"]
        # published by the agent before its DISCONNECT (a clean disconnect sends no will)
        assert agent.logs().count("offline status published") == 5
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


GOOD_SECRET = "s3cret-value-never-printed"


def _config_cases() -> list[tuple[str, str, str, str]]:
    # (name, text to replace, replacement, key the message must name)
    return [
        ("terminal.id missing", 'id = "TID"', "", "terminal.id"),
        ("terminal.id bad", 'id = "TID"', 'id = "no spaces allowed"', "terminal.id"),
        ("max_charge not money", 'max_charge = "5000.00"', 'max_charge = "lots"',
         "terminal.max_charge"),
        ("max_charge a float", 'max_charge = "5000.00"', "max_charge = 5000.0",
         "terminal.max_charge"),
        ("base_url plain http off loopback", 'base_url = "BASE"',
         'base_url = "http://athena.example.com"', "athena.base_url"),
        ("secret file missing", 'client_secret_file = "SECRET"',
         'client_secret_file = "/nonexistent/secret"', "athena.client_secret_file"),
        ("timeout out of range", "timeout_s = 3", "timeout_s = 0", "athena.timeout_s"),
        ("mqtt port out of range", "port = PORT", "port = 70000", "mqtt.port"),
        ("reader driver unknown", 'driver = "serial"', 'driver = "nfc"', "reader.driver"),
        ("reader path missing", 'path = "READER"', "", "reader.path"),
        ("not TOML", "[terminal]", "[terminal", "TOML"),
    ]


@pytest.mark.parametrize(("name", "old", "new", "key"), _config_cases(),
                         ids=[c[0] for c in _config_cases()])
def test_config_error_exits_nonzero_at_once_naming_the_key(
    tmp_path: Path, name: str, old: str, new: str, key: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(GOOD_SECRET + "\n")
    text = f"""
[terminal]
id = "TID"
department_id = "1"
state_dir = "{tmp_path / 'state'}"
max_charge = "5000.00"

[athena]
base_url = "BASE"
practice_id = "195900"
client_id = "client"
client_secret_file = "SECRET"
timeout_s = 3
reconcile_settle_s = 5

[mqtt]
host = "127.0.0.1"
port = PORT

[reader]
driver = "serial"
path = "READER"

[display]
driver = "none"
"""
    assert old in text, name
    text = text.replace(old, new)
    text = (text.replace("TID", "lobby-1").replace("BASE", "http://127.0.0.1:9")
            .replace("SECRET", str(secret)).replace("PORT", "1883")
            .replace("READER", "/dev/null"))
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lobbypay", "run", "--config", str(cfg)],
        capture_output=True, text=True, env=subprocess_env(), timeout=30,
    )
    took = time.monotonic() - t0
    assert proc.returncode != 0, (name, proc.stdout, proc.stderr)
    assert key in proc.stderr, (name, proc.stderr)
    assert took < 10, took
    assert GOOD_SECRET not in proc.stderr + proc.stdout
    assert not (tmp_path / "state").exists(), "the agent started before refusing its config"


def test_the_good_config_of_these_cases_is_accepted(tmp_path: Path) -> None:
    """The template the cases above break is itself valid (else they prove nothing)."""
    secret = tmp_path / "secret"
    secret.write_text(GOOD_SECRET + "\n")
    cfg = tmp_path / "good.toml"
    cfg.write_text(f"""
[terminal]
id = "lobby-1"
department_id = "1"
state_dir = "{tmp_path / 'state'}"
max_charge = "5000.00"

[athena]
base_url = "http://127.0.0.1:9"
practice_id = "195900"
client_id = "client"
client_secret_file = "{secret}"
timeout_s = 3
reconcile_settle_s = 5

[mqtt]
host = "127.0.0.1"
port = 1883

[reader]
driver = "serial"
path = "/dev/null"

[display]
driver = "none"
""")
    proc = subprocess.run(
        [sys.executable, "-m", "lobbypay", "check-config", "--config", str(cfg)],
        capture_output=True, text=True, env=subprocess_env(), timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
