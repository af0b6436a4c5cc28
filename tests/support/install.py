"""Running scripts/install and scripts/uninstall into a temporary root, for the tests of
both scripts: a copy of the repository parts they read, the runners, and snapshots of
what a root holds."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "lobbypay.example.toml"
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the parts of the repository the scripts read, with at least one udev rule."""
    dst = tmp_path / "repo"
    for rel in (
        "scripts/install",
        "scripts/uninstall",
        "systemd/lobbypay.service",
        "config/lobbypay.example.toml",
        "docs/install.md",
        "docs/client.md",
    ):
        src = REPO / rel
        if src.exists():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    udev = dst / "config" / "udev"
    udev.mkdir(parents=True, exist_ok=True)
    for rule in (REPO / "config" / "udev").glob("*.rules"):
        shutil.copy2(rule, udev / rule.name)
    if not any(udev.glob("*.rules")):  # the real rule is not written yet: a stand-in
        (udev / "70-lobbypay.rules").write_text(
            'SUBSYSTEM=="tty", ATTRS{idVendor}=="0801", SYMLINK+="lobbypay-reader"\n'
        )
    return dst


def run(script: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [BASH, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def install(repo: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(repo / "scripts" / "install", "--root", str(root), "--no-venv", *args)


def uninstall(repo: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(repo / "scripts" / "uninstall", "--root", str(root), *args)


def snapshot(root: Path) -> dict[str, tuple[str, int, str, int]]:
    """path -> (kind, mode, sha256, mtime_ns) for everything under root."""
    out: dict[str, tuple[str, int, str, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = ("f", st.st_mode & 0o7777, digest, st.st_mtime_ns)
        else:
            out[str(p.relative_to(root))] = ("d", st.st_mode & 0o7777, "", 0)
    return out


def mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


def rule_names(repo: Path) -> list[str]:
    return sorted(r.name for r in (repo / "config" / "udev").glob("*.rules"))
