"""Commands of protocol v1 as frozen dataclasses (already validated).

``lobbypay.core.protocol.decode_command`` builds these from MQTT payloads; everything that
protocol.md section 2-4 says about field types, ranges and formats is checked there, so a
``Command`` that exists is well-formed. Rules that need athena (claims collectible, amounts
within balances) are checked later by the charge plan.

Each class names its wire ``type`` at class level (``ChargeStart.type == "charge.start"``),
so code that routes commands matches on the class and the type checker sees which one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from lobbypay.core.money import Cents


@dataclass(frozen=True, slots=True)
class ClaimAmount:
    claim_id: str
    amount: Cents


@dataclass(frozen=True, slots=True)
class BalanceGet:
    type: ClassVar[str] = "balance.get"
    request_id: str
    patient_id: str
    department_id: str | None = None  # None: terminal.department_id
    appointment_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeStart:
    type: ClassVar[str] = "charge.start"
    request_id: str
    job_id: str
    patient_id: str
    department_id: str | None
    appointment_id: str | None
    copay: Cents
    claims: tuple[ClaimAmount, ...]
    allow_duplicate: bool
    deadline_s: int  # 10..300, default 120
    expires_at: datetime | None  # aware UTC
    #: the display's language for this job; None: ``terminal.language`` (protocol 10)
    language: str | None = None

    @property
    def other(self) -> Cents:
        return Cents(sum(c.amount for c in self.claims))

    @property
    def total(self) -> Cents:
        return Cents(self.copay + self.other)

    def body_key(self) -> tuple[object, ...]:
        """What must match for a repeat of the same job_id to count as 'the same body'.

        ``request_id`` is excluded (a retry may carry a new one); ``department_id`` is
        compared as given (None = terminal default).
        """
        return (
            self.patient_id, self.department_id, self.appointment_id, self.copay,
            self.claims, self.allow_duplicate, self.deadline_s, self.expires_at,
        )


@dataclass(frozen=True, slots=True)
class ChargeCancel:
    type: ClassVar[str] = "charge.cancel"
    request_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class ChargeGet:
    type: ClassVar[str] = "charge.get"
    request_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class ChargeList:
    type: ClassVar[str] = "charge.list"
    request_id: str
    limit: int = 20  # 1..100


@dataclass(frozen=True, slots=True)
class ChargeVoid:
    """Staff topic only (protocol 10): void a succeeded job's payment at athena."""

    type: ClassVar[str] = "charge.void"
    request_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class ReceiptEmail:
    """Email athena's receipt of a succeeded job. ``email`` is personal data: it is never
    journaled, and ``repr`` masks it so a log of the command cannot carry it."""

    type: ClassVar[str] = "receipt.email"
    request_id: str
    job_id: str
    email: str

    def __repr__(self) -> str:
        return (f"ReceiptEmail(request_id={self.request_id!r}, job_id={self.job_id!r}, "
                f"email={mask_email(self.email)!r})")


def mask_email(address: str) -> str:
    """The only form of an address a log line may show: ``j***@example.com``."""
    local, sep, domain = address.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"
    request_id: str


Command = (
    BalanceGet | ChargeStart | ChargeCancel | ChargeGet | ChargeList | Ping | ChargeVoid
    | ReceiptEmail
)

COMMAND_CLASSES: tuple[type[Command], ...] = (
    BalanceGet, ChargeStart, ChargeCancel, ChargeGet, ChargeList, Ping, ChargeVoid,
    ReceiptEmail,
)
COMMAND_TYPES: tuple[str, ...] = tuple(c.type for c in COMMAND_CLASSES)
#: Commands taken only on ``lobbypay/v1/<tid>/staff/cmd`` (protocol 10); on ``cmd``
#: they are answered ``forbidden``.
STAFF_ONLY_TYPES: frozenset[str] = frozenset({ChargeVoid.type})
