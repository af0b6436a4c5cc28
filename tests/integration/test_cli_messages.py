"""What the maintainers' CLI says in a checkout or on a terminal before it is set up: each
message names what to do, and no command asks for a config it does not need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lobbypay import cli, ui
from lobbypay.cli import configfile
from lobbypay.shell.journal import Journal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "lobbypay.example.toml"


@pytest.fixture(autouse=True)
def no_installed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default config as on a machine where lobbypay is not installed."""
    missing = tmp_path / "etc" / "lobbypay.toml"
    monkeypatch.setattr(configfile, "DEFAULT_CONFIG", str(missing))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return missing


def exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_jobs_with_a_state_dir_needs_no_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    Journal(str(state)).close()
    assert exit_code(["jobs", "--state-dir", str(state), "--json"]) == ui.EXIT_OK
    out, err = capsys.readouterr()
    assert json.loads(out) == {"jobs": []}
    assert err == ""


def test_a_missing_config_is_named_plainly(
        no_installed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["jobs"]) == ui.EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"no config file {no_installed_config}" in err
    assert "pass --config FILE" in err
    assert "(file)" not in err


def test_doctor_without_a_config_says_what_to_do(
        no_installed_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["doctor", "--no-color"]) == ui.EXIT_FAIL
    out = capsys.readouterr().out
    assert f"no config file {no_installed_config}" in out
    assert "fix the key named" not in out  # no key is named
    assert "clock: fix the config" not in out
    assert "config: see config/lobbypay.example.toml" in out
    assert exit_code(["doctor", "--json"]) == ui.EXIT_FAIL
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["config"]["result"] == "FAIL"
    assert checks["clock"]["hint"] == ""


def test_doctor_names_the_key_at_fault(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(EXAMPLE.read_text().replace('department_id = "1"', 'department_id = "1 2"'))
    assert exit_code(["doctor", "--json", "--config", str(cfg)]) == ui.EXIT_FAIL
    config = json.loads(capsys.readouterr().out)["checks"][0]
    assert config["name"] == "config" and "terminal.department_id" in config["detail"]
    assert config["hint"].startswith("fix terminal.department_id")


def test_check_config_on_the_example_says_only_the_secret_is_missing(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["check-config", "--config", str(EXAMPLE)]) == ui.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "(the rest of the file is valid)" in err
    assert "CREDENTIALS_DIRECTORY=/etc/lobbypay" in err


def test_demo_offers_no_config_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" not in out and "/etc/lobbypay" not in out
    assert "--workdir" in out


def test_an_unreadable_config_says_to_use_sudo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # (the tests run as root, who reads any file: the loader's refusal is stood in for)
    from lobbypay.core.config import ConfigError
    from lobbypay.shell import loadconf

    cfg = tmp_path / "lobbypay.toml"
    cfg.write_text(EXAMPLE.read_text())

    def refused(path: str, **kw: object) -> None:
        raise ConfigError("(file)", f"{path} cannot be read: [Errno 13] Permission denied")

    monkeypatch.setattr(loadconf, "load_config", refused)
    assert exit_code(["status", "--config", str(cfg)]) == ui.EXIT_CONFIG
    assert "run it with sudo" in capsys.readouterr().err
