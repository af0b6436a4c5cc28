"""Commands of protocol v1 as frozen dataclasses (already validated).

``lobbypay.core.protocol.decode_command`` builds these from MQTT payloads; everything that
protocol.md section 2-4 says about field types, ranges and formats is checked there, so a
``Command`` that exists is well-formed. Rules that need athena (claims collectible, amounts
within balances) are checked later by the charge plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lobbypay.core.money import Cents


@dataclass(frozen=True, slots=True)
class ClaimAmount:
    claim_id: str
    amount: Cents


@dataclass(frozen=True, slots=True)
class BalanceGet:
    request_id: str
    patient_id: str
    department_id: str | None = None  # None: terminal.department_id
    appointment_id: str | None = None
    type: str = "balance.get"


@dataclass(frozen=True, slots=True)
class ChargeStart:
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
    type: str = "charge.start"

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
    request_id: str
    job_id: str
    type: str = "charge.cancel"


@dataclass(frozen=True, slots=True)
class ChargeGet:
    request_id: str
    job_id: str
    type: str = "charge.get"


@dataclass(frozen=True, slots=True)
class ChargeList:
    request_id: str
    limit: int = 20  # 1..100
    type: str = "charge.list"


@dataclass(frozen=True, slots=True)
class ChargeVoid:
    """Staff topic only (protocol 10): void a succeeded job's payment at athena."""

    request_id: str
    job_id: str
    type: str = "charge.void"


@dataclass(frozen=True, slots=True)
class ReceiptEmail:
    """Email athena's receipt of a succeeded job. ``email`` is personal data: it is never
    journaled, and ``repr`` masks it so a log of the command cannot carry it."""

    request_id: str
    job_id: str
    email: str
    type: str = "receipt.email"

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
    request_id: str
    type: str = "ping"


Command = (
    BalanceGet | ChargeStart | ChargeCancel | ChargeGet | ChargeList | Ping | ChargeVoid
    | ReceiptEmail
)

COMMAND_TYPES: tuple[str, ...] = (
    "balance.get", "charge.start", "charge.cancel", "charge.get", "charge.list", "ping",
    "charge.void", "receipt.email",
)
#: Commands taken only on ``lobbypay/v1/<tid>/staff/cmd`` (protocol 10); on ``cmd``
#: they are answered ``forbidden``.
STAFF_ONLY_TYPES: frozenset[str] = frozenset({"charge.void"})
