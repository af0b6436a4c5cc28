"""Load: an app firing commands as fast as the agent answers them (ping, balance.get,
cancel storms, charge.start storms that meet terminal_busy) while a conductor runs real
charges through the middle of it; the agent's RSS is sampled from /proc all along."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.harness import AppClient
from tests.proof.fuzz import check_reply
from tests.proof.rig import PATIENT, Run


@dataclass
class LoadStats:
    seconds: float = 0.0
    sent: int = 0
    answered: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    charges_done: int = 0
    charge_states: Counter[str] = field(default_factory=Counter)
    rss_kib: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss, hwm)
    latency_s: dict[str, list[float]] = field(default_factory=dict)

    def latency(self) -> dict[str, dict[str, float]]:
        out = {}
        for kind, xs in sorted(self.latency_s.items()):
            xs = sorted(xs)
            out[kind] = {"p50_ms": round(1000 * xs[len(xs) // 2], 1),
                         "p99_ms": round(1000 * xs[min(len(xs) - 1, int(len(xs) * 0.99))], 1),
                         "max_ms": round(1000 * xs[-1], 1)}
        return out

    @property
    def unanswered(self) -> int:
        return self.sent - self.answered

    def rss_growth_kib(self) -> int:
        """Largest RSS in the last quarter minus the largest in the second quarter."""
        n = len(self.rss_kib)
        if n < 8:
            return 0
        q2 = max(r for _, r, _ in self.rss_kib[n // 4: n // 2])
        q4 = max(r for _, r, _ in self.rss_kib[3 * n // 4:])
        return q4 - q2

    def summary(self) -> dict[str, Any]:
        rss = [r for _, r, _ in self.rss_kib]
        return {
            "seconds": round(self.seconds, 1), "sent": self.sent, "answered": self.answered,
            "unanswered": self.unanswered,
            "answered_per_s": round(self.answered / self.seconds, 1) if self.seconds else None,
            "by_type": dict(self.by_type), "latency": self.latency(),
            "codes": dict(self.codes.most_common()),
            "problems": self.problems[:5], "charges_done": self.charges_done,
            "charge_states": dict(self.charge_states),
            "rss_kib": {"first": rss[0] if rss else None, "min": min(rss, default=None),
                        "max": max(rss, default=None), "last": rss[-1] if rss else None,
                        "hwm": self.rss_kib[-1][2] if self.rss_kib else None,
                        "growth_q2_to_q4": self.rss_growth_kib()},
        }


#: commands the agent answers without athena (a busy charge.start never reads athena)
FAST_MIX = ["ping", "ping", "ping", "charge.cancel", "charge.cancel", "charge.start",
            "charge.get", "charge.list"]


def _payload(i: int, kind: str, active: str | None) -> dict[str, Any]:
    rid = f"ld{i}"
    base: dict[str, Any] = {"v": 1, "type": kind, "request_id": rid}
    if kind == "balance.get":
        base["patient_id"] = PATIENT
    elif kind == "charge.cancel":
        # a storm on jobs that do not exist or already ended; never the conductor's job
        base["job_id"] = f"ghost-{i % 50}" if i % 3 else "c-0"
    elif kind == "charge.start":
        # terminal_busy while the conductor's job holds the terminal; otherwise refused by
        # the static checks (a copay needs an appointment) before any athena read, so the
        # storm never takes the terminal from the conductor (which starved it on 2 cores)
        base.update(job_id=f"storm-{i}", patient_id=PATIENT, copay="1.00")
    elif kind == "charge.get":
        base["job_id"] = active or "c-0"
    elif kind == "charge.list":
        base["limit"] = 20
    return base


async def run_load(run: Run, app: AppClient, seconds: float, *, window: int = 16) -> LoadStats:
    stats = LoadStats()
    agent = run.agent
    port, tid = run.parts.broker.port, agent.terminal_id
    inbox = f"load/{uuid.uuid4().hex[:8]}/in"
    sent_at: dict[int, bytes] = {}
    replies: dict[int, bytes] = {}
    sent_t: dict[int, float] = {}
    cond = asyncio.Condition()
    stop = asyncio.Event()
    conductor_job: list[str | None] = [None]

    async def sample_rss() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            rss, hwm = agent.rss_kib()
            stats.rss_kib.append((time.monotonic() - t0, rss, hwm))
            await asyncio.sleep(0.25)

    async def conductor() -> None:
        """Real charges through the storm: free the terminal of storm jobs, start, swipe."""
        k = 0
        while not stop.is_set():
            k += 1
            job = f"c-{k}"
            state = (await app.command("ping", timeout=30))["state"]
            if state["job_id"] is not None and state["job_state"] == "pending":
                await app.command("charge.cancel", job_id=state["job_id"], timeout=30)
            rep = await app.command("charge.start", job_id=job, patient_id=PATIENT,
                                    claims=[{"claim_id": "5569", "amount": "0.01"}],
                                    allow_duplicate=True, timeout=30)
            if not rep["ok"]:
                await asyncio.sleep(0.05)  # a storm start took the terminal first
                continue
            conductor_job[0] = job
            await app.wait_event(job, "pending", timeout=30)
            await asyncio.sleep(0.3)
            run.swipe()
            final = await app.wait_event(job, final=True, timeout=60)
            stats.charges_done += 1
            stats.charge_states[final["state"]] += 1
            conductor_job[0] = None
            await asyncio.sleep(0.5)

    client = aiomqtt.Client("127.0.0.1", port, identifier=f"load-{uuid.uuid4().hex[:6]}",
                            protocol=aiomqtt.ProtocolVersion.V5)
    async with client:
        await client.subscribe(inbox, qos=1)

        async def rx() -> None:
            async for m in client.messages:
                cd = getattr(m.properties, "CorrelationData", None)
                if cd is not None:
                    n = int.from_bytes(cd, "big")
                    async with cond:
                        replies[n] = bytes(m.payload)  # type: ignore[arg-type]
                        if n in sent_t:
                            stats.latency_s.setdefault(
                                json.loads(sent_at[n])["type"], []).append(
                                    time.monotonic() - sent_t[n])
                        cond.notify_all()

        tasks = [asyncio.create_task(rx()), asyncio.create_task(sample_rss())]
        cond_task = asyncio.create_task(conductor())
        t0 = time.monotonic()
        counter = [0]

        async def stream(kinds: list[str], window: int) -> None:
            """One app's stream: never more than ``window`` of its own unanswered."""
            mine: set[int] = set()
            k = 0
            while time.monotonic() - t0 < seconds and not cond_task.done():
                async with cond:
                    await asyncio.wait_for(cond.wait_for(
                        lambda mine=mine: sum(1 for n in mine if n not in replies) < window), 60)
                i = counter[0]
                counter[0] += 1
                kind = kinds[k % len(kinds)]
                k += 1
                raw = json.dumps(_payload(i, kind, conductor_job[0])).encode()
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = inbox
                props.CorrelationData = i.to_bytes(4, "big")
                sent_at[i] = raw
                sent_t[i] = time.monotonic()
                mine.add(i)
                await client.publish(f"lobbypay/v1/{tid}/cmd", raw, qos=1, properties=props)
                stats.by_type[kind] += 1
                if len(mine) > 4 * window:
                    mine = {n for n in mine if n not in replies}

        try:
            await asyncio.gather(stream(FAST_MIX, window), stream(["balance.get"], 8))
            i = counter[0]
            stats.sent = i
            try:
                async with cond:
                    await asyncio.wait_for(cond.wait_for(lambda: len(replies) >= i), 30)
            except TimeoutError:
                pass
            stats.seconds = time.monotonic() - t0
        finally:
            stop.set()
            cond_task.cancel()
            res = await asyncio.gather(cond_task, return_exceptions=True)
            if res and isinstance(res[0], BaseException) and not isinstance(
                    res[0], asyncio.CancelledError):
                stats.problems.append(f"conductor: {res[0]!r}")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    stats.answered = len(replies)
    for n, raw in sent_at.items():
        if n not in replies:
            stats.problems.append(f"case {n}: no reply")
            continue
        problem = check_reply(raw, replies[n])
        if problem:
            stats.problems.append(f"case {n}: {problem}")
        obj = json.loads(replies[n])
        stats.codes["ok" if obj.get("ok") else str(obj["error"]["code"])] += 1
    return stats
