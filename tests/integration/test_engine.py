"""The charge engine with a real journal (SQLite in tmp_path), a scripted fake athena,
a fake display and a manual clock: every charge.start rule and error code, cancel,
deadline, decline, unknown outcomes and their reconciliation, restart recovery, the
outbox, and the canary PAN never leaving the card path."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lobbypay import engine as engine_mod
from lobbypay.core.athena import (
    Approved,
    AthenaRejected,
    AthenaUnavailable,
    Declined,
    NotFound,
    OutcomeUnknown,
    PaymentResult,
    Receipt,
)
from lobbypay.core.clock import ServerClock, Span
from lobbypay.core.commands import (
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ChargeStart,
    ClaimAmount,
)
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents
from lobbypay.engine import Engine
from lobbypay.shell.journal import Journal
from lobbypay_hw import api

T0 = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
TID = "t-engine"
TOPIC = f"lobbypay/v1/{TID}/events"
CANARY_PAN = "4111111111111111"
CANARY_TRACKS = (f"%B{CANARY_PAN}^SANDBOXTEST/JANE^3012101000000000000000?"
                 f";{CANARY_PAN}=30121010000000000000?")
SETTLE_S = 120.0


# ---------------------------------------------------------------- fakes


class ManualClock:
    """Aware UTC now + monotonic, both moved only by ``advance``; ``sleep`` waits for it."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._mono = 1000.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._mono + max(0.0, seconds), fut))
        self._release()
        await fut

    def _release(self) -> None:
        for entry in list(self._waiters):
            t, fut = entry
            if t <= self._mono:
                self._waiters.remove(entry)
                if not fut.done():
                    fut.set_result(None)

    async def advance(self, seconds: float, steps: int = 1) -> None:
        for _ in range(steps):
            self._now += timedelta(seconds=seconds / steps)
            self._mono += seconds / steps
            self._release()
            await settle()


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(pred: Callable[[], bool], limit_s: float = 2.0) -> None:
    """Let the loop run (real time) until ``pred`` holds; fail after ``limit_s``."""
    async with asyncio.timeout(limit_s):
        while not pred():  # noqa: ASYNC110 - polling a test condition, bounded
            await asyncio.sleep(0.001)


class FakeCard:
    """Implements lobbypay_hw.api.Card around the canary tracks."""

    def __init__(self, tracks: str = CANARY_TRACKS, *, brand: str = "visa", last4: str = "1111",
                 expired: bool = False) -> None:
        self._tracks: str | None = tracks
        self._brand = brand
        self._last4 = last4
        self._expired = expired
        self.wiped = False

    @property
    def brand(self) -> str:
        return self._brand

    @property
    def last4(self) -> str:
        return self._last4

    def is_expired(self, today: date) -> bool:
        return self._expired

    def trackdata(self) -> str:
        if self._tracks is None:
            raise RuntimeError("card wiped")
        return self._tracks

    def track_bytes(self) -> bytearray:
        return bytearray(self.trackdata().encode("ascii"))

    def wipe(self) -> None:
        self._tracks = None
        self.wiped = True

    def __repr__(self) -> str:
        return f"<card {self._brand} *{self._last4}>"


HANG = object()


