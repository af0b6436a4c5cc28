"""MqttLink's clean stop must not hang on a task that swallows its
cancellation. Python 3.11's ``asyncio.wait_for`` (used by aiomqtt's publish) returns the
result and drops the cancel when the PUBACK lands at the same moment; the state loop then
waited forever, ``stop()`` timed out in the app and ``online: false`` was never published
(a SIGTERM right after start-up hit it about one time in seven end to end)."""

from __future__ import annotations

import asyncio

from lobbypay.shell.mqtt import MqttLink


async def test_cancel_outlasts_a_task_that_swallows_one_cancel() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()  # like wait_for returning a result that raced the cancel
        await asyncio.sleep(30)

    async def polite() -> None:
        await asyncio.sleep(30)

    tasks = {asyncio.create_task(stubborn()), asyncio.create_task(polite())}
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await MqttLink._cancel(tasks)
    assert swallowed.is_set()
    assert all(t.done() for t in tasks)
