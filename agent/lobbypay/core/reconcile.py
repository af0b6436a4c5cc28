"""Reconciliation of a payment whose outcome is unknown (pure: no I/O, no clock reads).

After ``unknown`` (protocol.md 6) the engine reads the patient's receipts from athena and
asks ``decide`` what they say about the job. The answer is one of:

* ``Found(receipt)``: the receipt is this job's payment -> ``succeeded``;
* ``Missed(settled)``: nothing that could be this job's payment -> counts toward
  ``failed``/``not_charged`` once ``settled`` (the read began at least
  ``reconcile_settle_s`` after the attempt, on athena's clock);
* ``Doubt(reason)``: something *might* be this job's payment but cannot be shown to be
  (a receipt another open job could own too, one without a time or card digits, or no way
  to place receipts on athena's clock). Never counts toward ``not_charged``: a wrong
  ``not_charged`` makes the app charge again, so in doubt the job stays ``unknown``.

The matching rule (docs/jobs.md, "Reconciliation"):

1. A receipt is a *candidate* for a job when it has the job's total and card last 4, it is
   not already some job's payment (``taken``), and one reading of its ``requestdate``
   overlaps the job's POST attempt window on athena's clock. The window runs from just
   before the request left to just after its outcome became unknown, each end widened by
   the clock estimate's uncertainty (``lobbypay.core.clock``) and by ``ATHENA_SKEW_S``.
2. Other open jobs (another ``unknown`` job, or a POST in flight) of the same total and
   card are rivals. A receipt's claim on a window is *strong* when it overlaps the attempt
   itself and *weak* when it overlaps only the skew margins. A job takes a candidate only
   when its claim is stronger than every rival's: a receipt made during job B's POST, a
   second after job A's POST ended, is B's, not A's. Where a rival's claim is as strong
   or stronger, the receipt decides nothing for this job until the rival is decided (then
   it is taken, or no longer contended). The earliest candidate the job takes is its
   payment.
3. So one receipt never decides two jobs, a receipt made outside this job's attempt (a
   later job's payment, a payment at the front desk afterwards) never decides it, and a
   receipt made during the attempt is always found when the clock estimate is right.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lobbypay.core.athena import Receipt
from lobbypay.core.clock import Span
from lobbypay.core.money import Cents

#: athena's ``Date`` header is written by its API front end, ``requestdate`` by the payment
#: back end: different machines. Allow this much between their clocks on each side.
ATHENA_SKEW_S = 5.0
#: A job with no window end yet (its POST still in flight, or the agent restarted during
#: it and has not yet placed "now" on athena's clock) is open to the far future.
_FAR = timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One job's POST attempt as reconciliation sees it.

    ``window_from`` / ``window_to``: athena-clock bounds of the attempt (already widened by
    the clock's uncertainty); ``window_from`` None means the attempt could not be placed
    on athena's clock; ``window_to`` None means it has no end yet.
    """

    job_id: str
    total: Cents
    last4: str
    window_from: datetime | None
    window_to: datetime | None

    def core(self) -> Span | None:
        """The attempt itself on athena's clock (no skew margin)."""
        if self.window_from is None:
            return None
        end = self.window_to if self.window_to is not None else self.window_from + _FAR
        return Span(self.window_from, max(end, self.window_from))

    def window(self) -> Span | None:
        """The attempt with ``ATHENA_SKEW_S`` of margin on each side."""
        core = self.core()
        return core.widened(ATHENA_SKEW_S) if core is not None else None

    def claim(self, spans: Sequence[Span]) -> int:
        """How strongly a receipt at ``spans`` may be this attempt's: 2 inside the attempt,
        1 only inside its margins, 0 outside; 3 when the attempt cannot be placed at all
        (it may be anything, so it outranks every placed claim)."""
        core, window = self.core(), self.window()
        if core is None or window is None:
            return 3
        if any(s.overlaps(core) for s in spans):
            return 2
        if any(s.overlaps(window) for s in spans):
            return 1
        return 0


@dataclass(frozen=True, slots=True)
class Found:
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class Missed:
    settled: bool


@dataclass(frozen=True, slots=True)
class Doubt:
    reason: str


Decision = Found | Missed | Doubt


