"""AthenaClient against the athena simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from lobbypay.core import reconcile as rc
from lobbypay.core.athena import (
    Approved,
    AthenaAuthError,
    AthenaBadResponse,
    AthenaError,
    AthenaRejected,
    AthenaThrottled,
    AthenaUnavailable,
    Declined,
    NotFound,
    OutcomeUnknown,
)
from lobbypay.core.money import Cents
from lobbypay.shell.athena import AthenaClient
from lobbypay.sim.athena import AthenaSim

CANARY_PAN = "4111111111111111"
PRACTICE = "195900"


def track(pan: str = CANARY_PAN, exp: str = "3012") -> str:
    return f"%B{pan}^SANDBOXTEST/GARY^{exp}1010000000000?;{pan}={exp}1010000000000?"


def claim_form(pan: str = CANARY_PAN, **over: str) -> dict[str, str]:
    form = {
        "departmentid": "1",
        "trackdata": track(pan),
        "otheramount": "40.00",
        "claimpayment": json.dumps([{"5569": "40.00"}]),
    }
    form.update(over)
    return form


class ShiftClock:
    """Real time, with the monotonic clock shiftable and the wall clock settable."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.wall: datetime | None = None

    def now(self) -> datetime:
        return self.wall or datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def sim() -> Iterator[AthenaSim]:
    with AthenaSim() as s:
        yield s


MakeClient = Callable[..., AthenaClient]


@pytest.fixture
async def make_client(sim: AthenaSim) -> AsyncIterator[MakeClient]:
    clients: list[AthenaClient] = []

    def make(**kw: Any) -> AthenaClient:
        kw.setdefault("timeout_s", 3.0)
        kw.setdefault("rate_limit_rps", None)
        base = kw.pop("base_url", sim.base_url)
        client_id = kw.pop("client_id", sim.client_id)
        secret = kw.pop("client_secret", sim.client_secret)
        client = AthenaClient(base, PRACTICE, client_id, secret, **kw)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


def api_calls(sim: AthenaSim, endpoint: str) -> list[dict[str, Any]]:
    return [c for c in sim.calls if c["endpoint"] == endpoint]


# ---------------------------------------------------------------- reads


