"""A loopback athena: a real HTTP server with athena's shapes, rules and failure modes.

Used by the tests (in process, ``AthenaSim``) and by the demo and e2e tests (another
process, ``python -m lobbypay.sim.athena --port 0``, driven over ``/_sim/*``). The
fixture practices and patients are in ``fixtures/athena.json`` and documented, with
every fault, in docs/athena.md.

What it checks, as athena would: OAuth2 client credentials (Basic auth) and bearer
tokens; collectpayment's parameters (department, track data with sentinels and a Luhn
check, copay needs an appointment, ``claimpayment`` adds up to ``otheramount``, each claim
exists, is clean, lies in the department's provider group and is within its balance);
duplicate payments (same patient, same total, within ten minutes, unless
``allowduplicatepayments``). An approved charge makes a receipt (``requestdate`` in US
Eastern text) and lowers the claims' patient balance.

Card data: the simulator does not keep it. A recorded call's form holds, instead of
``trackdata``/``accountnumber``, an HMAC-SHA256 under a key made fresh for each simulator
(``*_sha256``: equal tracks give equal digests within one run, nothing more) and the last
four digits; other card fields are replaced by "[redacted]". Receipts hold brand and last 4.

Money is integer cents inside. athena writes money as JSON numbers; the simulator makes
those numbers from exact cents through their decimal text, so a reader that parses the
number's shortest text (``lobbypay.core.money.parse_athena_amount``) gets the cents back.
"""

from __future__ import annotations

import argparse
import base64
import copy
import email.utils
import hashlib
import hmac
import json
import logging
import re
import secrets
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from lobbypay.shell.logsafe import luhn_ok

_log = logging.getLogger("lobbypay.sim.athena")

EASTERN = ZoneInfo("America/New_York")
DEFAULT_PRACTICE = "195900"
#: athena refuses a second payment of the same total for the same patient within this
#: window unless ``allowduplicatepayments`` is set (the real window is undocumented).
DUPLICATE_WINDOW = timedelta(minutes=10)
FIRST_EPAYMENT_ID = 90001
DECLINE_TEXT = (
    "Declined - card has been declined, no further information is available. "
    "Ask for another form of payment"
)
EXPIRED_TEXT = "Declined - the card has expired. Ask for another form of payment"
INVALID_CARD_TEXT = "Invalid card number. Please check the number and try again"
DUPLICATE_TEXT = (
    "Duplicate payment: a payment of the same amount was made for this patient in the last "
    "10 minutes. Set allowduplicatepayments to charge it again"
)
#: PANs ending in these digits are declined (test cards for the decline path).
DECLINE_SUFFIX = "0002"
REDACTED = "[redacted]"
_SECRET_FIELDS = (
    "cardsecuritycode",
    "nameoncard",
    "expirationmonthmm",
    "expirationyearyyyy",
    "billingaddress",
    "billingzip",
)
_MONEY_RE = re.compile(r"\A(\d{1,7})(?:\.(\d{1,2}))?\Z")
_TRACK1_RE = re.compile(r"%B(\d{12,19})\^([^^?]{2,26})\^(\d{2})(\d{2})(\d{3})[^?]*\?")
_TRACK2_RE = re.compile(r";(\d{12,19})=(\d{2})(\d{2})(\d{3})[^?]*\?")
_API_RE = re.compile(r"\A/v1/(?P<practice>[0-9]{1,10})(?P<rest>/.*)?\Z")
FAULT_KINDS = (
    "decline_next",
    "slow",
    "drop",
    "status",
    "throttle",
    "over_qps",
    "html",
    "body",
    "token_lockout",
    "expire_tokens",
    "echo_error",
    "refuse_void",
)
ENDPOINTS = (
    "any",
    "token",
    "patient",
    "appointment",
    "departments",
    "collectpayment",
    "receipts",
    "voidpayment",
    "receiptemail",
    "ping",
)
#: athena settles the day's card payments "generally around 8 p.m. Eastern time nightly";
#: a payment can be voided until then (field notes, section 4).
SETTLEMENT_HOUR_EASTERN = 20
SETTLED_TEXT = (
    "This payment has already been settled and can no longer be voided. "
    "Refund it from athenaOne instead"
)
VOID_REFUSED_TEXT = "The payment could not be voided. Contact your athenaOne administrator"
_EMAIL_SIM_RE = re.compile(r"\A[^@\s]+@[^@\s]+\.[^@\s]+\Z")
OVER_QPS_HTML = "<html><body><h1>Developer Over Qps</h1></body></html>"
ERROR_HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)


# ---------------------------------------------------------------- small helpers


