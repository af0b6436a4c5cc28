"""The composition root: build every adapter from the config and run them in one TaskGroup.

This is the only module that knows every concrete class. Order at start-up:

1. logging, the journal (session counter +1), the athena client, the reader and display
   drivers, the engine;
2. ``engine.start()``: crash recovery from the journal (jobs left ``submitting`` become
   ``unknown`` and are reconciled; jobs left ``pending`` end ``expired``);
3. one TaskGroup runs the MQTT link, the reader, the display writer, the watchdog;
4. READY=1 to systemd.

SIGTERM/SIGINT set the stop event: a payment POST in flight may finish (bounded), the
outbox gets a moment to send its result, the MQTT link publishes ``online: false``
itself, the tasks are cancelled, the journal is closed, and ``run_agent`` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import assert_never

from lobbypay_hw import DISPLAYS, READERS

from lobbypay import __version__, ports
from lobbypay.core import protocol
from lobbypay.core.athena import AthenaBadResponse, AthenaError
from lobbypay.core.balance import BalancePayloadError, department_info
from lobbypay.core.commands import (
    BalanceGet,
    ChargeCancel,
    ChargeGet,
    ChargeList,
    ChargeStart,
    ChargeVoid,
    Command,
    Ping,
    ReceiptEmail,
)
from lobbypay.core.config import Config, ConfigError
from lobbypay.core.errors import Code, DomainError
from lobbypay.engine import Engine
from lobbypay.shell.athena import AthenaClient
from lobbypay.shell.clock import SystemClock
from lobbypay.shell.journal import Journal, JournalError
from lobbypay.shell.logsafe import install_crash_hooks, setup_logging
from lobbypay.shell.mqtt import CommandMeta, MqttLink
from lobbypay.shell.notify import Notifier
from lobbypay.shell.timesync import clock_synchronized

log = logging.getLogger("lobbypay.app")
#: linux/prctl.h
PR_SET_DUMPABLE = 4

#: How many recent request_ids keep their reply in memory for QoS 1 redeliveries. A
#: redelivery comes within seconds; charge.start / charge.cancel replies are also kept
#: in the journal, so they survive a restart.
REPLY_CACHE_SIZE = 2048
#: The replies to reads (ping, balance.get, charge.get, charge.list: a state object or a
#: list of jobs, up to several kB each) are also bounded by their bytes, so a burst of
#: status polls does not hold megabytes (2,048 of them were 2 MB); 64 KiB is the last
#: hundred pings or so, seconds of a burst and minutes of a lobby's pace. Replies to
#: commands that change something are not: they are small, and answering one again
#: matters.
REPLY_CACHE_READ_BYTES = 64 * 1024
#: The commands that change nothing: answering a redelivery again runs the read again.
READ_ONLY_COMMANDS = frozenset({"ping", "balance.get", "charge.get", "charge.list"})
#: On stop, a payment POST in flight gets athena.timeout_s plus this to finish ...
POST_GRACE_S = 2.0
#: ... but never more than this, to stay inside the unit's TimeoutStopSec=30 with room
#: for the offline status and the journal close.
STOP_GRACE_MAX_S = 22.0
#: On stop, how long the outbox may take to send what is left (the rest waits on disk).
OUTBOX_FLUSH_ON_STOP_S = 2.0


def sim_reader_socket(cfg: Config) -> str:
    """Where the sim reader listens when reader.path is not set."""
    return cfg.reader.path or os.path.join(cfg.terminal.state_dir, "sim-reader.sock")


class StateTrackingOutbox:
    """The journal's outbox as the MQTT link drains it, plus one duty: the ``state``
    object carries ``outbox`` (events not yet acknowledged), so every ack changes the
    state and must republish it (``on_change``; the link coalesces bursts)."""

    def __init__(self, journal: ports.Outbox, on_change: Callable[[], None]) -> None:
        self._journal = journal
        self._on_change = on_change

    def outbox_pending(self, limit: int) -> Sequence[ports.OutboxRow]:
        return self._journal.outbox_pending(limit)

    def outbox_ack(self, row_id: int) -> None:
        self._journal.outbox_ack(row_id)
        self._on_change()

    def outbox_ack_many(self, row_ids: Sequence[int]) -> None:
        self._journal.outbox_ack_many(row_ids)
        self._on_change()


#: Retry spacing for the start-up read of GET /departments (informational only).
DEPARTMENT_PROBE_RETRY_S = (5.0, 30.0, 300.0)


async def department_probe_loop(athena: ports.Athena, engine: Engine,
                                department_id: str) -> None:
    """Read the terminal department's provider group once, to log whether the practice is
    enterprise and so the engine can log a mismatch with the balance groups. Charges never
    wait for it: athena's balance groups decide what is collectible."""
    attempt = 0
    while True:
        try:
            info = department_info(await athena.get_departments(), department_id)
        except (AthenaError, BalancePayloadError) as exc:
            delay = DEPARTMENT_PROBE_RETRY_S[min(attempt, len(DEPARTMENT_PROBE_RETRY_S) - 1)]
            attempt += 1
            # state.athena.last_error tells apps and `lobbypay status` at once (a wrong
            # secret: "credentials refused"), not only when the first patient is charged
            engine.athena_check_failed(exc if isinstance(exc, AthenaError) else
                                       AthenaBadResponse(f"departments: {exc}"))
            log.warning("could not read athena departments (%s); again in %.0f s",
                        type(exc).__name__, delay)
            await asyncio.sleep(delay)
            continue
        engine.department = info
        engine.athena_check_ok()
        if not info.found:
            log.warning("department %s is not in athena's department list: check "
                        "terminal.department_id", department_id)
        else:
            log.info("department %s: provider group %s, %s practice", department_id,
                     info.provider_group_id or "(blank)",
                     "enterprise" if info.enterprise else "non-enterprise")
        return


