"""athena's HTTP/1.1 exchanges, lean: one request on one connection, as an httpx transport.

Why not httpx's own transport (httpcore with h11 on anyio): measured on the bench
machine, a GET of a patient through it cost 1.3-1.5 ms of CPU, against 0.5 ms through
this one under the same ``httpx.AsyncClient`` (docs/PERFORMANCE.md); a charge makes three
requests, and the POST and its answer lie on the path a patient waits on. What athena
needs of HTTP is small: requests with a ``Content-Length`` body or none, answers framed
by ``Content-Length``, ``chunked`` or the connection's end, keep-alive for reads.

* ``exchange()`` writes one request on a ``payline.WarmStream`` and reads its answer whole
  (interim 1xx answers skipped). Errors come out as httpx's classes, which the athena
  client sorts into "not sent" (``LocalProtocolError``: nothing written) and "may have
  been sent" (``ReadTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``).
* ``PooledTransport`` serves athena's reads and its non-payment POSTs: connections to the
  one origin are kept open between requests (``IDLE_S`` at most, ``MAX_IDLE`` of them);
  one that the server closed or sent anything on while idle is dropped, not used. The
  payment POST never uses it (shell/payline.py).

The request body is written as the caller's own object (no copy: the athena client
overwrites a payment's body after the exchange), after the request head.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from lobbypay.shell import steptrace

#: An answer's head larger than this is not athena's.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Read size from the connection's buffer.
READ_BYTES: Final = 64 * 1024
#: Idle keep-alive connections kept for reads (athena answers one request at a time per
#: terminal under the rate limit), and for how long (httpx's default keep-alive expiry).
MAX_IDLE: Final = 4
IDLE_S: Final = 5.0

_NO_BODY_STATUS: Final = frozenset({204, 304})


#: httpcore's errors as httpx's, most specific first (the athena client classifies the
#: httpx ones: connect errors mean "not sent").
_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.HTTPError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx() -> Iterator[None]:
    mapped: httpx.HTTPError | None = None
    try:
        yield
    except httpcore.ConnectionNotAvailable:
        # a one-shot connection asked for a second request: a bug, never sent
        mapped = httpx.LocalProtocolError("payment connection already used")
    except Exception as exc:
        for src, dst in _ERRORS:
            if isinstance(exc, src):
                mapped = dst(type(exc).__name__)
                break
        else:
            raise
    if mapped is not None:
        raise mapped


class _Protocol(asyncio.Protocol):
    """Buffers what the server sends; notes EOF and loss at once."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._readable.set()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._readable.set()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()


class WarmStream(httpcore.AsyncNetworkStream):
    """One TCP (+ TLS) connection on the asyncio event loop, as an httpcore stream."""

    def __init__(self, transport: asyncio.Transport, proto: _Protocol, opened_at: float) -> None:
        self._transport = transport
        self._proto = proto
        self.opened_at = opened_at
        #: bytes of requests written on this connection (0 until the POST)
        self.bytes_sent = 0

    @property
    def local_port(self) -> int:
        name = self._transport.get_extra_info("sockname")
        return int(name[1]) if name else 0

    def fit_for_request(self, *, reuse: bool = False) -> bool:
        """Nothing written yet (``reuse``: a kept-alive connection whose last answer was
        read whole), still open both ways, and nothing unsolicited received (a server
        sends nothing before a request; a 408 or a close means it is done)."""
        p = self._proto
        return ((reuse or self.bytes_sent == 0) and not p.eof and not p.lost
                and not p.buffer and not self._transport.is_closing())

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore.AsyncNetworkStream
        p = self._proto
        while not p.buffer:
            if p.eof or p.lost:
                if p.error is not None and not p.eof:
                    raise httpcore.ReadError(type(p.error).__name__)
                return b""
            p._readable.clear()
            try:
                async with asyncio.timeout(timeout):
                    await p._readable.wait()
            except TimeoutError:
                raise httpcore.ReadTimeout("read timed out") from None
        data = bytes(p.buffer[:max_bytes])
        del p.buffer[:max_bytes]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore.AsyncNetworkStream
        if not buffer:
            return
        p = self._proto
        if p.lost or self._transport.is_closing():
            raise httpcore.WriteError("connection closed")
        self.bytes_sent += len(buffer)
        self._transport.write(buffer)
        if not p._writable.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await p._writable.wait()
            except TimeoutError:
                raise httpcore.WriteTimeout("write timed out") from None
            if p.lost:
                raise httpcore.WriteError("connection lost while writing")

    async def aclose(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None,  # noqa: ASYNC109 - httpcore.AsyncNetworkStream
                        ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("a payment connection is opened with its TLS")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            p = self._proto
            return bool(p.buffer) or p.eof or p.lost
        return None


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("athena base_url must be http(s)://host[:port]")
        return cls(scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))


