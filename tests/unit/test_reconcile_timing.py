"""engine.reconcile_timing: the reconcile waits scale down with a short reconcile_settle_s
(so an unknown outcome is settled in seconds when the site or a test asks for it) and are
the documented constants at the default 120 s and above."""

from __future__ import annotations

import pytest
from lobbypay import engine as e


def test_default_settle_keeps_the_constants() -> None:
    for settle in (120, 600):
        t = e.reconcile_timing(settle)
        assert (t.first_read_s, t.poll_s, t.confirm_gap_s, t.retry_min_s, t.retry_max_s) == (
            e.RECONCILE_FIRST_READ_S, e.RECONCILE_POLL_S, e.RECONCILE_CONFIRM_GAP_S,
            e.RECONCILE_RETRY_MIN_S, e.RECONCILE_RETRY_MAX_S)


def test_short_settle_scales_in_proportion() -> None:
    t = e.reconcile_timing(12)
    assert t.first_read_s == pytest.approx(0.5)
    assert t.poll_s == pytest.approx(3.0) and t.confirm_gap_s == pytest.approx(3.0)
    assert t.retry_min_s == pytest.approx(0.5) and t.retry_max_s == pytest.approx(30.0)


@pytest.mark.parametrize("settle", [0, 0.5, 1, -3])
def test_never_below_the_floor(settle: float) -> None:
    t = e.reconcile_timing(settle)
    for wait in (t.first_read_s, t.poll_s, t.confirm_gap_s, t.retry_min_s, t.retry_max_s):
        assert wait >= e.RECONCILE_MIN_WAIT_S


def test_a_not_charged_verdict_with_settle_1s_fits_in_seconds() -> None:
    t = e.reconcile_timing(1)
    # first read + (reads until settled) + one confirm gap: well under the e2e budget
    assert t.first_read_s + t.poll_s * 5 + t.confirm_gap_s < 3
