"""KeyDecoder: evdev key events -> swipe frames with a fixed US table."""

from __future__ import annotations

from evdev import InputEvent, ecodes
from lobbypay_hw import keymap
from lobbypay_hw.api import ReadFailure
from lobbypay_hw.keymap import KeyDecoder

from tests.fakes.evdev import Clock, key, tap, typed

SWIPE = "%B4111111111111111^DOE/JOHN^2812101000?;4111111111111111=28121010000?"


def run(decoder: KeyDecoder, events: list[InputEvent]) -> list[bytearray | ReadFailure]:
    out: list[bytearray | ReadFailure] = []
    for e in events:
        out += decoder.feed(e.type, e.code, e.value, e.timestamp())
    return out


def test_our_keycodes_match_the_kernel_ones() -> None:
    assert keymap.KEY_ENTER == ecodes.KEY_ENTER
    assert keymap.KEY_KPENTER == ecodes.KEY_KPENTER
    assert keymap.KEY_LEFTSHIFT == ecodes.KEY_LEFTSHIFT
    assert keymap.KEY_RIGHTSHIFT == ecodes.KEY_RIGHTSHIFT
    assert keymap.KEY_CAPSLOCK == ecodes.KEY_CAPSLOCK
    assert keymap.EV_KEY == ecodes.EV_KEY
    assert keymap.US_KEYS[ecodes.KEY_5] == ("5", "%")
    assert keymap.US_KEYS[ecodes.KEY_SLASH] == ("/", "?")
    assert keymap.US_KEYS[ecodes.KEY_SEMICOLON] == (";", ":")


def test_a_typed_swipe_decodes_exactly() -> None:
    assert run(KeyDecoder(), typed(SWIPE)) == [bytearray(SWIPE.encode())]


def test_every_printable_track1_char_round_trips() -> None:
    text = "%B ^/.-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ=?;"
    assert run(KeyDecoder(), typed(text)) == [bytearray(text.encode())]


def test_right_shift_and_lowercase() -> None:
    events = typed("%B^?", shift=ecodes.KEY_RIGHTSHIFT) + typed("ab", enter=None)
    events += tap(Clock(1_700_000_001.0), ecodes.KEY_ENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"%B^?"), bytearray(b"ab")]


def test_shift_is_tracked_per_key() -> None:
    c = Clock()
    events = key(c, ecodes.KEY_LEFTSHIFT, 1) + key(c, ecodes.KEY_RIGHTSHIFT, 1)
    events += key(c, ecodes.KEY_LEFTSHIFT, 0) + tap(c, ecodes.KEY_5)  # right still held
    events += key(c, ecodes.KEY_RIGHTSHIFT, 0) + tap(c, ecodes.KEY_5)
    events += tap(c, ecodes.KEY_ENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"%5")]


def test_caps_lock_toggles_letters_only() -> None:
    c = Clock()
    events = tap(c, ecodes.KEY_CAPSLOCK) + tap(c, ecodes.KEY_B) + tap(c, ecodes.KEY_1)
    events += (
        key(c, ecodes.KEY_LEFTSHIFT, 1) + tap(c, ecodes.KEY_B) + key(c, ecodes.KEY_LEFTSHIFT, 0)
    )
    events += tap(c, ecodes.KEY_CAPSLOCK) + tap(c, ecodes.KEY_B) + tap(c, ecodes.KEY_ENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"B1bb")]


def test_autorepeat_is_ignored() -> None:
    c = Clock()
    events = key(c, ecodes.KEY_4, 1) + key(c, ecodes.KEY_4, 2) + key(c, ecodes.KEY_4, 2)
    events += key(c, ecodes.KEY_4, 0) + tap(c, ecodes.KEY_ENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"4")]


def test_keypad_enter_and_keypad_digits_end_and_fill_frames() -> None:
    c = Clock()
    events = tap(c, ecodes.KEY_KP4) + tap(c, ecodes.KEY_KP1) + tap(c, ecodes.KEY_KPENTER)
    events += typed(";1=", c, enter=ecodes.KEY_KPENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"41"), bytearray(b";1=")]


def test_ctrl_letters_give_control_characters() -> None:
    c = Clock()
    events = key(c, ecodes.KEY_LEFTCTRL, 1) + tap(c, ecodes.KEY_B) + key(c, ecodes.KEY_LEFTCTRL, 0)
    events += typed(";1?", c, enter=None)
    events += (
        key(c, ecodes.KEY_RIGHTCTRL, 1) + tap(c, ecodes.KEY_C) + key(c, ecodes.KEY_RIGHTCTRL, 0)
    )
    events += tap(c, ecodes.KEY_ENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"\x02;1?\x03")]


def test_unknown_keys_and_non_key_events_are_ignored() -> None:
    c = Clock()
    events = tap(c, ecodes.KEY_F5) + tap(c, ecodes.KEY_UP) + typed("9", c)
    events.insert(0, InputEvent(1, 0, ecodes.EV_REL, ecodes.REL_X, 5))
    assert run(KeyDecoder(), events) == [bytearray(b"9")]


