"""The ``lobbypay`` command line: every subcommand's arguments, and ``main``.

A command's module is imported only when that command runs (``COMMANDS`` names it in
entry-point notation), so ``lobbypay run`` loads none of the maintainers' tools.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence

from lobbypay import __version__
from lobbypay.cli import configfile
from lobbypay.core.screen_text import LANGUAGES
from lobbypay.sim.cards import TEST_CARDS
from lobbypay.ui import EXIT_OK

#: name -> (help, "module:function" that runs it and returns the exit code)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run the agent in the foreground until SIGTERM", "lobbypay.cli.agent:cmd_run"),
    "check-config": ("validate a config file (and read its secret files)",
                     "lobbypay.cli.agent:cmd_check_config"),
    "doctor": ("check config, reader, display, broker, athena, clock and state_dir",
               "lobbypay.cli.doctor:cmd_doctor"),
    "jobs": ("recent jobs from this terminal's journal", "lobbypay.cli.jobs:cmd_jobs"),
    "status": ("this terminal's retained status and state", "lobbypay.cli.status:cmd_status"),
    "fleet": ("every terminal on a broker", "lobbypay.cli.status:cmd_fleet"),
    "balance": ("a patient's balances, read through the terminal",
                "lobbypay.cli.remote:cmd_balance"),
    "charge": ("start a charge on the terminal (for testing); --wait follows it",
               "lobbypay.cli.remote:cmd_charge"),
    "void": ("void a succeeded job's payment (staff topic; before athena settles)",
             "lobbypay.cli.remote:cmd_void"),
    "receipt": ("have athena email a succeeded job's receipt", "lobbypay.cli.remote:cmd_receipt"),
    "swipe": ("swipe a test card into a sim reader (no hardware needed)",
              "lobbypay.cli.simulated:cmd_swipe"),
    "devices": ("card readers and displays plugged in, and the config lines for them",
                "lobbypay.devices:cmd_devices"),
    "demo": ("run the whole system on loopback and walk through a charge",
             "lobbypay.cli.simulated:cmd_demo"),
}


def command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``name``, its module imported now."""
    module, _, function = COMMANDS[name][1].partition(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return run


def _connection_options(sp: argparse.ArgumentParser, *, terminal: bool = True) -> None:
    g = sp.add_argument_group("connection (defaults from --config)")
    g.add_argument("--host", help="broker host")
    g.add_argument("--port", type=int, help="broker port")
    if terminal:
        g.add_argument("--terminal", "-t", help="terminal id")
    else:
        g.set_defaults(terminal=None)
    g.add_argument("--username", help="broker user name")
    g.add_argument("--password-file", help="file holding the broker password")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--ca-file", help="CA certificate for the broker (TLS)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lobbypay", description="lobby card-terminal agent and its maintenance tools",
        epilog="exit codes: 0 ok, 1 failed, 2 bad config or usage, 3 broker/terminal "
               "unreachable")
    p.add_argument("--version", action="version", version=f"lobbypay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name, (help_text, _) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == "demo":  # the demo writes its own config (into --workdir)
            sp.set_defaults(config=None)
        else:
            sp.add_argument("--config", "-c", default=None,
                            help=f"config file (default {configfile.DEFAULT_CONFIG})")
        if name not in ("run", "demo"):
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        if name != "run":
            sp.add_argument("--no-color", action="store_true", help="no colours")
        parsers[name] = sp

    parsers["check-config"].add_argument(
        "--strict", action="store_true",
        help="exit 1 while a REPLACE-WITH-... placeholder is still there")
    _connection_options(parsers["doctor"])
    parsers["doctor"].add_argument("--swipe", action="store_true",
                                   help="also wait for one swipe on the configured reader "
                                        "(stop the agent first: it holds the reader)")
    parsers["doctor"].add_argument("--swipe-timeout", type=float, default=30.0,
                                   help="seconds to wait for it (default 30)")
    from lobbypay.devices import add_arguments as devices_arguments

    devices_arguments(parsers["devices"])
    parsers["jobs"].add_argument("--limit", type=_positive_int, default=20,
                                 help="how many jobs, newest first (default 20)")
    parsers["jobs"].add_argument("--state-dir", help="read this state_dir instead")
    parsers["jobs"].add_argument("--unsettled", action="store_true",
                                 help="only jobs in submitting or unknown; exit 1 if any")
    _connection_options(parsers["status"])
    _connection_options(parsers["fleet"], terminal=False)
    parsers["fleet"].add_argument("--wait", type=float, default=2.0,
                                  help="seconds to collect retained messages, at most "
                                       "(default 2)")
    parsers["fleet"].add_argument("--settle", type=float, default=0.3,
                                  help="done when nothing more came for this long "
                                       "(default 0.3 s)")
    parsers["fleet"].add_argument("--site", help="only this site's terminals, on a central "
                                                 "broker whose bridges add a site prefix")

    b = parsers["balance"]
    b.add_argument("patient", help="athena patient id")
    b.add_argument("--department", help="department id (default: the terminal's)")
    b.add_argument("--appointment", help="appointment id (adds the expected copay)")
    _connection_options(b)

    c = parsers["charge"]
    c.add_argument("--job-id", help="idempotency key (default: a new cli-... id)")
    c.add_argument("--patient", required=True, help="athena patient id")
    c.add_argument("--copay", default="0.00", help='copay, e.g. "25.00" (needs --appointment)')
    c.add_argument("--appointment", help="appointment id")
    c.add_argument("--department", help="department id (default: the terminal's)")
    c.add_argument("--claim", action="append", metavar="ID=AMOUNT",
                   help="a claim to pay, e.g. 5569=40.00 (repeatable)")
    c.add_argument("--allow-duplicate", action="store_true",
                   help="let athena accept a repeat of the same total")
    c.add_argument("--deadline", type=int, help="seconds to wait for a card (10-300)")
    c.add_argument("--language", choices=LANGUAGES,
                   help="the screens' language for this job (default: terminal.language)")
    c.add_argument("--wait", action="store_true", help="print events until the final one")
    c.add_argument("--timeout", type=float, default=600.0,
                   help="with --wait: give up after this many seconds (default 600)")
    _connection_options(c)

    v = parsers["void"]
    v.add_argument("job_id", metavar="JOB", help="the job whose payment to void")
    _connection_options(v)
    r = parsers["receipt"]
    r.add_argument("job_id", metavar="JOB", help="a succeeded job")
    r.add_argument("--email", required=True, metavar="ADDR",
                   help="where athena sends the receipt (kept nowhere by the terminal)")
    r.add_argument("--staff", action="store_true",
                   help="send it on the staff topic (a front-desk login)")
    _connection_options(r)

    s = parsers["swipe"]
    s.add_argument("--test-card", required=True, choices=sorted(TEST_CARDS),
                   help="visa (approved), decline (ends 0002), expired, bad (unreadable)")
    s.add_argument("--socket", help="the sim reader's socket (default from --config)")

    d = parsers["demo"]
    d.add_argument("--interactive", "-i", action="store_true",
                   help="a prompt to start charges and swipe test cards yourself")
    d.add_argument("--workdir", help="keep the demo's files (configs, logs) in this "
                                     "directory instead of a temporary one")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return command(args.command)(args)
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "run" else 130
