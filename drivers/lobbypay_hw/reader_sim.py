"""A simulated reader for demos and for trying a terminal without hardware.

``SimReader`` listens on a Unix stream socket (mode 0600, so only the agent's user can
swipe); every line a client writes (ended by CR and/or LF, or by closing the connection)
is one swipe, parsed exactly like a real reader's. ``inject(raw)`` does the same
in-process. ``send_swipe(path, raw)`` is the client side, used by ``lobbypay swipe``.

Frames go through the same ``LineFramer`` and ``parse_swipe`` as the serial reader, so a
sim swipe exercises the real parsing and the same failure reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat

from lobbypay_hw._common import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    Backoff,
    StatusReporter,
    deliver,
    describe,
)
from lobbypay_hw.api import ReaderSink
from lobbypay_hw.framing import DEFAULT_MAX_FRAME, LineFramer

SOCKET_MODE = 0o600
# A client that sends nothing is dropped after this long (a demo swipe takes ms).
CLIENT_IDLE_S = 30.0
SEND_TIMEOUT_S = 5.0


class SimReaderError(RuntimeError):
    pass


class SimReader:
    driver = "sim"

    def __init__(
        self,
        path: str,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        if not path:
            raise ValueError("reader.path is required for the sim reader (a socket path)")
        self.path = path
        self._max_frame = max_frame
        self._backoff = Backoff(retry_base_s, retry_cap_s)
        self._sink: ReaderSink | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def inject(self, raw: bytes | bytearray) -> None:
        """Deliver one swipe in-process, as if it had been read (``run`` must be active)."""
        if self._sink is None:
            raise SimReaderError("the sim reader is not running")
        deliver("sim", bytearray(raw), self._sink)

    async def run(self, sink: ReaderSink) -> None:
        status = StatusReporter("sim", sink)
        try:
            while True:
                server: asyncio.Server | None = None
                try:
                    sock = self._bind()
                    server = await asyncio.start_unix_server(
                        lambda r, w: self._client(r, w, sink), sock=sock
                    )
                    self._sink = sink
                    self._connected = True
                    self._backoff.reset()
                    status.up()
                    await asyncio.Future()  # serve until cancelled
                except Exception as exc:  # noqa: BLE001 - a bad path is a status, not a crash
                    status.down(describe(exc))
                finally:
                    self._sink = None
                    self._connected = False
                    if server is not None:
                        server.close()
                        with contextlib.suppress(Exception):
                            await server.wait_closed()
                        self._unlink()
                await asyncio.sleep(self._backoff.next())
        finally:
            self._connected = False

    def _bind(self) -> socket.socket:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise FileExistsError(17, "path exists and is not a socket")
            os.unlink(self.path)  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The umask makes bind() create the node as 0600 from the start (no window
            # where it is group/world-writable); the chmod is belt and braces.
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, SOCKET_MODE)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sink: ReaderSink
    ) -> None:
        framer = LineFramer(self._max_frame)
        try:
            while True:
                async with asyncio.timeout(CLIENT_IDLE_S):
                    chunk = await reader.read(4096)
                if not chunk:
                    break
                for frame in framer.feed(chunk):
                    deliver("sim", frame, sink)
            for frame in framer.flush():
                deliver("sim", frame, sink)
        except (OSError, TimeoutError):
            pass
        finally:
            framer.reset()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def send_swipe(path: str, raw: bytes | bytearray, *, timeout_s: float = SEND_TIMEOUT_S) -> None:
    """Send one swipe to a running sim reader at ``path`` (blocking; for the CLI).

    ``raw`` is the track text (``%B...?;...?``); a trailing CR/LF is optional. Raises
    ``SimReaderError`` (text never includes the swipe) if it cannot be delivered.
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError("send_swipe takes bytes")
    body = bytes(raw).rstrip(b"\r\n")
    if not body:
        raise SimReaderError("empty swipe")
    if b"\r" in body or b"\n" in body:
        raise SimReaderError("a swipe is one line (no CR/LF inside)")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(body + b"\n")
            sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        raise SimReaderError(f"cannot reach the sim reader at {path}: {describe(exc)}") from None
