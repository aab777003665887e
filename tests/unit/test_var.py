"""Tests for ballast.risk.var: parametric, historical, filtered-historical and Monte Carlo VaR/ES."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, stats  # type: ignore[import-untyped]

from ballast.errors import ValidationError
from ballast.risk.var import (
    VaRResult,
    filtered_historical_es,
    filtered_historical_var,
    historical_es,
    historical_var,
    horizon_sigma,
    monte_carlo_var,
    normal_es,
    normal_var,
    student_t_es,
    student_t_var,
    z_score,
)
from ballast.risk.volatility import SECONDS_PER_YEAR

HOUR = 3600
DAY = 86400


# --------------------------------------------------------------------------- z and scaling


@pytest.mark.parametrize(
    ("alpha", "z"), [(0.5, 0.0), (0.95, 1.6448536269514722), (0.99, 2.3263478740408408)]
)
def test_z_score(alpha: float, z: float) -> None:
    assert_allclose(z_score(alpha), z, atol=1e-12)


def test_horizon_sigma() -> None:
    assert_allclose(horizon_sigma(0.8, SECONDS_PER_YEAR), 0.8)
    assert_allclose(horizon_sigma(0.8, DAY), 0.8 / math.sqrt(365))
    out = horizon_sigma(np.array([0.4, 0.8]), 4 * DAY)
    assert_allclose(out, np.array([0.4, 0.8]) * math.sqrt(4 / 365))


# --------------------------------------------------------------------------- normal


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.8, 2.5])
@pytest.mark.parametrize("horizon", [900, HOUR, DAY, 7 * DAY])
@pytest.mark.parametrize("alpha", [0.95, 0.99, 0.999])
def test_normal_var_formula(sigma: float, horizon: int, alpha: float) -> None:
    expected = stats.norm.ppf(alpha) * sigma * math.sqrt(horizon / (365 * 86400))
    got = normal_var(sigma, horizon, alpha)
    assert isinstance(got, float)
    assert_allclose(got, expected, rtol=1e-14, atol=0)


def test_normal_var_vectorized_with_nan() -> None:
    sigma = np.array([np.nan, 0.5, 1.0])
    out = normal_var(sigma, HOUR, 0.99)
    assert out.shape == (3,)
    assert np.isnan(out[0])
    assert_allclose(out[1:], [normal_var(0.5, HOUR, 0.99), normal_var(1.0, HOUR, 0.99)])


def test_normal_es_matches_integral() -> None:
    alpha, sigma, h = 0.975, 0.9, DAY
    sigma_h = horizon_sigma(sigma, h)
    q = normal_var(sigma, h, alpha)
    tail, _ = integrate.quad(lambda x: x * stats.norm.pdf(x, scale=sigma_h), q, np.inf)
    assert_allclose(normal_es(sigma, h, alpha), tail / (1 - alpha), rtol=1e-8)
    assert normal_es(sigma, h, alpha) > q


# --------------------------------------------------------------------------- Student t


@pytest.mark.parametrize("dof", [3, 4, 6, 10, 30])
def test_t_var_exceeds_normal_at_99(dof: float) -> None:
    assert student_t_var(0.8, DAY, 0.99, dof) > normal_var(0.8, DAY, 0.99)
    assert student_t_es(0.8, DAY, 0.99, dof) > normal_es(0.8, DAY, 0.99)


def test_t_var_has_thinner_shoulders_at_95() -> None:
    # Variance-matched t puts less mass in the shoulders: lower VaR at 95 %.
    assert student_t_var(0.8, DAY, 0.95, 4) < normal_var(0.8, DAY, 0.95)


def test_t_var_tends_to_normal() -> None:
    assert_allclose(student_t_var(0.8, DAY, 0.99, 1e7), normal_var(0.8, DAY, 0.99), rtol=1e-5)
    assert_allclose(student_t_es(0.8, DAY, 0.99, 1e7), normal_es(0.8, DAY, 0.99), rtol=1e-5)


@pytest.mark.parametrize("dof", [3.5, 5.0])
def test_t_var_and_es_formulas(dof: float) -> None:
    alpha, sigma, h = 0.99, 0.7, HOUR
    scale = horizon_sigma(sigma, h) * math.sqrt((dof - 2) / dof)
    law = stats.t(dof, scale=scale)
    assert_allclose(law.std(), horizon_sigma(sigma, h), rtol=1e-12)
    q = law.ppf(alpha)
    assert_allclose(student_t_var(sigma, h, alpha, dof), q, rtol=1e-12)
    tail, _ = integrate.quad(lambda x: x * law.pdf(x), q, np.inf)
    assert_allclose(student_t_es(sigma, h, alpha, dof), tail / (1 - alpha), rtol=1e-7)


# --------------------------------------------------------------------------- historical


def test_historical_var_known_sample() -> None:
    rng = np.random.default_rng(0)
    losses = np.arange(1, 101) / 1000.0  # 0.001 .. 0.100
    returns = rng.permutation(-losses)
    assert_allclose(historical_var(returns, 0.95), 0.095)
    assert_allclose(historical_es(returns, 0.95), 0.098)  # mean of 0.096 .. 0.100
    assert_allclose(historical_var(returns, 0.99), 0.099)
    assert_allclose(historical_es(returns, 0.99), 0.100)
    # A short position loses on up-moves: mirror the sample.
    assert_allclose(historical_var(-returns, 0.95, side="short"), 0.095)
    assert_allclose(historical_var(returns, 0.95, side="short"), -0.006)  # 95th of -0.100..-0.001


def test_historical_es_non_integer_tail() -> None:
    # n = 10, alpha = 0.85: VaR is the 9th smallest loss; ES weights it by 0.05 / 0.15.
    losses = np.arange(1.0, 11.0)
    assert_allclose(historical_var(-losses, 0.85), 9.0)
    assert_allclose(historical_es(-losses, 0.85), (10.0 * 0.1 + 9.0 * 0.05) / 0.15)


def test_historical_var_converges_to_normal() -> None:
    rng = np.random.default_rng(1)
    sigma_h = horizon_sigma(0.8, DAY)
    returns = rng.standard_normal(400_000) * sigma_h
    assert_allclose(historical_var(returns, 0.99), normal_var(0.8, DAY, 0.99), rtol=0.02)
    assert_allclose(historical_es(returns, 0.99), normal_es(0.8, DAY, 0.99), rtol=0.02)


# --------------------------------------------------------------------------- filtered historical


def test_fhs_constant_sigma_reduces_to_historical() -> None:
    rng = np.random.default_rng(2)
    returns = rng.standard_t(4, 2_000) * 0.01
    sig = np.full(returns.shape, 0.6)
    assert_allclose(
        filtered_historical_var(returns, sig, 0.6, 0.99), historical_var(returns, 0.99)
    )
    assert_allclose(
        filtered_historical_var(returns, sig, 1.2, 0.99, side="short"),
        2.0 * historical_var(returns, 0.99, side="short"),
    )
    assert_allclose(
        filtered_historical_es(returns, sig, 1.2, 0.99), 2.0 * historical_es(returns, 0.99)
    )


def test_fhs_removes_volatility_clustering() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    sigma_t = np.where(np.arange(n) % 1000 < 500, 0.005, 0.02)  # regime-switching per bar
    returns = rng.standard_normal(n) * sigma_t
    fhs = filtered_historical_var(returns, sigma_t, 0.01, 0.99)
    assert_allclose(fhs, 0.01 * z_score(0.99), rtol=0.03)
    # Unfiltered historical VaR mixes regimes and is far from the current-vol answer.
    assert abs(historical_var(returns, 0.99) / (0.01 * z_score(0.99)) - 1) > 0.3


def test_fhs_validation() -> None:
    r = np.zeros(200)
    with pytest.raises(ValidationError) as info:
        filtered_historical_var(r, np.ones(199), 1.0, 0.99)
    assert info.value.field == "sigma_series"
    with pytest.raises(ValidationError) as info:
        filtered_historical_var(r, np.zeros(200), 1.0, 0.99)
    assert info.value.field == "sigma_series"
    with pytest.raises(ValidationError) as info:
        filtered_historical_var(r, np.ones(200), -1.0, 0.99)
    assert info.value.field == "sigma_now"


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_converges_to_normal() -> None:
    res = monte_carlo_var(0.8, DAY, 0.99, 400_000, seed=42)
    assert isinstance(res, VaRResult)
    assert res.n_paths == 400_000 and res.side == "long" and res.alpha == 0.99
    assert_allclose(res.sigma_horizon, horizon_sigma(0.8, DAY))
    assert_allclose(res.var, normal_var(0.8, DAY, 0.99), rtol=0.015)
    assert_allclose(res.es, normal_es(0.8, DAY, 0.99), rtol=0.015)
    assert res.es > res.var


def test_monte_carlo_t_converges_to_t_var() -> None:
    res = monte_carlo_var(0.8, DAY, 0.99, 400_000, seed=7, dof=4)
    assert_allclose(res.var, student_t_var(0.8, DAY, 0.99, 4), rtol=0.02)
    assert_allclose(res.es, student_t_es(0.8, DAY, 0.99, 4), rtol=0.03)


def test_monte_carlo_seed_reproducible() -> None:
    a = monte_carlo_var(0.8, HOUR, 0.99, 10_000, seed=123)
    b = monte_carlo_var(0.8, HOUR, 0.99, 10_000, seed=123)
    c = monte_carlo_var(0.8, HOUR, 0.99, 10_000, seed=124)
    assert a == b
    assert a.var != c.var
    g1 = monte_carlo_var(0.8, HOUR, 0.99, 10_000, seed=np.random.default_rng(123))
    assert g1 == a


def test_monte_carlo_exact_mapping_penalizes_shorts() -> None:
    kw: dict[str, Any] = {"seed": 5, "loss_mapping": "exact"}
    long = monte_carlo_var(1.0, 30 * DAY, 0.99, 200_000, side="long", **kw)
    short = monte_carlo_var(1.0, 30 * DAY, 0.99, 200_000, side="short", **kw)
    assert short.var > long.var
    sigma_h = horizon_sigma(1.0, 30 * DAY)
    z = z_score(0.99)
    assert_allclose(long.var, -math.expm1(-z * sigma_h), rtol=0.02)
    assert_allclose(short.var, math.expm1(z * sigma_h), rtol=0.02)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: normal_var(0.8, HOUR, 0.0), "alpha"),
        (lambda: normal_var(0.8, HOUR, 1.0), "alpha"),
        (lambda: normal_var(0.8, HOUR, 1.5), "alpha"),
        (lambda: normal_var(0.8, HOUR, True), "alpha"),
        (lambda: z_score(-0.1), "alpha"),
        (lambda: normal_var(0.8, 0, 0.99), "horizon_seconds"),
        (lambda: normal_var(0.8, -60, 0.99), "horizon_seconds"),
        (lambda: normal_var(0.8, math.nan, 0.99), "horizon_seconds"),
        (lambda: normal_var(-0.1, HOUR, 0.99), "sigma_annual"),
        (lambda: normal_var(math.nan, HOUR, 0.99), "sigma_annual"),
        (lambda: normal_var(np.array([0.1, -0.1]), HOUR, 0.99), "sigma_annual"),
        (lambda: normal_es(math.inf, HOUR, 0.99), "sigma_annual"),
        (lambda: student_t_var(0.8, HOUR, 0.99, 2), "dof"),
        (lambda: student_t_es(0.8, HOUR, 0.99, 1.5), "dof"),
        (lambda: historical_var(np.zeros(50), 0.99), "returns"),
        (lambda: historical_var(np.array([0.1, np.nan] * 100), 0.99), "returns"),
        (lambda: historical_var(np.zeros(200), 0.99, side="flat"), "side"),  # type: ignore[arg-type]
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 0, seed=1), "n_paths"),
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 50, seed=1), "n_paths"),
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 1000, seed="x"), "seed"),  # type: ignore[arg-type]
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 1000, seed=1, dof=2.0), "dof"),
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 1000, seed=1, side="up"), "side"),  # type: ignore[arg-type]
        (lambda: monte_carlo_var(0.8, HOUR, 0.99, 1000, seed=1, loss_mapping="log"), "loss_mapping"),  # type: ignore[arg-type]
    ],
)
def test_bad_inputs_name_the_field(call: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.field == field
