"""Config validation: every error names its key; secrets come from files or credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.core.config import ConfigError, parse_config
from lobbypay.shell.loadconf import load_config

GOOD = """
[terminal]
id = "lobby-1"
department_id = "1"
state_dir = "{state}"
max_charge = "5000.00"

[athena]
base_url = "http://127.0.0.1:9"
practice_id = "195900"
client_id = "cid"
client_secret_file = "{secret}"

[mqtt]
host = "127.0.0.1"
port = 1883

[reader]
driver = "serial"
path = "/dev/ttyACM0"

[display]
driver = "serlcd"
path = "/dev/ttyUSB0"
"""


def write_cfg(tmp_path: Path, text: str = GOOD, secret: str = "s3cret\n") -> Path:
    sec = tmp_path / "secret"
    sec.write_text(secret)
    p = tmp_path / "lobbypay.toml"
    p.write_text(text.format(state=tmp_path / "state", secret=sec))
    return p


def test_good_config_loads_and_strips_secret(tmp_path: Path) -> None:
    cfg = load_config(write_cfg(tmp_path))
    assert cfg.terminal.id == "lobby-1"
    assert cfg.terminal.max_charge == 500000
    assert cfg.athena.client_secret == "s3cret"
    assert cfg.reader.driver == "serial" and cfg.display.cols == 16 and cfg.display.rows == 2
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('id = "lobby-1"', 'id = "lobby 1/#"', "terminal.id"),
        ('id = "lobby-1"', "", "terminal.id"),
        ('department_id = "1"', "department_id = true", "terminal.department_id"),
        ('max_charge = "5000.00"', "max_charge = 5000.0", "terminal.max_charge"),
        ('max_charge = "5000.00"', 'max_charge = "0.00"', "terminal.max_charge"),
        ('base_url = "http://127.0.0.1:9"', 'base_url = "http://api.example.com"',
         "athena.base_url"),
        ('base_url = "http://127.0.0.1:9"', 'base_url = "ftp://x"', "athena.base_url"),
        ('practice_id = "195900"', 'practice_id = "19 59"', "athena.practice_id"),
        ("port = 1883", "port = 70000", "mqtt.port"),
        ("port = 1883", 'port = "1883"', "mqtt.port"),
        ('driver = "serial"', 'driver = "usb"', "reader.driver"),
        ('path = "/dev/ttyACM0"', "", "reader.path"),
        ('driver = "serlcd"', 'driver = "oled"', "display.driver"),
        ('path = "/dev/ttyUSB0"', "cols = 200", "display.path"),
        ('max_charge = "5000.00"', 'max_charge = "5000.00"\nlanguage = "fr"',
         "terminal.language"),
        ('max_charge = "5000.00"', "max_charge = \"5000.00\"\nlanguage = 1", "terminal.language"),
        ('path = "/dev/ttyUSB0"', 'path = "/dev/ttyUSB0"\n[staff]\nenabled = "yes"',
         "staff.enabled"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as ei:
        load_config(write_cfg(tmp_path, text))
    assert ei.value.key == key
    assert key in str(ei.value)


def test_https_required_off_loopback_but_http_loopback_ok(tmp_path: Path) -> None:
    text = GOOD.replace("http://127.0.0.1:9", "http://localhost:8080")
    assert load_config(write_cfg(tmp_path, text)).athena.base_url == "http://localhost:8080"
    text = GOOD.replace("http://127.0.0.1:9", "https://api.preview.platform.athenahealth.com/")
    assert load_config(write_cfg(tmp_path, text)).athena.base_url.endswith(".com")


def test_missing_secret_file_names_key_and_not_secret(tmp_path: Path) -> None:
    p = write_cfg(tmp_path)
    (tmp_path / "secret").unlink()
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.key == "athena.client_secret_file"


def test_empty_secret_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write_cfg(tmp_path, secret="  \n"))
    assert ei.value.key == "athena.client_secret_file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_secret_file(tmp_path: Path) -> None:
    p = write_cfg(tmp_path)
    os.chmod(tmp_path / "secret", 0)
    with pytest.raises(ConfigError, match="not readable"):
        load_config(p)


def test_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "athena-client-secret").write_text("from-cred\n")
    text = GOOD.replace('client_secret_file = "{secret}"',
                        'client_secret_credential = "athena-client-secret"')
    p = write_cfg(tmp_path, text)
    cfg = load_config(p, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.athena.client_secret == "from-cred"
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert ei.value.key == "athena.client_secret_credential"


def test_not_toml(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text("[terminal\nid=")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(p)


def test_mqtt_password_file_needs_username(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw\n")
    text = GOOD.replace("port = 1883", f'port = 1883\npassword_file = "{tmp_path / "pw"}"')
    with pytest.raises(ConfigError) as ei:
        load_config(write_cfg(tmp_path, text))
    assert ei.value.key == "mqtt.username"


toml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=20))
toml_values = st.recursive(toml_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["terminal", "athena", "mqtt", "reader", "display",
                                        "logging", "x"]),
                       st.one_of(toml_values, st.dictionaries(
                           st.sampled_from(["id", "department_id", "base_url", "practice_id",
                                            "client_id", "client_secret_file", "driver", "path",
                                            "port", "cols", "rows", "max_charge", "tls"]),
                           toml_values, max_size=6)), max_size=6))
def test_fuzzed_config_only_raises_config_error(data: dict[str, object]) -> None:
    try:
        parse_config(data)
    except ConfigError:
        pass


def test_no_reader_table_means_the_sim_reader(tmp_path: Path) -> None:
    text = GOOD.split("[reader]")[0]
    cfg = load_config(write_cfg(tmp_path, text))
    assert cfg.reader.driver == "sim" and cfg.display.driver == "none"
    # a [reader] table without a driver is the serial reader, which needs a path
    with pytest.raises(ConfigError) as ei:
        load_config(write_cfg(tmp_path, text + "[reader]\nbaudrate = 9600\n"))
    assert ei.value.key == "reader.path"


@pytest.mark.parametrize(("value", "ok"), [("0.5", True), ("20", True), ("0.05", False),
                                           ("121", False), ('"20"', False)])
def test_athena_timeout_range(tmp_path: Path, value: str, ok: bool) -> None:
    text = GOOD.replace('client_id = "cid"', f'client_id = "cid"\ntimeout_s = {value}')
    if ok:
        assert load_config(write_cfg(tmp_path, text)).athena.timeout_s == float(value)
    else:
        with pytest.raises(ConfigError) as ei:
            load_config(write_cfg(tmp_path, text))
        assert ei.value.key == "athena.timeout_s"


def test_language_and_staff_defaults_and_values(tmp_path: Path) -> None:
    """Protocol 9/10: terminal.language "en" by default, [staff] enabled false."""
    cfg = load_config(write_cfg(tmp_path))
    assert cfg.terminal.language == "en" and cfg.staff.enabled is False
    text = GOOD.replace('max_charge = "5000.00"', 'max_charge = "5000.00"\nlanguage = "es"')
    text += "\n[staff]\nenabled = true\n"
    cfg = load_config(write_cfg(tmp_path, text))
    assert cfg.terminal.language == "es" and cfg.staff.enabled is True
