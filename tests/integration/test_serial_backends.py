"""Both asyncio serial back ends on real pty pairs: pyserial-asyncio-fast (what pip
installs) and pyserial-asyncio 0.6 (``serial_asyncio``: Debian's python3-serial-asyncio,
what the .deb depends on). The reader swipes, writes go out, unplug is seen, close
returns; with the fast module hidden the driver must fall back to ``serial_asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lobbypay_hw import _serial
from lobbypay_hw.api import CardRead, ReaderStatus
from lobbypay_hw.reader_serial import SerialReader

from tests.fakes.pty import EventLog, PtyPort, Replug

pytestmark = pytest.mark.pty

SWIPE = b"%B4111111111111111^DOE/JOHN^2812101000?;4111111111111111=28121010000?"
FAST = {"retry_base_s": 0.02, "retry_cap_s": 0.1}
BACKENDS = ["serial_asyncio_fast", "serial_asyncio"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name: str = request.param
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    if name == "serial_asyncio":
        # as on a Debian system: pyserial-asyncio-fast is not there at all
        monkeypatch.setitem(sys.modules, "serial_asyncio_fast", None)
    yield name


def test_the_expected_module_is_chosen(backend: str) -> None:
    assert _serial.transport_module().__name__ == backend


async def test_open_write_read_and_close(backend: str) -> None:
    port = PtyPort()
    got = bytearray()
    try:
        link = await _serial.open_port(port.path, 9600, got.extend)
        assert type(link.transport).__module__.startswith(backend)
        link.write(b"\xfe\x01hello")
        assert (await port.wait_for(lambda b: b.endswith(b"hello"))).endswith(b"\xfe\x01hello")
        port.write(b"abc")
        async with asyncio.timeout(5):
            while bytes(got) != b"abc":
                await asyncio.sleep(0.01)
        await link.close()
        assert link.lost.done()
    finally:
        port.close()


async def test_reader_swipe_unplug_replug(backend: str, tmp_path: Path) -> None:
    link = tmp_path / "lobbypay-reader"
    replug = Replug(link)
    log = EventLog()
    port = replug.plug()
    reader = SerialReader(str(link), **FAST)
    task = asyncio.create_task(reader.run(log))

    def statuses() -> list[bool]:
        return [e.connected for e in log.of(ReaderStatus)]  # type: ignore[attr-defined]

    try:
        await log.wait_for(lambda ev: statuses() == [True])
        port.write(SWIPE + b"\r")
        await log.wait_for(lambda ev: len(log.of(CardRead)) == 1)
        replug.unplug()
        await log.wait_for(lambda ev: statuses() == [True, False])
        port = replug.plug()
        await log.wait_for(lambda ev: statuses() == [True, False, True])
        port.write(SWIPE + b"\r")
        await log.wait_for(lambda ev: len(log.of(CardRead)) == 2)
        assert [c.card.last4 for c in log.of(CardRead)] == ["1111", "1111"]  # type: ignore[attr-defined]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        replug.close()
