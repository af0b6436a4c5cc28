"""athena's rules in the simulator: what a token request, a collectpayment, a void and a
receipt email do to the world, or why athena refuses them.

* tokens: OAuth2 client credentials (Basic auth), then bearer tokens with an expiry;
* collectpayment: the parameters (department, track data with sentinels and a Luhn check,
  copay needs an appointment, ``claimpayment`` adds up to ``otheramount``, each claim
  exists, is clean, lies in the department's provider group and is within its balance),
  checked in docs/athena.md's order, each failure a 400 error body; then the declines
  (a duplicate within ten minutes unless ``allowduplicatepayments``, a Luhn failure, an
  expired card, a ``decline_next`` fault, a PAN ending 0002); else the approval: a receipt
  (``requestdate`` in US Eastern text), claims' patient balance lowered, the copay
  recorded, what is left over credited;
* voidpayment: puts all of that back, until the nightly settlement;
* the receipt email: recorded, for a known payment and a plausible address.

The card is read here (``read_track``) and only its last four digits, brand and verdicts
leave the reading.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lobbypay.shell.logsafe import luhn_ok
from lobbypay.sim.reply import NOT_REGISTERED, Reply, error_reply, json_reply
from lobbypay.sim.world import EASTERN, World, money_text, parse_money

#: athena refuses a second payment of the same total for the same patient within this
#: window unless ``allowduplicatepayments`` is set (the real window is undocumented).
DUPLICATE_WINDOW = timedelta(minutes=10)
DECLINE_TEXT = (
    "Declined - card has been declined, no further information is available. "
    "Ask for another form of payment"
)
EXPIRED_TEXT = "Declined - the card has expired. Ask for another form of payment"
INVALID_CARD_TEXT = "Invalid card number. Please check the number and try again"
DUPLICATE_TEXT = (
    "Duplicate payment: a payment of the same amount was made for this patient in the last "
    "10 minutes. Set allowduplicatepayments to charge it again"
)
#: PANs ending in these digits are declined (test cards for the decline path).
DECLINE_SUFFIX = "0002"
#: athena settles the day's card payments "generally around 8 p.m. Eastern time nightly";
#: a payment can be voided until then (field notes, section 4).
SETTLEMENT_HOUR_EASTERN = 20
SETTLED_TEXT = (
    "This payment has already been settled and can no longer be voided. "
    "Refund it from athenaOne instead"
)
_EMAIL_SIM_RE = re.compile(r"\A[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_TRACK1_RE = re.compile(r"%B(\d{12,19})\^([^^?]{2,26})\^(\d{2})(\d{2})(\d{3})[^?]*\?")
_TRACK2_RE = re.compile(r";(\d{12,19})=(\d{2})(\d{2})(\d{3})[^?]*\?")

# ---------------------------------------------------------------- the card


def card_brand(pan: str) -> tuple[str, str]:
    """(abbreviation, name) as athena's receipts show them."""
    if pan.startswith("4"):
        return "VI", "Visa"
    if pan[:2] in ("34", "37"):
        return "AX", "American Express"
    if pan[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(pan[:4]) <= 2720:
        return "MC", "MasterCard"
    if pan.startswith("6011") or pan.startswith("65"):
        return "DI", "Discover"
    return "OT", "Other"


@dataclass(frozen=True, slots=True)
class Card:
    pan_last4: str
    brand: tuple[str, str]
    expired: bool
    luhn: bool
    decline: bool


def read_track(trackdata: str, now: datetime) -> Card | None:
    """Parse swipe text with sentinels (track 1 and/or track 2). ``None`` if not track data.

    Only the last four digits, brand and verdicts leave this function.
    """
    t1 = _TRACK1_RE.search(trackdata)
    t2 = _TRACK2_RE.search(trackdata)
    if t1 is None and t2 is None:
        return None
    if t1 is not None and t2 is not None and t1.group(1) != t2.group(1):
        return None
    if t1 is not None:
        pan, yy, mm = t1.group(1), t1.group(3), t1.group(4)
    elif t2 is not None:
        pan, yy, mm = t2.group(1), t2.group(2), t2.group(3)
    else:  # pragma: no cover - excluded by the first check
        return None
    month = int(mm)
    if not 1 <= month <= 12:
        return None
    local = now.astimezone(EASTERN)
    expired = (2000 + int(yy), month) < (local.year, local.month)
    return Card(pan[-4:], card_brand(pan), expired, luhn_ok(pan), pan.endswith(DECLINE_SUFFIX))


# ---------------------------------------------------------------- tokens


def issue_token(
    world: World,
    headers: Mapping[str, str],
    form: Mapping[str, str],
    *,
    client_id: str,
    client_secret: str,
    ttl_s: int,
) -> Reply:
    """``POST /oauth2/v1/token``: Basic auth with the client's credentials, then a token."""
    auth = headers.get("authorization", "")
    ok = False
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            ok = hmac.compare_digest(user, client_id) and hmac.compare_digest(
                password, client_secret
            )
        except (ValueError, UnicodeDecodeError):
            ok = False
    if not ok:
        return error_reply(401, "invalid_client", "Client authentication failed")
    if form.get("grant_type") != "client_credentials":
        return error_reply(400, "unsupported_grant_type", "grant_type must be client_credentials")
    token = world.issue_token(ttl_s)
    return json_reply(
        200,
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl_s,
            "scope": form.get("scope", ""),
        },
    )


