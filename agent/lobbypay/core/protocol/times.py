"""Time on the wire and on disk: one formatter per form, and the parser (pure).

* ``format_seconds(at)``: the protocol's timestamps (an event's ``at``, ``status.since``,
  ``state.athena``'s times, ``expires_at`` as the client sends it): UTC, whole seconds
  (a fraction is dropped), ``Z`` ("2026-11-27T14:03:07Z").
* ``format_time(at)``: UTC with the microseconds when there are any ("...T14:03:07Z",
  "...T14:03:07.250000Z"): datetimes in replies (``encode_json``) and the journal's
  records, where a job's times must come back exactly.
* ``parse_time(text)``: either form (or any ISO 8601 text with an offset) -> an aware
  UTC datetime: how the journal reads its records back.

Both formatters refuse a naive datetime: its zone would be a guess.
"""

from __future__ import annotations

from datetime import UTC, datetime


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"{name} needs an aware datetime")
    return at.astimezone(UTC)


def format_seconds(at: datetime) -> str:
    """Aware datetime -> "2026-11-27T14:03:07Z" (UTC, whole seconds)."""
    return _utc(at, "format_seconds").strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time(at: datetime) -> str:
    """Aware datetime -> "2026-11-27T14:03:07Z" (UTC, whole seconds unless given)."""
    return _utc(at, "format_time").isoformat().removesuffix("+00:00") + "Z"


def parse_time(text: str) -> datetime:
    """ISO 8601 text with ``Z`` or an offset -> aware UTC datetime. ``ValueError`` when it
    is not ISO 8601; text without an offset is taken as local time (``astimezone``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
