"""The charge engine: runs charge jobs (lobbypay.core.job) against athena, the journal and
the display. No MQTT and no config reading here: the app feeds it decoded commands and
reader events, publishes what lands in the journal's outbox, and mirrors ``state()``.

Order of work for every job step (docs/jobs.md, "Durability order"):

1. ``core.job.step`` computes the new job and its event (pure; an illegal input raises
   before anything changes);
2. ``journal.commit_step`` writes job + event + outbox row in one fsynced transaction;
3. only then the engine acts: updates its memory, the display, wakes the outbox drain,
   and, for ``submitting``, sends the POST.

The card (``lobbypay_hw.api.Card``) exists only between the reader callback and the end
of the POST task: it is never stored on a job, never logged, and wiped in ``finally``
right after the POST. Everything else sees brand and last 4.

Timers (deadlines, reconciliation waits, the result screen) sleep through the injected
``sleep`` (``asyncio.sleep`` by default; tests pass a manual clock's) and measure time
with the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from lobbypay_hw import api

from lobbypay import ports
from lobbypay.core import job as jm
from lobbypay.core.athena import Approved as PaidResult
from lobbypay.core.athena import (
    AthenaBadResponse,
    AthenaError,
    AthenaRejected,
    AthenaUnavailable,
    NotFound,
    match_receipt,
)
from lobbypay.core.athena import Declined as DeclinedResult
from lobbypay.core.balance import (
    AppointmentNotFoundInPayload,
    BalancePayloadError,
    DepartmentInfo,
    PatientNotFoundInPayload,
    evaluate_balances,
    parse_copay,
)
from lobbypay.core.commands import (
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ChargeStart,
    ChargeVoid,
    ClaimAmount,
    ReceiptEmail,
    mask_email,
)
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.job import Job, JobState, Step
from lobbypay.core.money import Cents, format_cents
from lobbypay.core.plan import plan_charge, validate_charge
from lobbypay.core.screen import Screen, ScreenKind, render
from lobbypay.core.screen_text import DEFAULT_LANGUAGE
from lobbypay.failpoints import failpoint
from lobbypay.shell.journal import Journal, JournalError

log = logging.getLogger("lobbypay.engine")

T = TypeVar("T")

#: Backstop on the POST on top of athena.timeout_s (the client enforces timeout_s itself;
#: this only catches a client that hangs past it). Expiry here means "outcome unknown".
POST_BACKSTOP_S = 5.0
#: How long a result (approved, declined, ...) stays on the display before "Welcome".
RESULT_SCREEN_S = 10.0
#: First receipts read after an unknown outcome: give athena a moment to post it.
RECONCILE_FIRST_READ_S = 5.0
#: Receipts reads before the settle time (a landed payment usually shows up quickly).
RECONCILE_POLL_S = 30.0
#: Gap between the two settled reads that must both find nothing before ``not_charged``.
RECONCILE_CONFIRM_GAP_S = 30.0
#: Backoff for failing receipts reads: start, factor 2, cap.
RECONCILE_RETRY_MIN_S = 5.0
RECONCILE_RETRY_MAX_S = 300.0
#: Settled reads that must find nothing before a job ends ``failed``/``not_charged``.
RECONCILE_SETTLED_READS = 2
#: The reconcile waits above are for the default ``reconcile_settle_s`` (this value). A
#: shorter settle time scales every one of them down in proportion (never below
#: ``RECONCILE_MIN_WAIT_S``); a longer one keeps them as they are. So a site (or a test)
#: that sets ``reconcile_settle_s = 1`` gets its verdict in about a second, not a minute.
RECONCILE_REFERENCE_SETTLE_S = 120.0
RECONCILE_MIN_WAIT_S = 0.2


@dataclass(frozen=True, slots=True)
class ReconcileTiming:
    """The reconcile waits for one ``reconcile_settle_s`` (see ``reconcile_timing``)."""

    first_read_s: float
    poll_s: float
    confirm_gap_s: float
    retry_min_s: float
    retry_max_s: float


def reconcile_timing(settle_s: float) -> ReconcileTiming:
    """The module's reconcile constants scaled by ``settle_s / 120`` (at most 1), each at
    least ``RECONCILE_MIN_WAIT_S``. ``reconcile_timing(120)`` is the constants unchanged."""
    f = min(1.0, max(0.0, float(settle_s)) / RECONCILE_REFERENCE_SETTLE_S)

    def scaled(base: float) -> float:
        return max(RECONCILE_MIN_WAIT_S, base * f)

    return ReconcileTiming(
        first_read_s=scaled(RECONCILE_FIRST_READ_S),
        poll_s=scaled(RECONCILE_POLL_S),
        confirm_gap_s=scaled(RECONCILE_CONFIRM_GAP_S),
        retry_min_s=scaled(RECONCILE_RETRY_MIN_S),
        retry_max_s=scaled(RECONCILE_RETRY_MAX_S),
    )

Sleep = Callable[[float], Awaitable[None]]


def _safe(text: object, limit: int = 160) -> str:
    """Peer text for logs and messages: printable, capped."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


