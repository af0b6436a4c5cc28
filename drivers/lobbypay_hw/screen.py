"""The screen model (pure): a ``ScreenView`` -> exactly ``rows`` lines of ``cols`` chars.

Character LCD ROMs (HD44780 A00 and friends) hold ASCII, but not all of it: 0x5C is a
yen sign and 0x7E an arrow, and ``|`` (0x7C) is the SerLCD command prefix. So the
rendered text uses only the characters every supported display shows as themselves;
accented letters are folded to their base letter (``é`` -> ``e``), typographic dashes
and quotes to ASCII, and anything else becomes ``?``. The rendered lines are therefore
exactly what the glass shows, which is what the agent publishes as the screen mirror.

A display that can show more (an HD44780 with custom characters, a graphic display with
a real font) passes its own ``charset``; characters in it are kept as they are. Spanish
punctuation the charset lacks is dropped rather than shown as ``?`` (``¿Otra tarjeta?``
becomes ``Otra tarjeta?``).
"""

from __future__ import annotations

import unicodedata

from lobbypay_hw.api import Align, ScreenView

DEFAULT_ROWS, DEFAULT_COLS = 2, 16
MAX_ROWS = 4  # 4x20 is the largest panel the command sets address (row offsets 0/64/20/84)
MAX_COLS = 40  # 2x40 panels exist; 4-row panels are at most 20 wide

REPLACEMENT = "?"

# Printable ASCII minus the characters LCD ROMs or command sets do not show as themselves.
SAFE_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\", "|", "~"}

_FOLD = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
    "\u2212": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u00a0": " ", "\u2026": "...", "\t": " ", "\u00df": "ss", "\u00e6": "ae",
    "\u00c6": "AE", "\u00f8": "o", "\u00d8": "O", "\u00bf": "", "\u00a1": "",
    "\u00ab": '"', "\u00bb": '"',
}  # fmt: skip


def check_geometry(rows: int, cols: int) -> None:
    """Raise ValueError unless ``rows`` x ``cols`` is a panel size we can drive."""
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise ValueError("display rows and cols must be integers")
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"display rows must be 1-{MAX_ROWS}")
    limit = MAX_COLS if rows <= 2 else 20
    if not 1 <= cols <= limit:
        raise ValueError(f"display cols must be 1-{limit} for {rows} rows")


def to_lcd_text(text: str, charset: frozenset[str] = SAFE_CHARS) -> str:
    """Map any text to ``charset`` (LCD-safe ASCII by default; may change the length)."""
    out: list[str] = []
    for ch in text:
        if ch in charset:
            out.append(ch)
            continue
        folded = _FOLD.get(ch)
        if folded is None:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            folded = base if base and all(c in charset for c in base) else REPLACEMENT
        out.append(folded)
    return "".join(out)


def fit(
    text: str, cols: int, align: Align = Align.CENTER, charset: frozenset[str] = SAFE_CHARS
) -> str:
    """One line: in ``charset``, truncated to ``cols``, aligned and padded to ``cols``."""
    shown = to_lcd_text(text, charset)
    line = shown.strip() if align is Align.CENTER else shown.rstrip()
    line = line[:cols]
    if align is Align.CENTER:
        left = (cols - len(line)) // 2
        line = " " * left + line
    return line.ljust(cols)


def blank(rows: int, cols: int) -> tuple[str, ...]:
    return tuple(" " * cols for _ in range(rows))


def render(
    view: ScreenView,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
    charset: frozenset[str] = SAFE_CHARS,
) -> tuple[str, ...]:
    """Exactly ``rows`` lines of exactly ``cols`` characters.

    Lines beyond ``rows`` are dropped; missing rows are blank. Each line is truncated,
    aligned per ``view.align`` and padded.
    """
    check_geometry(rows, cols)
    if not isinstance(view, ScreenView):
        raise TypeError("render takes a ScreenView")
    lines = [fit(line, cols, view.align, charset) for line in view.lines[:rows]]
    lines.extend(" " * cols for _ in range(rows - len(lines)))
    return tuple(lines)
