"""Read a TOML config file and its secret files into a validated ``Config``.

Secrets come from files (``athena.client_secret_file``, ``mqtt.password_file``) or from
systemd credentials (``athena.client_secret_credential`` names a file under
``$CREDENTIALS_DIRECTORY``, which ``LoadCredential=`` fills). Surrounding whitespace (a
trailing newline) is stripped. Errors name the key and never echo a secret.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from lobbypay.core.config import Config, ConfigError, parse_config

#: A secret file larger than this is not a secret file (a path mistake, a binary).
MAX_SECRET_BYTES = 4096


def _read_secret(path: str, key: str) -> str:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SECRET_BYTES:
            raise ConfigError(key, f"{path} is {size} bytes; a secret file holds one short line")
        raw = p.read_bytes()
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(key, f"secret file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(key, f"secret file {path} is not readable by this user") from None
    except OSError as exc:
        raise ConfigError(key, f"secret file {path} cannot be read ({exc.strerror})") from None
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key, f"secret file {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(key, f"secret file {path} is empty")
    if "\n" in secret or "\r" in secret:
        raise ConfigError(key, f"secret file {path} holds more than one line")
    return secret


def _credential_path(name: str, env: Mapping[str, str]) -> str:
    creds = env.get("CREDENTIALS_DIRECTORY")
    if not creds:
        raise ConfigError(
            "athena.client_secret_credential",
            "set, but $CREDENTIALS_DIRECTORY is not (run under systemd with LoadCredential=)",
        )
    if "/" in name or name in (".", ".."):
        raise ConfigError("athena.client_secret_credential", "must be a plain credential name")
    return os.path.join(creds, name)


def parse_toml_text(text: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"not valid TOML: {exc}") from None


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    read_secrets: bool = True,
) -> Config:
    """Load and validate the config at ``path``; raises ConfigError naming the key."""
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("(file)", f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"{path} cannot be read: {exc}") from None
    cfg = parse_config(parse_toml_text(text))
    if not read_secrets:
        return cfg
    a = cfg.athena
    if a.client_secret_file:
        secret = _read_secret(a.client_secret_file, "athena.client_secret_file")
    else:
        assert a.client_secret_credential is not None
        secret = _read_secret(
            _credential_path(a.client_secret_credential, env), "athena.client_secret_credential"
        )
    athena = dataclasses.replace(a, client_secret=secret)
    mqtt = cfg.mqtt
    if mqtt.password_file:
        password = _read_secret(mqtt.password_file, "mqtt.password_file")
        mqtt = dataclasses.replace(mqtt, password=password)
    for key, value in (("mqtt.ca_file", mqtt.ca_file), ("mqtt.certfile", mqtt.certfile),
                       ("mqtt.keyfile", mqtt.keyfile)):
        if value is not None and not os.access(value, os.R_OK):
            raise ConfigError(key, f"{value} does not exist or is not readable")
    return dataclasses.replace(cfg, athena=athena, mqtt=mqtt)
