"""Load, CI size (~10 s; the long run: `scripts/prove load --seconds 60`): commands as
fast as the agent answers them, real charges in the middle, every command answered,
RSS flat after warm-up."""

from __future__ import annotations

import json
import os

from tests.proof.load import run_load
from tests.proof.rig import Parts, QuietApp, wait_online

SECONDS = float(os.environ.get("LOBBYPAY_LOAD_SECONDS", "10"))
#: RSS growth allowed from the second to the last quarter of the run (allocator noise,
#: sqlite page cache); a leak of even 1 KiB per command would be ~1 MiB per 1000 commands.
RSS_GROWTH_LIMIT_KIB = 4096


async def test_command_storm_with_charges_in_the_middle(parts: Parts) -> None:
    run = parts.new_run("load")
    run.agent.log_level = "info"
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            stats = await run_load(run, app, SECONDS)
            print(json.dumps(stats.summary()))
            assert stats.unanswered == 0 and stats.problems == [], stats.summary()
            assert stats.answered > 200 * SECONDS / 10, stats.summary()
            assert stats.charges_done >= 1, stats.summary()
            assert set(stats.charge_states) == {"succeeded"}, stats.summary()
            assert stats.codes["terminal_busy"] > 0 and stats.codes["unknown_job"] > 0
            assert stats.rss_growth_kib() < RSS_GROWTH_LIMIT_KIB, stats.summary()
            assert run.agent.alive()
    finally:
        run.close()
