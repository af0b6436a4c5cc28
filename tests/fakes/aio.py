"""Small asyncio helpers for driver tests: run a driver's ``run()`` for a block, and wait
for a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol


class Runs(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...


@contextlib.asynccontextmanager
async def running(driver: Runs) -> AsyncIterator[asyncio.Task[None]]:
    """``driver.run()`` as a task for the block; cancelled and awaited after it."""
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(pred: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``pred`` every 5 ms until it holds; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not pred():  # noqa: ASYNC110 - polling a test condition, bounded
            await asyncio.sleep(0.005)
