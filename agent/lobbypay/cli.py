"""The ``lobbypay`` command line: the agent itself, and the maintainers' tools.

``lobbypay run`` is the agent (protocol.md section 9). Everything else is for people and
scripts looking after terminals; each is described in docs/OPERATIONS.md:

==============  =========================================================================
run             run the agent in the foreground until SIGTERM
check-config    validate a config file and read its secret files
doctor          check config, reader, display, broker, athena, clock and state_dir;
                ``--swipe`` then waits for one swipe (brand, last 4, tracks read)
jobs            recent jobs from this terminal's journal (read-only)
status          this terminal's retained ``status`` and ``state``
fleet           every terminal on a broker, from the retained topics
balance         ``balance.get`` through the terminal
charge          ``charge.start`` through the terminal; ``--wait`` prints events to the end
void            ``charge.void`` on the staff topic (a front-desk login)
receipt         ``receipt.email``: athena emails a succeeded job's receipt
swipe           a test card into a ``sim`` reader's socket (no hardware needed)
devices         readers and displays plugged in, with the config lines for each
demo            the whole system on loopback, scripted or ``--interactive``
==============  =========================================================================

Connection options (``--host``, ``--port``, ``--terminal``, ...) default from ``--config``
(default /etc/lobbypay/lobbypay.toml), so on a terminal ``lobbypay status`` is enough.
``--json`` prints machine-readable output instead of tables.

Exit codes scripts can rely on:

====  =====================================================================
0     success (``run``: stopped cleanly by SIGTERM/SIGINT)
1     the check or command failed (``doctor`` found a problem, a charge failed,
      the agent answered ``ok: false``, the terminal is offline)
2     invalid configuration or usage (the message names the key)
3     could not reach the broker / terminal (no reply in time)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import ssl
import stat
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from lobbypay import __version__
from lobbypay.core.screen_text import LANGUAGES

if TYPE_CHECKING:
    from lobbypay.client import TerminalClient
    from lobbypay.core.config import Config

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_CONFIG = "/etc/lobbypay/lobbypay.toml"
#: The journal's file name inside state_dir (shell/journal.py DB_NAME).
JOURNAL_FILE = "journal.sqlite3"
#: Seconds a command waits for the terminal's reply (balance and charge.start wait for
#: athena reads, which the agent bounds by athena.timeout_s, 20 s by default).
REPLY_TIMEOUT_S = 30.0
#: A clock this far from athena's is wrong enough to warn / to fail (receipt matching
#: after an unknown outcome compares times; tokens and TLS need a sane clock).
CLOCK_WARN_S, CLOCK_FAIL_S = 60.0, 300.0
#: Earliest plausible year: a Pi without RTC or network boots in 1970 or at its build date.
CLOCK_MIN_YEAR = 2024

# ---------------------------------------------------------------- test cards
#
# Well-known public test numbers only (Visa's 4111 1111 1111 1111 and the 4000 0000 0000
# 0002 "decline" number). The simulator declines PANs ending 0002. Expiry 30/12 is in the
# future, 20/01 in the past.

TEST_CARDS: dict[str, tuple[str, str]] = {
    "visa": (
        "%B4111111111111111^TEST/LOBBYPAY^3012101000000000000000?"
        ";4111111111111111=30121010000000000000?",
        "Visa test card ending 1111 (approved)",
    ),
    "decline": (
        "%B4000000000000002^TEST/LOBBYPAY^3012101000000000000000?"
        ";4000000000000002=30121010000000000000?",
        "Visa test card ending 0002 (declined)",
    ),
    "expired": (
        "%B4111111111111111^TEST/LOBBYPAY^2001101000000000000000?"
        ";4111111111111111=20011010000000000000?",
        "Visa test card ending 1111, expired 01/20",
    ),
    # What a reader sends when it could not read either track.
    "bad": ("%E?;E?", "a bad swipe (the reader could not read the stripe)"),
}


# ---------------------------------------------------------------- output


_COLOURS = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33",
            "blue": "34", "cyan": "36"}


class Style:
    """ANSI colours when writing to a terminal (and NO_COLOR is unset), plain otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO, force_off: bool = False) -> Style:
        isatty = getattr(stream, "isatty", lambda: False)
        on = (not force_off and bool(isatty()) and "NO_COLOR" not in os.environ
              and os.environ.get("TERM") != "dumb")
        return cls(on)

    def __call__(self, name: str, text: str) -> str:
        if not self.enabled or not name:
            return text
        codes = ";".join(_COLOURS[n] for n in name.split("+"))
        return f"\033[{codes}m{text}\033[0m"


