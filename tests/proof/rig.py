"""The proof rig: real parts wired for the crash matrix, outages, fuzzing, leaks and load.

Used by the CI-sized tests in tests/proof/ and by ``scripts/prove`` (the long runs). It
builds on the end-to-end harness (tests/e2e/harness.py): the agent is ``python -m lobbypay
run`` in a subprocess, athena is the simulator in another process, the reader is a pty
(behind a symlink, so it can be unplugged and a new one plugged at the same path), the
broker is a real mosquitto.

Every figure a scenario reports comes from outside the agent: MQTT traffic seen by an app
client, the simulator's call log and receipts, and the agent process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    CANARY_PAN,
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    subprocess_env,
)
from tests.fakes.mosquitto import Mosquitto
from tests.fakes.pty import PtyPort, Replug

PATIENT = "60178"
#: A total no seeded receipt has: a receipt of this amount is this run's charge.
AMOUNT = "12.34"
CLAIMS = [{"claim_id": "5569", "amount": AMOUNT}]
FINAL_STATES = {"succeeded", "declined", "failed", "canceled", "expired"}
#: Card data that must never leave the card code (the canary and its track-1 name).
NEEDLES = (CANARY_PAN.encode(), b"SANDBOXTEST/JANE", CANARY_TRACKS.encode())


def states_of(app: AppClient, job_id: str) -> list[str]:
    by_seq = {e["seq"]: e["state"] for e in app.job_events(job_id)}
    return [by_seq[s] for s in sorted(by_seq)]


class QuietApp(AppClient):
    """The harness app client without the ``cmd`` topic: it reads only what the agent
    writes (fuzzers put payloads on ``cmd`` that no JSON parser should be asked to read)."""

    async def __aenter__(self) -> QuietApp:
        import aiomqtt

        self._client = aiomqtt.Client("127.0.0.1", self.port, identifier=self.identifier,
                                      clean_session=self.clean_session)
        await self._client.__aenter__()
        for kind in ("reply", "events", "status", "state"):
            await self._client.subscribe(f"{self.prefix}/{kind}", qos=1)
        self._task = asyncio.create_task(self._rx())
        return self


class ProofAgent(AgentProcess):
    """The harness agent with extra environment (crash points) and a pty behind a link."""

    env_extra: dict[str, str]
    #: the harness logs at debug (every MQTT packet); load runs use "info", as deployed
    log_level: str = "debug"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.env_extra = {}

    def write_config(self) -> Path:
        path = super().write_config()
        text = path.read_text().replace('level = "debug"', f'level = "{self.log_level}"')
        path.write_text(text)
        return path

    def start(self) -> None:
        if not self.config_path.exists():
            self.write_config()
        self.runs += 1
        env = subprocess_env()
        env.pop("LOBBYPAY_FAILPOINTS", None)
        env.pop("LOBBYPAY_TEST_MODE", None)
        env.update(self.env_extra)
        with open(self.tmp / f"agent-{self.runs}.log", "wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "lobbypay", "run", "--config", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def rss_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB from /proc."""
        assert self.proc is not None
        rss = hwm = 0
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return rss, hwm


@dataclass
class Parts:
    """One broker, one simulator, one reader link: shared by the runs of a rig."""

    root: Path
    broker: Mosquitto
    sim: AthenaSimProcess
    runs: int = 0

    @classmethod
    @contextlib.contextmanager
    def up(cls, root: Path, *, extra_conf: str = "", **broker_options: Any) -> Iterator[Parts]:
        root.mkdir(parents=True, exist_ok=True)
        broker = Mosquitto(root / "broker", **broker_options)
        if os.environ.get("LOBBYPAY_PROOF_NODELAY") == "1":
            extra_conf += "set_tcp_nodelay true\n"
        if extra_conf:
            broker.conf.write_text(broker.conf.read_text() + extra_conf)
        broker.start()
        sim = AthenaSimProcess(root)
        try:
            sim.start()
            yield cls(root, broker, sim)
        finally:
            sim.stop()
            broker.kill()

    def new_run(self, name: str) -> Run:
        """A fresh agent (own state_dir and terminal id) and reader link; the simulator is
        reset (fixtures, faults and its call log), so its log is this run's alone."""
        self.runs += 1
        d = self.root / f"{self.runs:04d}-{name}"
        d.mkdir(parents=True)
        self.sim.control("/_sim/reset", {})
        replug = Replug(d / "reader")
        port = replug.plug()
        agent = ProofAgent(d, self.broker.port, self.sim.info, str(replug.link),
                           terminal_id=f"p-{uuid.uuid4().hex[:10]}")
        return Run(self, d, agent, replug, port)