def card_brand(pan: str) -> tuple[str, str]:
    """(abbreviation, name) as athena's receipts show them."""
    if pan.startswith("4"):
        return "VI", "Visa"
    if pan[:2] in ("34", "37"):
        return "AX", "American Express"
    if pan[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(pan[:4]) <= 2720:
        return "MC", "MasterCard"
    if pan.startswith("6011") or pan.startswith("65"):
        return "DI", "Discover"
    return "OT", "Other"


def parse_money(text: str) -> int | None:
    """Form money ("25", "25.5", "25.00") -> cents, or None."""
    m = _MONEY_RE.match(text.strip())
    if not m:
        return None
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def money_number(cents: int) -> float:
    """athena's JSON number for an amount, built from its exact decimal text."""
    return float(money_text(cents))


#: How the simulator writes a receipt's ``requestdate`` (athena's resolution is not
#: documented): with seconds, without them, or ISO with seconds.
RECEIPT_DATE_FORMATS = {
    "seconds": "%m/%d/%Y %H:%M:%S",
    "minutes": "%m/%d/%Y %H:%M",
    "iso": "%Y-%m-%dT%H:%M:%S",
}


def eastern_text(at: datetime, form: str = "seconds") -> str:
    return at.astimezone(EASTERN).strftime(RECEIPT_DATE_FORMATS[form])


@dataclass(frozen=True, slots=True)
class _Card:
    pan_last4: str
    brand: tuple[str, str]
    expired: bool
    luhn: bool
    decline: bool


def read_track(trackdata: str, now: datetime) -> _Card | None:
    """Parse swipe text with sentinels (track 1 and/or track 2). ``None`` if not track data.

    Only the last four digits, brand and verdicts leave this function.
    """
    t1 = _TRACK1_RE.search(trackdata)
    t2 = _TRACK2_RE.search(trackdata)
    if t1 is None and t2 is None:
        return None
    if t1 is not None and t2 is not None and t1.group(1) != t2.group(1):
        return None
    if t1 is not None:
        pan, yy, mm = t1.group(1), t1.group(3), t1.group(4)
    elif t2 is not None:
        pan, yy, mm = t2.group(1), t2.group(2), t2.group(3)
    else:  # pragma: no cover - excluded by the first check
        return None
    month = int(mm)
    if not 1 <= month <= 12:
        return None
    local = now.astimezone(EASTERN)
    expired = (2000 + int(yy), month) < (local.year, local.month)
    return _Card(pan[-4:], card_brand(pan), expired, luhn_ok(pan), pan.endswith(DECLINE_SUFFIX))


# ---------------------------------------------------------------- faults


@dataclass(slots=True)
class Fault:
    """One scripted misbehaviour. ``count`` is how many matching requests it affects."""

    kind: str
    endpoint: str = "any"
    count: int = 1
    status: int | None = None
    seconds: float | None = None
    apply: bool = False
    retry_after: float | None = None
    body: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        if not isinstance(data, Mapping):
            raise ValueError("a fault is a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        default_endpoint = {
            "decline_next": "collectpayment",
            "slow": "collectpayment",
            "drop": "collectpayment",
            "echo_error": "collectpayment",
            "refuse_void": "voidpayment",
            "token_lockout": "token",
        }.get(kind, "any")
        endpoint = data.get("endpoint", default_endpoint)
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        count = data.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        status = data.get("status")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise ValueError("status must be an HTTP status code")
        seconds = data.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= 600
        ):
            raise ValueError("seconds must be a number between 0 and 600")
        retry_after = data.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int | float)
            or not 0 <= retry_after <= 3600
        ):
            raise ValueError("retry_after must be a number of seconds")
        apply = data.get("apply", False)
        if not isinstance(apply, bool):
            raise ValueError("apply must be a boolean")
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("body must be a string")
        if kind in ("decline_next", "slow", "drop", "echo_error") and endpoint != "collectpayment":
            raise ValueError(f"{kind} applies to collectpayment only")
        if kind == "refuse_void" and endpoint != "voidpayment":
            raise ValueError("refuse_void applies to voidpayment only")
        if kind == "slow" and seconds is None:
            raise ValueError("slow needs seconds")
        if kind == "body" and body is None:
            raise ValueError("body needs body")
        return cls(kind, endpoint, count, status, seconds, apply, retry_after, body)


# ---------------------------------------------------------------- the simulator


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    delay_s: float = 0.0  # wait before answering (or dropping)


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=headers or {})


def _error(
    status: int, error: str, detailed: str | None = None, missing: list[str] | None = None
) -> _Reply:
    body: dict[str, Any] = {"error": error}
    if detailed is not None:
        body["detailedmessage"] = detailed
    if missing:
        body["missingfields"] = missing
    return _json_reply(status, body)


