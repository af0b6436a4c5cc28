"""A MagTek reader in USB HID mode, for tests: real report bytes through a FIFO.

``magtek_report(...)`` builds the 337-byte input report of the classic MagTek USB HID swipe
reader (layout in ``lobbypay_hw.hid_report``: three decode statuses, three lengths, the
card encode type, three 110-byte track fields with the ASCII data and its sentinels,
zero padded), the way the reader sends it.

``HidrawNode`` stands in for ``/dev/hidrawN``: a FIFO at a path the driver opens like the
real node. The test holds it open read-write so the driver's reads block until a report
is written (as on a plugged reader); each ``send()`` is one ``write()``, which a FIFO
keeps whole (under PIPE_BUF), and the driver reads it in one ``read()`` as hidraw gives
one report per read. ``unplug()`` removes the node and closes the writer (the driver sees
end of file, then ENOENT on reopen); ``plug()`` makes a new node at the same path.
"""

from __future__ import annotations

import os
from pathlib import Path

REPORT_SIZE = 337
FIELD = 110


def magtek_report(
    t1: bytes = b"",
    t2: bytes = b"",
    t3: bytes = b"",
    *,
    status: tuple[int, int, int] = (0, 0, 0),
    encode_type: int = 0,
) -> bytes:
    tracks = (t1, t2, t3)
    lengths = [0 if status[i] else len(t) for i, t in enumerate(tracks)]
    head = bytes([*status, *lengths, encode_type])
    body = b"".join(t.ljust(FIELD, b"\0") for t in tracks)
    report = head + body
    assert len(report) == REPORT_SIZE
    return report


class HidrawNode:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.plug()

    def plug(self) -> None:
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def send(self, report: bytes) -> None:
        assert self.fd is not None
        assert os.write(self.fd, report) == len(report)

    def unplug(self) -> None:
        os.unlink(self.path)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            self.unplug()
