"""``lobbypay demo``: the whole system on loopback, one process tree, nothing faked inside.

Parts, each its own process, all on 127.0.0.1:

* the athena simulator (``python -m lobbypay.sim.athena --port 0``);
* an MQTT broker: mosquitto on a free port with a temporary config;
* the real agent, ``lobbypay run --config <temporary config>``, with the ``sim`` reader
  (a Unix socket) and the ``console`` display (its output, with its logs, goes to
  ``agent.log`` in the work directory);
* in this process, a check-in app built on ``lobbypay.client``, plus a monitor that
  subscribes to the terminal's ``state`` and ``events`` topics and prints every screen
  and every event as a check-in app would see them.

A swipe is a real swipe into the agent: the test card's track text is written to the sim
reader's socket (``lobbypay_hw.reader_sim.send_swipe``), where the same framing and
parsing as a serial reader's run. The athena call is shown from the simulator's
``/_sim/calls`` record, in which track data exists only as a keyed digest and last 4.

Scripted (default): balance, charge (copay + a clean claim), swipe, events, the athena
call, the balance afterwards, the receipt emailed to the patient, and the front desk
voiding the payment on the staff topic (protocol 10); exits 0 when the charge succeeded
and both follow-ups were done. ``--interactive``: a
prompt (``help`` lists the commands). Ctrl-C or SIGTERM at any point stops every child
(agent first, so it can say ``online: false``) and removes the temporary directory; each
child also gets SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lobbypay.cli import (
    EXIT_FAIL,
    EXIT_OK,
    TEST_CARDS,
    Style,
    balance_tables,
    event_line,
    table,
)

TERMINAL_ID = "demo-lobby"
DEMO_PATIENT = "60178"
DEMO_APPOINTMENT = "1001"
DEMO_COPAY = "25.00"
DEMO_CLAIM = ("5569", "40.00")
#: Where the scripted demo has athena email the receipt (the simulator sends nothing).
DEMO_EMAIL = "patient@example.com"
#: Each child gets this long to come up (Python start-up on a Pi 3 is ~2 s).
START_TIMEOUT_S = 30.0
#: ...and this long to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: How long the scripted demo waits for the charge's final event.
FINAL_TIMEOUT_S = 60.0
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
PR_SET_PDEATHSIG = 1


class DemoError(Exception):
    """A part of the demo could not start; the message says what to do."""


def _pdeathsig() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM if this process dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def child_env() -> dict[str, str]:
    """The environment for the children: this lobbypay importable, no systemd variables."""
    import lobbypay_hw

    import lobbypay

    env = dict(os.environ)
    roots = [str(Path(lobbypay.__file__).resolve().parents[1]),
             str(Path(lobbypay_hw.__file__).resolve().parents[1])]
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*roots, *([old] if old else [])]))
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"):
        env.pop(name, None)
    return env


class Parts:
    """The child processes and the work directory; ``close()`` undoes everything."""

    def __init__(self, workdir: str | None) -> None:
        if workdir:
            self.dir = Path(workdir).resolve()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._remove_dir = False
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="lobbypay-demo-"))
            self._remove_dir = True
        os.chmod(self.dir, 0o700)
        self.env = child_env()
        self._preexec = _pdeathsig()
        self.sim: subprocess.Popen[bytes] | None = None
        self.broker: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.athena: dict[str, str] = {}
        self.broker_port = 0
        self.config_path = self.dir / "lobbypay.toml"
        self.swipe_socket = str(self.dir / "swipe.sock")
        self.agent_log = self.dir / "agent.log"

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        # Own session: a Ctrl-C in the terminal reaches only us, and we stop the children
        # in order. PDEATHSIG covers the case where we are killed outright.
        return subprocess.Popen(  # noqa: S603 - fixed programs, arguments built here
            argv, env=self.env, start_new_session=True, preexec_fn=self._preexec,
            stdin=subprocess.DEVNULL, **kw)

    # -- athena simulator

    def start_sim(self) -> dict[str, str]:
        err = open(self.dir / "athena-sim.log", "wb")  # noqa: SIM115 - closed below
        with err:
            self.sim = self._spawn([sys.executable, "-m", "lobbypay.sim.athena", "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=err)
        if self.sim.stdout is None:  # pragma: no cover - stdout=PIPE above
            raise DemoError("no pipe to the athena simulator")
        ready, _, _ = select.select([self.sim.stdout], [], [], START_TIMEOUT_S)
        line = self.sim.stdout.readline() if ready else b""
        self.sim.stdout.close()
        if not line:
            raise DemoError("the athena simulator did not start:\n"
                            + (self.dir / "athena-sim.log").read_text(errors="replace")[-2000:])
        self.athena = json.loads(line)
        return self.athena

    # -- broker

    def start_broker(self) -> int:
        binary = find_mosquitto()
        if binary is None:
            raise DemoError(
                "mosquitto (the MQTT broker) is not installed. Run ./scripts/demo, which "
                "installs it, or: sudo apt-get install mosquitto")
        last = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = _free_port()
            conf = self.dir / "mosquitto.conf"
            log = self.dir / "mosquitto.log"
            conf.write_text("\n".join([
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                "set_tcp_nodelay true",
                f"log_dest file {log}",
                # Running as root, mosquitto would switch to user "mosquitto", who cannot
                # write into our 0700 directory: stay who we are.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
            ]) + "\n")
            self.broker = self._spawn([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.broker.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        self.broker_port = port
                        return port
                except OSError:
                    time.sleep(0.02)
            with contextlib.suppress(OSError):
                last = log.read_text(errors="replace")[-1000:]
            self._stop(self.broker)
            self.broker = None
        raise DemoError(f"mosquitto did not start:\n{last}")

    # -- agent

    def write_agent_config(self) -> Path:
        secret = self.dir / "athena-client-secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.athena["client_secret"] + "\n")
        self.config_path.write_text(f"""\