class _Active:
    """The job holding the terminal, with the charge plan (memory only)."""

    def __init__(self, job: Job, plan: Any) -> None:
        self.job = job
        self.plan = plan
        self.deadline_task: asyncio.Task[None] | None = None


class Engine:
    def __init__(
        self,
        *,
        terminal_id: str,
        department_id: str,
        max_charge: Cents,
        reconcile_settle_s: float,
        athena_timeout_s: float,
        athena: ports.Athena,
        journal: Journal,
        display: api.Display,
        clock: ports.Clock,
        outbox_wakeup: Callable[[], None],
        on_state_change: Callable[[], None],
        events_topic: str,
        reader: api.CardReader | None = None,
        sleep: Sleep | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self.terminal_id = terminal_id
        self._department_id = department_id
        self._max_charge = max_charge
        self._settle_s = float(reconcile_settle_s)
        self._rt = reconcile_timing(self._settle_s)
        self._athena_timeout_s = float(athena_timeout_s)
        self._athena = athena
        self._journal = journal
        self._display = display
        self._clock = clock
        self._outbox_wakeup = outbox_wakeup
        self._on_state_change = on_state_change
        self._topic = events_topic
        self._reader = reader
        self._sleep: Sleep = sleep or asyncio.sleep
        #: the display's language between jobs and for jobs that name none (protocol 10)
        self._language = language
        #: one void at a time (they are rare), so a second charge.void of a job waits and
        #: then sees the first one's result instead of calling athena again
        self._void_lock = asyncio.Lock()

        self._active: _Active | None = None
        self._reconciling: dict[str, asyncio.Task[None]] = {}
        #: POSTs whose outcome is not journaled yet, and a counter bumped when one starts
        #: or ends: a receipts read that overlapped one may list a payment no job owns yet.
        self._posts_in_flight = 0
        self._submits: set[asyncio.Task[None]] = set()
        self._post_gen = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._start_lock = asyncio.Lock()
        self._screen: tuple[str, ...] = ()
        self._screen_gen = 0
        self._reader_connected: bool | None = None
        #: The terminal department's entry from GET /departments, once read (app.py's probe).
        self.department: DepartmentInfo | None = None
        self._athena_last_ok_at: str | None = None
        self._athena_last_error: dict[str, str] | None = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Recover from the journal, then show the idle screen."""
        now = self._clock.now()
        for job in self._journal.load_jobs(only_open=True):
            if job.state in jm.ACTIVE_STATES:
                # pending/card_read: the card data died with the process -> expired;
                # submitting: the POST may have landed -> unknown -> reconcile.
                st = jm.step(job, jm.Restarted(), now)
                self._journal.commit_step(st, topic=self._topic)
                log.info("recovery: job %s %s -> %s", job.job_id, job.state, st.job.state)
                job = st.job
            if job.state is JobState.UNKNOWN:
                self._spawn_reconcile(job)
        self._show(Screen(ScreenKind.IDLE))
        self._wake()

    async def wait_submissions(self, timeout_s: float) -> bool:
        """Let payment POSTs already in flight finish, up to ``timeout_s``: a clean stop
        should journal their outcome, not leave them to be reconciled as ``unknown`` after
        the restart. True when none is left. (Cancelled ones stay ``submitting`` on disk
        and are reconciled at the next start, as after a crash.)"""
        pending = set(self._submits)
        if not pending:
            return True
        log.info("waiting up to %.0f s for %d payment request(s) in flight", timeout_s,
                 len(pending))
        _done, still = await asyncio.wait(pending, timeout=timeout_s)
        return not still

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - a dying task must not stop the close
                log.exception("engine task failed while closing")
        self._tasks.clear()

    # ------------------------------------------------------------ commands

    async def balance_get(self, cmd: BalanceGet) -> dict[str, Any]:
        dept = cmd.department_id or self._department_id
        payload = await self._read(self._athena.get_patient(cmd.patient_id, dept), "patient")
        view = self._evaluate(payload, cmd.patient_id, dept)
        reply: dict[str, Any] = dict(view.to_wire())
        if cmd.appointment_id is not None:
            appt = await self._read(
                self._athena.get_appointment(cmd.appointment_id), "appointment")
            try:
                expected = parse_copay(appt)
            except AppointmentNotFoundInPayload:
                raise DomainError(Code.APPOINTMENT_NOT_FOUND,
                                  "athena has no such appointment") from None
            except BalancePayloadError as exc:
                raise DomainError(Code.ATHENA_BAD_RESPONSE, _safe(exc)) from None
            reply["copay"] = {"expected": format_cents(expected) if expected is not None
                              else None}
        else:
            reply["copay"] = None
        return reply

    async def charge_start(self, cmd: ChargeStart) -> dict[str, Any]:
        async with self._start_lock:
            return await self._charge_start(cmd)

    async def _charge_start(self, cmd: ChargeStart) -> dict[str, Any]:
        # 1. idempotency
        body_key = jm.body_key_of(cmd)
        existing = self._journal.get_job(cmd.job_id)
        if existing is not None:
            if existing.body_key != body_key:
                raise DomainError(Code.IDEMPOTENCY_CONFLICT,
                                  f"job {cmd.job_id} exists with a different body")
            return {"job_id": existing.job_id, "state": existing.state.value}
        # 2. expires_at
        now = self._clock.now()
        if cmd.expires_at is not None and cmd.expires_at <= now:
            raise DomainError(Code.EXPIRED, "expires_at is already past")
        # 3. one job at a time
        if self._active is not None:
            raise DomainError(Code.TERMINAL_BUSY, "another job is active",
                              active_job_id=self._active.job.job_id)
        # 4. amounts
        validate_charge(cmd, self._max_charge)
        # 5. balances, fresh from athena
        dept = cmd.department_id or self._department_id
        payload = await self._read(self._athena.get_patient(cmd.patient_id, dept), "patient")
        view = self._evaluate(payload, cmd.patient_id, dept)
        plan = plan_charge(view, cmd, dept)
        # the terminal may have been taken while athena answered (the lock keeps other
        # starts out; this is the belt to its braces)
        if self._active is not None:
            raise DomainError(Code.TERMINAL_BUSY, "another job is active",
                              active_job_id=self._active.job.job_id)
        claims = tuple(ClaimAmount(str(c.claim_id), Cents(int(c.amount))) for c in plan.claims)
        st = jm.start_job(cmd, department_id=dept, copay=Cents(int(plan.copay)), claims=claims,
                          now=self._clock.now(), language=self._language)
        if st.job.total != plan.total:
            raise DomainError(Code.INTERNAL_ERROR, "charge plan total does not add up")
        self._commit(st)
        failpoint("after_accept")
        active = _Active(st.job, plan)
        self._active = active
        log.info("job %s: pending (total %s)", cmd.job_id, format_cents(st.job.total))
        self._show(Screen(ScreenKind.PENDING, total=st.job.total))
        # measured from acceptance (now), not from when the timer task first runs
        deadline_end = self._clock.monotonic() + float(cmd.deadline_s)
        active.deadline_task = self._spawn(self._deadline(cmd.job_id, deadline_end),
                                           f"lobbypay.engine.deadline[{cmd.job_id}]")
        self._wake()
        return {"job_id": cmd.job_id, "state": JobState.PENDING.value}

    def charge_cancel(self, cmd: ChargeCancel) -> dict[str, Any]:
        active = self._active
        job: Job | None
        if active is not None and active.job.job_id == cmd.job_id:
            job = active.job
        else:
            job = self._journal.get_job(cmd.job_id)
        if job is None:
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        try:
            st = jm.step(job, jm.Cancel(), self._clock.now())
        except jm.IllegalInput as exc:
            msg = ("a card was already submitted" if exc.code is Code.TOO_LATE
                   else f"job is {job.state}")
            raise DomainError(exc.code, msg) from None
        self._commit(st)
        self._finish(st.job)
        return {"job_id": cmd.job_id, "state": st.job.state.value}

    def charge_get(self, cmd: ChargeGet) -> dict[str, Any]:
        ev = self._journal.latest_event(cmd.job_id)
        if ev is None:
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        return {"job": ev}

    def charge_list(self, cmd: ChargeList) -> dict[str, Any]:
        return {"jobs": self._journal.list_latest(max(1, min(100, cmd.limit)))}

    # ------------------------------------------------------------ staff and receipts

    async def charge_void(self, cmd: ChargeVoid) -> dict[str, Any]:
        """Void a succeeded job's payment at athena (protocol 10; docs/jobs.md, "Voids").

        The ``voided`` step is journaled (fsynced) before the reply is built, so a void
        that was reported survives any restart. A void that did not get athena's answer
        leaves the job ``succeeded``: sending ``charge.void`` again asks athena again,
        which voids a payment at most once."""
        async with self._void_lock:
            return await self._charge_void(cmd)

    async def _charge_void(self, cmd: ChargeVoid) -> dict[str, Any]:
        job = self._journal.get_job(cmd.job_id)
        if job is None:
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        if job.state is JobState.VOIDED:
            return {"job_id": job.job_id, "state": job.state.value}
        if not jm.accepts(job.state, jm.Voided) or job.epayment_id is None:
            raise DomainError(Code.NOT_VOIDABLE, f"job {job.job_id} is {job.state.value}; "
                              "only a succeeded job can be voided")
        log.info("job %s: voiding payment %s", job.job_id, job.epayment_id)
        try:
            async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                await self._athena.void_payment(job.patient_id, job.epayment_id)
        except AthenaRejected as exc:
            self._athena_ok()
            log.info("job %s: athena refused the void: %s", job.job_id, _safe(exc.message))
            raise DomainError(Code.VOID_REJECTED, _safe(exc.message, 200)) from None
        except (AthenaError, TimeoutError) as exc:
            msg = exc.message if isinstance(exc, AthenaError) else "no answer in time"
            self._athena_failed(Code.ATHENA_UNAVAILABLE, msg)
            log.warning("job %s: void not confirmed (%s); the job stays succeeded",
                        job.job_id, _safe(msg))
            raise DomainError(Code.ATHENA_UNAVAILABLE,
                              "athena did not confirm the void; sending charge.void again "
                              "is safe") from None
        self._athena_ok()
        st = jm.step(job, jm.Voided(), self._clock.now())
        self._commit(st)
        failpoint("after_void_journal")
        log.info("job %s: voided", job.job_id)
        self._wake()
        return {"job_id": job.job_id, "state": st.job.state.value}

    async def receipt_email(self, cmd: ReceiptEmail) -> dict[str, Any]:
        """Have athena email the receipt of a succeeded job (protocol 10). The address
        goes to athena and nowhere else: not to the journal, and to logs only masked."""
        job = self._journal.get_job(cmd.job_id)
        if job is None:
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        if job.state is not JobState.SUCCEEDED or job.epayment_id is None:
            raise DomainError(Code.NO_RECEIPT, f"job {job.job_id} is {job.state.value}; only a "
                              "succeeded job has a receipt to email")
        masked = mask_email(cmd.email)
        try:
            async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                await self._athena.email_receipt(job.patient_id, job.epayment_id, cmd.email)
        except AthenaRejected as exc:
            self._athena_ok()
            log.info("job %s: athena refused to email the receipt to %s", job.job_id, masked)
            raise DomainError(Code.ATHENA_REJECTED, _safe(exc.message, 200)) from None
        except (AthenaError, TimeoutError) as exc:
            msg = exc.message if isinstance(exc, AthenaError) else "no answer in time"
            self._athena_failed(Code.ATHENA_UNAVAILABLE, msg)
            log.warning("job %s: receipt email to %s not confirmed (%s)", job.job_id, masked,
                        _safe(msg))
            raise DomainError(Code.ATHENA_UNAVAILABLE,
                              "athena did not confirm the receipt email") from None
        self._athena_ok()
        log.info("job %s: receipt emailed to %s", job.job_id, masked)
        return {"job_id": job.job_id}

    def state(self) -> dict[str, Any]:
        """The protocol 8 ``state`` object."""
        active = self._active
        reader_driver = getattr(self._reader, "driver", "unknown")
        if self._reader is not None:
            reader_connected = bool(self._reader.connected)
        else:
            reader_connected = bool(self._reader_connected)
        try:
            outbox = self._journal.outbox_count()
        except Exception:  # noqa: BLE001 - state must always answer
            outbox = -1
        return {
            "v": 1,
            "job_id": active.job.job_id if active else None,
            "job_state": active.job.state.value if active else "idle",
            "screen": list(self._screen),
            "reader": {"driver": reader_driver, "connected": reader_connected},
            "display": {"driver": self._display.driver,
                        "connected": bool(self._display.connected)},
            "athena": {"last_ok_at": self._athena_last_ok_at,
                       "last_error": self._athena_last_error},
            "outbox": outbox,
        }

    @property
    def active_job(self) -> Job | None:
        return self._active.job if self._active else None

    @property
    def screen(self) -> tuple[str, ...]:
        return self._screen

    # ------------------------------------------------------------ reader

    def on_reader_event(self, ev: api.ReaderEvent) -> None:
        if isinstance(ev, api.ReaderStatus):
            self._reader_connected = ev.connected
            self._changed()
            return
        active = self._active
        pending = active is not None and active.job.state is JobState.PENDING
        if isinstance(ev, api.ReadFailed):
            if active is not None and pending:
                kind = (ScreenKind.NOT_A_BANK_CARD if ev.reason is api.ReadFailure.NOT_A_BANK_CARD
                        else ScreenKind.SWIPE_AGAIN)
                log.info("job %s: swipe not usable (%s)", active.job.job_id, ev.reason)
                self._show(Screen(kind, total=active.job.total))
            return
        if not isinstance(ev, api.CardRead):
            return
        card = ev.card
        if active is None or not pending:
            _wipe(card)
            log.info("card swiped with no job waiting for one; ignored")
            return
        self._card_read(active, card)

    def _card_read(self, active: _Active, card: api.Card) -> None:
        job = active.job
        try:
            expired = card.is_expired(self._clock.now().date())
            accepted = jm.CardAccepted(brand=str(card.brand), last4=str(card.last4))
        except Exception:  # noqa: BLE001 - a strange card object is a bad swipe
            _wipe(card)
            log.warning("job %s: card object unusable; asking for another swipe", job.job_id)
            self._show(Screen(ScreenKind.SWIPE_AGAIN, total=job.total))
            return
        if expired:
            _wipe(card)
            log.info("job %s: expired card swiped", job.job_id)
            self._show(Screen(ScreenKind.CARD_EXPIRED, total=job.total))
            return
        try:
            st1 = jm.step(job, accepted, self._clock.now())
            # no fsync of its own: the `submitting` commit below fsyncs it too, and nothing
            # is published or sent in between (this method does not yield to the loop)
            self._commit(st1, fsync=False)
            failpoint("after_card_read")
        except DomainError:
            _wipe(card)
            log.error("job %s: could not record the card read; asking again", job.job_id)
            self._show(Screen(ScreenKind.SWIPE_AGAIN, total=job.total))
            return
        active.job = st1.job
        if active.deadline_task is not None:
            active.deadline_task.cancel()
        self._show(Screen(ScreenKind.PROCESSING, brand=accepted.brand, last4=accepted.last4))
        # the point of no return: "submitting" is on disk (fsynced) before the POST exists
        try:
            st2 = jm.step(st1.job, jm.SubmitStarted(), self._clock.now())
            self._commit(st2)
        except DomainError:
            _wipe(card)
            log.error("job %s: could not record the submission; not charging", job.job_id)
            self._feed(st1.job, jm.NotSent(Code.INTERNAL_ERROR,
                                           "could not record the submission; card not charged"))
            return
        failpoint("after_submit_journal")
        active.job = st2.job
        log.info("job %s: submitting (%s *%s)", job.job_id, accepted.brand, accepted.last4)
        self._wake()
        self._posts_in_flight += 1
        self._post_gen += 1
        task = self._spawn(self._submit(st2.job, active.plan, card),
                           f"lobbypay.engine.submit[{job.job_id}]")
        self._submits.add(task)
        task.add_done_callback(self._post_done)

    def _post_done(self, task: asyncio.Task[None]) -> None:
        # after _submit journaled the outcome (an approval's epayment id), or was cancelled
        self._submits.discard(task)
        self._posts_in_flight -= 1
        self._post_gen += 1

    async def _submit(self, job: Job, plan: Any, card: api.Card) -> None:
        form: dict[str, str] = {}
        posted = False
        inp: jm.Input
        try:
            form = dict(plan.form_fields())
            form["trackdata"] = card.trackdata()
            posted = True
            async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                result = await self._athena.collect_payment(job.patient_id, form)
            failpoint("after_response")
            self._athena_ok()
            if isinstance(result, PaidResult):
                inp = jm.Approved(str(result.epayment_id))
            elif isinstance(result, DeclinedResult):
                inp = jm.Declined(_safe(result.errortext, 200))
            else:
                inp = jm.OutcomeUnknown("unexpected result type from the athena client")
        except AthenaUnavailable as exc:
            self._athena_failed(Code.ATHENA_UNAVAILABLE, exc.message)
            inp = jm.NotSent(Code.ATHENA_UNAVAILABLE, f"athena unreachable: {_safe(exc.message)}")
        except AthenaRejected as exc:
            self._athena_failed(Code.ATHENA_REJECTED, exc.message)
            inp = jm.Rejected(Code.ATHENA_REJECTED, f"athena refused: {_safe(exc.message)}")
        except AthenaError as exc:  # OutcomeUnknown, AthenaBadResponse: may have landed
            self._athena_failed(Code.OUTCOME_UNKNOWN, exc.message)
            inp = jm.OutcomeUnknown(_safe(exc.message))
        except TimeoutError:
            self._athena_failed(Code.OUTCOME_UNKNOWN, "POST timed out")
            inp = jm.OutcomeUnknown("no answer from athena in time")
        except Exception as exc:  # noqa: BLE001 - any other failure: sent or not?
            log.error("job %s: payment call failed with %s", job.job_id, type(exc).__name__)
            if posted:
                inp = jm.OutcomeUnknown(f"payment call failed ({type(exc).__name__})")
            else:
                inp = jm.NotSent(Code.INTERNAL_ERROR, "could not build the payment request")
        finally:
            _wipe(card)
            form.clear()
            del card
        self._feed(job, inp)

    # ------------------------------------------------------------ timers

    async def _deadline(self, job_id: str, end: float) -> None:
        await self._sleep_until(end)
        active = self._active
        if active is None or active.job.job_id != job_id:
            return
        if jm.accepts(active.job.state, jm.DeadlineHit):
            log.info("job %s: no card within %s s", job_id, active.job.deadline_s)
            self._feed(active.job, jm.DeadlineHit())

    async def _idle_later(self, gen: int, end: float) -> None:
        await self._sleep_until(end)
        if self._screen_gen == gen and self._active is None:
            self._show(Screen(ScreenKind.IDLE))

    async def _sleep_for(self, seconds: float) -> None:
        await self._sleep_until(self._clock.monotonic() + seconds)

    async def _sleep_until(self, end: float) -> None:
        while (left := end - self._clock.monotonic()) > 0:
            await self._sleep(left)

    # ------------------------------------------------------------ reconciliation

    def _spawn_reconcile(self, job: Job) -> None:
        if job.job_id in self._reconciling:
            return
        task = self._spawn(self._reconcile(job), f"lobbypay.engine.reconcile[{job.job_id}]")
        self._reconciling[job.job_id] = task
        job_id = job.job_id

        def forget(_task: asyncio.Task[None]) -> None:
            self._reconciling.pop(job_id, None)

        task.add_done_callback(forget)

    async def _reconcile(self, job: Job) -> None:
        assert job.submitted_at is not None and job.card_last4 is not None
        # Time since the submission = wall time up to now (the only clock that survives a
        # restart; clipped to [0, settle]) + monotonic time from here on, so a wall clock
        # stepping forward later cannot settle the job early, nor one stepping back hold
        # it in unknown for the size of the step (tests/proof/test_clock.py).
        mono0 = self._clock.monotonic()
        elapsed0 = min(max(0.0, (self._clock.now() - job.submitted_at).total_seconds()),
                       self._settle_s)
        rt = self._rt
        backoff = rt.retry_min_s
        first_wait = rt.first_read_s - (self._clock.now() - job.updated_at).total_seconds()
        if first_wait > 0:
            await self._sleep_for(first_wait)
        while True:
            read_elapsed = elapsed0 + (self._clock.monotonic() - mono0)
            post_gen = self._post_gen
            post_busy = self._posts_in_flight > 0
            try:
                async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                    receipts = await self._athena.list_receipts(job.patient_id, job.department_id)
            except (AthenaError, TimeoutError) as exc:
                msg = exc.message if isinstance(exc, AthenaError) else "timed out"
                self._athena_failed(Code.ATHENA_UNAVAILABLE, msg)
                log.warning("job %s: receipts read failed (%s); retrying in %.0f s",
                            job.job_id, _safe(msg), backoff)
                await self._sleep_for(backoff)
                backoff = min(backoff * 2, rt.retry_max_s)
                continue
            self._athena_ok()
            backoff = rt.retry_min_s
            found = match_receipt(receipts, job.total, job.card_last4, job.submitted_at,
                                  self._journal.known_epayment_ids())
            if found is not None and (post_busy or self._posts_in_flight > 0
                                      or self._post_gen != post_gen):
                # Another job's POST was in flight during this read: the receipt may be
                # its payment, listed before its answer reached us and its epayment id
                # reached the journal. Decide nothing; read again once it is settled.
                log.info("job %s: receipt %s seen while a POST was in flight; reading again",
                         job.job_id, found.epayment_id)
                await self._sleep_for(rt.retry_min_s)
                continue
            if found is not None:
                log.info("job %s: reconciled, payment %s found", job.job_id, found.epayment_id)
                self._feed(job, jm.ReconcileFound(str(found.epayment_id)))
                return
            settled = read_elapsed >= self._settle_s
            st = jm.step(job, jm.ReconcileMissed(settled=settled), self._clock.now())
            self._commit(st)
            job = st.job
            if job.reconcile_reads >= RECONCILE_SETTLED_READS:
                log.info("job %s: no payment after %d settled reads: not charged",
                         job.job_id, job.reconcile_reads)
                self._feed(job, jm.ReconcileGaveUp())
                return
            if settled:
                wait = rt.confirm_gap_s
            else:
                until_settle = self._settle_s - (elapsed0 + self._clock.monotonic() - mono0)
                wait = max(0.0, min(rt.poll_s, until_settle))
            await self._sleep_for(wait)

    # ------------------------------------------------------------ plumbing

    def _feed(self, job: Job, inp: jm.Input) -> Step | None:
        """Step a job, journal it, then act on its new state. Returns None if the
        journal refused (the job stays as it was in memory and on disk)."""
        st = jm.step(job, inp, self._clock.now())
        try:
            self._commit(st)
        except DomainError:
            log.error("job %s: journal write failed; %s not recorded", job.job_id,
                      type(inp).__name__)
            return None
        if st.job.final:
            failpoint("before_publish")
        if job.state is not st.job.state:
            log.info("job %s: %s -> %s", job.job_id, job.state, st.job.state)
        self._after(st.job)
        return st

    def _after(self, job: Job) -> None:
        active = self._active
        if active is not None and active.job.job_id == job.job_id:
            active.job = job
        if job.state is JobState.UNKNOWN:
            self._finish(job)
            self._spawn_reconcile(job)
        elif job.final:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        """The job no longer holds the terminal: result screen, then idle."""
        active = self._active
        was_active = active is not None and active.job.job_id == job.job_id
        if was_active:
            assert active is not None
            timer = active.deadline_task
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
            self._active = None
            screen = _result_screen(job)
            if screen is not None:
                self._show(screen)
                self._spawn(self._idle_later(self._screen_gen,
                                             self._clock.monotonic() + RESULT_SCREEN_S),
                            "lobbypay.engine.idle_screen")
        self._wake()

    def _commit(self, st: Step, *, fsync: bool = True) -> None:
        try:
            self._journal.commit_step(st, topic=self._topic, fsync=fsync)
        except JournalError as exc:
            raise DomainError(Code.INTERNAL_ERROR, f"journal: {exc}") from None

    def _show(self, screen: Screen) -> None:
        if screen.language is None:
            # the active job's language while one holds the terminal, else the terminal's
            active = self._active
            screen = replace(screen, language=active.job.language if active else self._language)
        try:
            cols, rows = max(16, self._display.cols), max(2, self._display.rows)
            lines = render(screen, cols=cols, rows=rows)
            shown = self._display.show(api.ScreenView(lines))
            self._screen = tuple(shown) if shown is not None else lines
        except Exception:  # noqa: BLE001 - a display fault never stops a job
            log.exception("display refused a screen")
        self._screen_gen += 1
        self._changed()

    def _wake(self) -> None:
        try:
            self._outbox_wakeup()
        except Exception:  # noqa: BLE001
            log.exception("outbox wakeup failed")
        self._changed()

    def _changed(self) -> None:
        try:
            self._on_state_change()
        except Exception:  # noqa: BLE001
            log.exception("state change callback failed")

    def _spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task %s failed: %s", task.get_name(), type(exc).__name__)

    async def _read(self, coro: Awaitable[T], what: str) -> T:
        """An athena read within athena.timeout_s, errors mapped to wire codes."""
        try:
            async with asyncio.timeout(self._athena_timeout_s):
                result = await coro
        except TimeoutError:
            self._athena_failed(Code.ATHENA_UNAVAILABLE, f"{what} read timed out")
            raise DomainError(Code.ATHENA_UNAVAILABLE, f"athena did not answer the {what} read "
                              f"within {self._athena_timeout_s:g} s") from None
        except NotFound:
            self._athena_ok()
            code = Code.APPOINTMENT_NOT_FOUND if what == "appointment" else Code.PATIENT_NOT_FOUND
            raise DomainError(code, f"athena has no such {what}") from None
        except AthenaUnavailable as exc:
            self._athena_failed(Code.ATHENA_UNAVAILABLE, exc.message)
            raise DomainError(Code.ATHENA_UNAVAILABLE,
                              f"athena unavailable: {_safe(exc.message)}") from None
        except AthenaBadResponse as exc:
            self._athena_failed(Code.ATHENA_BAD_RESPONSE, exc.message)
            raise DomainError(Code.ATHENA_BAD_RESPONSE,
                              f"athena's {what} answer was unreadable") from None
        except AthenaError as exc:
            self._athena_failed(Code.ATHENA_UNAVAILABLE, exc.message)
            raise DomainError(Code.ATHENA_UNAVAILABLE,
                              f"athena refused the {what} read: {_safe(exc.message)}") from None
        self._athena_ok()
        return result

    def _evaluate(self, payload: Any, patient_id: str, dept: str) -> Any:
        try:
            view = evaluate_balances(payload, patient_id, dept)
        except PatientNotFoundInPayload:
            raise DomainError(Code.PATIENT_NOT_FOUND, "athena has no such patient") from None
        except BalancePayloadError as exc:
            raise DomainError(Code.ATHENA_BAD_RESPONSE,
                              f"athena's balance answer was unreadable: {_safe(exc)}") from None
        info = self.department
        if (info is not None and info.found and dept == info.department_id
                and view.group_found and view.provider_group_id != info.provider_group_id):
            # athena's two answers disagree on the department's provider group: collect by
            # claimbalancedetails (athena's rule) but leave a trail for the front desk / IT.
            log.warning("department %s: /departments says provider group %s, the balance "
                        "groups say %s", dept, info.provider_group_id, view.provider_group_id)
        return view

    def _athena_ok(self) -> None:
        self._athena_last_ok_at = _iso(self._clock.now())
        self._changed()

    def _athena_failed(self, code: Code, message: str) -> None:
        self._athena_last_error = {"code": code.value, "message": _safe(message),
                                   "at": _iso(self._clock.now())}
        self._changed()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _wipe(card: api.Card) -> None:
    try:
        card.wipe()
    except Exception:  # noqa: BLE001 - wiping twice or a driver's own fault
        log.warning("card wipe raised; ignoring")


def _result_screen(job: Job) -> Screen | None:
    """The screen a job's end shows, in the job's language. (A void shows nothing: the
    patient has usually left and another job may hold the display; docs/jobs.md.)"""
    lang = job.language
    match job.state:
        case JobState.SUCCEEDED:
            return Screen(ScreenKind.APPROVED, total=job.total, brand=job.card_brand,
                          last4=job.card_last4, language=lang)
        case JobState.DECLINED:
            return Screen(ScreenKind.DECLINED, brand=job.card_brand, last4=job.card_last4,
                          language=lang)
        case JobState.FAILED:
            return Screen(ScreenKind.FAILED, language=lang)
        case JobState.CANCELED:
            return Screen(ScreenKind.CANCELED, language=lang)
        case JobState.EXPIRED:
            return Screen(ScreenKind.EXPIRED, language=lang)
        case JobState.UNKNOWN:
            return Screen(ScreenKind.UNKNOWN, language=lang)
    return None
