"""The published tail input of the margin model (issue 12): tail = min(tailCap, max(tailFeed, tailLive)).

tailFeed = 0 (none published) must give the model without the input exactly; a positive feed is
a floor on the live tail under the cap; the float model agrees with the integer one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ballast._typing import WAD
from ballast.errors import ValidationError
from ballast.model import (
    RiskInputs,
    RiskParams,
    compute,
    compute_float,
    max_leverage_float,
    mul_wad_up,
    sqrt_horizon_wad,
    tail_multiplier,
    var_move,
)
from test_model import random_inputs, random_params


def test_zero_feed_is_the_model_without_it() -> None:
    rng = np.random.default_rng(12)
    for _ in range(2000):
        p, x = random_params(rng), random_inputs(rng)
        assert compute(p, x, tail_feed_wad=0) == compute(p, x)
        assert compute_float(p, x, tail_feed=0.0) == compute_float(p, x)
        assert tail_multiplier(p, x.sigma_wad, x.skew_wad, x.is_long, tail_feed_wad=0) == \
            tail_multiplier(p, x.sigma_wad, x.skew_wad, x.is_long)


def _live_uncapped(p: RiskParams, x: RiskInputs) -> int:
    """tailLive before the cap, recomputed from the formula (independent of tail_multiplier)."""
    return tail_multiplier(replace(p, tail_cap_wad=10**40), x.sigma_wad, x.skew_wad, x.is_long)


def test_feed_is_max_with_live_tail_then_capped() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2000):
        p, x = random_params(rng), random_inputs(rng)
        feed = int(rng.integers(0, 6 * WAD))
        live = _live_uncapped(p, x)
        t = tail_multiplier(p, x.sigma_wad, x.skew_wad, x.is_long, tail_feed_wad=feed)
        assert t == min(p.tail_cap_wad, max(feed, live))
        v = mul_wad_up(mul_wad_up(p.z_wad, x.sigma_wad), sqrt_horizon_wad(p.horizon_sec))
        assert var_move(p, x.sigma_wad, x.skew_wad, x.is_long, tail_feed_wad=feed) == mul_wad_up(v, t)
        assert compute(p, x, tail_feed_wad=feed).var_move_wad == mul_wad_up(v, t)


def test_float_model_follows_the_feed() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        p, x = random_params(rng), random_inputs(rng)
        feed = float(rng.uniform(1.0, 5.0))
        exact = compute(p, x, tail_feed_wad=round(feed * WAD)).var_move_wad / WAD
        approx = compute_float(p, x, tail_feed=feed)["var_move"]
        assert approx == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_feed_raises_margin_and_lowers_leverage() -> None:
    from ballast.config import default_params

    p = replace(default_params(), regime_sens_wad=0)
    base = max_leverage_float(p, 0.5)
    assert max_leverage_float(p, 0.5, tail_feed=1.5) < base
    assert max_leverage_float(p, 0.5, tail_feed=0.5) == base  # below tailLive (1): no effect


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_feed_names_value_and_range(bad: object) -> None:
    from ballast.config import default_params

    x = random_inputs(np.random.default_rng(0))
    with pytest.raises(ValidationError, match="tail_feed_wad"):
        compute(default_params(), x, tail_feed_wad=bad)  # type: ignore[arg-type]
    if not isinstance(bad, bool) and bad != 1.5:
        with pytest.raises(ValidationError, match="tail_feed"):
            compute_float(default_params(), x, tail_feed=float(bad))
