"""Named crash points for the crash tests (docs/RELIABILITY.md, "Crash points").

``failpoint(name)`` kills the process with SIGKILL when ``name`` is armed: no ``finally``,
no atexit, no flush, no MQTT DISCONNECT (the broker sends the last will), exactly what a
power cut or the OOM killer does to the agent at that line.

Arming needs two environment variables, both read once at import:

* ``LOBBYPAY_FAILPOINTS``: a comma list of point names (``after_submit_journal,...``);
  ``name@N`` crashes on the N-th time the point is reached (default: the first), e.g.
  ``after_publish_before_ack@4`` dies after the PUBACK of a charge's fourth event;
* ``LOBBYPAY_TEST_MODE=1``: the explicit guard. Without it the list is ignored (and a
  warning is logged once), so a stray ``Environment=`` line in a unit file can never
  turn a production terminal into one that kills itself on every charge.

Nothing in the shipped unit, installer or CLI sets either variable. When they are unset,
``ARMED`` is an empty dict and ``failpoint()`` is one dict lookup.

Names in use (``POINTS``); the engine and the MQTT link call them at these moments:

* ``after_accept``: the ``pending`` event is journaled, the reply not yet sent;
* ``after_card_read``: ``card_read`` journaled, ``submitting`` not yet;
* ``after_submit_journal``: ``submitting`` fsynced, the POST not yet sent;
* ``after_response``: the POST returned, its result not yet journaled;
* ``before_publish``: a final event journaled, not yet handed to MQTT;
* ``after_publish_before_ack``: a row published and PUBACKed, its outbox row not yet
  deleted;
* ``after_void_journal``: athena confirmed a void and ``voided`` is fsynced, the reply
  not yet sent (protocol 10: the void is journaled before it is reported).

"The POST is in flight" has no line of its own: the tests slow the simulator's POST
down and kill the agent from outside.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping

POINTS = frozenset({
    "after_accept",
    "after_card_read",
    "after_submit_journal",
    "after_response",
    "before_publish",
    "after_publish_before_ack",
    "after_void_journal",
})

ENV_POINTS = "LOBBYPAY_FAILPOINTS"
ENV_GUARD = "LOBBYPAY_TEST_MODE"


def parse(raw: str) -> dict[str, int]:
    """``"a,b@3"`` -> ``{"a": 1, "b": 3}``; unknown names or bad counts raise ValueError
    (a typo must not make a crash test pass without crashing)."""
    armed: dict[str, int] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, nth = item.partition("@")
        if name not in POINTS:
            raise ValueError(f"unknown crash point {name!r}; known: {sorted(POINTS)}")
        if nth and not (nth.isdigit() and int(nth) >= 1):
            raise ValueError(f"crash point {name!r}: count must be an integer >= 1")
        armed[name] = int(nth) if nth else 1
    return armed


def _armed_from(environ: Mapping[str, str]) -> dict[str, int]:
    raw = environ.get(ENV_POINTS, "")
    if not raw.strip():
        return {}
    if environ.get(ENV_GUARD) != "1":
        logging.getLogger("lobbypay.failpoints").warning(
            "%s is set but %s is not 1: crash points stay off", ENV_POINTS, ENV_GUARD)
        return {}
    try:
        return parse(raw)
    except ValueError as exc:
        raise SystemExit(f"{ENV_POINTS}: {exc}") from None


#: The armed points and the hit that crashes (empty in production).
ARMED: dict[str, int] = _armed_from(os.environ)
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is armed and this is its crashing hit."""
    if name in ARMED:
        hit = _hits.get(name, 0) + 1
        _hits[name] = hit
        if hit >= ARMED[name]:
            os.kill(os.getpid(), signal.SIGKILL)
