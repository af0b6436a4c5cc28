"""The journal: job state, job events and the event outbox in one SQLite file.

One writer (the agent's event loop thread); sqlite3 calls are synchronous because every
write is a handful of small rows (see docs/jobs.md for the measured cost of a commit).

Durability: WAL mode with ``synchronous=FULL``, so ``COMMIT`` returns only after the WAL
is fsynced. ``commit_step`` writes, in ONE transaction, the job's row (state, the whole
job as JSON, its latest event), every new event in ``job_events`` and one ``outbox``
row per event. The engine calls it *before* it acts on the step (shows, POSTs,
publishes): in particular the ``submitting`` step is on disk before the POST leaves.

Card data: the journal only accepts ``lobbypay.core.job.Step`` values; it serializes the
job with ``job_to_record`` (``journal_codec.py``: the record's format) and re-checks every
event with ``lobbypay.core.protocol.check_event`` (exact key set, plain JSON values only,
``card`` = brand + 4 digits), and its JSON encoder refuses any non-JSON object. A card
object therefore cannot reach the file.

Files: the state directory is created 0700, the database (and SQLite's -wal/-shm files,
which SQLite creates with the database's mode) 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lobbypay.core.job import Job, JobState, Step
from lobbypay.core.protocol import check_event, format_time
from lobbypay.shell import steptrace
from lobbypay.shell.journal_codec import job_from_record, job_to_record

DB_NAME = "journal.sqlite3"
#: Jobs in these states may have money at athena that no final event reports yet: a POST
#: may be in flight (``submitting``) or its outcome is being reconciled (``unknown``).
#: Removing the agent or its journal then would lose the only record of it.
UNSETTLED_STATES: frozenset[JobState] = frozenset({JobState.SUBMITTING, JobState.UNKNOWN})
#: 1: the first schema; 2: adds ``quarantine`` (rows that could not be read, kept aside).
SCHEMA_VERSION = 2
#: Replies kept for redelivered commands (QoS 1 redelivery comes within seconds; keep
#: plenty).
PROCESSED_KEEP = 1000
#: Acknowledged outbox rows kept for inspection before they are deleted.
OUTBOX_ACKED_KEEP = 500
#: How long a call may wait for the file lock (only one writer exists; this covers a
#: second process such as an operator's sqlite3 shell holding a lock). Kept short: the
#: journal runs on the event loop, and a write that finds the lock taken fails at once
#: and is retried by the engine with backoff (engine._record), so no wait ever blocks
#: the loop for longer than this.
#: Page size of a new journal. Every commit appends each page it changed to the WAL
#: (and a checkpoint writes it again): scripts/bench measured a charge at ~190 KiB written
#: with SQLite's default 4096, ~70 KiB with 1024 and ~45 KiB with 512 (the smallest);
#: docs/PERFORMANCE.md, "What an SD card pays".
PAGE_SIZE = 512
#: WAL pages between automatic checkpoints (SQLite's default is 1000). A checkpoint costs
#: two fsyncs; 8000 small pages keep the WAL at SQLite's default 4 MB, one checkpoint per
#: ~90 charges instead of ~11.
WAL_AUTOCHECKPOINT_PAGES = 8000
BUSY_TIMEOUT_MS = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    created_order INTEGER NOT NULL,
    state TEXT NOT NULL,
    final INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    submitted_at TEXT,
    epayment_id TEXT,
    record TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(final) WHERE final = 0;
CREATE INDEX IF NOT EXISTS jobs_order ON jobs(created_order);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    UNIQUE (job_id, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    acked_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(id) WHERE acked = 0;
CREATE TABLE IF NOT EXISTS processed (
    request_id TEXT PRIMARY KEY,
    reply BLOB NOT NULL,
    created_at TEXT NOT NULL
);
"""
#: Forward migrations: ``MIGRATIONS[n]`` takes a journal from schema n to n + 1.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS quarantine (
    job_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    event TEXT,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