class _Rejected(Exception):
    """collectpayment validation failed (becomes a 400 error body)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__("rejected")
        self.reply = reply


class AthenaSim:
    """athena on ``http://127.0.0.1:<port>``. ``start()`` returns the base URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        practice_id: str = DEFAULT_PRACTICE,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_ttl_s: int = 3600,
        page_size: int | None = None,
        now: Callable[[], datetime] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.host = host
        #: serve HTTPS with this (server-side) context; plain HTTP without
        self.ssl_context = ssl_context
        #: close a connection that sends nothing for this long, as real servers do
        #: (nginx's client_header_timeout); None: never
        self.idle_timeout_s = idle_timeout_s
        self.port = port
        self.practice_id = practice_id
        self.client_id = client_id or f"sim-{secrets.token_hex(6)}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.token_ttl_s = token_ttl_s
        self.page_size = page_size
        self._now = now or (lambda: datetime.now(UTC))
        self.receipt_date_format = "seconds"
        self._digest_key = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._token_lock_until = 0.0
        self.token_requests = 0
        self._fixtures = self._load_fixtures()
        self._reset_state()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        server = _Server((self.host, self.port), _Handler, bind_and_activate=False)
        server.tls = self.ssl_context
        server.idle_timeout_s = self.idle_timeout_s
        server.daemon_threads = True
        server.request_queue_size = 128
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        server.sim = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="lobbypay.sim.athena",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AthenaSim:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # ------------------------------------------------------------ test-facing API

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every request seen (``/_sim/*`` excluded), oldest first, card data replaced."""
        with self._lock:
            return copy.deepcopy(self._calls)

    def post_count(self, patient_id: str, practice_id: str | None = None) -> int:
        with self._lock:
            return self._posts.get(f"{practice_id or self.practice_id}/{patient_id}", 0)

    @property
    def collectpayment_posts(self) -> dict[str, int]:
        """``{"<practice>/<patient>": n}``: collectpayment POSTs received (any outcome)."""
        with self._lock:
            return dict(self._posts)

    def add_fault(self, kind: str, **params: Any) -> Fault:
        """Script a fault (see docs/athena.md), e.g. ``add_fault("status", endpoint="patient",
        status=503, count=2)``. ``expire_tokens`` acts at once."""
        fault = Fault.from_mapping({"kind": kind, **params})
        self._install(fault)
        return fault

    def decline_next(self, count: int = 1) -> None:
        self.add_fault("decline_next", count=count)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def reset(self) -> None:
        """Fixtures back to their start, faults and recorded calls cleared (tokens kept)."""
        with self._lock:
            self._reset_state()

    def receipts(self, patient_id: str, practice_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            practice = self._practices[practice_id or self.practice_id]
            return [dict(r) for r in practice["receipts"] if r["patientid"] == patient_id]

    def claim_balance(self, claim_id: str, practice_id: str | None = None) -> str:
        """A claim's current patient balance as "12.34"."""
        with self._lock:
            practice = self._practices[practice_id or self.practice_id]
            for patient in practice["patients"].values():
                for claim in patient["claims"]:
                    if claim["claimid"] == claim_id:
                        return money_text(claim["balance_cents"])
        raise KeyError(claim_id)

    def valid_token(self) -> str:
        """Issue a token directly (for benchmarks and raw-HTTP tests)."""
        with self._lock:
            token = secrets.token_urlsafe(24)
            self._tokens[token] = time.monotonic() + self.token_ttl_s
            return token

    # ------------------------------------------------------------ state

    @staticmethod
    def _load_fixtures() -> dict[str, Any]:
        text = resources.files("lobbypay.sim").joinpath("fixtures/athena.json").read_text("utf-8")
        data: dict[str, Any] = json.loads(text)
        return data

    def _reset_state(self) -> None:
        started = self._now()
        self._calls: list[dict[str, Any]] = []
        self._posts: dict[str, int] = {}
        #: epaymentid -> voids carried out (a repeated void of a voided payment adds none)
        self._voids: dict[str, int] = {}
        #: receipts emailed: (epaymentid, address), oldest first (for tests; memory only)
        self._emails: list[tuple[str, str]] = []
        self._faults: list[Fault] = []
        self._next_epayment = FIRST_EPAYMENT_ID
        self._practices: dict[str, dict[str, Any]] = {}
        self._approved: list[tuple[str, str, int, datetime]] = []  # practice, patient, cents, at
        for pid, src in self._fixtures["practices"].items():
            patients: dict[str, Any] = {}
            receipts: list[dict[str, Any]] = []
            for patient_id, p in src["patients"].items():
                claims = []
                for c in p["claims"]:
                    claim = dict(c)
                    claim["amount_cents"] = parse_money(c["amount"])
                    claim["balance_cents"] = parse_money(c["patientbalance"])
                    claim["transactions"] = []
                    claims.append(claim)
                patients[patient_id] = {
                    **{k: v for k, v in p.items() if k not in ("claims", "receipts", "credit")},
                    "claims": claims,
                    "credit_cents": parse_money(p.get("credit", "0")) or 0,
                }
                for r in p.get("receipts", []):
                    receipts.append(
                        {
                            "patientid": patient_id,
                            "epaymentid": r["epaymentid"],
                            "amount_cents": parse_money(r["amount"]),
                            "last4": r["last4"],
                            "brand": r["brand"],
                            "departmentid": r["departmentid"],
                            "at": started - timedelta(days=r["days_ago"]),
                            "voided": False,
                            "settled": True,  # days old: long settled
                        }
                    )
            appointments = {}
            for appt_id, a in src["appointments"].items():
                appointments[appt_id] = {
                    **a,
                    "copay_cents": parse_money(a["copay"]),
                    "collected_cents": 0,
                }
            self._practices[pid] = {
                "enterprise": src["enterprise"],
                "departments": [dict(d) for d in src["departments"]],
                "patients": patients,
                "appointments": appointments,
                "receipts": receipts,
            }

    def _install(self, fault: Fault) -> None:
        with self._lock:
            if fault.kind == "expire_tokens":
                self._tokens.clear()
                return
            if fault.kind == "token_lockout":
                wall = self._now()
                seconds = fault.seconds if fault.seconds is not None else 60 - wall.second
                self._token_lock_until = time.monotonic() + seconds
                self._token_lock_retry_after = fault.retry_after
                return
            self._faults.append(fault)

    def _take_fault(self, endpoint: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume one use of the first pending fault of ``kinds`` matching ``endpoint``."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.endpoint in ("any", endpoint):
                    if fault.endpoint == "any" and endpoint == "token":
                        continue  # token faults are asked for by name
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------ request handling

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
               *, peer_port: int | None = None) -> _Reply:
        """One request. ``peer_port``: the client's port, i.e. which connection it came
        on (kept in ``calls``)."""
        split = urlsplit(target)
        path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        form: dict[str, str] = {}
        if method == "POST":
            try:
                raw = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raw = {}
            form = {k: v[0] for k, v in raw.items()}
        endpoint, practice_id, ids = self._route(method, path)
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "query": query,
            "form": self._redact(form),
            "request_id": headers.get("x-request-id"),
            "at": self._now().isoformat(),
            "status": None,
            "peer_port": peer_port,
        }
        with self._lock:
            self._calls.append(record)
            if endpoint == "collectpayment":
                key = f"{practice_id}/{ids['patientid']}"
                self._posts[key] = self._posts.get(key, 0) + 1
        reply = self._respond(method, endpoint, practice_id, ids, query, headers, form)
        form.clear()
        with self._lock:
            record["status"] = "dropped" if reply.drop else reply.status
        return reply

    def _respond(
        self,
        method: str,
        endpoint: str,
        practice_id: str | None,
        ids: dict[str, str],
        query: dict[str, str],
        headers: Mapping[str, str],
        form: dict[str, str],
    ) -> _Reply:
        if endpoint == "token":
            return self._token(headers, form)
        # The gateway's faults come first: they answer instead of the application.
        gateway = self._gateway_fault(endpoint)
        if gateway is not None:
            fault, reply = gateway
            if fault.apply and endpoint == "collectpayment" and self._authorized(headers):
                self._collect(practice_id, ids, form)  # the app ran; the answer is lost
            if fault.apply and endpoint == "voidpayment" and self._authorized(headers):
                self._void(practice_id, ids)  # the void landed; the answer is lost
            return reply
        if not self._authorized(headers):
            return _error(401, "Unauthorized", "Invalid or expired access token")
        if endpoint == "other" or practice_id is None or practice_id not in self._practices:
            return _error(404, "Service not registered with API gateway.")
        if endpoint == "ping" and method == "GET":
            return _json_reply(200, {"pong": "true"})
        if endpoint == "departments" and method == "GET":
            return self._departments(practice_id, query)
        if endpoint == "patient" and method == "GET":
            return self._patient(practice_id, ids["patientid"], query)
        if endpoint == "appointment" and method == "GET":
            return self._appointment(practice_id, ids["appointmentid"])
        if endpoint == "receipts" and method == "GET":
            return self._receipts(practice_id, ids["patientid"], query)
        if endpoint == "collectpayment" and method == "POST":
            return self._collect_with_faults(practice_id, ids, form)
        if endpoint == "voidpayment" and method == "POST":
            if self._take_fault("voidpayment", ("refuse_void",)) is not None:
                return _json_reply(200, [{"success": "false", "errortext": VOID_REFUSED_TEXT}])
            return self._void(practice_id, ids)
        if endpoint == "receiptemail" and method == "POST":
            return self._email_receipt(practice_id, ids, form)
        return _error(404, "Service not registered with API gateway.")

    def _gateway_fault(self, endpoint: str) -> tuple[Fault, _Reply] | None:
        fault = self._take_fault(endpoint, ("status", "throttle", "over_qps", "html", "body"))
        if fault is None:
            return None
        if fault.kind == "status":
            status = fault.status or 503
            return fault, _error(
                status, "Service Unavailable" if status >= 500 else f"HTTP {status}"
            )
        if fault.kind == "throttle":
            retry = fault.retry_after if fault.retry_after is not None else 1
            return fault, _json_reply(
                fault.status or 429,
                {
                    "fault": {
                        "faultstring": "Rate limit quota violation. Quota limit exceeded.",
                        "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
                    }
                },
                {"Retry-After": f"{retry:g}"},
            )
        if fault.kind == "over_qps":
            hdrs = {"X-Mashery-Error-Code": "ERR_403_DEVELOPER_OVER_QPS"}
            if fault.retry_after is not None:
                hdrs["Retry-After"] = f"{fault.retry_after:g}"
            return fault, _Reply(403, OVER_QPS_HTML.encode(), "text/html", hdrs)
        if fault.kind == "html":
            return fault, _Reply(fault.status or 502, ERROR_HTML.encode(), "text/html")
        body = fault.body or ""
        return fault, _Reply(fault.status or 200, body.encode(), "application/json")

    def _route(self, method: str, path: str) -> tuple[str, str | None, dict[str, str]]:
        if path == "/oauth2/v1/token" and method == "POST":
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

    def _redact(self, form: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in form.items():
            if key in ("trackdata", "accountnumber"):
                digest = hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()
                digits = re.findall(r"\d{12,19}", value)
                out[key] = {f"{key}_sha256": digest, "last4": digits[0][-4:] if digits else None}
            elif key in _SECRET_FIELDS:
                out[key] = REDACTED
            elif key == "email":  # personal data: recorded calls show it masked
                local, _, domain = value.partition("@")
                out[key] = f"{local[:1]}***@{domain}"
            else:
                out[key] = value
        return out

    # ------------------------------------------------------------ auth

    def _token(self, headers: Mapping[str, str], form: Mapping[str, str]) -> _Reply:
        with self._lock:
            self.token_requests += 1
            locked_for = self._token_lock_until - time.monotonic()
        if locked_for > 0:
            hdrs = {}
            retry = getattr(self, "_token_lock_retry_after", None)
            if retry is not None:
                hdrs["Retry-After"] = f"{retry:g}"
            return _json_reply(
                429,
                {"error": "Too Many Requests", "detailedmessage": "Token request limit exceeded"},
                hdrs,
            )
        fault = self._take_fault("token", ("status", "throttle", "html", "body"))
        if fault is not None:
            if fault.kind == "throttle":
                return _json_reply(429, {"error": "Too Many Requests"})
            if fault.kind == "html":
                return _Reply(fault.status or 502, ERROR_HTML.encode(), "text/html")
            if fault.kind == "body":
                return _Reply(fault.status or 200, (fault.body or "").encode())
            return _error(fault.status or 503, "Service Unavailable")
        auth = headers.get("authorization", "")
        ok = False
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
                ok = hmac.compare_digest(user, self.client_id) and hmac.compare_digest(
                    password, self.client_secret
                )
            except (ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            return _error(401, "invalid_client", "Client authentication failed")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
        return _json_reply(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.token_ttl_s,
                "scope": form.get("scope", ""),
            },
        )

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        token = auth[7:].strip()
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    # ------------------------------------------------------------ reads

    def _departments(self, practice_id: str, query: Mapping[str, str]) -> _Reply:
        with self._lock:
            depts = copy.deepcopy(self._practices[practice_id]["departments"])
        limit = _int(query.get("limit")) or self.page_size or len(depts) or 1
        offset = _int(query.get("offset")) or 0
        page = depts[offset : offset + limit]
        body: dict[str, Any] = {"departments": page, "totalcount": len(depts)}
        if offset + limit < len(depts):
            body["next"] = f"/v1/{practice_id}/departments?" + urlencode(
                {"limit": limit, "offset": offset + limit}
            )
        return _json_reply(200, body)

    def _group_of(self, practice: dict[str, Any], department_id: str) -> str | None:
        for d in practice["departments"]:
            if d["departmentid"] == department_id:
                return str(d["providergroupid"])
        return None

    def _patient(self, practice_id: str, patient_id: str, query: Mapping[str, str]) -> _Reply:
        with self._lock:
            practice = self._practices[practice_id]
            patient = practice["patients"].get(patient_id)
            if patient is None:
                return _error(
                    404, "The patient could not be found.", f"No patient with id {patient_id}"
                )
            dept = query.get("departmentid")
            if dept is not None and self._group_of(practice, dept) is None:
                return _error(400, "Invalid departmentid.")
            show_details = query.get("showbalancedetails", "").lower() == "true"
            show_all = query.get("showallclaims", "").lower() == "true"
            return _json_reply(
                200, [self._render_patient(practice, patient_id, patient, show_details, show_all)]
            )

    def _render_patient(
        self,
        practice: dict[str, Any],
        patient_id: str,
        patient: dict[str, Any],
        details: bool,
        show_all: bool,
    ) -> dict[str, Any]:
        strings = patient.get("style") == "strings"
        enterprise = practice["enterprise"]

        def money(cents: int) -> Any:
            return money_text(cents) if strings else money_number(cents)

        def ident(text: str) -> Any:
            return text if strings else int(text)

        groups: dict[str, list[str]] = {}
        for d in practice["departments"]:
            groups.setdefault(str(d["providergroupid"]), []).append(d["departmentid"])
        all_depts = [d["departmentid"] for d in practice["departments"]]
        primary_group = self._group_of(practice, patient["primarydepartmentid"]) or ""
        by_group: dict[str, list[dict[str, Any]]] = {}
        for claim in patient["claims"]:
            group = self._group_of(practice, claim["departmentid"]) or ""
            by_group.setdefault(group, []).append(claim)

        balances = []
        for group in sorted(
            set(by_group) | ({primary_group} if patient["credit_cents"] else set())
        ):
            claims = by_group.get(group, [])
            total = sum(c["balance_cents"] for c in claims)
            if group == primary_group:
                total -= patient["credit_cents"]
            entry: dict[str, Any] = {
                "balance": money_text(total),
                "departmentlist": ",".join(groups.get(group, all_depts)),
                "providergroupid": int(group) if group.isdigit() else group,
                "cleanbalance": all(c["clean"] for c in claims if c["balance_cents"]),
            }
            plan = sum(c["balance_cents"] for c in claims if not c["clean"])
            if plan:
                entry["paymentplanbalance"] = money_text(plan)
            balances.append(entry)

        out: dict[str, Any] = {
            "patientid": patient_id,
            "firstname": patient["firstname"],
            "lastname": patient["lastname"],
            "dob": patient["dob"],
            "departmentid": patient["primarydepartmentid"],
            "primarydepartmentid": patient["primarydepartmentid"],
            "status": "active",
            "balances": balances,
        }
        if not details or patient.get("style") == "no_claimbalancedetails":
            return out
        cbd = []
        for group, claims in sorted(by_group.items()):
            shown = [c for c in claims if c["balance_cents"] or show_all]
            if not shown:
                continue
            cbd.append(
                {
                    "providergroupid": (ident(group) if enterprise else ""),
                    "departmentids": ",".join(
                        groups.get(group, all_depts) if enterprise else all_depts
                    ),
                    "claimdetails": [self._render_claim(c, strings, money, ident) for c in shown],
                }
            )
        out["claimbalancedetails"] = cbd
        return out

    @staticmethod
    def _render_claim(
        c: dict[str, Any], strings: bool, money: Callable[[int], Any], ident: Callable[[str], Any]
    ) -> dict[str, Any]:
        charge: dict[str, Any] = {
            "id": ident(str(int(c["claimid"]) * 10 + 1)),
            "procedurecode": c["procedurecode"],
            "description": c["description"],
            "amount": money(c["amount_cents"]),
            "transactions": [
                {**t, "amount": money(t["amount_cents"]), "epaymentid": ident(t["epaymentid"])}
                for t in ({k: v for k, v in t.items()} for t in c["transactions"])
            ],
        }
        for t in charge["transactions"]:
            t.pop("amount_cents", None)
        claim: dict[str, Any] = {
            "claimid": ident(c["claimid"]),
            "departmentid": ident(c["departmentid"]),
            "amount": money(c["amount_cents"]),
            "cleanbalance": c["clean"],
            "supervisingproviderid": ident("20"),
        }
        if strings:
            claim["outstandingp"] = money(c["balance_cents"])
            claim["servicedate"] = c["servicedate"]
            charge["fromdate"] = c["servicedate"]
            charge["printprocedurecode"] = c["procedurecode"]
            charge["parentchargetransfertype"] = "p"
        else:
            claim["patientbalance"] = money(c["balance_cents"])
            claim["servicedate"] = c["servicedate"]
            charge["servicedate"] = c["servicedate"]
        claim["chargeleveldetail"] = [charge]
        return claim

    def _appointment(self, practice_id: str, appointment_id: str) -> _Reply:
        with self._lock:
            a = self._practices[practice_id]["appointments"].get(appointment_id)
            if a is None:
                return _error(404, "The appointment could not be found.")
            strings = a.get("style") == "strings"

            def money(cents: int) -> Any:
                return money_text(cents) if strings else money_number(cents)

            return _json_reply(
                200,
                [
                    {
                        "appointmentid": appointment_id,
                        "patientid": a["patientid"],
                        "departmentid": a["departmentid"],
                        "date": a["date"],
                        "starttime": a["starttime"],
                        "appointmentstatus": "f",
                        "copay": {
                            "insurancecopay": money(a["copay_cents"]),
                            "collectedforappointment": money(a["collected_cents"]),
                            "collectedforother": money(0),
                        },
                    }
                ],
            )

    def _receipts(self, practice_id: str, patient_id: str, query: Mapping[str, str]) -> _Reply:
        with self._lock:
            practice = self._practices[practice_id]
            patient = practice["patients"].get(patient_id)
            if patient is None:
                return _error(404, "The patient could not be found.")
            dept = query.get("departmentid")
            if not dept:
                return _error(400, "Missing parameters.", None, ["departmentid"])
            if self._group_of(practice, dept) is None:
                return _error(400, "Invalid departmentid.")
            strings = patient.get("style") == "strings"
            rows = []
            for r in practice["receipts"]:
                if r["patientid"] != patient_id or r["departmentid"] != dept:
                    continue
                rows.append(
                    {
                        "amount": money_text(r["amount_cents"])
                        if strings
                        else money_number(r["amount_cents"]),
                        "cardnumberlast4digits": r["last4"],
                        "cardtypeabbreviation": r["brand"],
                        "cardtypename": {
                            "VI": "Visa",
                            "MC": "MasterCard",
                            "AX": "American Express",
                            "DI": "Discover",
                        }.get(r["brand"], "Other"),
                        "contractid": "",
                        "epaymentid": r["epaymentid"] if strings else int(r["epaymentid"]),
                        "requestdate": eastern_text(r["at"], self.receipt_date_format),
                        "type": "PAYMENT",
                    }
                )
            return _json_reply(200, {"receipts": rows, "totalcount": len(rows)})

    # ------------------------------------------------------------ the payment

    def _collect_with_faults(
        self, practice_id: str, ids: dict[str, str], form: dict[str, str]
    ) -> _Reply:
        slow = self._take_fault("collectpayment", ("slow",))
        if slow is not None:
            seconds = slow.seconds or 0.0
            if slow.apply:
                reply = self._collect(practice_id, ids, form)
                reply.delay_s = seconds
                return reply
            # athena's application never got to it; the gateway gives up after the wait
            return _Reply(
                504, ERROR_HTML.replace("502 Bad", "504").encode(), "text/html", delay_s=seconds
            )
        drop = self._take_fault("collectpayment", ("drop",))
        if drop is not None:
            if drop.apply:
                self._collect(practice_id, ids, form)
            return _Reply(0, drop=True)
        echo = self._take_fault("collectpayment", ("echo_error",))
        if echo is not None:
            # A careless error text that quotes the request (the client must scrub it).
            return _error(
                400,
                f"Invalid trackdata: {form.get('trackdata', '')}",
                f"Could not read card {form.get('trackdata', '')}",
            )
        return self._collect(practice_id, ids, form)

    def _collect(
        self, practice_id: str | None, ids: dict[str, str], form: Mapping[str, str]
    ) -> _Reply:
        if practice_id is None or practice_id not in self._practices:
            return _error(404, "Service not registered with API gateway.")
        try:
            with self._lock:
                return self._collect_locked(practice_id, ids["patientid"], form)
        except _Rejected as rejected:
            return rejected.reply

    def _collect_locked(self, practice_id: str, patient_id: str, form: Mapping[str, str]) -> _Reply:
        practice = self._practices[practice_id]
        patient = practice["patients"].get(patient_id)
        if patient is None:
            raise _Rejected(_error(404, "The patient could not be found."))
        dept = form.get("departmentid", "")
        if not dept:
            raise _Rejected(
                _error(400, "Missing parameters.", "departmentid is required", ["departmentid"])
            )
        dept_group = self._group_of(practice, dept)
        if dept_group is None:
            raise _Rejected(_error(400, "Invalid departmentid."))
        now = self._now()
        track = form.get("trackdata", "")
        if not track:
            if form.get("accountnumber"):
                raise _Rejected(
                    _error(400, "Keyed entry is not enabled for this simulator; send trackdata.")
                )
            raise _Rejected(
                _error(
                    400,
                    "Missing parameters.",
                    "trackdata or keyed card details are required",
                    [
                        "accountnumber",
                        "expirationmonthmm",
                        "expirationyearyyyy",
                        "nameoncard",
                        "billingaddress",
                        "billingzip",
                    ],
                )
            )
        if form.get("ecommercemode", "").lower() == "true":
            raise _Rejected(_error(400, "trackdata may not be used in ecommerce mode."))
        card = read_track(track, now)
        if card is None:
            raise _Rejected(
                _error(400, "Invalid track data.", "trackdata must include start and end sentinels")
            )

        amounts: dict[str, int] = {}
        for name in ("copayamount", "otheramount", "amount"):
            raw = form.get(name)
            if raw is None or raw == "":
                continue
            cents = parse_money(raw)
            if cents is None:
                raise _Rejected(_error(400, f"Invalid {name}.", f"{name} must be a dollar amount"))
            amounts[name] = cents
        copay = amounts.get("copayamount", 0)
        other = amounts.get("otheramount", amounts.get("amount", 0))
        appt_id = form.get("appointmentid", "")
        appointment = None
        if copay and not appt_id:
            raise _Rejected(
                _error(
                    400,
                    "Missing parameters.",
                    "copayamount requires appointmentid",
                    ["appointmentid"],
                )
            )
        if appt_id:
            appointment = practice["appointments"].get(appt_id)
            if appointment is None or appointment["patientid"] != patient_id:
                raise _Rejected(_error(400, "Invalid appointmentid."))

        claim_pay: list[tuple[dict[str, Any], int]] = []
        raw_claims = form.get("claimpayment")
        if raw_claims:
            claim_pay = self._claims_for(practice, patient, dept_group, raw_claims)
            claimed = sum(c for _, c in claim_pay)
            if claimed != other:
                raise _Rejected(
                    _error(
                        400,
                        "The claimpayment amounts must add up to otheramount.",
                        f"claimpayment sums to {money_text(claimed)}, "
                        f"otheramount is {money_text(other)}",
                    )
                )
        total = copay + other
        if total <= 0:
            raise _Rejected(
                _error(400, "A payment amount is required.", "send copayamount and/or otheramount")
            )

        def declined(text: str) -> _Reply:
            return _json_reply(200, [{"success": "false", "errortext": text}])

        allow_dup = form.get("allowduplicatepayments", "").lower() in ("true", "y", "yes", "1")
        if not allow_dup:
            for p_id, pat, cents, at in self._approved:
                if (
                    p_id == practice_id
                    and pat == patient_id
                    and cents == total
                    and now - at < DUPLICATE_WINDOW
                ):
                    return declined(DUPLICATE_TEXT)
        if not card.luhn:
            return declined(INVALID_CARD_TEXT)
        if card.expired:
            return declined(EXPIRED_TEXT)
        if self._take_fault("collectpayment", ("decline_next",)) is not None or card.decline:
            return declined(DECLINE_TEXT)

        # Approved: receipt, balances, copay bookkeeping.
        epayment_id = str(self._next_epayment)
        self._next_epayment += 1
        self._approved.append((practice_id, patient_id, total, now))
        practice["receipts"].append(
            {
                "patientid": patient_id,
                "epaymentid": epayment_id,
                "amount_cents": total,
                "last4": card.pan_last4,
                "brand": card.brand[0],
                "departmentid": dept,
                "at": now,
                "voided": False,
                "settled": False,
                "copay_cents": copay,
                "appointmentid": appt_id or None,
                "unapplied_cents": other - sum(c for _, c in claim_pay),
            }
        )
        for claim, cents in claim_pay:
            claim["balance_cents"] -= cents
            claim["transactions"].append(
                {
                    "id": len(claim["transactions"]) + 1,
                    "date": now.astimezone(EASTERN).strftime("%m/%d/%Y"),
                    "amount_cents": -cents,
                    "type": "PAYMENT",
                    "description": "Patient payment (credit card)",
                    "epaymentid": epayment_id,
                    "transfertype": "p",
                }
            )
        if appointment is not None and copay:
            appointment["collected_cents"] += copay
        unapplied = other - sum(c for _, c in claim_pay)
        if unapplied > 0:
            patient["credit_cents"] += unapplied
        strings = patient.get("style") == "strings"
        return _json_reply(
            200,
            [
                {
                    "success": "true",
                    "epaymentid": epayment_id if strings else int(epayment_id),
                    "errortext": "",
                }
            ],
        )

    # ------------------------------------------------------------ void and emailed receipt

    def _find_receipt(
        self, practice_id: str | None, ids: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, Any]] | _Reply:
        """(practice, receipt) of ``ids``, or the error athena would answer."""
        if practice_id is None or practice_id not in self._practices:
            return _error(404, "Service not registered with API gateway.")
        practice = self._practices[practice_id]
        if ids["patientid"] not in practice["patients"]:
            return _error(404, "The patient could not be found.")
        for r in practice["receipts"]:
            if r["patientid"] == ids["patientid"] and str(r["epaymentid"]) == ids["epaymentid"]:
                return practice, r
        return _error(404, "The payment could not be found.")

    def is_settled(self, receipt: Mapping[str, Any]) -> bool:
        """Settled by the nightly batch: ``/_sim/settle`` ran, or it is past 8 p.m. US
        Eastern on the payment's day (a payment made after 8 p.m. settles the next night)."""
        if receipt.get("settled"):
            return True
        at = receipt["at"].astimezone(EASTERN)
        cutoff = at.replace(hour=SETTLEMENT_HOUR_EASTERN, minute=0, second=0, microsecond=0)
        if at >= cutoff:
            cutoff += timedelta(days=1)
        return bool(self._now() >= cutoff)

    def _void(self, practice_id: str | None, ids: dict[str, str]) -> _Reply:
        with self._lock:
            found = self._find_receipt(practice_id, ids)
            if isinstance(found, _Reply):
                return found
            practice, receipt = found
            patient = practice["patients"][ids["patientid"]]
            strings = patient.get("style") == "strings"

            def answer(entry: dict[str, str]) -> _Reply:
                # the body is undocumented: "strings" patients get the array form
                return _json_reply(200, [entry] if strings else entry)

            if receipt["voided"]:
                return answer({"success": "true"})  # voided once; saying so again is safe
            if self.is_settled(receipt):
                return answer({"success": "false", "errortext": SETTLED_TEXT})
            receipt["voided"] = True
            eid = str(receipt["epaymentid"])
            self._voids[eid] = self._voids.get(eid, 0) + 1
            for claim in patient["claims"]:
                for tx in claim["transactions"]:
                    if tx.get("epaymentid") == eid and tx["type"] == "PAYMENT":
                        claim["balance_cents"] -= tx["amount_cents"]  # amounts are negative
                        tx["type"] = "VOIDED"
            appt = practice["appointments"].get(receipt.get("appointmentid") or "")
            if appt is not None:
                appt["collected_cents"] -= receipt.get("copay_cents", 0)
            patient["credit_cents"] -= receipt.get("unapplied_cents", 0)
            self._approved = [
                a for a in self._approved
                if not (a[1] == receipt["patientid"] and a[2] == receipt["amount_cents"]
                        and a[3] == receipt["at"])
            ]
            return answer({"success": "true"})

    def _email_receipt(
        self, practice_id: str | None, ids: dict[str, str], form: Mapping[str, str]
    ) -> _Reply:
        with self._lock:
            found = self._find_receipt(practice_id, ids)
            if isinstance(found, _Reply):
                return found
            address = form.get("email", "")
            if not address:
                return _error(400, "Missing parameters.", "email is required", ["email"])
            if not _EMAIL_SIM_RE.match(address):
                return _error(400, "Invalid email address.")
            self._emails.append((ids["epaymentid"], address))
            return _json_reply(200, {"success": "true"})

    @property
    def voids(self) -> dict[str, int]:
        """``{epaymentid: n}``: voids carried out (a repeat of a done void adds none)."""
        with self._lock:
            return dict(self._voids)

    @property
    def emails(self) -> list[tuple[str, str]]:
        """Receipts emailed, ``(epaymentid, address)``, oldest first."""
        with self._lock:
            return list(self._emails)

    def settle(self) -> int:
        """Run the nightly settlement now: every payment so far can no longer be voided."""
        with self._lock:
            count = 0
            for practice in self._practices.values():
                for r in practice["receipts"]:
                    if not r["settled"]:
                        r["settled"] = True
                        count += 1
            return count

    def _claims_for(
        self, practice: dict[str, Any], patient: dict[str, Any], dept_group: str, raw: str
    ) -> list[tuple[dict[str, Any], int]]:
        def bad(error: str, detail: str | None = None) -> _Rejected:
            return _Rejected(_error(400, error, detail))

        try:
            entries = json.loads(raw)
        except ValueError:
            raise bad("Invalid claimpayment.", "claimpayment must be a JSON array") from None
        if not isinstance(entries, list) or not entries:
            raise bad("Invalid claimpayment.", "claimpayment must be a non-empty JSON array")
        out: list[tuple[dict[str, Any], int]] = []
        seen: set[str] = set()
        claims = {c["claimid"]: c for c in patient["claims"]}
        for entry in entries:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise bad("Invalid claimpayment.", 'each entry is {"<claimid>": "<amount>"}')
            ((claim_id, raw_amount),) = entry.items()
            cents = parse_money(raw_amount) if isinstance(raw_amount, str) else None
            if cents is None or cents <= 0:
                raise bad(
                    "Invalid claimpayment.", f"amount for claim {claim_id} is not a positive amount"
                )
            if claim_id in seen:
                raise bad("Invalid claimpayment.", f"claim {claim_id} appears twice")
            seen.add(claim_id)
            claim = claims.get(claim_id)
            if claim is None:
                raise bad("Invalid claim ID.", f"claim {claim_id} is not a claim of this patient")
            if not claim["clean"]:
                raise bad(
                    "Claim is not eligible for payment.",
                    f"claim {claim_id} is on a payment plan or contract",
                )
            if (
                practice["enterprise"]
                and self._group_of(practice, claim["departmentid"]) != dept_group
            ):
                raise bad(
                    "Claim is not eligible for payment.",
                    f"claim {claim_id} belongs to another provider group",
                )
            if cents > claim["balance_cents"]:
                raise bad(
                    "Payment exceeds the claim balance.",
                    f"claim {claim_id} balance is {money_text(claim['balance_cents'])}",
                )
            out.append((claim, cents))
        return out

    # ------------------------------------------------------------ control endpoints

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        if path == "/_sim/calls" and method == "GET":
            with self._lock:
                return _json_reply(
                    200,
                    {
                        "calls": self._calls,
                        "collectpayment_posts": self._posts,
                        "token_requests": self.token_requests,
                        "voids": self._voids,
                    },
                )
        if path == "/_sim/faults" and method == "GET":
            return _json_reply(200, {"faults": self.faults})
        if path == "/_sim/faults" and method == "POST":
            try:
                data = json.loads(body or b"null")
                items = data if isinstance(data, list) else [data]
                faults = [Fault.from_mapping(item) for item in items]
            except (ValueError, TypeError) as exc:
                return _error(400, "bad fault", str(exc))
            for fault in faults:
                self._install(fault)
            return _json_reply(200, {"ok": True, "faults": len(faults)})
        if path == "/_sim/receipt-date-format" and method == "POST":
            try:
                form = json.loads(body or b"null").get("format")
            except (ValueError, AttributeError):
                form = None
            if form not in RECEIPT_DATE_FORMATS:
                return _error(400, "bad format", f"one of {sorted(RECEIPT_DATE_FORMATS)}")
            self.receipt_date_format = form
            return _json_reply(200, {"ok": True, "format": form})
        if path == "/_sim/settle" and method == "POST":
            return _json_reply(200, {"ok": True, "settled": self.settle()})
        if path == "/_sim/emails" and method == "GET":
            return _json_reply(
                200, {"emails": [{"epaymentid": e, "email": a} for e, a in self.emails]})
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return _json_reply(200, {"ok": True})
        if path == "/_sim/receipts" and method == "GET":
            with self._lock:
                rows = [
                    {
                        **{k: v for k, v in r.items()
                           if k not in ("at", "amount_cents", "copay_cents", "unapplied_cents")},
                        "amount": money_text(r["amount_cents"]),
                        "requestdate": eastern_text(r["at"]),
                    }
                    for p in self._practices.values()
                    for r in p["receipts"]
                ]
            return _json_reply(200, {"receipts": rows})
        return _error(404, "unknown simulator control path")


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text)


class _NullWriter:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        return None


class _Server(ThreadingHTTPServer):
    """With ``tls`` set, each accepted connection does its TLS handshake in its own
    thread (never in the accept loop)."""

    tls: ssl.SSLContext | None = None
    idle_timeout_s: float | None = None

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

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        sim: AthenaSim = self.server.sim  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= 1_000_000:
            self._write(_error(400, "Bad Content-Length"))
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = sim.handle(method, self.path, headers, body,
                               peer_port=int(self.client_address[1]))
        except Exception:  # noqa: BLE001 - a simulator bug answers 500, like a real server
            _log.exception("athena sim: handler failed")
            reply = _error(500, "Internal Server Error")
        del body
        if reply.delay_s:
            sim._stopping.wait(reply.delay_s)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.wfile = _NullWriter()  # type: ignore[assignment]
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
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
        sim: AthenaSim = self.server.sim  # type: ignore[attr-defined]
        return email.utils.format_datetime(sim._now().astimezone(UTC), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None  # request lines carry patient ids; the sim records calls instead


def _serve_forever_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lobbypay.sim.athena", description="Run the athena simulator on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--practice", default=DEFAULT_PRACTICE, help="practice id printed for clients"
    )
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument(
        "--token-ttl", type=int, default=3600, help="expires_in of issued tokens (s)"
    )
    parser.add_argument("--page-size", type=int, help="page list endpoints with this size")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    args = parser.parse_args(argv)
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    sim = AthenaSim(
        host=args.host,
        port=args.port,
        practice_id=args.practice,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl_s=args.token_ttl,
        page_size=args.page_size,
        ssl_context=tls,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    base_url = sim.start()
    print(
        json.dumps(
            {
                "base_url": base_url,
                "practice_id": sim.practice_id,
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            }
        ),
        flush=True,
    )
    try:
        while not stop.wait(0.2):
            pass
    finally:
        sim.stop()
    return 0


def iter_fixture_patients() -> Iterator[tuple[str, str]]:
    """(practice id, patient id) of every fixture patient (for docs and tests)."""
    data = AthenaSim._load_fixtures()
    for practice_id, practice in data["practices"].items():
        for patient_id in practice["patients"]:
            yield practice_id, patient_id


if __name__ == "__main__":
    raise SystemExit(_serve_forever_cli())
