"""Jobs walked through the job machine and committed to a real journal, for the tests of
the journal, its read-only view and the uninstall gate that reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lobbypay.core import job as jm
from lobbypay.core.commands import ChargeStart, ClaimAmount
from lobbypay.core.money import Cents
from lobbypay.shell.journal import Journal

T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
TOPIC = "lobbypay/v1/t-journal/events"
CANARY_PAN = "4111111111111111"


def cmd(job_id: str = "j-1") -> ChargeStart:
    return ChargeStart(
        request_id="r", job_id=job_id, patient_id="60178", department_id="1",
        appointment_id="1234", copay=Cents(2500), claims=(ClaimAmount("5569", Cents(4000)),),
        allow_duplicate=False, deadline_s=120, expires_at=None,
    )


def run_to_success(journal: Journal, job_id: str) -> jm.Job:
    st = jm.start_job(cmd(job_id), department_id="1", now=T0)
    journal.commit_step(st, topic=TOPIC)
    for i, inp in enumerate([jm.CardAccepted("visa", "1111"), jm.SubmitStarted(),
                             jm.PaymentApproved(f"ep-{job_id}")]):
        st = jm.step(st.job, inp, T0 + timedelta(seconds=i + 1))
        journal.commit_step(st, topic=TOPIC)
    return st.job


def to_submitting(journal: Journal, job_id: str) -> jm.Job:
    st = jm.start_job(cmd(job_id), department_id="1", now=T0)
    journal.commit_step(st, topic=TOPIC)
    for i, inp in enumerate([jm.CardAccepted("visa", "1111"), jm.SubmitStarted()]):
        st = jm.step(st.job, inp, T0 + timedelta(seconds=i + 1))
        journal.commit_step(st, topic=TOPIC)
    return st.job


def to_unknown(journal: Journal, job_id: str) -> jm.Job:
    job = to_submitting(journal, job_id)
    st = jm.step(job, jm.OutcomeUncertain("read timeout"), T0 + timedelta(seconds=5))
    journal.commit_step(st, topic=TOPIC)
    return st.job
