"""lobbypay.core.text: each caller keeps exactly the text its own helper used to make.

Every row of ``CALLERS`` is one place that cleaned text by hand before ``core.text``
existed: the hand-written form (as it was) beside the call that replaced it. Both must
agree on every sample, so the replacement character, the strip and the limit of each
place are pinned.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lobbypay.core import athena, balance, money
from lobbypay.core.protocol import decode
from lobbypay.core.text import ELLIPSIS, clip, printable, replace_unprintable
from lobbypay.shell import mqtt


def old_clip(text: object, limit: int) -> str:
    """core/job.py ``_clip`` (limit 200) and engine.py ``_safe`` (limit 160)."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


def old_peer_tail(text: str) -> str:
    """The end of core/athena.py ``clean_peer_text`` (after the redaction)."""
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(text) > 300:
        text = text[: 300 - 3] + "..."
    return text


def old_protocol_snippet(text: str) -> str:
    """core/protocol.py ``_snippet``."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:40])
    return repr(clean + ("..." if len(text) > 40 else ""))


def old_repr_hint(value: str) -> str:
    """core/money.py and core/balance.py ``_snippet`` for a string."""
    text = "".join(ch if ch.isprintable() else "?" for ch in repr(value[:12]))
    return text if len(text) <= 12 else text[:9] + "..."


def old_short(text: str) -> str:
    """shell/mqtt.py ``_short`` (after building the text)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:200])


SAMPLES: list[str] = [
    "",
    " ",
    "ok",
    "  padded  ",
    "tab\there",
    "line\nbreak\r\n",
    "\x1b[2Jclear",
    "\x00\x01\x7f",
    "zero\u200bwidth",
    "nbsp\u00a0space",
    "caf\u00e9 \u00f1and\u00fa",
    "\u2028sep\u2029",
    "7" * 8,
    "7" * 9,
    "7" * 10,
    "7" * 11,
    "7" * 12,
    "7" * 13,
    "x" * 39,
    "x" * 40,
    "x" * 41,
    "x" * 43,
    "x" * 44,
    "\n" * 5 + "y" * 200,
    "y" * 157 + "\n\n\n",
    "y" * 160,
    "y" * 161,
    "z" * 199,
    "z" * 200,
    "z" * 201,
    " " * 250 + "w",
    "v" * 299,
    "v" * 300,
    "v" * 301,
    "\x00" * 500,
    "u" * 5000,
]

CALLERS: list[tuple[str, Callable[[str], str], Callable[[str], str]]] = [
    ("job._clip", lambda s: old_clip(s, 200), lambda s: printable(s, 200)),
    ("engine._safe", lambda s: old_clip(s, 160), lambda s: printable(s, 160)),
    ("athena.clean_peer_text", old_peer_tail, lambda s: printable(s, 300)),
    ("protocol._snippet", old_protocol_snippet, decode._snippet),
    ("money._snippet", old_repr_hint, money._snippet),
    ("balance._snippet", old_repr_hint, balance._snippet),
    ("mqtt._short", old_short, lambda s: replace_unprintable(s[:200])),
]


@pytest.mark.parametrize(("name", "old", "new"), CALLERS, ids=[c[0] for c in CALLERS])
@pytest.mark.parametrize("sample", SAMPLES, ids=range(len(SAMPLES)))
def test_each_caller_makes_the_text_it_made_before(
    name: str, old: Callable[[str], str], new: Callable[[str], str], sample: str
) -> None:
    assert new(sample) == old(sample)


@pytest.mark.parametrize("value", [None, 42, 4.5, ValueError("bad\nthing"), b"\x00raw"])
def test_printable_takes_any_value_as_str_did(value: object) -> None:
    assert printable(value, 200) == old_clip(value, 200)


def test_clean_peer_text_still_masks_then_cleans() -> None:
    text = "card 4111 1111 1111 1111\x00 %B4111111111111111^DOE/JANE^3012?\n"
    assert athena.clean_peer_text(text) == "card [redacted]  [redacted]"
    assert athena.clean_peer_text(None) == ""
    assert athena.clean_peer_text("x" * 400) == "x" * 297 + ELLIPSIS


def test_mqtt_short_names_the_exception_and_stays_printable() -> None:
    assert mqtt._short(OSError("refused\r\nby peer")) == "OSError: refused??by peer"
    assert len(mqtt._short(OSError("e" * 500))) == 200


@pytest.mark.parametrize(("text", "limit", "out"), [
    ("", 5, ""), ("abcde", 5, "abcde"), ("abcdef", 5, "ab..."), ("abcdefghij", 3, "..."),
])
def test_clip_keeps_the_limit_including_the_ellipsis(text: str, limit: int, out: str) -> None:
    assert clip(text, limit) == out
    assert len(clip(text, limit)) <= limit


def test_replace_unprintable_keeps_the_length_and_takes_a_replacement() -> None:
    assert replace_unprintable("a\x00b\nc") == "a?b?c"
    assert replace_unprintable("a\x00b", "_") == "a_b"
    plain = "nothing to do"
    assert replace_unprintable(plain) is plain


def test_printable_with_a_question_mark_still_strips() -> None:
    assert printable(" \x00a\x00 ", 10, replace="?") == "?a?"