#: A table cell: plain text, or (text, style name) such as ("PASS", "green").
Cell = str | tuple[str, str]

RESULT_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red+bold", "succeeded": "green",
                "declined": "red", "failed": "red", "expired": "yellow",
                "canceled": "yellow", "unknown": "yellow", "voided": "yellow", "online": "green",
                "offline": "red"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style,
          indent: str = "  ") -> str:
    """Left-aligned columns sized to their longest cell (colour does not count)."""
    def text(c: Cell) -> str:
        return c[0] if isinstance(c, tuple) else c

    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(text(c)))
    lines = [indent + "  ".join(style("bold", h.ljust(widths[i]))
                                for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            padded = text(c).ljust(widths[i])
            cells.append(style(c[1], padded) if isinstance(c, tuple) else padded)
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def fail(message: str, code: int) -> int:
    print(f"lobbypay: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- config and connections


def _load(path: str, *, read_secrets: bool = True) -> Config:
    from lobbypay.core.config import ConfigError
    from lobbypay.shell.loadconf import load_config

    try:
        return load_config(path, read_secrets=read_secrets)
    except ConfigError as exc:
        if _config_missing(exc, path):
            print(f"lobbypay: {_no_config(path)}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
        valid = ""
        if read_secrets and exc.key.startswith("athena.client_secret"):
            try:  # say whether only the secret is the problem
                load_config(path, read_secrets=False)
                valid = " (the rest of the file is valid)"
            except ConfigError:
                pass
        print(f"lobbypay: invalid config {path}{valid}: {exc}{_credential_hint(exc)}"
              f"{_permission_hint(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _permission_hint(exc: Exception) -> str:
    """The installed config is root:lobbypay 0640: other users need sudo."""
    if getattr(exc, "key", None) == "(file)" and "Permission denied" in str(exc):
        return ("; the installed config is readable by root and the lobbypay group only: "
                "run it with sudo")
    return ""


def _config_missing(exc: Exception, path: str) -> bool:
    return getattr(exc, "key", None) == "(file)" and not os.path.exists(path)


def _no_config(path: str) -> str:
    """A config file that is not there: on a terminal the installer makes the default."""
    if path != DEFAULT_CONFIG:
        return f"no config file {path}: it does not exist"
    return (f"no config file {path}: it does not exist (lobbypay is not installed here; "
            "the installer makes it): pass --config FILE")


def _credential_hint(exc: Exception) -> str:
    """By hand, the athena secret credential needs $CREDENTIALS_DIRECTORY set as the unit
    sets it: say how (docs/install.md section 4)."""
    if "CREDENTIALS_DIRECTORY" in str(exc) and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return ("; outside systemd, point it at the credential's directory, e.g. "
                "sudo CREDENTIALS_DIRECTORY=/etc/lobbypay lobbypay ...")
    return ""


#: Text the config template and the installer use for what must be filled in.
PLACEHOLDER = "REPLACE-WITH"


def placeholder_warnings(cfg: Config) -> list[str]:
    """Template placeholders still in a valid config: the agent would start with them,
    but athena refuses them (scripts/install does not start the service while they are
    there)."""
    a = cfg.athena
    found = [("athena." + name, value) for name, value in
             (("client_id", a.client_id), ("practice_id", a.practice_id))
             if PLACEHOLDER in value]
    if a.client_secret is not None and PLACEHOLDER in a.client_secret:
        key = ("athena.client_secret_credential" if a.client_secret_credential
               else "athena.client_secret_file")
        found.append((key, "the secret"))
    return [f"{key}: {what if what == 'the secret' else repr(what)} is still the "
            "template's placeholder" for key, what in found]


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or DEFAULT_CONFIG)


def _optional_config(args: argparse.Namespace) -> Config | None:
    """The config without its athena secret (a maintainer may not be allowed to read it).

    A missing *default* config is fine when the connection options are given; a config
    named with --config must exist and be valid.
    """
    path = _config_path(args)
    if args.config is None and not os.path.exists(path):
        return None
    return _load(path, read_secrets=False)


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


def _tls_context(ca_file: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def _connection(args: argparse.Namespace, *, need_terminal: bool = True) -> Connection:
    """Broker and terminal from the command line, falling back to the config file."""
    from lobbypay.core.config import ConfigError

    cfg = _optional_config(args)
    m = cfg.mqtt if cfg else None
    host = args.host or (m.host if m else "127.0.0.1")
    port = args.port or (m.port if m else 1883)
    tid = args.terminal or (cfg.terminal.id if cfg else None)
    if need_terminal and not tid:
        raise SystemExit(fail(
            f"no terminal: {_config_path(args)} does not exist; pass --config or --terminal",
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
            tls = _tls_context(ca, m.certfile if m else None, m.keyfile if m else None)
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(fail(f"TLS files: {exc}", EXIT_CONFIG)) from None
    protocol = m.protocol if m and m.protocol != "auto" else "5"  # the tools speak 5 on auto
    return Connection(tid, host, port, username, password, tls, protocol, cfg)


def _unreachable(conn: Connection, exc: BaseException) -> int:
    what = "no reply from the terminal in time" if isinstance(exc, TimeoutError) else str(exc)
    where = f"{conn.host}:{conn.port}"
    return fail(what if where in what else f"{where}: {what}", EXIT_UNREACHABLE)


# ---------------------------------------------------------------- run, check-config


def cmd_run(args: argparse.Namespace) -> int:
    from lobbypay.app import run_agent
    from lobbypay.core.config import ConfigError

    path = _config_path(args)
    cfg = _load(path)
    try:
        return asyncio.run(run_agent(cfg))
    except ConfigError as exc:  # found only when starting (terminal.state_dir unusable)
        print(f"lobbypay: invalid config {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    path = _config_path(args)
    cfg = _load(path)
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


# ---------------------------------------------------------------- doctor


@dataclass
class Check:
    name: str
    result: str  # PASS | WARN | FAIL
    detail: str
    hint: str = ""


def _check_device(kind: str, path: str | None, mode: int, hint: str) -> Check:
    if not path:
        return Check(kind, "FAIL", "no path configured", f"set {kind}.path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(kind, "FAIL", f"{path} does not exist", hint)
    except OSError as exc:
        return Check(kind, "FAIL", f"{path}: {exc.strerror}", hint)
    if not stat.S_ISCHR(st.st_mode):
        return Check(kind, "FAIL", f"{path} is not a character device", hint)
    if not os.access(path, mode):
        verb = "readable" if mode == os.R_OK else "writable"
        return Check(kind, "FAIL", f"{path} is not {verb} by this user",
                     "install config/udev/70-lobbypay.rules and run doctor as the lobbypay "
                     "user (sudo -u lobbypay lobbypay doctor)")
    return Check(kind, "PASS", f"{path} present")


def _doctor_reader(cfg: Config) -> Check:
    r = cfg.reader
    if r.driver == "sim":
        from lobbypay.app import sim_reader_socket

        path = sim_reader_socket(cfg)
        parent = os.path.dirname(path) or "."
        if os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
            return Check("reader", "PASS", f"sim reader socket {path} present (agent listening)")
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            return Check("reader", "PASS", f"sim reader: {parent} writable for the socket")
        if not os.path.exists(parent):
            return Check("reader", "WARN", f"sim reader: {parent} does not exist yet",
                         "the agent creates state_dir at start")
        return Check("reader", "FAIL", f"sim reader: {parent} is not writable",
                     "point reader.path to a directory the agent's user owns")
    from lobbypay.devices import reader_check

    return Check("reader", *reader_check(r.driver, r.path))


def _doctor_display(cfg: Config) -> Check:
    d = cfg.display
    if d.driver == "none":
        return Check("display", "WARN", "no display configured (display.driver = none)",
                     "set display.driver and display.path if the terminal has a display")
    if d.driver == "console":
        return Check("display", "PASS", "console display (draws on the agent's stdout)")
    from lobbypay_hw.probe import probe_display

    probe = probe_display(d.driver, d.path, d.options)
    if probe is not None:
        result = ("WARN" if probe.warning else "PASS") if probe.ok else "FAIL"
        return Check("display", result, f"{d.driver}: {probe.detail}", probe.hint)
    return _check_device("display", d.path, os.W_OK,
                         "plug the display in; ls -l /dev/lobbypay-display /dev/serial/by-id; "
                         "check display.path")


def _doctor_state_dir(cfg: Config) -> Check:
    d = cfg.terminal.state_dir
    if os.path.isdir(d):
        if os.access(d, os.W_OK | os.X_OK):
            journal = os.path.join(d, JOURNAL_FILE)
            extra = " (journal present)" if os.path.exists(journal) else " (no journal yet)"
            return Check("state_dir", "PASS", f"{d} writable{extra}")
        return Check("state_dir", "FAIL", f"{d} is not writable by this user",
                     "chown -R lobbypay: the directory, or run doctor as the lobbypay user")
    parent = os.path.dirname(os.path.abspath(d))
    if os.access(parent, os.W_OK | os.X_OK):
        return Check("state_dir", "WARN", f"{d} does not exist yet (the agent creates it)",
                     "under systemd StateDirectory=lobbypay creates it")
    return Check("state_dir", "FAIL", f"{d} does not exist and {parent} is not writable",
                 "create it: install -d -o lobbypay -m 0700 " + d)


def _doctor_clock(now: datetime, athena_date: datetime | None, *,
                  compared: bool = True, synced: bool | None = None) -> Check:
    hint = "enable time sync: timedatectl set-ntp true; check systemd-timesyncd"
    sync_text = {True: "NTP-synchronised", False: "not NTP-synchronised",
                 None: "synchronisation unknown"}[synced]
    if now.year < CLOCK_MIN_YEAR:
        return Check("clock", "FAIL", f"system clock says {now:%Y-%m-%d} ({sync_text})", hint)
    if athena_date is None:
        why = "athena's clock not reachable to compare" if compared else \
            "not compared with athena's: no usable config"
        # not compared: the config line says what to fix; the clock itself has no fix yet
        return Check("clock", "WARN", f"{now:%Y-%m-%d %H:%M:%S}Z ({why}; {sync_text})",
                     hint if compared else "")
    skew = (now - athena_date).total_seconds()
    detail = f"{skew:+.0f} s from athena's clock, {sync_text}"
    if abs(skew) >= CLOCK_FAIL_S:
        return Check("clock", "FAIL", detail, hint)
    if abs(skew) >= CLOCK_WARN_S:
        return Check("clock", "WARN", detail, hint)
    # Close to athena's clock: PASS, synchronised or not (payments are judged on athena's
    # clock anyway); the detail says which, for a clock that may drift later.
    return Check("clock", "PASS", detail)


async def _doctor_broker(conn: Connection) -> Check:
    from lobbypay.client import ClientError

    where = f"{conn.host}:{conn.port}" + (" (TLS)" if conn.tls else "")
    hint = ("check mqtt.host/port, the broker's listener and firewall, mqtt.username/"
            "password_file and the TLS files (mosquitto_sub -h HOST -p PORT -t '#' -C 1)")
    try:
        async with conn.client() as term:
            status = await term.status(timeout=1.0)
    except (ClientError, OSError, TimeoutError) as exc:
        return Check("broker", "FAIL", f"{where}: {exc}", hint)
    if status is None:
        return Check("broker", "WARN", f"{where} reachable; no status from this terminal yet",
                     "start the agent: systemctl start lobbypay")
    if not status.get("online"):
        return Check("broker", "WARN",
                     f"{where} reachable; agent offline (session {status.get('session')})",
                     "is it running? systemctl status lobbypay; journalctl -u lobbypay -n 50")
    return Check("broker", "PASS",
                 f"{where} reachable; agent online (session {status.get('session')})")


async def _athena_date(base_url: str, timeout_s: float) -> datetime | None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            resp = await http.get(base_url + "/")
    except httpx.HTTPError:
        return None
    header = resp.headers.get("date")
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).astimezone(UTC)
    except (TypeError, ValueError):
        return None


async def _doctor_athena(cfg: Config) -> Check:
    from lobbypay.core.athena import AthenaAuthError, AthenaError, AthenaThrottled
    from lobbypay.shell.athena import AthenaClient

    a = cfg.athena
    if a.client_secret is None:  # pragma: no cover - load_config read it
        return Check("athena", "FAIL", "the client secret was not read", "")
    try:
        async with AthenaClient(a.base_url, a.practice_id, a.client_id, a.client_secret,
                                timeout_s=min(a.timeout_s, 10.0), rate_limit_rps=None,
                                scope=a.token_scope) as athena:
            ok = await athena.ping()
    except AthenaAuthError as exc:
        return Check("athena", "FAIL", f"credentials refused: {exc.message}",
                     "check athena.client_id and the client secret file; is the app enabled "
                     "for this practice?")
    except AthenaThrottled as exc:
        return Check("athena", "WARN", f"throttled: {exc.message}",
                     "athena rate-limits per app; lower athena.rate_limit_rps or wait")
    except AthenaError as exc:
        return Check("athena", "FAIL", f"{a.base_url}: {exc.message}",
                     "check athena.base_url, DNS and the outbound firewall (443)")
    if not ok:
        return Check("athena", "FAIL", "token ok, but /ping did not answer pong",
                     "check athena.practice_id")
    return Check("athena", "PASS", f"token and ping ok ({a.base_url}, practice {a.practice_id})")


def _doctor_secret(cfg: Config, exc: Exception) -> Check:
    """The config is valid but its athena secret could not be read by this user.

    With a systemd credential that is expected for any user but root (the secret is root
    0600; systemd hands it to the service), so it is a WARN with the way to check it. A
    ``client_secret_file`` must be readable by the agent's own user: FAIL.
    """
    detail = f"terminal {cfg.terminal.id}; {exc}"
    if cfg.athena.client_secret_credential and "not readable" in str(exc):
        return Check("config", "WARN", detail,
                     "expected for users other than root: systemd hands the secret to the "
                     "service; check athena as root (sudo CREDENTIALS_DIRECTORY=/etc/lobbypay "
                     "lobbypay doctor)")
    key = str(getattr(exc, "key", "(file)"))
    return Check("config", "FAIL", detail + _credential_hint(exc), _fix_key(key))


def _fix_key(key: str) -> str:
    if key == "(file)":
        return "fix the file (see config/lobbypay.example.toml)"
    return f"fix {key}; see config/lobbypay.example.toml"


async def _doctor_async(args: argparse.Namespace, checks: list[Check]) -> None:
    from lobbypay.core.config import ConfigError
    from lobbypay.shell.loadconf import load_config
    from lobbypay.shell.timesync import clock_synchronized

    path = _config_path(args)
    secret_error: ConfigError | None = None
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        usable: Config | None = None
        if exc.key.startswith("athena.client_secret"):
            try:  # the file itself may be fine and only the secret unreadable here
                usable = load_config(path, read_secrets=False)
            except ConfigError:
                usable = None
        if usable is None:
            if _config_missing(exc, path):
                checks.append(Check("config", "FAIL", _no_config(path),
                                    "see config/lobbypay.example.toml and docs/install.md"))
            else:
                checks.append(Check("config", "FAIL", f"{path}: {exc}{_credential_hint(exc)}",
                                    _fix_key(exc.key)))
            checks.append(_doctor_clock(datetime.now(UTC), None, compared=False))
            return
        cfg, secret_error = usable, exc
    placeholders = placeholder_warnings(cfg) if secret_error is None else []
    if placeholders:
        checks.append(Check("config", "WARN", f"{path}: " + "; ".join(placeholders),
                            f"fill in the keys marked {PLACEHOLDER}-... (docs/install.md)"))
    elif secret_error is None:
        checks.append(Check("config", "PASS", f"{path} (terminal {cfg.terminal.id})"))
    else:
        checks.append(_doctor_secret(cfg, secret_error))
    checks.append(_doctor_reader(cfg))
    checks.append(_doctor_display(cfg))
    conn = _connection(args)
    checks.append(await _doctor_broker(conn))
    if secret_error is None:
        checks.append(await _doctor_athena(cfg))
    else:
        checks.append(Check("athena", "WARN", "not checked: the client secret was not read",
                            "see the config line"))
    athena_date = await _athena_date(cfg.athena.base_url, min(cfg.athena.timeout_s, 10.0))
    checks.append(_doctor_clock(datetime.now(UTC), athena_date, synced=clock_synchronized()))
    checks.append(_doctor_state_dir(cfg))
    if getattr(args, "swipe", False):
        from lobbypay.devices import doctor_swipe

        checks.append(Check("swipe", *await doctor_swipe(
            cfg.reader.driver, cfg.reader.path, cfg.reader.baudrate, args.swipe_timeout)))


def cmd_doctor(args: argparse.Namespace) -> int:
    checks: list[Check] = []
    asyncio.run(_doctor_async(args, checks))
    failed = any(c.result == "FAIL" for c in checks)
    if args.json:
        print_json({"ok": not failed, "checks": [c.__dict__ for c in checks]})
    else:
        st = Style.for_stream(sys.stdout, args.no_color)
        rows: list[list[Cell]] = [[c.name, (c.result, RESULT_STYLE[c.result]), c.detail]
                                  for c in checks]
        print(table(["CHECK", "RESULT", "DETAIL"], rows, st))
        hints = [c for c in checks if c.result != "PASS" and c.hint]
        if hints:
            print()
            for c in hints:
                print(f"  {st('bold', c.name)}: {c.hint}")
    return EXIT_FAIL if failed else EXIT_OK


# ---------------------------------------------------------------- jobs (journal)


def read_journal_jobs(state_dir: str, limit: int) -> list[dict[str, Any]]:
    """Latest event of the newest ``limit`` jobs, read-only.

    Opens the SQLite file so that nothing is created or changed: with ``mode=ro`` while the
    agent runs (its -wal/-shm files exist), ``immutable=1`` when it does not (so a root
    shell never leaves root-owned -wal/-shm files the agent could not open). Raises
    FileNotFoundError when there is no journal.
    """
    path = Path(state_dir) / JOURNAL_FILE
    if not path.is_file():
        raise FileNotFoundError(str(path))
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True)
    try:
        rows = conn.execute(
            "SELECT event, created_at FROM jobs ORDER BY created_order DESC LIMIT ?",
            (int(limit),),
        ).fetchall()
    finally:
        conn.close()
    out = []
    for event_text, created_at in rows:
        event = json.loads(event_text)
        event["created_at"] = created_at
        out.append(event)
    return out


def job_summary(event: dict[str, Any]) -> dict[str, Any]:
    card = event.get("card") or {}
    err = event.get("error") or {}
    return {
        "job_id": event.get("job_id"),
        "state": event.get("state"),
        "total": (event.get("amounts") or {}).get("total"),
        "card": f"{card.get('brand')} {card.get('last4')}" if card else None,
        "at": event.get("at"),
        "epayment_id": event.get("epayment_id"),
        "error": err.get("code") if err else None,
    }


def cmd_jobs_unsettled(args: argparse.Namespace) -> int:
    """``jobs --unsettled``: jobs in ``submitting``/``unknown``; exit 1 when there is one.

    The Debian package's prerm gates removal on it. With ``--state-dir`` the config is
    not read (a broken config must not block removing the package).
    """
    from lobbypay.shell.journal import Journal, JournalError

    state_dir = args.state_dir or _load(_config_path(args), read_secrets=False).terminal.state_dir
    try:
        journal = Journal.open_read_only(state_dir)
    except FileNotFoundError:
        events: list[dict[str, Any]] = []
    except JournalError as exc:
        return fail(f"{exc} (run as root or the lobbypay user)", EXIT_FAIL)
    else:
        try:
            events = journal.unsettled()
        finally:
            journal.close()
    jobs = [job_summary(e) for e in events]
    if args.json:
        print_json({"state_dir": state_dir, "unsettled": jobs})
    elif not jobs:
        print(f"no job in submitting or unknown in {state_dir}")
    for j in [] if args.json else jobs:
        print(f"{j['job_id']}: {j['state']} since {j['at']} (total {j['total']})")
    return EXIT_FAIL if jobs else EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.unsettled:
        return cmd_jobs_unsettled(args)
    # with --state-dir the config is not needed (nor read)
    state_dir = (args.state_dir
                 or _load(_config_path(args), read_secrets=False).terminal.state_dir)
    try:
        events = read_journal_jobs(state_dir, args.limit)
    except FileNotFoundError:
        return fail(f"no journal in {state_dir} (has the agent run here?)", EXIT_FAIL)
    except (sqlite3.Error, OSError) as exc:
        return fail(f"cannot read the journal in {state_dir}: {exc} "
                    "(run as root or the lobbypay user)", EXIT_FAIL)
    jobs = [job_summary(e) for e in events]
    if args.json:
        print_json({"jobs": jobs})
        return EXIT_OK
    if not jobs:
        print("no jobs yet")
        return EXIT_OK
    st = Style.for_stream(sys.stdout, args.no_color)
    rows: list[list[Cell]] = [
        [j["job_id"] or "", (j["state"] or "", RESULT_STYLE.get(j["state"] or "", "")),
         j["total"] or "", j["card"] or "", j["at"] or "", j["error"] or ""]
        for j in jobs
    ]
    print(table(["JOB", "STATE", "TOTAL", "CARD", "TIME", "ERROR"], rows, st))
    return EXIT_OK


# ---------------------------------------------------------------- status, fleet


def _screen_box(lines: Sequence[str], indent: str = "  ") -> str:
    width = max((len(x) for x in lines), default=0)
    edge = indent + "+" + "-" * width + "+"
    return "\n".join([edge, *(f"{indent}|{x.ljust(width)}|" for x in lines), edge])


async def _status_async(conn: Connection) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    async with conn.client() as term:
        return await term.status(timeout=1.5), await term.state(timeout=1.0)


def _err_text(err: Any) -> str | None:
    """athena.last_error is {code, message, ...} (or None); one line of it."""
    if not err:
        return None
    if isinstance(err, dict):
        at = f" (at {err['at']})" if err.get("at") else ""
        return f"{err.get('code')}: {err.get('message')}{at}"
    return str(err)


def _connected(part: dict[str, Any]) -> str:
    return "connected" if part.get("connected") else "NOT connected"


def cmd_status(args: argparse.Namespace) -> int:
    from lobbypay.client import ClientError

    conn = _connection(args)
    try:
        status, state = asyncio.run(_status_async(conn))
    except (ClientError, OSError) as exc:
        return _unreachable(conn, exc)
    online = bool(status and status.get("online"))
    if args.json:
        print_json({"terminal": conn.terminal_id, "status": status, "state": state})
        return EXIT_OK if online else EXIT_FAIL
    st = Style.for_stream(sys.stdout, args.no_color)
    if status is None:
        print(f"terminal {conn.terminal_id}: never seen on {conn.host}:{conn.port} "
              "(no retained status)")
        return EXIT_FAIL
    word = "online" if online else "offline"
    print(f"terminal {st('bold', str(conn.terminal_id))}: {st(RESULT_STYLE[word], word)}, "
          f"session {status.get('session')}, since {status.get('since')}, "
          f"version {status.get('version')}")
    if state and not online:
        print(st("dim", "  the terminal is offline: below is the last state it published"))
    if state:
        r, d, a = state.get("reader") or {}, state.get("display") or {}, state.get("athena") or {}
        rows: list[list[Cell]] = [
            ["job", f"{state.get('job_id') or '-'} ({state.get('job_state')})"],
            ["reader", f"{r.get('driver')} {_connected(r)}"],
            ["display", f"{d.get('driver')} {_connected(d)}"],
            ["athena", f"last ok {a.get('last_ok_at') or '-'}; last error "
                       f"{_err_text(a.get('last_error')) or '-'}"],
            ["outbox", f"{state.get('outbox')} event(s) not yet acknowledged by the broker"],
        ]
        print("\n".join(table(["", ""], rows, st).splitlines()[1:]))  # no header line
        print(_screen_box([str(x) for x in state.get("screen") or []]))
    return EXIT_OK if online else EXIT_FAIL


def fleet_rows(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for tid in sorted(found):
        status = found[tid].get("status") or {}
        state = found[tid].get("state") or {}
        reader = state.get("reader") or {}
        athena = state.get("athena") or {}
        site, _, bare = tid.rpartition("/")  # "<site>/<id>" behind a prefixed bridge
        rows.append({
            "terminal": bare,
            "site": site or None,
            "online": bool(status.get("online")),
            "session": status.get("session"),
            "since": status.get("since"),
            "version": status.get("version"),
            "job_id": state.get("job_id"),
            "job_state": state.get("job_state"),
            "reader": f"{reader.get('driver')} {_connected(reader)}" if reader else None,
            "outbox": state.get("outbox"),
            "last_error": _err_text(athena.get("last_error")),
        })
    return rows


def cmd_fleet(args: argparse.Namespace) -> int:
    from lobbypay.client import ClientError, fleet

    conn = _connection(args, need_terminal=False)
    try:
        found = asyncio.run(fleet(conn.host, conn.port, username=conn.username,
                                  password=conn.password, tls=conn.tls,
                                  protocol=conn.protocol, timeout=args.wait,
                                  settle=args.settle, site=args.site or "+"))
    except (ClientError, OSError) as exc:
        return _unreachable(conn, exc)
    rows = fleet_rows(found)
    if args.json:
        print_json({"broker": f"{conn.host}:{conn.port}", "terminals": rows})
        return EXIT_OK
    if not rows:
        print(f"no terminals on {conn.host}:{conn.port}")
        return EXIT_OK
    st = Style.for_stream(sys.stdout, args.no_color)
    cells: list[list[Cell]] = []
    for r in rows:
        word = "online" if r["online"] else "offline"
        name = f"{r['site']}/{r['terminal']}" if r["site"] else r["terminal"]
        cells.append([name, (word, RESULT_STYLE[word]), str(r["session"] or "-"),
                      f"{r['job_id'] or '-'} {r['job_state'] or ''}".strip(),
                      r["reader"] or "-", str(r["outbox"] if r["outbox"] is not None else "-"),
                      r["last_error"] or "-"])
    print(table(["TERMINAL", "STATUS", "SESSION", "JOB", "READER", "OUTBOX", "LAST ERROR"],
                cells, st))
    return EXIT_OK


# ---------------------------------------------------------------- balance, charge


def balance_tables(bal: dict[str, Any], st: Style) -> str:
    out = [f"  patient {bal.get('patient_id')}, department {bal.get('department_id')}, "
           f"provider group {bal.get('provider_group_id') or '-'}", ""]
    coll = bal.get("collectible") or []
    out.append(st("bold", "  Collectible here"))
    if coll:
        out.append(table(["CLAIM", "SERVICE DATE", "BALANCE"],
                         [[c["claim_id"], c.get("service_date") or "", c["balance"]]
                          for c in coll], st, indent="    "))
    else:
        out.append("    (none)")
    out.append(f"    total {st('bold', str(bal.get('collectible_total')))}")
    nc = bal.get("not_collectible") or []
    out.append(st("bold", "  Not collectible at this terminal (ask the front desk)"))
    if nc:
        out.append(table(["CLAIM", "BALANCE", "REASON"],
                         [[c["claim_id"], c["balance"], (c["reason"], "yellow")] for c in nc],
                         st, indent="    "))
    else:
        out.append("    (none)")
    copay = bal.get("copay")
    if copay:
        out.append(f"  {st('bold', 'Copay')} expected {copay.get('expected')}")
    return "\n".join(out)


def event_line(ev: dict[str, Any], st: Style) -> str:
    state = str(ev.get("state"))
    parts = [f"#{ev.get('seq')}", st(RESULT_STYLE.get(state, "cyan"), state.ljust(10))]
    amounts = ev.get("amounts") or {}
    if amounts.get("total"):
        parts.append(f"total {amounts['total']}")
    card = ev.get("card")
    if card:
        parts.append(f"card {card.get('brand')} ...{card.get('last4')}")
    if ev.get("epayment_id"):
        parts.append(f"epayment {ev['epayment_id']}")
    err = ev.get("error")
    if err:
        parts.append(st("red", f"{err.get('code')}: {err.get('message')}"))
    if ev.get("final"):
        parts.append(st("dim", "(final)"))
    return "  " + "  ".join(parts)


def _command_error(exc: Any, as_json: bool) -> int:
    if as_json:
        print_json(exc.reply)
    print(f"lobbypay: the terminal said {exc.code}: {exc.message}", file=sys.stderr)
    return EXIT_FAIL


def _one_command(args: argparse.Namespace, staff: bool, send: Callable[[Any], Any],
                 done: Callable[[dict[str, Any]], str]) -> int:
    """Connect, send one command (``send(client)``), print ``done(reply)`` or the reply."""
    from lobbypay.client import ClientError, CommandError

    conn = _connection(args)

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
        return _unreachable(conn, exc)
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


FINAL_STATES = frozenset({"succeeded", "declined", "failed", "canceled", "expired", "voided"})
_CLAIM_RE = re.compile(r"\A([^=\s]+)=(\S+)\Z")


def parse_claims(values: Sequence[str]) -> list[tuple[str, str]]:
    claims = []
    for v in values:
        m = _CLAIM_RE.match(v)
        if not m:
            raise ValueError(f"--claim {v!r}: use CLAIM_ID=AMOUNT, e.g. 5569=40.00")
        claims.append((m.group(1), m.group(2)))
    return claims


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
    conn = _connection(args)
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
        return _unreachable(conn, exc)


# ---------------------------------------------------------------- void and receipt


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


# ---------------------------------------------------------------- swipe


def cmd_swipe(args: argparse.Namespace) -> int:
    from lobbypay_hw.reader_sim import SimReaderError, send_swipe

    path = args.socket
    if not path:
        cfg = _load(_config_path(args), read_secrets=False)
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


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from lobbypay.demo import run_demo

    return run_demo(interactive=args.interactive, no_color=args.no_color,
                    workdir=args.workdir)


def cmd_devices(args: argparse.Namespace) -> int:
    from lobbypay.devices import cmd_devices as run

    return run(args)


# ---------------------------------------------------------------- parser


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "run": ("run the agent in the foreground until SIGTERM", cmd_run),
    "check-config": ("validate a config file (and read its secret files)", cmd_check_config),
    "doctor": ("check config, reader, display, broker, athena, clock and state_dir",
               cmd_doctor),
    "jobs": ("recent jobs from this terminal's journal", cmd_jobs),
    "status": ("this terminal's retained status and state", cmd_status),
    "fleet": ("every terminal on a broker", cmd_fleet),
    "balance": ("a patient's balances, read through the terminal", cmd_balance),
    "charge": ("start a charge on the terminal (for testing); --wait follows it", cmd_charge),
    "void": ("void a succeeded job's payment (staff topic; before athena settles)", cmd_void),
    "receipt": ("have athena email a succeeded job's receipt", cmd_receipt),
    "swipe": ("swipe a test card into a sim reader (no hardware needed)", cmd_swipe),
    "devices": ("card readers and displays plugged in, and the config lines for them",
                cmd_devices),
    "demo": ("run the whole system on loopback and walk through a charge", cmd_demo),
}


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
                            help=f"config file (default {DEFAULT_CONFIG})")
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
    _, fn = COMMANDS[args.command]
    try:
        return fn(args)
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "run" else 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