""",
}


class JournalError(Exception):
    """The journal could not be opened or written. Messages carry no card data."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    retain: bool


def _refuse(obj: object) -> Any:
    raise TypeError(f"journal refuses to serialize a {type(obj).__name__}")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_refuse, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _now_text() -> str:
    # bookkeeping timestamps only (outbox created_at/acked_at); job times come from steps
    return format_time(datetime.now(UTC))


class Journal:
    """``Journal(state_dir)`` (or ``Journal.open(state_dir)``) opens or creates the
    journal; ``close()`` when done. Raises ``JournalError`` when it cannot."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._conn, self.path = self._connect(Path(state_dir))
        #: (job_id, reason) of the rows moved to quarantine since the journal was opened
        self.quarantined: list[tuple[str, str]] = []
        self._read_only = False
        #: Outbox rows not acknowledged yet, kept in memory once read (this connection is
        #: the journal's only writer; ``state.outbox`` asks for it on every change).
        self._unacked: int | None = None

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str]) -> Journal:
        return cls(state_dir)

    @classmethod
    def open_read_only(cls, state_dir: str | os.PathLike[str]) -> Journal:
        """The journal for reading only (``lobbypay jobs``, the Debian package's prerm).

        Creates and changes nothing: ``mode=ro`` while the agent runs (its -wal/-shm files
        exist), ``immutable=1`` when it does not, so a root shell never leaves root-owned
        -wal/-shm files the agent could not open. Raises FileNotFoundError when there is no
        journal, ``JournalError`` when it cannot be read.
        """
        path = Path(state_dir) / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(str(path))
        mode = "mode=ro" if path.with_name(DB_NAME + "-wal").exists() else "immutable=1"
        try:
            conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {path}: {exc}") from None
        self = cls.__new__(cls)
        self._conn, self.path = conn, path
        self.quarantined = []
        self._read_only = True
        self._unacked = None
        return self

    # ------------------------------------------------------------ lifecycle

    @staticmethod
    def _connect(d: Path) -> tuple[sqlite3.Connection, Path]:
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            path = d / DB_NAME
            # create the file with 0600 before SQLite sees it (SQLite then gives the
            # -wal and -shm files the same mode)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except OSError as exc:
            raise JournalError(f"cannot open journal in {d}: {exc.strerror}") from None
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal in {d}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if path.stat().st_size == 0:
                # a new journal: small pages, so a commit writes less to an SD card (only
                # possible before the first table; an existing journal keeps its size)
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal could not switch to WAL (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, path)
        except JournalError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(f"journal {path} is not usable: {exc}") from None
        return conn, path

    def close(self) -> None:
        self._conn.close()

    def pragma(self, name: str) -> Any:
        if not name.isidentifier():
            raise ValueError("bad pragma name")
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    # ------------------------------------------------------------ meta

    def next_session(self) -> int:
        """The next session number (1, 2, ...), persisted before it is returned."""
        try:
            with _tx(self._conn):
                row = self._conn.execute(
                    "SELECT value FROM meta WHERE key='session'").fetchone()
                n = (int(row[0]) if row else 0) + 1
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('session', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(n),),
                )
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        return n

    # ------------------------------------------------------------ jobs

    def commit_step(self, step: Step, *, topic: str, fsync: bool = True) -> None:
        """Record a step durably: job row + its events + one outbox row per event.

        ``fsync=False`` commits without waiting for the disk (``synchronous=NORMAL``): the
        step becomes durable with the next fsync'd commit, which carries the earlier WAL
        frames with it. Only for a step that is followed by an fsync'd commit before
        anything is published or sent (the engine's ``card_read`` before ``submitting``).
        A process crash loses nothing either way (the OS holds the write); a power cut
        between the two loses only the unpublished step.
        """
        if not isinstance(step, Step) or not isinstance(step.job, Job):
            raise TypeError("journal accepts only lobbypay.core.job.Step values")
        job = step.job
        record = _dumps(job_to_record(job))
        events: list[tuple[dict[str, Any], str]] = []
        for ev in step.events:
            check_event(ev)
            if ev["job_id"] != job.job_id:
                raise ValueError("event belongs to another job")
            events.append((ev, _dumps(ev)))
        if events and events[-1][0]["seq"] != job.seq:
            raise ValueError("last event's seq differs from the job's")
        latest = events[-1][1] if events else None
        now = _now_text()
        try:
            if not fsync:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            with _tx(self._conn):
                c = self._conn
                # an existing job (every step but the first): one statement
                cur = c.execute(
                    "UPDATE jobs SET state=?, final=?, seq=?, updated_at=?, submitted_at=?, "
                    "epayment_id=?, record=?, event=COALESCE(?, event) WHERE job_id=?",
                    (job.state.value, int(job.final), job.seq, job.updated_at.isoformat(),
                     job.submitted_at.isoformat() if job.submitted_at else None,
                     job.epayment_id, record, latest, job.job_id),
                )
                if cur.rowcount == 0:
                    if latest is None:
                        raise ValueError("a new job needs its first event")
                    order = c.execute(
                        "SELECT COALESCE(MAX(created_order), 0) + 1 FROM jobs").fetchone()[0]
                    c.execute(
                        "INSERT INTO jobs(job_id, created_order, state, final, seq, body_key, "
                        "created_at, updated_at, submitted_at, epayment_id, record, event) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job.job_id, order, job.state.value, int(job.final), job.seq,
                         job.body_key, job.created_at.isoformat(), job.updated_at.isoformat(),
                         job.submitted_at.isoformat() if job.submitted_at else None,
                         job.epayment_id, record, latest),
                    )
                for ev, text in events:
                    c.execute(
                        "INSERT INTO job_events(job_id, seq, state, at, event) VALUES (?,?,?,?,?)",
                        (ev["job_id"], ev["seq"], ev["state"], ev["at"], text),
                    )
                    c.execute(
                        "INSERT INTO outbox(topic, payload, retain, created_at) VALUES (?,?,0,?)",
                        (topic, text.encode("utf-8"), now),
                    )
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        finally:
            if not fsync:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA synchronous = FULL")
        if self._unacked is not None:
            self._unacked += len(events)
        if steptrace.ON:
            steptrace.mark(f"journal.{job.state.value}")

    def get_job(self, job_id: str) -> Job | None:
        """The job, or None when it was never seen. A job whose row is in quarantine
        raises ``JournalError``: its id stays taken (it may have been charged)."""
        row = self._conn.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            if self.is_quarantined(job_id):
                raise JournalError(f"job {job_id}'s journal row is unreadable (quarantined)")
            return None
        try:
            return job_from_record(json.loads(row[0]))
        except Exception as exc:  # noqa: BLE001 - an unreadable row
            raise JournalError(f"job {job_id}'s journal row is unreadable "
                               f"({type(exc).__name__})") from None

    def latest_event(self, job_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT event FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_latest(self, limit: int) -> list[dict[str, Any]]:
        """Latest event of the newest ``limit`` jobs, newest first."""
        rows = self._conn.execute(
            "SELECT event FROM jobs ORDER BY created_order DESC LIMIT ?", (int(limit),)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def load_jobs(self, *, only_open: bool = False) -> list[Job]:
        """Jobs in creation order (``only_open``: those not in a final state). A row that
        cannot be read is moved to ``quarantine`` (see ``quarantined``) and skipped: one
        bad row must not keep the agent from starting."""
        sql = "SELECT job_id, record, event FROM jobs"
        if only_open:
            sql += " WHERE final = 0"
        sql += " ORDER BY created_order"
        jobs: list[Job] = []
        bad: list[tuple[str, str, str | None, str]] = []
        for job_id, record, event in self._conn.execute(sql).fetchall():
            try:
                jobs.append(job_from_record(json.loads(record)))
            except Exception as exc:  # noqa: BLE001 - any unreadable row is quarantined
                bad.append((str(job_id), str(record), event, type(exc).__name__))
        for job_id, record, event, reason in bad:
            if self._read_only:  # only the agent's own journal moves rows
                self.quarantined.append((job_id, reason))
            else:
                self._quarantine(job_id, record, event, reason)
        return jobs

    def _quarantine(self, job_id: str, record: str, event: str | None, reason: str) -> None:
        try:
            with _tx(self._conn):
                self._conn.execute(
                    "INSERT OR REPLACE INTO quarantine(job_id, record, event, reason, at) "
                    "VALUES (?,?,?,?,?)", (job_id, record, event, reason, _now_text()))
                self._conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        self.quarantined.append((job_id, reason))

    def is_quarantined(self, job_id: str) -> bool:
        try:
            row = self._conn.execute(
                "SELECT 1 FROM quarantine WHERE job_id = ?", (job_id,)).fetchone()
        except sqlite3.OperationalError:  # a version 1 journal opened read-only
            return False
        return row is not None

    def unsettled(self) -> list[dict[str, Any]]:
        """Latest event of every job in ``UNSETTLED_STATES``, oldest first."""
        marks = ", ".join("?" * len(UNSETTLED_STATES))
        rows = self._conn.execute(
            f"SELECT event FROM jobs WHERE final = 0 AND state IN ({marks})"  # noqa: S608
            " ORDER BY created_order",
            sorted(str(x) for x in UNSETTLED_STATES),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT event FROM job_events WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def known_epayment_ids(self) -> frozenset[str]:
        rows = self._conn.execute(
            "SELECT epayment_id FROM jobs WHERE epayment_id IS NOT NULL").fetchall()
        return frozenset(str(r[0]) for r in rows)

    # ------------------------------------------------------------ outbox

    def outbox_pending(self, limit: int = 100) -> list[OutboxRow]:
        rows = self._conn.execute(
            "SELECT id, topic, payload, retain FROM outbox WHERE acked = 0 ORDER BY id LIMIT ?",
            (int(limit),),
        ).fetchall()
        return [OutboxRow(int(r[0]), str(r[1]), bytes(r[2]), bool(r[3])) for r in rows]

    def outbox_ack(self, row_id: int) -> None:
        """Mark a row delivered (after the broker's PUBACK); prunes old acked rows."""
        self.outbox_ack_many((row_id,))

    def outbox_ack_many(self, row_ids: Sequence[int]) -> None:
        """Mark rows delivered, in one transaction (the PUBACKs of events published
        together come back together); prunes old acked rows."""
        # No fsync of its own (an SD card pays for every flush: docs/PERFORMANCE.md): an
        # ack lost to a power cut only sends its event once more after the restart, and
        # consumers dedupe on (job_id, seq). A process crash loses nothing (the WAL frames
        # are in the OS's cache); the next fsynced commit makes them durable.
        ids = [int(r) for r in row_ids]
        if not ids:
            return
        try:
            self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with _tx(self._conn):
                    now = _now_text()
                    acked = 0
                    for row_id in ids:
                        acked += self._conn.execute(
                            "UPDATE outbox SET acked = 1, acked_at = ? WHERE id = ? AND acked = 0",
                            (now, row_id),
                        ).rowcount
                    self._conn.execute(
                        "DELETE FROM outbox WHERE acked = 1 AND id <= "
                        "(SELECT COALESCE(MAX(id), 0) FROM outbox) - ?",
                        (OUTBOX_ACKED_KEEP,),
                    )
            finally:
                self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None
        if self._unacked is not None:
            self._unacked = max(0, self._unacked - acked)

    def outbox_count(self) -> int:
        """Rows not acknowledged yet (read once, then kept up to date by this connection's
        own writes; a read-only journal reads it every time: the agent writes meanwhile)."""
        if self._unacked is not None:
            return self._unacked
        n = int(self._conn.execute("SELECT COUNT(*) FROM outbox WHERE acked = 0").fetchone()[0])
        if not self._read_only:
            self._unacked = n
        return n

    # ------------------------------------------------------------ processed requests

    def put_reply(self, request_id: str, reply: bytes) -> None:
        """Keep the encoded reply sent for ``request_id`` (QoS 1 redeliveries are answered
        with it again); bounded to the newest ``PROCESSED_KEEP``."""
        if not isinstance(request_id, str) or not isinstance(reply, (bytes, bytearray)):
            raise TypeError("put_reply takes a str request_id and the encoded reply bytes")
        # No fsync of its own: the job this reply speaks of is already durable (its step
        # was committed with synchronous=FULL before the reply was built), and a reply
        # lost to a power cut is rebuilt from the job by the job_id idempotency rule. The
        # WAL frames reach the disk with the next FULL commit.
        try:
            self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with _tx(self._conn):
                    cur = self._conn.execute(
                        "INSERT OR REPLACE INTO processed(request_id, reply, created_at) "
                        "VALUES (?,?,?)",
                        (request_id, bytes(reply), _now_text()),
                    )
                    # rowids only grow: dropping by rowid uses the primary key, no scan
                    self._conn.execute("DELETE FROM processed WHERE rowid <= ?",
                                       ((cur.lastrowid or 0) - PROCESSED_KEEP,))
            finally:
                self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from None

    def get_reply(self, request_id: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT reply FROM processed WHERE request_id = ?", (request_id,)).fetchone()
        return bytes(row[0]) if row else None

    # ------------------------------------------------------------ checks

    def file_modes(self) -> dict[str, int]:
        """Permission bits of the state dir and the journal files (for tests and ops)."""
        out = {"dir": stat.S_IMODE(os.stat(self.path.parent).st_mode)}
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                out[p.name] = stat.S_IMODE(os.stat(p).st_mode)
        return out


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or bring an older journal forward one version at a time; refuse
    a journal written by a newer lobbypay (its rows may mean something this one does not
    know) with a message that says what to do."""
    conn.executescript(_SCHEMA)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        has_jobs = conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is not None
        version = 1 if has_jobs else SCHEMA_VERSION
        if not has_jobs:
            conn.executescript("".join(MIGRATIONS[v] for v in sorted(MIGRATIONS)))
        with _tx(conn):
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                         (str(version),))
    else:
        try:
            version = int(row[0])
        except ValueError:
            raise JournalError(f"journal {path} has an unreadable schema version") from None
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}, newer than this lobbypay "
            f"understands ({SCHEMA_VERSION}): install the lobbypay that wrote it (or newer); "
            "do not delete the journal while a job may be unknown")
    while version < SCHEMA_VERSION:
        with _tx(conn):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            version += 1
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                         (str(version),))


def _tx(conn: sqlite3.Connection) -> _Transaction:
    return _Transaction(conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")




# ---------------------------------------------------------------- read-only access
#
# For the maintainers' tools (``lobbypay jobs``, and the Debian package's prerm through
# ``lobbypay jobs --unsettled``): each opens the journal with ``Journal.open_read_only``
# (which creates and changes nothing), reads, and closes it. Each raises
# FileNotFoundError when there is no journal, JournalError when it cannot be read.


def recent_jobs(state_dir: str | os.PathLike[str], limit: int) -> list[dict[str, Any]]:
    """Latest event of the newest ``limit`` jobs, newest first."""
    with contextlib.closing(Journal.open_read_only(state_dir)) as journal:
        try:
            return journal.list_latest(limit)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {journal.path}: {exc}") from None


def unsettled_jobs(state_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Latest event of every job in ``UNSETTLED_STATES``, oldest first."""
    with contextlib.closing(Journal.open_read_only(state_dir)) as journal:
        try:
            return journal.unsettled()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {journal.path}: {exc}") from None
