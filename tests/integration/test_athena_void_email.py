"""AthenaClient.void_payment / email_receipt against the athena simulator over real HTTP
(protocol 10; field notes section 4): the void, its settlement cut-off and refusal switch,
both undocumented answer forms, lost answers, and the emailed receipt."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lobbypay.core.athena import (
    Approved,
    AthenaRejected,
    AthenaUnavailable,
    OutcomeUnknown,
    parse_action_result,
)
from lobbypay.shell.athena import AthenaClient
from lobbypay.sim.athena import AthenaSim
from lobbypay.sim.faults import VOID_REFUSED_TEXT
from lobbypay.sim.rules import SETTLED_TEXT
from lobbypay.sim.world import EASTERN

PRACTICE = "195900"
PAN = "4111111111111111"
TRACK = f"%B{PAN}^SANDBOXTEST/GARY^30121010000000000?;{PAN}=30121010000000000?"


class WallClock:
    """The simulator's clock: settable, so the 8 p.m. Eastern cut-off can be crossed."""

    def __init__(self) -> None:
        # 10 a.m. Eastern on a weekday: well before the settlement
        self.at = datetime(2026, 11, 27, 10, 0, tzinfo=EASTERN).astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def sim(clock: WallClock) -> Iterator[AthenaSim]:
    with AthenaSim(now=clock) as s:
        yield s


@pytest.fixture
async def client(sim: AthenaSim) -> AsyncIterator[AthenaClient]:
    c = AthenaClient(sim.base_url, PRACTICE, sim.client_id, sim.client_secret, timeout_s=3.0,
                     rate_limit_rps=None)
    yield c
    await c.aclose()


async def pay(client: AthenaClient, patient: str = "60178", claim: str = "5569",
              amount: str = "40.00") -> str:
    form = {"departmentid": "1", "trackdata": TRACK, "otheramount": amount,
            "claimpayment": json.dumps([{claim: amount}])}
    result = await client.collect_payment(patient, form)
    assert isinstance(result, Approved)
    return result.epayment_id


def calls(sim: AthenaSim, endpoint: str) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["endpoint"] == endpoint]


async def test_void_restores_the_balance_and_is_done_once(sim: AthenaSim,
                                                          client: AthenaClient) -> None:
    eid = await pay(client)
    assert sim.claim_balance("5569") == "0.00"
    await client.void_payment("60178", eid)
    assert sim.voids == {eid: 1}
    assert sim.claim_balance("5569") == "40.00"
    (call,) = calls(sim, "voidpayment")
    assert call["method"] == "POST"
    assert call["path"] == f"/v1/{PRACTICE}/patients/60178/voidpayment/{eid}"
    assert call["form"] == {}
    # a second void of a voided payment: athena says success, nothing is voided twice
    await client.void_payment("60178", eid)
    assert sim.voids == {eid: 1}
    assert sim.claim_balance("5569") == "40.00"


async def test_void_answer_in_array_form_is_accepted(sim: AthenaSim,
                                                     client: AthenaClient) -> None:
    eid = await pay(client, patient="60181", claim="5590", amount="35.00")
    await client.void_payment("60181", eid)
    assert sim.voids == {eid: 1}


async def test_void_after_the_settlement_cutoff_is_refused(
        sim: AthenaSim, client: AthenaClient, clock: WallClock) -> None:
    eid = await pay(client)
    clock.at += timedelta(hours=10, minutes=1)  # 8:01 p.m. Eastern
    with pytest.raises(AthenaRejected) as ei:
        await client.void_payment("60178", eid)
    assert ei.value.message == SETTLED_TEXT
    assert sim.voids == {}
    assert sim.claim_balance("5569") == "0.00"


async def test_a_payment_after_8pm_settles_the_next_night(
        sim: AthenaSim, client: AthenaClient, clock: WallClock) -> None:
    clock.at += timedelta(hours=11)  # 9 p.m. Eastern
    eid = await pay(client)
    clock.at += timedelta(hours=2)  # 11 p.m.: tonight's batch has run without it
    await client.void_payment("60178", eid)
    assert sim.voids == {eid: 1}


async def test_settle_switch_and_refusal_switch(sim: AthenaSim, client: AthenaClient) -> None:
    eid = await pay(client)
    sim.add_fault("refuse_void")
    with pytest.raises(AthenaRejected) as ei:
        await client.void_payment("60178", eid)
    assert ei.value.message == VOID_REFUSED_TEXT
    assert sim.settle() == 1
    with pytest.raises(AthenaRejected) as ei:
        await client.void_payment("60178", eid)
    assert ei.value.message == SETTLED_TEXT
    assert sim.voids == {}


