"""athena's HTTP/1.1 exchanges, lean: h11 on an asyncio connection.

Why not httpx's own transport (httpcore, which frames with h11 too, on anyio): measured on
the bench machine, a GET of a patient through it cost 1.3-1.5 ms of CPU, most of it in
httpcore's pool and anyio's stream layers, not in the framing; and httpx's request and
response objects (URL parsing, header normalising) cost about as much again as the
exchange (docs/PERFORMANCE.md). A charge makes three requests, and the POST and its
answer lie on the path a patient waits on. So the framing stays with h11 (well kept, the
parser httpcore uses: Content-Length, chunked and connection-end bodies, interim 1xx
answers, keep-alive rules, header validation), and what is around it is ours and small:
an ``asyncio.Protocol`` that notes the server's close at once, which the payment line
needs (shell/payline.py), a ``Call`` (the request as h11 takes it) and an ``Answer``
(status, headers, body read whole).

* ``exchange()`` writes one ``Call`` on a ``WarmStream`` and reads its answer whole.
  Errors come out as httpx's classes, which the athena client sorts into "not sent"
  (``LocalProtocolError``: h11 refused the request before a byte was written) and "may
  have been sent" (``ReadTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``,
  ``DecodingError``).
* ``PooledTransport`` serves athena's reads and its non-payment POSTs (``send``):
  connections to the one origin are kept open between requests (``IDLE_S`` at most,
  ``MAX_IDLE`` of them); one that the server closed or sent anything on while idle is
  dropped, not used. It is also an httpx transport, for the OAuth token request (about
  once an hour, through ``httpx.AsyncClient``). The payment POST never uses it
  (shell/payline.py).

The request goes out in one write: head and body in one buffer of ours, wiped when the
exchange is over (the athena client wipes its own copy of a payment's or an email's
body then too).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import urlsplit

import h11
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


class WarmStream:
    """One TCP (+ TLS) connection on the asyncio event loop, with its h11 state."""

    def __init__(self, transport: asyncio.Transport, proto: _Protocol, opened_at: float) -> None:
        self._transport = transport
        self._proto = proto
        self.opened_at = opened_at
        #: bytes of requests written on this connection (0 until the first request)
        self.bytes_sent = 0
        #: the HTTP/1.1 state of this connection (one request/answer cycle at a time)
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)

    @property
    def local_port(self) -> int:
        name = self._transport.get_extra_info("sockname")
        return int(name[1]) if name else 0

    def fit_for_request(self, *, reuse: bool = False) -> bool:
        """Nothing written yet (``reuse``: a kept-alive connection whose last answer was
        read whole, h11 ready for the next cycle), still open both ways, and nothing
        unsolicited received (a server sends nothing before a request; a 408 or a close
        means it is done)."""
        p = self._proto
        if reuse:
            ready = self.http.our_state is h11.DONE and self.http.their_state is h11.DONE
        else:
            ready = self.bytes_sent == 0 and self.http.our_state is h11.IDLE
        return (ready and not p.eof and not p.lost and not p.buffer
                and not self._transport.is_closing())

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:  # noqa: ASYNC109 - a per-read bound
        """Up to ``max_bytes`` received, or b"" at the server's end of stream."""
        p = self._proto
        while not p.buffer:
            if p.eof or p.lost:
                if p.error is not None and not p.eof:
                    raise httpx.ReadError(type(p.error).__name__)
                return b""
            p._readable.clear()
            try:
                async with asyncio.timeout(timeout):
                    await p._readable.wait()
            except TimeoutError:
                raise httpx.ReadTimeout("read timed out") from None
        data = bytes(p.buffer[:max_bytes])
        del p.buffer[:max_bytes]
        return data

    async def write(self, buffer: bytes | bytearray | memoryview, timeout: float | None) -> None:  # noqa: ASYNC109 - a per-write bound
        if not buffer:
            return
        p = self._proto
        if p.lost or self._transport.is_closing():
            raise httpx.WriteError("connection closed")
        self.bytes_sent += len(buffer)
        self._transport.write(buffer)
        if not p._writable.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await p._writable.wait()
            except TimeoutError:
                raise httpx.WriteTimeout("write timed out") from None
            if p.lost:
                raise httpx.WriteError("connection lost while writing")

    def abort(self) -> None:
        self._transport.abort()

    def get_extra_info(self, info: str) -> Any:
        return self._transport.get_extra_info(info)


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
    ``httpx.ConnectError`` / ``ConnectTimeout``: nothing was sent."""
    loop = asyncio.get_running_loop()
    started = monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            transport, proto = await loop.create_connection(
                _Protocol, origin.host, origin.port, ssl=ssl_context,
                server_hostname=origin.host if ssl_context is not None else None)
    except TimeoutError:
        raise httpx.ConnectTimeout("connect timed out") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise httpx.ConnectError(type(exc).__name__) from None
    assert isinstance(transport, asyncio.Transport)
    return WarmStream(transport, proto, started)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """athena's one origin, and how a connection to it is opened (the reads' pool and
    the payment line share it)."""

    origin: Origin
    ssl_context: ssl.SSLContext | None  # None for http
    connect_timeout_s: float
    monotonic: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, base_url: str, *, ssl_context: ssl.SSLContext | None,
           connect_timeout_s: float,
           monotonic: Callable[[], float] = time.monotonic) -> Endpoint:
        origin = Origin.of(base_url)
        return cls(origin, ssl_context if origin.scheme == "https" else None,
                   connect_timeout_s, monotonic)

    def check(self, request: httpx.Request, what: str) -> None:
        """``httpx.UnsupportedProtocol`` (nothing sent) for a request to another origin."""
        url, o = request.url, self.origin
        if (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)) != (
                o.scheme, o.host, o.port):
            raise httpx.UnsupportedProtocol(f"{what} serves athena's origin only")

    async def open(self, timeout_s: float | None = None) -> WarmStream:
        """A new connection (``open_stream``), within ``timeout_s`` if that is shorter."""
        t = self.connect_timeout_s if timeout_s is None else min(timeout_s,
                                                                 self.connect_timeout_s)
        return await open_stream(self.origin, self.ssl_context, t, self.monotonic)



class Call:
    """One request as h11 takes it: method, target (path and query), headers with
    lowercase names (``host`` first), body (``b""`` for none), and the read, write and
    connect bounds in seconds (None: unbounded). The body may be a ``bytearray`` that
    the caller wipes after the exchange."""

    __slots__ = ("method", "target", "headers", "body", "read_s", "write_s", "connect_s")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes | bytearray = b"", *, read_s: float | None = None,
                 write_s: float | None = None, connect_s: float | None = None) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.read_s = read_s
        self.write_s = write_s
        self.connect_s = connect_s


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers by name, case-insensitive (h11 gives them lowercased); a
    repeated header reads as its values joined with ", ", as httpx reads it."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> str:
        name = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in self._raw if k == name]
        if not found:
            raise KeyError(key)
        return ", ".join(found)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.decode("latin-1") for k, _ in self._raw))

    def __len__(self) -> int:
        return len({k for k, _ in self._raw})


#: What the requests accept; ``_decoded`` undoes it.
ACCEPT_ENCODING: Final = b"gzip, deflate"


def _decoded(body: bytes, coding: str | None) -> bytes:
    """The body without its content coding. Raises ``httpx.DecodingError`` for a coding
    not asked for, or a body that does not decode (an answer came but cannot be read)."""
    if not coding or not body:
        return body
    try:
        for c in reversed([c.strip().lower() for c in coding.split(",")]):
            if c in ("gzip", "x-gzip"):
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            elif c == "deflate":  # zlib-wrapped, as the RFC says; raw deflate as found
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
            elif c not in ("identity", ""):
                raise httpx.DecodingError("the answer's content coding was not asked for")
    except zlib.error:
        raise httpx.DecodingError("the answer's body does not decode") from None
    return body


class Answer:
    """An answer read whole: status, reason, headers, body (decoded when it came gzip-
    or deflate-encoded), and whether the connection may carry another request.
    ``status_code``, ``headers`` and ``content`` read as httpx's response's do."""

    __slots__ = ("status_code", "reason", "raw_headers", "headers", "content", "keep_alive")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes, keep_alive: bool) -> None:
        self.status_code = status
        self.reason = reason
        self.raw_headers = headers
        self.headers = AnswerHeaders(headers)
        self.content = _decoded(body, self.headers.get("content-encoding"))
        self.keep_alive = keep_alive

    def response(self) -> httpx.Response:
        """The answer as an httpx response (the token request's ``httpx.AsyncClient``);
        its body already decoded."""
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-encoding"]
        return httpx.Response(
            self.status_code, headers=headers, content=self.content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason})


def call_of(request: httpx.Request) -> Call:
    """An httpx request as a ``Call``, accepting only the codings ``_decoded`` undoes
    (httpx offers brotli and zstd too where those packages are installed). Raises
    ``httpx.LocalProtocolError`` (nothing sent) for a streamed body."""
    if "transfer-encoding" in request.headers:
        raise httpx.LocalProtocolError("streamed request bodies are not sent")
    t = request.extensions.get("timeout") or {}
    body = request.content if request.method not in ("GET", "HEAD") else b""
    headers = [(k, ACCEPT_ENCODING if k.lower() == b"accept-encoding" else v)
               for k, v in request.headers.raw]
    return Call(request.method.encode("ascii"), request.url.raw_path or b"/", headers, body,
                read_s=t.get("read"), write_s=t.get("write"), connect_s=t.get("connect"))


async def exchange(stream: WarmStream, call: Call, *,
                   on_sent: Callable[[], None] | None = None) -> Answer:
    """Send ``call`` on ``stream`` and read its whole answer (see the module docstring
    for the errors). The connection may carry another request afterwards only if
    ``Answer.keep_alive``."""
    http = stream.http
    if http.our_state is h11.DONE and http.their_state is h11.DONE:
        http.start_next_cycle()  # a kept-alive connection's next request
    body = call.body
    try:
        head = http.send(h11.Request(method=call.method, target=call.target,
                                     headers=call.headers))
        # passthrough: the caller's body object itself (a bytearray it wipes, which h11
        # only measures and hands back), not a copy in h11's output
        parts = (http.send_with_data_passthrough(h11.Data(data=cast(bytes, body)))
                 if body else [])
        end = http.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc)) from None
    # One write, one segment: the server is woken once, not for the head and again for
    # the body. The one copy of the body this makes is ours, and it is wiped once the
    # exchange is over (the answer read, or the connection given up), when the transport
    # holds no reference to it any more (a TLS transport may keep one until it writes).
    wire = bytearray(head or b"")
    for part in parts or ():
        wire += part
    wire += end or b""
    try:
        await stream.write(wire, call.write_s)
        if on_sent is not None:
            on_sent()
        status, reason, headers, data = await _read_answer(http, stream, call.read_s)
    finally:
        wire[:] = bytes(len(wire))
    # reusable only when both sides are done and nothing came past the answer (a
    # connection out of step); h11 says MUST_CLOSE for Connection: close, HTTP/1.0, and
    # an answer framed by the connection's end
    trailing, closed = http.trailing_data
    keep_alive = (http.our_state is h11.DONE and http.their_state is h11.DONE
                  and not trailing and not closed)
    return Answer(status, reason, headers, data, keep_alive)


async def _read_answer(http: h11.Connection, stream: WarmStream, read_timeout: float | None,
                       ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    """The answer's status, reason, headers and whole body (interim answers skipped)."""
    status, reason, headers = 0, b"", []
    data = bytearray()
    try:
        while True:
            ev = http.next_event()
            if ev is h11.NEED_DATA:
                http.receive_data(await stream.read(READ_BYTES, read_timeout))
            elif isinstance(ev, h11.Response):  # (1xx answers are InformationalResponse)
                status, reason, headers = ev.status_code, ev.reason, list(ev.headers)
            elif isinstance(ev, h11.Data):
                data += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                return status, reason, headers, bytes(data)
            elif isinstance(ev, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("server disconnected without sending an answer")
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc)) from None


