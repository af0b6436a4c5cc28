"""An asyncio client for lobbypay protocol v1, for check-in app developers.

::

    async with TerminalClient("lobby-1", "broker.clinic.lan") as term:
        bal = await term.balance("60178")
        await term.charge("visit-8812", "60178", copay="25.00", appointment_id="1001")
        final = await term.wait_final("visit-8812", timeout=300)

What it does for you (see docs/client.md):

* subscribes to ``reply``, ``events``, ``status`` and ``state`` *before* any command
  goes out, and again after every reconnect;
* matches each reply to its command by ``request_id`` (a fresh uuid per call) and turns
  ``ok: false`` into ``CommandError(code, message, reply)``; no reply in time is
  ``TimeoutError``. A command whose publish failed because the connection dropped is
  sent again with the *same* request_id once reconnected: the agent answers a repeated
  request_id with the same reply and acts once (protocol section 2);
* delivers each ``charge.event`` once: events are deduplicated on ``(job_id, seq)``, and an
  event older than one already delivered for the same job is dropped as stale;
* reconnects by itself (jittered, capped backoff). Events published while it was away are
  recovered with ``charge.get`` for every job somebody is waiting on;
* refuses ``float`` amounts (``TypeError``): money is a ``str`` like ``"25.00"`` or a
  ``Decimal``.

It uses aiomqtt (paho underneath) and never logs payloads.
"""

# The public API takes ``timeout`` arguments on purpose (protocol replies have deadlines
# the caller chooses); each is applied with asyncio.timeout inside.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import random
import re
import ssl
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lobbypay.core.money import WIRE_AMOUNT_RE, InvalidAmount
from lobbypay.core.protocol import (
    EVENT_TYPE,
    FINAL_JOB_STATES,
    JOB_ID_RE,
    PROTOCOL_VERSION,
    Topics,
    email_problem,
    format_seconds,
)
from lobbypay.core.screen_text import LANGUAGES

__all__ = [
    "ClientError",
    "CommandError",
    "EventStream",
    "NotConnected",
    "TerminalClient",
    "fleet",
    "wire_amount",
]

log = logging.getLogger("lobbypay.client")

#: terminal.id as the agent accepts it (core/config.py); also keeps MQTT wildcards out.
_TERMINAL_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")

#: How long the broker keeps our MQTT 5 session (subscriptions + queued QoS 1 messages)
#: after a network drop: long enough for a Wi-Fi blip or broker failover, short enough
#: that abandoned app sessions do not pile up on the broker.
SESSION_EXPIRY_S = 300
#: Reconnect backoff: uniform(0, min(cap, base * 2**attempt)).
RECONNECT_BASE_S = 0.1
#: Time the broker gets for CONNACK/SUBACK/PUBACK before we call the connection dead.
MQTT_OP_TIMEOUT_S = 10.0
#: Retained status/state arrive right after SUBACK; this is how long ``status()`` and
#: ``state()`` wait for one before concluding the terminal never published any.
RETAINED_WAIT_S = 1.0
#: Pause before publishing a command again after a failed publish.
RETRY_PUBLISH_S = 0.2
#: Memory bounds: jobs whose events we remember (for dedupe and replay), events per job.
_MAX_JOBS = 512
_MAX_EVENTS_PER_JOB = 64


class ClientError(Exception):
    """Base class of everything this module raises on purpose."""


class NotConnected(ClientError, ConnectionError):
    """The broker could not be reached (or the client is closed)."""


