"""The redelivery cache (app.Dispatcher): a redelivered command is answered with the same
reply from memory; the replies to reads are bounded by their bytes too, the replies to
commands that change something are not."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lobbypay import app

sys.path.insert(0, str(Path(__file__).parent))
import test_engine as te  # noqa: E402  (the engine test fakes: clock, athena, card)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[te.Rig]:
    r = te.Rig(tmp_path / "state")
    await r.engine.start()
    yield r
    await r.close()


def cmd(kind: str, request_id: str, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "type": kind, "request_id": request_id, **fields}).encode()


async def test_a_redelivered_read_gets_the_same_reply_after_the_state_changed(
        rig: te.Rig) -> None:
    d = app.Dispatcher(rig.engine, rig.journal)
    first = await d.handle(cmd("ping", "p-1"))
    await rig.engine.charge_start(te.start_cmd("j-1"))  # the state is not idle any more
    assert json.loads(await d.handle(cmd("ping", "p-2")))["state"] != \
        json.loads(first)["state"]
    assert await d.handle(cmd("ping", "p-1")) == first


async def test_reads_are_bounded_by_bytes_and_changes_are_kept(
        rig: te.Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "REPLY_CACHE_READ_BYTES", 4096)
    d = app.Dispatcher(rig.engine, rig.journal)
    start = cmd("charge.start", "s-1", job_id="j-1", patient_id="60178",
                claims=[{"claim_id": "5569", "amount": "40.00"}])
    started = await d.handle(start)
    assert json.loads(started)["state"] == "pending"
    first = await d.handle(cmd("ping", "p-0"))
    for i in range(1, 200):
        await d.handle(cmd("ping", f"p-{i}"))
    cached = [v for v in d._reads.values() if isinstance(v, bytes)]
    assert sum(map(len, cached)) <= 4096 and 1 < len(cached) < 199
    assert d._read_bytes == sum(map(len, cached))
    # the oldest read is gone: its redelivery runs again (a read: nothing is done twice)
    assert "p-0" not in d._reads
    again = await d.handle(cmd("ping", "p-0"))
    assert json.loads(again)["state"]["job_id"] == json.loads(first)["state"]["job_id"]
    # the charge.start reply is still answered from memory, byte for byte
    assert "s-1" in d._replies and await d.handle(start) == started


async def test_a_failed_read_is_not_cached(rig: te.Rig) -> None:
    d = app.Dispatcher(rig.engine, rig.journal)
    calls = 0

    def boom() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise RuntimeError("inside")

    rig.engine.state = boom  # type: ignore[method-assign]
    for _ in range(2):
        reply = json.loads(await d.handle(cmd("ping", "p-1")))
        assert reply["error"]["code"] == "internal_error"
    assert calls == 2 and not d._reads and d._read_bytes == 0
