"""``lobbypay devices`` and doctor's reader checks against a fake /dev and /sys tree.

The tree is built the way the kernel and udev lay it out (class links, uevent files,
by-id symlinks, capability bitmaps). Device nodes that must be character devices are
symlinks to real ones (/dev/null, /dev/full, /dev/random), and the fake
/sys/dev/char/MAJ:MIN entries give them the subsystem a reader's node would have."""

from __future__ import annotations

import grp
import json
import os
import stat
from pathlib import Path

import pytest
from lobbypay import cli, devices
from lobbypay.devices import Device, discover, reader_check

ROOT = Path(__file__).resolve().parents[2]
# EV_KEY bitmaps as /sys/.../capabilities/key prints them (highest word first). A full
# keyboard has keys 1..127 and more; a MagTek wedge reports a keyboard's keys too.
KEYBOARD_KEYS = "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe"
MOUSE_KEYS = "1f0000 0 0 0 0"  # BTN_LEFT... only


class FakeTree:
    def __init__(self, root: Path) -> None:
        self.dev = root / "dev"
        self.sys = root / "sys"
        self.dev.mkdir()
        self.sys.mkdir()

    def _file(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    def _link(self, link: Path, target: str) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def char_subsystem(self, real_node: str, subsystem: str) -> None:
        rdev = os.stat(real_node).st_rdev
        d = self.sys / "dev" / "char" / f"{os.major(rdev)}:{os.minor(rdev)}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "subsystem").symlink_to(f"../../../class/{subsystem}")

    def input(self, n: int, name: str, vendor: str, product: str, keys: str,
              by_id: str | None = None, node_to: str | None = None) -> None:
        dev = self.sys / "class" / "input" / f"event{n}" / "device"
        self._file(dev / "name", name)
        self._file(dev / "id" / "vendor", vendor)
        self._file(dev / "id" / "product", product)
        self._file(dev / "capabilities" / "key", keys)
        node = self.dev / "input" / f"event{n}"
        if node_to:
            self._link(node, node_to)
        else:
            self._file(node, "")
        if by_id:
            self._link(self.dev / "input" / "by-id" / by_id, f"../event{n}")

    def hidraw(self, n: int, vendor: str, product: str, name: str,
               node_to: str | None = None) -> None:
        self._file(self.sys / "class" / "hidraw" / f"hidraw{n}" / "device" / "uevent",
                   f"DRIVER=hid-generic\nHID_ID=0003:0000{vendor.upper()}:0000{product.upper()}"
                   f"\nHID_NAME={name}\nHID_PHYS=usb-0000:01:00.0-1.3/input0")
        node = self.dev / f"hidraw{n}"
        if node_to:
            self._link(node, node_to)
        else:
            self._file(node, "")

    def tty(self, name: str, vendor: str, product: str, by_id: str) -> None:
        usb = self.sys / "devices" / "platform" / "usb1" / "1-1.2"
        self._file(usb / "idVendor", vendor)
        self._file(usb / "idProduct", product)
        iface = usb / "1-1.2:1.0"
        iface.mkdir(parents=True, exist_ok=True)
        self._link(self.sys / "class" / "tty" / name / "device", str(iface))
        self._file(self.dev / name, "")
        self._link(self.dev / "serial" / "by-id" / by_id, f"../../{name}")

    def i2c(self, n: int, adapter: str) -> None:
        self._file(self.dev / f"i2c-{n}", "")
        self._file(self.sys / "class" / "i2c-dev" / f"i2c-{n}" / "name", adapter)


@pytest.fixture
def tree(tmp_path: Path) -> FakeTree:
    t = FakeTree(tmp_path)
    t.input(0, "Dell KB216 Wired Keyboard", "413c", "2113", KEYBOARD_KEYS,
            by_id="usb-Dell_KB216_Wired_Keyboard-event-kbd")
    t.input(1, "Logitech USB Optical Mouse", "046d", "c077", MOUSE_KEYS,
            by_id="usb-Logitech_USB_Optical_Mouse-event-mouse")
    t.input(2, "Mag-Tek USB Swipe Reader", "0801", "0001", KEYBOARD_KEYS,
            by_id="usb-Mag-Tek_USB_Swipe_Reader-event-kbd", node_to="/dev/full")
    t.hidraw(0, "413c", "2113", "Dell KB216 Wired Keyboard")
    t.hidraw(1, "0801", "0002", "Mag-Tek USB Swipe Reader", node_to="/dev/null")
    t.hidraw(2, "0801", "0001", "Mag-Tek USB Swipe Reader")
    (t.dev / "lobbypay-reader").symlink_to("hidraw1")
    t.tty("ttyUSB0", "0403", "6001", "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
    t.i2c(1, "bcm2835 (i2c@7e804000)")
    t.char_subsystem("/dev/null", "hidraw")
    t.char_subsystem("/dev/full", "input")
    return t


def answering(found: set[tuple[str, int]]) -> devices.Prober:
    def probe(bus: str, address: int) -> bool:
        return (os.path.basename(bus), address) in found

    return probe


def by_node(devs: list[Device]) -> dict[str, Device]:
    return {d.node: d for d in devs}


def test_input_devices_with_keys_and_what_they_look_like(tree: FakeTree) -> None:
    found = by_node(discover(str(tree.dev), str(tree.sys))["input"])
    assert set(found) == {"/dev/input/event0", "/dev/input/event2"}  # not the mouse
    kb = found["/dev/input/event0"]
    assert kb.stable == "/dev/input/by-id/usb-Dell_KB216_Wired_Keyboard-event-kbd"
    assert kb.id == "413c:2113" and kb.looks_like.startswith("keyboard")
    assert kb.config == []  # never offered as the reader
    reader = found["/dev/input/event2"]
    assert reader.looks_like.startswith("card reader") and reader.id == "0801:0001"
    assert reader.config == ["[reader]", 'driver = "evdev"',
                             'path = "/dev/input/by-id/usb-Mag-Tek_USB_Swipe_Reader-event-kbd"']


def test_hidraw_magtek_modes(tree: FakeTree) -> None:
    found = by_node(discover(str(tree.dev), str(tree.sys))["hidraw"])
    hid = found["/dev/hidraw1"]
    assert hid.looks_like == "MagTek reader in HID mode" and hid.id == "0801:0002"
    assert hid.stable == "/dev/lobbypay-reader"
    assert hid.config == ["[reader]", 'driver = "hidraw"', 'path = "/dev/lobbypay-reader"']
    assert "keyboard mode" in found["/dev/hidraw2"].looks_like
    assert found["/dev/hidraw2"].config == [] and found["/dev/hidraw0"].config == []


def test_serial_by_id_and_i2c_probe(tree: FakeTree) -> None:
    found = discover(str(tree.dev), str(tree.sys), probe=answering({("i2c-1", 0x27)}))
    (port,) = found["serial"]
    assert port.node == "/dev/ttyUSB0" and port.id == "0403:6001"
    assert port.config[:2] == ["[display]", 'driver = "serlcd"']
    assert port.config[2].startswith('path = "/dev/serial/by-id/usb-FTDI')
    (bus,) = found["i2c"]
    assert bus.addresses == ["0x27"] and "HD44780" in bus.looks_like
    # the lines to paste are the display's own keys (docs/drivers.md, hd44780-i2c)
    assert bus.config == ["[display]", 'driver = "hd44780-i2c"', "bus = 1", "address = 0x27"]
    (bus,) = discover(str(tree.dev), str(tree.sys), probe=answering({("i2c-1", 0x3C)}))["i2c"]
    assert bus.addresses == ["0x3C"] and "OLED" in bus.looks_like
    (bus,) = discover(str(tree.dev), str(tree.sys), probe=answering(set()))["i2c"]
    assert bus.addresses == [] and bus.config == []


def test_i2c_without_smbus2_says_so(tree: FakeTree) -> None:
    def missing(bus: str, address: int) -> bool:
        raise ModuleNotFoundError("No module named 'smbus2'")

    (bus,) = discover(str(tree.dev), str(tree.sys), probe=missing)["i2c"]
    assert "python3-smbus2" in bus.looks_like


def test_no_access_says_what_to_fix(tree: FakeTree) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can open anything: access is checked as an unprivileged user")
    os.chmod(tree.dev / "hidraw2", 0o600)
    found = by_node(discover(str(tree.dev), str(tree.sys))["hidraw"])
    assert found["/dev/hidraw2"].access is None  # ours: we own the fake node
    os.chmod(tree.dev / "hidraw2", 0o000)
    found = by_node(discover(str(tree.dev), str(tree.sys))["hidraw"])
    assert "70-lobbypay.rules" in (found["/dev/hidraw2"].access or "")


def test_access_fix_text_names_group_or_udev(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    node = tmp_path / "node"
    node.write_text("")
    if os.geteuid() == 0:
        os.chown(node, -1, grp.getgrnam("dialout").gr_gid)  # a group other than root's
    group = grp.getgrgid(os.stat(node).st_gid).gr_name
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as an unprivileged user
    os.chmod(node, 0o640)
    fix = devices._access_fix(str(node)) or ""
    assert f"usermod -aG {group}" in fix  # group readable: join the group
    os.chmod(node, 0o600)
    assert "70-lobbypay.rules" in (devices._access_fix(str(node)) or "")


def test_service_user_access_rules() -> None:
    def st(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
        return os.stat_result((stat.S_IFCHR | mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))

    nobody = "nobody"
    assert devices._service_can(st(0o600), os.R_OK, nobody) is False
    assert devices._service_can(st(0o644), os.R_OK, nobody) is True
    assert devices._service_can(st(0o644), os.R_OK | os.W_OK, nobody) is False
    assert devices._service_can(st(0o600), os.R_OK, "no-such-user-here") is None


def test_service_constants_match_the_unit() -> None:
    unit = (ROOT / "systemd" / "lobbypay.service").read_text().splitlines()
    assert f"User={devices.SERVICE_USER}" in unit
    assert f"SupplementaryGroups={' '.join(devices.SERVICE_GROUPS)}" in unit


def test_reader_check_present_mode_and_access(tree: FakeTree) -> None:
    roots = {"dev_root": str(tree.dev), "sys_root": str(tree.sys), "user": "nobody"}
    result, detail, _ = reader_check("hidraw", "/dev/lobbypay-reader", **roots)
    assert result == "PASS" and "MagTek reader in HID mode" in detail
    # the same node configured as a keyboard-wedge reader: wrong driver
    result, detail, fix = reader_check("evdev", "/dev/lobbypay-reader", **roots)
    assert result == "FAIL" and "hidraw device" in detail and 'driver = "hidraw"' in fix
    result, detail, fix = reader_check(
        "evdev", "/dev/input/by-id/usb-Mag-Tek_USB_Swipe_Reader-event-kbd", **roots)
    assert result == "PASS" and "card reader" in detail
    result, detail, fix = reader_check("hidraw", "/dev/input/event2", **roots)
    assert result == "FAIL" and "input device" in detail and 'driver = "evdev"' in fix
    result, detail, fix = reader_check("hidraw", "/dev/hidraw9", **roots)
    assert result == "FAIL" and "does not exist" in detail and "lobbypay devices" in fix
    result, detail, _ = reader_check("hidraw", "/dev/hidraw2", **roots)
    assert result == "FAIL" and "not a character device" in detail


def test_reader_check_keyboard_mode_magtek_on_hidraw(tree: FakeTree) -> None:
    (tree.dev / "hidraw2").unlink()
    (tree.dev / "hidraw2").symlink_to("/dev/null")  # its node (subsystem hidraw)
    (tree.dev / "hidraw1").unlink()
    (tree.dev / "hidraw1").write_text("")
    result, detail, fix = reader_check("hidraw", "/dev/hidraw2", dev_root=str(tree.dev),
                                       sys_root=str(tree.sys), user="nobody")
    assert result == "FAIL" and "keyboard mode" in detail and "evdev" in fix


def test_devices_command_text_and_json(tree: FakeTree,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["devices", "--dev-root", str(tree.dev), "--sys-root", str(tree.sys)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "MagTek reader in HID mode" in out and '| driver = "hidraw"' in out
    assert "Dell KB216" in out and "Logitech" not in out
    assert cli.main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"input", "hidraw", "serial", "i2c"}
    (hid,) = [d for d in data["hidraw"] if d["id"] == "0801:0002"]
    assert hid["config"][1] == 'driver = "hidraw"'


def test_empty_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["devices", "--dev-root", str(tmp_path / "d"),
                     "--sys-root", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.count("none") == 4


def test_device_names_are_shown_as_plain_text(tree: FakeTree) -> None:
    # a USB device names itself: escapes and control characters never reach the screen
    (tree.sys / "class" / "input" / "event0" / "device" / "name").write_text(
        "Evil\x1b]0;owned\x07Keyboard\u00e9" + "x" * 200 + "\n")
    found = by_node(discover(str(tree.dev), str(tree.sys))["input"])
    name = found["/dev/input/event0"].name
    assert name.startswith("Evil?]0;owned?Keyboard?") and len(name) == 80
    assert all(" " <= c <= "~" for c in name)
