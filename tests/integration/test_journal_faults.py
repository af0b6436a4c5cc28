"""Journal faults heal (issue: a failed write must never leave a job without its true
outcome or the terminal busy). The real Engine and the real Journal on a real SQLite file;
the fault is real too: another connection holding the database's write lock, so every
write of the agent fails with "database is locked" after the short busy timeout, exactly
as it does when an operator's sqlite3 shell or a backup tool holds the lock. (A full disk,
the other cause, is the proof suite's: tests/proof/test_money_disk.py, on a real tmpfs.)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lobbypay import engine as engine_mod
from lobbypay.core import job as jm
from lobbypay.core.athena import Approved
from lobbypay.core.commands import ChargeGet, ChargeList
from lobbypay.core.errors import DomainError
from lobbypay.core.job import JobState
from lobbypay.shell import journal as journal_mod
from lobbypay.shell.journal import DB_NAME, Journal, JournalError
from lobbypay.shell.journal_codec import job_to_record
from lobbypay_hw import api

import tests.fakes.engine as te


@contextmanager
def write_lock(state_dir: Path) -> Iterator[None]:
    """Hold the journal's write lock from another connection (as another process would)."""
    other = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
async def rig(tmp_path: Path):
    r = te.Rig(tmp_path / "state")
    await r.engine.start()
    yield r
    await r.close()


def journaled_states(r: te.Rig, job_id: str) -> list[str]:
    return [e["state"] for e in r.journal.events(job_id)]


