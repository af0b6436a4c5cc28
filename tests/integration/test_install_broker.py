"""scripts/install and a mosquitto on the same machine: its Nagle stall is turned off
(set_tcp_nodelay true as a conf.d drop-in), uninstall takes the drop-in away, and a
machine without mosquitto, or --no-broker-config, is left alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([BASH, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_a_local_mosquitto_gets_set_tcp_nodelay(tmp_path: Path) -> None:
    conf_d = tmp_path / "etc" / "mosquitto" / "conf.d"
    conf_d.mkdir(parents=True)
    res = run(str(REPO / "scripts" / "install"), "--root", str(tmp_path), "--no-venv")
    drop_in = conf_d / "lobbypay-nodelay.conf"
    lines = [ln for ln in drop_in.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == ["set_tcp_nodelay true"]
    assert drop_in.stat().st_mode & 0o777 == 0o644
    assert "(skipped: --root) systemctl try-restart mosquitto.service" in res.stdout
    again = run(str(REPO / "scripts" / "install"), "--root", str(tmp_path), "--no-venv")
    assert "try-restart mosquitto" not in again.stdout  # unchanged: no restart
    run(str(REPO / "scripts" / "uninstall"), "--root", str(tmp_path))
    assert not drop_in.exists() and conf_d.is_dir()


def test_no_mosquitto_here_or_opted_out_changes_nothing(tmp_path: Path) -> None:
    res = run(str(REPO / "scripts" / "install"), "--root", str(tmp_path), "--no-venv")
    assert "no mosquitto on this machine" in res.stdout
    assert not (tmp_path / "etc" / "mosquitto").exists()
    other = tmp_path / "other"
    (other / "etc" / "mosquitto" / "conf.d").mkdir(parents=True)
    run(str(REPO / "scripts" / "install"), "--root", str(other), "--no-venv",
        "--no-broker-config")
    assert list((other / "etc" / "mosquitto" / "conf.d").iterdir()) == []
