"""Serial swipe framing (pure): byte chunks in, complete frames out.

A serial MSR sends one swipe as ASCII track text ended by CR and/or LF; MagTek serial
readers may instead wrap it as ``STX ... ETX`` (with a CR inside, before the ETX). The
framer handles both:

* Outside STX mode, CR, LF or ETX ends a frame. CRLF ends it once (empty frames are never
  emitted, so LF after CR, or blank lines, produce nothing).
* STX drops any partial frame collected so far and starts a wrapped frame, which only ETX
  ends; CR and LF inside it are kept (the parser treats them as noise).
* A frame longer than ``max_frame`` yields ``ReadFailure.TOO_LONG`` once, and the framer
  discards bytes until the next terminator or STX (resync).

Frames are returned as fresh ``bytearray`` objects owned by the caller (who wipes them);
the framer wipes its own buffer whenever it drops data.
"""

from __future__ import annotations

from lobbypay_hw.api import ReadFailure

STX, ETX, LF, CR = 0x02, 0x03, 0x0A, 0x0D

# Three clear tracks plus wrappers stay far below this; an encrypting reader's output
# (about 1100 bytes) fits, so it is recognised rather than cut (tracks.MAX_SWIPE_BYTES).
DEFAULT_MAX_FRAME = 2048

Frame = bytearray | ReadFailure


def wipe(buf: bytearray) -> None:
    """Overwrite a buffer in place, then empty it."""
    for i in range(len(buf)):
        buf[i] = 0
    del buf[:]


class LineFramer:
    __slots__ = ("_buf", "_len", "_max", "_wrapped", "_discarding")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        # Allocated once at full size, so collecting a frame never reallocates (a realloc
        # would leave a stale copy of the swipe in freed memory).
        self._buf = bytearray(max_frame)
        self._len = 0
        self._max = max_frame
        self._wrapped = False  # inside STX ... ETX
        self._discarding = False  # after an overflow, until the next frame boundary

    @property
    def pending(self) -> bool:
        """True when a partial frame is buffered."""
        return self._len > 0

    def feed(self, chunk: bytes | bytearray) -> list[Frame]:
        out: list[Frame] = []
        for b in chunk:
            self._byte(b, out)
        return out

    def flush(self) -> list[Frame]:
        """End of input or an idle gap: emit what is buffered as a frame."""
        out: list[Frame] = []
        if self._len and not self._discarding:
            out.append(self._take())
        self.reset()
        return out

    def reset(self) -> None:
        self._clear()
        self._wrapped = False
        self._discarding = False

    # -------------------------------------------------------------- internals

    def _clear(self) -> None:
        buf = self._buf
        for i in range(self._len):
            buf[i] = 0
        self._len = 0

    def _take(self) -> bytearray:
        frame = bytearray(self._len)
        with memoryview(self._buf) as view:
            frame[:] = view[: self._len]
        self._clear()
        return frame

    def _end(self, out: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
            self._clear()
        elif self._len:
            out.append(self._take())
        self._wrapped = False

    def _byte(self, b: int, out: list[Frame]) -> None:
        if b == STX:
            self._clear()
            self._discarding = False
            self._wrapped = True
            return
        if b == ETX or (not self._wrapped and b in (CR, LF)):
            self._end(out)
            return
        if self._discarding:
            return
        if self._len >= self._max:
            self._clear()
            self._discarding = True
            out.append(ReadFailure.TOO_LONG)
            return
        self._buf[self._len] = b
        self._len += 1
