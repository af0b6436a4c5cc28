"""The journal's record of a job: ``Job`` <-> the plain-JSON dict in ``jobs.record``.

A record holds the whole job, so a restart resumes it exactly: times in the precise
form (``lobbypay.core.protocol.format_time``: UTC, microseconds kept), amounts as integer
cents, claims as ``[claim_id, cents]`` pairs. ``job_to_record`` refuses anything that
is not plain JSON (``check_plain``) and a ``card_last4`` that is not 4 digits, so no card
object reaches the file. ``job_from_record`` reads records written by every earlier
version (fields added later take their defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lobbypay.core.commands import ClaimAmount
from lobbypay.core.job import Job, JobState
from lobbypay.core.money import Cents
from lobbypay.core.protocol import check_plain, format_time, parse_time


def _time(t: datetime | None) -> str | None:
    return format_time(t) if t else None


def job_to_record(job: Job) -> dict[str, Any]:
    """A plain-JSON dict of the whole job (for the journal's ``jobs`` table)."""
    rec: dict[str, Any] = {
        "job_id": job.job_id,
        "seq": job.seq,
        "state": job.state.value,
        "patient_id": job.patient_id,
        "department_id": job.department_id,
        "appointment_id": job.appointment_id,
        "copay": int(job.copay),
        "claims": [[c.claim_id, int(c.amount)] for c in job.claims],
        "allow_duplicate": job.allow_duplicate,
        "deadline_s": job.deadline_s,
        "expires_at": _time(job.expires_at),
        "body_key": job.body_key,
        "created_at": format_time(job.created_at),
        "updated_at": format_time(job.updated_at),
        "card_brand": job.card_brand,
        "card_last4": job.card_last4,
        "epayment_id": job.epayment_id,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "submitted_at": _time(job.submitted_at),
        "attempt_from": _time(job.attempt_from),
        "attempt_to": _time(job.attempt_to),
        "reconcile_reads": job.reconcile_reads,
        "reconcile_attempts": job.reconcile_attempts,
        "language": job.language,
    }
    check_plain(rec)
    if job.card_last4 is not None and not (len(job.card_last4) == 4 and job.card_last4.isdigit()):
        raise ValueError("card_last4 must be 4 digits")
    return rec


def job_from_record(rec: Mapping[str, Any]) -> Job:
    """The job a record describes. Raises (``KeyError``, ``ValueError``, ...) on a record
    that is not one; the journal quarantines such a row."""

    def t(key: str) -> datetime | None:
        v = rec.get(key)
        return parse_time(v) if v else None

    created = t("created_at")
    updated = t("updated_at")
    assert created is not None and updated is not None
    return Job(
        job_id=rec["job_id"],
        seq=int(rec["seq"]),
        state=JobState(rec["state"]),
        patient_id=rec["patient_id"],
        department_id=rec["department_id"],
        appointment_id=rec.get("appointment_id"),
        copay=Cents(int(rec["copay"])),
        claims=tuple(ClaimAmount(str(cid), Cents(int(a))) for cid, a in rec["claims"]),
        allow_duplicate=bool(rec["allow_duplicate"]),
        deadline_s=int(rec["deadline_s"]),
        expires_at=t("expires_at"),
        body_key=rec["body_key"],
        created_at=created,
        updated_at=updated,
        card_brand=rec.get("card_brand"),
        card_last4=rec.get("card_last4"),
        epayment_id=rec.get("epayment_id"),
        error_code=rec.get("error_code"),
        error_message=rec.get("error_message"),
        submitted_at=t("submitted_at"),
        attempt_from=t("attempt_from"),
        attempt_to=t("attempt_to"),
        reconcile_reads=int(rec.get("reconcile_reads", 0)),
        reconcile_attempts=int(rec.get("reconcile_attempts", 0)),
        language=str(rec.get("language") or "en"),
    )
