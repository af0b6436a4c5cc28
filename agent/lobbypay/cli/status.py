"""``lobbypay status`` (this terminal's retained ``status`` and ``state``) and ``fleet``
(every terminal on a broker, from the retained topics). Both only read what the broker
keeps: nothing is sent to a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from lobbypay.cli.connection import Connection, connection_from, unreachable
from lobbypay.ui import (
    EXIT_FAIL,
    EXIT_OK,
    RESULT_STYLE,
    Cell,
    Style,
    print_json,
    screen_box,
    table,
)


async def _status_async(conn: Connection) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    async with conn.client() as term:
        return await term.status(timeout=1.5), await term.state(timeout=1.0)


def _err_text(err: Any) -> str | None:
    """athena.last_error is {code, message, ...} (or None); one line of it."""
    if not err:
        return None
    if isinstance(err, dict):
        at = f" (at {err['at']})" if err.get("at") else ""
        return f"{err.get('code')}: {err.get('message')}{at}"
    return str(err)


def _connected(part: dict[str, Any]) -> str:
    return "connected" if part.get("connected") else "NOT connected"


def cmd_status(args: argparse.Namespace) -> int:
    from lobbypay.client import ClientError

    conn = connection_from(args)
    try:
        status, state = asyncio.run(_status_async(conn))
    except (ClientError, OSError) as exc:
        return unreachable(conn, exc)
    online = bool(status and status.get("online"))
    if args.json:
        print_json({"terminal": conn.terminal_id, "status": status, "state": state})
        return EXIT_OK if online else EXIT_FAIL
    st = Style.for_stream(sys.stdout, args.no_color)
    if status is None:
        print(f"terminal {conn.terminal_id}: never seen on {conn.host}:{conn.port} "
              "(no retained status)")
        return EXIT_FAIL
    word = "online" if online else "offline"
    print(f"terminal {st('bold', str(conn.terminal_id))}: {st(RESULT_STYLE[word], word)}, "
          f"session {status.get('session')}, since {status.get('since')}, "
          f"version {status.get('version')}")
    if state and not online:
        print(st("dim", "  the terminal is offline: below is the last state it published"))
    if state:
        r, d, a = state.get("reader") or {}, state.get("display") or {}, state.get("athena") or {}
        rows: list[list[Cell]] = [
            ["job", f"{state.get('job_id') or '-'} ({state.get('job_state')})"],
            ["reader", f"{r.get('driver')} {_connected(r)}"],
            ["display", f"{d.get('driver')} {_connected(d)}"],
            ["athena", f"last ok {a.get('last_ok_at') or '-'}; last error "
                       f"{_err_text(a.get('last_error')) or '-'}"],
            ["outbox", f"{state.get('outbox')} event(s) not yet acknowledged by the broker"],
        ]
        print("\n".join(table(["", ""], rows, st).splitlines()[1:]))  # no header line
        print(screen_box([str(x) for x in state.get("screen") or []]))
    return EXIT_OK if online else EXIT_FAIL


def fleet_rows(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for tid in sorted(found):
        status = found[tid].get("status") or {}
        state = found[tid].get("state") or {}
        reader = state.get("reader") or {}
        athena = state.get("athena") or {}
        site, _, bare = tid.rpartition("/")  # "<site>/<id>" behind a prefixed bridge
        rows.append({
            "terminal": bare,
            "site": site or None,
            "online": bool(status.get("online")),
            "session": status.get("session"),
            "since": status.get("since"),
            "version": status.get("version"),
            "job_id": state.get("job_id"),
            "job_state": state.get("job_state"),
            "reader": f"{reader.get('driver')} {_connected(reader)}" if reader else None,
            "outbox": state.get("outbox"),
            "last_error": _err_text(athena.get("last_error")),
        })
    return rows


def cmd_fleet(args: argparse.Namespace) -> int:
    from lobbypay.client import ClientError, fleet

    conn = connection_from(args, need_terminal=False)
    try:
        found = asyncio.run(fleet(conn.host, conn.port, username=conn.username,
                                  password=conn.password, tls=conn.tls,
                                  protocol=conn.protocol, timeout=args.wait,
                                  settle=args.settle, site=args.site or "+"))
    except (ClientError, OSError) as exc:
        return unreachable(conn, exc)
    rows = fleet_rows(found)
    if args.json:
        print_json({"broker": f"{conn.host}:{conn.port}", "terminals": rows})
        return EXIT_OK
    if not rows:
        print(f"no terminals on {conn.host}:{conn.port}")
        return EXIT_OK
    st = Style.for_stream(sys.stdout, args.no_color)
    cells: list[list[Cell]] = []
    for r in rows:
        word = "online" if r["online"] else "offline"
        name = f"{r['site']}/{r['terminal']}" if r["site"] else r["terminal"]
        cells.append([name, (word, RESULT_STYLE[word]), str(r["session"] or "-"),
                      f"{r['job_id'] or '-'} {r['job_state'] or ''}".strip(),
                      r["reader"] or "-", str(r["outbox"] if r["outbox"] is not None else "-"),
                      r["last_error"] or "-"])
    print(table(["TERMINAL", "STATUS", "SESSION", "JOB", "READER", "OUTBOX", "LAST ERROR"],
                cells, st))
    return EXIT_OK

