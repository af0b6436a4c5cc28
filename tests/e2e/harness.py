"""End-to-end harness: the real agent (`lobbypay run --config`) as a subprocess, the athena
simulator as a subprocess over HTTP, a serial reader on a pty, and an MQTT app client that
records every message it sees on the terminal's topics.

Everything here is real except the card (a test card swiped by writing its track text to
the pty master, exactly as a serial reader would deliver it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

ROOT = Path(__file__).resolve().parents[2]

#: The canary: a Luhn-valid Visa test number that must never leave the card code.
CANARY_PAN = "4111111111111111"
CANARY_TRACKS = (
    f"%B{CANARY_PAN}^SANDBOXTEST/JANE^3012101000000000000000?"
    f";{CANARY_PAN}=30121010000000000000?"
)
#: The simulator declines cards ending 0002 (see docs/athena.md).
DECLINE_PAN = "4000000000000002"
DECLINE_TRACKS = f";{DECLINE_PAN}=30121010000000000000?"
EXPIRED_TRACKS = f";{CANARY_PAN}=20011010000000000000?"


def faketime_env(spec: str) -> dict[str, str]:
    """Environment that runs a process under libfaketime (Debian package ``faketime``):
    ``spec`` is an offset such as ``"+90s"`` / ``"-10m"`` or an absolute start such as
    ``"@2026-11-01 06:29:50"`` (then the clock runs on from there). libfaketime shifts the
    process's monotonic clock too (leaving it alone breaks clock_nanosleep); it still only
    moves forward, at the real rate."""
    lib = next((p for p in FAKETIME_LIBS if Path(p).exists()), None)
    if lib is None:
        raise FileNotFoundError("libfaketime is not installed (apt install faketime)")
    return {"LD_PRELOAD": lib, "FAKETIME": spec, "FAKETIME_NO_CACHE": "1", "TZ": "UTC"}


FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "agent"), str(ROOT / "drivers")])
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env


class AthenaSimProcess:
    """`python -m lobbypay.sim.athena` in its own process (like the real athena: apart)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        with open(self.tmp / "sim.stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lobbypay.sim.athena", "--port", "0"],
                stdout=subprocess.PIPE, stderr=err, text=True,
                env={**subprocess_env(), **self.env},
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("athena simulator did not start: "
                               + (self.tmp / "sim.stderr").read_text())
        self.info = json.loads(line)
        return self.info

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        if body is None:
            r = httpx.get(self.base_url + path, timeout=5)
        else:
            r = httpx.post(self.base_url + path, json=body, timeout=5)
        r.raise_for_status()
        return r.json() if r.content else None

    def calls(self) -> list[dict[str, Any]]:
        data = self.control("/_sim/calls")
        return data["calls"] if isinstance(data, dict) else data

    def posts(self, patient_id: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["method"] == "POST"
                and c["path"].endswith("/collectpayment")
                and (patient_id is None or f"/patients/{patient_id}/" in c["path"])]

    def fault(self, **spec: Any) -> None:
        self.control("/_sim/faults", spec)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


class PtyReader:
    """A pty pair standing in for a serial card reader: the agent opens the slave path."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def swipe(self, tracks: str, end: bytes = b"\r") -> None:
        os.write(self.master, tracks.encode("ascii") + end)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class AgentProcess:
    tmp: Path
    broker_port: int
    athena: dict[str, str]
    reader_path: str
    terminal_id: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    department_id: str = "1"
    settle_s: float = 5.0
    athena_timeout_s: float = 3
    extra_toml: str = ""
    #: extra environment for the agent process (e.g. libfaketime's)
    env: dict[str, str] = field(default_factory=dict)
    #: more keys of the [terminal] table (``language = "es"``)
    terminal_toml: str = ""
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def config_path(self) -> Path:
        return self.tmp / "lobbypay.toml"

    def write_config(self) -> Path:
        secret = self.tmp / "athena-secret"
        secret.write_text(self.athena["client_secret"] + "\n")
        self.config_path.write_text(f"""
