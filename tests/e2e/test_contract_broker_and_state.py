"""protocol.md's requirements on the broker, start-up and the retained state that no
other test pins down: an MQTT 3.1.1-only broker, an unusable state_dir, a state
published for every job state. Real agent process, real mosquitto, the athena
simulator over HTTP, a pty reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
    subprocess_env,
    validate_all,
)


class Mqtt311OnlyBroker:
    """A broker that speaks only MQTT 3.1.1: a TCP front for mosquitto that answers an
    MQTT 5 CONNECT the way a 3.1.1 server must (CONNACK return code 1, "unacceptable
    protocol level", then close) and passes 3.1.1 connections through untouched."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refused_v5 = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Mqtt311OnlyBroker:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        uw: asyncio.StreamWriter | None = None
        try:
            head = await r.readexactly(1)
            raw_len, length, mult = b"", 0, 1
            while True:
                b = await r.readexactly(1)
                raw_len += b
                length += (b[0] & 0x7F) * mult
                mult *= 128
                if not b[0] & 0x80:
                    break
            body = await r.readexactly(length)
            if body[6] != 4:  # protocol level after the "MQTT" name: 4 = 3.1.1
                self.refused_v5 += 1
                w.write(b"\x20\x02\x00\x01")
                await w.drain()
                return
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            uw.write(head + raw_len + body)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError, ConnectionError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(r, uw), pipe(ur, w))
        except (asyncio.IncompleteReadError, OSError, ConnectionError):
            pass
        finally:
            w.close()
            if uw is not None:
                uw.close()
            self._tasks.discard(task)


async def test_contract_config_works_with_an_mqtt_311_only_broker(
    tmp_path: Any, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    """protocol.md 1: "MQTT 3.1.1 and 5 brokers both work." The contract's config has no
    MQTT version key, so the agent must find a 3.1.1-only broker by itself (it used to
    retry MQTT 5 forever and never came online)."""
    async with Mqtt311OnlyBroker(mosquitto.port) as broker:
        agent = AgentProcess(tmp_path, broker.port, athena_sim.info, pty_reader.path)
        try:
            async with AppClient(mosquitto.port, agent.terminal_id) as app:
                agent.start()
                status = await app.wait_retained("status", lambda s: s.get("online") is True,
                                                 timeout=15)
                assert status["session"] == 1
                assert broker.refused_v5 >= 1
                pong = await app.command("ping")
                assert pong["ok"] is True and pong["state"]["job_state"] == "idle", pong
                assert agent.terminate() == 0
                await app.wait_retained("status", lambda s: s.get("online") is False)
                validate_all(app)
            assert_no_canary(agent=agent, app=app)
        finally:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait()


def test_unusable_state_dir_exits_nonzero_at_once_naming_the_key(tmp_path: Path) -> None:
    """protocol.md 9: "An invalid config ...: the process exits non-zero at once with a
    message naming the key." A state_dir that cannot be created (under a plain file) used
    to end in an uncaught NotADirectoryError traceback that named no key."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = tmp_path / "lobbypay.toml"
    cfg.write_text(f"""
[terminal]
id = "lobby-1"
department_id = "1"
state_dir = "{blocker / 'state'}"

[athena]
base_url = "http://127.0.0.1:9"
practice_id = "195900"
client_id = "client"
client_secret_file = "{secret}"

[mqtt]
host = "127.0.0.1"
port = 1
""")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lobbypay", "run", "--config", str(cfg)],
        capture_output=True, text=True, env=subprocess_env(), timeout=30,
    )
    assert proc.returncode not in (0, None), proc
    assert "terminal.state_dir" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "s3cret-value" not in proc.stderr + proc.stdout
    assert time.monotonic() - t0 < 10


async def test_state_is_republished_on_every_job_state_change(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    """protocol.md 8: "`state` (retained, republished on every change)". With a fast
    athena the POST ends within the link's coalescing window, and the retained state
    went pending -> idle: card_read and submitting were never published."""
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        agent.start()
        await app.wait_retained("status", lambda s: s.get("online") is True, timeout=15)
        for i in range(2):
            rep = await app.command("charge.start", job_id=f"j-st-{i}", patient_id="60178",
                                    claims=[{"claim_id": "5569", "amount": "1.00"}],
                                    allow_duplicate=True)
            assert rep["ok"], rep
            await app.wait_retained("state", lambda s, i=i: s["job_id"] == f"j-st-{i}")
            pty_reader.swipe(CANARY_TRACKS)
            final = await app.wait_event(f"j-st-{i}", final=True)
            assert final["state"] == "succeeded", final
            await app.wait_retained("state", lambda s: s["job_state"] == "idle")
        states = [json.loads(p) for t, p in app.seen if t.endswith("/state")]
        seen: list[tuple[str | None, str]] = []
        for s in states:
            key = (s["job_id"], s["job_state"])
            if not seen or seen[-1] != key:
                seen.append(key)
        assert seen == [
            (None, "idle"),
            ("j-st-0", "pending"), ("j-st-0", "card_read"), ("j-st-0", "submitting"),
            (None, "idle"),
            ("j-st-1", "pending"), ("j-st-1", "card_read"), ("j-st-1", "submitting"),
            (None, "idle"),
        ], seen
        pending = [s for s in states if s["job_state"] == "pending"]
        assert all(any("1.00" in line for line in s["screen"]) for s in pending), pending
        ping = await app.command("ping")
        assert ping["state"] == app.retained["state"]
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)
