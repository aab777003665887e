"""The calm-period static cap taken from a dynamic lab run (``ballast.lab.calm_fractions_from_run``)."""

from __future__ import annotations

import math

from ballast.lab import calm_fractions_from_run


def _series(vol: list[float], lev: list[float], mmf: list[float]) -> dict[str, list[float]]:
    return {"vol": vol, "max_lev_long": lev, "max_lev_short": lev, "mmf_long": mmf, "mmf_short": mmf}


def test_calm_blocks_are_those_below_the_median_volatility() -> None:
    f = calm_fractions_from_run(_series([0.4, 0.4, 0.9, 0.9], [20.0, 20.0, 5.0, 5.0], [0.02, 0.02, 0.1, 0.1]))
    assert f.imf == round(1 / 20.0, 6)
    assert f.mmf == 0.02


def test_a_flat_volatility_feed_makes_every_block_calm_not_nan() -> None:
    """The predictive keeper without a GARCH estimate publishes one constant volatility: no block is
    below the median, and the cap is the mean over every block (it was NaN)."""
    f = calm_fractions_from_run(_series([0.5] * 4, [20.0, 20.0, 10.0, 10.0], [0.02, 0.02, 0.04, 0.04]))
    assert math.isfinite(f.imf) and math.isfinite(f.mmf)
    assert f.imf == round(1 / 15.0, 6)
    assert f.mmf == round(1 / ((1 / 0.02 + 1 / 0.04) / 2), 6)
