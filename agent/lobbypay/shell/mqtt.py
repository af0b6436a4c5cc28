"""The MQTT adapter: one long-lived link to the broker for one terminal (aiomqtt 2.5).

``MqttLink.run()`` keeps a session up until ``stop()``:

* connect (MQTT 5 or 3.1.1, username/password, TLS from ``MqttConfig``) with the last
  will = ``status`` offline (retained, QoS 1);
* subscribe ``lobbypay/v1/<tid>/cmd`` (QoS 1), and ``staff/cmd`` when ``staff`` is set
  (protocol 10), *before* announcing ``online``, so an app that reacts to ``online``
  cannot lose its first command; then publish ``status`` online and ``state`` (both
  retained);
* drain the outbox in id order: publish QoS 1, await the PUBACK, only then
  ``outbox_ack(id)`` (paho keeps in-flight QoS 1 messages in memory only, the disk
  outbox is ours; after a reconnect rows are simply sent again and consumers dedupe
  on ``(job_id, seq)``);
* serve commands: retained messages on ``cmd`` are ignored (protocol section 1); every
  other message goes to ``on_command`` in its own task (at most
  ``MAX_CONCURRENT_COMMANDS`` at once; ``CommandMeta.staff`` says which topic it came
  on) and the reply bytes are queued and published on ``reply``, or ``staff/reply`` for
  a staff command (and, MQTT 5, on the command's Response Topic with its Correlation
  Data).
  Queued replies survive reconnects (in memory), so a command answered while the broker
  was away is still answered once it is back.
* ``on_command`` belongs to the app: if it raises or hangs past ``command_timeout_s``
  the link answers ``internal_error`` itself. Nothing a message contains can stop the
  link.

Reconnects use full-jitter capped backoff (``uniform(0, min(cap, base * 2**n))``, reset
after a successful connect). Authentication and TLS/config failures wait the full cap
and are reported in ``last_error``. Sessions: once per process a short clean connection
drops the session a previous run left (commands queued while the agent was down are
stale: their apps have timed out); the real connection always resumes its session, so
QoS 1 commands sent during a network blip or a broker restart (with broker persistence)
are still delivered. MQTT 5 sessions expire ``SESSION_EXPIRY_S`` after a disconnect.

Why aiomqtt over raw paho: aiomqtt already drives paho's socket from the asyncio loop
(add_reader/add_writer, no paho thread) and turns PUBACK/SUBACK callbacks into awaitables;
what it lacks (reconnect policy, reply queue, outbox) is the part that is ours anyway.
We build a fresh ``aiomqtt.Client`` per connection attempt so no paho state (in-flight
messages, futures) leaks from a dead connection into the next one. Publishes go one level
under aiomqtt's ``publish`` where its internals are as expected (``_Publisher``,
``_Writer``): paho's ``publish`` in the caller's step, the PUBACK awaited in aiomqtt's own
table, the packet written at once or at the end of the loop turn (docs/PERFORMANCE.md).

This is the only module that imports aiomqtt/paho or catches ``aiomqtt.MqttError``.
Payloads are never logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import random
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from lobbypay.core.config import MqttConfig
from lobbypay.core.errors import Code
from lobbypay.core.protocol import Topics, error_reply, peek_envelope
from lobbypay.core.text import replace_unprintable
from lobbypay.failpoints import failpoint
from lobbypay.ports import Outbox
from lobbypay.shell import steptrace

log = logging.getLogger("lobbypay.mqtt")

#: Full-jitter backoff: first retries are quick (a broker restart takes ~1 s) ...
RECONNECT_BASE_S = 0.5
#: ... and never more than this apart, so a terminal is back within half a minute of
#: its broker. Auth/TLS failures wait exactly this long (they need a human anyway).
RECONNECT_CAP_S = 30.0
#: PUBACK/SUBACK wait. A LAN broker answers in milliseconds; a stall this long means the
#: connection is dead even if TCP has not noticed, so we drop it and reconnect.
OP_TIMEOUT_S = 15.0
#: The offline status on stop must not hold up shutdown (systemd's stop timeout is ~90 s,
#: the app gives the link 5 s).
STOP_PUBLISH_TIMEOUT_S = 3.0
#: MQTT 5 session kept by the broker after a drop: covers Wi-Fi blips and broker restarts;
#: older commands are stale (apps time out in seconds, charge.start carries expires_at).
SESSION_EXPIRY_S = 300
#: Commands run concurrently (a balance.get waiting on athena must not delay a ping);
#: beyond this the receive loop waits, which backs up into the broker's queue.
MAX_CONCURRENT_COMMANDS = 32
#: Guard on the app's handler: protocol allows athena reads up to athena.timeout_s (max
#: 120 s in config) for balance.get/charge.start; past this the link answers itself.
COMMAND_TIMEOUT_S = 150.0
#: Replies waiting for a connection. Apps retry after seconds; more than this queued
#: means the broker has been gone for long, so the oldest are dropped (and counted).
MAX_PENDING_REPLIES = 1000
#: Outbox rows read per batch (one SELECT per batch).
OUTBOX_BATCH = 50
#: Outbox rows published at once without waiting for the PUBACK of the one before (a
#: charge's events go out back to back instead of one round trip each; aiomqtt warns
#: above 10 publishes in flight).
OUTBOX_WINDOW = 8
#: A PUBACKed row is acknowledged in the journal this much later, with the others
#: PUBACKed meanwhile: one transaction for a charge's events, and none on the event loop
#: between a payment's answer and its outcome's commit and publish; shorter than
#: ``STATE_COALESCE_S``, so the ``state`` published after a step already counts the acks.
#: (A crash in between only sends those events once more.)
OUTBOX_ACK_DELAY_S = 0.01
#: When the outbox store itself fails (disk), retry after this long instead of
#: dropping the broker connection.
OUTBOX_RETRY_S = 5.0
#: How long a cancelled session task may take to end before it is cancelled again.
CANCEL_RETRY_S = 0.2
#: A Response Topic longer than this is not a real app's inbox.
MAX_RESPONSE_TOPIC_LEN = 256

#: A state change is published this long after it is signalled, so that the several
#: changes of one charge step (screen, job, outbox count) go out as one retained
#: ``state`` message and do not take turns with the step's reply and event on the loop.
STATE_COALESCE_S = 0.02
#: Job-state snapshots waiting for the state loop (one per job state change; a handful
#: per charge). Bounded so a long broker outage cannot grow it.
MAX_STATE_SNAPSHOTS = 64
#: No Nagle on the broker socket: every packet we write is small, and a reply or event
#: PUBLISH written right after a PUBACK would otherwise wait for the broker's delayed ACK
#: of that PUBACK (~40 ms on Linux) before it leaves (docs/PERFORMANCE.md).
_SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

#: MQTT 5 reason codes (and their 3.1.1 CONNACK equivalents 4, 5) for refused credentials.
_AUTH_REASON_CODES = {4, 5, 134, 135, 140}
#: "Unsupported protocol version" (paho also reports a 3.1.1 broker's CONNACK 1 to an
#: MQTT 5 CONNECT as 132): with ``mqtt.protocol = "auto"`` the link falls back to 3.1.1.
_PROTOCOL_REASON_CODES = {1, 132}


class LinkState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class CommandMeta:
    """What the link knows about a command message besides its payload."""

    topic: str
    mid: int
    qos: int
    response_topic: str | None = None
    correlation_data: bytes | None = None
    received_at: float = 0.0  # time.monotonic()
    #: arrived on ``staff/cmd`` (protocol 10); its reply goes to ``staff/reply``
    staff: bool = False


@dataclass(slots=True)
class LinkCounters:
    connects: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    disconnects: int = 0
    commands: int = 0
    retained_ignored: int = 0
    handler_errors: int = 0
    replies_sent: int = 0
    replies_dropped: int = 0
    response_topic_refused: int = 0
    outbox_sent: int = 0
    outbox_errors: int = 0
    state_published: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class _Reply:
    payload: bytes
    response_topic: str | None
    correlation_data: bytes | None
    topic: str  # reply or staff/reply


class _ConfigProblem(Exception):
    """TLS material unreadable: needs a human; wait the full backoff."""


OnCommand = Callable[[bytes, CommandMeta], Awaitable[bytes]]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _row_fields(row: Any) -> tuple[int, str, bytes, bool]:
    if hasattr(row, "topic"):
        return int(row.id), str(row.topic), bytes(row.payload), bool(row.retain)
    row_id, topic, payload, retain = row
    return int(row_id), str(topic), bytes(payload), bool(retain)


def _job_of(state: bytes) -> tuple[object, object] | None:
    """A ``state`` payload's job and job state (None when it cannot be read)."""
    try:
        obj = json.loads(state)
        return (obj.get("job_id"), obj.get("job_state"))
    except (ValueError, AttributeError):
        return None


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))  # noqa: S311


