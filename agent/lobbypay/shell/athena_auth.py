"""athena's OAuth2 token for one client: fetched with client credentials, cached, shared.

``TokenCache.get`` returns the cached token, or fetches one (a single request for all
concurrent callers) a little before the old one runs out; an early refresh that fails
leaves the old token in use until just before it expires. It also keeps us clear of
athena's token lockout: at most ``requests_per_minute`` token requests per rolling minute,
and after a 429 none until the lockout is over (docs/athena.md, section 2).

Only ``AthenaError`` subclasses leave it; the client secret never appears in their text.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx

from lobbypay.core.athena import (
    AthenaAuthError,
    AthenaBadResponse,
    AthenaError,
    AthenaParseError,
    AthenaThrottled,
    AthenaUnavailable,
    parse_error_body,
    parse_token,
)
from lobbypay.core.athena_reply import decode_json
from lobbypay.ports import Clock
from lobbypay.shell.ratelimit import retry_after_s

_log = logging.getLogger("lobbypay.athena")

DEFAULT_SCOPE: Final = "athena/service/Athenanet.MDP.*"
TOKEN_PATH: Final = "/oauth2/v1/token"  # noqa: S105 - a path, not a secret
#: Fetch a new token this long before ``expires_in`` runs out (athena: "should be cached";
#: go-athenahealth refreshes a minute early and found it cured intermittent 401s).
TOKEN_REFRESH_MARGIN_S: Final = 60.0
#: We stop *using* a token this long before it expires (a request in flight must still
#: carry a valid one when it arrives).
TOKEN_EXPIRY_GUARD_S: Final = 5.0
#: Token requests we allow ourselves per rolling minute. athena allows 5/min in preview and
#: 50/min in production and locks the client out for the rest of the minute past that; a
#: terminal needs about one an hour, so 5 keeps us clear of the lockout in both.
TOKEN_REQUESTS_PER_MINUTE: Final = 5
#: athena's token lockout ends "at the top of the minute" by *its* clock; wait this much
#: longer so a small clock difference does not earn a second 429.
TOKEN_LOCKOUT_SLACK_S: Final = 1.0


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float  # monotonic: fetch a new one from here on
    usable_until: float  # monotonic: after this, never send it


class TokenCache:
    """The bearer token of one athena client.

    ``http`` sends the token request (the client's pooled connection); ``on_response``
    sees every answer from the token endpoint with the monotonic time its request was
    sent (the client learns athena's clock from its ``Date``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str,
        clock: Clock,
        requests_per_minute: int,
        on_response: Callable[[httpx.Response, float], None],
    ) -> None:
        self._http = http
        self._url = f"{base_url}{TOKEN_PATH}"
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._clock = clock
        self._on_response = on_response
        self._token: _Token | None = None
        self._task: asyncio.Task[str] | None = None
        self._locked_until = 0.0
        self._budget = max(1, requests_per_minute)
        self._requests: deque[float] = deque()

    @property
    def cached(self) -> str | None:
        """The token we hold, if any (whether or not it is due for a refresh)."""
        return self._token.value if self._token is not None else None

    def invalidate(self, token: str) -> None:
        """athena refused ``token`` (a 401): the next ``get`` fetches a new one."""
        if self._token is not None and self._token.value == token:
            self._token = None

    def close(self) -> None:
        """Cancel a fetch in flight."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    async def get(self, deadline: float) -> str:
        """The cached token, or a new one fetched once for all concurrent callers."""
        current = self._token
        now = self._clock.monotonic()
        if current is not None and now < current.refresh_at:
            return current.value
        try:
            return await self._shared_fetch(deadline)
        except AthenaError as exc:
            # Early refresh failed but the old token is still good: keep using it.
            if (
                current is not None
                and self._token is current
                and self._clock.monotonic() < current.usable_until
            ):
                _log.warning(
                    "athena token refresh failed (%s); using the current token", exc.message
                )
                return current.value
            raise

    async def _shared_fetch(self, deadline: float) -> str:
        task = self._task
        if task is None or task.done():
            task = asyncio.create_task(self._fetch(), name="lobbypay.athena.token")
            task.add_done_callback(_consume_result)
            self._task = task
        remaining = deadline - self._clock.monotonic()
        timed_out = False
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                return await asyncio.shield(task)
        except TimeoutError:
            timed_out = True
        if timed_out:
            raise AthenaUnavailable("timed out waiting for an athena token")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self) -> str:
        what = f"POST {TOKEN_PATH}"
        now = self._clock.monotonic()
        if now < self._locked_until:
            raise AthenaThrottled(
                f"{what}: locked out by athena for another {self._locked_until - now:.0f} s",
                status=429,
            )
        while self._requests and self._requests[0] <= now - 60.0:
            self._requests.popleft()
        if len(self._requests) >= self._budget:
            next_in = self._requests[0] + 60.0 - now
            raise AthenaThrottled(
                f"{what}: {self._budget} token requests in the last minute; "
                f"next allowed in {next_in:.0f} s"
            )
        self._requests.append(now)
        rid = str(uuid.uuid4())
        started = time.perf_counter()
        failure: str | None = None
        try:
            resp = await self._http.post(
                self._url,
                data={"grant_type": "client_credentials", "scope": self._scope},
                auth=(self._client_id, self._client_secret),
                headers={"X-Request-Id": rid},
            )
        except httpx.HTTPError as exc:
            failure = type(exc).__name__
        if failure is not None:
            raise AthenaUnavailable(f"{what}: {failure}", request_id=rid)
        status = resp.status_code
        _log.debug(
            "athena POST %s -> %s in %.1f ms, X-Request-Id %s",
            TOKEN_PATH,
            status,
            (time.perf_counter() - started) * 1000,
            rid,
        )
        self._on_response(resp, now)
        if status == 200:
            body = decode_json(resp.content)
            parsed: tuple[str, float] | None = None
            problem = ""
            try:
                parsed = parse_token(body)
            except AthenaParseError as exc:
                problem = exc.message
            if parsed is None:
                raise AthenaBadResponse(f"{what}: {problem}", status=200, request_id=rid)
            value, ttl_s = parsed
            margin = min(TOKEN_REFRESH_MARGIN_S, ttl_s / 2)
            guard = min(TOKEN_EXPIRY_GUARD_S, ttl_s / 4)
            self._token = _Token(value, now + ttl_s - margin, now + ttl_s - guard)
            return value
        if status == 429:
            retry_after = retry_after_s(resp.headers, self._clock.now())
            if retry_after is not None:
                wait = retry_after
            else:  # "blocked ... for the remainder of the minute"
                wall = self._clock.now()
                wait = 60.0 - wall.second - wall.microsecond / 1e6
            self._locked_until = self._clock.monotonic() + wait + TOKEN_LOCKOUT_SLACK_S
            _log.warning(
                "athena token endpoint locked us out for %.0f s, X-Request-Id %s", wait, rid
            )
            raise AthenaThrottled(
                f"{what}: locked out (HTTP 429) for {wait:.0f} s", status=429, request_id=rid
            )
        if status >= 500:
            raise AthenaUnavailable(f"{what}: HTTP {status}", status=status, request_id=rid)
        if 400 <= status < 500:
            err = parse_error_body(decode_json(resp.content), (self._client_secret,))
            text = err.error if err else f"HTTP {status}"
            raise AthenaAuthError(
                f"{what}: credentials refused: {text}", status=status, request_id=rid
            )
        raise AthenaBadResponse(f"{what}: unexpected HTTP {status}", status=status, request_id=rid)


def _consume_result(task: asyncio.Task[str]) -> None:
    """Mark a token task's exception as seen even if every waiter gave up on it."""
    if not task.cancelled():
        task.exception()


__all__ = ["DEFAULT_SCOPE", "TOKEN_PATH", "TokenCache"]