class CommandError(ClientError):
    """The agent answered ``ok: false``. ``code`` is the stable protocol code.

    ``reply`` is the whole reply; e.g. ``terminal_busy`` carries ``reply["active_job_id"]``.
    """

    def __init__(self, code: str, message: str, reply: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


# ---------------------------------------------------------------- money and ids


def wire_amount(value: object, name: str = "amount") -> str:
    """Turn a caller's amount into the wire form ``"12.34"``.

    Accepts ``str`` (already ``"12.34"``) or ``Decimal`` (finite, >= 0, at most two
    decimals). ``float`` (and ``int``/``bool``) raise ``TypeError``: a float cannot hold
    12.34 exactly, and an int is ambiguous between dollars and cents. A malformed string
    or Decimal raises ``InvalidAmount`` (a ``ValueError``).
    """
    if isinstance(value, float):
        raise TypeError(f"{name}: floats are not money; pass a str like \"12.34\" or a Decimal")
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise InvalidAmount(f"{name}: must be a finite amount >= 0")
        cents = value.quantize(Decimal("0.01"))
        if cents != value:
            raise InvalidAmount(f"{name}: more than two decimals")
        text = f"{cents:.2f}"
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(
            f"{name}: pass a str like \"12.34\" or a Decimal, not {type(value).__name__}"
        )
    if not WIRE_AMOUNT_RE.match(text):
        raise InvalidAmount(f"{name}: must look like \"12.34\" (1-7 digits, 2 decimals)")
    return text


def _check_id(value: object, name: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if pattern is not None and not pattern.match(value):
        raise ValueError(f"{name} {value[:70]!r} has characters or a length the protocol refuses")
    return value


def _wire_time(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError("expires_at must be an aware datetime or an ISO 8601 string")
    if value.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    return format_seconds(value)


def _claims_to_wire(claims: Iterable[object]) -> builtins.list[dict[str, str]]:
    out: builtins.list[dict[str, str]] = []
    for i, claim in enumerate(claims):
        if isinstance(claim, Mapping):
            claim_id, amount = claim.get("claim_id"), claim.get("amount")
        elif isinstance(claim, tuple) and len(claim) == 2:
            claim_id, amount = claim
        else:
            raise TypeError(
                f"claims[{i}]: pass {{'claim_id': ..., 'amount': ...}} or (claim_id, amount)"
            )
        out.append({
            "claim_id": _check_id(claim_id, f"claims[{i}].claim_id"),
            "amount": wire_amount(amount, f"claims[{i}].amount"),
        })
    return out


def _decode(payload: object) -> dict[str, Any] | None:
    if not isinstance(payload, (bytes, bytearray)):
        return None
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _tls_context(tls: ssl.SSLContext | bool | None) -> ssl.SSLContext | None:
    if tls is True:
        return ssl.create_default_context()
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    raise TypeError("tls must be an ssl.SSLContext, True or None")


def _protocol(protocol: int | str) -> aiomqtt.ProtocolVersion:
    if protocol in (5, "5"):
        return aiomqtt.ProtocolVersion.V5
    if protocol in (4, "4", "3.1.1", 311):
        return aiomqtt.ProtocolVersion.V311
    raise ValueError("protocol must be 5 or '3.1.1'")


# ---------------------------------------------------------------- event streams


class EventStream:
    """``async for event in stream``: charge.event dicts, each (job_id, seq) once.

    Registered with the client the moment it is created, so nothing published after
    that is missed. A stream for one job first replays the events already seen for it,
    and ends after that job's final event. A stream for all jobs runs until the client
    closes (or ``aclose()``).
    """

    def __init__(self, client: TerminalClient, job_id: str | None) -> None:
        self.job_id = job_id
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._client = client
        self._done = False

    def _offer(self, event: dict[str, Any]) -> None:
        if self.job_id is None or event.get("job_id") == self.job_id:
            self._queue.put_nowait(event)

    def _end(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._done = True
            self._client._streams.discard(self)
            raise StopAsyncIteration
        if self.job_id is not None and event.get("final") is True:
            self._done = True
            self._client._streams.discard(self)
        return event

    async def aclose(self) -> None:
        self._done = True
        self._client._streams.discard(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _JobLog:
    __slots__ = ("events", "max_seq")

    def __init__(self) -> None:
        self.events: builtins.list[dict[str, Any]] = []
        self.max_seq = 0

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.events[-1] if self.events else None


# ---------------------------------------------------------------- the client


class TerminalClient:
    """One terminal, seen from a check-in app. Use as ``async with``.

    ``protocol`` is 5 (default) or "3.1.1". ``tls`` is an ``ssl.SSLContext`` (or True for
    the system CAs). ``client_id`` defaults to a random ``lobbypay-app-...``; with MQTT 5
    the broker keeps the session for ``SESSION_EXPIRY_S`` across network drops.

    ``staff=True``: a front-desk client; every command goes on ``staff/cmd`` and its
    reply comes on ``staff/reply`` (protocol 10), the only way ``void`` is taken (a kiosk
    client's ``void`` gets ``CommandError("forbidden")``).
    """

    def __init__(
        self,
        terminal_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        client_id: str | None = None,
        protocol: int | str = 5,
        keepalive: int = 30,
        reconnect_max_s: float = 5.0,
        site: str | None = None,
        staff: bool = False,
    ) -> None:
        self.terminal_id = _check_id(terminal_id, "terminal_id", _TERMINAL_ID_RE)
        #: the site prefix on a central broker bridged with one (``<site>/lobbypay/v1/...``;
        #: docs/OPERATIONS.md, "A fleet over bridged brokers"); None: no prefix
        self.site = None if site is None else _check_id(site, "site", _TERMINAL_ID_RE)
        self.staff = bool(staff)
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._tls = _tls_context(tls)
        self._protocol = _protocol(protocol)
        self.client_id = client_id or f"lobbypay-app-{uuid.uuid4().hex[:16]}"
        self._keepalive = keepalive
        self._reconnect_max_s = reconnect_max_s
        #: every topic of the terminal by its protocol name (``"events"``, ``"staff/cmd"``)
        self.topics = Topics.of(self.terminal_id, site=self.site).by_name()
        self._cmd_topic = self.topics["staff/cmd" if self.staff else "cmd"]
        self._reply_topic = self.topics["staff/reply" if self.staff else "reply"]

        self._mqtt: aiomqtt.Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()
        self._reconnected = asyncio.Event()  # replaced (after being set) at each reconnect
        self.connections = 0  # how many times we connected (1 + reconnects)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._jobs: OrderedDict[str, _JobLog] = OrderedDict()
        self._final_waiters: dict[str, builtins.list[asyncio.Future[dict[str, Any]]]] = {}
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._retained: dict[str, dict[str, Any] | None] = {}
        self._retained_seen = {"status": asyncio.Event(), "state": asyncio.Event()}
        self._refreshers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._runner is not None or self._closed:
            raise ClientError("a TerminalClient is entered once")
        await self._connect(first=True)
        self._runner = asyncio.create_task(
            self._run(), name=f"lobbypay.client[{self.terminal_id}].receive"
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._runner, *self._refreshers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        waiters = [f for fs in self._final_waiters.values() for f in fs]
        for fut in [*self._pending.values(), *waiters]:
            if not fut.done():
                fut.set_exception(NotConnected("client closed"))
        for stream in builtins.list(self._streams):
            stream._end()
        self._connected.clear()
        mqtt, self._mqtt = self._mqtt, None
        if mqtt is not None:
            try:
                await mqtt.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _new_mqtt(self, first: bool) -> aiomqtt.Client:
        kwargs: dict[str, Any] = {}
        if self._protocol is aiomqtt.ProtocolVersion.V5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs["properties"] = props
            kwargs["clean_start"] = first
        else:
            kwargs["clean_session"] = True
        return aiomqtt.Client(
            self.host, self.port, username=self._username, password=self._password,
            identifier=self.client_id, protocol=self._protocol, tls_context=self._tls,
            keepalive=self._keepalive, timeout=MQTT_OP_TIMEOUT_S, logger=log, **kwargs,
        )

    async def _connect(self, *, first: bool) -> None:
        mqtt = self._new_mqtt(first)
        try:
            await mqtt.__aenter__()
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        try:
            # Subscribe before any command goes out (and again after a reconnect: with a
            # clean session the broker forgot us).
            for topic in (self._reply_topic, *(self.topics[n] for n in
                                               ("events", "status", "state"))):
                await mqtt.subscribe(topic, qos=1)
        except aiomqtt.MqttError as exc:
            try:
                await mqtt.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
            raise NotConnected(f"subscribing failed: {exc}") from None
        self._mqtt = mqtt
        self.connections += 1
        self._connected.set()

    async def _run(self) -> None:
        attempt = 0
        while True:
            mqtt = self._mqtt
            if mqtt is None:  # pragma: no cover - _connect() set it before we got here
                raise RuntimeError("receive loop without a connection")
            try:
                async for message in mqtt.messages:
                    self._dispatch(message)
            except aiomqtt.MqttError as exc:
                log.info("connection to %s:%s lost: %s", self.host, self.port, exc)
            self._connected.clear()
            self._mqtt = None
            try:
                await mqtt.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
            while True:
                attempt += 1
                cap = min(self._reconnect_max_s, RECONNECT_BASE_S * 2 ** min(attempt, 16))
                await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto
                try:
                    await self._connect(first=False)
                except NotConnected as exc:
                    log.debug("reconnect attempt %d failed: %s", attempt, exc)
                    continue
                attempt = 0
                break
            log.info("reconnected to %s:%s", self.host, self.port)
            self._after_reconnect()

    def _after_reconnect(self) -> None:
        old, self._reconnected = self._reconnected, asyncio.Event()
        old.set()
        # Events may have been published while we were away (and a clean session would
        # not have kept them): ask for the latest state of every job someone waits on.
        watched = set(self._final_waiters)
        watched.update(s.job_id for s in self._streams if s.job_id is not None)
        for job_id in watched:
            log_ = self._jobs.get(job_id)
            latest = log_.latest if log_ else None
            if latest is not None and latest.get("final") is True:
                continue
            task = asyncio.create_task(
                self._refresh(job_id), name=f"lobbypay.client.refresh[{job_id}]"
            )
            self._refreshers.add(task)
            task.add_done_callback(self._refreshers.discard)

    async def _refresh(self, job_id: str) -> None:
        try:
            job = await self.get(job_id)
        except (CommandError, TimeoutError, NotConnected) as exc:
            log.info("charge.get after reconnect failed for a job: %s", type(exc).__name__)
            return
        self._ingest_event(job)

    # ------------------------------------------------------------ incoming

    def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        obj = _decode(message.payload)
        if topic == self._reply_topic:
            if obj is None:
                return
            rid = obj.get("request_id")
            fut = self._pending.get(rid) if isinstance(rid, str) else None
            if fut is not None and not fut.done():
                fut.set_result(obj)
        elif topic == self.topics["events"]:
            if obj is not None and obj.get("type") == EVENT_TYPE:
                self._ingest_event(obj)
        elif topic in (self.topics["status"], self.topics["state"]):
            name = topic.rsplit("/", 1)[1]
            # An empty retained payload clears the topic.
            self._retained[name] = obj
            self._retained_seen[name].set()

    def _ingest_event(self, event: dict[str, Any]) -> None:
        job_id, seq = event.get("job_id"), event.get("seq")
        if not isinstance(job_id, str) or isinstance(seq, bool) or not isinstance(seq, int):
            return
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _JobLog()
            while len(self._jobs) > _MAX_JOBS:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(job_id)
        if seq <= job.max_seq:
            return  # a redelivery, or older than what we already delivered
        job.max_seq = seq
        job.events.append(event)
        del job.events[:-_MAX_EVENTS_PER_JOB]
        for stream in builtins.list(self._streams):
            stream._offer(event)
        if event.get("final") is True:
            for fut in self._final_waiters.get(job_id, []):
                if not fut.done():
                    fut.set_result(event)

    # ------------------------------------------------------------ commands

    async def command(
        self, type: str, timeout: float = 10, *, request_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one command and return its reply (``ok: true``).

        Raises ``CommandError`` on ``ok: false``, ``TimeoutError`` when no reply comes in
        ``timeout`` seconds, ``NotConnected`` if the client is closed. ``fields`` go on the
        wire as they are (this is the raw path: no amount checks here).
        """
        if self._closed or self._runner is None:
            raise NotConnected("use the client inside 'async with'")
        rid = request_id or uuid.uuid4().hex
        body = {**fields, "v": PROTOCOL_VERSION, "type": type, "request_id": rid}
        payload = json.dumps(body, separators=(",", ":")).encode()
        if rid in self._pending:
            raise ClientError("a command with this request_id is already waiting")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._connected.wait()
                    mqtt = self._mqtt
                    if mqtt is None:
                        continue
                    try:
                        await mqtt.publish(self._cmd_topic, payload, qos=1, retain=False)
                    except aiomqtt.MqttError:
                        # No PUBACK (connection lost or broker slow): send again with the
                        # same request_id; the agent acts on a request_id once.
                        await asyncio.sleep(RETRY_PUBLISH_S)
                        continue
                    break
                reply = await fut
        finally:
            self._pending.pop(rid, None)
        if reply.get("ok") is not True:
            err = reply.get("error")
            err = err if isinstance(err, dict) else {}
            code, message = str(err.get("code", "unknown_error")), str(err.get("message", ""))
            raise CommandError(code, message, reply)
        return reply

    async def ping(self, timeout: float = 10) -> dict[str, Any]:
        """``ping``: the reply; ``reply["state"]`` is the terminal's state object."""
        return await self.command("ping", timeout)

    async def balance(
        self, patient_id: str, department_id: str | None = None,
        appointment_id: str | None = None, *, timeout: float = 30,
    ) -> dict[str, Any]:
        """``balance.get``: collectible / not_collectible claims, totals and copay."""
        fields: dict[str, Any] = {"patient_id": _check_id(patient_id, "patient_id")}
        if department_id is not None:
            fields["department_id"] = _check_id(department_id, "department_id")
        if appointment_id is not None:
            fields["appointment_id"] = _check_id(appointment_id, "appointment_id")
        return await self.command("balance.get", timeout, **fields)

    async def charge(
        self, job_id: str, patient_id: str, *, copay: str | Decimal = "0.00",
        claims: Iterable[Mapping[str, Any] | tuple[str, str | Decimal]] = (),
        appointment_id: str | None = None, department_id: str | None = None,
        allow_duplicate: bool = False, deadline_s: int | None = None,
        expires_at: datetime | str | None = None, timeout: float = 30,
        language: str | None = None,
    ) -> dict[str, Any]:
        """``charge.start``; returns the start reply (``{"job_id", "state": "pending"}``).

        ``job_id`` is your idempotency key: calling again with the same job_id and the
        same body is safe. Amounts: str ``"12.34"`` or Decimal; float raises TypeError.
        ``language``: ``"en"`` or ``"es"`` for this job's screens (default: the
        terminal's ``terminal.language``); anything else raises ValueError.
        Use a new job_id for each payment attempt: when the reply says the job already
        ended (``state`` final: a retry of a finished attempt), its final event is read
        with ``charge.get`` and delivered at once, so ``events(job_id)`` ends and
        ``wait_final`` returns it.
        """
        fields: dict[str, Any] = {
            "job_id": _check_id(job_id, "job_id", JOB_ID_RE),
            "patient_id": _check_id(patient_id, "patient_id"),
            "copay": wire_amount(copay, "copay"),
            "claims": _claims_to_wire(claims),
            "allow_duplicate": bool(allow_duplicate),
        }
        if appointment_id is not None:
            fields["appointment_id"] = _check_id(appointment_id, "appointment_id")
        if department_id is not None:
            fields["department_id"] = _check_id(department_id, "department_id")
        if deadline_s is not None:
            if isinstance(deadline_s, bool) or not isinstance(deadline_s, int):
                raise TypeError("deadline_s must be an int (seconds, 10..300)")
            fields["deadline_s"] = deadline_s
        if expires_at is not None:
            fields["expires_at"] = _wire_time(expires_at)
        if language is not None:
            if language not in LANGUAGES:
                raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
            fields["language"] = language
        reply = await self.command("charge.start", timeout, **fields)
        if reply.get("state") in FINAL_JOB_STATES:
            # The same job_id and body again, for a job that already ended (before this
            # client subscribed): its events will never come again. Deliver its final
            # event now, so events(job_id) ends and wait_final returns instead of waiting
            # forever. A new payment attempt needs a new job_id.
            self._ingest_event(await self.get(fields["job_id"], timeout=timeout))
        return reply

    async def void(self, job_id: str, *, timeout: float = 30) -> dict[str, Any]:
        """``charge.void`` (a ``staff=True`` client): the reply, ``{"job_id", "state":
        "voided"}``, also when the job was voided before. CommandError codes:
        ``not_voidable``, ``void_rejected`` (athena's text), ``athena_unavailable`` (safe
        to call again), ``unknown_job``, ``forbidden`` (not a staff client)."""
        return await self.command("charge.void", timeout, job_id=_check_id(job_id, "job_id"))

    async def email_receipt(self, job_id: str, email: str, *,
                            timeout: float = 30) -> dict[str, Any]:
        """``receipt.email``: athena emails the receipt of a succeeded job to ``email``.
        An address the protocol refuses raises ValueError before anything is sent (the
        message does not quote it). CommandError codes: ``no_receipt``, ``unknown_job``,
        ``athena_rejected``, ``athena_unavailable``."""
        if not isinstance(email, str):
            raise TypeError("email must be a string")
        problem = email_problem(email)
        if problem is not None:
            raise ValueError(f"email {problem}")
        return await self.command("receipt.email", timeout,
                                  job_id=_check_id(job_id, "job_id"), email=email)

    async def cancel(self, job_id: str, *, timeout: float = 10) -> dict[str, Any]:
        """``charge.cancel``: ok while the job is pending, else CommandError(too_late...)."""
        return await self.command("charge.cancel", timeout, job_id=_check_id(job_id, "job_id"))

    async def get(self, job_id: str, *, timeout: float = 10) -> dict[str, Any]:
        """``charge.get``: the job's latest event (the reply's ``job`` object)."""
        reply = await self.command("charge.get", timeout, job_id=_check_id(job_id, "job_id"))
        job = reply.get("job")
        if not isinstance(job, dict):
            raise ClientError("charge.get reply without a 'job' object")
        return job

    def events(self, job_id: str | None = None) -> EventStream:
        """charge.event messages, once per (job_id, seq). See ``EventStream``.

        ``async for ev in client.events("j-1"): ...`` ends after the job's final event.
        """
        stream = EventStream(self, job_id)
        if job_id is not None and job_id in self._jobs:
            for event in self._jobs[job_id].events:
                stream._offer(event)
            latest = self._jobs[job_id].latest
            if latest is not None and latest.get("final") is True:
                return stream  # replay ends the stream; no need to register
        self._streams.add(stream)
        return stream

    async def wait_final(self, job_id: str, timeout: float) -> dict[str, Any]:
        """Wait for the job's final event and return it.

        ``unknown`` is not final: this keeps waiting through reconciliation until the
        ``succeeded``/``failed`` that follows. If the job was never seen on ``events``
        (it ended before we subscribed) or the connection dropped meanwhile, the job's
        latest state is read with ``charge.get``. Raises ``TimeoutError``.
        """
        _check_id(job_id, "job_id")
        job = self._jobs.get(job_id)
        latest = job.latest if job else None
        if latest is not None and latest.get("final") is True:
            return latest
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._final_waiters.setdefault(job_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                if latest is None:
                    self._ingest_event(await self.get(job_id, timeout=timeout))
                return await fut
        finally:
            waiters = self._final_waiters.get(job_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._final_waiters.pop(job_id, None)

    async def _retained_value(self, name: str, timeout: float) -> dict[str, Any] | None:
        if not self._retained_seen[name].is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._retained_seen[name].wait()
            except TimeoutError:
                return None
        return self._retained.get(name)

    async def status(self, timeout: float = RETAINED_WAIT_S) -> dict[str, Any] | None:
        """The retained ``status`` (online, session, since, version) or None if none."""
        return await self._retained_value("status", timeout)

    async def state(self, timeout: float = RETAINED_WAIT_S) -> dict[str, Any] | None:
        """The retained ``state`` (job, screen, reader, display, athena, outbox) or None."""
        return await self._retained_value("state", timeout)

    # Last, so the name ``list`` means the builtin everywhere above.
    async def list(self, limit: int = 20, *, timeout: float = 10) -> builtins.list[dict[str, Any]]:
        """``charge.list``: the latest event of up to ``limit`` (1..100) jobs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("limit must be an int")
        reply = await self.command("charge.list", timeout, limit=limit)
        jobs = reply.get("jobs")
        if not isinstance(jobs, builtins.list):
            raise ClientError("charge.list reply without a 'jobs' list")
        return jobs


# ---------------------------------------------------------------- fleet


async def fleet(
    host: str = "127.0.0.1", port: int = 1883, *, username: str | None = None,
    password: str | None = None, tls: ssl.SSLContext | bool | None = None,
    protocol: int | str = 5, timeout: float = 2.0, settle: float | None = None,
    site: str | None = None,
) -> dict[str, dict[str, dict[str, Any] | None]]:
    """Every terminal on the broker: ``{terminal_id: {"status": ..., "state": ...}}``.

    Subscribes to ``lobbypay/v1/+/status`` and ``+/state`` and collects what arrives
    (the retained messages, plus any live update) for ``timeout`` seconds, or, with
    ``settle``, until no message has come for ``settle`` seconds (the broker sends the
    retained ones in one burst), ``timeout`` at most.

    ``site`` reads a central broker whose site bridges add a prefix
    (``<site>/lobbypay/v1/...``): ``"+"`` every site's terminals as well as unprefixed
    ones, a name only that site's. Prefixed terminals are keyed ``"<site>/<terminal_id>"``.
    """
    if site not in (None, "+"):
        site = _check_id(site, "site", _TERMINAL_ID_RE)
    patterns = []
    if site in (None, "+"):
        patterns.append(Topics.of("+"))
    if site is not None:
        patterns.append(Topics.of("+", site=site))
    found: dict[str, dict[str, dict[str, Any] | None]] = {}
    mqtt = aiomqtt.Client(
        host, port, username=username, password=password, protocol=_protocol(protocol),
        tls_context=_tls_context(tls), identifier=f"lobbypay-fleet-{uuid.uuid4().hex[:12]}",
        timeout=MQTT_OP_TIMEOUT_S, logger=log,
    )
    try:
        async with mqtt:
            for every in patterns:
                for topic in (every.status, every.state):
                    await mqtt.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(timeout):
                    messages = aiter(mqtt.messages)
                    while True:
                        try:
                            message = await asyncio.wait_for(anext(messages), settle)
                        except (TimeoutError, StopAsyncIteration):
                            break  # settled: nothing more came for `settle` seconds
                        # lobbypay/v1/<tid>/<name>, or <site>/lobbypay/v1/<tid>/<name>
                        parts = str(message.topic).split("/")
                        if len(parts) == 4:
                            key = parts[2]
                        elif len(parts) == 5 and site is not None:
                            key = f"{parts[0]}/{parts[3]}"
                        else:
                            continue
                        entry = found.setdefault(key, {"status": None, "state": None})
                        entry[parts[-1]] = _decode(message.payload)
            except TimeoutError:
                pass
    except aiomqtt.MqttError as exc:
        raise NotConnected(f"cannot read the fleet from {host}:{port}: {exc}") from None
    # A topic whose retained message was cleared leaves an entry with both None: drop it.
    return {tid: v for tid, v in found.items() if v["status"] is not None or v["state"] is not None}