@dataclass
class FakeAthena:
    """ports.Athena with scripted answers. POST outcomes: a PaymentResult, an exception,
    or HANG (waits until ``release`` is set, then answers ``after_hang``)."""

    patients: dict[str, Any] = field(default_factory=dict)
    appointments: dict[str, Any] = field(default_factory=dict)
    post_script: list[object] = field(default_factory=list)
    receipts_script: list[object] = field(default_factory=list)
    read_error: Exception | None = None
    read_hang: bool = False
    posts: list[dict[str, str]] = field(default_factory=list)
    receipt_reads: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    after_hang: object = None
    on_post: Callable[[], None] | None = None
    #: athena's clock as its Date headers tell it, like the real client's: every answer
    #: is a sample of ``clock.now() + athena_offset_s`` (set ``clock`` to get samples)
    clock: ManualClock | None = None
    athena_offset_s: float = 0.0
    server_clock: ServerClock = field(default_factory=ServerClock)
    _athena_epoch: tuple[datetime, float] | None = None
    tracks_seen: list[bytearray] = field(default_factory=list)

    def _dated(self) -> None:
        # athena's clock runs on by itself: it starts where the terminal's wall clock was
        # (plus athena_offset_s) and moves with real (monotonic) time, so a step of the
        # terminal's wall clock (tests/proof/test_clock.py) does not move it
        if self.clock is not None:
            m = self.clock.monotonic()
            if self._athena_epoch is None:
                self._athena_epoch = (self.clock.now(), m)
            wall0, m0 = self._athena_epoch
            athena_now = wall0 + timedelta(seconds=self.athena_offset_s + (m - m0))
            self.server_clock.observe(m, m, athena_now.replace(microsecond=0))

    async def get_patient(self, patient_id: str, department_id: str) -> list[dict[str, Any]]:
        self._dated()
        if self.read_hang:
            await asyncio.Event().wait()
        if self.read_error:
            raise self.read_error
        if patient_id not in self.patients:
            raise NotFound("patient not found", status=404)
        return self.patients[patient_id]  # type: ignore[no-any-return]

    async def get_appointment(self, appointment_id: str) -> dict[str, Any]:
        self._dated()
        if appointment_id not in self.appointments:
            raise NotFound("appointment not found", status=404)
        return self.appointments[appointment_id]  # type: ignore[no-any-return]

    async def get_departments(self) -> list[dict[str, Any]]:
        return []

    async def collect_payment(self, patient_id: str,
                              form: Mapping[str, str | bytearray]) -> PaymentResult:
        # keep what was sent, minus the track (checked here, never stored); the engine
        # hands it over as a bytearray, overwritten once the call returns
        track = form["trackdata"]
        assert isinstance(track, bytearray) and track.decode("ascii") == CANARY_TRACKS
        self.tracks_seen.append(track)  # the same buffer, to see it overwritten later
        self.posts.append({k: v for k, v in form.items() if k != "trackdata"})
        if self.on_post:
            self.on_post()
        outcome = self.post_script.pop(0) if self.post_script else Approved("900001")
        if outcome is HANG:
            await self.release.wait()
            outcome = self.after_hang
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    async def list_receipts(self, patient_id: str, department_id: str) -> list[Receipt]:
        self._dated()
        self.receipt_reads += 1
        outcome = self.receipts_script.pop(0) if self.receipts_script else []
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class FakeDisplay:
    driver = "fake"

    def __init__(self, cols: int = 16, rows: int = 2) -> None:
        self.cols = cols
        self.rows = rows
        self.history: list[tuple[str, ...]] = []

    @property
    def connected(self) -> bool:
        return True

    def show(self, view: api.ScreenView) -> tuple[str, ...]:
        lines = tuple(view.lines) + ("",) * (self.rows - len(view.lines))
        self.history.append(lines)
        return lines

    async def run(self) -> None:  # pragma: no cover - not used by the engine
        await asyncio.Event().wait()


def patient_payload() -> list[dict[str, Any]]:
    return [{
        "patientid": "60178",
        "claimbalancedetails": [
            {"providergroupid": "10", "departmentids": "1,2", "claimdetails": [
                {"claimid": "5569", "servicedate": "09/15/2021", "patientbalance": "40.00",
                 "cleanbalance": True},
                {"claimid": "5570", "patientbalance": "12.00", "cleanbalance": False},
                {"claimid": "5571", "patientbalance": "30.00", "cleanbalance": True},
            ]},
            {"providergroupid": "20", "departmentids": "5", "claimdetails": [
                {"claimid": "7001", "patientbalance": "90.00", "cleanbalance": True},
            ]},
        ],
    }]


def start_cmd(job_id: str = "j-1", **kw: Any) -> ChargeStart:
    base: dict[str, Any] = dict(
        request_id=f"r-{job_id}", job_id=job_id, patient_id="60178", department_id="1",
        appointment_id="1234", copay=Cents(2500), claims=(ClaimAmount("5569", Cents(4000)),),
        allow_duplicate=False, deadline_s=120, expires_at=None,
    )
    base.update(kw)
    return ChargeStart(**base)


class Rig:
    def __init__(self, state_dir: Path, athena: FakeAthena | None = None,
                 clock: ManualClock | None = None, max_charge: int = 500000) -> None:
        self.state_dir = state_dir
        self.clock = clock or ManualClock()
        self.athena = athena or FakeAthena(patients={"60178": patient_payload()},
                                           appointments={"1234": {"copay": "25.00"}})
        if self.athena.clock is None:
            self.athena.clock = self.clock
        self.display = FakeDisplay()
        self.journal = Journal(state_dir)
        self.wakeups = 0
        self.state_changes = 0
        self.engine = Engine(
            terminal_id=TID, department_id="1", max_charge=Cents(max_charge),
            reconcile_settle_s=SETTLE_S, athena_timeout_s=0.5, athena=self.athena,
            journal=self.journal, display=self.display, clock=self.clock,
            outbox_wakeup=self._wake, on_state_change=self._changed, events_topic=TOPIC,
            sleep=self.clock.sleep,
        )

    def _wake(self) -> None:
        self.wakeups += 1

    def _changed(self) -> None:
        self.state_changes += 1

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.outbox_events() if e["job_id"] == job_id]

    def outbox_events(self) -> list[dict[str, Any]]:
        rows = self.journal.outbox_pending(1000)
        assert all(r.topic == TOPIC for r in rows)
        return [json.loads(r.payload) for r in rows]

    def states(self, job_id: str) -> list[str]:
        return [e["state"] for e in self.events(job_id)]

    async def close(self) -> None:
        await self.engine.aclose()
        self.journal.close()


