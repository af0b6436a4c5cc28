"""The real clock: wall time for the record, monotonic time for every deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SystemClock:
    """The system's clocks (``ports.Clock``)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


__all__ = ["SystemClock"]
