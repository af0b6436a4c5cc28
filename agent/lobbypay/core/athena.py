"""athena's answers as types (pure): payment results, receipts, and the error tree.

Parsing helpers for these live here too, so the simulator, the client and the job
machine share one reading of athena's wire format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

from lobbypay.core.clock import Span
from lobbypay.core.errors import Code
from lobbypay.core.money import Cents, InvalidAmount, parse_athena_amount
from lobbypay.core.text import REDACTED, TRACK1_RE, TRACK2_RE, TRACK_NAME_RE, printable

# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Approved:
    epayment_id: str


@dataclass(frozen=True, slots=True)
class Declined:
    errortext: str


PaymentResult = Approved | Declined


@dataclass(frozen=True, slots=True)
class Receipt:
    epayment_id: str
    amount: Cents
    last4: str | None
    #: When athena took the payment, as every reading of its ``requestdate`` allows: one
    #: span per reading (two in the repeated hour of the autumn DST change), each as wide
    #: as the text's resolution (a minute when it has no seconds). Empty: no date given.
    requested: tuple[Span, ...] = ()
    type: str | None = None

    @property
    def requested_at(self) -> datetime | None:
        """The earliest instant ``requestdate`` allows (None when it gave none)."""
        return min(s.lo for s in self.requested) if self.requested else None


# ---------------------------------------------------------------- errors
#
# Each class carries ``code``, the protocol error code it stands for. The rules that turn
# an error into a job input or a reply (``lobbypay.core.outcome``) read the code, not the
# class: ``athena_unavailable`` means "certainly not delivered", ``athena_rejected``
# "athena said no", and anything else, for the payment POST, "it may have landed".


class AthenaError(Exception):
    """Base of every error the athena client raises. Messages carry no card data.

    An error that does not say more is taken at its worst: for the POST, the payment may
    have landed (``outcome_unknown``)."""

    code: ClassVar[Code] = Code.OUTCOME_UNKNOWN

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id


class AthenaUnavailable(AthenaError):
    """Not delivered / transient. For collect_payment: certainly not sent."""

    code = Code.ATHENA_UNAVAILABLE


class AthenaThrottled(AthenaUnavailable):
    """429, or 403 'Over Qps'/'Over Rate', past the client's retry budget."""


class OutcomeUnknown(AthenaError):
    """The POST may have reached athena. Reconcile; never retry."""

    code = Code.OUTCOME_UNKNOWN


class AthenaRejected(AthenaError):
    """athena answered with an error body (``error``, ``detailedmessage``, ``missingfields``)."""

    code = Code.ATHENA_REJECTED

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        detailed: str | None = None,
        missing_fields: tuple[str, ...] = (),
    ):
        super().__init__(message, status=status, request_id=request_id)
        self.detailed = detailed
        self.missing_fields = missing_fields


class NotFound(AthenaRejected):
    """The patient / appointment / path does not exist. (A read names which:
    ``patient_not_found``, ``appointment_not_found``; ``lobbypay.core.outcome``.)"""


class AthenaAuthError(AthenaRejected):
    """Credentials refused (401 after a fresh token, or the token endpoint said no)."""


class AthenaBadResponse(AthenaError):
    """A reply that is not the shape the endpoint returns (HTML, wrong JSON)."""

    code = Code.ATHENA_BAD_RESPONSE


# ---------------------------------------------------------------- wire parsing
#
# Everything below reads *decoded JSON* (whatever ``json.loads`` returned) and raises only
# ``AthenaParseError`` on anything it does not recognise. Peer text that ends up in an
# error or a result goes through ``clean_peer_text`` first.


class AthenaParseError(AthenaBadResponse):
    """A body that is not the shape the endpoint returns. Raised by the ``parse_*`` helpers.

    For reads the client lets it through (it is an ``AthenaBadResponse``); for the
    collectpayment POST the client turns it into ``OutcomeUnknown`` (a 2xx we cannot read
    may still be a charge).
    """


#: Longest piece of athena-supplied text we keep (errortext, error messages).
PEER_TEXT_MAX_CHARS = 300
#: Any run of 12 or more digits (spaces or dashes between them allowed): athena has no
#: reason to send one, so unlike the log redaction this masks it without a Luhn test.
_DIGIT_RUN_RE = re.compile(r"\d(?:[ -]?\d){11,}")


