"""athena over httpx: one cached token, a client-side rate limit, and one POST that is
never retried.

``AthenaClient`` implements ``lobbypay.ports.Athena``. Only ``AthenaError`` subclasses
leave it: httpx and json failures are classified here, at the edge, by *whether the
request may have reached athena* (see docs/athena.md for the full table).

Reads (GET) retry within one overall deadline (``timeout_s``): once with a new token after
a 401, after throttling (429, or 403 "Over Qps"/"Over Rate") honouring ``Retry-After``,
and a little after 5xx or connection failures. ``collect_payment`` sends its POST exactly
once, whatever happens.

Card data: the POST form is never logged and never put in an exception; athena's error
text is cleaned (card-shaped text and the form's card fields masked) before it is kept.
httpx exceptions (which hold the request, body included) are never chained onto ours.
Debug logs carry the method, the path *template* (no patient ids), the status, the
elapsed time and the ``X-Request-Id`` that athena support can look up.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import email.utils
import json
import logging
import math
import random
import re
import ssl
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from lobbypay import __version__
from lobbypay.core.athena import (
    AthenaAuthError,
    AthenaBadResponse,
    AthenaError,
    AthenaParseError,
    AthenaRejected,
    AthenaThrottled,
    AthenaUnavailable,
    Declined,
    NotFound,
    OutcomeUnknown,
    OutcomeUnknownText,
    PaymentResult,
    Receipt,
    clean_peer_text,
    is_throttle_text,
    parse_action_result,
    parse_error_body,
    parse_list_page,
    parse_payment_result,
    parse_receipts,
    parse_token,
)
from lobbypay.core.clock import ServerClock
from lobbypay.ports import Clock
from lobbypay.shell.http11 import PooledTransport
from lobbypay.shell.payline import PaymentLine

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
#: TCP + TLS to athena over a lobby's uplink; longer than this means unreachable.
CONNECT_TIMEOUT_S: Final = 5.0
#: The departments list changes when an administrator edits the practice; an hour is fresh.
DEPARTMENTS_CACHE_S: Final = 3600.0
#: A GET that got a 5xx or failed to connect is tried again this many times (bounded by
#: the call's deadline), after 0.125-0.25 s and 0.25-0.5 s: enough to ride out a gateway
#: blip, not enough to pile onto an outage.
GET_SERVER_RETRIES: Final = 2
SERVER_BACKOFF_BASE_S: Final = 0.25
#: Throttle backoff without Retry-After: 0.5, 1, 2, 4, 8 s (each jittered down to half).
THROTTLE_BACKOFF_BASE_S: Final = 0.5
THROTTLE_BACKOFF_CAP_S: Final = 8.0
#: A list endpoint with more pages than this is answering nonsense.
MAX_PAGES: Final = 50
#: Extra time the POST may take beyond ``timeout_s`` in total (connect + write + read each
#: have their own httpx timeout; this bounds a server that trickles bytes forever).
POST_TOTAL_SLACK_S: Final = 10.0
#: The longest wait a ``Retry-After`` may impose (token lockouts, throttled reads).
RETRY_AFTER_CAP_S: Final = 120.0
#: Form fields that carry card data: masked wherever athena's text might echo them.
CARD_FIELDS: Final = frozenset(
    {
        "trackdata",
        "accountnumber",
        "cardsecuritycode",
        "nameoncard",
        "expirationmonthmm",
        "expirationyearyyyy",
        "billingaddress",
        "billingzip",
    }
)
_ID_RE = re.compile(r"\A[0-9A-Za-z_-]{1,32}\Z")
#: The PAN and the cardholder name inside ``trackdata`` (track 1 ``%B PAN ^ NAME ^``,
#: track 2 ``; PAN =``), so athena's text is masked for them on their own too.
_TRACK_PAN_RE = re.compile(r"(?:%[A-Za-z]|;)(\d{12,19})[\^=]")
_TRACK_NAME_FIELD_RE = re.compile(r"\^([^^?]{2,26})\^")
_TRACK_PAN_BRE = re.compile(rb"(?:%[A-Za-z]|;)(\d{12,19})[\^=]")
_TRACK_NAME_FIELD_BRE = re.compile(rb"\^([^^?]{2,26})\^")
_NOT_JSON: Final = object()


class SystemClock:
    """The real clock (``ports.Clock``)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float  # monotonic: fetch a new one from here on
    usable_until: float  # monotonic: after this, never send it


@dataclass(frozen=True, slots=True)
class _SendFailure:
    """A transport failure, classified. ``sent`` False means provably not sent."""

    sent: bool
    timed_out: bool
    what: str  # the httpx class name (no URL, no request)


