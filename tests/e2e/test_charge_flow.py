"""The real agent end to end: `lobbypay run --config`, mosquitto, the athena simulator over
HTTP and a serial reader on a pty. Every test ends by checking the canary PAN leaked
nowhere (MQTT, logs, state_dir)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lobbypay import schemas

from tests.e2e.harness import (
    CANARY_TRACKS,
    DECLINE_TRACKS,
    EXPIRED_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
)


async def started(agent: AgentProcess, app: AppClient) -> dict[str, Any]:
    agent.start()
    return await app.wait_retained("status", lambda s: s.get("online") is True, timeout=15)


def validate_all(app: AppClient) -> None:
    """Every message the agent sent validates against the shipped JSON Schemas."""
    for topic, payload in app.seen:
        kind = topic.rsplit("/", 1)[1]
        if kind == "cmd":
            continue
        obj = json.loads(payload)
        schemas.validate({"reply": "reply", "events": "charge.event", "status": "status",
                          "state": "state"}[kind], obj)


async def test_copay_plus_clean_claim_succeeds_once(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        status = await started(agent, app)
        assert status["session"] == 1 and status["v"] == 1

        bal = await app.command("balance.get", patient_id="60178", appointment_id="1001")
        assert bal["ok"], bal
        assert bal["provider_group_id"] == "10"
        assert [c["claim_id"] for c in bal["collectible"]] == ["5569", "5570"]
        reasons = {c["claim_id"]: c["reason"] for c in bal["not_collectible"]}
        assert reasons == {"5571": "not_clean", "7001": "other_provider_group"}
        assert bal["copay"]["expected"] == "25.00"

        rep = await app.command(
            "charge.start", job_id="j-1", patient_id="60178", appointment_id="1001",
            copay="25.00", claims=[{"claim_id": "5569", "amount": "40.00"}])
        assert rep["ok"] and rep["state"] == "pending", rep
        st = await app.wait_retained("state", lambda s: s["job_state"] == "pending")
        assert any("65.00" in line for line in st["screen"])

        pty_reader.swipe(CANARY_TRACKS)
        final = await app.wait_event("j-1", final=True)
        assert final["state"] == "succeeded", final
        assert final["card"] == {"brand": "visa", "last4": "1111"}
        assert final["amounts"] == {"copay": "25.00", "other": "40.00", "total": "65.00",
                                    "claims": [{"claim_id": "5569", "amount": "40.00"}]}
        assert final["epayment_id"]
        seqs = [e["seq"] for e in app.job_events("j-1")]
        assert seqs == list(range(1, len(seqs) + 1))
        assert [e["state"] for e in app.job_events("j-1")] == [
            "pending", "card_read", "submitting", "succeeded"]

        posts = athena_sim.posts("60178")
        assert len(posts) == 1
        form = posts[0]["form"]
        assert form["departmentid"] == "1" and form["copayamount"] == "25.00"
        assert form["appointmentid"] == "1001" and form["otheramount"] == "40.00"
        assert json.loads(form["claimpayment"]) == [{"5569": "40.00"}]
        assert "allowduplicatepayments" not in form

        got = await app.command("charge.get", job_id="j-1")
        assert got["job"]["state"] == "succeeded" and got["job"]["seq"] == final["seq"]
        await app.wait_retained("state", lambda s: s["job_state"] == "idle")

        assert agent.terminate() == 0
        await app.wait_retained("status", lambda s: s.get("online") is False)
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_decline_then_bad_and_expired_swipes(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        rep = await app.command("charge.start", job_id="j-d", patient_id="60178",
                                claims=[{"claim_id": "5570", "amount": "10.00"}])
        assert rep["ok"], rep
        pty_reader.swipe("%E?;E?")  # the reader's error marks: unreadable
        pty_reader.swipe(EXPIRED_TRACKS)
        await asyncio.sleep(0.5)
        assert [e["state"] for e in app.job_events("j-d")] == ["pending"]
        pty_reader.swipe(DECLINE_TRACKS)
        final = await app.wait_event("j-d", final=True)
        assert final["state"] == "declined"
        assert final["error"]["code"] == "declined" and final["error"]["message"]
        assert final["card"]["last4"] == "0002"
        assert len(athena_sim.posts("60178")) == 1
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app, pans=("4111111111111111", "4000000000000002"))