class MqttLink:
    """The agent's MQTT session; see the module docstring."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        terminal_id: str,
        status_payload: Callable[[bool], bytes],
        on_command: OnCommand,
        outbox: Outbox,
        state_payload: Callable[[], bytes],
        backoff_base_s: float = RECONNECT_BASE_S,
        backoff_cap_s: float = RECONNECT_CAP_S,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        op_timeout_s: float = OP_TIMEOUT_S,
        staff: bool = False,
    ) -> None:
        self._cfg = cfg
        self._tid = terminal_id
        self._status_payload = status_payload
        self._on_command = on_command
        self._outbox = outbox
        self._state_payload = state_payload
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._command_timeout_s = command_timeout_s
        self._op_timeout_s = op_timeout_s
        self.topics = topics = Topics.of(terminal_id)
        self.prefix = topics.prefix
        self.cmd_topic = topics.cmd
        self.reply_topic = topics.reply
        self.status_topic = topics.status
        self.state_topic = topics.state
        #: the staff topic pair (protocol 10), subscribed only when ``[staff] enabled``
        self.staff = staff
        self.staff_cmd_topic = topics.staff_cmd
        self.staff_reply_topic = topics.staff_reply
        self.client_id = cfg.client_id or f"lobbypay-{terminal_id}"
        self.counters = LinkCounters()
        self.state = LinkState.IDLE
        self.last_error: str | None = None
        #: "auto" (the default) speaks MQTT 5 until a broker refuses it, then 3.1.1
        self._v5 = cfg.protocol != "3.1.1"
        self._protocol_fallback = cfg.protocol == "auto"
        self._purged = False
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._outbox_wake = asyncio.Event()
        #: outbox rows PUBACKed, to be acknowledged in the journal (``_flush_acks``)
        self._acked_soon: list[int] = []
        self._ack_timer: asyncio.Task[None] | None = None
        #: rows may have been added since the drain last read the outbox
        self._new_rows = True
        self._outbox_wake_soon = False
        self._state_dirty = asyncio.Event()
        self._state_snapshots: collections.deque[bytes] = collections.deque(
            maxlen=MAX_STATE_SNAPSHOTS)
        self._reply_ready = asyncio.Event()
        self._replies: collections.deque[_Reply] = collections.deque()
        self._command_slots = asyncio.Semaphore(MAX_CONCURRENT_COMMANDS)
        self._commands: set[asyncio.Task[None]] = set()
        self._tls: ssl.SSLContext | None = None
        self._writers: weakref.WeakKeyDictionary[aiomqtt.Client, _Writer] = (
            weakref.WeakKeyDictionary())

    # ------------------------------------------------------------------ public

    @property
    def connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    def wake_outbox_now(self) -> None:
        """``wake_outbox`` without the turn's delay: the drain's step runs before anything
        the caller schedules after this call (a payment's outcome: the engine's log line
        and result screen follow its event, not the other way round)."""
        self._new_rows = True
        self._outbox_wake.set()

    def wake_outbox(self) -> None:
        """New outbox rows exist. Cheap, non-blocking; many calls coalesce into one drain.

        The drain is woken one loop turn later, not at once: the caller is usually the
        engine in the middle of a step, and what that step started in the same turn (the
        reply to ``charge.start``, the payment POST's task after ``submitting``) then goes
        first, with the outbox right behind it. The rows are already durable; only the
        order on the event loop changes (measured: docs/PERFORMANCE.md)."""
        if self._outbox_wake_soon:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running (a synchronous caller): wake at once
            self._new_rows = True
            self._outbox_wake.set()
            return
        self._outbox_wake_soon = True
        loop.call_soon(self._wake_outbox_now)

    def _wake_outbox_now(self) -> None:
        self._outbox_wake_soon = False
        self._new_rows = True
        self._outbox_wake.set()

    def publish_state(self, snapshot: bytes | None = None) -> None:
        """Republish the retained state soon; the payload is built at send time (latest wins).

        ``snapshot``: a state that must go out as it is, in order, even when later changes
        land before the link gets to it (the app passes one per job state change, so
        ``card_read`` and ``submitting`` are published however fast athena answers:
        protocol.md 8, "republished on every change")."""
        if snapshot is not None:
            self._state_snapshots.append(bytes(snapshot))
        self._state_dirty.set()

    async def flush_outbox(self, timeout_s: float) -> bool:
        """On a clean stop: give the outbox drain up to ``timeout_s`` to send what is
        pending. True when nothing is left; rows not sent stay on disk for the next start.
        (Polls briefly, only during the stop.)"""
        if not self.connected:
            return False
        self.wake_outbox()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if not await _maybe_await(self._outbox.outbox_pending(1)):
                    return True
            except Exception:  # noqa: BLE001 - the journal's trouble is logged elsewhere
                return False
            if time.monotonic() >= deadline or not self.connected:
                return False
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Publish ``online: false`` (retained), disconnect cleanly, and end ``run()``."""
        self._stop.set()
        if self._running:
            await self._stopped.wait()

    async def run(self) -> None:
        """Keep the session up until ``stop()`` (or cancellation)."""
        if self._running:
            raise RuntimeError("MqttLink.run() is already running")
        self._running = True
        self._stopped.clear()
        try:
            await self._connection_loop()
        finally:
            for task in list(self._commands):
                task.cancel()
            if self._commands:
                await asyncio.gather(*self._commands, return_exceptions=True)
            self.state = LinkState.STOPPED
            self._running = False
            self._stopped.set()

    # ------------------------------------------------------------------ connection loop

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.state = LinkState.CONNECTING
            delay: float | None = None
            try:
                if not self._purged:
                    await self._purge_session()
                client = await self._make_client()
                async with client:
                    attempt = 0
                    self.counters.connects += 1
                    self.last_error = None
                    log.info("mqtt connected to %s:%d", self._cfg.host, self._cfg.port)
                    await self._session(client)
                if self._stop.is_set():
                    return
            except _ConfigProblem as exc:
                self.counters.connect_failures += 1
                self.last_error = f"tls: {exc}"
                delay = self._backoff_cap_s
                log.error("mqtt TLS setup failed (%s); retrying in %.0f s", exc, delay)
            except aiomqtt.MqttError as exc:
                if self.state is LinkState.CONNECTED:
                    self.counters.disconnects += 1
                    log.warning("mqtt connection lost: %s", exc)
                    self.last_error = f"disconnected: {exc}"
                else:
                    self.counters.connect_failures += 1
                    self.last_error = f"connect: {exc}"
                    if self._v5 and self._protocol_fallback and _has_reason(
                            exc, _PROTOCOL_REASON_CODES):
                        self._v5 = False
                        delay = 0.0
                        log.warning("mqtt broker %s:%d does not speak MQTT 5; using 3.1.1",
                                    self._cfg.host, self._cfg.port)
                    elif _is_auth_error(exc):
                        self.counters.auth_failures += 1
                        delay = self._backoff_cap_s
                        self.last_error = f"auth: {exc}"
                        log.error("mqtt broker refused our credentials (%s); retrying in %.0f s",
                                  exc, delay)
                    else:
                        log.warning("mqtt connect to %s:%d failed: %s",
                                    self._cfg.host, self._cfg.port, exc)
            except Exception as exc:  # noqa: BLE001 - the link must outlive its own bugs
                self.counters.disconnects += 1
                self.last_error = f"internal: {type(exc).__name__}"
                log.exception("mqtt session failed unexpectedly")
            if self._stop.is_set():
                return
            self.state = LinkState.BACKOFF
            if delay is None:
                delay = backoff_delay(attempt, self._backoff_base_s, self._backoff_cap_s)
                attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _purge_session(self) -> None:
        """Once per process: drop whatever session the broker kept for our client id.

        Commands queued for a previous run of the agent are stale (their apps have given
        up). A clean-start session cannot simply be kept instead: mosquitto does not
        persist clean-started sessions across its own restart, so the real session
        below always resumes (clean_start/clean_session false) and this short
        connection (no will, session expiry 0) clears the old one first.
        """
        async with await self._make_client(purge=True):
            pass
        self._purged = True

    async def _make_client(self, *, purge: bool = False) -> aiomqtt.Client:
        cfg = self._cfg
        if cfg.tls and self._tls is None:
            try:
                self._tls = await asyncio.to_thread(_build_tls_context, cfg)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise _ConfigProblem(_short(exc)) from None
        kwargs: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0 if purge else SESSION_EXPIRY_S
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=purge,
                          properties=props)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=purge)
        if not purge:
            kwargs["will"] = aiomqtt.Will(
                self.status_topic, self._status_payload(False), qos=1, retain=True
            )
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=self.client_id,
            keepalive=cfg.keepalive_s,
            timeout=self._op_timeout_s,
            tls_context=self._tls,
            logger=logging.getLogger("lobbypay.mqtt.paho"),
            socket_options=_SOCKET_OPTIONS,
            **kwargs,
        )
        writer = _Writer.install(client)
        if writer is not None:
            self._writers[client] = writer
        return client

    # ------------------------------------------------------------------ one session

    async def _session(self, client: aiomqtt.Client) -> None:
        for topic in (self.cmd_topic, self.staff_cmd_topic) if self.staff else (self.cmd_topic,):
            if self._v5:
                # Retain As Published: a command retained while we are subscribed still
                # reaches us flagged, so it is ignored like one handed over on subscribe
                # (MQTT 3.1.1 brokers clear the flag on live delivery; there only the
                # latter is caught).
                await client.subscribe(topic, options=SubscribeOptions(
                    qos=1, retainAsPublished=True))
            else:
                await client.subscribe(topic, qos=1)
        await client.publish(self.status_topic, self._status_payload(True), qos=1, retain=True)
        self.state = LinkState.CONNECTED
        self._state_dirty.set()
        self._outbox_wake.set()
        pub = _Publisher(client, self._op_timeout_s, self._writers.get(client))
        loops = {
            asyncio.create_task(self._rx_loop(client), name="lobbypay.mqtt.rx_loop"),
            asyncio.create_task(self._reply_loop(pub), name="lobbypay.mqtt.reply_loop"),
            asyncio.create_task(self._state_loop(pub), name="lobbypay.mqtt.state_loop"),
            asyncio.create_task(self._outbox_loop(pub), name="lobbypay.mqtt.outbox_loop"),
        }
        stop_wait = asyncio.create_task(self._stop.wait(), name="lobbypay.mqtt.stop_wait")
        try:
            done, _ = await asyncio.wait(loops | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Cancelled without stop(): still tell the apps we are going.
            await self._cancel(loops | {stop_wait})
            with contextlib.suppress(Exception):
                await client.publish(self.status_topic, self._status_payload(False), qos=1,
                                     retain=True, timeout=STOP_PUBLISH_TIMEOUT_S)
            raise
        await self._cancel(loops | {stop_wait})
        for task in done:
            failure = None if task is stop_wait else task.exception()
            if failure is not None:
                raise failure
        # stop(): replies already computed go out first, then offline, then DISCONNECT.
        # Replies the broker does not acknowledge in time do not keep offline back.
        self.state = LinkState.STOPPING
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(STOP_PUBLISH_TIMEOUT_S):
                await self._flush_replies(pub)
        await client.publish(self.status_topic, self._status_payload(False), qos=1, retain=True,
                             timeout=STOP_PUBLISH_TIMEOUT_S)
        log.info("mqtt offline status published; disconnecting")

    @staticmethod
    async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
        """Cancel ``tasks`` and wait until every one has ended. A task can swallow a
        cancel (Python 3.11's ``asyncio.wait_for``, under aiomqtt's publish, returns the
        result when the PUBACK lands together with the cancel), so cancel again until
        it ends; a plain gather would wait for it forever."""
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_S)

    async def _rx_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.retain:
                self.counters.retained_ignored += 1
                log.warning("ignoring a retained message on %s (%d bytes); apps must not "
                            "retain commands", message.topic, len(message.payload or b""))
                continue
            if str(message.topic) not in (self.cmd_topic, self.staff_cmd_topic):
                continue  # nothing else is subscribed; a broker's stray delivery
            self.counters.commands += 1
            payload = message.payload if isinstance(message.payload, bytes) else b""
            meta = self._meta(message)
            await self._command_slots.acquire()
            task = asyncio.create_task(self._handle(payload, meta), name="lobbypay.mqtt.command")
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    def _meta(self, message: aiomqtt.Message) -> CommandMeta:
        response_topic: str | None = None
        correlation: bytes | None = None
        props = message.properties
        if props is not None:
            rt = getattr(props, "ResponseTopic", None)
            if isinstance(rt, str) and rt:
                response_topic = rt
            cd = getattr(props, "CorrelationData", None)
            if isinstance(cd, bytes | bytearray):
                correlation = bytes(cd)
        return CommandMeta(
            topic=str(message.topic), mid=message.mid, qos=message.qos,
            response_topic=response_topic, correlation_data=correlation,
            received_at=time.monotonic(),
            staff=self.staff and str(message.topic) == self.staff_cmd_topic,
        )

    async def _handle(self, payload: bytes, meta: CommandMeta) -> None:
        steptrace.mark("command.received")
        try:
            try:
                async with asyncio.timeout(self._command_timeout_s):
                    reply = await self._on_command(payload, meta)
                if not isinstance(reply, bytes | bytearray) or not reply:
                    raise TypeError(f"on_command returned {type(reply).__name__}, not bytes")
            except TimeoutError:
                self.counters.handler_errors += 1
                log.error("command handler did not answer within %.0f s", self._command_timeout_s)
                rid, command = peek_envelope(payload)
                reply = error_reply(rid, command, Code.INTERNAL_ERROR,
                                    "the agent did not finish this command in time")
            except Exception as exc:  # noqa: BLE001 - the app's handler; never kill the link
                self.counters.handler_errors += 1
                log.error("command handler failed: %s", type(exc).__name__, exc_info=exc)
                rid, command = peek_envelope(payload)
                reply = error_reply(rid, command, Code.INTERNAL_ERROR,
                                    "the agent failed to handle this command")
            topic = self.staff_reply_topic if meta.staff else self.reply_topic
            steptrace.mark("command.replied")
            self._queue_reply(_Reply(bytes(reply), meta.response_topic, meta.correlation_data,
                                     topic))
        finally:
            self._command_slots.release()

    def _queue_reply(self, reply: _Reply) -> None:
        if len(self._replies) >= MAX_PENDING_REPLIES:
            self._replies.popleft()
            self.counters.replies_dropped += 1
            log.warning("reply queue full; dropped the oldest unsent reply")
        self._replies.append(reply)
        self._reply_ready.set()

    async def _reply_loop(self, pub: _Publisher) -> None:
        while True:
            self._reply_ready.clear()
            await self._flush_replies(pub)
            await self._reply_ready.wait()

    async def _flush_replies(self, pub: _Publisher) -> None:
        while self._replies:
            reply = self._replies[0]
            await self._publish_reply(pub, reply)
            # only now: a reply whose publish failed stays first in line for the next session
            self._replies.popleft()
            self.counters.replies_sent += 1

    async def _publish_reply(self, pub: _Publisher, reply: _Reply) -> None:
        props: Properties | None = None
        if self._v5 and reply.correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = reply.correlation_data
        acks = [pub.publish(reply.topic, reply.payload, properties=props)]
        target = reply.response_topic
        if self._v5 and target is not None and target != reply.topic:
            if self._response_topic_ok(target):
                acks.append(pub.publish(target, reply.payload, properties=props))
            else:
                self.counters.response_topic_refused += 1
                log.warning("refusing a Response Topic (wildcards, $-topic, ours, or too long)")
        pub.flush()  # the app waits for it: on the socket now, not at the end of the turn
        await (acks[0] if len(acks) == 1 else asyncio.gather(*acks))

    def _response_topic_ok(self, topic: str) -> bool:
        return (
            len(topic.encode("utf-8", "replace")) <= MAX_RESPONSE_TOPIC_LEN
            and not any(ch in topic for ch in "+#\0")
            and not topic.startswith("$")
            and not topic.startswith(self.prefix + "/")
        )

    async def _state_loop(self, pub: _Publisher) -> None:
        # a new session starts from the current state: older snapshots are history
        self._state_snapshots.clear()
        last: bytes | None = None
        while True:
            self._state_dirty.clear()
            try:
                payload: bytes | None = self._state_payload()
            except Exception as exc:  # noqa: BLE001 - the app's callback
                log.error("state payload failed: %s", type(exc).__name__, exc_info=exc)
                payload = None
            while self._state_snapshots:
                snapshot = self._state_snapshots.popleft()
                if (not self._state_snapshots and payload is not None
                        and _job_of(snapshot) == _job_of(payload)):
                    break  # the current state is this job state, newer: it goes out instead
                if snapshot != last:
                    steptrace.mark("state.publish")
                    await pub.publish(self.state_topic, snapshot, retain=True)
                    self.counters.state_published += 1
                    last = snapshot
            if payload is not None and payload != last:
                steptrace.mark("state.publish")
                await pub.publish(self.state_topic, payload, retain=True)
                self.counters.state_published += 1
                last = payload
            await self._state_dirty.wait()
            # let the burst of changes one step makes land first: one state publish for
            # them, after the step's reply/event rather than in between
            await asyncio.sleep(STATE_COALESCE_S)

    async def _outbox_loop(self, pub: _Publisher) -> None:
        """Drain the outbox for this session: publish the pending rows in id order, up to
        ``OUTBOX_WINDOW`` in flight (paho writes them in that order and the broker keeps
        it: MQTT ordered topics); a row committed while others wait for their PUBACK goes
        out at once. A row is acknowledged only after its own PUBACK, in PUBACK order,
        ``OUTBOX_ACK_DELAY_S`` later together with the others PUBACKed meanwhile (one
        journal transaction, after the work that made the events); an ack the store
        refuses is kept and written later, not published again (``_flush_acks_now``).
        A failed publish ends the session: that row and the ones after it stay pending
        on disk."""
        flying: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._new_rows = True
        if self._acked_soon:  # PUBACKed in an earlier session; the store refused the ack
            await self._flush_acks()
        try:
            while True:
                self._outbox_wake.clear()
                try:
                    await self._drain_step(pub, flying)
                except aiomqtt.MqttError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a store failure must not drop the link
                    self.counters.outbox_errors += 1
                    log.error("outbox read/ack failed: %s; retrying in %.0f s",
                              type(exc).__name__, OUTBOX_RETRY_S, exc_info=exc)
                    await asyncio.sleep(OUTBOX_RETRY_S)
                    self._new_rows = True
                    self._outbox_wake.set()
                await self._outbox_wake.wait()
        finally:
            for _row_id, ack in flying:
                ack.cancel()
            if flying:
                await asyncio.gather(*(p for _r, p in flying), return_exceptions=True)
            # rows the broker has PUBACKed are acknowledged now, not sent again
            timer, self._ack_timer = self._ack_timer, None
            if timer is not None and not timer.done():
                timer.cancel()
            await self._flush_acks(retry=False)

    async def _drain_step(self, pub: _Publisher,
                          flying: collections.deque[tuple[int, asyncio.Future[None]]]) -> None:
        while flying and flying[0][1].done():
            row_id, ack = flying.popleft()
            ack.result()  # the PUBACK came back (or MqttError: the session is over)
            steptrace.mark("outbox.puback")
            failpoint("after_publish_before_ack")
            self.counters.outbox_sent += 1
            self._ack_soon(row_id)
        if not self._new_rows or len(flying) >= OUTBOX_WINDOW:
            return
        self._new_rows = False
        if len(self._acked_soon) >= OUTBOX_BATCH // 2:
            await self._flush_acks()
        rows = await _maybe_await(self._outbox.outbox_pending(OUTBOX_BATCH))
        busy = {r for r, _p in flying}.union(self._acked_soon)
        fresh = [f for f in map(_row_fields, rows) if f[0] not in busy]
        room = OUTBOX_WINDOW - len(flying)
        for row_id, topic, payload, retain in fresh[:room]:
            steptrace.mark("outbox.publish")
            ack = pub.publish(topic, payload, retain=retain)
            ack.add_done_callback(self._puback_wake)
            flying.append((row_id, ack))
        if fresh:
            pub.flush()  # an event: on the socket now, not at the end of the turn
        if len(fresh) > room or len(rows) >= OUTBOX_BATCH:
            self._new_rows = True  # more rows than the window: read again after a PUBACK

    def _puback_wake(self, _pub: asyncio.Future[None]) -> None:
        self._outbox_wake.set()

    def _ack_soon(self, row_id: int) -> None:
        self._acked_soon.append(row_id)
        if self._ack_timer is None or self._ack_timer.done():
            self._ack_timer = asyncio.get_running_loop().create_task(
                self._ack_later(), name="lobbypay.mqtt.outbox_ack")

    async def _ack_later(self, delay: float = OUTBOX_ACK_DELAY_S) -> None:
        await asyncio.sleep(delay)
        while not self._flush_acks_now():  # noqa: ASYNC110 - a retry's backoff: no event to wait on
            await asyncio.sleep(OUTBOX_RETRY_S)

    async def _flush_acks(self, *, retry: bool = True) -> None:
        """Acknowledge the PUBACKed rows in the outbox (see ``_flush_acks_now``); when the
        store refuses and ``retry``, try again ``OUTBOX_RETRY_S`` later."""
        if not self._flush_acks_now() and retry and (
                self._ack_timer is None or self._ack_timer.done()):
            self._ack_timer = asyncio.get_running_loop().create_task(
                self._ack_later(OUTBOX_RETRY_S), name="lobbypay.mqtt.outbox_ack")

    def _flush_acks_now(self) -> bool:
        """Acknowledge the PUBACKed rows in the outbox; False when the store refused
        (a full disk). The broker has those rows: they stay in ``_acked_soon``, so the
        drain does not publish them again in this session, and only a restart before
        the store takes the ack sends them again (consumers dedupe on ``(job_id, seq)``).
        Re-publishing them at once would send them about a hundred times a second for
        as long as the disk stays full."""
        ids, self._acked_soon = self._acked_soon, []
        if not ids:
            return True
        try:
            self._outbox.outbox_ack_many(ids)
        except Exception as exc:  # noqa: BLE001 - a store failure must not drop the link
            self.counters.outbox_errors += 1
            log.error("outbox ack failed: %s; trying again in %.0f s",
                      type(exc).__name__, OUTBOX_RETRY_S, exc_info=exc)
            self._acked_soon[:0] = ids  # oldest first, ahead of rows PUBACKed meanwhile
            return False
        return True


