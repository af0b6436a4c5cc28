"""athena's answers as types (pure): payment results, receipts, and the error tree.

Parsing helpers for these live here too, so the simulator, the client and the job
machine share one reading of athena's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lobbypay.core.money import Cents

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
    requested_at: datetime | None  # aware UTC (athena's requestdate is US Eastern)
    type: str | None = None


# ---------------------------------------------------------------- errors


class AthenaError(Exception):
    """Base of every error the athena client raises. Messages carry no card data."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id


class AthenaUnavailable(AthenaError):
    """Not delivered / transient. For collect_payment: certainly not sent."""


class AthenaThrottled(AthenaUnavailable):
    """429, or 403 'Over Qps'/'Over Rate', past the client's retry budget."""


class OutcomeUnknown(AthenaError):
    """The POST may have reached athena. Reconcile; never retry."""


class AthenaRejected(AthenaError):
    """athena answered with an error body (``error``, ``detailedmessage``, ``missingfields``)."""

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
    """The patient / appointment / path does not exist."""


class AthenaAuthError(AthenaRejected):
    """Credentials refused (401 after a fresh token, or the token endpoint said no)."""


class AthenaBadResponse(AthenaError):
    """A reply that is not the shape the endpoint returns (HTML, wrong JSON)."""
