"""Leak audit: the paths by which card data could leave the process outside the card
code's own care (log text the agent did not write itself, Python's own crash output,
warnings, core files). Every test uses the canary PAN 4111111111111111."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lobbypay.shell.logsafe import redact

CANARY = "4111111111111111"
NAME = "SANDBOXTEST/JANE"
TRACKS = f"%B{CANARY}^{NAME}^3012101000000000000000?;{CANARY}=30121010000000000000?"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- logsafe.redact


@pytest.mark.parametrize("text", [
    f"name field ^{NAME}^ seen",                  # a track-1 name field on its own
    f"track lost its separator {CANARY}3012101000",  # PAN glued to expiry + service code
    f"x{CANARY}30121010000000000000?",
])
def test_redact_catches_name_fields_and_pans_glued_to_digits(text: str) -> None:
    out = redact(text)
    assert CANARY not in out and NAME not in out, out


def test_redact_keeps_ordinary_numbers() -> None:
    for text in ("epayment 90001 90002 90003 90004", "total 65.00", "at 2026-11-27 14:03:07",
                 "caret ^ alone"):
        assert redact(text) == text


# ---------------------------------------------------------------- Python's own output

_CRASH_SCRIPT = textwrap.dedent(f"""
    import asyncio, gc, resource, sys, threading, warnings
    from lobbypay.shell.logsafe import setup_logging, install_crash_hooks
    from lobbypay.app import no_core_dumps

    setup_logging("debug", sys.argv[1])
    install_crash_hooks()
    assert no_core_dumps()
    assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    PAN = "{CANARY}"
    TRACKS = "{TRACKS}"

    warnings.warn("a warning quoting " + TRACKS)

    t = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError("thread " + PAN)),
                         name="reader-thread")
    t.start(); t.join()

    class Finalizer:
        def __del__(self):
            raise ValueError("finalizer " + TRACKS)
    Finalizer()
    gc.collect()

    async def never_retrieved():
        async def boom():
            raise ValueError("task " + PAN)
        task = asyncio.get_running_loop().create_task(boom())
        await asyncio.sleep(0.01)
        del task
        gc.collect()
        await asyncio.sleep(0)
    asyncio.run(never_retrieved())
    gc.collect()

    def crash(card_text):
        raise RuntimeError("crash with " + card_text)
    crash(TRACKS)
""")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_python_crash_output_is_redacted_and_no_core_file(fmt: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'agent'}:{ROOT / 'drivers'}")
    env.pop("PYTHONWARNINGS", None)
    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), fmt], capture_output=True,
                          env=env, cwd=tmp_path, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out.decode(errors="replace")
    # every path really produced output ...
    for marker in (b"UserWarning", b"reader-thread", b"unraisable", b"never retrieved",
                   b"RuntimeError"):
        assert marker in out, (marker, out.decode(errors="replace"))
    assert b"[redacted]" in out
    # ... and none of it carries the card
    assert CANARY.encode() not in out, out.decode(errors="replace")
    assert NAME.encode() not in out
    assert not list(tmp_path.glob("core*"))


def test_the_unit_and_the_agent_both_turn_core_dumps_off() -> None:
    unit = (ROOT / "systemd" / "lobbypay.service").read_text()
    assert "LimitCORE=0" in unit
    app = (ROOT / "agent" / "lobbypay" / "app.py").read_text()
    assert "install_crash_hooks()" in app and "no_core_dumps()" in app
