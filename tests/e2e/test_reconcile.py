"""Unknown outcomes reconciled both ways, end to end (protocol.md sections 5-6).

The simulator loses athena's answer to the POST: it answers too late (the agent's
athena.timeout_s passes) or drops the connection, either after really taking the payment
(``apply``) or without taking it. The job passes through ``unknown`` (the terminal is free
again: a new charge.start is accepted) and ends with exactly one final event:
``succeeded`` with the receipt's epayment id, or ``failed``/``not_charged`` after two
settled receipts reads. The POST is sent once in every case.

``reconcile_settle_s`` is 1 s here; the engine scales its reconcile waits from it
(engine.reconcile_timing), so each case takes seconds, not minutes.
"""

from __future__ import annotations

import time
from datetime import datetime
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
    validate_all,
)

PATIENT = "60178"
#: The same total and card as the fixture receipt 80001 (40.00, *1111, 8 days old):
#: reconciliation must not take that old payment for this one.
CLAIMS = [{"claim_id": "5569", "amount": "40.00"}]


def receipts_reads(sim: AthenaSimProcess, patient_id: str = PATIENT) -> list[dict[str, Any]]:
    return [c for c in sim.calls()
            if c["endpoint"] == "receipts" and f"/patients/{patient_id}/" in c["path"]]


@pytest.mark.parametrize(("fault", "applied"), [
    ({"kind": "slow", "seconds": 6}, True),
    ({"kind": "drop"}, True),
    ({"kind": "slow", "seconds": 6}, False),
    ({"kind": "drop"}, False),
], ids=["timeout-charged", "dropped-charged", "timeout-not-charged", "dropped-not-charged"])
async def test_unknown_outcome_is_reconciled(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any,
    fault: dict[str, Any], applied: bool,
) -> None:
    agent.athena_timeout_s = 2
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        rep = await app.command("charge.start", job_id="j-u", patient_id=PATIENT, claims=CLAIMS)
        assert rep["ok"], rep
        athena_sim.fault(**fault, apply=applied)
        t_swipe = time.monotonic()
        pty_reader.swipe(CANARY_TRACKS)

        unknown = await app.wait_event("j-u", "unknown")
        assert unknown["final"] is False
        assert unknown["error"]["code"] == "outcome_unknown"
        assert unknown["card"] == {"brand": "visa", "last4": "1111"}

        # the terminal is free while the job reconciles: a new charge is accepted
        await app.wait_retained("state", lambda s: s["job_state"] == "idle")
        nxt = await app.command("charge.start", job_id="j-next", patient_id="60181",
                                claims=[{"claim_id": "5590", "amount": "5.00"}])
        assert nxt["ok"] and nxt["state"] == "pending", nxt
        assert (await app.command("charge.cancel", job_id="j-next"))["ok"]

        final = await app.wait_event("j-u", final=True, timeout=30)
        elapsed = time.monotonic() - t_swipe
        assert elapsed < 25, elapsed
        mine = [r for r in athena_sim.control("/_sim/receipts")["receipts"]
                if r["epaymentid"] not in ("80001", "80002")]
        if applied:
            assert final["state"] == "succeeded", final
            assert len(mine) == 1 and mine[0]["amount"] == "40.00"
            assert final["epayment_id"] == str(mine[0]["epaymentid"])
            assert final["error"] is None
        else:
            assert final["state"] == "failed", final
            assert final["error"]["code"] == "not_charged"
            assert "epayment_id" not in final or final["epayment_id"] is None
            assert mine == []
            # two settled reads at least: both after submission + reconcile_settle_s
            submitted = datetime.fromisoformat(
                app.job_events("j-u")[2]["at"].replace("Z", "+00:00"))
            settled = [c for c in receipts_reads(athena_sim)
                       if (datetime.fromisoformat(c["at"]) - submitted).total_seconds()
                       >= agent.settle_s - 1]  # event times are whole seconds
            assert len(settled) >= 2, receipts_reads(athena_sim)

        states = [e["state"] for e in app.job_events("j-u")]
        assert states == ["pending", "card_read", "submitting", "unknown", final["state"]]
        assert [e["seq"] for e in app.job_events("j-u")] == [1, 2, 3, 4, 5]
        assert sum(1 for e in app.job_events("j-u") if e["final"]) == 1
        assert len(athena_sim.posts(PATIENT)) == 1
        assert athena_sim.posts("60181") == []
        got = await app.command("charge.get", job_id="j-u")
        assert got["job"] == final
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)