@dataclass
class Run:
    parts: Parts
    dir: Path
    agent: ProofAgent
    replug: Replug
    port: PtyPort

    def swipe(self, tracks: str = CANARY_TRACKS) -> None:
        assert self.replug.port is not None
        self.replug.port.write(tracks.encode("ascii") + b"\r")

    async def feed(self, data: bytes, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Write to the reader pty, waiting while its buffer is full (the agent reads)."""
        end = time.monotonic() + timeout
        while data:
            assert self.replug.port is not None
            try:
                n = os.write(self.replug.port.master, data)
                data = data[n:]
            except BlockingIOError:
                if time.monotonic() > end:
                    raise TimeoutError("the reader pty is not being read") from None
                await asyncio.sleep(0.005)

    def close(self) -> None:
        self.agent.stop()
        self.replug.close()


async def wait_online(app: AppClient, session: int, timeout: float = 20) -> None:  # noqa: ASYNC109
    await app.wait_retained(
        "status", lambda s: s.get("online") is True and s.get("session") == session,
        timeout=timeout)


async def wait_dead(agent: ProofAgent, timeout: float) -> bool:  # noqa: ASYNC109
    end = time.monotonic() + timeout
    while agent.alive():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def receipts_of(sim: AthenaSimProcess, amount: str = AMOUNT) -> list[dict[str, Any]]:
    return [r for r in sim.control("/_sim/receipts")["receipts"]
            if r.get("amount") == amount and str(r.get("patientid")) == PATIENT]


# ------------------------------------------------------------------ crash matrix

#: scenario -> (crash point or None for an external kill, simulator fault or None)
CRASH_SCENARIOS: dict[str, tuple[str | None, dict[str, Any] | None]] = {
    "after_accept": ("after_accept", None),
    "after_card_read": ("after_card_read", None),
    "after_submit_journal": ("after_submit_journal", None),
    "post_in_flight_charged": (None, {"kind": "slow", "seconds": 6, "apply": True}),
    "post_in_flight_not_charged": (None, {"kind": "slow", "seconds": 6, "apply": False}),
    "after_response": ("after_response", None),
    "before_publish": ("before_publish", None),
    # the 4th event of a charge is its final one (pending, card_read, submitting, final)
    "after_publish_before_ack": ("after_publish_before_ack@4", None),
}


@dataclass
class CrashResult:
    scenario: str
    crashed: bool = False
    lost: bool = False  # the journal forgot the job (charge.get: unknown_job)
    no_final: bool = False  # the app never saw a final event
    posts: int = 0  # collectpayment POSTs the simulator received for this job
    charged: bool = False  # a receipt exists (the payment landed)
    final: str | None = None
    wrong_final: bool = False
    inconsistent: bool = False  # events disagree (gaps, two finals, charge.get differs)
    seconds: float = 0.0
    note: str = ""
    states: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.crashed and not self.lost and not self.no_final and self.posts <= 1
                and not self.wrong_final and not self.inconsistent)


async def crash_run(parts: Parts, scenario: str) -> CrashResult:
    """One charge killed at ``scenario``, the agent restarted, the outcome checked."""
    point, fault = CRASH_SCENARIOS[scenario]
    res = CrashResult(scenario)
    t0 = time.monotonic()
    run = parts.new_run(scenario)
    agent = run.agent
    if point is not None:
        agent.env_extra = {"LOBBYPAY_FAILPOINTS": point, "LOBBYPAY_TEST_MODE": "1"}
    job = f"j-{uuid.uuid4().hex[:8]}"
    start = {"job_id": job, "patient_id": PATIENT, "claims": CLAIMS}
    try:
        async with AppClient(parts.broker.port, agent.terminal_id) as app:
            agent.start()
            await wait_online(app, 1)
            if fault is not None:
                parts.sim.fault(**fault)
            rid = uuid.uuid4().hex
            await app.send_raw(_cmd("charge.start", rid, **start))
            if point != "after_accept":
                rep = await app.wait_reply(rid, timeout=10)
                if not rep.get("ok"):
                    res.note = f"charge.start refused: {rep.get('error')}"
                    return res
                await app.wait_event(job, "pending", timeout=10)
                run.swipe()
            if point is None:
                # the POST is in flight: the simulator has it and holds the answer
                await app.wait_event(job, "submitting", timeout=10)
                end = time.monotonic() + 5
                while not parts.sim.posts(PATIENT) and time.monotonic() < end:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                agent.kill9()
            res.crashed = await wait_dead(agent, 15)
            if not res.crashed:
                res.note = "the crash point was not reached"
                return res
            agent.env_extra = {}
            agent.start()
            await wait_online(app, 2)
            if point == "after_accept":
                # the app never got a reply: it retries with the same job_id (protocol 4)
                rep = await app.command("charge.start", **start, timeout=10)
                if not rep.get("ok"):
                    res.note = f"retry refused: {rep.get('error')}"
            try:
                final = await app.wait_event(job, final=True, timeout=30)
                res.final = final["state"]
            except TimeoutError:
                res.no_final = True
            got = await app.command("charge.get", job_id=job, timeout=10)
            if not got.get("ok"):
                res.lost = True
            res.states = states_of(app, job)
            res.posts = len(parts.sim.posts(PATIENT))
            receipts = receipts_of(parts.sim)
            res.charged = bool(receipts)
            if res.final is not None:
                if res.charged:
                    res.wrong_final = not (
                        res.final == "succeeded" and len(receipts) == 1
                        and final.get("epayment_id") == str(receipts[0].get("epaymentid")))
                else:
                    res.wrong_final = res.final == "succeeded"
            res.inconsistent = _inconsistent(app, job, got)
            if res.wrong_final or res.inconsistent:
                res.note = f"states {res.states}, receipts {len(receipts)}"
    except TimeoutError as exc:
        res.note = f"timeout: {exc!r}"
        res.no_final = res.no_final or res.final is None
    finally:
        run.close()
        res.seconds = time.monotonic() - t0
    return res


def _inconsistent(app: AppClient, job: str, got: dict[str, Any]) -> bool:
    evs = app.job_events(job)
    by_seq: dict[int, dict[str, Any]] = {}
    for ev in evs:
        prev = by_seq.setdefault(ev["seq"], ev)
        if prev != ev:  # a re-sent event must be the same event
            return True
    seqs = sorted(by_seq)
    if seqs != list(range(1, len(seqs) + 1)):
        return True
    finals = [e for e in by_seq.values() if e.get("final")]
    if len(finals) != 1 or finals[0]["seq"] != seqs[-1]:
        return True
    return not got.get("ok") or got["job"] != by_seq[seqs[-1]]


def _cmd(type_: str, rid: str, **fields: Any) -> str:
    import json

    return json.dumps({"v": 1, "type": type_, "request_id": rid, **fields})


def crash_table(results: list[CrashResult]) -> str:
    rows: dict[str, list[CrashResult]] = {}
    for r in results:
        rows.setdefault(r.scenario, []).append(r)
    head = ("scenario", "runs", "crashed", "lost", "no final", "max POSTs", "charged",
            "wrong final", "inconsistent", "finals")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, rs in rows.items():
        finals: dict[str, int] = {}
        for r in rs:
            finals[str(r.final)] = finals.get(str(r.final), 0) + 1
        lines.append(" | ".join(str(x) for x in (
            name, len(rs), sum(r.crashed for r in rs), sum(r.lost for r in rs),
            sum(r.no_final for r in rs), max(r.posts for r in rs), sum(r.charged for r in rs),
            sum(r.wrong_final for r in rs), sum(r.inconsistent for r in rs),
            " ".join(f"{k}:{v}" for k, v in sorted(finals.items())))))
    return "\n".join("| " + line + " |" for line in lines)


def scan_for_card_data(blobs: list[tuple[str, bytes]]) -> list[str]:
    """Names of the blobs that hold card data."""
    return [name for name, data in blobs if any(n in data for n in NEEDLES)]


def state_files(state_dir: Path) -> list[tuple[str, bytes]]:
    out = []
    for p in state_dir.rglob("*"):
        if p.is_file():
            with contextlib.suppress(OSError):
                out.append((str(p), p.read_bytes()))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
