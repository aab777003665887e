"""Feed units: what ``MockAggregator.transmit`` (and any Chainlink-style feed) takes and returns.

A feed answer is an integer in the feed's own decimals (``feed_decimals`` of the market in
``config/markets.toml``: 8 for every shipped feed), NOT a WAD: $50,000.5 is ``5000050000000``, a
funding rate of 0.02%/h is ``20000``. The contracts scale answers to WAD (1e18 = 1.0) themselves;
pushing a WAD (``50000.5e18``) puts the answer outside the feed's bounds, so the market's price is
invalid until a correct answer is pushed. The same helpers ship in JavaScript
(``@ballast/abi/feeds``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ballast.errors import ValidationError

FEED_DECIMALS = 8
"""Decimals of every shipped feed."""
WAD = 10**18


def _fixed(value: int | float | str | Decimal, decimals: int, what: str) -> int:
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValidationError(what, value, "a decimal number") from None
    if not d.is_finite():
        raise ValidationError(what, value, "a finite number")
    scaled = d.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValidationError(what, value, f"at most {decimals} decimals")
    return int(scaled)


def encode_feed_answer(value: int | float | str | Decimal, decimals: int = FEED_DECIMALS) -> int:
    """A human value (50000.5, "0.0002") as a feed answer in ``decimals`` (exact; refuses to round).

    >>> encode_feed_answer("50000.5")
    5000050000000
    """
    if not 0 <= decimals <= 18:
        raise ValidationError("feed decimals", decimals, "0..18")
    return _fixed(value, decimals, "feed answer")


def feed_answer_to_wad(answer: int, decimals: int = FEED_DECIMALS) -> int:
    """A feed answer as WAD, as the contracts scale it."""
    if not 0 <= decimals <= 18:
        raise ValidationError("feed decimals", decimals, "0..18")
    return int(answer) * int(10 ** (18 - decimals))


def wad_to_feed_answer(wad: int, decimals: int = FEED_DECIMALS, *, exact: bool = True) -> int:
    """A WAD value as a feed answer, truncated toward zero (``exact``: refuse a nonzero remainder)."""
    scale = int(10 ** (18 - decimals))
    q, r = divmod(abs(int(wad)), scale)
    if exact and r:
        raise ValidationError("WAD value", wad, f"a multiple of 10^{18 - decimals} (feed with {decimals} decimals)")
    return q if wad >= 0 else -q


def to_wad(value: int | float | str | Decimal) -> int:
    """A human value as WAD (exact)."""
    return _fixed(value, 18, "WAD value")


__all__ = ["FEED_DECIMALS", "WAD", "encode_feed_answer", "feed_answer_to_wad", "to_wad", "wad_to_feed_answer"]
