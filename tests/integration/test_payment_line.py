"""The payment POST's warm connection (shell/payline.py) against the athena simulator
behind TLS (a trustme test CA): the POST goes out on the connection opened before the
swipe, a warm connection the server closed is replaced before anything is sent, the POST
is sent once, and no other request ever uses that connection."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme
from lobbypay.core.athena import Approved
from lobbypay.shell import payline
from lobbypay.shell.athena import AthenaClient
from lobbypay.sim.athena import AthenaSim

PAN = "4111111111111111"
PATIENT = "60178"


def form(amount: str = "10.00") -> dict[str, str]:
    track = f"%B{PAN}^SANDBOXTEST/GARY^30121010000000000?;{PAN}=30121010000000000?"
    return {"departmentid": "1", "trackdata": track, "otheramount": amount,
            "claimpayment": json.dumps([{"5569": amount}])}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


def _client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def tls_sim(ca: trustme.CA) -> Iterator[AthenaSim]:
    with AthenaSim(ssl_context=_server_ctx(ca), idle_timeout_s=0.5) as s:
        yield s


@pytest.fixture
async def client(tls_sim: AthenaSim, ca: trustme.CA) -> AsyncIterator[AthenaClient]:
    c = AthenaClient(tls_sim.base_url, tls_sim.practice_id, tls_sim.client_id,
                     tls_sim.client_secret, rate_limit_rps=None, verify=_client_ctx(ca))
    try:
        yield c
    finally:
        await c.aclose()


async def _warmed(line: payline.PaymentLine, opened: int = 1) -> None:
    for _ in range(200):
        if line.opened >= opened and line._warm is not None:  # noqa: SLF001
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the payment connection was not opened")


def _ports(sim: AthenaSim, endpoint: str | None = None) -> list[Any]:
    return [c["peer_port"] for c in sim.calls if endpoint is None or c["endpoint"] == endpoint]


def _calls_on(sim: AthenaSim, port: int) -> list[str]:
    return [c["endpoint"] for c in sim.calls if c["peer_port"] == port]


async def test_the_post_goes_out_on_the_connection_opened_before_the_swipe(
        tls_sim: AthenaSim, client: AthenaClient) -> None:
    assert tls_sim.base_url.startswith("https://")
    await client.get_patient(PATIENT, "1")  # token + a pooled read connection
    line = client.payment_line
    assert line is not None
    client.warm_payment(30)
    await _warmed(line)
    warm = line._warm  # noqa: SLF001
    assert warm is not None and warm.bytes_sent == 0
    warm_port = warm.local_port
    assert _calls_on(tls_sim, warm_port) == []  # opened, nothing sent on it
    await client.get_patient(PATIENT, "1")  # a read while it is warm: not on it
    result = await client.collect_payment(PATIENT, form())
    assert isinstance(result, Approved)
    assert line.warm_taken == 1 and line.warm_replaced == 0
    assert line.opened == 1  # no handshake after the "swipe"
    assert _ports(tls_sim, "collectpayment") == [warm_port]
    await client.get_patient(PATIENT, "1")  # and none after it
    assert _calls_on(tls_sim, warm_port) == ["collectpayment"]
    assert tls_sim.post_count(PATIENT) == 1


async def test_a_warm_connection_the_server_closed_is_replaced_before_sending(
        tls_sim: AthenaSim, client: AthenaClient) -> None:
    await client.get_patient(PATIENT, "1")
    line = client.payment_line
    assert line is not None
    client.warm_payment(30)
    await _warmed(line)
    warm = line._warm  # noqa: SLF001
    assert warm is not None
    warm_port = warm.local_port
    # the simulator closes a connection idle for 0.5 s (a server's header timeout)
    for _ in range(300):
        if not warm.fit_for_request():
            break
        await asyncio.sleep(0.01)
    assert not warm.fit_for_request(), "the client did not notice the server's close"
    result = await client.collect_payment(PATIENT, form())
    assert isinstance(result, Approved)
    assert line.warm_replaced == 1 and line.warm_taken == 0
    assert line.opened == 2
    assert warm.bytes_sent == 0  # not a byte went out on the closed one
    assert _calls_on(tls_sim, warm_port) == []
    assert _ports(tls_sim, "collectpayment") == [line.last_port]
    assert tls_sim.post_count(PATIENT) == 1


async def test_a_stale_warm_connection_is_replaced_and_a_refresh_keeps_it_young(
        tls_sim: AthenaSim, client: AthenaClient, monkeypatch: pytest.MonkeyPatch) -> None:
    await client.get_patient(PATIENT, "1")
    line = client.payment_line
    assert line is not None
    monkeypatch.setattr(payline, "WARM_REFRESH_S", 0.1)
    client.warm_payment(30)
    await _warmed(line, opened=3)  # refreshed twice while "waiting for the card"
    first_ports = set(_ports(tls_sim))
    result = await client.collect_payment(PATIENT, form())
    assert isinstance(result, Approved)
    assert line.warm_taken == 1
    post_port = _ports(tls_sim, "collectpayment")
    assert post_port == [line.last_port] and line.last_port not in first_ports
    assert _calls_on(tls_sim, line.last_port) == ["collectpayment"]
    # and with a maximum age below the connection's, the POST opens a fresh one
    monkeypatch.setattr(payline, "WARM_REFRESH_S", 60.0)
    monkeypatch.setattr(payline, "WARM_MAX_AGE_S", 0.0)
    client.warm_payment(30)
    await _warmed(line, opened=line.opened + 1)
    stale_port = line._warm.local_port  # type: ignore[union-attr]  # noqa: SLF001
    result = await client.collect_payment(PATIENT, form("5.00"))
    assert isinstance(result, Approved)
    assert line.warm_replaced == 1
    assert _calls_on(tls_sim, stale_port) == []
    assert tls_sim.post_count(PATIENT) == 2


async def test_without_a_warm_up_the_post_opens_its_own_connection(
        tls_sim: AthenaSim, client: AthenaClient) -> None:
    await client.get_patient(PATIENT, "1")
    line = client.payment_line
    assert line is not None
    result = await client.collect_payment(PATIENT, form())
    assert isinstance(result, Approved)
    assert line.opened == 1 and line.warm_taken == 0
    assert _calls_on(tls_sim, line.last_port) == ["collectpayment"]


async def test_the_warm_up_ends_when_the_job_stops_waiting(
        tls_sim: AthenaSim, client: AthenaClient) -> None:
    line = client.payment_line
    assert line is not None
    client.warm_payment(0.2)
    await _warmed(line)
    for _ in range(100):
        if line._warm is None:  # noqa: SLF001
            break
        await asyncio.sleep(0.01)
    assert line._warm is None  # noqa: SLF001  (closed after hold_s)
    assert tls_sim.calls == []  # nothing was ever sent


async def test_closing_the_client_closes_the_warm_connection(
        tls_sim: AthenaSim, ca: trustme.CA) -> None:
    c = AthenaClient(tls_sim.base_url, tls_sim.practice_id, tls_sim.client_id,
                     tls_sim.client_secret, verify=_client_ctx(ca))
    line = c.payment_line
    assert line is not None
    c.warm_payment(30)
    await _warmed(line)
    await c.aclose()
    assert line._warm is None  # noqa: SLF001
    c.warm_payment(30)  # after close: nothing
    assert line._task is None  # noqa: SLF001


async def test_the_engine_warms_the_line_when_a_job_goes_pending(
        tls_sim: AthenaSim, client: AthenaClient, tmp_path: Any) -> None:
    """Through the engine: charge.start -> pending opens the connection; the swipe's
    POST goes out on it, once; the journal and the other requests never touch it."""
    from lobbypay.core.commands import ChargeStart, ClaimAmount
    from lobbypay.core.money import Cents
    from lobbypay.engine import Engine
    from lobbypay.shell.clock import SystemClock
    from lobbypay.shell.journal import Journal
    from lobbypay_hw import DISPLAYS, api
    from lobbypay_hw.tracks import parse_swipe

    journal = Journal(str(tmp_path / "state"))
    engine = Engine(
        terminal_id="t-warm", department_id="1", max_charge=Cents(500000),
        reconcile_settle_s=5, athena_timeout_s=5, athena=client, journal=journal,
        display=DISPLAYS["none"](path=None, baudrate=9600, rows=2, cols=16),
        clock=SystemClock(), outbox_wakeup=lambda: None, on_state_change=lambda: None,
        events_topic="lobbypay/v1/t-warm/events")
    line = client.payment_line
    assert line is not None
    try:
        await engine.start()
        cmd = ChargeStart(request_id="r1", job_id="j-warm", patient_id=PATIENT,
                          department_id=None, appointment_id=None, copay=Cents(0),
                          claims=(ClaimAmount("5569", Cents(700)),), allow_duplicate=True,
                          deadline_s=60, expires_at=None)
        reply = await engine.charge_start(cmd)
        assert reply["state"] == "pending"
        await _warmed(line)
        warm_port = line._warm.local_port  # type: ignore[union-attr]  # noqa: SLF001
        tracks = f"%B{PAN}^SANDBOXTEST/GARY^30121010000000000?;{PAN}=30121010000000000?"
        engine.on_reader_event(api.CardRead(parse_swipe(tracks.encode())))
        for _ in range(300):
            if engine.active_job is None:
                break
            await asyncio.sleep(0.01)
        assert journal.get_job("j-warm").state.value == "succeeded"  # type: ignore[union-attr]
        assert line.warm_taken == 1 and line.opened == 1
        assert _ports(tls_sim, "collectpayment") == [warm_port]
        assert _calls_on(tls_sim, warm_port) == ["collectpayment"]
        assert tls_sim.post_count(PATIENT) == 1
    finally:
        await engine.aclose()
        journal.close()


async def test_a_swipe_during_the_warm_up_takes_the_connection_being_opened(
        tls_sim: AthenaSim, client: AthenaClient) -> None:
    await client.get_patient(PATIENT, "1")
    line = client.payment_line
    assert line is not None
    client.warm_payment(30)
    for _ in range(3):
        await asyncio.sleep(0)  # the warm-up has started its TCP + TLS, not finished
    assert line._opening is not None  # noqa: SLF001
    result = await client.collect_payment(PATIENT, form("3.00"))
    assert isinstance(result, Approved)
    assert line.opened == 1 and line.warm_taken == 1  # no second handshake
    assert _calls_on(tls_sim, line.last_port) == ["collectpayment"]
    assert tls_sim.post_count(PATIENT) == 1
