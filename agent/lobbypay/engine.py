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

The engine carries out decisions; the pure core makes them. It asks
``core.job.step`` what an input does to a job, ``core.outcome`` what an athena call's
result or error means (the job input, the reply, ``state.athena``), ``core.reconcile``
what a receipts read says about an ``unknown`` job and when to read again, and
``core.screen`` what the display shows (a job's result, a failed swipe).

Timers (deadlines, reconciliation waits, the result screen) sleep through the injected
``sleep`` (``asyncio.sleep`` by default; tests pass a manual clock's) and measure time
with the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from lobbypay_hw import api

from lobbypay import ports
from lobbypay.core import job as jm
from lobbypay.core import outcome as oc
from lobbypay.core import reconcile as rc
from lobbypay.core.admit import admit, ensure_free
from lobbypay.core.athena import AthenaError, PaymentResult
from lobbypay.core.balance import (
    AppointmentNotFoundInPayload,
    BalancePayloadError,
    BalanceView,
    DepartmentInfo,
    PatientNotFoundInPayload,
    copay_already_collected,
    evaluate_balances,
    parse_copay,
)
from lobbypay.core.clock import ServerClock, Span, wall_span
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
from lobbypay.core.plan import ChargePlan, plan_charge, validate_charge
from lobbypay.core.protocol import (
    AthenaFault,
    ClockHealth,
    TerminalState,
    clock_health,
    format_seconds,
    state_object,
)
from lobbypay.core.screen import (
    Screen,
    ScreenKind,
    render,
    result_screen,
    swipe_failed_screen,
)
from lobbypay.core.screen_text import DEFAULT_LANGUAGE
from lobbypay.core.text import QUOTE_MAX, printable
from lobbypay.failpoints import failpoint
from lobbypay.ports import JsonObject
from lobbypay.shell.athena import payment_bound_s
from lobbypay.shell.journal import JournalError

log = logging.getLogger("lobbypay.engine")

T = TypeVar("T")

#: Backstop on the POST on top of the client's own bound (``payment_bound_s``; the client
#: enforces it itself, this only catches a client that hangs past it). Expiry here means
#: "outcome unknown".
POST_BACKSTOP_S = 5.0
#: How long a result (approved, declined, ...) stays on the display before "Welcome".
RESULT_SCREEN_S = 10.0
#: Journal writes that failed (disk full, database locked) are retried with this backoff.
JOURNAL_RETRY_MIN_S = 0.05
JOURNAL_RETRY_MAX_S = 5.0
#: With no Date header from athena to go by, a wall clock that the system reports as
#: NTP-synchronised is taken at its word within this much (an unsynchronised one never).
SYNCED_CLOCK_UNCERTAINTY_S = 2.0
#: Card expiry is judged on the card's month in US time: a card is good through the last
#: day of its month, refused only once that day is over everywhere in the US (the issuer
#: has the last word anyway; refusing a good card would leave the patient unable to pay).
CARD_EXPIRY_TZ = ZoneInfo("Pacific/Honolulu")

# The reconcile waits live in the core (lobbypay.core.reconcile); names kept here for
# the tests and tools that read them from the engine.
RECONCILE_FIRST_READ_S = rc.FIRST_READ_S
RECONCILE_POLL_S = rc.POLL_S
RECONCILE_CONFIRM_GAP_S = rc.CONFIRM_GAP_S
RECONCILE_RETRY_MIN_S = rc.RETRY_MIN_S
RECONCILE_RETRY_MAX_S = rc.RETRY_MAX_S
RECONCILE_SETTLED_READS = rc.SETTLED_READS
RECONCILE_REFERENCE_SETTLE_S = rc.REFERENCE_SETTLE_S
RECONCILE_MIN_WAIT_S = rc.MIN_WAIT_S
ReconcileTiming = rc.ReconcileTiming
reconcile_timing = rc.reconcile_timing

Sleep = Callable[[float], Awaitable[None]]



class _Active:
    """The job holding the terminal, with the charge plan (memory only)."""

    def __init__(self, job: Job, plan: ChargePlan) -> None:
        self.job = job
        self.plan = plan
        self.deadline_task: asyncio.Task[None] | None = None


class _Tasks:
    """The engine's background tasks (timers, POSTs, reconciliations, journal healing):
    each named, its failure logged, all cancelled together when the engine closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, coro: Coroutine[object, None, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task %s failed: %s", task.get_name(), type(exc).__name__)

    async def cancel_all(self) -> None:
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
        journal: ports.Journal,
        display: api.Display,
        clock: ports.Clock,
        outbox_wakeup: Callable[[], None],
        on_state_change: Callable[[], None],
        events_topic: str,
        reader: api.CardReader | None = None,
        sleep: Sleep | None = None,
        server_clock: ServerClock | None = None,
        clock_synced: Callable[[], bool | None] | None = None,
        language: str = DEFAULT_LANGUAGE,
        outbox_wakeup_now: Callable[[], None] | None = None,
    ) -> None:
        self.terminal_id = terminal_id
        self._department_id = department_id
        self._max_charge = max_charge
        self._settle_s = float(reconcile_settle_s)
        self._rt = reconcile_timing(self._settle_s)
        self._athena_timeout_s = float(athena_timeout_s)
        self._post_bound_s = payment_bound_s(self._athena_timeout_s) + POST_BACKSTOP_S
        self._athena = athena
        #: athena's clock (from the client's Date headers); the client's own when not given.
        self._server_clock = (server_clock if server_clock is not None
                              else getattr(athena, "server_clock", None))
        self._clock_synced: Callable[[], bool | None] = clock_synced or (lambda: None)
        self._journal = journal
        self._display = display
        self._clock = clock
        self._outbox_wakeup = outbox_wakeup
        #: wakes the drain in this loop turn, not the next (a payment's outcome: nothing
        #: the step started should go before its event); ``outbox_wakeup`` when not given
        self._outbox_wakeup_now = outbox_wakeup_now or outbox_wakeup
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
        #: ``unknown`` jobs being reconciled, as last stepped (their attempts are each
        #: other's rivals for a receipt: core.reconcile).
        self._unknown: dict[str, Job] = {}
        #: Steps the journal refused (disk full, locked), per job in order, retried by
        #: ``_heal``; the engine acts on them at once, they are published once written.
        self._unwritten: dict[str, list[Step]] = {}
        self._healer: asyncio.Task[None] | None = None
        #: POSTs whose outcome is not journaled yet, and a counter bumped when one starts
        #: or ends: a receipts read that overlapped one may list a payment no job owns yet.
        self._posts_in_flight = 0
        self._submits: set[asyncio.Task[None]] = set()
        self._post_gen = 0
        self._tasks = _Tasks()
        self._start_lock = asyncio.Lock()
        self._screen: tuple[str, ...] = ()
        self._screen_gen = 0
        self._reader_connected: bool | None = None
        #: A reader set-up problem seen in a swipe (``encrypted_reader``), for state.reader.
        self._reader_error: str | None = None
        #: The terminal department's entry from GET /departments, once read (app.py's probe).
        self.department: DepartmentInfo | None = None
        self._athena_last_ok_at: str | None = None
        self._clock_health: ClockHealth = clock_health(None, None)
        self._athena_last_error: AthenaFault | None = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Recover from the journal, then show the idle screen."""
        self._refresh_clock_health()
        now = self._clock.now()
        open_jobs = self._journal.load_jobs(only_open=True)
        for job_id, reason in self._journal.quarantined:
            log.error("journal: job %s's row is unreadable (%s); moved to the quarantine "
                      "table, its id stays taken (docs/OPERATIONS.md)", job_id, reason)
        for job in open_jobs:
            if job.state in jm.ACTIVE_STATES:
                # pending/card_read: the card data died with the process -> expired;
                # submitting: the POST may have landed -> unknown -> reconcile.
                st = jm.step(job, jm.Restarted(), now)
                self._record(st)
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
        for job_id, queue in list(self._unwritten.items()):
            # a last try: what the disk still refuses is reconciled from the journal's
            # older steps at the next start (submitting -> unknown; pending -> expired)
            while queue:
                try:
                    self._journal.commit_step(queue[0], topic=self._topic)
                except Exception:  # noqa: BLE001 - closing anyway
                    log.error("job %s: %d step(s) could not be journaled before the stop",
                              job_id, len(queue))
                    break
                queue.pop(0)
        await self._tasks.cancel_all()

    # ------------------------------------------------------------ commands

    async def balance_get(self, cmd: BalanceGet) -> JsonObject:
        dept = cmd.department_id or self._department_id
        payload = await self._read(self._athena.get_patient(cmd.patient_id, dept), "patient")
        view = self._evaluate(payload, cmd.patient_id, dept)
        reply: JsonObject = dict(view.to_wire())
        if cmd.appointment_id is not None:
            appt = await self._read(
                self._athena.get_appointment(cmd.appointment_id), "appointment")
            try:
                expected = parse_copay(appt)
            except AppointmentNotFoundInPayload:
                raise DomainError(Code.APPOINTMENT_NOT_FOUND,
                                  "athena has no such appointment") from None
            except BalancePayloadError as exc:
                raise DomainError(Code.ATHENA_BAD_RESPONSE, printable(exc, QUOTE_MAX)) from None
            reply["copay"] = {"expected": format_cents(expected) if expected is not None
                              else None}
        else:
            reply["copay"] = None
        return reply

    async def charge_start(self, cmd: ChargeStart) -> JsonObject:
        async with self._start_lock:
            return await self._charge_start(cmd)

    async def _charge_start(self, cmd: ChargeStart) -> JsonObject:
        # 1-3. idempotency, expires_at, one job at a time (core/admit.py)
        now = self._clock.now()
        repeat = admit(cmd, existing=self._get_job(cmd.job_id),
                       active_job_id=self._active_job_id(), now=now)
        if repeat is not None:
            return {"job_id": repeat.job_id, "state": repeat.state.value}
        # 4. amounts
        validate_charge(cmd, self._max_charge)
        # 5. balances, fresh from athena
        dept = cmd.department_id or self._department_id
        payload = await self._read(self._athena.get_patient(cmd.patient_id, dept), "patient")
        view = self._evaluate(payload, cmd.patient_id, dept)
        plan = plan_charge(view, cmd, dept)
        # 6. the appointment, for a copay: it must exist and its copay not be paid already
        if cmd.copay > 0 and cmd.appointment_id is not None:
            await self._check_copay(cmd.appointment_id, cmd.allow_duplicate)
        # the terminal may have been taken while athena answered (the lock keeps other
        # starts out; this is the belt to its braces)
        ensure_free(self._active_job_id())
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
        self._warm_payment(float(cmd.deadline_s))
        self._wake()
        return {"job_id": cmd.job_id, "state": JobState.PENDING.value}

    def _active_job_id(self) -> str | None:
        return self._active.job.job_id if self._active is not None else None

    def _warm_payment(self, hold_s: float) -> None:
        """A job went pending: let the athena client open the payment POST's connection
        now, so no TCP/TLS handshake lies between the swipe and the POST."""
        warm = getattr(self._athena, "warm_payment", None)
        if warm is None:
            return
        try:
            warm(hold_s)
        except Exception:  # noqa: BLE001 - a warm-up is an optimisation, never a failure
            log.warning("could not warm the payment connection", exc_info=True)

    async def _check_copay(self, appointment_id: str, allow_duplicate: bool) -> None:
        appt = await self._read(self._athena.get_appointment(appointment_id), "appointment")
        try:
            collected = copay_already_collected(appt)
        except AppointmentNotFoundInPayload:
            raise DomainError(Code.APPOINTMENT_NOT_FOUND,
                              "athena has no such appointment") from None
        except BalancePayloadError as exc:
            why = printable(exc, QUOTE_MAX)
            raise DomainError(Code.ATHENA_BAD_RESPONSE,
                              f"athena's appointment answer was unreadable: {why}") from None
        if collected and not allow_duplicate:
            raise DomainError(Code.COPAY_ALREADY_COLLECTED,
                              f"athena says the copay of appointment {appointment_id} is "
                              "already collected (allow_duplicate: true charges it again)")

    def charge_cancel(self, cmd: ChargeCancel) -> JsonObject:
        active = self._active
        job: Job | None
        if active is not None and active.job.job_id == cmd.job_id:
            job = active.job
        else:
            job = self._get_job(cmd.job_id)
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

    def charge_get(self, cmd: ChargeGet) -> JsonObject:
        ev = self._unwritten_event(cmd.job_id) or self._journal.latest_event(cmd.job_id)
        if ev is None:
            if self._journal.is_quarantined(cmd.job_id):
                raise DomainError(Code.INTERNAL_ERROR, f"job {cmd.job_id}'s journal row is "
                                  "unreadable (quarantined); see the agent's log")
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        return {"job": ev}

    def charge_list(self, cmd: ChargeList) -> JsonObject:
        jobs = self._journal.list_latest(max(1, min(100, cmd.limit)))
        if self._unwritten:
            jobs = [self._unwritten_event(str(ev.get("job_id"))) or ev for ev in jobs]
        return {"jobs": jobs}

    def _unwritten_event(self, job_id: str) -> JsonObject | None:
        """The latest event of a job whose newest steps the journal has not taken yet."""
        for st in reversed(self._unwritten.get(job_id, ())):
            if st.events:
                return dict(st.events[-1])
        return None

    # ------------------------------------------------------------ staff and receipts

    async def charge_void(self, cmd: ChargeVoid) -> JsonObject:
        """Void a succeeded job's payment at athena (protocol 10; docs/jobs.md, "Voids").

        The ``voided`` step is journaled (fsynced) before the reply is built, so a void
        that was reported survives any restart. A void that did not get athena's answer
        leaves the job ``succeeded``: sending ``charge.void`` again asks athena again,
        which voids a payment at most once."""
        async with self._void_lock:
            return await self._charge_void(cmd)

    async def _charge_void(self, cmd: ChargeVoid) -> JsonObject:
        pending_write = self._unwritten.get(cmd.job_id)
        if pending_write:
            # the journal has not taken this job's latest steps (disk full, locked): its
            # true state is in memory; never void from a stale read, never void twice
            latest = pending_write[-1].job
            if latest.state is JobState.VOIDED:
                raise DomainError(Code.INTERNAL_ERROR, f"job {cmd.job_id} is voided at athena; "
                                  "the journal has not recorded it yet (retrying)")
            raise DomainError(Code.INTERNAL_ERROR, f"job {cmd.job_id} is not recorded yet "
                              "(the journal is refusing writes); try again shortly")
        job = self._get_job(cmd.job_id)
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
        except (AthenaError, TimeoutError) as exc:
            failure = oc.void_error(exc)
            self._note(failure.athena)
            if isinstance(failure.athena, oc.Failed):
                log.warning("job %s: void not confirmed (%s); the job stays succeeded",
                            job.job_id, printable(failure.athena.message, QUOTE_MAX))
            else:
                log.info("job %s: athena refused the void: %s", job.job_id,
                         printable(failure.error.message, QUOTE_MAX))
            raise failure.error from None
        self._athena_ok()
        st = jm.step(job, jm.Voided(), self._clock.now())
        try:
            self._commit(st)
        except DomainError:
            # voided at athena, not on disk: keep the step (written and published once the
            # disk takes it) and do not report it before then (protocol 10)
            self._record(st)
            raise DomainError(Code.INTERNAL_ERROR, f"job {job.job_id} is voided at athena; "
                              "the journal has not recorded it yet (retrying)") from None
        failpoint("after_void_journal")
        log.info("job %s: voided", job.job_id)
        self._wake()
        return {"job_id": job.job_id, "state": st.job.state.value}

    async def receipt_email(self, cmd: ReceiptEmail) -> JsonObject:
        """Have athena email the receipt of a succeeded job (protocol 10). The address
        goes to athena and nowhere else: not to the journal, and to logs only masked."""
        job = self._get_job(cmd.job_id)
        if job is None:
            raise DomainError(Code.UNKNOWN_JOB, f"no job {cmd.job_id}")
        if job.state is not JobState.SUCCEEDED or job.epayment_id is None:
            raise DomainError(Code.NO_RECEIPT, f"job {job.job_id} is {job.state.value}; only a "
                              "succeeded job has a receipt to email")
        masked = mask_email(cmd.email)
        try:
            async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                await self._athena.email_receipt(job.patient_id, job.epayment_id, cmd.email)
        except (AthenaError, TimeoutError) as exc:
            failure = oc.email_error(exc)
            self._note(failure.athena)
            if isinstance(failure.athena, oc.Failed):
                log.warning("job %s: receipt email to %s not confirmed (%s)", job.job_id,
                            masked, printable(failure.athena.message, QUOTE_MAX))
            else:
                log.info("job %s: athena refused to email the receipt to %s", job.job_id,
                         masked)
            raise failure.error from None
        self._athena_ok()
        log.info("job %s: receipt emailed to %s", job.job_id, masked)
        return {"job_id": job.job_id}

    def state(self) -> TerminalState:
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
        return state_object(
            job_id=active.job.job_id if active else None,
            job_state=active.job.state if active else None,
            screen=self._screen, reader_driver=reader_driver,
            reader_connected=reader_connected, reader_error=self._reader_error,
            display_driver=self._display.driver,
            display_connected=bool(self._display.connected),
            athena_last_ok_at=self._athena_last_ok_at,
            athena_last_error=self._athena_last_error,
            outbox=outbox, clock=self.clock_health())

    def clock_health(self) -> ClockHealth:
        """Additive ``state.clock``: is the system clock synchronised, and how far is it
        from athena's (``athena_offset_s`` = athena minus terminal in whole seconds,
        +- ``uncertainty_s``, rounded up; null until athena has answered with a Date
        header). Taken when athena answers, not at each read, so ``ping`` and the
        retained ``state`` show the same object."""
        return self._clock_health.copy()

    def _refresh_clock_health(self) -> None:
        synced = self._synced()
        off = (self._server_clock.offset(self._clock.now(), self._clock.monotonic())
               if self._server_clock is not None else None)
        self._clock_health = clock_health(synced, off)

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
            if ev.connected:
                self._reader_error = None  # a replugged (perhaps another) reader
            self._changed()
            return
        active = self._active
        pending = active is not None and active.job.state is JobState.PENDING
        if isinstance(ev, api.ReadFailed):
            if ev.reason is api.ReadFailure.ENCRYPTED_READER:
                self._encrypted_reader()
            if active is not None and pending:
                log.info("job %s: swipe not usable (%s)", active.job.job_id, ev.reason)
                self._show(swipe_failed_screen(ev.reason, active.job.total))
            return
        if not isinstance(ev, api.CardRead):
            return
        card = ev.card
        if self._reader_error is not None:
            self._reader_error = None  # a clear swipe: the reader is set up right now
            self._changed()
        if active is None or not pending:
            _wipe(card)
            log.info("card swiped with no job waiting for one; ignored")
            return
        self._card_read(active, card)

    def _encrypted_reader(self) -> None:
        log.warning("reader sends masked or encrypted card data, which athena cannot take: "
                    "set the reader to clear-text (unencrypted) output, or use a "
                    "non-encrypting reader (docs/drivers.md, encrypting readers)")
        if self._reader_error != api.ReadFailure.ENCRYPTED_READER.value:
            self._reader_error = api.ReadFailure.ENCRYPTED_READER.value
            self._changed()

    def _card_read(self, active: _Active, card: api.Card) -> None:
        job = active.job
        try:
            expired = card.is_expired(self._clock.now().astimezone(CARD_EXPIRY_TZ).date())
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
        # card_read's own state (protocol 8: every job state is published); the display
        # still shows the amount, and "processing" follows once the POST is on its way
        self._changed()
        # the point of no return: "submitting" is on disk (fsynced) before the POST exists
        try:
            athena_now = self._athena_now()
            st2 = jm.step(st1.job, jm.SubmitStarted(athena_now.lo if athena_now else None),
                          self._clock.now())
            self._commit(st2)
        except DomainError:
            _wipe(card)
            log.error("job %s: could not record the submission; not charging", job.job_id)
            self._feed(st1.job, jm.NotSent(Code.INTERNAL_ERROR,
                                           "could not record the submission; card not charged"))
            return
        failpoint("after_submit_journal")
        active.job = st2.job
        self._posts_in_flight += 1
        self._post_gen += 1
        task = self._spawn(self._submit(st2.job, active.plan, card),
                           f"lobbypay.engine.submit[{job.job_id}]")
        self._submits.add(task)
        task.add_done_callback(self._post_done)
        # what the POST does not wait for (the "processing" screen, the log line, the
        # outbox and state wake-up) runs after the task's first step, which writes the
        # POST to its socket: the patient waits for athena, not for our bookkeeping
        # (docs/PERFORMANCE.md)
        asyncio.get_running_loop().call_soon(self._submitted, job.job_id, accepted)

    def _submitted(self, job_id: str, accepted: jm.CardAccepted) -> None:
        active = self._active
        if (active is not None and active.job.job_id == job_id
                and active.job.state is JobState.SUBMITTING):  # not over already
            self._show(Screen(ScreenKind.PROCESSING, brand=accepted.brand,
                              last4=accepted.last4))
        log.info("job %s: submitting (%s *%s)", job_id, accepted.brand, accepted.last4)
        self._wake()

    def _post_done(self, task: asyncio.Task[None]) -> None:
        # after _submit journaled the outcome (an approval's epayment id), or was cancelled
        self._submits.discard(task)
        self._posts_in_flight -= 1
        self._post_gen += 1

    async def _submit(self, job: Job, plan: ChargePlan, card: api.Card) -> None:
        """Send the POST once; whatever comes back, the core says what it means for the
        job (``core.outcome.payment_input``)."""
        form: dict[str, str | bytearray] = {}
        track = bytearray()
        posted = False
        verdict: oc.PaymentVerdict
        try:
            form = dict(plan.form_fields())
            # the track travels as a bytearray the client overwrites after the POST (a
            # str could not be wiped); the card's own copy is wiped below
            track = card.track_bytes()
            form["trackdata"] = track
            posted = True
            async with asyncio.timeout(self._post_bound_s):
                result: PaymentResult = await self._athena.collect_payment(job.patient_id,
                                                                           form)
            failpoint("after_response")
            verdict = oc.payment_input(result, posted=True, attempt_end=None)
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome: sent or not?
            if not isinstance(exc, AthenaError | TimeoutError):
                log.error("job %s: payment call failed with %s", job.job_id,
                          type(exc).__name__)
            verdict = oc.payment_input(exc, posted=posted, attempt_end=self._attempt_end())
        finally:
            _wipe(card)
            track[:] = bytes(len(track))
            form.clear()
            del card, track
        self._feed(job, verdict.input, event_first=True)
        # what the call said about athena (state.athena, the clock's health) after the
        # outcome's commit and event: the state it changes goes out later anyway
        asyncio.get_running_loop().call_soon(self._note, verdict.athena)

    def _athena_now(self) -> Span | None:
        """Now on athena's clock: from its Date headers; else, only when the system says
        NTP synchronised it, the wall clock within ``SYNCED_CLOCK_UNCERTAINTY_S``; else
        None (the wall clock of a Pi without a battery clock can be anything)."""
        sc = self._server_clock
        if sc is not None:
            span = sc.now(self._clock.monotonic())
            if span is not None:
                return span
        if self._synced() is True:
            return wall_span(self._clock.now(), SYNCED_CLOCK_UNCERTAINTY_S)
        return None

    def _synced(self) -> bool | None:
        """The system's word on NTP sync; a failing probe never stops a job or health."""
        try:
            return self._clock_synced()
        except Exception:  # noqa: BLE001 - None: cannot tell
            return None

    def _attempt_end(self) -> datetime | None:
        span = self._athena_now()
        return span.hi if span is not None else None

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
        self._unknown[job.job_id] = job
        if job.job_id in self._reconciling:
            return
        task = self._spawn(self._reconcile(job), f"lobbypay.engine.reconcile[{job.job_id}]")
        self._reconciling[job.job_id] = task
        job_id = job.job_id

        def forget(_task: asyncio.Task[None]) -> None:
            self._reconciling.pop(job_id, None)
            self._unknown.pop(job_id, None)

        task.add_done_callback(forget)

    async def _reconcile(self, job: Job) -> None:
        """Read receipts until the core decides (core.reconcile). Survives any error: a
        failed read or a bug in one round backs off and tries again."""
        assert job.submitted_at is not None and job.card_last4 is not None
        # Fallback time since the submission, for when athena's clock is not known: wall
        # time up to now (the only clock that survives a restart; clipped to [0, settle])
        # + monotonic time from here on, so a wall clock stepping later cannot settle the
        # job early (tests/proof/test_clock.py).
        mono0 = self._clock.monotonic()
        elapsed0 = min(max(0.0, (self._clock.now() - job.submitted_at).total_seconds()),
                       self._settle_s)
        rt = self._rt
        backoff = rt.retry_min_s
        doubts = 0
        last_doubt = ""
        first_wait = rt.first_read_s - (self._clock.now() - job.updated_at).total_seconds()
        if first_wait > 0:
            await self._sleep_for(first_wait)
        while True:
            job = self._unknown.get(job.job_id, job)
            if job.state is not JobState.UNKNOWN:
                return
            try:
                wall_elapsed = elapsed0 + (self._clock.monotonic() - mono0)
                read_start = self._athena_now()
                post_gen = self._post_gen
                post_busy = self._posts_in_flight > 0
                try:
                    async with asyncio.timeout(self._athena_timeout_s + POST_BACKSTOP_S):
                        receipts = await self._athena.list_receipts(job.patient_id,
                                                                    job.department_id)
                except (AthenaError, TimeoutError) as exc:
                    failed = oc.receipts_error(exc)
                    self._note(failed)
                    log.warning("job %s: receipts read failed (%s); retrying in %.0f s",
                                job.job_id, printable(failed.message, QUOTE_MAX), backoff)
                    await self._sleep_for(backoff)
                    backoff = min(backoff * 2, rt.retry_max_s)
                    continue
                self._athena_ok()
                backoff = rt.retry_min_s
                job = self._close_attempt(job)
                if read_start is None:  # athena's clock became known with this read
                    read_start = self._athena_now()
                settled = rc.is_settled(read_start, job.attempt_to, self._settle_s,
                                        wall_elapsed)
                decision = rc.decide(self._attempt_of(job), receipts,
                                     others=self._rivals(job), taken=self._taken_ids(),
                                     settled=settled)
                if isinstance(decision, rc.Found):
                    eid = decision.receipt.epayment_id
                    if post_busy or self._posts_in_flight > 0 or self._post_gen != post_gen:
                        # Another job's POST was in flight during this read: the receipt
                        # may be its payment, listed before its answer (and epayment id)
                        # reached us. Decide nothing; read again once it is settled.
                        log.info("job %s: receipt %s seen while a POST was in flight; "
                                 "reading again", job.job_id, eid)
                        await self._sleep_for(rt.retry_min_s)
                        continue
                    log.info("job %s: reconciled, payment %s found", job.job_id, eid)
                    self._feed(job, jm.ReconcileFound(str(eid)))
                    return
                if isinstance(decision, rc.Doubt):
                    doubts += 1
                    if decision.reason != last_doubt:
                        log.warning("job %s: still unknown, not deciding: %s", job.job_id,
                                    printable(decision.reason, QUOTE_MAX))
                        last_doubt = decision.reason
                    await self._sleep_for(rc.next_wait(decision, rt, until_settle_s=0.0,
                                                       doubts=doubts))
                    continue
                doubts, last_doubt = 0, ""
                st = jm.step(job, jm.ReconcileMissed(settled=decision.settled),
                             self._clock.now())
                self._record(st)
                job = self._keep_unknown(st.job)
                if job.reconcile_reads >= rc.SETTLED_READS:
                    log.info("job %s: no payment after %d settled reads: not charged",
                             job.job_id, job.reconcile_reads)
                    self._feed(job, jm.ReconcileGaveUp())
                    return
                await self._sleep_for(rc.next_wait(
                    decision, rt, doubts=0,
                    until_settle_s=self._until_settle(read_start, job, wall_elapsed)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a reconcile task must outlive a bug
                log.error("job %s: reconcile round failed (%s); trying again in %.0f s",
                          job.job_id, type(exc).__name__, backoff)
                await self._sleep_for(backoff)
                backoff = min(backoff * 2, rt.retry_max_s)

    def _close_attempt(self, job: Job) -> Job:
        """A job restarted mid-POST gets its attempt's end: the first athena-clock "now"."""
        if job.attempt_to is not None:
            return job
        span = self._athena_now()
        if span is None:
            return job
        st = jm.step(job, jm.AttemptClosed(span.hi), self._clock.now())
        self._record(st)
        return self._keep_unknown(st.job)

    def _keep_unknown(self, job: Job) -> Job:
        if job.state is JobState.UNKNOWN:
            self._unknown[job.job_id] = job
        return job

    def _until_settle(self, read_start: Span | None, job: Job, wall_elapsed: float) -> float:
        if read_start is not None and job.attempt_to is not None:
            return self._settle_s - (read_start.lo - job.attempt_to).total_seconds()
        return self._settle_s - wall_elapsed

    @staticmethod
    def _attempt_of(job: Job) -> rc.Attempt:
        return rc.Attempt(job.job_id, job.total, job.card_last4 or "", job.attempt_from,
                          job.attempt_to)

    def _rivals(self, job: Job) -> list[rc.Attempt]:
        """The other open attempts: unknown jobs, and the POST in flight (no end yet)."""
        out = [self._attempt_of(j) for j in self._unknown.values() if j.job_id != job.job_id]
        active = self._active
        if (active is not None and active.job.state is JobState.SUBMITTING
                and active.job.job_id != job.job_id and active.job.card_last4 is not None):
            a = active.job
            out.append(rc.Attempt(a.job_id, a.total, a.card_last4 or "", a.attempt_from, None))
        return out

    def _taken_ids(self) -> frozenset[str]:
        """epayment ids that are some job's payment: in the journal, or in steps it has
        not taken yet."""
        ids = set(self._journal.known_epayment_ids())
        for steps in self._unwritten.values():
            ids.update(st.job.epayment_id for st in steps if st.job.epayment_id)
        return frozenset(ids)

    # ------------------------------------------------------------ plumbing

    def _feed(self, job: Job, inp: jm.Input, *, event_first: bool = False) -> Step:
        """Step a job, journal it (or queue the write if the journal refuses: ``_record``),
        then act on its new state. The job's truth is the step, written or not.

        ``event_first`` (the payment's outcome, which the patient and the app wait for):
        when the job ends here, its bookkeeping is done at once and the outbox drain is
        woken in this loop turn, so that its event is published first; the log line, the
        result screen and the state follow one callback later (docs/PERFORMANCE.md)."""
        st = jm.step(job, inp, self._clock.now())
        self._record(st)
        if st.job.final:
            failpoint("before_publish")
        ends = st.job.final or st.job.state is JobState.UNKNOWN
        if event_first and ends:
            active = self._active
            held = active is not None and active.job.job_id == job.job_id
            self._after(st.job, present=False)
            self._wake_drain()
            asyncio.get_running_loop().call_soon(self._present_end, job.state, st.job, held)
            return st
        if job.state is not st.job.state:
            log.info("job %s: %s -> %s", job.job_id, job.state, st.job.state)
        self._after(st.job)
        return st

    def _present_end(self, was: JobState, job: Job, held: bool) -> None:
        """The log line, result screen and state of a job that ended under ``event_first``
        (``held``: it held the terminal)."""
        if was is not job.state:
            log.info("job %s: %s -> %s", job.job_id, was, job.state)
        if held and self._active is None and not self._closed:  # no new job took over
            self._result_screen(job)
        self._changed()  # the drain is awake already (``_wake_drain``)

    def _after(self, job: Job, *, present: bool = True) -> None:
        active = self._active
        if active is not None and active.job.job_id == job.job_id:
            active.job = job
        if job.state is JobState.UNKNOWN:
            self._finish(job, present=present)
            self._spawn_reconcile(job)
        else:
            self._unknown.pop(job.job_id, None)
            if job.final:
                self._finish(job, present=present)

    def _finish(self, job: Job, *, present: bool = True) -> None:
        """The job no longer holds the terminal: result screen, then idle. ``present``
        False: the terminal is released, and the screen and the wake-up are the caller's
        (``_feed``'s ``event_first``)."""
        active = self._active
        was_active = active is not None and active.job.job_id == job.job_id
        if was_active:
            assert active is not None
            timer = active.deadline_task
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
            self._active = None
            if present:
                self._result_screen(job)
        if present:
            self._wake()

    def _result_screen(self, job: Job) -> None:
        screen = result_screen(job)
        if screen is not None:
            self._show(screen)
            self._spawn(self._idle_later(self._screen_gen,
                                         self._clock.monotonic() + RESULT_SCREEN_S),
                        "lobbypay.engine.idle_screen")

    def _get_job(self, job_id: str) -> Job | None:
        try:
            return self._journal.get_job(job_id)
        except JournalError as exc:
            raise DomainError(Code.INTERNAL_ERROR, f"journal: {exc}") from None

    def _commit(self, st: Step, *, fsync: bool = True) -> None:
        """Write a step now, or raise ``DomainError`` (internal_error): for the writes
        that must be on disk before anything happens (a new job, ``submitting``)."""
        if st.job.job_id in self._unwritten:
            raise DomainError(Code.INTERNAL_ERROR, "journal: earlier steps of this job are "
                              "not written yet")
        try:
            self._journal.commit_step(st, topic=self._topic, fsync=fsync)
        except JournalError as exc:
            raise DomainError(Code.INTERNAL_ERROR, f"journal: {exc}") from None

    def _record(self, st: Step) -> bool:
        """Write a step, or keep it in order behind the job's other unwritten steps and
        let ``_heal`` retry until the disk takes it (disk full, database locked). True
        when it is on disk now. Its events are published once written."""
        job_id = st.job.job_id
        queue = self._unwritten.get(job_id)
        if queue is None:
            try:
                self._journal.commit_step(st, topic=self._topic)
                return True
            except JournalError as exc:
                log.error("job %s: journal write failed (%s); keeping the %s step and "
                          "retrying", job_id, printable(exc, QUOTE_MAX), st.job.state)
            queue = self._unwritten.setdefault(job_id, [])
        queue.append(st)
        if self._healer is None or self._healer.done():
            self._healer = self._spawn(self._heal(), "lobbypay.engine.heal_journal")
        self._changed()
        return False

    async def _heal(self) -> None:
        """Retry the unwritten steps, oldest job first, each job's in order, with backoff."""
        delay = JOURNAL_RETRY_MIN_S
        while self._unwritten:
            await self._sleep_for(delay)
            for job_id in list(self._unwritten):
                queue = self._unwritten[job_id]
                while queue:
                    try:
                        self._journal.commit_step(queue[0], topic=self._topic)
                    except JournalError:
                        break
                    except Exception as exc:  # noqa: BLE001 - a step the journal can never take
                        log.error("job %s: step cannot be journaled (%s); dropped", job_id,
                                  type(exc).__name__)
                    queue.pop(0)
                if not queue:
                    del self._unwritten[job_id]
                    log.info("job %s: journal writes caught up", job_id)
                    self._wake()
            delay = min(delay * 2, JOURNAL_RETRY_MAX_S) if self._unwritten else delay

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

    def _wake_drain(self) -> None:
        """Wake the outbox drain in this loop turn (``outbox_wakeup_now``)."""
        try:
            self._outbox_wakeup_now()
        except Exception:  # noqa: BLE001
            log.exception("outbox wakeup failed")

    def _changed(self) -> None:
        try:
            self._on_state_change()
        except Exception:  # noqa: BLE001
            log.exception("state change callback failed")

    def _spawn(self, coro: Coroutine[object, None, T], name: str) -> asyncio.Task[T]:
        return self._tasks.spawn(coro, name)

    async def _read(self, coro: Awaitable[T], what: oc.ReadTarget) -> T:
        """An athena read within athena.timeout_s; a failure becomes the reply the core
        gives it (``core.outcome.read_error``)."""
        try:
            async with asyncio.timeout(self._athena_timeout_s):
                result = await coro
        except (AthenaError, TimeoutError) as exc:
            failure = oc.read_error(exc, what, self._athena_timeout_s)
            self._note(failure.athena)
            raise failure.error from None
        self._athena_ok()
        return result

    def _evaluate(self, payload: object, patient_id: str, dept: str) -> BalanceView:
        try:
            view = evaluate_balances(payload, patient_id, dept)
        except PatientNotFoundInPayload:
            raise DomainError(Code.PATIENT_NOT_FOUND, "athena has no such patient") from None
        except BalancePayloadError as exc:
            why = printable(exc, QUOTE_MAX)
            raise DomainError(Code.ATHENA_BAD_RESPONSE,
                              f"athena's balance answer was unreadable: {why}") from None
        info = self.department
        if (info is not None and info.found and dept == info.department_id
                and view.group_found and view.provider_group_id != info.provider_group_id):
            # athena's two answers disagree on the department's provider group: collect by
            # claimbalancedetails (athena's rule) but leave a trail for the front desk / IT.
            log.warning("department %s: /departments says provider group %s, the balance "
                        "groups say %s", dept, info.provider_group_id, view.provider_group_id)
        return view

    def _athena_ok(self) -> None:
        self._athena_last_ok_at = format_seconds(self._clock.now())
        # state.athena.last_error is the error that stands: a later success clears it
        self._athena_last_error = None
        self._refresh_clock_health()
        self._changed()

    def athena_check_failed(self, exc: AthenaError) -> None:
        """A start-up athena call (app.py's department probe) failed: say so in
        ``state.athena.last_error`` before the first patient finds out."""
        self._athena_failed(oc.read_code(exc), exc.message)

    def athena_check_ok(self) -> None:
        """A start-up athena call succeeded."""
        self._athena_ok()

    def _note(self, note: oc.AthenaNote) -> None:
        """Record what a call said about athena (``state.athena``)."""
        match note:
            case oc.Answered():
                self._athena_ok()
            case oc.Failed(code=code, message=message):
                self._athena_failed(code, message)

    def _athena_failed(self, code: Code, message: str) -> None:
        self._athena_last_error = {"code": code.value, "message": printable(message, QUOTE_MAX),
                                   "at": format_seconds(self._clock.now())}
        self._changed()



def _wipe(card: api.Card) -> None:
    try:
        card.wipe()
    except Exception:  # noqa: BLE001 - wiping twice or a driver's own fault
        log.warning("card wipe raised; ignoring")
