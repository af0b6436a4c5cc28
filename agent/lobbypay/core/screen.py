"""What the lobby display says, per situation (pure).

Every screen is a ``Screen`` value (a kind plus the few facts it shows: the total, the
card's brand and last 4). ``render(screen, cols, rows)`` turns it into at most ``rows``
lines of at most ``cols`` characters. The texts are written for the smallest supported
display (2 rows of 16 columns); a display with 4 rows gets two more lines of help. The
engine wraps the lines into ``lobbypay_hw.api.ScreenView``.

Protocol 8: while a job is ``pending`` the screen shows the total due, written as
``format_cents`` does ("65.00", no thousands separator), so every pending screen (the
first prompt, "swipe again", "card expired") carries it.

The words themselves, in every language, live in ``lobbypay.core.screen_text`` (the one
catalogue); this module only chooses, fills and fits them.

Card data: a screen takes only a brand name and a 4-digit last 4 (protocol 7).

When a job lets go of the terminal, ``result_screen(job)`` says what the display shows:
one row of ``RESULT_SCREENS`` per state (the kind, and which of the job's facts it
carries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from lobbypay.core.job import Job, JobState
from lobbypay.core.money import Cents, format_cents
from lobbypay.core.screen_text import CATALOGUE, DEFAULT_LANGUAGE, LANGUAGES

MIN_COLS = 16
MIN_ROWS = 2


class ScreenKind(StrEnum):
    IDLE = "idle"
    PENDING = "pending"  # total due, swipe a card
    SWIPE_AGAIN = "swipe_again"  # the last swipe was unreadable
    NOT_A_BANK_CARD = "not_a_bank_card"
    CARD_EXPIRED = "card_expired"
    PROCESSING = "processing"  # card_read / submitting
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # outcome being reconciled
    CANNOT_READ_HERE = "cannot_read_here"  # encrypting/masking reader: see the front desk


@dataclass(frozen=True, slots=True)
class Screen:
    kind: ScreenKind
    total: Cents | None = None
    brand: str | None = None
    last4: str | None = None
    #: a key of ``screen_text.CATALOGUE`` ("en", "es"); None: the display's own (the
    #: engine fills in the job's or the terminal's language, ``render`` takes English)
    language: str | None = None

    def __post_init__(self) -> None:
        if self.language is not None and self.language not in LANGUAGES:
            raise ValueError(f"no screen texts for language {self.language!r}")
        if self.last4 is not None and not (len(self.last4) == 4 and self.last4.isdigit()):
            raise ValueError("last4 must be exactly 4 digits")
        if self.kind in _NEEDS_TOTAL and self.total is None:
            raise ValueError(f"screen {self.kind} needs the total")


_NEEDS_TOTAL = frozenset({
    ScreenKind.PENDING, ScreenKind.SWIPE_AGAIN, ScreenKind.NOT_A_BANK_CARD,
    ScreenKind.CARD_EXPIRED, ScreenKind.CANNOT_READ_HERE,
})

@dataclass(frozen=True, slots=True)
class ResultScreen:
    """A row of ``RESULT_SCREENS``: the screen's kind and whether it shows the job's total
    and its card (brand and last 4)."""

    kind: ScreenKind
    total: bool = False
    card: bool = False


#: The screen a job's end shows, per state it ends in. A state not listed shows nothing
#: new: ``voided`` (the patient has usually left and another job may hold the display;
#: docs/jobs.md), and the states that still hold the terminal.
RESULT_SCREENS: Mapping[JobState, ResultScreen] = {
    JobState.SUCCEEDED: ResultScreen(ScreenKind.APPROVED, total=True, card=True),
    JobState.DECLINED: ResultScreen(ScreenKind.DECLINED, card=True),
    JobState.FAILED: ResultScreen(ScreenKind.FAILED),
    JobState.CANCELED: ResultScreen(ScreenKind.CANCELED),
    JobState.EXPIRED: ResultScreen(ScreenKind.EXPIRED),
    JobState.UNKNOWN: ResultScreen(ScreenKind.UNKNOWN),
}


def result_screen(job: Job) -> Screen | None:
    """The screen a job's end shows, in the job's language (None: none; ``RESULT_SCREENS``)."""
    row = RESULT_SCREENS.get(job.state)
    if row is None:
        return None
    return Screen(row.kind, total=job.total if row.total else None,
                  brand=job.card_brand if row.card else None,
                  last4=job.card_last4 if row.card else None, language=job.language)


#: The screen a swipe that gave no usable card gets while a job waits for one, by the
#: reader's reason (a ``lobbypay_hw.api.ReadFailure`` value); any other: "swipe again".
SWIPE_FAILED_SCREENS: Mapping[str, ScreenKind] = {
    "not_a_bank_card": ScreenKind.NOT_A_BANK_CARD,
    "encrypted_reader": ScreenKind.CANNOT_READ_HERE,
}


def swipe_failed_screen(reason: str, total: Cents) -> Screen:
    """What a pending job's display shows after a swipe that failed for ``reason``."""
    return Screen(SWIPE_FAILED_SCREENS.get(reason, ScreenKind.SWIPE_AGAIN), total=total)


_BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "Amex",
    "american_express": "Amex",
    "discover": "Discover",
    "jcb": "JCB",
    "diners": "Diners",
    "unionpay": "UnionPay",
}


def brand_label(brand: str | None) -> str:
    if not brand:
        return "Card"
    label = _BRANDS.get(brand.lower())
    if label:
        return label
    clean = "".join(ch for ch in brand if ch.isalnum())[:10]
    return clean.title() or "Card"


def _first_fit(cols: int, *candidates: str) -> str:
    for c in candidates:
        if len(c) <= cols:
            return c
    return candidates[-1][:cols]


def _total_line(total: Cents, cols: int, label: str) -> str:
    amount = format_cents(total)
    return _first_fit(cols, f"{label} ${amount}", f"${amount}", amount)


def _card_line(brand: str | None, last4: str | None, cols: int, unknown: str) -> str:
    if last4 is None:
        return ""
    label = brand_label(brand) if brand else unknown
    return _first_fit(cols, f"{label} ****{last4}", f"{label} *{last4}", f"****{last4}")


def render(screen: Screen, cols: int = MIN_COLS, rows: int = MIN_ROWS) -> tuple[str, ...]:
    """Lines for a ``cols``×``rows`` display (at most ``rows`` lines, each ≤ ``cols``), in
    the screen's language (``lobbypay.core.screen_text.CATALOGUE``)."""
    if cols < MIN_COLS or rows < MIN_ROWS:
        raise ValueError(f"displays smaller than {MIN_COLS}x{MIN_ROWS} are not supported")
    texts = CATALOGUE[screen.language or DEFAULT_LANGUAGE]
    entry = texts[screen.kind.value]
    template = entry["tall"] if rows >= 4 and "tall" in entry else entry["short"]
    lines = _fill(template, screen, cols, texts["labels"])
    out = tuple(line[:cols].rstrip() for line in lines[:rows])
    while out and out[-1] == "":
        out = out[:-1]
    return out


def _fill(template: tuple[str, ...], s: Screen, cols: int,
          labels: Mapping[str, tuple[str, ...]]) -> list[str]:
    t = s.total
    card = _card_line(s.brand, s.last4, cols, labels["card"][0])
    paid = _total_line(t, cols, labels["paid"][0]) if t is not None else ""
    values = {
        "total": _total_line(t, cols, labels["total"][0]) if t is not None else "",
        "amount": f"${format_cents(t)}" if t is not None else "",
        "card": card,
        "paid": paid,
        "card_or_paid": card or paid,
    }
    return [line.format_map(values) for line in template]
