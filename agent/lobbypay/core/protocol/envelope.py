"""What every v1 message shares: the version, the JSON encoding, the reply envelope (pure).

``encode_json`` is the one JSON encoder for everything lobbypay puts on MQTT (compact,
UTF-8, never NaN, key order as built so output is deterministic; aware datetimes become
``format_time`` strings). ``reply_object`` / ``encode_reply`` / ``error_reply`` build the
section-2 reply envelope.
"""

from __future__ import annotations

import json
from datetime import datetime

from lobbypay.core.errors import Code
from lobbypay.core.protocol.times import format_time

#: The ``v`` of every command, reply, event, ``status`` and ``state`` (protocol.md 2, 5, 8).
PROTOCOL_VERSION = 1


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as protocol JSON")


def encode_json(obj: object) -> bytes:
    """Compact UTF-8 JSON; aware datetimes become RFC 3339 "Z" strings; NaN is refused."""
    return json.dumps(
        obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    ).encode("utf-8")


def reply_object(
    request_id: str | None, command: str | None, ok: bool = True, **fields: object
) -> dict[str, object]:
    """The reply envelope as a dict (section 2); ``fields`` follow ``ok``."""
    reserved = {"v", "type", "request_id", "command", "ok"} & fields.keys()
    if reserved:
        raise ValueError(f"reply fields may not override {sorted(reserved)}")
    return {
        "v": PROTOCOL_VERSION,
        "type": "reply",
        "request_id": request_id,
        "command": command,
        "ok": ok,
        **fields,
    }


def encode_reply(
    request_id: str | None, command: str | None, ok: bool = True, **fields: object
) -> bytes:
    """Encode a reply. For errors prefer ``error_reply``."""
    return encode_json(reply_object(request_id, command, ok, **fields))


def error_reply(
    request_id: str | None, command: str | None, code: Code | str, message: str, **extra: object
) -> bytes:
    """``ok: false`` reply with ``error: {code, message}``; ``extra`` sits beside ``error``
    (for example ``active_job_id`` on ``terminal_busy``)."""
    if "error" in extra:
        raise ValueError("error_reply builds 'error' itself")
    return encode_reply(
        request_id, command, False, error={"code": str(code), "message": message}, **extra
    )
