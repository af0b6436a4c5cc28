"""SSD1306 and SH1106 display RAM, modelled from the datasheets, behind luma's serial seam.

luma.oled's device classes talk to a "serial interface" with ``command(*bytes)`` and
``data(bytes)`` (luma.core.interface.serial.i2c sends them as I2C control byte 0x00 or
0x40 plus the bytes). ``OledBus`` is such an interface in front of a model of the
controller, so a test runs luma's real ``ssd1306`` / ``sh1106`` code and reads back the
picture the panel would show:

* SSD1306: 128 columns x 8 pages of 8 pixel rows (bit 0 at the top); horizontal
  addressing (``0x20 0x00``) with the column and page windows of ``0x21``/``0x22``,
  or page addressing (``0xB0+page``, ``0x00+low``, ``0x10+high`` column nibbles).
* SH1106: 132 columns of RAM, page addressing only, the panel shows columns 2-129 (the
  reason luma sends column 2 for every page).

Every command byte is decoded with its argument count; one the model does not know is an
error, so an unexpected sequence fails the test rather than passing silently.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import Image

# SSD1306 commands that take arguments: opcode -> number of argument bytes.
_SSD1306_ARGS = {0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1,
                 0xDA: 1, 0xDB: 1, 0x8D: 1}
# SH1106: 0x20 is not memory mode there (luma sends it alone); the rest as above.
_SH1106_ARGS = {0x81: 1, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1, 0x8D: 1,
                0xAD: 1}
_NO_ARGS = (
    {0xA4, 0xA5, 0xA6, 0xA7, 0xAE, 0xAF, 0xA0, 0xA1, 0xC0, 0xC8, 0x2E, 0xE3}
    | set(range(0x40, 0x80))  # display start line
)


class OledModel:
    def __init__(self, kind: str) -> None:
        assert kind in ("ssd1306", "sh1106")
        self.kind = kind
        self.ram_cols = 128 if kind == "ssd1306" else 132
        self.visible = 0 if kind == "ssd1306" else 2  # first RAM column on the glass
        self.ram = [bytearray(self.ram_cols) for _ in range(8)]
        self.horizontal = False  # page addressing after reset
        self.col, self.page = 0, 0
        self.col_window, self.page_window = (0, 127), (0, 7)
        self.on = False
        self.commands = 0

    def command(self, cmd: Iterable[int]) -> None:
        todo = list(cmd)
        args_of = _SSD1306_ARGS if self.kind == "ssd1306" else _SH1106_ARGS
        while todo:
            op = todo.pop(0)
            self.commands += 1
            n = args_of.get(op, 0)
            args, todo = todo[:n], todo[n:]
            if len(args) < n:
                raise AssertionError(f"command 0x{op:02x} is missing its arguments")
            if op in args_of:
                self._with_args(op, args)
            elif op in (0xAE, 0xAF):
                self.on = op == 0xAF
            elif 0xB0 <= op <= 0xB7:
                self.page = op - 0xB0
            elif op <= 0x0F:
                self.col = (self.col & 0xF0) | op
            elif 0x10 <= op <= 0x1F:
                self.col = (self.col & 0x0F) | (op - 0x10) << 4
            elif op == 0x20 and self.kind == "sh1106":
                pass
            elif op not in _NO_ARGS:
                raise AssertionError(f"{self.kind}: unknown command 0x{op:02x}")

    def _with_args(self, op: int, args: list[int]) -> None:
        if op == 0x20:
            if args[0] not in (0, 2):
                raise AssertionError("only horizontal and page addressing are modelled")
            self.horizontal = args[0] == 0
        elif op == 0x21:
            self.col_window = (args[0], args[1])
            self.col = args[0]
        elif op == 0x22:
            self.page_window = (args[0], args[1])
            self.page = args[0]

    def data(self, data: Iterable[int]) -> None:
        for byte in data:
            self.ram[self.page][self.col % self.ram_cols] = byte
            if not self.horizontal:
                self.col = min(self.col + 1, self.ram_cols - 1)
                continue
            if self.col < self.col_window[1]:
                self.col += 1
                continue
            self.col = self.col_window[0]
            self.page = self.page + 1 if self.page < self.page_window[1] else self.page_window[0]

    def image(self) -> Image.Image:
        """The 128x64 picture on the glass (blank while the display is off)."""
        im = Image.new("1", (128, 64), 0)
        if not self.on:
            return im
        px = im.load()
        assert px is not None
        for page in range(8):
            for x in range(128):
                byte = self.ram[page][x + self.visible]
                for bit in range(8):
                    if byte >> bit & 1:
                        px[x, page * 8 + bit] = 1
        return im


class OledBus:
    """luma's serial-interface seam (``command``, ``data``, ``cleanup``) into the model."""

    def __init__(self, model: OledModel) -> None:
        self.model = model
        self.cleaned = False

    def command(self, *cmd: int) -> None:
        self.model.command(cmd)

    def data(self, data: Iterable[int]) -> None:
        self.model.data(data)

    def cleanup(self) -> None:
        self.cleaned = True
