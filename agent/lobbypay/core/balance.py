"""athena's balance rules (pure): what a patient owes that this terminal may collect.

Input is athena's own JSON, already decoded:

* ``GET /patients/{id}?showbalancedetails=true`` -> :func:`evaluate_balances`
* ``GET /appointments/{id}`` -> :func:`parse_copay`
* ``GET /departments`` -> :func:`department_info`

The rules (athena's "Patient Balances and Payment Collection" page, protocol.md section 4)
and every decision taken where athena is silent are written up in docs/balance-rules.md;
keep the two in step. In short: take the ``claimbalancedetails`` group whose
``departmentids`` holds the department; its clean claims with a patient balance above zero
are collectible; every other claim with a balance above zero is listed as not collectible
(``not_clean`` or ``other_provider_group``); paid claims and credits are left out.

Anything in a payload that cannot be read raises :class:`BalancePayloadError` (a
``ValueError``) naming where it was, never echoing the payload itself. No other exception
escapes these functions, whatever JSON-like value they are given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Final, TypeVar

from lobbypay.core.money import (
    MAX_ATHENA_CENTS,
    Cents,
    InvalidAmount,
    format_cents,
    parse_athena_amount,
)
from lobbypay.core.text import clip, replace_unprintable

#: reason codes of ``not_collectible`` entries (protocol.md section 4)
NOT_CLEAN: Final = "not_clean"
OTHER_PROVIDER_GROUP: Final = "other_provider_group"

#: athena ids as we accept them: ASCII letters, digits and ``._:-``, 1-64 characters.
#: athena's own ids are digits; the wider set keeps simulators and test data readable.
_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
#: the usual text form of athena money, parsed inline (falls back to parse_athena_amount)
_FAST_MONEY_RE: Final = re.compile(r"-?[0-9]{1,10}\.[0-9]{2}", re.ASCII)
#: service dates: athena writes MM/DD/YYYY; ISO dates are read too
_US_DATE_RE: Final = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})", re.ASCII)
_ISO_DATE_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
#: dollars bound of the inline float path (= money.MAX_ATHENA_CENTS in dollars)
_MAX_DOLLARS: Final = MAX_ATHENA_CENTS / 100
_MAX_WHOLE: Final = MAX_ATHENA_CENTS // 100
#: provider group ids that mean "no provider group" (non-enterprise practices)
_BLANK_GROUP_IDS: Final = frozenset({"0"})
#: names athena uses for a claim's patient balance, in order of preference
_BALANCE_KEYS: Final = ("patientbalance", "outstandingp")


class BalancePayloadError(ValueError):
    """An athena payload that is not the shape these rules read.

    The message names the place (``claimbalancedetails[1].claimdetails[4].patientbalance``)
    and the kind of problem; it never carries more than a short snippet of a value.
    """


class PatientNotFoundInPayload(BalancePayloadError):
    """The patient read returned an empty array: athena has no such patient."""


class AppointmentNotFoundInPayload(BalancePayloadError):
    """The appointment read returned an empty array: athena has no such appointment."""


@dataclass(frozen=True, slots=True)
class ClaimBalance:
    claim_id: str
    service_date: str | None
    balance: Cents
    clean: bool
    provider_group_id: str | None
    department_id: str | None


@dataclass(frozen=True, slots=True)
class NotCollectible:
    claim: ClaimBalance
    reason: str  # NOT_CLEAN | OTHER_PROVIDER_GROUP


@dataclass(frozen=True, slots=True)
class BalanceView:
    """What ``balance.get`` reports and ``charge.start`` checks against."""

    patient_id: str
    department_id: str
    provider_group_id: str | None
    collectible: tuple[ClaimBalance, ...]
    not_collectible: tuple[NotCollectible, ...]
    group_found: bool

    @property
    def collectible_total(self) -> Cents:
        return Cents(sum(c.balance for c in self.collectible))

    def claim(self, claim_id: str) -> ClaimBalance | None:
        """The collectible claim with this id, or None (not collectible or unknown)."""
        for c in self.collectible:
            if c.claim_id == claim_id:
                return c
        return None

    def not_collectible_reason(self, claim_id: str) -> str | None:
        """Why a listed claim cannot be collected; None when it is not listed as such."""
        for n in self.not_collectible:
            if n.claim.claim_id == claim_id:
                return n.reason
        return None

    def to_wire(self) -> dict[str, object]:
        """The ``balance.get`` reply fields of protocol.md section 4 (no envelope, no copay)."""
        return {
            "patient_id": self.patient_id,
            "department_id": self.department_id,
            "provider_group_id": self.provider_group_id,
            "collectible": [
                {
                    "claim_id": c.claim_id,
                    "service_date": c.service_date,
                    "balance": format_cents(c.balance),
                }
                for c in self.collectible
            ],
            "not_collectible": [
                {
                    "claim_id": n.claim.claim_id,
                    "balance": format_cents(n.claim.balance),
                    "reason": n.reason,
                }
                for n in self.not_collectible
            ],
            "collectible_total": format_cents(self.collectible_total),
        }


@dataclass(frozen=True, slots=True)
class DepartmentInfo:
    department_id: str
    provider_group_id: str | None
    enterprise: bool  # more than one distinct provider group across the practice's departments
    found: bool


# Shells for the hot path (thousands of claims per read). A frozen dataclass's __init__
# goes through object.__setattr__ once per field. A shell has the same slots, in the same
# order, but plain writable attributes: the hot loop fills one with ordinary attribute
# stores, then turns it into the real class by assigning __class__ (allowed because the
# two layouts are identical; Python refuses the assignment if they ever drift apart).
# The result is an ordinary frozen ClaimBalance / NotCollectible, built about four times
# as fast as by the constructor (twice as fast as by writing the slots through their
# descriptors). tests/unit/test_balance.py checks every field of objects built this way
# against the dataclass constructor.
class _ClaimBalanceShell:
    __slots__ = ClaimBalance.__slots__
    claim_id: str
    service_date: str | None
    balance: int  # Cents, without the NewType call
    clean: bool
    provider_group_id: str | None
    department_id: str | None


class _NotCollectibleShell:
    __slots__ = NotCollectible.__slots__
    claim: ClaimBalance
    reason: str


# ---------------------------------------------------------------- small readers


def _snippet(value: object) -> str:
    """A short, printable hint of a value for error messages (never the whole payload)."""
    if isinstance(value, str):
        # at most 8 characters of the value: a card number never comes back whole
        return clip(replace_unprintable(repr(value[:12])), 12)
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _req_id(value: object, where: str) -> str:
    """A required athena id: an int (not bool, >= 0) or a string matching _ID_RE."""
    if type(value) is str:
        if _ID_RE.fullmatch(value):
            return value
        text = value.strip()
        if _ID_RE.fullmatch(text):
            return text
        if not text:
            raise BalancePayloadError(f"{where} is blank")
        raise BalancePayloadError(f"{where} is not an id: {_snippet(value)}")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 10**64:
            return str(value)
        raise BalancePayloadError(f"{where} is out of range")
    if value is None:
        raise BalancePayloadError(f"{where} is missing")
    raise BalancePayloadError(f"{where} has type {type(value).__name__}, not an id")


def _opt_id(value: object, where: str) -> str | None:
    """An optional id: None, "" and whitespace mean absent."""
    if value is None or (type(value) is str and not value.strip()):
        return None
    return _req_id(value, where)


def _group_id(value: object, where: str) -> str | None:
    """A provider group id; blank (None, "", whitespace, 0, "0") means none."""
    pg = _opt_id(value, where)
    return None if pg in _BLANK_GROUP_IDS else pg


def _cents(value: object, where: str) -> int:
    """athena money to cents; the common forms inline, the rest via parse_athena_amount."""
    if type(value) is str:
        if _FAST_MONEY_RE.fullmatch(value):
            return int(value.replace(".", ""))  # "-12.34" -> -1234
    elif type(value) is int:
        if -MAX_ATHENA_CENTS <= value * 100 <= MAX_ATHENA_CENTS:
            return value * 100
    elif type(value) is float:
        # Exact when the float is the nearest double to a whole number of cents (what
        # repr() of an amount with <= 2 decimals gives); anything else takes the slow path.
        if -_MAX_DOLLARS <= value <= _MAX_DOLLARS:
            c = round(value * 100)
            if c / 100 == value:
                return c
    try:
        return parse_athena_amount(value)
    except InvalidAmount as exc:
        raise BalancePayloadError(f"{where}: {exc}") from None


def _flag(value: object, where: str) -> bool:
    """cleanbalance: a bool or "true"/"false" (any case); absent or null is False."""
    if value is True or value is False:
        return value
    if value is None:
        return False
    if type(value) is str:
        text = value.strip().lower()
        if text == "true":
            return True
        if text == "false":
            return False
    raise BalancePayloadError(f"{where} is not true/false: {_snippet(value)}")


def _department_set(value: object, where: str) -> frozenset[str]:
    """``departmentids``: "1,2, 5", an int, or a list of ids; blanks between commas skipped."""
    if value is None:
        return frozenset()
    if type(value) is str:
        return frozenset(
            _req_id(part, where) for part in value.split(",") if part.strip()
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return frozenset((_req_id(value, where),))
    if isinstance(value, list):
        out: set[str] = set()
        for i, item in enumerate(value):
            d = _opt_id(item, f"{where}[{i}]")
            if d is not None:
                out.add(d)
        return frozenset(out)
    raise BalancePayloadError(f"{where} has type {type(value).__name__}")


#: a service date as one sortable int, YYYYMMDD; _NO_DATE (after every date) when unknown
_DateKey = int
_NO_DATE: Final = 10**8
#: claim ids: numbers in numeric order, then other ids as text (ids have <= 64 characters)
_TEXT_ID: Final = 10**64


def _service_date(value: object, where: str) -> str | None:
    """servicedate as athena wrote it (stripped); None when absent or blank."""
    if value is None:
        return None
    if type(value) is not str:
        raise BalancePayloadError(f"{where} has type {type(value).__name__}, not a string")
    text = value.strip()
    if not text:
        return None
    if len(text) > 32 or not text.isprintable():
        raise BalancePayloadError(f"{where} is not a date: {_snippet(value)}")
    return text


def _date_key(text: str | None) -> _DateKey:
    """Sort key of a service date: known dates oldest first, then unreadable or absent."""
    if text is None:
        return _NO_DATE
    m = _US_DATE_RE.fullmatch(text)
    if m:
        return int(m[3]) * 10000 + int(m[1]) * 100 + int(m[2])
    m = _ISO_DATE_RE.fullmatch(text)
    if m:
        return int(m[1]) * 10000 + int(m[2]) * 100 + int(m[3])
    return _NO_DATE


#: A claim's place in the order of _order_key as one int, cheap to sort: date key *
#: _DATE_STEP + id number (_TEXT_ID for a text id). Claims tie on it only for the same
#: date and id number (text ids, digit ids with leading zeros), and then go by the id as
#: text; it does not hold an int id of more than 64 digits (the loop notes one).
_SortKey = int
_DATE_STEP: Final = _TEXT_ID + 1


def _read_service_date(value: object, where: str) -> tuple[str | None, _SortKey]:
    """servicedate as kept (_service_date), and its date key * _DATE_STEP."""
    if type(value) is str and len(value) == 10 and value[2] == "/" and value[5] == "/":
        # athena's own MM/DD/YYYY, without the regular expressions
        digits = value[6:] + value[:2] + value[3:5]  # YYYYMMDD
        if digits.isdigit() and digits.isascii():
            return value, int(digits) * _DATE_STEP
    text = _service_date(value, where)
    return text, _date_key(text) * _DATE_STEP


def _as_list(value: object, where: str) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise BalancePayloadError(f"{where} has type {type(value).__name__}, not a list")


# ---------------------------------------------------------------- patient balances

# Statuses, worst last: a claim listed twice takes the worst status of its listings.
_COLLECTIBLE, _NOT_CLEAN, _OTHER_GROUP = 0, 1, 2
_T = TypeVar("_T")


_claim_id: Final = attrgetter("claim_id")
_claim_of: Final = attrgetter("claim")


def _itself(claim: ClaimBalance) -> ClaimBalance:
    return claim


def _listed_again(claims: list[list[ClaimBalance]], paid: set[str]) -> bool:
    """Whether a claim is listed more than once: twice with a balance, or with a balance
    and at zero or below."""
    ids = set(map(_claim_id, chain.from_iterable(claims)))
    return len(ids) != sum(map(len, claims)) or not paid.isdisjoint(ids)


def _merge_listings(keys: list[list[_SortKey]], claims: list[list[ClaimBalance]],
                    paid: set[str]) -> None:
    """Leave one listing per claim, in place. ``keys[status]`` and ``claims[status]`` hold
    the listings with that status in listing order; ``paid`` the claims listed at zero or
    below somewhere. A claim listed again keeps the smallest balance and the worst status
    (its first listing with that status gives the rest), so a charge never exceeds any
    listing of what is owed on the claim; with a listing at zero or below, the smallest
    balance leaves it out.
    """
    smallest: dict[str, int] = {}
    for listed in claims:
        for c in listed:
            smallest[c.claim_id] = min(smallest.get(c.claim_id, c.balance), c.balance)
    taken = set(paid)
    for status in (_OTHER_GROUP, _NOT_CLEAN, _COLLECTIBLE):  # worst first
        kept_keys: list[_SortKey] = []
        kept: list[ClaimBalance] = []
        for k, c in zip(keys[status], claims[status], strict=True):
            if c.claim_id not in taken:
                taken.add(c.claim_id)
                # not handed out yet: the one place a ClaimBalance changes after it is made
                object.__setattr__(c, "balance", smallest[c.claim_id])
                kept_keys.append(k)
                kept.append(c)
        keys[status][:] = kept_keys
        claims[status][:] = kept


def _order_key(claim: ClaimBalance) -> tuple[_DateKey, int, str]:
    """The order of claims, spelled out: service date (oldest first; none or unreadable
    last), then claim id: numbers numerically, then text ids as text; digit ids of the
    same number (leading zeros) go as text too."""
    cid = claim.claim_id
    return _date_key(claim.service_date), int(cid) if cid.isdigit() else _TEXT_ID, cid


def _in_order(keys: list[_SortKey], items: list[_T], claim_of: Callable[[_T], ClaimBalance],
              keys_fit: bool) -> tuple[_T, ...]:
    """``items`` (claims, or their NotCollectible) in claim order, by their sort keys
    ``keys``: alone when they all differ, else with the claim id (see _SortKey)."""
    if not keys_fit:
        return tuple(sorted(items, key=lambda item: _order_key(claim_of(item))))
    by_key = dict(zip(keys, items, strict=True))
    if len(by_key) == len(items):
        return tuple(map(by_key.__getitem__, sorted(by_key)))
    # Keys tie for ids of the same number on one date (text ids, leading zeros): those go
    # by the id as text. Ids are unique here, so the items themselves are never compared.
    ids = [claim_of(item).claim_id for item in items]
    ordered = sorted(zip(keys, ids, items, strict=True))
    return tuple(item for _, _, item in ordered)


def _not_collectible(claims: list[ClaimBalance], reason: str) -> list[NotCollectible]:
    out: list[NotCollectible] = []
    add = out.append
    shell = _NotCollectibleShell
    for c in claims:
        nc = shell()  # = NotCollectible(c, reason), faster: see _ClaimBalanceShell
        nc.claim = c
        nc.reason = reason
        nc.__class__ = NotCollectible  # type: ignore[assignment]
        add(nc)  # type: ignore[arg-type]
    return out


def _pick_patient(payload: object, patient_id: str) -> Mapping[str, object]:
    if isinstance(payload, dict):
        return payload
    if not isinstance(payload, list):
        raise BalancePayloadError(
            f"patient payload has type {type(payload).__name__}, not a list of one patient"
        )
    if not payload:
        raise PatientNotFoundInPayload(f"athena returned no patient for id {patient_id}")
    if len(payload) == 1:
        patient = payload[0]
    else:
        # Not seen from GET /patients/{id}; take the copy whose id is the one asked for.
        same = [
            p for p in payload
            if isinstance(p, dict) and _safe_id(p.get("patientid")) == patient_id
        ]
        if len(same) != 1:
            raise BalancePayloadError(
                f"patient payload holds {len(payload)} patients and {len(same)} with id "
                f"{patient_id}"
            )
        patient = same[0]
    if not isinstance(patient, dict):
        raise BalancePayloadError(f"patient[0] has type {type(patient).__name__}, not an object")
    return patient


def _safe_id(value: object) -> str | None:
    try:
        return _opt_id(value, "patientid")
    except BalancePayloadError:
        return None


def evaluate_balances(payload: object, patient_id: str, department_id: str) -> BalanceView:
    """Apply athena's collection rules to a patient read, for one department.

    ``payload`` is the decoded body of ``GET /patients/{id}?showbalancedetails=true``
    (an array of one patient; a bare patient object is accepted too).
    """
    department_id = department_id.strip()
    patient = _pick_patient(payload, patient_id)
    groups = _as_list(patient.get("claimbalancedetails"), "claimbalancedetails")

    # Pass 1: which groups hold the department.
    read: list[tuple[str | None, frozenset[str], list[object], str]] = []
    for gi, group in enumerate(groups):
        gw = f"claimbalancedetails[{gi}]"
        if not isinstance(group, dict):
            raise BalancePayloadError(f"{gw} has type {type(group).__name__}, not an object")
        pg = _group_id(group.get("providergroupid"), f"{gw}.providergroupid")
        depts = _department_set(group.get("departmentids"), f"{gw}.departmentids")
        claims = _as_list(group.get("claimdetails"), f"{gw}.claimdetails")
        read.append((pg, depts, claims, gw))

    matching = [i for i, (_, depts, _, _) in enumerate(read) if department_id in depts]
    if not matching and len(read) == 1 and read[0][0] is None and not read[0][1]:
        # A lone group with no provider group and no department list: a non-enterprise
        # practice whose list was left out. athena says it spans every department.
        matching = [0]
    group_ids = {read[i][0] for i in matching}
    if len(group_ids) > 1:
        shown = ", ".join(sorted(str(g) for g in group_ids))
        raise BalancePayloadError(
            f"department {department_id} is listed in more than one provider group ({shown})"
        )
    group_found = bool(matching)
    view_group = read[matching[0]][0] if matching else None
    ours = frozenset(matching)

    # Pass 2: every claim. This loop is the hot path (scripts/bench_balance.py): the
    # common shapes are read inline, and where a problem is gets spelled out only when
    # there is one. A claim with a balance above zero becomes a ClaimBalance, filed under
    # its status with its sort key, in listing order. Claims listed twice are rare: they
    # are merged afterwards, and only when there are some.
    keys: list[list[_SortKey]] = [[], [], []]  # by status
    claims_by_status: list[list[ClaimBalance]] = [[], [], []]
    paid: set[str] = set()  # claims listed at zero or below
    keys_fit = True  # see _SortKey
    dates: dict[str, _SortKey] = {}  # servicedate text -> date part of the sort key
    int_ids: dict[int, str] = {}  # departmentid ints repeat: one str() each
    id_match = _ID_RE.fullmatch
    money_match = _FAST_MONEY_RE.fullmatch
    shell, claim_balance = _ClaimBalanceShell, ClaimBalance
    max_whole, max_dollars, text_id = _MAX_WHOLE, _MAX_DOLLARS, _TEXT_ID
    for gi, (pg, _depts, claims, gw) in enumerate(read):
        clean_status, unclean_status = (
            (_COLLECTIBLE, _NOT_CLEAN) if gi in ours else (_OTHER_GROUP, _OTHER_GROUP)
        )
        add_clean = claims_by_status[clean_status].append
        key_clean = keys[clean_status].append
        add_unclean = claims_by_status[unclean_status].append
        key_unclean = keys[unclean_status].append
        item: object = None
        try:
            for item in claims:
                if type(item) is not dict:
                    raise BalancePayloadError(f" has type {type(item).__name__}, not an object")
                raw = item.get("claimid")
                if type(raw) is int and 0 <= raw < text_id:
                    claim_id = str(raw)
                    num = raw
                elif type(raw) is str and raw.isdigit() and raw.isascii() and len(raw) <= 64:
                    claim_id = raw  # ASCII digits: what _ID_RE takes, read as a number
                    num = int(raw)
                elif type(raw) is int and raw >= 0:
                    claim_id = str(raw)  # more than 64 digits: taken, and ordered by _order_key
                    num = text_id
                    keys_fit = False
                else:
                    if type(raw) is str and id_match(raw):
                        claim_id = raw
                    else:
                        claim_id = _req_id(raw, ".claimid")
                    num = int(claim_id) if claim_id.isdigit() else text_id
                raw = item.get("patientbalance")
                if raw is None:
                    raw = item.get("outstandingp")
                    if raw is None:
                        raise BalancePayloadError(" has no patientbalance or outstandingp")
                if type(raw) is str and money_match(raw) is not None:
                    balance = int(raw.replace(".", ""))  # "-12.34" -> -1234
                elif type(raw) is int and -max_whole <= raw <= max_whole:
                    balance = raw * 100
                elif type(raw) is float and -max_dollars <= raw <= max_dollars:
                    balance = round(raw * 100)
                    if balance / 100 != raw:  # not a whole number of cents: let _cents say
                        balance = _cents(raw, ".patientbalance")
                else:
                    balance = _cents(raw, ".patientbalance")
                if balance <= 0:
                    # Paid or a credit: never listed, so nothing else of it is read.
                    paid.add(claim_id)
                    continue
                raw = item.get("cleanbalance")
                if raw is True or raw is False:
                    clean = raw
                elif raw == "true":
                    clean = True
                elif raw == "false":
                    clean = False
                else:
                    clean = _flag(raw, ".cleanbalance")
                raw = item.get("servicedate")
                date_part = dates.get(raw) if type(raw) is str else None
                if date_part is not None:
                    service_date = raw
                else:
                    service_date, date_part = _read_service_date(raw, ".servicedate")
                    if type(raw) is str and service_date == raw:  # the text alone gives both
                        dates[raw] = date_part
                raw = item.get("departmentid")
                if type(raw) is int and raw >= 0:
                    dept = int_ids.get(raw)
                    if dept is None:
                        dept = int_ids[raw] = str(raw)
                elif type(raw) is str and id_match(raw):
                    dept = raw
                else:
                    dept = _opt_id(raw, ".departmentid")
                cb = shell()  # = ClaimBalance(claim_id, ...), faster: see _ClaimBalanceShell
                cb.claim_id = claim_id
                cb.service_date = service_date
                cb.balance = balance
                cb.clean = clean
                cb.provider_group_id = pg
                cb.department_id = dept
                cb.__class__ = claim_balance  # type: ignore[assignment]
                if clean:
                    add_clean(cb)  # type: ignore[arg-type]
                    key_clean(date_part + num)
                else:
                    add_unclean(cb)  # type: ignore[arg-type]
                    key_unclean(date_part + num)
        except BalancePayloadError as exc:
            # which claim: found only now (by identity: the one being read), not counted
            ci = next(i for i, c in enumerate(claims) if c is item)
            raise BalancePayloadError(f"{gw}.claimdetails[{ci}]{exc}") from None

    if _listed_again(claims_by_status, paid):
        _merge_listings(keys, claims_by_status, paid)
    ok, not_clean, other = claims_by_status
    collectible = _in_order(keys[_COLLECTIBLE], ok, _itself, keys_fit)
    not_collectible = _in_order(
        keys[_NOT_CLEAN] + keys[_OTHER_GROUP],
        _not_collectible(not_clean, NOT_CLEAN) + _not_collectible(other, OTHER_PROVIDER_GROUP),
        _claim_of, keys_fit,
    )
    return BalanceView(
        patient_id=patient_id,
        department_id=department_id,
        provider_group_id=view_group,
        collectible=collectible,
        not_collectible=not_collectible,
        group_found=group_found,
    )


# ---------------------------------------------------------------- copay


def _one_object(payload: object, what: str) -> Mapping[str, object]:
    if isinstance(payload, dict):
        return payload
    if not isinstance(payload, list):
        raise BalancePayloadError(f"{what} payload has type {type(payload).__name__}")
    if not payload:
        raise AppointmentNotFoundInPayload(f"athena returned no {what}")
    if len(payload) != 1:
        raise BalancePayloadError(f"{what} payload holds {len(payload)} objects, not one")
    obj = payload[0]
    if not isinstance(obj, dict):
        raise BalancePayloadError(f"{what}[0] has type {type(obj).__name__}, not an object")
    return obj


def parse_copay(appointment_payload: object) -> Cents | None:
    """The copay still expected for an appointment, or None when athena gives none.

    ``copay`` is either an object ``{insurancecopay, collectedforappointment,
    collectedforother}`` (expected = insurancecopay - collectedforappointment, at least 0;
    ``collectedforother`` was collected for something else and does not count) or a
    plain amount (at least 0).
    """
    appt = _one_object(appointment_payload, "appointment")
    copay = appt.get("copay")
    if copay is None:
        return None
    if isinstance(copay, dict):
        insurance = copay.get("insurancecopay")
        if insurance is None or (isinstance(insurance, str) and not insurance.strip()):
            return None
        owed = _cents(insurance, "copay.insurancecopay")
        collected_raw = copay.get("collectedforappointment")
        collected = (
            0 if collected_raw is None or (
                isinstance(collected_raw, str) and not collected_raw.strip()
            )
            else _cents(collected_raw, "copay.collectedforappointment")
        )
        return Cents(max(0, owed - collected))
    if isinstance(copay, str) and not copay.strip():
        return None
    return Cents(max(0, _cents(copay, "copay")))


def copay_already_collected(appointment_payload: object) -> bool:
    """athena says this appointment's copay is already collected (protocol.md 4):
    ``copay.collectedforappointment`` is at least ``copay.insurancecopay``, which is above
    zero. A plain-amount ``copay`` or a missing one says nothing about collection: False.
    """
    appt = _one_object(appointment_payload, "appointment")
    copay = appt.get("copay")
    if not isinstance(copay, dict):
        return False
    insurance = copay.get("insurancecopay")
    collected_raw = copay.get("collectedforappointment")
    if insurance is None or collected_raw is None:
        return False
    if (isinstance(insurance, str) and not insurance.strip()) or (
            isinstance(collected_raw, str) and not collected_raw.strip()):
        return False
    owed = _cents(insurance, "copay.insurancecopay")
    collected = _cents(collected_raw, "copay.collectedforappointment")
    return owed > 0 and collected >= owed


# ---------------------------------------------------------------- departments


def department_info(departments_payload: object, department_id: str) -> DepartmentInfo:
    """Read ``GET /departments``: the department's provider group, and whether the
    practice is enterprise (more than one distinct provider group across departments).

    Accepts ``{"departments": [...]}`` or a bare array.
    """
    department_id = department_id.strip()
    if isinstance(departments_payload, dict):
        items = _as_list(departments_payload.get("departments"), "departments")
    elif isinstance(departments_payload, list):
        items = departments_payload
    else:
        raise BalancePayloadError(
            f"departments payload has type {type(departments_payload).__name__}"
        )
    groups: set[str] = set()
    found = False
    group: str | None = None
    for i, item in enumerate(items):
        where = f"departments[{i}]"
        if not isinstance(item, dict):
            raise BalancePayloadError(f"{where} has type {type(item).__name__}, not an object")
        dept = _req_id(item.get("departmentid"), f"{where}.departmentid")
        pg = _group_id(item.get("providergroupid"), f"{where}.providergroupid")
        if pg is not None:
            groups.add(pg)
        if dept == department_id and not found:
            found, group = True, pg
    return DepartmentInfo(
        department_id=department_id,
        provider_group_id=group,
        enterprise=len(groups) > 1,
        found=found,
    )


__all__ = [
    "NOT_CLEAN",
    "OTHER_PROVIDER_GROUP",
    "AppointmentNotFoundInPayload",
    "BalancePayloadError",
    "BalanceView",
    "ClaimBalance",
    "DepartmentInfo",
    "NotCollectible",
    "PatientNotFoundInPayload",
    "copay_already_collected",
    "department_info",
    "evaluate_balances",
    "parse_copay",
]
