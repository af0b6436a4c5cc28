"""Whether a ``charge.start`` may begin, before athena is asked anything (pure).

The rules of protocol.md 4, in the order the contract gives them:

1. **idempotency**: a ``job_id`` already known with the same body is a repeat and
   gets that job's state back; with another body it is ``idempotency_conflict``;
2. **expires_at** already past: ``expired``;
3. **one job at a time**: ``terminal_busy`` naming the active job.

The amounts (``core/plan.validate_charge``) and athena's balances come after these.
"""

from __future__ import annotations

from datetime import datetime

from lobbypay.core.commands import ChargeStart
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.job import Job, body_key_of


def admit(cmd: ChargeStart, *, existing: Job | None, active_job_id: str | None,
          now: datetime) -> Job | None:
    """The job this command repeats (answer with its state), or None: a new job may
    start. Raises ``DomainError`` with the contract's code when it may not."""
    if existing is not None:
        if existing.body_key != body_key_of(cmd):
            raise DomainError(Code.IDEMPOTENCY_CONFLICT,
                              f"job {cmd.job_id} exists with a different body")
        return existing
    if cmd.expires_at is not None and cmd.expires_at <= now:
        raise DomainError(Code.EXPIRED, "expires_at is already past")
    ensure_free(active_job_id)
    return None


def ensure_free(active_job_id: str | None) -> None:
    """``terminal_busy`` while another job holds the terminal."""
    if active_job_id is not None:
        raise DomainError(Code.TERMINAL_BUSY, "another job is active",
                          active_job_id=active_job_id)
