"""The charge engine with a real journal (SQLite in tmp_path), a scripted fake athena,
a fake display and a manual clock: every charge.start rule and error code, cancel,
deadline, decline, unknown outcomes and their reconciliation, restart recovery, the
outbox, and the canary PAN never leaving the card path."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from lobbypay import engine as engine_mod
from lobbypay.core.athena import (
    Approved,
    AthenaRejected,
    AthenaUnavailable,
    Declined,
    OutcomeUnknown,
)
from lobbypay.core.commands import (
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ClaimAmount,
)
from lobbypay.core.errors import Code, DomainError
from lobbypay.core.money import Cents
from lobbypay.core.screen import render, result_screen
from lobbypay_hw import api

from tests.fakes.engine import (
    CANARY_PAN,
    CANARY_TRACKS,
    HANG,
    SETTLE_S,
    T0,
    TOPIC,
    FakeAthena,
    FakeCard,
    ManualClock,
    Rig,
    go_unknown,
    patient_payload,
    receipt,
    settle,
    start_cmd,
    swipe,
    until,
)

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


async def test_the_post_goes_before_the_submitting_bookkeeping(tmp_path: Path,
                                                               caplog) -> None:
    """The POST is started in the same loop turn as the swipe; the "processing" screen,
    the log line and the outbox wake-up of `submitting` come after it
    (docs/PERFORMANCE.md). card_read's state is signalled before the POST."""
    caplog.set_level(logging.INFO, logger="lobbypay.engine")
    r = Rig(tmp_path)
    at_post: list[tuple[bool, int, int]] = []

    def logged() -> bool:
        return any("submitting (" in rec.getMessage() for rec in caplog.records)

    r.athena.on_post = lambda: at_post.append((logged(), r.wakeups, len(r.display.history)))
    await r.engine.start()
    try:
        await r.engine.charge_start(start_cmd())
        before, shown, changes = r.wakeups, len(r.display.history), r.state_changes
        r.engine.on_reader_event(api.CardRead(FakeCard()))
        assert r.state_changes > changes  # card_read's state, in the swipe's own turn
        await until(lambda: bool(at_post) and logged())
        assert at_post == [(False, before, shown)]  # nothing shown or logged before it
        await until(lambda: r.wakeups > before)
        assert "*1111" in " ".join(r.display.history[shown])  # then "processing"
    finally:
        await r.close()


async def test_the_outcome_event_goes_before_the_result_screen(rig: Rig, caplog) -> None:
    """The payment's outcome wakes the outbox drain in its own loop turn, with the event
    written and the terminal released; the log line, result screen and state follow one
    callback later (docs/PERFORMANCE.md)."""
    caplog.set_level(logging.INFO, logger="lobbypay.engine")
    await rig.engine.charge_start(start_cmd())
    rig.engine.on_reader_event(api.CardRead(FakeCard()))
    changes: list[int] = []

    def at_wake() -> None:
        changes.append(rig.state_changes)
        assert rig.engine.active_job is None  # released before the event goes
        assert not any("-> succeeded" in r.getMessage() for r in caplog.records)

    real = rig.engine._outbox_wakeup_now
    rig.engine._outbox_wakeup_now = lambda: (real(), at_wake())  # type: ignore[assignment]
    await until(lambda: bool(rig.wake_now_seen))
    shown, rows = rig.wake_now_seen[0]
    assert rig.states("j-1")[-1] == "succeeded" and rows == len(rig.events("j-1"))
    job = rig.journal.get_job("j-1")
    assert job is not None
    result = render(result_screen(job), cols=16, rows=2)  # type: ignore[arg-type]
    assert rig.display.history[shown - 1] != result  # still "processing" at the wake-up
    await settle()
    assert rig.display.history[shown:] == [result]  # the result screen, right after
    assert any("submitting -> succeeded" in r.getMessage() for r in caplog.records)
    assert rig.state_changes > changes[0]


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
