"""Tests for ballast.tail (the published tail feed) and the gap floor of ``ballast calibrate`` (issue 12)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ballast._typing import WAD
from ballast.data import PriceHistory
from ballast.errors import ValidationError
from ballast.risk.backtest import adverse_moves
from ballast.tail import TailSpec, min_windows, past_quantile, publish_tail, tail_feed_series, to_feed_wad

HOUR = 3_600


def _history(n: int, seed: int, *, interval: int = 900, jump_at: int | None = None) -> PriceHistory:
    """A fat-tailed random walk with OHLC bars (student-t returns, wicks), optional -20% jump."""
    rng = np.random.default_rng(seed)
    r = 0.003 * rng.standard_t(3, n)
    if jump_at is not None:
        r[jump_at] = -0.2
    close = 50_000.0 * np.exp(np.cumsum(r))
    opn = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(0.002 * rng.standard_t(3, (2, n)))
    ts = 1_600_000_000 + interval * np.arange(n)
    return PriceHistory(ts, opn, np.maximum(opn, close) * (1 + wick[0]), np.minimum(opn, close) * (1 - wick[1]),
                        close, interval, "synthetic")


def test_feed_is_causal() -> None:
    """The feed at bar t does not change when every bar after t changes."""
    a, b = _history(2_000, 1), _history(2_000, 1, jump_at=1_500)
    spec = TailSpec(window=500, fast_lambda=0.8)
    fa = tail_feed_series(a, 4, 0.99, spec)
    fb = tail_feed_series(b, 4, 0.99, spec)
    for side in ("long", "short"):
        # windows starting at t cover bars t+1..t+4: a jump at bar 1500 is first seen by the feed at bar 1500
        np.testing.assert_array_equal(fa[side][:1_500], fb[side][:1_500])
    assert np.nanmax(fb["long"][1_500:]) > np.nanmax(fa["long"][1_500:])


def test_feed_bounds_prior_and_none() -> None:
    h = _history(1_500, 2)
    spec = TailSpec(cap=2.0)
    need = min_windows(0.995)
    f = tail_feed_series(h, 4, 0.995, spec)
    g = tail_feed_series(h, 4, 0.995, spec, prior={"long": 1.7, "short": 1.3})
    for side in ("long", "short"):
        known = f[side][np.isfinite(f[side])]
        before = known == 0.0  # too few windows: none published
        assert before.any() and np.all((known[~before] >= 1.0) & (known[~before] <= 2.0))
    first = int(np.flatnonzero(np.isfinite(f["long"]))[0])
    assert f["long"][first] == 0.0 and g["long"][first] == 1.7 and g["short"][first] == 1.3
    assert need == 200


def test_feed_is_the_fhs_quantile_over_z() -> None:
    """Without the fast filter, feed * z is the alpha quantile of the past standardized moves."""
    from scipy.stats import norm  # type: ignore[import-untyped]

    from ballast.risk.volatility import EWMA
    from ballast.model import YEAR_SEC

    h, steps, a, t = _history(1_200, 3), 4, 0.99, 1_000
    feed = tail_feed_series(h, steps, a, TailSpec(cap=5.0))["short"][t]
    sig = (EWMA(0.94).estimate(h) * math.sqrt(h.interval_seconds / YEAR_SEC) * math.sqrt(steps))[: len(h) - steps]
    moves = adverse_moves(h, steps, "short")[0]
    ends_ok = np.arange(sig.size) + steps <= t
    u = (moves / sig)[ends_ok & np.isfinite(sig)]
    q = np.quantile(u, a, method="inverted_cdf")
    expected = min(5.0, max(1.0, q / norm.ppf(a)))
    assert feed == pytest.approx(expected, abs=1e-6)  # rounded up to 1e-6


def test_rolling_window_quantile() -> None:
    vals = np.arange(10, dtype=float)
    q = past_quantile(vals, np.arange(10), np.array([9]), 0.5, window=4, min_obs=2)
    assert q[0] == 7.0  # last four: 6, 7, 8, 9; inverted CDF median = the 2nd
    assert np.isnan(past_quantile(vals, np.arange(10), np.array([0]), 0.5, min_obs=2)[0])


def test_publish_tail_matches_the_model_input() -> None:
    h = _history(3_000, 4)
    spec = TailSpec(window=1_000, fast_lambda=0.8, cap=4.0)
    lw, sw = publish_tail(h.timestamps, h.close, high=h.high, low=h.low, alpha=0.99, horizon_sec=HOUR, spec=spec)
    assert WAD <= lw <= 4 * WAD and WAD <= sw <= 4 * WAD and lw % 10**12 == 0
    # too short a history for the volatility: none published
    assert publish_tail(h.timestamps[:5], h.close[:5], alpha=0.99, horizon_sec=HOUR, spec=spec) == (0, 0)
    assert to_feed_wad(1.234567) == 1_234_567 * 10**12 and to_feed_wad(0.0) == 0


@pytest.mark.parametrize(("kw", "name"), [({"window": 10}, "window"), ({"fast_lambda": 0.97}, "fast_lambda"),
                                          ({"cap": 6.0}, "cap"), ({"combine_expanding": True}, "combine_expanding")])
def test_bad_spec_names_value_and_range(kw: dict[str, object], name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        TailSpec(**kw)  # type: ignore[arg-type]


def test_publish_tail_bad_input() -> None:
    with pytest.raises(ValidationError, match="prices"):
        publish_tail(np.arange(10), np.ones(9), alpha=0.99, horizon_sec=HOUR, spec=TailSpec())
    with pytest.raises(ValidationError, match="timestamps"):
        publish_tail(np.zeros(10), np.ones(10), alpha=0.99, horizon_sec=HOUR, spec=TailSpec())


# --------------------------------------------------------------------------- calibrate / backtest


def _csv(path: Path, h: PriceHistory) -> Path:
    rows = "".join(f"{t},{o:.6f},{hi:.6f},{lo:.6f},{c:.6f}\n"
                   for t, o, hi, lo, c in zip(h.timestamps, h.open, h.high, h.low, h.close))
    path.write_text("Timestamp,Open,High,Low,Close\n" + rows)
    return path


def test_calibrate_tail_and_gap_floor_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ballast.calibration import backtest, load_calibration, load_dataset
    from ballast.cli import main
    from ballast.data import load_csv

    csv = _csv(tmp_path / "coin.csv", _history(3_000, 5))
    out = tmp_path / "cal.toml"
    assert main(["calibrate", "--csv", str(csv), "--alphas", "0.99", "--tail", "fhs", "--tail-window", "500",
                 "--tail-fast-lambda", "0.8", "--gap-floor", "--out", str(out)]) == 0
    cal = load_calibration(out)
    assert cal.tail == TailSpec(window=500, fast_lambda=0.8, cap=5.0)
    f = cal.fit(0.99)
    assert f.skew == 0.0 and f.regime_sens == 0.0 and 1.0 <= f.prior_long <= 5.0
    g = cal.gap_floor
    assert g is not None and g.total_sec == 3_600 + 900 + 1 + 300
    # the floor is the 99.9% move of ceil(4801 / 900) = 6-bar windows, plus the liquidation fee
    assert g.datasets[0][1] == 6 and g.min_mmf == pytest.approx(g.move + 0.005)
    assert g.min_imf >= g.min_mmf + 0.005
    h = load_csv(str(csv))
    both = np.concatenate([adverse_moves(h, 6, s)[0] for s in ("long", "short")])
    assert np.quantile(both, 0.99) < g.move < 2 * both.max()  # an extreme quantile, not absurd
    assert len(cal.tail_training) == 2 and all("kupiec_p" in e for e in cal.tail_training)
    p = cal.params(0.99, __import__("ballast.config", fromlist=["default_params"]).default_params())
    assert p.min_mmf_wad == round(g.min_mmf * WAD) and p.tail_cap_wad == 5 * WAD
    # the backtest uses the feed: margins rise against the same parameters without it
    d = load_dataset("coin@2020-09-25..", csv_history=h)
    with_feed = backtest(d, [0.99], calibration=cal)
    floored = backtest(d, [0.99], calibration=cal, gap_floor=True)
    for r, rf in zip(with_feed, floored):
        assert r["tail_feed"]["mean"] >= 1.0
        assert rf["intrabar"]["mean_margin"] >= max(r["intrabar"]["mean_margin"], g.move)
        assert rf["intrabar"]["breaches"] <= r["intrabar"]["breaches"]
    assert main(["backtest", "--dataset", "btc_daily", "--gap-floor"]) == 2
    assert "gap_floor" in capsys.readouterr().err


def test_gap_floor_options_validated() -> None:
    from ballast.calibration import fit_gap_floor, load_dataset

    d = load_dataset("btc_15min@..2021-10-01")
    with pytest.raises(ValidationError, match="gap_quantile"):
        fit_gap_floor([d], quantile=0.9)
    with pytest.raises(ValidationError, match="oracle_lag_sec"):
        fit_gap_floor([d], oracle_lag_sec=-1)
    longer = fit_gap_floor([d], oracle_lag_sec=3_600)  # the heartbeat instead of one keeper round
    assert longer.move >= fit_gap_floor([d]).move


def test_tail_sensitivity_refits_on_training_only(capsys: pytest.CaptureFixture[str]) -> None:
    from ballast.calibration import fit_tail, load_dataset, tail_sensitivity
    from ballast.cli import main

    train = [load_dataset("btc_15min@..2021-10-08")]
    cal = fit_tail(train, [0.99], tail=TailSpec(window=500))
    test = [load_dataset("btc_15min@2021-10-08..2021-10-20")]
    specs = (TailSpec(), TailSpec(window=500, fast_lambda=0.8))
    grid = tail_sensitivity(cal, test, [0.99], specs=specs)
    assert [g["window"] for g in grid] == [None, 500]
    for g in grid:
        assert g["train_rows"] == 2 and g["test_rows"] == 2  # one alpha, two sides
        assert 0 <= g["train_pass"] <= 2 and 0 <= g["test_pass"] <= 2 and g["test_max_ratio_vs_fhs"] > 0
    # the refit of the first setting is the plain expanding feed: its training backtest is the fit's own
    assert grid[0]["train_pass"] == sum(e["pass"] for e in fit_tail(train, [0.99], tail=TailSpec()).tail_training)
    assert main(["backtest", "--dataset", "btc_daily", "--tail-grid"]) == 2
    assert "--tail-grid" in capsys.readouterr().err
