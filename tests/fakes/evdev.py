"""A fake evdev input device fed with real ``evdev.InputEvent`` objects.

``FakeInputDevice`` has what ``lobbypay_hw.reader_evdev`` uses of ``evdev.InputDevice``:
``grab``/``ungrab`` (recorded, EBUSY when grabbed twice), ``close``, and
``async_read_loop()`` which yields the events fed with ``feed()`` and raises
``OSError(ENODEV)`` after ``unplug()``, the way python-evdev reports an unplugged device.
``FakeOpener`` stands in for ``evdev.InputDevice(path)``: ENOENT while nothing is plugged.
``typed(text)`` builds the event sequence a US keyboard-wedge reader sends for ``text``.

Each fake device stands on a real node: ``fake_node(name)`` is a file in this process's
temporary directory (``/dev/input/by-id/...`` cannot be written), and the device holds an
``fd`` on it, so the reader's identity check (the node ``reader.path`` names is the one
it opened) runs against real ``stat``/``fstat`` results. ``leds()`` reports the LEDs lit
(``LED_CAPSL`` when ``caps_lock=True``), as ``evdev.InputDevice.leds()`` does.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from collections.abc import AsyncIterator, Iterable

from evdev import InputEvent, ecodes

_UNPLUG = object()

# char -> (keycode, shift) for a US layout, built from evdev's own names.
_US: dict[str, tuple[int, bool]] = {}
for _i, _c in enumerate("abcdefghijklmnopqrstuvwxyz"):
    _US[_c] = (ecodes.ecodes[f"KEY_{_c.upper()}"], False)
    _US[_c.upper()] = (ecodes.ecodes[f"KEY_{_c.upper()}"], True)
for _c, _s in zip("1234567890", "!@#$%^&*()", strict=True):
    _US[_c] = (ecodes.ecodes[f"KEY_{_c}"], False)
    _US[_s] = (ecodes.ecodes[f"KEY_{_c}"], True)
for _name, _plain, _shifted in [
    ("MINUS", "-", "_"), ("EQUAL", "=", "+"), ("LEFTBRACE", "[", "{"), ("RIGHTBRACE", "]", "}"),
    ("SEMICOLON", ";", ":"), ("APOSTROPHE", "'", '"'), ("GRAVE", "`", "~"),
    ("BACKSLASH", "\\", "|"), ("COMMA", ",", "<"), ("DOT", ".", ">"), ("SLASH", "/", "?"),
    ("SPACE", " ", " "),
]:  # fmt: skip
    _US[_plain] = (ecodes.ecodes[f"KEY_{_name}"], False)
    if _shifted != _plain:
        _US[_shifted] = (ecodes.ecodes[f"KEY_{_name}"], True)


class Clock:
    """Event timestamps: starts at ``t0`` and moves ``step_s`` per event."""

    def __init__(self, t0: float = 1_700_000_000.0, step_s: float = 0.002) -> None:
        self.t = t0
        self.step_s = step_s

    def tick(self, dt: float | None = None) -> tuple[int, int]:
        self.t += self.step_s if dt is None else dt
        sec = int(self.t)
        return sec, int(round((self.t - sec) * 1_000_000))


def ev(clock: Clock, type_: int, code: int, value: int, dt: float | None = None) -> InputEvent:
    sec, usec = clock.tick(dt)
    return InputEvent(sec, usec, type_, code, value)


def key(clock: Clock, code: int, value: int, dt: float | None = None) -> list[InputEvent]:
    """One key event followed by SYN_REPORT, as the kernel delivers it."""
    return [
        ev(clock, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code, dt),
        ev(clock, ecodes.EV_KEY, code, value, 0),
        ev(clock, ecodes.EV_SYN, ecodes.SYN_REPORT, 0, 0),
    ]


def tap(clock: Clock, code: int) -> list[InputEvent]:
    return key(clock, code, 1) + key(clock, code, 0)


def typed(
    text: str,
    clock: Clock | None = None,
    *,
    enter: int | None = ecodes.KEY_ENTER,
    shift: int = ecodes.KEY_LEFTSHIFT,
) -> list[InputEvent]:
    """Events a US-layout wedge reader sends to type ``text`` (then Enter, unless None)."""
    clock = clock or Clock()
    out: list[InputEvent] = []
    for ch in text:
        code, shifted = _US[ch]
        if shifted:
            out += key(clock, shift, 1)
        out += tap(clock, code)
        if shifted:
            out += key(clock, shift, 0)
    if enter is not None:
        out += tap(clock, enter)
    return out


_NODES = tempfile.mkdtemp(prefix="lobbypay-fake-input-")


def fake_node(name: str) -> str:
    """A real file standing in for ``/dev/input/by-id/<name>`` (created once)."""
    path = os.path.join(_NODES, name)
    if not os.path.exists(path):
        with open(path, "wb"):
            pass
    return path


class FakeInputDevice:
    def __init__(self, path: str | None = None, *, node: str | None = None,
                 caps_lock: bool = False) -> None:
        """``path``: the node the device is (default: a fake by-id node); ``node``: the
        node its descriptor is really open on, when a test wants them to differ."""
        self.path = path or fake_node("usb-Fake_MSR-event-kbd")
        self._node = node or self.path
        self.fd = -1
        self.calls: list[str] = []
        self.grabbed = False
        self.closed = False  # opens the descriptor
        self.grab_error: OSError | None = None
        self.caps_lock = caps_lock
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def leds(self) -> list[int]:
        return [ecodes.LED_CAPSL] if self.caps_lock else []

    def grab(self) -> None:
        self.calls.append("grab")
        if self.grab_error is not None:
            raise self.grab_error
        if self.grabbed:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self) -> None:
        self.calls.append("ungrab")
        if not self.grabbed:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.grabbed = False

    @property
    def closed(self) -> bool:
        return self.fd < 0

    @closed.setter
    def closed(self, value: bool) -> None:
        """``closed = False`` opens the device again (a test reusing one device)."""
        if value and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        elif not value and self.fd < 0:
            self.fd = os.open(self._node, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True

    def feed(self, events: Iterable[InputEvent]) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def unplug(self) -> None:
        self._queue.put_nowait(_UNPLUG)

    async def async_read_loop(self) -> AsyncIterator[InputEvent]:
        while True:
            item = await self._queue.get()
            if item is _UNPLUG:
                raise OSError(errno.ENODEV, "No such device")
            assert isinstance(item, InputEvent)
            yield item


class FakeOpener:
    """``opener(path)`` for EvdevReader: hands out the plugged device, ENOENT otherwise."""

    def __init__(self, device: FakeInputDevice | None = None) -> None:
        self.device = device
        self.opens = 0
        self.failures = 0
        self.paths: list[str] = []

    def plug(self, device: FakeInputDevice) -> None:
        self.device = device

    def unplug(self) -> None:
        if self.device is not None:
            self.device.unplug()
        self.device = None

    def __call__(self, path: str) -> FakeInputDevice:
        self.paths.append(path)
        if self.device is None or self.device.closed:
            self.failures += 1
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.opens += 1
        return self.device
