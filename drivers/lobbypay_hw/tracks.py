"""ISO/IEC 7813 swipe parsing (pure): raw reader output -> ``BankCard`` or ``SwipeError``.

Input is what one swipe produced, as bytes: track 1 (``%B PAN ^ NAME ^ YYMM SVC ... ?``)
and/or track 2 (``; PAN = YYMM SVC ... ?``), possibly wrapped in STX/ESC ... CR/ETX, with
the reader's error marks (``%E?``, ``;E?``) for tracks it could not decode, and with
noise before, between and after the tracks.

Rules (see docs/drivers.md for the reasoning):

* A charge needs a good track 2. Track 1 alone is ``NO_TRACK2``.
* A track 1 that is present and not an error mark must be well formed and agree with
  track 2 (PAN and expiry), otherwise the swipe is ``UNREADABLE``.
* Licence, loyalty and access cards (track 1 format code other than ``B``, a track 2 with
  no ``=`` or a PAN outside 12-19 digits, AAMVA IIN ``636``) are ``NOT_A_BANK_CARD``.
* Luhn failure is ``BAD_CHECK_DIGIT``.
* Masked or encrypted reader output (``protected.is_protected``) is ``ENCRYPTED_READER``,
  checked before anything else is parsed.
* ``trackdata()`` of the result is the good track 1 (if any) followed by track 2, each
  exactly as swiped with its sentinels; wrappers, noise, error marks and track 3 are left
  out.

The parser never decodes the input into ``str`` and never copies it except into the
card's own buffer: it walks index spans of the caller's bytes. ``SwipeError`` carries only
a ``ReadFailure`` reason; no exception raised here has the input in its text or context.
"""

from __future__ import annotations

from dataclasses import dataclass

from lobbypay_hw.api import ReadFailure
from lobbypay_hw.card import BankCard
from lobbypay_hw.luhn import luhn_ok
from lobbypay_hw.protected import is_protected

# The longest swipe we look at. Three clear tracks (79 + 40 + 107) plus wrappers fit in
# 512, but an encrypting reader's output (masked tracks, then the hex ciphertext of each
# track, MagnePrint data, serial and KSN) runs to about 1100 bytes, and must reach
# protected.is_protected to be refused as such rather than as "too long". Anything longer
# is a stuck key.
MAX_SWIPE_BYTES = 2048

_TRACK1_MAX = 79  # ISO/IEC 7813, sentinels included
_TRACK2_MAX = 40
_PAN_MIN, _PAN_MAX = 12, 19
_NAME_MIN, _NAME_MAX = 2, 26

_PCT, _SEMI, _PLUS, _QMARK, _CARET, _EQ = 0x25, 0x3B, 0x2B, 0x3F, 0x5E, 0x3D
_D0, _D9 = 0x30, 0x39
_LETTER_E, _LETTER_B = 0x45, 0x42

# AAMVA driver licences and state IDs use the IIN range 636xxx on track 2.
_AAMVA_IIN = (6, 3, 6)


class SwipeError(Exception):
    """A swipe that gives no usable card. The text names the reason only."""

    def __init__(self, reason: ReadFailure) -> None:
        super().__init__(f"swipe rejected: {reason.value}")
        self.reason = reason


# ---------------------------------------------------------------- track spans


@dataclass(slots=True)
class _T1:
    start: int  # index of '%'
    end: int  # index of '?'
    pan: tuple[int, int]  # [a, b) span of the PAN digits
    exp_year: int
    exp_month: int


@dataclass(slots=True)
class _T2:
    start: int  # index of ';'
    end: int  # index of '?'
    pan: tuple[int, int]
    exp_year: int
    exp_month: int


class _Kind:
    """What a track turned out to be, short of a good parse."""

    ABSENT = "absent"
    ERROR = "error"  # the reader's own error mark: %E? / ;E?
    BROKEN = "broken"  # bad structure, bad characters, missing end sentinel
    OTHER = "other"  # well formed, but not a bank card


_T1State = _T1 | str
_T2State = _T2 | str


def _is_digit(b: int) -> bool:
    return _D0 <= b <= _D9


def _all_digits(raw: bytes | bytearray, a: int, b: int) -> bool:
    return all(_is_digit(raw[i]) for i in range(a, b))


def _num(raw: bytes | bytearray, a: int, b: int) -> int:
    n = 0
    for i in range(a, b):
        n = n * 10 + (raw[i] - _D0)
    return n


