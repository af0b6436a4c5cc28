"""Card data in athena's own text: text athena sends back about a payment (a decline's
``errortext``, an error body) is kept in job events, the journal and logs, so it must
not carry the card even when it quotes the cardholder name or number on their own,
outside the track syntax that ``clean_peer_text`` recognises. Real simulator on
127.0.0.1, canary PAN 4111111111111111."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from lobbypay.core.athena import AthenaRejected, Declined
from lobbypay.shell.athena import AthenaClient
from lobbypay.sim.athena import AthenaSim

CANARY = "4111111111111111"
NAME = "SANDBOXTEST/JANE"
TRACKS = f"%B{CANARY}^{NAME}^3012101000000000000000?;{CANARY}=30121010000000000000?"
FORM = {"departmentid": "1", "trackdata": TRACKS, "otheramount": "40.00",
        "claimpayment": json.dumps([{"5569": "40.00"}])}
# how a processor might quote the card back: the name reordered, the PAN spaced out
QUOTES = f"card {CANARY} of {NAME} (JANE SANDBOXTEST) refused"


@pytest.fixture
def sim() -> Iterator[AthenaSim]:
    with AthenaSim() as s:
        yield s


@pytest.fixture
async def client(sim: AthenaSim) -> AsyncIterator[AthenaClient]:
    c = AthenaClient(sim.base_url, "195900", sim.client_id, sim.client_secret,
                     timeout_s=3.0, rate_limit_rps=None)
    yield c
    await c.aclose()


def assert_clean(text: str) -> None:
    for needle in (CANARY, NAME, "SANDBOXTEST", "JANE"):
        assert needle not in text, (needle, text)


async def test_decline_text_quoting_the_card_is_masked(sim: AthenaSim,
                                                       client: AthenaClient) -> None:
    sim.add_fault("body", endpoint="collectpayment", status=200,
                  body=json.dumps([{"success": "false", "errortext": QUOTES}]))
    got = await client.collect_payment("60178", FORM)
    assert isinstance(got, Declined)
    assert got.errortext.startswith("card [redacted]") and got.errortext.endswith("refused")
    assert_clean(got.errortext)
    assert_clean(repr(got))


async def test_error_body_quoting_the_card_is_masked(sim: AthenaSim,
                                                     client: AthenaClient) -> None:
    sim.add_fault("body", endpoint="collectpayment", status=400,
                  body=json.dumps({"error": QUOTES, "detailedmessage": f"holder {NAME}"}))
    with pytest.raises(AthenaRejected) as info:
        await client.collect_payment("60178", FORM)
    exc = info.value
    for text in (str(exc), repr(exc), exc.message, exc.detailed or ""):
        assert_clean(text)
    assert "refused" in exc.message
    assert sim.post_count("60178") == 1
