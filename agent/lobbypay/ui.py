"""What the maintainers' tools say to people, and the claim syntax people type to them.

Shared by the ``lobbypay`` commands (``lobbypay.cli``) and ``lobbypay demo``
(``lobbypay.demo``); it imports neither, so neither imports the other through it (a module
inside ``lobbypay/cli/`` would not do: importing it runs the ``cli`` package first).

The exit codes, colours (``Style``), tables, the one-line form of a job event, a
patient's balances as tables, a screen drawn in a box, and ``--claim ID=AMOUNT``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

#: Exit codes scripts can rely on (the table in ``lobbypay.cli``'s docstring).
EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3

_COLOURS = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33",
            "blue": "34", "cyan": "36"}


class Style:
    """ANSI colours when writing to a terminal (and NO_COLOR is unset), plain otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO, force_off: bool = False) -> Style:
        isatty = getattr(stream, "isatty", lambda: False)
        on = (not force_off and bool(isatty()) and "NO_COLOR" not in os.environ
              and os.environ.get("TERM") != "dumb")
        return cls(on)

    def __call__(self, name: str, text: str) -> str:
        if not self.enabled or not name:
            return text
        codes = ";".join(_COLOURS[n] for n in name.split("+"))
        return f"\033[{codes}m{text}\033[0m"


#: A table cell: plain text, or (text, style name) such as ("PASS", "green").
Cell = str | tuple[str, str]

RESULT_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red+bold", "succeeded": "green",
                "declined": "red", "failed": "red", "expired": "yellow",
                "canceled": "yellow", "unknown": "yellow", "voided": "yellow", "online": "green",
                "offline": "red"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style,
          indent: str = "  ") -> str:
    """Left-aligned columns sized to their longest cell (colour does not count)."""
    def text(c: Cell) -> str:
        return c[0] if isinstance(c, tuple) else c

    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(text(c)))
    lines = [indent + "  ".join(style("bold", h.ljust(widths[i]))
                                for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            padded = text(c).ljust(widths[i])
            cells.append(style(c[1], padded) if isinstance(c, tuple) else padded)
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def fail(message: str, code: int) -> int:
    print(f"lobbypay: {message}", file=sys.stderr)
    return code



def screen_box(lines: Sequence[str], indent: str = "  ") -> str:
    width = max((len(x) for x in lines), default=0)
    edge = indent + "+" + "-" * width + "+"
    return "\n".join([edge, *(f"{indent}|{x.ljust(width)}|" for x in lines), edge])


def balance_tables(bal: dict[str, Any], st: Style) -> str:
    out = [f"  patient {bal.get('patient_id')}, department {bal.get('department_id')}, "
           f"provider group {bal.get('provider_group_id') or '-'}", ""]
    coll = bal.get("collectible") or []
    out.append(st("bold", "  Collectible here"))
    if coll:
        out.append(table(["CLAIM", "SERVICE DATE", "BALANCE"],
                         [[c["claim_id"], c.get("service_date") or "", c["balance"]]
                          for c in coll], st, indent="    "))
    else:
        out.append("    (none)")
    out.append(f"    total {st('bold', str(bal.get('collectible_total')))}")
    nc = bal.get("not_collectible") or []
    out.append(st("bold", "  Not collectible at this terminal (ask the front desk)"))
    if nc:
        out.append(table(["CLAIM", "BALANCE", "REASON"],
                         [[c["claim_id"], c["balance"], (c["reason"], "yellow")] for c in nc],
                         st, indent="    "))
    else:
        out.append("    (none)")
    copay = bal.get("copay")
    if copay:
        out.append(f"  {st('bold', 'Copay')} expected {copay.get('expected')}")
    return "\n".join(out)


def event_line(ev: dict[str, Any], st: Style) -> str:
    state = str(ev.get("state"))
    parts = [f"#{ev.get('seq')}", st(RESULT_STYLE.get(state, "cyan"), state.ljust(10))]
    amounts = ev.get("amounts") or {}
    if amounts.get("total"):
        parts.append(f"total {amounts['total']}")
    card = ev.get("card")
    if card:
        parts.append(f"card {card.get('brand')} ...{card.get('last4')}")
    if ev.get("epayment_id"):
        parts.append(f"epayment {ev['epayment_id']}")
    err = ev.get("error")
    if err:
        parts.append(st("red", f"{err.get('code')}: {err.get('message')}"))
    if ev.get("final"):
        parts.append(st("dim", "(final)"))
    return "  " + "  ".join(parts)


_CLAIM_RE = re.compile(r"\A([^=\s]+)=(\S+)\Z")


def parse_claims(values: Sequence[str]) -> list[tuple[str, str]]:
    claims = []
    for v in values:
        m = _CLAIM_RE.match(v)
        if not m:
            raise ValueError(f"--claim {v!r}: use CLAIM_ID=AMOUNT, e.g. 5569=40.00")
        claims.append((m.group(1), m.group(2)))
    return claims