def authorized(world: World, headers: Mapping[str, str]) -> bool:
    """The request carries a live bearer token."""
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return False
    return world.token_valid(auth[7:].strip())


# ---------------------------------------------------------------- the payment


class _Rejected(Exception):
    """collectpayment validation failed (becomes a 400 error body)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("rejected")
        self.reply = reply


def collect(
    world: World,
    practice_id: str | None,
    patient_id: str,
    form: Mapping[str, str],
    *,
    decline_next: Callable[[], bool],
) -> Reply:
    """``POST /patients/{id}/collectpayment``. ``decline_next`` is asked, once the card
    would otherwise be approved, whether a fault declines it."""
    if practice_id is None or practice_id not in world.practices:
        return error_reply(404, NOT_REGISTERED)
    try:
        with world.lock:
            return _collect_locked(world, practice_id, patient_id, form, decline_next)
    except _Rejected as rejected:
        return rejected.reply


def _collect_locked(
    world: World,
    practice_id: str,
    patient_id: str,
    form: Mapping[str, str],
    decline_next: Callable[[], bool],
) -> Reply:
    practice = world.practices[practice_id]
    patient = practice["patients"].get(patient_id)
    if patient is None:
        raise _Rejected(error_reply(404, "The patient could not be found."))
    dept = form.get("departmentid", "")
    if not dept:
        raise _Rejected(
            error_reply(400, "Missing parameters.", "departmentid is required", ["departmentid"])
        )
    dept_group = world.group_of(practice, dept)
    if dept_group is None:
        raise _Rejected(error_reply(400, "Invalid departmentid."))
    now = world.now()
    track = form.get("trackdata", "")
    if not track:
        if form.get("accountnumber"):
            raise _Rejected(
                error_reply(400, "Keyed entry is not enabled for this simulator; send trackdata.")
            )
        raise _Rejected(
            error_reply(
                400,
                "Missing parameters.",
                "trackdata or keyed card details are required",
                [
                    "accountnumber",
                    "expirationmonthmm",
                    "expirationyearyyyy",
                    "nameoncard",
                    "billingaddress",
                    "billingzip",
                ],
            )
        )
    if form.get("ecommercemode", "").lower() == "true":
        raise _Rejected(error_reply(400, "trackdata may not be used in ecommerce mode."))
    card = read_track(track, now)
    if card is None:
        raise _Rejected(
            error_reply(
                400, "Invalid track data.", "trackdata must include start and end sentinels"
            )
        )

    amounts: dict[str, int] = {}
    for name in ("copayamount", "otheramount", "amount"):
        raw = form.get(name)
        if raw is None or raw == "":
            continue
        cents = parse_money(raw)
        if cents is None:
            raise _Rejected(
                error_reply(400, f"Invalid {name}.", f"{name} must be a dollar amount")
            )
        amounts[name] = cents
    copay = amounts.get("copayamount", 0)
    other = amounts.get("otheramount", amounts.get("amount", 0))
    appt_id = form.get("appointmentid", "")
    appointment = None
    if copay and not appt_id:
        raise _Rejected(
            error_reply(
                400,
                "Missing parameters.",
                "copayamount requires appointmentid",
                ["appointmentid"],
            )
        )
    if appt_id:
        appointment = practice["appointments"].get(appt_id)
        if appointment is None or appointment["patientid"] != patient_id:
            raise _Rejected(error_reply(400, "Invalid appointmentid."))

    claim_pay: list[tuple[dict[str, Any], int]] = []
    raw_claims = form.get("claimpayment")
    if raw_claims:
        claim_pay = _claims_for(world, practice, patient, dept_group, raw_claims)
        claimed = sum(c for _, c in claim_pay)
        if claimed != other:
            raise _Rejected(
                error_reply(
                    400,
                    "The claimpayment amounts must add up to otheramount.",
                    f"claimpayment sums to {money_text(claimed)}, "
                    f"otheramount is {money_text(other)}",
                )
            )
    total = copay + other
    if total <= 0:
        raise _Rejected(
            error_reply(
                400, "A payment amount is required.", "send copayamount and/or otheramount"
            )
        )

    def declined(text: str) -> Reply:
        return json_reply(200, [{"success": "false", "errortext": text}])

    allow_dup = form.get("allowduplicatepayments", "").lower() in ("true", "y", "yes", "1")
    if not allow_dup:
        for p_id, pat, cents, at in world.approved:
            if (
                p_id == practice_id
                and pat == patient_id
                and cents == total
                and now - at < DUPLICATE_WINDOW
            ):
                return declined(DUPLICATE_TEXT)
    if not card.luhn:
        return declined(INVALID_CARD_TEXT)
    if card.expired:
        return declined(EXPIRED_TEXT)
    if decline_next() or card.decline:
        return declined(DECLINE_TEXT)

    # Approved: receipt, balances, copay bookkeeping.
    epayment_id = str(world.next_epayment)
    world.next_epayment += 1
    world.approved.append((practice_id, patient_id, total, now))
    practice["receipts"].append(
        {
            "patientid": patient_id,
            "epaymentid": epayment_id,
            "amount_cents": total,
            "last4": card.pan_last4,
            "brand": card.brand[0],
            "departmentid": dept,
            "at": now,
            "voided": False,
            "settled": False,
            "copay_cents": copay,
            "appointmentid": appt_id or None,
            "unapplied_cents": other - sum(c for _, c in claim_pay),
        }
    )
    for claim, cents in claim_pay:
        claim["balance_cents"] -= cents
        claim["transactions"].append(
            {
                "id": len(claim["transactions"]) + 1,
                "date": now.astimezone(EASTERN).strftime("%m/%d/%Y"),
                "amount_cents": -cents,
                "type": "PAYMENT",
                "description": "Patient payment (credit card)",
                "epaymentid": epayment_id,
                "transfertype": "p",
            }
        )
    if appointment is not None and copay:
        appointment["collected_cents"] += copay
    unapplied = other - sum(c for _, c in claim_pay)
    if unapplied > 0:
        patient["credit_cents"] += unapplied
    strings = patient.get("style") == "strings"
    return json_reply(
        200,
        [
            {
                "success": "true",
                "epaymentid": epayment_id if strings else int(epayment_id),
                "errortext": "",
            }
        ],
    )


def _claims_for(
    world: World,
    practice: dict[str, Any],
    patient: dict[str, Any],
    dept_group: str,
    raw: str,
) -> list[tuple[dict[str, Any], int]]:
    def bad(error: str, detail: str | None = None) -> _Rejected:
        return _Rejected(error_reply(400, error, detail))

    try:
        entries = json.loads(raw)
    except ValueError:
        raise bad("Invalid claimpayment.", "claimpayment must be a JSON array") from None
    if not isinstance(entries, list) or not entries:
        raise bad("Invalid claimpayment.", "claimpayment must be a non-empty JSON array")
    out: list[tuple[dict[str, Any], int]] = []
    seen: set[str] = set()
    claims = {c["claimid"]: c for c in patient["claims"]}
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise bad("Invalid claimpayment.", 'each entry is {"<claimid>": "<amount>"}')
        ((claim_id, raw_amount),) = entry.items()
        cents = parse_money(raw_amount) if isinstance(raw_amount, str) else None
        if cents is None or cents <= 0:
            raise bad(
                "Invalid claimpayment.", f"amount for claim {claim_id} is not a positive amount"
            )
        if claim_id in seen:
            raise bad("Invalid claimpayment.", f"claim {claim_id} appears twice")
        seen.add(claim_id)
        claim = claims.get(claim_id)
        if claim is None:
            raise bad("Invalid claim ID.", f"claim {claim_id} is not a claim of this patient")
        if not claim["clean"]:
            raise bad(
                "Claim is not eligible for payment.",
                f"claim {claim_id} is on a payment plan or contract",
            )
        if (
            practice["enterprise"]
            and world.group_of(practice, claim["departmentid"]) != dept_group
        ):
            raise bad(
                "Claim is not eligible for payment.",
                f"claim {claim_id} belongs to another provider group",
            )
        if cents > claim["balance_cents"]:
            raise bad(
                "Payment exceeds the claim balance.",
                f"claim {claim_id} balance is {money_text(claim['balance_cents'])}",
            )
        out.append((claim, cents))
    return out


# ---------------------------------------------------------------- void and emailed receipt


def _find_receipt(
    world: World, practice_id: str | None, ids: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]] | Reply:
    """(practice, receipt) of ``ids``, or the error athena would answer."""
    if practice_id is None or practice_id not in world.practices:
        return error_reply(404, NOT_REGISTERED)
    practice = world.practices[practice_id]
    if ids["patientid"] not in practice["patients"]:
        return error_reply(404, "The patient could not be found.")
    for r in practice["receipts"]:
        if r["patientid"] == ids["patientid"] and str(r["epaymentid"]) == ids["epaymentid"]:
            return practice, r
    return error_reply(404, "The payment could not be found.")


def is_settled(world: World, receipt: Mapping[str, Any]) -> bool:
    """Settled by the nightly batch: ``settle`` ran, or it is past 8 p.m. US Eastern on
    the payment's day (a payment made after 8 p.m. settles the next night)."""
    if receipt.get("settled"):
        return True
    at = receipt["at"].astimezone(EASTERN)
    cutoff = at.replace(hour=SETTLEMENT_HOUR_EASTERN, minute=0, second=0, microsecond=0)
    if at >= cutoff:
        cutoff += timedelta(days=1)
    return bool(world.now() >= cutoff)


