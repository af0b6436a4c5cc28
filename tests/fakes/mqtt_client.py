"""A small MQTT test client (aiomqtt): subscribe, collect everything, publish, wait.

    async with MqttTestClient(broker.host, broker.port) as c:
        await c.subscribe("lobbypay/v1/t-1/#")
        await c.publish("lobbypay/v1/t-1/cmd", {"v": 1, ...}, response_topic="app/in",
                        correlation_data=b"\\x01")
        msg = await c.wait_for(lambda m: m.topic.endswith("/reply"))
        msg.json()["ok"]

``clean=False`` (with a fixed ``client_id``) keeps a persistent session, so messages
published while this client is away are queued by the broker for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    correlation_data: bytes | None
    response_topic: str | None

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttTestClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: str = "5",
        client_id: str | None = None,
        clean: bool = True,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.protocol, self.client_id, self.clean = protocol, client_id, clean
        self.username, self.password, self.tls_context = username, password, tls_context
        self.messages: list[Received] = []
        self._changed = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttTestClient:
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            kwargs["protocol"] = aiomqtt.ProtocolVersion.V5
            kwargs["clean_start"] = self.clean
            if not self.clean:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 600
                kwargs["properties"] = props
        else:
            kwargs["protocol"] = aiomqtt.ProtocolVersion.V311
            kwargs["clean_session"] = self.clean
        self._client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, username=self.username,
            password=self.password, tls_context=self.tls_context, timeout=10, **kwargs,
        )
        await self._client.__aenter__()
        self._reader = asyncio.create_task(self._read(), name="test.mqtt.read")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(et, e, tb)

    async def _read(self) -> None:
        assert self._client is not None
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self._client.messages:
                props = m.properties
                cd = getattr(props, "CorrelationData", None) if props is not None else None
                rt = getattr(props, "ResponseTopic", None) if props is not None else None
                payload = m.payload if isinstance(m.payload, bytes) else b""
                async with self._changed:
                    self.messages.append(
                        Received(str(m.topic), payload, bool(m.retain), m.qos, cd, rt)
                    )
                    self._changed.notify_all()

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        assert self._client is not None
        await self._client.subscribe(topic, qos=qos)

    async def publish(
        self,
        topic: str,
        payload: bytes | dict[str, Any] | str,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        assert self._client is not None
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        props = None
        if response_topic is not None or correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        await self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    async def wait_for(
        self, predicate: Callable[[Received], bool], *, timeout: float = WAIT_TIMEOUT_S,  # noqa: ASYNC109
        count: int = 1,
    ) -> Received:
        """The ``count``-th message (in arrival order) matching ``predicate``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                hits = [m for m in self.messages if predicate(m)]
                if len(hits) >= count:
                    return hits[count - 1]
                await self._changed.wait()

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def reply_to(self, request_id: str, *, topic_suffix: str = "/reply",
                       timeout: float = WAIT_TIMEOUT_S) -> dict[str, Any]:  # noqa: ASYNC109
        """The reply (JSON) carrying ``request_id``."""
        msg = await self.wait_for(
            lambda m: m.topic.endswith(topic_suffix) and _rid(m) == request_id, timeout=timeout
        )
        data: dict[str, Any] = msg.json()
        return data


def _rid(m: Received) -> object:
    try:
        return m.json().get("request_id")
    except (ValueError, AttributeError):
        return None
