"""Fakes for the charge engine's ports, shared by the engine's tests: a manual clock, a
card around the canary tracks, a scripted athena (with its own clock, as its Date headers
tell it), a display that keeps what it showed, and ``Rig``, an Engine over a real journal
in a temporary directory wired to them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lobbypay.core.athena import (
    Approved,
    NotFound,
    OutcomeUnknown,
    PaymentResult,
    Receipt,
)
from lobbypay.core.clock import ServerClock, Span
from lobbypay.core.commands import ChargeStart, ClaimAmount
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
        #: per ``outbox_wakeup_now`` call: the screens shown so far and the outbox rows
        self.wake_now_seen: list[tuple[int, int]] = []
        self.engine = Engine(
            terminal_id=TID, department_id="1", max_charge=Cents(max_charge),
            reconcile_settle_s=SETTLE_S, athena_timeout_s=0.5, athena=self.athena,
            journal=self.journal, display=self.display, clock=self.clock,
            outbox_wakeup=self._wake, on_state_change=self._changed, events_topic=TOPIC,
            sleep=self.clock.sleep, outbox_wakeup_now=self._wake_now,
        )

    def _wake(self) -> None:
        self.wakeups += 1

    def _wake_now(self) -> None:
        self.wakeups += 1
        self.wake_now_seen.append((len(self.display.history),
                                   len(self.journal.outbox_pending(1000))))

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
