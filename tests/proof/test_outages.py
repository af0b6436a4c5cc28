"""Outages while jobs run, recovered without restarting the agent: the broker down and
back in each job state, athena down / 429 / token lockout / 5xx / HTML pages for reads
and for the POST, the reader unplugged and a new one plugged at the same path mid-job.
After each: nothing lost, one POST at most, the right final state, and the retained
``state`` topic says what is going on (reader.connected, athena.last_error, outbox)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from tests.e2e.harness import AppClient, AthenaSimProcess, subprocess_env
from tests.proof.rig import PATIENT, Parts, QuietApp, Run, receipts_of, states_of, wait_online

FULL = ["pending", "card_read", "submitting", "succeeded"]


async def start(app: AppClient, job: str, amount: str) -> None:
    rep = await app.command("charge.start", job_id=job, patient_id=PATIENT,
                            claims=[{"claim_id": "5569", "amount": amount}], timeout=15)
    assert rep["ok"], rep
    await app.wait_event(job, "pending")


async def test_broker_down_and_back_in_every_job_state(parts: Parts) -> None:
    run = parts.new_run("broker")
    broker, sim = parts.broker, parts.sim
    ident = "app-outage"
    try:
        app = QuietApp(broker.port, run.agent.terminal_id, identifier=ident, clean_session=False)
        await app.__aenter__()
        run.agent.start()
        await wait_online(app, 1)

        async def outage(during: Any) -> QuietApp:
            """Stop the broker, run ``during`` while it is down, start it, reconnect the
            app on its persistent session (QoS 1 messages were queued for it)."""
            nonlocal app
            await app.__aexit__(None, None, None)
            broker.stop()
            await during()
            broker.start()
            fresh = QuietApp(broker.port, run.agent.terminal_id, identifier=ident,
                             clean_session=False)
            fresh.events, fresh.seen = app.events, app.seen  # one record across sessions
            await fresh.__aenter__()
            app = fresh
            return fresh

        # 1. pending: the card is swiped and charged while the broker is away
        await start(app, "b-pending", "4.01")
        async def swipe_and_wait() -> None:
            run.swipe()
            await asyncio.sleep(1.5)
        await outage(swipe_and_wait)
        await app.wait_event("b-pending", final=True, timeout=40)
        assert states_of(app, "b-pending") == FULL

        # 2. submitting: the POST is in flight when the broker goes, answers while it's away
        await start(app, "b-submit", "4.02")
        sim.fault(kind="slow", seconds=1.5, apply=True)
        run.swipe()
        await app.wait_event("b-submit", "submitting")
        await outage(lambda: asyncio.sleep(2.5))
        await app.wait_event("b-submit", final=True, timeout=40)
        assert states_of(app, "b-submit") == FULL

        # 3. unknown: reconciling while the broker is away
        await start(app, "b-unknown", "4.03")
        sim.fault(kind="drop", apply=True)
        run.swipe()
        await app.wait_event("b-unknown", "unknown", timeout=20)
        await outage(lambda: asyncio.sleep(2.5))
        final = await app.wait_event("b-unknown", final=True, timeout=40)
        assert final["state"] == "succeeded"

        # 4. after the final event: nothing to re-send, the terminal takes a new job
        await outage(lambda: asyncio.sleep(1.0))
        st = await app.wait_retained(
            "state", lambda s: s["outbox"] == 0 and s["job_state"] == "idle", timeout=40)
        assert st["reader"]["connected"] is True
        await start(app, "b-after", "4.04")
        run.swipe()
        assert (await app.wait_event("b-after", final=True))["state"] == "succeeded"

        # never restarted; one POST per job; every job ended as athena says
        status = await app.wait_retained("status", lambda s: s["online"] is True)
        assert status["session"] == 1 and run.agent.alive()
        posts = sim.posts(PATIENT)
        assert len(posts) == 4, [p["form"].get("otheramount") for p in posts]
        for amount in ("4.01", "4.02", "4.03", "4.04"):
            assert len(receipts_of(sim, amount)) == 1
        for job in ("b-pending", "b-submit", "b-unknown", "b-after"):
            got = await app.command("charge.get", job_id=job)
            assert got["job"]["state"] == "succeeded"
        await app.__aexit__(None, None, None)
    finally:
        run.close()


async def test_athena_outages_for_reads_and_the_post(parts: Parts) -> None:
    run = parts.new_run("athena")
    sim = parts.sim
    n = 0
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)

            async def read_fails(fault: dict[str, Any], codes: set[str]) -> dict[str, Any]:
                sim.fault(**fault)
                rep = await app.command("balance.get", patient_id=PATIENT, timeout=20)
                assert not rep["ok"] and rep["error"]["code"] in codes, (fault, rep)
                st = await app.wait_retained(
                    "state", lambda s: s["athena"]["last_error"] is not None)
                # recovered without a restart: the next read works
                for _ in range(20):
                    ok = await app.command("balance.get", patient_id=PATIENT, timeout=20)
                    if ok["ok"]:
                        break
                    await asyncio.sleep(0.5)
                assert ok["ok"], (fault, ok)
                return st

            unavailable = {"athena_unavailable"}
            await read_fails({"kind": "status", "endpoint": "patient", "status": 503,
                              "count": 10}, unavailable)
            await read_fails({"kind": "html", "endpoint": "patient", "status": 502,
                              "count": 10}, unavailable | {"athena_bad_response"})
            await read_fails({"kind": "html", "endpoint": "patient", "status": 200},
                             unavailable | {"athena_bad_response"})
            await read_fails({"kind": "throttle", "endpoint": "patient", "retry_after": 5,
                              "count": 10}, unavailable)
            await read_fails({"kind": "over_qps", "endpoint": "patient", "count": 10},
                             unavailable)
            # the token endpoint locked for a while (athena: too many token requests)
            # (with Retry-After; without one the client waits out the rest of the minute,
            # as athena's lockout does)
            sim.fault(kind="token_lockout", seconds=2, retry_after=2)
            sim.fault(kind="expire_tokens")
            rep = await app.command("balance.get", patient_id=PATIENT, timeout=20)
            assert not rep["ok"] and rep["error"]["code"] == "athena_unavailable", rep
            await app.wait_retained("state", lambda s: "token" in str(s["athena"]["last_error"]))
            await asyncio.sleep(3.2)
            for _ in range(20):
                if (await app.command("balance.get", patient_id=PATIENT, timeout=20))["ok"]:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError("no recovery after the token lockout")

            # the POST under each fault: final state must match athena's receipts
            expect = {
                "status503": ({"kind": "status", "endpoint": "collectpayment", "status": 503},
                              {"failed"}),
                "status500_after_charge": ({"kind": "status", "endpoint": "collectpayment",
                                            "status": 500, "apply": True}, {"succeeded"}),
                "html502": ({"kind": "html", "endpoint": "collectpayment", "status": 502},
                            {"failed"}),
                "throttle429": ({"kind": "throttle", "endpoint": "collectpayment"}, {"failed"}),
                "slow_not_applied": ({"kind": "slow", "seconds": 4, "apply": False},
                                     {"failed"}),
                "slow_applied": ({"kind": "slow", "seconds": 4, "apply": True}, {"succeeded"}),
                "drop_applied": ({"kind": "drop", "apply": True}, {"succeeded"}),
            }
            for name, (fault, finals) in expect.items():
                n += 1
                amount = f"5.{n:02d}"
                job = f"a-{name}"
                await start(app, job, amount)
                sim.fault(**fault)
                run.swipe()
                final = await app.wait_event(job, final=True, timeout=40)
                charged = len(receipts_of(sim, amount))
                assert charged <= 1
                assert final["state"] in finals, (name, final)
                assert (final["state"] == "succeeded") == (charged == 1), (name, final)
                if final["state"] == "failed":
                    assert final["error"]["code"] in (
                        "athena_unavailable", "athena_rejected", "not_charged"), final
            posts = sim.posts(PATIENT)
            assert len(posts) == len(expect)  # one POST per job, never a retry
            assert run.agent.alive()
            assert (await app.command("ping"))["state"]["athena"]["last_ok_at"] is not None
    finally:
        run.close()


async def test_athena_down_entirely_and_back(parts: Parts) -> None:
    """The simulator process killed (connection refused) and started again on the same
    port with the same credentials: typed errors meanwhile, recovery without a restart."""
    run = parts.new_run("athena-down")
    sim = parts.sim
    port = sim.base_url.rsplit(":", 1)[1].split("/")[0]
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            assert (await app.command("balance.get", patient_id=PATIENT))["ok"]
            await start(app, "down-1", "6.01")
            sim.stop()
            rep = await app.command("balance.get", patient_id=PATIENT, timeout=20)
            assert rep["error"]["code"] == "athena_unavailable", rep
            run.swipe()  # the POST cannot be sent: failed, nothing charged
            final = await app.wait_event("down-1", final=True, timeout=30)
            assert final["state"] == "failed", final
            st = await app.wait_retained("state", lambda s: s["athena"]["last_error"])
            assert st["athena"]["last_error"]["code"] == "athena_unavailable"
            # back on the same port (a fresh process: the agent's token is unknown to it)
            info = sim.info
            with open(sim.tmp / "sim2.stderr", "wb") as err:  # noqa: ASYNC230
                sim.proc = subprocess.Popen(  # noqa: ASYNC220, S603
                    [sys.executable, "-m", "lobbypay.sim.athena", "--port", port,
                     "--client-id", info["client_id"], "--client-secret",
                     info["client_secret"], "--practice", info["practice_id"]],
                    stdout=subprocess.PIPE, stderr=err, text=True, env=subprocess_env())
            assert sim.proc.stdout is not None
            assert json.loads(sim.proc.stdout.readline())["base_url"] == sim.base_url
            for _ in range(30):
                rep = await app.command("balance.get", patient_id=PATIENT, timeout=20)
                if rep["ok"]:
                    break
                await asyncio.sleep(0.5)
            assert rep["ok"], rep
            await start(app, "down-2", "6.02")
            run.swipe()
            assert (await app.wait_event("down-2", final=True, timeout=30))["state"] == "succeeded"
            assert run.agent.alive()
    finally:
        run.close()


async def test_reader_unplugged_and_a_new_one_plugged_mid_job(parts: Parts) -> None:
    run: Run = parts.new_run("reader")
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            await app.wait_retained("state", lambda s: s["reader"]["connected"] is True)
            await start(app, "r-1", "7.01")
            run.replug.unplug()
            st = await app.wait_retained("state", lambda s: s["reader"]["connected"] is False,
                                         timeout=15)
            assert st["job_state"] == "pending"  # the job waits; the app can tell why
            await asyncio.sleep(1.0)
            run.replug.plug()  # a new pty behind the same configured path
            await app.wait_retained("state", lambda s: s["reader"]["connected"] is True,
                                    timeout=30)
            run.swipe()
            final = await app.wait_event("r-1", final=True, timeout=20)
            assert final["state"] == "succeeded"
            assert states_of(app, "r-1") == FULL
            assert run.agent.alive()
    finally:
        run.close()


def test_sim_restart_helper_knows_its_port(parts: Parts) -> None:
    assert isinstance(parts.sim, AthenaSimProcess) and parts.sim.base_url.startswith("http://")