[terminal]
id = "{self.terminal_id}"
department_id = "{self.department_id}"
state_dir = "{self.state_dir}"
max_charge = "5000.00"
{self.terminal_toml}

[athena]
base_url = "{self.athena['base_url']}"
practice_id = "{self.athena['practice_id']}"
client_id = "{self.athena['client_id']}"
client_secret_file = "{secret}"
timeout_s = {self.athena_timeout_s}
reconcile_settle_s = {self.settle_s}

[mqtt]
host = "127.0.0.1"
port = {self.broker_port}

[reader]
driver = "serial"
path = "{self.reader_path}"
baudrate = 9600

[display]
driver = "none"
cols = 16
rows = 2

[logging]
level = "debug"
{self.extra_toml}
""")
        return self.config_path

    def start(self) -> None:
        if not self.config_path.exists():
            self.write_config()
        self.runs += 1
        with open(self.tmp / f"agent-{self.runs}.log", "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lobbypay", "run", "--config", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, env={**subprocess_env(), **self.env},
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def logs(self) -> str:
        return "".join((self.tmp / f"agent-{i}.log").read_text(errors="replace")
                       for i in range(1, self.runs + 1))

    def files_bytes(self) -> list[tuple[Path, bytes]]:
        out = []
        for p in self.state_dir.rglob("*"):
            if p.is_file():
                out.append((p, p.read_bytes()))
        return out


class AppClient:
    """An MQTT client in the role of the check-in app; records every message it sees."""

    def __init__(self, port: int, terminal_id: str, *, identifier: str | None = None,
                 clean_session: bool | None = None) -> None:
        self.port = port
        self.tid = terminal_id
        self.prefix = f"lobbypay/v1/{terminal_id}"
        #: a fixed identifier with ``clean_session=False`` keeps the app's session (and its
        #: queued QoS 1 messages) across a disconnect or a broker restart
        self.identifier = identifier or f"app-{uuid.uuid4().hex[:6]}"
        self.clean_session = clean_session
        self.seen: list[tuple[str, bytes]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        #: every reply in arrival order (also those with ``request_id: null``)
        self.reply_log: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.retained: dict[str, dict[str, Any]] = {}
        self._cond = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AppClient:
        # TCP_NODELAY: without it Nagle + delayed ACKs add ~40 ms to every round trip
        nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = aiomqtt.Client("127.0.0.1", self.port, identifier=self.identifier,
                                      clean_session=self.clean_session, socket_options=(nodelay,))
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/#", qos=1)
        self._task = asyncio.create_task(self._rx())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        assert self._client is not None
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _rx(self) -> None:
        assert self._client is not None
        async for msg in self._client.messages:
            payload = bytes(msg.payload) if isinstance(msg.payload, (bytes, bytearray)) else b""
            topic = str(msg.topic)
            self.seen.append((topic, payload))
            try:
                obj = json.loads(payload)
            except ValueError:
                obj = None
            async with self._cond:
                if topic.endswith("/reply") and isinstance(obj, dict):
                    self.replies[str(obj.get("request_id"))] = obj
                    self.reply_log.append(obj)
                elif topic.endswith("/events") and isinstance(obj, dict):
                    self.events.append(obj)
                elif topic.endswith(("/status", "/state")) and isinstance(obj, dict):
                    self.retained[topic.rsplit("/", 1)[1]] = obj
                self._cond.notify_all()

    async def send_raw(self, payload: bytes | str, **kw: Any) -> None:
        assert self._client is not None
        await self._client.publish(f"{self.prefix}/cmd", payload, qos=1, **kw)

    async def command(self, type_: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        rid = fields.pop("request_id", None) or uuid.uuid4().hex
        await self.send_raw(json.dumps({"v": 1, "type": type_, "request_id": rid, **fields}))
        return await self.wait_reply(rid, timeout)

    async def staff_command(self, type_: str, timeout: float = 10,
                            **fields: Any) -> dict[str, Any]:
        """A command on ``staff/cmd`` (protocol 10); its reply comes on ``staff/reply``."""
        rid = fields.pop("request_id", None) or uuid.uuid4().hex
        assert self._client is not None
        await self._client.publish(
            f"{self.prefix}/staff/cmd",
            json.dumps({"v": 1, "type": type_, "request_id": rid, **fields}), qos=1)
        return await self.wait_reply(rid, timeout)

    def reply_topics(self, rid: str) -> list[str]:
        """The topics on which replies to ``rid`` arrived."""
        out = []
        for topic, payload in self.seen:
            if topic.endswith("/reply"):
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(payload).get("request_id") == rid:
                        out.append(topic.removeprefix(self.prefix + "/"))
        return out

    async def wait_reply(self, rid: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: rid in self.replies)
            return self.replies[rid]

    async def wait_event(self, job_id: str, state: str | None = None, *, final: bool = False,
                         timeout: float = 20) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for ev in self.events:
                if ev.get("job_id") != job_id:
                    continue
                if (state is None or ev.get("state") == state) and (not final or ev.get("final")):
                    return ev
            return None

        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: find() is not None)
            found = find()
            assert found is not None
            return found

    async def wait_retained(self, kind: str, pred: Any, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: kind in self.retained and pred(self.retained[kind]))
            return self.retained[kind]

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("job_id") == job_id]

    async def send_wait_next(self, payload: bytes | str, timeout: float = 10) -> dict[str, Any]:
        """Send a raw payload and return the next reply to arrive (for payloads whose reply
        carries ``request_id: null``). Use it with one command in flight at a time."""
        before = len(self.reply_log)
        await self.send_raw(payload)
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: len(self.reply_log) > before)
            return self.reply_log[before]

    def replies_to(self, rid: str) -> list[bytes]:
        """Every reply payload seen for ``rid``, raw (to compare redeliveries byte for byte)."""
        out = []
        for topic, payload in self.seen:
            if topic.endswith("/reply"):
                with contextlib.suppress(ValueError):
                    if json.loads(payload).get("request_id") == rid:
                        out.append(payload)
        return out


def assert_no_canary(
    *, agent: AgentProcess, app: AppClient, pans: tuple[str, ...] = (CANARY_PAN,)
) -> None:
    """The canary PAN (and its track text) appears in no MQTT message, log line or state file."""
    needles = [p.encode() for p in pans] + [b"SANDBOXTEST/JANE"]
    for topic, payload in app.seen:
        for n in needles:
            assert n not in payload, f"card data on MQTT topic {topic}"
    logs = agent.logs().encode()
    for n in needles:
        assert n not in logs, "card data in the agent's log output"
    for path, data in agent.files_bytes():
        for n in needles:
            assert n not in data, f"card data in {path}"


def validate_all(app: AppClient) -> None:
    """Every message the agent sent on its topics validates against the shipped schemas."""
    from lobbypay import schemas

    kinds = {"reply": "reply", "events": "charge.event", "status": "status", "state": "state"}
    for topic, payload in app.seen:
        kind = topic.rsplit("/", 1)[1]
        if kind not in kinds:
            continue
        schemas.validate(kinds[kind], json.loads(payload))


async def started(agent: AgentProcess, app: AppClient, session: int | None = None,
                  timeout: float = 15) -> dict[str, Any]:
    """Start the agent and wait for its retained ``online: true`` (of ``session`` if given)."""
    agent.start()
    return await app.wait_retained(
        "status",
        lambda s: s.get("online") is True and (session is None or s.get("session") == session),
        timeout=timeout)


async def wait_until(pred: Any, timeout: float = 10, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def app_client(port: int, terminal_id: str) -> AsyncIterator[AppClient]:
    async with AppClient(port, terminal_id) as c:
        yield c
