"""The demo's processes: the athena simulator, mosquitto on a free port and the agent,
each in its own session with PR_SET_PDEATHSIG, in a 0700 work directory; the agent's
config; a swipe into its sim reader; ``close()`` stops them in order (agent first).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lobbypay.sim.cards import TEST_CARDS

TERMINAL_ID = "demo-lobby"
#: Each child gets this long to come up (Python start-up on a Pi 3 is ~2 s).
START_TIMEOUT_S = 30.0
#: ...and this long to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
PR_SET_PDEATHSIG = 1


class DemoError(Exception):
    """A part of the demo could not start; the message says what to do."""


def _pdeathsig() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM if this process dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def child_env() -> dict[str, str]:
    """The environment for the children: this lobbypay importable, no systemd variables."""
    import lobbypay_hw

    import lobbypay

    env = dict(os.environ)
    roots = [str(Path(lobbypay.__file__).resolve().parents[1]),
             str(Path(lobbypay_hw.__file__).resolve().parents[1])]
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *([old] if old else [])]))
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)
    return env


class Parts:
    """The child processes and the work directory; ``close()`` undoes everything."""

    def __init__(self, workdir: str | None) -> None:
        if workdir:
            self.dir = Path(workdir).resolve()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._remove_dir = False
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="lobbypay-demo-"))
            self._remove_dir = True
        os.chmod(self.dir, 0o700)
        self.env = child_env()
        self._preexec = _pdeathsig()
        self.sim: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.athena: dict[str, str] = {}
        self.broker_port = 0
        self.config_path = self.dir / "lobbypay.toml"
        self.swipe_socket = str(self.dir / "swipe.sock")
        self.agent_log = self.dir / "agent.log"

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        # Own session: a Ctrl-C in the terminal reaches only us, and we stop the children
        # in order. PDEATHSIG covers the case where we are killed outright.
        return subprocess.Popen(  # noqa: S603 - fixed programs, arguments built here
            argv, env=self.env, start_new_session=True, preexec_fn=self._preexec,
            stdin=subprocess.DEVNULL, **kw)

    # -- athena simulator

    def start_sim(self) -> dict[str, str]:
        with open(self.dir / "athena-sim.log", "wb") as err:
            self.sim = self._spawn([sys.executable, "-m", "lobbypay.sim.athena", "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=err)
        if self.sim.stdout is None:  # pragma: no cover - stdout=PIPE above
            raise DemoError("no pipe to the athena simulator")
        ready, _, _ = select.select([self.sim.stdout], [], [], START_TIMEOUT_S)
        line = self.sim.stdout.readline() if ready else b""
        self.sim.stdout.close()
        if not line:
            raise DemoError("the athena simulator did not start:\n"
                            + (self.dir / "athena-sim.log").read_text(errors="replace")[-2000:])
        self.athena = json.loads(line)
        return self.athena

    # -- broker

    def start_broker(self) -> int:
        binary = find_mosquitto()
        if binary is None:
            raise DemoError(
                "mosquitto (the MQTT broker) is not installed. Run ./scripts/demo, which "
                "installs it, or: sudo apt-get install mosquitto")
        last = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = _free_port()
            conf = self.dir / "mosquitto.conf"
            log = self.dir / "mosquitto.log"
            conf.write_text("\n".join([
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                "set_tcp_nodelay true",
                f"log_dest file {log}",
                # Running as root, mosquitto would switch to user "mosquitto", who cannot
                # write into our 0700 directory: stay who we are.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
            ]) + "\n")
            self.broker = self._spawn([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.broker.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        self.broker_port = port
                        return port
                except OSError:
                    time.sleep(0.02)
            with contextlib.suppress(OSError):
                last = log.read_text(errors="replace")[-1000:]
            self._stop(self.broker)
            self.broker = None
        raise DemoError(f"mosquitto did not start:\n{last}")

    # -- agent

    def write_agent_config(self) -> Path:
        secret = self.dir / "athena-client-secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.athena["client_secret"] + "\n")
        self.config_path.write_text(f"""\
# Written by `lobbypay demo`: every part on loopback.
[terminal]
id = "{TERMINAL_ID}"
department_id = "1"
state_dir = "{self.dir / 'state'}"
max_charge = "5000.00"

[athena]
base_url = "{self.athena['base_url']}"
practice_id = "{self.athena['practice_id']}"
client_id = "{self.athena['client_id']}"
client_secret_file = "{secret}"
timeout_s = 10
reconcile_settle_s = 5

[mqtt]
host = "127.0.0.1"
port = {self.broker_port}

[reader]
driver = "sim"
path = "{self.swipe_socket}"

[display]
driver = "console"
cols = 16
rows = 2

[staff]
enabled = true

[logging]
level = "info"
format = "text"
""")
        return self.config_path

    def start_agent(self) -> subprocess.Popen[bytes]:
        self.write_agent_config()
        with open(self.agent_log, "wb") as out:
            self.agent = self._spawn(
                [sys.executable, "-m", "lobbypay", "run", "--config", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT)
        return self.agent

    def agent_log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.agent_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- the card reader

    def swipe(self, card: str) -> None:
        """Test card ``card`` (``lobbypay.sim.cards``) into the agent's sim reader."""
        from lobbypay_hw.reader_sim import send_swipe

        send_swipe(self.swipe_socket, TEST_CARDS[card][0].encode("ascii"))

    # -- teardown

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None) -> int | None:
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def pids(self) -> list[int]:
        return [p.pid for p in (self.sim, self.broker, self.agent) if p is not None]

    def close(self) -> int | None:
        """Stop the agent (it publishes online:false), then the broker and the simulator.

        Returns the agent's exit code (0 after a clean stop).
        """
        # Signals during teardown would leave children behind: hold them off.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            agent_rc = self._stop(self.agent)
            self._stop(self.broker)
            self._stop(self.sim)
            if self._remove_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return agent_rc


async def wait_online(term: Any, parts: Parts) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if parts.agent is not None and parts.agent.poll() is not None:
            raise DemoError("the agent exited at start:\n" + parts.agent_log_tail())
        status = await term.status(timeout=0.5)
        if status and status.get("online"):
            return dict(status)
        await asyncio.sleep(0.1)
    raise DemoError("the agent did not come online:\n" + parts.agent_log_tail())