class _Writer:
    """Sends what paho queues (a PUBLISH, a PUBACK) at the end of the current loop turn,
    or at once (``flush``).

    aiomqtt hands every "paho has bytes to send" to the loop with
    ``call_soon_threadsafe(add_writer)`` (paho may call it from the connect thread):
    a write to the loop's self-pipe, its read, an epoll registration and removal, and
    two loop turns, before the packet leaves. On the loop's own thread the socket is
    simply written a turn later, everything queued in that turn together (each packet
    but the last with ``MSG_MORE`` on a plain TCP socket, so the broker is woken once).
    Only when the socket is full does aiomqtt's writer take over, as before. paho's
    internals are used only if they are there (paho-mqtt 2.x); otherwise ``install``
    changes nothing and returns None."""

    NEEDED = ("loop_write", "want_write", "_sock_send", "_out_packet", "_sock", "_userdata")

    def __init__(self, paho: Any, original: Callable[..., None]) -> None:
        self._paho = paho
        self._original = original
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._plain_send = paho._sock_send
        self._soon: asyncio.Handle | None = None
        paho._sock_send = self._send
        paho.on_socket_register_write = self._register_write

    @classmethod
    def install(cls, client: aiomqtt.Client) -> _Writer | None:
        paho = getattr(client, "_client", None)
        if paho is None or not all(hasattr(paho, name) for name in cls.NEEDED):
            return None
        original = paho.on_socket_register_write
        if original is None:
            return None
        return cls(paho, original)

    def flush(self) -> None:
        """Write what paho has queued now, not at the end of the turn (a final event)."""
        paho = self._paho
        if paho._out_packet and paho._sock is not None:
            if self._soon is not None:
                self._soon.cancel()
                self._soon = None
            self._flush(paho._userdata, paho._sock)

    def _send(self, buf: bytes | bytearray) -> int:
        paho = self._paho
        sock = paho._sock
        if paho._out_packet and type(sock) is socket.socket:
            try:
                return int(sock.send(buf, socket.MSG_MORE))
            except BlockingIOError:
                paho._call_socket_register_write()
                raise
        return int(self._plain_send(buf))

    def _flush(self, userdata: Any, sock: Any) -> None:
        self._soon = None
        paho = self._paho
        if paho._sock is not sock:  # the connection is gone meanwhile
            return
        try:
            paho.loop_write()
        except Exception:  # noqa: BLE001 - aiomqtt's writer reports a broken socket
            self._original(paho, userdata, sock)
            return
        if paho.want_write():  # the socket is full: wait for it to drain
            self._original(paho, userdata, sock)

    def _register_write(self, _paho: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() != self._loop_thread:
            self._original(_paho, userdata, sock)
            return
        self._soon = self._loop.call_soon(self._flush, userdata, sock)


class _Puback:
    """What aiomqtt's PUBACK callback sets (``_pending_publishes[mid].set()``)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class _Publisher:
    """QoS 1 publishes of one session, each handed to paho at once; its PUBACK is a future.

    ``aiomqtt.Client.publish`` is a coroutine: as a task it starts a loop turn later, and
    awaiting its PUBACK costs an ``asyncio.Event`` and a ``wait_for`` task per packet,
    some 20 a charge. Here paho's ``publish`` runs in the caller's step and the future is
    resolved by aiomqtt's own PUBACK callback, registered where ``publish`` registers it
    (``_pending_publishes``); no PUBACK within ``timeout_s`` fails it with ``MqttError``
    as aiomqtt does. The wire is the same. Where aiomqtt's internals are not as expected
    (another version, a limit on concurrent calls) it falls back to ``client.publish``."""

    def __init__(self, client: aiomqtt.Client, timeout_s: float,
                 writer: _Writer | None) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        paho = getattr(client, "_client", None)
        pending = getattr(client, "_pending_publishes", None)
        direct = (paho is not None and hasattr(paho, "publish") and isinstance(pending, dict)
                  and getattr(client, "_outgoing_calls_sem", None) is None)
        self._paho: Any = paho if direct else None
        self._pending: dict[int, Any] = pending if isinstance(pending, dict) and direct else {}

    @property
    def direct(self) -> bool:
        return self._paho is not None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                properties: Properties | None = None) -> asyncio.Future[None]:
        if self._paho is None:
            return asyncio.ensure_future(self._client.publish(
                topic, payload, qos=1, retain=retain, properties=properties))
        fut: asyncio.Future[None] = self._loop.create_future()
        try:
            info = self._paho.publish(topic, payload, 1, retain, properties)
        except Exception as exc:  # noqa: BLE001 - as client.publish would raise it
            fut.set_exception(exc)
            return fut
        if info.rc != MQTT_ERR_SUCCESS:
            fut.set_exception(aiomqtt.MqttCodeError(info.rc, "Could not publish message"))
            return fut
        if info.is_published():
            fut.set_result(None)
            return fut
        mid = info.mid
        if mid in self._pending:
            fut.set_exception(aiomqtt.MqttError(f"message id {mid} is already in flight"))
            return fut
        waiter = self._pending[mid] = _Puback(fut)
        timer = self._loop.call_later(self._timeout_s, _time_out, fut)

        def forget(_fut: asyncio.Future[None]) -> None:
            timer.cancel()
            if self._pending.get(mid) is waiter:
                del self._pending[mid]

        fut.add_done_callback(forget)
        return fut

    def flush(self) -> None:
        """Write the publishes queued so far now, not at the end of this loop turn."""
        if self._writer is not None:
            self._writer.flush()


def _time_out(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(aiomqtt.MqttError("Operation timed out"))


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho drops such a socket unclosed, which
    would hold a file descriptor until the garbage collector runs (one per retry)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _build_tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = _ClosingSSLSocket
    if cfg.certfile:
        ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    return ctx


def _is_auth_error(exc: BaseException) -> bool:
    return _has_reason(exc, _AUTH_REASON_CODES)


def _has_reason(exc: BaseException, codes: set[int]) -> bool:
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value in codes


def _short(exc: BaseException) -> str:
    return replace_unprintable(f"{type(exc).__name__}: {exc}"[:200])
