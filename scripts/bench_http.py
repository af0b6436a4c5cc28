#!/usr/bin/env python3
"""CPU per GET: under one ``httpx.AsyncClient``, httpx's default transport (httpcore on
anyio) against ``lobbypay.shell.http11.PooledTransport`` (h11 on an asyncio connection);
the same pool given an ``http11.Call`` directly, without httpx's request and response
objects (the athena client's way); and raw bytes on an open socket as the floor.

A loopback server in the same process answers every request with the same 1.2 KB JSON
body, Content-Length framed, on one keep-alive connection per side. Each side makes
--runs GETs (after 20 to warm up) and decodes the body; the figure is ``process_time``
per GET, so the server's share is in every side alike. Rounds alternate the sides.

    .venv/bin/python scripts/bench_http.py [--runs N] [--rounds R] [--json]

Not a pass/fail check: docs/PERFORMANCE.md (item 3 of the round) uses its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "agent"))

import httpx  # noqa: E402
from lobbypay.shell.http11 import Call, PooledTransport  # noqa: E402

PATIENT = b'{"patientid":"60178","firstname":"Ana","claimbalancedetails":[]}'
BODY = b"[" + b",".join([PATIENT] * 18) + b"]"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
          % (len(BODY), BODY))
PATH = "/v1/195900/patients/60178?showbalancedetails=true"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _httpx(url: str, runs: int, transport: httpx.AsyncBaseTransport | None) -> float:
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        headers = {"Authorization": "Bearer bench"}
        for _ in range(20):
            (await client.get(url + PATH, headers=headers)).json()
        t0 = time.process_time()
        for _ in range(runs):
            (await client.get(url + PATH, headers=headers)).json()
        return (time.process_time() - t0) / runs * 1000


async def _call(url: str, host: str, port: int, runs: int) -> float:
    pooled = PooledTransport(url, ssl_context=None, connect_timeout_s=5.0)
    head = ((b"host", f"{host}:{port}".encode()), (b"accept", b"application/json"))
    try:
        for i in range(runs + 20):
            if i == 20:
                t0 = time.process_time()
            # built per request, as the athena client builds each one
            call = Call(b"GET", PATH.encode(), [*head, (b"authorization", b"Bearer bench")],
                        read_s=5.0, write_s=5.0, connect_s=5.0)
            json.loads((await pooled.send(call)).content)
        return (time.process_time() - t0) / runs * 1000
    finally:
        await pooled.aclose()


async def _raw(host: str, port: int, runs: int) -> float:
    reader, writer = await asyncio.open_connection(host, port)
    request = (f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Authorization: Bearer bench\r\n\r\n").encode()
    try:
        for i in range(runs + 20):
            if i == 20:
                t0 = time.process_time()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            json.loads(await reader.readexactly(length))
        return (time.process_time() - t0) / runs * 1000
    finally:
        writer.close()


async def main(runs: int, rounds: int) -> dict[str, list[float]]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    url = f"http://{host}:{port}"
    out: dict[str, list[float]] = {"httpx_default": [], "pooled_h11": [], "call_h11": [],
                                   "raw_bytes": []}
    try:
        for _ in range(rounds):
            out["httpx_default"].append(await _httpx(url, runs, None))
            pooled = PooledTransport(url, ssl_context=None, connect_timeout_s=5.0)
            out["pooled_h11"].append(await _httpx(url, runs, pooled))
            out["call_h11"].append(await _call(url, host, port, runs))
            out["raw_bytes"].append(await _raw(host, port, runs))
    finally:
        await asyncio.sleep(0.1)  # the handlers see their connections end
        server.close()
        await server.wait_closed()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    result = asyncio.run(main(args.runs, args.rounds))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CPU ms per GET ({args.runs} GETs, {args.rounds} rounds)")
        for name, vals in result.items():
            print(f"  {name:<14} " + "  ".join(f"{v:.3f}" for v in vals))