class _RateLimiter:
    """Token bucket: ``rps`` requests per second, bursts of up to ``max(1, rps)``."""

    def __init__(self, rps: float, clock: Clock) -> None:
        self._rps = rps
        self._capacity = max(1.0, rps)
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock.monotonic()
        self._lock = asyncio.Lock()
        self._priority = 0  # priority callers waiting

    async def acquire(self, deadline: float, *, priority: bool = False) -> None:
        """``priority`` (the payment POST) skips the queue: reads waiting for a slot let it
        have the next one, so a storm of reads cannot time a swiped card's POST out."""
        if priority:
            self._priority += 1
            try:
                await self._take(deadline, priority=True)
            finally:
                self._priority -= 1
            return
        async with self._lock:  # FIFO: waiters queue here in arrival order
            await self._take(deadline, priority=False)

    async def _take(self, deadline: float, *, priority: bool) -> None:
        while True:
            now = self._clock.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rps)
            self._stamp = now
            if self._tokens >= 1.0 and (priority or not self._priority):
                self._tokens -= 1.0
                return
            wait = max((1.0 - self._tokens) / self._rps, 0.0) or 1.0 / self._rps
            if now + wait > deadline:
                raise AthenaThrottled(
                    f"client rate limit ({self._rps:g}/s) leaves no time before the deadline"
                )
            await asyncio.sleep(wait)


