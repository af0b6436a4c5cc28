#!/usr/bin/env python3
"""A minimal check-in app: read a patient's balance, charge the copay and clean claims.

    python examples/checkin_app.py --host 127.0.0.1 --terminal lobby-1 --patient 60178 \\
        --appointment 1001 --claims all --yes

(60178 and 1001 are the athena simulator's patient and appointment; against the demo's
parts, use --terminal demo-lobby and the --port the demo prints, and `swipe visa` at its
prompt.) Without --copay it collects the copay athena expects for the appointment.

It prints what the patient owes (collectible claims, and the ones the terminal may not
collect with the reason), starts one charge for the copay plus the chosen collectible
claims, and prints the job's events until the final one. Exit status: 0 succeeded,
1 not charged (declined, failed, canceled, expired; nothing to charge, or not confirmed),
2 usage or command error.
See docs/client.md.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from decimal import Decimal
from typing import Any

from lobbypay.client import CommandError, NotConnected, TerminalClient

REASONS = {
    "not_clean": "claim not clean yet (insurance still pending): ask the front desk",
    "other_provider_group": "billed by another provider group: pay at that office",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="lobbypay example check-in app")
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker host")
    p.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password-file", help="file holding the MQTT password")
    p.add_argument("--tls", action="store_true", help="TLS to the broker (system CAs)")
    p.add_argument("--terminal", required=True, help="terminal id (terminal.id of the agent)")
    p.add_argument("--patient", required=True, help="athena patient id")
    p.add_argument("--department", help="athena department id (default: the terminal's)")
    p.add_argument("--appointment", help="appointment id (needed to collect a copay)")
    p.add_argument("--copay", default=None,
                   help='copay to collect, e.g. "25.00" (default: the expected copay)')
    p.add_argument("--claims", default="all",
                   help='collectible claims to pay: "all", "none" or claim ids "5569,5570"')
    p.add_argument("--job-id", default=None, help="idempotency key (default: a new one)")
    p.add_argument("--deadline", type=int, default=120, help="seconds to wait for a card (10-300)")
    p.add_argument("--yes", action="store_true", help="do not ask before charging")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds to wait for the final result")
    return p.parse_args(argv)


def show_balance(bal: dict[str, Any]) -> None:
    print(f"Patient {bal['patient_id']}, department {bal.get('department_id')}")
    copay = (bal.get("copay") or {}).get("expected")
    if copay is not None:
        print(f"  expected copay: {copay}")
    print("  collectible:")
    for c in bal.get("collectible", []):
        print(f"    claim {c['claim_id']:<10} {c.get('service_date', ''):<12} {c['balance']:>10}")
    if not bal.get("collectible"):
        print("    (none)")
    print(f"    total {bal.get('collectible_total', '0.00'):>34}")
    not_collectible = bal.get("not_collectible", [])
    if not_collectible:
        print("  not collectible here:")
        for c in not_collectible:
            reason = REASONS.get(c.get("reason", ""), c.get("reason", "?"))
            print(f"    claim {c['claim_id']:<10} {c['balance']:>10}  {reason}")


def choose_claims(bal: dict[str, Any], spec: str) -> list[tuple[str, str]]:
    collectible = {c["claim_id"]: c["balance"] for c in bal.get("collectible", [])}
    if spec == "none":
        return []
    if spec == "all":
        return list(collectible.items())
    chosen = []
    for claim_id in (s.strip() for s in spec.split(",") if s.strip()):
        if claim_id not in collectible:
            raise SystemExit(f"claim {claim_id} is not collectible at this terminal")
        chosen.append((claim_id, collectible[claim_id]))
    return chosen


def describe(event: dict[str, Any]) -> str:
    parts = [f"#{event['seq']}", event["state"]]
    card = event.get("card")
    if card:
        parts.append(f"{card.get('brand', 'card')} ending {card.get('last4', '????')}")
    amounts = event.get("amounts") or {}
    if event["state"] == "pending" and amounts.get("total"):
        parts.append(f"total {amounts['total']}: swipe the card on the terminal")
    if event.get("epayment_id"):
        parts.append(f"payment {event['epayment_id']}")
    error = event.get("error")
    if error:
        parts.append(f"({error.get('code')}: {error.get('message')})")
    return "  ".join(parts)


async def run(args: argparse.Namespace, password: str | None) -> int:
    async with TerminalClient(args.terminal, args.host, args.port, username=args.username,
                              password=password, tls=True if args.tls else None) as term:
        status = await term.status()
        if status is None or not status.get("online"):
            print(f"terminal {args.terminal} is not online", file=sys.stderr)
            return 2
        bal = await term.balance(args.patient, args.department, args.appointment)
        show_balance(bal)

        expected = (bal.get("copay") or {}).get("expected")
        copay = args.copay if args.copay is not None else (expected or "0.00")
        if args.appointment is None:
            copay = "0.00"
        claims = choose_claims(bal, args.claims)
        total = Decimal(copay) + sum((Decimal(a) for _, a in claims), Decimal("0"))
        if total <= 0:
            print("nothing to charge")
            return 1
        print(f"charge: copay {copay} + {len(claims)} claim(s) = {total:.2f}")
        answer = "y" if args.yes else await asyncio.to_thread(input, "start? [y/N] ")
        if answer.strip().lower() != "y":
            print("not charged")
            return 1

        job_id = args.job_id or f"checkin-{uuid.uuid4().hex[:12]}"
        events = term.events(job_id)  # subscribe to this job before it starts
        await term.charge(job_id, args.patient, copay=copay, claims=claims,
                          appointment_id=args.appointment, department_id=args.department,
                          deadline_s=args.deadline)
        print(f"job {job_id} started")

        loop = asyncio.get_running_loop()
        cancel_requested = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, cancel_requested.set)

        async def cancel_on_ctrl_c() -> None:
            await cancel_requested.wait()
            print("canceling...")
            try:
                await term.cancel(job_id)
            except CommandError as exc:
                print(f"cannot cancel: {exc.code} ({exc.message})")

        canceler = asyncio.create_task(cancel_on_ctrl_c())
        final: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(args.timeout):
                async for event in events:
                    print(describe(event))
                    if event.get("final"):
                        final = event
            if final is None:  # the stream ended without a final event: ask the terminal
                final = await term.wait_final(job_id, timeout=30)
        finally:
            canceler.cancel()
            loop.remove_signal_handler(signal.SIGINT)
        return 0 if final["state"] == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().strip()
    try:
        return asyncio.run(run(args, password))
    except CommandError as exc:
        extra = (f" (job {exc.reply.get('active_job_id')})"
                 if exc.code == "terminal_busy" else "")
        print(f"terminal said no: {exc.code}: {exc.message}{extra}", file=sys.stderr)
        return 2
    except NotConnected as exc:
        print(f"cannot reach the broker: {exc}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as exc:  # e.g. --copay 25 instead of 25.00
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("no answer in time (the job may still finish: check with charge.get)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
