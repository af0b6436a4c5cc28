"""Protocol v1 commands: MQTT command payloads -> ``Command`` objects (pure).

``decode_command(payload)`` applies everything protocol.md sections 2-4 say about the
shape of a command and returns a frozen dataclass from ``lobbypay.core.commands``, or
raises ``ProtocolError`` carrying the stable code, a human message, and whatever of the
envelope could be read (``request_id``, ``command``) so the reply can echo it.

Checks, in order (the first failure wins):

1. envelope: at most ``MAX_PAYLOAD_BYTES``, UTF-8, JSON, an object; ``request_id`` a
   string of 1-64 characters; ``v`` the integer 1; ``type`` a string    -> ``bad_request``
2. ``type`` one of ``COMMAND_TYPES``                                      -> ``unknown_command``
   a staff-only ``type`` (``charge.void``) not from the staff topic        -> ``forbidden``
3. the command's fields: presence, JSON type, formats and ranges         -> ``bad_request``
   amounts (``copay``, claim ``amount``): protocol section 3             -> ``invalid_amount``

Decisions the protocol leaves open (documented in docs/protocol.md):

* ``v`` other than the integer 1 (``2``, ``"1"``, ``1.0``, ``true``) is ``bad_request``.
* Ids (``patient_id``, ``department_id``, ``appointment_id``, ``claim_id``) are JSON
  strings of 1-32 characters from ``[A-Za-z0-9._-]`` starting with a letter or digit;
  a number is "a field of the wrong type" and so ``bad_request``.
* An optional field sent as ``null`` counts as absent (takes its default).
* A claim ``amount`` of ``"0.00"`` is ``invalid_amount`` (claim amounts must be > 0).
* ``deadline_s`` and ``limit`` must be JSON integers (``true``, ``120.0``, ``"5"`` are
  ``bad_request``).
* ``expires_at`` is an RFC 3339 date-time with ``Z`` or an offset; it is returned as an
  aware UTC datetime. Whether it is already past is the caller's check (no clock here).

Not checked here (they need config or athena): ``copay_needs_appointment``,
``nothing_to_charge``, ``max_charge``, collectibility. The charge plan does those.

Replies: ``ProtocolError.to_reply``, built with ``envelope.error_reply``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from lobbypay.core.commands import (
    COMMAND_TYPES,
    STAFF_ONLY_TYPES,
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ChargeStart,
    ChargeVoid,
    ClaimAmount,
    Command,
    Ping,
    ReceiptEmail,
)
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents, InvalidAmount, parse_wire_amount
from lobbypay.core.protocol.envelope import PROTOCOL_VERSION, error_reply
from lobbypay.core.protocol.topics import TOPIC_ROOT
from lobbypay.core.screen_text import LANGUAGES
from lobbypay.core.text import replace_unprintable

#: Commands are a few hundred bytes; 64 KiB leaves room for many claims and bounds the
#: work a hostile payload can cause (checked before any parsing).
MAX_PAYLOAD_BYTES = 64 * 1024
#: One charge covers the claims of one visit or a handful of old ones; 100 is plenty and
#: keeps the athena form and the display bounded.
MAX_CLAIMS = 100
REQUEST_ID_MAX = 64
JOB_ID_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
#: athena ids are digits; allow a little more but never path syntax ("..", "/").
ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
DEADLINE_DEFAULT_S = 120
DEADLINE_MIN_S = 10
DEADLINE_MAX_S = 300
LIST_DEFAULT = 20
LIST_MAX = 100
#: Larger limits are capped at LIST_MAX; beyond this the number is nonsense (bad_request).
LIST_LIMIT_CEILING = 2**31 - 1
#: Longest plausible RFC 3339 text ("2026-11-27T15:00:00.123456+05:30" is 32).
_TIME_MAX_LEN = 40
#: receipt.email's address (protocol 10): length bounds in characters.
EMAIL_MIN = 3
EMAIL_MAX = 254
_RFC3339_RE = re.compile(
    r"\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})\Z"
)


class ProtocolError(DomainError):
    """A command payload the protocol rejects. Answer it with ``error_reply``.

    ``request_id`` and ``command`` are what could be read from the envelope (else None).
    """

    def __init__(
        self, code: Code, message: str, request_id: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(code, message)
        self.request_id = request_id
        self.command = command

    def to_reply(self) -> bytes:
        return error_reply(self.request_id, self.command, self.code, self.message)


# ------------------------------------------------------------------------------ decoding


def _valid_request_id(value: object) -> str | None:
    if isinstance(value, str) and 1 <= len(value) <= REQUEST_ID_MAX:
        return value
    return None


def _load(payload: bytes) -> object:
    """bytes -> JSON value, or raise ProtocolError(bad_request) with no echo."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ProtocolError(Code.BAD_REQUEST, "payload must be bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            Code.BAD_REQUEST, f"payload larger than {MAX_PAYLOAD_BYTES} bytes"
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(Code.BAD_REQUEST, "payload is not UTF-8") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ProtocolError(Code.BAD_REQUEST, "payload nests too deeply") from None
    except ValueError:  # JSONDecodeError, and int() digit limits on huge numbers
        raise ProtocolError(Code.BAD_REQUEST, "payload is not JSON") from None
    if "\\ud" in text or "\\uD" in text:
        # JSON may spell a lone surrogate ("\ud800"): valid JSON, but not text that can
        # be echoed, logged or stored; refuse it like any other bad field
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(
                Code.BAD_REQUEST, "payload holds a lone UTF-16 surrogate (not text)"
            ) from None
    return obj


