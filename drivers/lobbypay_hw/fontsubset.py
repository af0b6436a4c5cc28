"""A TrueType font cut down to the characters a graphic display can show.

Why: FreeType maps the font file once per face, and the pages a face reads count in the
process's RSS once per face (DejaVu Sans: about 250 kB each, with the kernel reading
ahead around every page touched). A display draws at a dozen sizes. The same font with
only the ~200 glyphs of the display's charset is about 40 kB, and a face made from it
holds one copy of that: six faces then cost less than one mapped face and a half.

What is kept, byte for byte: every kept glyph's outline and hinting instructions, its
advance and side bearing, the kerning pairs between kept glyphs, the font-wide hinting
programs (``fpgm``, ``prep``, ``cvt``) and metrics (``head``, ``hhea``, ``OS/2``,
``maxp`` but the glyph count), so FreeType draws each kept character exactly as from
the whole font (tests/unit/test_fontsubset.py compares the pixels). Glyphs are numbered
anew; ``cmap`` and ``kern`` are rebuilt for the new numbers; ``post`` loses its glyph
names and ``name`` all but the font's own names (family, style: the licence text is
most of it); the OpenType layout tables (``GPOS``, ``GSUB``, ``GDEF``, ...) are left
out, as the basic layout the displays use reads only ``kern``.

``subset`` returns None for a font it does not handle (CFF outlines, a collection, a
variable font, bitmap strikes, per-glyph tables it does not know, anything malformed):
the display then opens the file itself, as before.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterable

#: Tables copied (``name`` with its first six names only): none is indexed by glyph.
_KEEP = frozenset({b"head", b"hhea", b"maxp", b"OS/2", b"name", b"cvt ", b"fpgm", b"prep",
                   b"gasp", b"VDMX"})
#: Tables left out: layout and bookkeeping the basic layout never reads.
_DROP = frozenset({b"GPOS", b"GSUB", b"GDEF", b"BASE", b"JSTF", b"MATH", b"FFTM", b"DSIG",
                   b"meta", b"PCLT", b"LTSH", b"hdmx"})
#: Tables rebuilt here.
_REBUILT = frozenset({b"glyf", b"loca", b"hmtx", b"cmap", b"kern", b"post"})

# composite glyph flags (the 'glyf' table)
_ARG_WORDS, _SCALE, _MORE, _XY_SCALE, _TWO_BY_TWO = 0x0001, 0x0008, 0x0020, 0x0040, 0x0080


class _Unsupported(Exception):
    pass


Buffer = bytes | mmap.mmap


def subset(data: Buffer, chars: Iterable[str]) -> bytes | None:
    """``data`` (a TrueType font file, or an mmap of one) with only the glyphs of
    ``chars`` and .notdef, or None if the font is not one this can cut down. Reads only
    what it keeps: the font's tables are never copied whole."""
    try:
        return _subset(data, chars)
    except (_Unsupported, struct.error, IndexError, ValueError, KeyError):
        return None


