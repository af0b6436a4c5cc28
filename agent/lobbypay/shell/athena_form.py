"""The payment POST's form: its body built in a buffer of our own, the card text to mask
in athena's answers, and the overwriting of both once the exchange is over.

Card fields may arrive as ``bytearray`` (the engine's ``trackdata``): they are read in
place and never copied into an immutable object on the way; the body is a ``bytearray``
that goes to shell/http11.py as it is and is overwritten after the exchange.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

#: Form fields that carry card data: masked wherever athena's text might echo them.
CARD_FIELDS: Final = frozenset(
    {
        "trackdata",
        "accountnumber",
        "cardsecuritycode",
        "nameoncard",
        "expirationmonthmm",
        "expirationyearyyyy",
        "billingaddress",
        "billingzip",
    }
)
#: The PAN and the cardholder name inside ``trackdata`` (track 1 ``%B PAN ^ NAME ^``,
#: track 2 ``; PAN =``), so athena's text is masked for them on their own too.
_TRACK_PAN_RE = re.compile(r"(?:%[A-Za-z]|;)(\d{12,19})[\^=]")
_TRACK_NAME_FIELD_RE = re.compile(r"\^([^^?]{2,26})\^")
_TRACK_PAN_BRE = re.compile(rb"(?:%[A-Za-z]|;)(\d{12,19})[\^=]")
_TRACK_NAME_FIELD_BRE = re.compile(rb"\^([^^?]{2,26})\^")
#: RFC 3986 unreserved characters: left as they are in a form-encoded value.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = b"0123456789ABCDEF"


def card_secrets(form: Mapping[str, str | bytearray]) -> tuple[str, ...]:
    """What to mask in athena's text for this POST: each card field verbatim (text
    fields), and from ``trackdata`` the PAN and the cardholder name (whole, and each part
    of 4 or more characters: "SANDBOXTEST/JANE" is also masked as "SANDBOXTEST" and
    "JANE"). Longest first, so a part never splits a longer secret before it is masked.
    (Track-shaped text as a whole is masked by ``clean_peer_text`` anyway.)"""
    out: set[str] = set()
    for key, value in form.items():
        if key not in CARD_FIELDS or not value:
            continue
        if isinstance(value, bytearray):  # read in place: no copy of the whole track
            pans = [m.group(1).decode("ascii") for m in _TRACK_PAN_BRE.finditer(value)]
            names = [m.group(1).decode("ascii", "replace")
                     for m in _TRACK_NAME_FIELD_BRE.finditer(value)]
        else:
            out.add(value)
            if key != "trackdata":
                continue
            pans = [m.group(1) for m in _TRACK_PAN_RE.finditer(value)]
            names = [m.group(1) for m in _TRACK_NAME_FIELD_RE.finditer(value)]
        out.update(pans)
        for name in (n.strip() for n in names):
            out.add(name)
            out.update(p for p in re.split(r"[/ .,-]+", name) if len(p) >= 4)
    return tuple(sorted(out, key=len, reverse=True))


def form_body(form: Mapping[str, str | bytearray]) -> bytearray:
    """``application/x-www-form-urlencoded`` of ``form`` (as httpx would write it), built
    byte by byte into one buffer so that a ``bytearray`` value is never copied into an
    immutable object on the way."""
    out = bytearray()
    for key, value in form.items():
        if out:
            out += b"&"
        _quote_into(out, key.encode("utf-8"))
        out += b"="
        if isinstance(value, bytearray):
            _quote_into(out, value)
        else:
            _quote_into(out, value.encode("utf-8"))
    return out


def _quote_into(out: bytearray, raw: bytes | bytearray) -> None:
    for b in raw:
        if b in _UNRESERVED:
            out.append(b)
        elif b == 0x20:
            out.append(0x2B)  # "+"
        else:
            out += b"%"
            out.append(_HEX[b >> 4])
            out.append(_HEX[b & 15])


def overwrite(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


__all__ = ["CARD_FIELDS", "card_secrets", "form_body", "overwrite"]
