"""The scripted demo: balance, a charge (copay + a clean claim), a swipe, its events, the
athena calls, the balance afterwards, the receipt emailed, and the front desk's void."""

from __future__ import annotations

import uuid
from typing import Any

from lobbypay.demo.monitor import Monitor
from lobbypay.demo.printer import Printer
from lobbypay.demo.processes import TERMINAL_ID, Parts, wait_online
from lobbypay.demo.simulator import athena_calls, print_athena_calls
from lobbypay.sim.cards import TEST_CARDS
from lobbypay.ui import EXIT_FAIL, EXIT_OK, balance_tables

DEMO_PATIENT = "60178"
DEMO_APPOINTMENT = "1001"
DEMO_COPAY = "25.00"
DEMO_CLAIM = ("5569", "40.00")
#: Where the scripted demo has athena email the receipt (the simulator sends nothing).
DEMO_EMAIL = "patient@example.com"
#: How long the scripted demo waits for the charge's final event.
FINAL_TIMEOUT_S = 60.0


async def scripted(parts: Parts, p: Printer) -> int:
    from lobbypay.client import TerminalClient

    async with TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port) as term, \
            Monitor(parts.broker_port, p) as mon:
        status = await wait_online(term, parts)
        p.line(f"  terminal {TERMINAL_ID} is online (session {status.get('session')}, "
               f"lobbypay {status.get('version')})")

        p.heading(f"1. The check-in app reads patient {DEMO_PATIENT}'s balances "
                  f"(department 1, appointment {DEMO_APPOINTMENT})")
        bal = await term.balance(DEMO_PATIENT, appointment_id=DEMO_APPOINTMENT)
        p.line(balance_tables(bal, p.st))

        claim_id, amount = DEMO_CLAIM
        job_id = f"demo-{uuid.uuid4().hex[:8]}"
        p.heading(f"2. It starts a charge: copay {DEMO_COPAY} + claim {claim_id} {amount}")
        calls_before = len(await athena_calls(parts.athena["base_url"]))
        reply = await term.charge(job_id, DEMO_PATIENT, copay=DEMO_COPAY,
                                  claims=[(claim_id, amount)], appointment_id=DEMO_APPOINTMENT)
        p.line(f"  reply: ok, job {reply.get('job_id')} is {reply.get('state')}")
        await mon.wait_for(lambda: mon.state.get("job_state") == "pending", 10)

        label = TEST_CARDS["visa"][1]
        p.heading(f"3. The patient swipes a card: {label}")
        parts.swipe("visa")
        final = await term.wait_final(job_id, timeout=FINAL_TIMEOUT_S)
        # Let the monitor print the last screen and event before moving on.
        await mon.wait_for(lambda: job_id in mon.finals
                           and mon.state.get("job_state") == "idle", 10)

        p.heading("4. The athena calls the agent made for this charge (from the simulator)")
        print_athena_calls(await athena_calls(parts.athena["base_url"]), calls_before, p)

        p.heading(f"5. Patient {DEMO_PATIENT}'s balances afterwards")
        p.line(balance_tables(await term.balance(DEMO_PATIENT), p.st))

        state = str(final.get("state"))
        follow_ups = (await _follow_ups(term, parts, mon, job_id, p)
                      if state == "succeeded" else [])

        p.heading("Result")
        card = final.get("card") or {}
        amounts = final.get("amounts") or {}
        colour = "green+bold" if state == "succeeded" else "red+bold"
        p.line(f"  job {job_id}: {p.st(colour, state)}"
               f", total {amounts.get('total')}, card {card.get('brand')} ...{card.get('last4')}"
               f", epayment {final.get('epayment_id')}")
        for line in follow_ups:
            p.line(f"  then: {line}")
        return EXIT_OK if state == "succeeded" and len(follow_ups) == 2 else EXIT_FAIL


async def _follow_ups(term: Any, parts: Parts, mon: Monitor, job_id: str,
                      p: Printer) -> list[str]:
    """Steps 6-8: the emailed receipt, then the front desk's void. One line per success."""
    from lobbypay.client import TerminalClient
    from lobbypay.core.commands import mask_email

    done = []
    masked = mask_email(DEMO_EMAIL)
    p.heading(f"6. The patient asks for the receipt by email ({masked})")
    calls_before = len(await athena_calls(parts.athena["base_url"]))
    await term.email_receipt(job_id, DEMO_EMAIL)
    p.line(f"  reply: ok; athena emails the receipt. The terminal keeps the address nowhere "
           f"and logs it as {masked}.")
    print_athena_calls(await athena_calls(parts.athena["base_url"]), calls_before, p)
    done.append(f"receipt emailed to {masked}")

    p.heading("7. The front desk voids the payment (a wrong amount), on the staff topic")
    calls_before = len(await athena_calls(parts.athena["base_url"]))
    async with TerminalClient(TERMINAL_ID, "127.0.0.1", parts.broker_port,
                              staff=True) as desk:
        reply = await desk.void(job_id)
    p.line(f"  reply on staff/reply: ok, job {reply.get('job_id')} is {reply.get('state')}")
    await mon.wait_for(lambda: mon.finals.get(job_id, {}).get("state") == "voided", 10)
    print_athena_calls(await athena_calls(parts.athena["base_url"]), calls_before, p)
    done.append(f"payment voided (job {reply.get('state')})")

    p.heading(f"8. Patient {DEMO_PATIENT}'s balances after the void")
    p.line(balance_tables(await term.balance(DEMO_PATIENT), p.st))
    return done

