"""The child process of ``fontcut``: fontTools cuts the display's fonts down and the
result is checked against the whole fonts, then written to the cache.

A module of its own because it draws with ``graphic`` (the charset probe, the pixel
check) and ``graphic`` loads the cache through ``fontcut``: the agent imports this
module never, only the child does (``python -c "from lobbypay_hw.fontcut_child import
main; ..."``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lobbypay_hw import graphic
from lobbypay_hw.fontcut import DRAWS_DIFFERENTLY, FORMAT, NO_FONTTOOLS, write_atomic


def cut_font(path: str, charset: frozenset[str]) -> bytes:
    """The font in ``path`` with the glyphs of ``charset`` only (fontTools; child only)."""
    import io

    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    options = subset.Options()
    options.legacy_kern = True  # the basic layout kerns with 'kern', never GPOS
    options.notdef_outline = True  # a missing glyph stays a box, as in the whole font
    options.layout_features = []
    options.drop_tables = [*options.drop_tables, "GSUB", "GPOS", "GDEF", "BASE", "MATH"]
    out = io.BytesIO()
    with TTFont(path, lazy=True, recalcTimestamp=False) as font:  # same font, same bytes
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(ord(c) for c in charset))
        subsetter.subset(font)
        font.save(out)
    return out.getvalue()


def main(job_text: str) -> int:
    """Cut the fonts of ``job_text`` (JSON: paths, asked, dir, key) down and write the
    cache entry; the exit status says how it went."""
    job = json.loads(job_text)
    paths, base, key = job["paths"], Path(job["dir"]), job["key"]
    try:
        import fontTools.subset  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return NO_FONTTOOLS
    charset = graphic.probe_charset(paths[0]) & frozenset(job["asked"])
    items = []
    for n, path in enumerate(paths):
        data = cut_font(path, charset)
        if not graphic.draws_alike(path, data, charset):
            return DRAWS_DIFFERENTLY
        name = f"{key}-{n}.ttf"
        write_atomic(base / name, data)
        items.append({"path": path, "file": name,
                      "sha256": hashlib.sha256(data).hexdigest()})
    entry = {"format": FORMAT, "charset": "".join(sorted(charset)), "fonts": items}
    write_atomic(base / f"{key}.json", json.dumps(entry, ensure_ascii=False).encode("utf-8"))
    where = key.split("-")[0]
    for old in base.glob(f"{where}-*"):  # the same fonts' older entries
        if not old.name.startswith(key):
            old.unlink(missing_ok=True)
    return 0


