"""shell/mqtt.py MqttLink against a real mosquitto on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from lobbypay import schemas
from lobbypay.core import protocol
from lobbypay.core.commands import ChargeGet, Ping
from lobbypay.core.config import MqttConfig
from lobbypay.core.errors import Code
from lobbypay.shell import mqtt as mqtt_module
from lobbypay.shell.mqtt import CommandMeta, LinkState, MqttLink

from tests.fakes.mosquitto import Mosquitto, TlsFiles
from tests.fakes.mqtt_client import MqttTestClient, Received

REPO = Path(__file__).resolve().parents[2]
STATE = {
    "v": 1, "job_id": None, "job_state": "idle", "screen": ["Welcome"],
    "reader": {"driver": "sim", "connected": True},
    "display": {"driver": "none", "connected": True},
    "athena": {"last_ok_at": None, "last_error": None}, "outbox": 0,
}


@dataclass
class Row:
    id: int
    topic: str
    payload: bytes
    retain: bool = False


@dataclass
class FakeOutbox:
    rows: list[Row] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def add(self, topic: str, payload: bytes) -> Row:
        row = Row(len(self.rows) + len(self.acked) + 1, topic, payload)
        self.rows.append(row)
        return row

    def outbox_pending(self, limit: int) -> list[Row]:
        return self.rows[:limit]

    def outbox_ack(self, row_id: int) -> None:
        self.outbox_ack_many([row_id])

    def outbox_ack_many(self, row_ids: list[int]) -> None:
        self.rows = [r for r in self.rows if r.id not in row_ids]
        self.acked.extend(row_ids)


class FakeApp:
    """Decodes with the real codec; ``charge.get`` job ids script the handler's behaviour."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.metas: list[CommandMeta] = []
        self.state = dict(STATE)
        self.session = 1

    def status(self, online: bool) -> bytes:
        return protocol.encode_json({"v": 1, "online": online, "session": self.session,
                                     "since": "2026-11-27T14:00:00Z", "version": "0.1.0"})

    def state_payload(self) -> bytes:
        return protocol.encode_json(self.state)

    async def on_command(self, payload: bytes, meta: CommandMeta) -> bytes:
        self.metas.append(meta)
        try:
            cmd = protocol.decode_command(payload)
        except protocol.ProtocolError as exc:
            return exc.to_reply()
        if isinstance(cmd, Ping):
            return protocol.encode_reply(cmd.request_id, cmd.type, state=self.state)
        if isinstance(cmd, ChargeGet):
            if cmd.job_id == "boom":
                raise RuntimeError("handler bug")
            if cmd.job_id == "none":
                return None  # type: ignore[return-value]
            if cmd.job_id == "slow":
                await self.release.wait()
            if cmd.job_id == "hang":
                await asyncio.Event().wait()
            return protocol.error_reply(cmd.request_id, cmd.type, Code.UNKNOWN_JOB, "never seen")
        return protocol.error_reply(cmd.request_id, cmd.type, Code.INTERNAL_ERROR, "not here")


def cfg_for(broker: Mosquitto, **kw: Any) -> MqttConfig:
    return replace(MqttConfig(host=broker.host, port=broker.port, keepalive_s=30), **kw)


def make_link(broker: Mosquitto, tid: str, app: FakeApp, outbox: FakeOutbox | None = None,
              **kw: Any) -> MqttLink:
    link_kw = {k: kw.pop(k) for k in list(kw) if k in ("command_timeout_s", "op_timeout_s")}
    return MqttLink(
        cfg_for(broker, **kw), terminal_id=tid, status_payload=app.status,
        on_command=app.on_command, outbox=outbox or FakeOutbox(), state_payload=app.state_payload,
        backoff_base_s=0.05, backoff_cap_s=0.4, **link_kw,
    )


async def eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(link: MqttLink, *, wait_connected: bool = True) -> AsyncIterator[MqttLink]:
    task = asyncio.create_task(link.run(), name="test.link")
    try:
        if wait_connected:
            await eventually(lambda: link.connected or task.done(), what="link connected")
            assert link.connected, task
        yield link
    finally:
        async with asyncio.timeout(10):
            await link.stop()
            await task