# Written by `lobbypay demo`: every part on loopback.
[terminal]
id = "{TERMINAL_ID}"
department_id = "1"
state_dir = "{self.dir / 'state'}"
max_charge = "5000.00"

[athena]
base_url = "{self.athena['base_url']}"
practice_id = "{self.athena['practice_id']}"
client_id = "{self.athena['client_id']}"
client_secret_file = "{secret}"
timeout_s = 10
reconcile_settle_s = 5

[mqtt]
host = "127.0.0.1"
port = {self.broker_port}

[reader]
driver = "sim"
path = "{self.swipe_socket}"

[display]
driver = "console"
cols = 16
rows = 2

[staff]
enabled = true

[logging]
level = "info"
format = "text"
""")
        return self.config_path

    def start_agent(self) -> subprocess.Popen[bytes]:
        self.write_agent_config()
        with open(self.agent_log, "wb") as out:
            self.agent = self._spawn(
                [sys.executable, "-m", "lobbypay", "run", "--config", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT)
        return self.agent

    def agent_log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.agent_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- teardown

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None) -> int | None:
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def pids(self) -> list[int]:
        return [p.pid for p in (self.sim, self.broker, self.agent) if p is not None]

    def close(self) -> int | None:
        """Stop the agent (it publishes online:false), then the broker and the simulator.

        Returns the agent's exit code (0 after a clean stop).
        """
        # Signals during teardown would leave children behind: hold them off.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            agent_rc = self._stop(self.agent)
            self._stop(self.broker)
            self._stop(self.sim)
            if self._remove_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return agent_rc


# ---------------------------------------------------------------- the app side


class Printer:
    """All of the demo's output. In the interactive demo, output that arrives while the
    prompt waits for input (a screen change, an event after the athena call, a job
    expiring) is written above the prompt, which is then drawn again: the prompt stays the
    last line."""

    PROMPT = "lobbypay> "

    def __init__(self, style: Style, stream: TextIO | None = None) -> None:
        self.st = style
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)
        self._tty = bool(isatty())
        self.prompt_open = False
        #: time.monotonic() of the last output (to let a command's output settle).
        self.last_output = 0.0

    def _emit(self, text: str) -> None:
        reopen = self.prompt_open
        if reopen:
            # Take the waiting prompt off its line (a terminal), or end that line (a pipe).
            self.stream.write("\r\033[K" if self._tty else "\n")
            self.prompt_open = False
        self.stream.write(text + "\n")
        self.last_output = time.monotonic()
        if reopen:
            self.prompt()
        else:
            self.stream.flush()

    def prompt(self) -> None:
        self.stream.write(self.st("bold", self.PROMPT))
        self.stream.flush()
        self.prompt_open = True

    def answered(self, text: str) -> None:
        """The user entered ``text`` at the prompt. A terminal echoed it; a pipe did not,
        so write it after the prompt, and the transcript reads like a session."""
        self.prompt_open = False
        if not self._tty:
            self.stream.write(text.rstrip("\r\n") + "\n")
            self.stream.flush()

    def heading(self, text: str) -> None:
        self._emit(f"\n{self.st('bold+blue', '== ' + text)}")

    def line(self, text: str = "") -> None:
        self._emit(text)

    def screen(self, lines: list[str], job_state: str) -> None:
        width = max((len(x) for x in lines), default=16)
        label = self.st("cyan", "screen")
        edge = "+" + "-" * width + "+"
        out = [f"  {label}  {edge}   {self.st('dim', job_state)}"]
        out += [f"          |{x.ljust(width)}|" for x in lines]
        out.append(f"          {edge}")
        self._emit("\n".join(out))

    def event(self, ev: dict[str, Any]) -> None:
        self._emit(f"  {self.st('cyan', 'event')} " + event_line(ev, self.st).lstrip())

    async def settle(self, quiet_s: float = 0.3, at_most_s: float = 3.0) -> None:
        """Wait until nothing was printed for ``quiet_s`` (at most ``at_most_s``), so the
        output a command causes comes before the next prompt."""
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self.last_output >= quiet_s or now - start >= at_most_s:
                return
            await asyncio.sleep(min(0.05, quiet_s))


class Monitor:
    """Subscribes to the terminal's ``state`` and ``events`` topics and prints every
    new screen and every event (each (job_id, seq) once), in the broker's order."""

    def __init__(self, port: int, printer: Printer) -> None:
        self.port = port
        self.printer = printer
        self.state: dict[str, Any] = {}
        self.finals: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, int]] = set()
        self._last_screen: tuple[str, ...] | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Monitor:
        self._task = asyncio.create_task(self._run(), name="lobbypay.demo.monitor")
        async with asyncio.timeout(START_TIMEOUT_S):
            await self._ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import aiomqtt

        prefix = f"lobbypay/v1/{TERMINAL_ID}"
        async with aiomqtt.Client("127.0.0.1", self.port,
                                  identifier=f"lobbypay-demo-monitor-{uuid.uuid4().hex[:8]}") as c:
            await c.subscribe(f"{prefix}/state", qos=1)
            await c.subscribe(f"{prefix}/events", qos=1)
            self._ready.set()
            async for msg in c.messages:
                try:
                    obj = json.loads(bytes(msg.payload))  # type: ignore[arg-type,unused-ignore]
                except (TypeError, ValueError):
                    continue
                if not isinstance(obj, dict):
                    continue
                async with self._changed:
                    if str(msg.topic).endswith("/state"):
                        self._on_state(obj)
                    else:
                        self._on_event(obj)
                    self._changed.notify_all()

    def _on_state(self, state: dict[str, Any]) -> None:
        self.state = state
        screen = tuple(str(x) for x in state.get("screen") or [])
        if screen and screen != self._last_screen:
            self._last_screen = screen
            self.printer.screen(list(screen), str(state.get("job_state")))

    def _on_event(self, ev: dict[str, Any]) -> None:
        key = (str(ev.get("job_id")), int(ev.get("seq") or 0))
        if key in self._seen:
            return
        self._seen.add(key)
        self.printer.event(ev)
        if ev.get("final"):
            self.finals[key[0]] = ev

    async def wait_for(self, pred: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(pred)


async def _wait_online(term: Any, parts: Parts) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if parts.agent is not None and parts.agent.poll() is not None:
            raise DemoError("the agent exited at start:\n" + parts.agent_log_tail())
        status = await term.status(timeout=0.5)
        if status and status.get("online"):
            return dict(status)
        await asyncio.sleep(0.1)
    raise DemoError("the agent did not come online:\n" + parts.agent_log_tail())


async def _athena_calls(base_url: str) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(base_url + "/_sim/calls")
        resp.raise_for_status()
        data = resp.json()
    return list(data["calls"] if isinstance(data, dict) else data)


#: What the terminal answers when the demo's default charge was paid already.
PAID_ALREADY = frozenset({"claim_not_collectible", "copay_already_collected",
                          "amount_exceeds_balance"})


async def _sim_reset(base_url: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.post(base_url + "/_sim/reset")
        resp.raise_for_status()


def fixture_patients(practice: str = "195900") -> list[list[str]]:
    """The simulator's test patients (docs/athena.md section 6), one row each: id, name,
    appointments with their copay, claims with balance, department and whether clean."""
    from importlib import resources

    text = resources.files("lobbypay.sim").joinpath("fixtures/athena.json").read_text("utf-8")
    data = json.loads(text)["practices"][practice]
    rows = []
    for pid, pat in data["patients"].items():
        appts = [f"{aid} ({a.get('copay', '0.00')})" for aid, a in data["appointments"].items()
                 if a.get("patientid") == pid]
        claims = [f"{c['claimid']} {c['patientbalance']} dept {c['departmentid']}"
                  + ("" if c.get("clean") else " not clean") for c in pat.get("claims", [])]
        rows.append([pid, f"{pat['firstname']} {pat['lastname']}", ", ".join(appts) or "-",
                     "; ".join(claims) or "-"])
    return rows


def _form_value(key: str, value: Any) -> str:
    if isinstance(value, dict) and "last4" in value:
        digest = next((v for k, v in value.items() if k.endswith("_sha256")), "")
        return f"<card data: sha256 {str(digest)[:12]}..., last4 {value.get('last4')}>"
    return str(value)


def print_athena_calls(calls: list[dict[str, Any]], since: int, p: Printer) -> None:
    st = p.st
    rows = [[c["method"], c["path"] + (("?" + "&".join(f"{k}={v}" for k, v in c["query"].items()))
                                        if c.get("query") else ""), str(c.get("status"))]
            for c in calls[since:]]
    p.line(table(["METHOD", "PATH", "STATUS"], rows, st))
    posts = [c for c in calls[since:] if c.get("endpoint") == "collectpayment"]
    for c in posts:
        p.line()
        p.line(f"  {st('bold', 'POST ' + c['path'])} -> {c.get('status')}, form:")
        p.line(table(["FIELD", "VALUE"],
                     [[k, _form_value(k, v)] for k, v in sorted(c["form"].items())],
                     st, indent="    "))
    if posts:
        p.line(st("dim", "  (the simulator keeps only a keyed digest and the last 4 of the "
                         "track data; so does this output)"))


def _swipe(parts: Parts, card: str) -> None:
    from lobbypay_hw.reader_sim import send_swipe

    send_swipe(parts.swipe_socket, TEST_CARDS[card][0].encode("ascii"))


async def scripted(parts: Parts, p: Printer) -> int:
    from lobbypay.client import TerminalClient

    async with TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port) as term, \
            Monitor(parts.broker_port, p) as mon:
        status = await _wait_online(term, parts)
        p.line(f"  terminal {TERMINAL_ID} is online (session {status.get('session')}, "
               f"lobbypay {status.get('version')})")

        p.heading(f"1. The check-in app reads patient {DEMO_PATIENT}'s balances "
                  f"(department 1, appointment {DEMO_APPOINTMENT})")
        bal = await term.balance(DEMO_PATIENT, appointment_id=DEMO_APPOINTMENT)
        p.line(balance_tables(bal, p.st))

        claim_id, amount = DEMO_CLAIM
        job_id = f"demo-{uuid.uuid4().hex[:8]}"
        p.heading(f"2. It starts a charge: copay {DEMO_COPAY} + claim {claim_id} {amount}")
        calls_before = len(await _athena_calls(parts.athena["base_url"]))
        reply = await term.charge(job_id, DEMO_PATIENT, copay=DEMO_COPAY,
                                  claims=[(claim_id, amount)], appointment_id=DEMO_APPOINTMENT)
        p.line(f"  reply: ok, job {reply.get('job_id')} is {reply.get('state')}")
        await mon.wait_for(lambda: mon.state.get("job_state") == "pending", 10)

        label = TEST_CARDS["visa"][1]
        p.heading(f"3. The patient swipes a card: {label}")
        _swipe(parts, "visa")
        final = await term.wait_final(job_id, timeout=FINAL_TIMEOUT_S)
        # Let the monitor print the last screen and event before moving on.
        await mon.wait_for(lambda: job_id in mon.finals
                           and mon.state.get("job_state") == "idle", 10)

        p.heading("4. The athena calls the agent made for this charge (from the simulator)")
        print_athena_calls(await _athena_calls(parts.athena["base_url"]), calls_before, p)

        p.heading(f"5. Patient {DEMO_PATIENT}'s balances afterwards")
        p.line(balance_tables(await term.balance(DEMO_PATIENT), p.st))

        state = str(final.get("state"))
        follow_ups = (await _follow_ups(term, parts, mon, job_id, p)
                      if state == "succeeded" else [])

        p.heading("Result")
        card = final.get("card") or {}
        amounts = final.get("amounts") or {}
        colour = "green+bold" if state == "succeeded" else "red+bold"
        p.line(f"  job {job_id}: {p.st(colour, state)}"
               f", total {amounts.get('total')}, card {card.get('brand')} ...{card.get('last4')}"
               f", epayment {final.get('epayment_id')}")
        for line in follow_ups:
            p.line(f"  then: {line}")
        return EXIT_OK if state == "succeeded" and len(follow_ups) == 2 else EXIT_FAIL


async def _follow_ups(term: Any, parts: Parts, mon: Monitor, job_id: str,
                      p: Printer) -> list[str]:
    """Steps 6-8: the emailed receipt, then the front desk's void. One line per success."""
    from lobbypay.client import TerminalClient
    from lobbypay.core.commands import mask_email

    done = []
    masked = mask_email(DEMO_EMAIL)
    p.heading(f"6. The patient asks for the receipt by email ({masked})")
    calls_before = len(await _athena_calls(parts.athena["base_url"]))
    await term.email_receipt(job_id, DEMO_EMAIL)
    p.line(f"  reply: ok; athena emails the receipt. The terminal keeps the address nowhere "
           f"and logs it as {masked}.")
    print_athena_calls(await _athena_calls(parts.athena["base_url"]), calls_before, p)
    done.append(f"receipt emailed to {masked}")

    p.heading("7. The front desk voids the payment (a wrong amount), on the staff topic")
    calls_before = len(await _athena_calls(parts.athena["base_url"]))
    async with TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port,
                              staff=True) as desk:
        reply = await desk.void(job_id)
    p.line(f"  reply on staff/reply: ok, job {reply.get('job_id')} is {reply.get('state')}")
    await mon.wait_for(lambda: mon.finals.get(job_id, {}).get("state") == "voided", 10)
    print_athena_calls(await _athena_calls(parts.athena["base_url"]), calls_before, p)
    done.append(f"payment voided (job {reply.get('state')})")

    p.heading(f"8. Patient {DEMO_PATIENT}'s balances after the void")
    p.line(balance_tables(await term.balance(DEMO_PATIENT), p.st))
    return done


