"""Shared fixtures for every test tier. Keep this file small; fakes live in tests/fakes/.

mosquitto
    A fresh real broker (``tests.fakes.mosquitto.Mosquitto``) on a free 127.0.0.1 port,
    anonymous, with persistence. ``.host``, ``.port``, ``.stop()``, ``.start()`` (same
    port, sessions kept), ``.restart()``, ``.kill()``, ``.pause()``/``.resume()``.
mosquitto_factory
    ``mosquitto_factory(users={...}, tls=tls_files, require_certificate=True)`` for
    password and TLS brokers; every broker it made is killed at teardown.
tls_files
    trustme CA + server cert (127.0.0.1, localhost) + client cert, as PEM files.
unique_tid
    A terminal id no other test uses (topics never collide, even on a shared broker).

A missing mosquitto binary skips broker tests locally and FAILS them under ``CI=true``.
Tests that use a broker fixture get the ``broker`` marker automatically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.mosquitto import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    Mosquitto,
    TlsFiles,
    make_tls_files,
    mosquitto_available,
    passwd_available,
)

_BROKER_FIXTURES = {"mosquitto", "mosquitto_factory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI=true (apt-get install mosquitto)")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        if not mosquitto_available():
            _missing(f"mosquitto ({MOSQUITTO})")
        if options.get("users") and not passwd_available():
            _missing(f"mosquitto_passwd ({MOSQUITTO_PASSWD})")
        broker = Mosquitto(tmp_path / f"broker{len(brokers)}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def unique_tid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