def _expiry(raw: bytes | bytearray, a: int) -> tuple[int, int] | None:
    """YYMM at ``raw[a:a+4]`` -> (year, month), or None when malformed."""
    if not _all_digits(raw, a, a + 4):
        return None
    month = _num(raw, a + 2, a + 4)
    if not 1 <= month <= 12:
        return None
    return 2000 + _num(raw, a, a + 2), month


def _find(raw: bytes | bytearray, byte: int, a: int, b: int) -> int:
    for i in range(a, b):
        if raw[i] == byte:
            return i
    return -1


def _is_error_mark(raw: bytes | bytearray, start: int, end: int) -> bool:
    return end == start + 2 and raw[start + 1] == _LETTER_E


def _parse_t1(raw: bytes | bytearray, start: int, end: int) -> _T1State:
    if _is_error_mark(raw, start, end):
        return _Kind.ERROR
    if end - start + 1 > _TRACK1_MAX:
        return _Kind.BROKEN
    # Track 1 characters are 0x20-0x5F; '%' and '?' only as sentinels.
    for i in range(start + 1, end):
        c = raw[i]
        if not 0x20 <= c <= 0x5F or c in (_PCT, _QMARK):
            return _Kind.BROKEN
    if end == start + 1:
        return _Kind.BROKEN
    fmt = raw[start + 1]
    if fmt != _LETTER_B:
        # %CA... (AAMVA), %A... (reserved) and other formats: not a bank card.
        return _Kind.OTHER if 0x41 <= fmt <= 0x5A else _Kind.BROKEN
    pan_a = start + 2
    pan_b = _find(raw, _CARET, pan_a, end)
    if pan_b < 0 or not _PAN_MIN <= pan_b - pan_a <= _PAN_MAX or not _all_digits(raw, pan_a, pan_b):
        return _Kind.BROKEN
    name_a = pan_b + 1
    name_b = _find(raw, _CARET, name_a, end)
    if name_b < 0 or not _NAME_MIN <= name_b - name_a <= _NAME_MAX:
        return _Kind.BROKEN
    # YYMM then a 3-digit service code.
    tail = name_b + 1
    if end - tail < 7 or not _all_digits(raw, tail + 4, tail + 7):
        return _Kind.BROKEN
    exp = _expiry(raw, tail)
    if exp is None:
        return _Kind.BROKEN
    return _T1(start, end, (pan_a, pan_b), exp[0], exp[1])


def _parse_t2(raw: bytes | bytearray, start: int, end: int) -> _T2State:
    if _is_error_mark(raw, start, end):
        return _Kind.ERROR
    if end - start + 1 > _TRACK2_MAX or end == start + 1:
        return _Kind.BROKEN
    sep = -1
    for i in range(start + 1, end):
        c = raw[i]
        if c == _EQ and sep < 0:
            sep = i
        elif not _is_digit(c):
            return _Kind.BROKEN
    if sep < 0:
        return _Kind.OTHER  # digits only: a loyalty or access card number
    pan_a, pan_b = start + 1, sep
    if not _PAN_MIN <= pan_b - pan_a <= _PAN_MAX:
        return _Kind.OTHER
    if tuple(raw[pan_a + k] - _D0 for k in range(3)) == _AAMVA_IIN:
        return _Kind.OTHER
    # YYMM then a 3-digit service code after the separator.
    if end - (sep + 1) < 7:
        return _Kind.BROKEN
    exp = _expiry(raw, sep + 1)
    if exp is None:
        return _Kind.BROKEN
    return _T2(start, end, (pan_a, pan_b), exp[0], exp[1])


def _spans(raw: bytes | bytearray) -> tuple[tuple[int, int] | None, tuple[int, int] | None, bool]:
    """Locate track 1 and track 2 as (start, end) index pairs.

    Returns (t1, t2, broken): ``broken`` is True when a start sentinel has no end
    sentinel (a truncated track). Bytes outside sentinel pairs are noise. Track 1 is the
    first ``%`` track before any ``;`` track; track 2 the first ``;`` track; later ``;``
    or ``+`` tracks are track 3 and are ignored.
    """
    t1: tuple[int, int] | None = None
    t2: tuple[int, int] | None = None
    broken = False
    n = len(raw)
    i = 0
    while i < n:
        c = raw[i]
        if c == _PCT and t1 is None and t2 is None:
            # Track 1 runs to its '?'. A ';' first means its end sentinel was lost.
            j = i + 1
            while j < n and raw[j] not in (_QMARK, _SEMI):
                j += 1
            if j >= n or raw[j] != _QMARK:
                broken = True
                i = j
                continue
            t1 = (i, j)
            i = j + 1
        elif c == _SEMI and t2 is None:
            j = _find(raw, _QMARK, i + 1, n)
            if j < 0:
                broken = True
                break
            t2 = (i, j)
            i = j + 1
        elif c in (_SEMI, _PLUS) and t2 is not None:
            break  # track 3 and whatever follows: not ours to read
        else:
            i += 1
    return t1, t2, broken


