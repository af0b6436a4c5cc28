#!/usr/bin/env python3
"""lobbypay performance against the physical minimum, in one run on this machine.

Starts mosquitto, the athena simulator (its own process), a bare MQTT echo and a pty in
the role of the serial card reader; then runs the real agent (``python -m lobbypay run``)
and measures, each beside a bare baseline taken in the same run:

* swipe -> final event: last swipe byte into the pty -> ``succeeded`` at a subscriber,
  vs one bare MQTT publish->receive + one bare httpx POST (same token, same form, fresh
  connection like the agent's) + one fsync'd small write in the state dir;
* command -> reply: ``charge.start`` (reads balances from athena) vs one bare MQTT round
  trip through a bare echo process + one bare GET of the same patient;
* idle CPU, peak RSS and RSS over a long command run, start-up to retained ``online``,
  the balance rules on a 10,000-claim patient, throughput at 1/4/16 commands in flight.

Prints a table and writes JSON (bench-results/<UTC timestamp>.json, or --json PATH).
Exit status: 0 every target met, 1 some target missed, 2 the run itself failed.

    scripts/bench [--quick] [--json PATH] [--charges N] [--idle-s S] [--commands N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (ROOT / "scripts", ROOT / "agent", ROOT / "drivers"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import httpx  # noqa: E402

from benchlib import procfs, procs  # noqa: E402
from benchlib.mqttc import FINAL, BenchClient  # noqa: E402
from benchlib.procs import (  # noqa: E402
    DISPLAYS,
    Agent,
    Broker,
    DelayProxy,
    Echo,
    Pty,
    Simulator,
    child_env,
)
from benchlib.stats import summary_ms  # noqa: E402

PATIENT = "60178"
APPOINTMENT = "1001"
DEPARTMENT = "1"
#: A Luhn-valid Visa test card the simulator approves (never a real card).
TRACKS = (b"%B4111111111111111^SANDBOXTEST/JANE^3012101000000000000000?"
          b";4111111111111111=30121010000000000000?")
#: Quiet time around each swipe: a patient swipes seconds after the amount shows, so
#: the agent has finished publishing ``pending`` by then. Same pause before baselines.
QUIET_S = 0.03
#: The shipped profile's pace: at most one charge a second (a lobby is slower still).
CHARGE_INTERVAL_S = 1.0


@dataclass
class Plan:
    quick: bool
    charges: int
    idle_s: float
    commands: int
    starts: int
    throughput_s: float
    balance_runs: int
    #: charges with a human-like pause between the amount showing and the swipe
    human_charges: int = 20
    human_pause_s: float = 0.8
    #: charges per agent over TLS behind the delaying proxy (warm, then cold)
    tls_charges: int = 20
    delay_ms: float = 25.0
    #: charges traced for fsync calls (strace; untimed)
    traced_charges: int = 10
    #: pings (and bare echoes) interleaved with the charges
    broker_nagle: bool = False
    profile: Path | None = None
    display: str = "none"
    skip_tls: bool = False
    skip_nagle: bool = False


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        base = Plan(True, charges=8, idle_s=5, commands=1000, starts=3, throughput_s=0.5,
                    balance_runs=5, human_charges=3, tls_charges=4, traced_charges=2)
    else:
        base = Plan(False, charges=120, idle_s=60, commands=10_000, starts=5,
                    throughput_s=5.0, balance_runs=50)
    if args.charges:
        base.charges = args.charges
    if args.idle_s:
        base.idle_s = args.idle_s
    if args.commands:
        base.commands = args.commands
    base.broker_nagle = args.broker_nagle
    base.display = args.display
    base.profile = args.profile.resolve() if args.profile else None
    base.skip_tls = args.no_tls
    base.skip_nagle = args.no_nagle
    return base


# ---------------------------------------------------------------------------- figures


@dataclass
class Figure:
    name: str
    unit: str
    value: float
    baseline: float | None
    target: str  # human text, e.g. "<= 1.5x", "<= 45 MB"
    ok: bool | None  # None: informational
    ratio: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "value": round(self.value, 4),
                "baseline": None if self.baseline is None else round(self.baseline, 4),
                "ratio": None if self.ratio is None else round(self.ratio, 3),
                "target": self.target,
                "result": "info" if self.ok is None else ("PASS" if self.ok else "MISS"),
                "note": self.note}


def ratio_figure(name: str, unit: str, value: float, baseline: float, limit: float,
                 note: str = "") -> Figure:
    r = value / baseline if baseline > 0 else float("inf")
    return Figure(name, unit, value, baseline, f"<= {limit:g}x", r <= limit, r, note)


def abs_figure(name: str, unit: str, value: float, limit: float, baseline: float | None = None,
               note: str = "") -> Figure:
    r = value / baseline if baseline else None
    return Figure(name, unit, value, baseline, f"<= {limit:g} {unit}", value <= limit, r, note)


# ---------------------------------------------------------------------------- bare baselines


class Bare:
    """The least the same work can cost on this machine: bare httpx against the same
    simulator with the agent's token kind, bare MQTT through the same broker, one fsync."""

    def __init__(self, info: dict[str, str], client: BenchClient, fsync_dir: Path,
                 verify: Any = True) -> None:
        self.info = info
        self.mqtt = client
        self.api = f"{info['base_url']}/v1/{info['practice_id']}"
        self.token = ""
        self.get_http = httpx.AsyncClient(timeout=10, verify=verify)  # keep-alive reads
        # the least a POST costs: on a connection that is already open (keep-alive); the
        # agent's own POST connection is opened before the swipe (docs/athena.md)
        self.post_http = httpx.AsyncClient(timeout=10, verify=verify)
        fsync_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(fsync_dir / "bench-fsync.bin", os.O_RDWR | os.O_CREAT, 0o600)
        self.n = 0
        self._verify = verify
        self._raw: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def login(self) -> None:
        r = await self.get_http.post(
            f"{self.info['base_url']}/oauth2/v1/token",
            auth=(self.info["client_id"], self.info["client_secret"]),
            data={"grant_type": "client_credentials", "scope": "athena/service/Athenanet.MDP.*"})
        r.raise_for_status()
        self.token = r.json()["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Request-Id": str(uuid.uuid4()),
                "Accept": "application/json"}

    async def aclose(self) -> None:
        await self.get_http.aclose()
        await self.post_http.aclose()
        if self._raw is not None:
            self._raw[1].close()
        os.close(self.fd)

    async def raw(self, method: str, target: str, body: bytes = b"") -> float:
        """The same request with no HTTP library at all: its bytes written in one go on a
        keep-alive connection that is already open, the answer's head and
        ``Content-Length`` body read, the JSON decoded (the floor under any client)."""
        base = self.info["base_url"]
        host, _, port = base.split("//", 1)[1].partition(":")
        if self._raw is None:
            tls = None
            if base.startswith("https"):
                tls = (self._verify if isinstance(self._verify, ssl.SSLContext)
                       else ssl.create_default_context())
            self._raw = await asyncio.open_connection(host, int(port), ssl=tls)
        reader, writer = self._raw
        head = (f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {self.token}\r\nAccept: application/json\r\n"
                f"X-Request-Id: {uuid.uuid4()}\r\n")
        if body:
            head += ("Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Length: {len(body)}\r\n")
        t0 = time.perf_counter()
        writer.write(head.encode() + b"\r\n" + body)
        answer = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in answer.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = json.loads(await reader.readexactly(length))
        dt = time.perf_counter() - t0
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"bare raw {method} failed: {answer[:60]!r}")
        del data
        return dt

    async def post_raw(self, copay: str) -> float:
        form = httpx.QueryParams({
            "departmentid": DEPARTMENT, "copayamount": copay, "appointmentid": APPOINTMENT,
            "trackdata": TRACKS.decode(), "allowduplicatepayments": "true"})
        return await self.raw("POST", f"/v1/{self.info['practice_id']}/patients/{PATIENT}/"
                              "collectpayment", str(form).encode())

    def fsync_write(self) -> float:
        t0 = time.perf_counter()
        os.pwrite(self.fd, b"x" * 200, 0)
        os.fsync(self.fd)
        return time.perf_counter() - t0

    async def post(self, copay: str) -> float:
        form = {"departmentid": DEPARTMENT, "copayamount": copay, "appointmentid": APPOINTMENT,
                "trackdata": TRACKS.decode(), "allowduplicatepayments": "true"}
        t0 = time.perf_counter()
        r = await self.post_http.post(f"{self.api}/patients/{PATIENT}/collectpayment",
                                      data=form, headers=self.headers())
        body = r.json()
        dt = time.perf_counter() - t0
        if r.status_code != 200 or body[0].get("success") != "true":
            raise RuntimeError(f"bare POST was not approved: {r.status_code} {body}")
        return dt

    async def get(self) -> float:
        t0 = time.perf_counter()
        r = await self.get_http.get(f"{self.api}/patients/{PATIENT}",
                                    params={"showbalancedetails": "true",
                                            "departmentid": DEPARTMENT},
                                    headers=self.headers())
        r.json()
        dt = time.perf_counter() - t0
        r.raise_for_status()
        return dt

    async def get_appointment(self) -> float:
        t0 = time.perf_counter()
        r = await self.get_http.get(f"{self.api}/appointments/{APPOINTMENT}",
                                    headers=self.headers())
        r.json()
        dt = time.perf_counter() - t0
        r.raise_for_status()
        return dt

    async def warm_up(self) -> None:
        """Open the POST client's keep-alive connection (one approved POST)."""
        await self.post("0.01")

    async def swipe_path(self, copay: str) -> dict[str, float]:
        """fsync + POST + MQTT publish->receive, in that order (the agent's order); then
        the same POST with no HTTP library (``total_raw``: the floor, for reference)."""
        t0 = time.perf_counter()
        f = self.fsync_write()
        p = await self.post(copay)
        m = await self.mqtt.oneway()
        total = time.perf_counter() - t0
        pr = await self.post_raw(copay)
        return {"total": total, "fsync": f, "post": p, "mqtt_oneway": m, "post_raw": pr,
                "total_raw": f + pr + m}

    async def command_path(self) -> dict[str, float]:
        """MQTT round trip through the echo + GET of the patient + GET of the appointment
        (a charge.start with a copay reads both: copay_already_collected)."""
        t0 = time.perf_counter()
        m = await self.mqtt.echo_round_trip()
        g = await self.get()
        a = await self.get_appointment()
        total = time.perf_counter() - t0
        api = f"/v1/{self.info['practice_id']}"
        gr = await self.raw("GET", f"{api}/patients/{PATIENT}?showbalancedetails=true"
                            f"&departmentid={DEPARTMENT}")
        ar = await self.raw("GET", f"{api}/appointments/{APPOINTMENT}")
        return {"total": total, "mqtt_round_trip": m, "get": g, "get_appointment": a,
                "get_raw": gr, "get_appointment_raw": ar, "total_raw": m + gr + ar}


