"""The tools that need no hardware: ``lobbypay swipe`` (a test card into a ``sim``
reader's socket) and ``lobbypay demo`` (the whole system on loopback,
``lobbypay.demo``)."""

from __future__ import annotations

import argparse

from lobbypay.cli.configfile import config_path, load_or_exit
from lobbypay.sim.cards import TEST_CARDS
from lobbypay.ui import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE, fail, print_json


def cmd_swipe(args: argparse.Namespace) -> int:
    from lobbypay_hw.reader_sim import SimReaderError, send_swipe

    path = args.socket
    if not path:
        cfg = load_or_exit(config_path(args), read_secrets=False)
        if cfg.reader.driver != "sim":
            return fail(f"reader.driver is {cfg.reader.driver!r}, not 'sim': swipe a real card, "
                        "or pass --socket", EXIT_CONFIG)
        from lobbypay.app import sim_reader_socket

        path = sim_reader_socket(cfg)
    raw, label = TEST_CARDS[args.test_card]
    try:
        send_swipe(path, raw.encode("ascii"))
    except SimReaderError as exc:
        return fail(str(exc), EXIT_UNREACHABLE)
    if args.json:
        print_json({"ok": True, "socket": path, "card": args.test_card})
    else:
        print(f"swiped {label} into {path}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from lobbypay.demo.session import run_demo

    return run_demo(interactive=args.interactive, no_color=args.no_color,
                    workdir=args.workdir)