# ---------------------------------------------------------------- card numbers


def brand_of(raw: bytes | bytearray, a: int, b: int) -> str:
    """Card brand from the leading digits of the PAN at ``raw[a:b]``."""
    length = b - a

    def prefix(k: int) -> int:
        return _num(raw, a, a + min(k, length))

    p1, p2, p3, p4, p6 = prefix(1), prefix(2), prefix(3), prefix(4), prefix(6)
    if p2 in (34, 37):
        return "amex"
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard"
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:
        return "discover"
    if 3528 <= p4 <= 3589:
        return "jcb"
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners"
    if p2 == 62:
        return "unionpay"
    if p1 == 4:
        return "visa"
    return "unknown"


def _same_digits(raw: bytes | bytearray, x: tuple[int, int], y: tuple[int, int]) -> bool:
    if x[1] - x[0] != y[1] - y[0]:
        return False
    return all(raw[x[0] + k] == raw[y[0] + k] for k in range(x[1] - x[0]))


# ---------------------------------------------------------------- entry point


def parse_swipe(raw: bytes | bytearray) -> BankCard:
    """Parse one swipe. Returns a ``BankCard`` or raises ``SwipeError(reason)``.

    The caller keeps ownership of ``raw`` (and wipes it if it is a bytearray); the card
    gets its own copy of the tracks it needs.
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("parse_swipe takes bytes or bytearray")
    reason: ReadFailure | None = None
    try:
        return _parse(raw)
    except SwipeError as exc:
        reason = exc.reason
    except Exception:  # noqa: BLE001 - a parser bug must not leak input via its traceback
        reason = ReadFailure.UNREADABLE
    # Raised outside the except blocks so no exception context (which could hold input)
    # is attached.
    raise SwipeError(reason)


def _parse(raw: bytes | bytearray) -> BankCard:
    if len(raw) > MAX_SWIPE_BYTES:
        raise SwipeError(ReadFailure.TOO_LONG)
    if is_protected(raw):
        raise SwipeError(ReadFailure.ENCRYPTED_READER)
    s1, s2, truncated = _spans(raw)
    t1: _T1State = _parse_t1(raw, *s1) if s1 else _Kind.ABSENT
    t2: _T2State = _parse_t2(raw, *s2) if s2 else _Kind.ABSENT

    if t1 == _Kind.OTHER or t2 == _Kind.OTHER:
        raise SwipeError(ReadFailure.NOT_A_BANK_CARD)
    if t1 == _Kind.BROKEN or t2 == _Kind.BROKEN:
        raise SwipeError(ReadFailure.UNREADABLE)
    if not isinstance(t2, _T2):
        # Track 2 absent or an error mark. A good track 1 alone cannot be charged.
        # (A truncated swipe, or one with only error marks, is just unreadable.)
        good_t1 = isinstance(t1, _T1) and not truncated
        raise SwipeError(ReadFailure.NO_TRACK2 if good_t1 else ReadFailure.UNREADABLE)
    if truncated:
        raise SwipeError(ReadFailure.UNREADABLE)
    if isinstance(t1, _T1):
        if not _same_digits(raw, t1.pan, t2.pan):
            raise SwipeError(ReadFailure.UNREADABLE)
        if (t1.exp_year, t1.exp_month) != (t2.exp_year, t2.exp_month):
            raise SwipeError(ReadFailure.UNREADABLE)
    if not luhn_ok(raw, *t2.pan):
        raise SwipeError(ReadFailure.BAD_CHECK_DIGIT)

    # The card's buffer is sized once and filled by slice assignment from memoryviews,
    # so no intermediate bytes objects and no reallocation copies are left behind.
    parts = [(t1.start, t1.end + 1)] if isinstance(t1, _T1) else []
    parts.append((t2.start, t2.end + 1))
    out = bytearray(sum(b - a for a, b in parts))
    pos = 0
    with memoryview(raw) as view:
        for a, b in parts:
            out[pos : pos + (b - a)] = view[a:b]
            pos += b - a
    pan_a, pan_b = t2.pan
    last4 = "".join(chr(raw[i]) for i in range(pan_b - 4, pan_b))
    return BankCard(
        out,
        brand=brand_of(raw, pan_a, pan_b),
        last4=last4,
        exp_year=t2.exp_year,
        exp_month=t2.exp_month,
        tracks=(1, 2) if isinstance(t1, _T1) else (2,),
    )
