"""Tests for ballast.risk.volatility: annualization, bias, responsiveness, no look-ahead."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from ballast._typing import FloatArray
from ballast.data import load_btc_15min
from ballast.errors import DataError, ValidationError
from ballast.risk.volatility import (
    EWMA,
    OHLC,
    SECONDS_PER_YEAR,
    CloseToClose,
    Garch11,
    GarmanKlass,
    Parkinson,
    VolatilityEstimator,
    annualization_factor,
)

INTERVAL = 900  # 15-minute bars
SIGMA = 0.8  # annualized


def _gbm_close(sigma_annual: float, n_bars: int, seed: int) -> FloatArray:
    """Driftless GBM closes sampled every INTERVAL seconds."""
    rng = np.random.default_rng(seed)
    sigma_bar = sigma_annual * math.sqrt(INTERVAL / SECONDS_PER_YEAR)
    steps = rng.standard_normal(n_bars - 1) * sigma_bar - 0.5 * sigma_bar**2
    return 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(steps))))


def _gbm_ohlc(sigma_annual: float, n_bars: int, substeps: int, seed: int) -> OHLC:
    """Driftless GBM bars built from ``substeps`` sub-bar increments (continuous-ish path)."""
    rng = np.random.default_rng(seed)
    sigma_sub = sigma_annual * math.sqrt(INTERVAL / SECONDS_PER_YEAR / substeps)
    opens, highs, lows, closes = [], [], [], []
    log_price = math.log(100.0)
    chunk = 250
    for start in range(0, n_bars, chunk):
        m = min(chunk, n_bars - start)
        inc = rng.standard_normal((m, substeps)) * sigma_sub
        path = np.cumsum(inc, axis=1)
        bar_open = log_price + np.concatenate(([0.0], np.cumsum(path[:-1, -1])))
        full = bar_open[:, None] + np.concatenate((np.zeros((m, 1)), path), axis=1)
        opens.append(full[:, 0])
        highs.append(full.max(axis=1))
        lows.append(full.min(axis=1))
        closes.append(full[:, -1])
        log_price = float(full[-1, -1])
    return OHLC(*(np.exp(np.concatenate(x)) for x in (opens, highs, lows, closes)))


@pytest.fixture(scope="module")
def gbm_close() -> FloatArray:
    return _gbm_close(SIGMA, 20_000, seed=7)


@pytest.fixture(scope="module")
def gbm_ohlc() -> OHLC:
    return _gbm_ohlc(SIGMA, 1_000, 4_000, seed=11)


# --------------------------------------------------------------------------- annualization


def test_annualization_constants() -> None:
    assert SECONDS_PER_YEAR == 365 * 86400 == 31_536_000
    assert_allclose(annualization_factor(900), math.sqrt(35_040))
    assert_allclose(annualization_factor(86400), math.sqrt(365))


@pytest.mark.parametrize(
    ("estimator", "tol"),
    [
        (CloseToClose(window=19_000), 0.02),
        (CloseToClose(window=19_000, demean=False), 0.02),
        (EWMA(lam=0.999, warmup=100), 0.05),
        (Garch11(refit_every=10_000, fit_window=19_000, min_fit=5_000), 0.03),
    ],
    ids=["ctc", "ctc-zero-mean", "ewma", "garch"],
)
def test_close_estimators_recover_gbm_sigma(
    gbm_close: FloatArray, estimator: VolatilityEstimator, tol: float
) -> None:
    sigma = estimator.estimate(gbm_close, interval_seconds=INTERVAL)
    assert sigma.shape == gbm_close.shape
    valid = sigma[np.isfinite(sigma)]
    assert valid.size > 0
    assert_allclose(np.median(valid), SIGMA, rtol=tol)


@pytest.mark.parametrize("cls", [Parkinson, GarmanKlass, CloseToClose])
def test_range_estimators_unbiased_on_simulated_ohlc(
    gbm_ohlc: OHLC, cls: type[Parkinson] | type[CloseToClose]
) -> None:
    n = gbm_ohlc.close.shape[0]
    window = n - 1 if cls is CloseToClose else n
    sigma = cls(window).estimate(gbm_ohlc, interval_seconds=INTERVAL)
    # 4,000 sub-steps per bar understate the true high/low by ~1 %; sampling noise ~1 %.
    assert_allclose(sigma[-1], SIGMA, rtol=0.04 if cls is not CloseToClose else 0.08)


def test_range_estimators_more_efficient_than_close_to_close() -> None:
    ohlc = _gbm_ohlc(SIGMA, 600, 500, seed=3)
    kw = {"interval_seconds": INTERVAL}
    spread = {
        name: float(np.nanstd(est.estimate(ohlc, **kw)[::30]))
        for name, est in {"ctc": CloseToClose(30), "pk": Parkinson(30), "gk": GarmanKlass(30)}.items()
    }
    assert spread["gk"] < spread["ctc"]
    assert spread["pk"] < spread["ctc"]


def test_history_input_matches_array_input() -> None:
    h = load_btc_15min().window("2021-12-01", "2021-12-08")
    ohlc = OHLC(h.open, h.high, h.low, h.close)
    for est in (CloseToClose(30), EWMA(), Parkinson(30), GarmanKlass(30)):
        assert_array_equal(est.estimate(h), est.estimate(ohlc, interval_seconds=900))
        assert_array_equal(
            est.estimate(h, interval_seconds=900), est.estimate(ohlc, interval_seconds=900)
        )
    assert_array_equal(CloseToClose(30).estimate(h), CloseToClose(30).estimate(h.close, interval_seconds=900))


# --------------------------------------------------------------------------- responsiveness


def test_ewma_reacts_faster_than_close_to_close_after_vol_jump() -> None:
    sigma_bar_lo, sigma_bar_hi = 0.002, 0.006
    signs = np.where(np.arange(400) % 2 == 0, 1.0, -1.0)
    returns = signs * np.where(np.arange(400) < 200, sigma_bar_lo, sigma_bar_hi)
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(returns))))
    factor = annualization_factor(INTERVAL)
    mid = 0.5 * (sigma_bar_lo + sigma_bar_hi) * factor
    jump_bar = 201  # first bar whose return is high-vol
    ewma = EWMA(0.94).estimate(close, interval_seconds=INTERVAL)
    ctc = CloseToClose(30).estimate(close, interval_seconds=INTERVAL)
    assert_allclose(ewma[jump_bar - 1], sigma_bar_lo * factor, rtol=1e-9)
    lag_ewma = int(np.argmax(ewma[jump_bar:] > mid))
    lag_ctc = int(np.argmax(ctc[jump_bar:] > mid))
    assert lag_ewma < lag_ctc
    assert ewma[jump_bar + 3] > ctc[jump_bar + 3]


def test_ewma_recursion_matches_loop() -> None:
    close = _gbm_close(0.5, 300, seed=5)
    r = np.diff(np.log(close))
    lam, warmup = 0.9, 10
    var = float(np.mean(r[:warmup] ** 2))
    expected = [var]
    for x in r[warmup:]:
        var = lam * var + (1 - lam) * x * x
        expected.append(var)
    got = EWMA(lam, warmup=warmup).estimate(close, interval_seconds=60)
    assert np.all(np.isnan(got[:warmup]))
    assert_allclose(got[warmup:], np.sqrt(expected) * annualization_factor(60), rtol=1e-12)


def test_crash_raises_ewma_on_real_data() -> None:
    h = load_btc_15min()
    sigma = EWMA().estimate(h)
    i = int(np.searchsorted(h.timestamps, 1638595800))  # 2021-12-04 05:30 UTC
    assert sigma[i] > 3.0 * np.nanmedian(sigma)


# --------------------------------------------------------------------------- no look-ahead


@pytest.mark.parametrize(
    ("estimator", "nan_prefix"),
    [
        (CloseToClose(30), 30),
        (EWMA(0.94, warmup=20), 20),
        (Parkinson(30), 29),
        (GarmanKlass(30), 29),
        (Garch11(min_fit=200, refit_every=150, fit_window=400), 200),
    ],
    ids=["ctc", "ewma", "parkinson", "gk", "garch"],
)
def test_no_look_ahead_and_warmup(estimator: VolatilityEstimator, nan_prefix: int) -> None:
    h = load_btc_15min().window("2021-11-20", "2021-12-08")
    full = estimator.estimate(h)
    assert np.all(np.isnan(full[:nan_prefix]))
    assert np.all(np.isfinite(full[nan_prefix:]))
    assert np.all(full[nan_prefix:] > 0)
    assert estimator.min_bars == nan_prefix + 1
    cut = 900
    prefix = estimator.estimate(OHLC(h.open[:cut], h.high[:cut], h.low[:cut], h.close[:cut]), interval_seconds=900)
    assert_allclose(prefix, full[:cut], rtol=1e-12)


@pytest.mark.parametrize(
    "estimator", [CloseToClose(30), EWMA(), Parkinson(30), GarmanKlass(30)], ids=str
)
def test_forecast_one_step_is_last_estimate(estimator: VolatilityEstimator) -> None:
    h = load_btc_15min().window("2021-12-01", "2021-12-05")
    assert estimator.forecast_one_step(h) == estimator.estimate(h)[-1]


def test_garch_forecast_one_step_matches_series_at_refit_point() -> None:
    est = Garch11(min_fit=300, refit_every=200, fit_window=600)
    h = load_btc_15min()
    n_bars = 300 + 3 * 200 + 1  # returns = min_fit + 3 * refit_every: last value is a refit
    close = h.close[:n_bars]
    series = est.estimate(close, interval_seconds=900)
    assert_allclose(est.forecast_one_step(close, interval_seconds=900), series[-1], rtol=1e-10)


def test_garch_fits_simulated_garch_process() -> None:
    rng = np.random.default_rng(2024)
    omega, alpha, beta = 0.02, 0.10, 0.85  # percent-squared per bar
    n = 6_000
    var = omega / (1 - alpha - beta)
    r = np.empty(n)
    for t in range(n):
        r[t] = math.sqrt(var) * rng.standard_normal()
        var = omega + alpha * r[t] ** 2 + beta * var
    close = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(r / 100.0))))
    params = Garch11(fit_window=n, min_fit=1_000).fit(close, interval_seconds=3600)
    assert params.converged
    assert params.nu is None
    assert_allclose([params.alpha, params.beta], [alpha, beta], atol=0.04)
    assert params.persistence < 1.0
    t_params = Garch11(dist="t", fit_window=n, min_fit=1_000).fit(close, interval_seconds=3600)
    assert t_params.nu is not None and t_params.nu > 10  # normal data: thin tails


def test_garch_on_real_15min_data_is_fast() -> None:
    h = load_btc_15min()
    start = time.perf_counter()
    sigma = Garch11(dist="t").estimate(h)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0
    valid = sigma[np.isfinite(sigma)]
    assert valid.size == len(h) - 500
    assert 0.2 < float(np.median(valid)) < 2.0  # BTC annualized vol in late 2021


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: CloseToClose(1), "window"),
        (lambda: CloseToClose(0), "window"),
        (lambda: CloseToClose(2.5), "window"),  # type: ignore[arg-type]
        (lambda: CloseToClose(True), "window"),
        (lambda: Parkinson(0), "window"),
        (lambda: GarmanKlass(-3), "window"),
        (lambda: EWMA(0.0), "lam"),
        (lambda: EWMA(1.0), "lam"),
        (lambda: EWMA(1.5), "lam"),
        (lambda: EWMA(-0.1), "lam"),
        (lambda: EWMA(0.94, warmup=0), "warmup"),
        (lambda: Garch11(refit_every=0), "refit_every"),
        (lambda: Garch11(dist="skewt"), "dist"),  # type: ignore[arg-type]
        (lambda: Garch11(mean="AR"), "mean"),  # type: ignore[arg-type]
        (lambda: Garch11(min_fit=3000, fit_window=2000), "min_fit"),
        (lambda: Garch11(fit_window=50), "fit_window"),
        (lambda: Garch11(scale=0.0), "scale"),
    ],
)
def test_bad_parameters_raise(factory: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        factory()  # type: ignore[operator]
    assert info.value.field == field


def test_bad_inputs_raise() -> None:
    close = _gbm_close(0.5, 100, seed=1)
    with pytest.raises(ValidationError) as info:
        CloseToClose(10).estimate(close)
    assert info.value.field == "interval_seconds"
    with pytest.raises(ValidationError) as info:
        CloseToClose(10).estimate(close, interval_seconds=0)
    assert info.value.field == "interval_seconds"
    with pytest.raises(ValidationError) as info:
        Parkinson(10).estimate(close, interval_seconds=900)
    assert info.value.field == "data"
    with pytest.raises(ValidationError) as info:
        CloseToClose(10).estimate(-close, interval_seconds=900)
    assert info.value.field == "close"
    with pytest.raises(ValidationError) as info:
        CloseToClose(10).estimate(load_btc_15min(), interval_seconds=60)
    assert info.value.field == "interval_seconds"


def test_too_short_input() -> None:
    close = _gbm_close(0.5, 10, seed=1)
    assert np.all(np.isnan(CloseToClose(30).estimate(close, interval_seconds=900)))
    with pytest.raises(DataError):
        CloseToClose(30).forecast_one_step(close, interval_seconds=900)
    with pytest.raises(DataError):
        Garch11().forecast_one_step(close, interval_seconds=900)
