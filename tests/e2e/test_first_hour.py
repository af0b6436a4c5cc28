"""What an app developer and an operator meet in their first hour, end to end: the real
agent as a process, the athena simulator, a real mosquitto.

* a retried ``charge.start`` of a job that already ended must not leave the client's
  ``events(job_id)`` (or ``wait_final``) waiting forever;
* ``state.athena`` tells the truth: a refused secret shows right after start-up (not only
  at the first patient), a later success clears an error, and every time in it is whole
  seconds with "Z" like the rest of the protocol.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from typing import Any

from lobbypay.client import TerminalClient

from tests.e2e.harness import (
    CANARY_TRACKS,
    DECLINE_TRACKS,
    ROOT,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    started,
    subprocess_env,
)

PATIENT = "60178"
CLAIMS = [("5569", "40.00")]
#: protocol.md: times are UTC, whole seconds, "Z"
WHOLE_SECONDS = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def lobbypay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "lobbypay", *args, "--no-color"], capture_output=True,
        text=True, env=subprocess_env(), timeout=60, check=False)


async def test_a_retry_of_a_finished_job_returns_its_final_event(
    agent: AgentProcess, pty_reader: PtyReader, mosquitto: Any,
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
    async with TerminalClient(agent.terminal_id, "127.0.0.1", mosquitto.port) as term:
        events = term.events("appt-1001")
        reply = await term.charge("appt-1001", PATIENT, claims=CLAIMS)
        assert reply["state"] == "pending"
        pty_reader.swipe(DECLINE_TRACKS)
        first = [ev async for ev in events]
        assert first[-1]["state"] == "declined"

    # The app runs again with the same job id and body (the patient wants to try another
    # card): the reply says the job is final, and nothing more will be published for it.
    async with TerminalClient(agent.terminal_id, "127.0.0.1", mosquitto.port) as term:
        events = term.events("appt-1001")
        reply = await term.charge("appt-1001", PATIENT, claims=CLAIMS)
        assert reply["state"] == "declined"
        async with asyncio.timeout(5):  # was: waits forever
            again = [ev async for ev in events]
        assert [ev["state"] for ev in again] == ["declined"]
        assert again[0]["final"] is True and again[0]["seq"] == first[-1]["seq"]
        async with asyncio.timeout(1):
            final = await term.wait_final("appt-1001", timeout=1)
        assert final["state"] == "declined"

        # a new job id per payment attempt: the next card is charged
        events = term.events("appt-1001-2")
        assert (await term.charge("appt-1001-2", PATIENT, claims=CLAIMS))["state"] == "pending"
        pty_reader.swipe(CANARY_TRACKS)
        async with asyncio.timeout(20):
            states = [ev["state"] async for ev in events]
        assert states[-1] == "succeeded"


async def test_a_refused_secret_shows_in_state_and_status_right_after_start(
    agent: AgentProcess, mosquitto: Any,
) -> None:
    agent.write_config()
    (agent.tmp / "athena-secret").write_text("not-the-secret\n")
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        # no command sent: the start-up athena check alone must say it
        state = await app.wait_retained(
            "state", lambda s: s["athena"]["last_error"] is not None, timeout=15)
    err = state["athena"]["last_error"]
    assert "credentials refused" in err["message"], err
    assert state["athena"]["last_ok_at"] is None
    assert WHOLE_SECONDS.match(err["at"]), err
    out = lobbypay("status", "--config", str(agent.config_path))
    assert out.returncode == 0, out
    assert "credentials refused" in out.stdout, out.stdout
    assert f"(at {err['at']})" in out.stdout, out.stdout  # when it was said


async def test_a_later_success_clears_the_athena_error(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any,
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        rep = await app.command("charge.start", job_id="j-u", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "40.00"}])
        assert rep["ok"], rep
        # athena takes the payment, then answers 500: the outcome is unknown
        athena_sim.fault(kind="status", endpoint="collectpayment", status=500, apply=True)
        pty_reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-u", "unknown")
        errored = await app.wait_retained(
            "state", lambda s: s["athena"]["last_error"] is not None)
        assert errored["athena"]["last_error"]["code"] == "outcome_unknown"
        final = await app.wait_event("j-u", final=True, timeout=30)
        assert final["state"] == "succeeded", final
        # the receipts read that settled it succeeded: the terminal is healthy again
        state = await app.wait_retained(
            "state", lambda s: s["athena"]["last_error"] is None, timeout=10)
        assert WHOLE_SECONDS.match(state["athena"]["last_ok_at"]), state["athena"]
        for topic, payload in app.seen:
            if topic.endswith("/state"):
                ok_at = json.loads(payload)["athena"]["last_ok_at"]
                assert ok_at is None or WHOLE_SECONDS.match(ok_at), ok_at
    out = lobbypay("fleet", "--config", str(agent.config_path), "--json")
    rows = {r["terminal"]: r for r in json.loads(out.stdout)["terminals"]}
    assert rows[agent.terminal_id]["last_error"] is None, rows


EXAMPLE_APP = ROOT / "examples" / "checkin_app.py"


def checkin_app(agent: AgentProcess, port: int, *args: str,
                stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the example app
        [sys.executable, str(EXAMPLE_APP), "--port", str(port), "--terminal",
         agent.terminal_id, *args], input=stdin, capture_output=True, text=True,
        env=subprocess_env(), timeout=60, check=False)


async def test_the_example_app_exits_1_when_it_charged_nothing(
    agent: AgentProcess, mosquitto: Any,
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        # 60179 owes a copay only: without an appointment there is nothing to charge
        out = checkin_app(agent, mosquitto.port, "--patient", "60179", "--yes")
        assert out.returncode == 1, out
        assert "nothing to charge" in out.stdout
        assert "collectible:\n    (none)" in out.stdout, out.stdout
        assert "claim -" not in out.stdout
        # the charge offered and not confirmed: not charged either
        out = checkin_app(agent, mosquitto.port, "--patient", "60178", "--appointment",
                          "1001", stdin="n\n")
        assert out.returncode == 1, out
        assert "not charged" in out.stdout
        assert not [e for e in app.events if e.get("state") == "pending"]
