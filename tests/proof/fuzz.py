"""Fuzzing helpers: mutated MQTT commands fired at a running agent, mutated swipes and
mutated config files. Seeded ``random.Random`` so a failing case can be replayed (each
case carries its index; ``payload_for(seed, i)`` rebuilds it).

The MQTT driver uses MQTT 5 Response Topic + Correlation Data, so every reply, also those
with ``request_id: null``, is matched to the exact payload that caused it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from lobbypay.core.errors import Code
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

#: every code the protocol documents (docs/protocol.md section 7)
DOCUMENTED_CODES = frozenset(c.value for c in Code)

SEEDS: list[dict[str, Any]] = [
    {"v": 1, "type": "ping", "request_id": "p"},
    {"v": 1, "type": "balance.get", "request_id": "b", "patient_id": "60178",
     "department_id": "1", "appointment_id": "1001"},
    {"v": 1, "type": "charge.start", "request_id": "s", "job_id": "fz-1", "patient_id": "60178",
     "department_id": "1", "appointment_id": "1001", "copay": "25.00",
     "claims": [{"claim_id": "5569", "amount": "1.00"}], "allow_duplicate": False,
     "deadline_s": 120, "expires_at": "2099-01-01T00:00:00Z"},
    {"v": 1, "type": "charge.cancel", "request_id": "c", "job_id": "fz-1"},
    {"v": 1, "type": "charge.get", "request_id": "g", "job_id": "fz-1"},
    {"v": 1, "type": "charge.list", "request_id": "l", "limit": 5},
]

NAN = float("nan")
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, 10**40, -(10**40), 1.5, 1e308, NAN, float("inf"),
    "", " ", "1", "x" * 65, "x" * 5000, "\u0000", "\ud800", "é", "☃" * 100, "25.00", "-1.00",
    "1e3", "NaN", "0x10", "９", [], [1], {}, {"a": 1}, [[[[[]]]]], "2026-13-45T99:99:99Z",
    "../../etc/passwd", "lobbypay/v1/+/cmd", "%B4000000000000002^X/Y^3012?",
]


def _deep(depth: int) -> Any:
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


def _nan_dumps(obj: Any) -> bytes:
    # allow_nan: NaN/Infinity literals are what a sloppy app would send
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def mutate(rng: random.Random, i: int) -> bytes:
    """Case ``i``: a valid command mutated by one to three operators."""
    cmd = json.loads(json.dumps(rng.choice(SEEDS)))
    cmd["request_id"] = f"fz{i}"
    if cmd["type"] == "charge.start":
        cmd["job_id"] = f"fz-{i}"
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(12)
        keys = list(cmd)
        if op == 0 and keys:  # drop a field
            cmd.pop(rng.choice(keys))
        elif op in (1, 2) and keys:  # a field of the wrong type / odd value
            cmd[rng.choice(keys)] = rng.choice(ODD_VALUES)
        elif op == 3:  # an unknown field (must be ignored)
            cmd[f"extra{rng.randrange(99)}"] = rng.choice(ODD_VALUES)
        elif op == 4:  # deep nesting somewhere
            cmd[rng.choice(keys or ["x"])] = _deep(rng.choice((10, 40, 200, 400)))
        elif op == 5:  # huge string
            cmd[rng.choice(keys or ["x"])] = "A" * rng.choice((100, 70_000, 200_000))
        elif op == 6 and isinstance(cmd.get("claims"), list):  # claims games
            cmd["claims"] = rng.choice([
                [{"claim_id": "5569", "amount": "1.00"}] * 2,
                [{"claim_id": "5569"}], [{"amount": "1.00"}], [None], ["5569"],
                [{"claim_id": "5569", "amount": rng.choice(ODD_VALUES)}],
                [{"claim_id": str(k), "amount": "0.01"} for k in range(101)],
            ])
        elif op == 7:  # v games
            cmd["v"] = rng.choice([2, "1", 1.0, True, None, 0])
        elif op == 8:  # type games
            cmd["type"] = rng.choice(["", "PING", "charge", "charge.start ", 7, None,
                                      "balance.get\u0000", "reply", "charge.event"])
        elif op == 9:  # request_id games
            cmd["request_id"] = rng.choice(["", "x" * 65, 5, None, ["a"], "ok-\u00e9"])
        elif op == 10:  # amounts
            for k in ("copay",):
                if k in cmd:
                    cmd[k] = rng.choice(["1.0", "01.00", "1.000", "+1.00", " 1.00", "1,00",
                                         "99999999.99", "0.00", 1.0, NAN])
        else:  # deadline / limit / expires_at ranges
            k = rng.choice(["deadline_s", "limit", "expires_at"])
            cmd[k] = rng.choice([9, 301, 0, -5, 120.0, "120", 10**30, "2099-01-01T00:00:00",
                                 "yesterday", "2000-01-01T00:00:00Z"])
    raw = _nan_dumps(cmd)
    post = rng.randrange(10)
    if post == 0:  # byte-level: truncate
        raw = raw[: rng.randrange(len(raw) + 1)]
    elif post == 1:  # invalid UTF-8 inside
        at = rng.randrange(len(raw) + 1)
        raw = raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]) + raw[at:]
    elif post == 2:  # a random byte flipped
        if raw:
            at = rng.randrange(len(raw))
            raw = raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1:]
    elif post == 4:  # nesting deeper than any encoder here would write
        depth = rng.choice((1000, 20_000, 200_000))
        raw = raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}" if raw else raw
    elif post == 3:  # not an object at all
        raw = rng.choice([b"", b"null", b"[]", b"1e999999", b"\"ping\"", b"{", b"[" * 100_000,
                          b"\x00" * 10, json.dumps(cmd).encode() * 2])
    return raw


@dataclass
class FuzzStats:
    sent: int = 0
    answered: int = 0
    ok_true: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (case, problem)
    seconds: float = 0.0

    @property
    def unanswered(self) -> int:
        return self.sent - self.answered


def check_reply(sent: bytes, reply: bytes) -> str | None:
    """None if ``reply`` is a right answer to ``sent``, else what is wrong with it."""
    try:
        obj = json.loads(reply)
    except ValueError:
        return "reply is not JSON"
    if not isinstance(obj, dict) or obj.get("type") != "reply" or obj.get("v") != 1:
        return f"not a reply envelope: {reply[:120]!r}"
    try:
        src = json.loads(sent)
        rid = src.get("request_id") if isinstance(src, dict) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        rid = None
    if obj.get("request_id") is not None and obj.get("request_id") != rid:
        return "request_id echoed wrong"
    if obj.get("ok") is True:
        return None
    if obj.get("ok") is not False:
        return "ok is neither true nor false"
    err = obj.get("error")
    if not isinstance(err, dict) or err.get("code") not in DOCUMENTED_CODES:
        return f"undocumented error: {err!r}"
    if err["code"] == "internal_error":
        return f"internal_error: {err.get('message')}"
    return None


async def fire(port: int, tid: str, payloads: list[bytes], *, window: int = 48,
               timeout: float = 30, first_case: int = 0) -> FuzzStats:  # noqa: ASYNC109
    """Send every payload to the agent's cmd topic (QoS 1) with at most ``window``
    unanswered at once; wait for each reply by correlation data; check each."""
    stats = FuzzStats()
    inbox = f"fuzz/{uuid.uuid4().hex[:8]}/in"
    replies: dict[int, bytes] = {}
    got = asyncio.Condition()
    t0 = time.monotonic()
    client = aiomqtt.Client("127.0.0.1", port, identifier=f"fuzz-{uuid.uuid4().hex[:6]}",
                            protocol=aiomqtt.ProtocolVersion.V5, max_queued_incoming_messages=0)
    async with client:
        await client.subscribe(inbox, qos=1)

        async def rx() -> None:
            async for m in client.messages:
                cd = getattr(m.properties, "CorrelationData", None)
                if cd is None:
                    continue
                async with got:
                    replies[int.from_bytes(cd, "big")] = bytes(m.payload)  # type: ignore[arg-type]
                    got.notify_all()

        rx_task = asyncio.create_task(rx())
        try:
            for i, payload in enumerate(payloads):
                async with got:
                    await asyncio.wait_for(got.wait_for(lambda i=i: i - len(replies) < window),
                                           timeout)
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = inbox
                props.CorrelationData = i.to_bytes(4, "big")
                await client.publish(f"lobbypay/v1/{tid}/cmd", payload, qos=1, properties=props)
                stats.sent += 1
            try:
                async with got:
                    await asyncio.wait_for(got.wait_for(lambda: len(replies) >= len(payloads)),
                                           timeout)
            except TimeoutError:
                pass
        finally:
            rx_task.cancel()
            await asyncio.gather(rx_task, return_exceptions=True)
    stats.seconds = time.monotonic() - t0
    stats.answered = len(replies)
    for i, payload in enumerate(payloads):
        if i not in replies:
            stats.bad.append((first_case + i, "no reply"))
            continue
        problem = check_reply(payload, replies[i])
        obj = json.loads(replies[i])
        if obj.get("ok") is True:
            stats.ok_true += 1
        else:
            stats.codes[str((obj.get("error") or {}).get("code"))] += 1
        if problem:
            stats.bad.append((first_case + i, problem))
    return stats


def payloads(seed: int, n: int, start: int = 0) -> list[bytes]:
    rng = random.Random(seed * 1_000_003 + start)  # noqa: S311 - reproducible fuzzing
    return [mutate(rng, start + i) for i in range(n)]


# ------------------------------------------------------------------ swipes


def mutate_swipe(rng: random.Random) -> bytes:
    """Reader output: a good track mutated, or noise. May (rarely) stay a valid card."""
    base = rng.choice([
        b"%B4111111111111111^SANDBOXTEST/JANE^3012101000000000000000?"
        b";4111111111111111=30121010000000000000?",
        b";4000000000000002=30121010000000000000?", b"%E?;E?", b"",
    ])
    out = bytearray(base)
    for _ in range(rng.randint(0, 6)):
        op = rng.randrange(5)
        if op == 0 and out:
            del out[rng.randrange(len(out))]
        elif op == 1:
            out.insert(rng.randrange(len(out) + 1), rng.randrange(256))
        elif op == 2 and out:
            out[rng.randrange(len(out))] = rng.choice(b"0123456789?;=%^B\r\n\x00\xff")
        elif op == 3:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        else:
            out = out[: rng.randrange(len(out) + 1)]
    return bytes(out.replace(b"\r", b"").replace(b"\n", b"")) + b"\r"


# ------------------------------------------------------------------ config files


def mutate_toml(rng: random.Random, good: str) -> tuple[str, str | None]:
    """(text, dotted key mutated or None for a syntax-level mutation)."""
    lines = good.splitlines()
    table = ""
    keyed: list[tuple[int, str]] = []
    for n, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            table = s[1:-1]
        elif "=" in s and not s.startswith("#"):
            keyed.append((n, f"{table}.{s.split('=', 1)[0].strip()}"))
    op = rng.randrange(5)
    if op <= 2 and keyed:
        n, key = rng.choice(keyed)
        name = key.rsplit(".", 1)[1]
        value = rng.choice(['-1', '0', '1e9', '"x" ', '""', '[]', '{}', 'true', '"☃"',
                            '"' + "a" * 300 + '"', '99999999999999999999', 'nan', 'inf',
                            '"5000.001"', '1970-01-01T00:00:00Z', '"/nonexistent/x"'])
        lines[n] = f"{name} = {value}"
        return "\n".join(lines) + "\n", key
    if op == 3:  # a byte-level break
        text = "\n".join(lines)
        at = rng.randrange(len(text))
        return text[:at] + rng.choice(["[", "\"", "=", "\x00", "]]", "\n[x"]) + text[at:], None
    # drop a required line
    n, key = rng.choice(keyed)
    del lines[n]
    return "\n".join(lines) + "\n", key


def summary(stats: FuzzStats) -> dict[str, Any]:
    return {"sent": stats.sent, "answered": stats.answered, "unanswered": stats.unanswered,
            "ok_true": stats.ok_true, "codes": dict(stats.codes.most_common()),
            "problems": len(stats.bad), "first_problems": stats.bad[:5],
            "seconds": round(stats.seconds, 1),
            "per_s": round(stats.sent / stats.seconds, 1) if stats.seconds else None}