def subset_file(path: str, chars: Iterable[str]) -> bytes | None:
    """``subset`` of the font file at ``path`` (mapped, not read: only the pages of the
    tables and glyphs kept are touched). OSError if it cannot be read."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return subset(m, chars)


def _subset(data: Buffer, chars: Iterable[str]) -> bytes:
    tables = _tables(data)
    for tag in tables:
        if tag not in _KEEP | _DROP | _REBUILT:
            raise _Unsupported(tag)  # CFF, fvar/gvar, bitmaps, vmtx: not handled
    for tag in (b"head", b"hhea", b"maxp", b"hmtx", b"loca", b"glyf", b"cmap"):
        if tag not in tables:
            raise _Unsupported(tag)

    def body(tag: bytes) -> bytes:
        offset, length = tables[tag]
        return bytes(data[offset:offset + length])

    head, hhea, maxp = body(b"head"), body(b"hhea"), body(b"maxp")
    font = _Font(data, tables, num_glyphs=struct.unpack_from(">H", maxp, 4)[0],
                 long_loca=struct.unpack_from(">h", head, 50)[0] == 1,
                 n_hmetrics=struct.unpack_from(">H", hhea, 34)[0])
    lookup = _cmap_lookup(data, *tables[b"cmap"])
    wanted = {c: gid for c in {ord(ch) for ch in chars} if (gid := lookup(c)) > 0}
    # composite glyphs (most accented letters) bring their components
    order = sorted(font.close_over_components({0} | set(wanted.values())))
    new_id = {old: new for new, old in enumerate(order)}

    out = {tag: body(tag) for tag in tables if tag in _KEEP}
    if b"name" in tables:
        out[b"name"] = _names(data, *tables[b"name"])
    glyphs, offsets = bytearray(), [0]
    for old in order:
        g = bytearray(font.glyph(old))
        if len(g) >= 10 and struct.unpack_from(">h", g, 0)[0] < 0:
            for at, component in _components(g):
                struct.pack_into(">H", g, at, new_id[component])
        glyphs += g + b"\0" * (-len(g) % 4)
        offsets.append(len(glyphs))
    out[b"glyf"] = bytes(glyphs)
    out[b"loca"] = struct.pack(f">{len(offsets)}I", *offsets)
    out[b"head"] = head[:8] + b"\0\0\0\0" + head[12:50] + struct.pack(">h", 1) + head[52:]
    out[b"maxp"] = maxp[:4] + struct.pack(">H", len(order)) + maxp[6:]
    out[b"hhea"] = hhea[:34] + struct.pack(">H", len(order)) + hhea[36:]
    out[b"hmtx"] = b"".join(font.hmetric(old) for old in order)
    out[b"cmap"] = _cmap_table({c: new_id[g] for c, g in wanted.items()})
    if b"kern" in tables:
        out[b"kern"] = _kern(data, *tables[b"kern"], new_id)
    if b"post" in tables:  # format 3: the header alone, no glyph names
        post = tables[b"post"][0]
        out[b"post"] = struct.pack(">I", 0x00030000) + bytes(data[post + 4:post + 32])
    return _write(out)


# ---------------------------------------------------------------- reading


def _tables(data: Buffer) -> dict[bytes, tuple[int, int]]:
    """Tag -> (offset, length) of each table."""
    version, count = struct.unpack_from(">IH", data, 0)
    if version not in (0x00010000, 0x74727565):  # TrueType outlines ('true': Apple)
        raise _Unsupported("not TrueType")
    out = {}
    for i in range(count):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if offset + length > len(data):
            raise _Unsupported("truncated")
        out[tag] = (offset, length)
    return out


class _Font:
    """Glyphs and metrics read where they lie in the file, one at a time."""

    def __init__(self, data: Buffer, tables: dict[bytes, tuple[int, int]], *,
                 num_glyphs: int, long_loca: bool, n_hmetrics: int) -> None:
        self.data = data
        self.num_glyphs = num_glyphs
        self.long_loca = long_loca
        self.n_hmetrics = n_hmetrics
        self.loca = tables[b"loca"][0]
        self.glyf, self.glyf_len = tables[b"glyf"]
        self.hmtx, self.hmtx_len = tables[b"hmtx"]
        if not 0 < n_hmetrics <= num_glyphs \
                or self.hmtx_len < 4 * n_hmetrics + 2 * (num_glyphs - n_hmetrics):
            raise _Unsupported("hmtx")

    def _offset(self, gid: int) -> int:
        if self.long_loca:
            return int(struct.unpack_from(">I", self.data, self.loca + 4 * gid)[0])
        return 2 * int(struct.unpack_from(">H", self.data, self.loca + 2 * gid)[0])

    def glyph(self, gid: int) -> bytes:
        if not 0 <= gid < self.num_glyphs:
            raise _Unsupported("glyph out of range")
        start, end = self._offset(gid), self._offset(gid + 1)
        if not 0 <= start <= end <= self.glyf_len:
            raise _Unsupported("loca")
        return bytes(self.data[self.glyf + start:self.glyf + end])

    def hmetric(self, gid: int) -> bytes:
        """advanceWidth and lsb of ``gid`` (the last advance repeats past n_hmetrics)."""
        if gid < self.n_hmetrics:
            at = self.hmtx + 4 * gid
            return bytes(self.data[at:at + 4])
        last = self.hmtx + 4 * (self.n_hmetrics - 1)
        at = self.hmtx + 4 * self.n_hmetrics + 2 * (gid - self.n_hmetrics)
        return bytes(self.data[last:last + 2]) + bytes(self.data[at:at + 2])

    def close_over_components(self, keep: set[int]) -> set[int]:
        seen = set(keep)
        todo = list(keep)
        while todo:
            g = self.glyph(todo.pop())
            if len(g) >= 10 and struct.unpack_from(">h", g, 0)[0] < 0:
                for _, component in _components(g):
                    if component not in seen:
                        seen.add(component)
                        todo.append(component)
        return seen


def _cmap_lookup(data: Buffer, offset: int, length: int) -> Callable[[int], int]:
    """Code point -> glyph (0: none) in the best Unicode subtable (format 12, else 4)."""
    count = struct.unpack_from(">H", data, offset + 2)[0]
    best: tuple[int, int] | None = None  # (rank, offset of the subtable)
    for i in range(count):
        platform, encoding, sub = struct.unpack_from(">HHI", data, offset + 4 + 8 * i)
        if sub >= length:
            raise _Unsupported("cmap")
        fmt = struct.unpack_from(">H", data, offset + sub)[0]
        unicode = platform == 0 or (platform == 3 and encoding in (1, 10))
        if unicode and fmt in (4, 12):
            rank = 2 if fmt == 12 else 1
            if best is None or rank > best[0]:
                best = (rank, offset + sub)
    if best is None:
        raise _Unsupported("no Unicode cmap")
    at = best[1]
    if struct.unpack_from(">H", data, at)[0] == 12:
        n_groups = struct.unpack_from(">I", data, at + 12)[0]

        def group(i: int) -> tuple[int, int, int]:
            start, end, glyph = struct.unpack_from(">III", data, at + 16 + 12 * i)
            return int(start), int(end), int(glyph)

        def in_groups(c: int) -> int:
            lo, hi = 0, n_groups  # groups are sorted by start code: binary search
            while lo < hi:
                mid = (lo + hi) // 2
                start, end, glyph = group(mid)
                if c < start:
                    hi = mid
                elif c > end:
                    lo = mid + 1
                else:
                    return glyph + c - start
            return 0

        return in_groups
    seg_count = struct.unpack_from(">H", data, at + 6)[0] // 2
    ends, starts = at + 14, at + 16 + 2 * seg_count
    deltas, ranges = starts + 2 * seg_count, starts + 4 * seg_count

    def u16(pos: int) -> int:
        return int(struct.unpack_from(">H", data, pos)[0])

    def in_segments(c: int) -> int:
        if c > 0xFFFF:
            return 0
        lo, hi = 0, seg_count  # the first segment whose end code is >= c
        while lo < hi:
            mid = (lo + hi) // 2
            if u16(ends + 2 * mid) < c:
                lo = mid + 1
            else:
                hi = mid
        if lo == seg_count or u16(starts + 2 * lo) > c:
            return 0
        delta, range_offset = u16(deltas + 2 * lo), u16(ranges + 2 * lo)
        if range_offset == 0:
            return (c + delta) & 0xFFFF
        glyph = u16(ranges + 2 * lo + range_offset + 2 * (c - u16(starts + 2 * lo)))
        return (glyph + delta) & 0xFFFF if glyph else 0

    return in_segments


def _names(data: Buffer, offset: int, length: int) -> bytes:
    """The 'name' table with only the family, style, unique, full and PostScript names
    and the version (IDs 1-6): the licence and description texts are most of it."""
    fmt, count, strings = struct.unpack_from(">HHH", data, offset)
    if fmt != 0:
        return bytes(data[offset:offset + length])
    records, texts = [], bytearray()
    for i in range(count):
        record = struct.unpack_from(">HHHHHH", data, offset + 6 + 12 * i)
        platform, encoding, language, name_id, size, at = record
        if not 1 <= name_id <= 6:
            continue
        start = offset + strings + at
        if start + size > offset + length:
            raise _Unsupported("name")
        records.append(struct.pack(">HHHHHH", platform, encoding, language, name_id, size,
                                   len(texts)))
        texts += data[start:start + size]
    return struct.pack(">HHH", 0, len(records), 6 + 12 * len(records)) \
        + b"".join(records) + bytes(texts)


def _components(glyph: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset of the glyph index, the index) of each component of a composite glyph."""
    out = []
    at = 10
    while True:
        flags, index = struct.unpack_from(">HH", glyph, at)
        out.append((at + 2, int(index)))
        at += 4 + (4 if flags & _ARG_WORDS else 2)
        if flags & _SCALE:
            at += 2
        elif flags & _XY_SCALE:
            at += 4
        elif flags & _TWO_BY_TWO:
            at += 8
        if not flags & _MORE:
            return out


