"""Fixtures for the proof suite (docs/RELIABILITY.md): a shared broker + athena simulator
per module, and the ``slow`` gate (long tests run only with LOBBYPAY_SLOW=1)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.mosquitto import mosquitto_available
from tests.proof.rig import Parts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_ok = os.environ.get("LOBBYPAY_SLOW") == "1"
    for item in items:
        if "tests/proof/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("slow") and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="long run: set LOBBYPAY_SLOW=1"))


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    if not mosquitto_available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mosquitto is required under CI=true")
        pytest.skip("mosquitto not installed")
    root: Path = tmp_path_factory.mktemp("proof")
    with Parts.up(root) as p:
        yield p
