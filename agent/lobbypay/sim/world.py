"""The athena simulator's world: what athena knows, and nothing about how it is asked.

``World`` holds the fixture practices (departments, patients and their claims,
appointments, receipts) as they change under payments and voids, the payments approved
(for the duplicate rule), the voids and receipt emails carried out, the tokens issued
and every request seen. One lock guards all of it; the simulator's threads take it for
each read or change.

Money is integer cents inside; ``money_text``/``money_number`` write it the way athena
does. Times are aware UTC; ``eastern_text`` writes them in athena's US Eastern text.

Card data never enters the world: a recorded call's form holds, instead of
``trackdata``/``accountnumber``, an HMAC-SHA256 under a key made fresh for each world
(equal tracks give equal digests within one run, nothing more) and the last four digits;
other card fields are replaced by "[redacted]"; an email address is masked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
FIRST_EPAYMENT_ID = 90001
REDACTED = "[redacted]"
#: How the simulator writes a receipt's ``requestdate`` (athena's resolution is not
#: documented): with seconds, without them, or ISO with seconds.
RECEIPT_DATE_FORMATS = {
    "seconds": "%m/%d/%Y %H:%M:%S",
    "minutes": "%m/%d/%Y %H:%M",
    "iso": "%Y-%m-%dT%H:%M:%S",
}
_SECRET_FIELDS = (
    "cardsecuritycode",
    "nameoncard",
    "expirationmonthmm",
    "expirationyearyyyy",
    "billingaddress",
    "billingzip",
)
_MONEY_RE = re.compile(r"\A(\d{1,7})(?:\.(\d{1,2}))?\Z")

# ---------------------------------------------------------------- units


def parse_money(text: str) -> int | None:
    """Form money ("25", "25.5", "25.00") -> cents, or None."""
    m = _MONEY_RE.match(text.strip())
    if not m:
        return None
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def money_number(cents: int) -> float:
    """athena's JSON number for an amount, built from its exact decimal text."""
    return float(money_text(cents))


def eastern_text(at: datetime, form: str = "seconds") -> str:
    return at.astimezone(EASTERN).strftime(RECEIPT_DATE_FORMATS[form])


def load_fixtures() -> dict[str, Any]:
    """``fixtures/athena.json``: the practices as they are when the simulator starts."""
    text = resources.files("lobbypay.sim").joinpath("fixtures/athena.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# ---------------------------------------------------------------- the world


class World:
    """athena's state for one simulator. ``now`` is its clock (wall time, aware UTC)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.lock = threading.RLock()
        self._digest_key = secrets.token_bytes(32)
        self._fixtures = load_fixtures()
        #: token -> monotonic expiry (kept across ``reset``)
        self.tokens: dict[str, float] = {}
        #: token endpoint requests received, any outcome (kept across ``reset``)
        self.token_requests = 0
        #: how receipts' ``requestdate`` is written (a key of ``RECEIPT_DATE_FORMATS``)
        self.receipt_date_format = "seconds"
        self.reset()

    def reset(self) -> None:
        """Fixtures back to their start; recorded calls, voids and emails forgotten."""
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        started = self.now()
        #: every request seen (``/_sim/*`` excluded), oldest first, card data replaced
        self.calls: list[dict[str, Any]] = []
        #: "<practice>/<patient>" -> collectpayment POSTs received (any outcome)
        self.posts: dict[str, int] = {}
        #: epaymentid -> voids carried out (a repeated void of a voided payment adds none)
        self.voids: dict[str, int] = {}
        #: receipts emailed: (epaymentid, address), oldest first (for tests; memory only)
        self.emails: list[tuple[str, str]] = []
        self.next_epayment = FIRST_EPAYMENT_ID
        self.practices: dict[str, dict[str, Any]] = {}
        #: approved payments: (practice, patient, cents, at), for the duplicate rule
        self.approved: list[tuple[str, str, int, datetime]] = []
        for pid, src in self._fixtures["practices"].items():
            patients: dict[str, Any] = {}
            receipts: list[dict[str, Any]] = []
            for patient_id, p in src["patients"].items():
                claims = []
                for c in p["claims"]:
                    claim = dict(c)
                    claim["amount_cents"] = parse_money(c["amount"])
                    claim["balance_cents"] = parse_money(c["patientbalance"])
                    claim["transactions"] = []
                    claims.append(claim)
                patients[patient_id] = {
                    **{k: v for k, v in p.items() if k not in ("claims", "receipts", "credit")},
                    "claims": claims,
                    "credit_cents": parse_money(p.get("credit", "0")) or 0,
                }
                for r in p.get("receipts", []):
                    receipts.append(
                        {
                            "patientid": patient_id,
                            "epaymentid": r["epaymentid"],
                            "amount_cents": parse_money(r["amount"]),
                            "last4": r["last4"],
                            "brand": r["brand"],
                            "departmentid": r["departmentid"],
                            "at": started - timedelta(days=r["days_ago"]),
                            "voided": False,
                            "settled": True,  # days old: long settled
                        }
                    )
            appointments = {}
            for appt_id, a in src["appointments"].items():
                appointments[appt_id] = {
                    **a,
                    "copay_cents": parse_money(a["copay"]),
                    "collected_cents": 0,
                }
            self.practices[pid] = {
                "enterprise": src["enterprise"],
                "departments": [dict(d) for d in src["departments"]],
                "patients": patients,
                "appointments": appointments,
                "receipts": receipts,
            }

    # ------------------------------------------------------------ lookups

    @staticmethod
    def group_of(practice: Mapping[str, Any], department_id: str) -> str | None:
        """The provider group of ``department_id`` in ``practice``, or None if unknown."""
        for d in practice["departments"]:
            if d["departmentid"] == department_id:
                return str(d["providergroupid"])
        return None

    # ------------------------------------------------------------ tokens

    def issue_token(self, ttl_s: float) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + ttl_s
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            expiry = self.tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # ------------------------------------------------------------ the record of calls

    def record(self, call: dict[str, Any], *, payment_of: str | None = None) -> None:
        """Keep ``call`` (its form already ``redact``ed); ``payment_of``, a collectpayment
        POST for "<practice>/<patient>", is counted too."""
        with self.lock:
            self.calls.append(call)
            if payment_of is not None:
                self.posts[payment_of] = self.posts.get(payment_of, 0) + 1

    def redact(self, form: Mapping[str, str]) -> dict[str, Any]:
        """``form`` as a call record keeps it: no card data, no whole email address."""
        out: dict[str, Any] = {}
        for key, value in form.items():
            if key in ("trackdata", "accountnumber"):
                digest = hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()
                digits = re.findall(r"\d{12,19}", value)
                out[key] = {f"{key}_sha256": digest, "last4": digits[0][-4:] if digits else None}
            elif key in _SECRET_FIELDS:
                out[key] = REDACTED
            elif key == "email":  # personal data: recorded calls show it masked
                local, _, domain = value.partition("@")
                out[key] = f"{local[:1]}***@{domain}"
            else:
                out[key] = value
        return out


__all__ = [
    "EASTERN",
    "RECEIPT_DATE_FORMATS",
    "World",
    "eastern_text",
    "load_fixtures",
    "money_number",
    "money_text",
    "parse_money",
]
