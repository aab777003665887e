"""Tests for ballast.population.generate: seeding, bounds, the long bias, and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import Web3

from ballast.errors import ValidationError
from ballast.population import MAX_ACCOUNTS, LiquidatorSpec, generate, liquidator_address, trader_address

PROPS = settings(max_examples=25, deadline=None, database=None, derandomize=True)


def test_same_seed_same_population() -> None:
    a = generate(200, 300, seed=42, long_bias=0.6, anticipatory_share=0.3)
    assert a == generate(200, 300, seed=42, long_bias=0.6, anticipatory_share=0.3)
    assert a == generate(200, 300, seed=np.random.default_rng(42), long_bias=0.6, anticipatory_share=0.3)
    b = generate(200, 300, seed=43, long_bias=0.6, anticipatory_share=0.3)
    assert a != b
    assert [t.address for t in a] == [t.address for t in b]  # addresses depend on the index only
    assert sum(x.collateral_usd != y.collateral_usd for x, y in zip(a, b)) > 190


@PROPS
@given(st.integers(1, 120), st.integers(1, 2_000), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0),
       st.floats(0.0, 1.0))
def test_bounds(n: int, blocks: int, seed: int, bias: float, anticip: float) -> None:
    pop = generate(n, blocks, seed=seed, long_bias=bias, anticipatory_share=anticip)
    assert len(pop) == n
    assert len({t.address for t in pop}) == n
    for t in pop:
        assert 0.2 <= t.lev_frac <= 0.97
        assert 0.0 < t.collateral_usd <= 500_000.0 and round(t.collateral_usd, 2) == t.collateral_usd
        assert t.side in (1, -1) and isinstance(t.anticipatory, bool)
        assert Web3.is_checksum_address(t.address)
        assert t.sessions, "every trader trades at least once"
        assert 0 <= t.sessions[0][0] < max(1, int(blocks * 0.3))  # first entry in the first 30%
        prev_close = -1
        for open_b, close_b in t.sessions:
            assert prev_close < open_b < blocks and close_b - open_b >= 6  # ordered, a pause between, held >= 6
            prev_close = close_b


def test_collateral_cap_binds_and_median() -> None:
    pop = generate(2_000, 100, seed=1)
    coll = np.array([t.collateral_usd for t in pop])
    assert coll.max() <= 500_000.0
    assert 3_500 < np.median(coll) < 7_000  # log-normal, median 5,000
    frac = np.array([t.lev_frac for t in pop])
    assert frac.min() >= 0.2 and frac.max() == 0.97  # the clip binds (many near the maximum)
    assert 0.75 < frac.mean() < 0.85


@pytest.mark.parametrize(("bias", "n"), [(0.0, 200), (0.3, 2_000), (0.75, 2_000), (1.0, 200)])
def test_long_bias_is_respected(bias: float, n: int) -> None:
    longs = sum(t.side == 1 for t in generate(n, 50, seed=7, long_bias=bias))
    sd = math.sqrt(n * bias * (1 - bias))
    assert abs(longs - n * bias) <= 5 * sd  # binomial, 5 sigma (exact at 0 and 1)


def test_anticipatory_share_is_respected() -> None:
    assert not any(t.anticipatory for t in generate(200, 50, seed=3))
    assert all(t.anticipatory for t in generate(200, 50, seed=3, anticipatory_share=1.0))
    share = np.mean([t.anticipatory for t in generate(2_000, 50, seed=3, anticipatory_share=0.25)])
    assert abs(share - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 2_000)


@pytest.mark.parametrize(("kw", "field"), [
    ({"n": 0}, "accounts"),
    ({"n": -5}, "accounts"),
    ({"n": MAX_ACCOUNTS + 1}, "accounts"),
    ({"long_bias": -0.01}, "long_bias"),
    ({"long_bias": 1.01}, "long_bias"),
    ({"long_bias": math.nan}, "long_bias"),
    ({"anticipatory_share": 2.0}, "anticipatory_share"),
    ({"blocks": 0}, "blocks"),
])
def test_invalid_arguments(kw: dict[str, float], field: str) -> None:
    args = {"n": 10, "blocks": 100, "long_bias": 0.5, "anticipatory_share": 0.0, **kw}
    with pytest.raises(ValidationError) as info:
        generate(int(args.pop("n")), int(args.pop("blocks")), seed=1, **args)
    assert info.value.field == field


def test_short_runs() -> None:
    """Regression: fewer than 6 blocks made the geometric hold/pause probability exceed 1 (numpy
    ValueError)."""
    for blocks in (1, 2, 5):
        pop = generate(20, blocks, seed=1)
        assert all(t.sessions and t.sessions[0][0] == 0 for t in pop)


def test_addresses_and_liquidators() -> None:
    assert trader_address(0) != trader_address(1) != liquidator_address(0)
    assert {trader_address(i) for i in range(500)}.isdisjoint({liquidator_address(i) for i in range(10)})
    spec = LiquidatorSpec()
    assert spec.count >= 1 and spec.latency_blocks >= 0 and spec.max_per_block >= 1


def test_default_liquidator_capacity_grows_with_the_book() -> None:
    from ballast.population import default_liquidator_count

    assert [default_liquidator_count(n) for n in (1, 300, 399, 400, 1_000, 5_000, 50_000)] == [3, 3, 3, 4, 10, 50, 50]