def clean_peer_text(value: object, secrets: tuple[str, ...] = ()) -> str:
    """Make text from athena safe to keep in a result, an exception or a log line.

    Drops control characters, masks anything shaped like card data (track text, a
    track-1 name field, runs of 12 or more digits) and any of ``secrets`` verbatim (the
    client passes the POST's card fields, in case an error echoes them), and caps the
    length at ``PEER_TEXT_MAX_CHARS``.
    """
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = TRACK1_RE.sub(REDACTED, text)
    text = TRACK2_RE.sub(REDACTED, text)
    text = TRACK_NAME_RE.sub(REDACTED, text)
    text = _DIGIT_RUN_RE.sub(REDACTED, text)
    return printable(text, PEER_TEXT_MAX_CHARS)


def _kind(value: object) -> str:
    """A type name for error messages (never the value: it may be anything)."""
    return type(value).__name__


_ID_TEXT_RE = re.compile(r"\A[0-9A-Za-z_-]{1,40}\Z")


def _parse_id(value: object, what: str) -> str:
    """athena ids arrive as ints or strings; normalise to a non-empty string."""
    if isinstance(value, bool):
        raise AthenaParseError(f"{what} is a boolean")
    if isinstance(value, int):
        if value < 0:
            raise AthenaParseError(f"{what} is negative")
        return str(value)
    if isinstance(value, str) and _ID_TEXT_RE.match(value.strip()):
        return value.strip()
    raise AthenaParseError(f"{what} is not an id ({_kind(value)})")


def _parse_flag(value: object, what: str) -> bool:
    """athena's booleans: the strings "true"/"false" (any case) or JSON booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise AthenaParseError(f'{what} is not "true"/"false" ({_kind(value)})')


def parse_payment_result(body: object) -> PaymentResult:
    """Read collectpayment's answer: ``[{"success": "true"|"false", "epaymentid", "errortext"}]``.

    ``success`` may be a string or a JSON boolean; ``epaymentid`` an int or a string
    (required on success). Anything else (a bare object, zero or several entries, a
    success without an epaymentid) raises ``AthenaParseError``.
    """
    if not isinstance(body, list):
        raise AthenaParseError(f"collectpayment answer is a {_kind(body)}, not an array of one")
    if len(body) != 1:
        raise AthenaParseError(f"collectpayment answer has {len(body)} entries, not one")
    entry = body[0]
    if not isinstance(entry, dict):
        raise AthenaParseError(f"collectpayment entry is a {_kind(entry)}, not an object")
    if "success" not in entry:
        raise AthenaParseError("collectpayment entry has no 'success'")
    success = _parse_flag(entry["success"], "success")
    if success:
        raw_id = entry.get("epaymentid")
        if raw_id is None or raw_id == "":
            raise AthenaParseError("collectpayment succeeded without an epaymentid")
        return Approved(epayment_id=_parse_id(raw_id, "epaymentid"))
    reason = clean_peer_text(entry.get("errortext"))
    if is_unknown_outcome_text(reason):
        raise OutcomeUnknownText(f"athena reports the payment's outcome as unknown ({reason})")
    return Declined(errortext=reason or "declined (athena gave no reason)")


class OutcomeUnknownText(AthenaParseError):
    """``success: "false"`` whose ``errortext`` is the processor's "Unknown" message: athena
    itself does not know whether the card was charged. Not a decline: reconcile."""

    code = Code.OUTCOME_UNKNOWN


_UNKNOWN_TEXT_RE = re.compile(r"\A\W*unknown\b", re.IGNORECASE)


def is_unknown_outcome_text(errortext: str) -> bool:
    """athena normalises the card processor's texts; "Unknown ..." means the processor's
    result is not known (contact athena with the CCP payment number), so the payment may
    have gone through (athena-api.md, CCP error messages)."""
    return bool(_UNKNOWN_TEXT_RE.match(errortext))


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The answer to a POST that changes nothing but a flag at athena (``voidpayment``,
    ``receipts/{id}/email``): ``ok``, else athena's reason (cleaned text)."""

    ok: bool
    reason: str = ""