@pytest.fixture
async def rig(tmp_path: Path):
    r = Rig(tmp_path / "state")
    await r.engine.start()
    yield r
    await r.close()


async def swipe(r: Rig, card: FakeCard | None = None) -> FakeCard:
    card = card or FakeCard()
    r.engine.on_reader_event(api.CardRead(card))
    await settle()
    return card


# ---------------------------------------------------------------- happy path


async def test_charge_succeeds_end_to_end(rig: Rig) -> None:
    assert rig.engine.screen[0] == "Welcome"
    assert rig.engine.state()["job_state"] == "idle"
    reply = await rig.engine.charge_start(start_cmd())
    assert reply == {"job_id": "j-1", "state": "pending"}
    st = rig.engine.state()
    assert st["job_id"] == "j-1" and st["job_state"] == "pending"
    assert any("65.00" in line for line in st["screen"])
    assert st["screen"] == list(rig.display.history[-1])

    card = await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    assert card.wiped
    assert len(rig.athena.posts) == 1
    post = rig.athena.posts[0]
    assert post["departmentid"] == "1"
    assert post.get("copayamount") == "25.00" and post.get("appointmentid") == "1234"
    assert post.get("otheramount") == "40.00"
    assert "allowduplicatepayments" not in post

    evs = rig.events("j-1")
    assert [e["seq"] for e in evs] == [1, 2, 3, 4]
    assert [e["state"] for e in evs] == ["pending", "card_read", "submitting", "succeeded"]
    last = evs[-1]
    assert last["final"] is True and last["epayment_id"] == "900001" and last["error"] is None
    assert last["card"] == {"brand": "visa", "last4": "1111"}
    assert last["amounts"] == {"copay": "25.00", "other": "40.00", "total": "65.00",
                               "claims": [{"claim_id": "5569", "amount": "40.00"}]}
    assert rig.engine.charge_get(ChargeGet("g", "j-1")) == {"job": last}
    assert rig.engine.screen[:2] == ("Approved", "Visa ****1111")
    assert rig.engine.state()["job_state"] == "idle"
    assert rig.engine.state()["outbox"] == 4
    assert rig.wakeups >= 4
    # the result screen goes back to idle after a while
    await rig.clock.advance(engine_mod.RESULT_SCREEN_S + 1)
    assert rig.engine.screen[0] == "Welcome"


async def test_submitting_is_on_disk_before_the_post(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    seen: list[str] = []

    def look() -> None:
        # a separate connection, as a crash-recovering process would see the file
        conn = sqlite3.connect(r.journal.path)
        try:
            seen.append(conn.execute("SELECT state FROM jobs WHERE job_id='j-1'").fetchone()[0])
        finally:
            conn.close()

    r.athena.on_post = look
    await r.engine.start()
    try:
        await r.engine.charge_start(start_cmd())
        await swipe(r)
        await until(lambda: bool(seen))
        assert seen == ["submitting"]
    finally:
        await r.close()


async def test_allow_duplicate_is_passed_and_copay_only(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd(claims=(), allow_duplicate=True))
    await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    post = rig.athena.posts[0]
    assert post["allowduplicatepayments"] == "true"
    assert "otheramount" not in post and "claimpayment" not in post


# ---------------------------------------------------------------- charge.start rules


async def test_idempotent_repeat_and_conflict(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd())
    again = await rig.engine.charge_start(start_cmd(request_id="r-other"))
    assert again == {"job_id": "j-1", "state": "pending"}
    assert rig.states("j-1") == ["pending"]  # nothing started twice
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd(copay=Cents(2600)))
    assert ei.value.code is Code.IDEMPOTENCY_CONFLICT
    # after the job finished, the same body answers the final state
    await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    assert await rig.engine.charge_start(start_cmd()) == {"job_id": "j-1", "state": "succeeded"}
    assert len(rig.athena.posts) == 1


async def test_expires_at_past_replies_expired_and_journals_nothing(rig: Rig) -> None:
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd(expires_at=T0 - timedelta(seconds=1)))
    assert ei.value.code is Code.EXPIRED
    assert rig.journal.get_job("j-1") is None and rig.journal.outbox_count() == 0
    # a future expires_at is fine
    ok = await rig.engine.charge_start(start_cmd(expires_at=T0 + timedelta(minutes=5)))
    assert ok["state"] == "pending"


