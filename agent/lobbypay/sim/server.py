"""The athena simulator's HTTP side: the server, its request handler and the routes.

``SimServer`` is a ``ThreadingHTTPServer`` on loopback (HTTPS with a server-side
``ssl.SSLContext``: each connection's handshake runs in its own thread, never in the
accept loop) that hands every request to an ``Application`` and writes its ``Reply``:
late (``delay_s``), or not at all (``drop`` closes the connection). ``route`` names the
endpoint a method and path stand for, with the ids the path carries.

The server logs no request lines (they carry patient ids); the application records calls.
"""

from __future__ import annotations

import email.utils
import io
import logging
import re
import socket
import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from lobbypay.sim.reply import Reply, error_reply

_log = logging.getLogger("lobbypay.sim.athena")

TOKEN_PATH = "/oauth2/v1/token"  # noqa: S105 - a path, not a secret
_API_RE = re.compile(r"\A/v1/(?P<practice>[0-9]{1,10})(?P<rest>/.*)?\Z")
#: The largest request body read; a larger Content-Length is answered 400.
MAX_BODY_BYTES = 1_000_000


class Application(Protocol):
    """What the server serves: one request in, one reply out, and the clock its ``Date``
    headers tell."""

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
               *, peer_port: int | None = None) -> Reply: ...

    def now(self) -> datetime: ...


def route(method: str, path: str) -> tuple[str, str | None, dict[str, str]]:
    """``(endpoint, practice id, ids)`` of a request; "other" for a path athena does not
    serve (``practice`` is still given when the path names one)."""
    if path == TOKEN_PATH and method == "POST":
        return "token", None, {}
    m = _API_RE.match(path)
    if not m:
        return "other", None, {}
    practice = m.group("practice")
    parts = [p for p in (m.group("rest") or "").split("/") if p]
    if parts == ["ping"]:
        return "ping", practice, {}
    if parts == ["departments"]:
        return "departments", practice, {}
    if len(parts) == 2 and parts[0] == "patients":
        return "patient", practice, {"patientid": parts[1]}
    if len(parts) == 2 and parts[0] == "appointments":
        return "appointment", practice, {"appointmentid": parts[1]}
    if len(parts) == 3 and parts[0] == "patients" and parts[2] == "receipts":
        return "receipts", practice, {"patientid": parts[1]}
    if len(parts) == 3 and parts[0] == "patients" and parts[2] == "collectpayment":
        return "collectpayment", practice, {"patientid": parts[1]}
    if len(parts) == 4 and parts[0] == "patients" and parts[2] == "voidpayment":
        return "voidpayment", practice, {"patientid": parts[1], "epaymentid": parts[3]}
    if (len(parts) == 5 and parts[0] == "patients" and parts[2] == "receipts"
            and parts[4] == "email"):
        return "receiptemail", practice, {"patientid": parts[1], "epaymentid": parts[3]}
    return "other", practice, {}


class SimServer(ThreadingHTTPServer):
    """Serves ``app`` on ``address`` (bound at once; port 0 picks a free one). With
    ``tls`` set, each accepted connection does its TLS handshake in its own thread;
    ``idle_timeout_s`` closes a connection that sends nothing for that long."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: Application,
        *,
        tls: ssl.SSLContext | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.tls = tls
        self.idle_timeout_s = idle_timeout_s
        #: set by ``stop``: a reply waiting out its ``delay_s`` gives up
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lobbypay.sim.athena",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; slow answers in flight give up waiting."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.idle_timeout_s is not None:
            request.settimeout(self.idle_timeout_s)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls_sock, client_address)
        finally:
            tls_sock.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "athena-sim"
    sys_version = ""

    @property
    def _sim_server(self) -> SimServer:
        server = self.server
        assert isinstance(server, SimServer)  # this handler serves no other server
        return server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        server = self._sim_server
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._write(error_reply(400, "Bad Content-Length"))
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = server.app.handle(method, self.path, headers, body,
                                      peer_port=int(self.client_address[1]))
        except Exception:  # noqa: BLE001 - a simulator bug answers 500, like a real server
            _log.exception("athena sim: handler failed")
            reply = error_reply(500, "Internal Server Error")
        del body
        if reply.delay_s:
            server.stopping.wait(reply.delay_s)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.wfile = io.BytesIO()  # nothing more reaches the closed socket
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        # the Date header tells the simulator's own clock, like athena's tells athena's
        now = self._sim_server.app.now()
        return email.utils.format_datetime(now.astimezone(UTC), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None  # request lines carry patient ids; the sim records calls instead


__all__ = ["Application", "SimServer", "route"]