# ---------------------------------------------------------------- writing


def _cmap_table(mapping: dict[int, int]) -> bytes:
    """A 'cmap' with a (3,1) format 4 subtable for the BMP and, when a character lies
    beyond it, a (3,10) format 12 one for all (FreeType prefers the latter)."""
    bmp = _format4({c: g for c, g in mapping.items() if c <= 0xFFFF})
    subtables = [(3, 1, bmp)]
    if any(c > 0xFFFF for c in mapping):
        subtables.append((3, 10, _format12(mapping)))
    out = struct.pack(">HH", 0, len(subtables))
    offset = 4 + 8 * len(subtables)
    for platform, encoding, sub in subtables:
        out += struct.pack(">HHI", platform, encoding, offset)
        offset += len(sub)
    return out + b"".join(sub for _, _, sub in subtables)


def _runs(mapping: dict[int, int]) -> list[list[int]]:
    """[first char, last char, glyph of the first] for runs of consecutive characters
    with consecutive glyphs."""
    runs: list[list[int]] = []
    for c in sorted(mapping):
        g = mapping[c]
        if runs and c == runs[-1][1] + 1 and g == runs[-1][2] + c - runs[-1][0]:
            runs[-1][1] = c
        else:
            runs.append([c, c, g])
    return runs


def _format4(mapping: dict[int, int]) -> bytes:
    segments = _runs(mapping) + [[0xFFFF, 0xFFFF, 1]]  # the required last segment (to 0)
    n = len(segments)
    search = 2 ** (n.bit_length() - 1)
    body = struct.pack(">HHHH", 2 * n, 2 * search, search.bit_length() - 1, 2 * n - 2 * search)
    body += struct.pack(f">{n}H", *(s[1] for s in segments)) + b"\0\0"
    body += struct.pack(f">{n}H", *(s[0] for s in segments))
    body += struct.pack(f">{n}H", *((s[2] - s[0]) & 0xFFFF for s in segments))
    body += b"\0\0" * n  # idRangeOffset: none
    return struct.pack(">HHH", 4, 6 + len(body), 0) + body