def parse_action_result(body: object, what: str, secrets: tuple[str, ...] = ()) -> ActionResult:
    """Read a 2xx answer of ``voidpayment`` or ``receipts/{id}/email``.

    Their bodies are not documented (docs/athena.md): ``{"success": "true"}`` and
    ``[{"success": "true"}]`` are success; ``success`` "false" is a refusal with
    ``errortext`` (or ``error``/``detailedmessage``). Anything else (no ``success``, an
    empty array, several entries, HTML) is a refusal too, carrying what athena said, so
    a void is never reported done on an answer that does not say so.
    """
    entry = body[0] if isinstance(body, list) and len(body) == 1 else body
    if isinstance(entry, dict) and "success" in entry:
        try:
            success = _parse_flag(entry["success"], "success")
        except AthenaParseError:
            success = False
        if success:
            return ActionResult(True)
        raw = entry.get("errortext") or entry.get("error") or entry.get("detailedmessage")
        reason = clean_peer_text(raw, secrets)
        return ActionResult(False, reason or f"athena refused the {what} (no reason given)")
    err = parse_error_body(body, secrets)
    if err is not None:
        return ActionResult(False, err.error)
    return ActionResult(False, f"athena's answer to the {what} did not say it succeeded "
                               f"({_kind(body)})")


#: athena stamps receipts' ``requestdate`` in US Eastern time (DOC-RCPT).
ATHENA_TZ = ZoneInfo("America/New_York")
_US_DATE_RE = re.compile(
    r"\A(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([AaPp][Mm]))?\Z"
)


def parse_eastern_datetime(value: object) -> datetime:
    """athena's Eastern timestamps -> aware UTC: the earliest instant the text allows
    (see ``parse_eastern_spans``)."""
    return min(s.lo for s in parse_eastern_spans(value))


def parse_eastern_spans(value: object) -> tuple[Span, ...]:
    """athena's Eastern timestamps -> every instant (aware UTC) the text may stand for.

    Accepts "11/27/2026 09:03:07", "11/27/2026 09:03", "11/27/2026 9:03:07 AM" and ISO
    forms ("2026-11-27T09:03:07", "2026-11-27 09:03:07", with or without fraction). An ISO
    text with an explicit offset is taken at its word; text without one is Eastern.

    Each span is as wide as the text's resolution: a time without seconds covers its whole
    minute, one with whole seconds its second. A local time that occurs twice (the
    repeated hour of the autumn DST change) or not at all (the spring gap) gives one span
    per reading (EDT and EST), earliest first.
    """
    if not isinstance(value, str):
        raise AthenaParseError(f"timestamp is a {_kind(value)}, not text")
    text = value.strip()
    m = _US_DATE_RE.match(text)
    try:
        if m:
            month, day, year, hour, minute, second, ampm = m.groups()
            h = int(hour)
            if ampm:
                if not 1 <= h <= 12:
                    raise ValueError("hour out of range for AM/PM")
                h = h % 12 + (12 if ampm.lower() == "pm" else 0)
            local = datetime(  # noqa: DTZ001 - a wall time; the zone is applied below
                int(year), int(month), int(day), h, int(minute), int(second or 0))
            resolution = 1.0 if second is not None else 60.0
        elif len(text) >= 16 and text[4:5] == "-" and text[10:11] in ("T", " "):
            local = datetime.fromisoformat(text)
            if len(text) < 19 or text[16:17] != ":":
                resolution = 60.0
            elif local.microsecond or text[19:20] in (".", ","):
                resolution = 1e-6
            else:
                resolution = 1.0
        else:
            raise ValueError("unknown form")
    except ValueError:
        raise AthenaParseError("timestamp is not a date and time athena sends") from None
    try:
        if local.tzinfo is not None:
            readings = {local.astimezone(UTC)}
        else:
            readings = {
                local.replace(tzinfo=ATHENA_TZ, fold=fold).astimezone(UTC) for fold in (0, 1)
            }
        width = timedelta(seconds=resolution)
        return tuple(Span(t, t + width - timedelta(microseconds=1) if resolution >= 1 else t)
                     for t in sorted(readings))
    except (OverflowError, ValueError):
        raise AthenaParseError("timestamp is out of range") from None


def parse_list_page(body: object, key: str) -> tuple[list[object], str | None]:
    """One page of a list endpoint -> ``(items, next)``; ``next`` is athena's link to the
    following page (``None`` on the last page or for a bare array)."""
    items = _list_items(body, key)
    nxt = body.get("next") if isinstance(body, dict) else None
    if nxt is None or nxt == "":
        return items, None
    if not isinstance(nxt, str):
        raise AthenaParseError(f"list answer's 'next' is a {_kind(nxt)}")
    return items, nxt


