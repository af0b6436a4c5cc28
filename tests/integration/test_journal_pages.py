"""The journal's page size and checkpoint spacing (fewer bytes and flushes on an SD
card: docs/PERFORMANCE.md): new journals get small pages, existing ones keep theirs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lobbypay.shell.journal import DB_NAME, PAGE_SIZE, WAL_AUTOCHECKPOINT_PAGES, Journal


def test_a_new_journal_has_small_pages(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    try:
        assert j.pragma("page_size") == PAGE_SIZE == 512
        assert j.pragma("wal_autocheckpoint") == WAL_AUTOCHECKPOINT_PAGES
        assert str(j.pragma("journal_mode")).lower() == "wal"
    finally:
        j.close()
    again = Journal(tmp_path / "state")
    try:
        assert again.pragma("page_size") == PAGE_SIZE
        assert again.next_session() >= 1
    finally:
        again.close()


def test_an_existing_journal_keeps_its_page_size(tmp_path: Path) -> None:
    # a journal made by an older lobbypay: SQLite's default 4096-byte pages
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    conn = sqlite3.connect(d / DB_NAME)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("VACUUM")
    conn.close()
    assert (d / DB_NAME).stat().st_size > 0
    j = Journal(d)
    try:
        assert j.pragma("page_size") == 4096
        assert j.next_session() >= 1
    finally:
        j.close()
