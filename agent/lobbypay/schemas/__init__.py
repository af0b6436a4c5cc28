"""JSON Schemas (draft 2020-12) for every protocol v1 message, shipped as package data.

Kinds: the eight commands by their ``type`` (``"balance.get"``, ``"charge.start"``,
``"charge.cancel"``, ``"charge.get"``, ``"charge.list"``, ``"ping"``, ``"charge.void"``,
``"receipt.email"``), ``"command"`` (picks
the schema from ``obj["type"]``), ``"reply"``, ``"charge.event"``, ``"status"``, ``"state"``.
``_defs.json`` holds shared definitions.

The agent does not validate with these at run time (``lobbypay.core.protocol`` is the
authority for commands and is stricter, e.g. duplicate claim ids); tests use them to check
live traffic, and app developers can use them directly. ``jsonschema`` is a test-only
dependency, imported inside ``validate``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

COMMAND_KINDS = (
    "balance.get", "charge.start", "charge.cancel", "charge.get", "charge.list", "ping",
    "charge.void", "receipt.email",
)
MESSAGE_KINDS = ("reply", "charge.event", "status", "state")
KINDS = COMMAND_KINDS + MESSAGE_KINDS
BASE_URI = "https://schemas.lobbypay.invalid/v1/"


def schema_names() -> list[str]:
    """File names of every schema shipped (including ``_defs.json``)."""
    return sorted(
        p.name for p in resources.files(__name__).iterdir() if p.name.endswith(".json")
    )


@cache
def load(name: str) -> dict[str, Any]:
    """One schema by kind (``"reply"``) or file name (``"reply.json"``)."""
    file = name if name.endswith(".json") else f"{name}.json"
    if file not in schema_names():
        raise KeyError(f"no schema {name!r}")
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath(file).read_text("utf-8"))
    return data


@cache
def _validators() -> dict[str, Any]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry().with_resources(
        (BASE_URI + n, Resource.from_contents(load(n))) for n in schema_names()
    )
    return {
        kind: Draft202012Validator(
            load(kind), registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for kind in KINDS
    }


def errors(kind: str, obj: object) -> list[str]:
    """Every schema violation of ``obj`` as text (empty when valid)."""
    if kind == "command":
        named = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(named, str) or named not in COMMAND_KINDS:
            return [f"not a known command type: {named!r}"]
        kind = named
    validator = _validators().get(kind)
    if validator is None:
        raise KeyError(f"no schema for kind {kind!r}; kinds: {', '.join(KINDS)}")
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def validate(kind: str, obj: object) -> None:
    """Raise ``ValueError`` listing the violations if ``obj`` is not a valid ``kind``."""
    problems = errors(kind, obj)
    if problems:
        raise ValueError(f"invalid {kind} message: " + "; ".join(problems))
