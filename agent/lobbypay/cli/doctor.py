"""``lobbypay doctor``: config, reader, display, broker, athena, clock and state_dir, one
check each (PASS, WARN or FAIL with a hint); ``--swipe`` then waits for one swipe.

The reader and swipe checks are ``lobbypay.devices``'s; a check that needs a library
(httpx, the athena client, the display probes) imports it when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from lobbypay.cli.configfile import (
    PLACEHOLDER,
    config_missing,
    config_path,
    credential_hint,
    no_config,
    placeholder_warnings,
)
from lobbypay.cli.connection import Connection, connection_from
from lobbypay.ui import EXIT_FAIL, EXIT_OK, RESULT_STYLE, Cell, Style, print_json, table

if TYPE_CHECKING:
    from lobbypay.core.config import Config

#: A clock this far from athena's is wrong enough to warn / to fail (receipt matching
#: after an unknown outcome compares times; tokens and TLS need a sane clock).
CLOCK_WARN_S, CLOCK_FAIL_S = 60.0, 300.0
#: Earliest plausible year: a Pi without RTC or network boots in 1970 or at its build date.
CLOCK_MIN_YEAR = 2024


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


def check_reader(cfg: Config) -> Check:
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


def check_display(cfg: Config) -> Check:
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


def check_state_dir(cfg: Config) -> Check:
    from lobbypay.shell.journal import DB_NAME

    d = cfg.terminal.state_dir
    if os.path.isdir(d):
        if os.access(d, os.W_OK | os.X_OK):
            journal = os.path.join(d, DB_NAME)
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


def check_clock(now: datetime, athena_date: datetime | None, *,
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


async def check_broker(conn: Connection) -> Check:
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


async def check_athena(cfg: Config) -> Check:
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


def check_secret(cfg: Config, exc: Exception) -> Check:
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
    return Check("config", "FAIL", detail + credential_hint(exc), _fix_key(key))


def _fix_key(key: str) -> str:
    if key == "(file)":
        return "fix the file (see config/lobbypay.example.toml)"
    return f"fix {key}; see config/lobbypay.example.toml"


async def _doctor_async(args: argparse.Namespace, checks: list[Check]) -> None:
    from lobbypay.core.config import ConfigError
    from lobbypay.shell.loadconf import load_config
    from lobbypay.shell.timesync import clock_synchronized

    path = config_path(args)
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
            if config_missing(exc, path):
                checks.append(Check("config", "FAIL", no_config(path),
                                    "see config/lobbypay.example.toml and docs/install.md"))
            else:
                checks.append(Check("config", "FAIL", f"{path}: {exc}{credential_hint(exc)}",
                                    _fix_key(exc.key)))
            checks.append(check_clock(datetime.now(UTC), None, compared=False))
            return
        cfg, secret_error = usable, exc
    placeholders = placeholder_warnings(cfg) if secret_error is None else []
    if placeholders:
        checks.append(Check("config", "WARN", f"{path}: " + "; ".join(placeholders),
                            f"fill in the keys marked {PLACEHOLDER}-... (docs/install.md)"))
    elif secret_error is None:
        checks.append(Check("config", "PASS", f"{path} (terminal {cfg.terminal.id})"))
    else:
        checks.append(check_secret(cfg, secret_error))
    checks.append(check_reader(cfg))
    checks.append(check_display(cfg))
    conn = connection_from(args)
    checks.append(await check_broker(conn))
    if secret_error is None:
        checks.append(await check_athena(cfg))
    else:
        checks.append(Check("athena", "WARN", "not checked: the client secret was not read",
                            "see the config line"))
    athena_date = await _athena_date(cfg.athena.base_url, min(cfg.athena.timeout_s, 10.0))
    checks.append(check_clock(datetime.now(UTC), athena_date, synced=clock_synchronized()))
    checks.append(check_state_dir(cfg))
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

