"""Which broker and terminal a command talks to: the command line's connection options
(``--host``, ``--terminal``, ...), falling back to the config file's ``[mqtt]`` and
``terminal.id``; the TLS context; what "unreachable" says.
"""

from __future__ import annotations

import argparse
import ssl
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lobbypay.cli.configfile import config_path, optional_config
from lobbypay.ui import EXIT_CONFIG, EXIT_UNREACHABLE, fail

if TYPE_CHECKING:
    from lobbypay.client import TerminalClient
    from lobbypay.core.config import Config


@dataclass
class Connection:
    terminal_id: str | None
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    protocol: str = "5"
    config: Config | None = None

    def client(self, *, staff: bool = False) -> TerminalClient:
        from lobbypay.client import TerminalClient

        if self.terminal_id is None:
            raise ValueError("no terminal id (pass --terminal or --config)")
        return TerminalClient(
            self.terminal_id, self.host, self.port, username=self.username,
            password=self.password, tls=self.tls, protocol=self.protocol,
            client_id=f"lobbypay-cli-{uuid.uuid4().hex[:12]}", staff=staff,
        )


def tls_context(ca_file: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def connection_from(args: argparse.Namespace, *, need_terminal: bool = True) -> Connection:
    """Broker and terminal from the command line, falling back to the config file."""
    from lobbypay.core.config import ConfigError

    cfg = optional_config(args)
    m = cfg.mqtt if cfg else None
    host = args.host or (m.host if m else "127.0.0.1")
    port = args.port or (m.port if m else 1883)
    tid = args.terminal or (cfg.terminal.id if cfg else None)
    if need_terminal and not tid:
        raise SystemExit(fail(
            f"no terminal: {config_path(args)} does not exist; pass --config or --terminal",
            EXIT_CONFIG))
    username = args.username or (m.username if m else None)
    password: str | None = None
    password_file = args.password_file or (m.password_file if m else None)
    if password_file:
        from lobbypay.shell.loadconf import _read_secret

        try:
            password = _read_secret(password_file, "mqtt.password_file")
        except ConfigError as exc:
            raise SystemExit(fail(str(exc), EXIT_CONFIG)) from None
    use_tls = bool(args.tls or (m.tls if m else False))
    tls = None
    if use_tls:
        ca = args.ca_file or (m.ca_file if m else None)
        try:
            tls = tls_context(ca, m.certfile if m else None, m.keyfile if m else None)
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(fail(f"TLS files: {exc}", EXIT_CONFIG)) from None
    protocol = m.protocol if m and m.protocol != "auto" else "5"  # the tools speak 5 on auto
    return Connection(tid, host, port, username, password, tls, protocol, cfg)


def unreachable(conn: Connection, exc: BaseException) -> int:
    what = "no reply from the terminal in time" if isinstance(exc, TimeoutError) else str(exc)
    where = f"{conn.host}:{conn.port}"
    return fail(what if where in what else f"{where}: {what}", EXIT_UNREACHABLE)

