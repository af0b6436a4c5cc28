"""Keyboard-wedge decoding (pure): evdev key events -> swipe frames.

A USB keyboard-wedge MSR "types" the track text. Readers emit US-layout HID usages
whatever the host keymap is, so we decode with our own fixed US table and our own
shift / caps-lock state, never through xkb or the console keymap. Numeric codes are the
Linux ``input-event-codes.h`` values; ``evdev`` is not imported here.

* value 1 = press, 0 = release, 2 = autorepeat (ignored: a reader never holds a key, and
  a stuck key must not fill the buffer faster).
* Left/right shift are tracked separately; caps lock toggles on press and affects
  letters only; Ctrl+letter gives the control character (MagTek sends STX/ETX that way).
* Caps lock also follows the device's LED: readers look at it and compensate (a lit
  caps lock makes them type capitals unshifted), so the reader seeds the state from
  ``leds()`` when it opens the device, and an ``EV_LED``/``LED_CAPSL`` event sets it.
* Keypad digits are read as digits whatever num lock says.
* A frame ends at KEY_ENTER / KEY_KPENTER, or when an event arrives more than
  ``idle_gap_s`` after the previous one (timestamps come from the events; call
  ``flush()`` when the device has been silent that long). Over ``max_frame`` characters
  yields ``ReadFailure.TOO_LONG`` once and drops keys until the frame ends.

One decoder per device: modifier state is per device, so a second keyboard typing at
the same time cannot mix into a swipe (the reader opens one device).
"""

from __future__ import annotations

from lobbypay_hw.api import ReadFailure
from lobbypay_hw.framing import DEFAULT_MAX_FRAME, Frame

EV_KEY = 1
EV_LED = 0x11
LED_CAPSL = 1

KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_CAPSLOCK = 58
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97

RELEASE, PRESS, REPEAT = 0, 1, 2

# A reader types a whole swipe in well under this between keys (typically 1-10 ms);
# a human pausing mid-frame, or a reader with no terminator, exceeds it.
DEFAULT_IDLE_GAP_S = 0.5

# keycode -> (plain, shifted), US layout.
US_KEYS: dict[int, tuple[str, str]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"),
    7: ("6", "^"), 8: ("7", "&"), 9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"),
    12: ("-", "_"), 13: ("=", "+"),
    16: ("q", "Q"), 17: ("w", "W"), 18: ("e", "E"), 19: ("r", "R"), 20: ("t", "T"),
    21: ("y", "Y"), 22: ("u", "U"), 23: ("i", "I"), 24: ("o", "O"), 25: ("p", "P"),
    26: ("[", "{"), 27: ("]", "}"),
    30: ("a", "A"), 31: ("s", "S"), 32: ("d", "D"), 33: ("f", "F"), 34: ("g", "G"),
    35: ("h", "H"), 36: ("j", "J"), 37: ("k", "K"), 38: ("l", "L"),
    39: (";", ":"), 40: ("'", '"'), 41: ("`", "~"), 43: ("\\", "|"),
    44: ("z", "Z"), 45: ("x", "X"), 46: ("c", "C"), 47: ("v", "V"), 48: ("b", "B"),
    49: ("n", "N"), 50: ("m", "M"), 51: (",", "<"), 52: (".", ">"), 53: ("/", "?"),
    57: (" ", " "),
    # keypad (num lock assumed on: readers that use the keypad send digits)
    55: ("*", "*"), 71: ("7", "7"), 72: ("8", "8"), 73: ("9", "9"), 74: ("-", "-"),
    75: ("4", "4"), 76: ("5", "5"), 77: ("6", "6"), 78: ("+", "+"), 79: ("1", "1"),
    80: ("2", "2"), 81: ("3", "3"), 82: ("0", "0"), 83: (".", "."), 98: ("/", "/"),
}  # fmt: skip

