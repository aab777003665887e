"""Value-at-Risk and expected shortfall of a position over a horizon.

Conventions
-----------
* Results are **loss fractions of notional**: positive numbers are losses
  (``0.05`` = the position loses 5 % of its notional). A negative VaR means the
  quantile is a gain.
* ``alpha`` is the **confidence level** in (0, 1), e.g. ``0.99``; the tail probability
  (expected breach rate) is ``1 - alpha``.
* ``sigma_annual`` is an annualized volatility of log returns (as produced by
  :mod:`ballast.risk.volatility`); it is scaled to a horizon by the square-root-of-time
  rule ``sigma_h = sigma_annual * sqrt(horizon_seconds / SECONDS_PER_YEAR)`` with
  ``SECONDS_PER_YEAR = 365 * 86400``.
* Parametric models assume a zero-mean horizon return ``r`` and the first-order loss
  mapping ``loss = -r`` for a long and ``loss = +r`` for a short (so normal and t VaR
  are the same for both sides). :func:`monte_carlo_var` can also apply the exact
  price mapping (``1 - exp(r)`` long, ``exp(r) - 1`` short).
* ``side="long"`` loses on down moves, ``side="short"`` on up moves.

Expected shortfall is the Acerbi-Tasche tail mean, ``ES_alpha = E[L | L >= VaR_alpha]``
for continuous laws; for samples the discrete-tail correction is applied, so
``ES >= VaR`` always.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from ballast._typing import FloatArray
from ballast.errors import ValidationError
from ballast.risk.volatility import SECONDS_PER_YEAR

__all__ = [
    "Side",
    "VaRResult",
    "z_score",
    "horizon_sigma",
    "normal_var",
    "normal_es",
    "student_t_var",
    "student_t_es",
    "historical_var",
    "historical_es",
    "filtered_historical_var",
    "filtered_historical_es",
    "expanding_historical_var",
    "gpd_tail_var",
    "monte_carlo_var",
]

Side = Literal["long", "short"]


# --------------------------------------------------------------------------- validation


def _check_alpha(alpha: object) -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float, np.floating))
        or not 0.0 < float(alpha) < 1.0
    ):
        raise ValidationError("alpha", alpha, "a confidence level strictly between 0 and 1")
    return float(alpha)


def _check_side(side: object) -> Side:
    if side == "long":
        return "long"
    if side == "short":
        return "short"
    raise ValidationError("side", side, "'long' or 'short'")


def _check_horizon(horizon_seconds: object) -> float:
    if (
        isinstance(horizon_seconds, bool)
        or not isinstance(horizon_seconds, (int, float, np.integer, np.floating))
        or not (math.isfinite(float(horizon_seconds)) and float(horizon_seconds) > 0)
    ):
        raise ValidationError("horizon_seconds", horizon_seconds, "a finite number of seconds > 0")
    return float(horizon_seconds)


def _check_dof(dof: object) -> float:
    if (
        isinstance(dof, bool)
        or not isinstance(dof, (int, float, np.integer, np.floating))
        or not (math.isfinite(float(dof)) and float(dof) > 2.0)
    ):
        raise ValidationError("dof", dof, "degrees of freedom > 2 (finite variance)")
    return float(dof)


def _check_sigma(sigma: float | FloatArray, field: str = "sigma_annual") -> FloatArray:
    if isinstance(sigma, bool):
        raise ValidationError(field, sigma, "a float or array of floats >= 0")
    array = np.asarray(sigma, dtype=np.float64)
    if array.ndim == 0:
        if not (math.isfinite(float(array)) and float(array) >= 0.0):
            raise ValidationError(field, sigma, "a finite float >= 0")
        return array
    # Arrays may carry NaN (estimator warm-up); NaN propagates to the result.
    present = array[~np.isnan(array)]
    if not np.all(np.isfinite(present) & (present >= 0.0)):
        raise ValidationError(field, "array with inf or negative entries", "values >= 0 or NaN")
    return array


def _check_series(values: FloatArray | list[float], field: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValidationError(field, array.shape, "a non-empty 1-D array")
    if not np.all(np.isfinite(array)):
        raise ValidationError(field, "array with NaN/inf", "finite values")
    return array


def _out(array: FloatArray, like: float | FloatArray) -> float | FloatArray:
    if np.ndim(like) == 0:
        return float(array)
    return array


# --------------------------------------------------------------------------- helpers


def z_score(alpha: float) -> float:
    """Standard-normal quantile at confidence ``alpha`` (``norm.ppf(alpha)``).

    Parameters
    ----------
    alpha
        Confidence level in (0, 1).

    Returns
    -------
    float
        ``z`` with ``P(Z <= z) = alpha``; 2.3263 for ``alpha=0.99``.
    """
    return float(stats.norm.ppf(_check_alpha(alpha)))


@overload
def horizon_sigma(sigma_annual: float, horizon_seconds: float) -> float: ...
@overload
def horizon_sigma(sigma_annual: FloatArray, horizon_seconds: float) -> FloatArray: ...
def horizon_sigma(sigma_annual: float | FloatArray, horizon_seconds: float) -> float | FloatArray:
    """Scale an annualized volatility to a horizon: ``sigma * sqrt(h / SECONDS_PER_YEAR)``.

    Parameters
    ----------
    sigma_annual
        Annualized volatility (scalar or array, >= 0; NaN entries give NaN).
    horizon_seconds
        Horizon in seconds (> 0).

    Returns
    -------
    float or FloatArray
        Standard deviation of the horizon log return (same shape as ``sigma_annual``).
    """
    sigma = _check_sigma(sigma_annual)
    h = _check_horizon(horizon_seconds)
    return _out(sigma * math.sqrt(h / SECONDS_PER_YEAR), sigma_annual)


# --------------------------------------------------------------------------- parametric


@overload
def normal_var(sigma_annual: float, horizon_seconds: float, alpha: float) -> float: ...
@overload
def normal_var(sigma_annual: FloatArray, horizon_seconds: float, alpha: float) -> FloatArray: ...
def normal_var(
    sigma_annual: float | FloatArray, horizon_seconds: float, alpha: float
) -> float | FloatArray:
    """Normal VaR: ``z(alpha) * sigma_annual * sqrt(horizon_seconds / SECONDS_PER_YEAR)``.

    Parameters
    ----------
    sigma_annual
        Annualized volatility (scalar or array, >= 0; NaN entries give NaN).
    horizon_seconds
        Horizon in seconds (> 0).
    alpha
        Confidence level in (0, 1).

    Returns
    -------
    float or FloatArray
        Loss fraction of notional (same for long and short).
    """
    z = z_score(alpha)
    sigma_h = _check_sigma(sigma_annual) * math.sqrt(
        _check_horizon(horizon_seconds) / SECONDS_PER_YEAR
    )
    return _out(z * sigma_h, sigma_annual)


@overload
def normal_es(sigma_annual: float, horizon_seconds: float, alpha: float) -> float: ...
@overload
def normal_es(sigma_annual: FloatArray, horizon_seconds: float, alpha: float) -> FloatArray: ...
def normal_es(
    sigma_annual: float | FloatArray, horizon_seconds: float, alpha: float
) -> float | FloatArray:
    """Normal expected shortfall: ``sigma_h * phi(z(alpha)) / (1 - alpha)``.

    Parameters
    ----------
    sigma_annual
        Annualized volatility (scalar or array, >= 0; NaN entries give NaN).
    horizon_seconds
        Horizon in seconds (> 0).
    alpha
        Confidence level in (0, 1).

    Returns
    -------
    float or FloatArray
        Expected loss fraction beyond VaR.
    """
    a = _check_alpha(alpha)
    z = z_score(a)
    sigma_h = _check_sigma(sigma_annual) * math.sqrt(
        _check_horizon(horizon_seconds) / SECONDS_PER_YEAR
    )
    return _out(sigma_h * float(stats.norm.pdf(z)) / (1.0 - a), sigma_annual)


def _t_scale(dof: float) -> float:
    """Factor making a standard t with ``dof`` degrees of freedom have unit variance."""
    return math.sqrt((dof - 2.0) / dof)


@overload
def student_t_var(sigma_annual: float, horizon_seconds: float, alpha: float, dof: float) -> float: ...
@overload
def student_t_var(
    sigma_annual: FloatArray, horizon_seconds: float, alpha: float, dof: float
) -> FloatArray: ...
def student_t_var(
    sigma_annual: float | FloatArray, horizon_seconds: float, alpha: float, dof: float
) -> float | FloatArray:
    """Student-t VaR with the t scaled so its standard deviation is ``sigma_h``.

    ``VaR = t_dof.ppf(alpha) * sqrt((dof - 2) / dof) * sigma_h``.

    Parameters
    ----------
    sigma_annual
        Annualized volatility (scalar or array, >= 0; NaN entries give NaN).
    horizon_seconds
        Horizon in seconds (> 0).
    alpha
        Confidence level in (0, 1).
    dof
        Degrees of freedom (> 2).

    Returns
    -------
    float or FloatArray
        Loss fraction of notional.
    """
    a = _check_alpha(alpha)
    nu = _check_dof(dof)
    sigma_h = _check_sigma(sigma_annual) * math.sqrt(
        _check_horizon(horizon_seconds) / SECONDS_PER_YEAR
    )
    q = float(stats.t.ppf(a, nu))
    return _out(q * _t_scale(nu) * sigma_h, sigma_annual)


@overload
def student_t_es(sigma_annual: float, horizon_seconds: float, alpha: float, dof: float) -> float: ...
@overload
def student_t_es(
    sigma_annual: FloatArray, horizon_seconds: float, alpha: float, dof: float
) -> FloatArray: ...
def student_t_es(
    sigma_annual: float | FloatArray, horizon_seconds: float, alpha: float, dof: float
) -> float | FloatArray:
    """Student-t expected shortfall, t scaled to standard deviation ``sigma_h``.

    ``ES = sigma_h * sqrt((dof-2)/dof) * f(q) * (dof + q**2) / ((dof - 1) * (1 - alpha))``
    with ``q = t_dof.ppf(alpha)`` and ``f`` the standard t density.

    Parameters
    ----------
    sigma_annual
        Annualized volatility (scalar or array, >= 0; NaN entries give NaN).
    horizon_seconds
        Horizon in seconds (> 0).
    alpha
        Confidence level in (0, 1).
    dof
        Degrees of freedom (> 2).

    Returns
    -------
    float or FloatArray
        Expected loss fraction beyond VaR.
    """
    a = _check_alpha(alpha)
    nu = _check_dof(dof)
    sigma_h = _check_sigma(sigma_annual) * math.sqrt(
        _check_horizon(horizon_seconds) / SECONDS_PER_YEAR
    )
    q = float(stats.t.ppf(a, nu))
    tail = float(stats.t.pdf(q, nu)) * (nu + q * q) / ((nu - 1.0) * (1.0 - a))
    return _out(tail * _t_scale(nu) * sigma_h, sigma_annual)


# --------------------------------------------------------------------------- empirical


def _losses(returns: FloatArray, side: Side) -> FloatArray:
    return -returns if side == "long" else returns.copy()


def _empirical_var_es(losses: FloatArray, alpha: float, field: str) -> tuple[float, float]:
    """Empirical VaR (inverted-CDF quantile) and Acerbi-Tasche ES of a loss sample."""
    n = losses.shape[0]
    needed = math.ceil(1.0 / (1.0 - alpha) - 1e-9)
    if n < needed:
        raise ValidationError(
            field, f"{n} observations", f">= {needed} observations for alpha={alpha}"
        )
    ordered = np.sort(losses)
    # VaR = smallest l with F(l) >= alpha, F the empirical CDF; k = ceil(alpha * n).
    k = max(1, math.ceil(alpha * n - 1e-9))
    var = float(ordered[k - 1])
    beyond = ordered[ordered > var]
    at_or_below = n - beyond.shape[0]
    es = (float(np.sum(beyond)) / n + var * (at_or_below / n - alpha)) / (1.0 - alpha)
    return var, es


def historical_var(
    returns: FloatArray | list[float], alpha: float, *, side: Side = "long"
) -> float:
    """Historical-simulation VaR: the ``alpha`` quantile of the sample losses.

    Uses the inverted-CDF quantile (the ``ceil(alpha * n)``-th smallest loss), so for
    the losses 1, 2, ..., 100 the 95 % VaR is 95.

    Parameters
    ----------
    returns
        Returns over the VaR horizon (fractions, e.g. log returns), 1-D, finite, at
        least ``ceil(1 / (1 - alpha))`` of them.
    alpha
        Confidence level in (0, 1).
    side
        ``"long"`` (loss = -return) or ``"short"`` (loss = return).

    Returns
    -------
    float
        Loss fraction of notional.
    """
    a = _check_alpha(alpha)
    losses = _losses(_check_series(returns, "returns"), _check_side(side))
    return _empirical_var_es(losses, a, "returns")[0]


def historical_es(
    returns: FloatArray | list[float], alpha: float, *, side: Side = "long"
) -> float:
    """Historical-simulation expected shortfall (Acerbi-Tasche tail mean).

    For the losses 1, ..., 100 the 95 % ES is the mean of 96..100 = 98.

    Parameters
    ----------
    returns
        Returns over the horizon, as for :func:`historical_var`.
    alpha
        Confidence level in (0, 1).
    side
        ``"long"`` or ``"short"``.

    Returns
    -------
    float
        Expected loss fraction beyond VaR (>= VaR).
    """
    a = _check_alpha(alpha)
    losses = _losses(_check_series(returns, "returns"), _check_side(side))
    return _empirical_var_es(losses, a, "returns")[1]


def _fhs_losses(
    returns: FloatArray | list[float],
    sigma_series: FloatArray | list[float],
    sigma_now: float,
    side: Side,
) -> FloatArray:
    r = _check_series(returns, "returns")
    s = _check_series(sigma_series, "sigma_series")
    if s.shape != r.shape:
        raise ValidationError("sigma_series", s.shape, f"same shape as returns {r.shape}")
    if np.any(s <= 0.0):
        raise ValidationError("sigma_series", "array with entries <= 0", "volatilities > 0")
    now = _check_sigma(sigma_now, "sigma_now")
    if now.ndim != 0:
        raise ValidationError("sigma_now", sigma_now, "a scalar volatility >= 0")
    rescaled = r / s * float(now)
    return _losses(rescaled, _check_side(side))


def filtered_historical_var(
    returns: FloatArray | list[float],
    sigma_series: FloatArray | list[float],
    sigma_now: float,
    alpha: float,
    *,
    side: Side = "long",
) -> float:
    """Filtered historical simulation VaR (Barone-Adesi et al.).

    Each return is standardized by the volatility that was forecast for it,
    ``z[t] = returns[t] / sigma_series[t]``, rescaled to today's volatility
    ``sigma_now * z[t]``, and the historical VaR of that sample is returned.

    ``sigma_series`` and ``sigma_now`` must be in the same units (e.g. both annualized);
    only their ratio matters, so the result is a loss over the returns' own horizon
    (one bar). With :meth:`VolatilityEstimator.estimate` output ``sig`` for prices
    ``p``, use ``returns = diff(log(p))[k:]``, ``sigma_series = sig[k:-1]`` (the forecast
    made at the previous bar), ``sigma_now = sig[-1]``.

    Parameters
    ----------
    returns
        Per-bar returns, 1-D, finite.
    sigma_series
        Volatility forecast for each return (> 0), same shape as ``returns``.
    sigma_now
        Current volatility forecast (>= 0), same units as ``sigma_series``.
    alpha
        Confidence level in (0, 1).
    side
        ``"long"`` or ``"short"``.

    Returns
    -------
    float
        Loss fraction of notional over one bar.
    """
    a = _check_alpha(alpha)
    losses = _fhs_losses(returns, sigma_series, sigma_now, side)
    return _empirical_var_es(losses, a, "returns")[0]


def filtered_historical_es(
    returns: FloatArray | list[float],
    sigma_series: FloatArray | list[float],
    sigma_now: float,
    alpha: float,
    *,
    side: Side = "long",
) -> float:
    """Filtered historical simulation expected shortfall; see :func:`filtered_historical_var`.

    Parameters
    ----------
    returns
        Per-bar returns, 1-D, finite.
    sigma_series
        Volatility forecast for each return (> 0), same shape as ``returns``.
    sigma_now
        Current volatility forecast (>= 0), same units as ``sigma_series``.
    alpha
        Confidence level in (0, 1).
    side
        ``"long"`` or ``"short"``.

    Returns
    -------
    float
        Expected loss fraction beyond VaR over one bar.
    """
    a = _check_alpha(alpha)
    losses = _fhs_losses(returns, sigma_series, sigma_now, side)
    return _empirical_var_es(losses, a, "returns")[1]


def expanding_historical_var(
    losses: FloatArray | list[float],
    available_at: FloatArray | list[float],
    query_at: FloatArray | list[float],
    alpha: float,
    *,
    min_obs: int | None = None,
) -> FloatArray:
    """Historical VaR at each query time from the losses known by then (no look-ahead).

    The filtered-historical-simulation reference of a backtest: with ``losses`` the
    standardized moves ``move / sigma_h`` of past windows and ``available_at`` the bar at which
    each window ended, ``expanding_historical_var(...)[j] * sigma_h[query_at[j]]`` is the FHS
    margin at bar ``query_at[j]`` (Barone-Adesi et al.; :func:`filtered_historical_var` is the
    one-shot form). The quantile is the inverted-CDF one of :func:`historical_var`.

    Parameters
    ----------
    losses
        Loss sample (1-D, finite), in any unit.
    available_at
        Time at which each loss becomes known (same shape); a loss is used at query time ``t``
        if ``available_at <= t``.
    query_at
        Query times (1-D, any order).
    alpha
        Confidence level in (0, 1).
    min_obs
        Fewest losses needed for a value (default and minimum ``ceil(1 / (1 - alpha))``);
        earlier queries give NaN.

    Returns
    -------
    FloatArray
        One VaR per query, NaN where fewer than ``min_obs`` losses were known.
    """
    a = _check_alpha(alpha)
    x = _check_series(losses, "losses")
    t = np.asarray(available_at, dtype=np.float64)
    if t.shape != x.shape:
        raise ValidationError("available_at", t.shape, f"same shape as losses {x.shape}")
    q = np.asarray(query_at, dtype=np.float64)
    if q.ndim != 1:
        raise ValidationError("query_at", q.shape, "a 1-D array")
    needed = math.ceil(1.0 / (1.0 - a) - 1e-9)
    if min_obs is None:
        min_obs = needed
    if isinstance(min_obs, bool) or not isinstance(min_obs, (int, np.integer)) or min_obs < needed:
        raise ValidationError("min_obs", min_obs, f"an int >= {needed} for alpha={a}")
    order = np.argsort(t, kind="stable")
    x_sorted_by_time, t_sorted = x[order], t[order]
    out = np.full(q.shape, np.nan)
    known: list[float] = []
    used = 0
    for j in np.argsort(q, kind="stable"):
        stop = int(np.searchsorted(t_sorted, q[j], side="right"))
        for v in x_sorted_by_time[used:stop]:
            bisect.insort(known, float(v))
        used = max(used, stop)
        m = len(known)
        if m >= min_obs:
            out[j] = known[max(1, math.ceil(a * m - 1e-9)) - 1]
    return out


def gpd_tail_var(
    losses: FloatArray | list[float], alpha: float, *, threshold_quantile: float = 0.9
) -> float:
    """Peaks-over-threshold (EVT) VaR: a generalized Pareto law fitted to the tail of a sample.

    The exceedances ``y = x - u`` of the losses over ``u``, their ``threshold_quantile``
    empirical quantile, are fitted by maximum likelihood with a GPD (shape ``xi``, scale
    ``beta``, location 0); then ``VaR = u + beta / xi * (((1 - alpha) / (1 - q_u))**(-xi) - 1)``
    (McNeil & Frey 2000), the exponential limit when ``xi = 0``.

    Parameters
    ----------
    losses
        Loss sample (1-D, finite), e.g. standardized adverse moves.
    alpha
        Confidence level, in ``(threshold_quantile, 1)``.
    threshold_quantile
        Quantile of the sample used as the threshold ``u``, in (0.5, 1); at least 20 exceedances
        are needed.

    Returns
    -------
    float
        The ``alpha`` quantile of the losses, same unit as ``losses``.
    """
    a = _check_alpha(alpha)
    x = _check_series(losses, "losses")
    if isinstance(threshold_quantile, bool) or not 0.5 < float(threshold_quantile) < a:
        raise ValidationError("threshold_quantile", threshold_quantile, f"a float in (0.5, alpha={a})")
    u = float(np.quantile(x, threshold_quantile))
    y = x[x > u] - u
    if y.shape[0] < 20:
        raise ValidationError("losses", f"{y.shape[0]} exceedances over the threshold", ">= 20 exceedances")
    fitted = stats.genpareto.fit(y, floc=0.0)
    xi, beta = float(fitted[0]), float(fitted[2])
    tail = (1.0 - a) / (1.0 - float(threshold_quantile))
    if abs(xi) < 1e-9:
        return u - beta * math.log(tail)
    return u + beta / xi * (math.pow(tail, -xi) - 1.0)


# --------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class VaRResult:
    """Result of a simulation-based VaR / ES computation.

    Attributes
    ----------
    var
        Value-at-Risk, loss fraction of notional.
    es
        Expected shortfall, loss fraction of notional (>= ``var``).
    alpha
        Confidence level.
    horizon_seconds
        Horizon in seconds.
    sigma_horizon
        Standard deviation of the simulated horizon log return.
    side
        ``"long"`` or ``"short"``.
    n_paths
        Number of simulated returns.
    method
        Description of the model (``"monte_carlo/normal/linear"``).
    """

    var: float
    es: float
    alpha: float
    horizon_seconds: float
    sigma_horizon: float
    side: Side
    n_paths: int
    method: str


def monte_carlo_var(
    sigma_annual: float,
    horizon_seconds: float,
    alpha: float,
    n_paths: int,
    *,
    seed: int | np.random.Generator | None = None,
    side: Side = "long",
    dof: float | None = None,
    loss_mapping: Literal["linear", "exact"] = "linear",
) -> VaRResult:
    """Monte Carlo VaR and ES of a horizon return.

    Draws ``n_paths`` zero-mean horizon log returns with standard deviation
    ``sigma_h = sigma_annual * sqrt(horizon_seconds / SECONDS_PER_YEAR)``: normal, or
    Student-t scaled to that standard deviation if ``dof`` is given. Losses use the
    ``"linear"`` mapping (``-r`` long, ``r`` short; converges to :func:`normal_var`)
    or the ``"exact"`` price mapping (``1 - exp(r)`` long, ``exp(r) - 1`` short).

    Parameters
    ----------
    sigma_annual
        Annualized volatility (>= 0).
    horizon_seconds
        Horizon in seconds (> 0).
    alpha
        Confidence level in (0, 1).
    n_paths
        Number of draws (int, at least ``ceil(1 / (1 - alpha))``).
    seed
        Seed or generator; the same int seed always gives the same result. A passed
        generator is advanced.
    side
        ``"long"`` or ``"short"``.
    dof
        Student-t degrees of freedom (> 2), or None for normal draws.
    loss_mapping
        ``"linear"`` or ``"exact"``.

    Returns
    -------
    VaRResult
        VaR, ES and the inputs.
    """
    a = _check_alpha(alpha)
    sigma = _check_sigma(sigma_annual)
    if sigma.ndim != 0:
        raise ValidationError("sigma_annual", sigma_annual, "a scalar volatility >= 0")
    h = _check_horizon(horizon_seconds)
    if isinstance(n_paths, bool) or not isinstance(n_paths, (int, np.integer)) or n_paths < 1:
        raise ValidationError("n_paths", n_paths, "a positive int")
    s = _check_side(side)
    nu = None if dof is None else _check_dof(dof)
    if loss_mapping not in ("linear", "exact"):
        raise ValidationError("loss_mapping", loss_mapping, "'linear' or 'exact'")
    if seed is not None and not isinstance(seed, (int, np.integer, np.random.Generator)):
        raise ValidationError("seed", seed, "an int, a numpy Generator or None")
    if isinstance(seed, bool):
        raise ValidationError("seed", seed, "an int, a numpy Generator or None")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sigma_h = float(sigma) * math.sqrt(h / SECONDS_PER_YEAR)
    if nu is None:
        draws = rng.standard_normal(int(n_paths))
    else:
        draws = rng.standard_t(nu, int(n_paths)) * _t_scale(nu)
    r = draws * sigma_h
    if loss_mapping == "linear":
        losses = -r if s == "long" else r
    else:
        losses = -np.expm1(r) if s == "long" else np.expm1(r)
    var, es = _empirical_var_es(losses, a, "n_paths")
    method = f"monte_carlo/{'normal' if nu is None else f't{nu:g}'}/{loss_mapping}"
    return VaRResult(
        var=var,
        es=es,
        alpha=a,
        horizon_seconds=h,
        sigma_horizon=sigma_h,
        side=s,
        n_paths=int(n_paths),
        method=method,
    )
