"""athena's clock as the terminal can know it (pure: no clock reads, no I/O).

A Raspberry Pi has no battery clock: until NTP syncs (or when it cannot) its wall clock
can be minutes or days off, and NTP may step it at any moment. Receipt matching must
therefore never compare athena's ``requestdate`` with the terminal's wall clock. Instead
``ServerClock`` ties athena's clock to the terminal's *monotonic* clock, which neither
jumps nor depends on NTP:

* every athena response carries a ``Date`` header (RFC 9110), athena's time floored to
  the second, stamped somewhere between the moment our request left (monotonic ``sent``)
  and the moment the answer arrived (``received``). So athena's time minus monotonic time,
  the *offset*, lies in ``[date - received, date + 1 - sent]``;
* each new sample is intersected with what is already known (widened by a generous
  drift allowance for the time since), so a few calls pin the offset to well under a
  second. A sample that contradicts the bounds (athena's clock was stepped, or another
  server answered) replaces them.

``Span`` is an interval of instants (aware UTC) known to contain the true time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: How fast the two clocks may drift apart, as a fraction (quartz is ~50 ppm; this is 1000).
DRIFT = 1e-3
#: athena's Date header has one-second resolution (the fraction is cut off).
DATE_RESOLUTION_S = 1.0


@dataclass(frozen=True, slots=True)
class Span:
    """``lo <= t <= hi`` for the instant ``t`` it stands for (both aware UTC)."""

    lo: datetime
    hi: datetime

    def __post_init__(self) -> None:
        if self.lo.tzinfo is None or self.hi.tzinfo is None:
            raise ValueError("a Span needs aware datetimes")
        if self.hi < self.lo:
            raise ValueError("a Span's hi is before its lo")

    def overlaps(self, other: Span) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def widened(self, before_s: float, after_s: float | None = None) -> Span:
        after = before_s if after_s is None else after_s
        return Span(self.lo - timedelta(seconds=before_s), self.hi + timedelta(seconds=after))

    @property
    def width_s(self) -> float:
        return (self.hi - self.lo).total_seconds()


@dataclass(frozen=True, slots=True)
class Offset:
    """athena's clock minus the terminal's wall clock, in seconds, +- ``uncertainty_s``."""

    seconds: float
    uncertainty_s: float


class ServerClock:
    """The offset between the terminal's monotonic clock and athena's clock."""

    def __init__(self) -> None:
        self._lo: float | None = None  # athena epoch seconds - monotonic seconds
        self._hi: float = 0.0
        self._at: float = 0.0  # monotonic time of the last sample
        self.samples = 0

    @property
    def known(self) -> bool:
        return self._lo is not None

    def observe(self, sent: float, received: float, date: datetime) -> None:
        """One response: request left at monotonic ``sent``, answer in at ``received``,
        its ``Date`` header read as ``date`` (aware). Nonsense samples are ignored."""
        if date.tzinfo is None or not sent <= received or received - sent > 3600:
            return
        d = date.timestamp()
        lo, hi = d - received, d + DATE_RESOLUTION_S - sent
        if self._lo is not None:
            w = DRIFT * max(0.0, received - self._at)
            plo, phi = self._lo - w, self._hi + w
            nlo, nhi = max(lo, plo), min(hi, phi)
            if nlo <= nhi:
                lo, hi = nlo, nhi
        self._lo, self._hi, self._at = lo, hi, max(received, self._at)
        self.samples += 1

    def now(self, mono: float) -> Span | None:
        """athena's time at monotonic ``mono``, or None before the first sample."""
        if self._lo is None:
            return None
        w = DRIFT * abs(mono - self._at)
        return Span(_from_epoch(mono + self._lo - w), _from_epoch(mono + self._hi + w))

    def offset(self, wall: datetime, mono: float) -> Offset | None:
        """athena's clock minus the wall clock ``wall`` read at monotonic ``mono``."""
        span = self.now(mono)
        if span is None:
            return None
        mid = (span.lo.timestamp() + span.hi.timestamp()) / 2
        return Offset(round(mid - wall.timestamp(), 3), round(span.width_s / 2, 3))


def wall_span(wall: datetime, uncertainty_s: float) -> Span:
    """The terminal's own reading taken at its word within ``uncertainty_s`` (only for a
    clock that NTP has synchronised, when athena gave no Date header to go by)."""
    return Span(wall, wall).widened(uncertainty_s)


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
