"""Leak audit: the paths by which card data could leave the process outside the card
code's own care (log text the agent did not write itself, Python's own crash output,
warnings, core files). Every test uses the canary PAN 4111111111111111."""

from __future__ import annotations

import pytest
from lobbypay.shell.logsafe import redact

CANARY = "4111111111111111"
NAME = "SANDBOXTEST/JANE"
TRACKS = f"%B{CANARY}^{NAME}^3012101000000000000000?;{CANARY}=30121010000000000000?"


# ---------------------------------------------------------------- logsafe.redact


@pytest.mark.parametrize("text", [
    f"name field ^{NAME}^ seen",                  # a track-1 name field on its own
    f"track lost its separator {CANARY}3012101000",  # PAN glued to expiry + service code
    f"x{CANARY}30121010000000000000?",
])
def test_redact_catches_name_fields_and_pans_glued_to_digits(text: str) -> None:
    out = redact(text)
    assert CANARY not in out and NAME not in out, out


def test_redact_keeps_ordinary_numbers() -> None:
    for text in ("epayment 90001 90002 90003 90004", "total 65.00", "at 2026-11-27 14:03:07",
                 "caret ^ alone"):
        assert redact(text) == text
