"""An I2C bus with a PCF8574 backpack and an HD44780 LCD on it, modelled from the datasheets.

``FakeSMBus`` stands in for ``smbus2.SMBus``: it takes the real ``smbus2.i2c_msg`` objects
the driver builds. A write to an address where nothing answers raises ``OSError(121)``
(EREMOTEIO, what the Linux I2C drivers return for a NACK); ``unplug()`` makes every
transfer fail with EREMOTEIO, as a backpack pulled off the bus does.

``Pcf8574`` latches each byte on its eight pins. The wiring maps pins to the LCD's RS,
RW, E, backlight and D4-D7. ``Hd44780`` watches E: RS is sampled when E rises, the data
lines when E falls, as the chip does. It models what the driver depends on:

* power-up in 8-bit mode; in 4-bit mode two nibbles make a byte, high first; the
  function-set instruction switches between them (so the 0x3, 0x3, 0x3, 0x2 reset works
  from any state, including half-way through a byte);
* clear, home, entry mode, display on/off, cursor/display shift, CGRAM and DDRAM
  addresses, data writes to either RAM with the address counter moving;
* DDRAM layout for one or two lines (0x00-0x27 and 0x40-0x67, 20x4 rows at 0x14/0x54);
* the busy time: clear and home take 1.52 ms, an 8-bit function set in 8-bit mode
  4.1 ms (the reset steps); a nibble that arrives while busy is lost and counted in ``violations``.
  Bytes in one I2C write arrive 90 us apart (100 kHz, 9 clocks a byte).

``text(rows, cols)`` is what the glass shows: DDRAM through the A00 character ROM
(``\\`` is a yen sign, ``~`` an arrow), CGRAM codes 0-7 read back as the letter whose
5x8 bitmap they hold, blank when the display is off.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field

BYTE_TIME_S = 9 / 100_000  # one byte on a 100 kHz I2C bus
ROW_OFFSETS = (0x00, 0x40, 0x14, 0x54)

# The test's own picture of each Spanish letter (5x8, '#' = pixel on), to read CGRAM back.
LETTERS = {
    "á": ("...#.", "..#..", ".###.", "....#", ".####", "#...#", ".####", "....."),
    "é": ("...#.", "..#..", ".###.", "#...#", "#####", "#....", ".###.", "....."),
    "í": ("...#.", "..#..", ".##..", "..#..", "..#..", "..#..", ".###.", "....."),
    "ó": ("...#.", "..#..", ".###.", "#...#", "#...#", "#...#", ".###.", "....."),
    "ú": ("...#.", "..#..", "#...#", "#...#", "#...#", "#..##", ".##.#", "....."),
    "ñ": (".##.#", "#..#.", ".....", "#.##.", "##..#", "#...#", "#...#", "....."),
    "¿": ("..#..", ".....", "..#..", ".#...", "#....", "#...#", ".###.", "....."),
    "¡": ("..#..", ".....", "..#..", "..#..", "..#..", "..#..", "..#..", "....."),
}
_BITMAPS = {
    tuple(int(row.replace("#", "1").replace(".", "0"), 2) for row in pic): ch
    for ch, pic in LETTERS.items()
}


@dataclass
class Pins:
    """PCF8574 pin of each LCD line (bit numbers), and the backlight's polarity."""

    rs: int = 0
    rw: int = 1
    e: int = 2
    bl: int = 3
    data: tuple[int, int, int, int] = (4, 5, 6, 7)
    bl_on_high: bool = True


STANDARD = Pins()
MJKDZ = Pins(rs=6, rw=5, e=4, bl=7, data=(0, 1, 2, 3), bl_on_high=False)


