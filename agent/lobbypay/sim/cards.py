"""The test cards: what a reader sends for each of the simulator's well-known test numbers.

Public test numbers only (Visa's 4111 1111 1111 1111 and the 4000 0000 0000 0002
"decline" number); the athena simulator declines PANs ending 0002. Expiry 30/12 is in
the future, 20/01 in the past. ``lobbypay swipe --test-card NAME`` and the demo's
``swipe NAME`` write ``TEST_CARDS[NAME][0]`` into a ``sim`` reader's socket.
"""

from __future__ import annotations

#: name -> (the track text a reader sends, what the card is)
TEST_CARDS: dict[str, tuple[str, str]] = {
    "visa": (
        "%B4111111111111111^TEST/LOBBYPAY^3012101000000000000000?"
        ";4111111111111111=30121010000000000000?",
        "Visa test card ending 1111 (approved)",
    ),
    "decline": (
        "%B4000000000000002^TEST/LOBBYPAY^3012101000000000000000?"
        ";4000000000000002=30121010000000000000?",
        "Visa test card ending 0002 (declined)",
    ),
    "expired": (
        "%B4111111111111111^TEST/LOBBYPAY^2001101000000000000000?"
        ";4111111111111111=20011010000000000000?",
        "Visa test card ending 1111, expired 01/20",
    ),
    # What a reader sends when it could not read either track.
    "bad": ("%E?;E?", "a bad swipe (the reader could not read the stripe)"),
}
