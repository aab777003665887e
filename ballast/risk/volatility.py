"""Rolling volatility estimators with one API (in the spirit of ``arch``'s ``VolatilityProcess``).

Conventions shared by every estimator
-------------------------------------
* Input: a :class:`~ballast.data.PriceHistory`, an :class:`OHLC` tuple of equal-length
  price arrays, or a 1-D array of close prices (close-only input works for
  close-based estimators only). Prices are in any positive unit (USD per BTC).
* Returns are per-bar log returns ``r[i] = ln(close[i] / close[i-1])``.
* Output of :meth:`VolatilityEstimator.estimate` has one value per bar:
  ``sigma[i]`` is the estimator's forecast of the volatility of the **next** bar's
  return (bar ``i+1``), formed from bars ``0..i`` only (no look-ahead). It is the
  value a risk engine could publish at the close of bar ``i``. Warm-up bars are NaN.
* Output is **annualized** volatility (dimensionless, per sqrt(year)): a per-bar
  standard deviation ``s`` is reported as ``s * sqrt(SECONDS_PER_YEAR / interval_seconds)``
  with ``SECONDS_PER_YEAR = 365 * 86400`` (crypto trades 24/7, so calendar seconds are
  used, not trading days). For 15-minute bars the factor is ``sqrt(35040) ~= 187.2``.
* Data gaps (missing bars) are not corrected for: a return across a gap is treated as
  a single bar's return, which slightly inflates the estimate around gaps.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

import numpy as np
from arch import arch_model
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter  # type: ignore[import-untyped]

from ballast._typing import FloatArray
from ballast.data import PriceHistory
from ballast.errors import DataError, ValidationError

__all__ = [
    "SECONDS_PER_YEAR",
    "OHLC",
    "PriceInput",
    "VolatilityEstimator",
    "CloseToClose",
    "EWMA",
    "Parkinson",
    "GarmanKlass",
    "Garch11",
    "GarchParams",
    "annualization_factor",
]

SECONDS_PER_YEAR: int = 365 * 86400
"""Seconds in a 365-day calendar year (31,536,000), the annualization base."""


class OHLC(NamedTuple):
    """Equal-length 1-D arrays of bar prices (any positive unit)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray


PriceInput: TypeAlias = PriceHistory | OHLC | FloatArray
"""Accepted price input: a history, an OHLC tuple, or a 1-D close-price array."""


def annualization_factor(interval_seconds: int) -> float:
    """Multiplier turning a per-bar standard deviation into an annualized volatility.

    Parameters
    ----------
    interval_seconds
        Bar length in seconds (> 0).

    Returns
    -------
    float
        ``sqrt(SECONDS_PER_YEAR / interval_seconds)``.

    Raises
    ------
    ValidationError
        If ``interval_seconds`` is not a positive int.
    """
    _check_interval(interval_seconds)
    return math.sqrt(SECONDS_PER_YEAR / interval_seconds)


def _check_interval(interval_seconds: object) -> int:
    if (
        isinstance(interval_seconds, bool)
        or not isinstance(interval_seconds, (int, np.integer))
        or int(interval_seconds) <= 0
    ):
        raise ValidationError("interval_seconds", interval_seconds, "a positive int (seconds)")
    return int(interval_seconds)


def _check_window(value: object, minimum: int, field: str = "window") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(field, value, f"an int >= {minimum} (bars)")
    return int(value)


