"""The ``lobbypay`` command line.

Exit codes scripts can rely on:

====  =====================================================================
0     success (``run``: stopped cleanly by SIGTERM/SIGINT)
1     the check or command failed (``doctor`` found a problem, a charge failed)
2     invalid configuration or usage (the message names the key)
3     could not reach the broker / terminal (no reply in time)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from lobbypay import __version__

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_CONFIG = "/etc/lobbypay/lobbypay.toml"


def _load(path: str, *, read_secrets: bool = True):  # type: ignore[no-untyped-def]
    from lobbypay.core.config import ConfigError
    from lobbypay.shell.loadconf import load_config

    try:
        return load_config(path, read_secrets=read_secrets)
    except ConfigError as exc:
        print(f"lobbypay: invalid config {path}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_run(args: argparse.Namespace) -> int:
    from lobbypay.app import run_agent

    cfg = _load(args.config)
    return asyncio.run(run_agent(cfg))


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{args.config}: ok (terminal {cfg.terminal.id}, department {cfg.terminal.department_id}, "
          f"reader {cfg.reader.driver}, display {cfg.display.driver}, "
          f"broker {cfg.mqtt.host}:{cfg.mqtt.port})")
    return EXIT_OK


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "run": ("run the agent in the foreground until SIGTERM", cmd_run),
    "check-config": ("validate a config file (and read its secret files)", cmd_check_config),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lobbypay", description="lobby card-terminal agent")
    p.add_argument("--version", action="version", version=f"lobbypay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                        help=f"config file (default {DEFAULT_CONFIG})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, fn = COMMANDS[args.command]
    try:
        return fn(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
