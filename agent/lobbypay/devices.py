"""What is plugged in, and how to configure it: ``lobbypay devices`` and doctor's reader checks.

Everything is read from ``/dev`` and ``/sys`` directly (both roots are parameters, so the
tests build a fake tree); see docs/ARCHITECTURE.md for why not pyudev. The attributes
read are the kernel's stable sysfs ABI:

* input: ``/sys/class/input/eventN/device/{name,id/vendor,id/product,capabilities/key}``,
  and the ``/dev/input/by-id`` symlinks udev makes;
* hidraw: ``/sys/class/hidraw/hidrawN/device/uevent`` (``HID_ID=bus:vendor:product``,
  ``HID_NAME``);
* serial: ``/dev/serial/by-id`` symlinks, and ``idVendor``/``idProduct`` of the USB device
  above ``/sys/class/tty/<tty>/device``;
* I2C: ``/dev/i2c-N``, probed at the display addresses through ``probe`` (a function of the
  bus path and address; smbus2 is imported only when the default prober runs).

Nothing here reads a swipe except ``swipe_test`` (``doctor --swipe``), which reports brand,
last 4 and which tracks were read, and wipes the card.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import importlib
import json
import os
import pwd
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# USB vendors of card readers we know (a guess only: odoo#56053 shows names mislead).
READER_VENDORS = {"0801": "MagTek", "0acd": "ID TECH"}
MAGTEK = "0801"
MAGTEK_HID_PRODUCTS = frozenset(("0002", "0011"))  # HID mode (hidraw)
MAGTEK_KB_PRODUCTS = frozenset(("0001",))  # keyboard emulation (evdev)
# USB-serial adapters of the serial displays lobbypay drives.
DISPLAY_VENDORS = {"0403": "serlcd", "239a": "matrixorbital"}
# I2C display addresses and what answers there (field notes section 2). The driver names
# are the [display] driver values for I2C panels.
I2C_DISPLAYS = {
    0x27: ("hd44780-i2c", "HD44780 character LCD on a PCF8574 backpack"),
    0x3F: ("hd44780-i2c", "HD44780 character LCD on a PCF8574 backpack"),
    0x3C: ("ssd1306", "SSD1306/SH1106 OLED"),
}
# The service user and the groups its unit adds (systemd/lobbypay.service: User=,
# SupplementaryGroups=); tests/unit/test_devices.py checks they agree with the unit.
SERVICE_USER = "lobbypay"
SERVICE_GROUPS = ("input", "dialout")
UDEV_RULES = "config/udev/70-lobbypay.rules"

# Keys a keyboard (and a keyboard-wedge reader) has: 1-0 and Enter, all in the lowest
# word of the capabilities bitmap whatever the kernel's word size.
_KEYBOARD_BITS = (*range(2, 12), 28)

Prober = Callable[[str, int], bool]


@dataclass
class Device:
    kind: str  # "input" | "hidraw" | "serial" | "i2c"
    node: str  # the /dev path
    stable: str | None = None  # a by-id or udev symlink to it
    vendor: str | None = None  # "0801"
    product: str | None = None
    name: str = ""
    looks_like: str = ""  # "card reader", "keyboard", "MagTek reader in HID mode", ...
    config: list[str] = field(default_factory=list)  # lines to paste into the config
    access: str | None = None  # what to fix when this user cannot use it
    addresses: list[str] = field(default_factory=list)  # i2c: who answered

    @property
    def id(self) -> str:
        return f"{self.vendor}:{self.product}" if self.vendor and self.product else "-"


# ---------------------------------------------------------------- small readers


# A USB device chooses its own name: it is shown only as printable ASCII, capped, so a
# hostile descriptor cannot put terminal escapes on the maintainer's screen.
_NAME_MAX = 80


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(4096)
    except OSError:
        return None
    return "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in text).strip()


def _label(text: str | None) -> str:
    return (text or "").replace("\n", " ")[:_NAME_MAX]


def _links(directory: str) -> dict[str, str]:
    """symlink path -> resolved target path, for the symlinks in ``directory``."""
    out: dict[str, str] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        link = os.path.join(directory, name)
        try:
            target = os.readlink(link)
        except OSError:
            continue
        out[link] = os.path.normpath(os.path.join(directory, target))
    return out


class _Tree:
    """The ``/dev`` and ``/sys`` roots; paths are shown as they are on the terminal."""

    def __init__(self, dev_root: str, sys_root: str) -> None:
        self.dev = os.path.abspath(dev_root)
        self.sys = os.path.abspath(sys_root)

    def shown(self, path: str) -> str:
        rel = os.path.relpath(path, self.dev)
        return "/dev" if rel == "." else f"/dev/{rel}"

    def real(self, shown_path: str) -> str:
        """A ``/dev/...`` path (as configured) inside this tree."""
        if shown_path == "/dev" or shown_path.startswith("/dev/"):
            return os.path.join(self.dev, shown_path[5:])
        return shown_path

    def stable_names(self, *dirs: str) -> dict[str, str]:
        """target -> the best symlink naming it (lobbypay-reader first, then by-id)."""
        out: dict[str, str] = {}
        for d in (*dirs, ""):
            for link, target in _links(os.path.join(self.dev, d) if d else self.dev).items():
                if d == "" and not os.path.basename(link).startswith("lobbypay-"):
                    continue
                if target not in out or d == "":
                    out[target] = link
        return out


def _access_fix(path: str, mode: int = os.R_OK) -> str | None:
    if os.access(path, mode):
        return None
    try:
        st = os.stat(path)
        group = grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        return "cannot stat the node"
    verb = "read" if mode == os.R_OK else "read and write"
    if group == "root" or not st.st_mode & (stat.S_IRGRP):
        return (f"only root can {verb} it: install {UDEV_RULES} (it gives the node to a "
                "group the service has)")
    return (f"this user cannot {verb} it: add the user to group {group} "
            f"(sudo usermod -aG {group} $USER; the service user gets "
            f"{' and '.join(SERVICE_GROUPS)} from its unit)")


# ---------------------------------------------------------------- discovery


def _input_devices(t: _Tree) -> list[Device]:
    out = []
    names = t.stable_names("input/by-id", "input/by-path")
    base = os.path.join(t.sys, "class", "input")
    for ev in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not ev.startswith("event"):
            continue
        dev = os.path.join(base, ev, "device")
        words = (_read(os.path.join(dev, "capabilities", "key")) or "0").split()
        try:
            low = int(words[-1], 16) if words else 0
        except ValueError:
            low = 0
        if not all(low >> bit & 1 for bit in _KEYBOARD_BITS):
            continue  # mice, buttons, lid switches: not a keyboard-wedge candidate
        node = os.path.join(t.dev, "input", ev)
        d = Device("input", t.shown(node), name=_label(_read(os.path.join(dev, "name"))),
                   vendor=_read(os.path.join(dev, "id", "vendor")),
                   product=_read(os.path.join(dev, "id", "product")))
        link = names.get(node)
        d.stable = t.shown(link) if link else None
        reader = d.vendor in READER_VENDORS or any(
            w in d.name.lower() for w in ("card reader", "magnetic", "msr", "swipe", "magtek"))
        if reader:
            d.looks_like = "card reader (keyboard emulation)"
            d.config = ["[reader]", 'driver = "evdev"', f'path = "{d.stable or d.node}"']
            if not d.stable:
                d.config.append(f"# no by-id name: install {UDEV_RULES} for "
                                "/dev/lobbypay-reader (eventN changes on replug)")
        else:
            d.looks_like = "keyboard (never configure it as the reader: it would be grabbed)"
        d.access = _access_fix(node) if os.path.exists(node) else "node missing in /dev"
        out.append(d)
    return out


def _hidraw_devices(t: _Tree) -> list[Device]:
    out = []
    names = t.stable_names()
    base = os.path.join(t.sys, "class", "hidraw")
    for hr in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        uevent = _read(os.path.join(base, hr, "device", "uevent")) or ""
        info = dict(line.split("=", 1) for line in uevent.splitlines() if "=" in line)
        parts = info.get("HID_ID", "").split(":")
        vendor = product = None
        if len(parts) == 3:
            vendor, product = parts[1][-4:].lower(), parts[2][-4:].lower()
        node = os.path.join(t.dev, hr)
        d = Device("hidraw", t.shown(node), vendor=vendor, product=product,
                   name=_label(info.get("HID_NAME")))
        link = names.get(node)
        d.stable = t.shown(link) if link else None
        if vendor == MAGTEK and product in MAGTEK_HID_PRODUCTS:
            d.looks_like = "MagTek reader in HID mode"
            d.config = ["[reader]", 'driver = "hidraw"', f'path = "{d.stable or d.node}"']
            if not d.stable:
                d.config.append(f"# install {UDEV_RULES} for /dev/lobbypay-reader "
                                "(hidrawN changes on replug; the node is root-only without it)")
        elif vendor == MAGTEK and product in MAGTEK_KB_PRODUCTS:
            d.looks_like = "MagTek reader in keyboard mode: configure its input device (evdev)"
        elif vendor in READER_VENDORS:
            d.looks_like = f"{READER_VENDORS[vendor]} device (not a known HID swipe report)"
        d.access = _access_fix(node) if os.path.exists(node) else "node missing in /dev"
        out.append(d)
    return out


def _usb_ids(t: _Tree, device_dir: str) -> tuple[str | None, str | None]:
    """idVendor/idProduct of the first USB device at or above ``device_dir``."""
    here = os.path.realpath(device_dir)
    top = os.path.realpath(t.sys)
    for _ in range(6):
        vendor = _read(os.path.join(here, "idVendor"))
        if vendor:
            return vendor.lower(), (_read(os.path.join(here, "idProduct")) or "").lower()
        parent = os.path.dirname(here)
        if parent == here or not parent.startswith(top):
            break
        here = parent
    return None, None


def _serial_devices(t: _Tree) -> list[Device]:
    out = []
    for link, target in _links(os.path.join(t.dev, "serial", "by-id")).items():
        tty = os.path.basename(target)
        vendor, product = _usb_ids(t, os.path.join(t.sys, "class", "tty", tty, "device"))
        d = Device("serial", t.shown(target), stable=t.shown(link), vendor=vendor,
                   product=product)
        if vendor in DISPLAY_VENDORS:
            drv = DISPLAY_VENDORS[vendor]
            d.looks_like = f"serial display adapter ({drv})"
            d.config = ["[display]", f'driver = "{drv}"', f'path = "{d.stable}"']
        elif vendor in READER_VENDORS:
            d.looks_like = f"{READER_VENDORS[vendor]} serial reader"
            d.config = ["[reader]", 'driver = "serial"', f'path = "{d.stable}"',
                        "baudrate = 9600"]
        else:
            d.looks_like = "serial port (a reader or a display: see its label)"
            d.config = ["[reader]", 'driver = "serial"', f'path = "{d.stable}"',
                        "# or, for a SerLCD / Matrix Orbital display:",
                        "# [display]", '# driver = "serlcd"', f'# path = "{d.stable}"']
        d.access = _access_fix(target, os.R_OK | os.W_OK) if os.path.exists(target) \
            else "node missing in /dev"
        out.append(d)
    return out


def probe_i2c(bus_path: str, address: int) -> bool:
    """Does a device acknowledge at ``address`` on ``bus_path``? (the way i2cdetect does)."""
    # imported by name: smbus2 is optional (python3-smbus2), and only this needs it
    smbus2 = importlib.import_module("smbus2")
    try:
        with smbus2.SMBus(bus_path) as bus:
            bus.write_quick(address)
    except OSError:
        return False
    return True


def _i2c_devices(t: _Tree, probe: Prober | None) -> list[Device]:
    out = []
    try:
        names = sorted(n for n in os.listdir(t.dev) if n.startswith("i2c-"))
    except OSError:
        names = []
    for name in names:
        node = os.path.join(t.dev, name)
        adapter = _label(_read(os.path.join(t.sys, "class", "i2c-dev", name, "name")))
        d = Device("i2c", t.shown(node), name=adapter)
        d.access = _access_fix(node, os.R_OK | os.W_OK)
        if d.access is not None:
            d.access += "; the service also needs DeviceAllow=char-i2c rw and group i2c"
            out.append(d)
            continue
        prober = probe or probe_i2c
        try:
            found = [a for a in sorted(I2C_DISPLAYS) if prober(node, a)]
        except ImportError:
            d.looks_like = "I2C bus (install python3-smbus2 to probe it for displays)"
            out.append(d)
            continue
        d.addresses = [f"0x{a:02X}" for a in found]
        if found:
            drv, what = I2C_DISPLAYS[found[0]]
            d.looks_like = "; ".join(f"0x{a:02X}: {I2C_DISPLAYS[a][1]}" for a in found)
            bus_no = node.rsplit("-", 1)[-1]
            d.config = ["[display]", f'driver = "{drv}"',
                        f"bus = {bus_no if bus_no.isdigit() else 1}",
                        f"address = 0x{found[0]:02X}"]
        else:
            d.looks_like = "I2C bus, nothing at 0x27, 0x3F or 0x3C"
        out.append(d)
    return out


def discover(dev_root: str = "/dev", sys_root: str = "/sys",
             probe: Prober | None = None) -> dict[str, list[Device]]:
    t = _Tree(dev_root, sys_root)
    return {"input": _input_devices(t), "hidraw": _hidraw_devices(t),
            "serial": _serial_devices(t), "i2c": _i2c_devices(t, probe)}


# ---------------------------------------------------------------- the command


_TITLES = {"input": "Keyboard-type input devices (evdev)", "hidraw": "HID devices (hidraw)",
           "serial": "Serial ports (by id)", "i2c": "I2C buses (displays)"}


def render(found: dict[str, list[Device]]) -> str:
    lines: list[str] = []
    for kind, devices in found.items():
        lines.append(f"{_TITLES[kind]}:")
        if not devices:
            lines.append("  none")
        for d in devices:
            head = f"  {d.stable or d.node}"
            if d.stable:
                head += f" -> {d.node}"
            lines.append(head)
            detail = ", ".join(x for x in (d.id if d.vendor else "", d.name, d.looks_like) if x)
            if detail:
                lines.append(f"      {detail}")
            if d.access:
                lines.append(f"      no access: {d.access}")
            lines += [f"      | {c}" for c in d.config]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cmd_devices(args: argparse.Namespace) -> int:
    found = discover(args.dev_root, args.sys_root)
    if args.json:
        print(json.dumps({k: [asdict(d) | {"id": d.id} for d in v] for k, v in found.items()},
                         indent=2))
    else:
        print(render(found), end="")
    return 0


# ---------------------------------------------------------------- doctor


_SUBSYSTEM_DRIVER = {"input": "evdev", "hidraw": "hidraw", "tty": "serial"}


def _subsystem(t: _Tree, st: os.stat_result) -> str | None:
    link = os.path.join(t.sys, "dev", "char", f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}",
                        "subsystem")
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return None


def _service_can(st: os.stat_result, mode: int, user: str) -> bool | None:
    """Can the service user use a node with this owner/mode? None: no such user here."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for name in SERVICE_GROUPS:
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(name).gr_gid)
    want_r, want_w = bool(mode & os.R_OK), bool(mode & os.W_OK)
    if st.st_uid == pw.pw_uid:
        bits = (st.st_mode & stat.S_IRUSR, st.st_mode & stat.S_IWUSR)
    elif st.st_gid in gids:
        bits = (st.st_mode & stat.S_IRGRP, st.st_mode & stat.S_IWGRP)
    else:
        bits = (st.st_mode & stat.S_IROTH, st.st_mode & stat.S_IWOTH)
    return (not want_r or bool(bits[0])) and (not want_w or bool(bits[1]))


