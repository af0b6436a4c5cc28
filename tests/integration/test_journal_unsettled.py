"""The journal's read-only view and `lobbypay jobs --unsettled`, the gate the Debian
package's prerm uses before the agent (and later the journal) may go: jobs in
``submitting`` or ``unknown`` may have money at athena that only the journal knows of."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from lobbypay.core import job as jm
from lobbypay.shell.journal import Journal, JournalError

from tests.support.journal import T0, TOPIC, run_to_success, to_submitting, to_unknown

ROOT = Path(__file__).resolve().parents[2]




def unsettled_cli(state_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the way prerm runs it: a process, no config file
        [sys.executable, "-m", "lobbypay", "jobs", "--unsettled", "--state-dir", str(state_dir),
         "--config", str(state_dir / "no-such.toml"), *extra],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'agent'}:{ROOT / 'drivers'}", "PATH": "/usr/bin:/bin"},
    )


def test_read_only_view_lists_submitting_and_unknown(tmp_path: Path) -> None:
    state = tmp_path / "state"
    j = Journal.open(state)
    try:
        run_to_success(j, "j-done")
        to_submitting(j, "j-sub")
        to_unknown(j, "j-unk")
    finally:
        j.close()
    before = sorted(p.name for p in state.iterdir())
    ro = Journal.open_read_only(state)
    try:
        got = [(e["job_id"], e["state"]) for e in ro.unsettled()]
        assert got == [("j-sub", "submitting"), ("j-unk", "unknown")]
        assert [e["job_id"] for e in ro.list_latest(10)] == ["j-unk", "j-sub", "j-done"]
        with pytest.raises(Exception, match="readonly"):
            ro._conn.execute("DELETE FROM jobs")
    finally:
        ro.close()
    assert sorted(p.name for p in state.iterdir()) == before  # nothing created


def test_read_only_open_of_a_missing_or_bad_journal(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Journal.open_read_only(tmp_path / "none")
    assert not (tmp_path / "none").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "journal.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError):
        Journal.open_read_only(tmp_path / "bad")


def test_cli_gate_exit_codes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = unsettled_cli(state)  # no journal at all: nothing can be lost
    assert r.returncode == 0, r.stderr
    j = Journal.open(state)
    try:
        run_to_success(j, "j-done")
        r = unsettled_cli(state)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "no job in submitting or unknown" in r.stdout
        job = to_unknown(j, "j-unk")
        # while the agent holds the journal open (its -wal file exists)
        r = unsettled_cli(state)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "j-unk: unknown" in r.stdout
        st = jm.step(job, jm.ReconcileFound("ep-9"), T0 + timedelta(seconds=9))
        j.commit_step(st, topic=TOPIC)
        assert unsettled_cli(state).returncode == 0
        to_submitting(j, "j-sub")
    finally:
        j.close()
    r = unsettled_cli(state, "--json")  # agent stopped: immutable read
    assert r.returncode == 1
    assert '"job_id": "j-sub"' in r.stdout and '"state": "submitting"' in r.stdout
