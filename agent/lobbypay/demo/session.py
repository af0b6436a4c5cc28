"""``run_demo``: start the parts, run the scripted or the interactive demo, stop every
child whatever happens (Ctrl-C and SIGTERM included)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from lobbypay.demo.interactive import interactive_session
from lobbypay.demo.printer import Printer
from lobbypay.demo.processes import DemoError, Parts
from lobbypay.demo.script import scripted
from lobbypay.ui import EXIT_FAIL, EXIT_OK, Style, table


def run_demo(*, interactive: bool = False, no_color: bool = False,
             workdir: str | None = None) -> int:
    st = Style.for_stream(sys.stdout, no_color)
    p = Printer(st)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    parts: Parts | None = None
    rc = EXIT_FAIL
    try:
        parts = Parts(workdir)
        p.line(st("bold", "lobbypay demo") + ": every part on 127.0.0.1; no card data leaves "
               "the agent, and only test cards are used")
        p.heading("Starting the parts")
        athena = parts.start_sim()
        broker_port = parts.start_broker()
        agent = parts.start_agent()
        sim_pid = parts.sim.pid if parts.sim else 0
        broker_pid = parts.broker.pid if parts.broker else 0
        p.line(table(["PART", "WHERE", "PID"], [
            ["athena simulator", f"{athena['base_url']} (practice {athena['practice_id']})",
             str(sim_pid)],
            ["MQTT broker", f"mosquitto on 127.0.0.1:{broker_port}", str(broker_pid)],
            ["agent", f"lobbypay run --config {parts.config_path}", str(agent.pid)],
            ["card reader", f"sim reader, socket {parts.swipe_socket}", "(in the agent)"],
            ["agent output", str(parts.agent_log), ""],
        ], st))
        rc = asyncio.run(interactive_session(parts, p) if interactive else scripted(parts, p))
    except DemoError as exc:
        p.prompt_open = False
        p.line(st("red+bold", f"demo failed: {exc}"))
        rc = EXIT_FAIL
    except KeyboardInterrupt:
        p.prompt_open = False  # the prompt's line ends with the "\n" below
        p.line("\ninterrupted")
        rc = 130
    except Exception as exc:  # noqa: BLE001 - report, then clean up every child
        if os.environ.get("LOBBYPAY_DEMO_DEBUG"):
            import traceback

            traceback.print_exc()
        p.prompt_open = False
        p.line(st("red+bold", f"demo failed: {type(exc).__name__}: {exc}"))
        if parts is not None:
            p.line(parts.agent_log_tail())
        rc = EXIT_FAIL
    finally:
        p.prompt_open = False
        if parts is not None:
            p.heading("Stopping")
            agent_rc = parts.close()
            p.line(f"  agent stopped (exit {agent_rc}), broker and simulator stopped"
                   + ("" if workdir else ", temporary files removed"))
            if agent_rc not in (0, None) and rc == EXIT_OK:
                rc = EXIT_FAIL
        signal.signal(signal.SIGTERM, old_term)
    return rc
