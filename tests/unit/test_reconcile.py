"""core.reconcile: which receipt (if any) is an unknown job's payment, and core.clock:
athena's clock from Date headers. Table cases for each way a wrong ``not_charged`` or a
receipt deciding two jobs was found to happen, then properties over random worlds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.core import reconcile as rc
from lobbypay.core.athena import Receipt, parse_eastern_spans
from lobbypay.core.clock import ServerClock, Span
from lobbypay.core.money import Cents

T0 = datetime(2026, 11, 27, 14, 3, 0, tzinfo=UTC)  # athena's clock


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def receipt(eid: str, cents: int = 6500, last4: str | None = "1111",
            text: str | None = None, t: float | None = 0.0) -> Receipt:
    """A receipt stamped ``t`` s after T0 (whole seconds, as athena's text has them), or
    with the given requestdate text."""
    if text is not None:
        spans = parse_eastern_spans(text)
    elif t is None:
        spans = ()
    else:
        lo = at(t).replace(microsecond=0)
        spans = (Span(lo, lo + timedelta(microseconds=999999)),)
    return Receipt(eid, Cents(cents), last4, spans)


def attempt(job_id: str = "A", frm: float | None = 0.0, to: float | None = 20.0,
            cents: int = 6500, last4: str = "1111") -> rc.Attempt:
    return rc.Attempt(job_id, Cents(cents), last4,
                      at(frm) if frm is not None else None, at(to) if to is not None else None)


# ---------------------------------------------------------------- table

def test_receipt_in_the_attempt_is_found() -> None:
    r = receipt("90001", t=3)
    assert rc.decide(attempt(), [r], settled=False) == rc.Found(r)


def test_other_totals_cards_and_taken_receipts_are_misses() -> None:
    rs = [receipt("1", cents=2500, t=3), receipt("2", last4="4444", t=3),
          receipt("3", t=3)]
    assert rc.decide(attempt(), rs, taken={"3"}, settled=True) == rc.Missed(settled=True)
    assert rc.decide(attempt(), rs, taken={"3"}, settled=False) == rc.Missed(settled=False)


def test_a_later_jobs_receipt_never_decides_this_job() -> None:
    # job A's POST was lost (20 s attempt); job B of the same patient, total and card
    # paid 90 s later: its receipt is outside A's attempt
    later = receipt("90002", t=90)
    assert rc.decide(attempt("A"), [later], settled=True) == rc.Missed(settled=True)
    # and an older payment (last week's visit, same total and card) neither
    older = receipt("80001", t=-7 * 86400)
    assert rc.decide(attempt("A"), [older], settled=True) == rc.Missed(settled=True)


def test_one_receipt_never_decides_two_open_jobs() -> None:
    a = attempt("A", 0, 20)
    b = attempt("B", 22, 40)  # B began 2 s after A ended: the skew margins overlap
    r = receipt("90001", t=21)
    assert isinstance(rc.decide(a, [r], others=[b], settled=True), rc.Doubt)
    assert isinstance(rc.decide(b, [r], others=[a], settled=True), rc.Doubt)


def test_contention_resolves_once_the_rival_is_decided() -> None:
    a = attempt("A", 0, 20)
    b = attempt("B", 22, 40)
    shared = receipt("1", t=21)
    only_b = receipt("2", t=35)
    # B has a receipt of its own: it takes that, not the shared one
    assert rc.decide(b, [shared, only_b], others=[a], settled=True) == rc.Found(only_b)
    # then A, B decided (no longer a rival, its receipt taken), gets the shared one
    assert rc.decide(a, [shared, only_b], taken={"2"}, settled=True) == rc.Found(shared)


def test_a_post_in_flight_is_a_rival_from_its_start() -> None:
    a = attempt("A", 0, 20)
    in_flight = attempt("B", 15, None)
    r = receipt("9", t=18)
    assert isinstance(rc.decide(a, [r], others=[in_flight], settled=True), rc.Doubt)
    # a rival of another total or card is no rival
    other_card = attempt("C", 15, None, last4="4444")
    assert rc.decide(a, [r], others=[other_card], settled=True) == rc.Found(r)


def test_receipt_without_seconds_still_found() -> None:
    # the attempt ran 14:03:50-14:04:05 (athena clock); athena shows "09:03" (no seconds)
    a = rc.Attempt("A", Cents(6500), "1111", at(50), at(65))
    r = receipt("90001", text="11/27/2026 09:03")
    assert rc.decide(a, [r], settled=True) == rc.Found(r)


def test_dst_fold_receipt_found_in_either_hour() -> None:
    # 2026-11-01 01:30:10 EST is 06:30:10Z; read as EDT only it would be an hour early
    est = datetime(2026, 11, 1, 6, 30, 5, tzinfo=UTC)
    a = rc.Attempt("A", Cents(6500), "1111", est, est + timedelta(seconds=20))
    r = receipt("90001", text="11/01/2026 01:30:10")
    assert rc.decide(a, [r], settled=True) == rc.Found(r)


def test_doubts_never_count_toward_not_charged() -> None:
    no_date = receipt("1", t=None)
    no_digits = receipt("2", last4=None, t=5)
    for rs in ([no_date], [no_digits]):
        assert isinstance(rc.decide(attempt(), rs, settled=True), rc.Doubt)
    # an attempt that could not be placed on athena's clock: any receipt of its total is
    # a doubt, and only none at all is a miss
    unplaced = attempt(frm=None, to=None)
    assert isinstance(rc.decide(unplaced, [receipt("3", t=5)], settled=True), rc.Doubt)
    assert rc.decide(unplaced, [receipt("4", cents=100, t=5)], settled=True) == rc.Missed(True)


def test_earliest_uncontended_candidate_wins() -> None:
    first, second = receipt("90001", t=2), receipt("90002", t=9)
    assert rc.decide(attempt(), [second, first], settled=True) == rc.Found(first)
    assert rc.decide(attempt(), [second, first], taken={"90001"}, settled=True) == rc.Found(
        second)


def test_window_margins() -> None:
    a = attempt("A", 0, 20)
    inside = rc.ATHENA_SKEW_S - 0.5
    assert isinstance(rc.decide(a, [receipt("1", t=20 + inside)], settled=True), rc.Found)
    assert isinstance(rc.decide(a, [receipt("1", t=-inside)], settled=True), rc.Found)
    assert rc.decide(a, [receipt("1", t=20 + rc.ATHENA_SKEW_S + 1)], settled=True) == \
        rc.Missed(True)
    assert rc.decide(a, [receipt("1", t=-rc.ATHENA_SKEW_S - 2)], settled=True) == \
        rc.Missed(True)


def test_is_settled_on_athenas_clock() -> None:
    now = Span(at(200), at(201))
    assert rc.is_settled(now, at(80), 120, wall_elapsed_s=0) is True
    assert rc.is_settled(now, at(81), 120, wall_elapsed_s=10_000) is False
    # without athena's clock: the terminal's own elapsed time
    assert rc.is_settled(None, at(0), 120, wall_elapsed_s=120) is True
    assert rc.is_settled(None, None, 120, wall_elapsed_s=119) is False


def test_next_wait() -> None:
    t = rc.reconcile_timing(120)
    assert rc.next_wait(rc.Missed(True), t, until_settle_s=0, doubts=0) == t.confirm_gap_s
    assert rc.next_wait(rc.Missed(False), t, until_settle_s=7, doubts=0) == 7
    assert rc.next_wait(rc.Missed(False), t, until_settle_s=1e9, doubts=0) == t.poll_s
    waits = [rc.next_wait(rc.Doubt("x"), t, until_settle_s=0, doubts=n) for n in range(1, 12)]
    assert waits[0] == t.retry_min_s and waits == sorted(waits) and waits[-1] == t.retry_max_s


# ---------------------------------------------------------------- athena's clock

def test_server_clock_bounds_from_date_headers() -> None:
    sc = ServerClock()
    assert sc.now(0.0) is None
    # athena is 90 s behind the terminal's monotonic-anchored "now" at mono 1000
    true_offset = T0.timestamp() - 1000.0
    sc.observe(1000.0, 1000.2, datetime.fromtimestamp(1000.1 + true_offset, UTC).replace(
        microsecond=0))
    span = sc.now(1000.2)
    assert span is not None
    truth = datetime.fromtimestamp(1000.2 + true_offset, UTC)
    assert span.lo <= truth <= span.hi and span.width_s <= 1.3
    # more samples tighten it, and it stays true
    for k in range(1, 20):
        m = 1000.0 + k * 7.37
        sc.observe(m, m + 0.05, datetime.fromtimestamp(m + 0.02 + true_offset, UTC).replace(
            microsecond=0))
    span = sc.now(1200.0)
    assert span is not None
    truth = datetime.fromtimestamp(1200.0 + true_offset, UTC)
    assert span.lo <= truth <= span.hi and span.width_s < 0.5


def test_server_clock_follows_a_stepped_server_clock() -> None:
    sc = ServerClock()
    sc.observe(10.0, 10.1, at(0).replace(microsecond=0))
    # athena's clock stepped 30 s: the contradicting sample replaces the bounds
    sc.observe(20.0, 20.1, at(40).replace(microsecond=0))
    span = sc.now(20.1)
    assert span is not None and span.lo >= at(39.5) and span.hi <= at(41.5)


def test_server_clock_ignores_nonsense() -> None:
    sc = ServerClock()
    sc.observe(5.0, 4.0, T0)  # received before sent
    sc.observe(0.0, 10_000.0, T0)  # an hour-long exchange proves little
    sc.observe(0.0, 1.0, T0.replace(tzinfo=None))
    assert not sc.known


def test_offset_against_the_wall_clock() -> None:
    sc = ServerClock()
    wall = T0 + timedelta(seconds=90)  # the terminal's wall clock is 90 s fast
    sc.observe(50.0, 50.0, T0)
    off = sc.offset(wall, 50.0)
    assert off is not None and -90.5 <= off.seconds <= -89 and off.uncertainty_s <= 0.6


# ---------------------------------------------------------------- properties

@settings(max_examples=300, deadline=None)
@given(
    offset_s=st.floats(-900, 900),
    sent=st.floats(0, 10_000),
    rtt=st.floats(0.001, 2.0),
    gap=st.floats(0, 60),
    post_s=st.floats(0.05, 30),
    where=st.floats(0, 1),
    coarse=st.booleans(),
)
def test_a_receipt_made_during_the_attempt_is_found(
    offset_s: float, sent: float, rtt: float, gap: float, post_s: float, where: float,
    coarse: bool,
) -> None:
    """With Date samples taken from a true clock, a receipt stamped (by that clock, in
    whole seconds or minutes) during the attempt is always found."""
    def athena_at(mono: float) -> datetime:
        return datetime.fromtimestamp(1_800_000_000 + offset_s + mono, UTC)

    sc = ServerClock()
    # the balance read at charge.start: a Date sample
    stamp = sent + rtt * 0.5
    sc.observe(sent, sent + rtt, athena_at(stamp).replace(microsecond=0))
    start = sent + rtt + gap
    end = start + post_s
    lo, hi = sc.now(start), sc.now(end)
    assert lo is not None and hi is not None
    a = rc.Attempt("A", Cents(100), "1111", lo.lo, hi.hi)
    made = athena_at(start + where * post_s)
    if coarse:
        t0 = made.replace(second=0, microsecond=0)
        span = Span(t0, t0 + timedelta(seconds=59, microseconds=999999))
    else:
        t0 = made.replace(microsecond=0)
        span = Span(t0, t0 + timedelta(microseconds=999999))
    r = Receipt("90001", Cents(100), "1111", (span,))
    assert rc.decide(a, [r], settled=True) == rc.Found(r)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_receipt_is_never_assigned_to_two_jobs(data: st.DataObject) -> None:
    """Jobs of one total and card with random windows and receipts, decided one at a time
    in a random order, each seeing the others still open as rivals and the receipts
    already assigned as taken: no receipt is ever assigned twice."""
    n_jobs = data.draw(st.integers(1, 4))
    jobs = []
    for i in range(n_jobs):
        start = data.draw(st.floats(0, 300))
        length = data.draw(st.floats(0.1, 60))
        jobs.append(attempt(f"J{i}", start, start + length))
    receipts = [receipt(f"R{k}", t=data.draw(st.floats(-20, 380)))
                for k in range(data.draw(st.integers(0, 4)))]
    open_jobs = {j.job_id: j for j in jobs}
    taken: dict[str, str] = {}
    for _round in range(3 * n_jobs):
        if not open_jobs:
            break
        jid = data.draw(st.sampled_from(sorted(open_jobs)))
        job = open_jobs[jid]
        others = [j for j in open_jobs.values() if j.job_id != jid]
        d = rc.decide(job, receipts, others=others, taken=set(taken), settled=True)
        if isinstance(d, rc.Found):
            eid = d.receipt.epayment_id
            assert eid not in taken, f"{eid} assigned to {taken[eid]} and {jid}"
            taken[eid] = jid
            del open_jobs[jid]


@pytest.mark.parametrize("settle", [5, 120, 3600])
def test_timing_scales(settle: float) -> None:
    t = rc.reconcile_timing(settle)
    assert all(w >= rc.MIN_WAIT_S for w in (t.first_read_s, t.poll_s, t.confirm_gap_s,
                                              t.retry_min_s, t.retry_max_s))


def test_a_receipt_inside_one_attempt_and_the_margin_of_another_is_the_first_ones() -> None:
    """Job A's POST was lost; the patient swiped again at once and job B's POST (1 s after
    A's ended) charged. B's receipt lies in A's skew margin: it is B's, and A waits for B
    instead of taking it, then ends not charged."""
    a = attempt("A", 0, 20)
    b = attempt("B", 21, 40)
    r = receipt("9", t=23)
    assert rc.decide(b, [r], others=[a], settled=True) == rc.Found(r)
    assert isinstance(rc.decide(a, [r], others=[b], settled=True), rc.Doubt)
    assert rc.decide(a, [r], taken={"9"}, settled=True) == rc.Missed(settled=True)
    # an attempt that cannot be placed outranks every placed one: nobody takes the receipt
    unplaced = attempt("U", frm=None, to=None)
    assert isinstance(rc.decide(b, [r], others=[unplaced], settled=True), rc.Doubt)


# ---------------------------------------------------------------- what mutation testing asked

@pytest.mark.parametrize("first", [
    receipt("other-total", cents=100, t=3),
    receipt("taken", t=3),
    receipt("other-card", last4="4444", t=3),
    receipt("no-date", t=None),
    receipt("no-digits", last4=None, t=4),
    receipt("outside", t=900),
    receipt("rivals", t=30),
], ids=lambda r: r.epayment_id)
def test_a_receipt_that_is_not_ours_never_hides_the_one_after_it(first: Receipt) -> None:
    """Every receipt is looked at: one that does not count (or is a doubt) listed first
    must not stop the scan before our payment (a skipped receipt is a false not_charged)."""
    ours = receipt("90001", t=5)
    rival = attempt("R", 28, 40)
    got = rc.decide(attempt("A", 0, 20), [first, ours], others=[rival], taken={"taken"},
                    settled=True)
    assert got == rc.Found(ours)


def test_an_unplaceable_attempt_scans_every_receipt() -> None:
    unplaced = attempt(frm=None, to=None)
    later = receipt("9", t=5)
    got = rc.decide(unplaced, [receipt("1", cents=100, t=5), later], settled=True)
    assert isinstance(got, rc.Doubt) and got.reason


def test_the_earliest_receipt_wins_whatever_its_id() -> None:
    early, late = receipt("90009", t=2), receipt("10001", t=9)
    assert rc.decide(attempt(), [late, early], settled=True) == rc.Found(early)
    # the same second: the shorter (numerically smaller) id, not text order
    a, b = receipt("9", t=4), receipt("10", t=4)
    assert rc.decide(attempt(), [b, a], settled=True) == rc.Found(a)


def test_every_doubt_says_why() -> None:
    cases = [([receipt("1", t=None)], attempt()),
             ([receipt("2", last4=None, t=5)], attempt()),
             ([receipt("3", t=5)], attempt(frm=None, to=None)),
             ([receipt("4", t=21)], attempt("A", 0, 20))]
    for receipts, job in cases:
        d = rc.decide(job, receipts, others=[attempt("B", 22, 40)], settled=True)
        assert isinstance(d, rc.Doubt) and isinstance(d.reason, str) and d.reason


def test_doubt_backoff_doubles() -> None:
    t = rc.reconcile_timing(120)
    w = [rc.next_wait(rc.Doubt("x"), t, until_settle_s=0, doubts=n) for n in (1, 2, 3, 4)]
    assert w == [t.retry_min_s, 2 * t.retry_min_s, 4 * t.retry_min_s, 8 * t.retry_min_s]


def test_a_contended_receipt_listed_first_does_not_hide_ours() -> None:
    contended = receipt("shared", t=21)  # in A's margin and in B's
    ours = receipt("90001", t=5)
    got = rc.decide(attempt("A", 0, 20), [contended, ours], others=[attempt("B", 22, 40)],
                    settled=True)
    assert got == rc.Found(ours)
