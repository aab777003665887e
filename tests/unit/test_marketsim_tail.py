"""The calibrated tail feed in the vectorized simulator (issue 12): the on-chain rule, causality,
staleness (fail closed), and the sweep's calibrated controllers."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ballast._typing import WAD
from ballast.calibration import load_calibration
from ballast.config import load_config
from ballast.data import parse_utc
from ballast.errors import ValidationError
from ballast.frontier import load_rows, targets
from ballast.marketsim import Controller, MarketSim, RunSpec, TailFeedSpec, _P, tail_feed_targets, tail_multiplier
from ballast.model import RiskInputs, compute_float
from ballast.model import tail_multiplier as model_tail_multiplier
from ballast.population import generate
from ballast.scenarios import build
from ballast.sweep import (CALIBRATED, COLUMNS, DEFAULT_CALIBRATION, REPLAY_WINDOWS, Store, SweepSpec, calibrated_setup,
                           resolve_calibration, run_task, seed_of, tasks_of, trained_on)
from ballast.tail import TailSpec, publish_tail, publish_tail_path, to_feed_wad

SPEC = TailFeedSpec(alpha=0.99, z=2.326348, spec=TailSpec(cap=5.0), prior={"long": 1.64, "short": 1.87})


def _params(**kw: float) -> tuple[_P, object]:
    cfg = load_config()
    m = cfg.market(0)
    p = m.params
    if kw:
        p = replace(p, **{f"{k}_wad": int(round(v * WAD)) for k, v in kw.items()})
        cfg = replace(cfg, markets=(m.with_params(p),))
    return _P.of(cfg), p


@pytest.mark.parametrize("regime,cap", [(2.0, 3.0), (0.0, 5.0)])
def test_the_simulators_tail_is_the_models_rule(regime: float, cap: float) -> None:
    sp, rp = _params(regime_sens=regime, tail_cap=cap)
    sigma = np.array([0.3, 0.5, 0.9, 1.6, 0.8, 2.5, 0.5, 0.5])
    skew = np.array([-0.05, 0.0, -0.2, 0.1, 0.3, -0.4, 0.0, 0.0])
    feed = np.array([0.0, 1.7, 1.0, 2.2, 0.0, 4.9, 6.0, 1.0])
    for is_long in (True, False):
        got = tail_multiplier(sp, sigma, skew, is_long, feed)
        for k in range(sigma.size):
            wad = model_tail_multiplier(rp, int(sigma[k] * WAD), int(skew[k] * WAD), is_long,  # type: ignore[arg-type]
                                        tail_feed_wad=int(round(feed[k] * WAD)))
            assert got[k] == pytest.approx(wad / WAD, rel=1e-9)
            # and the float model term for term: min(tailCap, max(feed, live))
            x = RiskInputs(sigma_wad=int(sigma[k] * WAD), skew_wad=int(skew[k] * WAD), is_long=is_long,
                           notional_usd_wad=0, depth_usd_wad=50_000_000 * WAD, price_wad=50_000 * WAD,
                           oi_side_wad=0, oi_other_wad=0, funding_rate_wad=0)
            vm = compute_float(rp, x, tail_feed=float(feed[k]))["var_move"]  # type: ignore[arg-type]
            assert sp.z * sigma[k] * sp.sqrt_h * got[k] == pytest.approx(vm, rel=1e-9)
    # the feed only ever raises the live tail, and never past the cap
    live = tail_multiplier(sp, sigma, skew, True)
    with_feed = tail_multiplier(sp, sigma, skew, True, feed)
    assert np.all(with_feed >= live) and np.all(with_feed <= cap)
    assert np.array_equal(tail_multiplier(sp, sigma, skew, True, np.zeros(sigma.size)), live)  # 0: none published


def test_the_path_is_publish_tail_on_each_prefix_and_causal() -> None:
    rng = np.random.default_rng(7)
    n = 320
    close = 50_000 * np.exp(np.cumsum(rng.standard_t(3, size=n) * 0.004))
    ts = np.arange(n, dtype=np.int64) * 300
    kw = dict(alpha=0.99, horizon_sec=3600, prior={"long": 1.64, "short": 1.87})
    for spec in (TailSpec(cap=5.0), TailSpec(window=120, fast_lambda=0.8, cap=5.0)):
        path = publish_tail_path(ts, close, spec=spec, **kw)  # type: ignore[arg-type]
        for t in (2, 11, 12, 40, 130, 131, 250, n - 1):
            want = publish_tail(ts[: t + 1], close[: t + 1], spec=spec, **kw)  # type: ignore[arg-type]
            got = tuple(to_feed_wad(float(path[s][t])) for s in ("long", "short"))
            assert got == want, (t, got, want)
        # a crash after bar t changes nothing at or before t
        t = 200
        shocked = close.copy()
        shocked[t + 1:] *= 0.6
        after = publish_tail_path(ts, shocked, spec=spec, **kw)  # type: ignore[arg-type]
        for s in ("long", "short"):
            assert np.array_equal(after[s][: t + 1], path[s][: t + 1])
        # the crash does enter later (the long side's adverse moves)
        assert not np.array_equal(after["long"][t + 1:], path["long"][t + 1:])


def test_the_simulators_tail_target_at_a_block_ignores_later_prices() -> None:
    sc = build("flash_crash", 3)
    tgt = tail_feed_targets(sc, SPEC, 3600)
    assert tgt.shape == (sc.blocks, 2) and np.all(tgt >= 1.0)
    b = sc.blocks // 3
    moved = replace(sc, price=np.r_[sc.price[: b + 1], sc.price[b + 1:] * 0.5])
    tgt2 = tail_feed_targets(moved, SPEC, 3600)
    assert np.array_equal(tgt2[: b + 1], tgt[: b + 1])
    assert not np.array_equal(tgt2[b + 1:], tgt[b + 1:])


def _run(targets: np.ndarray, blocks: int = 60, accounts: int = 20,
         pokes: list[tuple[int, np.ndarray]] | None = None) -> MarketSim:
    sc = build("flash_crash", 4)
    sc = replace(sc, price=sc.price[:blocks], depth_mult=sc.depth_mult[:blocks], skew_shock=sc.skew_shock[:blocks],
                 funding_shock=sc.funding_shock[:blocks], oracle_stale=sc.oracle_stale[:blocks],
                 oracle_delay=sc.oracle_delay[:blocks])
    tr = generate(accounts, sc.blocks, seed=4, long_bias=sc.long_bias)
    runs = [RunSpec(sc, tr, Controller("dynamic", label="dynamic_fhs", tail_feed=True), 4),
            RunSpec(sc, tr, Controller("dynamic", label="dynamic"), 4)]
    sim = MarketSim(runs, load_config(), tail=SPEC, tail_targets=[targets, targets])
    if pokes is not None:
        inner = sim._poke_side

        def spy(side: int, is_long: bool, mask: np.ndarray, ts: int, *a: object) -> None:
            pokes.append((ts, mask.copy()))
            inner(side, is_long, mask, ts, *a)  # type: ignore[arg-type]

        sim._poke_side = spy  # type: ignore[method-assign]
    return sim.run()


def test_a_published_tail_raises_margin_and_a_stale_one_fails_closed() -> None:
    blocks, cut = 60, 20
    tgt = np.full((blocks, 2), 2.5)
    tgt[cut:] = 0.0  # the reporter has no estimate from block 20 on: nothing more is published
    pokes: list[tuple[int, np.ndarray]] = []
    sim = _run(tgt, blocks, pokes=pokes)
    cfg = load_config()
    heartbeat = cfg.market(0).heartbeat_sec
    max_lev = 1.0 / (cfg.market(0).params.max_imf_wad / WAD)
    s = sim.series
    t0 = int(sim.t0[0])
    last_pub = int(sim.tail_upd[0]) - t0  # the last publication: every refresh_sec while the estimate holds
    assert (cut - 1) * sim.block_sec - 1_800 < last_pub < cut * sim.block_sec
    fresh = np.array([b * sim.block_sec - last_pub <= heartbeat for b in range(blocks)])
    # while fresh: the feed is read (2.5 both sides) and the controller allows less leverage than
    # the same run without it
    assert np.all(s["tail_long"][0, :cut] == 2.5) and np.all(s["tail_short"][0, :cut] == 2.5)
    assert np.all(s["lev_long"][0, 1:cut] < s["lev_long"][1, 1:cut])
    # stale: after the volatility feed's heartbeat the tail reads 0, new risk fails closed at
    # max_imf (2x) on both sides, and the run counts the stale blocks
    stale = ~fresh
    assert stale.any()
    assert np.all(s["tail_long"][0, stale] == 0.0)
    assert np.allclose(s["lev_long"][0, stale], max_lev) and np.allclose(s["lev_short"][0, stale], max_lev)
    assert not np.allclose(s["lev_long"][1, stale], max_lev)  # the run without a tail feed is unaffected
    m = sim.metrics()
    assert m[0]["tail_stale_blocks"] == stale.sum() and m[1]["tail_stale_blocks"] == 0
    assert m[0]["tail_feed_mean"] == pytest.approx(2.5) and m[1]["tail_feed_mean"] == 0.0
    # poke reverts while stale: the run with the stale tail commits no maintenance target, the
    # run without a tail feed goes on
    stale_pokes = [m for ts, m in pokes if not fresh[(ts - t0) // sim.block_sec]]
    assert stale_pokes and not any(m[0] for m in stale_pokes) and any(m[1] for m in stale_pokes)
    assert any(m[0] for ts, m in pokes if fresh[(ts - t0) // sim.block_sec])


def test_a_feed_of_zero_is_the_model_without_it() -> None:
    sim = _run(np.zeros((60, 2)))
    a, b = sim.metrics()
    for k in ("bad_debt_usd", "liquidations", "calm_mean_max_leverage", "liquidation_penalties_usd"):
        assert a[k] == b[k]
    assert np.array_equal(sim.series["lev_long"][0], sim.series["lev_long"][1])


def test_a_tail_feed_needs_an_estimator_and_a_dynamic_controller() -> None:
    with pytest.raises(ValidationError):
        Controller("static", 0.1, 0.05, tail_feed=True)
    sc = build("flash_crash", 1)
    tr = generate(5, sc.blocks, seed=1)
    with pytest.raises(ValidationError):
        MarketSim([RunSpec(sc, tr, Controller("dynamic", tail_feed=True), 1)], load_config())
    with pytest.raises(ValidationError):
        TailFeedSpec(alpha=1.2, z=2.3, spec=TailSpec())
    assert math.isfinite(SPEC.z)


# ------------------------------------------------------------------ the sweep's calibrated controllers


def test_the_sweep_writes_rows_for_the_calibrated_controllers(tmp_path: Path) -> None:
    spec = SweepSpec(("draw:flash_crash", "btc_2020_03_12"), seeds=2, accounts=30, caps=(), chunk=2,
                     calibrated=CALIBRATED).validate()
    rows = [r for t in tasks_of(spec) for r in run_task(t)]
    names = {"dynamic", "static_calm", "static_conservative", "dynamic_fhs", "static_calm_fhs", "dynamic_fhs_gap",
             "static_calm_fhs_gap"}
    assert {r["controller"] for r in rows} == names and len(rows) == 2 * 2 * len(names)
    cfg = load_config()
    for r in rows:
        assert r["status"] in ("ok", "no_stress") and r["orders_settled"] > 0  # a run that traded
        assert all(r[c] is not None for c in COLUMNS)
        # the calibrated rows are in sample exactly where their training data overlap the scenario
        if r["controller"].endswith(("_fhs", "_fhs_gap")):
            assert r["tuned"] == (r["scenario"] == "btc_2020_03_12")
        else:
            assert r["tuned"] is False
    by = {(r["scenario"], r["seed"], r["controller"]): r for r in rows}
    for (src, sd, c), r in by.items():
        if c.startswith("dynamic_fhs"):
            assert r["tail_feed_mean"] >= 1.0 and r["tail_stale_blocks"] == 0  # published, never stale
            assert by[(src, sd, "static_calm" + c[len("dynamic"):])]["calm_mean_max_leverage"] == \
                pytest.approx(r["calm_mean_max_leverage"], rel=0.02)  # the static is pinned to its leverage
        if c == "dynamic_fhs_gap":  # the gap floor caps leverage at 1 / min_imf
            gap = calibrated_setup(cfg, DEFAULT_CALIBRATION, "plain", ("fhs_gap",))[1]["fhs_gap"]
            assert r["calm_mean_max_leverage"] <= WAD / gap.market(0).params.min_imf_wad + 1e-9
    # stored, then the frontier's targets for each dynamic controller against its own static_calm
    store = Store(tmp_path / "sweep.sqlite")
    for t in tasks_of(spec):
        store.save(t, [r for r in rows if r["task_id"] == t.task_id])
    t12 = targets(load_rows([tmp_path / "sweep.sqlite"]))
    assert set(t12) == {"dynamic", "dynamic_fhs", "dynamic_fhs_gap"}
    assert t12["dynamic_fhs"]["baseline"] == "static_calm_fhs"
    assert "btc_2020_03_12" not in t12["dynamic_fhs"]["sources"]  # trained on: not held out
    assert "btc_2020_03_12" in t12["dynamic"]["sources"]
    assert t12["dynamic_fhs"]["gap_paths"] == 2
    g = t12["dynamic_fhs"]["sources"]["draw:flash_crash"]
    want = (sum(by[("draw:flash_crash", sd, "dynamic_fhs")]["bad_debt_usd"] for sd in spec_seeds(spec))
            / sum(by[("draw:flash_crash", sd, "static_calm_fhs")]["bad_debt_usd"] for sd in spec_seeds(spec)))
    assert g["bad_ratio"] == pytest.approx(want)
    assert g["caps_paths"] == 0 and g["caps_ratio"] is None  # no caps in this sweep: no caps-curve figure
    assert t12["dynamic_fhs"]["verdicts"]["gap_no_precursor"] == ("met" if want <= 0.5 else "not met")


def spec_seeds(spec: SweepSpec) -> list[int]:
    return [seed_of(spec.base_seed, "draw:flash_crash", i) for i in range(spec.seeds)]


def test_replay_windows_are_the_scenarios_and_overlap_is_by_data_set_and_time() -> None:
    for name, (_, start, _) in REPLAY_WINDOWS.items():
        assert build(name, 1).start_utc == parse_utc(start) or name == "btc_2021_12_04"
    assert build("btc_2021_12_04", 1).price.size == 2 * 96 * 3  # 2021-12-03 .. 12-05, 15-minute bars x 3 blocks
    cal = load_calibration(resolve_calibration(DEFAULT_CALIBRATION))
    assert trained_on("btc_2020_03_12", cal)  # btc_daily 2020 is a training set
    for s in ("btc_2021_12_04", "sp500_2008_10", "nasdaq_2000_04", "draw:flash_crash"):
        assert not trained_on(s, cal)
    eq = load_calibration(resolve_calibration("docs/calibration-equity.toml"))  # S&P 500 / NASDAQ 1999-2008
    assert trained_on("sp500_2008_10", eq) and trained_on("nasdaq_2000_04", eq) and not trained_on("sp500_2011_08", eq)
    assert trained_on("nasdaq_2001_02", eq) and not trained_on("btc_2021_05", eq)  # the fresh windows too


def test_calibrated_sweep_options_are_validated() -> None:
    with pytest.raises(ValidationError):
        SweepSpec(calibrated=("fhs", "nope")).validate()
    with pytest.raises(ValidationError):
        SweepSpec(calibrated=("fhs",), tail_spec="other").validate()
    with pytest.raises(ValidationError):
        SweepSpec(calibrated=("fhs",), calibration="no/such/file.toml").validate()
    # a calibrated sweep's tasks have other ids than the plain sweep's (resume never mixes them)
    a, b = SweepSpec(("garch",), seeds=2), SweepSpec(("garch",), seeds=2, calibrated=("fhs",))
    assert {t.task_id for t in tasks_of(a)}.isdisjoint(t.task_id for t in tasks_of(b))


# --------------------------------------------------------------------------- depth-scaled penalty (issue 12)


def test_the_simulators_liquidation_penalty_is_scaled_by_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MarketSim._liquidate`` charges (and sizes the close with) the fee times the engine's depth
    share: floor 100% is the old penalty (penalties / liquidated notional = liq_fee); the shipped
    floor charges every liquidation between the floor's share and the full fee, less in total."""
    import ballast.marketsim as ms

    sc = build("btc_2021_12_04", 5)
    tr = generate(120, sc.blocks, seed=5, long_bias=sc.long_bias)
    cfg = load_config()
    fee = cfg.market(0).params.liq_fee_wad / WAD
    shares: list[np.ndarray] = []
    inner = ms.penalty_share

    def spy(eq: np.ndarray, maint: np.ndarray, floor: float, full: float) -> np.ndarray:
        out = inner(eq, maint, floor, full)
        shares.append(out[eq < maint])
        return out

    monkeypatch.setattr(ms, "penalty_share", spy)

    def run(floor: float) -> dict[str, float]:
        c = replace(cfg, engine=replace(cfg.engine, liq_penalty_floor=floor))
        return MarketSim([RunSpec(sc, tr, Controller("dynamic", label="dynamic"), 5)], c).run().metrics()[0]

    old = run(1.0)
    assert old["liquidations"] > 20
    assert old["liquidation_penalties_usd"] / old["liquidated_notional_usd"] == pytest.approx(fee, rel=1e-9)
    assert all(np.all(s == 1.0) for s in shares)
    shares.clear()
    new = run(cfg.engine.liq_penalty_floor)
    got = np.concatenate(shares)
    assert got.size > 20 and got.min() >= cfg.engine.liq_penalty_floor and got.max() <= 1.0
    assert (got < 1.0).mean() > 0.2  # shallow shortfalls exist on this path and pay less
    ratio = new["liquidation_penalties_usd"] / new["liquidated_notional_usd"]
    assert cfg.engine.liq_penalty_floor * fee <= ratio < fee