async def test_a_locked_journal_fails_fast_instead_of_blocking_the_loop(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    with write_lock(tmp_path / "state"):
        t0 = time.perf_counter()
        with pytest.raises(JournalError):
            j.next_session()
        assert time.perf_counter() - t0 < 0.5
    assert j.next_session() == 1
    j.close()


async def test_outcome_kept_and_terminal_free_while_the_journal_is_locked(rig: te.Rig) -> None:
    rig.athena.post_script = [te.HANG]
    rig.athena.after_hang = Approved("900555")
    await rig.engine.charge_start(te.start_cmd("j-1"))
    await te.swipe(rig)
    assert rig.engine.active_job is not None
    assert rig.engine.active_job.state is JobState.SUBMITTING
    with write_lock(rig.state_dir):
        rig.athena.release.set()
        await te.until(lambda: rig.engine.active_job is None)
        # athena's answer is not lost: the job is succeeded in memory, the terminal free
        assert journaled_states(rig, "j-1")[-1] == "submitting"
        got = rig.engine.charge_get(ChargeGet(request_id="g", job_id="j-1"))
        assert got["job"]["state"] == "succeeded" and got["job"]["epayment_id"] == "900555"
        listed = rig.engine.charge_list(ChargeList(request_id="l", limit=5))["jobs"]
        assert listed[0]["state"] == "succeeded"
        assert rig.engine.state()["job_state"] == "idle"
        assert rig.engine.screen[0].strip().lower().startswith("approved")
        # a new job can start? not while the journal refuses its first write: it answers
        # internal_error and nothing changes
        with pytest.raises(DomainError) as ei:
            await rig.engine.charge_start(te.start_cmd("j-2"))
        assert ei.value.code == "internal_error"
        # retries back off while the lock is held (manual clock)
        for _ in range(5):
            await rig.clock.advance(1)
        assert journaled_states(rig, "j-1")[-1] == "submitting"
    # the lock is gone: the next retry writes the step, in order, and wakes the outbox
    wakes = rig.wakeups
    await rig.clock.advance(6)
    await te.until(lambda: journaled_states(rig, "j-1")[-1] == "succeeded")
    assert journaled_states(rig, "j-1") == ["pending", "card_read", "submitting", "succeeded"]
    assert rig.wakeups > wakes
    assert rig.journal.known_epayment_ids() == {"900555"}
    assert [e["state"] for e in rig.outbox_events()][-1] == "succeeded"
    # and the terminal takes the next charge
    assert (await rig.engine.charge_start(te.start_cmd("j-2")))["state"] == "pending"


async def test_an_unwritten_approval_is_taken_for_other_jobs_reconciling(rig: te.Rig) -> None:
    """Job A is unknown and reconciling; job B is approved with epayment 777 while the
    journal is locked. A's receipts read lists 777 (B's payment): A must not take it."""
    await te.go_unknown(rig, "j-a")
    rig.athena.post_script = [te.HANG]
    rig.athena.after_hang = Approved("777")
    await rig.engine.charge_start(te.start_cmd("j-b"))
    await te.swipe(rig)
    with write_lock(rig.state_dir):
        rig.athena.release.set()
        await te.until(lambda: rig.engine.active_job is None)
        rig.athena.receipts_script = [[te.receipt("777")]] * 3
        await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
        await rig.clock.advance(1)
    assert rig.engine.charge_get(ChargeGet(request_id="g", job_id="j-a"))["job"][
        "state"] == "unknown"
    await rig.clock.advance(6)
    await te.until(lambda: journaled_states(rig, "j-b")[-1] == "succeeded")
    assert journaled_states(rig, "j-a")[-1] == "unknown"


async def test_card_read_not_written_asks_for_another_swipe(rig: te.Rig) -> None:
    await rig.engine.charge_start(te.start_cmd("j-1"))
    with write_lock(rig.state_dir):
        card = await te.swipe(rig)
        assert card.wiped and rig.athena.posts == []
        assert rig.engine.active_job is not None
        assert rig.engine.active_job.state is JobState.PENDING  # the deadline still runs
    rig.athena.post_script = [Approved("900600")]
    await te.swipe(rig)
    await te.until(lambda: rig.engine.active_job is None)
    assert journaled_states(rig, "j-1") == ["pending", "card_read", "submitting", "succeeded"]


class LockingDisplay(te.FakeDisplay):
    """Takes the journal's write lock when the engine shows a screen that ``wanted``
    picks (a subclass decides which)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.state_dir = state_dir
        self.lock: sqlite3.Connection | None = None

    def show(self, view: api.ScreenView) -> tuple[str, ...]:
        if self.lock is None and self.wanted(view):
            self.lock = sqlite3.connect(self.state_dir / DB_NAME, isolation_level=None,
                                        timeout=0)
            self.lock.execute("BEGIN IMMEDIATE")
        return super().show(view)

    def wanted(self, view: api.ScreenView) -> bool:
        return False

    def release(self) -> None:
        assert self.lock is not None
        self.lock.execute("ROLLBACK")
        self.lock.close()


class CardReadLock:
    """Takes the journal's write lock when the engine signals ``card_read``'s state, which
    it does between journaling ``card_read`` and journaling ``submitting``."""

    def __init__(self, engine: engine_mod.Engine, state_dir: Path) -> None:
        self.engine = engine
        self.state_dir = state_dir
        self.lock: sqlite3.Connection | None = None

    def __call__(self) -> None:
        job = self.engine.active_job
        if self.lock is None and job is not None and job.state is JobState.CARD_READ:
            self.lock = sqlite3.connect(self.state_dir / DB_NAME, isolation_level=None,
                                        timeout=0)
            self.lock.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        assert self.lock is not None
        self.lock.execute("ROLLBACK")
        self.lock.close()


async def test_submitting_not_written_means_never_posted(tmp_path: Path) -> None:
    r = te.Rig(tmp_path / "state")
    locker = CardReadLock(r.engine, tmp_path / "state")
    r.engine._on_state_change = locker
    await r.engine.start()
    try:
        await r.engine.charge_start(te.start_cmd("j-1"))
        card = await te.swipe(r)
        assert locker.lock is not None, "card_read's state was never signalled"
        await te.until(lambda: r.engine.active_job is None)
        assert r.athena.posts == []  # the point of no return was never recorded
        assert card.wiped
        got = r.engine.charge_get(ChargeGet(request_id="g", job_id="j-1"))["job"]
        assert got["state"] == "failed" and got["error"]["code"] == "internal_error"
        assert r.engine.state()["job_state"] == "idle"  # not stuck in card_read
        assert journaled_states(r, "j-1") == ["pending", "card_read"]
        locker.release()
        await r.clock.advance(6)
        await te.until(lambda: journaled_states(r, "j-1")[-1] == "failed")
        assert journaled_states(r, "j-1") == ["pending", "card_read", "failed"]
        assert r.athena.posts == []
    finally:
        await r.close()


async def test_a_reconcile_round_that_raises_is_retried(rig: te.Rig) -> None:
    rig.athena.receipts_script = [RuntimeError("a bug in a receipts parser"),
                                  [te.receipt("900321")]]
    await te.go_unknown(rig)
    await rig.clock.advance(engine_mod.RECONCILE_FIRST_READ_S)
    assert rig.states("j-1")[-1] == "unknown"
    await rig.clock.advance(engine_mod.RECONCILE_RETRY_MIN_S + 1)
    await te.until(lambda: rig.states("j-1")[-1] == "succeeded")
    assert rig.events("j-1")[-1]["epayment_id"] == "900321"


# ---------------------------------------------------------------- schema, corrupt rows

def test_a_version_1_journal_is_migrated(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    conn = sqlite3.connect(d / DB_NAME, isolation_level=None)
    conn.executescript(journal_mod._SCHEMA)  # the first schema had no quarantine table
    conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    conn.close()
    j = Journal(d)
    assert j._conn.execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert j._conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0
    j.close()


def test_a_newer_journal_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    Journal(tmp_path / "state").close()
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(JournalError) as ei:
        Journal(tmp_path / "state")
    assert "schema version 9" in str(ei.value) and "newer" in str(ei.value)


async def test_a_corrupt_row_is_quarantined_and_the_agent_starts(tmp_path: Path) -> None:
    r = te.Rig(tmp_path / "state")
    await r.engine.start()
    await te.go_unknown(r, "j-bad")
    await r.engine.charge_start(te.start_cmd("j-ok"))
    await r.close()
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    rec = json.loads(conn.execute("SELECT record FROM jobs WHERE job_id='j-bad'").fetchone()[0])
    rec["copay"] = "not a number"
    conn.execute("UPDATE jobs SET record = ? WHERE job_id = 'j-bad'", (json.dumps(rec),))
    conn.close()

    r2 = te.Rig(tmp_path / "state")
    await r2.engine.start()  # one bad row does not stop the start
    try:
        assert r2.journal.quarantined == [("j-bad", "ValueError")]
        # the good open job was recovered (pending -> expired by the restart)
        assert r2.journal.get_job("j-ok").state is JobState.EXPIRED  # type: ignore[union-attr]
        # the bad job's id stays taken: never a new charge under it
        with pytest.raises(DomainError) as ei:
            await r2.engine.charge_start(te.start_cmd("j-bad"))
        assert ei.value.code == "internal_error"
        with pytest.raises(DomainError) as ei:
            r2.engine.charge_get(ChargeGet(request_id="g", job_id="j-bad"))
        assert ei.value.code == "internal_error"
    finally:
        await r2.close()
    # the row is kept aside, whole
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    kept = conn.execute("SELECT record, reason FROM quarantine WHERE job_id='j-bad'").fetchone()
    assert json.loads(kept[0])["copay"] == "not a number" and kept[1] == "ValueError"
    conn.close()


def test_job_records_without_the_attempt_window_still_load(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    st = jm.start_job(te.start_cmd("j-old"), department_id="1", now=te.T0)
    j.commit_step(st, topic=te.TOPIC)
    rec = job_to_record(st.job)
    for k in ("attempt_from", "attempt_to", "reconcile_reads", "reconcile_attempts"):
        rec.pop(k)
    j._conn.execute("UPDATE jobs SET record = ? WHERE job_id = 'j-old'", (json.dumps(rec),))
    job = j.get_job("j-old")
    assert job is not None and job.attempt_from is None and job.reconcile_reads == 0
    j.close()


async def test_the_reply_agrees_with_the_job_when_keeping_the_reply_fails(
        tmp_path: Path) -> None:
    """charge.start's job is journaled, then keeping the reply for redeliveries fails (the
    lock is taken as the amount is shown, after the job's commit): the app must still be
    told ok/pending, as the job is waiting for a card."""
    from lobbypay.app import Dispatcher

    class LockOnAmount(LockingDisplay):
        def wanted(self, view: api.ScreenView) -> bool:
            return any("Total" in line for line in view.lines)

    r = te.Rig(tmp_path / "state")
    display = LockOnAmount(tmp_path / "state")
    r.engine._display = display
    await r.engine.start()
    try:
        d = Dispatcher(r.engine, r.journal)
        cmd = {"v": 1, "type": "charge.start", "request_id": "rq-1", "job_id": "j-1",
               "patient_id": "60178", "claims": [{"claim_id": "5569", "amount": "40.00"}]}
        reply = json.loads(await d.handle(json.dumps(cmd).encode()))
        assert display.lock is not None
        assert reply["ok"] is True and reply["state"] == "pending", reply
        assert r.engine.active_job is not None and r.engine.active_job.job_id == "j-1"
        display.release()
        # a redelivery is answered the same (from memory now, from the job after a restart)
        again = json.loads(await d.handle(json.dumps(cmd).encode()))
        assert again == reply
    finally:
        await r.close()


async def test_a_void_the_journal_cannot_record_is_kept_and_never_sent_twice(
        rig: te.Rig) -> None:
    """athena voids the payment, the journal refuses the voided step: the reply is not
    'voided' (the contract reports a void only once journaled), a second charge.void
    makes no athena call, and the step is written (and published) once the disk takes
    it."""
    from lobbypay.core.commands import ChargeVoid

    voids: list[str] = []

    async def void_payment(patient_id: str, epayment_id: str) -> None:
        voids.append(epayment_id)

    rig.athena.void_payment = void_payment  # type: ignore[attr-defined]
    rig.athena.post_script = [Approved("900700")]
    await rig.engine.charge_start(te.start_cmd("j-1"))
    await te.swipe(rig)
    await te.until(lambda: rig.engine.active_job is None)
    assert journaled_states(rig, "j-1")[-1] == "succeeded", journaled_states(rig, "j-1")
    with write_lock(rig.state_dir):
        for _ in range(2):
            with pytest.raises(DomainError) as ei:
                await rig.engine.charge_void(ChargeVoid(request_id="v", job_id="j-1"))
            assert ei.value.code == "internal_error"
        assert voids == ["900700"]  # athena was asked once
        assert journaled_states(rig, "j-1")[-1] == "succeeded"
        await te.settle()  # the retry loop runs (and fails) while the lock is held
    await rig.clock.advance(6)
    await te.until(lambda: journaled_states(rig, "j-1")[-1] == "voided")
    again = await rig.engine.charge_void(ChargeVoid(request_id="v2", job_id="j-1"))
    assert again == {"job_id": "j-1", "state": "voided"} and voids == ["900700"]
