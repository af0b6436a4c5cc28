"""What the lobby display says, per situation (pure).

Every screen is a ``Screen`` value (a kind plus the few facts it shows: the total, the
card's brand and last 4). ``render(screen, cols, rows)`` turns it into at most ``rows``
lines of at most ``cols`` characters. The texts are written for the smallest supported
display (2 rows of 16 columns); a display with 4 rows gets two more lines of help. The
engine wraps the lines into ``lobbypay_hw.api.ScreenView``.

Protocol 8: while a job is ``pending`` the screen shows the total due, written as
``format_cents`` does ("65.00", no thousands separator), so every pending screen (the
first prompt, "swipe again", "card expired") carries it.

Card data: a screen takes only a brand name and a 4-digit last 4 (protocol 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lobbypay.core.money import Cents, format_cents

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

    def __post_init__(self) -> None:
        if self.last4 is not None and not (len(self.last4) == 4 and self.last4.isdigit()):
            raise ValueError("last4 must be exactly 4 digits")
        if self.kind in _NEEDS_TOTAL and self.total is None:
            raise ValueError(f"screen {self.kind} needs the total")


_NEEDS_TOTAL = frozenset({
    ScreenKind.PENDING, ScreenKind.SWIPE_AGAIN, ScreenKind.NOT_A_BANK_CARD,
    ScreenKind.CARD_EXPIRED, ScreenKind.CANNOT_READ_HERE,
})

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


def _total_line(total: Cents, cols: int, label: str = "Total") -> str:
    amount = format_cents(total)
    return _first_fit(cols, f"{label} ${amount}", f"${amount}", amount)


def _card_line(brand: str | None, last4: str | None, cols: int) -> str:
    if last4 is None:
        return ""
    label = brand_label(brand)
    return _first_fit(cols, f"{label} ****{last4}", f"{label} *{last4}", f"****{last4}")


def render(screen: Screen, cols: int = MIN_COLS, rows: int = MIN_ROWS) -> tuple[str, ...]:
    """Lines for a ``cols``×``rows`` display (at most ``rows`` lines, each ≤ ``cols``)."""
    if cols < MIN_COLS or rows < MIN_ROWS:
        raise ValueError(f"displays smaller than {MIN_COLS}x{MIN_ROWS} are not supported")
    short, extra = _texts(screen, cols)
    lines = list(short)
    if rows >= 4:
        lines = _tall(screen, cols) or lines + list(extra)
    out = tuple(line[:cols].rstrip() for line in lines[:rows])
    while out and out[-1] == "":
        out = out[:-1]
    return out


def _texts(s: Screen, cols: int) -> tuple[tuple[str, str], tuple[str, ...]]:
    """(the two lines every display shows, extra lines for taller displays)."""
    k = s.kind
    t = s.total
    match k:
        case ScreenKind.IDLE:
            return ("Welcome", "Check in to pay"), ()
        case ScreenKind.PENDING:
            assert t is not None
            return (_total_line(t, cols), "Please swipe"), ()
        case ScreenKind.SWIPE_AGAIN:
            assert t is not None
            return (_total_line(t, cols), "Swipe again"), ()
        case ScreenKind.NOT_A_BANK_CARD:
            assert t is not None
            return (_total_line(t, cols), "Use a bank card"), ()
        case ScreenKind.CARD_EXPIRED:
            assert t is not None
            return (_total_line(t, cols), "Card expired"), ()
        case ScreenKind.PROCESSING:
            return ("Processing...", _card_line(s.brand, s.last4, cols)), ()
        case ScreenKind.APPROVED:
            card = _card_line(s.brand, s.last4, cols)
            if not card and t is not None:
                card = _total_line(t, cols, "Paid")
            return ("Approved", card), ()
        case ScreenKind.DECLINED:
            return ("Card declined", "See front desk"), ()
        case ScreenKind.FAILED:
            return ("Payment failed", "See front desk"), ()
        case ScreenKind.CANCELED:
            return ("Payment canceled", "See front desk"), ()
        case ScreenKind.EXPIRED:
            return ("Time is up", "See front desk"), ()
        case ScreenKind.UNKNOWN:
            return ("Please wait", "See front desk"), ()
        case ScreenKind.CANNOT_READ_HERE:
            assert t is not None
            a = format_cents(t)
            return (_first_fit(cols, "Can't read card here", "Can't read card"),
                    _first_fit(cols, f"See front desk ${a}", f"See desk ${a}", f"Desk ${a}",
                               f"${a}")), ()
    raise ValueError(f"unknown screen kind {k!r}")  # pragma: no cover


def _tall(s: Screen, cols: int) -> list[str] | None:
    """Four-line versions where two more lines help the patient."""
    t = s.total
    card = _card_line(s.brand, s.last4, cols)
    match s.kind:
        case ScreenKind.IDLE:
            return ["Welcome", "", "Check in first,", "then pay here"]
        case ScreenKind.PENDING:
            assert t is not None
            return ["Total due", f"${format_cents(t)}", "", "Please swipe card"]
        case ScreenKind.SWIPE_AGAIN:
            assert t is not None
            return ["Total due", f"${format_cents(t)}", "Card not read", "Please swipe again"]
        case ScreenKind.NOT_A_BANK_CARD:
            assert t is not None
            return ["Total due", f"${format_cents(t)}", "Not a bank card", "Use a bank card"]
        case ScreenKind.CARD_EXPIRED:
            assert t is not None
            return ["Total due", f"${format_cents(t)}", "Card expired", "Use another card"]
        case ScreenKind.PROCESSING:
            return ["Processing...", card, "", "Please wait"]
        case ScreenKind.APPROVED:
            paid = _total_line(t, cols, "Paid") if t is not None else ""
            return ["Approved", paid, card, "Thank you"]
        case ScreenKind.DECLINED:
            return ["Card declined", card, "Please see", "the front desk"]
        case ScreenKind.UNKNOWN:
            return ["Please wait", "Checking payment", "Please see", "the front desk"]
        case ScreenKind.CANNOT_READ_HERE:
            assert t is not None
            return ["Total due", f"${format_cents(t)}",
                    _first_fit(cols, "Card can't be read", "Can't read card"), "See front desk"]
    return None