def _format12(mapping: dict[int, int]) -> bytes:
    groups = _runs(mapping)
    body = b"".join(struct.pack(">III", *g) for g in groups)
    return struct.pack(">HHIII", 12, 0, 16 + len(body), 0, len(groups)) + body


def _kern(data: Buffer, offset: int, length: int, new_id: dict[int, int]) -> bytes:
    """The 'kern' table (version 0, format 0 subtables) for the new glyph numbers."""
    version, count = struct.unpack_from(">HH", data, offset)
    if version != 0:
        raise _Unsupported("kern version")
    at, subtables = offset + 4, []
    for _ in range(count):
        _, _, coverage = struct.unpack_from(">HHH", data, at)
        if coverage >> 8 != 0:
            raise _Unsupported("kern format")
        n_pairs = struct.unpack_from(">H", data, at + 6)[0]
        if at + 14 + 6 * n_pairs > offset + length:
            raise _Unsupported("kern")
        # pairs are sorted by (left, right), and the new numbers keep the old order: the
        # pairs kept stay sorted
        pairs = bytearray()
        for i in range(n_pairs):
            left, right = struct.unpack_from(">HH", data, at + 14 + 6 * i)
            if left in new_id and right in new_id:
                pairs += struct.pack(">HH", new_id[left], new_id[right])
                pairs += data[at + 18 + 6 * i:at + 20 + 6 * i]
        at += 14 + 6 * n_pairs  # the length field overflows in big tables: count instead
        n = len(pairs) // 6
        search = 2 ** (n.bit_length() - 1) if n else 0
        head = struct.pack(">HHHH", n, 6 * search, max(0, search.bit_length() - 1),
                           6 * (n - search))
        body = head + pairs
        subtables.append(struct.pack(">HHH", 0, min(0xFFFF, 6 + len(body)), coverage) + body)
    return struct.pack(">HH", 0, len(subtables)) + b"".join(subtables)


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (-len(data) % 4)
    words: tuple[int, ...] = struct.unpack(f">{len(padded) // 4}I", padded)
    return sum(words) & 0xFFFFFFFF


def _write(tables: dict[bytes, bytes]) -> bytes:
    tags = sorted(tables)
    n = len(tags)
    search = 2 ** (n.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, n, 16 * search, search.bit_length() - 1,
                         16 * (n - search))
    offset = 12 + 16 * n
    records, bodies = [], []
    head_at = 0
    for tag in tags:
        body = tables[tag]
        if tag == b"head":
            head_at = offset
        records.append(struct.pack(">4sIII", tag, _checksum(body), offset, len(body)))
        bodies.append(body + b"\0" * (-len(body) % 4))
        offset += len(bodies[-1])
    font = bytearray(b"".join([header, *records, *bodies]))
    struct.pack_into(">I", font, head_at + 8, (0xB1B0AFBA - _checksum(bytes(font))) & 0xFFFFFFFF)
    return bytes(font)