# ---------------------------------------------------------------- interactive

HELP = """\
  charge [PATIENT [COPAY [CLAIM=AMOUNT ...]]] [appt=ID] [lang=es]
                     start a charge (default: 60178, copay 25.00, 5569=40.00, appt 1001;
                     once that is paid, `reset` makes it payable again); lang=es: the
                     screens in Spanish
  balance [PATIENT]  the patient's balances (default 60178)
  patients           the simulator's test patients, their claims and appointments
  reset              the simulator's patients back as they were (balances, copays)
  swipe CARD         visa (approved), decline (ends 0002), expired, bad (unreadable)
  cancel [JOB]       cancel a pending job (default: the one waiting for a card)
  email ADDR [JOB]   athena emails the receipt of a succeeded job (default: the last)
  void [JOB]         the front desk voids a succeeded job's payment (staff topic)
  jobs               the terminal's recent jobs (charge.list)
  screen             the terminal's state now
  help               this list
  quit               stop everything and exit"""


class _Lines:
    """Lines from stdin without blocking the event loop (a tty or a pipe), or from a file."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._file_lines: list[str] | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._blocking = True

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        fd = sys.stdin.fileno()
        self._blocking = os.get_blocking(fd)
        reader = asyncio.StreamReader()
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            self._reader = reader
        except ValueError:  # a regular file: read it all, it cannot block
            self._file_lines = sys.stdin.read().splitlines(keepends=True)

    async def readline(self) -> str:
        if self._reader is not None:
            return (await self._reader.readline()).decode(errors="replace")
        return self._file_lines.pop(0) if self._file_lines else ""

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(OSError, ValueError):
            os.set_blocking(sys.stdin.fileno(), self._blocking)


async def interactive_session(parts: Parts, p: Printer) -> int:
    from lobbypay.client import ClientError, CommandError, TerminalClient

    lines = _Lines()
    await lines.open()
    last_job: str | None = None
    try:
        async with TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port) as term, \
                TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port,
                               staff=True) as desk, \
                Monitor(parts.broker_port, p) as mon:
            status = await _wait_online(term, parts)
            p.line(f"  terminal {TERMINAL_ID} is online (session {status.get('session')})")
            p.heading("Interactive demo: type a command (help lists them)")
            p.line(HELP)
            await asyncio.sleep(0.3)  # the retained screen arrives
            await p.settle()
            while True:
                p.prompt()
                text = await lines.readline()
                if not text:  # end of input (Ctrl-D)
                    p.prompt_open = False
                    p.line()
                    return EXIT_OK
                p.answered(text)
                words = text.split()
                if not words:
                    continue
                cmd, rest = words[0].lower(), words[1:]
                try:
                    if cmd in ("quit", "exit", "q"):
                        return EXIT_OK
                    if cmd == "help":
                        p.line(HELP)
                    elif cmd == "balance":
                        bal = await term.balance(rest[0] if rest else DEMO_PATIENT)
                        p.line(balance_tables(bal, p.st))
                    elif cmd == "charge":
                        try:
                            last_job = await _interactive_charge(term, rest, p)
                        except CommandError as exc:
                            if exc.code in PAID_ALREADY:
                                p.line(p.st("red", f"  the terminal said {exc.code}: "
                                                   f"{exc.message}"))
                                p.line("  (paid in an earlier charge: `reset` puts the "
                                       "simulator's patients back, or see `patients`)")
                                continue
                            raise
                    elif cmd == "patients":
                        p.line(table(["PATIENT", "NAME", "APPOINTMENT (COPAY)", "CLAIMS"],
                                     fixture_patients(), p.st))
                        p.line("  the terminal is in department 1 (provider group 10): "
                               "department 5's claims belong to another group;\n"
                               "  details in docs/athena.md, section 6")
                    elif cmd == "reset":
                        await _sim_reset(parts.athena["base_url"])
                        p.line("  the simulator's patients are back as they were (balances, "
                               "copays, receipts)")
                    elif cmd == "swipe":
                        card = rest[0].lower() if rest else "visa"
                        if card not in TEST_CARDS:
                            p.line(f"  unknown card {card!r}: {', '.join(sorted(TEST_CARDS))}")
                            continue
                        _swipe(parts, card)
                        p.line(f"  swiped {TEST_CARDS[card][1]}")
                        if mon.state.get("job_state") != "pending":
                            p.line("  (no job is waiting for a card: the terminal ignores "
                                   "this swipe; start one with `charge`)")
                    elif cmd == "cancel":
                        waiting = (mon.state.get("job_id")
                                   if mon.state.get("job_state") == "pending" else None)
                        job = rest[0] if rest else (waiting or last_job)
                        if not job:
                            p.line("  no job to cancel")
                            continue
                        await term.cancel(job)
                        p.line(f"  cancel of {job} accepted")
                    elif cmd == "email":
                        from lobbypay.core.commands import mask_email

                        if not rest:
                            p.line("  usage: email ADDR [JOB]")
                            continue
                        job = rest[1] if len(rest) > 1 else last_job
                        if not job:
                            p.line("  no job yet; start one with `charge`")
                            continue
                        await term.email_receipt(job, rest[0])
                        p.line(f"  athena emails the receipt of {job} to {mask_email(rest[0])}")
                    elif cmd == "void":
                        job = rest[0] if rest else last_job
                        if not job:
                            p.line("  no job yet; start one with `charge`")
                            continue
                        reply = await desk.void(job)
                        p.line(f"  the front desk voided {job}: {reply.get('state')}")
                    elif cmd == "jobs":
                        jobs = await term.list(20)
                        rows = [[j.get("job_id", ""), j.get("state", ""),
                                 (j.get("amounts") or {}).get("total", ""),
                                 (f"{j['card']['brand']} {j['card']['last4']}"
                                  if j.get("card") else ""),
                                 (j.get("error") or {}).get("code", "") if j.get("error") else ""]
                                for j in jobs]
                        p.line(table(["JOB", "STATE", "TOTAL", "CARD", "ERROR"], rows, p.st)
                               if rows else "  no jobs yet")
                    elif cmd == "screen":
                        st = mon.state
                        p.screen([str(x) for x in st.get("screen") or []],
                                 str(st.get("job_state")))
                    else:
                        p.line(f"  unknown command {cmd!r}; type help")
                except CommandError as exc:
                    p.line(p.st("red", f"  the terminal said {exc.code}: {exc.message}"))
                except (ValueError, TypeError) as exc:
                    p.line(p.st("red", f"  {exc}"))
                except (ClientError, TimeoutError, OSError) as exc:
                    p.line(p.st("red", f"  {type(exc).__name__}: {exc}"))
                # let the monitor print what the command caused before the next prompt
                # (anything later is printed above the prompt, which is drawn again)
                await asyncio.sleep(0.3)
                await p.settle()
    finally:
        lines.close()


async def _interactive_charge(term: Any, words: list[str], p: Printer) -> str:
    from lobbypay.cli import parse_claims

    appointment: str | None = None
    language: str | None = None
    positional = []
    for w in words:
        if w.startswith("appt="):
            appointment = w.split("=", 1)[1]
        elif w.startswith("lang="):
            language = w.split("=", 1)[1]
        else:
            positional.append(w)
    if not positional:
        patient, copay, claims = DEMO_PATIENT, DEMO_COPAY, [DEMO_CLAIM]
        appointment = appointment or DEMO_APPOINTMENT
    else:
        patient = positional[0]
        copay = positional[1] if len(positional) > 1 else "0.00"
        claims = parse_claims(positional[2:])
        if patient == DEMO_PATIENT and copay != "0.00" and appointment is None:
            appointment = DEMO_APPOINTMENT
    job_id = f"demo-{uuid.uuid4().hex[:8]}"
    reply = await term.charge(job_id, patient, copay=copay, claims=claims,
                              appointment_id=appointment, language=language)
    p.line(f"  job {job_id}: {reply.get('state')}; now `swipe visa` (or decline, expired, bad)")
    return job_id


# ---------------------------------------------------------------- entry point


def run_demo(*, interactive: bool = False, no_color: bool = False,
             workdir: str | None = None) -> int:
    st = Style.for_stream(sys.stdout, no_color)
    p = Printer(st)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    parts: Parts | None = None
    rc = EXIT_FAIL
    try:
        parts = Parts(workdir)
        p.line(st("bold", "lobbypay demo") + ": every part on 127.0.0.1; no card data leaves "
               "the agent, and only test cards are used")
        p.heading("Starting the parts")
        athena = parts.start_sim()
        broker_port = parts.start_broker()
        agent = parts.start_agent()
        sim_pid = parts.sim.pid if parts.sim else 0
        broker_pid = parts.broker.pid if parts.broker else 0
        p.line(table(["PART", "WHERE", "PID"], [
            ["athena simulator", f"{athena['base_url']} (practice {athena['practice_id']})",
             str(sim_pid)],
            ["MQTT broker", f"mosquitto on 127.0.0.1:{broker_port}", str(broker_pid)],
            ["agent", f"lobbypay run --config {parts.config_path}", str(agent.pid)],
            ["card reader", f"sim reader, socket {parts.swipe_socket}", "(in the agent)"],
            ["agent output", str(parts.agent_log), ""],
        ], st))
        rc = asyncio.run(interactive_session(parts, p) if interactive else scripted(parts, p))
    except DemoError as exc:
        p.prompt_open = False
        p.line(st("red+bold", f"demo failed: {exc}"))
        rc = EXIT_FAIL
    except KeyboardInterrupt:
        p.prompt_open = False  # the prompt's line ends with the "\n" below
        p.line("\ninterrupted")
        rc = 130
    except Exception as exc:  # noqa: BLE001 - report, then clean up every child
        if os.environ.get("LOBBYPAY_DEMO_DEBUG"):
            import traceback

            traceback.print_exc()
        p.prompt_open = False
        p.line(st("red+bold", f"demo failed: {type(exc).__name__}: {exc}"))
        if parts is not None:
            p.line(parts.agent_log_tail())
        rc = EXIT_FAIL
    finally:
        p.prompt_open = False
        if parts is not None:
            p.heading("Stopping")
            agent_rc = parts.close()
            p.line(f"  agent stopped (exit {agent_rc}), broker and simulator stopped"
                   + ("" if workdir else ", temporary files removed"))
            if agent_rc not in (0, None) and rc == EXIT_OK:
                rc = EXIT_FAIL
        signal.signal(signal.SIGTERM, old_term)
    return rc
