"""The retained messages (protocol.md 8): ``status`` and ``state``, built in one place (pure).

``status_object`` is also the MQTT last will (with ``online`` false). ``state_object`` is
the retained ``state`` and the ``ping`` reply's ``state``; the engine supplies what it
knows, this module gives it its shape and key order (the bytes are compared: a state
that did not change is not published again).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import NotRequired, TypedDict

from lobbypay.core.clock import Offset
from lobbypay.core.protocol.envelope import PROTOCOL_VERSION
from lobbypay.core.protocol.times import format_seconds

#: ``state.job_state`` while no job holds the terminal.
IDLE = "idle"


class StatusObject(TypedDict):
    v: int
    online: bool
    session: int
    since: str
    version: str


class ReaderState(TypedDict):
    driver: str
    connected: bool
    #: a reader set-up problem seen in a swipe (``encrypted_reader``), until a clear one
    last_error: NotRequired[str]


class DisplayState(TypedDict):
    driver: str
    connected: bool


class AthenaFault(TypedDict):
    code: str
    message: str
    at: str


class AthenaState(TypedDict):
    last_ok_at: str | None
    #: the error that stands: a later success clears it
    last_error: AthenaFault | None


class ClockHealth(TypedDict):
    synchronized: bool | None
    athena_offset_s: int | None
    uncertainty_s: int | None


class TerminalState(TypedDict):
    v: int
    job_id: str | None
    job_state: str
    screen: list[str]
    reader: ReaderState
    display: DisplayState
    athena: AthenaState
    outbox: int
    clock: ClockHealth


def clock_health(synchronized: bool | None, offset: Offset | None) -> ClockHealth:
    """``state.clock``: the system's word on NTP sync, and athena's clock minus the
    terminal's in whole seconds, +- ``uncertainty_s`` rounded up (at least 1); the offset
    is null until athena has answered with a Date header."""
    return {
        "synchronized": synchronized,
        "athena_offset_s": round(offset.seconds) if offset is not None else None,
        "uncertainty_s": (max(1, math.ceil(offset.uncertainty_s)) if offset is not None
                          else None),
    }


def status_object(online: bool, *, session: int, since: datetime, version: str) -> StatusObject:
    """``{"v", "online", "session", "since", "version"}``: ``session`` rises by one at every
    start of the agent, ``since`` is when this one started."""
    return {
        "v": PROTOCOL_VERSION,
        "online": online,
        "session": session,
        "since": format_seconds(since),
        "version": version,
    }


def state_object(
    *,
    job_id: str | None,
    job_state: str | None,
    screen: Iterable[str],
    reader_driver: str,
    reader_connected: bool,
    reader_error: str | None = None,
    display_driver: str,
    display_connected: bool,
    athena_last_ok_at: str | None,
    athena_last_error: AthenaFault | None,
    outbox: int,
    clock: ClockHealth,
) -> TerminalState:
    """The ``state`` object. ``job_state`` None: no job holds the terminal (``"idle"``);
    ``reader_error``: shown as ``reader.last_error`` when set; ``outbox``: events not
    yet acknowledged by the broker (-1 when the journal could not say); ``clock``: the
    additive ``state.clock`` object as given."""
    reader: ReaderState = {"driver": reader_driver, "connected": reader_connected}
    if reader_error:
        reader["last_error"] = reader_error
    return {
        "v": PROTOCOL_VERSION,
        "job_id": job_id,
        "job_state": IDLE if job_state is None else str(job_state),
        "screen": list(screen),
        "reader": reader,
        "display": {"driver": display_driver, "connected": display_connected},
        "athena": {"last_ok_at": athena_last_ok_at,
                   "last_error": None if athena_last_error is None else athena_last_error.copy()},
        "outbox": outbox,
        "clock": clock.copy(),
    }
