"""The card object a reader hands to the agent: brand and last 4 out, tracks only on request.

``BankCard`` satisfies ``lobbypay_hw.api.Card``. The swiped track text lives in one
``bytearray`` that ``wipe()`` overwrites; ``trackdata()`` is the only way to read it.
Everything that could turn the object into text or bytes by accident (``repr``, ``str``,
``format``, ``pickle``, ``copy``, ``vars``) shows brand and last 4 or refuses.
"""

from __future__ import annotations

from datetime import date
from typing import Any, NoReturn


class CardWipedError(RuntimeError):
    """``trackdata()`` was called after ``wipe()``."""


class BankCard:
    """A bank card read from a magnetic stripe. Build it with ``tracks.parse_swipe``."""

    __slots__ = ("_raw", "_brand", "_last4", "_exp_year", "_exp_month", "_wiped", "_tracks")

    def __init__(
        self, raw: bytearray, *, brand: str, last4: str, exp_year: int, exp_month: int,
        tracks: tuple[int, ...] = (2,),
    ) -> None:
        # ``raw`` is taken over, not copied: the caller hands us the only copy.
        if not isinstance(raw, bytearray):
            raise TypeError("BankCard takes the track bytes as a bytearray")
        if len(last4) != 4 or not last4.isdigit():
            raise ValueError("BankCard last4 must be 4 digits")
        if not 1 <= exp_month <= 12:
            raise ValueError("BankCard expiry month out of range")
        self._raw = raw
        self._brand = brand
        self._last4 = last4
        self._exp_year = exp_year
        self._exp_month = exp_month
        self._wiped = False
        self._tracks = tracks

    # ------------------------------------------------------------ safe views

    @property
    def brand(self) -> str:
        return self._brand

    @property
    def last4(self) -> str:
        return self._last4

    @property
    def tracks(self) -> tuple[int, ...]:
        """Which tracks the card data holds (``(1, 2)`` or ``(2,)``): safe to show."""
        return self._tracks

    @property
    def wiped(self) -> bool:
        return self._wiped

    def is_expired(self, today: date) -> bool:
        """True once ``today`` is past the last day of the expiry month."""
        return (today.year, today.month) > (self._exp_year, self._exp_month)

    def __repr__(self) -> str:
        return f"<Card {self._brand} ****{self._last4}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    # ------------------------------------------------------------ the one way out

    def trackdata(self) -> str:
        """The swiped tracks, sentinels included, as text. A ``str`` cannot be wiped:
        the payment path uses ``track_bytes`` instead; this is for tools and tests."""
        if self._wiped:
            raise CardWipedError("card data already wiped")
        return self._raw.decode("ascii")

    def track_bytes(self) -> bytearray:
        """The swiped tracks (ASCII, sentinels included) in a new ``bytearray`` that the
        caller owns and must overwrite when done (the athena client does, right after
        the POST)."""
        if self._wiped:
            raise CardWipedError("card data already wiped")
        return bytearray(self._raw)

    def wipe(self) -> None:
        """Overwrite the track bytes. Safe to call more than once."""
        raw = self._raw
        for i in range(len(raw)):
            raw[i] = 0
        self._wiped = True

    def __del__(self) -> None:
        # Last line of defence: a card dropped without wipe() still gets overwritten.
        try:
            self.wipe()
        except AttributeError:  # __init__ failed before _raw was set
            pass

    # ------------------------------------------------------------ refuse copies

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a card cannot be pickled or copied")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a card cannot be pickled or copied")

    def __copy__(self) -> NoReturn:
        raise TypeError("a card cannot be pickled or copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("a card cannot be pickled or copied")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a card cannot be pickled or copied")