def status_line(state: protocol.TerminalState, broker_connected: bool) -> str:
    """One line for `systemctl status` (sd_notify STATUS=): job, reader, broker."""
    job = "idle" if state.get("job_id") is None else f"job {state['job_id']} {state['job_state']}"
    reader = ("reader ok" if state.get("reader", {}).get("connected")
              else "reader DISCONNECTED")
    broker = "broker ok" if broker_connected else "broker DISCONNECTED"
    outbox = state.get("outbox") or 0
    tail = f", {outbox} event(s) waiting" if outbox else ""
    return f"{job}; {reader}; {broker}{tail}"


class Dispatcher:
    """Decodes commands, answers redeliveries from a cache, and routes to the engine."""

    def __init__(self, engine: Engine, journal: ports.Journal) -> None:
        self.engine = engine
        self.journal = journal
        # request_id -> the reply (a future while the command runs), oldest first; reads
        # in their own cache, bounded by bytes too (REPLY_CACHE_READ_BYTES)
        self._replies: OrderedDict[str, asyncio.Future[bytes] | bytes] = OrderedDict()
        self._reads: OrderedDict[str, asyncio.Future[bytes] | bytes] = OrderedDict()
        self._read_bytes = 0

    def _cached(self, request_id: str) -> asyncio.Future[bytes] | bytes | None:
        for cache in (self._replies, self._reads):
            entry = cache.get(request_id)
            if entry is not None:
                cache.move_to_end(request_id)
                return entry
        return None

    def _keep(self, request_id: str, reply: bytes, read: bool) -> None:
        """The command's reply in place of its future (a future costs more than most
        replies), then the reads' byte bound."""
        (self._reads if read else self._replies)[request_id] = reply
        if read:
            self._read_bytes += len(reply)
            while self._read_bytes > REPLY_CACHE_READ_BYTES and len(self._reads) > 1:
                self._evict_read()

    def _evict_read(self) -> None:
        _, old = self._reads.popitem(last=False)
        if isinstance(old, bytes):
            self._read_bytes -= len(old)

    async def handle(self, payload: bytes, *, staff: bool = False) -> bytes:
        """Answer one command. ``staff``: it came on ``staff/cmd`` (protocol 10), the only
        topic that takes ``charge.void``; on ``cmd`` that is ``forbidden`` and changes
        nothing (checked before the redelivery cache, so no staff reply leaks to ``cmd``)."""
        try:
            cmd = protocol.decode_command(payload, staff=staff)
        except protocol.ProtocolError as exc:
            return protocol.error_reply(exc.request_id, exc.command, exc.code, exc.message)
        entry = self._cached(cmd.request_id)
        if isinstance(entry, bytes):
            return entry
        if entry is not None:
            return await asyncio.shield(entry)
        stored = self.journal.get_reply(cmd.request_id)
        if stored is not None:
            return stored
        read = cmd.type in READ_ONLY_COMMANDS
        cache = self._reads if read else self._replies
        fut = asyncio.get_running_loop().create_future()
        cache[cmd.request_id] = fut
        while len(cache) > REPLY_CACHE_SIZE:
            if read:
                self._evict_read()
            else:
                cache.popitem(last=False)
        try:
            reply = await self._route(cmd)
        except BaseException as exc:
            # Cancelled or crashed: answer nothing from the cache for this id next time.
            if cache.get(cmd.request_id) is fut:
                del cache[cmd.request_id]
            if not fut.done():
                fut.cancel()
            if isinstance(exc, Exception):
                log.exception("command %s failed inside the agent", cmd.type)
                return protocol.error_reply(
                    cmd.request_id, cmd.type, Code.INTERNAL_ERROR,
                    "the agent failed to process this command; nothing was changed",
                )
            raise
        fut.set_result(reply)
        if cache.get(cmd.request_id) is fut:
            self._keep(cmd.request_id, reply, read)
        if isinstance(cmd, ChargeStart | ChargeCancel):
            try:
                self.journal.put_reply(cmd.request_id, reply)
            except JournalError as exc:
                # The reply still goes out: it tells the truth about the job, which is on
                # disk already. A redelivery after a restart is answered from the job
                # itself by the job_id rule (same body: its current state).
                log.warning("could not keep the reply to %s for redeliveries (%s)",
                            cmd.type, exc)
        return reply

    async def _route(self, cmd: Command) -> bytes:
        e = self.engine
        fields: ports.JsonObject
        try:
            match cmd:
                case Ping():
                    fields = {"state": e.state()}
                case BalanceGet():
                    fields = await e.balance_get(cmd)
                case ChargeStart():
                    fields = await e.charge_start(cmd)
                case ChargeCancel():
                    fields = e.charge_cancel(cmd)
                case ChargeGet():
                    fields = e.charge_get(cmd)
                case ChargeList():
                    fields = e.charge_list(cmd)
                case ChargeVoid():
                    fields = await e.charge_void(cmd)
                case ReceiptEmail():
                    fields = await e.receipt_email(cmd)
                case _:  # pragma: no cover - decode_command only builds these
                    assert_never(cmd)
        except DomainError as exc:
            return protocol.error_reply(
                cmd.request_id, cmd.type, exc.code, exc.message, **exc.extra
            )
        return protocol.encode_reply(cmd.request_id, cmd.type, True, **fields)


