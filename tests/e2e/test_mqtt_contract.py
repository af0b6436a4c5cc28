"""MQTT-level rules of protocol.md section 1, end to end: retained messages on ``cmd`` are
ignored (whether the broker hands them over on subscribe or the app retains one while the
agent runs), and with MQTT 5 a command's Response Topic gets the reply too, with its
Correlation Data echoed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e.harness import (
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    assert_no_canary,
    started,
    validate_all,
    wait_until,
)


def start_cmd(rid: str, job_id: str) -> bytes:
    return json.dumps({"v": 1, "type": "charge.start", "request_id": rid, "job_id": job_id,
                       "patient_id": "60178",
                       "claims": [{"claim_id": "5569", "amount": "5.00"}]}).encode()


async def test_retained_commands_are_ignored(
    agent: AgentProcess, athena_sim: AthenaSimProcess, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        # retained before the agent exists: handed to it as retained on subscribe
        await app.send_raw(start_cmd("ret-1", "j-ret-1"), retain=True)
        await started(agent, app)
        # retained while it runs: a plain subscriber gets it with retain=0 (MQTT 5 Retain
        # As Published tells the agent it was retained)
        await app.send_raw(start_cmd("ret-2", "j-ret-2"), retain=True)
        # a normal command after both: answered, so the retained ones had their chance
        pong = await app.command("ping", request_id="after")
        assert pong["ok"] and pong["state"]["job_state"] == "idle", pong
        listed = await app.command("charge.list")
        assert listed["jobs"] == []
        await asyncio.sleep(0.3)
        assert "ret-1" not in app.replies and "ret-2" not in app.replies
        assert [c for c in athena_sim.calls() if c["endpoint"] == "patient"] == []
        # and the agent restarts over the same retained message: still ignored
        assert agent.terminate() == 0
        await started(agent, app, session=2)
        assert (await app.command("ping", request_id="after-2"))["ok"]
        assert "ret-1" not in app.replies and "ret-2" not in app.replies
        assert (await app.command("charge.list"))["jobs"] == []
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_mqtt5_response_topic_and_correlation_data(
    agent: AgentProcess, athena_sim: AthenaSimProcess, mosquitto: Any
) -> None:
    inbox = f"apps/checkin-{uuid.uuid4().hex[:6]}/inbox"
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port,
                                  protocol=aiomqtt.ProtocolVersion.V5,
                                  identifier=f"app5-{uuid.uuid4().hex[:6]}") as c5:
            await c5.subscribe(inbox, qos=1)
            got: list[aiomqtt.Message] = []

            async def rx() -> None:
                async for msg in c5.messages:
                    got.append(msg)

            task = asyncio.create_task(rx())
            try:
                for i, (rid, body) in enumerate((
                    ("rt-ping", {"type": "ping"}),
                    ("rt-bal", {"type": "balance.get", "patient_id": "60178"}),
                    ("rt-err", {"type": "charge.get", "job_id": "nope"}),
                )):
                    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    props.ResponseTopic = inbox
                    corr = f"corr-{i}-\x00\xff".encode("latin-1")
                    props.CorrelationData = corr
                    payload = json.dumps({"v": 1, "request_id": rid, **body})
                    await c5.publish(f"{app.prefix}/cmd", payload, qos=1, properties=props)
                    on_reply_topic = await app.wait_reply(rid)
                    await wait_until(lambda i=i: len(got) > i, timeout=5)  # type: ignore[misc]
                    msg = got[i]
                    assert str(msg.topic) == inbox
                    assert msg.properties is not None
                    assert bytes(msg.properties.CorrelationData) == corr
                    assert json.loads(bytes(msg.payload)) == on_reply_topic  # type: ignore[arg-type]
                assert json.loads(bytes(got[2].payload))["error"]["code"] == "unknown_job"  # type: ignore[arg-type]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task
        validate_all(app)
    assert_no_canary(agent=agent, app=app)
