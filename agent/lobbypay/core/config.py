"""Typed configuration and its validation (pure: no file or environment access here).

``parse_config(data)`` takes the parsed TOML mapping and returns a ``Config`` or raises
``ConfigError`` naming the offending key (``athena.base_url``). Secrets are not read here:
``Config`` keeps where they come from and ``lobbypay.shell.loadconf`` reads them.

Every key is documented in docs/OPERATIONS.md; the contract's keys are in protocol.md
section 9.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lobbypay.core.money import Cents, InvalidAmount, parse_wire_amount
from lobbypay.core.screen_text import DEFAULT_LANGUAGE, LANGUAGES

TERMINAL_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
ID_RE = re.compile(r"\A[0-9A-Za-z._-]{1,32}\Z")
READER_DRIVERS = ("serial", "evdev", "hidraw", "sim")
DISPLAY_DRIVERS = (
    "serlcd", "matrixorbital", "console", "none", "hd44780-i2c", "ssd1306", "sh1106", "framebuffer",
)
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """Invalid configuration. ``key`` is the dotted key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key {key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    id: str
    department_id: str
    state_dir: str
    max_charge: Cents = Cents(500000)
    language: str = DEFAULT_LANGUAGE  # the display's language between jobs and by default


@dataclass(frozen=True, slots=True)
class AthenaConfig:
    base_url: str
    practice_id: str
    client_id: str
    client_secret_file: str | None = None
    client_secret_credential: str | None = None  # name under $CREDENTIALS_DIRECTORY
    client_secret: str | None = field(default=None, repr=False)  # filled by loadconf
    timeout_s: float = 20.0
    reconcile_settle_s: float = 120.0
    rate_limit_rps: float = 5.0
    token_scope: str = "athena/service/Athenanet.MDP.*"  # noqa: S105 - an OAuth scope


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "auto"  # "auto" (5, or 3.1.1 when the broker refuses 5), "5", "3.1.1"
    username: str | None = None
    password_file: str | None = None
    password: str | None = field(default=None, repr=False)  # filled by loadconf
    tls: bool = False
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    keepalive_s: int = 30
    client_id: str | None = None  # default: "lobbypay-<terminal.id>"


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    driver: str = "serial"
    path: str | None = None
    baudrate: int = 9600
    grab: bool = True  # evdev: exclusive grab (keeps swipes off consoles)


@dataclass(frozen=True, slots=True)
class DisplayConfig:
    driver: str = "none"
    path: str | None = None
    baudrate: int = 9600
    cols: int = 16
    rows: int = 2
    # driver-specific keys (I2C bus and address, wiring, font...), passed to the driver
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StaffConfig:
    enabled: bool = False  # also take commands on lobbypay/v1/<tid>/staff/cmd (protocol 10)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "json"  # "json" | "text"


@dataclass(frozen=True, slots=True)
class Config:
    terminal: TerminalConfig
    athena: AthenaConfig
    mqtt: MqttConfig
    reader: ReaderConfig
    display: DisplayConfig
    logging: LoggingConfig = LoggingConfig()
    staff: StaffConfig = StaffConfig()


# ---------------------------------------------------------------- helpers


class _Section:
    """Typed getters over one TOML table that name the dotted key on error."""

    def __init__(self, data: Mapping[str, Any], name: str) -> None:
        self.name = name
        raw = data.get(name, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(name, "must be a table")
        self.raw = raw

    def key(self, k: str) -> str:
        return f"{self.name}.{k}"

    def text(self, k: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.raw.get(k)
        if v is None:
            if required:
                raise ConfigError(self.key(k), "is required")
            return default
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ConfigError(self.key(k), f"must be a string, got {type(v).__name__}")
        v = str(v).strip()
        if not v:
            if required:
                raise ConfigError(self.key(k), "must not be empty")
            return default
        return v

    def req(self, k: str) -> str:
        v = self.text(k, required=True)
        assert v is not None
        return v

    def number(self, k: str, default: float, lo: float, hi: float) -> float:
        v = self.raw.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(self.key(k), f"must be a number, got {type(v).__name__}")
        if not (lo <= v <= hi):
            raise ConfigError(self.key(k), f"must be between {lo:g} and {hi:g}, got {v:g}")
        return float(v)

    def integer(self, k: str, default: int, lo: int, hi: int) -> int:
        v = self.raw.get(k, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.key(k), f"must be an integer, got {type(v).__name__}")
        if not (lo <= v <= hi):
            raise ConfigError(self.key(k), f"must be between {lo} and {hi}, got {v}")
        return v

    def boolean(self, k: str, default: bool) -> bool:
        v: object = self.raw.get(k, default)
        if not isinstance(v, bool):
            raise ConfigError(self.key(k), f"must be true or false, got {type(v).__name__}")
        return v

    def choice(self, k: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.text(k, default)
        assert v is not None
        if v not in choices:
            raise ConfigError(self.key(k), f"must be one of {', '.join(choices)}; got {v!r}")
        return v


def _display_options(d: _Section, driver: str) -> dict[str, Any]:
    """The keys only some displays take (docs/drivers.md has each display's page)."""
    opts: dict[str, Any] = {}
    if driver == "hd44780-i2c":
        opts["bus"] = d.integer("bus", 1, 0, 255)
        opts["address"] = d.integer("address", 0x27, 0x03, 0x77)
        opts["backlight"] = d.boolean("backlight", True)
        opts["wiring"] = d.choice("wiring", "standard", ("standard", "mjkdz"))
    elif driver in ("ssd1306", "sh1106"):
        opts["interface"] = d.choice("interface", "i2c", ("i2c", "spi"))
        spi = opts["interface"] == "spi"
        opts["bus"] = d.integer("bus", 0 if spi else 1, 0, 255)
        opts["address"] = d.integer("address", 0x3C, 0x03, 0x77)
        opts["spi_device"] = d.integer("spi_device", 0, 0, 255)
        opts["gpio_dc"] = d.integer("gpio_dc", 24, 0, 63)
        opts["gpio_rst"] = d.integer("gpio_rst", 25, 0, 63)
        opts["rotate"] = d.integer("rotate", 0, 0, 3)
    if driver in ("ssd1306", "sh1106", "framebuffer"):
        font = d.text("font")
        if font is not None:
            opts["font"] = font
    return opts


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" ("Invalid IPv6 URL")
        raise ConfigError("athena.base_url", f"not a URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("athena.base_url", f"must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "athena.base_url", "http:// is allowed only for loopback hosts; use https://"
        )
    if parts.query or parts.fragment:
        raise ConfigError("athena.base_url", "must not carry a query or fragment")
    return url.rstrip("/")


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML mapping. Raises ConfigError naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError("(top)", "the config must be a TOML table")

    t = _Section(data, "terminal")
    tid = t.req("id")
    if not TERMINAL_ID_RE.match(tid):
        raise ConfigError("terminal.id", "use 1-64 of letters, digits, '.', '_' or '-'")
    dept = t.req("department_id")
    if not ID_RE.match(dept):
        raise ConfigError("terminal.department_id", f"not an athena id: {dept!r}")
    try:
        max_charge = parse_wire_amount(t.text("max_charge", "5000.00"))
    except InvalidAmount as exc:
        raise ConfigError("terminal.max_charge", str(exc)) from None
    if max_charge <= 0:
        raise ConfigError("terminal.max_charge", "must be above 0.00")
    terminal = TerminalConfig(
        id=tid, department_id=dept, state_dir=t.text("state_dir", "/var/lib/lobbypay") or "",
        max_charge=max_charge, language=t.choice("language", DEFAULT_LANGUAGE, LANGUAGES),
    )

    a = _Section(data, "athena")
    secret_file = a.text("client_secret_file")
    secret_cred = a.text("client_secret_credential")
    if secret_file is None and secret_cred is None:
        raise ConfigError(
            "athena.client_secret_file", "is required (or athena.client_secret_credential)"
        )
    practice = a.req("practice_id")
    if not ID_RE.match(practice):
        raise ConfigError("athena.practice_id", f"not an athena id: {practice!r}")
    athena = AthenaConfig(
        base_url=_check_base_url(a.req("base_url")),
        practice_id=practice,
        client_id=a.req("client_id"),
        client_secret_file=secret_file,
        client_secret_credential=secret_cred,
        timeout_s=a.number("timeout_s", 20, 0.1, 120),
        reconcile_settle_s=a.number("reconcile_settle_s", 120, 5, 3600),
        rate_limit_rps=a.number("rate_limit_rps", 5, 0.1, 100),
        token_scope=a.text("token_scope", "athena/service/Athenanet.MDP.*") or "",
    )

    m = _Section(data, "mqtt")
    tls = m.boolean("tls", False)
    certfile, keyfile = m.text("certfile"), m.text("keyfile")
    if (certfile is None) != (keyfile is None):
        raise ConfigError("mqtt.keyfile" if keyfile is None else "mqtt.certfile",
                          "certfile and keyfile go together")
    username = m.text("username")
    password_file = m.text("password_file")
    if password_file and not username:
        raise ConfigError("mqtt.username", "is required when mqtt.password_file is set")
    mqtt = MqttConfig(
        host=m.text("host", "127.0.0.1") or "127.0.0.1",
        port=m.integer("port", 8883 if tls else 1883, 1, 65535),
        protocol=m.choice("protocol", "auto", ("auto", "5", "3.1.1")),
        username=username,
        password_file=password_file,
        tls=tls,
        ca_file=m.text("ca_file"),
        certfile=certfile,
        keyfile=keyfile,
        keepalive_s=m.integer("keepalive_s", 30, 5, 600),
        client_id=m.text("client_id"),
    )

    r = _Section(data, "reader")
    # No [reader] table at all: a terminal without a card reader yet (a bench, a trial):
    # the sim reader, which only takes swipes from `lobbypay swipe`. `doctor` flags it.
    rdriver = r.choice("driver", "serial" if "reader" in data else "sim", READER_DRIVERS)
    rpath = r.text("path")
    if rdriver in ("serial", "evdev", "hidraw") and not rpath:
        raise ConfigError("reader.path", f"is required for the {rdriver} reader")
    reader = ReaderConfig(
        driver=rdriver, path=rpath, baudrate=r.integer("baudrate", 9600, 300, 921600),
        grab=r.boolean("grab", True),
    )

    d = _Section(data, "display")
    ddriver = d.choice("driver", "none", DISPLAY_DRIVERS)
    dpath = d.text("path")
    if ddriver in ("serlcd", "matrixorbital") and not dpath:
        raise ConfigError("display.path", f"is required for the {ddriver} display")
    graphic = ddriver in ("ssd1306", "sh1106", "framebuffer")
    if ddriver == "framebuffer":
        dpath = dpath or "/dev/fb0"
    display = DisplayConfig(
        driver=ddriver, path=dpath, baudrate=d.integer("baudrate", 9600, 300, 921600),
        cols=d.integer("cols", 20 if graphic else 16, 8, 40),
        rows=d.integer("rows", 4 if graphic else 2, 1, 4),
        options=_display_options(d, ddriver),
    )

    lg = _Section(data, "logging")
    logging_cfg = LoggingConfig(
        level=lg.choice("level", "info", LOG_LEVELS),
        format=lg.choice("format", "json", ("json", "text")),
    )
    staff = StaffConfig(enabled=_Section(data, "staff").boolean("enabled", False))
    return Config(terminal, athena, mqtt, reader, display, logging_cfg, staff)
