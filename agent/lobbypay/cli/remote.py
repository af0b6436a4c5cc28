"""The commands a terminal answers, sent over MQTT: ``balance`` (``balance.get``),
``charge`` (``charge.start``; ``--wait`` prints its events to the final one), ``void``
(``charge.void`` on the staff topic) and ``receipt`` (``receipt.email``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

from lobbypay.cli.connection import Connection, connection_from, unreachable
from lobbypay.ui import (
    EXIT_CONFIG,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Style,
    balance_tables,
    event_line,
    fail,
    parse_claims,
    print_json,
)

#: Seconds a command waits for the terminal's reply (balance and charge.start wait for
#: athena reads, which the agent bounds by athena.timeout_s, 20 s by default).
REPLY_TIMEOUT_S = 30.0
FINAL_STATES = frozenset({"succeeded", "declined", "failed", "canceled", "expired", "voided"})


def _command_error(exc: Any, as_json: bool) -> int:
    if as_json:
        print_json(exc.reply)
    print(f"lobbypay: the terminal said {exc.code}: {exc.message}", file=sys.stderr)
    return EXIT_FAIL


def _one_command(args: argparse.Namespace, staff: bool, send: Callable[[Any], Any],
                 done: Callable[[dict[str, Any]], str]) -> int:
    """Connect, send one command (``send(client)``), print ``done(reply)`` or the reply."""
    from lobbypay.client import ClientError, CommandError

    conn = connection_from(args)

    async def run() -> dict[str, Any]:
        async with conn.client(staff=staff) as term:
            reply: dict[str, Any] = await send(term)
            return reply

    try:
        reply = asyncio.run(run())
    except CommandError as exc:
        return _command_error(exc, args.json)
    except (ValueError, TypeError) as exc:
        return fail(str(exc), EXIT_CONFIG)
    except (ClientError, OSError, TimeoutError) as exc:
        return unreachable(conn, exc)
    if args.json:
        print_json(reply)
    else:
        print(done(reply))
    return EXIT_OK


def cmd_balance(args: argparse.Namespace) -> int:
    return _one_command(
        args, False,
        lambda t: t.balance(args.patient, args.department, args.appointment,
                            timeout=REPLY_TIMEOUT_S),
        lambda bal: balance_tables(bal, Style.for_stream(sys.stdout, args.no_color)))


async def _charge_async(conn: Connection, args: argparse.Namespace,
                        claims: list[tuple[str, str]]) -> int:
    st = Style.for_stream(sys.stdout, args.no_color)
    async with conn.client() as term:
        events = term.events(args.job_id)
        reply = await term.charge(
            args.job_id, args.patient, copay=args.copay, claims=claims,
            appointment_id=args.appointment, department_id=args.department,
            allow_duplicate=args.allow_duplicate, deadline_s=args.deadline,
            timeout=REPLY_TIMEOUT_S, language=args.language)
        if args.json:
            print(json.dumps(reply), flush=True)
        else:
            print(f"job {args.job_id}: started ({reply.get('state')})", flush=True)
        if not args.wait:
            await events.aclose()
            return EXIT_OK
        final: dict[str, Any] | None = None
        if reply.get("state") in FINAL_STATES:
            # The same job_id and body again: the job ended before we subscribed.
            await events.aclose()
            final = await term.get(args.job_id)
            print(json.dumps(final) if args.json else event_line(final, st), flush=True)
            return EXIT_OK if final.get("state") == "succeeded" else EXIT_FAIL
        async with asyncio.timeout(args.timeout):
            async for ev in events:
                print(json.dumps(ev) if args.json else event_line(ev, st), flush=True)
                if ev.get("final"):
                    final = ev
        return EXIT_OK if final is not None and final.get("state") == "succeeded" else EXIT_FAIL


def cmd_charge(args: argparse.Namespace) -> int:
    from lobbypay.client import ClientError, CommandError

    try:
        claims = parse_claims(args.claim or [])
    except ValueError as exc:
        return fail(str(exc), EXIT_CONFIG)
    args.job_id = args.job_id or f"cli-{uuid.uuid4().hex[:12]}"
    conn = connection_from(args)
    try:
        return asyncio.run(_charge_async(conn, args, claims))
    except CommandError as exc:
        return _command_error(exc, args.json)
    except (ValueError, TypeError) as exc:
        return fail(str(exc), EXIT_CONFIG)
    except TimeoutError:
        return fail(f"job {args.job_id}: no final event within {args.timeout:g} s",
                    EXIT_UNREACHABLE)
    except (ClientError, OSError) as exc:
        return unreachable(conn, exc)


def cmd_void(args: argparse.Namespace) -> int:
    # charge.void is taken only on the staff topic (protocol 10): this login must be a
    # front-desk one under the broker's ACL, and the terminal needs [staff] enabled
    return _one_command(args, True, lambda t: t.void(args.job_id, timeout=REPLY_TIMEOUT_S),
                        lambda r: f"job {r.get('job_id')}: {r.get('state')}")


def cmd_receipt(args: argparse.Namespace) -> int:
    from lobbypay.core.commands import mask_email

    return _one_command(
        args, args.staff,
        lambda t: t.email_receipt(args.job_id, args.email, timeout=REPLY_TIMEOUT_S),
        lambda r: f"job {r.get('job_id')}: receipt emailed to {mask_email(args.email)}")

