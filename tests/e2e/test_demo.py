"""`lobbypay demo` end to end, as a subprocess: it runs one charge through the real agent,
shows the events, the screens and the athena call, leaks no card data, and leaves no child
process (or temporary directory) behind: not after a normal run, not after SIGINT in the
middle, not after SIGTERM at the interactive prompt, and not even after SIGKILL (the
children get SIGTERM from the kernel)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from lobbypay.demo.printer import Printer
from lobbypay.ui import Style

from tests.e2e.harness import CANARY_PAN, subprocess_env
from tests.fakes.mosquitto import mosquitto_available

pytestmark = pytest.mark.skipif(
    not mosquitto_available() and os.environ.get("CI", "").lower() != "true",
    reason="mosquitto not installed",
)

#: The test cards' name field: card data too, it must not show up either.
CARD_NAME = "TEST/LOBBYPAY"


class Demo:
    """`python -m lobbypay demo ...` with its output collected by a reader thread."""

    def __init__(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lobbypay", "demo", "--no-color", *args],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=subprocess_env())
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            with self._lock:
                self._buf += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                self._thread.join(5)
                if text in self.output:
                    return
                raise AssertionError(f"demo exited before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in time:\n{self.output}")
            time.sleep(0.05)

    def finish(self, timeout: float = 90) -> int:
        rc = self.proc.wait(timeout)
        self._thread.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def child_pids(output: str) -> dict[str, int]:
    """The PID column of the demo's 'Starting the parts' table."""
    pids = {}
    for name in ("athena simulator", "MQTT broker", "agent"):
        m = re.search(rf"^  {re.escape(name)}\s+.*?\s(\d+)\s*$", output, re.M)
        assert m, f"no pid for {name} in:\n{output}"
        pids[name] = int(m.group(1))
    return pids


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier} - found
        found |= nxt
        frontier = nxt
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_all_gone(pids: set[int] | list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def workdir_of(output: str) -> Path:
    m = re.search(r"^  agent output\s+(\S+)/agent\.log", output, re.M)
    assert m, output
    return Path(m.group(1))


def test_scripted_demo_runs_a_charge_and_cleans_up(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    demo = Demo("--workdir", str(work))
    try:
        rc = demo.finish()
    finally:
        demo.kill()
    out = demo.output
    assert rc == 0, out
    # The balance, with reasons for what cannot be paid here.
    assert re.search(r"5569\s+\S+\s+40\.00", out) and re.search(r"5570\s+\S+\s+25\.50", out)
    assert re.search(r"5571\s+120\.00\s+not_clean", out)
    assert re.search(r"7001\s+90\.00\s+other_provider_group", out)
    assert "Copay expected 25.00" in out
    # Every event of the job, in order, and the screens.
    events = re.findall(r"event #(\d+)\s+(\w+)", out)
    assert events == [("1", "pending"), ("2", "card_read"), ("3", "submitting"),
                      ("4", "succeeded"), ("5", "voided")], events
    assert "card visa ...1111" in out and "epayment 9" in out
    assert "|  Total $65.00  |" in out and "|    Approved    |" in out
    # The athena call, with the card data as a digest and last 4 only.
    assert "POST /v1/195900/patients/60178/collectpayment -> 200" in out
    assert re.search(r"trackdata\s+<card data: sha256 [0-9a-f]{12}\.\.\., last4 1111>", out)
    assert re.search(r"copayamount\s+25\.00", out) and re.search(r"otheramount\s+40\.00", out)
    assert re.search(r"job demo-\w+: succeeded, total 65.00", out)
    # ... then the emailed receipt and the front desk's void, in the same run
    assert re.search(r"POST\s+/v1/195900/patients/60178/receipts/9\d+/email\s+200", out), out
    assert re.search(r"POST\s+/v1/195900/patients/60178/voidpayment/9\d+\s+200", out), out
    assert "then: receipt emailed to p***@example.com" in out
    assert "then: payment voided (job voided)" in out
    assert "patient@example.com" not in out
    assert "agent stopped (exit 0)" in out
    # No card data in the output, nor in anything the demo's parts wrote.
    for needle in (CANARY_PAN, CARD_NAME):
        assert needle not in out
        for path in work.rglob("*"):
            if path.is_file():
                assert needle.encode() not in path.read_bytes(), path
    assert_all_gone(list(child_pids(out).values()))


def test_sigint_mid_run_stops_every_child_and_removes_the_temp_dir() -> None:
    demo = Demo()
    try:
        demo.wait_for("is online")
        kids = descendants(demo.proc.pid)
        assert len(kids) >= 3, kids
        demo.proc.send_signal(signal.SIGINT)
        rc = demo.finish(60)
    finally:
        demo.kill()
    out = demo.output
    assert rc == 130, out
    assert "interrupted" in out
    assert_all_gone(kids)
    assert set(child_pids(out).values()) <= kids
    assert not workdir_of(out).exists()


def test_interactive_sigterm_at_the_prompt(tmp_path: Path) -> None:
    demo = Demo("--interactive", stdin=subprocess.PIPE)
    try:
        demo.wait_for("lobbypay> ")
        assert demo.proc.stdin is not None
        demo.proc.stdin.write(b"charge\n")
        demo.proc.stdin.flush()
        demo.wait_for("event #1  pending")
        demo.proc.stdin.write(b"swipe bad\n")
        demo.proc.stdin.flush()
        demo.wait_for("Swipe again")
        kids = descendants(demo.proc.pid)
        demo.proc.send_signal(signal.SIGTERM)
        rc = demo.finish(60)
        demo.proc.stdin.close()
    finally:
        demo.kill()
    assert rc == 130, demo.output
    assert_all_gone(kids)
    assert not workdir_of(demo.output).exists()
    assert CANARY_PAN not in demo.output


def test_children_die_with_a_killed_demo(tmp_path: Path) -> None:
    demo = Demo("--interactive", "--workdir", str(tmp_path / "w"), stdin=subprocess.PIPE)
    try:
        demo.wait_for("lobbypay> ")
        kids = descendants(demo.proc.pid)
        demo.proc.kill()
        demo.finish(30)
        assert demo.proc.stdin is not None
        demo.proc.stdin.close()
    finally:
        demo.kill()
    assert_all_gone(kids)


class _Tty(StringIO):
    def isatty(self) -> bool:
        return True


def test_output_while_the_prompt_waits_goes_above_it() -> None:
    # A pipe: the prompt's line is ended, the output follows, the prompt comes back last.
    out = StringIO()
    p = Printer(Style(False), out)
    p.prompt()
    p.event({"job_id": "j", "seq": 2, "state": "expired", "final": True})
    p.screen(["Time is up", "See front desk"], "idle")
    text = out.getvalue()
    assert text.startswith("lobbypay> \n  event #2")
    assert text.endswith("+\nlobbypay> ") and text.count("lobbypay> ") == 3
    # What the user typed is echoed on a pipe, and output after it needs no fixing up.
    p.answered("jobs\n")
    p.line("  no jobs yet")
    assert out.getvalue().endswith("lobbypay> jobs\n  no jobs yet\n")

    # A terminal: the waiting prompt is erased from its line and drawn again below.
    tty = _Tty()
    p = Printer(Style(False), tty)
    p.prompt()
    p.line("  event #2  expired")
    assert tty.getvalue() == "lobbypay> \r\033[K  event #2  expired\nlobbypay> "
    p.answered("quit\n")  # the terminal echoed it: nothing written
    p.line("bye")
    assert tty.getvalue().endswith("lobbypay> bye\n")


def test_interactive_prompt_comes_after_what_a_command_caused() -> None:
    demo = Demo("--interactive", stdin=subprocess.PIPE)
    try:
        demo.wait_for("lobbypay> ")
        assert demo.proc.stdin is not None
        demo.proc.stdin.write(b"charge\n")
        demo.proc.stdin.flush()
        demo.wait_for("Please swipe")
        demo.proc.stdin.write(b"swipe visa\n")
        demo.proc.stdin.flush()
        demo.wait_for("|    Approved    |")
        # Whenever it came, what the swipe caused is above a prompt: the prompt is last.
        deadline = time.monotonic() + 10
        while not demo.output.endswith("lobbypay> "):
            assert time.monotonic() < deadline, demo.output
            time.sleep(0.05)
        out = demo.output
        assert "lobbypay> charge\n" in out and "lobbypay> swipe visa\n" in out
        assert out.index("(final)") > out.index("lobbypay> swipe visa\n")
        # A swipe with no job waiting is ignored by the terminal: the demo says so.
        demo.proc.stdin.write(b"swipe visa\n")
        demo.proc.stdin.flush()
        demo.wait_for("no job is waiting for a card")
        demo.proc.stdin.write(b"quit\n")
        demo.proc.stdin.flush()
        assert demo.finish(60) == 0, demo.output
        demo.proc.stdin.close()
    finally:
        demo.kill()


def test_interactive_spanish_charge_email_and_void() -> None:
    demo = Demo("--interactive", stdin=subprocess.PIPE)
    try:
        demo.wait_for("lobbypay> ")
        assert demo.proc.stdin is not None

        def send(line: str) -> None:
            assert demo.proc.stdin is not None
            demo.proc.stdin.write(line.encode() + b"\n")
            demo.proc.stdin.flush()

        send("charge lang=es")
        demo.wait_for("Pase su tarjeta")
        send("swipe visa")
        demo.wait_for("|    Aprobado    |")
        send("email someone@example.org")
        demo.wait_for("athena emails the receipt of demo-")
        send("void")
        demo.wait_for("the front desk voided demo-")
        demo.wait_for("voided")
        send("email someone@example.org")
        demo.wait_for("the terminal said no_receipt")
        send("quit")
        assert demo.finish(60) == 0, demo.output
        assert "someone@example.org" not in demo.output.replace("lobbypay> email "
                                                                 "someone@example.org", "")
        demo.proc.stdin.close()
    finally:
        demo.kill()