def test_empty_enter_makes_no_frame() -> None:
    c = Clock()
    assert run(KeyDecoder(), tap(c, ecodes.KEY_ENTER) + tap(c, ecodes.KEY_KPENTER)) == []


def test_idle_gap_ends_a_frame_without_terminator() -> None:
    c = Clock()
    first = typed(";12?", c, enter=None)
    # the next key arrives 2 s later: the first frame is complete on its own
    second = key(c, ecodes.KEY_5, 1, dt=2.0) + key(c, ecodes.KEY_5, 0) + tap(c, ecodes.KEY_ENTER)
    d = KeyDecoder(idle_gap_s=0.5)
    assert run(d, first) == []
    assert d.pending
    assert run(d, second) == [bytearray(b";12?"), bytearray(b"5")]


def test_flush_ends_a_pending_frame() -> None:
    d = KeyDecoder()
    assert run(d, typed(";9?", enter=None)) == []
    assert d.flush() == [bytearray(b";9?")]
    assert not d.pending and d.flush() == []


def test_gaps_below_the_idle_limit_keep_the_frame() -> None:
    c = Clock(step_s=0.2)  # slow, but each gap < 0.5 s
    assert run(KeyDecoder(idle_gap_s=0.5), typed(";12?", c)) == [bytearray(b";12?")]


def test_too_long_reports_once_and_resyncs() -> None:
    c = Clock()
    events = typed("1" * 20, c) + typed(";2?", c)
    assert run(KeyDecoder(max_frame=8), events) == [ReadFailure.TOO_LONG, bytearray(b";2?")]


def test_two_keyboards_each_decode_alone() -> None:
    """Each device has its own decoder: a second keyboard typing mid-swipe (and holding
    shift) cannot add characters to, or change the shift state of, the reader's frame."""
    reader_events = typed(SWIPE, Clock(1000.0, 0.002))
    other_events = [key(Clock(1000.001, 0.002), ecodes.KEY_LEFTSHIFT, 1)[1]]
    other_events += typed("hello", Clock(1000.003, 0.002))
    # interleave by timestamp, as they would arrive
    tagged = [("r", e) for e in reader_events] + [("k", e) for e in other_events]
    tagged.sort(key=lambda t: t[1].timestamp())
    reader, keyboard = KeyDecoder(), KeyDecoder()
    out: dict[str, list[bytearray | ReadFailure]] = {"r": [], "k": []}
    for who, e in tagged:
        dec = reader if who == "r" else keyboard
        out[who] += dec.feed(e.type, e.code, e.value, e.timestamp())
    assert out["r"] == [bytearray(SWIPE.encode())]
    assert out["k"] == [bytearray(b"HELLO")]


def test_reset_forgets_partial_frame_and_modifiers() -> None:
    c = Clock()
    d = KeyDecoder()
    run(d, key(c, ecodes.KEY_LEFTSHIFT, 1) + typed("12", c, enter=None))
    d.reset()
    assert not d.pending
    assert run(d, typed("5", c)) == [bytearray(b"5")]


def test_autorepeat_neither_duplicates_nor_loses_overlapping_keys() -> None:
    # a reader that presses the next key before releasing the last, with the kernel's
    # autorepeat firing on the held key and on a held shift
    c = Clock()
    events = key(c, ecodes.KEY_4, 1) + key(c, ecodes.KEY_4, 2) + key(c, ecodes.KEY_1, 1)
    events += key(c, ecodes.KEY_4, 0) + key(c, ecodes.KEY_1, 2) + key(c, ecodes.KEY_1, 0)
    events += key(c, ecodes.KEY_LEFTSHIFT, 1) + key(c, ecodes.KEY_LEFTSHIFT, 2)
    events += tap(c, ecodes.KEY_B) + key(c, ecodes.KEY_LEFTSHIFT, 2) + tap(c, ecodes.KEY_6)
    events += key(c, ecodes.KEY_LEFTSHIFT, 0) + tap(c, ecodes.KEY_KPENTER)
    assert run(KeyDecoder(), events) == [bytearray(b"41B^")]


def test_caps_lock_led_sets_the_state() -> None:
    c = Clock()
    d = KeyDecoder()
    d.set_caps_lock(True)  # the reader found the LED lit and types capitals unshifted
    events = tap(c, ecodes.KEY_B) + [InputEvent(1, 0, ecodes.EV_LED, ecodes.LED_CAPSL, 0)]
    events += tap(c, ecodes.KEY_B) + [InputEvent(1, 0, ecodes.EV_LED, ecodes.LED_CAPSL, 1)]
    events += tap(c, ecodes.KEY_B) + tap(c, ecodes.KEY_ENTER)
    assert run(d, events) == [bytearray(b"BbB")]
    assert keymap.EV_LED == ecodes.EV_LED and keymap.LED_CAPSL == ecodes.LED_CAPSL
