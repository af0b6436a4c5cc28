"""Reading graphic screens back: a framebuffer file as an image, and a check that an image
shows exactly given text lines.

``assert_shows(image, lines, display)`` redraws each non-blank line of the screen mirror
on its own, with PIL directly, at the size and place the display chose, and compares the
pixels inside that line's box with the display's image: so the image carries exactly the
mirror's text (with its accents), and nothing is drawn outside the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw


def fb_image(path: Path, width: int, height: int, bpp: int, stride: int) -> Image.Image:
    """The RGB picture held by a framebuffer file (BGRX / BGR / RGB565 little-endian)."""
    raw = path.read_bytes()
    rows = [raw[y * stride:y * stride + width * bpp // 8] for y in range(height)]
    data = b"".join(rows)
    if bpp == 32:
        return Image.frombytes("RGB", (width, height), data, "raw", "BGRX")
    if bpp == 24:
        return Image.frombytes("RGB", (width, height), data, "raw", "BGR")
    out = Image.new("RGB", (width, height))
    px = [
        ((v >> 11 & 0x1F) << 3, (v >> 5 & 0x3F) << 2, (v & 0x1F) << 3)
        for v in (data[i] | data[i + 1] << 8 for i in range(0, len(data), 2))
    ]
    out.putdata(px)
    return out


def ink(image: Image.Image) -> Image.Image:
    """Pixels that are not background: 255, the rest 0 (mode L). For colour, the
    brightest channel counts (yellow text is as inked as white)."""
    if image.mode == "RGB":
        r, g, b = image.split()
        image = ImageChops.lighter(ImageChops.lighter(r, g), b)
    return image.convert("L").point(lambda v: 255 if v > 40 else 0)


def assert_shows(image: Image.Image, lines: Sequence[str], display: object) -> None:
    placed = display._placed  # type: ignore[attr-defined]
    fonts = display.fonts  # type: ignore[attr-defined]
    texts = [line.strip() for line in lines if line.strip()]
    assert [p.text for p in placed] == texts
    mask = ink(image)
    width, height = image.size
    covered = Image.new("L", image.size, 0)
    for p, text in zip(placed, texts, strict=True):
        x0, y0, x1, y1 = p.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, f"{text!r} leaves the frame"
        font = fonts.get(p.size, p.bold)
        # the same pixel mode as the display (1-bit OLEDs draw without antialiasing)
        ref = Image.new("1" if image.mode == "1" else "L", image.size, 0)
        left, top, _, _ = font.getbbox(text, mode="1" if image.mode == "1" else "L")
        ImageDraw.Draw(ref).text((x0 - left, y0 - top), text, font=font, fill=255)
        ref_mask = ink(ref)
        box = (x0, y0, x1, y1)
        diff = ImageChops.difference(mask.crop(box), ref_mask.crop(box))
        wrong = sum(diff.histogram()[1:])
        assert wrong <= (x1 - x0) * (y1 - y0) // 200, f"{text!r} is not what is drawn"
        # fonts' metrics can be a pixel or three short of the ink (Pillow's own font)
        covered.paste(255, (max(0, x0 - 3), max(0, y0 - 2), min(width, x1 + 3),
                            min(height, y1 + 2)))
    outside = ImageChops.subtract(mask, covered)
    assert outside.getbbox() is None, "ink outside the lines' boxes"


def boxes_apart(placed: Sequence[object]) -> bool:
    """No two lines overlap vertically."""
    spans = sorted((p.box[1], p.box[3]) for p in placed)  # type: ignore[attr-defined]
    return all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
