"""Text fit to keep: printable, bounded, and with card-shaped runs masked (pure).

Everything lobbypay copies from a peer or an exception into a reply, an event, the
journal or a log line goes through one of these, so a control character, an escape
sequence or a megabyte of text never travels on:

* ``printable(value, limit)``: ``str(value)`` with every character that is not printable
  replaced (by a space unless told otherwise), surrounding whitespace stripped, and at
  most ``limit`` characters: the form of messages (athena's texts, error messages);
* ``replace_unprintable(text)``: each character that is not printable becomes one ``?``
  (so the length is kept), nothing stripped or cut: hints of a bad value;
* ``clip(text, limit)``: at most ``limit`` characters, the last three ``...`` when cut.

"Printable" is ``str.isprintable``: no control or format characters, no separators other
than the plain space.

``TRACK1_RE``, ``TRACK2_RE`` and ``TRACK_NAME_RE`` are what magnetic-stripe track text
looks like inside other text; the log redaction (``shell/logsafe.py``) and athena's text
(``core/athena.clean_peer_text``) both mask them with ``REDACTED``.
"""

from __future__ import annotations

import re

#: How much of a peer's or an exception's text a log line or an error message quotes.
QUOTE_MAX = 160
#: What a cut text ends with.
ELLIPSIS = "..."
#: What masked card data is replaced with.
REDACTED = "[redacted]"
#: Track 1 (``%B<PAN>^<NAME>^<YYMM>...?``).
TRACK1_RE = re.compile(r"%[A-Za-z][^?\n]{0,120}\?")
#: Track 2 (``;<PAN>=<YYMM>...?``), sentinels optional.
TRACK2_RE = re.compile(r";?\d{8,19}=[0-9=]{0,40}\??")
#: A track-1 name field (``^SURNAME/GIVEN^``) on its own.
TRACK_NAME_RE = re.compile(r"\^[^^\n]{1,30}\^")


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 3`` and
    ``"..."`` (``limit`` characters in all)."""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS


def replace_unprintable(text: str, replace: str = "?") -> str:
    """``text`` with each character that is not printable replaced by ``replace``."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else replace for ch in text)


def printable(value: object, limit: int, *, replace: str = " ") -> str:
    """``str(value)`` made printable (each other character becomes ``replace``), stripped
    of surrounding whitespace, and clipped to ``limit`` characters (``clip``)."""
    return clip(replace_unprintable(str(value), replace).strip(), limit)
