"""A loopback athena: a real HTTP server with athena's shapes, rules and failure modes.

Used by the tests (in process, ``AthenaSim``) and by the demo and e2e tests (another
process, ``python -m lobbypay.sim.athena --port 0``, driven over ``/_sim/*``). The
fixture practices and patients are in ``fixtures/athena.json`` and documented, with
every fault, in docs/athena.md.

``AthenaSim`` puts the parts together and is what tests hold:

* ``sim/world.py``: the state (practices, patients, claims, appointments, receipts,
  payments, tokens, the calls seen) and its units (cents, Eastern time text);
* ``sim/rules.py``: what a token request, a collectpayment, a void and a receipt email
  do to the world (validation, declines, the card's reading, settlement);
* ``sim/reads.py``: what the GET endpoints show of the world;
* ``sim/faults.py``: the scripted faults and what each does to a request;
* ``sim/server.py``: the HTTP server, its handler and the routes;
* ``sim/reply.py``: an answer before it is HTTP.

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
import copy
import json
import secrets
import signal
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lobbypay.sim import reads, rules
from lobbypay.sim.faults import Fault, Faults
from lobbypay.sim.reply import NOT_REGISTERED, Reply, error_reply, json_reply
from lobbypay.sim.server import SimServer, route
from lobbypay.sim.world import RECEIPT_DATE_FORMATS, World, eastern_text, load_fixtures, money_text

DEFAULT_PRACTICE = "195900"


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
        self._world = World(now or (lambda: datetime.now(UTC)))
        self._faults = Faults(self._world)
        self._server: SimServer | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        server = SimServer((self.host, self.port), self, tls=self.ssl_context,
                           idle_timeout_s=self.idle_timeout_s)
        self._server = server
        self.port = server.port
        server.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

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
        with self._world.lock:
            return copy.deepcopy(self._world.calls)

    def post_count(self, patient_id: str, practice_id: str | None = None) -> int:
        with self._world.lock:
            return self._world.posts.get(f"{practice_id or self.practice_id}/{patient_id}", 0)

    @property
    def collectpayment_posts(self) -> dict[str, int]:
        """``{"<practice>/<patient>": n}``: collectpayment POSTs received (any outcome)."""
        with self._world.lock:
            return dict(self._world.posts)

    @property
    def token_requests(self) -> int:
        """Requests to the token endpoint, any outcome (not cleared by ``reset``)."""
        with self._world.lock:
            return self._world.token_requests

    @property
    def receipt_date_format(self) -> str:
        """How receipts' ``requestdate`` is written: "seconds", "minutes" or "iso"."""
        return self._world.receipt_date_format

    @receipt_date_format.setter
    def receipt_date_format(self, form: str) -> None:
        if form not in RECEIPT_DATE_FORMATS:
            raise ValueError(f"receipt date format is one of {sorted(RECEIPT_DATE_FORMATS)}")
        self._world.receipt_date_format = form

    def add_fault(self, kind: str, **params: Any) -> Fault:
        """Script a fault (see docs/athena.md), e.g. ``add_fault("status", endpoint="patient",
        status=503, count=2)``. ``expire_tokens`` acts at once."""
        fault = Fault.from_mapping({"kind": kind, **params})
        self._faults.install(fault)
        return fault

    def decline_next(self, count: int = 1) -> None:
        self.add_fault("decline_next", count=count)

    def expire_tokens(self) -> None:
        self._world.expire_tokens()

    @property
    def faults(self) -> list[dict[str, Any]]:
        return self._faults.listed()

    def reset(self) -> None:
        """Fixtures back to their start, faults and recorded calls cleared (tokens kept)."""
        with self._world.lock:
            self._world.reset()
            self._faults.reset()

    def receipts(self, patient_id: str, practice_id: str | None = None) -> list[dict[str, Any]]:
        with self._world.lock:
            practice = self._world.practices[practice_id or self.practice_id]
            return [dict(r) for r in practice["receipts"] if r["patientid"] == patient_id]

    def claim_balance(self, claim_id: str, practice_id: str | None = None) -> str:
        """A claim's current patient balance as "12.34"."""
        with self._world.lock:
            practice = self._world.practices[practice_id or self.practice_id]
            for patient in practice["patients"].values():
                for claim in patient["claims"]:
                    if claim["claimid"] == claim_id:
                        return money_text(claim["balance_cents"])
        raise KeyError(claim_id)

    def valid_token(self) -> str:
        """Issue a token directly (for benchmarks and raw-HTTP tests)."""
        return self._world.issue_token(self.token_ttl_s)

    def is_settled(self, receipt: Mapping[str, Any]) -> bool:
        """Settled by the nightly batch: ``/_sim/settle`` ran, or it is past 8 p.m. US
        Eastern on the payment's day (a payment made after 8 p.m. settles the next night)."""
        return rules.is_settled(self._world, receipt)

    @property
    def voids(self) -> dict[str, int]:
        """``{epaymentid: n}``: voids carried out (a repeat of a done void adds none)."""
        with self._world.lock:
            return dict(self._world.voids)

    @property
    def emails(self) -> list[tuple[str, str]]:
        """Receipts emailed, ``(epaymentid, address)``, oldest first."""
        with self._world.lock:
            return list(self._world.emails)

    def settle(self) -> int:
        """Run the nightly settlement now: every payment so far can no longer be voided."""
        return rules.settle(self._world)

    # ------------------------------------------------------------ serving (server.Application)

    def now(self) -> datetime:
        """The simulator's clock (its ``Date`` headers tell it)."""
        return self._world.now()

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
               *, peer_port: int | None = None) -> Reply:
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
        endpoint, practice_id, ids = route(method, path)
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "endpoint": endpoint,
            "query": query,
            "form": self._world.redact(form),
            "request_id": headers.get("x-request-id"),
            "at": self._world.now().isoformat(),
            "status": None,
            "peer_port": peer_port,
        }
        payment_of = (f"{practice_id}/{ids['patientid']}" if endpoint == "collectpayment"
                      else None)
        self._world.record(record, payment_of=payment_of)
        reply = self._respond(method, endpoint, practice_id, ids, query, headers, form)
        form.clear()
        with self._world.lock:
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
    ) -> Reply:
        world = self._world
        if endpoint == "token":
            return self._token(headers, form)
        # The gateway's faults come first: they answer instead of the application.
        gateway = self._faults.gateway(endpoint)
        if gateway is not None:
            fault, reply = gateway
            if fault.apply and endpoint == "collectpayment" and rules.authorized(world, headers):
                self._collect(practice_id, ids, form)  # the app ran; the answer is lost
            if fault.apply and endpoint == "voidpayment" and rules.authorized(world, headers):
                rules.void(world, practice_id, ids)  # the void landed; the answer is lost
            return reply
        if not rules.authorized(world, headers):
            return error_reply(401, "Unauthorized", "Invalid or expired access token")
        if endpoint == "other" or practice_id is None or practice_id not in world.practices:
            return error_reply(404, NOT_REGISTERED)
        if endpoint == "ping" and method == "GET":
            return json_reply(200, {"pong": "true"})
        if endpoint == "departments" and method == "GET":
            return reads.departments(world, practice_id, query, self.page_size)
        if endpoint == "patient" and method == "GET":
            return reads.patient(world, practice_id, ids["patientid"], query)
        if endpoint == "appointment" and method == "GET":
            return reads.appointment(world, practice_id, ids["appointmentid"])
        if endpoint == "receipts" and method == "GET":
            return reads.receipts(world, practice_id, ids["patientid"], query)
        if endpoint == "collectpayment" and method == "POST":
            faulted = self._faults.collectpayment(
                form, lambda: self._collect(practice_id, ids, form))
            return faulted if faulted is not None else self._collect(practice_id, ids, form)
        if endpoint == "voidpayment" and method == "POST":
            refused = self._faults.refuse_void()
            return refused if refused is not None else rules.void(world, practice_id, ids)
        if endpoint == "receiptemail" and method == "POST":
            return rules.email_receipt(world, practice_id, ids, form)
        return error_reply(404, NOT_REGISTERED)

    def _token(self, headers: Mapping[str, str], form: Mapping[str, str]) -> Reply:
        with self._world.lock:
            self._world.token_requests += 1
        faulted = self._faults.token_endpoint()
        if faulted is not None:
            return faulted
        return rules.issue_token(self._world, headers, form, client_id=self.client_id,
                                 client_secret=self.client_secret, ttl_s=self.token_ttl_s)

    def _collect(self, practice_id: str | None, ids: Mapping[str, str],
                 form: Mapping[str, str]) -> Reply:
        return rules.collect(self._world, practice_id, ids["patientid"], form,
                             decline_next=self._faults.decline_next)

    # ------------------------------------------------------------ control endpoints

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        world = self._world
        if path == "/_sim/calls" and method == "GET":
            with world.lock:
                return json_reply(
                    200,
                    {
                        "calls": world.calls,
                        "collectpayment_posts": world.posts,
                        "token_requests": world.token_requests,
                        "voids": world.voids,
                    },
                )
        if path == "/_sim/faults" and method == "GET":
            return json_reply(200, {"faults": self.faults})
        if path == "/_sim/faults" and method == "POST":
            try:
                data = json.loads(body or b"null")
                items = data if isinstance(data, list) else [data]
                faults = [Fault.from_mapping(item) for item in items]
            except (ValueError, TypeError) as exc:
                return error_reply(400, "bad fault", str(exc))
            for fault in faults:
                self._faults.install(fault)
            return json_reply(200, {"ok": True, "faults": len(faults)})
        if path == "/_sim/receipt-date-format" and method == "POST":
            try:
                form = json.loads(body or b"null").get("format")
            except (ValueError, AttributeError):
                form = None
            if form not in RECEIPT_DATE_FORMATS:
                return error_reply(400, "bad format", f"one of {sorted(RECEIPT_DATE_FORMATS)}")
            self.receipt_date_format = form
            return json_reply(200, {"ok": True, "format": form})
        if path == "/_sim/settle" and method == "POST":
            return json_reply(200, {"ok": True, "settled": self.settle()})
        if path == "/_sim/emails" and method == "GET":
            return json_reply(
                200, {"emails": [{"epaymentid": e, "email": a} for e, a in self.emails]})
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return json_reply(200, {"ok": True})
        if path == "/_sim/receipts" and method == "GET":
            with world.lock:
                rows = [
                    {
                        **{k: v for k, v in r.items()
                           if k not in ("at", "amount_cents", "copay_cents", "unapplied_cents")},
                        "amount": money_text(r["amount_cents"]),
                        "requestdate": eastern_text(r["at"]),
                    }
                    for p in world.practices.values()
                    for r in p["receipts"]
                ]
            return json_reply(200, {"receipts": rows})
        return error_reply(404, "unknown simulator control path")


def iter_fixture_patients() -> Iterator[tuple[str, str]]:
    """(practice id, patient id) of every fixture patient (for docs and tests)."""
    data = load_fixtures()
    for practice_id, practice in data["practices"].items():
        for patient_id in practice["patients"]:
            yield practice_id, patient_id


def main(argv: list[str] | None = None) -> int:
    """``python -m lobbypay.sim.athena``: serve until SIGTERM or SIGINT."""
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


__all__ = ["DEFAULT_PRACTICE", "AthenaSim", "iter_fixture_patients", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
