"""The payment POST's own connection: opened (TCP + TLS) while a job waits for a card,
used for that one POST, never for anything else.

Why not a pool: a pooled keep-alive connection may have carried another request, and a
server that closed it at the wrong moment can turn a never-processed POST into an
"unknown" outcome. Why not a fresh connection after the swipe: over the internet its
TCP and TLS handshakes are two or three round trips (100-300 ms) the patient waits
through. So ``PaymentLine`` opens one connection *before* the swipe, and

* it carries no request but the POST: the connection is taken out of the line when the
  POST starts and closed when its answer has been read;
* the asyncio transport reads the socket all the time, so a close by the server (FIN,
  RST, TLS close_notify) or any byte it sends before a request marks the connection
  dead at once; ``take()`` checks that, and its age, before a byte of the POST is
  written, and opens a fresh connection instead (the POST is still sent once);
* while a job waits, the connection is replaced every ``WARM_REFRESH_S`` (servers close
  connections that never sent a request: nginx's ``client_header_timeout`` is 60 s,
  Apache's ``RequestReadTimeout`` 20-40 s), so the one the POST takes is young.

``send()`` makes the POST: one request (shell/http11.py) on the connection ``take()``
gives, its answer read whole, the connection closed. Connection
failures come out as ``httpx.ConnectError``/``ConnectTimeout`` (nothing sent); failures
after the first byte as the read/write/protocol errors the athena client classifies as
"may have been sent".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Final

import httpx

from lobbypay.shell import steptrace
from lobbypay.shell.http11 import Answer, Call, Endpoint, WarmStream, exchange

_log = logging.getLogger("lobbypay.athena")

#: A warm connection is replaced this often while a job waits for a card (servers drop
#: connections that sent no request after 20-60 s; see the module docstring).
WARM_REFRESH_S: Final = 15.0
#: The POST never goes out on a warm connection older than this (refresh + slack for a
#: refresh that is late or failed); an older one is closed and a fresh one opened.
WARM_MAX_AGE_S: Final = 20.0
#: After a failed warm-up, try again this much later (the POST opens its own meanwhile).
WARM_RETRY_S: Final = 5.0

class PaymentLine:
    """The connection the next payment POST will use (see the module docstring)."""

    def __init__(self, base_url: str, *, ssl_context: ssl.SSLContext | None,
                 connect_timeout_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = Endpoint.of(base_url, ssl_context=ssl_context,
                                    connect_timeout_s=connect_timeout_s, monotonic=monotonic)
        self._warm: WarmStream | None = None
        self._task: asyncio.Task[None] | None = None
        #: a warm-up's connection being opened (TCP + TLS under way)
        self._opening: asyncio.Task[WarmStream] | None = None
        self._hold_until = 0.0
        self._closed = False
        #: counts, for the tests and the bench: connections opened (warm-ups and fresh
        #: ones), POSTs sent on a warm one, warm ones found unfit and replaced at take
        self.opened = 0
        self.warm_taken = 0
        self.warm_replaced = 0
        #: the local port of the last connection handed to a POST (tests match it with
        #: the server's view of the POST)
        self.last_port = 0

    # ------------------------------------------------------------ warming

    def warm(self, hold_s: float) -> None:
        """Open the payment connection now (in the background) and keep a young one
        until the POST takes it or ``hold_s`` passes. Never raises; a failed warm-up
        only means the POST opens its own connection."""
        if self._closed:
            return
        self._hold_until = max(self._hold_until, self.endpoint.monotonic() + max(0.0, hold_s))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._warm_loop(), name="lobbypay.athena.warm_loop")

    async def _warm_loop(self) -> None:
        try:
            while not self._closed:
                now = self.endpoint.monotonic()
                if now >= self._hold_until:
                    return
                w = self._warm
                if w is None or not w.fit_for_request() or now - w.opened_at >= WARM_REFRESH_S:
                    opening = asyncio.get_running_loop().create_task(
                        self._open(), name="lobbypay.athena.warm_open")
                    self._opening = opening
                    try:
                        # shielded: a POST that starts meanwhile takes this connection
                        # over (take() awaits it) instead of opening another
                        fresh = await asyncio.shield(opening)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        _log.debug("athena payment connection: warm-up failed (%s)", exc)
                        await asyncio.sleep(min(WARM_RETRY_S, self._hold_until - now))
                        continue
                    finally:
                        if self._opening is opening:
                            self._opening = None
                    old, self._warm = self._warm, fresh
                    if old is not None:
                        old.abort()  # never used: nothing to say on it
                    w = fresh
                wake_at = min(self._hold_until, w.opened_at + WARM_REFRESH_S)
                await asyncio.sleep(max(0.0, wake_at - self.endpoint.monotonic()))
        finally:
            # the slot is this loop's unless take() emptied it and a new warm() started
            # another loop meanwhile
            if self._task is None or self._task is asyncio.current_task():
                w, self._warm = self._warm, None
                if w is not None:
                    w.abort()

    async def _open(self) -> WarmStream:
        stream = await self.endpoint.open()
        self.opened += 1
        return stream

    # ------------------------------------------------------------ the POST

    async def take(self) -> WarmStream:
        """The connection for a POST: the warm one when it is fit (open, unused, nothing
        received, young), or the one a warm-up is opening right now, else a new one.
        Raises ``httpx.ConnectError`` / ``ConnectTimeout`` (nothing sent)."""
        w, self._warm = self._warm, None
        task, self._task = self._task, None
        opening, self._opening = self._opening, None
        self._hold_until = 0.0
        if task is not None and not task.done():
            task.cancel()  # its finally finds no warm connection: ours is taken
        if w is not None:
            if w.fit_for_request() and self.endpoint.monotonic() - w.opened_at < WARM_MAX_AGE_S:
                if opening is not None:
                    opening.cancel()  # a refresh under way: not needed any more
                return self._hand_out(w)
            self.warm_replaced += 1
            _log.debug("athena payment connection: the warm one is closed or stale; "
                       "opening another")
            w.abort()
        if opening is not None:
            # a swipe during the warm-up: its handshake is further along than a new one
            try:
                w = await opening
            except (httpx.ConnectError, httpx.ConnectTimeout):
                w = None
            if w is not None and w.fit_for_request():
                return self._hand_out(w)
            if w is not None:
                w.abort()
        fresh = await self._open()
        self.last_port = fresh.local_port
        return fresh

    def _hand_out(self, w: WarmStream) -> WarmStream:
        self.warm_taken += 1
        self.last_port = w.local_port
        return w

    async def send(self, call: Call) -> Answer:
        """``call`` (the payment POST) on the connection ``take()`` gives, its answer
        read whole, the connection closed after it."""
        steptrace.mark("post.begin")
        stream = await self.take()
        try:
            answer = await exchange(stream, call, on_sent=_sent)
        except BaseException:
            stream.abort()
            raise
        # one request per connection, never reused: closed now that its answer is read
        # whole (at once: a TLS close_notify would keep the socket open for another turn)
        stream.abort()
        steptrace.mark("post.answer")
        return answer

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.ConnectError,
                                     httpx.ConnectTimeout):
                (await opening).abort()
        w, self._warm = self._warm, None
        if w is not None:
            w.abort()


def _sent() -> None:
    steptrace.mark("post.sent")
