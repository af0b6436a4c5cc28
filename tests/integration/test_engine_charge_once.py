"""Charging once: reconciliation must not take another job's payment for its own.

j-1's POST ends ``unknown`` (nothing landed); the app starts j-2 for the same patient
and total, the patient swipes the same card, and j-2's payment lands at athena while
its POST's answer is still on its way. A receipts read by j-1 in that window sees j-2's
receipt before the journal knows whose it is. Without care j-1 ends ``succeeded`` with
j-2's epayment id, then j-2 ends ``succeeded`` with the same id: two successes for one
charge, and the app may refund the patient for a payment it thinks was made twice."""

from __future__ import annotations

from lobbypay import engine as engine_mod
from lobbypay.core.athena import Approved

from tests.fakes.engine import (
    HANG,
    FakeCard,
    Rig,
    go_unknown,
    receipt,
    settle,
    start_cmd,
    swipe,
    until,
)


async def test_reconcile_does_not_take_the_receipt_of_a_post_in_flight(rig: Rig) -> None:
    await go_unknown(rig, "j-1")  # nothing landed for j-1
    rig.athena.post_script = [HANG]
    rig.athena.after_hang = Approved("900777")
    await rig.engine.charge_start(start_cmd("j-2"))
    await swipe(rig)
    assert rig.states("j-2")[-1] == "submitting"
    # j-2's payment is at athena (its receipt is listed), its answer not yet with us
    j2_receipt = receipt("900777")
    rig.athena.receipts_script = [[j2_receipt] for _ in range(50)]
    await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
    assert rig.athena.receipt_reads >= 1
    assert rig.states("j-1")[-1] == "unknown", "j-1 took the receipt of a POST in flight"

    rig.athena.release.set()  # j-2's answer arrives: approved, 900777 is j-2's
    await until(lambda: rig.states("j-2")[-1] == "succeeded")
    assert rig.events("j-2")[-1]["epayment_id"] == "900777"

    # j-1 goes on reconciling and, finding nothing of its own, ends not charged
    for _ in range(12):
        await rig.clock.advance(engine_mod.RECONCILE_POLL_S)
    await until(lambda: rig.states("j-1")[-1] == "failed")
    assert rig.events("j-1")[-1]["error"]["code"] == "not_charged"
    assert len(rig.athena.posts) == 2  # one POST per job, never a retry


async def test_a_swipe_delivered_twice_posts_once(rig: Rig) -> None:
    # a reader that sends one swipe as two frames (or a patient who swipes again while
    # the payment is processing): the second card arrives with the job in submitting
    from lobbypay_hw import api


    rig.athena.post_script = [HANG]
    rig.athena.after_hang = Approved("900123")
    await rig.engine.charge_start(start_cmd("j-1"))
    first, second, third = FakeCard(), FakeCard(), FakeCard()
    rig.engine.on_reader_event(api.CardRead(first))
    rig.engine.on_reader_event(api.CardRead(second))  # same loop turn, before the POST task
    await settle()
    rig.engine.on_reader_event(api.CardRead(third))  # while the POST is in flight
    assert second.wiped and third.wiped
    rig.athena.release.set()
    await until(lambda: rig.states("j-1")[-1] == "succeeded")
    assert first.wiped
    assert len(rig.athena.posts) == 1
    assert rig.states("j-1") == ["pending", "card_read", "submitting", "succeeded"]
