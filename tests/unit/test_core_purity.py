"""lobbypay.core stays pure: importing all of it loads no I/O or event-loop library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lobbypay.core

FORBIDDEN = ("asyncio", "sqlite3", "httpx", "paho", "aiomqtt", "serial", "evdev", "socket")
AGENT = Path(lobbypay.core.__file__).resolve().parents[2]

# Imports every module of lobbypay.core (found on disk, so new modules are covered too)
# and prints which forbidden top-level modules got loaded.
PROBE = """
import importlib, json, pkgutil, sys
{pre}
import lobbypay.core as core
names = sorted(m.name for m in pkgutil.iter_modules(core.__path__))
for name in names:
    importlib.import_module("lobbypay.core." + name)
forbidden = {forbidden!r}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({{"modules": names, "loaded": loaded}}))
"""


def _probe(pre: str = "") -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(AGENT)
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        # -S: no site-packages either, so a third-party import in core fails here too
        [sys.executable, "-S", "-c", PROBE.format(pre=pre, forbidden=FORBIDDEN)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_core_imports_no_io_library() -> None:
    result = _probe()
    assert {"money", "balance", "plan", "errors", "commands"} <= set(result["modules"])
    assert result["loaded"] == []


def test_the_probe_sees_a_forbidden_import() -> None:
    # Proof the check above can fail: the same probe reports a module loaded beside core.
    result = _probe("import socket, sqlite3")
    assert {"socket", "sqlite3"} <= set(result["loaded"])