def cmd(kind: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "type": kind, "request_id": rid, **fields}


def is_status(tid: str, online: bool) -> Callable[[Received], bool]:
    return lambda m: m.topic == f"lobbypay/v1/{tid}/status" and m.json()["online"] is online


# ---------------------------------------------------------------------------- basics


@pytest.mark.parametrize("proto", ["5", "3.1.1"])
async def test_status_state_and_ping(mosquitto: Mosquitto, unique_tid: str, proto: str) -> None:
    app = FakeApp()
    async with MqttTestClient(mosquitto.host, mosquitto.port, protocol=proto) as c:
        await c.subscribe(f"lobbypay/v1/{unique_tid}/#")
        async with running(make_link(mosquitto, unique_tid, app, protocol=proto)) as link:
            online = await c.wait_for(is_status(unique_tid, True))
            schemas.validate("status", online.json())
            state = await c.wait_for(lambda m: m.topic.endswith("/state"))
            assert state.json() == STATE
            schemas.validate("state", state.json())
            await c.publish(link.cmd_topic, cmd("ping", "p-1"))
            reply = await c.reply_to("p-1")
            assert reply == {"v": 1, "type": "reply", "request_id": "p-1", "command": "ping",
                             "ok": True, "state": STATE}
            schemas.validate("reply", reply)
            # replies_sent counts at the PUBACK, which may trail the subscriber's copy
            async with asyncio.timeout(5):
                while link.counters.replies_sent < 1:
                    await asyncio.sleep(0.01)
            assert link.counters.commands == 1 and link.counters.replies_sent == 1
        offline = await c.wait_for(is_status(unique_tid, False))
        assert offline.json()["session"] == 1

    # both are retained: a newcomer sees the latest status and state at once
    async with MqttTestClient(mosquitto.host, mosquitto.port) as late:
        await late.subscribe(f"lobbypay/v1/{unique_tid}/+")
        st = await late.wait_for(lambda m: m.topic.endswith("/status"))
        assert st.retain and st.json()["online"] is False
        assert (await late.wait_for(lambda m: m.topic.endswith("/state"))).retain


async def test_mqtt5_response_topic_and_correlation_data(
    mosquitto: Mosquitto, unique_tid: str
) -> None:
    app = FakeApp()
    inbox = f"apps/{unique_tid}/inbox"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c, running(
        make_link(mosquitto, unique_tid, app)
    ) as link:
        await c.subscribe(inbox)
        await c.subscribe(link.reply_topic)
        await c.publish(link.cmd_topic, cmd("ping", "p-5"), response_topic=inbox,
                        correlation_data=b"\x00corr\xff")
        on_inbox = await c.wait_for(lambda m: m.topic == inbox)
        on_reply = await c.wait_for(lambda m: m.topic == link.reply_topic)
        assert on_inbox.json()["request_id"] == "p-5" and on_inbox.payload == on_reply.payload
        assert on_inbox.correlation_data == b"\x00corr\xff"
        assert app.metas[0].response_topic == inbox
        # a Response Topic aimed at our own topics is refused (the reply topic still gets it)
        await c.publish(link.cmd_topic, cmd("ping", "p-6"),
                        response_topic=f"lobbypay/v1/{unique_tid}/status")
        await c.reply_to("p-6")
        await eventually(lambda: link.counters.response_topic_refused == 1)


async def test_retained_command_is_ignored(mosquitto: Mosquitto, unique_tid: str) -> None:
    app = FakeApp()
    topic = f"lobbypay/v1/{unique_tid}/cmd"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(f"lobbypay/v1/{unique_tid}/reply")
        await c.publish(topic, cmd("ping", "stale"), retain=True)
        async with running(make_link(mosquitto, unique_tid, app)) as link:
            await eventually(lambda: link.counters.retained_ignored == 1)
            await c.publish(topic, cmd("ping", "live"))
            await c.reply_to("live")
            assert [m.json()["request_id"] for m in c.messages] == ["live"]
            assert app.metas and len(app.metas) == 1


# ---------------------------------------------------------------------------- hostile input


