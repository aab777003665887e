"""Tests for ballast.risk.backtest: Kupiec POF test and margin backtesting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from ballast._typing import FloatArray
from ballast.data import PriceHistory, load_btc_15min
from ballast.errors import ValidationError
from ballast.risk.backtest import backtest_margin, christoffersen, kupiec_pof
from ballast.risk.var import normal_var
from ballast.risk.volatility import SECONDS_PER_YEAR, EWMA


def _chi2_1_sf(x: float) -> float:
    return math.erfc(math.sqrt(x / 2.0))


def _history(
    close: list[float] | FloatArray,
    high: list[float] | FloatArray | None = None,
    low: list[float] | FloatArray | None = None,
    interval: int = 60,
    timestamps: list[int] | None = None,
) -> PriceHistory:
    c = np.asarray(close, dtype=np.float64)
    o = np.concatenate(([c[0]], c[:-1]))
    hi = np.maximum(o, c) if high is None else np.asarray(high, dtype=np.float64)
    lo = np.minimum(o, c) if low is None else np.asarray(low, dtype=np.float64)
    ts = np.arange(c.shape[0], dtype=np.int64) * interval if timestamps is None else timestamps
    return PriceHistory(
        timestamps=np.asarray(ts, dtype=np.int64),
        open=o,
        high=hi,
        low=lo,
        close=c,
        interval_seconds=interval,
        name="synthetic",
    )


# --------------------------------------------------------------------------- Kupiec


def test_kupiec_matches_hand_computation() -> None:
    n, x, p = 250, 8, 0.01
    lr = -2.0 * (
        (n - x) * math.log(1 - p) + x * math.log(p) - (n - x) * math.log(1 - x / n) - x * math.log(x / n)
    )
    res = kupiec_pof(8, 250, 0.99)
    assert_allclose(res.lr_statistic, lr, rtol=1e-12)
    assert_allclose(res.lr_statistic, 7.73355, atol=1e-4)  # worked by hand (Basel yellow zone)
    assert_allclose(res.p_value, _chi2_1_sf(lr), rtol=1e-9)
    assert_allclose(res.p_value, 0.005420, atol=1e-5)
    assert res.breaches == 8 and res.observations == 250
    assert_allclose(res.expected_rate, 0.01)
    assert_allclose(res.observed_rate, 0.032)
    assert res.rejects(0.05)


@pytest.mark.parametrize(("n", "alpha"), [(1000, 0.99), (2000, 0.95), (400, 0.975)])
def test_kupiec_breaches_equal_expected(n: int, alpha: float) -> None:
    x = round(n * (1 - alpha))
    res = kupiec_pof(x, n, alpha)
    assert_allclose(res.lr_statistic, 0.0, atol=1e-9)
    assert_allclose(res.p_value, 1.0, atol=1e-6)
    assert not res.rejects()


@pytest.mark.parametrize(("n", "alpha"), [(1000, 0.99), (2000, 0.95)])
def test_kupiec_five_times_expected_rejects(n: int, alpha: float) -> None:
    x = round(5 * n * (1 - alpha))
    res = kupiec_pof(x, n, alpha)
    assert res.p_value < 1e-10
    assert res.rejects(0.01)


def test_kupiec_edge_cases_without_log_zero() -> None:
    zero = kupiec_pof(0, 1000, 0.99)
    assert_allclose(zero.lr_statistic, -2 * 1000 * math.log(0.99), rtol=1e-12)
    assert_allclose(zero.p_value, _chi2_1_sf(zero.lr_statistic), rtol=1e-9)
    assert zero.p_value < 1e-4  # too few breaches is also a rejection
    small = kupiec_pof(0, 10, 0.99)
    assert small.p_value > 0.5  # zero breaches in 10 trials is expected
    every = kupiec_pof(20, 20, 0.99)
    assert_allclose(every.lr_statistic, -2 * 20 * math.log(0.01), rtol=1e-12)
    assert math.isfinite(every.p_value) and every.p_value < 1e-30
    assert_allclose(every.observed_rate, 1.0)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((-1, 100, 0.99), "breaches"),
        ((101, 100, 0.99), "breaches"),
        ((1.5, 100, 0.99), "breaches"),
        ((0, 0, 0.99), "observations"),
        ((0, 100, 1.0), "alpha"),
        ((0, 100, 0.0), "alpha"),
    ],
)
def test_kupiec_validation(args: tuple[Any, Any, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        kupiec_pof(*args)
    assert info.value.field == field


# --------------------------------------------------------------------------- Christoffersen


def test_christoffersen_unclustered_hand_computation() -> None:
    # Transitions of 0011000100: n00=4, n01=2, n10=2, n11=1 -> pi01 = pi11 = pi = 1/3: LR_ind = 0.
    # LR_cc = -2[(6 ln .9 + 3 ln .1) - (6 ln 2/3 + 3 ln 1/3)] = -2[-7.539918 + 5.728627] = 3.622582,
    # chi2(2) survival exp(-LR/2) = 0.163443.
    res = christoffersen([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], 0.9)
    assert res.transitions == (4, 2, 2, 1)
    assert_allclose(res.lr_independence, 0.0, atol=1e-12)
    assert_allclose(res.p_independence, 1.0)
    assert_allclose(res.lr_conditional_coverage, 3.622582, rtol=1e-6)
    assert_allclose(res.p_conditional_coverage, 0.163443, rtol=1e-5)


def test_christoffersen_clustered_hand_computation() -> None:
    # 0001110000: n00=5, n01=1, n10=1, n11=2; pi01 = 1/6, pi11 = 2/3, pi = 1/3.
    # ln L(markov) = 5 ln 5/6 + ln 1/6 + ln 1/3 + 2 ln 2/3 = -4.612909; ln L(iid) = -5.728627.
    # LR_ind = 2.231436, p = P(chi2(1) >= LR) = erfc(sqrt(LR / 2)) = 0.135228.
    # ln L(p=.1) = 6 ln .9 + 3 ln .1 = -7.539918 -> LR_cc = 5.854018, p = exp(-LR/2) = 0.053557.
    res = christoffersen(np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=bool), 0.9)
    assert res.transitions == (5, 1, 1, 2)
    assert_allclose(res.lr_independence, 2.231436, rtol=1e-6)
    assert_allclose(res.p_independence, _chi2_1_sf(2.231436), rtol=1e-6)
    assert_allclose(res.p_independence, 0.135228, rtol=1e-5)
    assert_allclose(res.lr_conditional_coverage, 5.854018, rtol=1e-6)
    assert_allclose(res.p_conditional_coverage, 0.053557, rtol=1e-4)
    # LR_cc = Kupiec on the n-1 transitions + LR_ind.
    assert_allclose(res.lr_conditional_coverage,
                    kupiec_pof(3, 9, 0.9).lr_statistic + res.lr_independence, rtol=1e-12)


def test_christoffersen_without_breaches_and_validation() -> None:
    res = christoffersen(np.zeros(100, dtype=bool), 0.99)
    assert res.transitions == (99, 0, 0, 0)
    assert res.lr_independence == 0.0 and res.p_independence == 1.0
    assert_allclose(res.lr_conditional_coverage, kupiec_pof(0, 99, 0.99).lr_statistic)
    for bad in ([1], [0, 2], [[0, 1]]):
        with pytest.raises(ValidationError) as info:
            christoffersen(bad, 0.99)
        assert info.value.field == "hits"


def test_backtest_reports_christoffersen_and_mean_margin() -> None:
    close = [100.0, 100.0, 96.0, 97.0, 103.0, 104.0]
    low = [99.0, 99.0, 93.0, 95.0, 96.0, 103.0]
    high = [101.0, 101.0, 100.0, 98.0, 106.0, 105.0]
    margin = np.array([0.05, 0.05, 0.05, 0.07, 0.05, 0.05])
    res = backtest_margin(_history(close, high, low), margin, 2, "long", alpha=0.9)
    # Hits 1100 -> transitions n00=1, n01=0, n10=1, n11=1.
    assert res.intrabar.christoffersen == christoffersen([1, 1, 0, 0], 0.9)
    assert res.intrabar.christoffersen.transitions == (1, 0, 1, 1)
    assert_allclose(res.intrabar.mean_margin, 0.055)
    assert_array_equal(res.window_starts, [0, 1, 2, 3])


# --------------------------------------------------------------------------- backtest_margin


def test_backtest_hand_built_long_and_short() -> None:
    close = [100.0, 100.0, 96.0, 97.0, 103.0, 104.0]
    low = [99.0, 99.0, 93.0, 95.0, 96.0, 103.0]
    high = [101.0, 101.0, 100.0, 98.0, 106.0, 105.0]
    h = _history(close, high, low)
    margin = np.full(6, 0.05)
    long = backtest_margin(h, margin, 2, "long", alpha=0.9)
    # Starts 0..3. Long intrabar moves: 1-93/100=.07, 1-93/100=.07, 1-95/96, 1-96/97.
    assert long.observations == 4
    assert_array_equal(long.intrabar.breach_indices, [0, 1])
    assert long.breaches == 2
    assert_allclose(long.breach_rate, 0.5)
    assert_allclose(long.intrabar.worst_excess, 0.02)
    # Close-to-close: 1-96/100=.04, 1-97/100=.03, 1-103/96<0, 1-104/97<0 -> no breach.
    assert long.close_to_close.breaches == 0
    assert_allclose(long.close_to_close.worst_excess, -0.01)
    assert long.horizon_seconds == 120
    assert_allclose(long.expected_rate, 0.1)
    assert long.kupiec is not None
    assert long.kupiec == kupiec_pof(2, 4, 0.9)
    short = backtest_margin(h, margin, 2, "short", alpha=0.9)
    # Short intrabar: 101/100-1, 100/100-1, 106/96-1=.104, 106/97-1=.093.
    assert_array_equal(short.intrabar.breach_indices, [2, 3])
    # Short close-to-close: 96/100-1, 97/100-1, 103/96-1=.073, 104/97-1=.072.
    assert_array_equal(short.close_to_close.breach_indices, [2, 3])


def test_backtest_skips_nan_margins_and_steps() -> None:
    h = _history(100.0 + np.arange(20.0))
    margin = np.full(20, 0.5)
    margin[:3] = np.nan
    res = backtest_margin(h, margin, 4, "long", step=4)
    # First valid start 3, then every 4 bars while start + 4 <= 19.
    assert res.observations == 4  # starts 3, 7, 11, 15
    assert res.step == 4
    assert res.breaches == 0
    dense = backtest_margin(h, margin, 4, "long", step=1)
    assert dense.observations == 13  # starts 3..15


def test_backtest_skips_windows_across_gaps() -> None:
    ts = [0, 60, 120, 180, 600, 660, 720, 780]
    h = _history(np.full(8, 100.0), timestamps=ts)
    margin = np.full(8, 0.01)
    res = backtest_margin(h, margin, 2, "long")
    # Starts 0..5; windows starting at 2 and 3 include the 180->600 gap.
    assert res.skipped_gap_windows == 2
    assert res.observations == 4
    kept = backtest_margin(h, margin, 2, "long", skip_gaps=False)
    assert kept.observations == 6 and kept.skipped_gap_windows == 0


def test_backtest_calibrated_gbm_margin_passes_kupiec() -> None:
    rng = np.random.default_rng(99)
    sigma, interval, horizon, alpha = 0.8, 900, 4, 0.99
    n = 40_001
    sigma_bar = sigma * math.sqrt(interval / SECONDS_PER_YEAR)
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(rng.standard_normal(n - 1) * sigma_bar))))
    h = _history(close, interval=interval)
    margin = np.full(n, normal_var(sigma, horizon * interval, alpha))
    res = backtest_margin(h, margin, horizon, "long", alpha=alpha, step=horizon)
    c2c = res.close_to_close
    assert c2c.observations == 10_000
    assert_allclose(c2c.breach_rate, 0.01, atol=0.003)
    assert c2c.kupiec is not None and c2c.kupiec.p_value > 0.01
    # The path's worst close is at least as bad as its end point: more intrabar breaches.
    assert res.breaches > c2c.breaches
    assert set(c2c.breach_indices) <= set(res.intrabar.breach_indices)


def test_backtest_real_data_catches_2021_12_04_crash() -> None:
    h = load_btc_15min()
    sigma = EWMA().estimate(h)
    margin = normal_var(sigma, 3600, 0.99)
    res = backtest_margin(h, margin, 4, "long", alpha=0.99, step=1)
    assert res.observations > 8_000
    assert np.all(res.intrabar.breach_indices >= 0)
    crash_start, crash_end = 1638590400, 1638596700  # 2021-12-04 04:00 .. 05:45 UTC
    starts = h.timestamps[res.intrabar.breach_indices]
    assert np.any((starts >= crash_start) & (starts <= crash_end))
    assert res.intrabar.worst_excess > 0.05  # the crash exceeded a 1-hour 99 % margin by > 5 %
    # Intrabar excursion dominates the close-to-close move window by window.
    assert res.breaches >= res.close_to_close.breaches
    assert set(res.close_to_close.breach_indices) <= set(res.intrabar.breach_indices)
    short = backtest_margin(h, margin, 4, "short", alpha=0.99, step=4)
    assert short.observations < res.observations
    assert np.all(np.diff(short.intrabar.breach_indices) % 4 == 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"margin_fraction_series": np.full(5, 0.1)}, "margin_fraction_series"),
        ({"margin_fraction_series": np.full(10, -0.1)}, "margin_fraction_series"),
        ({"margin_fraction_series": np.full(10, np.inf)}, "margin_fraction_series"),
        ({"side": "up"}, "side"),
        ({"horizon_steps": 0}, "horizon_steps"),
        ({"horizon_steps": 10}, "horizon_steps"),
        ({"step": 0}, "step"),
        ({"alpha": 1.2}, "alpha"),
    ],
)
def test_backtest_validation(kwargs: dict[str, Any], field: str) -> None:
    h = _history(100.0 + np.arange(10.0))
    args: dict[str, Any] = {
        "history": h,
        "margin_fraction_series": np.full(10, 0.1),
        "horizon_steps": 2,
        "side": "long",
    } | kwargs
    with pytest.raises(ValidationError) as info:
        backtest_margin(**args)
    assert info.value.field == field
