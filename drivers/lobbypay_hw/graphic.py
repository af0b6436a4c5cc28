"""Screens for graphic displays (OLED, framebuffer), drawn with Pillow.

Only the graphic drivers import this module, and only when such a display is configured:
Pillow costs several megabytes the character displays do not need.

Fonts: ``font`` from the config, else DejaVu Sans (Debian's ``fonts-dejavu-core``, on
every Raspberry Pi OS image), else Pillow's own font. The charset is what the font really
has (each Latin-1 letter is drawn and compared with a missing glyph), so with DejaVu the
Spanish letters are drawn as they are, and with Pillow's font (ASCII only) they fold to
plain letters like on a character LCD; either way the screen mirror says what is drawn.

Layout: the non-blank lines of the frame, centred, stacked top to bottom. The main
message is bold and large: the amount due (``$65.00`` alone on its line, or a first
line with an amount) gets twice the height of a line, else the first line (the result)
one and a half. The main line gets the largest size that fits its band and the width;
the other lines share the largest size at which all of them fit. A line too long even
at the smallest size is cut, and the mirror is cut with it.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lobbypay_hw import fontcut
from lobbypay_hw.screen import SAFE_CHARS, fit

FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Raspberry Pi OS
    "/usr/share/fonts/TTF",  # Arch
    "/usr/share/fonts/dejavu",  # Fedora, Alpine
)
REGULAR, BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"

_AMOUNT = re.compile(r"\$?\d[\d,]*\.\d\d\b")
# Candidates beyond ASCII: Latin-1 letters and signs, typographic dashes and quotes.
_CANDIDATES = [chr(c) for c in range(0xA1, 0x100) if c != 0xAD] + list("–—‘’“”…€")

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


# Type sizes in pixels, about 12 % apart: a screen change reuses the faces already open.
SIZES = (8, 9, 10, 11, 12, 13, 14, 16, 18, 20, 22, 25, 28, 32, 36, 40, 45, 50, 56, 63, 71, 80,
         90, 100, 112, 125, 140, 160, 180, 200, 225, 250, 280, 320)
REF_PX = 50
#: FreeType faces a display keeps open: the two reference faces every layout measures
#: with and the current screens' sizes. A face is made from the font cut down to the
#: display's charset (``fontcut``: 40 kB of DejaVu Sans) and holds its own copy of it;
#: a face opened from the file itself (no fontTools, or a font it could not cut down)
#: maps the file, and the pages it reads (about 250 kB of DejaVu Sans) count in RSS once
#: per face. Six faces: a charge's screens reopen about ten faces (0.1 ms each on the
#: dev VM), sixteen would keep them all and cost 0.4 MB more (docs/PERFORMANCE.md).
MAX_FACES = 6
#: the characters a display's charset may hold: what every display shows, and the
#: letters and signs beyond ASCII the font is asked for (\ | ~ are only unsafe on LCD
#: ROMs: a graphic display shows them)
ASKED = "".join(sorted(SAFE_CHARS | {"\\", "|", "~"} | set(_CANDIDATES)))


class FontSet:
    """The regular and bold font files, the characters they draw, and the faces open."""

    __slots__ = ("regular", "bold", "charset", "_cut", "_faces", "_lock")

    def __init__(self, regular: str | None, bold: str | None, charset: frozenset[str],
                 cut: Mapping[str, bytes] | None = None) -> None:
        self.regular = regular  # a TrueType file, or None for Pillow's built-in font
        self.bold = bold
        self.charset = charset
        self._cut = dict(cut or {})  # font file -> the font cut down to the charset
        self._faces: OrderedDict[tuple[str | None, int], AnyFont] = OrderedDict()
        # the framebuffer draws in its worker thread while the loop lays out the next
        # screen: the least-recently-used bookkeeping must not interleave
        self._lock = threading.Lock()

    def get(self, size: int, bold: bool = False) -> AnyFont:
        path = self.bold if bold else self.regular
        key = (path, size)
        with self._lock:
            face = self._faces.get(key)
            if face is not None:
                self._faces.move_to_end(key)
                return face
            face = self._faces[key] = _open(path, size, self._cut.get(path or ""))
            while len(self._faces) > MAX_FACES:
                self._faces.popitem(last=False)  # closed when the last user lets go
            return face

    @property
    def open_faces(self) -> int:
        return len(self._faces)

    @property
    def cut_down(self) -> bool:
        """Faces are made from the fonts cut down to the charset (not the files)."""
        paths = [p for p in (self.regular, self.bold) if p is not None]
        return bool(paths) and all(p in self._cut for p in paths)


def _open(path: str | None, size: int, cut: bytes | None = None) -> AnyFont:
    if path is None:
        return ImageFont.load_default(size)
    # BASIC layout: Latin text needs no shaping, and raqm/harfbuzz would cost ~1 MB more
    source: str | io.BytesIO = path if cut is None else io.BytesIO(cut)  # read() shares it
    return ImageFont.truetype(source, size, layout_engine=ImageFont.Layout.BASIC)


def draws_alike(path: str, cut: bytes, charset: frozenset[str]) -> bool:
    """The font ``cut`` draws every character of ``charset`` exactly as the file in
    ``path`` does (the whole charset on one line: pixels and kerning; at 16 px, 8-bit and
    1-bit). Run where the cut is made (``fontcut``'s child), not in the agent."""
    text = "".join(sorted(charset))
    try:
        whole, part = _open(path, 16), _open(path, 16, cut)
        return all(_drawn(whole, text, mode) == _drawn(part, text, mode) for mode in "L1")
    except (OSError, ValueError):  # FreeType refused the cut-down font
        return False


def _drawn(font: AnyFont, text: str, mode: str = "L") -> bytes:
    left, top, right, bottom = (int(v) for v in font.getbbox(text, mode=mode))
    im = Image.new(mode, (right - left + 2, bottom - top + 2))
    ImageDraw.Draw(im).text((1 - left, 1 - top), text, font=font, fill=255)
    return im.tobytes()


def _has_glyph(font: AnyFont, ch: str, missing: bytes) -> bool:
    return _sample(font, ch) != missing


def _sample(font: AnyFont, text: str) -> bytes:
    im = Image.new("L", (40, 40))
    ImageDraw.Draw(im).text((4, 4), text, font=font, fill=255)
    return im.tobytes()


def probe_charset(regular: str | None) -> frozenset[str]:
    """What the display shows with this font: the characters of ``ASKED`` it draws (each
    candidate beyond ASCII drawn and compared with a missing glyph)."""
    probe = _open(regular, 16)  # closed after: no screen is drawn at this size
    missing = _sample(probe, "\U0010fffd")
    extra = {ch for ch in _CANDIDATES if _has_glyph(probe, ch, missing)}
    return frozenset(c for c in ASKED if c not in _CANDIDATES or c in extra)


def load_fonts(font: str | None = None, cache_dir: Path | None = None) -> FontSet:
    """The configured font (bold = the same), else DejaVu, else Pillow's; never raises
    for a missing font file (a missing ``font`` from the config is a ValueError). The
    faces are made from the fonts cut down to the charset (``fontcut``, cached in
    ``cache_dir``) where they can be, else from the files."""
    if font is not None:
        if not Path(font).is_file():
            raise ValueError(f"display.font: no such font file {font!r}")
        regular: str | None = font
        bold: str | None = font
    else:
        regular = bold = None
        for d in FONT_DIRS:
            if Path(d, REGULAR).is_file():
                regular = str(Path(d, REGULAR))
                bold = str(Path(d, BOLD)) if Path(d, BOLD).is_file() else regular
                break
    paths = [p for p in dict.fromkeys((regular, bold)) if p is not None]
    cut = fontcut.load(paths, ASKED, cache_dir) if paths else None
    if cut is not None:
        return FontSet(regular, bold, cut.charset, cut.fonts)
    return FontSet(regular, bold, probe_charset(regular))


@dataclass(frozen=True, slots=True)
class Placed:
    """One line as drawn: its text, size in pixels, bold or not, and its ink box."""

    text: str
    size: int
    bold: bool
    box: tuple[int, int, int, int]  # left, top, right, bottom of the drawn text


def is_amount(text: str) -> bool:
    return _AMOUNT.search(text) is not None


def main_line(texts: Sequence[str]) -> int:
    """Index of the main message: the amount due when it is alone on its line or heads
    the screen ("Total $65.00"), else the first line (the result: "Approved")."""
    for i, t in enumerate(texts):
        if _AMOUNT.fullmatch(t) or (i == 0 and is_amount(t)):
            return i
    return 0


def _bbox(font: AnyFont, text: str, mode: str) -> tuple[int, int, int, int]:
    """The ink box as drawn in ``mode``: 1-bit text is hinted differently from 8-bit."""
    left, top, right, bottom = font.getbbox(text, mode="1" if mode == "1" else "L")
    return int(left), int(top), int(right), int(bottom)


def _largest(
    fonts: FontSet, text: str, bold: bool, max_h: int, max_w: int, min_px: int, mode: str
) -> int:
    """Largest size on the ladder whose ink fits max_w x max_h (min_px if none does).

    Measured once at a reference size and scaled (text grows linearly with its size),
    then checked at the size picked: a few font faces, not one per size tried (each
    FreeType face costs a few hundred kB).
    """
    left, top, right, bottom = _bbox(fonts.get(REF_PX, bold), text, mode)
    scale = min(max_w / max(1, right - left), max_h / max(1, bottom - top))
    fitting = [s for s in SIZES if min_px <= s <= scale * REF_PX]
    for size in reversed(fitting):
        left, top, right, bottom = _bbox(fonts.get(size, bold), text, mode)
        if right - left <= max_w and bottom - top <= max_h:
            return size
    return min_px


def layout(
    frame: Sequence[str], width: int, height: int, fonts: FontSet, *, min_px: int = 8,
    mode: str = "1",
) -> list[Placed]:
    """Where each non-blank line of ``frame`` goes on a ``width`` x ``height`` canvas
    drawn in ``mode`` ("1": a 1-bit OLED; else 8-bit, antialiased)."""
    texts = [line.strip() for line in frame if line.strip()]
    if not texts:
        return []
    margin_x, margin_y = max(2, width // 32), max(1, height // 32)
    gap = max(1, height // 24)
    main = main_line(texts)
    weights = [(2.0 if is_amount(t) else 1.5) if i == main else 1.0 for i, t in enumerate(texts)]
    avail_h = height - 2 * margin_y - gap * (len(texts) - 1)
    avail_w = width - 2 * margin_x
    best = [
        _largest(fonts, t, i == main, max(min_px, int(avail_h * w / sum(weights))), avail_w,
                 min_px, mode)
        for i, (t, w) in enumerate(zip(texts, weights, strict=True))
    ]
    body = min((b for i, b in enumerate(best) if i != main), default=min_px)
    sizes: list[tuple[str, int, bool, tuple[int, int, int, int]]] = []
    for i, text in enumerate(texts):
        bold = i == main
        size = best[i] if bold else body  # the other lines share one size
        font = fonts.get(size, bold)
        left, top, right, bottom = _bbox(font, text, mode)
        while len(text) > 1 and right - left > avail_w:
            text = text[:-1].rstrip()  # too long even at the smallest size: cut
            left, top, right, bottom = _bbox(font, text, mode)
        sizes.append((text, size, bold, (left, top, right, bottom)))
    ink_h = sum(b[3] - b[1] for _, _, _, b in sizes) + gap * (len(sizes) - 1)
    y = max(margin_y, (height - ink_h) // 2)
    placed = []
    for text, size, bold, (left, t, r, b) in sizes:
        x = (width - (r - left)) // 2
        placed.append(Placed(text, size, bold, (x, y, x + r - left, y + b - t)))
        y += b - t + gap
    return placed


def shown_lines(
    frame: Sequence[str], placed: Sequence[Placed], cols: int, charset: frozenset[str]
) -> tuple[str, ...]:
    """The mirror: ``frame`` with any line the layout had to cut replaced by the cut text."""
    cut = iter(placed)
    out = []
    for line in frame:
        if line.strip():
            p = next(cut)
            out.append(line if p.text == line.strip() else fit(p.text, cols, charset=charset))
        else:
            out.append(line)
    return tuple(out)


def draw(
    placed: Sequence[Placed], fonts: FontSet, size: tuple[int, int], mode: str = "1",
    fg: int | tuple[int, int, int] = 255, bg: int | tuple[int, int, int] = 0,
) -> Image.Image:
    """The image of the placed lines (ink box top-left at each ``box`` corner)."""
    im = Image.new(mode, size, bg)
    pen = ImageDraw.Draw(im)
    for p in placed:
        font = fonts.get(p.size, p.bold)
        left, top, _, _ = _bbox(font, p.text, mode)
        pen.text((p.box[0] - left, p.box[1] - top), p.text, font=font, fill=fg)
    return im
