"""A wall-clock jump (NTP step, a dead RTC battery fixed at boot) while jobs run. The
engine times deadlines and waits with the monotonic clock and uses the wall clock only
for event timestamps and athena's receipt times. Stepping the system clock of the test
machine is not an option (it needs root and disturbs everything else on the box), so
this drives the real Engine and Journal with an injected clock whose wall time jumps
while monotonic time runs on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import tests.fakes.engine as te

DAY = 86400.0


class JumpClock(te.ManualClock):
    def jump(self, seconds: float) -> None:
        """The wall clock steps; monotonic time does not."""
        self._now += timedelta(seconds=seconds)


@pytest.mark.parametrize("jump", [DAY, -DAY, 3600.0, -3600.0])
async def test_a_wall_clock_jump_neither_expires_nor_extends_a_pending_job(
        tmp_path: Path, jump: float) -> None:
    r = te.Rig(tmp_path / "state", clock=JumpClock())
    await r.engine.start()
    try:
        await r.engine.charge_start(te.start_cmd(deadline_s=30))
        await r.clock.advance(10)
        r.clock.jump(jump)
        await r.clock.advance(19)
        assert r.states("j-1") == ["pending"]  # not expired early by a forward jump
        await r.clock.advance(2)
        assert r.states("j-1") == ["pending", "expired"]  # nor kept by a backward one
    finally:
        await r.close()


@pytest.mark.parametrize("jump", [3600.0, DAY, -3600.0, -DAY])
async def test_a_wall_clock_jump_neither_settles_nor_holds_an_unknown_outcome(
        tmp_path: Path, jump: float) -> None:
    """The not_charged verdict needs reconcile_settle_s of real time after the
    submission; a wall clock stepping forward must not count as that time passing, and
    one stepping back must not hold the job in ``unknown`` for the size of the step."""
    r = te.Rig(tmp_path / "state", clock=JumpClock())
    await r.engine.start()
    try:
        r.athena.receipts_script = [[]] * 50
        await te.go_unknown(r)
        r.clock.jump(jump)
        # real time: well short of the 120 s settle time, many reads
        for _ in range(10):
            await r.clock.advance(10)
        assert r.states("j-1")[-1] == "unknown", r.states("j-1")
        for _ in range(10):  # and after it: two settled misses end it
            await r.clock.advance(10)
            await te.settle()
        assert r.states("j-1")[-1] == "failed"
        assert r.events("j-1")[-1]["error"]["code"] == "not_charged"
    finally:
        await r.close()
