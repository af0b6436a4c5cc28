"""An answer of the athena simulator, before it becomes HTTP: status, body, headers, and
the two ways of not answering (closing the connection, answering late)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: What athena's gateway answers (404) for a path or practice it does not serve.
NOT_REGISTERED = "Service not registered with API gateway."


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    delay_s: float = 0.0  # wait before answering (or dropping)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers=headers or {})


def error_reply(
    status: int, error: str, detailed: str | None = None, missing: list[str] | None = None
) -> Reply:
    """athena's error body: ``{"error", "detailedmessage", "missingfields"}``."""
    body: dict[str, Any] = {"error": error}
    if detailed is not None:
        body["detailedmessage"] = detailed
    if missing:
        body["missingfields"] = missing
    return json_reply(status, body)


__all__ = ["NOT_REGISTERED", "Reply", "error_reply", "json_reply"]