async def test_busy_carries_active_job_id(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd("j-1"))
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd("j-2"))
    assert ei.value.code is Code.TERMINAL_BUSY
    assert ei.value.extra == {"active_job_id": "j-1"}
    assert rig.journal.get_job("j-2") is None


@pytest.mark.parametrize("change,code", [
    (dict(copay=Cents(0), claims=()), Code.NOTHING_TO_CHARGE),
    (dict(copay=Cents(2500), appointment_id=None), Code.COPAY_NEEDS_APPOINTMENT),
    (dict(claims=(ClaimAmount("5570", Cents(1000)),)), Code.CLAIM_NOT_COLLECTIBLE),
    (dict(claims=(ClaimAmount("7001", Cents(1000)),)), Code.CLAIM_NOT_COLLECTIBLE),
    (dict(claims=(ClaimAmount("9999", Cents(1000)),)), Code.CLAIM_NOT_COLLECTIBLE),
    (dict(claims=(ClaimAmount("5569", Cents(4001)),)), Code.AMOUNT_EXCEEDS_BALANCE),
    (dict(patient_id="404"), Code.PATIENT_NOT_FOUND),
])
async def test_start_refusals(rig: Rig, change: dict[str, Any], code: Code) -> None:
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd(**change))
    assert ei.value.code is code
    assert rig.journal.get_job("j-1") is None and rig.journal.outbox_count() == 0
    assert rig.engine.state()["job_state"] == "idle"


async def test_partial_payment_is_allowed(rig: Rig) -> None:
    reply = await rig.engine.charge_start(
        start_cmd(copay=Cents(0), appointment_id=None, claims=(ClaimAmount("5569", Cents(1)),)))
    assert reply["state"] == "pending"


async def test_over_max_charge_is_invalid_amount(tmp_path: Path) -> None:
    r = Rig(tmp_path, max_charge=5000)
    await r.engine.start()
    try:
        with pytest.raises(DomainError) as ei:
            await r.engine.charge_start(start_cmd())
        assert ei.value.code is Code.INVALID_AMOUNT
    finally:
        await r.close()


@pytest.mark.parametrize("trouble", ["error", "hang"])
async def test_athena_unavailable_on_reread(rig: Rig, trouble: str) -> None:
    if trouble == "error":
        rig.athena.read_error = AthenaUnavailable("connect refused")
    else:
        rig.athena.read_hang = True  # athena_timeout_s is 0.5 in the rig
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd())
    assert ei.value.code is Code.ATHENA_UNAVAILABLE
    assert rig.journal.get_job("j-1") is None
    assert rig.engine.state()["athena"]["last_error"]["code"] == "athena_unavailable"


# ---------------------------------------------------------------- cancel, deadline, swipes


async def test_cancel_rules(rig: Rig) -> None:
    with pytest.raises(DomainError) as ei:
        rig.engine.charge_cancel(ChargeCancel("c0", "nope"))
    assert ei.value.code is Code.UNKNOWN_JOB
    await rig.engine.charge_start(start_cmd())
    assert rig.engine.charge_cancel(ChargeCancel("c1", "j-1")) == {
        "job_id": "j-1", "state": "canceled"}
    evs = rig.events("j-1")
    assert [e["state"] for e in evs] == ["pending", "canceled"]
    assert evs[-1]["error"]["code"] == "canceled" and evs[-1]["final"] is True
    assert rig.engine.screen[0] == "Payment canceled"
    with pytest.raises(DomainError) as ei:
        rig.engine.charge_cancel(ChargeCancel("c2", "j-1"))
    assert ei.value.code is Code.NOT_ACTIVE
    # the deadline of a canceled job does nothing
    await rig.clock.advance(200)
    assert rig.states("j-1") == ["pending", "canceled"]
    # a card now is ignored and wiped
    card = await swipe(rig)
    assert card.wiped and rig.athena.posts == []