async def test_malformed_payloads_get_bad_request_and_link_keeps_working(
    mosquitto: Mosquitto, unique_tid: str
) -> None:
    app = FakeApp()
    bad = [b"", b"garbage", b"\xff\xfe", b"[]", b"[" * 70_000,
           json.dumps({"v": 1, "type": "ping", "request_id": ""}).encode(),
           json.dumps(cmd("charge.list", "l-1", limit="5")).encode()]
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c, running(
        make_link(mosquitto, unique_tid, app)
    ) as link:
        await c.subscribe(link.reply_topic)
        for payload in bad:
            await c.publish(link.cmd_topic, payload)
        replies = [(await c.wait_for(lambda m: True, count=i + 1)).json() for i in range(len(bad))]
        assert all(r["ok"] is False and r["error"]["code"] == "bad_request" for r in replies)
        assert {r["request_id"] for r in replies} == {None, "l-1"}
        for r in replies:
            schemas.validate("reply", r)
        await c.publish(link.cmd_topic, cmd("ping", "after"))
        assert (await c.reply_to("after"))["ok"] is True
        assert link.connected


async def test_handler_failures_are_answered_internal_error(
    mosquitto: Mosquitto, unique_tid: str
) -> None:
    app = FakeApp()
    link = make_link(mosquitto, unique_tid, app, command_timeout_s=0.5)
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c, running(link):
        await c.subscribe(link.reply_topic)
        for job in ("boom", "none", "hang"):
            await c.publish(link.cmd_topic, cmd("charge.get", f"r-{job}", job_id=job))
        for job in ("boom", "none", "hang"):
            reply = await c.reply_to(f"r-{job}")
            assert reply["command"] == "charge.get"
            assert reply["error"]["code"] == "internal_error", reply
        assert link.counters.handler_errors == 3
        await c.publish(link.cmd_topic, cmd("ping", "still"))
        assert (await c.reply_to("still"))["ok"] is True


async def test_commands_run_concurrently(mosquitto: Mosquitto, unique_tid: str) -> None:
    app = FakeApp()
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c, running(
        make_link(mosquitto, unique_tid, app)
    ) as link:
        await c.subscribe(link.reply_topic)
        await c.publish(link.cmd_topic, cmd("charge.get", "slow-1", job_id="slow"))
        await c.publish(link.cmd_topic, cmd("ping", "fast-1"))
        await c.reply_to("fast-1")
        assert [m.json()["request_id"] for m in c.messages] == ["fast-1"]
        app.release.set()
        await c.reply_to("slow-1")


# ---------------------------------------------------------------------------- state


async def test_publish_state_is_coalesced_latest_wins(
    mosquitto: Mosquitto, unique_tid: str
) -> None:
    app = FakeApp()
    async with running(make_link(mosquitto, unique_tid, app)) as link:
        await eventually(lambda: link.counters.state_published == 1)
        for i in range(200):
            app.state = {**STATE, "screen": [f"n{i}"]}
            link.publish_state()
        await eventually(lambda: link.counters.state_published >= 2)
        await asyncio.sleep(0.2)
        assert link.counters.state_published <= 4
    async with MqttTestClient(mosquitto.host, mosquitto.port) as late:
        await late.subscribe(f"lobbypay/v1/{unique_tid}/state")
        st = await late.wait_for(lambda m: True)
        assert st.json()["screen"] == ["n199"]


# ---------------------------------------------------------------------------- outbox


def event_payload(job: str, seq: int) -> bytes:
    return protocol.encode_json({"v": 1, "type": "charge.event", "job_id": job, "seq": seq})


async def test_outbox_drained_in_order(mosquitto: Mosquitto, unique_tid: str) -> None:
    app, outbox = FakeApp(), FakeOutbox()
    events = f"lobbypay/v1/{unique_tid}/events"
    for seq in range(1, 6):
        outbox.add(events, event_payload("j-1", seq))
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(events)
        async with running(make_link(mosquitto, unique_tid, app, outbox)) as link:
            await c.wait_for(lambda m: True, count=5)
            assert [m.json()["seq"] for m in c.messages] == [1, 2, 3, 4, 5]
            # acknowledged in PUBACK order, shortly after (one batch: OUTBOX_ACK_DELAY_S)
            await eventually(lambda: outbox.acked == [1, 2, 3, 4, 5] and outbox.rows == [],
                             what="acks after the PUBACKs")
            # new rows + many wakes: delivered once each, in order
            for seq in range(6, 9):
                outbox.add(events, event_payload("j-1", seq))
                link.wake_outbox()
                link.wake_outbox()
            await c.wait_for(lambda m: True, count=8)
            await asyncio.sleep(0.1)
            assert [m.json()["seq"] for m in c.messages] == list(range(1, 9))
            assert link.counters.outbox_sent == 8


