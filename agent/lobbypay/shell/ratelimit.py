"""How fast we may ask athena, and how long athena tells us to wait.

``RateLimiter`` is the client-side token bucket every athena request passes through (the
payment POST ahead of queued reads). ``retry_after_s`` reads a ``Retry-After`` header and
``throttle_delay_s`` is the wait before a throttled read is tried again: athena's
``Retry-After`` when it gave one, else a jittered exponential backoff.

No httpx here: the headers are any case-insensitive mapping (``httpx.Headers``).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from lobbypay.core.athena import AthenaThrottled
from lobbypay.ports import Clock

#: The longest wait a ``Retry-After`` may impose (token lockouts, throttled reads).
RETRY_AFTER_CAP_S: Final = 120.0
#: Throttle backoff without Retry-After: 0.5, 1, 2, 4, 8 s (each jittered down to half).
THROTTLE_BACKOFF_BASE_S: Final = 0.5
THROTTLE_BACKOFF_CAP_S: Final = 8.0


class RateLimiter:
    """Token bucket: ``rps`` requests per second, bursts of up to ``max(1, rps)``."""

    def __init__(self, rps: float, clock: Clock) -> None:
        self._rps = rps
        self._capacity = max(1.0, rps)
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock.monotonic()
        self._lock = asyncio.Lock()
        self._priority = 0  # priority callers waiting

    async def acquire(self, deadline: float, *, priority: bool = False) -> None:
        """``priority`` (the payment POST) skips the queue: reads waiting for a slot let it
        have the next one, so a storm of reads cannot time a swiped card's POST out."""
        if priority:
            self._priority += 1
            try:
                await self._take(deadline, priority=True)
            finally:
                self._priority -= 1
            return
        async with self._lock:  # FIFO: waiters queue here in arrival order
            await self._take(deadline, priority=False)

    async def _take(self, deadline: float, *, priority: bool) -> None:
        while True:
            now = self._clock.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rps)
            self._stamp = now
            if self._tokens >= 1.0 and (priority or not self._priority):
                self._tokens -= 1.0
                return
            wait = max((1.0 - self._tokens) / self._rps, 0.0) or 1.0 / self._rps
            if now + wait > deadline:
                raise AthenaThrottled(
                    f"client rate limit ({self._rps:g}/s) leaves no time before the deadline"
                )
            await asyncio.sleep(wait)


def retry_after_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), within 0..``RETRY_AFTER_CAP_S``;
    None when absent or unreadable. A huge, infinite or NaN value is capped, never obeyed:
    it would lock athena out until a restart."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        delta = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = (when - now).total_seconds()
    if math.isnan(delta):
        return None
    return min(RETRY_AFTER_CAP_S, max(0.0, delta))


def throttle_delay_s(headers: Mapping[str, str], now: datetime, attempt: int) -> float:
    """How long to wait before trying a throttled read again, after ``attempt`` throttled
    answers before this one: ``Retry-After``, else 0.5 s doubling up to 8 s, jittered
    down to half."""
    delay = retry_after_s(headers, now)
    if delay is not None:
        return delay
    cap = min(THROTTLE_BACKOFF_CAP_S, THROTTLE_BACKOFF_BASE_S * 2**attempt)
    return random.uniform(cap / 2, cap)  # noqa: S311 - jitter, not crypto


__all__ = ["RETRY_AFTER_CAP_S", "RateLimiter", "retry_after_s", "throttle_delay_s"]
