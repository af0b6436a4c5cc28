"""Timestamps of the swipe path's steps, for scripts/bench (docs/PERFORMANCE.md).

Off unless both ``LOBBYPAY_TEST_MODE=1`` and ``LOBBYPAY_STEPTRACE=<file>`` are set (read
once at import; nothing in the shipped unit, installer or CLI sets either). Off,
``mark()`` is one global test. On, each ``mark(name)`` stores ``perf_counter()`` and the
name's number in two arrays allocated once at start (``MAX_MARKS`` of them, about
200 KB, so the trace does not grow the process the bench measures; once full, later
marks are dropped), with no I/O on the path measured; the marks are written to the file
as JSON when the process exits. ``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux,
the clock the bench stamps its swipes and received events with, so the two line up.

Names carry no data: no payload, card, patient or job id (``journal.submitting``,
``post.sent``, ``outbox.published``, ...).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from array import array

ENV_FILE = "LOBBYPAY_STEPTRACE"
#: Marks kept: the bench's charges make about 50 each (swipe, charge.start, ping, state),
#: its 150 charges well under this; the throughput and memory runs after them fill the
#: rest and are not traced.
MAX_MARKS = 20_000

ON: bool = os.environ.get("LOBBYPAY_TEST_MODE") == "1" and bool(os.environ.get(ENV_FILE))
_times = array("d", bytes(8 * MAX_MARKS)) if ON else array("d")
_codes = array("H", bytes(2 * MAX_MARKS)) if ON else array("H")
_names: dict[str, int] = {}
_count = 0
_clock = time.perf_counter


def mark(name: str) -> None:
    """Note that step ``name`` happens now (when tracing is on)."""
    global _count
    if ON and _count < MAX_MARKS:
        code = _names.get(name)
        if code is None:
            code = _names[name] = len(_names)
        _times[_count] = _clock()
        _codes[_count] = code
        _count += 1


def marks() -> list[tuple[float, str]]:
    by_code = {c: n for n, c in _names.items()}
    return [(_times[i], by_code[_codes[i]]) for i in range(_count)]


def _dump() -> None:
    path = os.environ.get(ENV_FILE)
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump([[round(t, 7), n] for t, n in marks()], f)
    os.replace(tmp, path)


if ON:
    atexit.register(_dump)
    try:  # the reader drivers are a package of their own: they take a plain hook
        from lobbypay_hw import _common as _hw

        _hw.TRACE = mark
    except ImportError:  # pragma: no cover - the drivers always ship with the agent
        pass