_ENTER_KEYS = frozenset((KEY_ENTER, KEY_KPENTER))
_SHIFT_KEYS = frozenset((KEY_LEFTSHIFT, KEY_RIGHTSHIFT))
_CTRL_KEYS = frozenset((KEY_LEFTCTRL, KEY_RIGHTCTRL))


class KeyDecoder:
    """Turns one device's key events into frames (``bytearray`` or ``TOO_LONG``)."""

    __slots__ = (
        "_buf", "_len", "_max", "_idle_gap_s", "_last_ts", "_shift", "_ctrl", "_caps",
        "_discarding",
    )  # fmt: skip

    def __init__(
        self, *, idle_gap_s: float = DEFAULT_IDLE_GAP_S, max_frame: int = DEFAULT_MAX_FRAME
    ) -> None:
        if max_frame < 1 or idle_gap_s <= 0:
            raise ValueError("max_frame and idle_gap_s must be positive")
        self._buf = bytearray(max_frame)  # allocated once: no realloc copies
        self._len = 0
        self._max = max_frame
        self._idle_gap_s = idle_gap_s
        self._last_ts: float | None = None
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._caps = False
        self._discarding = False

    @property
    def pending(self) -> bool:
        """True while a partial frame is buffered (the caller should flush on idle)."""
        return self._len > 0 or self._discarding

    @property
    def idle_gap_s(self) -> float:
        return self._idle_gap_s

    def feed(self, type_: int, code: int, value: int, timestamp: float) -> list[Frame]:
        """Feed one input event; returns the frames it completed (usually none)."""
        out: list[Frame] = []
        if type_ == EV_LED and code == LED_CAPSL:
            self._caps = bool(value)
            return out
        if type_ != EV_KEY:
            return out
        if (
            self._last_ts is not None
            and timestamp - self._last_ts > self._idle_gap_s
            and self.pending
        ):
            self._end(out)
        self._last_ts = timestamp
        if value == REPEAT:
            return out
        pressed = value == PRESS
        if code in _SHIFT_KEYS:
            (self._shift.add if pressed else self._shift.discard)(code)
        elif code in _CTRL_KEYS:
            (self._ctrl.add if pressed else self._ctrl.discard)(code)
        elif not pressed:
            pass
        elif code == KEY_CAPSLOCK:
            self._caps = not self._caps
        elif code in _ENTER_KEYS:
            self._end(out)
        else:
            ch = self._char(code)
            if ch is not None:
                self._put(ord(ch), out)
        return out

    def set_caps_lock(self, on: bool) -> None:
        """The device's caps lock LED state (read when the device is opened)."""
        self._caps = on

    def flush(self) -> list[Frame]:
        """The device went quiet (idle gap) or away: end the current frame."""
        out: list[Frame] = []
        self._end(out)
        return out

    def reset(self) -> None:
        """Forget everything (e.g. after the device was unplugged)."""
        self._clear()
        self._discarding = False
        self._shift.clear()
        self._ctrl.clear()
        self._caps = False
        self._last_ts = None

    # -------------------------------------------------------------- internals

    def _char(self, code: int) -> str | None:
        pair = US_KEYS.get(code)
        if pair is None:
            return None  # function keys, arrows, etc.: not part of a swipe
        plain, shifted = pair
        if self._ctrl:
            if plain.isalpha():
                return chr(ord(plain.upper()) - 0x40)
            return None
        shift = bool(self._shift)
        if plain.isalpha() and self._caps:
            shift = not shift
        return shifted if shift else plain

    def _put(self, b: int, out: list[Frame]) -> None:
        if self._discarding:
            return
        if self._len >= self._max:
            self._clear()
            self._discarding = True
            out.append(ReadFailure.TOO_LONG)
            return
        self._buf[self._len] = b
        self._len += 1

    def _clear(self) -> None:
        for i in range(self._len):
            self._buf[i] = 0
        self._len = 0

    def _end(self, out: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
        elif self._len:
            frame = bytearray(self._len)
            with memoryview(self._buf) as view:
                frame[:] = view[: self._len]
            out.append(frame)
        self._clear()
