"""The published tail (issue 12): a per-side tail multiplier estimated off chain from past prices.

On chain (``MarginMath``, mirrored by :func:`ballast.model.tail_multiplier`)::

    tailLive = 1 + skewSens * adverseSkew + regimeSens * max(0, sigma - volRef) / volRef
    tail     = min(tailCap, max(tailFeed_side, tailLive))
    varMove  = z * sigma * sqrt(h / YEAR) * tail

``tailFeed_side`` is a WAD (1e18 = 1.0) the keeper publishes per side (long: from adverse down
moves; short: from adverse up moves); 0 means none published (the model without it). This module
computes it by filtered historical simulation (FHS), causally:

1. every past window of ``steps`` bars (the liquidation horizon) gives a standardized adverse
   move ``u = move / s_h``, where ``move`` is the worst intrabar excursion against the side
   (:func:`ballast.risk.backtest.adverse_moves`) and ``s_h`` the filter volatility over the
   horizon at the window's start: the keeper's EWMA ``sigma_h`` (the model's own sigma), or
   ``max(sigma_h, fast_h)`` with a faster EWMA (``fast_lambda``) that reacts to a shock within a
   bar or two;
2. at bar ``t`` the empirical ``alpha`` quantile ``q_t`` of the ``u`` of the windows that ended
   at or before ``t`` (the last ``window`` of them, or all; with ``combine_expanding`` the larger
   of the two) is the standardized VaR; the VaR move is ``q_t * s_h[t]``;
3. the feed is ``tailFeed = q_t * s_h[t] / (z * sigma_h[t])``, so that ``z * sigma * tail``
   equals the FHS VaR move, rounded up to 1e-6 and clamped to ``[1, cap]`` (the on-chain feed's
   bounds, ``cap <= 5`` = the contracts' hard bound on ``tailCap``); before ``min_obs`` windows
   are known the ``prior`` (the training quantile over ``z``) is published, or 0 without one.

Only bars up to ``t`` are read (a window that ends after ``t`` is not used), so the feed is a
function of the past: :func:`tail_feed_series` computes it at every bar for a backtest,
:func:`publish_tail` at the latest bar for the keeper.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm  # type: ignore[import-untyped]

from ballast._typing import WAD, FloatArray
from ballast.data import PriceHistory
from ballast.errors import DataError, ValidationError
from ballast.model import YEAR_SEC
from ballast.risk.backtest import adverse_moves, contiguous_windows
from ballast.risk.volatility import EWMA

Side = Literal["long", "short"]
SIDES: tuple[Side, Side] = ("long", "short")
FEED_MIN = 1.0
"""Smallest published tail (the on-chain feed's lower bound): the feed never lowers the margin
below the normal quantile ``z * sigma * sqrt(h)``."""
FEED_MAX = 5.0
"""Largest allowed ``cap`` (the contracts' hard bound on ``tailCapWad``, 5e18)."""


@dataclass(frozen=True)
class TailSpec:
    """Hyperparameters of the tail estimator (fitted on training data by ``ballast calibrate``)."""

    window: int | None = None
    """Past windows in the quantile sample (the most recent ones); ``None``: all (expanding)."""
    fast_lambda: float | None = None
    """Decay of the fast EWMA in the filter ``max(sigma_h, fast_h)``; ``None``: filter = ``sigma_h``."""
    combine_expanding: bool = False
    """With ``window``: the larger of the rolling and the expanding quantile."""
    cap: float = 4.0
    """Upper bound of the published feed (= the calibrated ``tailCap``), in ``[1, 5]``."""

    def __post_init__(self) -> None:
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or not 50 <= self.window <= 1_000_000):
            raise ValidationError("window", self.window, "None or an int in [50, 1000000] (past windows)")
        if self.fast_lambda is not None and (isinstance(self.fast_lambda, bool)
                                             or not isinstance(self.fast_lambda, (int, float))
                                             or not 0.5 <= self.fast_lambda < 0.94):
            raise ValidationError("fast_lambda", self.fast_lambda, "None or a decay in [0.5, 0.94)")
        if self.combine_expanding and self.window is None:
            raise ValidationError("combine_expanding", self.combine_expanding, "False when window is None")
        if not (isinstance(self.cap, (int, float)) and FEED_MIN <= self.cap <= FEED_MAX):
            raise ValidationError("cap", self.cap, f"[{FEED_MIN}, {FEED_MAX}]")

    def label(self) -> str:
        w = "expanding" if self.window is None else (f"max(last {self.window}, expanding)" if self.combine_expanding
                                                     else f"last {self.window}")
        f = "sigma_h" if self.fast_lambda is None else f"max(sigma_h, EWMA {self.fast_lambda:g})"
        return f"FHS quantile of {w} windows, filter {f}, feed in [1, {self.cap:g}]"


def min_windows(alpha: float) -> int:
    """Fewest past windows for an empirical ``alpha`` quantile: ``ceil(1 / (1 - alpha))``."""
    if not 0.5 < alpha < 1.0:
        raise ValidationError("alpha", alpha, "(0.5, 1)")
    return math.ceil(1.0 / (1.0 - alpha) - 1e-9)


def _per_bar(history: PriceHistory, lam: float) -> FloatArray:
    return np.asarray(EWMA(lam).estimate(history)) * math.sqrt(history.interval_seconds / YEAR_SEC)


@dataclass(frozen=True)
class Standardized:
    """Every window's adverse moves, the model's sigma and the filter over the horizon."""

    sigma_h: FloatArray
    """The keeper's EWMA per-bar sigma at the start bar times ``sqrt(steps)`` (fraction of price)."""
    scale_h: FloatArray
    """The filter volatility over the horizon (``sigma_h``, or ``max(sigma_h, fast_h)``)."""
    usable: np.ndarray
    """Window has a volatility and (with ``skip_gaps``) no timestamp gap."""
    moves: dict[Side, FloatArray]
    """Worst intrabar adverse move of each window (fraction of the entry close)."""
    steps: int


def standardize(history: PriceHistory, steps: int, spec: TailSpec, *, lam: float = 0.94,
                skip_gaps: bool = True) -> Standardized:
    """The windows of ``history`` (start bars ``0 .. n - steps - 1``) with their filter."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < len(history):
        raise ValidationError("steps", steps, f"an int in [1, {len(history) - 1}] (bars in the horizon)")
    n_windows = len(history) - steps
    sigma_h = (_per_bar(history, lam) * math.sqrt(steps))[:n_windows]
    scale_h = sigma_h
    if spec.fast_lambda is not None:
        fast = (_per_bar(history, spec.fast_lambda) * math.sqrt(steps))[:n_windows]
        scale_h = np.fmax(sigma_h, np.where(np.isfinite(sigma_h), np.nan_to_num(fast), np.nan))
    usable = np.isfinite(sigma_h) & (np.nan_to_num(sigma_h) > 0)
    if skip_gaps:
        usable &= contiguous_windows(history, steps)
    moves = {side: adverse_moves(history, steps, side)[0] for side in SIDES}
    return Standardized(sigma_h=sigma_h, scale_h=scale_h, usable=usable, moves=moves, steps=steps)


def past_quantile(values: FloatArray, available_at: np.ndarray, query_at: np.ndarray, level: float, *,
                  window: int | None = None, min_obs: int) -> FloatArray:
    """At each query time (ascending), the empirical ``level`` quantile (inverted CDF, as
    :func:`ballast.risk.var.expanding_historical_var`) of the values available by then (the last
    ``window`` of them by availability, or all); NaN with fewer than ``min_obs``."""
    order = np.argsort(available_at, kind="stable")
    vals, avail = np.asarray(values, dtype=np.float64)[order], np.asarray(available_at)[order]
    q = np.asarray(query_at)
    if q.size > 1 and np.any(np.diff(q) < 0):
        raise ValidationError("query_at", "unsorted", "ascending query times")
    out = np.full(q.size, np.nan)
    known: list[float] = []
    fifo: collections.deque[float] = collections.deque()
    used = 0
    for j, t in enumerate(q):
        stop = int(np.searchsorted(avail, t, side="right"))
        for v in vals[used:stop]:
            fv = float(v)
            bisect.insort(known, fv)
            if window is not None:
                fifo.append(fv)
                if len(fifo) > window:
                    old = fifo.popleft()
                    del known[bisect.bisect_left(known, old)]
        used = max(used, stop)
        m = len(known)
        if m >= min_obs:
            out[j] = known[max(1, math.ceil(level * m - 1e-9)) - 1]
    return out


def standardized_quantiles(std: Standardized, side: Side, alpha: float, spec: TailSpec,
                           query_at: np.ndarray) -> FloatArray:
    """``q_t`` of the standardized moves of ``side`` at the (ascending) bars ``query_at``."""
    ok = std.usable & np.isfinite(std.scale_h)
    idx = np.flatnonzero(ok)
    u = std.moves[side][idx] / std.scale_h[idx]
    ends = idx + std.steps
    need = min_windows(alpha)
    q = past_quantile(u, ends, query_at, alpha, window=spec.window, min_obs=need)
    if spec.combine_expanding:
        q = np.fmax(q, past_quantile(u, ends, query_at, alpha, window=None, min_obs=need))
    return q


def feed_value(q: float, scale_h: float, sigma_h: float, z: float, cap: float) -> float:
    """``q * scale_h / (z * sigma_h)`` rounded up to 1e-6 and clamped to ``[1, cap]``."""
    raw = q * scale_h / (z * sigma_h)
    return min(cap, max(FEED_MIN, math.ceil(raw * 1e6 - 1e-6) / 1e6))


def tail_feed_series(history: PriceHistory, steps: int, alpha: float, spec: TailSpec, *, z: float | None = None,
                     lam: float = 0.94, skip_gaps: bool = True, prior: dict[Side, float] | None = None,
                     bars: np.ndarray | None = None) -> dict[Side, FloatArray]:
    """The feed each side's keeper would publish at the close of each bar (plain numbers).

    Parameters
    ----------
    history
        Bars (the feed at bar ``t`` reads bars ``0 .. t`` only).
    steps
        Bars in the liquidation horizon.
    alpha
        Confidence level in (0.5, 1).
    spec
        Estimator hyperparameters.
    z
        The model's ``zWad / 1e18`` (default ``norm.ppf(alpha)``).
    prior
        Feed per side before ``ceil(1 / (1 - alpha))`` windows are known; ``None``: 0 (none).
    bars
        Bars at which to compute it (ascending; default every bar).

    Returns
    -------
    dict
        Per side, an array of ``len(history)``: the feed in ``[1, cap]`` (or the prior, or 0)
        where ``bars`` asks for it and the volatility is known, NaN elsewhere.
    """
    min_windows(alpha)
    zz = float(norm.ppf(alpha)) if z is None else z
    if not 0.5 <= zz <= 10:
        raise ValidationError("z", zz, "[0.5, 10]")
    std = standardize(history, steps, spec, lam=lam, skip_gaps=skip_gaps)
    n_windows = std.sigma_h.size
    at = np.arange(n_windows) if bars is None else np.asarray(bars, dtype=np.int64)
    at = at[(at >= 0) & (at < n_windows)]
    out: dict[Side, FloatArray] = {}
    for side in SIDES:
        series = np.full(len(history), np.nan)
        q = standardized_quantiles(std, side, alpha, spec, at)
        fallback = 0.0 if prior is None else prior[side]
        for t, qt in zip(at, q):
            s, f = float(std.sigma_h[t]), float(std.scale_h[t])
            if not (math.isfinite(s) and s > 0):
                continue
            series[t] = feed_value(float(qt), f, s, zz, spec.cap) if math.isfinite(qt) else fallback
        out[side] = series
    return out


def to_feed_wad(feed: float) -> int:
    """A feed value as the WAD the keeper publishes (0 stays 0: none)."""
    if not math.isfinite(feed) or feed < 0:
        raise ValidationError("feed", feed, "a finite number >= 0")
    return 0 if feed == 0 else math.ceil(round(feed * 1e6, 6)) * 10**12


def _keeper_history(timestamps: np.ndarray, close: np.ndarray, high: np.ndarray | None,
                    low: np.ndarray | None) -> PriceHistory:
    """The keeper's bars as a ``PriceHistory`` (open = previous close; high/low at least the bar's
    open and close; the closes alone when ``high``/``low`` are None), validated."""
    ts = np.asarray(timestamps, dtype=np.int64)
    c = np.asarray(close, dtype=np.float64)
    hi = c if high is None else np.asarray(high, dtype=np.float64)
    lo = c if low is None else np.asarray(low, dtype=np.float64)
    if not (ts.shape == c.shape == hi.shape == lo.shape) or ts.ndim != 1:
        raise ValidationError("prices", f"shapes {ts.shape} {c.shape} {hi.shape} {lo.shape}", "equal 1-D lengths")
    if ts.size < 3 or np.any(np.diff(ts) <= 0):
        raise ValidationError("timestamps", f"{ts.size} values", "at least 3, strictly ascending")
    interval = int(np.median(np.diff(ts)))
    op = np.concatenate([c[:1], c[:-1]])
    try:
        return PriceHistory(ts, op, np.fmax(hi, np.fmax(op, c)), np.fmin(lo, np.fmin(op, c)), c, interval, "keeper")
    except (ValueError, DataError) as e:
        raise ValidationError("prices", str(e), "positive finite prices") from e


def publish_tail(timestamps: np.ndarray, close: np.ndarray, *, alpha: float, horizon_sec: int, spec: TailSpec,
                 high: np.ndarray | None = None, low: np.ndarray | None = None, z: float | None = None,
                 lam: float = 0.94, prior: dict[Side, float] | None = None, skip_gaps: bool = True) -> tuple[int, int]:
    """The keeper's answer: ``(tailLongWad, tailShortWad)`` at the latest bar of a price history.

    Parameters
    ----------
    timestamps
        Bar times, unix seconds, ascending, evenly spaced (gaps allowed: windows across them are
        skipped with ``skip_gaps``).
    close, high, low
        Prices (any positive unit) of the same length; without ``high``/``low`` the closes are
        used (the intrabar excursion is then the close-to-close path).
    alpha, horizon_sec, spec, z, lam, prior
        As in the calibration file (``ballast calibrate --tail fhs``): confidence level, the
        liquidation horizon in seconds, the estimator, the model's z (default ``norm.ppf(alpha)``),
        the keeper's EWMA decay, and the per-side feed before enough windows are known.

    Returns
    -------
    tuple[int, int]
        WADs in ``[1e18, cap * 1e18]``, or 0 (none published) if the volatility is not yet known
        or too few windows are known and there is no prior.

    Raises
    ------
    ValidationError
        On arrays of different lengths, unsorted or non-positive values, a bad alpha or spec.
    """
    h = _keeper_history(timestamps, close, high, low)
    steps = max(1, math.ceil(horizon_sec / h.interval_seconds))
    if steps >= len(h):
        return 0, 0
    last = len(h) - 1  # the feed is for a position opened at the last close
    std = standardize(h, steps, spec, lam=lam, skip_gaps=skip_gaps)
    sigma = float(_per_bar(h, lam)[last]) * math.sqrt(steps)
    if not (math.isfinite(sigma) and sigma > 0):
        return 0, 0
    scale = sigma
    if spec.fast_lambda is not None:
        scale = max(sigma, float(np.nan_to_num(_per_bar(h, spec.fast_lambda)[last])) * math.sqrt(steps))
    zz = float(norm.ppf(alpha)) if z is None else z
    out = []
    for side in SIDES:
        q = float(standardized_quantiles(std, side, alpha, spec, np.array([last]))[0])
        if math.isfinite(q):
            out.append(to_feed_wad(feed_value(q, scale, sigma, zz, spec.cap)))
        else:
            out.append(0 if prior is None else to_feed_wad(prior[side]))
    return out[0], out[1]


def publish_tail_path(timestamps: np.ndarray, close: np.ndarray, *, alpha: float, horizon_sec: int, spec: TailSpec,
                      bars: np.ndarray | None = None, z: float | None = None, lam: float = 0.94,
                      prior: dict[Side, float] | None = None, skip_gaps: bool = True) -> dict[Side, FloatArray]:
    """What :func:`publish_tail` answers at each bar ``t`` of ``bars`` (default every bar) when
    given the bars ``0 .. t`` only, as plain numbers (``WAD / 1e18``; 0: none published), in one
    pass: the feed a keeper publishing after every close would have published. Used by the
    vectorized simulator (``ballast.marketsim``) for the keeper's tail at each block.

    The arguments are :func:`publish_tail`'s; ``timestamps`` must be evenly spaced (the horizon in
    bars is ``ceil(horizon_sec / spacing)`` for every prefix). Causal: the value at ``t`` reads
    closes ``0 .. t`` only (the EWMA filters are recursive, a window enters the quantile sample
    once it has ended by ``t``), so changing a later close changes nothing at ``t``
    (``tests/unit/test_marketsim_tail.py`` checks both properties against :func:`publish_tail`).
    """
    h = _keeper_history(timestamps, close, None, None)
    if np.unique(np.diff(np.asarray(h.timestamps, dtype=np.int64))).size != 1:
        raise ValidationError("timestamps", "uneven spacing", "evenly spaced bars")
    n = len(h)
    at = np.arange(n) if bars is None else np.asarray(bars, dtype=np.int64)
    if at.size and (at.min() < 0 or at.max() >= n or np.any(np.diff(at) < 0)):
        raise ValidationError("bars", f"{at.size} values", f"ascending bar indices in [0, {n - 1}]")
    out: dict[Side, FloatArray] = {side: np.zeros(at.size) for side in SIDES}
    steps = max(1, math.ceil(horizon_sec / h.interval_seconds))
    if steps >= n:
        return out
    std = standardize(h, steps, spec, lam=lam, skip_gaps=skip_gaps)
    sigma = np.asarray(_per_bar(h, lam)) * math.sqrt(steps)
    scale = sigma
    if spec.fast_lambda is not None:
        scale = np.maximum(sigma, np.nan_to_num(np.asarray(_per_bar(h, spec.fast_lambda))) * math.sqrt(steps))
    zz = float(norm.ppf(alpha)) if z is None else z
    # A prefix of t + 1 bars: publish_tail answers 0 when steps >= t + 1, or without a volatility.
    live = (at + 1 > steps) & np.isfinite(sigma[at]) & (np.nan_to_num(sigma[at]) > 0)
    for side in SIDES:
        q = standardized_quantiles(std, side, alpha, spec, at)
        vals = out[side]
        for j in np.flatnonzero(live):
            t = int(at[j])
            if math.isfinite(float(q[j])):
                vals[j] = to_feed_wad(feed_value(float(q[j]), float(scale[t]), float(sigma[t]), zz, spec.cap)) / WAD
            elif prior is not None:
                vals[j] = to_feed_wad(prior[side]) / WAD
    return out