@dataclass
class Hd44780:
    eight_bit: bool = True
    pending_high: int | None = None  # 4-bit mode: the high nibble, waiting for the low one
    two_lines: bool = False
    display_on: bool = False
    increment: bool = True
    shift: int = 0  # display shift (cells)
    ddram: bytearray = field(default_factory=lambda: bytearray(b" " * 0x80))
    cgram: bytearray = field(default_factory=lambda: bytearray(64))
    ac: int = 0
    in_cgram: bool = False
    busy_until: float = 0.0
    violations: int = 0
    instructions: int = 0
    data_writes: int = 0

    # ---- bus side

    def nibble(self, rs: bool, value: int, at: float) -> None:
        if at < self.busy_until:
            self.violations += 1
            return
        if self.eight_bit:
            # D0-D3 float on a backpack; an 8-bit write is the nibble as the high half
            self._execute(rs, value << 4, at)
            return
        if self.pending_high is None:
            self.pending_high = value
            return
        byte = self.pending_high << 4 | value
        self.pending_high = None
        self._execute(rs, byte, at)

    # ---- the chip

    def _execute(self, rs: bool, byte: int, at: float) -> None:
        if rs:
            self.data_writes += 1
            if self.in_cgram:
                self.cgram[self.ac & 0x3F] = byte & 0x1F
                self.ac = (self.ac + (1 if self.increment else -1)) & 0x3F
            else:
                self.ddram[self.ac] = byte
                self.ac = self._next_ddram(self.ac)
            return
        self.instructions += 1
        if byte & 0x80:
            self.ac, self.in_cgram = byte & 0x7F, False
        elif byte & 0x40:
            self.ac, self.in_cgram = byte & 0x3F, True
        elif byte & 0x20:
            was_eight = self.eight_bit
            self.eight_bit = bool(byte & 0x10)
            self.pending_high = None
            self.two_lines = bool(byte & 0x08)
            if was_eight and self.eight_bit:  # a reset step: 4.1 ms (datasheet fig. 24)
                self.busy_until = at + 0.0041
        elif byte & 0x10:
            if byte & 0x08:  # display shift
                self.shift += 1 if byte & 0x04 else -1
            else:
                self.ac = self._next_ddram(self.ac) if byte & 0x04 else self._prev_ddram(self.ac)
        elif byte & 0x08:
            self.display_on = bool(byte & 0x04)
        elif byte & 0x04:
            self.increment = bool(byte & 0x02)
        elif byte & 0x02:
            self.ac, self.in_cgram, self.shift = 0, False, 0
            self.busy_until = at + 0.00152
        elif byte & 0x01:
            self.ddram[:] = b" " * 0x80
            self.ac, self.in_cgram, self.shift, self.increment = 0, False, 0, True
            self.busy_until = at + 0.00152

    def _next_ddram(self, a: int) -> int:
        if not self.increment:
            return self._prev_ddram(a)
        if self.two_lines:
            return {0x27: 0x40, 0x67: 0x00}.get(a, a + 1)
        return 0 if a >= 0x4F else a + 1

    def _prev_ddram(self, a: int) -> int:
        if self.two_lines:
            return {0x40: 0x27, 0x00: 0x67}.get(a, a - 1)
        return 0x4F if a == 0 else a - 1

    # ---- the glass

    def glyph(self, code: int) -> str:
        if code < 16:
            pattern = tuple(self.cgram[(code & 7) * 8:(code & 7) * 8 + 8])
            return _BITMAPS.get(pattern, "\ufffd")
        if code == 0x5C:
            return "¥"
        if code == 0x7E:
            return "→"
        if code == 0x7F:
            return "←"
        if 0x20 <= code < 0x7F:
            return chr(code)
        return "\ufffd"

    def text(self, rows: int, cols: int) -> tuple[str, ...]:
        if not self.display_on:
            return tuple(" " * cols for _ in range(rows))
        out = []
        for row in range(rows):
            base = ROW_OFFSETS[row]
            cells = (self.ddram[(base + self.shift + c) % 0x80] for c in range(cols))
            out.append("".join(self.glyph(code) for code in cells))
        return tuple(out)


class Pcf8574:
    """The expander: remembers its output latch and strobes the LCD on E edges."""

    def __init__(self, lcd: Hd44780, pins: Pins = STANDARD) -> None:
        self.lcd = lcd
        self.pins = pins
        self.latch = 0xFF  # the PCF8574 powers up with all pins high
        self._rs_at_rise = False
        self.rw_writes = 0  # strobes with RW high (a read attempt: not expected)

    def bit(self, value: int, pin: int) -> bool:
        return bool(value >> pin & 1)

    @property
    def backlight(self) -> bool:
        return self.bit(self.latch, self.pins.bl) == self.pins.bl_on_high

    def write(self, value: int, at: float) -> None:
        p = self.pins
        old_e, new_e = self.bit(self.latch, p.e), self.bit(value, p.e)
        if new_e and not old_e:
            self._rs_at_rise = self.bit(value, p.rs)
        if old_e and not new_e:
            if self.bit(value, p.rw):
                self.rw_writes += 1
            else:
                nibble = sum(1 << i for i, pin in enumerate(p.data) if self.bit(self.latch, pin))
                self.lcd.nibble(self._rs_at_rise, nibble, at)
        self.latch = value


class FakeSMBus:
    """``smbus2.SMBus`` with devices attached by address; real ``i2c_msg`` objects in."""

    def __init__(self, devices: dict[int, Pcf8574] | None = None) -> None:
        self.devices = devices or {}
        self.unplugged = False
        self.closed = False
        self.transfers = 0

    def i2c_rdwr(self, *msgs: object) -> None:
        # like the kernel's, the call returns once the bytes are on the wire
        now = time.monotonic()
        for msg in msgs:
            addr = int(msg.addr)  # type: ignore[attr-defined]
            dev = self.devices.get(addr)
            if self.unplugged or dev is None:
                raise OSError(errno.EREMOTEIO, "Remote I/O error")
            if msg.flags & 0x0001:  # type: ignore[attr-defined]  # I2C_M_RD
                raise OSError(errno.EIO, "the model does not read")
            for i, value in enumerate(bytes(msg)):  # type: ignore[call-overload]
                dev.write(value, now + i * BYTE_TIME_S)
            now += len(bytes(msg)) * BYTE_TIME_S  # type: ignore[call-overload]
        self.transfers += 1
        time.sleep(max(0.0, now - time.monotonic()))

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        """The address alone (what ``lobbypay doctor`` probes with): ACK or NACK."""
        if self.unplugged or i2c_addr not in self.devices:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")

    def close(self) -> None:
        self.closed = True


class Backpack:
    """A 16x2 (or any) LCD on a backpack at ``address``, and the bus it hangs on."""

    def __init__(self, address: int = 0x27, pins: Pins = STANDARD,
                 lcd: Hd44780 | None = None) -> None:
        self.lcd = lcd or Hd44780()
        self.expander = Pcf8574(self.lcd, pins)
        self.bus = FakeSMBus({address: self.expander})
        self.opened: list[int] = []
        self.missing_bus = False

    def opener(self, bus: int) -> FakeSMBus:
        self.opened.append(bus)
        if self.missing_bus:
            raise FileNotFoundError(errno.ENOENT, f"No such file or directory: '/dev/i2c-{bus}'")
        self.bus.closed = False
        return self.bus