def _as_prices(values: object, field: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationError(field, array.shape, "a 1-D array")
    if not np.all(np.isfinite(array) & (array > 0.0)):
        raise ValidationError(field, "array with non-finite or non-positive entries", "prices > 0")
    return array


def _resolve(data: PriceInput, interval_seconds: int | None) -> tuple[OHLC | None, FloatArray, int]:
    """Normalize the input to (ohlc or None, close, interval_seconds)."""
    if isinstance(data, PriceHistory):
        if interval_seconds is not None and _check_interval(interval_seconds) != (
            data.interval_seconds
        ):
            raise ValidationError(
                "interval_seconds",
                interval_seconds,
                f"omitted or equal to the history's {data.interval_seconds}",
            )
        ohlc = OHLC(data.open, data.high, data.low, data.close)
        return ohlc, data.close, data.interval_seconds
    if interval_seconds is None:
        raise ValidationError("interval_seconds", None, "a positive int when passing arrays")
    interval = _check_interval(interval_seconds)
    if isinstance(data, OHLC):
        arrays = OHLC(*(_as_prices(a, f) for a, f in zip(data, OHLC._fields, strict=True)))
        n = arrays.close.shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValidationError("data", [a.shape[0] for a in arrays], "equal-length arrays")
        return arrays, arrays.close, interval
    close = _as_prices(data, "close")
    return None, close, interval


def _log_returns(close: FloatArray) -> FloatArray:
    return np.diff(np.log(close))


class VolatilityEstimator(ABC):
    """Abstract rolling volatility estimator.

    Subclasses implement :meth:`_per_bar_sigma`; :meth:`estimate` handles input
    normalization and annualization, :meth:`forecast_one_step` takes the last value.
    """

    requires_ohlc: bool = False
    """True when the estimator needs open/high/low as well as close."""

    @abstractmethod
    def _per_bar_sigma(self, ohlc: OHLC | None, close: FloatArray) -> FloatArray:
        """Per-bar (not annualized) volatility forecasts, one per bar, NaN in warm-up."""

    @property
    @abstractmethod
    def min_bars(self) -> int:
        """Number of bars needed before the first non-NaN estimate."""

    def estimate(self, data: PriceInput, *, interval_seconds: int | None = None) -> FloatArray:
        """Rolling annualized volatility, one value per bar.

        Parameters
        ----------
        data
            A :class:`~ballast.data.PriceHistory`, an :class:`OHLC` tuple, or a 1-D close
            array (close-based estimators only).
        interval_seconds
            Bar length in seconds; required for array input, optional (must match) for
            a history.

        Returns
        -------
        FloatArray
            ``sigma[i]``: annualized volatility forecast for bar ``i+1`` using bars
            ``0..i``; NaN for the first ``min_bars - 1`` bars.

        Raises
        ------
        ValidationError
            On malformed input, missing ``interval_seconds`` or close-only input to an
            OHLC estimator.
        """
        ohlc, close, interval = _resolve(data, interval_seconds)
        if self.requires_ohlc and ohlc is None:
            raise ValidationError(
                "data", "close-only array", f"OHLC or PriceHistory for {type(self).__name__}"
            )
        per_bar = self._per_bar_sigma(ohlc, close)
        return per_bar * annualization_factor(interval)

    def forecast_one_step(self, data: PriceInput, *, interval_seconds: int | None = None) -> float:
        """Annualized volatility forecast for the bar after the last one in ``data``.

        Parameters
        ----------
        data
            As for :meth:`estimate`.
        interval_seconds
            As for :meth:`estimate`.

        Returns
        -------
        float
            Annualized volatility (dimensionless per sqrt(year)).

        Raises
        ------
        DataError
            If ``data`` has fewer than :attr:`min_bars` bars.
        """
        series = self.estimate(data, interval_seconds=interval_seconds)
        value = float(series[-1]) if series.size else math.nan
        if not math.isfinite(value):
            raise DataError(
                f"{type(self).__name__} needs at least {self.min_bars} bars, got {series.size}"
            )
        return value


class CloseToClose(VolatilityEstimator):
    """Rolling sample standard deviation of the last ``window`` close-to-close log returns.

    Parameters
    ----------
    window
        Number of returns in the window (int >= 2).
    demean
        If True (default) subtract the window mean and use ``ddof=1``; if False use the
        zero-mean estimator ``sqrt(mean(r**2))``.
    """

    def __init__(self, window: int = 30, *, demean: bool = True) -> None:
        self.window = _check_window(window, 2)
        self.demean = bool(demean)

    @property
    def min_bars(self) -> int:
        return self.window + 1

    def _per_bar_sigma(self, ohlc: OHLC | None, close: FloatArray) -> FloatArray:
        out = np.full(close.shape[0], np.nan)
        returns = _log_returns(close)
        if returns.shape[0] < self.window:
            return out
        windows = sliding_window_view(returns, self.window)
        if self.demean:
            sigma = np.std(windows, axis=1, ddof=1)
        else:
            sigma = np.sqrt(np.mean(windows**2, axis=1))
        out[self.window :] = sigma
        return out


class EWMA(VolatilityEstimator):
    """RiskMetrics exponentially weighted moving average of squared returns.

    ``var[t+1|t] = lam * var[t|t-1] + (1 - lam) * r[t]**2`` (zero mean). The recursion is
    seeded with the mean squared return of the first ``warmup`` returns.

    Parameters
    ----------
    lam
        Decay factor in (0, 1); 0.94 is the RiskMetrics daily value.
    warmup
        Returns used to seed the variance (int >= 1); earlier bars are NaN.
    """

    def __init__(self, lam: float = 0.94, *, warmup: int = 30) -> None:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 < lam < 1.0:
            raise ValidationError("lam", lam, "a float in (0, 1)")
        self.lam = float(lam)
        self.warmup = _check_window(warmup, 1, "warmup")

    @property
    def min_bars(self) -> int:
        return self.warmup + 1

    def _per_bar_sigma(self, ohlc: OHLC | None, close: FloatArray) -> FloatArray:
        out = np.full(close.shape[0], np.nan)
        returns = _log_returns(close)
        if returns.shape[0] < self.warmup:
            return out
        squared = returns**2
        seed = float(np.mean(squared[: self.warmup]))
        tail = squared[self.warmup :]
        # var[k] after observing tail[k]: lam * var[k-1] + (1 - lam) * tail[k]; var[-1] = seed.
        filtered, _ = lfilter([1.0 - self.lam], [1.0, -self.lam], tail, zi=[self.lam * seed])
        variance = np.concatenate(([seed], np.asarray(filtered, dtype=np.float64)))
        out[self.warmup :] = np.sqrt(variance)
        return out


class Parkinson(VolatilityEstimator):
    """Parkinson (1980) high-low range estimator over a rolling window of bars.

    Per-bar variance ``mean(ln(high/low)**2) / (4 ln 2)``. Unbiased for driftless
    continuous Brownian motion; ignores the open-vs-previous-close jump (negligible
    for 24/7 markets). Discretely sampled highs/lows bias it slightly low.

    Parameters
    ----------
    window
        Number of bars in the window (int >= 1).
    """

    requires_ohlc = True

    def __init__(self, window: int = 30) -> None:
        self.window = _check_window(window, 1)

    @property
    def min_bars(self) -> int:
        return self.window

    def _bar_variance(self, ohlc: OHLC) -> FloatArray:
        return np.log(ohlc.high / ohlc.low) ** 2 / (4.0 * math.log(2.0))

    def _per_bar_sigma(self, ohlc: OHLC | None, close: FloatArray) -> FloatArray:
        assert ohlc is not None  # guaranteed by estimate()
        if np.any(ohlc.high < ohlc.low):
            raise ValidationError("data", "high < low", "high >= low in every bar")
        out = np.full(close.shape[0], np.nan)
        if close.shape[0] < self.window:
            return out
        bar_var = self._bar_variance(ohlc)
        mean_var = np.mean(sliding_window_view(bar_var, self.window), axis=1)
        out[self.window - 1 :] = np.sqrt(np.maximum(mean_var, 0.0))
        return out


class GarmanKlass(Parkinson):
    """Garman-Klass (1980) OHLC estimator over a rolling window of bars.

    Per-bar variance ``0.5 ln(H/L)**2 - (2 ln 2 - 1) ln(C/O)**2``, averaged over the
    window (the window mean is floored at 0). Unbiased for driftless Brownian motion,
    about 7x as efficient as close-to-close.

    Parameters
    ----------
    window
        Number of bars in the window (int >= 1).
    """

    def _bar_variance(self, ohlc: OHLC) -> FloatArray:
        hl = np.log(ohlc.high / ohlc.low)
        co = np.log(ohlc.close / ohlc.open)
        return 0.5 * hl**2 - (2.0 * math.log(2.0) - 1.0) * co**2


@dataclass(frozen=True)
class GarchParams:
    """Fitted GARCH(1,1) parameters on returns scaled by ``scale`` (percent if 100).

    ``var[t+1] = omega + alpha * (r[t] - mu)**2 + beta * var[t]`` with ``r`` and ``var``
    in scaled units.

    Attributes
    ----------
    mu
        Mean return per bar (scaled units; 0 for a zero-mean model).
    omega, alpha, beta
        GARCH coefficients (``omega`` in scaled units squared).
    nu
        Student-t degrees of freedom, or None for normal innovations.
    scale
        Multiplier applied to the log returns before fitting.
    converged
        Whether the optimizer reported convergence.
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float | None
    scale: float
    converged: bool

    @property
    def persistence(self) -> float:
        """``alpha + beta``; < 1 for a covariance-stationary process."""
        return self.alpha + self.beta


def _usable(params: GarchParams) -> bool:
    """Whether fitted parameters are finite, converged and covariance-stationary."""
    values = (params.mu, params.omega, params.alpha, params.beta)
    return (
        params.converged
        and all(math.isfinite(v) for v in values)
        and params.omega > 0.0
        and params.alpha >= 0.0
        and params.beta >= 0.0
        and params.persistence < 1.0
    )


class Garch11(VolatilityEstimator):
    """GARCH(1,1) fitted with ``arch`` (``arch_model(returns * scale, vol="GARCH", p=1, q=1)``).

    For a series, the model is re-fitted every ``refit_every`` bars on the most recent
    ``fit_window`` returns (expanding until that many exist) and, in between, the
    variance is filtered forward with the latest parameters (a re-fit that fails to
    converge or is non-stationary keeps the previous parameters). So ``sigma[i]`` uses
    parameters fitted on data up to bar ``k <= i`` and the filter up to bar ``i``: no
    look-ahead. The first estimate is at bar ``min_fit`` (bars before are NaN).

    Parameters
    ----------
    dist
        ``"normal"`` or ``"t"`` innovations.
    mean
        ``"Zero"`` or ``"Constant"`` mean model.
    refit_every
        Bars between re-fits (int >= 1).
    fit_window
        Maximum returns per fit (int >= 100).
    min_fit
        Returns needed for the first fit (int >= 100, <= ``fit_window``).
    scale
        Multiplier for returns before fitting (100 = percent), undone on output.
    """

    def __init__(
        self,
        *,
        dist: Literal["normal", "t"] = "normal",
        mean: Literal["Zero", "Constant"] = "Zero",
        refit_every: int = 500,
        fit_window: int = 2000,
        min_fit: int = 500,
        scale: float = 100.0,
    ) -> None:
        if dist not in ("normal", "t"):
            raise ValidationError("dist", dist, "'normal' or 't'")
        if mean not in ("Zero", "Constant"):
            raise ValidationError("mean", mean, "'Zero' or 'Constant'")
        self.dist: Literal["normal", "t"] = dist
        self.mean: Literal["Zero", "Constant"] = mean
        self.refit_every = _check_window(refit_every, 1, "refit_every")
        self.fit_window = _check_window(fit_window, 100, "fit_window")
        self.min_fit = _check_window(min_fit, 100, "min_fit")
        if self.min_fit > self.fit_window:
            raise ValidationError("min_fit", min_fit, f"<= fit_window={fit_window}")
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not (math.isfinite(scale) and scale > 0)
        ):
            raise ValidationError("scale", scale, "a finite float > 0")
        self.scale = float(scale)

    @property
    def min_bars(self) -> int:
        return self.min_fit + 1

    def _fit_scaled(self, scaled_returns: FloatArray) -> tuple[GarchParams, float]:
        """Fit on scaled returns; return params and the last in-sample conditional variance."""
        model = arch_model(
            scaled_returns,
            mean=self.mean,
            vol="GARCH",
            p=1,
            q=1,
            dist=self.dist,
            rescale=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
        values = {str(key): float(value) for key, value in result.params.items()}
        fitted = GarchParams(
            mu=values.get("mu", 0.0),
            omega=values["omega"],
            alpha=values["alpha[1]"],
            beta=values["beta[1]"],
            nu=values.get("nu"),
            scale=self.scale,
            converged=int(result.convergence_flag) == 0,
        )
        cond_vol = np.asarray(result.conditional_volatility, dtype=np.float64)
        return fitted, float(cond_vol[-1]) ** 2

    def fit(self, data: PriceInput, *, interval_seconds: int | None = None) -> GarchParams:
        """Fit GARCH(1,1) on the last ``fit_window`` log returns of ``data``.

        Parameters
        ----------
        data
            Prices, as for :meth:`estimate`.
        interval_seconds
            Bar length in seconds (required for arrays).

        Returns
        -------
        GarchParams
            Parameters in scaled-return units.

        Raises
        ------
        DataError
            If fewer than ``min_fit`` returns are available.
        """
        _, close, _ = _resolve(data, interval_seconds)
        returns = _log_returns(close)
        if returns.shape[0] < self.min_fit:
            raise DataError(f"Garch11 needs >= {self.min_fit} returns, got {returns.shape[0]}")
        params, _ = self._fit_scaled(returns[-self.fit_window :] * self.scale)
        return params

    def _per_bar_sigma(self, ohlc: OHLC | None, close: FloatArray) -> FloatArray:
        returns = _log_returns(close)
        n_ret = returns.shape[0]
        out = np.full(close.shape[0], np.nan)
        if n_ret < self.min_fit:
            return out
        scaled = returns * self.scale
        forecast_var = np.full(n_ret, np.nan)  # forecast_var[j]: variance of scaled[j + 1]
        fit_ends = range(self.min_fit, n_ret + 1, self.refit_every)
        boundaries = [*fit_ends, n_ret]
        current: GarchParams | None = None
        var_next = math.nan  # variance forecast for the next scaled return
        for start, stop in zip(boundaries[:-1], boundaries[1:], strict=True):
            # Fit on returns [start - fit_window, start); var_t is the fit's variance of
            # return start-1. A failed re-fit keeps the previous parameters and state.
            params, var_t = self._fit_scaled(scaled[max(0, start - self.fit_window) : start])
            if current is None or _usable(params):
                current = params
                shock = scaled[start - 1] - current.mu
                var_next = current.omega + current.alpha * shock * shock + current.beta * var_t
                forecast_var[start - 1] = var_next
            mu, omega, alpha, beta = current.mu, current.omega, current.alpha, current.beta
            for j in range(start, stop):
                shock = scaled[j] - mu
                var_next = omega + alpha * shock * shock + beta * var_next
                forecast_var[j] = var_next
        # Return j corresponds to bar j + 1.
        out[1:] = np.sqrt(forecast_var) / self.scale
        return out

    def forecast_one_step(self, data: PriceInput, *, interval_seconds: int | None = None) -> float:
        """One-step-ahead annualized volatility from a single fit on the latest returns.

        Parameters
        ----------
        data
            Prices, as for :meth:`estimate`.
        interval_seconds
            Bar length in seconds (required for arrays).

        Returns
        -------
        float
            ``sqrt(omega + alpha * (r[-1] - mu)**2 + beta * var[-1]) / scale``, annualized.

        Raises
        ------
        DataError
            If fewer than ``min_fit`` returns are available.
        """
        _, close, interval = _resolve(data, interval_seconds)
        returns = _log_returns(close)
        if returns.shape[0] < self.min_fit:
            raise DataError(f"Garch11 needs >= {self.min_fit} returns, got {returns.shape[0]}")
        scaled = returns[-self.fit_window :] * self.scale
        params, var_t = self._fit_scaled(scaled)
        shock = float(scaled[-1]) - params.mu
        var_next = params.omega + params.alpha * shock * shock + params.beta * var_t
        return math.sqrt(var_next) / self.scale * annualization_factor(interval)
