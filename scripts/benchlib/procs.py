"""The parts of a benchmark run, each a real process on 127.0.0.1: mosquitto, the athena
simulator, the agent (``python -m lobbypay run``), a bare MQTT echo; and a pty pair in the
role of the serial card reader."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Both bare MQTT ends send each packet at once (no Nagle): without it, a PUBACK
#: followed by a small PUBLISH waits for the broker's delayed ACK (~40 ms on Linux),
#: and the baseline would measure that instead of the minimum.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
#: aiomqtt warns about "pending publish calls" above 10 in flight; 16 is the plan here.
QUIET = logging.getLogger("benchlib.mqtt")
QUIET.setLevel(logging.ERROR)
MOSQUITTO = os.environ.get("LOBBYPAY_TEST_MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Bytecode for the measured processes, as an install has it (pip and Debian compile at
#: install time), kept out of the checkout: set by run.py to a directory of the run.
PYCACHE: list[Path] = []


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    if PYCACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE[0])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "agent"), str(ROOT / "drivers"), str(ROOT / "scripts")])
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "PYTHONPROFILEIMPORTTIME"):
        env.pop(key, None)
    return env


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Broker:
    """mosquitto on a free loopback port, no persistence (nothing is restarted here)."""


    def __init__(self, workdir: Path, *, nagle: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"log_dest file {workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "allow_anonymous true",
            # the broker sends each packet at once too (mosquitto's default is Nagle on,
            # which parks a PUBLISH behind an un-ACKed PUBACK for ~40 ms): see
            # docs/PERFORMANCE.md; --broker-nagle measures with the default instead
            *([] if nagle else ["set_tcp_nodelay true"]),
        ]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            raise RuntimeError(f"no mosquitto at {MOSQUITTO} (scripts/setup installs it)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],  # noqa: S603
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen in 10 s")

    def stop(self) -> None:
        _stop(self.proc)


class Simulator:
    """``python -m lobbypay.sim.athena --port 0`` (its own process, like the real athena);
    with ``tls`` (cert, key) it serves HTTPS."""

    def __init__(self, workdir: Path, tls: tuple[Path, Path] | None = None,
                 name: str = "sim") -> None:
        self.workdir = workdir
        self.tls = tls
        self.name = name
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, str] = {}

    def start(self, client_id: str | None = None,
              client_secret: str | None = None) -> dict[str, str]:
        extra = ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])] if self.tls else []
        if client_id and client_secret:
            extra += ["--client-id", client_id, "--client-secret", client_secret]
        with open(self.workdir / f"{self.name}.stderr", "wb") as err:
            self.proc = subprocess.Popen(  # noqa: S603 - our interpreter and module
                [sys.executable, "-m", "lobbypay.sim.athena", "--port", "0", *extra],
                stdout=subprocess.PIPE, stderr=err, text=True, env=child_env())
        assert self.proc.stdout is not None  # noqa: S101 - PIPE was asked for
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("athena simulator did not start: "
                               + (self.workdir / f"{self.name}.stderr").read_text())
        self.info = json.loads(line)
        return self.info

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class DelayProxy:
    """``benchlib.delayproxy``: a TCP proxy that delays each direction by ``delay_ms``."""

    def __init__(self, target_port: int, delay_ms: float) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> int:
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "benchlib.delayproxy", str(self.target_port),
             str(self.delay_ms)], stdout=subprocess.PIPE, text=True, env=child_env())
        assert self.proc.stdout is not None  # noqa: S101
        word, _, port = self.proc.stdout.readline().partition(" ")
        if word != "ready":
            raise RuntimeError("delay proxy did not start")
        self.port = int(port)
        return self.port

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class Echo:
    """A bare MQTT responder (``benchlib.echo``): the round-trip baseline's far end."""

    def __init__(self, port: int, tag: str) -> None:
        self.port = port
        self.tag = tag
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "benchlib.echo", str(self.port), self.tag],
            stdout=subprocess.PIPE, text=True, env=child_env())
        assert self.proc.stdout is not None  # noqa: S101
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("MQTT echo did not start")

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class Pty:
    """A pty pair: the agent's serial reader opens the slave; we write swipes to the master."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def swipe(self, data: bytes) -> float:
        """Write one swipe; returns ``perf_counter()`` right after its last byte went in."""
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]
        return time.perf_counter()

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


#: ``scripts/bench --display``: the display the measured agent drives. There is no I2C
#: bus here (bus 250 does not exist): the I2C drivers load their libraries, lay out every
#: screen and keep retrying the bus. The framebuffer is a regular file (800x480, 32 bpp)
#: with a fake sysfs, so every screen is drawn and written.
DISPLAYS = ("none", "hd44780-i2c", "ssd1306", "framebuffer")


def display_table(display: str, workdir: Path) -> str:
    if display == "none":
        return 'driver = "none"\ncols = 16\nrows = 2'
    if display in ("hd44780-i2c", "ssd1306"):
        return f'driver = "{display}"\nbus = 250\ncols = 20\nrows = 4'
    fb = workdir / "fb0"
    geo = workdir / "sysfs" / "fb0"
    geo.mkdir(parents=True, exist_ok=True)
    (geo / "virtual_size").write_text("800,480\n")
    (geo / "bits_per_pixel").write_text("32\n")
    fb.write_bytes(bytes(800 * 480 * 4))
    return f'driver = "framebuffer"\npath = "{fb}"\ncols = 20\nrows = 4'


class Agent:
    """The real agent as it ships: the default config (athena's client-side rate limit
    5 rps, logging at info as JSON), a loopback broker and simulator, the serial reader
    on a pty at 9600 baud, no display (or ``display``). Its stdout and stderr go to a pipe
    that the bench drains into a file (journald's role: the agent itself writes no log
    file).

    ``rate_limit_rps`` set: the tuned profile (docs/PERFORMANCE.md). ``env``: extra
    environment (SSL_CERT_FILE for a TLS simulator, the test-mode switches)."""

    def __init__(self, workdir: Path, broker_port: int, athena: dict[str, str],
                 reader_path: str, terminal_id: str, *, rate_limit_rps: float | None = None,
                 env: dict[str, str] | None = None, display: str = "none") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.display = display
        self.terminal_id = terminal_id
        self.state_dir = workdir / "state"
        self.config = workdir / "lobbypay.toml"
        self.env = env or {}
        secret = workdir / "athena-secret"
        secret.write_text(athena["client_secret"] + "\n")
        secret.chmod(0o600)
        rate = f"rate_limit_rps = {rate_limit_rps:g}\n" if rate_limit_rps else ""
        self.config.write_text(f"""
