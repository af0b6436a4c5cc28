"""The ``charge.event`` message (protocol.md 5): built from a job, and checked (pure).

``to_event(job)`` is the only place an event is put together; ``check_event(ev)`` accepts
exactly what it builds and nothing else. The journal checks every event before it
writes one, so nothing but these plain fields (no card object, no track text: ``card``
holds only brand and a 4-digit last4) reaches disk or the broker.

``job`` is anything with a job's fields (``EventSource``): in the agent a
``lobbypay.core.job.Job``. This module does not import the job machine, the machine
imports it (``step`` returns the events of a step).

The job states are named here as events spell them (``JOB_STATES``); which of them end a
job, carry ``epayment_id`` or carry ``error`` is the protocol's word too. The job
machine's ``JobState`` has one member per name (``core/job.py`` checks it at import).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from lobbypay.core.commands import ClaimAmount
from lobbypay.core.money import format_cents
from lobbypay.core.protocol.envelope import PROTOCOL_VERSION
from lobbypay.core.protocol.times import format_seconds

EVENT_TYPE = "charge.event"

#: Every ``state`` an event can carry, in the order a job meets them.
JOB_STATES: tuple[str, ...] = (
    "pending", "card_read", "submitting", "unknown", "succeeded", "declined", "failed",
    "canceled", "expired", "voided",
)
#: States after which no event follows (``final: true``); ``unknown`` is not one.
FINAL_JOB_STATES: frozenset[str] = frozenset(
    {"succeeded", "declined", "failed", "canceled", "expired", "voided"}
)
#: States whose event carries ``epayment_id``: the payment athena made (and, once voided,
#: the payment that was voided).
PAYMENT_STATES: frozenset[str] = frozenset({"succeeded", "voided"})
#: States whose event carries ``error``.
ERROR_STATES: frozenset[str] = frozenset({"declined", "failed", "expired", "canceled", "unknown"})


class EventSource(Protocol):
    """What an event is built from: the fields of a job (``lobbypay.core.job.Job``)."""

    @property
    def job_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def final(self) -> bool: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def card_brand(self) -> str | None: ...
    @property
    def card_last4(self) -> str | None: ...
    @property
    def copay(self) -> int: ...
    @property
    def other(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def claims(self) -> Sequence[ClaimAmount]: ...
    @property
    def epayment_id(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...


def amounts_of(job: EventSource) -> dict[str, Any]:
    """An event's ``amounts``: copay, the claims' sum (``other``), total, each claim."""
    return {
        "copay": format_cents(job.copay),
        "other": format_cents(job.other),
        "total": format_cents(job.total),
        "claims": [{"claim_id": c.claim_id, "amount": format_cents(c.amount)} for c in job.claims],
    }


def to_event(job: EventSource) -> dict[str, Any]:
    """The protocol 5 ``charge.event`` object for the job's current state."""
    state = str(job.state)
    ev: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": EVENT_TYPE,
        "job_id": job.job_id,
        "seq": job.seq,
        "state": state,
        "final": job.final,
        "at": format_seconds(job.updated_at),
    }
    if job.card_last4 is not None:
        ev["card"] = {"brand": job.card_brand or "unknown", "last4": job.card_last4}
    ev["amounts"] = amounts_of(job)
    if state in PAYMENT_STATES:
        ev["epayment_id"] = job.epayment_id
    if state in ERROR_STATES:
        ev["error"] = {"code": job.error_code or "internal_error",
                       "message": job.error_message or ""}
    else:
        ev["error"] = None
    check_event(ev)
    return ev


_EVENT_KEYS = {"v", "type", "job_id", "seq", "state", "final", "at", "amounts", "error"}
_EVENT_OPTIONAL = {"card", "epayment_id"}


def check_event(ev: object) -> None:
    """Raise ``ValueError`` unless ``ev`` is exactly a charge.event as ``to_event`` builds it.

    The journal calls this before writing, so nothing but these plain fields (no card
    object, no track text: ``card`` holds only brand and a 4-digit last4) reaches disk.
    """
    if not isinstance(ev, dict):
        raise ValueError("event must be a dict")
    keys = set(ev)
    if not (_EVENT_KEYS <= keys <= _EVENT_KEYS | _EVENT_OPTIONAL):
        raise ValueError(f"event has unexpected keys: {sorted(keys ^ _EVENT_KEYS)}")
    if ev["v"] != PROTOCOL_VERSION or ev["type"] != EVENT_TYPE:
        raise ValueError("not a charge.event")
    for k in ("job_id", "state", "at"):
        if not isinstance(ev[k], str):
            raise ValueError(f"event.{k} must be a string")
    if ev["state"] not in JOB_STATES:
        raise ValueError(f"{ev['state']!r} is not a job state")
    if type(ev["seq"]) is not int or ev["seq"] < 1 or type(ev["final"]) is not bool:
        raise ValueError("event.seq/final have the wrong type")
    card = ev.get("card")
    if "card" in ev:
        if (not isinstance(card, dict) or set(card) != {"brand", "last4"}
                or not isinstance(card["brand"], str) or len(card["brand"]) > 20
                or not isinstance(card["last4"], str) or len(card["last4"]) != 4
                or not card["last4"].isdigit()):
            raise ValueError("event.card must be {brand, last4} only")
    if "epayment_id" in ev and not isinstance(ev["epayment_id"], str):
        raise ValueError("event.epayment_id must be a string")
    err = ev["error"]
    if err is not None and (
        not isinstance(err, dict) or set(err) != {"code", "message"}
        or not all(isinstance(v, str) for v in err.values())
    ):
        raise ValueError("event.error must be null or {code, message}")
    check_plain(ev["amounts"])


def check_plain(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is JSON-plain: None, str, int, bool, and lists
    and str-keyed dicts of those (no objects that could hide card data)."""
    if value is None or type(value) in (str, int, bool):
        return
    if type(value) is list:
        for v in value:
            check_plain(v)
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise ValueError("keys must be strings")
            check_plain(v)
        return
    raise ValueError(f"{type(value).__name__} is not a plain JSON value")