def settle(world: World) -> int:
    """Run the nightly settlement now: every payment so far can no longer be voided."""
    with world.lock:
        count = 0
        for practice in world.practices.values():
            for r in practice["receipts"]:
                if not r["settled"]:
                    r["settled"] = True
                    count += 1
        return count


def void(world: World, practice_id: str | None, ids: Mapping[str, str]) -> Reply:
    """``POST /patients/{id}/voidpayment/{epaymentid}``."""
    with world.lock:
        found = _find_receipt(world, practice_id, ids)
        if isinstance(found, Reply):
            return found
        practice, receipt = found
        patient = practice["patients"][ids["patientid"]]
        strings = patient.get("style") == "strings"

        def answer(entry: dict[str, str]) -> Reply:
            # the body is undocumented: "strings" patients get the array form
            return json_reply(200, [entry] if strings else entry)

        if receipt["voided"]:
            return answer({"success": "true"})  # voided once; saying so again is safe
        if is_settled(world, receipt):
            return answer({"success": "false", "errortext": SETTLED_TEXT})
        receipt["voided"] = True
        eid = str(receipt["epaymentid"])
        world.voids[eid] = world.voids.get(eid, 0) + 1
        for claim in patient["claims"]:
            for tx in claim["transactions"]:
                if tx.get("epaymentid") == eid and tx["type"] == "PAYMENT":
                    claim["balance_cents"] -= tx["amount_cents"]  # amounts are negative
                    tx["type"] = "VOIDED"
        appt = practice["appointments"].get(receipt.get("appointmentid") or "")
        if appt is not None:
            appt["collected_cents"] -= receipt.get("copay_cents", 0)
        patient["credit_cents"] -= receipt.get("unapplied_cents", 0)
        world.approved = [
            a for a in world.approved
            if not (a[1] == receipt["patientid"] and a[2] == receipt["amount_cents"]
                    and a[3] == receipt["at"])
        ]
        return answer({"success": "true"})


def email_receipt(
    world: World, practice_id: str | None, ids: Mapping[str, str], form: Mapping[str, str]
) -> Reply:
    """``POST /patients/{id}/receipts/{epaymentid}/email``."""
    with world.lock:
        found = _find_receipt(world, practice_id, ids)
        if isinstance(found, Reply):
            return found
        address = form.get("email", "")
        if not address:
            return error_reply(400, "Missing parameters.", "email is required", ["email"])
        if not _EMAIL_SIM_RE.match(address):
            return error_reply(400, "Invalid email address.")
        world.emails.append((ids["epaymentid"], address))
        return json_reply(200, {"success": "true"})


__all__ = [
    "DECLINE_TEXT",
    "DUPLICATE_TEXT",
    "EXPIRED_TEXT",
    "INVALID_CARD_TEXT",
    "SETTLED_TEXT",
    "Card",
    "authorized",
    "card_brand",
    "collect",
    "email_receipt",
    "is_settled",
    "issue_token",
    "read_track",
    "settle",
    "void",
]
