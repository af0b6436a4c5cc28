"""Timestamps of the swipe path's steps, for scripts/bench (docs/PERFORMANCE.md).

Off unless both ``LOBBYPAY_TEST_MODE=1`` and ``LOBBYPAY_STEPTRACE=<file>`` are set (read
once at import; nothing in the shipped unit, installer or CLI sets either). Off,
``mark()`` is one global test. On, each ``mark(name)`` appends ``(perf_counter(), name)``
to a bounded list in memory (no I/O on the path measured); the list is written to the
file as JSON when the process exits. ``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux,
the clock the bench stamps its swipes and received events with, so the two line up.

Names carry no data: no payload, card, patient or job id (``journal.submitting``,
``post.sent``, ``outbox.published``, ...).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import deque

ENV_FILE = "LOBBYPAY_STEPTRACE"
#: Marks kept (a bench run makes ~30 per charge); the oldest go first.
MAX_MARKS = 200_000

ON: bool = os.environ.get("LOBBYPAY_TEST_MODE") == "1" and bool(os.environ.get(ENV_FILE))
_marks: deque[tuple[float, str]] = deque(maxlen=MAX_MARKS)
_clock = time.perf_counter


def mark(name: str) -> None:
    """Note that step ``name`` happens now (when tracing is on)."""
    if ON:
        _marks.append((_clock(), name))


def marks() -> list[tuple[float, str]]:
    return list(_marks)


def _dump() -> None:
    path = os.environ.get(ENV_FILE)
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump([[round(t, 7), n] for t, n in _marks], f)
    os.replace(tmp, path)


if ON:
    atexit.register(_dump)
    try:  # the reader drivers are a package of their own: they take a plain hook
        from lobbypay_hw import _common as _hw

        _hw.TRACE = mark
    except ImportError:  # pragma: no cover - the drivers always ship with the agent
        pass