def reader_check(driver: str, path: str | None, *, dev_root: str = "/dev",
                 sys_root: str = "/sys", user: str = SERVICE_USER) -> tuple[str, str, str]:
    """(PASS|WARN|FAIL, detail, fix) for a configured serial/evdev/hidraw reader."""
    hint = ("plug the reader in; `lobbypay devices` lists what is plugged in and the "
            "[reader] lines for it")
    if not path:
        return "FAIL", "no path configured", "set reader.path"
    t = _Tree(dev_root, sys_root)
    real = t.real(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return "FAIL", f"{path} does not exist", hint
    except OSError as exc:
        return "FAIL", f"{path}: {exc.strerror}", hint
    if not stat.S_ISCHR(st.st_mode):
        return "FAIL", f"{path} is not a character device", hint
    sub = _subsystem(t, st)
    want = _SUBSYSTEM_DRIVER.get(sub or "")
    if want is not None and want != driver:
        return ("FAIL", f"{path} is a {sub} device, but reader.driver is {driver!r}",
                f'set reader.driver = "{want}", or point reader.path at the reader')
    mode_note = ""
    if driver in ("hidraw", "evdev"):
        node = os.path.realpath(real)
        found = discover(dev_root, sys_root, probe=lambda _p, _a: False)
        for d in found["hidraw"] + found["input"]:
            if os.path.realpath(t.real(d.node)) != node:
                continue
            if driver == "hidraw" and d.vendor == MAGTEK and d.product in MAGTEK_KB_PRODUCTS:
                return ("FAIL", f"{path} is a MagTek reader in keyboard mode",
                        'use driver = "evdev" with its /dev/input/by-id/...-event-kbd path '
                        "(lobbypay devices), or switch the reader to HID mode")
            if driver == "hidraw" and not (d.vendor == MAGTEK and d.product in
                                           MAGTEK_HID_PRODUCTS):
                return ("FAIL", f"{path} is HID device {d.id} {d.name!r}, not a MagTek "
                        "swipe reader in HID mode", hint)
            if driver == "evdev" and not d.looks_like.startswith("card reader"):
                mode_note = f" (WARN: {d.name!r} {d.id} looks like a keyboard)"
            else:
                mode_note = f" ({d.looks_like}, {d.id})"
    mode = os.R_OK if driver in ("evdev", "hidraw") else os.R_OK | os.W_OK
    can = _service_can(st, mode, user)
    if can is False:
        return ("FAIL", f"{path} is not usable by the service user {user}",
                f"install {UDEV_RULES} (sudo udevadm trigger), or give the node to group "
                f"{' or '.join(SERVICE_GROUPS)}")
    if can is None and not os.access(real, os.R_OK):
        return ("FAIL", f"{path} is not readable by this user",
                f"install {UDEV_RULES} and run doctor as the {user} user "
                f"(sudo -u {user} lobbypay doctor)")
    if mode_note.startswith(" (WARN"):
        return ("WARN", f"{path} present{mode_note}",
                "check reader.path names the card reader, not a keyboard")
    return "PASS", f"{path} present{mode_note}", ""


async def swipe_test(reader: Any, timeout_s: float) -> tuple[str, str, str]:
    """Wait for one swipe on ``reader`` (a ``CardReader``); report brand, last 4, tracks."""
    from lobbypay_hw.api import CardRead, ReaderEvent, ReaderStatus, ReadFailed, ReadFailure

    got: asyncio.Future[ReaderEvent] = asyncio.get_running_loop().create_future()
    last_status: list[str] = []

    def sink(ev: ReaderEvent) -> None:
        if isinstance(ev, ReaderStatus):
            if not ev.connected:
                last_status.append(ev.detail)
            else:
                # stderr: doctor --json keeps stdout for the JSON document
                print(f"reader ready: swipe a card within {timeout_s:.0f} s", file=sys.stderr,
                      flush=True)
            return
        if got.done():
            if isinstance(ev, CardRead):
                ev.card.wipe()
            return
        got.set_result(ev)

    task = asyncio.create_task(reader.run(sink), name="lobbypay.doctor.swipe")
    try:
        async with asyncio.timeout(timeout_s):
            ev = await got
    except TimeoutError:
        detail = "no swipe within the time"
        if last_status:
            detail = f"reader not available: {last_status[-1]}"
            return ("FAIL", detail, "stop the agent first (sudo systemctl stop lobbypay) if "
                    "it holds the reader; then see the reader check above")
        return "FAIL", detail, "swipe a card through the reader while doctor waits"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if isinstance(ev, ReadFailed):
        if ev.reason is ReadFailure.ENCRYPTED_READER:
            return ("FAIL", "the reader sends masked or encrypted card data",
                    "set the reader to clear-text output, or use a non-encrypting reader "
                    "(docs/drivers.md)")
        return ("WARN", f"swipe read, but rejected ({ev.reason.value})",
                "swipe again; a bank card, steadily, stripe facing the reader head")
    assert isinstance(ev, CardRead)
    card = ev.card
    try:
        tracks = "+".join(str(n) for n in getattr(card, "tracks", ())) or "?"
        return "PASS", f"{card.brand} ending {card.last4}, track {tracks} read", ""
    finally:
        card.wipe()


def swipe_reader(driver: str, path: str | None, baudrate: int) -> Any:
    """The configured reader, built as the agent builds it (with the exclusive grab or
    lock, so a running agent makes it report "busy" instead of sharing swipes)."""
    from lobbypay_hw import READERS

    return READERS[driver](path=path, baudrate=baudrate, grab=True)


async def doctor_swipe(driver: str, path: str | None, baudrate: int,
                       timeout_s: float) -> tuple[str, str, str]:
    """``doctor --swipe`` for the configured reader."""
    if driver == "sim":
        # binding the socket would take it from a running agent
        return ("WARN", "the sim reader takes swipes from `lobbypay swipe`; nothing to test",
                "configure the real reader, then run doctor --swipe again")
    return await swipe_test(swipe_reader(driver, path, baudrate), timeout_s)


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--dev-root", default="/dev", help="device tree to read (default /dev)")
    sp.add_argument("--sys-root", default="/sys", help="sysfs to read (default /sys)")