async def open_stream(origin: Origin, ssl_context: ssl.SSLContext | None, timeout_s: float,
                      monotonic: Callable[[], float] = time.monotonic) -> WarmStream:
    """A new connection (TCP, and TLS for https) to ``origin``. Raises
    ``httpcore.ConnectError`` / ``ConnectTimeout``: nothing was sent."""
    loop = asyncio.get_running_loop()
    started = monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            transport, proto = await loop.create_connection(
                _Protocol, origin.host, origin.port, ssl=ssl_context,
                server_hostname=origin.host if ssl_context is not None else None)
    except TimeoutError:
        raise httpcore.ConnectTimeout("connect timed out") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise httpcore.ConnectError(type(exc).__name__) from None
    assert isinstance(transport, asyncio.Transport)
    return WarmStream(transport, proto, started)


as_httpx = _as_httpx


class Answer:
    """An answer read whole: status, reason, raw headers, body, and whether the
    connection may carry another request."""

    __slots__ = ("status", "reason", "headers", "body", "keep_alive")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def response(self) -> httpx.Response:
        return httpx.Response(
            self.status, headers=self.headers, stream=httpx.ByteStream(self.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason})


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    t = request.extensions.get("timeout") or {}
    return t.get("read"), t.get("write")


def request_head(request: httpx.Request) -> bytes:
    """The request line and headers. Raises ``httpx.LocalProtocolError`` (nothing sent)
    for a request this module does not send: a streamed body, a header with CR/LF."""
    url = request.url
    target = url.raw_path or b"/"
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b":" in name:
            raise httpx.LocalProtocolError("illegal header")
        if name.lower() == b"transfer-encoding":
            raise httpx.LocalProtocolError("streamed request bodies are not sent")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    if any(c in target for c in b" \r\n"):
        raise httpx.LocalProtocolError("illegal request target")
    return b"".join(parts)


