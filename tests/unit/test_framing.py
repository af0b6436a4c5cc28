"""LineFramer: serial byte chunks -> frames (CR/LF, STX/ETX, overflow resync)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay_hw.api import ReadFailure
from lobbypay_hw.framing import LineFramer, wipe

SWIPE = b"%B4111111111111111^DOE/JOHN^2812101?;4111111111111111=2812101?"

Out = list[bytes | ReadFailure]


def whole(data: bytes, **kw: int) -> Out:
    f = LineFramer(**kw)
    return [x if isinstance(x, ReadFailure) else bytes(x) for x in f.feed(data)]


def bytewise(data: bytes, **kw: int) -> Out:
    f = LineFramer(**kw)
    out: Out = []
    for i in range(len(data)):
        out += [x if isinstance(x, ReadFailure) else bytes(x) for x in f.feed(data[i : i + 1])]
    return out


CASES: list[tuple[bytes, Out]] = [
    (SWIPE + b"\r", [SWIPE]),
    (SWIPE + b"\n", [SWIPE]),
    (SWIPE + b"\r\n", [SWIPE]),
    (SWIPE + b"\r\n" + b";1=2?\r\n", [SWIPE, b";1=2?"]),
    (b"\r\n\r\n" + SWIPE + b"\n\r", [SWIPE]),  # blank lines and LFCR produce nothing
    (SWIPE, []),  # no terminator yet
    # MagTek serial wrapper: STX ESC tracks sensor CR ETX; CR inside is kept
    (b"\x02\x1b" + SWIPE + b"0\r\x03", [b"\x1b" + SWIPE + b"0\r"]),
    (b"\x02" + SWIPE + b"\x03\r\n", [SWIPE]),
    (b"half a swi\x02" + SWIPE + b"\x03", [SWIPE]),  # STX resyncs
    (b"a\x03b\rc\n", [b"a", b"b", b"c"]),  # ETX also ends a bare frame
]


@pytest.mark.parametrize(("data", "frames"), CASES)
def test_whole_and_byte_by_byte(data: bytes, frames: Out) -> None:
    assert whole(data) == frames
    assert bytewise(data) == frames


def test_overflow_reports_once_and_resyncs_at_the_next_terminator() -> None:
    data = b"x" * 30 + b"\r" + b";1=2?\r"
    expected: Out = [ReadFailure.TOO_LONG, b";1=2?"]
    assert whole(data, max_frame=10) == expected
    assert bytewise(data, max_frame=10) == expected


def test_overflow_resyncs_at_stx() -> None:
    data = b"y" * 30 + b"\x02;1=2?\x03"
    assert whole(data, max_frame=10) == [ReadFailure.TOO_LONG, b";1=2?"]


def test_a_frame_of_exactly_max_is_kept() -> None:
    assert whole(b"z" * 10 + b"\n", max_frame=10) == [b"z" * 10]
    assert whole(b"z" * 11 + b"\n", max_frame=10) == [ReadFailure.TOO_LONG]


def test_flush_emits_a_pending_frame_and_reset_drops_it() -> None:
    f = LineFramer()
    assert f.feed(b";1=2?") == [] and f.pending
    assert f.flush() == [bytearray(b";1=2?")]
    assert not f.pending
    f.feed(b"partial")
    f.reset()
    assert f.flush() == []


def test_flush_after_overflow_emits_nothing() -> None:
    f = LineFramer(max_frame=4)
    assert f.feed(b"123456") == [ReadFailure.TOO_LONG]
    assert f.flush() == []
    assert f.feed(b"ok\n") == [bytearray(b"ok")]


def test_internal_buffer_is_wiped_after_a_frame() -> None:
    f = LineFramer(max_frame=64)
    f.feed(SWIPE[:40] + b"\n")
    assert set(f._buf) == {0}


def test_wipe_helper() -> None:
    b = bytearray(b"secret")
    wipe(b)
    assert b == bytearray()


def test_bad_max_frame() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)


@given(
    st.lists(st.sampled_from([SWIPE, b";1=2?", b"junk"]), max_size=6),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=6, max_size=6),
    st.data(),
)
def test_any_chunking_gives_the_same_frames(
    lines: list[bytes], ends: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(line + end for line, end in zip(lines, ends, strict=False))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    f = LineFramer()
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += [bytes(x) for x in f.feed(stream[prev:cut]) if not isinstance(x, ReadFailure)]
        prev = cut
    assert got == lines
