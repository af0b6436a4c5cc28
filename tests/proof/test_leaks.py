"""Card data leaks nowhere: the canary PAN 4111111111111111 (and its track text) is swiped
through every path of a real agent (success, decline, unknown outcome reconciled, athena's
error text quoting the track, a 5xx HTML page after the POST, bad swipes, a crash with
the card in memory) while a sniffer subscribed to ``#`` records all MQTT traffic. Then
the traffic, the agent's stdout/stderr (logging at debug, exception tracebacks
included), every file under state_dir (the SQLite database and its WAL/SHM, sampled
while the agent runs and after it stopped) and every reply are searched for it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiomqtt

from tests.e2e.harness import CANARY_PAN, CANARY_TRACKS, AppClient
from tests.proof.rig import (
    NEEDLES,
    PATIENT,
    Parts,
    scan_for_card_data,
    state_files,
    wait_dead,
    wait_online,
)


class Sniffer:
    """Every message on the broker (``#``), raw."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None
        self._client = aiomqtt.Client("127.0.0.1", port, identifier=f"sniff-{uuid.uuid4().hex[:6]}")

    async def __aenter__(self) -> Sniffer:
        await self._client.__aenter__()
        await self._client.subscribe("#", qos=1)
        self._task = asyncio.create_task(self._rx())
        return self

    async def _rx(self) -> None:
        async for m in self._client.messages:
            payload = bytes(m.payload) if isinstance(m.payload, bytes) else b""
            self.seen.append((str(m.topic), payload))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._client.__aexit__(None, None, None)


async def charge(app: AppClient, job: str, amount: str) -> dict[str, Any]:
    rep = await app.command("charge.start", job_id=job, patient_id=PATIENT,
                            claims=[{"claim_id": "5569", "amount": amount}])
    assert rep["ok"], rep
    await app.wait_event(job, "pending")
    return rep


async def test_canary_never_leaves_the_card_code(parts: Parts) -> None:
    run = parts.new_run("leaks")
    agent = run.agent
    sim = parts.sim
    snapshots: list[tuple[str, bytes]] = []
    finals: dict[str, str] = {}
    try:
        async with Sniffer(parts.broker.port) as sniff, \
                AppClient(parts.broker.port, agent.terminal_id) as app:
            agent.start()
            await wait_online(app, 1)

            async def swipe_to_final(job: str, amount: str, tracks: str = CANARY_TRACKS) -> None:
                await charge(app, job, amount)
                run.swipe(tracks)
                finals[job] = (await app.wait_event(job, final=True, timeout=20))["state"]
                snapshots.extend(state_files(agent.state_dir))  # WAL/SHM while running

            await swipe_to_final("ok", "1.01")
            sim.fault(kind="decline_next")
            await swipe_to_final("decline", "1.02")
            sim.fault(kind="drop", apply=False)  # outcome unknown, reconciled: not charged
            await swipe_to_final("unknown", "1.03")
            sim.fault(kind="echo_error")  # athena's 400 quotes our trackdata back
            await swipe_to_final("echo", "1.04")
            sim.fault(kind="html", endpoint="collectpayment", status=500)
            await swipe_to_final("html", "1.05")
            sim.fault(kind="body", endpoint="collectpayment", body='{"garbage": ' + CANARY_PAN)
            await swipe_to_final("garbage", "1.06")

            # bad swipes: broken tracks holding the canary; the job stays pending
            await charge(app, "bad", "1.07")
            for bad in (f"%B{CANARY_PAN}^SANDBOXTEST/JANE^", f";{CANARY_PAN}=",
                        f";{CANARY_PAN[:-1]}2=30121010000000000000?", f"{CANARY_PAN}\x00\xff"):
                run.replug.port.write(bad.encode("latin-1") + b"\r")  # type: ignore[union-attr]
            await asyncio.sleep(0.5)
            assert [e["state"] for e in app.job_events("bad")] == ["pending"]
            assert (await app.command("charge.cancel", job_id="bad"))["ok"]
            listed = await app.command("charge.list", limit=100)
            assert listed["ok"]

            # a crash with the card in memory (the POST answered, nothing journaled yet)
            agent.kill9()
            agent.env_extra = {"LOBBYPAY_FAILPOINTS": "after_response", "LOBBYPAY_TEST_MODE": "1"}
            agent.start()
            await wait_online(app, 2)
            await charge(app, "crash", "1.08")
            run.swipe()
            assert await wait_dead(agent, 15), "the crash point was not reached"
            snapshots.extend(state_files(agent.state_dir))
            agent.env_extra = {}
            agent.start()
            await wait_online(app, 3)
            finals["crash"] = (await app.wait_event("crash", final=True, timeout=20))["state"]
            snapshots.extend(state_files(agent.state_dir))
            assert agent.terminate() == 0
            await asyncio.sleep(0.3)
    finally:
        run.close()

    # the paths really were taken
    assert finals == {"ok": "succeeded", "decline": "declined", "unknown": "failed",
                      "echo": "failed", "html": finals["html"], "garbage": finals["garbage"],
                      "crash": "succeeded"}, finals
    assert {finals["html"], finals["garbage"]} <= {"failed", "succeeded"}
    # the card did reach athena (as a keyed hash in the simulator's record)
    assert any(((c.get("form") or {}).get("trackdata") or {}).get("last4") == "1111"
               for c in sim.posts(PATIENT))

    assert scan_for_card_data([("probe", b"x" + CANARY_PAN.encode())]) == ["probe"]
    assert len(sniff.seen) > 30
    assert scan_for_card_data([(t, p) for t, p in sniff.seen]) == []
    assert scan_for_card_data(list(app.seen)) == []
    logs = agent.logs().encode()
    assert not any(n in logs for n in NEEDLES), "card data in the agent's output"
    files = state_files(agent.state_dir) + snapshots
    names = {n.rsplit("/", 1)[-1] for n, _ in files}
    assert any(n.endswith("-wal") for n in names), names  # the WAL was really scanned
    assert scan_for_card_data(files) == []
