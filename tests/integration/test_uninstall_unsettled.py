"""scripts/uninstall --purge keeps the journal while a job is submitting or unknown
(the same rule as the Debian package's prerm), unless --force. The installed program is
the real CLI (a venv entry point standing in for /opt/lobbypay/venv/bin/lobbypay) and
the journal is written through the journal's own API."""

from __future__ import annotations

import sys
from pathlib import Path

from lobbypay.shell.journal import Journal

from tests.support.install import REPO, install, run, uninstall
from tests.support.journal import run_to_success, to_unknown


def with_program(root: Path) -> None:
    """What the venv step would put there: an entry point running this checkout's CLI."""
    bin_dir = root / "opt" / "lobbypay" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    prog = bin_dir / "lobbypay"
    path = f"{REPO / 'agent'}:{REPO / 'drivers'}"
    prog.write_text(
        f"#!/bin/sh\nPYTHONPATH='{path}' exec '{sys.executable}' -m lobbypay \"$@\"\n")
    prog.chmod(0o755)


def test_purge_refuses_while_a_job_is_unknown_then_force(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "root"
    install(repo, root)
    with_program(root)
    state = root / "var" / "lib" / "lobbypay"
    j = Journal.open(state)
    try:
        run_to_success(j, "j-done")
        to_unknown(j, "j-open")
    finally:
        j.close()

    res = run(repo / "scripts" / "uninstall", "--root", str(root), "--purge", check=False)
    assert res.returncode != 0
    assert "j-open: unknown" in res.stderr and "refusing to purge" in res.stderr
    assert (state / "journal.sqlite3").is_file()
    assert (root / "opt" / "lobbypay" / "venv" / "bin" / "lobbypay").exists()  # nothing done

    res = uninstall(repo, root, "--purge", "--force")
    assert "--force: purging" in res.stderr
    assert not state.exists()


def test_purge_goes_ahead_when_every_job_is_settled(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "root"
    install(repo, root)
    with_program(root)
    state = root / "var" / "lib" / "lobbypay"
    j = Journal.open(state)
    try:
        run_to_success(j, "j-done")
    finally:
        j.close()
    uninstall(repo, root, "--purge")
    assert not state.exists()
