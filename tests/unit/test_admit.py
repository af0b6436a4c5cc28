"""core/admit.py: the charge.start rules that come before athena, in the contract's order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lobbypay.core import job as jm
from lobbypay.core.admit import admit, ensure_free
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def cmd(**kw: Any) -> ChargeStart:
    base = ChargeStart(
        request_id="r-1", job_id="j-1", patient_id="60178", department_id="1",
        appointment_id="1234", copay=Cents(2500), claims=(ClaimAmount("5569", Cents(4000)),),
        allow_duplicate=False, deadline_s=120, expires_at=None,
    )
    return replace(base, **kw)


def job_of(c: ChargeStart) -> jm.Job:
    return jm.start_job(c, department_id="1", now=NOW).job


def test_a_new_job_on_a_free_terminal_may_start() -> None:
    assert admit(cmd(), existing=None, active_job_id=None, now=NOW) is None


def test_a_repeat_with_the_same_body_returns_the_job() -> None:
    existing = job_of(cmd())
    # another request_id is the same body: the repeat is answered, even while busy
    assert admit(cmd(request_id="r-2"), existing=existing, active_job_id="j-1",
                 now=NOW) is existing


@pytest.mark.parametrize("change", [
    {"copay": Cents(2600)},
    {"patient_id": "60179"},
    {"claims": ()},
    {"allow_duplicate": True},
])
def test_the_same_job_id_with_another_body_is_a_conflict(change: dict[str, object]) -> None:
    existing = job_of(cmd())
    with pytest.raises(DomainError) as ei:
        admit(cmd(**change), existing=existing, active_job_id=None, now=NOW)
    assert ei.value.code is Code.IDEMPOTENCY_CONFLICT


@pytest.mark.parametrize("offset_s, admitted", [(-1, False), (0, False), (1, True)])
def test_expires_at_must_be_in_the_future(offset_s: int, admitted: bool) -> None:
    c = cmd(expires_at=NOW + timedelta(seconds=offset_s))
    if admitted:
        assert admit(c, existing=None, active_job_id=None, now=NOW) is None
    else:
        with pytest.raises(DomainError) as ei:
            admit(c, existing=None, active_job_id=None, now=NOW)
        assert ei.value.code is Code.EXPIRED


def test_expiry_is_checked_before_busy() -> None:
    with pytest.raises(DomainError) as ei:
        admit(cmd(expires_at=NOW), existing=None, active_job_id="j-0", now=NOW)
    assert ei.value.code is Code.EXPIRED


def test_busy_names_the_active_job() -> None:
    with pytest.raises(DomainError) as ei:
        admit(cmd(), existing=None, active_job_id="j-0", now=NOW)
    assert ei.value.code is Code.TERMINAL_BUSY
    assert ei.value.extra == {"active_job_id": "j-0"}
    ensure_free(None)  # a free terminal raises nothing
