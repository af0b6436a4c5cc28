"""What scripts/install tells an operator: which of the config and the secret still hold
placeholders (also under --dry-run with --athena-secret-file), no pip chatter unless pip
fails, and every document install.md and client.md point to on the terminal."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from tests.support.install import REPO, run

INSTALL = REPO / "scripts" / "install"
PIP_NOISE = "WARNING: Location 'file:///nowhere' is ignored"


def install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(INSTALL, "--root", str(root), *args, check=check)


def test_dry_run_with_a_secret_file_does_not_call_it_a_placeholder(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the-real-secret\n")
    res = install(tmp_path / "root", "--no-venv", "--dry-run", "--athena-secret-file",
                  str(secret))
    assert "placeholder" not in res.stderr, res.stderr
    # the template's client_id is still to be filled in, and only that is named
    assert ("not starting lobbypay until /etc/lobbypay/lobbypay.toml (athena.client_id) "
            "is filled in") in res.stderr


def test_not_starting_names_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = install(root, "--no-venv")
    err = res.stderr
    assert ("until /etc/lobbypay/lobbypay.toml (athena.client_id) and the athena secret "
            "/etc/lobbypay/athena-client-secret are filled in") in err
    config = root / "etc" / "lobbypay" / "lobbypay.toml"
    config.write_text(config.read_text().replace("REPLACE-WITH-ATHENA-CLIENT-ID", "my-app"))
    res = install(root, "--no-venv")
    err = res.stderr
    assert "until the athena secret /etc/lobbypay/athena-client-secret is filled in" in err
    assert "lobbypay.toml (" not in err
    secret = tmp_path / "secret"
    secret.write_text("the-real-secret\n")
    res = install(root, "--no-venv", "--athena-secret-file", str(secret))
    assert "not starting" not in res.stderr
    assert "(skipped: --root) systemctl start" in res.stdout


def _fake_pip(root: Path, rc: int) -> None:
    bin_dir = root / "opt" / "lobbypay" / "venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "pip").write_text(
        f"#!/bin/sh\nfor i in 1 2 3; do echo \"{PIP_NOISE}\" >&2; done\n"
        f"echo 'ERROR: the real reason' >&2\nexit {rc}\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IXUSR)


def test_pip_output_only_when_pip_fails(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet"
    _fake_pip(quiet, 0)
    res = install(quiet)
    out = res.stdout + res.stderr
    assert PIP_NOISE not in out and "the real reason" not in out
    assert re.search(r"\+ \S+/venv/bin/pip install", res.stdout)
    failing = tmp_path / "failing"
    _fake_pip(failing, 1)
    res = install(failing, check=False)
    assert res.returncode == 1
    assert "ERROR: the real reason" in res.stderr
    assert "pip failed" in res.stderr


def test_every_document_is_installed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--no-venv")
    docs = root / "opt" / "lobbypay" / "docs"
    installed = sorted(os.listdir(docs))
    assert "OPERATIONS.md" in installed and "protocol.md" in installed
    assert installed == sorted(p.name for p in (REPO / "docs").iterdir()
                               if p.suffix in (".md", ".json"))
    manifest = (root / "opt" / "lobbypay" / "install-manifest").read_text()
    assert "file /opt/lobbypay/docs/OPERATIONS.md" in manifest
