"""docs/protocol.md's JSON examples, run as the page says ("Try it against the demo"):
the real ``lobbypay demo --interactive --workdir DIR`` (agent, broker, athena simulator),
its broker port read from ``DIR/lobbypay.toml``, every ```json block extracted from the
page and sent as written, the swipe made with ``lobbypay swipe --config``. The documented
replies, the event and the state must be what the terminal really answers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from lobbypay import __version__
from lobbypay.core.protocol import COMMAND_TYPES

from tests.e2e.harness import ROOT, subprocess_env
from tests.e2e.test_demo import Demo
from tests.fakes.mosquitto import mosquitto_available

pytestmark = pytest.mark.skipif(
    not mosquitto_available() and os.environ.get("CI", "").lower() != "true",
    reason="mosquitto not installed",
)

DOC = ROOT / "docs" / "protocol.md"
FENCE = re.compile(r"^```json\n(.*?)^```", re.MULTILINE | re.DOTALL)
WHOLE_SECONDS = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
TERMINAL = "demo-lobby"


def doc_examples(text: str) -> list[dict[str, Any]]:
    """Every JSON object of every ```json block, in page order (a block may hold several)."""
    out: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for block in FENCE.findall(text):
        i = 0
        while True:
            while i < len(block) and block[i].isspace():
                i += 1
            if i == len(block):
                break
            obj, i = decoder.raw_decode(block, i)  # a block that is not JSON fails here
            assert isinstance(obj, dict), obj
            out.append(obj)
    return out


def kind(obj: dict[str, Any]) -> str:
    if obj.get("type") in COMMAND_TYPES:
        return "command"
    if obj.get("type") in ("reply", "charge.event"):
        return str(obj["type"])
    if "online" in obj:
        return "status"
    if "job_state" in obj:
        return "state"
    raise AssertionError(f"an example of no known kind: {obj}")


def shape(obj: Any) -> Any:
    """The keys of an object, recursively (values of dicts inside dicts too)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    return type(obj).__name__ if obj is not None else None


def test_every_json_block_of_the_page_is_a_message() -> None:
    assert json.dumps(BAD_SWIPE_SCREEN) in DOC.read_text("utf-8")
    examples = doc_examples(DOC.read_text("utf-8"))
    kinds = [kind(o) for o in examples]
    assert set(kinds) == {"command", "reply", "charge.event", "status", "state"}
    sent = {o["type"] for o in examples if kind(o) == "command"}
    assert sent == {"ping", "balance.get", "charge.start", "charge.cancel", "charge.get",
                    "charge.list"}


class Terminal:
    """An app on the demo's broker, as mosquitto_sub -t 'lobbypay/v1/demo-lobby/#' sees it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.prefix = f"lobbypay/v1/{TERMINAL}"
        self.replies: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.retained: dict[str, dict[str, Any]] = {}
        self.cond = asyncio.Condition()

    async def run(self, client: aiomqtt.Client) -> None:
        await client.subscribe(f"{self.prefix}/#", qos=1)
        async for msg in client.messages:
            part = str(msg.topic).rsplit("/", 1)[1]
            obj = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
            async with self.cond:
                if part == "reply":
                    self.replies[obj["request_id"]] = obj
                elif part == "events":
                    self.events.append(obj)
                elif part in ("status", "state"):
                    self.retained[part] = obj
                self.cond.notify_all()

    async def until(self, pred: Any, timeout: float = 20) -> Any:
        async with asyncio.timeout(timeout), self.cond:
            return await self.cond.wait_for(pred)


#: The screen section 5 says a bad swipe shows (as the page writes it).
BAD_SWIPE_SCREEN = ["  Total $65.00  ", "  Swipe again   "]


def swipe(workdir: Path, card: str) -> None:
    """The page's own command: lobbypay swipe --config DIR/lobbypay.toml --test-card CARD."""
    res = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "lobbypay", "swipe", "--config", str(workdir / "lobbypay.toml"),
         "--test-card", card],
        capture_output=True, text=True, env=subprocess_env(), timeout=30, check=False)
    assert res.returncode == 0, res


async def walk_the_page(port: int, workdir: Path, examples: list[dict[str, Any]]) -> None:
    commands = {o["request_id"]: o for o in examples if kind(o) == "command"}
    documented = {o["request_id"]: o for o in examples if kind(o) == "reply"}
    (event_doc,) = [o for o in examples if kind(o) == "charge.event"]
    (state_doc,) = [o for o in examples if kind(o) == "state"]
    (status_doc,) = [o for o in examples if kind(o) == "status"]
    used: set[int] = {id(event_doc), id(state_doc), id(status_doc)}
    term = Terminal(port)
    async with aiomqtt.Client("127.0.0.1", port) as client:
        rx = asyncio.create_task(term.run(client))
        try:
            async def send(request_id: str) -> dict[str, Any]:
                cmd = commands[request_id]  # as written on the page
                used.add(id(cmd))
                await client.publish(f"{term.prefix}/cmd", json.dumps(cmd), qos=1)
                reply: dict[str, Any] = await term.until(
                    lambda: term.replies.get(request_id))
                if request_id in documented:
                    used.add(id(documented[request_id]))
                    assert reply == documented[request_id]
                return reply

            status = await term.until(lambda: term.retained.get("status"))
            assert shape(status) == shape(status_doc)
            assert status["online"] is True and status["version"] == __version__
            assert WHOLE_SECONDS.match(status["since"])

            ping = await send("p-1")
            assert ping["ok"] is True and shape(ping["state"])["athena"] == {
                "last_ok_at": "str", "last_error": None}

            balance = await send("b-1")
            assert balance["ok"] is True

            start = await send("r-1")
            assert start["ok"] is True, start
            assert (start["job_id"], start["state"]) == ("j-1", "pending")
            state = await term.until(lambda: (s := term.retained.get("state"))
                                     and s["job_state"] == "pending" and s)
            assert shape(state) == shape(state_doc)
            for key in ("v", "job_id", "job_state", "screen"):
                assert state[key] == state_doc[key], key
            assert state["athena"]["last_error"] is None
            assert WHOLE_SECONDS.match(state["athena"]["last_ok_at"])

            # section 5: a bad swipe publishes no event, only the screen says it
            swipe(workdir, "bad")
            again = await term.until(lambda: (s := term.retained.get("state"))
                                     and s["screen"] != state_doc["screen"] and s)
            assert again["screen"] == BAD_SWIPE_SCREEN and again["job_state"] == "pending"
            assert [e["seq"] for e in term.events if e["job_id"] == "j-1"] == [1]

            swipe(workdir, "visa")
            final = await term.until(lambda: next(
                (e for e in term.events if e["job_id"] == "j-1" and e["final"]), None))
            assert WHOLE_SECONDS.match(final["at"])
            assert {**final, "at": event_doc["at"]} == event_doc

            got = await send("g-1")
            assert got["ok"] is True and got["job"] == final
            listed = await send("l-1")
            assert listed["ok"] is True and listed["jobs"] == [final]
            cancel = await send("c-1")
            assert cancel["ok"] is False and cancel["error"]["code"] == "not_active", cancel
        finally:
            rx.cancel()
    unused = [o for o in examples if id(o) not in used]
    assert unused == [], "examples the walk did not check"


def test_the_page_runs_as_written_against_the_demo(tmp_path: Path) -> None:
    workdir = tmp_path / "lp"
    examples = doc_examples(DOC.read_text("utf-8"))
    demo = Demo("--interactive", "--workdir", str(workdir), stdin=subprocess.PIPE)
    assert demo.proc.stdin is not None
    try:
        demo.wait_for("lobbypay> ")
        port = tomllib.loads((workdir / "lobbypay.toml").read_text())["mqtt"]["port"]
        assert f"mosquitto on 127.0.0.1:{port}" in demo.output
        asyncio.run(walk_the_page(port, workdir, examples))
        demo.proc.stdin.write(b"quit\n")
        demo.proc.stdin.flush()
        assert demo.finish(60) == 0, demo.output
    finally:
        demo.proc.stdin.close()
        demo.kill()