def decide(
    job: Attempt,
    receipts: Iterable[Receipt],
    *,
    others: Sequence[Attempt] = (),
    taken: Collection[str] = frozenset(),
    settled: bool,
) -> Decision:
    """What one receipts read says about ``job`` (see the module doc for the rule).

    ``others``: the other open jobs (``unknown``, or with a POST in flight); ``taken``:
    epayment ids already some job's payment; ``settled``: the read began at least
    ``reconcile_settle_s`` after the attempt ended, judged on athena's clock.
    """
    window = job.window()
    rivals = [o for o in others
              if o.job_id != job.job_id and o.total == job.total and o.last4 == job.last4]
    candidates: list[tuple[datetime, str, Receipt]] = []
    doubt: str | None = None
    for r in receipts:
        if r.amount != job.total or r.epayment_id in taken:
            continue
        if r.last4 is not None and r.last4 != job.last4:
            continue
        if not r.requested:
            doubt = doubt or f"receipt {r.epayment_id} of this total has no requestdate"
            continue
        if window is None:
            doubt = doubt or (f"receipt {r.epayment_id} of this total cannot be placed: "
                              "the attempt's time on athena's clock is not known")
            continue
        mine = job.claim(r.requested)
        if mine == 0:
            continue
        if r.last4 is None:
            doubt = doubt or f"receipt {r.epayment_id} in the attempt has no card digits"
            continue
        rival = next((o.job_id for o in rivals if o.claim(r.requested) >= mine), None)
        if rival is not None:
            doubt = doubt or f"receipt {r.epayment_id} could also be job {rival}'s payment"
            continue
        inside = [s for s in r.requested if s.overlaps(window)]
        candidates.append((min(s.lo for s in inside), r.epayment_id, r))
    if candidates:
        return Found(min(candidates, key=lambda c: (c[0], len(c[1]), c[1]))[2])
    if doubt is not None:
        return Doubt(doubt)
    return Missed(settled=settled)


def is_settled(athena_now: Span | None, attempt_end: datetime | None, settle_s: float,
               wall_elapsed_s: float) -> bool:
    """Has athena had ``settle_s`` to list the payment? On athena's clock when both the
    attempt's end and "now" are placed there (the earliest "now" against the latest end);
    else on the terminal's own elapsed time (monotonic within a run)."""
    if athena_now is not None and attempt_end is not None:
        return (athena_now.lo - attempt_end).total_seconds() >= settle_s
    return wall_elapsed_s >= settle_s


# ---------------------------------------------------------------- timing

#: First receipts read after an unknown outcome: give athena a moment to post it.
FIRST_READ_S = 5.0
#: Receipts reads before the settle time (a landed payment usually shows up quickly).
POLL_S = 30.0
#: Gap between the two settled reads that must both find nothing before ``not_charged``.
CONFIRM_GAP_S = 30.0
#: Backoff for failing receipts reads (and for reads in doubt): start, factor 2, cap.
RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0
#: Settled reads that must find nothing before a job ends ``failed``/``not_charged``.
SETTLED_READS = 2
#: The waits above are for the default ``reconcile_settle_s`` (this value). A shorter
#: settle time scales every one of them down in proportion (never below ``MIN_WAIT_S``);
#: a longer one keeps them as they are. So a site (or a test) that sets
#: ``reconcile_settle_s = 5`` gets its verdict in seconds, not minutes.
REFERENCE_SETTLE_S = 120.0
MIN_WAIT_S = 0.2


@dataclass(frozen=True, slots=True)
class ReconcileTiming:
    """The reconcile waits for one ``reconcile_settle_s`` (see ``reconcile_timing``)."""

    first_read_s: float
    poll_s: float
    confirm_gap_s: float
    retry_min_s: float
    retry_max_s: float


def reconcile_timing(settle_s: float) -> ReconcileTiming:
    """The module's waits scaled by ``settle_s / 120`` (at most 1), each at least
    ``MIN_WAIT_S``. ``reconcile_timing(120)`` is the constants unchanged."""
    f = min(1.0, max(0.0, float(settle_s)) / REFERENCE_SETTLE_S)

    def scaled(base: float) -> float:
        return max(MIN_WAIT_S, base * f)

    return ReconcileTiming(
        first_read_s=scaled(FIRST_READ_S),
        poll_s=scaled(POLL_S),
        confirm_gap_s=scaled(CONFIRM_GAP_S),
        retry_min_s=scaled(RETRY_MIN_S),
        retry_max_s=scaled(RETRY_MAX_S),
    )


def next_wait(decision: Missed | Doubt, timing: ReconcileTiming, *, until_settle_s: float,
              doubts: int) -> float:
    """Seconds until the next receipts read after ``decision``. A miss before the settle
    time polls (never past the settle time); a settled miss waits the confirm gap; a doubt
    backs off (``doubts`` in a row so far, from 1), up to ``retry_max_s``."""
    if isinstance(decision, Doubt):
        factor = float(2 ** max(0, min(doubts - 1, 16)))
        return min(timing.retry_max_s, timing.retry_min_s * factor)
    if decision.settled:
        return timing.confirm_gap_s
    return max(MIN_WAIT_S, min(timing.poll_s, until_settle_s))