# ---------------------------------------------------------------------------- measures


def measure_balance(runs: int) -> dict[str, Any]:
    from bench_balance import build_payload  # scripts/bench_balance.py
    from lobbypay.core.balance import evaluate_balances

    body = json.dumps(build_payload(10_000, 4)).encode()
    ev: list[float] = []
    dec: list[float] = []
    for _ in range(runs + 2):
        t0 = time.perf_counter()
        payload = json.loads(body)
        t1 = time.perf_counter()
        view = evaluate_balances(payload, PATIENT, DEPARTMENT)
        t2 = time.perf_counter()
        dec.append(t1 - t0)
        ev.append(t2 - t1)
        # freed outside both windows: dropping the last run's payload and view is not
        # decoding or evaluating (the agent drops them after the reply)
        del payload, view
    ev, dec = ev[2:], dec[2:]  # first runs warm the allocator
    return {"claims": 10_000, "payload_bytes": len(body), "evaluate": summary_ms(ev),
            "json_loads": summary_ms(dec)}


def bare_python_start(times: int) -> dict[str, Any]:
    """Interpreter start, and the agent's imports, in fresh processes (no agent code run)."""
    env = child_env()

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)  # noqa: S603
        return time.perf_counter() - t0

    bare = [run("pass") for _ in range(times)]
    imports = [run("import lobbypay.cli, lobbypay.app") for _ in range(times)]
    return {"python_pass_s": statistics.median(bare),
            "import_agent_s": statistics.median(imports)}


