#!/usr/bin/env python3
"""The athena client's overhead per GET, against a bare httpx GET.

Starts the athena simulator (in a subprocess by default, so the server does not share the
client's GIL), then alternates, --runs times each:

* ``client``: ``AthenaClient.get_patient("60178", "1")`` (token cache check, rate limiter
  disabled, X-Request-Id, response classification, JSON decode, shape check);
* ``bare``: ``httpx.AsyncClient.get`` of the same URL with the same bearer token, plus
  ``resp.json()``.

The client's rate limit is DISABLED for the run (``rate_limit_rps=None``): at the default
5 rps it would dominate the measurement by design. Both sides use one keep-alive
connection. Prints median and p95 per side and the ratio of medians; target under 1.2x.

    .venv/bin/python scripts/bench_athena.py [--runs N] [--inproc] [--json] [--target R]

Exit status 1 when the ratio misses --target (default 1.2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "agent"))

import httpx  # noqa: E402
from lobbypay.shell.athena import AthenaClient  # noqa: E402
from lobbypay.sim.athena import AthenaSim  # noqa: E402

PATIENT_ID = "60178"
DEPARTMENT_ID = "1"


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _measure(info: dict[str, str], runs: int, warmup: int) -> dict[str, Any]:
    client = AthenaClient(
        info["base_url"],
        info["practice_id"],
        info["client_id"],
        info["client_secret"],
        rate_limit_rps=None,  # disabled for the benchmark (see the module docstring)
    )
    url = f"{info['base_url']}/v1/{info['practice_id']}/patients/{PATIENT_ID}"
    params = {"showbalancedetails": "true", "departmentid": DEPARTMENT_ID}
    try:
        await client.get_patient(PATIENT_ID, DEPARTMENT_ID)  # fetches and caches the token
        token = client._tokens.cached or ""  # noqa: SLF001 - the same token
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as bare:

            async def run_client() -> float:
                t0 = time.perf_counter()
                await client.get_patient(PATIENT_ID, DEPARTMENT_ID)
                return time.perf_counter() - t0

            async def run_bare() -> float:
                t0 = time.perf_counter()
                resp = await bare.get(url, params=params)
                resp.raise_for_status()
                resp.json()
                return time.perf_counter() - t0

            for _ in range(warmup):
                await run_client()
                await run_bare()
            client_s: list[float] = []
            bare_s: list[float] = []
            for i in range(runs):  # alternate the order so neither side always goes first
                if i % 2:
                    client_s.append(await run_client())
                    bare_s.append(await run_bare())
                else:
                    bare_s.append(await run_bare())
                    client_s.append(await run_client())
    finally:
        await client.aclose()
    c_med, b_med = statistics.median(client_s), statistics.median(bare_s)
    return {
        "runs": runs,
        "endpoint": "GET /v1/{practice}/patients/{id}?showbalancedetails=true&departmentid=1",
        "client_rate_limit": "disabled",
        "client": {"median_ms": c_med * 1000, "p95_ms": _p95(client_s) * 1000},
        "bare_httpx": {"median_ms": b_med * 1000, "p95_ms": _p95(bare_s) * 1000},
        "ratio_median": c_med / b_med,
        "ratio_p95": _p95(client_s) / _p95(bare_s),
    }


def _start_subprocess_sim() -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "agent")}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "lobbypay.sim.athena", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None  # noqa: S101 - PIPE was asked for
    info: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--inproc", action="store_true", help="run the simulator in a thread")
    parser.add_argument("--target", type=float, default=1.2, help="max ratio of medians")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    if args.inproc:
        with AthenaSim() as sim:
            info = {
                "base_url": sim.base_url,
                "practice_id": sim.practice_id,
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            }
            result = asyncio.run(_measure(info, args.runs, args.warmup))
    else:
        proc, info = _start_subprocess_sim()
        try:
            result = asyncio.run(_measure(info, args.runs, args.warmup))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
    result["simulator"] = "thread" if args.inproc else "subprocess"
    result["target_ratio"] = args.target
    result["ok"] = result["ratio_median"] <= args.target

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"athena GET overhead, {result['runs']} runs each, simulator in a "
            f"{result['simulator']}, client rate limit disabled"
        )
        print(f"{'':<12}{'median ms':>12}{'p95 ms':>12}")
        for name in ("client", "bare_httpx"):
            row = result[name]
            print(f"{name:<12}{row['median_ms']:>12.3f}{row['p95_ms']:>12.3f}")
        verdict = "ok" if result["ok"] else "MISSED"
        print(
            f"ratio (median) {result['ratio_median']:.3f}x, p95 {result['ratio_p95']:.3f}x; "
            f"target < {args.target}x: {verdict}"
        )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
