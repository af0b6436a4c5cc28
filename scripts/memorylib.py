"""The agent's memory with each display driver: start RSS, peak RSS (VmHWM), PASS/MISS.

For each display: the real agent (``python -m lobbypay run``, the bench's default config)
on a loopback mosquitto and athena simulator, driving that display the bench's way
(``hd44780-i2c`` and ``ssd1306`` on an I2C bus that does not exist, so the driver loads
its libraries, lays out every screen and retries the bus; ``framebuffer`` on a regular
file with a fake sysfs, 800x480 at 32 bpp, so every screen is drawn and written). It runs
``--charges`` charges (each changes the screen several times: amount due, reading,
result), then ``--commands`` commands, 16 in flight (the bench's memory mix: ping,
charge.get, charge.list, a bad request, 1 % balance.get), and reads ``/proc/<pid>/status``.

    scripts/memory [--commands N] [--charges N] [--display D ...] [--smaps] [--json PATH]

Exit status 0 = every display's peak within ``--target-mb`` (45), 1 = some MISS, 2 = the
run failed. Not part of the test suite (tests/integration/test_memory_smoke.py runs it
with a few commands); docs/PERFORMANCE.md "Peak RSS with each display" has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for extra in (ROOT / "scripts", ROOT / "agent", ROOT / "drivers"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from benchlib import procs  # noqa: E402
from benchlib.mqttc import BenchClient  # noqa: E402
from benchlib.procs import DISPLAYS, Agent, Broker, Pty, Simulator, child_env  # noqa: E402
from benchlib.run import measure_memory, one_charge, wait_online  # noqa: E402

TARGET_MB = 45.0


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and the RSS split (anonymous, file, shared memory) in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0])
    return out


def smaps_by_file(pid: int) -> list[tuple[str, int]]:
    """Resident kB per mapped file (``[heap]``, ``[anon]`` and the like for the rest),
    largest first."""
    per: dict[str, int] = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split(None, 5)
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:
                name = head[5].strip() if len(head) == 6 else "[anon]"
                continue
            if line.startswith("Rss:"):
                per[name] = per.get(name, 0) + int(line.split()[1])
    return sorted(per.items(), key=lambda kv: -kv[1])


async def measure_display(display: str, work: Path, broker: Broker, info: dict[str, str],
                          pty: Pty, charges: int, commands: int, smaps: bool,
                          env: dict[str, str]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    agent = Agent(work / f"agent-{display}", broker.port, info, pty.path,
                  f"mem-{tag}-{display}", display=display, env=env)
    out: dict[str, Any] = {"display": display}
    async with BenchClient(broker.port, agent.terminal_id) as client:
        # a first start and one charge, stopped: every module the agent imports is then
        # compiled, as an install has it (compiling costs several MB the run would keep)
        agent.start()
        try:
            await wait_online(client, agent.runs, agent)
            await one_charge(client, pty, agent.pid, f"mem-{tag}-warm", "1.00", None)
        finally:
            rc = agent.stop()
        if rc != 0:
            raise RuntimeError(f"agent ({display}) exited {rc}:\n" + agent.log_tail())
        agent.start()
        try:
            await wait_online(client, agent.runs, agent)
            await asyncio.sleep(1.0)
            out["start_kb"] = status_kb(agent.pid)
            job_ids = []
            for i in range(charges):
                began = time.perf_counter()
                job_id = f"mem-{tag}-{i}"
                await one_charge(client, pty, agent.pid, job_id, f"{1 + i % 40}.{i % 100:02d}",
                                 None)
                job_ids.append(job_id)
                # athena's 5 rps limit: a charge reads two records and posts one
                await asyncio.sleep(max(0.0, began + 0.7 - time.perf_counter()))
            out["after_charges_kb"] = status_kb(agent.pid)
            mem = await measure_memory(client, agent, commands, job_ids)
            out["seconds"] = mem["seconds"]
            out["end_kb"] = status_kb(agent.pid)
            if smaps:
                out["smaps_kb"] = smaps_by_file(agent.pid)
        finally:
            rc = agent.stop()
    if rc != 0:
        raise RuntimeError(f"agent ({display}) exited {rc}:\n" + agent.log_tail())
    out["peak_mb"] = round(out["end_kb"]["VmHWM"] / 1024, 1)
    return out


async def run(displays: list[str], charges: int, commands: int, smaps: bool,
              env: dict[str, str]) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="lobbypay-memory-"))
    procs.PYCACHE[:] = [work / "pycache"]
    # compiled once, as at install time
    subprocess.run([sys.executable, "-c", "import lobbypay.cli, lobbypay.app, "  # noqa: S603, ASYNC221
                    "lobbypay.sim.athena, lobbypay_hw.reader_serial"], check=True,
                   env=child_env())
    broker, sim, pty = Broker(work / "broker"), Simulator(work), Pty()
    ok = False
    results = []
    try:
        broker.start()
        info = sim.start()
        for display in displays:
            say(f"{display}: {charges} charges, then {commands:,} commands")
            results.append(await measure_display(display, work, broker, info, pty, charges,
                                                 commands, smaps, env))
        ok = True
    finally:
        sim.stop()
        broker.stop()
        pty.close()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"run failed; its files are kept in {work}")
    return results


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def table(results: list[dict[str, Any]], target: float) -> str:
    head = (f"{'display':<14}{'start RSS':>10}{'charges':>9}{'end RSS':>9}{'peak':>7}"
            f"  {'target':<9}result")
    lines = [head, "-" * len(head)]
    for r in results:
        peak = r["end_kb"]["VmHWM"] / 1024
        verdict = "PASS" if peak <= target else f"MISS (+{peak - target:.1f})"
        lines.append(f"{r['display']:<14}{mb(r['start_kb']['VmRSS']):>10}"
                     f"{mb(r['after_charges_kb']['VmRSS']):>9}{mb(r['end_kb']['VmRSS']):>9}"
                     f"{peak:>7.1f}  <= {target:g} MB{'':<1}{verdict}")
    return "\n".join(lines)


def say(msg: str) -> None:
    print(f"memory: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=10_000, help="commands after the charges")
    ap.add_argument("--charges", type=int, default=20, help="charges before the commands")
    ap.add_argument("--display", action="append", choices=DISPLAYS,
                    help="a display to measure (repeat; default: every one)")
    ap.add_argument("--target-mb", type=float, default=TARGET_MB)
    ap.add_argument("--smaps", action="store_true",
                    help="also print the agent's resident memory per mapping at the end")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the agent (e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if args.charges < 1 or args.commands < 1:
        ap.error("--charges and --commands must be at least 1")
    displays = args.display or list(DISPLAYS)
    env = dict(kv.split("=", 1) for kv in args.env)
    when = datetime.now(UTC)
    try:
        results = asyncio.run(run(displays, args.charges, args.commands, args.smaps, env))
    except Exception as exc:  # noqa: BLE001 - report and exit 2
        import traceback

        traceback.print_exc()
        print(f"memory: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"lobbypay memory, {when:%Y-%m-%d %H:%M} UTC: {args.charges} charges then "
          f"{args.commands:,} commands per display; MB = kB / 1024")
    print(table(results, args.target_mb))
    if args.smaps:
        for r in results:
            print(f"\n{r['display']}: resident kB per mapping at the end")
            for name, kb in r["smaps_kb"][:25]:
                print(f"{kb:>8}  {name}")
    if args.json:
        args.json.write_text(json.dumps({
            "when": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "commands": args.commands,
            "charges": args.charges, "target_mb": args.target_mb, "env": env,
            "results": results}, indent=2) + "\n")
    return 0 if all(r["end_kb"]["VmHWM"] / 1024 <= args.target_mb for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
