"""shell/ratelimit.py without a network: Retry-After is read and capped, a throttled read
backs off within its bounds, and the bucket refuses a wait past the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lobbypay.core.athena import AthenaThrottled
from lobbypay.shell.ratelimit import (
    RETRY_AFTER_CAP_S,
    RateLimiter,
    retry_after_s,
    throttle_delay_s,
)

NOW = datetime(2026, 11, 27, 14, 2, 0, tzinfo=UTC)


def http_date(at: datetime) -> str:
    return at.strftime("%a, %d %b %Y %H:%M:%S GMT")


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("3", 3.0),
    (" 0.5 ", 0.5),
    ("0", 0.0),
    ("-4", 0.0),
    ("1e9", RETRY_AFTER_CAP_S),
    ("inf", RETRY_AFTER_CAP_S),
    ("nan", None),
    ("soon", None),
    (http_date(NOW + timedelta(seconds=30)), 30.0),
    (http_date(NOW - timedelta(seconds=30)), 0.0),
    (http_date(NOW + timedelta(days=2)), RETRY_AFTER_CAP_S),
    ("Fri, 27 Nov 2026 14:02:10", 10.0),  # no zone: taken as UTC
])
def test_retry_after(header: str | None, expected: float | None) -> None:
    headers = {} if header is None else {"retry-after": header}
    assert retry_after_s(headers, NOW) == expected


def test_throttle_delay_obeys_retry_after() -> None:
    assert throttle_delay_s({"retry-after": "2"}, NOW, attempt=5) == 2.0


@pytest.mark.parametrize(("attempt", "low", "high"), [
    (0, 0.25, 0.5), (1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (9, 4.0, 8.0),
])
def test_throttle_delay_backs_off_without_retry_after(attempt: int, low: float,
                                                      high: float) -> None:
    for _ in range(50):
        assert low <= throttle_delay_s({}, NOW, attempt) <= high


class StoppedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 100.0


async def test_the_bucket_refuses_a_wait_past_the_deadline() -> None:
    limiter = RateLimiter(2.0, StoppedClock())
    await limiter.acquire(deadline=100.0)
    await limiter.acquire(deadline=100.0)  # a burst of max(1, rps)
    with pytest.raises(AthenaThrottled, match="no time before the deadline"):
        await limiter.acquire(deadline=100.0)
    with pytest.raises(AthenaThrottled):
        await limiter.acquire(deadline=100.0, priority=True)
