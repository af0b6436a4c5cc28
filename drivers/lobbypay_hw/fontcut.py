"""The display's fonts cut down to the characters it can show, by fontTools, out of process.

Why: FreeType maps the font file once per face, and the pages a face reads count in the
process's RSS once per face (DejaVu Sans: about 250 kB each, with the kernel reading
ahead around every page touched). A display draws at a dozen sizes. The same font with
only the ~200 glyphs of the display's charset is about 40 kB, and a face made from it
holds one copy of that. Measured with the whole agent (``scripts/memory``): an SSD1306
peaks 1.3 MB lower with the cut-down fonts than with the files (docs/PERFORMANCE.md).

How: fontTools' subsetter (``fontTools.subset``, the ``oled`` and ``framebuffer``
extras; Debian's python3-fonttools) runs in a short-lived child process, so neither
fontTools nor the whole font's pages ever enter the agent's memory. The child
(``fontcut_child``) works out the charset (``graphic.probe_charset``: which of the
candidate letters the font draws), cuts each font down to it (hinting kept, and the
legacy ``kern`` table the basic layout reads; the OpenType layout tables dropped),
checks that the cut-down font draws every character of the charset exactly as the whole
font does (``graphic.draws_alike``) and writes the fonts and the charset to the cache.
The agent reads them from there: the first start with a font pays for the child (about
0.5 s on the dev VM), later ones read two small files.

The cache: ``<cache dir>/fonts/<key>.json`` (the charset, and a SHA-256 of each font
file written beside it) and ``<key>-<n>.ttf``. The key is a digest of each font's path,
size and mtime and of the characters asked for, so a new font, a changed file or a new
candidate list is a new entry (an entry for the same fonts is replaced). The cache dir
is the one the driver is given (``cache_dir``), else systemd's ``$CACHE_DIRECTORY`` or
``$STATE_DIRECTORY`` (the unit's ``StateDirectory=``: ``/var/lib/lobbypay``), else
``$XDG_CACHE_HOME/lobbypay`` or ``~/.cache/lobbypay``. One that cannot be written is
skipped for a temporary directory: the child then runs at every start.

``load`` returns None when fontTools is missing, the child fails or the check does:
the display then probes the charset itself and opens the font files, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("lobbypay_hw")

#: bumped when what the child writes changes: older entries are then not read
FORMAT = 1
CHILD_TIMEOUT_S = 120.0  # a Pi Zero imports Pillow and fontTools in a few seconds

# The child: the package's own directory first on sys.path (an install has it there
# already; a checkout may have it only on the parent's PYTHONPATH, which is passed on).
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from lobbypay_hw.fontcut_child import main; raise SystemExit(main(sys.argv[2]))"
)
#: the child's exit status when fontTools is not installed
NO_FONTTOOLS = 3
#: the child's exit status when a cut-down font does not draw as the whole one
DRAWS_DIFFERENTLY = 4


@dataclass(frozen=True, slots=True)
class Cut:
    """The charset, and each font file's contents cut down to it."""

    charset: frozenset[str]
    fonts: dict[str, bytes]  # font path -> the cut-down font


def default_cache_dir() -> Path:
    for var in ("CACHE_DIRECTORY", "STATE_DIRECTORY"):  # set by systemd for the unit
        value = os.environ.get(var, "").split(":")[0]
        if value:
            return Path(value)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg, "lobbypay") if xdg else Path.home() / ".cache" / "lobbypay"


def key_of(paths: Sequence[str], asked: str) -> str:
    """``<fonts>-<contents>``: the first part names the font paths (an entry for the same
    paths is replaced), the second their size, mtime and the characters asked for."""
    where = hashlib.sha256("\0".join(paths).encode()).hexdigest()[:12]
    what = hashlib.sha256()
    what.update(f"{FORMAT}\0".encode())
    for p in paths:
        st = os.stat(p)
        what.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    what.update("".join(sorted(set(asked))).encode("utf-8", "surrogatepass"))
    return f"{where}-{what.hexdigest()[:24]}"


def load(paths: Sequence[str], asked: str, cache_dir: Path | None = None) -> Cut | None:
    """The fonts in ``paths`` (the regular one first: the charset is probed with it) cut
    down to the characters of ``asked`` they draw, from the cache or made by the child;
    None if they cannot be (no fontTools, a font it cannot cut, a failed check)."""
    try:
        key = key_of(paths, asked)
    except OSError:
        return None
    base = (cache_dir if cache_dir is not None else default_cache_dir()) / "fonts"
    cut = _read(base, key, paths, asked)
    if cut is not None:
        return cut
    try:
        base.mkdir(parents=True, exist_ok=True)
        writable = os.access(base, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        with tempfile.TemporaryDirectory(prefix="lobbypay-fonts-") as tmp:
            log.info("display fonts: cache %s not writable; cutting them down each start",
                     base)
            return _made(Path(tmp), key, paths, asked)
    return _made(base, key, paths, asked)


def _made(base: Path, key: str, paths: Sequence[str], asked: str) -> Cut | None:
    job = json.dumps({"paths": list(paths), "asked": asked, "dir": str(base), "key": key})
    here = str(Path(__file__).resolve().parents[1])
    try:
        # our own interpreter and module, the job as one argument: no shell
        proc = subprocess.run(  # noqa: S603
            [sys.executable, "-c", _CHILD, here, job], capture_output=True, text=True,
            timeout=CHILD_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("display fonts: the font cutter did not run (%s); using the whole "
                    "font files", type(exc).__name__)
        return None
    if proc.returncode == NO_FONTTOOLS:
        log.info("display fonts: fontTools is not installed; using the whole font files")
        return None
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:]
        why = ("a cut-down font draws differently" if proc.returncode == DRAWS_DIFFERENTLY
               else last[0] if last else f"exit {proc.returncode}")
        log.warning("display fonts: not cut down (%s); using the whole font files", why)
        return None
    return _read(base, key, paths, asked)


def _read(base: Path, key: str, paths: Sequence[str], asked: str) -> Cut | None:
    """The entry ``key``, if it is there, whole, and for these fonts."""
    try:
        entry = json.loads((base / f"{key}.json").read_text(encoding="utf-8"))
        charset = frozenset(entry["charset"])
        fonts = {}
        for path, item in zip(paths, entry["fonts"], strict=True):
            data = (base / item["file"]).read_bytes()
            if item["path"] != path or hashlib.sha256(data).hexdigest() != item["sha256"]:
                return None
            fonts[path] = data
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or from elsewhere
        return None
    if not charset or not charset <= set(asked):
        return None
    return Cut(charset, fonts)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
