"""A real mosquitto broker for tests: free port on 127.0.0.1, temp config, persistence.

``Mosquitto(workdir)`` writes ``mosquitto.conf`` and starts ``/usr/sbin/mosquitto`` when
``start()`` is called; ``stop()`` (SIGTERM: the broker saves its persistence file) and
``start()`` again come back on the SAME port with the same sessions, so QoS 1 sessions
and retained messages survive a broker restart. ``kill()`` is SIGKILL, ``pause()`` /
``resume()`` are SIGSTOP / SIGCONT (a broker that holds the TCP connection but answers
nothing: PUBACKs stop).

Options: ``users={"name": "password"}`` turns anonymous access off and writes a password
file with ``mosquitto_passwd``; ``tls=TlsFiles(...)`` makes the listener TLS-only;
``require_certificate=True`` demands a client certificate signed by the same CA.
``extra_lines=(...)`` appends config lines (a bridge ``connection`` section).

``make_tls_files(dir)`` writes a trustme CA, a server certificate for 127.0.0.1/localhost
and a client certificate.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = os.environ.get("LOBBYPAY_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
#: mosquitto listens within ~50 ms; 10 s covers a loaded 2-core CI box.
START_TIMEOUT_S = 10.0


def mosquitto_available() -> bool:
    return os.access(MOSQUITTO, os.X_OK)


def passwd_available() -> bool:
    return os.access(MOSQUITTO_PASSWD, os.X_OK)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # CA certificate (PEM): clients trust this
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("lobbypay-test-client")
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.private_key_pem.write_to_path(str(files.client_key))
    with open(files.server_cert, "wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    with open(files.client_cert, "wb") as f:
        for blob in client.cert_chain_pems:
            f.write(blob.bytes())
    return files


class Mosquitto:
    """One broker process; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        persistence: bool = True,
        extra_lines: tuple[str, ...] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.users = users
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # no privilege drop: read our files
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # as recommended for sites (docs/OPERATIONS.md): no Nagle delay on small packets
            "set_tcp_nodelay true",
        ]
        if persistence:
            (workdir / "db").mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {workdir / 'db'}/"]
        if users:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for name, password in users.items():
                subprocess.run(  # noqa: S603 - fixed binary, test-chosen arguments
                    [MOSQUITTO_PASSWD, "-b", str(pwfile), name, password],
                    check=True, capture_output=True, timeout=10,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        # e.g. a bridge section (tests/e2e/test_bridge_fleet.py); last, as mosquitto wants
        lines += list(extra_lines)
        self.conf.write_text("\n".join(lines) + "\n")

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.proc = subprocess.Popen(  # noqa: S603 - fixed binary
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err}\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}")

    def stop(self) -> None:
        """SIGTERM and wait: the broker writes its persistence file on the way out."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def pause(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
