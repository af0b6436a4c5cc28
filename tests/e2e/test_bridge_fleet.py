"""A fleet across sites: a real mosquitto per site bridged to a real central mosquitto on
loopback (the layout of docs/OPERATIONS.md, "A fleet over bridged brokers", with the
bridge settings of config/mosquitto-bridge.example), the agent as a process on the site
broker, the check-in app and `lobbypay fleet` on the central one.

The link between site and centre runs through ``LinkProxy``, a TCP forwarder the test
can cut (every connection reset, new ones refused) and restore, as a WAN link drops:
both brokers stay up and keep their sessions, only the bridge's connection goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from lobbypay import schemas
from lobbypay.client import TerminalClient, fleet

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
)
from tests.fakes.mosquitto import Mosquitto, free_port

#: `lobbypay fleet`'s own default (cli/parser.py --settle): the figure is for what an admin runs.
FLEET_SETTLE_S = 0.3
SCALE_TERMINALS = 200


class LinkProxy:
    """127.0.0.1:<port> forwarded to the central broker: the site's WAN link."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)

    async def cut(self) -> None:
        """The link drops: no new connections, every open one reset."""
        assert self._server is not None
        self._server.close()
        for a, b in list(self._pairs):
            a.transport.abort()
            b.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()


def bridge_lines(site: str, port: int, *, prefix: bool = False) -> tuple[str, ...]:
    """The site broker's bridge section: config/mosquitto-bridge.example's settings,
    pointed at ``port`` on loopback, without TLS and with fast reconnects."""
    topic = f'topic lobbypay/v1/# both 1 "" {site}/' if prefix else "topic lobbypay/v1/# both 1"
    return (
        "connection central",
        f"address 127.0.0.1:{port}",
        f"remote_clientid lobbypay-bridge-{site}",
        "bridge_protocol_version mqttv311",
        topic,
        "cleansession false",
        "local_cleansession false",
        "restart_timeout 1",
        "keepalive_interval 5",
        "notifications true",
    )


def link_topic(site: str) -> str:
    return f"$SYS/broker/connection/lobbypay-bridge-{site}/state"


