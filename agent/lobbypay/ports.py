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

    Each class carries its protocol code (``AthenaError.code``); ``lobbypay.core.outcome``
    turns an error into a job input or a reply.

journal
    ``Journal`` is what the engine and the command dispatcher need of the SQLite journal
    (``lobbypay.shell.journal.Journal``): commit a job step with its outbox row, read jobs
    and their latest events, keep replies for redelivered commands. ``Outbox`` is the part
    the MQTT link drains (``lobbypay.shell.mqtt.MqttLink``).

clock
    ``Clock``: aware UTC now, and a monotonic clock for every wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from lobbypay.core.athena import PaymentResult, Receipt
from lobbypay.core.job import Job, Step

#: A JSON object as decoded from athena or built for the wire (values: JSON values).
JsonObject = dict[str, object]


class Athena(Protocol):
    async def get_patient(self, patient_id: str, department_id: str) -> list[JsonObject]:
        """GET /patients/{id}?showbalancedetails=true&departmentid=... (array of one)."""
        ...

    async def get_appointment(self, appointment_id: str) -> JsonObject:
        """GET /appointments/{id} (the one appointment object)."""
        ...

    async def get_departments(self) -> list[JsonObject]:
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


class OutboxRow(Protocol):
    """One event waiting for the broker's PUBACK (``lobbypay.shell.journal.OutboxRow``)."""

    @property
    def id(self) -> int: ...

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def retain(self) -> bool: ...


class Outbox(Protocol):
    """The journal's outbox as the MQTT link drains it, in id order."""

    def outbox_pending(self, limit: int) -> Sequence[OutboxRow]:
        """The oldest ``limit`` rows not acknowledged yet."""
        ...

    def outbox_ack(self, row_id: int) -> None:
        """The broker has the row (PUBACK): never send it again."""
        ...

    def outbox_ack_many(self, row_ids: Sequence[int]) -> None:
        """``outbox_ack`` of several rows in one transaction."""
        ...


class Journal(Protocol):
    """The journal as the engine and the dispatcher use it. Every method raises
    ``lobbypay.shell.journal.JournalError`` when the disk refuses (full, locked)."""

    @property
    def quarantined(self) -> Sequence[tuple[str, str]]:
        """(job_id, reason) of the unreadable rows moved aside since it was opened."""
        ...

    def commit_step(self, step: Step, *, topic: str, fsync: bool = True) -> None:
        """Write the job, its event and the event's outbox row (on ``topic``) in one
        transaction; fsynced unless ``fsync`` is False."""
        ...

    def get_job(self, job_id: str) -> Job | None: ...

    def load_jobs(self, *, only_open: bool = False) -> list[Job]: ...

    def latest_event(self, job_id: str) -> JsonObject | None:
        """The job's last ``charge.event`` (protocol 5), as published."""
        ...

    def list_latest(self, limit: int) -> list[JsonObject]:
        """The latest event of each of the ``limit`` newest jobs."""
        ...

    def is_quarantined(self, job_id: str) -> bool: ...

    def known_epayment_ids(self) -> frozenset[str]:
        """Every epayment id that is some job's payment."""
        ...

    def outbox_count(self) -> int:
        """Events not acknowledged by the broker yet (``state.outbox``)."""
        ...

    def put_reply(self, request_id: str, reply: bytes) -> None:
        """Keep a command's reply for its redeliveries."""
        ...

    def get_reply(self, request_id: str) -> bytes | None: ...
