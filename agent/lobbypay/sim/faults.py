"""The athena simulator's faults: scripted misbehaviour, and what each does to a request.

A ``Fault`` is validated from a mapping (``add_fault`` and ``POST /_sim/faults`` take the
same fields; docs/athena.md lists them). ``Faults`` queues them and answers for them:

* the gateway's faults (``status``, ``throttle``, ``over_qps``, ``html``, ``body``) answer
  *instead of* the application, on any endpoint; with ``apply`` the application ran first
  (a collectpayment or a void that landed, its answer lost);
* the token endpoint's: a scripted failure, or a ``token_lockout`` (429 for a while);
* collectpayment's: ``slow`` (answer late, or a gateway 504 after the wait), ``drop``
  (close the connection), ``echo_error`` (an error text quoting the track), and
  ``decline_next`` (the next card that would be approved is declined);
* voidpayment's ``refuse_void``; ``expire_tokens`` acts at once.

A fault is consumed one matching request at a time (``count``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lobbypay.sim.reply import Reply, error_reply, json_reply
from lobbypay.sim.world import World

FAULT_KINDS = (
    "decline_next",
    "slow",
    "drop",
    "status",
    "throttle",
    "over_qps",
    "html",
    "body",
    "token_lockout",
    "expire_tokens",
    "echo_error",
    "refuse_void",
)
ENDPOINTS = (
    "any",
    "token",
    "patient",
    "appointment",
    "departments",
    "collectpayment",
    "receipts",
    "voidpayment",
    "receiptemail",
    "ping",
)
VOID_REFUSED_TEXT = "The payment could not be voided. Contact your athenaOne administrator"
OVER_QPS_HTML = "<html><body><h1>Developer Over Qps</h1></body></html>"
ERROR_HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)
_GATEWAY_KINDS = ("status", "throttle", "over_qps", "html", "body")


@dataclass(slots=True)
class Fault:
    """One scripted misbehaviour. ``count`` is how many matching requests it affects."""

    kind: str
    endpoint: str = "any"
    count: int = 1
    status: int | None = None
    seconds: float | None = None
    apply: bool = False
    retry_after: float | None = None
    body: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        if not isinstance(data, Mapping):
            raise ValueError("a fault is a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        default_endpoint = {
            "decline_next": "collectpayment",
            "slow": "collectpayment",
            "drop": "collectpayment",
            "echo_error": "collectpayment",
            "refuse_void": "voidpayment",
            "token_lockout": "token",
        }.get(kind, "any")
        endpoint = data.get("endpoint", default_endpoint)
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        count = data.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        status = data.get("status")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise ValueError("status must be an HTTP status code")
        seconds = data.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= 600
        ):
            raise ValueError("seconds must be a number between 0 and 600")
        retry_after = data.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int | float)
            or not 0 <= retry_after <= 3600
        ):
            raise ValueError("retry_after must be a number of seconds")
        apply = data.get("apply", False)
        if not isinstance(apply, bool):
            raise ValueError("apply must be a boolean")
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("body must be a string")
        if kind in ("decline_next", "slow", "drop", "echo_error") and endpoint != "collectpayment":
            raise ValueError(f"{kind} applies to collectpayment only")
        if kind == "refuse_void" and endpoint != "voidpayment":
            raise ValueError("refuse_void applies to voidpayment only")
        if kind == "slow" and seconds is None:
            raise ValueError("slow needs seconds")
        if kind == "body" and body is None:
            raise ValueError("body needs body")
        return cls(kind, endpoint, count, status, seconds, apply, retry_after, body)


class Faults:
    """The faults scripted for one simulator, and the answers they give. Guarded by the
    world's lock; ``token_lockout`` and ``expire_tokens`` act on the world's tokens."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._pending: list[Fault] = []
        self._token_lock_until = 0.0  # monotonic
        self._token_lock_retry_after: float | None = None

    # ------------------------------------------------------------ the queue

    def install(self, fault: Fault) -> None:
        with self._world.lock:
            if fault.kind == "expire_tokens":
                self._world.tokens.clear()
                return
            if fault.kind == "token_lockout":
                wall = self._world.now()
                seconds = fault.seconds if fault.seconds is not None else 60 - wall.second
                self._token_lock_until = time.monotonic() + seconds
                self._token_lock_retry_after = fault.retry_after
                return
            self._pending.append(fault)

    def reset(self) -> None:
        """Forget the scripted faults (a token lockout runs its course)."""
        with self._world.lock:
            self._pending = []

    def listed(self) -> list[dict[str, Any]]:
        with self._world.lock:
            return [asdict(f) for f in self._pending]

    def take(self, endpoint: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume one use of the first pending fault of ``kinds`` matching ``endpoint``."""
        with self._world.lock:
            for fault in self._pending:
                if fault.kind in kinds and fault.endpoint in ("any", endpoint):
                    if fault.endpoint == "any" and endpoint == "token":
                        continue  # token faults are asked for by name
                    fault.count -= 1
                    if fault.count <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------ what they answer

    def gateway(self, endpoint: str) -> tuple[Fault, Reply] | None:
        """A gateway fault's answer, given instead of the application's."""
        fault = self.take(endpoint, _GATEWAY_KINDS)
        if fault is None:
            return None
        if fault.kind == "status":
            status = fault.status or 503
            return fault, error_reply(
                status, "Service Unavailable" if status >= 500 else f"HTTP {status}"
            )
        if fault.kind == "throttle":
            retry = fault.retry_after if fault.retry_after is not None else 1
            return fault, json_reply(
                fault.status or 429,
                {
                    "fault": {
                        "faultstring": "Rate limit quota violation. Quota limit exceeded.",
                        "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
                    }
                },
                {"Retry-After": f"{retry:g}"},
            )
        if fault.kind == "over_qps":
            hdrs = {"X-Mashery-Error-Code": "ERR_403_DEVELOPER_OVER_QPS"}
            if fault.retry_after is not None:
                hdrs["Retry-After"] = f"{fault.retry_after:g}"
            return fault, Reply(403, OVER_QPS_HTML.encode(), "text/html", hdrs)
        if fault.kind == "html":
            return fault, Reply(fault.status or 502, ERROR_HTML.encode(), "text/html")
        body = fault.body or ""
        return fault, Reply(fault.status or 200, body.encode(), "application/json")

    def token_endpoint(self) -> Reply | None:
        """The token endpoint's answer while locked out or under a scripted fault."""
        with self._world.lock:
            locked_for = self._token_lock_until - time.monotonic()
            retry = self._token_lock_retry_after
        if locked_for > 0:
            hdrs = {}
            if retry is not None:
                hdrs["Retry-After"] = f"{retry:g}"
            return json_reply(
                429,
                {"error": "Too Many Requests", "detailedmessage": "Token request limit exceeded"},
                hdrs,
            )
        fault = self.take("token", ("status", "throttle", "html", "body"))
        if fault is None:
            return None
        if fault.kind == "throttle":
            return json_reply(429, {"error": "Too Many Requests"})
        if fault.kind == "html":
            return Reply(fault.status or 502, ERROR_HTML.encode(), "text/html")
        if fault.kind == "body":
            return Reply(fault.status or 200, (fault.body or "").encode())
        return error_reply(fault.status or 503, "Service Unavailable")

    def collectpayment(self, form: Mapping[str, str], collect: Callable[[], Reply]) -> Reply | None:
        """A collectpayment fault's answer (``collect`` runs the application: a ``slow``
        or ``drop`` with ``apply`` charges first), or None to answer normally."""
        slow = self.take("collectpayment", ("slow",))
        if slow is not None:
            seconds = slow.seconds or 0.0
            if slow.apply:
                reply = collect()
                reply.delay_s = seconds
                return reply
            # athena's application never got to it; the gateway gives up after the wait
            return Reply(
                504, ERROR_HTML.replace("502 Bad", "504").encode(), "text/html", delay_s=seconds
            )
        drop = self.take("collectpayment", ("drop",))
        if drop is not None:
            if drop.apply:
                collect()
            return Reply(0, drop=True)
        echo = self.take("collectpayment", ("echo_error",))
        if echo is not None:
            # A careless error text that quotes the request (the client must scrub it).
            return error_reply(
                400,
                f"Invalid trackdata: {form.get('trackdata', '')}",
                f"Could not read card {form.get('trackdata', '')}",
            )
        return None

    def decline_next(self) -> bool:
        """Consume a ``decline_next``: the card that would be approved is declined."""
        return self.take("collectpayment", ("decline_next",)) is not None

    def refuse_void(self) -> Reply | None:
        if self.take("voidpayment", ("refuse_void",)) is None:
            return None
        return json_reply(200, [{"success": "false", "errortext": VOID_REFUSED_TEXT}])


__all__ = ["ENDPOINTS", "FAULT_KINDS", "VOID_REFUSED_TEXT", "Fault", "Faults"]
