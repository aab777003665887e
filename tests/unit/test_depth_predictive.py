"""The predictive depth feed (issue 12, "predictive signals"): ``ballast.keeper.predictive_depth``
and ``FeedModel(depth_mode="predictive")``, used alike by the simulator and the lab.

The rule never publishes more depth than the trailing feed, publishes a drought's lower depth
before the trailing feed does, is causal, leaves the trailing mode's figures unchanged, and a sweep
with ``--depth-mode predictive`` produces labelled rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ballast.config import load_config
from ballast.errors import ValidationError
from ballast.frontier import load_rows
from ballast.keeper import DEPTH_FLOOR, FeedModel, predictive_depth
from ballast.marketsim import Controller, MarketSim, RunSpec
from ballast.population import generate
from ballast.scenarios import build
from ballast.stress import StressOptions
from ballast.sweep import Store, SweepSpec, run_task, tasks_of


def _drought(n: int = 300, start: int = 100, per_block: float = -0.02, floor: float = 0.05) -> np.ndarray:
    """A synthetic book: flat, then thinning log-linearly to ``floor`` of normal, then flat."""
    d = np.ones(n)
    d[start:] = np.maximum(floor, np.exp(per_block * np.arange(n - start)))
    return 50e6 * d


def test_never_above_trailing_and_at_most_floor_below() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        trailing = 50e6 * np.exp(np.cumsum(rng.normal(0, 0.05, 400)))
        for block_sec in (60, 300, 3_600, 86_400):
            p = predictive_depth(trailing, block_sec, 3_600)
            assert p.shape == trailing.shape
            assert np.all(p <= trailing)
            assert np.all(p >= DEPTH_FLOOR * trailing * (1 - 1e-12))


def test_a_rising_or_flat_book_is_published_as_is() -> None:
    up = 50e6 * np.exp(np.linspace(0, 1, 200))
    assert np.array_equal(predictive_depth(up, 300, 3_600), up)
    flat = np.full(50, 50e6)
    assert np.array_equal(predictive_depth(flat, 300, 3_600), flat)


def test_leads_a_synthetic_drought() -> None:
    trailing = _drought()
    pred = predictive_depth(trailing, 300, 3_600)  # horizon 12 blocks of 300 s
    # while the book thins, the forecast is the trend one horizon on: the trailing value 12 blocks later
    b = 150
    assert pred[b] == pytest.approx(trailing[b + 12], rel=1e-9)
    for level in (0.5, 0.2, 0.1):
        first_t = int(np.argmax(trailing <= level * 50e6))
        first_p = int(np.argmax(pred <= level * 50e6))
        assert first_p < first_t, (level, first_p, first_t)
        assert first_t - first_p >= 10  # about one horizon (12 blocks) earlier
    # at the floor (book no longer thinning, one horizon later) both agree again
    assert pred[-1] == trailing[-1]


def test_causal() -> None:
    trailing = _drought()
    base = predictive_depth(trailing, 300, 3_600)
    rng = np.random.default_rng(0)
    for t in (0, 5, 99, 150, 298):
        other = trailing.copy()
        other[t + 1:] = rng.uniform(1e3, 1e8, other.size - t - 1)
        again = predictive_depth(other, 300, 3_600)
        assert np.array_equal(again[:t + 1], base[:t + 1])


def test_feed_model_causal_and_conservative_on_a_drought_scenario() -> None:
    sc = build("liquidity_drought", 4)
    trail = FeedModel(sc, "trailing")
    pred = FeedModel(sc, "trailing", depth_mode="predictive")
    dt = np.array([trail.targets(b, 0.0, 0.0)["depth"] for b in range(sc.blocks)])
    dp = np.array([pred.targets(b, 0.0, 0.0)["depth"] for b in range(sc.blocks)])
    assert np.all(dp <= dt)
    first_t, first_p = int(np.argmax(dt <= 0.2 * 50e6)), int(np.argmax(dp <= 0.2 * 50e6))
    assert first_p < first_t
    # the other feeds do not move with the depth mode
    for b in (0, 120, 250):
        a, c = trail.targets(b, 1.0, 2.0), pred.targets(b, 1.0, 2.0)
        assert {k: v for k, v in a.items() if k != "depth"} == {k: v for k, v in c.items() if k != "depth"}
    # changing the path (book and price) after block t leaves every target up to t unchanged
    t = 180
    mult = sc.depth_mult.copy()
    mult[t + 1:] = 1e-3
    price = sc.price.copy()
    price[t + 1:] *= 0.5
    changed = FeedModel(dataclasses.replace(sc, depth_mult=mult, price=price), "trailing", depth_mode="predictive")
    assert [changed.targets(b, 0.0, 0.0) for b in range(t + 1)] == [pred.targets(b, 0.0, 0.0) for b in range(t + 1)]


def test_trailing_depth_mode_is_the_old_formula() -> None:
    sc = build("flash_crash", 2)
    fm = FeedModel(sc, "trailing")
    for b in range(sc.blocks):
        sigma = float(max(fm.vol[b], 0.01))
        old = fm.base_depth_usd * float(sc.depth_mult[b]) * min(1.0, fm.sigma_ref / sigma)
        assert fm.targets(b, 0.0, 0.0)["depth"] == max(old, 1_000.0)


def test_simulator_trailing_unchanged_and_predictive_reads_the_keeper() -> None:
    cfg = load_config()
    sc = build("liquidity_drought", 7)
    tr = generate(20, sc.blocks, seed=7, long_bias=sc.long_bias)
    runs = [RunSpec(sc, tr, Controller("dynamic"), 7)]
    default = MarketSim(runs, cfg).run()
    trailing = MarketSim(runs, cfg, depth_mode="trailing").run()
    assert default.metrics() == trailing.metrics()
    pred = MarketSim(runs, cfg, depth_mode="predictive")
    horizon = cfg.market(0).params.horizon_sec
    fm = FeedModel(sc, "trailing", base_depth_usd=cfg.market(0).initial["depth"], depth_mode="predictive",
                   horizon_sec=horizon)
    lo, hi = pred.p.bounds["depth"]
    want = np.clip([fm.targets(b, 0.0, 0.0)["depth"] for b in range(sc.blocks)], lo, hi)
    assert np.array_equal(pred.tgt["depth"][0], want)
    assert np.all(pred.tgt["depth"][0] <= default.tgt["depth"][0])


def test_a_sweep_with_the_predictive_depth_gives_labelled_rows(tmp_path: Path) -> None:
    spec = SweepSpec(scenarios=("draw:liquidity_drought",), seeds=1, accounts=12, caps=(), chunk=1,
                     depth_mode="predictive").validate()
    (task,) = tasks_of(spec)
    assert task.depth_mode == "predictive"
    plain = tasks_of(dataclasses.replace(spec, depth_mode="trailing"))[0]
    assert plain.task_id != task.task_id  # a trailing sweep's task ids are not taken
    rows = run_task(task)
    assert {r["controller"] for r in rows} == {"dynamic", "static_calm", "static_conservative"}
    assert all(r["orders_settled"] for r in rows)
    store = Store(tmp_path / "sweep.sqlite")
    store.save(task, rows)
    labelled = load_rows([tmp_path / "sweep.sqlite"])
    assert {r["controller"] for r in labelled} == {"dynamic@depth_predictive", "static_calm@depth_predictive",
                                                    "static_conservative@depth_predictive"}


def test_depth_mode_is_validated() -> None:
    with pytest.raises(ValidationError):
        FeedModel(build("flash_crash", 1), "trailing", depth_mode="leading")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SweepSpec(scenarios=("flash_crash",), depth_mode="leading").validate()
    with pytest.raises(ValidationError):
        StressOptions(depth_mode="leading").validate()  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        predictive_depth(np.ones(3), 0, 3_600)
    StressOptions(depth_mode="predictive").validate()
