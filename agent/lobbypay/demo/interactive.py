"""The interactive demo: a prompt (``help`` lists its commands) to start charges, swipe
test cards, email receipts, void, reset the simulator and look at the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from typing import Any

from lobbypay.demo.monitor import Monitor
from lobbypay.demo.printer import Printer
from lobbypay.demo.processes import TERMINAL_ID, Parts, wait_online
from lobbypay.demo.script import DEMO_APPOINTMENT, DEMO_CLAIM, DEMO_COPAY, DEMO_PATIENT
from lobbypay.demo.simulator import fixture_patients, sim_reset
from lobbypay.sim.cards import TEST_CARDS
from lobbypay.ui import EXIT_OK, balance_tables, parse_claims, table

#: What the terminal answers when the demo's default charge was paid already.
PAID_ALREADY = frozenset({"claim_not_collectible", "copay_already_collected",
                          "amount_exceeds_balance"})

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
            status = await wait_online(term, parts)
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
                        await sim_reset(parts.athena["base_url"])
                        p.line("  the simulator's patients are back as they were (balances, "
                               "copays, receipts)")
                    elif cmd == "swipe":
                        card = rest[0].lower() if rest else "visa"
                        if card not in TEST_CARDS:
                            p.line(f"  unknown card {card!r}: {', '.join(sorted(TEST_CARDS))}")
                            continue
                        parts.swipe(card)
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