async def test_outbox_row_acked_only_after_puback(mosquitto: Mosquitto, unique_tid: str) -> None:
    app, outbox = FakeApp(), FakeOutbox()
    events = f"lobbypay/v1/{unique_tid}/events"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(events)
        async with running(make_link(mosquitto, unique_tid, app, outbox)) as link:
            mosquitto.pause()  # TCP stays up, the broker answers nothing
            try:
                outbox.add(events, event_payload("j-2", 1))
                link.wake_outbox()
                await asyncio.sleep(0.8)
                assert outbox.acked == [] and len(outbox.rows) == 1
            finally:
                mosquitto.resume()
            await eventually(lambda: outbox.acked == [1], what="ack after PUBACK")
            assert (await c.wait_for(lambda m: True)).json()["seq"] == 1


class RefusingOutbox(FakeOutbox):
    """A store that refuses to write acks while ``refuse`` is set (a full disk)."""

    refuse = True
    refused = 0

    def outbox_ack_many(self, row_ids: list[int]) -> None:
        if self.refuse:
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        super().outbox_ack_many(row_ids)


async def test_an_ack_the_store_refuses_is_retried_not_republished(
        mosquitto: Mosquitto, unique_tid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker PUBACKed the rows; only writing that down failed. They are not
    published again in this session (which, with acks 10 ms after a PUBACK, would send
    them again about a hundred times a second while the disk is full); the ack is tried
    again ``OUTBOX_RETRY_S`` later, and a row committed meanwhile still goes out once."""
    monkeypatch.setattr(mqtt_module, "OUTBOX_RETRY_S", 0.3)
    app, outbox = FakeApp(), RefusingOutbox()
    events = f"lobbypay/v1/{unique_tid}/events"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(events)
        async with running(make_link(mosquitto, unique_tid, app, outbox)) as link:
            outbox.add(events, event_payload("j-5", 1))
            outbox.add(events, event_payload("j-5", 2))
            link.wake_outbox()
            await c.wait_for(lambda m: True, count=2)
            await eventually(lambda: outbox.refused >= 2, what="retried acks")
            outbox.add(events, event_payload("j-5", 3))
            link.wake_outbox()
            await c.wait_for(lambda m: True, count=3)
            await asyncio.sleep(0.5)
            assert [m.json()["seq"] for m in c.messages] == [1, 2, 3]  # each once
            assert outbox.acked == [] and link.connected
            outbox.refuse = False  # the disk has room again
            await eventually(lambda: outbox.acked == [1, 2, 3] and outbox.rows == [],
                             what="the acks written")
            assert [m.json()["seq"] for m in c.messages] == [1, 2, 3]


async def test_a_puback_that_never_comes_ends_the_session(mosquitto: Mosquitto,
                                                          unique_tid: str) -> None:
    """A publish whose PUBACK does not come within op_timeout_s fails and ends the
    session, as aiomqtt's own publish does; the row stays pending and goes out on the next
    session."""
    app, outbox = FakeApp(), FakeOutbox()
    events = f"lobbypay/v1/{unique_tid}/events"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(events)
        async with running(make_link(mosquitto, unique_tid, app, outbox,
                                     op_timeout_s=0.4)) as link:
            mosquitto.pause()
            try:
                outbox.add(events, event_payload("j-4", 1))
                link.wake_outbox()
                await eventually(lambda: not link.connected, what="the session ended")
                assert outbox.acked == [] and len(outbox.rows) == 1
            finally:
                mosquitto.resume()
            await eventually(lambda: outbox.acked == [1], what="sent again and acked")
            assert link.counters.connects >= 2
            assert (await c.wait_for(lambda m: True)).json()["seq"] == 1


@pytest.mark.parametrize("limit", [None, 4])
async def test_publisher_paths(mosquitto: Mosquitto, unique_tid: str,
                               limit: int | None) -> None:
    """With this aiomqtt the link hands publishes to paho directly (``_Publisher.direct``);
    where aiomqtt is set up otherwise (a limit on concurrent calls) it goes through
    ``client.publish``. Both deliver, and their futures end at the PUBACK."""
    import aiomqtt
    from lobbypay.shell.mqtt import _Publisher, _Writer

    topic = f"lobbypay/v1/{unique_tid}/t"
    async with MqttTestClient(mosquitto.host, mosquitto.port) as sub:
        await sub.subscribe(topic)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port,
                                  max_concurrent_outgoing_calls=limit) as client:
            pub = _Publisher(client, 5.0, _Writer.install(client))
            assert pub.direct is (limit is None)
            acks = [pub.publish(topic, f"m{i}".encode(), retain=False) for i in range(3)]
            pub.flush()
            await asyncio.wait_for(asyncio.gather(*acks), 5)
            await sub.wait_for(lambda m: True, count=3)
            assert [m.payload for m in sub.on(topic)] == [b"m0", b"m1", b"m2"]
            assert getattr(client, "_pending_publishes", {}) == {}


async def test_broker_down_rows_stay_pending_then_delivered(
    mosquitto: Mosquitto, unique_tid: str
) -> None:
    app, outbox = FakeApp(), FakeOutbox()
    events = f"lobbypay/v1/{unique_tid}/events"
    sub_id = f"sub-{unique_tid}"
    async with MqttTestClient(mosquitto.host, mosquitto.port, client_id=sub_id, clean=False) as c:
        await c.subscribe(events)  # persistent session: the broker keeps it across the restart
    link = make_link(mosquitto, unique_tid, app, outbox)
    async with running(link):
        mosquitto.stop()
        await eventually(lambda: not link.connected, what="link noticed the broker left")
        for seq in (1, 2, 3):
            outbox.add(events, event_payload("j-3", seq))
        link.wake_outbox()
        await asyncio.sleep(0.5)
        assert outbox.acked == [] and len(outbox.rows) == 3
        mosquitto.start()
        await eventually(lambda: outbox.acked == [1, 2, 3], timeout=10, what="drain after restart")
        assert link.counters.connects == 2
    async with MqttTestClient(mosquitto.host, mosquitto.port, client_id=sub_id, clean=False) as c:
        await c.wait_for(lambda m: True, count=3)
        assert [m.json()["seq"] for m in c.messages[:3]] == [1, 2, 3]


# ---------------------------------------------------------------------------- reconnect


@pytest.mark.parametrize("proto", ["5", "3.1.1"])
async def test_reconnect_after_broker_restart(
    mosquitto: Mosquitto, unique_tid: str, proto: str
) -> None:
    app = FakeApp()
    link = make_link(mosquitto, unique_tid, app, protocol=proto)
    async with running(link):
        mosquitto.restart()
        await eventually(lambda: link.counters.connects == 2 and link.connected, timeout=10,
                         what="reconnected")
        async with MqttTestClient(mosquitto.host, mosquitto.port, protocol=proto) as c:
            await c.subscribe(link.reply_topic)
            await c.publish(link.cmd_topic, cmd("ping", "back"))
            assert (await c.reply_to("back"))["ok"] is True
            await c.subscribe(link.status_topic)
            assert (await c.wait_for(lambda m: m.topic == link.status_topic)).json()["online"]


@pytest.mark.parametrize("proto", ["5", "3.1.1"])
async def test_commands_queued_during_broker_restart_are_served(
    mosquitto: Mosquitto, unique_tid: str, monkeypatch: pytest.MonkeyPatch, proto: str
) -> None:
    """The link resumes its session: a QoS 1 command sent while it was away still gets an answer."""
    app = FakeApp()
    link = make_link(mosquitto, unique_tid, app, protocol=proto)
    async with running(link):
        # stay away long enough for the app to publish while we are gone
        monkeypatch.setattr("lobbypay.shell.mqtt.backoff_delay", lambda *a: 1.5)
        mosquitto.stop()
        await eventually(lambda: not link.connected)
        mosquitto.start()
        async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
            await c.subscribe(link.reply_topic)
            await c.publish(link.cmd_topic, cmd("ping", "queued"))
            assert not link.connected
            assert (await c.reply_to("queued", timeout=8))["ok"] is True


async def test_reply_survives_a_dropped_connection(mosquitto: Mosquitto, unique_tid: str) -> None:
    app = FakeApp()
    link = make_link(mosquitto, unique_tid, app)
    async with MqttTestClient(mosquitto.host, mosquitto.port, client_id=f"a-{unique_tid}",
                              clean=False) as c, running(link):
        await c.subscribe(link.reply_topic)
        await c.publish(link.cmd_topic, cmd("charge.get", "during", job_id="slow"))
        await eventually(lambda: len(app.metas) == 1)
        mosquitto.stop()
        await eventually(lambda: not link.connected)
        app.release.set()  # the answer is ready while there is no broker
        await asyncio.sleep(0.2)
        mosquitto.start()
        await eventually(lambda: link.connected, timeout=10)
        async with MqttTestClient(mosquitto.host, mosquitto.port, client_id=f"a-{unique_tid}",
                                  clean=False) as c2:
            reply = await c2.reply_to("during", timeout=8)
            assert reply["error"]["code"] == "unknown_job"


# ---------------------------------------------------------------------------- last will


async def test_last_will_on_kill_9(mosquitto: Mosquitto, unique_tid: str) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys
        from lobbypay.core.config import MqttConfig
        from lobbypay.shell.mqtt import MqttLink

        class Box:
            def outbox_pending(self, limit): return []
            def outbox_ack(self, row_id): pass
            def outbox_ack_many(self, row_ids): pass

        def status(online):
            return (b'{{"v":1,"online":' + (b"true" if online else b"false")
                    + b',"session":7,"since":"2026-11-27T14:00:00Z","version":"0.1.0"}}')

        async def main():
            async def on_command(payload, meta): return b"{{}}"
            link = MqttLink(MqttConfig(host="127.0.0.1", port={mosquitto.port}),
                            terminal_id="{unique_tid}", status_payload=status,
                            on_command=on_command, outbox=Box(), state_payload=lambda: b"{{}}")
            task = asyncio.create_task(link.run())
            while not link.connected:
                await asyncio.sleep(0.02)
            print("connected", flush=True)
            await task

        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "agent")}
    proc = subprocess.Popen(  # noqa: S603, ASYNC220 - started once, before any awaiting
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env
    )
    try:
        async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
            await c.subscribe(f"lobbypay/v1/{unique_tid}/status")
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
            assert line.strip() == b"connected"
            await c.wait_for(is_status(unique_tid, True))
            proc.kill()
            will = await c.wait_for(is_status(unique_tid, False), timeout=10)
            assert will.json()["session"] == 7
            schemas.validate("status", will.json())
        async with MqttTestClient(mosquitto.host, mosquitto.port) as late:
            await late.subscribe(f"lobbypay/v1/{unique_tid}/status")
            st = await late.wait_for(lambda m: True)
            assert st.retain and st.json()["online"] is False
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


# ---------------------------------------------------------------------------- auth + TLS


def client_tls(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.load_cert_chain(str(files.client_cert), str(files.client_key))
    return ctx


async def test_tls_client_cert_and_password(
    mosquitto_factory: Callable[..., Mosquitto], tls_files: TlsFiles, unique_tid: str
) -> None:
    broker = mosquitto_factory(users={"agent": "s3cret", "app": "app-pw"}, tls=tls_files,
                               require_certificate=True)
    app = FakeApp()
    link = make_link(broker, unique_tid, app, tls=True, ca_file=str(tls_files.ca),
                     certfile=str(tls_files.client_cert), keyfile=str(tls_files.client_key),
                     username="agent", password="s3cret")  # noqa: S106
    async with MqttTestClient(broker.host, broker.port, username="app", password="app-pw",  # noqa: S106
                              tls_context=client_tls(tls_files)) as c, running(link):
        await c.subscribe(link.reply_topic)
        await c.publish(link.cmd_topic, cmd("ping", "tls-1"))
        assert (await c.reply_to("tls-1"))["ok"] is True


@pytest.mark.parametrize("proto", ["5", "3.1.1"])
async def test_wrong_password_is_reported_as_auth_failure(
    mosquitto_factory: Callable[..., Mosquitto], unique_tid: str, proto: str
) -> None:
    broker = mosquitto_factory(users={"agent": "s3cret"})
    link = make_link(broker, unique_tid, FakeApp(), username="agent", password="wrong",  # noqa: S106
                     protocol=proto)
    async with running(link, wait_connected=False):
        await eventually(lambda: link.counters.auth_failures >= 1, what="auth failure")
        assert not link.connected and link.state in (LinkState.BACKOFF, LinkState.CONNECTING)
        assert link.last_error is not None and link.last_error.startswith("auth")
        assert "wrong" not in link.last_error


async def test_untrusted_server_certificate_is_refused(
    mosquitto_factory: Callable[..., Mosquitto], tls_files: TlsFiles, tmp_path: Path,
    unique_tid: str,
) -> None:
    broker = mosquitto_factory(tls=tls_files)
    from tests.fakes.mosquitto import make_tls_files

    other = make_tls_files(tmp_path / "other-ca")
    link = make_link(broker, unique_tid, FakeApp(), tls=True, ca_file=str(other.ca))
    async with running(link, wait_connected=False):
        await eventually(lambda: link.counters.connect_failures >= 1)
        assert not link.connected
        assert link.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in link.last_error
    gc.collect()  # a leaked socket of a failed handshake would warn (= fail) here


async def test_missing_ca_file_is_a_config_problem(mosquitto: Mosquitto, unique_tid: str,
                                                   tmp_path: Path) -> None:
    link = make_link(mosquitto, unique_tid, FakeApp(), tls=True,
                     ca_file=str(tmp_path / "nope.pem"))
    async with running(link, wait_connected=False):
        await eventually(lambda: link.last_error is not None)
        assert link.last_error is not None and link.last_error.startswith("tls")


async def test_offline_goes_out_even_when_a_reply_is_not_acknowledged(
    mosquitto: Mosquitto, unique_tid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """stop() publishes offline after the queued replies, and also when their PUBACKs do
    not come within STOP_PUBLISH_TIMEOUT_S (a timeout there used to skip offline)."""
    from lobbypay.shell.mqtt import _Reply

    caplog.set_level("INFO", logger="lobbypay.mqtt")
    app = FakeApp()
    async with MqttTestClient(mosquitto.host, mosquitto.port) as c:
        await c.subscribe(f"lobbypay/v1/{unique_tid}/status")
        link = make_link(mosquitto, unique_tid, app)
        task = asyncio.create_task(link.run())
        await eventually(lambda: link.connected, what="link connected")
        mosquitto.pause()  # TCP stays up, the broker answers nothing
        try:
            link._queue_reply(_Reply(b'{"v": 1}', None, None, link.reply_topic))
            stopping = asyncio.create_task(link.stop())
            await asyncio.sleep(3.3)  # past the replies' share of the stop
        finally:
            mosquitto.resume()
        async with asyncio.timeout(10):
            await stopping
            await task
        last = await c.wait_for(lambda m: m.json().get("online") is False)
        assert last.json()["online"] is False
        # published by stop() itself, not only the broker's will for a dropped session
        assert any("offline status published" in r.getMessage() for r in caplog.records)


async def test_stop_while_broker_is_down_returns(mosquitto: Mosquitto, unique_tid: str) -> None:
    link = make_link(mosquitto, unique_tid, FakeApp())
    async with running(link):
        mosquitto.stop()
        await eventually(lambda: not link.connected)
    assert link.state is LinkState.STOPPED


# ---------------------------------------------------------------------------- pure helpers


def test_backoff_is_full_jitter_and_capped() -> None:
    from lobbypay.shell.mqtt import backoff_delay

    for attempt in range(40):
        bound = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 30.0) for _ in range(50)]
        assert all(0.0 <= d <= bound for d in delays)
    assert max(backoff_delay(10, 0.5, 30.0) for _ in range(200)) > 15.0  # spreads, reaches high