def _read_sent() -> None:
    steptrace.mark("http.sent")


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive connections to athena's one origin (see the module docstring)."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | None,
                 connect_timeout_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = Endpoint.of(base_url, ssl_context=ssl_context,
                                    connect_timeout_s=connect_timeout_s, monotonic=monotonic)
        self._idle: list[tuple[float, WarmStream]] = []
        self._closed = False
        #: connections opened, and requests sent on a kept one (tests and the bench)
        self.opened = 0
        self.reused = 0

    def _take(self) -> WarmStream | None:
        now = self.endpoint.monotonic()
        while self._idle:
            since, stream = self._idle.pop()
            if now - since < IDLE_S and stream.fit_for_request(reuse=True):
                self.reused += 1
                return stream
            stream.abort()
        return None

    async def send(self, call: Call) -> Answer:
        """``call`` on a kept-alive connection, or a new one (``Call.connect_s`` bounds
        opening it); its answer read whole."""
        if self._closed:
            raise httpx.UnsupportedProtocol("the athena transport is closed")
        stream = self._take()
        if stream is None:
            stream = await self.endpoint.open(call.connect_s)
            self.opened += 1
        try:
            answer = await exchange(stream, call, on_sent=_read_sent)
        except BaseException:
            stream.abort()
            raise
        steptrace.mark("http.answer")
        if answer.keep_alive and not self._closed:
            self._idle.append((self.endpoint.monotonic(), stream))
            while len(self._idle) > MAX_IDLE:
                self._idle.pop(0)[1].abort()
        else:
            stream.abort()  # answer read whole; nothing more to say on it
        return answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """As an httpx transport: the request to athena's origin only."""
        self.endpoint.check(request, "this transport")
        return (await self.send(call_of(request))).response()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _since, stream in idle:
            stream.abort()
        if idle:
            await asyncio.sleep(0)  # the transports close their sockets on the next turn
