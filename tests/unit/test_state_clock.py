"""state.clock (lobbypay.core.protocol.retained.clock_health): whole seconds, rounded up."""

from __future__ import annotations

from lobbypay.core.clock import Offset
from lobbypay.core.protocol import clock_health


def test_no_offset_until_athena_has_answered() -> None:
    assert clock_health(None, None) == {"synchronized": None, "athena_offset_s": None,
                                        "uncertainty_s": None}


def test_offset_in_whole_seconds_and_uncertainty_rounded_up_to_at_least_one() -> None:
    assert clock_health(True, Offset(-3.4, 0.2)) == {
        "synchronized": True, "athena_offset_s": -3, "uncertainty_s": 1}
    assert clock_health(False, Offset(12.6, 2.01)) == {
        "synchronized": False, "athena_offset_s": 13, "uncertainty_s": 3}
