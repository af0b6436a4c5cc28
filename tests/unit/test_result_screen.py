"""The screen a job's end shows (lobbypay.core.screen.result_screen): one row per state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lobbypay.core import job as jm
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.job import JobState
from lobbypay.core.money import Cents
from lobbypay.core.screen import (
    RESULT_SCREENS,
    SWIPE_FAILED_SCREENS,
    Screen,
    ScreenKind,
    result_screen,
    swipe_failed_screen,
)
from lobbypay_hw.api import ReadFailure

T0 = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)


def job_in(state: JobState, language: str = "es") -> jm.Job:
    cmd = ChargeStart(
        request_id="r-1", job_id="j-1", patient_id="60178", department_id="1",
        appointment_id="1234", copay=Cents(2500), claims=(ClaimAmount("5569", Cents(4000)),),
        allow_duplicate=False, deadline_s=120, expires_at=None, language=language,
    )
    job = jm.start_job(cmd, department_id="1", now=T0).job
    return replace(job, state=state, card_brand="visa", card_last4="1111")


#: every state -> the screen its job's end shows (None: the display is left as it is)
EXPECTED: dict[JobState, Screen | None] = {
    JobState.PENDING: None,
    JobState.CARD_READ: None,
    JobState.SUBMITTING: None,
    JobState.UNKNOWN: Screen(ScreenKind.UNKNOWN, language="es"),
    JobState.SUCCEEDED: Screen(ScreenKind.APPROVED, total=Cents(6500), brand="visa",
                               last4="1111", language="es"),
    JobState.DECLINED: Screen(ScreenKind.DECLINED, brand="visa", last4="1111", language="es"),
    JobState.FAILED: Screen(ScreenKind.FAILED, language="es"),
    JobState.CANCELED: Screen(ScreenKind.CANCELED, language="es"),
    JobState.EXPIRED: Screen(ScreenKind.EXPIRED, language="es"),
    # the patient has usually left, and another job may hold the display
    JobState.VOIDED: None,
}


def test_every_state_has_a_row() -> None:
    assert set(EXPECTED) == set(JobState)


@pytest.mark.parametrize(("state", "screen"), EXPECTED.items(), ids=lambda v: str(v))
def test_result_screen_per_state(state: JobState, screen: Screen | None) -> None:
    assert result_screen(job_in(state)) == screen
    assert (state in RESULT_SCREENS) is (screen is not None)


def test_no_state_that_holds_the_terminal_has_a_result_screen() -> None:
    assert not set(RESULT_SCREENS) & jm.ACTIVE_STATES


def test_a_card_is_shown_only_when_the_job_has_one() -> None:
    job = replace(job_in(JobState.FAILED, "en"), card_brand=None, card_last4=None)
    assert result_screen(replace(job, state=JobState.DECLINED)) == Screen(
        ScreenKind.DECLINED, language="en")


def test_a_failed_swipe_screen_per_reader_reason() -> None:
    assert set(SWIPE_FAILED_SCREENS) <= {r.value for r in ReadFailure}
    expected = {ReadFailure.NOT_A_BANK_CARD: ScreenKind.NOT_A_BANK_CARD,
                ReadFailure.ENCRYPTED_READER: ScreenKind.CANNOT_READ_HERE}
    for reason in ReadFailure:
        kind = expected.get(reason, ScreenKind.SWIPE_AGAIN)
        assert swipe_failed_screen(reason, Cents(6500)) == Screen(kind, total=Cents(6500))
