"""The long proof runs (docs/RELIABILITY.md). Real agent, mosquitto, athena simulator, pty.

    scripts/prove crash-matrix [--runs 20] [--scenario NAME ...]
    scripts/prove fuzz [--cases 100000] [--seed 1] [--chunk 2000]
    scripts/prove load [--seconds 60] [--nodelay]
    scripts/prove money [--rounds 5]   (wrong clocks, coarse and DST-fold receipts, two
                                        unknown jobs, full disk and held lock: each case
                                        checks one POST per job, no false not_charged,
                                        no lost job, the terminal free again)
    scripts/prove all            (crash-matrix --runs 20, fuzz --cases 100000, load --seconds 60,
                                  money --rounds 5)

Each prints a table / JSON summary and exits 1 if anything was lost, unanswered or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "drivers")]

from tests.proof import fuzz as fz  # noqa: E402
from tests.proof.load import run_load  # noqa: E402
from tests.proof.rig import (  # noqa: E402
    CRASH_SCENARIOS,
    Parts,
    QuietApp,
    crash_run,
    crash_table,
    wait_online,
)


async def crash_matrix(root: Path, runs: int, scenarios: list[str]) -> int:
    results = []
    t0 = time.monotonic()
    with Parts.up(root) as parts:
        for n in range(runs):
            for name in scenarios:
                r = await crash_run(parts, name)
                results.append(r)
                if not r.ok:
                    print(f"FAIL {name} run {n + 1}: {r}", flush=True)
            print(f"round {n + 1}/{runs} done ({time.monotonic() - t0:.0f} s)", flush=True)
    print(crash_table(results))
    print(f"{len(results)} crash runs in {time.monotonic() - t0:.0f} s")
    return 0 if all(r.ok for r in results) else 1


async def fuzz(root: Path, cases: int, seed: int, chunk: int) -> int:
    total = fz.FuzzStats()
    t0 = time.monotonic()
    with Parts.up(root) as parts:
        run = parts.new_run("fuzz")
        try:
            async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
                run.agent.log_level = "info"
                run.agent.write_config()
                run.agent.start()
                await wait_online(app, 1)
                start = 0
                while start < cases:
                    n = min(chunk, cases - start)
                    st = await fz.fire(parts.broker.port, run.agent.terminal_id,
                                       fz.payloads(seed, n, start), first_case=start)
                    total.sent += st.sent
                    total.answered += st.answered
                    total.ok_true += st.ok_true
                    total.codes.update(st.codes)
                    total.bad += st.bad
                    start += n
                    # free the terminal of a fuzz-started job, so later starts are tried too
                    state = (await app.command("ping", timeout=30))["state"]
                    if state["job_id"] and state["job_state"] == "pending":
                        await app.command("charge.cancel", job_id=state["job_id"], timeout=30)
                    print(f"{start}/{cases} cases, {len(total.bad)} problems, "
                          f"{time.monotonic() - t0:.0f} s, agent rss {run.agent.rss_kib()[0]} KiB",
                          flush=True)
                    if not run.agent.alive():
                        print("AGENT DIED")
                        return 1
                # and a real charge still works
                rep = await app.command("charge.start", job_id="after-fuzz", patient_id="60178",
                                        claims=[{"claim_id": "5569", "amount": "2.22"}],
                                        allow_duplicate=True, timeout=30)
                ok_after = bool(rep["ok"])
                if ok_after:
                    await app.wait_event("after-fuzz", "pending", timeout=30)
                    run.swipe()
                    final = await app.wait_event("after-fuzz", final=True, timeout=60)
                    ok_after = final["state"] == "succeeded"
        finally:
            run.close()
    total.seconds = time.monotonic() - t0
    out = fz.summary(total)
    out["charge_after_fuzz"] = "succeeded" if ok_after else "FAILED"
    print(json.dumps(out, indent=1))
    return 0 if not total.bad and total.unanswered == 0 and ok_after else 1


async def load(root: Path, seconds: float) -> int:
    with Parts.up(root) as parts:
        run = parts.new_run("load")
        run.agent.log_level = "info"
        try:
            async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
                run.agent.start()
                await wait_online(app, 1)
                stats = await run_load(run, app, seconds)
        finally:
            run.close()
    summary = stats.summary()
    print(json.dumps(summary, indent=1))
    ok = (stats.unanswered == 0 and not stats.problems and stats.charges_done > 0
          and set(stats.charge_states) == {"succeeded"} and stats.rss_growth_kib() < 4096)
    return 0 if ok else 1


MONEY_TESTS = ["tests/proof/test_money_clock.py", "tests/proof/test_money_disk.py"]


def money(rounds: int) -> int:
    """The money-fault cases of tests/proof, ``rounds`` times over (pytest per round)."""
    import re
    import subprocess

    t0 = time.monotonic()
    passed = failed = 0
    for n in range(rounds):
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *MONEY_TESTS],
            cwd=ROOT, capture_output=True, text=True)
        tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
        p = re.search(r"(\d+) passed", tail)
        f = re.search(r"(\d+) failed", tail)
        passed += int(p.group(1)) if p else 0
        failed += int(f.group(1)) if f else (0 if r.returncode == 0 else 1)
        print(f"round {n + 1}/{rounds}: {tail} ({time.monotonic() - t0:.0f} s)", flush=True)
        if r.returncode != 0:
            print(r.stdout[-4000:], flush=True)
    print(json.dumps({"rounds": rounds, "cases_run": passed + failed, "cases_failed": failed,
                      "seconds": round(time.monotonic() - t0)}, indent=1))
    return 0 if failed == 0 and passed > 0 else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crash-matrix")
    c.add_argument("--runs", type=int, default=20)
    c.add_argument("--scenario", action="append", choices=sorted(CRASH_SCENARIOS))
    f = sub.add_parser("fuzz")
    f.add_argument("--cases", type=int, default=100_000)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--chunk", type=int, default=2000)
    ld = sub.add_parser("load")
    ld.add_argument("--seconds", type=float, default=60)
    for sp in (c, f, ld):
        sp.add_argument("--nodelay", action="store_true",
                        help="broker with set_tcp_nodelay true (the recommended setting)")
    m = sub.add_parser("money")
    m.add_argument("--rounds", type=int, default=5)
    a = sub.add_parser("all")
    a.add_argument("--nodelay", action="store_true")
    args = p.parse_args()
    if getattr(args, "nodelay", False):
        os.environ["LOBBYPAY_PROOF_NODELAY"] = "1"
    root = Path(tempfile.mkdtemp(prefix="lobbypay-prove-"))
    print(f"work dir {root}", flush=True)
    if args.cmd == "crash-matrix":
        return asyncio.run(crash_matrix(root / "crash", args.runs,
                                        args.scenario or list(CRASH_SCENARIOS)))
    if args.cmd == "fuzz":
        return asyncio.run(fuzz(root / "fuzz", args.cases, args.seed, args.chunk))
    if args.cmd == "load":
        return asyncio.run(load(root / "load", args.seconds))
    if args.cmd == "money":
        return money(args.rounds)
    rc = asyncio.run(crash_matrix(root / "crash", 20, list(CRASH_SCENARIOS)))
    rc |= asyncio.run(fuzz(root / "fuzz", 100_000, 1, 2000))
    rc |= asyncio.run(load(root / "load", 60))
    rc |= money(5)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
