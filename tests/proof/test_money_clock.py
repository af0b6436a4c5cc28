"""Never a false ``not_charged`` (protocol.md 6): the agent, as a process, reconciles
unknown outcomes while its wall clock is wrong (libfaketime: +-90 s, +-10 min), with
receipts that have no seconds, in November's repeated hour, and with two unknown jobs of
one patient, total and card. Every case: at most one POST per job, the final state tells
the truth (a charge that landed ends ``succeeded`` with its receipt's epayment id; one
that did not ends ``failed``/``not_charged``), and the terminal is free again.

The athena simulator runs on the true clock (its ``Date`` headers and ``requestdate``s are
athena's clock); only the agent's clock is off, as on a Raspberry Pi whose clock NTP has
not fixed yet.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
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
    faketime_env,
    started,
)

pytestmark = pytest.mark.skipif(shutil.which("faketime") is None,
                                reason="libfaketime missing (scripts/setup --test installs it)")

PATIENT = "60178"
CLAIMS = [{"claim_id": "5569", "amount": "40.00"}]


@pytest.fixture
def pty_reader() -> Iterator[PtyReader]:
    r = PtyReader()
    yield r
    r.close()


def make_sim(tmp: Path, env: dict[str, str] | None = None) -> AthenaSimProcess:
    sim = AthenaSimProcess(tmp, env=env)
    sim.start()
    return sim


def make_agent(tmp: Path, port: int, sim: AthenaSimProcess, reader: PtyReader,
               clock: str | None) -> AgentProcess:
    a = AgentProcess(tmp, port, sim.info, reader.path)
    a.athena_timeout_s = 2
    if clock is not None:
        a.env = faketime_env(clock)
    return a


def my_receipts(sim: AthenaSimProcess) -> list[dict[str, Any]]:
    return [r for r in sim.control("/_sim/receipts")["receipts"]
            if r["epaymentid"] not in ("80001", "80002")]


async def charge_lost(app: AppClient, sim: AthenaSimProcess, reader: PtyReader, job_id: str,
                      *, applied: bool) -> None:
    """charge.start, then a swipe whose POST answer is lost (the charge ``applied`` or
    not); returns once the job is ``unknown`` and the terminal idle."""
    await app.wait_retained("state", lambda s: s["reader"]["connected"], timeout=20)
    rep = await app.command("charge.start", job_id=job_id, patient_id=PATIENT, claims=CLAIMS)
    assert rep["ok"], rep
    sim.fault(kind="drop", apply=applied)
    reader.swipe(CANARY_TRACKS)
    await app.wait_event(job_id, "unknown", timeout=20)
    await app.wait_retained("state", lambda s: s["job_state"] == "idle", timeout=20)


def check_final(app: AppClient, final: dict[str, Any], sim: AthenaSimProcess, *,
                charged_ids: list[str] | None) -> None:
    if charged_ids:
        assert final["state"] == "succeeded", final
        assert final["epayment_id"] in charged_ids
    else:
        assert final["state"] == "failed", final
        assert final["error"]["code"] == "not_charged", final
    events = app.job_events(final["job_id"])
    assert sum(1 for e in events if e["final"]) == 1


@pytest.mark.parametrize(("clock", "date_format"), [
    ("+90s", "minutes"), ("-90s", "seconds"), ("+600s", "seconds"), ("-600s", "minutes"),
], ids=["fast-90s-no-seconds", "slow-90s", "fast-10min", "slow-10min-no-seconds"])
@pytest.mark.parametrize("applied", [True, False], ids=["charged", "not-charged"])
async def test_a_wrong_terminal_clock_never_gives_a_false_verdict(
    tmp_path: Path, mosquitto: Any, pty_reader: PtyReader, clock: str, date_format: str,
    applied: bool,
) -> None:
    sim = make_sim(tmp_path)
    agent = make_agent(tmp_path, mosquitto.port, sim, pty_reader, clock)
    try:
        sim.control("/_sim/receipt-date-format", {"format": date_format})
        async with AppClient(mosquitto.port, agent.terminal_id) as app:
            await started(agent, app)
            await charge_lost(app, sim, pty_reader, "j-clock", applied=applied)
            final = await app.wait_event("j-clock", final=True, timeout=40)
            mine = my_receipts(sim)
            assert len(mine) == (1 if applied else 0)
            check_final(app, final, sim,
                        charged_ids=[str(r["epaymentid"]) for r in mine] if applied else None)
            assert len(sim.posts(PATIENT)) == 1
            # the agent knows how far off it is: athena minus terminal, within a second
            state = await app.wait_retained("state", lambda s: s["job_state"] == "idle")
            off = state["clock"]["athena_offset_s"]
            expect = -float(clock.rstrip("s"))
            assert off is not None and abs(off - expect) < 2.5, state["clock"]
            assert agent.terminate() == 0
        assert_no_canary(agent=agent, app=app)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        sim.stop()


@pytest.mark.parametrize("applied", [True, False], ids=["charged", "not-charged"])
async def test_a_receipt_in_novembers_repeated_hour(
    tmp_path: Path, mosquitto: Any, pty_reader: PtyReader, applied: bool,
) -> None:
    """Both run on 2026-11-01 06:30 UTC: 01:30 EST, the second 01:30 of that night. The
    receipt's requestdate reads "11/01/2026 01:30:..", which as EDT would be an hour before
    the charge; the agent must read it both ways and find it."""
    when = "@2026-11-01 06:30:00"
    sim = make_sim(tmp_path, env=faketime_env(when))
    agent = make_agent(tmp_path, mosquitto.port, sim, pty_reader, when)
    try:
        async with AppClient(mosquitto.port, agent.terminal_id) as app:
            await started(agent, app)
            await charge_lost(app, sim, pty_reader, "j-fold", applied=applied)
            final = await app.wait_event("j-fold", final=True, timeout=40)
            mine = my_receipts(sim)
            assert all(r["requestdate"].startswith("11/01/2026 01:3") for r in mine), mine
            check_final(app, final, sim,
                        charged_ids=[str(r["epaymentid"]) for r in mine] if applied else None)
            assert len(sim.posts(PATIENT)) == 1
            assert agent.terminate() == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        sim.stop()


async def test_two_unknown_jobs_of_one_patient_total_and_card(
    tmp_path: Path, mosquitto: Any, pty_reader: PtyReader,
) -> None:
    """Job A's POST is lost before athena took it; the patient swipes again at once and
    job B's POST charges, but its answer is lost too. One receipt, two unknown jobs: B
    must end succeeded with it and A not_charged (before, A could take B's receipt and B
    end not_charged: the app would charge B's items again)."""
    sim = make_sim(tmp_path)
    agent = make_agent(tmp_path, mosquitto.port, sim, pty_reader, "+90s")
    try:
        async with AppClient(mosquitto.port, agent.terminal_id) as app:
            await started(agent, app)
            await charge_lost(app, sim, pty_reader, "j-a", applied=False)
            # the app starts the new charge and the patient swipes again: a few seconds
            # (attempts less than about a second apart cannot be told apart at athena's
            # one-second resolution: both would stay unknown, see docs/jobs.md)
            await asyncio.sleep(3)
            await charge_lost(app, sim, pty_reader, "j-b", applied=True)
            fa = await app.wait_event("j-a", final=True, timeout=60)
            fb = await app.wait_event("j-b", final=True, timeout=60)
            mine = my_receipts(sim)
            assert len(mine) == 1
            check_final(app, fb, sim, charged_ids=[str(mine[0]["epaymentid"])])
            check_final(app, fa, sim, charged_ids=None)
            assert len(sim.posts(PATIENT)) == 2  # one per job
            assert agent.terminate() == 0
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        sim.stop()
