"""Exact money: integer cents, never float.

Two parsers, because two very different sources send amounts:

* ``parse_wire_amount`` reads what check-in apps send (protocol section 3): a JSON
  *string* matching ``^\\d{1,7}\\.\\d{2}$``. Anything else (numbers, negatives, three
  decimals, NaN, whitespace) is rejected with ``InvalidAmount``.
* ``parse_athena_amount`` reads what athena sends: a number or a string, possibly
  negative (a credit), with zero to two decimals ("40", "40.5", 40.00, "-25.15").
  JSON numbers arrive from ``json.loads`` as ``int`` or ``float``; a float is converted
  through ``repr`` (the shortest round-tripping text) and then parsed as a decimal, so
  ``40.1`` is 4010 cents and ``40.123`` is rejected instead of silently rounded.

``format_cents`` writes cents back as "12.34" (or "-12.34").

Digits are ASCII only (``re.ASCII``): Python's ``\\d`` would otherwise also take
Arabic-Indic or full-width digits, which JSON Schema's ``\\d`` does not. athena text may
carry a leading ``$`` and thousands commas ("1,234.56"); commas anywhere else are rejected.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NewType

from lobbypay.core.text import clip, replace_unprintable

Cents = NewType("Cents", int)

#: Protocol section 3: amounts from apps.
WIRE_AMOUNT_RE = re.compile(r"\A\d{1,7}\.\d{2}\Z", re.ASCII)
#: athena's money text: optional sign, digits, optional 1-2 decimals.
_ATHENA_AMOUNT_RE = re.compile(
    r"\A(-?)\$?(\d{1,12}|\d{1,3}(?:,\d{3}){1,3})(?:\.(\d{1,2}))?\Z", re.ASCII
)
#: Upper bound on what athena may send us (sanity: ten billion dollars).
MAX_ATHENA_CENTS = 10**12


class InvalidAmount(ValueError):
    """An amount that is not exact money in the expected form.

    The message never echoes more than a short, sanitised prefix of the input.
    """


def _snippet(value: object) -> str:
    # Short enough that a card number typed into an amount field never comes back whole
    # in an error reply (at most 8 of its digits).
    if isinstance(value, (list, dict, tuple, set)):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**12:
        return "a very large number"  # repr() of a huge int is slow, past 4300 digits raises
    return clip(replace_unprintable(repr(value[:12] if isinstance(value, str) else value)), 12)


def parse_wire_amount(value: object) -> Cents:
    """Parse an app-supplied amount ("25.00") to cents; reject everything else."""
    if not isinstance(value, str) or not WIRE_AMOUNT_RE.match(value):
        raise InvalidAmount(
            'amount must be a string like "25.00" (1-7 digits, 2 decimals), '
            f"got {_snippet(value)}"
        )
    whole, frac = value.split(".")
    return Cents(int(whole) * 100 + int(frac))


def parse_athena_amount(value: object) -> Cents:
    """Parse an amount as athena sends it (number or string, negative = credit)."""
    if isinstance(value, bool):
        raise InvalidAmount(f"athena amount is a boolean: {_snippet(value)}")
    if isinstance(value, int):
        # Range first: str() of a huge int is slow and raises past 4300 digits.
        if abs(value) > MAX_ATHENA_CENTS // 100:
            raise InvalidAmount("athena amount out of range")
        text = str(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidAmount(f"athena amount is not finite: {_snippet(value)}")
        # Range first: quantize() of a huge Decimal raises InvalidOperation.
        if abs(value) > MAX_ATHENA_CENTS / 100:
            raise InvalidAmount(f"athena amount out of range: {_snippet(value)}")
        # repr() gives the shortest text that round-trips; Decimal reads it exactly.
        try:
            dec = Decimal(repr(value))
        except InvalidOperation as exc:  # pragma: no cover - repr of a finite float parses
            raise InvalidAmount(f"athena amount unreadable: {_snippet(value)}") from exc
        if dec != dec.quantize(Decimal("0.01")):
            raise InvalidAmount(f"athena amount has more than 2 decimals: {_snippet(value)}")
        text = f"{dec:.2f}"
    elif isinstance(value, str):
        if len(value) > 40:  # longer than any amount in range, however written
            raise InvalidAmount(f"athena amount unreadable: {_snippet(value)}")
        text = value.strip()
    else:
        raise InvalidAmount(f"athena amount has type {type(value).__name__}")
    m = _ATHENA_AMOUNT_RE.match(text)
    if not m:
        raise InvalidAmount(f"athena amount unreadable: {_snippet(value)}")
    sign, whole, frac = m.groups()
    cents = int(whole.replace(",", "")) * 100 + int((frac or "0").ljust(2, "0"))
    if cents > MAX_ATHENA_CENTS:
        raise InvalidAmount(f"athena amount out of range: {_snippet(value)}")
    return Cents(-cents if sign else cents)


def format_cents(cents: int) -> str:
    """Format cents as "12.34" ("-0.50" for negative values)."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError("format_cents takes integer cents")
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_display(cents: int) -> str:
    """Format for a patient-facing screen: "$1,234.56"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"
