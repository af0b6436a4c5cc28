"""Fixtures for end-to-end tests: the agent, the athena simulator and the card reader pty
as separate real parts, plus the shared `mosquitto` broker fixture from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import AgentProcess, AthenaSimProcess, PtyReader


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def athena_sim(tmp_path: Path) -> Iterator[AthenaSimProcess]:
    sim = AthenaSimProcess(tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def pty_reader() -> Iterator[PtyReader]:
    r = PtyReader()
    yield r
    r.close()


@pytest.fixture
def agent(tmp_path: Path, mosquitto: Any, athena_sim: AthenaSimProcess,
          pty_reader: PtyReader) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path, mosquitto.port, athena_sim.info, pty_reader.path)
    yield a
    if a.proc is not None and a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()
