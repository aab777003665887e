"""Backtesting margin requirements against realized price moves.

:func:`kupiec_pof` is Kupiec's (1995) proportion-of-failures likelihood-ratio test;
:func:`christoffersen` is Christoffersen's (1998) Markov test of independence of the breaches
and the joint conditional-coverage test (right rate *and* no clustering).
:func:`backtest_margin` counts how often the adverse price move after each start bar
exceeded the margin fraction a model required at that bar, measured two ways:

``intrabar``
    The worst adverse excursion within the horizon, using the bars' lows (long) or
    highs (short): ``1 - min(low[i+1..i+h]) / close[i]`` for a long,
    ``max(high[i+1..i+h]) / close[i] - 1`` for a short. This is what a liquidation
    engine that monitors continuously would see.
``close_to_close``
    The move from the start close to the close ``h`` bars later:
    ``1 - close[i+h] / close[i]`` (long), ``close[i+h] / close[i] - 1`` (short). This
    is the quantity a horizon VaR forecasts.

Overlap: with ``step=1`` consecutive windows share ``h - 1`` bars, so breaches
cluster (one crash breaches up to ``h`` windows) and the Kupiec test, which assumes
independent trials, over-rejects. ``step=horizon_steps`` uses non-overlapping
windows: fewer observations but independent-ish trials for which the chi-square
p-value is valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special, stats  # type: ignore[import-untyped]

from ballast._typing import FloatArray, IntArray
from ballast.data import PriceHistory
from ballast.errors import ValidationError

__all__ = [
    "KupiecResult",
    "ChristoffersenResult",
    "BreachStats",
    "MarginBacktest",
    "kupiec_pof",
    "christoffersen",
    "adverse_moves",
    "contiguous_windows",
    "backtest_margin",
]


@dataclass(frozen=True)
class KupiecResult:
    """Outcome of Kupiec's proportion-of-failures test.

    Attributes
    ----------
    breaches
        Number of VaR breaches ``x``.
    observations
        Number of trials ``n``.
    expected_rate
        Breach probability under the model, ``p = 1 - alpha``.
    observed_rate
        ``x / n``.
    lr_statistic
        ``-2 ln[(1-p)^(n-x) p^x / ((1-x/n)^(n-x) (x/n)^x)]``, asymptotically chi2(1).
    p_value
        ``P(chi2(1) >= lr_statistic)``; small values reject the model.
    """

    breaches: int
    observations: int
    expected_rate: float
    observed_rate: float
    lr_statistic: float
    p_value: float

    def rejects(self, significance: float = 0.05) -> bool:
        """Whether the model is rejected at ``significance`` (e.g. 0.05).

        Parameters
        ----------
        significance
            Test size in (0, 1).

        Returns
        -------
        bool
            ``p_value < significance``.
        """
        if not 0.0 < significance < 1.0:
            raise ValidationError("significance", significance, "a float in (0, 1)")
        return self.p_value < significance


def _check_int(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(field, value, f"an int >= {minimum}")
    return int(value)


def _check_alpha(alpha: object) -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float, np.floating))
        or not 0.0 < float(alpha) < 1.0
    ):
        raise ValidationError("alpha", alpha, "a confidence level strictly between 0 and 1")
    return float(alpha)


def kupiec_pof(breaches: int, observations: int, alpha: float) -> KupiecResult:
    """Kupiec proportion-of-failures likelihood-ratio test.

    ``LR = -2 [ (n-x) ln(1-p) + x ln p - (n-x) ln(1-x/n) - x ln(x/n) ]`` with
    ``0 ln 0 = 0``, so ``x = 0`` and ``x = n`` are handled without ``log(0)``.

    Parameters
    ----------
    breaches
        Number of breaches ``x`` (0 <= x <= n).
    observations
        Number of trials ``n`` (>= 1).
    alpha
        VaR confidence level in (0, 1); expected breach rate ``p = 1 - alpha``.

    Returns
    -------
    KupiecResult
        Statistic and chi2(1) p-value.

    Raises
    ------
    ValidationError
        On negative counts, ``breaches > observations`` or ``alpha`` outside (0, 1).
    """
    n = _check_int(observations, "observations", 1)
    x = _check_int(breaches, "breaches", 0)
    if x > n:
        raise ValidationError("breaches", breaches, f"<= observations={n}")
    a = _check_alpha(alpha)
    p = 1.0 - a
    rate = x / n
    log_null = float(special.xlogy(n - x, 1.0 - p) + special.xlogy(x, p))
    log_alt = float(special.xlogy(n - x, 1.0 - rate) + special.xlogy(x, rate))
    lr = max(0.0, -2.0 * (log_null - log_alt))
    p_value = float(stats.chi2.sf(lr, df=1))
    return KupiecResult(
        breaches=x,
        observations=n,
        expected_rate=p,
        observed_rate=rate,
        lr_statistic=lr,
        p_value=p_value,
    )


@dataclass(frozen=True)
class ChristoffersenResult:
    """Christoffersen's (1998) tests on a breach (hit) sequence ``I_1 .. I_n`` in time order.

    The hits are modelled as a first-order Markov chain with ``pi01 = P(I_t=1 | I_{t-1}=0)`` and
    ``pi11 = P(I_t=1 | I_{t-1}=1)``, estimated from the ``n - 1`` transitions
    ``n00, n01, n10, n11``.

    Attributes
    ----------
    transitions
        ``(n00, n01, n10, n11)``.
    lr_independence
        ``-2 [ln L(pi) - ln L(pi01, pi11)]`` with ``pi = (n01 + n11) / (n - 1)``; chi2(1).
    p_independence
        ``P(chi2(1) >= lr_independence)``; small values say breaches cluster (or alternate).
    lr_conditional_coverage
        ``-2 [ln L(p) - ln L(pi01, pi11)]`` with ``p = 1 - alpha`` on the same transitions,
        which equals the Kupiec statistic of those ``n - 1`` trials plus ``lr_independence``;
        chi2(2).
    p_conditional_coverage
        ``P(chi2(2) >= lr_conditional_coverage)``; small values reject rate or independence.
    """

    transitions: tuple[int, int, int, int]
    lr_independence: float
    p_independence: float
    lr_conditional_coverage: float
    p_conditional_coverage: float


def christoffersen(hits: object, alpha: float) -> ChristoffersenResult:
    """Christoffersen independence and conditional-coverage likelihood-ratio tests.

    ``0 ln 0 = 0`` throughout, so sequences without breaches, or without two breaches in a row,
    are handled (their independence statistic is 0 when no transition out of a breach exists).

    Parameters
    ----------
    hits
        1-D sequence of booleans (or 0/1), breach indicators in time order, at least 2.
    alpha
        VaR confidence level in (0, 1); expected breach rate ``p = 1 - alpha``.

    Returns
    -------
    ChristoffersenResult
        Transition counts, statistics and chi-square p-values.

    Raises
    ------
    ValidationError
        If ``hits`` is not a 1-D 0/1 sequence of length >= 2, or ``alpha`` is outside (0, 1).
    """
    a = _check_alpha(alpha)
    arr = np.asarray(hits)
    if arr.ndim != 1 or arr.shape[0] < 2 or not np.all((arr == 0) | (arr == 1)):
        raise ValidationError("hits", f"array of shape {arr.shape}", "a 1-D 0/1 sequence of length >= 2")
    i = arr.astype(bool)
    prev, cur = i[:-1], i[1:]
    n00 = int(np.count_nonzero(~prev & ~cur))
    n01 = int(np.count_nonzero(~prev & cur))
    n10 = int(np.count_nonzero(prev & ~cur))
    n11 = int(np.count_nonzero(prev & cur))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    p = 1.0 - a
    log_markov = float(special.xlogy(n00, 1.0 - pi01) + special.xlogy(n01, pi01)
                       + special.xlogy(n10, 1.0 - pi11) + special.xlogy(n11, pi11))
    log_iid = float(special.xlogy(n00 + n10, 1.0 - pi) + special.xlogy(n01 + n11, pi))
    log_null = float(special.xlogy(n00 + n10, 1.0 - p) + special.xlogy(n01 + n11, p))
    lr_ind = max(0.0, -2.0 * (log_iid - log_markov))
    lr_cc = max(0.0, -2.0 * (log_null - log_markov))
    return ChristoffersenResult(
        transitions=(n00, n01, n10, n11),
        lr_independence=lr_ind,
        p_independence=float(stats.chi2.sf(lr_ind, df=1)),
        lr_conditional_coverage=lr_cc,
        p_conditional_coverage=float(stats.chi2.sf(lr_cc, df=2)),
    )


@dataclass(frozen=True)
class BreachStats:
    """Breach counts for one way of measuring the adverse move.

    Attributes
    ----------
    breaches
        Windows whose adverse move exceeded the required margin fraction.
    observations
        Windows tested.
    breach_rate
        ``breaches / observations`` (NaN if no observations).
    expected_rate
        ``1 - alpha``.
    kupiec
        Kupiec test, or None if there were no observations.
    breach_indices
        Start-bar indices of the breached windows.
    worst_excess
        Largest ``adverse_move - margin`` over all windows, as a fraction of notional
        (negative if never breached; NaN if no observations).
    christoffersen
        Christoffersen independence / conditional-coverage tests of the hit sequence of the
        tested windows in time order, or None with fewer than 2 observations.
    mean_margin
        Average required margin over the tested windows, fraction of notional (NaN if none).
    """

    breaches: int
    observations: int
    breach_rate: float
    expected_rate: float
    kupiec: KupiecResult | None
    breach_indices: IntArray
    worst_excess: float
    christoffersen: ChristoffersenResult | None = None
    mean_margin: float = math.nan


@dataclass(frozen=True)
class MarginBacktest:
    """Result of :func:`backtest_margin`.

    The top-level ``breaches`` / ``observations`` / ``breach_rate`` / ``kupiec``
    properties refer to the ``intrabar`` measure (the liquidation-relevant one);
    ``close_to_close`` holds the end-of-horizon measure.

    Attributes
    ----------
    intrabar
        Breach stats of the worst high/low excursion within the horizon.
    close_to_close
        Breach stats of the close-to-close move over the horizon.
    horizon_steps
        Horizon in bars.
    horizon_seconds
        Horizon in seconds (``horizon_steps * interval_seconds``).
    step
        Bars between consecutive window starts.
    side
        ``"long"`` or ``"short"``.
    alpha
        Confidence level the margin was designed for.
    expected_rate
        ``1 - alpha``.
    skipped_gap_windows
        Windows excluded because they span a data gap.
    window_starts
        Start-bar indices of the tested windows, in order (the same for both measures).
    """

    intrabar: BreachStats
    close_to_close: BreachStats
    horizon_steps: int
    horizon_seconds: int
    step: int
    side: Literal["long", "short"]
    alpha: float
    expected_rate: float
    skipped_gap_windows: int
    window_starts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def breaches(self) -> int:
        """Intrabar breach count."""
        return self.intrabar.breaches

    @property
    def observations(self) -> int:
        """Windows tested."""
        return self.intrabar.observations

    @property
    def breach_rate(self) -> float:
        """Intrabar breach rate."""
        return self.intrabar.breach_rate

    @property
    def kupiec(self) -> KupiecResult | None:
        """Kupiec test of the intrabar breaches."""
        return self.intrabar.kupiec


def _stats(
    moves: FloatArray, margins: FloatArray, starts: IntArray, alpha: float
) -> BreachStats:
    n = int(moves.shape[0])
    excess = moves - margins
    hit = excess > 0.0
    x = int(np.count_nonzero(hit))
    return BreachStats(
        breaches=x,
        observations=n,
        breach_rate=x / n if n else math.nan,
        expected_rate=1.0 - alpha,
        kupiec=kupiec_pof(x, n, alpha) if n else None,
        breach_indices=starts[hit].astype(np.int64),
        worst_excess=float(np.max(excess)) if n else math.nan,
        christoffersen=christoffersen(hit, alpha) if n >= 2 else None,
        mean_margin=float(np.mean(margins)) if n else math.nan,
    )


def adverse_moves(
    history: PriceHistory, horizon_steps: int, side: Literal["long", "short"]
) -> tuple[FloatArray, FloatArray]:
    """Adverse moves of every window of ``horizon_steps`` bars, as fractions of the entry close.

    Window ``i`` (start bars ``0 .. n - h - 1``) enters at ``close[i]`` and covers bars
    ``i+1 .. i+h``.

    Parameters
    ----------
    history
        Price history.
    horizon_steps
        Horizon ``h`` in bars (1 <= h < number of bars).
    side
        ``"long"`` (adverse = down) or ``"short"`` (adverse = up).

    Returns
    -------
    tuple of FloatArray
        ``(intrabar, close_to_close)``, each of length ``n - h``: the worst excursion
        (``1 - min(low) / close[i]`` long, ``max(high) / close[i] - 1`` short) and the end-point
        move (``1 - close[i+h] / close[i]`` long, ``close[i+h] / close[i] - 1`` short).
    """
    if side not in ("long", "short"):
        raise ValidationError("side", side, "'long' or 'short'")
    n = len(history)
    h = _check_int(horizon_steps, "horizon_steps", 1)
    if h >= n:
        raise ValidationError("horizon_steps", horizon_steps, f"< number of bars ({n})")
    n_windows = n - h
    close = history.close
    entry = close[:n_windows]
    if side == "long":
        extreme = np.min(sliding_window_view(history.low[1:], h), axis=1)[:n_windows]
        return 1.0 - extreme / entry, 1.0 - close[h:] / entry
    extreme = np.max(sliding_window_view(history.high[1:], h), axis=1)[:n_windows]
    return extreme / entry - 1.0, close[h:] / entry - 1.0


def contiguous_windows(history: PriceHistory, horizon_steps: int) -> npt.NDArray[np.bool_]:
    """Whether each window of :func:`adverse_moves` lies on consecutive bars (no timestamp gap).

    Parameters
    ----------
    history
        Price history.
    horizon_steps
        Horizon ``h`` in bars (1 <= h < number of bars).

    Returns
    -------
    numpy bool array
        Length ``n - h``; ``True`` where bars ``i .. i+h`` are ``interval_seconds`` apart.
    """
    h = _check_int(horizon_steps, "horizon_steps", 1)
    n_windows = len(history) - h
    contiguous_step = np.diff(history.timestamps) == history.interval_seconds
    # Window i spans steps i .. i+h-1 of the diff array.
    out: npt.NDArray[np.bool_] = np.all(sliding_window_view(contiguous_step, h), axis=1)[:n_windows]
    return out


def backtest_margin(
    history: PriceHistory,
    margin_fraction_series: FloatArray,
    horizon_steps: int,
    side: Literal["long", "short"],
    *,
    alpha: float = 0.99,
    step: int = 1,
    skip_gaps: bool = True,
) -> MarginBacktest:
    """Count how often the adverse move after a bar exceeded the margin required at it.

    For every start bar ``i`` (every ``step`` bars from the first bar with a finite
    margin, while ``i + horizon_steps`` is in range) the margin fraction
    ``margin_fraction_series[i]`` (set at the close of bar ``i``, entry at
    ``close[i]``) is compared with the adverse move over bars ``i+1 .. i+horizon_steps``,
    both intrabar (high/low) and close-to-close; a breach is ``move > margin``.

    Parameters
    ----------
    history
        Price history (prices in USD per unit).
    margin_fraction_series
        Required margin as a fraction of notional per bar (>= 0, NaN = no requirement
        yet / skip), same length as ``history``.
    horizon_steps
        Horizon in bars (int >= 1).
    side
        ``"long"`` (loses on down moves) or ``"short"`` (loses on up moves).
    alpha
        Confidence level the margin targets; expected breach rate ``1 - alpha``.
    step
        Bars between window starts (int >= 1). ``step=horizon_steps`` gives
        non-overlapping windows (independent trials for the Kupiec test); ``step=1``
        gives overlapping, autocorrelated windows.
    skip_gaps
        If True (default) exclude windows whose bars are not contiguous
        (a gap in ``history.timestamps``), since they span more wall-clock time; the count is
        ``skipped_gap_windows``. False treats consecutive bars as consecutive periods (data of
        a market that closes at weekends, whose gaps are not missing bars).
        ``ballast backtest --gaps skip|keep``.

    Returns
    -------
    MarginBacktest
        Intrabar and close-to-close breach statistics with Kupiec and Christoffersen tests
        and the average margin.

    Raises
    ------
    ValidationError
        On a bad ``side``, ``horizon_steps``, ``step``, ``alpha``, or a margin series of
        the wrong length / with negative or infinite values.
    """
    if side not in ("long", "short"):
        raise ValidationError("side", side, "'long' or 'short'")
    h = _check_int(horizon_steps, "horizon_steps", 1)
    stride = _check_int(step, "step", 1)
    a = _check_alpha(alpha)
    if not isinstance(history, PriceHistory):
        raise ValidationError("history", type(history).__name__, "a PriceHistory")
    margins = np.asarray(margin_fraction_series, dtype=np.float64)
    n = len(history)
    if margins.shape != (n,):
        raise ValidationError(
            "margin_fraction_series", margins.shape, f"a 1-D array of length {n}"
        )
    finite = np.isfinite(margins)
    if np.any(np.isinf(margins)) or np.any(margins[finite] < 0.0):
        raise ValidationError(
            "margin_fraction_series", "array with inf or negative entries", "NaN or >= 0"
        )
    if h >= n:
        raise ValidationError("horizon_steps", horizon_steps, f"< number of bars ({n})")

    n_windows = n - h  # start bars 0 .. n-h-1
    intrabar, closing = adverse_moves(history, h, side)

    valid = finite[:n_windows]
    first = int(np.argmax(valid)) if np.any(valid) else n_windows
    on_grid = np.zeros(n_windows, dtype=bool)
    on_grid[first::stride] = True
    selected = on_grid & valid
    skipped = 0
    if skip_gaps:
        contiguous = contiguous_windows(history, h)
        skipped = int(np.count_nonzero(selected & ~contiguous))
        selected &= contiguous
    starts = np.flatnonzero(selected).astype(np.int64)
    used = margins[starts]
    return MarginBacktest(
        intrabar=_stats(intrabar[starts], used, starts, a),
        close_to_close=_stats(closing[starts], used, starts, a),
        horizon_steps=h,
        horizon_seconds=h * history.interval_seconds,
        step=stride,
        side=side,
        alpha=a,
        expected_rate=1.0 - a,
        skipped_gap_windows=skipped,
        window_starts=starts,
    )