class _Reader:
    """Buffered reads of one answer off a stream, each within ``timeout``."""

    __slots__ = ("_stream", "_timeout", "buf", "got_any")

    def __init__(self, stream: WarmStream, timeout: float | None) -> None:
        self._stream = stream
        self._timeout = timeout
        self.buf = bytearray()
        self.got_any = False

    async def _more(self) -> bool:
        with as_httpx():
            data = await self._stream.read(READ_BYTES, self._timeout)
        if not data:
            return False
        self.got_any = True
        self.buf += data
        return True

    async def until(self, sep: bytes, limit: int) -> bytes:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise httpx.RemoteProtocolError("answer head too long")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not await self._more():
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending a complete answer" if self.got_any
                    else "server disconnected without sending an answer")

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._more():
                raise httpx.RemoteProtocolError("server disconnected in the middle of a body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def to_end(self) -> bytes:
        while await self._more():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _parse_head(head: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError("not an HTTP/1.x status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError("folded header lines")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed header line")
        headers.append((name, value.strip(b" \t")))
    return int(code), reason, version, headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


async def exchange(stream: WarmStream, request: httpx.Request, *,
                   on_sent: Callable[[], None] | None = None) -> Answer:
    """Send ``request`` on ``stream`` and read its whole answer (see the module
    docstring for the errors)."""
    head = request_head(request)
    body = request.content if request.method not in ("GET", "HEAD") else b""
    read_timeout, _write_timeout = _timeouts(request)
    with as_httpx():
        await stream.write(head)
        if body:
            await stream.write(body)
    if on_sent is not None:
        on_sent()
    reader = _Reader(stream, read_timeout)
    while True:
        status, reason, version, headers = _parse_head(
            await reader.until(b"\r\n\r\n", MAX_HEAD_BYTES))
        if not 100 <= status < 200:
            break  # 1xx: interim answers (100 Continue) before the real one
    conn = b",".join(_header(headers, b"connection")).lower()
    keep_alive = (b"close" not in conn if version == b"HTTP/1.1" else b"keep-alive" in conn)
    if request.headers.get("connection", "").lower() == "close":
        keep_alive = False
    te = b",".join(_header(headers, b"transfer-encoding")).lower()
    lengths = set(_header(headers, b"content-length"))
    if request.method == "HEAD" or status in _NO_BODY_STATUS:
        data = b""
    elif te:
        if te.replace(b" ", b"").split(b",")[-1] != b"chunked":
            raise httpx.RemoteProtocolError("unsupported transfer-encoding")
        data = await _chunked(reader)
    elif lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise httpx.RemoteProtocolError("bad content-length")
        data = await reader.exactly(int(next(iter(lengths))))
    else:
        data = await reader.to_end()
        keep_alive = False
    if reader.buf:  # bytes past the answer: the connection is out of step
        keep_alive = False
    return Answer(status, reason, headers, data, keep_alive)


async def _chunked(reader: _Reader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.until(b"\r\n", MAX_HEAD_BYTES)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError("bad chunk size") from None
        if size < 0:
            raise httpx.RemoteProtocolError("bad chunk size")
        if size == 0:
            while await reader.until(b"\r\n", MAX_HEAD_BYTES):
                pass  # trailer fields, up to the empty line
            return bytes(out)
        out += await reader.exactly(size)
        if await reader.exactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not ended by CRLF")


def _read_sent() -> None:
    steptrace.mark("http.sent")


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive connections to athena's one origin (see the module docstring)."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | None,
                 connect_timeout_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.origin = Origin.of(base_url)
        self._ssl = ssl_context if self.origin.scheme == "https" else None
        self._connect_timeout_s = connect_timeout_s
        self._monotonic = monotonic
        self._idle: list[tuple[float, WarmStream]] = []
        self._closed = False
        #: connections opened, and requests sent on a kept one (tests and the bench)
        self.opened = 0
        self.reused = 0

    def _take(self) -> WarmStream | None:
        now = self._monotonic()
        while self._idle:
            since, stream = self._idle.pop()
            if now - since < IDLE_S and stream.fit_for_request(reuse=True):
                self.reused += 1
                return stream
            stream.abort()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.UnsupportedProtocol("the athena transport is closed")
        url = request.url
        o = self.origin
        if (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)) != (
                o.scheme, o.host, o.port):
            raise httpx.UnsupportedProtocol("this transport serves athena's origin only")
        head_timeout = (request.extensions.get("timeout") or {}).get("connect")
        stream = self._take()
        if stream is None:
            with as_httpx():
                stream = await open_stream(
                    o, self._ssl, self._connect_timeout_s if head_timeout is None
                    else min(head_timeout, self._connect_timeout_s), self._monotonic)
            self.opened += 1
        try:
            answer = await exchange(stream, request, on_sent=_read_sent)
        except BaseException:
            stream.abort()
            raise
        steptrace.mark("http.answer")
        if answer.keep_alive and not self._closed:
            self._idle.append((self._monotonic(), stream))
            while len(self._idle) > MAX_IDLE:
                self._idle.pop(0)[1].abort()
        else:
            stream.abort()  # answer read whole; nothing more to say on it
        return answer.response()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _since, stream in idle:
            stream.abort()
        if idle:
            await asyncio.sleep(0)  # the transports close their sockets on the next turn
