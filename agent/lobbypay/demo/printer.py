"""All of the demo's output: headings, lines, screens in a box, events; in the
interactive demo, output that arrives while the prompt waits is written above it."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from lobbypay.ui import Style, event_line


class Printer:
    """All of the demo's output. In the interactive demo, output that arrives while the
    prompt waits for input (a screen change, an event after the athena call, a job
    expiring) is written above the prompt, which is then drawn again: the prompt stays the
    last line."""

    PROMPT = "lobbypay> "

    def __init__(self, style: Style, stream: TextIO | None = None) -> None:
        self.st = style
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)
        self._tty = bool(isatty())
        self.prompt_open = False
        #: time.monotonic() of the last output (to let a command's output settle).
        self.last_output = 0.0

    def _emit(self, text: str) -> None:
        reopen = self.prompt_open
        if reopen:
            # Take the waiting prompt off its line (a terminal), or end that line (a pipe).
            self.stream.write("\r\033[K" if self._tty else "\n")
            self.prompt_open = False
        self.stream.write(text + "\n")
        self.last_output = time.monotonic()
        if reopen:
            self.prompt()
        else:
            self.stream.flush()

    def prompt(self) -> None:
        self.stream.write(self.st("bold", self.PROMPT))
        self.stream.flush()
        self.prompt_open = True

    def answered(self, text: str) -> None:
        """The user entered ``text`` at the prompt. A terminal echoed it; a pipe did not,
        so write it after the prompt, and the transcript reads like a session."""
        self.prompt_open = False
        if not self._tty:
            self.stream.write(text.rstrip("\r\n") + "\n")
            self.stream.flush()

    def heading(self, text: str) -> None:
        self._emit(f"\n{self.st('bold+blue', '== ' + text)}")

    def line(self, text: str = "") -> None:
        self._emit(text)

    def screen(self, lines: list[str], job_state: str) -> None:
        width = max((len(x) for x in lines), default=16)
        label = self.st("cyan", "screen")
        edge = "+" + "-" * width + "+"
        out = [f"  {label}  {edge}   {self.st('dim', job_state)}"]
        out += [f"          |{x.ljust(width)}|" for x in lines]
        out.append(f"          {edge}")
        self._emit("\n".join(out))

    def event(self, ev: dict[str, Any]) -> None:
        self._emit(f"  {self.st('cyan', 'event')} " + event_line(ev, self.st).lstrip())

    async def settle(self, quiet_s: float = 0.3, at_most_s: float = 3.0) -> None:
        """Wait until nothing was printed for ``quiet_s`` (at most ``at_most_s``), so the
        output a command causes comes before the next prompt."""
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - self.last_output >= quiet_s or now - start >= at_most_s:
                return
            await asyncio.sleep(min(0.05, quiet_s))
