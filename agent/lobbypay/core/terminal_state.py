"""The protocol 8 ``state`` object's shape (pure), as the engine builds it and the app
publishes it (retained, on ``lobbypay/v1/<tid>/state``, and in ``ping`` replies).

The JSON Schema (``lobbypay.schemas``, kind ``state``) is the contract; these types are
the same shape for the type checker.
"""

from __future__ import annotations

import math
from typing import NotRequired, TypedDict

from lobbypay.core.clock import Offset

STATE_VERSION = 1
#: ``job_state`` while no job holds the terminal.
IDLE = "idle"


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