class Watch:
    """A plain subscriber that keeps the last payload of each topic it sees."""

    def __init__(self, port: int, *topics: str) -> None:
        self.port = port
        self.topics = topics
        self.last: dict[str, bytes] = {}
        self._cond = asyncio.Condition()
        self._client = aiomqtt.Client("127.0.0.1", port,
                                      identifier=f"watch-{uuid.uuid4().hex[:8]}")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        await self._client.__aenter__()
        for t in self.topics:
            await self._client.subscribe(t, qos=1)
        self._task = asyncio.create_task(self._rx())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _rx(self) -> None:
        async for msg in self._client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            async with self._cond:
                self.last[str(msg.topic)] = payload
                self._cond.notify_all()

    async def wait(self, topic: str, pred: Callable[[bytes], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: topic in self.last and pred(self.last[topic]))


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an app keeps: one event per seq. Copies must be identical (QoS 1 redelivery)."""
    by_seq: dict[int, dict[str, Any]] = {}
    for ev in events:
        first = by_seq.setdefault(ev["seq"], ev)
        assert first == ev, f"two different events with seq {ev['seq']}: {first} / {ev}"
    return [by_seq[s] for s in sorted(by_seq)]


@contextlib.asynccontextmanager
async def linked_site(mosquitto_factory: Callable[..., Mosquitto], central: Mosquitto,
                      site: str, *, prefix: bool = False,
                      proxy: LinkProxy | None = None) -> AsyncIterator[Mosquitto]:
    port = proxy.port if proxy else central.port
    broker = mosquitto_factory(extra_lines=bridge_lines(site, port, prefix=prefix))
    async with Watch(central.port, link_topic(site)) as w:
        await w.wait(link_topic(site), lambda p: p == b"1")
    yield broker


def new_agent(tmp_path: Path, name: str, broker: Mosquitto, sim: AthenaSimProcess,
              reader: PtyReader, tid: str | None = None) -> AgentProcess:
    d = tmp_path / name
    d.mkdir()
    agent = AgentProcess(d, broker.port, sim.info, reader.path)
    if tid:
        agent.terminal_id = tid
    return agent


def stop(agent: AgentProcess) -> None:
    if agent.proc is not None and agent.proc.poll() is None:
        agent.proc.kill()
        agent.proc.wait()


async def test_central_app_drives_a_site_terminal_across_a_dropping_link(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    athena_sim: AthenaSimProcess, pty_reader: PtyReader,
) -> None:
    central = mosquitto_factory()
    proxy = LinkProxy(central.port)
    await proxy.start()
    agent: AgentProcess | None = None
    try:
        async with linked_site(mosquitto_factory, central, "clinic-a", proxy=proxy) as site, \
                Watch(central.port, link_topic("clinic-a")) as link:
            agent = new_agent(tmp_path, "agent", site, athena_sim, pty_reader)
            tid = agent.terminal_id
            async with AppClient(central.port, tid) as app, \
                    AppClient(site.port, tid) as local:
                # retained status and state reach the centre over the bridge
                status = await started(agent, app, timeout=30)
                assert status["session"] == 1
                await app.wait_retained("state", lambda s: s["job_state"] == "idle")
                seen = await fleet("127.0.0.1", central.port, timeout=10, settle=0.5)
                assert seen[tid]["status"] is not None and seen[tid]["status"]["online"] is True
                assert seen[tid]["state"] is not None

                # ping through the client library, from the centre
                async with TerminalClient(tid, "127.0.0.1", central.port) as term:
                    pong = await term.ping()
                assert pong["ok"] is True and pong["state"]["reader"]["connected"] is True

                rep = await app.command(
                    "charge.start", job_id="j-bridge", patient_id="60178",
                    appointment_id="1001", copay="25.00",
                    claims=[{"claim_id": "5569", "amount": "40.00"}], timeout=20)
                assert rep["ok"] and rep["state"] == "pending", rep
                await app.wait_event("j-bridge", "pending")

                # the link drops in the middle of the charge
                await proxy.cut()
                await link.wait(link_topic("clinic-a"), lambda p: p == b"0")
                pty_reader.swipe(CANARY_TRACKS)
                final_local = await local.wait_event("j-bridge", final=True, timeout=30)
                assert final_local["state"] == "succeeded", final_local
                await asyncio.sleep(0.5)
                assert not any(e.get("final") for e in app.job_events("j-bridge")), \
                    "the final event crossed a link that was down"

                # ... and comes back: the queued events follow, in order
                await proxy.restore()
                final = await app.wait_event("j-bridge", final=True, timeout=45)
                await link.wait(link_topic("clinic-a"), lambda p: p == b"1")
                assert final == final_local
                await app.wait_retained("state", lambda s: s["job_state"] == "idle", timeout=20)
                central_events = dedupe(app.job_events("j-bridge"))
                assert central_events == dedupe(local.job_events("j-bridge"))
                assert [e["seq"] for e in central_events] == list(
                    range(1, len(central_events) + 1))
                assert [e["state"] for e in central_events] == [
                    "pending", "card_read", "submitting", "succeeded"]
                assert sum(1 for e in central_events if e.get("final")) == 1
                assert len(athena_sim.posts("60178")) == 1
                assert proxy.accepted >= 2  # the bridge really reconnected

                # the terminal dies: its last will crosses the bridge, and stays retained
                agent.kill9()
                offline = await app.wait_retained(
                    "status", lambda s: s.get("online") is False, timeout=30)
                assert offline["session"] == 1
                seen = await fleet("127.0.0.1", central.port, timeout=10, settle=0.5)
                assert seen[tid]["status"] == offline
                validate_all(app)
            assert_no_canary(agent=agent, app=app)
    finally:
        if agent is not None:
            stop(agent)
        await proxy.close()


def fleet_cli(port: int, *extra: str) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "lobbypay", "fleet", "--json", "--host", "127.0.0.1",
         "--port", str(port), *extra],
        capture_output=True, text=True, timeout=60, env=subprocess_env(),
    )
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout), took


def sim_status(session: int = 1, online: bool = True) -> dict[str, Any]:
    return {"v": 1, "online": online, "session": session,
            "since": "2026-12-02T09:00:00Z", "version": "0.1.0"}


def sim_state(job_id: str | None = None) -> dict[str, Any]:
    return {"v": 1, "job_id": job_id, "job_state": "pending" if job_id else "idle",
            "screen": ["Welcome", ""],
            "reader": {"driver": "evdev", "connected": True},
            "display": {"driver": "serlcd", "connected": True},
            "athena": {"last_ok_at": "2026-12-02T09:00:01Z", "last_error": None},
            "outbox": 0}


async def publish_retained(port: int, topics: dict[str, dict[str, Any]]) -> None:
    for obj in topics.values():
        schemas.validate("status" if "online" in obj else "state", obj)
    async with aiomqtt.Client("127.0.0.1", port,
                              identifier=f"simterm-{uuid.uuid4().hex[:8]}") as c:
        for topic, obj in topics.items():
            await c.publish(topic, json.dumps(obj), qos=1, retain=True)


async def test_fleet_on_the_central_broker_lists_every_site_with_a_prefix(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    athena_sim: AthenaSimProcess, pty_reader: PtyReader,
) -> None:
    central = mosquitto_factory()
    agent: AgentProcess | None = None
    # the same terminal id at both sites: with a prefix, ids need only be unique per site
    tid = f"lobby-{uuid.uuid4().hex[:6]}"
    try:
        async with linked_site(mosquitto_factory, central, "site-a", prefix=True) as site_a, \
                linked_site(mosquitto_factory, central, "site-b", prefix=True) as site_b:
            agent = new_agent(tmp_path, "agent-a", site_a, athena_sim, pty_reader, tid)
            app = AppClient(central.port, tid)
            app.prefix = f"site-a/lobbypay/v1/{tid}"
            async with app:
                await started(agent, app, timeout=30)
                # site B: a simulated terminal (retained topics only), on its own broker
                await publish_retained(site_b.port, {
                    f"lobbypay/v1/{tid}/status": sim_status(session=7),
                    f"lobbypay/v1/{tid}/state": sim_state(),
                })
                async with TerminalClient(tid, "127.0.0.1", central.port, site="site-a") as term:
                    assert term.topics["cmd"] == f"site-a/lobbypay/v1/{tid}/cmd"
                    pong = await term.ping()
                    assert pong["ok"] is True
                    assert (await term.status() or {}).get("online") is True
                async with Watch(central.port, f"site-b/lobbypay/v1/{tid}/state") as w:
                    await w.wait(f"site-b/lobbypay/v1/{tid}/state", lambda p: b"idle" in p)

                data, _ = fleet_cli(central.port)
                rows = {(r["site"], r["terminal"]): r for r in data["terminals"]}
                assert rows[("site-a", tid)]["online"] is True
                assert rows[("site-a", tid)]["reader"] == "serial connected"
                assert rows[("site-b", tid)]["session"] == 7
                assert rows[("site-b", tid)]["reader"] == "evdev connected"
                data, _ = fleet_cli(central.port, "--site", "site-b")
                assert [(r["site"], r["terminal"]) for r in data["terminals"]] == [
                    ("site-b", tid)]
                # on a site broker itself there is no prefix
                data, _ = fleet_cli(site_a.port)
                assert [(r["site"], r["terminal"]) for r in data["terminals"]] == [(None, tid)]
    finally:
        if agent is not None:
            stop(agent)


async def test_fleet_of_200_terminals_answers_within_a_second(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory()
    topics: dict[str, dict[str, Any]] = {}
    for i in range(SCALE_TERMINALS):
        tid = f"lobby-{i:03d}"
        topics[f"lobbypay/v1/{tid}/status"] = sim_status(session=i + 1, online=i % 10 != 0)
        topics[f"lobbypay/v1/{tid}/state"] = sim_state(f"j-{i}" if i % 7 == 0 else None)
    await publish_retained(broker.port, topics)

    t0 = time.monotonic()
    found = await fleet("127.0.0.1", broker.port, timeout=5, settle=FLEET_SETTLE_S, site="+")
    in_process = time.monotonic() - t0
    assert len(found) == SCALE_TERMINALS
    assert all(v["status"] is not None and v["state"] is not None for v in found.values())
    assert sum(1 for v in found.values() if v["status"]["online"]) == 180  # type: ignore[index]

    data, cli_s = fleet_cli(broker.port)
    assert len(data["terminals"]) == SCALE_TERMINALS
    print(f"\nfleet of {SCALE_TERMINALS} terminals: fleet() {in_process:.3f} s, "
          f"`lobbypay fleet --json` process {cli_s:.3f} s")
    assert in_process < 1.0, f"fleet() took {in_process:.2f} s for {SCALE_TERMINALS} terminals"
    # the whole command, interpreter start and imports included, on a shared 2-core box
    assert cli_s < 3.0, f"lobbypay fleet took {cli_s:.2f} s"


@pytest.mark.parametrize("site", ["a/b", "", "+x"])
async def test_fleet_rejects_a_bad_site_name(site: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        await fleet("127.0.0.1", 1, site=site)
