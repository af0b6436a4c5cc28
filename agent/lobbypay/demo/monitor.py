"""The demo's view of the terminal as a check-in app sees it: every new screen (the
``state`` topic) and every event, printed as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from lobbypay.demo.printer import Printer
from lobbypay.demo.processes import START_TIMEOUT_S, TERMINAL_ID


class Monitor:
    """Subscribes to the terminal's ``state`` and ``events`` topics and prints every
    new screen and every event (each (job_id, seq) once), in the broker's order."""

    def __init__(self, port: int, printer: Printer) -> None:
        self.port = port
        self.printer = printer
        self.state: dict[str, Any] = {}
        self.finals: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, int]] = set()
        self._last_screen: tuple[str, ...] | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Monitor:
        self._task = asyncio.create_task(self._run(), name="lobbypay.demo.monitor")
        async with asyncio.timeout(START_TIMEOUT_S):
            await self._ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import aiomqtt

        from lobbypay.core.protocol import Topics

        topics = Topics.of(TERMINAL_ID)
        async with aiomqtt.Client("127.0.0.1", self.port,
                                  identifier=f"lobbypay-demo-monitor-{uuid.uuid4().hex[:8]}") as c:
            await c.subscribe(topics.state, qos=1)
            await c.subscribe(topics.events, qos=1)
            self._ready.set()
            async for msg in c.messages:
                payload = msg.payload
                if not isinstance(payload, (bytes, bytearray)):
                    continue
                try:
                    obj = json.loads(payload)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                async with self._changed:
                    if str(msg.topic) == topics.state:
                        self._on_state(obj)
                    else:
                        self._on_event(obj)
                    self._changed.notify_all()

    def _on_state(self, state: dict[str, Any]) -> None:
        self.state = state
        screen = tuple(str(x) for x in state.get("screen") or [])
        if screen and screen != self._last_screen:
            self._last_screen = screen
            self.printer.screen(list(screen), str(state.get("job_state")))

    def _on_event(self, ev: dict[str, Any]) -> None:
        key = (str(ev.get("job_id")), int(ev.get("seq") or 0))
        if key in self._seen:
            return
        self._seen.add(key)
        self.printer.event(ev)
        if ev.get("final"):
            self.finals[key[0]] = ev

    async def wait_for(self, pred: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(pred)
