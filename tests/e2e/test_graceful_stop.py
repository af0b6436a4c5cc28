"""SIGTERM while a payment POST is in flight: the agent lets the POST finish (within the
unit's stop timeout), journals and publishes the result, then goes offline. No `unknown`,
no reconciliation needed, one POST."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.e2e.harness import (
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
    started,
    validate_all,
    wait_until,
)
from tests.e2e.test_resilience import CLAIMS, PATIENT, states_of


async def test_sigterm_waits_for_the_post_in_flight(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app, session=1)
        assert (await app.command("charge.start", job_id="j-g", patient_id=PATIENT,
                                  claims=CLAIMS))["ok"]
        athena_sim.fault(kind="slow", seconds=2, apply=True)
        pty_reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-g", "submitting")
        await wait_until(lambda: len(athena_sim.posts(PATIENT)) == 1, timeout=5)
        t0 = time.monotonic()
        assert agent.proc is not None
        rc = await asyncio.to_thread(agent.terminate, 20)
        assert rc == 0
        assert time.monotonic() - t0 >= 1.0  # it waited for athena's answer
        final = await app.wait_event("j-g", final=True, timeout=5)
        assert final["state"] == "succeeded"
        assert states_of(app, "j-g") == ["pending", "card_read", "submitting", "succeeded"]
        await app.wait_retained("status", lambda s: s.get("online") is False)
        assert len(athena_sim.posts(PATIENT)) == 1
        validate_all(app)
    assert_no_canary(agent=agent, app=app)
