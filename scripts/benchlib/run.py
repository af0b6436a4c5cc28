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
import json
import os
import platform
import shutil
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

from benchlib import procfs  # noqa: E402
from benchlib.mqttc import FINAL, BenchClient  # noqa: E402
from benchlib.procs import DISPLAYS, Agent, Broker, Echo, Pty, Simulator, child_env  # noqa: E402
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


@dataclass
class Plan:
    quick: bool
    charges: int
    idle_s: float
    commands: int
    starts: int
    throughput_s: float
    balance_runs: int
    broker_nagle: bool = False
    profile: Path | None = None
    display: str = "none"


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        base = Plan(True, charges=20, idle_s=10, commands=1000, starts=3, throughput_s=0.5,
                    balance_runs=5)
    else:
        base = Plan(False, charges=200, idle_s=60, commands=10_000, starts=5,
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

    def __init__(self, info: dict[str, str], client: BenchClient, fsync_dir: Path) -> None:
        self.info = info
        self.mqtt = client
        self.api = f"{info['base_url']}/v1/{info['practice_id']}"
        self.token = ""
        self.get_http = httpx.AsyncClient(timeout=10)  # keep-alive, like the agent's reads
        # the agent opens a fresh connection per payment POST (docs/athena.md); so does this
        self.post_http = httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        fsync_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(fsync_dir / "bench-fsync.bin", os.O_RDWR | os.O_CREAT, 0o600)
        self.n = 0

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
        os.close(self.fd)

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

    async def swipe_path(self, copay: str) -> dict[str, float]:
        """fsync + POST + MQTT publish->receive, in that order (the agent's order)."""
        t0 = time.perf_counter()
        f = self.fsync_write()
        p = await self.post(copay)
        m = await self.mqtt.oneway()
        return {"total": time.perf_counter() - t0, "fsync": f, "post": p, "mqtt_oneway": m}

    async def command_path(self) -> dict[str, float]:
        """MQTT round trip through the echo + GET of the patient."""
        t0 = time.perf_counter()
        m = await self.mqtt.echo_round_trip()
        g = await self.get()
        return {"total": time.perf_counter() - t0, "mqtt_round_trip": m, "get": g}


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
        evaluate_balances(payload, PATIENT, DEPARTMENT)
        t2 = time.perf_counter()
        dec.append(t1 - t0)
        ev.append(t2 - t1)
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


async def measure_charges(client: BenchClient, bare: Bare, pty: Pty, n: int,
                          tag: str) -> dict[str, Any]:
    swipe: list[float] = []
    start: list[float] = []
    b_swipe: list[dict[str, float]] = []
    b_cmd: list[dict[str, float]] = []
    for i in range(n):
        job_id = f"bench-{tag}-{i}"
        copay = f"{1 + i % 40}.{i % 100:02d}"
        pending = client.expect_event(job_id, "pending")
        lat, rep = await client.command(
            "charge.start", job_id=job_id, patient_id=PATIENT, appointment_id=APPOINTMENT,
            copay=copay, allow_duplicate=True, deadline_s=60)
        if not rep.get("ok") or rep.get("state") != "pending":
            raise RuntimeError(f"charge.start refused: {rep}")
        start.append(lat)
        await asyncio.wait_for(pending, 10)
        await asyncio.sleep(QUIET_S)
        final = client.expect_event(job_id, FINAL)
        t0 = pty.swipe(TRACKS + b"\r")
        try:
            t1, ev = await asyncio.wait_for(final, 15)
        except TimeoutError:
            raise RuntimeError(f"no final event for {job_id}") from None
        if ev.get("state") != "succeeded":
            raise RuntimeError(f"charge {job_id} ended {ev.get('state')}: {ev.get('error')}")
        swipe.append(t1 - t0)
        await asyncio.sleep(QUIET_S)
        b_swipe.append(await bare.swipe_path(copay))
        await asyncio.sleep(QUIET_S)
        b_cmd.append(await bare.command_path())
        await asyncio.sleep(QUIET_S)

    def parts(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {k: summary_ms([r[k] for r in rows]) for k in rows[0]}

    return {"charges": n, "swipe_to_final": summary_ms(swipe),
            "charge_start_to_reply": summary_ms(start),
            "bare_swipe_path": parts(b_swipe), "bare_command_path": parts(b_cmd)}


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
    and every 10th a balance.get (athena read). RSS after the first quarter (warm-up:
    the reply cache holds 2048 entries) and at the end."""
    warm = max(1, total // 4)
    issued = 0
    answered = 0
    rss_warm: dict[str, int] = {}
    lock = asyncio.Lock()

    async def one(k: int) -> None:
        m = k % 10
        if m == 0:
            _, rep = await client.command("balance.get", patient_id=PATIENT)
        elif m in (1, 2, 3, 4):
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


async def run(plan: Plan) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lobbypay-bench-"))
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
        agent = Agent(work, broker.port, info, pty.path, f"bench-{tag}", plan.display)
        async with BenchClient(broker.port, agent.terminal_id, echo_tag=tag) as client:
            say(f"start-up x{plan.starts}")
            details["startup"] = await measure_startup(agent, client, plan.starts)

            online = client.expect_status(lambda s: s.get("online") is True
                                          and s.get("session") == plan.starts + 1)
            agent.start(profile=plan.profile)
            await asyncio.wait_for(online, 20)
            await asyncio.sleep(1.0)
            rss_start = procfs.memory_kb(agent.pid)

            say(f"idle CPU over {plan.idle_s:g} s")
            c0, t0 = procfs.cpu_seconds(agent.pid), time.monotonic()
            await asyncio.sleep(plan.idle_s)
            c1, t1 = procfs.cpu_seconds(agent.pid), time.monotonic()
            details["idle"] = {"seconds": round(t1 - t0, 2), "cpu_s": round(c1 - c0, 3),
                               "pct_of_one_core": (c1 - c0) / (t1 - t0) * 100}

            bare = Bare(info, client, agent.state_dir)
            try:
                await bare.login()
                say(f"{plan.charges} charges (swipe -> succeeded), with bare baselines")
                c0 = procfs.cpu_seconds(agent.pid)
                details["charges"] = await measure_charges(client, bare, pty, plan.charges, tag)
                details["charges"]["agent_cpu_ms_per_charge"] = round(
                    (procfs.cpu_seconds(agent.pid) - c0) / plan.charges * 1000, 3)
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
    mem = d["memory"]
    hwm_mb = mem["end_kb"]["VmHWM"] / 1024
    growth_mb = (mem["end_kb"]["VmRSS"] - mem["after_warmup_kb"]["VmRSS"]) / 1024
    tp = d["throughput"]

    def rate(kind: str, conc: int) -> float:
        return next(r["per_s"] for r in tp[kind] if r["concurrency"] == conc)

    out = [
        ratio_figure("swipe_to_final_p50", "ms", sw["p50"], bs["p50"], 1.5,
                     "vs fsync + bare POST + MQTT publish->receive"),
        ratio_figure("swipe_to_final_p99", "ms", sw["p99"], bs["p99"], 3.0),
        ratio_figure("command_to_reply_p50", "ms", cs["p50"], bc["p50"], 1.5,
                     "charge.start vs MQTT round trip + bare GET"),
        Figure("command_to_reply_p99", "ms", cs["p99"], bc["p99"], "-", None,
               cs["p99"] / bc["p99"]),
        abs_figure("idle_cpu", "%", d["idle"]["pct_of_one_core"], 0.2,
                   note=f"of one core over {d['idle']['seconds']:g} s"),
        abs_figure("peak_rss", "MB", hwm_mb, 45.0, note="VmHWM of the agent process"),
        abs_figure("rss_growth_after_warmup", "MB", growth_mb, 2.0,
                   note=f"{mem['commands']:,} commands: start "
                        f"{mem['start_kb']['VmRSS'] / 1024:.1f}, warm "
                        f"{mem['after_warmup_kb']['VmRSS'] / 1024:.1f}, end "
                        f"{mem['end_kb']['VmRSS'] / 1024:.1f} MB"),
        abs_figure("startup", "s", d["startup"]["median_s"], 1.0,
                   baseline=d["python_start"]["python_pass_s"],
                   note=f"median of {len(d['startup']['starts_s'])}; baseline: bare "
                        f"interpreter; agent imports alone "
                        f"{d['python_start']['import_agent_s']:.2f} s"),
        abs_figure("balance_10k_claims", "ms", d["balance"]["evaluate"]["p50"], 20.0,
                   baseline=d["balance"]["json_loads"]["p50"],
                   note="baseline: json.loads of the same body"),
    ]
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
    ap.add_argument("--profile", type=Path,
                    help="run the measured agent under cProfile, stats to this file "
                         "(slows it down: figures from such a run are not comparable)")
    args = ap.parse_args(argv)
    plan = make_plan(args)
    when = datetime.now(UTC)
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
        "machine": machine(),
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
    print(f"JSON: {path}")
    return 0 if all(f.ok is not False for f in figs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