async def measure_startup(agent: Agent, client: BenchClient, starts: int) -> dict[str, Any]:
    took: list[float] = []
    for _ in range(starts):
        session = agent.runs + 1
        fut = client.expect_status(lambda s, n=session: s.get("online") is True
                                   and s.get("session") == n)
        t0 = agent.start()
        try:
            t1, _ = await asyncio.wait_for(fut, 20)
        except TimeoutError:
            raise RuntimeError("agent did not come online:\n" + agent.log_tail()) from None
        took.append(t1 - t0)
        offline = client.expect_status(lambda s, n=session: s.get("online") is False
                                       and s.get("session") == n)
        rc = agent.stop()
        if rc != 0:
            raise RuntimeError(f"agent exited {rc} on SIGTERM:\n" + agent.log_tail())
        try:
            await asyncio.wait_for(offline, 10)
        except TimeoutError:
            raise RuntimeError(f"no offline status after SIGTERM (last: {client.status}):\n"
                               + agent.log_tail()) from None
    return {"starts_s": [round(x, 4) for x in took], "median_s": statistics.median(took)}


async def one_charge(client: BenchClient, pty: Pty, pid: int, job_id: str, copay: str,
                     pause_s: float | None) -> dict[str, float]:
    """charge.start (copay, so the agent reads the patient and the appointment), then the
    swipe: the moment the retained ``state`` shows the job ``pending`` (``pause_s`` None:
    an app that swipes at once), or ``pause_s`` after the ``pending`` event (a patient)."""
    shown = client.expect_state(lambda s, j=job_id: s.get("job_id") == j
                                and s.get("job_state") == "pending")
    pending = client.expect_event(job_id, "pending")
    final = client.expect_event(job_id, FINAL)
    c0 = procfs.cpu_ns(pid)
    t_cmd = time.perf_counter()
    lat, rep = await client.command(
        "charge.start", job_id=job_id, patient_id=PATIENT, appointment_id=APPOINTMENT,
        copay=copay, allow_duplicate=True, deadline_s=60)
    if not rep.get("ok") or rep.get("state") != "pending":
        raise RuntimeError(f"charge.start refused: {rep}")
    if pause_s is None:
        await asyncio.wait_for(shown, 10)
    else:
        await asyncio.wait_for(pending, 10)
        await asyncio.sleep(pause_s)
    t0 = pty.swipe(TRACKS + b"\r")
    try:
        t1, ev = await asyncio.wait_for(final, 15)
    except TimeoutError:
        raise RuntimeError(f"no final event for {job_id}") from None
    c1 = procfs.cpu_ns(pid)
    if ev.get("state") != "succeeded":
        raise RuntimeError(f"charge {job_id} ended {ev.get('state')}: {ev.get('error')}")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(shown, pending), 5)
    # absolute perf_counter() stamps (CLOCK_MONOTONIC, the agent's step trace's clock)
    return {"start": lat, "swipe": t1 - t0, "cpu_ms": (c1 - c0) / 1e6, "t_swipe": t0,
            "t_final": t1, "t_cmd": t_cmd, "t_reply": t_cmd + lat}


async def measure_charges(client: BenchClient, bare: Bare, pty: Pty, pid: int, n: int,
                          tag: str, pause_s: float | None,
                          interval_s: float = CHARGE_INTERVAL_S,
                          pings: bool = True, commands: bool = True) -> dict[str, Any]:
    """``n`` charges, at most one every ``interval_s`` (a lobby's pace), each followed by
    its bare baselines and, with ``pings``, one ``ping`` and one bare echo."""
    rows: list[dict[str, float]] = []
    b_swipe: list[dict[str, float]] = []
    b_cmd: list[dict[str, float]] = []
    ping: list[float] = []
    echo: list[float] = []
    io0, cpu0, split0 = procfs.io(pid), procfs.cpu_ns(pid), procfs.cpu_split(pid)
    for i in range(n):
        began = time.perf_counter()
        copay = f"{1 + i % 40}.{i % 100:02d}"
        rows.append(await one_charge(client, pty, pid, f"bench-{tag}-{i}", copay, pause_s))
        # after the same quiet as the agent's swipe had: every process idle that long
        # (a VM's idle vCPU and its caches cost the first packet after a pause)
        await asyncio.sleep(pause_s if pause_s is not None else QUIET_S)
        b_swipe.append(await bare.swipe_path(copay))
        await asyncio.sleep(QUIET_S)
        if commands:
            b_cmd.append(await bare.command_path())
        if pings:
            await asyncio.sleep(QUIET_S)
            lat, rep = await client.command("ping")
            if not rep.get("ok"):
                raise RuntimeError(f"ping failed: {rep}")
            ping.append(lat)
            await asyncio.sleep(QUIET_S)
            echo.append(await bare.mqtt.echo_round_trip())
        await asyncio.sleep(max(0.0, began + interval_s - time.perf_counter()))
    io1, cpu1, split1 = procfs.io(pid), procfs.cpu_ns(pid), procfs.cpu_split(pid)

    def parts(rs: list[dict[str, float]]) -> dict[str, Any]:
        return {k: summary_ms([r[k] for r in rs]) for k in rs[0]}

    out: dict[str, Any] = {
        "charges": n, "pause_s": pause_s, "interval_s": interval_s,
        "swipe_to_final": summary_ms([r["swipe"] for r in rows]),
        "charge_start_to_reply": summary_ms([r["start"] for r in rows]),
        "bare_swipe_path": parts(b_swipe),
        "bare_command_path": parts(b_cmd) if b_cmd else None,
        # CPU from just before charge.start to the final event taken off the app's client
        "agent_cpu_ms_start_to_final": {
            "mean": round(statistics.fmean(r["cpu_ms"] for r in rows), 3),
            "p50": round(statistics.median(r["cpu_ms"] for r in rows), 3),
            "max": round(max(r["cpu_ms"] for r in rows), 3)},
        # everything the agent did in the run, per charge (the tail after the final
        # event, the pings, the idle time between charges)
        "agent_cpu_ms_per_charge_all": round((cpu1 - cpu0) / 1e6 / n, 3),
        # the same split into user and kernel time (ticks, so only over the whole run)
        "agent_user_ms_per_charge": round((split1[0] - split0[0]) * 1000 / n, 2),
        "agent_system_ms_per_charge": round((split1[1] - split0[1]) * 1000 / n, 2),
        "io_per_charge": {k: round((io1[k] - io0[k]) / n, 1) for k in io0},
        # (swipe written, final event received) per charge, for the agent's step trace
        # (read once the agent has stopped: ``swipe_steps``)
        "stamps": [(r["t_swipe"], r["t_final"]) for r in rows],
        "cmd_stamps": [(r["t_cmd"], r["t_reply"]) for r in rows],
    }
    if pings:
        out["ping"] = summary_ms(ping)
        out["bare_echo"] = summary_ms(echo)
    return out


