"""lobbypay_hw.fontsubset: the font cut down to a display's charset draws every kept
character exactly as the whole font does (pixels, boxes, advances, kerning), and a font
it does not handle is left alone."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from lobbypay_hw import fontsubset, graphic
from PIL import Image, ImageDraw, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FONTS = [DEJAVU / graphic.REGULAR, DEJAVU / graphic.BOLD]
pytestmark = pytest.mark.skipif(not FONTS[0].is_file(), reason="fonts-dejavu-core missing")

SAMPLES = ["Total $65.00", "Deslice su tarjeta", "¿Otra tarjeta?", "Consulte en recepción",
           "Año Niño ÁÉÍÓÚÜ áéíóúü Ññ ¡Hola! «€ 1,234.56»", "AVATAR To Wa Yo LT",
           "Visa ****1111", "Tarjeta vencida", "Aprobado — Gracias…"]


def charset() -> frozenset[str]:
    return graphic.load_fonts().charset


def face(source: Path | bytes, size: int) -> ImageFont.FreeTypeFont:
    src: str | io.BytesIO = str(source) if isinstance(source, Path) else io.BytesIO(source)
    return ImageFont.truetype(src, size, layout_engine=ImageFont.Layout.BASIC)


def pixels(font: ImageFont.FreeTypeFont, text: str, mode: str) -> bytes:
    left, top, right, bottom = (int(v) for v in font.getbbox(text, mode=mode))
    im = Image.new(mode, (right - left + 4, bottom - top + 4))
    ImageDraw.Draw(im).text((2 - left, 2 - top), text, font=font, fill=255)
    return im.tobytes()


@pytest.mark.parametrize("path", FONTS, ids=lambda p: p.name)
def test_kept_characters_draw_exactly_as_from_the_whole_font(path: Path) -> None:
    chars = charset()
    cut = fontsubset.subset(path.read_bytes(), chars)
    assert cut is not None and len(cut) < 60_000 < path.stat().st_size
    every = "".join(sorted(chars))
    texts = [every[i:i + 24] for i in range(0, len(every), 24)] + SAMPLES
    assert set("".join(SAMPLES)) <= chars
    assert face(cut, 20).getname() == face(path, 20).getname()  # family and style kept
    for size in (8, 11, 16, 22, 36, 63, 125):
        whole, part = face(path, size), face(cut, size)
        for mode in ("1", "L"):
            for text in texts:
                assert part.getbbox(text, mode=mode) == whole.getbbox(text, mode=mode), text
                assert part.getlength(text, mode=mode) == whole.getlength(text, mode=mode)
                assert pixels(part, text, mode) == pixels(whole, text, mode), (size, text)


def test_kerning_is_kept() -> None:
    whole = face(FONTS[0], 50)
    assert whole.getlength("AV") != whole.getlength("A") + whole.getlength("V")
    part = face(fontsubset.subset(FONTS[0].read_bytes(), "AV") or b"", 50)
    assert part.getlength("AV") == whole.getlength("AV")


def test_the_file_mapped_gives_the_same_font_beyond_the_bmp_too() -> None:
    chars = "ab\U0001F600\U0010FFFD"  # an emoji (DejaVu has it) and a code point it lacks
    cut = fontsubset.subset(FONTS[0].read_bytes(), chars)
    assert cut is not None and len(cut) < 30_000
    assert fontsubset.subset_file(str(FONTS[0]), chars) == cut
    for mode in ("1", "L"):
        assert pixels(face(cut, 30), "ab\U0001F600", mode) == \
            pixels(face(FONTS[0], 30), "ab\U0001F600", mode)


@pytest.mark.parametrize("data", [
    b"",
    b"OTTO" + bytes(60),  # CFF outlines
    b"ttcf" + bytes(60),  # a collection
    b"\x00\x01\x00\x00\x00\x05" + bytes(6),  # five tables promised, none there
])
def test_what_it_does_not_handle_is_none(data: bytes) -> None:
    assert fontsubset.subset(data, "abc") is None


def test_an_unknown_table_is_none() -> None:
    data = bytearray(FONTS[0].read_bytes())
    count = struct.unpack_from(">H", data, 4)[0]
    tags = [bytes(data[12 + 16 * i:16 + 16 * i]) for i in range(count)]
    struct.pack_into(">4s", data, 12 + 16 * tags.index(b"FFTM"), b"fvar")  # a variable font
    assert fontsubset.subset(bytes(data), "abc") is None


def test_the_display_fonts_are_cut_down_and_fall_back_to_the_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fonts = graphic.load_fonts()
    assert fonts.cut_down
    monkeypatch.setattr(fontsubset, "subset", lambda data, chars: None)
    whole = graphic.load_fonts()
    assert not whole.cut_down and whole.charset == fonts.charset
    for text in SAMPLES:
        assert pixels(fonts.get(22, True), text, "1") == pixels(whole.get(22, True), text, "1")  # type: ignore[arg-type]


def test_a_cut_that_draws_differently_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fontsubset.subset
    monkeypatch.setattr(fontsubset, "subset", lambda data, chars: real(data, "abc"))
    assert not graphic.load_fonts().cut_down  # most characters would be boxes


def test_faces_are_bounded() -> None:
    fonts = graphic.load_fonts()
    for size in graphic.SIZES:
        fonts.get(size, size % 2 == 0)
    assert fonts.open_faces == graphic.MAX_FACES
