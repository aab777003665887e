"""ballast.diagnose: the bad-debt split by the dynamic cap's looseness against static_calm."""

from __future__ import annotations

import numpy as np
import pytest

from ballast.config import load_config
from ballast.diagnose import Split, looser_blocks, split_run, split_source
from ballast.errors import ValidationError


def test_looser_blocks_reads_the_blocks_before_only():
    lev = np.array([10.0, 30.0, 10.0, 10.0, 10.0, np.nan])
    # static 20x, lookback 2: block b is looser when max(lev[b-2:b]) > 20
    assert looser_blocks(lev, 20.0, 2).tolist() == [False, False, True, True, False, False]
    # block 0 reads itself
    assert looser_blocks(np.array([25.0, 10.0]), 20.0, 1).tolist() == [True, True]


def test_looser_blocks_rejects_a_zero_lookback():
    with pytest.raises(ValidationError, match="lookback"):
        looser_blocks(np.array([1.0]), 1.0, 0)


def test_split_run_sums_each_controllers_increments_by_block():
    lev = np.array([10.0, 30.0, 10.0, 10.0])  # looser blocks with lookback 1: 2 only
    bad_dyn = np.array([0.0, 5.0, 105.0, 106.0])  # increments 0, 5, 100, 1
    bad_st = np.array([0.0, 7.0, 17.0, 47.0])  # increments 0, 7, 10, 30
    s = split_run(bad_dyn, bad_st, lev, 20.0, 1)
    assert s == Split(100.0, 6.0, 10.0, 37.0, 1, 4)
    assert s.dyn_looser + s.dyn_tighter == bad_dyn[-1]
    assert s.static_looser + s.static_tighter == bad_st[-1]
    assert s + s == Split(200.0, 12.0, 20.0, 74.0, 2, 8)


def test_split_run_rejects_mismatched_series():
    with pytest.raises(ValidationError, match="same number of blocks"):
        split_run(np.zeros(3), np.zeros(4), np.zeros(3), 10.0, 1)


def test_split_source_adds_up_to_the_runs_bad_debt():
    from ballast.marketsim import three_controllers
    from ballast.population import LiquidatorSpec, default_liquidator_count, generate
    from ballast.scenarios import build_source

    cfg = load_config()
    s = split_source("flash_crash", [0], cfg, accounts=40, lookback=6)
    sc = build_source("flash_crash", 0)[0]
    r = three_controllers(sc, generate(40, sc.blocks, seed=0, long_bias=sc.long_bias), cfg, ramp_seed=0,
                          liquidators=LiquidatorSpec(count=default_liquidator_count(40)))
    assert s.dyn_looser + s.dyn_tighter == pytest.approx(r["dynamic"]["bad_debt_usd"], rel=1e-12, abs=1e-6)
    assert s.static_looser + s.static_tighter == pytest.approx(r["static_calm"]["bad_debt_usd"], rel=1e-12, abs=1e-6)
    assert s.blocks == sc.blocks and 0 <= s.looser_blocks <= s.blocks
