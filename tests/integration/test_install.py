"""scripts/install and scripts/uninstall, run for real into a temporary root.

Under ``--root`` the scripts touch nothing outside that directory (no useradd, chown,
systemctl or udevadm: those are printed). The venv step is exercised once with a wheel
built here from the package sources (offline, no dependencies); the other tests use
``--no-venv`` to stay fast.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import lobbypay.core.config as config_module
import pytest
from lobbypay import __version__
from lobbypay.core.config import Config, parse_config
from lobbypay.shell.loadconf import load_config

from tests.support.install import (
    EXAMPLE,
    REPO,
    install,
    mode,
    rule_names,
    run,
    snapshot,
    uninstall,
)

# ---------------------------------------------------------------- install


def test_install_creates_files_with_modes(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = install(repo, root)
    etc = root / "etc" / "lobbypay"
    unit = root / "etc" / "systemd" / "system" / "lobbypay.service"
    assert unit.read_bytes() == (repo / "systemd" / "lobbypay.service").read_bytes()
    assert mode(unit) == 0o644
    assert mode(etc) == 0o750
    assert (etc / "lobbypay.toml").read_bytes() == EXAMPLE.read_bytes()
    assert mode(etc / "lobbypay.toml") == 0o640
    assert mode(etc / "athena-client-secret") == 0o600
    assert "REPLACE-WITH-ATHENA-CLIENT-SECRET" in (etc / "athena-client-secret").read_text()
    assert "placeholder" in res.stderr  # warned
    assert mode(root / "var" / "lib" / "lobbypay") == 0o700
    for name in rule_names(repo):
        rule = root / "etc" / "udev" / "rules.d" / name
        assert rule.read_bytes() == (repo / "config" / "udev" / name).read_bytes()
        assert mode(rule) == 0o644
    assert not (root / "opt" / "lobbypay" / "venv").exists()  # --no-venv
    # nothing against the real system: printed as skipped
    for cmd in (
        "useradd",
        "systemctl daemon-reload",
        "systemctl enable",
        "udevadm control",
        "chown root:lobbypay",
    ):
        assert f"(skipped: --root) {cmd}" in res.stdout, cmd
    # with placeholders in place it does not try to start the service
    assert "systemctl start" not in res.stdout and "not starting" in res.stderr


def test_install_twice_is_idempotent_and_keeps_edits(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(repo, root)
    first = snapshot(root)
    again = install(repo, root)
    assert snapshot(root) == first  # same files, same modes, nothing rewritten
    assert "unchanged: /etc/systemd/system/lobbypay.service" in again.stdout

    cfg = root / "etc" / "lobbypay" / "lobbypay.toml"
    secret = root / "etc" / "lobbypay" / "athena-client-secret"
    cfg.write_text(cfg.read_text().replace('id = "lobby-1"', 'id = "lobby-7"'))
    secret.write_text("s3cret-from-ops\n")
    os.chmod(secret, 0o644)  # somebody loosened it: install tightens it again
    third = install(repo, root)
    assert 'id = "lobby-7"' in cfg.read_text()
    assert mode(cfg) == 0o640
    assert "kept your config" in third.stdout
    assert secret.read_text() == "s3cret-from-ops\n" and mode(secret) == 0o600
    assert (
        root / "etc" / "lobbypay" / "lobbypay.toml.example"
    ).read_bytes() == EXAMPLE.read_bytes()


def test_secret_file_option(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "secret.txt"
    src.write_text("athena-secret-value\n")
    root = tmp_path / "root"
    res = install(repo, root, "--athena-secret-file", str(src))
    dest = root / "etc" / "lobbypay" / "athena-client-secret"
    assert dest.read_text() == "athena-secret-value\n" and mode(dest) == 0o600
    assert "placeholder" not in res.stderr
    assert "athena-secret-value" not in res.stdout + res.stderr
    bad = run(
        repo / "scripts" / "install",
        "--root",
        str(root),
        "--no-venv",
        "--athena-secret-file",
        str(tmp_path / "missing"),
        check=False,
    )
    assert bad.returncode != 0 and "not readable" in bad.stderr


def test_installed_config_loads_with_the_units_credential(repo: Path, tmp_path: Path) -> None:
    """The unit's LoadCredential name, the config's credential name and the file agree."""
    root = tmp_path / "root"
    src = tmp_path / "secret.txt"
    src.write_text("the-secret\n")
    install(repo, root, "--athena-secret-file", str(src))
    etc = root / "etc" / "lobbypay"
    cfg = load_config(etc / "lobbypay.toml", env={"CREDENTIALS_DIRECTORY": str(etc)})
    assert cfg.athena.client_secret == "the-secret"


def test_dry_run_changes_nothing(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    res = install(repo, root, "--dry-run", "--athena-secret-file", str(EXAMPLE))
    assert list(root.iterdir()) == []
    unit_dest = f"{root}/etc/systemd/system/lobbypay.service"
    assert f"+ install -m 0644 {repo}/systemd/lobbypay.service {unit_dest}" in res.stdout
    assert f"+ install -m 0600 {EXAMPLE} {root}/etc/lobbypay/athena-client-secret" in res.stdout
    assert "dry run: nothing changed" in res.stdout
    # on an installed root too
    install(repo, root)
    before = snapshot(root)
    install(repo, root, "--dry-run")
    uninstall(repo, root, "--dry-run", "--purge")
    assert snapshot(root) == before


def test_dry_run_against_the_real_system_only_prints(repo: Path) -> None:
    unit = Path("/etc/systemd/system/lobbypay.service")
    existed = unit.exists()
    res = run(repo / "scripts" / "install", "--dry-run", "--no-venv")
    assert unit.exists() == existed
    out = res.stdout
    assert "+ systemctl daemon-reload" in out and "+ systemctl enable lobbypay.service" in out
    assert "useradd --system" in out or "usermod --append --groups input,dialout lobbypay" in out
    assert "(skipped: --root)" not in out


def test_install_rejects_unknown_options(repo: Path, tmp_path: Path) -> None:
    res = run(repo / "scripts" / "install", "--root", str(tmp_path), "--bogus", check=False)
    assert res.returncode == 2 and "unknown option" in res.stderr
    assert list(tmp_path.iterdir()) == [repo]  # nothing created beside the repo copy


# ---------------------------------------------------------------- uninstall


def test_uninstall_removes_what_install_added_and_keeps_config(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(repo, root)
    cfg = root / "etc" / "lobbypay" / "lobbypay.toml"
    journal = root / "var" / "lib" / "lobbypay" / "journal.sqlite3"
    journal.write_bytes(b"past charges")
    res = uninstall(repo, root)
    assert "(skipped: --root) systemctl disable --now lobbypay.service" in res.stdout
    assert not (root / "etc" / "systemd" / "system" / "lobbypay.service").exists()
    for name in rule_names(repo):
        assert not (root / "etc" / "udev" / "rules.d" / name).exists()
    assert not (root / "opt" / "lobbypay").exists()
    assert cfg.exists() and journal.read_bytes() == b"past charges"
    assert (root / "etc" / "lobbypay" / "athena-client-secret").exists()
    # reinstalling over the kept config works and keeps it
    install(repo, root)
    assert cfg.exists()

    uninstall(repo, root, "--purge")
    left = [p for p in root.rglob("*") if not p.is_dir()]
    assert left == []
    assert not (root / "etc" / "lobbypay").exists()
    assert not (root / "var" / "lib" / "lobbypay").exists()


def test_installed_uninstall_copy_works(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(repo, root)
    copy = root / "opt" / "lobbypay" / "uninstall"
    assert mode(copy) == 0o755
    run(copy, "--root", str(root))
    assert not (root / "opt" / "lobbypay").exists()
    assert not (root / "etc" / "systemd" / "system" / "lobbypay.service").exists()


# ---------------------------------------------------------------- the venv step


def _build_wheel(dest: Path) -> Path:
    """A wheel of the package sources (no build backend needed: offline and fast)."""
    name = f"lobbypay-{__version__}"
    wheel = dest / f"{name}-py3-none-any.whl"
    records: list[str] = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        zf.writestr(arcname, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{arcname},sha256={digest},{len(data)}")

    pkg = REPO / "agent" / "lobbypay"
    with zipfile.ZipFile(wheel, "w") as zf:
        for f in sorted(pkg.rglob("*.py")):
            if "__pycache__" not in f.parts:
                add(zf, f"lobbypay/{f.relative_to(pkg)}", f.read_bytes())
        info = f"{name}.dist-info"
        add(
            zf,
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: lobbypay\nVersion: {__version__}\n".encode(),
        )
        add(
            zf,
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: test_install\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        )
        add(zf, f"{info}/entry_points.txt", b"[console_scripts]\nlobbypay = lobbypay.cli:main\n")
        records.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return wheel


def test_venv_step_installs_the_package(repo: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _build_wheel(wheels)
    root = tmp_path / "root"
    base_python = getattr(sys, "_base_executable", sys.executable)
    args = ("--root", str(root), "--python", base_python, "--wheel-dir", str(wheels), "--no-deps")
    run(repo / "scripts" / "install", *args)
    venv = root / "opt" / "lobbypay" / "venv"
    assert (venv / "bin" / "lobbypay").exists()
    res = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import lobbypay, lobbypay.client; print(lobbypay.__version__, lobbypay.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    # lobbypay.client needs aiomqtt, absent with --no-deps: import lobbypay alone then
    if res.returncode != 0:
        assert "aiomqtt" in res.stderr or "paho" in res.stderr, res.stderr
        res = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import lobbypay; print(lobbypay.__version__, lobbypay.__file__)",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    assert res.returncode == 0, res.stderr
    version, path = res.stdout.split()
    assert version == __version__ and path.startswith(str(venv))
    # second run reuses the venv
    again = run(repo / "scripts" / "install", *args)
    assert "venv exists" in again.stdout
    assert (
        "manifest" in again.stdout
        and "dir /opt/lobbypay/venv" in (root / "opt" / "lobbypay" / "install-manifest").read_text()
    )


# ---------------------------------------------------------------- the example config


def test_example_config_parses_with_production_defaults() -> None:
    cfg = parse_config(tomllib.loads(EXAMPLE.read_text()))
    assert cfg.athena.base_url.startswith("https://")
    assert cfg.athena.base_url == "https://api.preview.platform.athenahealth.com"
    assert cfg.terminal.state_dir == "/var/lib/lobbypay"
    assert cfg.reader.driver == "serial" and cfg.reader.path == "/dev/lobbypay-reader"
    assert cfg.athena.client_secret_credential == "athena-client-secret"
    assert cfg.athena.client_secret_file is None
    unit = (REPO / "systemd" / "lobbypay.service").read_text()
    assert (
        f"LoadCredential={cfg.athena.client_secret_credential}:/etc/lobbypay/athena-client-secret"
        in unit
    )
    assert cfg.mqtt.tls is False and cfg.mqtt.port == 1883


def _example_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    name = ""
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1]
            sections[name] = ""
        elif name:
            sections[name] += line + "\n"
    return sections


def test_example_config_names_every_key() -> None:
    """Every key parse_config reads appears in its section, set or commented out."""
    sections = _example_sections()
    filled_by_loader = {("athena", "client_secret"), ("mqtt", "password")}
    # display.options holds the per-driver keys, each listed in the example itself
    filled_by_loader |= {("display", "options")}
    for key in ("bus", "address", "backlight", "wiring", "interface", "spi_device", "gpio_dc",
                "gpio_rst", "rotate", "font"):
        assert re.search(rf"^# {key} = ", sections["display"], re.MULTILINE), key
    missing = []
    for section in dataclasses.fields(Config):
        cls = getattr(config_module, str(section.type))
        body = sections.get(section.name)
        assert body is not None, f"[{section.name}] missing"
        for key in dataclasses.fields(cls):
            if (section.name, key.name) in filled_by_loader:
                continue
            if not re.search(rf"^(# )?{key.name} = ", body, re.MULTILINE):
                missing.append(f"{section.name}.{key.name}")
    assert missing == []


@pytest.mark.parametrize(("driver", "extra"), [("ssd1306", "oled"), ("framebuffer", "framebuffer"),
                                               ("hd44780-i2c", "")])
def test_graphic_display_in_the_config_installs_its_extra(
    repo: Path, tmp_path: Path, driver: str, extra: str
) -> None:
    root = tmp_path / "root"
    (root / "etc" / "lobbypay").mkdir(parents=True)
    (root / "etc" / "lobbypay" / "lobbypay.toml").write_text(
        f'[display]\ndriver = "{driver}"\n')
    res = run(repo / "scripts" / "install", "--root", str(root), "--dry-run",
              "--python", sys.executable)
    pip = [line for line in res.stdout.splitlines() if "pip install" in line]
    assert len(pip) == 1
    if extra:
        assert f"display extra: lobbypay[{extra}]" in res.stdout
        assert pip[0].endswith(f"{repo}[{extra}]")
    else:
        assert pip[0].endswith(str(repo)) and "display extra" not in res.stdout
    assert "usermod --append --groups i2c,spi,gpio,video lobbypay" in res.stdout
