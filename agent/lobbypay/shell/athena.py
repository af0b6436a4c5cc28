"""athena over HTTP/1.1: the client of one practice's REST API.

``AthenaClient`` implements ``lobbypay.ports.Athena``. Only ``AthenaError`` subclasses
leave it: transport and json failures are classified here, at the edge, by *whether the
request may have reached athena* (see docs/athena.md for the full table). Beside it:

* ``shell/athena_auth.py``: the OAuth2 token, cached and refreshed once for all callers;
* ``shell/ratelimit.py``: the client-side rate limit and ``Retry-After``;
* ``shell/athena_form.py``: the payment form's body and its overwriting;
* ``core/athena_reply.py``: what an answer to the payment POST (or a void, or a receipt
  email) means, decided without I/O;
* ``shell/payline.py``: the payment POST's own connection;
* ``shell/http11.py``: the exchanges themselves (h11 on asyncio connections), kept-alive
  for reads; httpx only for the OAuth token request and for its error classes.

Reads (GET) retry within one overall deadline (``timeout_s``): once with a new token after
a 401, after throttling (429, or 403 "Over Qps"/"Over Rate") honouring ``Retry-After``,
and a little after 5xx or connection failures. ``collect_payment`` sends its POST exactly
once, whatever happens.

Card data: the POST form is never logged and never put in an exception; athena's error
text is cleaned (card-shaped text and the form's card fields masked) before it is kept.
Transport exceptions are never chained onto ours; request bodies that carry card data
or an email address are wiped once their exchange is over.
Debug logs carry the method, the path *template* (no patient ids), the status, the
elapsed time and the ``X-Request-Id`` that athena support can look up.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import logging
import random
import re
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx

from lobbypay import __version__
from lobbypay.core.athena import (
    AthenaAuthError,
    AthenaBadResponse,
    AthenaError,
    AthenaRejected,
    AthenaThrottled,
    AthenaUnavailable,
    NotFound,
    OutcomeUnknown,
    PaymentResult,
    Receipt,
    parse_error_body,
    parse_list_page,
    parse_receipts,
)
from lobbypay.core.athena_reply import (
    NOT_JSON,
    classify_action_response,
    classify_payment_response,
    decode_json,
    is_throttled,
)
from lobbypay.core.clock import ServerClock
from lobbypay.ports import Clock
from lobbypay.shell import steptrace
from lobbypay.shell.athena_auth import DEFAULT_SCOPE, TOKEN_REQUESTS_PER_MINUTE, TokenCache
from lobbypay.shell.athena_form import card_secrets, form_body, overwrite
from lobbypay.shell.clock import SystemClock
from lobbypay.shell.http11 import ACCEPT_ENCODING, Answer, Call, PooledTransport
from lobbypay.shell.payline import PaymentLine
from lobbypay.shell.ratelimit import RateLimiter, throttle_delay_s

_log = logging.getLogger("lobbypay.athena")

#: TCP + TLS to athena over a lobby's uplink; longer than this means unreachable.
CONNECT_TIMEOUT_S: Final = 5.0
#: The departments list changes when an administrator edits the practice; an hour is fresh.
DEPARTMENTS_CACHE_S: Final = 3600.0
#: A GET that got a 5xx or failed to connect is tried again this many times (bounded by
#: the call's deadline), after 0.125-0.25 s and 0.25-0.5 s: enough to ride out a gateway
#: blip, not enough to pile onto an outage.
GET_SERVER_RETRIES: Final = 2
SERVER_BACKOFF_BASE_S: Final = 0.25
#: A list endpoint with more pages than this is answering nonsense.
MAX_PAGES: Final = 50
#: Extra time the POST may take beyond ``timeout_s`` in total (connect + write + read each
#: have their own httpx timeout; this bounds a server that trickles bytes forever).
POST_TOTAL_SLACK_S: Final = 10.0
_ID_RE = re.compile(r"\A[0-9A-Za-z_-]{1,32}\Z")


@dataclass(frozen=True, slots=True)
class _SendFailure:
    """A transport failure, classified. ``sent`` False means provably not sent."""

    sent: bool
    timed_out: bool
    what: str  # the httpx class name (no URL, no request)


#: An answer as the helpers read it: ours (shell/http11.py) or httpx's (the token's).
_Reply = Answer | httpx.Response


def _response_date(resp: _Reply) -> datetime | None:
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


def _body_kind(resp: _Reply) -> str:
    ctype = resp.headers.get("content-type", "").split(";")[0].strip() or "no content-type"
    return f"{ctype}, {len(resp.content)} bytes"


def _throttled(resp: _Reply) -> bool:
    """The gateway throttled the call (``core.athena_reply.is_throttled``)."""
    return is_throttled(
        resp.status_code, resp.headers.get("x-mashery-error-code", ""), resp.content
    )


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
        self._timeout_s = float(timeout_s)
        self._clock: Clock = clock or SystemClock()
        self._limiter = (
            RateLimiter(rate_limit_rps, self._clock)
            if rate_limit_rps and rate_limit_rps > 0
            else None
        )
        headers = {"Accept": "application/json", "User-Agent": f"lobbypay/{__version__}"}
        timeout = httpx.Timeout(self._timeout_s, connect=min(CONNECT_TIMEOUT_S, self._timeout_s))
        # one trust store for reads and the payment line (SSL_CERT_FILE is honoured)
        tls = verify if verify is not None else httpx.create_ssl_context()
        #: reads and the non-payment POSTs: kept-alive connections (shell/http11.py)
        self._pool = PooledTransport(self._base, ssl_context=tls,
                                     connect_timeout_s=min(CONNECT_TIMEOUT_S, self._timeout_s))
        #: the OAuth token request only (about once an hour), on the same pool
        self._http = httpx.AsyncClient(
            transport=self._pool, headers=headers, timeout=timeout, follow_redirects=False,
        )
        #: The payment POST's own connection (shell/payline.py): never pooled, never
        #: shared with another request (a pooled connection that the server closed at the
        #: wrong moment would turn a never-processed POST into an "unknown" outcome), and
        #: opened while the job waits for the card (``warm_payment``), so that no
        #: handshake lies between the swipe and the POST.
        self.payment_line = PaymentLine(
            self._base, ssl_context=tls,
            connect_timeout_s=min(CONNECT_TIMEOUT_S, self._timeout_s))
        #: False: ``warm_payment`` does nothing and the POST opens its connection when it
        #: starts (the bench's with/without comparison, docs/PERFORMANCE.md)
        self.warm_payments = True
        base = urlsplit(self._base)
        self._scheme_host = (base.scheme.lower(), base.netloc)
        #: every request's first headers, as h11 takes them (httpx's ``Host`` rule: the
        #: URL's host and port as written)
        self._head: tuple[tuple[bytes, bytes], ...] = (
            (b"host", base.netloc.rpartition("@")[2].encode("idna")),
            (b"accept", b"application/json"),
            (b"accept-encoding", ACCEPT_ENCODING),
            (b"user-agent", f"lobbypay/{__version__}".encode("ascii")),
        )
        #: athena's clock, learnt from the Date header of every response.
        self.server_clock = ServerClock()
        self._tokens = TokenCache(
            self._http, self._base, client_id, client_secret, scope=scope, clock=self._clock,
            requests_per_minute=token_requests_per_minute, on_response=self._observe_date,
        )
        self._departments: tuple[float, list[dict[str, Any]]] | None = None
        self._closed = False

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
        self._tokens.close()
        await self._http.aclose()  # and the pool under it
        await self.payment_line.aclose()

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
        never raises."""
        if self.warm_payments and not self._closed:
            self.payment_line.warm(hold_s)

    async def collect_payment(self, patient_id: str,
                              form: Mapping[str, str | bytearray]) -> PaymentResult:
        """POST /patients/{id}/collectpayment exactly once. See docs/athena.md for outcomes.

        Card fields may be ``bytearray``s (the engine's ``trackdata``): the body is built
        in a buffer of its own (never an immutable copy), which is overwritten, as is the
        one copy that went on the wire, once the exchange is over."""
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
        secrets = card_secrets(form)
        body = form_body(form)
        try:
            return await self._post_payment(path, what, template, body, secrets)
        finally:
            overwrite(body)  # _send wiped it already; a POST never sent leaves it here

    async def _post_payment(
        self, path: str, what: str, template: str, body: bytearray, secrets: tuple[str, ...]
    ) -> PaymentResult:
        # 1. A token, and a slot under the rate limit. Failing here: nothing was sent.
        token = await self._post_slot(what)
        steptrace.mark("post.slot")

        # 2. The POST, once.
        rid = str(uuid.uuid4())
        result = await self._send(
            "POST",
            f"{self._api}{path}",
            template,
            token,
            rid,
            body=body,
            payment=True,
            total_s=self._timeout_s + CONNECT_TIMEOUT_S + POST_TOTAL_SLACK_S,
        )
        if isinstance(result, _SendFailure):
            if not result.sent:
                raise AthenaUnavailable(f"{what}: not sent ({result.what})", request_id=rid)
            _log.warning("athena %s: outcome unknown (%s), X-Request-Id %s", what, result.what, rid)
            raise OutcomeUnknown(f"{what}: outcome unknown ({result.what})", request_id=rid)
        return self._payment_outcome(result, what, rid, token, secrets)

    def _payment_outcome(
        self, resp: Answer, what: str, rid: str, token: str, secrets: tuple[str, ...]
    ) -> PaymentResult:
        status = resp.status_code
        if status == 401:  # the gateway refused the token: the next call fetches a new one
            self._tokens.invalidate(token)
        outcome = classify_payment_response(
            status, decode_json(resp.content), throttled=_throttled(resp), secrets=secrets,
            request_id=rid, what=what,
        )
        if isinstance(outcome, OutcomeUnknown):
            _log.warning("athena %s (%s), X-Request-Id %s", outcome.message, _body_kind(resp), rid)
        if isinstance(outcome, AthenaError):
            raise outcome
        return outcome

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
            token = await self._tokens.get(deadline)
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
        result = await self._send("POST", f"{self._api}{path}", template, token, rid,
                                  body=form_body(data) if data else None,
                                  total_s=self._timeout_s + CONNECT_TIMEOUT_S + POST_TOTAL_SLACK_S)
        if isinstance(result, _SendFailure):
            if not result.sent:
                raise AthenaUnavailable(f"{what}: not sent ({result.what})", request_id=rid)
            raise OutcomeUnknown(f"{what}: answer lost ({result.what})", request_id=rid)
        status = result.status_code
        if status == 401:
            self._tokens.invalidate(token)
        refused = classify_action_response(
            status, decode_json(result.content), what=what, noun=noun,
            throttled=_throttled(result), secrets=secrets, request_id=rid,
        )
        if refused is None:
            return
        if isinstance(refused, OutcomeUnknown):
            _log.warning("athena %s: HTTP %s (%s): answer lost, X-Request-Id %s", what, status,
                         _body_kind(result), rid)
        raise refused

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
            token = await self._tokens.get(deadline)
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
                body = decode_json(resp.content)
                if body is NOT_JSON:
                    raise AthenaBadResponse(
                        f"{what}: HTTP {status} is not JSON ({_body_kind(resp)})",
                        status=status,
                        request_id=rid,
                    )
                return body
            if status == 401:
                self._tokens.invalidate(token)
                if not retried_401:
                    retried_401 = True
                    continue
                raise AthenaAuthError(
                    f"{what}: token refused twice (HTTP 401)", status=401, request_id=rid
                )
            if _throttled(resp):
                delay = throttle_delay_s(resp.headers, self._clock.now(), throttled)
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
            body = decode_json(resp.content)
            err = parse_error_body(body) if body is not NOT_JSON else None
            if status == 404:
                raise NotFound(
                    f"{what}: {err.error if err else 'not found'}",
                    status=404,
                    request_id=rid,
                    detailed=err.detailed if err else None,
                )
            if 400 <= status < 500:
                if body is NOT_JSON:
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
        body: bytearray | None = None,
        payment: bool = False,
        total_s: float,
    ) -> Answer | _SendFailure:
        """One request, on the payment line (``payment``) or a pooled connection.
        Transport failures come back classified, never raised, so that no exception is
        chained onto ours. ``body`` is a form-encoded body (``form_body``), wiped once
        the exchange is over."""
        started = time.perf_counter()
        sent = self._clock.monotonic()
        failure: _SendFailure | None = None
        try:
            async with asyncio.timeout(total_s):
                call = self._call(method, url, params, token, rid, body, total_s)
                if payment:
                    resp = await self.payment_line.send(call)
                else:
                    resp = await self._pool.send(call)
            self._observe_date(resp, sent)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
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
        finally:
            if body is not None:
                overwrite(body)
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

    def _call(self, method: str, url: str, params: dict[str, str] | None, token: str,
              rid: str, body: bytearray | None, total_s: float) -> Call:
        """The request as h11 takes it: athena's origin only (else
        ``httpx.UnsupportedProtocol``, nothing sent), the query encoded as a form is, the
        bounds of this call (read and write each within ``timeout_s``, connect within
        ``CONNECT_TIMEOUT_S``, all within ``total_s``)."""
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc) != self._scheme_host:
            raise httpx.UnsupportedProtocol("only athena's origin is served")
        query = parts.query
        if params:
            query = f"{query}&{urlencode(params)}" if query else urlencode(params)
        target = f"{parts.path or '/'}?{query}" if query else (parts.path or "/")
        headers = [*self._head, (b"authorization", f"Bearer {token}".encode()),
                   (b"x-request-id", rid.encode("ascii"))]
        if body is not None:
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        bound = min(self._timeout_s, total_s)
        return Call(method.encode("ascii"), target.encode("utf-8"), headers,
                    b"" if body is None else body, read_s=bound, write_s=bound,
                    connect_s=min(CONNECT_TIMEOUT_S, total_s))

    # ------------------------------------------------------------ small checks

    def _observe_date(self, resp: _Reply, sent: float) -> None:
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


__all__ = ["AthenaClient", "payment_bound_s"]