SYNC_CALLS = "fsync,fdatasync,sync_file_range,msync,syncfs,sync"


async def count_syncs(client: BenchClient, pty: Pty, pid: int, n: int, tag: str,
                      work: Path) -> dict[str, Any]:
    """strace attached to the agent (every thread) for ``n`` charges, untimed: the sync
    calls it makes per charge, by file."""
    out = work / "strace.txt"
    tracer = subprocess.Popen(  # noqa: S603, ASYNC220 - started once, not awaited on
        ["strace", "-f", "-qq", "-y", "-e", f"trace={SYNC_CALLS}", "-o", str(out),
         "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(1.0)  # attached
        for i in range(n):
            began = time.perf_counter()
            await one_charge(client, pty, pid, f"bench-{tag}-traced-{i}", f"2.{i % 100:02d}",
                             None)
            await asyncio.sleep(max(0.0, began + CHARGE_INTERVAL_S - time.perf_counter()))
        await asyncio.sleep(0.5)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    by_file: dict[str, int] = {}
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        m = re.search(r"\b(" + SYNC_CALLS.replace(",", "|") + r")\((?:\d+<([^>]*)>)?", line)
        if not m or "resumed>" in line:
            continue
        total += 1
        name = Path(m.group(2)).name if m.group(2) else m.group(1)
        by_file[name] = by_file.get(name, 0) + 1
    return {"charges": n, "syncs": total, "per_charge": total / n if n else 0.0,
            "by_file": by_file}


#: The swipe path's steps in the agent's step trace (lobbypay/shell/steptrace.py): the
#: mark, what it stands for, and which occurrence between the swipe and the final event.
SWIPE_STEPS = (
    ("reader.bytes", "swipe bytes read off the pty", "first"),
    ("reader.callback", "swipe parsed, to the engine", "first"),
    ("journal.card_read", "card_read committed", "first"),
    ("journal.submitting", "submitting committed (fsync)", "first"),
    ("post.slot", "the POST's token and rate-limit slot", "first"),
    ("post.begin", "the POST handed to the payment line", "first"),
    ("post.sent", "POST written to its socket", "last_before:post.answer"),
    ("post.answer", "athena's answer read", "first"),
    ("journal.final", "outcome committed (fsync)", "first"),
    ("outbox.publish", "final event to the MQTT client", "last"),
)
FINAL_MARKS = tuple(f"journal.{s}" for s in ("succeeded", "declined", "failed", "unknown"))


#: The same for ``charge.start`` (with a copay: the patient, then the appointment).
COMMAND_STEPS = (
    ("command.received", "command off the broker, to the app", "first"),
    ("http.sent", "GET patient written", "first"),
    ("http.answer", "patient read", "first"),
    ("http.sent", "GET appointment written", "second"),
    ("http.answer", "appointment read", "second"),
    ("journal.pending", "pending committed (fsync)", "first"),
    ("command.replied", "reply to the MQTT client", "first"),
)


def swipe_steps(marks: list[tuple[float, str]], stamps: list[tuple[float, float]],
                table: tuple[tuple[str, str, str], ...] = SWIPE_STEPS,
                end: str = "final event taken off the app's client") -> dict[str, Any]:
    """Per step of a path (``table``; the swipe path by default), milliseconds from its
    start (the last swipe byte written; the command published) as p50 and p90, and the
    p50 of the gap from the step before; the last row is the end taken off the app's
    client (the final event; the reply)."""
    marks = sorted(marks)
    times = [t for t, _ in marks]
    keys = [name if rule != "second" else f"{name}#2" for name, _, rule in table]
    per: dict[str, list[float]] = {k: [] for k in keys}
    per["end_received"] = []
    gaps: dict[str, list[float]] = {k: [] for k in per}
    import bisect

    for t0, t1 in stamps:
        lo, hi = bisect.bisect_left(times, t0 - 0.001), bisect.bisect_right(times, t1)
        window = marks[lo:hi]
        prev = 0.0
        for key, (name, _what, rule) in zip(keys, table, strict=True):
            names = FINAL_MARKS if name == "journal.final" else (name,)
            hits = [t for t, n in window if n in names]
            if rule.startswith("last_before:"):
                until = [t for t, n in window if n == rule.split(":", 1)[1]]
                hits = [t for t in hits if not until or t <= until[0]]
            if rule == "second":
                hits = hits[1:2]
            if not hits:
                continue
            at = ((hits[-1] if rule.startswith("last") else hits[0]) - t0) * 1000
            per[key].append(at)
            gaps[key].append(at - prev)
            prev = at
        per["end_received"].append((t1 - t0) * 1000)
        gaps["end_received"].append((t1 - t0) * 1000 - prev)
    out: dict[str, Any] = {}
    labels = {k: what for k, (_n, what, _r) in zip(keys, table, strict=True)}
    labels["end_received"] = end
    for name, vals in per.items():
        if not vals:
            continue
        q = summary_ms([v / 1000 for v in vals])
        out[name] = {"what": labels[name], "n": len(vals), "p50_ms": q["p50"],
                     "p90_ms": q["p90"],
                     "gap_p50_ms": round(statistics.median(gaps[name]), 3)}
    return out


def steps_table(steps: dict[str, Any], title: str = "swipe path step") -> str:
    lines = [f"{title:<58}{'p50 ms':>8}{'p90 ms':>8}{'+gap p50':>10}"]
    for name, row in steps.items():
        lines.append(f"{name + ': ' + row['what']:<58.58}{row['p50_ms']:>8.2f}"
                     f"{row['p90_ms']:>8.2f}{row['gap_p50_ms']:>10.2f}")
    return "\n".join(lines)


def _importtime_lines(text: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (self us, cumulative us, nesting level, module)."""
    out: list[tuple[int, int, int, str]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            selfus, cumus, field = line.split(":", 1)[1].split("|")
            self_us, cum_us = int(selfus), int(cumus)
        except ValueError:
            continue
        name = field.strip()
        # one space after the bar, then two per nesting level
        level = (len(field) - len(field.lstrip(" ")) - 1) // 2
        out.append((self_us, cum_us, level, name))
    return out


def import_times(path: Path, upto: int | None = None) -> dict[str, Any]:
    """What the agent imported until it was online (``upto``: the size of its ``-X
    importtime`` output at that moment), timed again in one fresh process that imports the
    same top-level modules in the same order, on one thread.

    The agent's own ``-X importtime`` figures cannot be summed: CPython keeps one import
    clock for all threads, so a module imported on the main thread while paho connects
    on an executor thread gets the other thread's imports as children and a negative self
    time (``serial_asyncio_fast`` -265 ms in one run), and the total came out smaller
    than its own largest package. Here the total is the sum of the top-level imports'
    cumulative times (nested ones are inside them), and each package's share the sum of
    its modules' self times."""
    raw = path.read_bytes()
    agent_lines = _importtime_lines(raw[:upto].decode(errors="replace") if upto else
                                    raw.decode(errors="replace"))
    names = [n for _s, _c, level, n in agent_lines
             if level == 1 and not n.endswith("__main__")]
    code = ("import importlib, sys\n"
            "for n in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(n)\n"
            "    except Exception:\n"
            "        pass\n")
    proc = subprocess.run(  # noqa: S603 - our interpreter
        [sys.executable, "-X", "importtime", "-c", code, *names],
        capture_output=True, text=True, env=child_env(), check=True)
    lines = _importtime_lines(proc.stderr)
    per_pkg: dict[str, int] = {}
    for self_us, _cum, _level, name in lines:
        top = name.split(".")[0]
        per_pkg[top] = per_pkg.get(top, 0) + max(0, self_us)
    total = sum(cum for _s, cum, level, _n in lines if level == 1)
    top_pkgs = sorted(per_pkg.items(), key=lambda kv: -kv[1])[:15]
    slowest = sorted(((cum, n) for _s, cum, _l, n in lines), reverse=True)[:15]
    return {"total_ms": round(total / 1000, 1),
            "modules": len(lines), "modules_in_agent_run": len(agent_lines),
            "by_package_ms": {k: round(v / 1000, 1) for k, v in top_pkgs},
            "slowest_cumulative_ms": [(n, round(c / 1000, 1)) for c, n in slowest]}


async def closed_loop(fn: Callable[[], Awaitable[float]], conc: int,
                      seconds: float) -> dict[str, Any]:
    """``conc`` workers each calling ``fn`` back to back for ``seconds``: completed calls
    per second and their latencies."""
    lat: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            lat.append(await fn())

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    elapsed = time.perf_counter() - t0
    return {"concurrency": conc, "per_s": len(lat) / elapsed, "done": len(lat),
            "latency": summary_ms(lat)}


async def measure_throughput(client: BenchClient, bare: Bare, seconds: float) -> dict[str, Any]:
    async def ping() -> float:
        lat, rep = await client.command("ping")
        if not rep.get("ok"):
            raise RuntimeError(f"ping failed: {rep}")
        return lat

    async def balance() -> float:
        lat, rep = await client.command("balance.get", patient_id=PATIENT)
        if not rep.get("ok"):
            raise RuntimeError(f"balance.get failed: {rep}")
        return lat

    out: dict[str, Any] = {}
    for name, fn in (("ping", ping), ("balance.get", balance),
                     ("bare_mqtt_echo", bare.mqtt.echo_round_trip), ("bare_get", bare.get)):
        rows = []
        for conc in (1, 4, 16):
            await closed_loop(fn, conc, min(0.3, seconds / 5))  # warm
            rows.append(await closed_loop(fn, conc, seconds))
        out[name] = rows
    return out


async def measure_memory(client: BenchClient, agent: Agent, total: int,
                         job_ids: list[str]) -> dict[str, Any]:
    """``total`` commands, 16 in flight: ping, charge.get, charge.list, a bad request,
    and every 100th a balance.get (an athena read, under the shipped 5 rps limit). RSS
    after the first quarter (warm-up: the reply cache holds 2048 entries) and at the end."""
    warm = max(1, total // 4)
    issued = 0
    answered = 0
    rss_warm: dict[str, int] = {}
    lock = asyncio.Lock()

    async def one(k: int) -> None:
        m = k % 10
        if k % 100 == 0:  # an athena read: 1 %, under the shipped 5 rps rate limit
            _, rep = await client.command("balance.get", patient_id=PATIENT)
        elif m in (0, 1, 2, 3, 4):
            _, rep = await client.command("ping")
        elif m in (5, 6):
            _, rep = await client.command("charge.get", job_id=job_ids[k % len(job_ids)])
        elif m in (7, 8):
            _, rep = await client.command("charge.list", limit=20)
        else:
            _, rep = await client.command("charge.get")  # no job_id: bad_request
            if rep.get("ok") or rep.get("error", {}).get("code") != "bad_request":
                raise RuntimeError(f"expected bad_request: {rep}")
            return
        if not rep.get("ok"):
            raise RuntimeError(f"command failed: {rep}")

    async def worker() -> None:
        nonlocal issued, answered
        while True:
            async with lock:
                if issued >= total:
                    return
                k = issued
                issued += 1
            await one(k)
            answered += 1
            if answered == warm and not rss_warm:
                rss_warm.update(procfs.memory_kb(agent.pid))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(16)))
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    end = procfs.memory_kb(agent.pid)
    return {"commands": total, "seconds": round(elapsed, 2), "after_warmup_kb": rss_warm,
            "end_kb": end}


# ---------------------------------------------------------------------------- run


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    mosq = ""
    try:
        mosq = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True,  # noqa: S603
                              text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return {"loadavg": os.getloadavg(), "cpu": cpu, "cores": os.cpu_count(),
            "mem_mb": mem_kb // 1024, "kernel": platform.release(),
            "python": platform.python_version(), "mosquitto": mosq, "machine": platform.machine()}


async def wait_online(client: BenchClient, session: int, agent: Agent) -> None:
    fut = client.expect_status(lambda s: s.get("online") is True
                               and s.get("session") == session)
    try:
        await asyncio.wait_for(fut, 20)
    except TimeoutError:
        raise RuntimeError("agent did not come online:\n" + agent.log_tail()) from None


async def tls_segment(plan: Plan, work: Path, broker: Broker, pty: Pty,
                      tag: str) -> dict[str, Any]:
    """The simulator behind TLS (a trustme CA) and a proxy that delays each way by
    ``delay_ms``: swipe -> final with the payment connection warmed when the job goes
    pending (as shipped), and without (the POST opens TCP + TLS after the swipe)."""
    try:
        import trustme
    except ImportError:
        return {"skipped": "trustme is not installed (scripts/setup --test installs it)"}
    tls_dir = work / "tls"
    tls_dir.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_pem, chain_pem, key_pem = tls_dir / "ca.pem", tls_dir / "chain.pem", tls_dir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    with open(chain_pem, "wb") as f:  # noqa: ASYNC230 - a few KiB, once
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    sim = Simulator(work, tls=(chain_pem, key_pem), name="sim-tls")
    info = sim.start()
    proxy = DelayProxy(int(info["base_url"].rsplit(":", 1)[1]), plan.delay_ms)
    out: dict[str, Any] = {"delay_ms_each_way": plan.delay_ms, "pause_s": plan.human_pause_s}
    try:
        port = proxy.start()
        far = {**info, "base_url": f"https://127.0.0.1:{port}"}
        verify = ssl.create_default_context(cafile=str(ca_pem))
        for label, env in (("warm", {}),
                           ("cold", {"LOBBYPAY_TEST_MODE": "1", "LOBBYPAY_NO_WARM": "1"})):
            agent = Agent(work / f"agent-tls-{label}", broker.port, far, pty.path,
                          f"bench-{tag}-tls-{label}", env={"SSL_CERT_FILE": str(ca_pem), **env})
            async with BenchClient(broker.port, agent.terminal_id) as client:
                agent.start()
                try:
                    await wait_online(client, 1, agent)
                    await asyncio.sleep(0.5)
                    bare = Bare(far, client, agent.state_dir, verify=verify)
                    try:
                        await bare.login()
                        await bare.warm_up()
                        say(f"TLS + {plan.delay_ms:g} ms each way, {label}: "
                            f"{plan.tls_charges} charges")
                        out[label] = await measure_charges(
                            client, bare, pty, agent.pid, plan.tls_charges,
                            f"{tag}-tls-{label}", plan.human_pause_s, pings=False,
                            commands=False)
                        out[label].pop("stamps", None)
                        out[label].pop("cmd_stamps", None)
                    finally:
                        await bare.aclose()
                finally:
                    rc = agent.stop()
                if rc != 0:
                    raise RuntimeError(f"TLS agent exited {rc}:\n" + agent.log_tail())
    finally:
        proxy.stop()
        sim.stop()
    return out


async def nagle_segment(plan: Plan, work: Path, info: dict[str, str], pty: Pty,
                        tag: str) -> dict[str, Any]:
    """mosquitto with its default (Nagle on): ping and charge.start -> reply against the
    bare echo through the same broker, to set beside the main run's (Nagle off)."""
    broker = Broker(work / "broker-nagle", nagle=True)
    broker.start()
    echo = Echo(broker.port, f"{tag}n")
    agent = Agent(work / "agent-nagle", broker.port, info, pty.path, f"bench-{tag}-nagle")
    n = 10 if plan.quick else 30
    try:
        echo.start()
        async with BenchClient(broker.port, agent.terminal_id, echo_tag=f"{tag}n") as client:
            agent.start()
            try:
                await wait_online(client, 1, agent)
                await asyncio.sleep(0.5)
                say(f"broker with Nagle on (mosquitto's default): {n} pings, {n} starts")
                ping, bare_echo, start = [], [], []
                for i in range(n):
                    lat, _ = await client.command("ping")
                    ping.append(lat)
                    await asyncio.sleep(QUIET_S)
                    bare_echo.append(await client.echo_round_trip())
                    await asyncio.sleep(QUIET_S)
                    job_id = f"bench-{tag}-nagle-{i}"
                    lat, rep = await client.command(
                        "charge.start", job_id=job_id, patient_id=PATIENT,
                        appointment_id=APPOINTMENT, copay="1.00", allow_duplicate=True,
                        deadline_s=60)
                    if rep.get("state") != "pending":
                        raise RuntimeError(f"charge.start refused: {rep}")
                    start.append(lat)
                    await client.command("charge.cancel", job_id=job_id)
                    await asyncio.sleep(max(QUIET_S, 0.4))  # athena's 5 rps
            finally:
                agent.stop()
    finally:
        echo.stop()
        broker.stop()
    return {"ping": summary_ms(ping), "bare_echo": summary_ms(bare_echo),
            "charge_start_to_reply": summary_ms(start)}


async def run(plan: Plan) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lobbypay-bench-"))
    procs.PYCACHE[:] = [work / "pycache"]
    # compiled once, as at install time, so start-up measures imports, not compiling
    warm = ("import lobbypay.cli, lobbypay.app, lobbypay.sim.athena, "
            "lobbypay_hw.reader_serial, benchlib.echo, benchlib.delayproxy")
    subprocess.run([sys.executable, "-c", warm], check=True,  # noqa: S603, ASYNC221 - once
                   env=child_env())
    broker = Broker(work / "broker", nagle=plan.broker_nagle)
    sim = Simulator(work)
    pty = Pty()
    tag = uuid.uuid4().hex[:6]
    details: dict[str, Any] = {}
    echo: Echo | None = None
    agent: Agent | None = None
    ok = False
    try:
        broker.start()
        info = sim.start()
        echo = Echo(broker.port, tag)
        echo.start()
        say("balance rules on a 10,000-claim patient")
        details["balance"] = measure_balance(plan.balance_runs)
        say("bare interpreter start and the agent's imports")
        details["python_start"] = bare_python_start(3)
        agent = Agent(work / "agent", broker.port, info, pty.path, f"bench-{tag}",
                      display=plan.display)
        async with BenchClient(broker.port, agent.terminal_id, echo_tag=tag) as client:
            say(f"start-up x{plan.starts}")
            details["startup"] = await measure_startup(agent, client, plan.starts)
            say("start-up under -X importtime")
            imp = work / "importtime.txt"
            agent.start(python_flags=("-X", "importtime"), stderr_path=imp)
            await wait_online(client, agent.runs, agent)
            upto = imp.stat().st_size  # what it imported until online, not while stopping
            agent.stop()
            details["imports"] = import_times(imp, upto)

            # the measured run carries the step trace (a few perf_counter() calls and list
            # appends per charge, written to this file when the agent exits)
            trace = work / "steps.json"
            agent.env = {**agent.env, "LOBBYPAY_TEST_MODE": "1",
                         "LOBBYPAY_STEPTRACE": str(trace)}
            agent.start(profile=plan.profile)
            await wait_online(client, agent.runs, agent)
            await asyncio.sleep(1.0)
            rss_start = procfs.memory_kb(agent.pid)

            say(f"idle CPU and disk writes over {plan.idle_s:g} s")
            c0, t0, io0 = procfs.cpu_seconds(agent.pid), time.monotonic(), procfs.io(agent.pid)
            await asyncio.sleep(plan.idle_s)
            c1, t1, io1 = procfs.cpu_seconds(agent.pid), time.monotonic(), procfs.io(agent.pid)
            details["idle"] = {"seconds": round(t1 - t0, 2), "cpu_s": round(c1 - c0, 3),
                               "pct_of_one_core": (c1 - c0) / (t1 - t0) * 100,
                               "io": {k: io1[k] - io0[k] for k in io0}}

            bare = Bare(info, client, agent.state_dir)
            try:
                await bare.login()
                await bare.warm_up()
                say(f"{plan.charges} charges, swipe when the retained state shows pending, "
                    f"one a second, with bare baselines")
                details["charges"] = await measure_charges(
                    client, bare, pty, agent.pid, plan.charges, tag, None)
                say(f"{plan.human_charges} charges, swipe {plan.human_pause_s:g} s after "
                    "pending")
                details["charges_human"] = await measure_charges(
                    client, bare, pty, agent.pid, plan.human_charges, f"{tag}-h",
                    plan.human_pause_s, pings=False)
                if shutil.which("strace"):
                    say(f"fsync count under strace, {plan.traced_charges} charges")
                    details["syncs"] = await count_syncs(client, pty, agent.pid,
                                                         plan.traced_charges, tag, work)
                say(f"throughput at 1/4/16 in flight, {plan.throughput_s:g} s each")
                details["throughput"] = await measure_throughput(client, bare, plan.throughput_s)
                say(f"memory over {plan.commands:,} commands")
                job_ids = [f"bench-{tag}-{i}" for i in range(plan.charges)]
                c0 = procfs.cpu_seconds(agent.pid)
                mem = await measure_memory(client, agent, plan.commands, job_ids)
                mem["agent_cpu_ms_per_command"] = round(
                    (procfs.cpu_seconds(agent.pid) - c0) / plan.commands * 1000, 3)
                mem["start_kb"] = rss_start
                details["memory"] = mem
            finally:
                await bare.aclose()
            details["agent_cpu_total_s"] = procfs.cpu_seconds(agent.pid)
            rc = agent.stop()
            if rc != 0:
                raise RuntimeError(f"agent exited {rc} on SIGTERM:\n" + agent.log_tail())
            agent.env = {k: v for k, v in agent.env.items()
                         if k not in ("LOBBYPAY_TEST_MODE", "LOBBYPAY_STEPTRACE")}
            marks = [(float(t), str(n)) for t, n in json.loads(trace.read_text())]
            for key in ("charges", "charges_human"):
                details[key]["steps"] = swipe_steps(marks, details[key].pop("stamps"))
                details[key]["command_steps"] = swipe_steps(
                    marks, details[key].pop("cmd_stamps"), COMMAND_STEPS,
                    "reply taken off the app's client")
        if not plan.skip_tls:
            details["tls"] = await tls_segment(plan, work, broker, pty, tag)
        if not plan.skip_nagle and not plan.broker_nagle:
            details["nagle"] = await nagle_segment(plan, work, info, pty, tag)
        ok = True
    finally:
        if agent is not None:
            agent.stop()
        if echo is not None:
            echo.stop()
        sim.stop()
        broker.stop()
        pty.close()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"run failed; its files are kept in {work}")
    return details


def figures(d: dict[str, Any]) -> list[Figure]:
    ch = d["charges"]
    sw, bs = ch["swipe_to_final"], ch["bare_swipe_path"]["total"]
    cs, bc = ch["charge_start_to_reply"], ch["bare_command_path"]["total"]
    hu = d["charges_human"]
    mem = d["memory"]
    hwm_mb = mem["end_kb"]["VmHWM"] / 1024
    growth_mb = (mem["end_kb"]["VmRSS"] - mem["after_warmup_kb"]["VmRSS"]) / 1024
    tp = d["throughput"]

    def rate(kind: str, conc: int) -> float:
        return next(r["per_s"] for r in tp[kind] if r["concurrency"] == conc)

    cpu = ch["agent_cpu_ms_start_to_final"]
    out = [
        ratio_figure("swipe_to_final_p50", "ms", sw["p50"], bs["p50"], 1.5,
                     "swipe when state shows pending; vs fsync + POST (keep-alive) + "
                     "MQTT publish->receive"),
        ratio_figure("swipe_to_final_p99", "ms", sw["p99"], bs["p99"], 3.0),
        ratio_figure("swipe_to_final_human_p50", "ms", hu["swipe_to_final"]["p50"],
                     hu["bare_swipe_path"]["total"]["p50"], 1.5,
                     f"swipe {hu['pause_s']:g} s after pending"),
        ratio_figure("command_to_reply_p50", "ms", cs["p50"], bc["p50"], 1.5,
                     "charge.start (copay) vs MQTT round trip + GET patient + GET appt"),
        Figure("command_to_reply_p99", "ms", cs["p99"], bc["p99"], "-", None,
               cs["p99"] / bc["p99"]),
        Figure("swipe_to_final_p50_vs_raw", "ms", sw["p50"],
               ch["bare_swipe_path"]["total_raw"]["p50"], "-", None,
               sw["p50"] / ch["bare_swipe_path"]["total_raw"]["p50"],
               "baseline with the POST written as raw bytes, no HTTP library"),
        Figure("command_to_reply_p50_vs_raw", "ms", cs["p50"],
               ch["bare_command_path"]["total_raw"]["p50"], "-", None,
               cs["p50"] / ch["bare_command_path"]["total_raw"]["p50"],
               "baseline with the GETs written as raw bytes, no HTTP library"),
        ratio_figure("ping_p50", "ms", ch["ping"]["p50"], ch["bare_echo"]["p50"], 1.5,
                     "vs the bare MQTT echo"),
        abs_figure("cpu_per_charge", "ms", cpu["mean"], 5.0,
                   note=f"agent CPU charge.start -> final (mean; p50 {cpu['p50']:.2f}); "
                        f"all CPU per charge {ch['agent_cpu_ms_per_charge_all']:.2f} ms"),
        abs_figure("disk_write_per_charge", "KiB", ch["io_per_charge"]["write_bytes"] / 1024,
                   64.0, note="/proc/<pid>/io write_bytes"),
        abs_figure("idle_disk_write", "KiB", d["idle"]["io"]["write_bytes"] / 1024, 0.0,
                   note=f"write_bytes over {d['idle']['seconds']:g} s idle"),
        abs_figure("idle_cpu", "%", d["idle"]["pct_of_one_core"], 0.2,
                   note=f"of one core over {d['idle']['seconds']:g} s"),
        abs_figure("peak_rss", "MB", hwm_mb, 45.0, note="VmHWM of the agent process"),
        abs_figure("rss_growth_after_warmup", "MB", growth_mb, 2.0,
                   note=f"{mem['commands']:,} commands: start "
                        f"{mem['start_kb']['VmRSS'] / 1024:.1f}, warm "
                        f"{mem['after_warmup_kb']['VmRSS'] / 1024:.1f}, end "
                        f"{mem['end_kb']['VmRSS'] / 1024:.1f} MB"),
        abs_figure("startup", "s", d["startup"]["median_s"], 0.3,
                   baseline=d["python_start"]["python_pass_s"],
                   note=f"median of {len(d['startup']['starts_s'])}; baseline: bare "
                        f"interpreter; imports {d['imports']['total_ms']:.0f} ms"),
        abs_figure("balance_10k_claims", "ms", d["balance"]["evaluate"]["p50"], 20.0,
                   baseline=d["balance"]["json_loads"]["p50"],
                   note="baseline: json.loads of the same body"),
    ]
    if "syncs" in d:
        out.insert(9, abs_figure("fsyncs_per_charge", "", d["syncs"]["per_charge"], 3.0,
                                 note=f"strace over {d['syncs']['charges']} charges: "
                                      f"{d['syncs']['by_file']}"))
    tls = d.get("tls", {})
    if "warm" in tls and "cold" in tls:
        w, c = tls["warm"], tls["cold"]
        wb = w["bare_swipe_path"]["total"]["p50"]
        out.append(ratio_figure("tls_swipe_to_final_warm_p50", "ms", w["swipe_to_final"]["p50"],
                                wb, 1.5, f"TLS, {tls['delay_ms_each_way']:g} ms each way; "
                                "vs fsync + POST on a keep-alive TLS connection + MQTT"))
        out.append(Figure("tls_swipe_to_final_cold_p50", "ms", c["swipe_to_final"]["p50"],
                          w["swipe_to_final"]["p50"], "-", None,
                          c["swipe_to_final"]["p50"] / w["swipe_to_final"]["p50"],
                          "POST opens TCP+TLS after the swipe; baseline: warm"))
    ng = d.get("nagle")
    if ng:
        out.append(Figure("nagle_ping_p50", "ms", ng["ping"]["p50"], ng["bare_echo"]["p50"],
                          "-", None, ng["ping"]["p50"] / ng["bare_echo"]["p50"],
                          "broker with Nagle on (mosquitto's default); baseline: bare echo"))
        out.append(Figure("nagle_command_to_reply_p50", "ms",
                          ng["charge_start_to_reply"]["p50"], cs["p50"], "-", None,
                          ng["charge_start_to_reply"]["p50"] / cs["p50"],
                          "Nagle on; baseline: the same with set_tcp_nodelay true"))
    for kind, base in (("ping", "bare_mqtt_echo"), ("balance.get", "bare_get")):
        for conc in (1, 4, 16):
            v, b = rate(kind, conc), rate(base, conc)
            out.append(Figure(f"throughput_{kind.replace('.', '_')}_c{conc}", "cmd/s", v, b,
                              "-", None, v / b if b else None,
                              f"baseline: {base.replace('_', ' ')}"))
    return out


def table(figs: list[Figure]) -> str:
    head = f"{'figure':<30}{'value':>12}{'baseline':>12}{'ratio':>8}  {'target':<12}{'result':<6}"
    lines = [head, "-" * len(head)]
    for f in figs:
        base = "-" if f.baseline is None else f"{f.baseline:.3f}"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        res = "info" if f.ok is None else ("PASS" if f.ok else "MISS")
        lines.append(f"{f.name:<30}{f.value:>10.3f}{f.unit:>2}{base:>12}{ratio:>8}  "
                     f"{f.target:<12}{res:<6}")
    return "\n".join(lines)


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke version (~30 s)")
    ap.add_argument("--json", type=Path, help="where to write the JSON results")
    ap.add_argument("--charges", type=int, help="charges for the swipe figures")
    ap.add_argument("--idle-s", type=float, help="seconds of idle CPU measurement")
    ap.add_argument("--commands", type=int, help="commands in the memory run")
    ap.add_argument("--broker-nagle", action="store_true",
                    help="run mosquitto with its default (Nagle on) instead of set_tcp_nodelay")
    ap.add_argument("--display", choices=DISPLAYS, default="none",
                    help="the display the agent drives (peak RSS with each: docs/PERFORMANCE.md)")
    ap.add_argument("--no-tls", action="store_true",
                    help="skip the TLS + delayed-link comparison of the warm connection")
    ap.add_argument("--no-nagle", action="store_true",
                    help="skip the run against a broker with Nagle on")
    ap.add_argument("--profile", type=Path,
                    help="run the measured agent under cProfile, stats to this file "
                         "(slows it down: figures from such a run are not comparable)")
    args = ap.parse_args(argv)
    plan = make_plan(args)
    when = datetime.now(UTC)
    load_start = os.getloadavg()
    try:
        details = asyncio.run(run(plan))
    except Exception as exc:  # noqa: BLE001 - report and exit 2
        import traceback

        traceback.print_exc()
        print(f"bench: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    figs = figures(details)
    result = {
        "when": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "scripts/bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": plan.quick,
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in plan.__dict__.items()},
        "machine": {**machine(), "loadavg_start": load_start},
        "figures": {f.name: f.as_dict() for f in figs},
        "details": details,
    }
    path = args.json or ROOT / "bench-results" / f"{when.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"lobbypay bench{' --quick' if plan.quick else ''}: {m['cpu']}, {m['cores']} cores, "
          f"Python {m['python']}, {m['mosquitto']}")
    print(table(figs))
    for key, field, label in (
            ("charges", "steps", "swipe path, swipe when state shows pending"),
            ("charges_human", "steps", "swipe path, swipe after the pause"),
            ("charges", "command_steps", "charge.start (copay) to its reply")):
        steps = details.get(key, {}).get(field)
        if steps:
            print(f"\n{label} ({details[key]['charges']} charges):")
            print(steps_table(steps, "step" if field == "command_steps" else "swipe path step"))
    print("\nload average (1 / 5 / 15 min) at the start "
          + " / ".join(f"{x:.2f}" for x in load_start) + ", at the end "
          + " / ".join(f"{x:.2f}" for x in m["loadavg"]))
    print(f"JSON: {path}")
    return 0 if all(f.ok is not False for f in figs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
