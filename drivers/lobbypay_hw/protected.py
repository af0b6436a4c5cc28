"""Recognising reader output that protects the card (pure): masked tracks, encrypted fields.

Encrypting and masking readers cannot feed athena, whose ``collectpayment`` takes clear
``trackdata`` only. They must be told apart from a bad swipe, because the fix is on the
operator's side (configure clear-text output, or use another reader), not the patient's:

* **Masked PAN.** MagneSafe readers at security level 3 and IDTech SecureMag replace the
  middle digits of the PAN with a mask character, keeping the first 6 and last 4
  (``4111 11** **** 1111`` or ``4111 1100 0000 1111``). ``*`` anywhere in a track is
  masking. ``0`` masking is ambiguous: Visa's test card 4000 0000 0000 0002 has zeros
  there too, with an all-zero discretionary field. So a PAN is taken as ``0``-masked only
  when its middle digits and its discretionary data are all ``0`` *and* it fails the Luhn
  check (a real PAN passes it; nine masked PANs in ten fail). MagneSafe's own output is
  caught by its ``|`` fields anyway; a ``0``-masked PAN without them that happens to pass
  Luhn is the one case not recognised here (athena declines it).
* **Encrypted fields.** MagneSafe's keyboard-emulation and serial output, and SecureMag's,
  follow the masked tracks with ``|``-separated fields: card encode type, the TDES-DUKPT
  ciphertext of each track, MagnePrint status and data, device serial, KSN, all as hex.
  A ``|`` after a track's end sentinel followed by a long hex field is encrypted output.

``is_protected(raw)`` walks the caller's buffer by index (no ``str``, no slices), like the
parser, and returns a bool: nothing of the input ever leaves it.
Sources: MagneSafe V5 Communication Reference Manual (MagTek 99875475), section
"Masked Track Data"; IDTech SecureMag user manual ("clear data output cannot be selected").
"""

from __future__ import annotations

from lobbypay_hw.luhn import luhn_ok

_STAR, _PIPE, _QMARK, _CARET, _EQ, _PCT, _SEMI = 0x2A, 0x7C, 0x3F, 0x5E, 0x3D, 0x25, 0x3B
_D0, _D9 = 0x30, 0x39

# First 6 and last 4 digits are what masking keeps (PCI DSS 3.4).
_KEEP_HEAD, _KEEP_TAIL = 6, 4
# An encrypted track is at least one TDES block (8 bytes = 16 hex digits); a KSN is 20.
_MIN_HEX_FIELD = 16


def _is_hex(b: int) -> bool:
    return _D0 <= b <= _D9 or 0x41 <= b <= 0x46 or 0x61 <= b <= 0x66


def _has_encrypted_fields(raw: bytes | bytearray) -> bool:
    """A ``|`` after an end sentinel, then a ``|``-separated field of 16+ hex digits."""
    n = len(raw)
    seen_end = False
    i = 0
    while i < n:
        c = raw[i]
        if c == _QMARK:
            seen_end = True
        elif c == _PIPE and seen_end:
            # measure each field up to the next '|' or the end
            run = 0
            hex_only = True
            for j in range(i + 1, n):
                d = raw[j]
                if d == _PIPE:
                    if hex_only and run >= _MIN_HEX_FIELD:
                        return True
                    run = 0
                    hex_only = True
                elif _is_hex(d):
                    run += 1
                elif d in (0x0D, 0x0A, 0x03):
                    break
                else:
                    hex_only = False
            return hex_only and run >= _MIN_HEX_FIELD
        i += 1
    return False


def _pan_masked(raw: bytes | bytearray, a: int, b: int, disc: tuple[int, int] | None) -> bool:
    """Is the PAN at ``raw[a:b]`` masked? ``disc`` is the discretionary data span (track 2)."""
    if b - a < _KEEP_HEAD + _KEEP_TAIL + 2:
        return False
    if any(raw[i] == _STAR for i in range(a, b)):
        return True
    middle = range(a + _KEEP_HEAD, b - _KEEP_TAIL)
    if not all(raw[i] == _D0 for i in middle):
        return False
    if disc is None or disc[1] <= disc[0]:
        return False
    if not all(raw[i] == _D0 for i in range(disc[0], disc[1])):
        return False
    return not luhn_ok(raw, a, b)


def _star_in_track(raw: bytes | bytearray, start: int) -> bool:
    """A ``*`` between ``start`` and the track's end sentinel (``?``)."""
    for i in range(start + 1, len(raw)):
        c = raw[i]
        if c == _QMARK:
            return False
        if c == _STAR:
            return True
    return False


def is_protected(raw: bytes | bytearray) -> bool:
    """True when ``raw`` is masked or encrypted reader output (see the module docstring)."""
    if _has_encrypted_fields(raw):
        return True
    n = len(raw)
    for i in range(n):
        c = raw[i]
        if c == _PCT or c == _SEMI:
            if _star_in_track(raw, i):
                return True
        if c == _SEMI:
            # track 2: ; PAN = YYMM SVC DISC ?
            sep = -1
            end = -1
            for j in range(i + 1, n):
                d = raw[j]
                if d == _EQ and sep < 0:
                    sep = j
                elif d == _QMARK:
                    end = j
                    break
            if sep > 0 and end > sep and _pan_masked(raw, i + 1, sep, (sep + 8, end)):
                return True
    return False
