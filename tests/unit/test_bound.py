"""The oracle bound (``ballast.bound``, issue 12): a non-causal diagnostic. Its ``shipped`` variant
is ``three_controllers``' comparison, its look-ahead feed reads exactly the next H seconds of the
path (and nothing past its end), its instant ramp has no delay and lands in the block it is
computed, and a source that measured nothing is an error."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ballast.bound import (ForesightFeed, InstantSim, Variant, check_stress, instant_config, lookahead_vol,
                           run_paths)
from ballast.config import load_config
from ballast.errors import ScenarioError
from ballast.keeper import FeedModel
from ballast.marketsim import Controller, MarketSim, RunSpec, _P, three_controllers
from ballast.population import generate
from ballast.scenarios import ScenarioPath, build

YEAR = 365 * 86_400


def _path(blocks: int = 120, block_sec: int = 300, seed: int = 3) -> ScenarioPath:
    rng = np.random.default_rng(seed)
    hist = 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, 300)))
    price = hist[-1] * np.exp(np.cumsum(rng.normal(0.0, 0.006, blocks)))
    price[blocks // 2:] *= 0.8  # a gap
    return ScenarioPath(name="hand", block_sec=block_sec, price=price, depth_mult=np.ones(blocks),
                        skew_shock=np.zeros(blocks), funding_shock=np.zeros(blocks),
                        oracle_stale=np.zeros(blocks, dtype=bool), oracle_delay=np.zeros(blocks, dtype=np.int64),
                        history=hist, history_sec=block_sec)


def test_shipped_variant_is_three_controllers() -> None:
    cfg = load_config()
    seeds = [5, 6]
    paths = [build("flash_crash", s) for s in seeds]
    pops = [generate(30, p.blocks, seed=s, long_bias=p.long_bias) for p, s in zip(paths, seeds)]
    rows = run_paths("flash_crash", paths, pops, seeds, cfg, [Variant("shipped")])
    for p, t, s in zip(paths, pops, seeds):
        ref = three_controllers(p, t, cfg, ramp_seed=s)
        mine = {r["controller"]: r for r in rows if r["seed"] == s}
        for k, v in ref["dynamic"].items():
            assert mine["dynamic"][k] == v or (math.isnan(v) and math.isnan(mine["dynamic"][k])), k
        for k, v in ref["static_calm"].items():
            assert mine["static_calm"][k] == v or (math.isnan(v) and math.isnan(mine["static_calm"][k])), k
        assert ref["dynamic"]["bad_debt_usd"] > 0 or ref["static_calm"]["bad_debt_usd"] > 0  # a real comparison


def test_foresight_feed_is_the_realized_vol_of_the_next_h_seconds() -> None:
    sp = _path()
    ahead = 3_600  # 12 blocks
    k = ahead // sp.block_sec
    fm = ForesightFeed(sp, "trailing", ahead_sec=ahead)
    tr = FeedModel(sp, "trailing")
    r = np.diff(np.log(sp.price))
    for b in range(sp.blocks):
        window = r[b:min(b + k, sp.blocks - 1)]  # returns from block b to b + k, cut at the path's end
        rv = math.sqrt(float(np.mean(window**2)) * YEAR / sp.block_sec) if window.size else 0.0
        got, want = fm.targets(b, 1.0, 2.0), tr.targets(b, 1.0, 2.0)
        assert got["volatility"] == pytest.approx(max(want["volatility"], rv), rel=1e-12)
        assert got["volatility"] >= want["volatility"]
        assert {x: got[x] for x in got if x != "volatility"} == {x: want[x] for x in want if x != "volatility"}
    np.testing.assert_array_equal(fm.vol, tr.vol)  # the traders' reading and the depth input stay trailing
    assert fm.ahead[-1] == 0.0
    # the gap lies ahead of the blocks before it: the feed is high before it happens
    g = sp.blocks // 2 - 1
    assert fm.targets(g - 3, 0.0, 0.0)["volatility"] > 3 * tr.targets(g - 3, 0.0, 0.0)["volatility"]


def test_lookahead_reads_only_the_window_and_never_past_the_end() -> None:
    sp = _path()
    k = 6
    base = lookahead_vol(sp.price, sp.block_sec, k * sp.block_sec)
    for b in (0, 40, sp.blocks - k - 1):
        p2 = sp.price.copy()
        p2[b + k + 1:] *= 0.5  # a different future beyond the window
        assert lookahead_vol(p2, sp.block_sec, k * sp.block_sec)[b] == base[b]
    # a prefix of the path gives the same values wherever the window fits in it: no read past the end
    m = 70
    short = lookahead_vol(sp.price[:m], sp.block_sec, k * sp.block_sec)
    np.testing.assert_array_equal(short[:m - k], base[:m - k])
    assert short.shape == (m,) and np.all(np.isfinite(short)) and short[-1] == 0.0


def test_instant_config_has_no_delay_and_a_ramp_that_lands_in_its_block() -> None:
    cfg = load_config()
    ic = instant_config(cfg)
    p = _P.of(ic)
    assert p.jitter == 0
    assert p.ramp_rate * 1 >= p.max_mmf  # from any level to any target within one second
    assert _P.of(cfg).jitter > 0 and cfg.market(0).params.ramp_jitter_sec > 0  # the shipped config is untouched
    assert replace(ic.market(0).params, ramp_jitter_sec=cfg.market(0).params.ramp_jitter_sec,
                   mmf_ramp_wad_per_sec=cfg.market(0).params.mmf_ramp_wad_per_sec) == cfg.market(0).params
    sp = _path()
    tr = generate(10, sp.blocks, seed=1)
    for cls in (InstantSim, MarketSim):
        sim = cls([RunSpec(sp, tr, Controller("dynamic"), 1)], ic)
        sim._reset()
        ts = int(sim.t0[0]) + 10 * sp.block_sec
        sim.ramp[0] = [np.array([0.01]), np.array([0.05]), np.array([ts]), np.array([sim.p.ramp_rate])]
        now = float(sim._ramp_value(0, ts)[0])
        assert now == (0.05 if cls is InstantSim else 0.01)  # the contract's ramp starts the second after
        assert float(sim._ramp_value(0, ts + sp.block_sec)[0]) == 0.05  # either way at its target one block on
    # a whole run: every tightening poke leaves maintenance at its target within the block
    sim = InstantSim([RunSpec(sp, tr, Controller("dynamic"), 1)], ic).run()
    fr, to, act, _ = sim.ramp[0]
    assert float(sim._ramp_value(0, int(act[0]))[0]) == float(to[0])


def test_no_trading_and_no_stress_are_errors_naming_the_source() -> None:
    cfg = load_config()
    sp = _path(blocks=40)
    idle = [replace(t, sessions=()) for t in generate(5, sp.blocks, seed=2)]
    with pytest.raises(ScenarioError, match="source hand seed 2 .*no order settled"):
        run_paths("hand", [sp], [idle], [2], cfg, [Variant("shipped")])
    with pytest.raises(ScenarioError, match="source quiet: no run"):
        check_stress("quiet", [])
    calm = [{"seed": s, "liquidations": 0.0, "bad_debt_usd": 0.0} for s in (1, 2)]
    with pytest.raises(ScenarioError, match="source quiet: no stress"):
        check_stress("quiet", calm)
    assert check_stress("mixed", calm + [{"seed": 3, "liquidations": 2.0, "bad_debt_usd": 0.0}]) == 2


def test_intraday_variant_runs_the_intraday_keeper() -> None:
    from ballast.bound import INTRADAY_VARIANTS, select_variants
    from ballast.errors import ValidationError
    from ballast.population import LiquidatorSpec, default_liquidator_count

    cfg = load_config()
    sc = build("sp500_2008_10", 4)
    pop = generate(30, sc.blocks, seed=4, long_bias=sc.long_bias)
    v = select_variants([Variant("shipped")], "intraday")[0]
    assert v is INTRADAY_VARIANTS[0] and v.keeper == "intraday" and not v.instant
    rows = run_paths("sp500_2008_10", [sc], [pop], [4], cfg, [v])
    liq = LiquidatorSpec(count=default_liquidator_count(30))
    ref = MarketSim([RunSpec(sc, pop, Controller("dynamic", label="dynamic@intraday"), 4)], cfg,
                    keeper_mode="intraday", liquidators=liq).run().metrics()[0]
    trailing = MarketSim([RunSpec(sc, pop, Controller("dynamic"), 4)], cfg, liquidators=liq).run().metrics()[0]
    mine = next(r for r in rows if r["controller"] == "dynamic@intraday")
    for k, x in ref.items():
        assert mine[k] == x or (math.isnan(x) and math.isnan(mine[k])), k
    assert mine["calm_mean_max_leverage"] != trailing["calm_mean_max_leverage"]  # a different feed
    assert select_variants([Variant("shipped")], "") == (Variant("shipped"),)
    with pytest.raises(ValidationError, match="--variants"):
        select_variants([Variant("shipped")], "psychic")
