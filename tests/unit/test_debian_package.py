"""debian/ stays in step with the Python project: the package's version is the agent's,
and every runtime dependency in pyproject.toml has its Debian package in Depends with
the same lower bound (scripts/test-deb then proves they install and run on trixie)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import lobbypay
import pytest

from tests.unit.test_systemd_unit import parse_unit

ROOT = Path(__file__).resolve().parents[2]

#: pyproject.toml name -> (Debian package, the lower bound Depends must carry, or None
#: for pyproject's own). pyserial-asyncio-fast has no Debian package: the driver falls
#: back to python3-serial-asyncio (docs/ARCHITECTURE.md, "On Debian's own packages").
DEBIAN_NAME: dict[str, tuple[str, str | None]] = {
    "httpx": ("python3-httpx", None),
    "h11": ("python3-h11", None),
    "sniffio": ("python3-sniffio", None),
    "paho-mqtt": ("python3-paho-mqtt", None),
    "aiomqtt": ("python3-asyncio-mqtt", None),
    "pyserial": ("python3-serial", None),
    "pyserial-asyncio-fast": ("python3-serial-asyncio", "0.6"),
    "evdev": ("python3-evdev", None),
}
#: pip dependencies that the package only suggests: small, pure Python, needed by one
#: optional driver that names the package when it is missing (hd44780-i2c: smbus2)
SUGGESTED_ONLY: dict[str, str] = {"smbus2": "python3-smbus2"}


def depends() -> dict[str, str | None]:
    control = (ROOT / "debian" / "control").read_text()
    binary = control.split("\nPackage: lobbypay\n", 1)[1]
    lines = [ln for ln in binary.splitlines() if not ln.startswith("#")]
    text = "\n".join(lines)
    m = re.search(r"^Depends:(.*?)(?=^\S)", text + "\nEnd:", re.S | re.M)
    assert m, "no Depends in debian/control"
    out: dict[str, str | None] = {}
    for item in m.group(1).split(","):
        item = item.strip()
        dm = re.fullmatch(r"([A-Za-z0-9.+${}:-]+)(?:\s*\(>=\s*([^)]+)\))?", item)
        assert dm, f"cannot read Depends item {item!r}"
        out[dm.group(1)] = dm.group(2)
    return out


def test_changelog_version_is_the_agents() -> None:
    first = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"lobbypay \(([^)]+)\) ", first)
    assert m, first
    assert m.group(1).split("-")[0] == lobbypay.__version__


def test_every_runtime_dependency_is_in_depends_with_its_lower_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = depends()
    for spec in project["dependencies"]:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9][^,;\s]*))?", spec)
        assert m, spec
        name, lower = m.group(1).lower(), m.group(2)
        if name in SUGGESTED_ONLY:
            control = (ROOT / "debian" / "control").read_text()
            assert SUGGESTED_ONLY[name] in control.split("Suggests:", 1)[1].split(
                "Description:", 1)[0], f"{SUGGESTED_ONLY[name]} missing from Suggests"
            assert SUGGESTED_ONLY[name] not in deps
            continue
        assert name in DEBIAN_NAME, (
            f"{name} is new in pyproject.toml: add its Debian package to debian/control "
            "Depends (or Suggests, if optional) and to DEBIAN_NAME here")
        package, want = DEBIAN_NAME[name]
        assert package in deps, f"{package} (for {name}) missing from Depends"
        assert deps[package] == (want or lower), (package, deps[package], want or lower)
    assert "adduser" in deps and "${python3:Depends}" in deps


def test_optional_display_extras_are_not_hard_dependencies() -> None:
    deps = depends()
    for pkg in ("python3-luma.oled", "python3-smbus2", "python3-pil", "mosquitto"):
        assert pkg not in deps


def debian_unit(tmp_path: Path) -> str:
    """The package's unit, made by debian/rules's own recipe from systemd/lobbypay.service."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    for rel in ("debian/rules", "systemd/lobbypay.service"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    res = subprocess.run([make, "-f", "debian/rules", "execute_before_dh_installsystemd"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return (tmp_path / "debian" / "lobbypay.service").read_text()


def test_the_packages_unit_is_the_repositorys_with_usr_bin_and_the_gate(tmp_path: Path) -> None:
    text = debian_unit(tmp_path)
    deb = parse_unit(text)
    src = parse_unit((ROOT / "systemd" / "lobbypay.service").read_text())
    svc = deb["Service"]
    assert svc["ExecStart"] == ["/usr/bin/lobbypay run --config /etc/lobbypay/lobbypay.toml"]
    assert svc["ExecCondition"] == [
        "/usr/bin/lobbypay check-config --strict --config /etc/lobbypay/lobbypay.toml"]
    assert "/opt/lobbypay" not in text
    # everything else is the repository's unit, directive for directive
    for section, keys in src.items():
        for key, values in keys.items():
            if (section, key) in {("Service", "ExecStart"), ("Unit", "Documentation")}:
                continue
            assert deb[section][key] == values, (section, key)
    assert set(deb["Service"]) - set(src["Service"]) == {"ExecCondition"}

    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed")
    copy = tmp_path / "lobbypay.service"
    copy.write_text(text.replace("/usr/bin/lobbypay", shutil.which("true") or "/bin/true"))
    # --man=no: the man page (Documentation=man:lobbypay(1)) ships in the package only
    res = subprocess.run([exe, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "lobbypay.service" not in res.stderr, res.stderr
