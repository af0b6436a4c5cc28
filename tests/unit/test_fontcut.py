"""lobbypay_hw.fontcut: the fonts cut down to a display's charset by fontTools in a child
process draw every kept character exactly as the whole fonts do (pixels, boxes, advances,
kerning); the result is cached by font path, size, mtime and the characters asked for;
without fontTools, or when the cut fails, the display opens the whole files."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lobbypay_hw import fontcut, fontcut_child, graphic
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("fontTools.subset")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FONTS = [DEJAVU / graphic.REGULAR, DEJAVU / graphic.BOLD]
pytestmark = pytest.mark.skipif(not FONTS[0].is_file(), reason="fonts-dejavu-core missing")

SAMPLES = ["Total $65.00", "Deslice su tarjeta", "¿Otra tarjeta?", "Consulte en recepción",
           "Año Niño ÁÉÍÓÚÜ áéíóúü Ññ ¡Hola! «€ 1,234.56»", "AVATAR To Wa Yo LT",
           "Visa ****1111", "Tarjeta vencida", "Aprobado — Gracias…"]
PATHS = [str(p) for p in FONTS]


def face(source: Path | bytes, size: int) -> ImageFont.FreeTypeFont:
    src: str | io.BytesIO = str(source) if isinstance(source, Path) else io.BytesIO(source)
    return ImageFont.truetype(src, size, layout_engine=ImageFont.Layout.BASIC)


def pixels(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, mode: str) -> bytes:
    left, top, right, bottom = (int(v) for v in font.getbbox(text, mode=mode))
    im = Image.new(mode, (right - left + 4, bottom - top + 4))
    ImageDraw.Draw(im).text((2 - left, 2 - top), text, font=font, fill=255)
    return im.tobytes()


@pytest.mark.parametrize("path", FONTS, ids=lambda p: p.name)
def test_kept_characters_draw_exactly_as_from_the_whole_font(path: Path) -> None:
    chars = graphic.probe_charset(str(FONTS[0]))
    cut = fontcut_child.cut_font(str(path), chars)
    assert len(cut) < 60_000 < path.stat().st_size
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
    assert graphic.draws_alike(str(path), cut, chars)


def test_kerning_is_kept() -> None:
    whole = face(FONTS[0], 50)
    assert whole.getlength("AV") != whole.getlength("A") + whole.getlength("V")
    part = face(fontcut_child.cut_font(PATHS[0], frozenset("AV")), 50)
    assert part.getlength("AV") == whole.getlength("AV")


def test_a_cut_missing_characters_does_not_draw_alike() -> None:
    chars = graphic.probe_charset(PATHS[0])
    assert not graphic.draws_alike(PATHS[0], fontcut_child.cut_font(PATHS[0], frozenset("abc")),
                                   chars)
    assert not graphic.draws_alike(PATHS[0], b"not a font", chars)


def test_the_child_cuts_once_and_later_starts_read_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fontcut.load(PATHS, graphic.ASKED, tmp_path)
    assert first is not None and first.charset == graphic.probe_charset(PATHS[0])
    assert set(first.fonts) == set(PATHS)
    entries = sorted(p.name for p in (tmp_path / "fonts").iterdir())
    assert len(entries) == 3  # the charset and two fonts
    for path, data in first.fonts.items():
        assert graphic.draws_alike(path, data, first.charset)
    # a later start: no child can run, and none is needed
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    again = fontcut.load(PATHS, graphic.ASKED, tmp_path)
    assert again == first
    # a font the cache has not seen does need the child, which is not there
    assert fontcut.load(PATHS[:1], graphic.ASKED, tmp_path) is None


def test_a_changed_font_file_or_charset_is_a_new_entry(tmp_path: Path) -> None:
    font = tmp_path / "Font.ttf"
    shutil.copyfile(FONTS[0], font)
    cache = tmp_path / "cache"
    key = fontcut.key_of([str(font)], graphic.ASKED)
    assert fontcut.load([str(font)], graphic.ASKED, cache) is not None
    assert fontcut.key_of([str(font)], graphic.ASKED + "Ω") != key
    os.utime(font, ns=(0, 0))  # a new version of the font, say
    new_key = fontcut.key_of([str(font)], graphic.ASKED)
    assert new_key != key and new_key.split("-")[0] == key.split("-")[0]
    assert fontcut.load([str(font)], graphic.ASKED, cache) is not None
    names = sorted(p.name for p in (cache / "fonts").iterdir())
    assert names == [f"{new_key}-0.ttf", f"{new_key}.json"]  # the old entry is gone


def test_a_torn_cache_entry_is_made_again(tmp_path: Path) -> None:
    first = fontcut.load(PATHS, graphic.ASKED, tmp_path)
    assert first is not None
    key = fontcut.key_of(PATHS, graphic.ASKED)
    part = tmp_path / "fonts" / f"{key}-1.ttf"
    part.write_bytes(part.read_bytes()[:1000])
    assert fontcut._read(tmp_path / "fonts", key, PATHS, graphic.ASKED) is None
    assert fontcut.load(PATHS, graphic.ASKED, tmp_path) == first
    (tmp_path / "fonts" / f"{key}.json").write_text("{")
    assert fontcut.load(PATHS, graphic.ASKED, tmp_path) == first


def test_a_cache_dir_that_cannot_be_written_still_cuts(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache directory should be
    cut = fontcut.load(PATHS, graphic.ASKED, blocked)
    assert cut is not None and set(cut.fonts) == set(PATHS)


def test_without_fonttools_the_display_opens_the_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fake = tmp_path / "site" / "fontTools"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('fontTools is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(fake.parent), os.environ.get("PYTHONPATH", "")]))
    with caplog.at_level(logging.INFO, "lobbypay_hw"):
        assert fontcut.load(PATHS, graphic.ASKED, tmp_path / "a") is None
        whole = graphic.load_fonts(cache_dir=tmp_path / "b")
    assert "fontTools is not installed" in caplog.text
    assert not whole.cut_down and whole.regular == PATHS[0]
    monkeypatch.undo()
    fonts = graphic.load_fonts(cache_dir=tmp_path / "c")
    assert fonts.cut_down and fonts.charset == whole.charset
    for text in SAMPLES:
        for bold in (False, True):
            assert pixels(fonts.get(22, bold), text, "1") == pixels(whole.get(22, bold), text,
                                                                     "1")


def test_a_font_fonttools_cannot_cut_is_opened_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"\x00\x01\x00\x00" + bytes(60))
    with caplog.at_level(logging.WARNING, "lobbypay_hw"):
        assert fontcut.load([str(bad)], graphic.ASKED, tmp_path) is None
    assert "not cut down" in caplog.text


def test_the_child_writes_nothing_when_a_cut_draws_differently(tmp_path: Path) -> None:
    """The check runs in the child, on what the subsetter made: a cut that lost glyphs
    (here: a subsetter keeping three letters) is refused and no entry is written."""
    job = {"paths": PATHS[:1], "asked": graphic.ASKED, "dir": str(tmp_path), "key": "k-1"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = ("import sys; from lobbypay_hw import fontcut_child; "
            "real = fontcut_child.cut_font; "
            "fontcut_child.cut_font = lambda path, chars: real(path, frozenset('abc')); "
            "raise SystemExit(fontcut_child.main(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(job)],  # noqa: S603
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == fontcut.DRAWS_DIFFERENTLY, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_the_default_cache_dir_follows_systemd_then_xdg(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("CACHE_DIRECTORY", "STATE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fontcut.default_cache_dir() == tmp_path / ".cache" / "lobbypay"
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert fontcut.default_cache_dir() == Path("/x/lobbypay")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/lobbypay")
    assert fontcut.default_cache_dir() == Path("/var/lib/lobbypay")
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/lobbypay:/other")
    assert fontcut.default_cache_dir() == Path("/var/cache/lobbypay")


def test_faces_are_bounded(tmp_path: Path) -> None:
    fonts = graphic.load_fonts(cache_dir=tmp_path)
    assert fonts.cut_down
    for size in graphic.SIZES:
        fonts.get(size, size % 2 == 0)
    assert fonts.open_faces == graphic.MAX_FACES