async def test_void_of_an_unknown_payment_is_refused(sim: AthenaSim, client: AthenaClient) -> None:
    with pytest.raises(AthenaRejected) as ei:
        await client.void_payment("60178", "424242")
    assert "could not be found" in ei.value.message


async def test_lost_void_answer_is_outcome_unknown_and_safe_to_resend(
        sim: AthenaSim, client: AthenaClient) -> None:
    eid = await pay(client)
    sim.add_fault("status", endpoint="voidpayment", status=502, apply=True)
    with pytest.raises(OutcomeUnknown):
        await client.void_payment("60178", eid)
    assert sim.voids == {eid: 1}  # it landed
    await client.void_payment("60178", eid)  # asking again: success, no second void
    assert sim.voids == {eid: 1}


async def test_unreachable_athena_is_unavailable() -> None:
    c = AthenaClient("http://127.0.0.1:9", PRACTICE, "id", "secret", timeout_s=1.0,
                     rate_limit_rps=None)
    try:
        with pytest.raises(AthenaUnavailable):
            await c.void_payment("60178", "90001")
        with pytest.raises(AthenaUnavailable):
            await c.email_receipt("60178", "90001", "jane@example.com")
    finally:
        await c.aclose()


@pytest.mark.parametrize("body", ['{"ok": true}', "[]", '"voided"', "{garbage",
                                  '[{"success": "true"}, {"success": "true"}]'])
async def test_any_other_2xx_void_answer_is_a_refusal(
        sim: AthenaSim, client: AthenaClient, body: str) -> None:
    eid = await pay(client)
    sim.add_fault("body", endpoint="voidpayment", body=body)
    with pytest.raises(AthenaRejected) as ei:
        await client.void_payment("60178", eid)
    assert "did not say it succeeded" in ei.value.message


def test_action_result_forms() -> None:
    assert parse_action_result({"success": "true"}, "void").ok
    assert parse_action_result([{"success": True}], "void").ok
    no = parse_action_result([{"success": "false", "errortext": "Too late"}], "void")
    assert (no.ok, no.reason) == (False, "Too late")
    err = parse_action_result({"error": "Invalid epaymentid."}, "void")
    assert (err.ok, err.reason) == (False, "Invalid epaymentid.")
    masked = parse_action_result({"success": "false", "errortext": "bad jane@example.com"},
                                 "receipt email", ("jane@example.com",))
    assert "jane@example.com" not in masked.reason


async def test_email_receipt_sends_the_address_to_athena_only(
        sim: AthenaSim, client: AthenaClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    eid = await pay(client)
    address = "canary.patient+r1@example.org"
    await client.email_receipt("60178", eid, address)
    assert sim.emails == [(eid, address)]
    (call,) = calls(sim, "receiptemail")
    assert call["path"] == f"/v1/{PRACTICE}/patients/60178/receipts/{eid}/email"
    assert call["form"] == {"email": "c***@example.org"}  # the simulator records it masked
    assert address not in caplog.text


async def test_the_email_body_that_went_on_the_wire_is_wiped(
        sim: AthenaSim, client: AthenaClient) -> None:
    """The address travels in a buffer of the client's own, zeroed once the exchange is
    over, answered or not (as a payment's card fields are)."""
    eid = await pay(client)
    sent: list[bytes | bytearray] = []
    real_send = client._pool.send  # noqa: SLF001 - the pool the receipt POST goes through

    async def recording(call: Any) -> Any:
        sent.append(call.body)
        assert b"canary.wire%40example.org" in bytes(call.body)  # on the wire as given
        return await real_send(call)

    client._pool.send = recording  # type: ignore[method-assign]  # noqa: SLF001
    await client.email_receipt("60178", eid, "canary.wire@example.org")
    sim.add_fault("status", endpoint="receiptemail", status=503)
    with pytest.raises(OutcomeUnknown):
        await client.email_receipt("60178", eid, "canary.wire@example.org")
    assert len(sent) == 2 and all(isinstance(b, bytearray) for b in sent)
    assert all(b == bytes(len(b)) for b in sent)


async def test_email_refusals(sim: AthenaSim, client: AthenaClient) -> None:
    eid = await pay(client)
    with pytest.raises(AthenaRejected) as ei:
        await client.email_receipt("60178", eid, "nobody@localhost")
    assert ei.value.message == "Invalid email address."
    with pytest.raises(AthenaRejected):
        await client.email_receipt("60178", "999999", "jane@example.com")
    sim.add_fault("status", endpoint="receiptemail", status=503)
    with pytest.raises(OutcomeUnknown):
        await client.email_receipt("60178", eid, "jane@example.com")
    assert sim.emails == []
