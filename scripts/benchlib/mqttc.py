"""A lean MQTT client in the check-in app's role, built for timing: every message is
stamped with ``perf_counter()`` as it is taken off the client, and waiters are futures
keyed by request id / (job id, state), so nothing scans a growing list."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiomqtt

from benchlib.procs import NODELAY, QUIET

Stamped = tuple[float, dict[str, Any]]
#: ``expect_event(job_id, FINAL)`` resolves on the job's first event with ``final: true``.
FINAL = "*final"


class BenchClient:
    def __init__(self, port: int, terminal_id: str, echo_tag: str | None = None) -> None:
        self.port = port
        self.prefix = f"lobbypay/v1/{terminal_id}"
        self.echo_tag = echo_tag
        self.me = f"bench-{uuid.uuid4().hex[:8]}"
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._replies: dict[str, asyncio.Future[Stamped]] = {}
        self._events: dict[tuple[str, str], asyncio.Future[Stamped]] = {}
        self._raw: dict[str, asyncio.Future[float]] = {}
        self._status_waiters: list[tuple[Callable[[dict[str, Any]], bool],
                                         asyncio.Future[Stamped]]] = []
        self.status: dict[str, Any] | None = None
        self._state_waiters: list[tuple[Callable[[dict[str, Any]], bool],
                                        asyncio.Future[Stamped]]] = []
        self.replies_seen = 0
        self.events_seen = 0

    async def __aenter__(self) -> BenchClient:
        self._client = aiomqtt.Client("127.0.0.1", self.port, identifier=self.me,
                                      socket_options=NODELAY, logger=QUIET)
        await self._client.__aenter__()
        for suffix in ("reply", "events", "status", "state"):
            await self._client.subscribe(f"{self.prefix}/{suffix}", qos=1)
        await self._client.subscribe(f"bench/{self.me}/oneway", qos=1)
        if self.echo_tag:
            await self._client.subscribe(f"bench/{self.echo_tag}/rep", qos=1)
        self._task = asyncio.create_task(self._rx())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    @property
    def client(self) -> aiomqtt.Client:
        assert self._client is not None  # noqa: S101
        return self._client

    async def _rx(self) -> None:
        async for msg in self.client.messages:
            t = time.perf_counter()
            topic = str(msg.topic)
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            kind = topic.rsplit("/", 1)[1]
            if kind in ("oneway", "rep"):
                fut = self._raw.pop(payload.decode(), None)
                if fut is not None and not fut.done():
                    fut.set_result(t)
                continue
            try:
                obj = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if kind == "reply":
                self.replies_seen += 1
                rfut = self._replies.pop(str(obj.get("request_id")), None)
                if rfut is not None and not rfut.done():
                    rfut.set_result((t, obj))
            elif kind == "events":
                self.events_seen += 1
                job_id = str(obj.get("job_id"))
                keys = [(job_id, str(obj.get("state")))]
                if obj.get("final") is True:
                    keys.append((job_id, FINAL))
                for key in keys:
                    efut = self._events.pop(key, None)
                    if efut is not None and not efut.done():
                        efut.set_result((t, obj))
            elif kind == "state":
                for pred, sfut in list(self._state_waiters):
                    if not sfut.done() and pred(obj):
                        sfut.set_result((t, obj))
                        self._state_waiters.remove((pred, sfut))
            elif kind == "status":
                self.status = obj
                for pred, sfut in list(self._status_waiters):
                    if not sfut.done() and pred(obj):
                        sfut.set_result((t, obj))
                        self._status_waiters.remove((pred, sfut))

    # ------------------------------------------------------------------ agent traffic

    def expect_event(self, job_id: str, state: str) -> asyncio.Future[Stamped]:
        fut: asyncio.Future[Stamped] = asyncio.get_running_loop().create_future()
        self._events[(job_id, state)] = fut
        return fut

    def expect_state(self, pred: Callable[[dict[str, Any]], bool]) -> asyncio.Future[Stamped]:
        """The next retained ``state`` for which ``pred`` holds (an app waiting for the
        terminal to show the amount)."""
        fut: asyncio.Future[Stamped] = asyncio.get_running_loop().create_future()
        self._state_waiters.append((pred, fut))
        return fut

    def expect_status(self, pred: Callable[[dict[str, Any]], bool]) -> asyncio.Future[Stamped]:
        fut: asyncio.Future[Stamped] = asyncio.get_running_loop().create_future()
        if self.status is not None and pred(self.status):
            fut.set_result((time.perf_counter(), self.status))
        else:
            self._status_waiters.append((pred, fut))
        return fut

    async def command(self, type_: str, timeout: float = 30,  # noqa: ASYNC109
                      **fields: Any) -> Stamped:
        """Send one command; returns (seconds from just before the publish to the reply
        taken off the client, reply)."""
        rid = uuid.uuid4().hex
        fut: asyncio.Future[Stamped] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        body = json.dumps({"v": 1, "type": type_, "request_id": rid, **fields})
        t0 = time.perf_counter()
        try:
            await self.client.publish(f"{self.prefix}/cmd", body, qos=1)
            t1, reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(rid, None)
        return t1 - t0, reply

    # ------------------------------------------------------------------ bare MQTT

    async def oneway(self, timeout: float = 10) -> float:  # noqa: ASYNC109
        """Seconds from publish (QoS 1) to receiving it back as a subscriber of the same
        broker: one hop out, one hop in, like an agent's event reaching an app."""
        key = uuid.uuid4().hex
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._raw[key] = fut
        t0 = time.perf_counter()
        await self.client.publish(f"bench/{self.me}/oneway", key, qos=1)
        return await asyncio.wait_for(fut, timeout) - t0

    async def echo_round_trip(self, timeout: float = 10) -> float:  # noqa: ASYNC109
        """Seconds for a QoS 1 request to the bare echo process and its QoS 1 answer."""
        key = uuid.uuid4().hex
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._raw[key] = fut
        t0 = time.perf_counter()
        await self.client.publish(f"bench/{self.echo_tag}/req", key, qos=1)
        return await asyncio.wait_for(fut, timeout) - t0
