"""The retained messages (protocol.md 8): ``status`` and ``state``, built in one place (pure).

``status_object`` is also the MQTT last will (with ``online`` false). ``state_object`` is
the retained ``state`` and the ``ping`` reply's ``state``; the engine supplies what it
knows, this module gives it its shape and key order (the bytes are compared: a state
that did not change is not published again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lobbypay.core.protocol.envelope import PROTOCOL_VERSION
from lobbypay.core.protocol.times import format_seconds

#: ``state.job_state`` while no job holds the terminal.
IDLE = "idle"


def status_object(online: bool, *, session: int, since: datetime, version: str) -> dict[str, Any]:
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
    athena_last_error: Mapping[str, Any] | None,
    outbox: int,
    clock: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``state`` object. ``job_state`` None: no job holds the terminal (``"idle"``);
    ``reader_error``: shown as ``reader.last_error`` when set; ``outbox``: events not
    yet acknowledged by the broker (-1 when the journal could not say); ``clock``: the
    additive ``state.clock`` object as given."""
    reader: dict[str, Any] = {"driver": reader_driver, "connected": reader_connected}
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
                   "last_error": None if athena_last_error is None else dict(athena_last_error)},
        "outbox": outbox,
        "clock": dict(clock),
    }
