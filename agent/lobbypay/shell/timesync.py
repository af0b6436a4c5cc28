"""Is the system clock synchronised? (for the clock-health fields and doctor)

Two sources, the first that answers wins:

1. systemd-timesyncd touches ``/run/systemd/timesync/synchronized`` once it has
   synchronised the clock (and removes it at boot);
2. the kernel's own view, ``adjtimex(2)`` with no modes set (read-only, allowed to any
   user): ``TIME_ERROR`` or the ``STA_UNSYNC`` status bit mean "not synchronised". This is
   what chrony, ntpd and timesyncd all maintain.

Answers ``None`` when neither can be read. The result only informs: receipt matching
never trusts the terminal's wall clock (lobbypay.core.clock) unless it is synchronised
and athena gave no ``Date`` header to go by.
"""

from __future__ import annotations

import ctypes
import os

TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
_TIME_ERROR = 5
_STA_UNSYNC = 0x0040


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): the fields we read come first; the kernel's trailing
    # padding is covered by the reserved block.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    ]


_libc: ctypes.CDLL | None = None


def _adjtimex() -> bool | None:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc
        libc = _libc
        tx = _Timex()
        state = int(libc.adjtimex(ctypes.byref(tx)))
    except (OSError, AttributeError, ValueError):
        return None
    if state < 0:
        return None
    return not (state == _TIME_ERROR or tx.status & _STA_UNSYNC)


def clock_synchronized(flag_path: str = TIMESYNCD_FLAG) -> bool | None:
    """True / False when the system says so, None when it cannot tell."""
    if os.path.exists(flag_path):
        return True
    return _adjtimex()
