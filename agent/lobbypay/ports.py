"""The seams between the agent and the world, as structural Protocols.

Real implementations live in ``lobbypay.shell`` (athena over httpx, MQTT, the SQLite
journal) and in ``lobbypay_hw`` (readers and displays, see ``lobbypay_hw.api``); tests
pass fakes that satisfy the same Protocols.

athena
    Reads return parsed JSON (the shell checks the envelope; the pure core applies the
    rules). Every call raises only ``lobbypay.core.athena.AthenaError`` subclasses:

    * ``AthenaUnavailable``: nothing reached athena, or a read failed in a way worth
      retrying later (connect error, timeout on a GET, throttled past our patience,
      5xx on a GET). For ``collect_payment`` it means *the POST was certainly not sent*.
    * ``OutcomeUnknown`` (``collect_payment`` only): the POST may have reached athena
      (timeout or connection lost after sending, 5xx, unreadable reply). Never retried:
      reconcile from receipts.
    * ``AthenaRejected``: athena answered with an error (4xx + error body). For the POST
      this is definitive: nothing was charged.
    * ``NotFound``: 404 / "patient not found" style answers.
    * ``AthenaBadResponse``: a 2xx whose body is not what the endpoint returns (HTML, wrong
      shape); for reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from lobbypay.core.athena import PaymentResult, Receipt


class Athena(Protocol):
    async def get_patient(self, patient_id: str, department_id: str) -> list[dict[str, Any]]:
        """GET /patients/{id}?showbalancedetails=true&departmentid=... (array of one)."""
        ...

    async def get_appointment(self, appointment_id: str) -> dict[str, Any]:
        """GET /appointments/{id} (the one appointment object)."""
        ...

    async def get_departments(self) -> list[dict[str, Any]]:
        """GET /departments (all pages), cached by the client."""
        ...

    async def collect_payment(self, patient_id: str,
                              form: Mapping[str, str | bytearray]) -> PaymentResult:
        """POST /patients/{id}/collectpayment, once. ``form`` includes ``trackdata``, a
        ``bytearray`` (overwritten by the client once sent) or text."""
        ...

    async def list_receipts(self, patient_id: str, department_id: str) -> list[Receipt]:
        """GET /patients/{id}/receipts?departmentid=..., parsed."""
        ...

    async def void_payment(self, patient_id: str, epayment_id: str) -> None:
        """POST /patients/{id}/voidpayment/{epaymentid}, once; returns when voided."""
        ...

    async def email_receipt(self, patient_id: str, epayment_id: str, email: str) -> None:
        """POST /patients/{id}/receipts/{epaymentid}/email with ``email``, once."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC now."""
        ...

    def monotonic(self) -> float: ...