def not_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``: no core file, and no other process of the same user
    may ptrace this one or read its memory through /proc/<pid>/mem. True when set."""
    try:
        # the process's own symbols, libc among them (ctypes.util.find_library runs
        # ldconfig in a child process and costs an import)
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        log.warning("could not make the process non-dumpable")
        return False


def no_core_dumps() -> bool:
    """Make sure this process never writes a core file (it holds swiped tracks in memory).

    The systemd unit already sets ``LimitCORE=0``; this covers a run outside the unit
    (a container, a shell). When the limit is already 0 nothing is called, so the unit's
    ``SystemCallFilter=~@resources`` never sees a setrlimit. Returns True when the limit
    is 0 afterwards."""
    not_dumpable()
    try:
        if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    except (OSError, ValueError) as exc:
        log.warning("could not turn core dumps off (%s); rely on LimitCORE=0",
                    type(exc).__name__)
        return False


async def run_agent(cfg: Config, *, stop: asyncio.Event | None = None,
                    notifier: Notifier | None = None) -> int:
    """Run the agent until ``stop`` is set (or SIGTERM/SIGINT). Returns the exit code."""
    setup_logging(cfg.logging.level, cfg.logging.format)
    install_crash_hooks()
    no_core_dumps()
    notifier = notifier or Notifier()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    clock = SystemClock()
    t = cfg.terminal
    try:
        os.makedirs(t.state_dir, mode=0o700, exist_ok=True)
        journal = Journal(t.state_dir)
    except (OSError, JournalError) as exc:
        # a state_dir that cannot be made or used is a config error (protocol.md 9)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("terminal.state_dir", f"cannot use {t.state_dir}: {reason}") from None
    session = journal.next_session()
    started_at = clock.now()
    a = cfg.athena
    if a.client_secret is None:  # load_config reads it; a caller that skipped it is wrong
        raise ConfigError("athena.client_secret_file", "the secret was not loaded")
    athena = AthenaClient(
        a.base_url, a.practice_id, a.client_id, a.client_secret,
        timeout_s=a.timeout_s, rate_limit_rps=a.rate_limit_rps, scope=a.token_scope,
    )
    if os.environ.get("LOBBYPAY_TEST_MODE") == "1" and os.environ.get("LOBBYPAY_NO_WARM") == "1":
        # scripts/bench: the payment POST opens its connection after the swipe, as before
        # the warm line, for the with/without comparison (docs/PERFORMANCE.md)
        athena.warm_payments = False
    r, d = cfg.reader, cfg.display
    reader = READERS[r.driver](
        path=sim_reader_socket(cfg) if r.driver == "sim" else r.path,
        baudrate=r.baudrate, grab=r.grab,
    )
    try:
        display = DISPLAYS[d.driver](path=d.path, baudrate=d.baudrate, rows=d.rows,
                                     cols=d.cols, **d.options)
    except ValueError as exc:  # found only when building: a font file, a missing extra
        raise ConfigError("display", str(exc)) from None
    topics = protocol.Topics.of(t.id)

    link: MqttLink | None = None

    def wake_outbox() -> None:
        if link is not None:
            link.wake_outbox()

    def wake_outbox_now() -> None:
        if link is not None:
            link.wake_outbox_now()

    last_status = ""
    last_job: tuple[object, object] | None = None

    def state_changed() -> None:
        nonlocal last_status, last_job
        state = engine.state()
        job = (state["job_id"], state["job_state"])
        if link is not None:
            # every job state goes out as its own retained state (a fast POST would
            # otherwise coalesce card_read and submitting away); other changes coalesce
            link.publish_state(protocol.encode_json(state) if job != last_job else None)
        last_job = job
        line = status_line(state, link.connected if link is not None else False)
        if line != last_status:
            last_status = line
            notifier.status(line)

    engine = Engine(
        terminal_id=t.id, department_id=t.department_id, max_charge=t.max_charge,
        reconcile_settle_s=a.reconcile_settle_s, athena_timeout_s=a.timeout_s,
        athena=athena, journal=journal, display=display, reader=reader, clock=clock,
        outbox_wakeup=wake_outbox, outbox_wakeup_now=wake_outbox_now,
        on_state_change=state_changed,
        events_topic=topics.events, language=t.language,
        server_clock=athena.server_clock, clock_synced=clock_synchronized,
    )
    dispatcher = Dispatcher(engine, journal)

    def status_payload(online: bool) -> bytes:
        return protocol.encode_json(protocol.status_object(
            online, session=session, since=started_at, version=__version__))

    def state_payload() -> bytes:
        return protocol.encode_json(engine.state())

    async def on_command(payload: bytes, meta: CommandMeta) -> bytes:
        return await dispatcher.handle(payload, staff=meta.staff)

    link = MqttLink(
        cfg.mqtt, terminal_id=t.id, status_payload=status_payload, on_command=on_command,
        outbox=StateTrackingOutbox(journal, state_changed), state_payload=state_payload,
        staff=cfg.staff.enabled,
    )

    log.info("lobbypay %s starting: terminal %s, session %d, reader %s, display %s",
             __version__, t.id, session, r.driver, d.driver)
    try:
        await engine.start()
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(link.run(), name="lobbypay.mqtt.run"),
                tg.create_task(reader.run(engine.on_reader_event), name="lobbypay.reader.run"),
                tg.create_task(display.run(), name="lobbypay.display.run"),
                tg.create_task(notifier.watchdog_loop(), name="lobbypay.notify.watchdog_loop"),
                tg.create_task(department_probe_loop(athena, engine, t.department_id),
                               name="lobbypay.athena.department_probe_loop"),
            ]
            notifier.ready(f"terminal {t.id} session {session}")
            await stop.wait()
            log.info("stopping")
            notifier.stopping()
            # within systemd's TimeoutStopSec (30 s): a POST in flight ends on its own
            # terms (athena.timeout_s), so its result is journaled and, if the broker is
            # up, published before we go offline
            if not await engine.wait_submissions(min(a.timeout_s + POST_GRACE_S, STOP_GRACE_MAX_S)):
                log.warning("a payment request was still in flight at stop: it will be "
                            "reconciled from athena's receipts at the next start")
            await link.flush_outbox(OUTBOX_FLUSH_ON_STOP_S)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await link.stop()
            for task in tasks:
                task.cancel()
    finally:
        await engine.aclose()
        await athena.aclose()
        journal.close()
    log.info("stopped")
    return 0

