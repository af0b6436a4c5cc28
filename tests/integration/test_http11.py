"""shell/http11.py against a scripted loopback server: answer framing (Content-Length,
chunked, to the end of the connection, interim 1xx), content codings, keep-alive reuse and
its limits, and the httpx error classes the athena client sorts into "not sent" / "may
have been sent"; both through ``PooledTransport.send`` (the athena client's way) and
through ``httpx.AsyncClient`` on the same transport (the token request's)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from lobbypay.shell.http11 import Call, PooledTransport

Script = Callable[[bytes], bytes | None]


@contextlib.asynccontextmanager
async def server(answer: Script, *, close_after: bool = False) -> AsyncIterator[dict]:
    """Each request head (and its Content-Length body) gets ``answer(request)``; None:
    hang up without answering."""
    seen: dict = {"requests": [], "connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                seen["requests"].append(head + body)
                out = answer(head + body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    seen["url"] = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        yield seen
    finally:
        srv.close()
        await srv.wait_closed()


def client(seen: dict) -> tuple[httpx.AsyncClient, PooledTransport]:
    t = PooledTransport(seen["url"], ssl_context=None, connect_timeout_s=2.0)
    return httpx.AsyncClient(transport=t, timeout=2.0), t


def post(target: bytes, body: bytes | bytearray) -> Call:
    return Call(b"POST", target, [(b"host", b"127.0.0.1"),
                                  (b"content-length", str(len(body)).encode())], body,
                read_s=2.0, write_s=2.0)


def get(target: bytes = b"/", *extra: tuple[bytes, bytes]) -> Call:
    return Call(b"GET", target, [(b"host", b"127.0.0.1"), *extra], read_s=2.0, write_s=2.0,
                connect_s=2.0)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_content_length_answers_reuse_one_connection() -> None:
    async with server(lambda req: ok(b'{"n": 1}')) as seen:
        c, t = client(seen)
        async with c:
            for _ in range(3):
                r = await c.get(seen["url"] + "/v1/x?a=1", headers={"Authorization": "Bearer t"})
                assert r.status_code == 200 and r.json() == {"n": 1}
        assert seen["connections"] == 1 and t.opened == 1 and t.reused == 2
        assert seen["requests"][0].startswith(b"GET /v1/x?a=1 HTTP/1.1\r\n")
        assert b"Authorization: Bearer t\r\n" in seen["requests"][0]


async def test_a_post_body_goes_as_given() -> None:
    async with server(lambda req: ok(b"[]")) as seen:
        c, _t = client(seen)
        async with c:
            r = await c.post(seen["url"] + "/p", content=b"a=1&b=2",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200
        assert seen["requests"][0].endswith(b"\r\n\r\na=1&b=2")
        assert b"Content-Length: 7\r\n" in seen["requests"][0]


async def test_chunked_and_interim_answers() -> None:
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4;ext=1\r\n{\"a\"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: 1\r\n\r\n")
    async with server(lambda req: answer) as seen:
        c, t = client(seen)
        async with c:
            assert (await c.get(seen["url"] + "/")).json() == {"a": 12}
            assert (await c.get(seen["url"] + "/")).json() == {"a": 12}
        assert t.opened == 1


async def test_an_answer_to_the_end_of_the_connection_is_not_kept() -> None:
    async with server(lambda req: b"HTTP/1.1 200 OK\r\n\r\n{}", close_after=True) as seen:
        c, t = client(seen)
        async with c:
            assert (await c.get(seen["url"] + "/")).json() == {}
            assert (await c.get(seen["url"] + "/")).json() == {}
        assert t.opened == 2 and t.reused == 0


async def test_connection_close_and_a_server_that_closed_an_idle_one() -> None:
    async with server(lambda req: ok(b"{}", b"Connection: close\r\n"), close_after=True) as seen:
        c, t = client(seen)
        async with c:
            await c.get(seen["url"] + "/")
            await asyncio.sleep(0.05)
            await c.get(seen["url"] + "/")
        assert t.opened == 2 and t.reused == 0
    async with server(lambda req: ok(b"{}")) as seen:
        c, t = client(seen)
        async with c:
            await c.get(seen["url"] + "/")
            # the server drops the idle connection: the next request opens a new one
            for stream_since in list(t._idle):  # noqa: SLF001
                stream_since[1]._proto.eof = True  # noqa: SLF001 - as eof_received would
            await c.get(seen["url"] + "/")
        assert t.opened == 2


async def test_errors_are_httpx_classes() -> None:
    async with server(lambda req: None) as seen:  # hangs up after the request
        c, _t = client(seen)
        async with c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(seen["url"] + "/")
    async with server(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}") as seen:
        c, _t = client(seen)
        async with c:
            with pytest.raises(httpx.ReadTimeout):  # the body never comes
                await c.get(seen["url"] + "/", timeout=0.3)
    async with server(lambda req: b"SMTP ready\r\n\r\n") as seen:
        c, _t = client(seen)
        async with c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(seen["url"] + "/")
    c, _t = client({"url": "http://127.0.0.1:9"})
    async with c:
        with pytest.raises(httpx.ConnectError):  # nothing listens: nothing sent
            await c.get("http://127.0.0.1:9/")
        with pytest.raises(httpx.UnsupportedProtocol):  # another origin: never sent
            await c.get("http://127.0.0.2:9/")
    async with server(lambda req: ok(b"{}")) as seen:
        c, _t = client(seen)
        async with c:
            with pytest.raises(httpx.LocalProtocolError):  # refused before a byte is sent
                await c.get(seen["url"] + "/", headers={"X-Bad": "a\r\nInjected: 1"})
        assert seen["requests"] == []


def record_writes(stream: object) -> list[bytearray]:
    """Every buffer ``stream.write`` is given, as given (the same objects)."""
    written: list[bytearray] = []
    real_write = stream.write  # type: ignore[attr-defined]

    async def recording(buffer: bytearray, timeout: float | None) -> None:  # noqa: ASYNC109
        written.append(buffer)
        await real_write(buffer, timeout)

    stream.write = recording  # type: ignore[attr-defined]
    return written


async def test_the_request_goes_in_one_write_and_that_buffer_is_wiped() -> None:
    """The payment body is overwritten after the exchange by the athena client; the one
    copy the exchange makes (head and body in one write, one segment) is wiped here."""
    from lobbypay.shell.http11 import Origin, exchange, open_stream

    async with server(lambda req: ok(b"{}")) as seen:
        body = bytearray(b"cardnumber=4111111111111111&x=1")
        stream = await open_stream(Origin.of(seen["url"]), None, 2.0)
        written = record_writes(stream)
        answer = await exchange(stream, post(b"/p", body))
        stream.abort()
        assert answer.status_code == 200
        assert seen["requests"][0].endswith(b"\r\n\r\n" + body)
        assert len(written) == 1
        assert written[0] == bytes(len(written[0]))  # all zeros now
        assert len(written[0]) == len(seen["requests"][0])


async def test_the_buffer_is_wiped_when_no_answer_comes() -> None:
    from lobbypay.shell.http11 import Origin, exchange, open_stream

    async with server(lambda req: None) as seen:  # hangs up after the request
        stream = await open_stream(Origin.of(seen["url"]), None, 2.0)
        written = record_writes(stream)
        with pytest.raises(httpx.RemoteProtocolError):
            await exchange(stream, post(b"/p", b"trackdata=%B4111^"))
        stream.abort()
        assert written and all(w == bytes(len(w)) for w in written)


async def test_an_oversized_head_and_bytes_past_the_answer() -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * (200 * 1024) + b"\r\nContent-Length: 2\r\n\r\n{}"
    async with server(lambda req: huge) as seen:
        c, _t = client(seen)
        async with c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(seen["url"] + "/")
    # an answer followed by bytes nobody asked for: out of step, never reused
    async with server(lambda req: ok(b"{}") + b"HTTP/1.1 200 OK\r\n") as seen:
        c, t = client(seen)
        async with c:
            assert (await c.get(seen["url"] + "/")).json() == {}
            assert (await c.get(seen["url"] + "/")).json() == {}
        assert t.opened == 2 and t.reused == 0


def coded(bodies: dict[bytes, tuple[bytes, bytes]], extra: bytes = b"") -> Script:
    """Answers each target with its (content coding, body)."""
    def answer(req: bytes) -> bytes:
        coding, body = bodies[req.split(b" ")[1]]
        return ok(body, b"Content-Encoding: " + coding + b"\r\n" + extra)
    return answer


async def test_send_gives_headers_by_any_case_and_the_body_decoded() -> None:
    doc = b'{"patients": [' + b'{"balance": "1.00"},' * 200 + b'{}]}'
    codings = {
        b"/gzip": (b"gzip", gzip.compress(doc)),
        b"/deflate": (b"deflate", zlib.compress(doc)),
        b"/raw-deflate": (b"deflate", zlib.compress(doc)[2:-4]),
        b"/plain": (b"identity", doc),
    }

    async with server(coded(codings, b"Vary: a\r\nVARY: b\r\n")) as seen:
        t = PooledTransport(seen["url"], ssl_context=None, connect_timeout_s=2.0)
        try:
            for target in codings:
                a = await t.send(get(target))
                assert (a.status_code, a.content) == (200, doc), target
                assert a.headers.get("vary") == a.headers.get("Vary") == "a, b"
                assert a.headers.get("retry-after") is None and "VARY" in a.headers
            assert t.opened == 1 and t.reused == 3
            # the same through httpx (the token request's way): decoded once, not twice,
            # and offering only what http11 decodes, whatever httpx would offer
            c = httpx.AsyncClient(transport=t, timeout=2.0)
            r = await c.get(seen["url"] + "/gzip", headers={"Accept-Encoding": "br, zstd"})
            assert r.content == doc and "content-encoding" not in r.headers
            assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in seen["requests"][-1]
        finally:
            await t.aclose()


async def test_a_body_that_does_not_decode_is_a_decoding_error() -> None:
    bodies = {b"/bad-gzip": (b"gzip", b"not gzip at all"),
              b"/br": (b"br", b"\x0b\x01\x80{}\x03"),
              b"/truncated": (b"gzip", gzip.compress(b"{}" * 100)[:-8])}

    async with server(coded(bodies)) as seen:
        t = PooledTransport(seen["url"], ssl_context=None, connect_timeout_s=2.0)
        try:
            for target in bodies:
                with pytest.raises(httpx.DecodingError):  # an answer came: "may have been sent"
                    await t.send(get(target))
        finally:
            await t.aclose()


async def test_send_refuses_before_a_byte_and_after_close() -> None:
    async with server(lambda req: ok(b"{}")) as seen:
        t = PooledTransport(seen["url"], ssl_context=None, connect_timeout_s=2.0)
        with pytest.raises(httpx.LocalProtocolError):
            await t.send(get(b"/", (b"x-bad", b"a\r\nInjected: 1")))
        with pytest.raises(httpx.LocalProtocolError):  # no Host: not HTTP/1.1
            await t.send(Call(b"GET", b"/", []))
        await t.aclose()
        with pytest.raises(httpx.UnsupportedProtocol):
            await t.send(get())
        assert seen["requests"] == []
