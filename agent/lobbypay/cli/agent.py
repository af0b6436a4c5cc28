"""``lobbypay run`` (the agent in the foreground until SIGTERM) and ``check-config``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from lobbypay.cli.configfile import config_path, load_or_exit, placeholder_warnings
from lobbypay.ui import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, print_json


def cmd_run(args: argparse.Namespace) -> int:
    from lobbypay.app import run_agent
    from lobbypay.core.config import ConfigError

    path = config_path(args)
    cfg = load_or_exit(path)
    try:
        return asyncio.run(run_agent(cfg))
    except ConfigError as exc:  # found only when starting (terminal.state_dir unusable)
        print(f"lobbypay: invalid config {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args)
    cfg = load_or_exit(path)
    warnings = placeholder_warnings(cfg)
    if args.json:
        print_json({"ok": True, "config": path, "terminal": cfg.terminal.id,
                    "department_id": cfg.terminal.department_id,
                    "reader": cfg.reader.driver, "display": cfg.display.driver,
                    "broker": f"{cfg.mqtt.host}:{cfg.mqtt.port}", "warnings": warnings})
    else:
        print(f"{path}: ok (terminal {cfg.terminal.id}, department {cfg.terminal.department_id}, "
              f"reader {cfg.reader.driver}, display {cfg.display.driver}, "
              f"broker {cfg.mqtt.host}:{cfg.mqtt.port})")
        for w in warnings:
            print(f"warning: {w}")
    if args.strict and warnings:
        return EXIT_FAIL  # the Debian unit's ExecCondition: not filled in, not started
    return EXIT_OK