async def test_reads_return_athena_json(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    assert await client.ping() is True
    (patient,) = await client.get_patient("60178", "1")
    assert patient["patientid"] == "60178"
    assert {g["providergroupid"] for g in patient["claimbalancedetails"]} == {10, 20}
    appt = await client.get_appointment("1001")
    assert appt["copay"]["insurancecopay"] == 25.0
    departments = await client.get_departments()
    assert [d["departmentid"] for d in departments] == ["1", "2", "5", "7"]
    receipts = await client.list_receipts("60178", "1")
    assert {r.epayment_id for r in receipts} == {"80001", "80002"}
    query = api_calls(sim, "patient")[0]["query"]
    assert query == {"showbalancedetails": "true", "departmentid": "1"}


async def test_each_call_sends_its_own_request_id(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    for _ in range(3):
        await client.ping()
    ids = [c["request_id"] for c in sim.calls]
    assert len(set(ids)) == len(ids) == 4  # token + 3 pings
    assert all(uuid.UUID(i).version == 4 for i in ids)


async def test_token_is_cached(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    for _ in range(5):
        await client.ping()
    assert sim.token_requests == 1
    (token_call,) = api_calls(sim, "token")
    assert token_call["form"] == {
        "grant_type": "client_credentials",
        "scope": "athena/service/Athenanet.MDP.*",
    }


async def test_concurrent_callers_share_one_token_fetch(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    client = make_client()
    results = await asyncio.gather(*(client.get_patient("60178", "1") for _ in range(20)))
    assert len(results) == 20
    assert sim.token_requests == 1


async def test_token_refreshed_early(sim: AthenaSim, make_client: MakeClient) -> None:
    clock = ShiftClock()
    client = make_client(clock=clock)
    await client.ping()
    clock.offset = 3600 - 61  # just before the refresh margin
    await client.ping()
    assert sim.token_requests == 1
    clock.offset = 3600 - 59  # inside the margin: a new token, though the old one still works
    await client.ping()
    assert sim.token_requests == 2
    assert all(c["status"] == 200 for c in sim.calls)  # never a 401


async def test_failed_early_refresh_keeps_the_valid_token(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    clock = ShiftClock()
    client = make_client(clock=clock)
    await client.ping()
    clock.offset = 3600 - 30
    sim.add_fault("status", endpoint="token", status=503)
    assert await client.ping() is True
    assert sim.token_requests == 2


async def test_401_on_get_fetches_one_new_token_and_retries_once(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    client = make_client()
    await client.ping()
    sim.expire_tokens()
    (patient,) = await client.get_patient("60178", "1")
    assert patient["patientid"] == "60178"
    assert [c["status"] for c in api_calls(sim, "patient")] == [401, 200]
    assert sim.token_requests == 2


async def test_second_401_on_get_is_an_auth_error(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    sim.add_fault("status", endpoint="patient", status=401, count=5)
    with pytest.raises(AthenaAuthError) as info:
        await client.get_patient("60178", "1")
    assert info.value.status == 401
    assert len(api_calls(sim, "patient")) == 2
    assert sim.token_requests == 2


async def test_throttle_honours_retry_after(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    await client.ping()
    sim.add_fault("throttle", endpoint="patient", retry_after=0.4)
    started = time.monotonic()
    await client.get_patient("60178", "1")
    assert time.monotonic() - started >= 0.4
    assert [c["status"] for c in api_calls(sim, "patient")] == [429, 200]


async def test_over_qps_403_is_throttling(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    sim.add_fault("over_qps", endpoint="receipts", retry_after=0.1, count=2)
    receipts = await client.list_receipts("60178", "1")
    assert len(receipts) == 2
    assert [c["status"] for c in api_calls(sim, "receipts")] == [403, 403, 200]


async def test_throttle_without_retry_after_backs_off(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    client = make_client()
    await client.ping()
    sim.add_fault("over_qps", endpoint="ping", count=2)  # no Retry-After header
    started = time.monotonic()
    assert await client.ping() is True
    assert time.monotonic() - started >= 0.25 + 0.5  # jittered 0.25-0.5 s, then 0.5-1 s


async def test_throttle_longer_than_the_deadline_fails_fast(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    client = make_client(timeout_s=2.0)
    await client.ping()
    sim.add_fault("throttle", endpoint="ping", retry_after=30)
    started = time.monotonic()
    with pytest.raises(AthenaThrottled):
        await client.ping()
    assert time.monotonic() - started < 1.0


async def test_plain_403_is_not_retried(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    sim.add_fault("status", endpoint="patient", status=403)
    with pytest.raises(AthenaRejected) as info:
        await client.get_patient("60178", "1")
    assert info.value.status == 403
    assert len(api_calls(sim, "patient")) == 1


async def test_5xx_on_get_is_retried_a_little(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    sim.add_fault("status", endpoint="appointment", status=503, count=2)
    assert (await client.get_appointment("1001"))["appointmentid"] == "1001"
    assert [c["status"] for c in api_calls(sim, "appointment")] == [503, 503, 200]
    sim.add_fault("status", endpoint="appointment", status=500, count=10)
    with pytest.raises(AthenaUnavailable) as info:
        await client.get_appointment("1001")
    assert info.value.status == 500
    assert len(api_calls(sim, "appointment")) == 3 + 3


async def test_not_found_and_rejections(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(NotFound) as nf:
        await client.get_patient("99999", "1")
    assert nf.value.status == 404
    with pytest.raises(NotFound):
        await client.get_appointment("424242")
    with pytest.raises(AthenaRejected) as rej:
        await client.list_receipts("60178", "99")
    assert rej.value.status == 400
    with pytest.raises(AthenaRejected) as bad_dept:
        await client.get_patient("60178", "99")
    assert bad_dept.value.status == 400
    assert "departmentid" in bad_dept.value.message.lower()


async def test_bad_ids_are_refused_before_sending(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    for bad in ["../60178", "60178?x=1", "", "a/b", "6" * 40]:
        with pytest.raises(NotFound):
            await client.get_patient(bad, "1")
        with pytest.raises(NotFound):
            await client.collect_payment(bad, claim_form())
    with pytest.raises(NotFound):
        await client.get_patient("60178", "1/../2")
    assert sim.calls == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "html", "endpoint": "patient", "status": 200}, AthenaBadResponse),
        ({"kind": "body", "endpoint": "patient", "body": "{garbage"}, AthenaBadResponse),
        ({"kind": "body", "endpoint": "patient", "body": '{"patientid": 1}'}, AthenaBadResponse),
        ({"kind": "body", "endpoint": "patient", "body": "[]"}, NotFound),
        ({"kind": "body", "endpoint": "patient", "body": "[1, 2]"}, AthenaBadResponse),
        ({"kind": "html", "endpoint": "patient", "status": 400}, AthenaBadResponse),
        ({"kind": "html", "endpoint": "patient", "status": 502, "count": 5}, AthenaUnavailable),
        ({"kind": "body", "endpoint": "patient", "body": '"x"', "status": 418}, AthenaRejected),
    ],
)
async def test_wrong_shapes_give_typed_errors(
    sim: AthenaSim, make_client: MakeClient, fault: dict[str, Any], error: type[AthenaError]
) -> None:
    client = make_client()
    sim.add_fault(**fault)
    with pytest.raises(error) as info:
        await client.get_patient("60178", "1")
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("endpoint", "body", "call"),
    [
        ("receipts", "{}", "list_receipts"),
        ("receipts", '{"receipts": [{"epaymentid": 1, "amount": "x"}]}', "list_receipts"),
        ("departments", "[1]", "get_departments"),
        ("appointment", "[{}, {}]", "get_appointment"),
        ("ping", "[]", "ping"),
    ],
)
async def test_wrong_shapes_on_other_reads(
    sim: AthenaSim, make_client: MakeClient, endpoint: str, body: str, call: str
) -> None:
    client = make_client()
    sim.add_fault("body", endpoint=endpoint, body=body)
    args = {
        "list_receipts": ("60178", "1"),
        "get_departments": (),
        "get_appointment": ("1001",),
        "ping": (),
    }[call]
    with pytest.raises(AthenaBadResponse):
        await getattr(client, call)(*args)


async def test_departments_cached_and_paged(make_client: MakeClient) -> None:
    with AthenaSim(page_size=1) as paged:
        clock = ShiftClock()
        client = make_client(
            base_url=paged.base_url,
            client_id=paged.client_id,
            client_secret=paged.client_secret,
            clock=clock,
        )
        first = await client.get_departments()
        assert [d["departmentid"] for d in first] == ["1", "2", "5", "7"]
        assert len(api_calls(paged, "departments")) == 4
        first[0]["name"] = "mutated by caller"
        again = await client.get_departments()
        assert again[0]["name"] != "mutated by caller"
        assert len(api_calls(paged, "departments")) == 4
        clock.offset = 3601
        await client.get_departments()
        assert len(api_calls(paged, "departments")) == 8


async def test_rate_limit_spaces_calls(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client(rate_limit_rps=20.0)
    await client.ping()
    started = time.monotonic()
    await asyncio.gather(*(client.ping() for _ in range(30)))
    # burst of 20 (one of them spent above), then 20/s
    assert time.monotonic() - started >= 0.5


# ---------------------------------------------------------------- the token endpoint


async def test_token_lockout_is_remembered(sim: AthenaSim, make_client: MakeClient) -> None:
    clock = ShiftClock()
    client = make_client(clock=clock)
    sim.add_fault("token_lockout", seconds=0.3, retry_after=2)
    with pytest.raises(AthenaThrottled):
        await client.ping()
    assert sim.token_requests == 1
    for _ in range(3):  # fail fast, without asking athena again
        with pytest.raises(AthenaThrottled):
            await client.ping()
    assert sim.token_requests == 1
    with pytest.raises(AthenaUnavailable) as post:
        await client.collect_payment("60178", claim_form())
    assert isinstance(post.value, AthenaThrottled) and "not sent" in post.value.message
    assert sim.post_count("60178") == 0
    await asyncio.sleep(0.35)  # the sim's lockout is over; ours (2 s + slack) is not
    with pytest.raises(AthenaThrottled):
        await client.ping()
    clock.offset = 3.1
    assert await client.ping() is True
    assert sim.token_requests == 2


async def test_token_lockout_without_retry_after_lasts_the_minute(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    clock = ShiftClock()
    clock.wall = datetime(2026, 11, 27, 14, 0, 50, tzinfo=UTC)
    client = make_client(clock=clock)
    sim.add_fault("token_lockout", seconds=0.2)
    with pytest.raises(AthenaThrottled):
        await client.ping()
    await asyncio.sleep(0.25)
    clock.offset = 9.0  # 14:00:59 by athena's clock: still locked
    with pytest.raises(AthenaThrottled):
        await client.ping()
    assert sim.token_requests == 1
    clock.offset = 11.5  # past the minute and our one-second slack
    assert await client.ping() is True


async def test_client_side_token_budget(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client(token_requests_per_minute=2)
    await client.ping()
    sim.expire_tokens()
    await client.ping()
    sim.expire_tokens()
    with pytest.raises(AthenaThrottled):
        await client.ping()
    assert sim.token_requests == 2


async def test_bad_credentials(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client(client_secret="wrong-secret-value")  # noqa: S106
    with pytest.raises(AthenaAuthError) as info:
        await client.ping()
    assert "wrong-secret-value" not in str(info.value)
    with pytest.raises(AthenaUnavailable) as post:
        await client.collect_payment("60178", claim_form())
    assert "not sent" in post.value.message
    assert sim.post_count("60178") == 0


async def test_unreachable_athena(make_client: MakeClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(AthenaUnavailable):
        await client.ping()
    with pytest.raises(AthenaUnavailable) as post:
        await client.collect_payment("60178", claim_form())
    assert type(post.value) is AthenaUnavailable


async def test_closed_client_refuses(make_client: MakeClient) -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(AthenaUnavailable):
        await client.ping()
    with pytest.raises(AthenaUnavailable):
        await client.collect_payment("60178", claim_form())


def test_httpx_loggers_pinned(sim: AthenaSim) -> None:
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    AthenaClient(sim.base_url, PRACTICE, sim.client_id, sim.client_secret)
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING


# ---------------------------------------------------------------- the POST


async def test_approved_declined_duplicate(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    result = await client.collect_payment("60178", claim_form())
    assert isinstance(result, Approved) and result.epayment_id == "90001"
    assert sim.claim_balance("5569") == "0.00"
    dup = await client.collect_payment(
        "60178", claim_form(claimpayment=json.dumps([{"5570": "25.50"}]), otheramount="25.50")
    )
    assert isinstance(dup, Approved)
    again = await client.collect_payment(
        "60178", {"departmentid": "1", "trackdata": track(), "otheramount": "25.50"}
    )
    assert isinstance(again, Declined) and "duplicate" in again.errortext.lower()
    allowed = await client.collect_payment(
        "60178",
        {
            "departmentid": "1",
            "trackdata": track(),
            "otheramount": "25.50",
            "allowduplicatepayments": "true",
        },
    )
    assert isinstance(allowed, Approved)
    declined = await client.collect_payment(
        "60179",
        {
            "departmentid": "1",
            "trackdata": track("4000000000000002"),
            "copayamount": "30.00",
            "appointmentid": "1002",
        },
    )
    assert isinstance(declined, Declined) and declined.errortext.startswith("Declined")


async def test_rejection_carries_missing_fields(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(AthenaRejected) as info:
        await client.collect_payment("60178", {"trackdata": track(), "otheramount": "1.00"})
    assert info.value.missing_fields == ("departmentid",)
    assert info.value.status == 400
    with pytest.raises(AthenaRejected) as copay:
        await client.collect_payment(
            "60179", {"departmentid": "1", "trackdata": track(), "copayamount": "30.00"}
        )
    assert copay.value.missing_fields == ("appointmentid",)
    with pytest.raises(AthenaRejected):
        await client.collect_payment("60178", {"departmentid": "1", "trackdata": 5})  # type: ignore[dict-item]
    assert sim.post_count("60178") == 1


POST_OUTCOMES: list[tuple[str, dict[str, Any] | None, type[Any], bool]] = [
    # (case, fault, result or error, was the card charged?)
    ("approved", None, Approved, True),
    ("declined", {"kind": "decline_next"}, Declined, False),
    ("rejected 400", {"kind": "echo_error"}, AthenaRejected, False),
    ("500", {"kind": "status", "endpoint": "collectpayment", "status": 500}, OutcomeUnknown, False),
    (
        "502 after charging",
        {"kind": "status", "endpoint": "collectpayment", "status": 502, "apply": True},
        OutcomeUnknown,
        True,
    ),
    (
        "429",
        {"kind": "throttle", "endpoint": "collectpayment", "retry_after": 0},
        AthenaThrottled,
        False,
    ),
    (
        "403 over qps",
        {"kind": "over_qps", "endpoint": "collectpayment", "retry_after": 0},
        AthenaThrottled,
        False,
    ),
    (
        "403 plain",
        {"kind": "status", "endpoint": "collectpayment", "status": 403},
        AthenaRejected,
        False,
    ),
    ("401", {"kind": "expire_tokens"}, AthenaUnavailable, False),
    (
        "html 200",
        {"kind": "html", "endpoint": "collectpayment", "status": 200},
        OutcomeUnknown,
        False,
    ),
    (
        "garbage 200",
        {"kind": "body", "endpoint": "collectpayment", "body": "{garb"},
        OutcomeUnknown,
        False,
    ),
    (
        "empty array",
        {"kind": "body", "endpoint": "collectpayment", "body": "[]"},
        OutcomeUnknown,
        False,
    ),
    ("timeout, charged", {"kind": "slow", "seconds": 3.0, "apply": True}, OutcomeUnknown, True),
    ("timeout, not charged", {"kind": "slow", "seconds": 3.0}, OutcomeUnknown, False),
    ("dropped, charged", {"kind": "drop", "apply": True}, OutcomeUnknown, True),
    ("dropped, not charged", {"kind": "drop"}, OutcomeUnknown, False),
]


@pytest.mark.parametrize(
    ("case", "fault", "outcome", "charged"), POST_OUTCOMES, ids=[o[0] for o in POST_OUTCOMES]
)
async def test_post_is_sent_once_and_never_leaks_the_card(
    sim: AthenaSim,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    case: str,
    fault: dict[str, Any] | None,
    outcome: type[Any],
    charged: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(timeout_s=1.5)  # generous for a loaded CI box; slow faults wait 3 s
    await client.ping()  # token in hand, so the POST is the only thing left to time out
    if fault is not None:
        sim.add_fault(**fault)
    started = client.server_clock.now(time.monotonic())  # from the sim's Date headers
    assert started is not None
    got: object
    try:
        got = await client.collect_payment("60178", claim_form())
    except AthenaError as exc:
        got = exc
    ended = client.server_clock.now(time.monotonic())
    assert ended is not None
    assert type(got) is outcome, repr(got)
    assert sim.post_count("60178") == 1, "the POST must be sent exactly once"

    # Reconciliation from receipts finds the charge iff there was one.
    receipts = await client.list_receipts("60178", "1")
    decision = rc.decide(rc.Attempt("j", Cents(4000), "1111", started.lo, ended.hi), receipts,
                         settled=True)
    found = decision.receipt if isinstance(decision, rc.Found) else None
    assert (found is not None) is charged
    if isinstance(got, Approved):
        assert found is not None and found.epayment_id == got.epayment_id
    assert found is None or found.epayment_id != "80001"  # the older $40 receipt is not ours
    await asyncio.sleep(0)
    assert sim.post_count("60178") == 1  # nothing was retried in the background either

    # The card appears nowhere: not in logs, not in the exception, not in the sim's record.
    texts = [json.dumps(sim.calls)]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    if isinstance(got, AthenaError):
        texts += [
            str(got),
            repr(got),
            repr(got.args),
            got.message,
            getattr(got, "detailed", None) or "",
        ]
        assert got.__cause__ is None
        assert not isinstance(got.__context__, httpx.HTTPError)
    else:
        texts.append(repr(got))
    blob = "\n".join(texts)
    assert CANARY_PAN not in blob
    assert "SANDBOXTEST/GARY" not in blob
    assert track() not in blob


async def test_401_on_post_refreshes_for_next_time(sim: AthenaSim, make_client: MakeClient) -> None:
    client = make_client()
    await client.ping()
    sim.expire_tokens()
    with pytest.raises(AthenaUnavailable) as info:
        await client.collect_payment("60178", claim_form())
    assert info.value.status == 401 and type(info.value) is AthenaUnavailable
    assert sim.post_count("60178") == 1
    result = await client.collect_payment("60178", claim_form())
    assert isinstance(result, Approved)
    assert sim.token_requests == 2


async def test_token_failure_before_post_means_not_sent(
    sim: AthenaSim, make_client: MakeClient
) -> None:
    client = make_client()
    sim.add_fault("status", endpoint="token", status=503)
    with pytest.raises(AthenaUnavailable) as info:
        await client.collect_payment("60178", claim_form())
    assert type(info.value) is AthenaUnavailable and "not sent" in info.value.message
    assert sim.post_count("60178") == 0


# ---------------------------------------------------------------- the track as a buffer

async def test_a_bytearray_track_is_posted_as_the_form_would_be(
        sim: AthenaSim, make_client: MakeClient) -> None:
    """The engine hands the track over as a bytearray (it can be overwritten, a str
    cannot); the client writes the body itself: athena must read the same form."""
    client = make_client()
    # a declined card first: athena parsed the track and said no
    declined: dict[str, str | bytearray] = dict(claim_form(pan="4000000000000002"))
    declined["trackdata"] = bytearray(str(declined["trackdata"]).encode("ascii"))
    assert isinstance(await client.collect_payment("60178", declined), Declined)
    form: dict[str, str | bytearray] = dict(claim_form())
    form["trackdata"] = bytearray(str(form["trackdata"]).encode("ascii"))
    got = await client.collect_payment("60178", form)
    assert isinstance(got, Approved)
    assert sim.post_count("60178") == 2


def test_form_body_is_standard_form_encoding() -> None:
    from urllib.parse import parse_qsl, urlencode

    from lobbypay.shell.athena_form import form_body

    form = {"departmentid": "1", "claimpayment": json.dumps([{"5569": "40.00"}]),
            "note": "a b&c=d/é~", "trackdata": track(CANARY_PAN)}
    body = form_body(form)
    assert parse_qsl(body.decode("ascii"), strict_parsing=True) == list(form.items())
    assert bytes(body) == urlencode(form).encode("ascii")
    as_buffer = form_body({**form, "trackdata": bytearray(form["trackdata"].encode())})
    assert as_buffer == body