def _list_items(body: object, key: str) -> list[object]:
    """athena's list envelope ``{"<key>": [...], "totalcount": n}``, or a bare array."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        items = body.get(key)
        if isinstance(items, list):
            return items
        if items is None and body.get("totalcount") in (0, "0"):
            return []
        raise AthenaParseError(f"list answer has no '{key}' array")
    raise AthenaParseError(f"list answer is a {_kind(body)}")


_LAST4_RE = re.compile(r"\A\d{4}\Z")


def parse_receipts(body: object) -> list[Receipt]:
    """Read ``GET /patients/{id}/receipts``: ``{"receipts": [...], "totalcount": n}`` or an array.

    Each receipt needs a readable ``epaymentid`` and ``amount`` (number or string); an
    unreadable one fails the whole list rather than being skipped, because a silently
    skipped receipt could turn "charged" into "not charged" during reconciliation.
    ``cardnumberlast4digits`` that is not four digits becomes ``None``; a blank
    ``requestdate`` becomes ``None``, an unreadable one is an error.
    """
    out: list[Receipt] = []
    for i, item in enumerate(_list_items(body, "receipts")):
        if not isinstance(item, dict):
            raise AthenaParseError(f"receipt {i} is a {_kind(item)}, not an object")
        epayment_id = _parse_id(item.get("epaymentid"), f"receipt {i} epaymentid")
        try:
            amount = parse_athena_amount(item.get("amount"))
        except InvalidAmount:
            raise AthenaParseError(f"receipt {i} amount is unreadable") from None
        raw_last4 = item.get("cardnumberlast4digits")
        last4: str | None = None
        if isinstance(raw_last4, int) and not isinstance(raw_last4, bool) and 0 <= raw_last4:
            raw_last4 = f"{raw_last4:04d}"
        if isinstance(raw_last4, str) and _LAST4_RE.match(raw_last4.strip()):
            last4 = raw_last4.strip()
        raw_date = item.get("requestdate")
        requested = (
            () if raw_date is None or raw_date == "" else parse_eastern_spans(raw_date)
        )
        raw_type = item.get("type")
        rtype = clean_peer_text(raw_type)[:40] if isinstance(raw_type, str) and raw_type else None
        out.append(Receipt(epayment_id, amount, last4, requested, rtype))
    return out


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """athena's error body: ``{"error", "detailedmessage", "missingfields"}`` (cleaned text)."""

    error: str
    detailed: str | None = None
    missing_fields: tuple[str, ...] = ()


_FIELD_NAME_RE = re.compile(r"\A[A-Za-z0-9_.]{1,60}\Z")


def parse_error_body(body: object, secrets: tuple[str, ...] = ()) -> ErrorBody | None:
    """Read an error body, or ``None`` when ``body`` is not one (never raises).

    ``missingfields`` may be an array or a comma-separated string; names that do not
    look like field names are dropped. ``secrets`` are masked in the text (see
    ``clean_peer_text``).
    """
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, dict):
        return None
    raw_error = body.get("error")
    raw_detail = body.get("detailedmessage")
    raw_missing = body.get("missingfields")
    if raw_error is None and raw_detail is None and raw_missing is None:
        return None
    error = clean_peer_text(raw_error, secrets) if raw_error is not None else ""
    detailed = clean_peer_text(raw_detail, secrets) if raw_detail is not None else None
    names: list[str] = []
    if isinstance(raw_missing, str):
        raw_missing = raw_missing.split(",")
    if isinstance(raw_missing, list):
        for name in raw_missing:
            if isinstance(name, str) and _FIELD_NAME_RE.match(name.strip()):
                names.append(name.strip())
    return ErrorBody(
        error or detailed or "athena reported an error", detailed or None, tuple(names)
    )


def parse_token(body: object) -> tuple[str, float]:
    """Read the token endpoint's answer -> ``(access_token, expires_in_s)``."""
    if not isinstance(body, dict):
        raise AthenaParseError(f"token answer is a {_kind(body)}")
    token = body.get("access_token")
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise AthenaParseError("token answer has no usable access_token")
    raw_ttl = body.get("expires_in", 3600)
    if isinstance(raw_ttl, str) and raw_ttl.strip().isdigit():
        raw_ttl = int(raw_ttl.strip())
    if isinstance(raw_ttl, bool) or not isinstance(raw_ttl, int | float) or not 0 < raw_ttl < 10**7:
        raise AthenaParseError("token answer has no usable expires_in")
    return token, float(raw_ttl)


def is_throttle_text(text: str) -> bool:
    """Mashery-era throttling says so in a 403 body: "Developer Over Qps" / "Over Rate"."""
    lowered = text.lower()
    return "over qps" in lowered or "over rate" in lowered
