"""Money rules the engine applies at the card: expiry is judged on the card's month in US
time (a card is good through the last day of its month; the terminal's UTC date would
refuse it hours early every month's end)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from lobbypay.core.job import JobState

import tests.fakes.engine as te


class NovemberCard(te.FakeCard):
    """A card good through November 2026 (BankCard's rule on the date it is given)."""

    def is_expired(self, today: date) -> bool:
        return (today.year, today.month) > (2026, 11)


@pytest.mark.parametrize(("utc", "expired"), [
    ("2026-12-01T03:00:00+00:00", False),  # still Nov 30 in the US (Hawaii: 17:00)
    ("2026-12-01T09:59:00+00:00", False),  # 23:59 on Nov 30 in Honolulu
    ("2026-12-01T10:01:00+00:00", True),   # Dec 1 everywhere in the US
])
async def test_card_expiry_is_judged_on_the_us_date(tmp_path: Path, utc: str,
                                                   expired: bool) -> None:
    from datetime import datetime

    r = te.Rig(tmp_path / "state", clock=te.ManualClock(datetime.fromisoformat(utc)))
    await r.engine.start()
    try:
        r.athena.post_script = [te.HANG]
        await r.engine.charge_start(te.start_cmd("j-1"))
        await te.swipe(r, NovemberCard())
        state = r.engine.active_job.state  # type: ignore[union-attr]
        assert (state is JobState.PENDING) is expired
        if expired:
            assert any("xpired" in line for line in r.engine.screen)
    finally:
        r.athena.release.set()
        await r.close()


async def test_the_track_buffer_is_overwritten_after_the_post(tmp_path: Path) -> None:
    r = te.Rig(tmp_path / "state")
    await r.engine.start()
    try:
        await r.engine.charge_start(te.start_cmd("j-1"))
        card = await te.swipe(r)
        await te.until(lambda: r.engine.active_job is None)
        assert r.states("j-1")[-1] == "succeeded"
        (sent,) = r.athena.tracks_seen
        assert len(sent) == len(te.CANARY_TRACKS) and sent == bytearray(len(sent))
        assert card.wiped
    finally:
        await r.close()