def _retry_after_s(resp: httpx.Response, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), within 0..``RETRY_AFTER_CAP_S``;
    None when absent or unreadable. A huge, infinite or NaN value is capped, never obeyed:
    it would lock athena out until a restart."""
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        delta = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = (when - now).total_seconds()
    if math.isnan(delta):
        return None
    return min(RETRY_AFTER_CAP_S, max(0.0, delta))


def _response_date(resp: httpx.Response) -> datetime | None:
    """The ``Date`` header (athena's clock, to the second), or None."""
    raw = resp.headers.get("date")
    if not raw:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def payment_bound_s(timeout_s: float) -> float:
    """The longest ``collect_payment`` can take with ``timeout_s``: the token and the rate
    limit slot (``timeout_s``), then the POST (``timeout_s`` + connect + slack)."""
    return 2 * float(timeout_s) + CONNECT_TIMEOUT_S + POST_TOTAL_SLACK_S


def _decode_json(resp: httpx.Response) -> object:
    """The body as JSON, or ``_NOT_JSON`` (HTML error pages, garbage, empty)."""
    try:
        return json.loads(resp.content)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _body_kind(resp: httpx.Response) -> str:
    ctype = resp.headers.get("content-type", "").split(";")[0].strip() or "no content-type"
    return f"{ctype}, {len(resp.content)} bytes"


class AthenaClient:
    """athena's REST API for one practice (``ports.Athena``)."""

    def __init__(
        self,
        base_url: str,
        practice_id: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_s: float = 20.0,
        rate_limit_rps: float | None = 5.0,
        scope: str = DEFAULT_SCOPE,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        token_requests_per_minute: int = TOKEN_REQUESTS_PER_MINUTE,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        if not _ID_RE.match(practice_id):
            raise ValueError("practice_id is not an athena id")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        # httpx logs every request line (URLs carry patient ids) at INFO.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        self._base = base_url.rstrip("/")
        self._base_host = urlsplit(self._base).netloc
        self._api = f"{self._base}/v1/{practice_id}"
        self._practice_id = practice_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._timeout_s = float(timeout_s)
        self._clock: Clock = clock or SystemClock()
        self._limiter = (
            _RateLimiter(rate_limit_rps, self._clock)
            if rate_limit_rps and rate_limit_rps > 0
            else None
        )
        headers = {"Accept": "application/json", "User-Agent": f"lobbypay/{__version__}"}
        timeout = httpx.Timeout(self._timeout_s, connect=min(CONNECT_TIMEOUT_S, self._timeout_s))
        # one trust store for reads and the payment line (SSL_CERT_FILE is honoured)
        tls = verify if verify is not None else httpx.create_ssl_context()
        self._http = httpx.AsyncClient(
            transport=transport if transport is not None else PooledTransport(
                self._base, ssl_context=tls,
                connect_timeout_s=min(CONNECT_TIMEOUT_S, self._timeout_s)),
            headers=headers, timeout=timeout, follow_redirects=False, verify=tls,
        )
        #: The payment POST's own connection (shell/payline.py): never pooled, never
        #: shared with another request (a pooled connection that the server closed at the
        #: wrong moment would turn a never-processed POST into an "unknown" outcome), and
        #: opened while the job waits for the card (``warm_payment``), so that no
        #: handshake lies between the swipe and the POST.
        self.payment_line: PaymentLine | None = None
        if transport is None:
            self.payment_line = PaymentLine(
                self._base, ssl_context=tls,
                connect_timeout_s=min(CONNECT_TIMEOUT_S, self._timeout_s))
            self._post_http = httpx.AsyncClient(
                transport=self.payment_line.transport(),
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
            )
        else:
            self._post_http = self._http
        self._token: _Token | None = None
        self._token_task: asyncio.Task[str] | None = None
        self._token_locked_until = 0.0
        self._token_budget = max(1, token_requests_per_minute)
        self._token_requests: deque[float] = deque()
        self._departments: tuple[float, list[dict[str, Any]]] | None = None
        self._closed = False
        #: athena's clock, learnt from the Date header of every response.
        self.server_clock = ServerClock()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AthenaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        task, self._token_task = self._token_task, None
        if task is not None and not task.done():
            task.cancel()
        await self._http.aclose()
        if self._post_http is not self._http:
            await self._post_http.aclose()

    # ------------------------------------------------------------ public reads

    async def get_patient(self, patient_id: str, department_id: str) -> list[dict[str, Any]]:
        template = "/patients/{patientid}"
        path = f"/patients/{self._check_id(patient_id, 'patient id')}"
        params = {
            "showbalancedetails": "true",
            "departmentid": self._check_id(department_id, "department id"),
        }
        body = await self._guard_read(self._get_json(template, path, params))
        if not isinstance(body, list) or not all(isinstance(p, dict) for p in body):
            raise AthenaBadResponse(f"GET {template}: expected an array of patients")
        if not body:
            raise NotFound("athena returned no record for this patient in this department")
        return body

    async def get_appointment(self, appointment_id: str) -> dict[str, Any]:
        template = "/appointments/{appointmentid}"
        path = f"/appointments/{self._check_id(appointment_id, 'appointment id')}"
        body = await self._guard_read(self._get_json(template, path, None))
        if isinstance(body, list):
            if not body:
                raise NotFound("athena returned no record for this appointment")
            if len(body) != 1:
                raise AthenaBadResponse(f"GET {template}: {len(body)} appointments, expected one")
            body = body[0]
        if not isinstance(body, dict):
            raise AthenaBadResponse(f"GET {template}: expected an appointment object")
        return body

    async def get_departments(self) -> list[dict[str, Any]]:
        cached = self._departments
        if cached is not None and self._clock.monotonic() < cached[0]:
            return copy.deepcopy(cached[1])
        items = await self._guard_read(
            self._get_list("/departments", "/departments", None, "departments")
        )
        if not all(isinstance(d, dict) for d in items):
            raise AthenaBadResponse("GET /departments: a department is not an object")
        departments: list[dict[str, Any]] = [d for d in items if isinstance(d, dict)]
        self._departments = (self._clock.monotonic() + DEPARTMENTS_CACHE_S, departments)
        return copy.deepcopy(departments)

    async def list_receipts(self, patient_id: str, department_id: str) -> list[Receipt]:
        template = "/patients/{patientid}/receipts"
        path = f"/patients/{self._check_id(patient_id, 'patient id')}/receipts"
        params = {"departmentid": self._check_id(department_id, "department id")}
        items = await self._guard_read(self._get_list(template, path, params, "receipts"))
        return parse_receipts(items)  # AthenaParseError is an AthenaBadResponse

    async def ping(self) -> bool:
        body = await self._guard_read(self._get_json("/ping", "/ping", None))
        if not isinstance(body, dict):
            raise AthenaBadResponse("GET /ping: expected an object")
        pong = body.get("pong")
        return pong is True or (isinstance(pong, str) and pong.lower() == "true")

    # ------------------------------------------------------------ the payment

    def warm_payment(self, hold_s: float) -> None:
        """Open (TCP + TLS) the connection the next payment POST will use, and keep a
        young one for up to ``hold_s`` (a job waiting for its card). Sends nothing;
        never raises. A no-op with an injected transport."""
        if self.payment_line is not None and not self._closed:
            self.payment_line.warm(hold_s)

    async def collect_payment(self, patient_id: str,
                              form: Mapping[str, str | bytearray]) -> PaymentResult:
        """POST /patients/{id}/collectpayment exactly once. See docs/athena.md for outcomes.

        Card fields may be ``bytearray``s (the engine's ``trackdata``): the body is built
        in a buffer of its own, and both, with the bytes handed to httpx, are overwritten
        once the exchange is over."""
        err: AthenaError
        try:
            return await self._collect_payment(patient_id, form)
        except AthenaError:
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: only AthenaError leaves
            # Reached only through a bug here; we cannot tell how far the POST got.
            _log.error("athena POST collectpayment: unexpected %s", type(exc).__name__)
            err = OutcomeUnknown(f"POST collectpayment: unexpected {type(exc).__name__}")
        raise err  # outside the except block: nothing (no request, no form) is chained

    async def _collect_payment(
        self, patient_id: str, form: Mapping[str, str | bytearray]
    ) -> PaymentResult:
        template = "/patients/{patientid}/collectpayment"
        what = f"POST {template}"
        path = f"/patients/{self._check_id(patient_id, 'patient id')}/collectpayment"
        if not isinstance(form, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | bytearray) for k, v in form.items()
        ):
            raise AthenaRejected(f"{what}: not sent: form must map str to str or bytearray")
        secrets = _card_secrets(form)
        body = _form_body(form)
        try:
            payload = bytes(body)
        finally:
            _overwrite(body)
        try:
            return await self._post_payment(path, what, template, payload, secrets)
        finally:
            _overwrite_bytes(payload)

    async def _post_payment(
        self, path: str, what: str, template: str, payload: bytes, secrets: tuple[str, ...]
    ) -> PaymentResult:
        # 1. A token, and a slot under the rate limit. Failing here: nothing was sent.
        token = await self._post_slot(what)

        # 2. The POST, once.
        rid = str(uuid.uuid4())
        result = await self._send(
            "POST",
            f"{self._api}{path}",
            template,
            token,
            rid,
            content=payload,
            client=self._post_http,
            total_s=self._timeout_s + CONNECT_TIMEOUT_S + POST_TOTAL_SLACK_S,
        )
        if isinstance(result, _SendFailure):
            if not result.sent:
                raise AthenaUnavailable(f"{what}: not sent ({result.what})", request_id=rid)
            _log.warning("athena %s: outcome unknown (%s), X-Request-Id %s", what, result.what, rid)
            raise OutcomeUnknown(f"{what}: outcome unknown ({result.what})", request_id=rid)
        return self._payment_outcome(result, what, rid, token, secrets)

    def _payment_outcome(
        self, resp: httpx.Response, what: str, rid: str, token: str, secrets: tuple[str, ...]
    ) -> PaymentResult:
        status = resp.status_code
        body = _decode_json(resp)
        if 200 <= status < 300:
            try:
                result = parse_payment_result(body)
            except OutcomeUnknownText as exc:
                text = clean_peer_text(exc.message, secrets)
                _log.warning("athena %s: %s, X-Request-Id %s", what, text, rid)
                raise OutcomeUnknown(f"{what}: {text}", status=status, request_id=rid) from None
            except AthenaParseError as exc:
                message = exc.message
            else:
                if isinstance(result, Declined):
                    # a decline text may quote the card (a name, a number) like an error does
                    result = Declined(clean_peer_text(result.errortext, secrets))
                return result
            _log.warning("athena %s: unreadable 2xx (%s), X-Request-Id %s", what, message, rid)
            raise OutcomeUnknown(
                f"{what}: HTTP {status} unreadable ({message}); outcome unknown",
                status=status,
                request_id=rid,
            )
        if status == 401:
            # The gateway refused the bearer token before routing the call: not processed.
            self._invalidate(token)
            raise AthenaUnavailable(
                f"{what}: not processed: token refused (HTTP 401)", status=401, request_id=rid
            )
        if self._is_throttled(resp):
            # Throttling is the gateway's answer, given instead of forwarding the call.
            raise AthenaThrottled(
                f"{what}: not processed: throttled (HTTP {status})", status=status, request_id=rid
            )
        err = parse_error_body(body, secrets) if body is not _NOT_JSON else None
        if status == 404:
            text = err.error if err else "not found"
            raise NotFound(
                f"{what}: {text}",
                status=404,
                request_id=rid,
                detailed=err.detailed if err else None,
            )
        if 400 <= status < 500 and err is not None:
            raise AthenaRejected(
                f"{what}: {err.error}",
                status=status,
                request_id=rid,
                detailed=err.detailed,
                missing_fields=err.missing_fields,
            )
        if status == 403:
            raise AthenaRejected(f"{what}: forbidden (HTTP 403)", status=403, request_id=rid)
        # 5xx, 3xx, 4xx without athena's error body: no proof either way.
        _log.warning(
            "athena %s: HTTP %s (%s): outcome unknown, X-Request-Id %s",
            what,
            status,
            _body_kind(resp),
            rid,
        )
        raise OutcomeUnknown(
            f"{what}: HTTP {status}; outcome unknown", status=status, request_id=rid
        )

    # ------------------------------------------------------------ void and emailed receipt

    async def void_payment(self, patient_id: str, epayment_id: str) -> None:
        """POST /patients/{id}/voidpayment/{epaymentid} once (protocol 10). Returns when
        athena says the payment is voided; ``AthenaRejected`` carries its refusal (after
        settlement, for one); ``AthenaUnavailable`` means not sent, ``OutcomeUnknown``
        that the answer was lost (sending the void again is how to find out)."""
        pid = self._check_id(patient_id, "patient id")
        eid = self._check_id(epayment_id, "epayment id")
        await self._action_post("/patients/{patientid}/voidpayment/{epaymentid}",
                                f"/patients/{pid}/voidpayment/{eid}", {}, "void", ())

    async def email_receipt(self, patient_id: str, epayment_id: str, email: str) -> None:
        """POST /patients/{id}/receipts/{epaymentid}/email with ``email``, once. The
        address is masked in any athena text kept from the answer."""
        pid = self._check_id(patient_id, "patient id")
        eid = self._check_id(epayment_id, "epayment id")
        await self._action_post("/patients/{patientid}/receipts/{epaymentid}/email",
                                f"/patients/{pid}/receipts/{eid}/email", {"email": email},
                                "receipt email", (email,))

    async def _post_slot(self, what: str) -> str:
        """A token and a rate-limit slot (ahead of queued reads) for a POST, within
        ``timeout_s``; failing here, nothing was sent: ``AthenaUnavailable`` (or
        ``AthenaThrottled``), with no chained cause."""
        self._check_open()
        deadline = self._clock.monotonic() + self._timeout_s
        not_sent: AthenaError | None = None
        try:
            token = await self._get_token(deadline)
            if self._limiter is not None:
                await self._limiter.acquire(deadline, priority=True)
        except AthenaThrottled as exc:
            not_sent = AthenaThrottled(f"{what}: not sent: {exc.message}", status=exc.status)
        except AthenaError as exc:
            not_sent = AthenaUnavailable(f"{what}: not sent: {exc.message}", status=exc.status)
        if not_sent is not None:
            raise not_sent
        return token

    async def _action_post(self, template: str, path: str, data: dict[str, str], noun: str,
                           secrets: tuple[str, ...]) -> None:
        err: AthenaError
        try:
            await self._action_post_once(template, path, data, noun, secrets)
            return
        except AthenaError as exc:
            err = exc
        except Exception as exc:  # noqa: BLE001 - last line of defence: only AthenaError leaves
            _log.error("athena POST %s: unexpected %s", template, type(exc).__name__)
            err = OutcomeUnknown(f"POST {template}: unexpected {type(exc).__name__}")
        finally:
            data.clear()
        raise err  # outside the except block: nothing (no request, no form) is chained

    async def _action_post_once(self, template: str, path: str, data: dict[str, str],
                                noun: str, secrets: tuple[str, ...]) -> None:
        what = f"POST {template}"
        token = await self._post_slot(what)
        rid = str(uuid.uuid4())
        # the pooled client, not the payment line: that connection carries the payment
        # POST and nothing else (a void or a receipt email is safe to send again)
        result = await self._send("POST", f"{self._api}{path}", template, token, rid, data=data,
                                  total_s=self._timeout_s + CONNECT_TIMEOUT_S + POST_TOTAL_SLACK_S)
        if isinstance(result, _SendFailure):
            if not result.sent:
                raise AthenaUnavailable(f"{what}: not sent ({result.what})", request_id=rid)
            raise OutcomeUnknown(f"{what}: answer lost ({result.what})", request_id=rid)
        status = result.status_code
        body = _decode_json(result)
        if 200 <= status < 300:
            outcome = parse_action_result(None if body is _NOT_JSON else body, noun, secrets)
            if outcome.ok:
                return
            raise AthenaRejected(outcome.reason, status=status, request_id=rid)
        if status == 401:
            self._invalidate(token)
            raise AthenaUnavailable(f"{what}: not processed: token refused (HTTP 401)",
                                    status=401, request_id=rid)
        if self._is_throttled(result):
            raise AthenaThrottled(f"{what}: not processed: throttled (HTTP {status})",
                                  status=status, request_id=rid)
        err = parse_error_body(body, secrets) if body is not _NOT_JSON else None
        if 400 <= status < 500:
            text = err.error if err else f"HTTP {status}"
            raise AthenaRejected(text, status=status, request_id=rid)
        _log.warning("athena %s: HTTP %s (%s): answer lost, X-Request-Id %s", what, status,
                     _body_kind(result), rid)
        raise OutcomeUnknown(f"{what}: HTTP {status}; outcome unknown", status=status,
                             request_id=rid)

    # ------------------------------------------------------------ reads, generic

    async def _guard_read(self, coro: Any) -> Any:
        err: AthenaError
        try:
            return await coro
        except AthenaError:
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: only AthenaError leaves
            _log.error("athena read: unexpected %s", type(exc).__name__)
            err = AthenaBadResponse(f"unexpected {type(exc).__name__} while reading athena")
        raise err

    async def _get_list(
        self, template: str, path: str, params: dict[str, str] | None, key: str
    ) -> list[object]:
        items: list[object] = []
        url = f"{self._api}{path}"
        for _ in range(MAX_PAGES):
            body = await self._get_json(template, path, params, url=url)
            page, nxt = parse_list_page(body, key)
            items.extend(page)
            if nxt is None:
                return items
            url, params = self._follow(nxt, template), None
        raise AthenaBadResponse(f"GET {template}: more than {MAX_PAGES} pages")

    def _follow(self, nxt: str, template: str) -> str:
        """athena's ``next`` link -> an absolute URL on the same host (never elsewhere)."""
        if nxt.startswith("/v1/"):
            return f"{self._base}{nxt}"
        parts = urlsplit(nxt)
        if parts.scheme in ("http", "https") and parts.netloc == self._base_host:
            return nxt
        raise AthenaBadResponse(f"GET {template}: 'next' link points elsewhere")

    async def _get_json(
        self, template: str, path: str, params: dict[str, str] | None, *, url: str | None = None
    ) -> object:
        self._check_open()
        what = f"GET {template}"
        url = url or f"{self._api}{path}"
        deadline = self._clock.monotonic() + self._timeout_s
        retried_401 = False
        throttled = 0
        failures = 0
        while True:
            token = await self._get_token(deadline)
            if self._limiter is not None:
                await self._limiter.acquire(deadline)
            rid = str(uuid.uuid4())
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise AthenaUnavailable(f"{what}: timed out", request_id=rid)
            result = await self._send(
                "GET", url, template, token, rid, params=params, total_s=remaining
            )
            if isinstance(result, _SendFailure):
                if result.timed_out or failures >= GET_SERVER_RETRIES:
                    raise AthenaUnavailable(f"{what}: {result.what}", request_id=rid)
                failures += 1
                await self._pause(SERVER_BACKOFF_BASE_S * 2 ** (failures - 1), deadline, what, rid)
                continue
            resp = result
            status = resp.status_code
            if 200 <= status < 300:
                body = _decode_json(resp)
                if body is _NOT_JSON:
                    raise AthenaBadResponse(
                        f"{what}: HTTP {status} is not JSON ({_body_kind(resp)})",
                        status=status,
                        request_id=rid,
                    )
                return body
            if status == 401:
                self._invalidate(token)
                if not retried_401:
                    retried_401 = True
                    continue
                raise AthenaAuthError(
                    f"{what}: token refused twice (HTTP 401)", status=401, request_id=rid
                )
            if self._is_throttled(resp):
                delay = _retry_after_s(resp, self._clock.now())
                if delay is None:
                    cap = min(THROTTLE_BACKOFF_CAP_S, THROTTLE_BACKOFF_BASE_S * 2**throttled)
                    delay = random.uniform(cap / 2, cap)  # noqa: S311 - jitter, not crypto
                throttled += 1
                if self._clock.monotonic() + delay >= deadline:
                    raise AthenaThrottled(
                        f"{what}: throttled (HTTP {status}) past the deadline",
                        status=status,
                        request_id=rid,
                    )
                _log.warning(
                    "athena %s throttled (HTTP %s); retrying in %.2f s, X-Request-Id %s",
                    what,
                    status,
                    delay,
                    rid,
                )
                await asyncio.sleep(delay)
                continue
            if status >= 500:
                if failures < GET_SERVER_RETRIES:
                    failures += 1
                    _log.warning("athena %s: HTTP %s; retrying, X-Request-Id %s", what, status, rid)
                    await self._pause(
                        SERVER_BACKOFF_BASE_S * 2 ** (failures - 1), deadline, what, rid
                    )
                    continue
                raise AthenaUnavailable(f"{what}: HTTP {status}", status=status, request_id=rid)
            body = _decode_json(resp)
            err = parse_error_body(body) if body is not _NOT_JSON else None
            if status == 404:
                raise NotFound(
                    f"{what}: {err.error if err else 'not found'}",
                    status=404,
                    request_id=rid,
                    detailed=err.detailed if err else None,
                )
            if 400 <= status < 500:
                if body is _NOT_JSON:
                    raise AthenaBadResponse(
                        f"{what}: HTTP {status} without an error body ({_body_kind(resp)})",
                        status=status,
                        request_id=rid,
                    )
                raise AthenaRejected(
                    f"{what}: {err.error if err else f'HTTP {status}'}",
                    status=status,
                    request_id=rid,
                    detailed=err.detailed if err else None,
                    missing_fields=err.missing_fields if err else (),
                )
            raise AthenaBadResponse(
                f"{what}: unexpected HTTP {status}", status=status, request_id=rid
            )

    async def _pause(self, base_s: float, deadline: float, what: str, rid: str) -> None:
        delay = random.uniform(base_s / 2, base_s)  # noqa: S311 - jitter, not crypto
        if self._clock.monotonic() + delay >= deadline:
            raise AthenaUnavailable(f"{what}: out of time for another attempt", request_id=rid)
        await asyncio.sleep(delay)

    # ------------------------------------------------------------ one HTTP exchange

    async def _send(
        self,
        method: str,
        url: str,
        template: str,
        token: str,
        rid: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        content: bytes | None = None,
        client: httpx.AsyncClient | None = None,
        total_s: float,
    ) -> httpx.Response | _SendFailure:
        """One request. Transport failures come back classified, never raised, so that no
        httpx exception (which holds the request and its body) is chained onto ours.
        ``content`` is a form-encoded body built by the caller."""
        http = client or self._http
        headers = {"Authorization": f"Bearer {token}", "X-Request-Id": rid}
        if content is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        timeout = httpx.Timeout(
            min(self._timeout_s, total_s), connect=min(CONNECT_TIMEOUT_S, total_s)
        )
        started = time.perf_counter()
        sent = self._clock.monotonic()
        failure: _SendFailure | None = None
        try:
            async with asyncio.timeout(total_s):
                resp = await http.request(
                    method, url, params=params, data=data, content=content, headers=headers,
                    timeout=timeout,
                )
                await resp.aread()
            self._observe_date(resp, sent)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.UnsupportedProtocol,
            httpx.LocalProtocolError,
        ) as exc:
            # Raised before a byte of the request went out.
            failure = _SendFailure(
                False, isinstance(exc, httpx.TimeoutException), type(exc).__name__
            )
        except httpx.TimeoutException as exc:  # read or write timeout: may have been sent
            failure = _SendFailure(True, True, type(exc).__name__)
        except TimeoutError:  # our overall bound: somewhere mid-exchange
            failure = _SendFailure(True, True, "overall timeout")
        except httpx.HTTPError as exc:  # read/write error, server hung up, bad HTTP
            failure = _SendFailure(True, False, type(exc).__name__)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if failure is not None:
            _log.debug(
                "athena %s %s failed: %s after %.1f ms, X-Request-Id %s",
                method,
                template,
                failure.what,
                elapsed_ms,
                rid,
            )
            return failure
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "athena %s %s -> %s in %.1f ms, X-Request-Id %s",
                method,
                template,
                resp.status_code,
                elapsed_ms,
                rid,
            )
        return resp

    def _is_throttled(self, resp: httpx.Response) -> bool:
        if resp.status_code == 429:
            return True
        if resp.status_code != 403:
            return False
        if is_throttle_text(resp.headers.get("x-mashery-error-code", "").replace("_", " ")):
            return True
        return is_throttle_text(resp.content[:4096].decode("utf-8", "replace"))

    # ------------------------------------------------------------ tokens

    def _invalidate(self, token: str) -> None:
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _get_token(self, deadline: float) -> str:
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
        task = self._token_task
        if task is None or task.done():
            task = asyncio.create_task(self._fetch_token(), name="lobbypay.athena.token")
            task.add_done_callback(_consume_result)
            self._token_task = task
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

    async def _fetch_token(self) -> str:
        what = f"POST {TOKEN_PATH}"
        now = self._clock.monotonic()
        if now < self._token_locked_until:
            raise AthenaThrottled(
                f"{what}: locked out by athena for another {self._token_locked_until - now:.0f} s",
                status=429,
            )
        while self._token_requests and self._token_requests[0] <= now - 60.0:
            self._token_requests.popleft()
        if len(self._token_requests) >= self._token_budget:
            next_in = self._token_requests[0] + 60.0 - now
            raise AthenaThrottled(
                f"{what}: {self._token_budget} token requests in the last minute; "
                f"next allowed in {next_in:.0f} s"
            )
        self._token_requests.append(now)
        rid = str(uuid.uuid4())
        started = time.perf_counter()
        failure: str | None = None
        try:
            resp = await self._http.post(
                f"{self._base}{TOKEN_PATH}",
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
        self._observe_date(resp, now)
        if status == 200:
            body = _decode_json(resp)
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
            retry_after = _retry_after_s(resp, self._clock.now())
            if retry_after is not None:
                wait = retry_after
            else:  # "blocked ... for the remainder of the minute"
                wall = self._clock.now()
                wait = 60.0 - wall.second - wall.microsecond / 1e6
            self._token_locked_until = self._clock.monotonic() + wait + TOKEN_LOCKOUT_SLACK_S
            _log.warning(
                "athena token endpoint locked us out for %.0f s, X-Request-Id %s", wait, rid
            )
            raise AthenaThrottled(
                f"{what}: locked out (HTTP 429) for {wait:.0f} s", status=429, request_id=rid
            )
        if status >= 500:
            raise AthenaUnavailable(f"{what}: HTTP {status}", status=status, request_id=rid)
        if 400 <= status < 500:
            err = parse_error_body(_decode_json(resp), (self._client_secret,))
            text = err.error if err else f"HTTP {status}"
            raise AthenaAuthError(
                f"{what}: credentials refused: {text}", status=status, request_id=rid
            )
        raise AthenaBadResponse(f"{what}: unexpected HTTP {status}", status=status, request_id=rid)

    # ------------------------------------------------------------ small checks

    def _observe_date(self, resp: httpx.Response, sent: float) -> None:
        date = _response_date(resp)
        if date is not None:
            self.server_clock.observe(sent, self._clock.monotonic(), date)

    def _check_open(self) -> None:
        if self._closed:
            raise AthenaUnavailable("the athena client is closed")

    @staticmethod
    def _check_id(value: object, what: str) -> str:
        """Ids go into URL paths: only athena-id characters, or NotFound (nothing sent)."""
        if not isinstance(value, str) or not _ID_RE.match(value):
            raise NotFound(f"{what} is not an athena id")
        return value


def _card_secrets(form: Mapping[str, str | bytearray]) -> tuple[str, ...]:
    """What to mask in athena's text for this POST: each card field verbatim (text
    fields), and from ``trackdata`` the PAN and the cardholder name (whole, and each part
    of 4 or more characters: "SANDBOXTEST/JANE" is also masked as "SANDBOXTEST" and
    "JANE"). Longest first, so a part never splits a longer secret before it is masked.
    (Track-shaped text as a whole is masked by ``clean_peer_text`` anyway.)"""
    out: set[str] = set()
    for key, value in form.items():
        if key not in CARD_FIELDS or not value:
            continue
        if isinstance(value, bytearray):  # read in place: no copy of the whole track
            pans = [m.group(1).decode("ascii") for m in _TRACK_PAN_BRE.finditer(value)]
            names = [m.group(1).decode("ascii", "replace")
                     for m in _TRACK_NAME_FIELD_BRE.finditer(value)]
        else:
            out.add(value)
            if key != "trackdata":
                continue
            pans = [m.group(1) for m in _TRACK_PAN_RE.finditer(value)]
            names = [m.group(1) for m in _TRACK_NAME_FIELD_RE.finditer(value)]
        out.update(pans)
        for name in (n.strip() for n in names):
            out.add(name)
            out.update(p for p in re.split(r"[/ .,-]+", name) if len(p) >= 4)
    return tuple(sorted(out, key=len, reverse=True))


#: RFC 3986 unreserved characters: left as they are in a form-encoded value.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = b"0123456789ABCDEF"


def _form_body(form: Mapping[str, str | bytearray]) -> bytearray:
    """``application/x-www-form-urlencoded`` of ``form`` (as httpx would write it), built
    byte by byte into one buffer so that a ``bytearray`` value is never copied into an
    immutable object on the way."""
    out = bytearray()
    for key, value in form.items():
        if out:
            out += b"&"
        _quote_into(out, key.encode("utf-8"))
        out += b"="
        if isinstance(value, bytearray):
            _quote_into(out, value)
        else:
            _quote_into(out, value.encode("utf-8"))
    return out


def _quote_into(out: bytearray, raw: bytes | bytearray) -> None:
    for b in raw:
        if b in _UNRESERVED:
            out.append(b)
        elif b == 0x20:
            out.append(0x2B)  # "+"
        else:
            out += b"%"
            out.append(_HEX[b >> 4])
            out.append(_HEX[b & 15])


def _overwrite(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def _overwrite_bytes(data: bytes) -> None:
    """Overwrite an immutable ``bytes`` object that only this module made and holds (the
    request body handed to httpx, a scratch copy of the track): CPython keeps a bytes
    object's data inline after its header, so this zeroes it in place. Elsewhere (another
    interpreter) it does nothing; the copy then lives until its memory is reused."""
    if sys.implementation.name != "cpython" or len(data) < 2:
        return
    offset = sys.getsizeof(b"") - 1  # the header; the data (and its NUL) follow
    ctypes.memset(id(data) + offset, 0, len(data))


def _consume_result(task: asyncio.Task[str]) -> None:
    """Mark a token task's exception as seen even if every waiter gave up on it."""
    if not task.cancelled():
        task.exception()


__all__ = ["AthenaClient", "SystemClock", "clean_peer_text"]