async def test_commands_answer_while_the_post_hangs(rig: Rig) -> None:
    rig.athena.post_script = [HANG]
    rig.athena.after_hang = Approved("55")
    await rig.engine.charge_start(start_cmd())
    card = await swipe(rig)
    await until(lambda: len(rig.athena.posts) == 1)
    assert not card.wiped  # still inside the POST
    loop = asyncio.get_running_loop()
    t = loop.time()
    assert rig.engine.state()["job_state"] == "submitting"
    assert rig.engine.charge_get(ChargeGet("g", "j-1"))["job"]["state"] == "submitting"
    with pytest.raises(DomainError) as ei:
        rig.engine.charge_cancel(ChargeCancel("c", "j-1"))
    assert ei.value.code is Code.TOO_LATE
    with pytest.raises(DomainError) as ei:
        await rig.engine.charge_start(start_cmd("j-2"))
    assert ei.value.code is Code.TERMINAL_BUSY
    assert loop.time() - t < 0.5
    assert rig.engine.charge_list(ChargeList("l"))["jobs"][0]["job_id"] == "j-1"
    rig.athena.release.set()
    await until(lambda: rig.engine.active_job is None)
    assert card.wiped
    assert rig.states("j-1")[-1] == "succeeded"


async def test_deadline_expires_a_pending_job(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd(deadline_s=30))
    await rig.clock.advance(29)
    assert rig.states("j-1") == ["pending"]
    await rig.clock.advance(2)
    assert rig.states("j-1") == ["pending", "expired"]
    ev = rig.events("j-1")[-1]
    assert ev["error"]["code"] == "expired" and ev["final"] is True
    assert rig.engine.screen[0] == "Time is up"
    assert rig.engine.state()["job_state"] == "idle"


async def test_deadline_stops_once_a_card_is_read(rig: Rig) -> None:
    rig.athena.post_script = [HANG]
    rig.athena.after_hang = Approved("56")
    await rig.engine.charge_start(start_cmd(deadline_s=10))
    await swipe(rig)
    await rig.clock.advance(60)
    assert rig.states("j-1") == ["pending", "card_read", "submitting"]
    rig.athena.release.set()
    await until(lambda: rig.engine.active_job is None)
    assert rig.states("j-1")[-1] == "succeeded"


async def test_bad_swipe_and_expired_card_keep_pending(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd())
    rig.engine.on_reader_event(api.ReadFailed(api.ReadFailure.BAD_CHECK_DIGIT))
    assert rig.engine.screen == ("Total $65.00", "Swipe again")
    rig.engine.on_reader_event(api.ReadFailed(api.ReadFailure.NOT_A_BANK_CARD))
    assert rig.engine.screen == ("Total $65.00", "Use a bank card")
    card = await swipe(rig, FakeCard(expired=True))
    assert card.wiped
    assert rig.engine.screen == ("Total $65.00", "Card expired")
    assert rig.states("j-1") == ["pending"] and rig.athena.posts == []
    assert rig.engine.state()["job_state"] == "pending"
    await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    assert rig.states("j-1")[-1] == "succeeded"


