"""The Luhn check over a card number's ASCII digits, in place in the swipe's buffer.

Its own module because both the track parser (tracks.py) and the masked-output
recogniser (protected.py) need it, and protected.py is imported by the parser.
"""

from __future__ import annotations

_D0 = 0x30  # ord("0")


def luhn_ok(raw: bytes | bytearray, a: int, b: int) -> bool:
    """Luhn check over the ASCII digits ``raw[a:b]`` (no copy of the digits is made)."""
    total = 0
    double = False
    for i in range(b - 1, a - 1, -1):
        d = raw[i] - _D0
        if double:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        double = not double
    return total % 10 == 0
