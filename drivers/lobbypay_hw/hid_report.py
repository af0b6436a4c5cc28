"""MagTek USB HID swipe reports (pure): one input report -> one swipe frame.

A MagTek reader in HID mode (USB 0801:0002, 0801:0011 on some models) types nothing: each
swipe is one fixed-size input report on its ``/dev/hidrawN`` node. The classic layout,
337 bytes with no report ID (MagTek "USB HID Swipe Reader Technical Reference Manual",
99875191; the same offsets head the MagneSafe V5 report in 99875475, "HID usages"):

======  =====  ==============================================================
offset  size   field
======  =====  ==============================================================
0       1      track 1 decode status (0 = decoded; non-zero = error)
1       1      track 2 decode status
2       1      track 3 decode status
3       1      track 1 data length (0 = no data on the track, or an error)
4       1      track 2 data length
5       1      track 3 data length
6       1      card encode type (0 ISO/ABA, 1 AAMVA, 3 blank, 4 other, ...)
7       110    track 1 data, ASCII with its sentinels (``%...?``), zero padded
117     110    track 2 data (``;...?``)
227     110    track 3 data
======  =====  ==============================================================

``decode_report(buf, n)`` turns the first ``n`` bytes of ``buf`` into the same frame the
keyboard and serial readers hand to ``tracks.parse_swipe``: track 1 then track 2 as
swiped, a track with a decode error as the reader error mark (``%E?`` / ``;E?``), so the
parser's rules (a good track 2 is needed, ...) apply unchanged. Track 3 is not passed
on (the parser ignores it anyway). A report of any other size is not this layout:
MagneSafe readers in HID mode send a longer, versioned report (856+ bytes) whose track
fields are encrypted at security level 3, so it is ``ENCRYPTED_READER``; anything else is
``UNREADABLE``. The frame is a fresh ``bytearray`` sized once; the caller wipes ``buf``.
"""

from __future__ import annotations

from lobbypay_hw.api import ReadFailure
from lobbypay_hw.framing import Frame

REPORT_SIZE = 337
TRACK_FIELD = 110
_STATUS, _LENGTH, _DATA = 0, 3, 7
# The MagneSafe V5 HID report runs to offset 855 (MagnePrint absolute data length).
MAGNESAFE_MIN_REPORT = 856

_SENTINELS = ((0x25, 0x3F), (0x3B, 0x3F))  # track 1 '%' ... '?', track 2 ';' ... '?'
_ERROR_MARK = 0x45  # 'E'


def decode_report(buf: bytes | bytearray, n: int) -> Frame:
    """The swipe frame of the report in ``buf[:n]``, or the ``ReadFailure`` it gives."""
    if n >= MAGNESAFE_MIN_REPORT:
        return ReadFailure.ENCRYPTED_READER
    if n != REPORT_SIZE:
        return ReadFailure.UNREADABLE
    parts: list[tuple[int, int, int]] = []  # (track, offset, length); length -1: error
    for track in (0, 1):
        status = buf[_STATUS + track]
        length = buf[_LENGTH + track]
        if length > TRACK_FIELD:
            return ReadFailure.UNREADABLE
        if status != 0:
            parts.append((track, 0, -1))
        elif length:
            parts.append((track, _DATA + track * TRACK_FIELD, length))
    size = 0
    for track, off, length in parts:
        wrapped = length > 0 and buf[off] == _SENTINELS[track][0]
        size += 3 if length < 0 else length + (0 if wrapped else 2)
    out = bytearray(size)
    pos = 0
    for track, off, length in parts:
        start, end = _SENTINELS[track]
        if length < 0:
            out[pos : pos + 3] = bytes((start, _ERROR_MARK, end))
            pos += 3
            continue
        # Some firmware strips the sentinels (a reader property): put them back.
        wrapped = buf[off] == start
        if not wrapped:
            out[pos] = start
            pos += 1
        with memoryview(buf) as view:
            out[pos : pos + length] = view[off : off + length]
        pos += length
        if not wrapped:
            out[pos] = end
            pos += 1
    return out