[terminal]
id = "{terminal_id}"
department_id = "1"
state_dir = "{self.state_dir}"
max_charge = "5000.00"

[athena]
base_url = "{athena['base_url']}"
practice_id = "{athena['practice_id']}"
client_id = "{athena['client_id']}"
client_secret_file = "{secret}"
{rate}
[mqtt]
host = "127.0.0.1"
port = {broker_port}

[reader]
driver = "serial"
path = "{reader_path}"
baudrate = 9600

[display]
{display_table(display, workdir)}
""")
        self.proc: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None
        self.runs = 0
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None  # noqa: S101
        return self.proc.pid

    def start(self, profile: Path | None = None, python_flags: tuple[str, ...] = (),
              stderr_path: Path | None = None) -> float:
        """Start the process (under cProfile writing ``profile`` if given); returns
        ``perf_counter()`` just before the fork. ``stderr_path``: stderr to its own file
        (for ``-X importtime``)."""
        self.runs += 1
        prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
        env = {**child_env(), **self.env}
        err = open(stderr_path, "wb") if stderr_path else None  # noqa: SIM115
        try:
            self.started_at = time.perf_counter()
            entry = ["-m", "lobbypay"]
            if self.display == "framebuffer" and not prof:
                # the agent itself, with the fake framebuffer's sysfs in place of /sys
                entry = ["-c", "import lobbypay_hw.display_graphic as g, sys; "
                         f"g.SYSFS_GRAPHICS = {str(self.workdir / 'sysfs')!r}; "
                         "from lobbypay.cli import main; sys.exit(main())"]
            self.proc = subprocess.Popen(  # noqa: S603 - our interpreter and module
                [sys.executable, *python_flags, *prof, *entry, "run", "--config",
                 str(self.config)],
                stdout=subprocess.PIPE, stderr=err or subprocess.STDOUT, env=env)
        finally:
            if err is not None:
                err.close()
        log = self.workdir / f"agent-{self.runs}.log"
        pipe = self.proc.stdout

        def drain() -> None:
            assert pipe is not None  # noqa: S101
            with open(log, "wb") as out:
                while chunk := pipe.read1(65536):
                    out.write(chunk)
            pipe.close()

        self._drain = threading.Thread(target=drain, name="agent-log", daemon=True)
        self._drain.start()
        return self.started_at

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        _stop(self.proc, 20)
        if self._drain is not None:
            self._drain.join(5)
        return self.proc.returncode if self.proc is not None else None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.workdir / f"agent-{self.runs}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""
