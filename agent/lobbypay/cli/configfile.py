"""The config file as the commands read it: the default path, and a refusal that says
what to do (the key, the missing file, sudo for the installed file, the credential's
directory outside systemd); the template's placeholders still in a valid file.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from lobbypay.ui import EXIT_CONFIG

if TYPE_CHECKING:
    from lobbypay.core.config import Config

DEFAULT_CONFIG = "/etc/lobbypay/lobbypay.toml"


def load_or_exit(path: str, *, read_secrets: bool = True) -> Config:
    from lobbypay.core.config import ConfigError
    from lobbypay.shell.loadconf import load_config

    try:
        return load_config(path, read_secrets=read_secrets)
    except ConfigError as exc:
        if config_missing(exc, path):
            print(f"lobbypay: {no_config(path)}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
        valid = ""
        if read_secrets and exc.key.startswith("athena.client_secret"):
            try:  # say whether only the secret is the problem
                load_config(path, read_secrets=False)
                valid = " (the rest of the file is valid)"
            except ConfigError:
                pass
        print(f"lobbypay: invalid config {path}{valid}: {exc}{credential_hint(exc)}"
              f"{_permission_hint(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _permission_hint(exc: Exception) -> str:
    """The installed config is root:lobbypay 0640: other users need sudo."""
    if getattr(exc, "key", None) == "(file)" and "Permission denied" in str(exc):
        return ("; the installed config is readable by root and the lobbypay group only: "
                "run it with sudo")
    return ""


def config_missing(exc: Exception, path: str) -> bool:
    return getattr(exc, "key", None) == "(file)" and not os.path.exists(path)


def no_config(path: str) -> str:
    """A config file that is not there: on a terminal the installer makes the default."""
    if path != DEFAULT_CONFIG:
        return f"no config file {path}: it does not exist"
    return (f"no config file {path}: it does not exist (lobbypay is not installed here; "
            "the installer makes it): pass --config FILE")


def credential_hint(exc: Exception) -> str:
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


def config_path(args: argparse.Namespace) -> str:
    return str(args.config or DEFAULT_CONFIG)


def optional_config(args: argparse.Namespace) -> Config | None:
    """The config without its athena secret (a maintainer may not be allowed to read it).

    A missing *default* config is fine when the connection options are given; a config
    named with --config must exist and be valid.
    """
    path = config_path(args)
    if args.config is None and not os.path.exists(path):
        return None
    return load_or_exit(path, read_secrets=False)