def peek_envelope(payload: bytes) -> tuple[str | None, str | None]:
    """Best-effort ``(request_id, command)`` of a payload; never raises.

    For answering a command whose handler failed: echo what can be echoed.
    """
    try:
        obj = _load(payload)
    except (ProtocolError, RecursionError, MemoryError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    rid = _valid_request_id(obj.get("request_id"))
    kind = obj.get("type")
    return rid, kind if isinstance(kind, str) and kind in COMMAND_TYPES else None


class _Fields:
    """Typed field getters over one command object; failures raise ProtocolError."""

    def __init__(self, obj: Mapping[str, Any], request_id: str, command: str) -> None:
        self.obj = obj
        self.request_id = request_id
        self.command = command

    def fail(self, message: str, code: Code = Code.BAD_REQUEST) -> ProtocolError:
        return ProtocolError(code, message, self.request_id, self.command)

    def _raw(self, key: str, required: bool) -> object:
        value = self.obj.get(key)
        if value is None and required:
            raise self.fail(f"{key} is required")
        return value

    def ident(self, key: str, *, required: bool) -> str | None:
        value = self._raw(key, required)
        if value is None:
            return None
        return self._check_ident(key, value)

    def _check_ident(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string")
        if not ID_RE.match(value):
            raise self.fail(
                f"{key} must be 1-32 characters of A-Z a-z 0-9 . _ - starting with a letter "
                "or digit"
            )
        return value

    def job_id(self) -> str:
        value = self._raw("job_id", True)
        if not isinstance(value, str):
            raise self.fail("job_id must be a string")
        if not JOB_ID_RE.match(value):
            raise self.fail("job_id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
        return value

    def amount(self, key: str, value: object, *, positive: bool) -> Cents:
        try:
            cents = parse_wire_amount(value)
        except InvalidAmount as exc:
            raise self.fail(f"{key}: {exc}", Code.INVALID_AMOUNT) from None
        if positive and cents <= 0:
            raise self.fail(f"{key} must be greater than 0.00", Code.INVALID_AMOUNT)
        return cents

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false")
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._raw(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} must be an integer")
        if not lo <= value <= hi:
            raise self.fail(f"{key} must be between {lo} and {hi}")
        return value

    def timestamp(self, key: str) -> datetime | None:
        value = self._raw(key, False)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{key} must be an RFC 3339 date-time string")
        if len(value) > _TIME_MAX_LEN or not _RFC3339_RE.match(value):
            raise self.fail(
                f"{key} must be an RFC 3339 date-time with a time zone, "
                'like "2026-11-27T15:00:00Z"'
            )
        text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
        # fromisoformat takes at most 6 fraction digits; drop the rest (sub-microsecond)
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(f"{key} is not a valid date-time") from None
        if parsed.tzinfo is None:  # pragma: no cover - the regex demands a zone
            raise self.fail(f"{key} needs a time zone")
        return parsed.astimezone(UTC)

    def language(self) -> str | None:
        value = self._raw("language", False)
        if value is None:
            return None
        if not isinstance(value, str) or value not in LANGUAGES:
            raise self.fail(f"language must be one of {', '.join(LANGUAGES)}")
        return value

    def email(self) -> str:
        """An address as protocol 10 has it. Messages never quote it (personal data)."""
        value = self._raw("email", True)
        if not isinstance(value, str):
            raise self.fail("email must be a string")
        problem = email_problem(value)
        if problem is not None:
            raise self.fail(f"email {problem}")
        return value

    def claims(self) -> tuple[ClaimAmount, ...]:
        value = self._raw("claims", False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("claims must be a list of {claim_id, amount}")
        if len(value) > MAX_CLAIMS:
            raise self.fail(f"at most {MAX_CLAIMS} claims per charge")
        seen: set[str] = set()
        out: list[ClaimAmount] = []
        for i, item in enumerate(value):
            where = f"claims[{i}]"
            if not isinstance(item, dict):
                raise self.fail(f"{where} must be an object {{claim_id, amount}}")
            claim_id = item.get("claim_id")
            if claim_id is None:
                raise self.fail(f"{where}.claim_id is required")
            claim_id = self._check_ident(f"{where}.claim_id", claim_id)
            if claim_id in seen:
                raise self.fail(f"claim {claim_id} appears more than once")
            seen.add(claim_id)
            if item.get("amount") is None:
                raise self.fail(f"{where}.amount is required")
            out.append(
                ClaimAmount(claim_id, self.amount(f"{where}.amount", item["amount"], positive=True))
            )
        return tuple(out)


def email_problem(address: str) -> str | None:
    """Why ``address`` is not an email address by protocol 10's rule, or None: 3-254
    characters, exactly one ``@`` with text on both sides, no whitespace or control
    (or other invisible format) characters. The reason never quotes the address."""
    if not EMAIL_MIN <= len(address) <= EMAIL_MAX:
        return f"must be {EMAIL_MIN}-{EMAIL_MAX} characters"
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in address):
        return "must not contain whitespace or control characters"
    local, _, domain = address.partition("@")
    if address.count("@") != 1 or not local or not domain:
        return "must have exactly one @ with text on both sides"
    return None


def decode_command(payload: bytes, *, staff: bool = False) -> Command:
    """Decode one command payload. Raises ``ProtocolError`` (nothing else).

    ``staff``: the payload came on ``staff/cmd`` (default: it did not). A staff-only
    command (``charge.void``) from anywhere else is ``forbidden`` once its envelope is
    good, before its fields are looked at: the kiosk learns nothing about a command it
    may not send."""
    obj = _load(payload)
    if not isinstance(obj, dict):
        raise ProtocolError(Code.BAD_REQUEST, "a command must be a JSON object")
    raw_rid = obj.get("request_id")
    request_id = _valid_request_id(raw_rid)
    kind = obj.get("type")
    command = kind if isinstance(kind, str) and kind in COMMAND_TYPES else None
    if raw_rid is None:
        raise ProtocolError(Code.BAD_REQUEST, "request_id is required", None, command)
    if request_id is None:
        raise ProtocolError(
            Code.BAD_REQUEST, "request_id must be a string of 1-64 characters", None, command
        )
    if "v" not in obj:
        raise ProtocolError(Code.BAD_REQUEST, "v is required", request_id, command)
    v = obj["v"]
    if isinstance(v, bool) or not isinstance(v, int) or v != PROTOCOL_VERSION:
        raise ProtocolError(
            Code.BAD_REQUEST, "unsupported protocol version (this agent speaks v 1)",
            request_id, command,
        )
    if kind is None:
        raise ProtocolError(Code.BAD_REQUEST, "type is required", request_id, None)
    if not isinstance(kind, str):
        raise ProtocolError(Code.BAD_REQUEST, "type must be a string", request_id, None)
    if command is None:
        raise ProtocolError(
            Code.UNKNOWN_COMMAND, f"unknown command type {_snippet(kind)}", request_id, None
        )
    if command in STAFF_ONLY_TYPES and not staff:
        raise ProtocolError(
            Code.FORBIDDEN,
            f"{command} is taken only on the staff topic ({TOPIC_ROOT}/<tid>/staff/cmd)",
            request_id, command,
        )
    f = _Fields(obj, request_id, command)
    return _DECODERS[command](f)


def _snippet(text: str) -> str:
    """The start of a peer's text for a message: its first 40 characters, each unprintable
    one as ``?``, ``...`` when there was more, quoted."""
    return repr(replace_unprintable(text[:40]) + ("..." if len(text) > 40 else ""))


def _balance_get(f: _Fields) -> BalanceGet:
    patient_id = f.ident("patient_id", required=True)
    assert patient_id is not None
    return BalanceGet(
        request_id=f.request_id,
        patient_id=patient_id,
        department_id=f.ident("department_id", required=False),
        appointment_id=f.ident("appointment_id", required=False),
    )


def _charge_start(f: _Fields) -> ChargeStart:
    job_id = f.job_id()
    patient_id = f.ident("patient_id", required=True)
    assert patient_id is not None
    department_id = f.ident("department_id", required=False)
    appointment_id = f.ident("appointment_id", required=False)
    raw_copay = f.obj.get("copay")
    copay = Cents(0) if raw_copay is None else f.amount("copay", raw_copay, positive=False)
    claims = f.claims()
    allow_duplicate = f.boolean("allow_duplicate", False)
    deadline_s = f.integer("deadline_s", DEADLINE_DEFAULT_S, DEADLINE_MIN_S, DEADLINE_MAX_S)
    expires_at = f.timestamp("expires_at")
    language = f.language()
    return ChargeStart(
        request_id=f.request_id,
        job_id=job_id,
        patient_id=patient_id,
        department_id=department_id,
        appointment_id=appointment_id,
        copay=copay,
        claims=claims,
        allow_duplicate=allow_duplicate,
        deadline_s=deadline_s,
        expires_at=expires_at,
        language=language,
    )


def _charge_cancel(f: _Fields) -> ChargeCancel:
    return ChargeCancel(request_id=f.request_id, job_id=f.job_id())


def _charge_get(f: _Fields) -> ChargeGet:
    return ChargeGet(request_id=f.request_id, job_id=f.job_id())


def _charge_list(f: _Fields) -> ChargeList:
    # "max 100" (protocol 4) is a cap, not a refusal: a larger limit gets the newest 100.
    limit = f.integer("limit", LIST_DEFAULT, -LIST_LIMIT_CEILING, LIST_LIMIT_CEILING)
    if limit < 1:
        raise f.fail(f"limit must be at least 1 (above {LIST_MAX} it is capped at {LIST_MAX})")
    return ChargeList(request_id=f.request_id, limit=min(limit, LIST_MAX))


def _ping(f: _Fields) -> Ping:
    return Ping(request_id=f.request_id)


def _charge_void(f: _Fields) -> ChargeVoid:
    return ChargeVoid(request_id=f.request_id, job_id=f.job_id())


def _receipt_email(f: _Fields) -> ReceiptEmail:
    job_id = f.job_id()
    return ReceiptEmail(request_id=f.request_id, job_id=job_id, email=f.email())


_DECODERS: dict[str, Callable[[_Fields], Command]] = {
    "balance.get": _balance_get,
    "charge.start": _charge_start,
    "charge.cancel": _charge_cancel,
    "charge.get": _charge_get,
    "charge.list": _charge_list,
    "ping": _ping,
    "charge.void": _charge_void,
    "receipt.email": _receipt_email,
}
assert set(_DECODERS) == set(COMMAND_TYPES)