async def test_card_while_idle_is_wiped_and_ignored(rig: Rig, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    card = await swipe(rig)
    assert card.wiped and rig.athena.posts == [] and rig.journal.outbox_count() == 0
    assert "ignored" in caplog.text


async def test_reader_status_reaches_state(rig: Rig) -> None:
    rig.engine.on_reader_event(api.ReaderStatus(connected=True))
    assert rig.engine.state()["reader"]["connected"] is True
    rig.engine.on_reader_event(api.ReaderStatus(connected=False, detail="unplugged"))
    assert rig.engine.state()["reader"]["connected"] is False
    st = rig.engine.state()
    assert set(st) == {"v", "job_id", "job_state", "screen", "reader", "display", "athena",
                       "outbox", "clock"}
    assert st["display"] == {"driver": "fake", "connected": True}


# ---------------------------------------------------------------- outcomes


@pytest.mark.parametrize("outcome,state,code", [
    (Declined("Insufficient funds"), "declined", "declined"),
    (AthenaUnavailable("connect refused"), "failed", "athena_unavailable"),
    (AthenaRejected("invalid departmentid", status=400), "failed", "athena_rejected"),
])
async def test_definitive_outcomes(rig: Rig, outcome: object, state: str, code: str) -> None:
    rig.athena.post_script = [outcome]
    await rig.engine.charge_start(start_cmd())
    card = await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    assert card.wiped
    ev = rig.events("j-1")[-1]
    assert (ev["state"], ev["final"], ev["error"]["code"]) == (state, True, code)
    if state == "declined":
        assert ev["error"]["message"] == "Insufficient funds"
        assert rig.engine.screen[0] == "Card declined"
    else:
        assert rig.engine.screen[0] == "Payment failed"
    assert rig.athena.receipt_reads == 0  # nothing to reconcile
    assert len(rig.athena.posts) == 1


def receipt(eid: str, *, amount: int = 6500, last4: str = "1111",
            at: datetime = T0 + timedelta(seconds=5)) -> Receipt:
    lo = at.replace(microsecond=0)  # athena's requestdate has whole seconds
    return Receipt(epayment_id=eid, amount=Cents(amount), last4=last4,
                   requested=(Span(lo, lo + timedelta(microseconds=999999)),))


async def go_unknown(r: Rig, job_id: str = "j-1") -> None:
    r.athena.post_script = [OutcomeUnknown("read timeout after sending")]
    await r.engine.charge_start(start_cmd(job_id))
    await swipe(r)
    await until(lambda: r.engine.active_job is None)
    assert r.states(job_id)[-1] == "unknown"


async def test_unknown_reconciles_to_succeeded(rig: Rig) -> None:
    rig.athena.receipts_script = [
        [],  # first read: not there yet
        [receipt("other", amount=1000), receipt("old", at=T0 - timedelta(days=1)),
         receipt("wrongcard", last4="4242"), receipt("777001")],
    ]
    await go_unknown(rig)
    ev = rig.events("j-1")[-1]
    assert ev["final"] is False and ev["error"]["code"] == "outcome_unknown"
    assert rig.engine.screen[0] == "Please wait"
    assert rig.engine.state()["job_state"] == "idle"  # unknown frees the terminal
    await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
    assert rig.athena.receipt_reads == 1
    await rig.clock.advance(engine_mod.RECONCILE_POLL_S)
    await until(lambda: rig.states("j-1")[-1] == "succeeded")
    ev = rig.events("j-1")[-1]
    assert ev["epayment_id"] == "777001" and ev["final"] is True and ev["error"] is None
    assert rig.states("j-1") == ["pending", "card_read", "submitting", "unknown", "succeeded"]
    assert len(rig.athena.posts) == 1  # the POST is never retried


async def test_unknown_ends_not_charged_after_two_settled_reads(rig: Rig) -> None:
    await go_unknown(rig)
    # reads before the settle time do not count, however many
    await rig.clock.advance(SETTLE_S - 1, steps=12)
    assert rig.states("j-1")[-1] == "unknown"
    early_reads = rig.athena.receipt_reads
    assert early_reads >= 2
    # now past the settle time on athena's clock (its Date headers have whole seconds, so
    # the attempt's end is known to a second): the first settled read
    await rig.clock.advance(3)
    assert rig.athena.receipt_reads == early_reads + 1
    assert rig.journal.get_job("j-1").reconcile_reads == 1  # type: ignore[union-attr]
    await rig.clock.advance(engine_mod.RECONCILE_CONFIRM_GAP_S - 2)
    assert rig.states("j-1")[-1] == "unknown"  # only one settled read so far
    await rig.clock.advance(3)
    await until(lambda: rig.states("j-1")[-1] == "failed")
    ev = rig.events("j-1")[-1]
    assert ev["error"]["code"] == "not_charged" and ev["final"] is True
    job = rig.journal.get_job("j-1")
    assert job is not None and job.reconcile_reads == 2
    assert len(rig.athena.posts) == 1


async def test_failing_receipt_reads_back_off_and_retry(rig: Rig) -> None:
    rig.athena.receipts_script = [AthenaUnavailable("down"), AthenaUnavailable("down"),
                                  [receipt("888")]]
    await go_unknown(rig)
    await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
    assert rig.athena.receipt_reads == 1
    await rig.clock.advance(engine_mod.RECONCILE_RETRY_MIN_S)
    assert rig.athena.receipt_reads == 2
    await rig.clock.advance(engine_mod.RECONCILE_RETRY_MIN_S)  # backoff doubled: not yet
    assert rig.athena.receipt_reads == 2
    await rig.clock.advance(engine_mod.RECONCILE_RETRY_MIN_S)
    await until(lambda: rig.states("j-1")[-1] == "succeeded")
    assert rig.events("j-1")[-1]["epayment_id"] == "888"


async def test_a_receipt_already_claimed_is_not_matched_twice(rig: Rig) -> None:
    # j-0 succeeded with epayment 900001; j-1's reconciliation must not take it
    rig.athena.post_script = [Approved("900001")]
    await rig.engine.charge_start(start_cmd("j-0"))
    await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    rig.athena.receipts_script = [[receipt("900001")], [receipt("900001"), receipt("900002")]]
    await go_unknown(rig, "j-1")
    await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
    assert rig.states("j-1")[-1] == "unknown"
    await rig.clock.advance(engine_mod.RECONCILE_POLL_S)
    await until(lambda: rig.states("j-1")[-1] == "succeeded")
    assert rig.events("j-1")[-1]["epayment_id"] == "900002"


async def test_new_job_allowed_while_another_is_unknown(rig: Rig) -> None:
    await go_unknown(rig, "j-1")
    reply = await rig.engine.charge_start(start_cmd("j-2"))
    assert reply == {"job_id": "j-2", "state": "pending"}
    assert rig.engine.state()["job_id"] == "j-2"
    with pytest.raises(DomainError) as ei:
        rig.engine.charge_cancel(ChargeCancel("c", "j-1"))
    assert ei.value.code is Code.TOO_LATE


# ---------------------------------------------------------------- restart recovery


async def test_restart_submitting_becomes_unknown_and_reconciles_without_a_second_post(
        tmp_path: Path) -> None:
    r1 = Rig(tmp_path)
    r1.athena.post_script = [HANG]
    await r1.engine.start()
    await r1.engine.charge_start(start_cmd())
    card = await swipe(r1)
    await until(lambda: len(r1.athena.posts) == 1)
    await r1.close()  # the agent dies with the POST in flight
    assert card.wiped

    athena2 = FakeAthena(patients={"60178": patient_payload()},
                         receipts_script=[[receipt("424242")]])
    r2 = Rig(tmp_path, athena=athena2, clock=ManualClock(T0 + timedelta(seconds=40)))
    await r2.engine.start()
    try:
        assert r2.states("j-1")[-2:] == ["submitting", "unknown"]
        unknown = r2.events("j-1")[-1]
        assert unknown["final"] is False and unknown["error"]["code"] == "outcome_unknown"
        await r2.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
        await until(lambda: r2.states("j-1")[-1] == "succeeded")
        assert r2.events("j-1")[-1]["epayment_id"] == "424242"
        assert athena2.posts == []  # never a second POST
        assert [e["seq"] for e in r2.events("j-1")] == [1, 2, 3, 4, 5]
    finally:
        await r2.close()


async def test_restart_resumes_an_unknown_job(tmp_path: Path) -> None:
    r1 = Rig(tmp_path)
    await r1.engine.start()
    await go_unknown(r1)
    await r1.close()
    r2 = Rig(tmp_path, clock=ManualClock(T0 + timedelta(seconds=SETTLE_S + 10)))
    await r2.engine.start()
    try:
        await r2.clock.advance(1)
        await r2.clock.advance(engine_mod.RECONCILE_CONFIRM_GAP_S, steps=2)
        await until(lambda: r2.states("j-1")[-1] == "failed")
        assert r2.events("j-1")[-1]["error"]["code"] == "not_charged"
        assert r2.athena.posts == []
    finally:
        await r2.close()


@pytest.mark.parametrize("swiped", [False, True])
async def test_restart_pending_or_card_read_expires(tmp_path: Path, swiped: bool) -> None:
    from lobbypay.core import job as jm

    r1 = Rig(tmp_path)
    await r1.engine.start()
    await r1.engine.charge_start(start_cmd())
    if swiped:
        # the process died between card_read and submitting: write that state by hand
        job = r1.journal.get_job("j-1")
        assert job is not None
        r1.journal.commit_step(jm.step(job, jm.CardAccepted("visa", "1111"), T0), topic=TOPIC)
    await r1.close()
    r2 = Rig(tmp_path)
    await r2.engine.start()
    try:
        ev = r2.events("j-1")[-1]
        assert (ev["state"], ev["final"], ev["error"]["code"]) == ("expired", True,
                                                                    "agent_restarted")
        assert r2.engine.state()["job_state"] == "idle"
        assert r2.engine.charge_get(ChargeGet("g", "j-1"))["job"] == ev
        assert r2.athena.posts == []
        # idempotent repeat after the restart answers the final state
        assert await r2.engine.charge_start(start_cmd()) == {"job_id": "j-1",
                                                              "state": "expired"}
    finally:
        await r2.close()


# ---------------------------------------------------------------- journal view, balance


async def test_outbox_rows_for_every_event_in_seq_order(rig: Rig) -> None:
    await rig.engine.charge_start(start_cmd("a"))
    rig.engine.charge_cancel(ChargeCancel("c", "a"))
    await rig.engine.charge_start(start_cmd("b"))
    await swipe(rig)
    await until(lambda: rig.engine.active_job is None)
    evs = rig.outbox_events()
    assert [(e["job_id"], e["seq"]) for e in evs] == [
        ("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3), ("b", 4)]
    jobs = rig.engine.charge_list(ChargeList("l", limit=1))["jobs"]
    assert [j["job_id"] for j in jobs] == ["b"]
    assert [j["job_id"] for j in rig.engine.charge_list(ChargeList("l"))["jobs"]] == ["b", "a"]


async def test_charge_get_unknown_job(rig: Rig) -> None:
    with pytest.raises(DomainError) as ei:
        rig.engine.charge_get(ChargeGet("g", "nope"))
    assert ei.value.code is Code.UNKNOWN_JOB


async def test_balance_get(rig: Rig) -> None:
    reply = await rig.engine.balance_get(BalanceGet("b", "60178", appointment_id="1234"))
    assert reply["patient_id"] == "60178" and reply["department_id"] == "1"
    assert [c["claim_id"] for c in reply["collectible"]] == ["5569", "5571"]
    assert reply["collectible_total"] == "70.00"
    reasons = {n["claim_id"]: n["reason"] for n in reply["not_collectible"]}
    assert reasons == {"5570": "not_clean", "7001": "other_provider_group"}
    assert reply["copay"] == {"expected": "25.00"}
    with pytest.raises(DomainError) as ei:
        await rig.engine.balance_get(BalanceGet("b", "404"))
    assert ei.value.code is Code.PATIENT_NOT_FOUND
    with pytest.raises(DomainError) as ei:
        await rig.engine.balance_get(BalanceGet("b", "60178", appointment_id="nope"))
    assert ei.value.code is Code.APPOINTMENT_NOT_FOUND


# ---------------------------------------------------------------- the canary


async def test_canary_pan_never_leaves_the_card_path(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    r = Rig(tmp_path / "state")
    await r.engine.start()
    try:
        # a success, a decline, an unknown that reconciles, an expired card, an idle swipe
        r.athena.post_script = [Approved("1"), Declined("Do not honor"),
                                OutcomeUnknown("timeout")]
        for jid in ("c1", "c2", "c3"):
            await r.engine.charge_start(start_cmd(jid))
            await swipe(r, FakeCard(expired=True))
            await swipe(r)
            await until(lambda: r.engine.active_job is None)
        await swipe(r)
        r.athena.receipts_script = [[receipt("3")]]
        await r.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
        await until(lambda: r.states("c3")[-1] == "succeeded")
        texts = [json.dumps(r.engine.state()), json.dumps(r.outbox_events()),
                 json.dumps(r.engine.charge_list(ChargeList("l"))), caplog.text,
                 repr(r.display.history)]
    finally:
        await r.close()
    for text in texts:
        assert CANARY_PAN not in text
    blob = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file())
    assert blob, "the journal wrote something"
    assert CANARY_PAN.encode() not in blob
    assert b"SANDBOXTEST" not in blob  # nor the cardholder name


async def test_real_driver_card_goes_through_and_is_wiped(rig: Rig) -> None:
    """The card object the readers produce (lobbypay_hw.tracks), not a fake."""
    from lobbypay_hw.tracks import parse_swipe

    await rig.engine.charge_start(start_cmd())
    expired = parse_swipe(f";{CANARY_PAN}=20011010000000000000?".encode())
    rig.engine.on_reader_event(api.CardRead(expired))
    assert expired.wiped and rig.engine.screen[1] == "Card expired"
    card = parse_swipe(CANARY_TRACKS.encode())
    rig.engine.on_reader_event(api.CardRead(card))
    await until(lambda: rig.engine.active_job is None)
    assert card.wiped  # trackdata() now raises; the POST saw the exact swiped text
    assert len(rig.athena.posts) == 1
    assert rig.events("j-1")[-1]["card"] == {"brand": "visa", "last4": "1111"}


async def test_encrypting_reader_keeps_pending_and_says_what_to_fix(rig: Rig, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    await rig.engine.charge_start(start_cmd())
    rig.engine.on_reader_event(api.ReadFailed(api.ReadFailure.ENCRYPTED_READER))
    assert rig.engine.screen == ("Total $65.00", "Pay at the desk")
    st = rig.engine.state()
    assert st["job_state"] == "pending" and rig.states("j-1") == ["pending"]
    assert st["reader"]["last_error"] == "encrypted_reader"
    assert rig.athena.posts == []
    assert "clear-text" in caplog.text and "non-encrypting reader" in caplog.text
    # the error stays until a clear swipe (or a reconnect) shows the set-up is right
    rig.engine.on_reader_event(api.ReadFailed(api.ReadFailure.BAD_CHECK_DIGIT))
    assert rig.engine.state()["reader"]["last_error"] == "encrypted_reader"
    await swipe(rig)
    assert "last_error" not in rig.engine.state()["reader"]
    await until(lambda: rig.engine.active_job is None)
    assert rig.states("j-1")[-1] == "succeeded"
    rig.engine.on_reader_event(api.ReadFailed(api.ReadFailure.ENCRYPTED_READER))
    assert rig.engine.state()["reader"]["last_error"] == "encrypted_reader"  # also when idle
    rig.engine.on_reader_event(api.ReaderStatus(connected=True))
    assert "last_error" not in rig.engine.state()["reader"]
