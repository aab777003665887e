"""Calibration and backtest of the margin model on real price history (``ballast calibrate``,
``ballast backtest``).

For each target confidence alpha the model's VaR move over the liquidation horizon,
``z(alpha) * sigma_t * sqrt(h / year) * tail``, is computed at every bar from the keeper's
trailing volatility estimate (EWMA, no look-ahead) and compared with the adverse price move over
the following horizon (worst intrabar excursion, non-overlapping windows). A model that claims
alpha should breach about 1 - alpha of the time: the Kupiec proportion-of-failures test says
whether the observed rate is consistent with that.

Two conventions are explicit parameters (and ``ballast backtest`` options):

``skip_gaps`` (``--gaps skip|keep``)
    Skip (default) windows that span a gap in the bar timestamps (missing bars: the window covers
    more wall-clock time than its bar count says), or keep them and treat consecutive rows as
    consecutive bars (daily data of a market closed at weekends, whose gaps are not missing data).
``periods_per_year`` (``--periods-per-year``)
    Bars per year used to annualize the per-bar volatility that the model compares with its
    calm volatility ``vol_ref``. Default ``None``: 24/7 calendar time, ``365 days / interval``
    (365 for daily bars, 35,040 for 15-minute bars), right for crypto. Use 252 for daily bars of a
    market that trades on weekdays only. The liquidation horizon is converted the same way
    (``steps`` bars are ``steps / periods_per_year`` of a year), so the VaR move over the horizon
    is ``z * per-bar sigma * sqrt(steps) * tail`` whatever the convention; the convention changes the
    annualized volatility, hence the regime tail term and the reported leverage.

Out-of-sample discipline
------------------------
:func:`fit_tail` (``ballast calibrate --train DATASET[,DATASET] --out FILE.toml``) estimates the
keeper-side tail, the quantile of standardized adverse moves ``move / (sigma_t * sqrt(h))``, on
the named training data only, and turns it into the on-chain formula's existing parameters
(``zWad``, ``tailCap``, ``regimeSens``, ``volRef``; the skew input the keeper publishes): see
:func:`fit_tail`. :func:`backtest` with ``calibration=`` evaluates those parameters on any data set
and marks each row in-sample (the test data overlap a training set) or out-of-sample. Data sets
are named ``NAME`` or ``NAME@START..END`` (a time slice, start inclusive, end exclusive, either
may be empty): ``btc_15min@..2021-11-15`` and ``btc_15min@2021-11-15..`` are disjoint.

Each backtest row reports, per side and per measure (the adverse intrabar extreme and the
close-to-close move), the breach rate, Kupiec's POF test, Christoffersen's independence and
conditional-coverage tests, and the average margin relative to a filtered-historical-simulation
(FHS) reference on the same windows: at each tested window the empirical ``alpha`` quantile of
the standardized moves of all earlier windows of the same data set (known by then, no look-ahead,
at least ``1 / (1 - alpha)`` of them), times the window's ``sigma_t * sqrt(h)``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import norm  # type: ignore[import-untyped]

from ballast._typing import WAD, FloatArray
from ballast.config import load_config, to_wad
from ballast.data import DATASETS, PriceHistory, load_csv, parse_utc
from ballast.errors import DataError, ValidationError
from ballast.model import YEAR_SEC, RiskInputs, RiskParams, compute, validate_params, var_move
from ballast.risk.backtest import (
    BreachStats,
    adverse_moves,
    backtest_margin,
    contiguous_windows,
)
from ballast.risk.var import expanding_historical_var, gpd_tail_var, historical_var
from ballast.risk.volatility import EWMA
from ballast.tail import TailSpec, feed_value, tail_feed_series, to_feed_wad

Measure = Literal["intrabar", "close_to_close"]
MEASURES: tuple[Measure, Measure] = ("intrabar", "close_to_close")
SIDES: tuple[Literal["long"], Literal["short"]] = ("long", "short")
TailMethod = Literal["fhs", "gpd"]
TailMode = Literal["none", "fhs"]
SkewMode = Literal["fit", "zero"]
PASS_LEVEL = 0.05
"""Test size of the pass/fail verdict (issue 12: Kupiec and Christoffersen at 5%)."""
MAX_FHS_RATIO = 1.2
"""Largest average model margin / average FHS margin a passing row may have (issue 12)."""


PERIODS_FRACTION_OF_YEAR = (0.1, 1.0)
"""Allowed ``periods_per_year * interval_seconds / 365 days``: bars cover between 10% (an equity
session) and 100% (24/7 trading) of calendar time."""


@dataclass(frozen=True)
class Conventions:
    """How a data set's bars are read: the gap rule and the annualization convention."""

    skip_gaps: bool = True
    """Skip windows spanning a timestamp gap (missing bars), or keep them (trading-day data)."""
    periods: float | None = None
    """Bars per year for annualizing volatility; ``None``: 24/7 calendar time."""


DATASET_CONVENTIONS: dict[str, Conventions] = {
    "btc_15min": Conventions(skip_gaps=True, periods=None),
    "btc_daily": Conventions(skip_gaps=True, periods=None),
    "sp500": Conventions(skip_gaps=False, periods=252.0),
    "nasdaq": Conventions(skip_gaps=False, periods=252.0),
}
"""Default conventions of the built-in data sets: BTC trades 24/7 (a gap is missing data), the
indices trade on weekdays (weekends and holidays are not missing bars; 252 bars per year). A user
CSV defaults to ``Conventions()``; ``--gaps`` and ``--periods-per-year`` override either."""


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: its spec, history (sliced) and conventions."""

    spec: str
    """``NAME`` or ``NAME@START..END`` as given."""
    base: str
    """Data set name without the slice (``sp500``; a CSV's file stem)."""
    history: PriceHistory
    """The bars of the spec (the slice)."""
    conventions: Conventions
    full: PriceHistory | None = None
    """The whole data set a slice was cut from (None if not sliced): a backtest lets the keeper's
    volatility and the FHS reference use the bars before the slice, as a live keeper would; only
    windows inside the slice are tested. Calibration reads the slice alone."""
    offset: int = 0
    """Index of the slice's first bar in ``full``."""

    @property
    def first_ts(self) -> int:
        return int(self.history.timestamps[0])

    @property
    def last_ts(self) -> int:
        return int(self.history.timestamps[-1])


def parse_dataset_spec(spec: str) -> tuple[str, str | None, str | None]:
    """Split ``NAME[@START..END]`` into its name and ISO bounds (``None`` if empty).

    Raises
    ------
    ValidationError
        Naming the spec and the allowed form if it is malformed or a bound is not an ISO date.
    """
    allowed = ("NAME or NAME@START..END (ISO dates, START inclusive, END exclusive, either may be "
               f"empty); NAME one of {sorted(DATASETS)}")
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError("dataset", spec, allowed)
    name, _, window = spec.strip().partition("@")
    if not window:
        if "@" in spec:
            raise ValidationError("dataset", spec, allowed)
        return name, None, None
    start, sep, end = window.partition("..")
    if not sep or not (start or end):
        raise ValidationError("dataset", spec, allowed)
    for bound in (start, end):
        if bound:
            try:
                parse_utc(bound)
            except ValueError as e:
                raise ValidationError("dataset", spec, allowed) from e
    return name, start or None, end or None


def load_dataset(spec: str, *, csv_history: PriceHistory | None = None,
                 conventions: Conventions | None = None) -> Dataset:
    """Load a built-in data set (or slice a CSV's history) by spec.

    Parameters
    ----------
    spec
        ``NAME[@START..END]``; NAME is a built-in data set, or the CSV's name when
        ``csv_history`` is given.
    csv_history
        A user's history (``--csv``), named by its file stem.
    conventions
        Override of the data set's default :data:`DATASET_CONVENTIONS`.
    """
    name, start, end = parse_dataset_spec(spec)
    if csv_history is not None and name == csv_history.name:
        h = csv_history
    elif name in DATASETS:
        h = DATASETS[name]()
    else:
        names = sorted(DATASETS) + ([csv_history.name] if csv_history is not None else [])
        raise ValidationError("dataset", spec, f"one of {names}, optionally @START..END")
    conv = conventions if conventions is not None else DATASET_CONVENTIONS.get(name, Conventions())
    if start is None and end is None:
        return Dataset(spec=spec.strip(), base=name, history=h, conventions=conv)
    part = h.window(start or "1970-01-01", end or "2262-01-01")
    offset = int(np.searchsorted(h.timestamps, part.timestamps[0]))
    return Dataset(spec=spec.strip(), base=name, history=part, conventions=conv, full=h, offset=offset)


def periods_per_year(history: PriceHistory, value: float | None = None) -> float:
    """Bars per year for annualizing ``history``'s volatility, validated.

    Parameters
    ----------
    history
        The bars (their ``interval_seconds`` sets the calendar default and the allowed range).
    value
        Bars per year; ``None``: calendar time, ``365 * 86400 / interval_seconds``.

    Returns
    -------
    float
        Bars per year.

    Raises
    ------
    ValidationError
        If ``value`` is not a finite number with ``value * interval_seconds`` between 10% and
        100% of 365 days (the message gives the range for these bars).
    """
    calendar = YEAR_SEC / history.interval_seconds
    if value is None:
        return calendar
    lo, hi = (f * calendar for f in PERIODS_FRACTION_OF_YEAR)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not lo <= value <= hi):
        raise ValidationError(
            "periods_per_year", value,
            f"[{lo:g}, {hi:g}] for {history.interval_seconds} s bars (10% to 100% of calendar time; "
            "252 for weekday-only daily bars, 365 for 24/7 daily bars)")
    return float(value)




def model_series(history: PriceHistory, alpha: float, config_path: str | None = None,
                 lam: float = 0.94, horizon_sec: int | None = None, *,
                 periods: float | None = None, params: RiskParams | None = None,
                 skew: float = 0.0, tail_feeds: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-bar volatility, VaR move (both sides) and max leverage of a small position.

    ``periods`` is the bars per year of :func:`periods_per_year` (``None``: calendar time);
    ``horizon_sec`` is in the model's year (``YEAR_SEC``), i.e. ``steps * YEAR_SEC / periods``.
    Without ``params`` the first market of ``config_path`` is used with ``z = norm.ppf(alpha)``;
    with ``params`` (a calibrated set, :func:`fit_tail`) those parameters as they are, and ``skew``
    (volatility units) as the skew feed's answer. ``tail_feeds`` (per side, per bar, plain numbers;
    NaN or 0: none published) is the published tail (:func:`ballast.tail.tail_feed_series`).
    """
    if not 0.5 < alpha < 1.0:
        raise ValidationError("alpha", alpha, "(0.5, 1)")
    if params is None:
        cfg = load_config(config_path) if config_path else load_config()
        p = replace(cfg.markets[0].params, z_wad=round(float(norm.ppf(alpha)) * 1e6) * 10**12)
    else:
        p = params
    if horizon_sec is not None:
        p = replace(p, horizon_sec=horizon_sec)
    skew_wad = to_wad(skew)
    sigma = EWMA(lam).estimate(history)
    if periods is not None:
        # EWMA annualizes with calendar seconds; rescale to `periods` bars per year.
        sigma = sigma * math.sqrt(periods_per_year(history, periods) * history.interval_seconds / YEAR_SEC)
    n = len(history)
    vm_long = np.full(n, np.nan)
    vm_short = np.full(n, np.nan)
    lev = np.full(n, np.nan)
    close = np.asarray(history.close)
    def feed(side: str, i: Any) -> int:
        if tail_feeds is None:
            return 0
        v = float(tail_feeds[side][i])
        return to_feed_wad(v) if math.isfinite(v) else 0

    for i in np.flatnonzero(np.isfinite(sigma)):
        s = to_wad(float(sigma[i]))
        fl = feed("long", i)
        vm_long[i] = var_move(p, s, skew_wad, True, tail_feed_wad=fl) / WAD
        vm_short[i] = var_move(p, s, skew_wad, False, tail_feed_wad=feed("short", i)) / WAD
        x = RiskInputs(s, skew_wad, 10**30, 0, 0, 0, 0, to_wad(float(close[i])), True)
        lev[i] = WAD / compute(p, x, tail_feed_wad=fl).imf_wad
    return {"sigma": np.asarray(sigma), "var_long": vm_long, "var_short": vm_short, "max_leverage": lev}


def horizon_steps(history: PriceHistory, horizon_sec: int) -> int:
    """Bars in the liquidation horizon: ``ceil(horizon_sec / interval)``, at least 1."""
    return max(1, math.ceil(horizon_sec / history.interval_seconds))


def standardized_windows(history: PriceHistory, steps: int, lam: float = 0.94, *,
                         skip_gaps: bool = True) -> tuple[FloatArray, np.ndarray, dict[tuple[Measure, str], FloatArray]]:
    """Every window's adverse moves and the EWMA volatility over its horizon (no look-ahead).

    Returns
    -------
    tuple
        ``(sigma_h, usable, moves)``: ``sigma_h[i]`` the per-bar EWMA volatility at the close of
        bar ``i`` times ``sqrt(steps)`` (a fraction of the price, the same whatever the
        annualization convention), ``usable[i]`` whether window ``i`` (start bar ``i``) has a
        volatility and, with ``skip_gaps``, no timestamp gap; ``moves[(measure, side)][i]`` the
        window's adverse move (:func:`~ballast.risk.backtest.adverse_moves`). Arrays have
        ``len(history) - steps`` entries.
    """
    n_windows = len(history) - steps
    per_bar = EWMA(lam).estimate(history) * math.sqrt(history.interval_seconds / YEAR_SEC)
    sigma_h = (per_bar * math.sqrt(steps))[:n_windows]
    usable = np.isfinite(sigma_h) & (np.nan_to_num(sigma_h) > 0)
    if skip_gaps:
        usable &= contiguous_windows(history, steps)
    moves: dict[tuple[Measure, str], FloatArray] = {}
    for side in SIDES:
        intrabar, closing = adverse_moves(history, steps, side)
        moves[("intrabar", side)] = intrabar
        moves[("close_to_close", side)] = closing
    return sigma_h, usable, moves


# ------------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class TailFit:
    """The fitted tail at one confidence level, as the on-chain formula's parameters.

    With ``regime_sens = 0`` and the keeper publishing ``skew`` the model's VaR move is
    ``z * sigma * sqrt(h / year) * (1 + skew_sens * adverse_skew)``: ``z`` times the volatility
    over the horizon for the side with the thinner tail, ``max(q_long, q_short) * sigma_h`` for
    the other (``skew_mode="fit"``), or ``z`` = the quantile of both sides pooled
    (``skew_mode="zero"``, ``skew = 0``).
    """

    alpha: float
    """Confidence level."""
    z: float
    """``zWad / 1e18``: quantile of the standardized adverse move (dimensionless)."""
    skew: float
    """Skew input the keeper publishes, volatility units (< 0: the long side's tail is fatter)."""
    skew_sens: float
    """``skewSensWad / 1e18`` (from the base configuration)."""
    tail_cap: float
    """``tailCapWad / 1e18``: at least the fitted tail multiplier."""
    regime_sens: float
    """``regimeSensWad / 1e18``: 0, the standardized quantile already carries the fat tail."""
    vol_ref: float
    """``volRefWad / 1e18`` (base configuration; inert with ``regime_sens = 0``), annualized."""
    quantile_long: float
    """Fitted ``alpha`` quantile of the long side's standardized adverse moves."""
    quantile_short: float
    """Same for the short side."""
    windows: int
    """Training windows per side."""
    prior_long: float = 0.0
    """Published-tail mode: the long feed before enough windows are known (training quantile / z,
    in [1, cap]); 0 without a tail feed."""
    prior_short: float = 0.0
    """Same for the short side."""


@dataclass(frozen=True)
class GapFloor:
    """The gap-risk floor on maintenance (and initial) margin, from the training data.

    The largest plausible adverse move within the liquidation horizon plus oracle lag, settlement
    delay and liquidator latency: the ``quantile`` (GPD over the top 10% of the windows) of the
    worst intrabar adverse move over ``ceil(total_sec / bar)`` bars, either side, of the training
    sets whose bars resolve that time (all of them if none does: the floor then covers one bar,
    longer than ``total_sec``). ``min_mmf = move + liq_fee`` (maintenance covers the move and the
    liquidation penalty, as ``mmfBase = clamp(varMove + liqFee, minMmf, maxMmf)`` does above the
    floor) and ``min_imf = max(base min_imf, min_mmf + min_buffer)``.
    """

    quantile: float
    horizon_sec: int
    """Liquidation horizon (the market's ``horizon_sec``), seconds."""
    oracle_lag_sec: int
    """Largest lag of the on-chain price behind the market, seconds."""
    settlement_delay_sec: int
    """Engine ``order_min_delay_sec``: an order settles at the first price this long after commit."""
    liquidator_latency_sec: int
    """Time from under-water to the liquidation call, seconds."""
    move: float
    """The fitted adverse move (fraction of price)."""
    min_mmf: float
    min_imf: float
    datasets: tuple[tuple[str, int, float], ...]
    """(training spec, bars in the window, its fitted move) for each set used."""

    @property
    def total_sec(self) -> int:
        return self.horizon_sec + self.oracle_lag_sec + self.settlement_delay_sec + self.liquidator_latency_sec


@dataclass(frozen=True)
class TrainSet:
    """A training data set as recorded in a calibration file."""

    spec: str
    base: str
    first_ts: int
    last_ts: int
    bars: int


@dataclass(frozen=True)
class Calibration:
    """A calibration file: what it was fitted on, how, and the fitted parameters per alpha."""

    train: tuple[TrainSet, ...]
    method: TailMethod
    skew_mode: SkewMode
    measure: Measure
    ewma_lambda: float
    horizon_sec: int
    fits: tuple[TailFit, ...]
    tail: TailSpec | None = None
    """The published-tail estimator (``--tail fhs``), or None (no feed: the fitted z and skew)."""
    gap_floor: GapFloor | None = None
    """The gap-risk floor (``min_mmf``, ``min_imf``), or None (the base configuration's)."""
    tail_training: tuple[dict[str, Any], ...] = ()
    """Published-tail mode: the estimator's causal backtest on each training set (per alpha, side)."""
    tail_selection: dict[str, Any] | None = None
    """How ``tail`` was chosen on the training data alone (``--tail-select validation``,
    :func:`select_tail`): the split, the rule, every candidate's validation score; None if given."""

    def fit(self, alpha: float) -> TailFit:
        for f in self.fits:
            if abs(f.alpha - alpha) < 1e-12:
                return f
        raise ValidationError("alpha", alpha, f"one of the calibrated levels {[f.alpha for f in self.fits]}")

    def params(self, alpha: float, base: RiskParams) -> RiskParams:
        """The base market's parameters with the calibrated tail fields at ``alpha``."""
        f = self.fit(alpha)
        p = replace(
            base, z_wad=to_wad(f.z), skew_sens_wad=to_wad(f.skew_sens), tail_cap_wad=to_wad(f.tail_cap),
            regime_sens_wad=to_wad(f.regime_sens), vol_ref_wad=to_wad(f.vol_ref),
            horizon_sec=self.horizon_sec)
        if self.gap_floor is not None:
            p = replace(p, min_mmf_wad=to_wad(self.gap_floor.min_mmf), min_imf_wad=to_wad(self.gap_floor.min_imf))
        return validate_params(p)

    def sample(self, data: Dataset) -> Literal["in-sample", "out-of-sample"]:
        """``in-sample`` if ``data`` shares a data set and any time with a training set."""
        for t in self.train:
            if t.base == data.base and data.first_ts <= t.last_ts and t.first_ts <= data.last_ts:
                return "in-sample"
        return "out-of-sample"


def _tail_quantile(sample: FloatArray, alpha: float, method: TailMethod) -> float:
    if method == "gpd":
        return gpd_tail_var(sample, alpha)
    return historical_var(-sample, alpha, side="long")  # losses = the standardized moves


def fit_tail(train: list[Dataset], alphas: list[float], *, method: TailMethod = "fhs",
             skew_mode: SkewMode = "fit", measure: Measure = "intrabar", lam: float = 0.94,
             config_path: str | None = None, tail: TailSpec | None = None,
             gap_floor: GapFloor | None = None, evaluate: bool = True) -> Calibration:
    """Fit the tail on the training data sets only.

    The standardized adverse moves ``move / sigma_h`` of every usable window (overlapping, one
    per start bar; the data set's gap rule) of every training set are pooled per side; their
    ``alpha`` quantile, empirical (``fhs``) or from a generalized Pareto tail (``gpd``), gives
    ``q_long`` and ``q_short``. ``skew_mode="fit"``: ``z = min(q_long, q_short)`` and the keeper's
    skew input ``skew = -/+ (max/min - 1) / skew_sens`` (negative when the long tail is fatter), so
    ``z * (1 + skew_sens * |skew|)`` is the fatter side's quantile. ``"zero"``: ``z`` is the
    quantile of both sides pooled, skew 0. ``regime_sens`` is set to 0 (the standardized quantile
    already holds the fat tail; the regime term would count it twice); ``vol_ref`` and
    ``skew_sens`` come from the base configuration, ``tail_cap`` is raised to the fitted
    multiplier if needed.

    With ``tail`` (``--tail fhs``) the keeper publishes a per-side tail feed (:mod:`ballast.tail`)
    instead: ``z = norm.ppf(alpha)`` (rounded up to 1e-6), skew 0, ``regime_sens = 0``,
    ``tail_cap = tail.cap``; the fitted quantiles give the feed's prior (``q / z`` in
    ``[1, cap]``, published before enough windows are known), and the estimator is backtested
    causally on each training set alone (:attr:`Calibration.tail_training`; skipped with
    ``evaluate=False``). ``gap_floor`` (:func:`fit_gap_floor`) is recorded and sets
    ``min_mmf``/``min_imf``.

    Raises
    ------
    ValidationError
        On an empty training list, a bad alpha, method, mode or measure, or a fitted ``z``
        outside the contracts' bounds [1, 6].
    DataError
        If a training set has fewer usable windows than ``1 / (1 - alpha)``.
    """
    if not train:
        raise ValidationError("train", train, "at least one data set")
    if method not in ("fhs", "gpd"):
        raise ValidationError("method", method, "'fhs' or 'gpd'")
    if skew_mode not in ("fit", "zero"):
        raise ValidationError("skew", skew_mode, "'fit' or 'zero'")
    if measure not in MEASURES:
        raise ValidationError("measure", measure, f"one of {MEASURES}")
    cfg = load_config(config_path) if config_path else load_config()
    base = cfg.markets[0].params
    horizon_sec = base.horizon_sec
    pooled: dict[str, list[FloatArray]] = {"long": [], "short": []}
    for d in train:
        steps = horizon_steps(d.history, horizon_sec)
        if steps >= len(d.history):
            raise DataError(f"{d.spec}: {len(d.history)} bars, fewer than the {steps}-bar horizon")
        sigma_h, usable, moves = standardized_windows(d.history, steps, lam, skip_gaps=d.conventions.skip_gaps)
        for side in SIDES:
            pooled[side].append(moves[(measure, side)][usable] / sigma_h[usable])
    samples = {side: np.concatenate(v) for side, v in pooled.items()}
    fits = []
    skew_sens = base.skew_sens_wad / WAD
    for a in alphas:
        if not 0.5 < a < 1.0:
            raise ValidationError("alpha", a, "(0.5, 1)")
        needed = math.ceil(1 / (1 - a))
        if samples["long"].size < needed:
            raise DataError(f"{'+'.join(d.spec for d in train)}: {samples['long'].size} usable windows; "
                            f"allowed: at least {needed} for alpha={a}")
        q_long = _tail_quantile(samples["long"], a, method)
        q_short = _tail_quantile(samples["short"], a, method)
        if tail is not None:
            z = math.ceil(float(norm.ppf(a)) * 1e6) / 1e6
            fits.append(TailFit(alpha=a, z=z, skew=0.0, skew_sens=skew_sens, tail_cap=tail.cap, regime_sens=0.0,
                                vol_ref=base.vol_ref_wad / WAD, quantile_long=q_long, quantile_short=q_short,
                                windows=int(samples["long"].size),
                                prior_long=feed_value(q_long, 1.0, 1.0, z, tail.cap),
                                prior_short=feed_value(q_short, 1.0, 1.0, z, tail.cap)))
            continue
        if skew_mode == "zero" or skew_sens == 0:
            z = _tail_quantile(np.concatenate([samples["long"], samples["short"]]), a, method)
            skew = 0.0
        else:
            z = min(q_long, q_short)
            mult = max(q_long, q_short) / z
            skew = (mult - 1.0) / skew_sens * (-1.0 if q_long > q_short else 1.0)
        z = math.ceil(z * 1e6) / 1e6
        skew = math.copysign(math.ceil(abs(skew) * 1e6) / 1e6, skew)
        if not 1.0 <= z <= 6.0:
            raise ValidationError("z", z, "[1, 6] (the contracts' bounds on zWad); fitted on "
                                  + "+".join(d.spec for d in train))
        fits.append(TailFit(alpha=a, z=z, skew=skew, skew_sens=skew_sens,
                            tail_cap=max(base.tail_cap_wad / WAD, math.ceil((1 + skew_sens * abs(skew)) * 1e6) / 1e6),
                            regime_sens=0.0, vol_ref=base.vol_ref_wad / WAD,
                            quantile_long=q_long, quantile_short=q_short, windows=int(samples["long"].size)))
    trains = tuple(TrainSet(d.spec, d.base, d.first_ts, d.last_ts, len(d.history)) for d in train)
    cal = Calibration(train=trains, method=method, skew_mode=skew_mode, measure=measure, ewma_lambda=lam,
                      horizon_sec=horizon_sec, fits=tuple(fits), tail=tail, gap_floor=gap_floor)
    if tail is None or not evaluate:
        return cal
    evaluation: list[dict[str, Any]] = []
    for d in train:  # the estimator on each training set alone (its own past only), as a backtest
        alone = replace(d, full=None, offset=0)
        for r in backtest(alone, alphas, config_path, calibration=cal):
            ib = r["intrabar"]
            evaluation.append({"dataset": d.spec, "alpha": r["alpha"], "side": r["side"],
                               "windows": ib["observations"], "breaches": ib["breaches"],
                               "kupiec_p": ib["kupiec_p"], "christoffersen_ind_p": ib["christoffersen_ind_p"],
                               "christoffersen_cc_p": ib["christoffersen_cc_p"],
                               "margin_ratio_vs_fhs": ib["margin_ratio_vs_fhs"], "pass": ib["pass"]})
    return replace(cal, tail_training=tuple(evaluation))


LIQUIDATOR_LATENCY_SEC = 300
"""The lab's liquidator latency: ``ballast stress --liquidator-latency`` 1 block (default) of the
scenarios' 300 s blocks (``ballast.scenarios``: 15-minute bars / 3, and the synthetic paths)."""
ORACLE_LAG_SEC = 900
"""The keeper's round: ``ballast keeper --interval`` 900 s (default); a move beyond the price
deviation threshold (``PushRules.price_dev`` 0.5%) is pushed on the next round, so a gap reaches
the chain at most one round late. (The feeds' heartbeat, ``heartbeat_sec`` 3,600 s in
config/markets.toml, bounds the lag only when the keeper is down: ``--oracle-lag-sec 3600``.)"""
GAP_QUANTILE = 0.999


def fit_gap_floor(train: list[Dataset], *, quantile: float = GAP_QUANTILE, oracle_lag_sec: int = ORACLE_LAG_SEC,
                  settlement_delay_sec: int | None = None, liquidator_latency_sec: int = LIQUIDATOR_LATENCY_SEC,
                  config_path: str | None = None) -> GapFloor:
    """The gap-risk floor of :class:`GapFloor` from the training data sets only.

    ``settlement_delay_sec`` defaults to the engine's ``order_min_delay_sec`` and the horizon to the
    market's ``horizon_sec`` (config/markets.toml).

    Raises
    ------
    ValidationError
        On a quantile outside [0.99, 0.9999], a negative delay, or no training set.
    """
    if not train:
        raise ValidationError("train", train, "at least one data set")
    if isinstance(quantile, bool) or not 0.99 <= quantile <= 0.9999:
        raise ValidationError("gap_quantile", quantile, "[0.99, 0.9999]")
    cfg = load_config(config_path) if config_path else load_config()
    base = cfg.markets[0].params
    settle = cfg.engine.order_min_delay_sec if settlement_delay_sec is None else settlement_delay_sec
    for name, v, hi in (("oracle_lag_sec", oracle_lag_sec, 86_400), ("settlement_delay_sec", settle, 86_400),
                        ("liquidator_latency_sec", liquidator_latency_sec, 86_400)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise ValidationError(name, v, f"an int in [0, {hi}] seconds")
    total = base.horizon_sec + oracle_lag_sec + settle + liquidator_latency_sec
    resolving = [d for d in train if d.history.interval_seconds <= total] or list(train)
    per: list[tuple[str, int, float]] = []
    for d in resolving:
        steps = horizon_steps(d.history, total)
        if steps >= len(d.history):
            raise DataError(f"{d.spec}: {len(d.history)} bars, fewer than the {steps}-bar gap window")
        usable = contiguous_windows(d.history, steps) if d.conventions.skip_gaps else np.ones(len(d.history) - steps, bool)
        both = np.concatenate([adverse_moves(d.history, steps, side)[0][usable] for side in SIDES])
        per.append((d.spec, steps, float(gpd_tail_var(both, quantile))))
    move = math.ceil(max(m for _, _, m in per) * 1e4) / 1e4
    min_mmf = round(move + base.liq_fee_wad / WAD, 6)
    min_imf = round(max(base.min_imf_wad / WAD, min_mmf + base.min_buffer_wad / WAD), 6)
    if min_mmf > base.max_mmf_wad / WAD or min_imf > base.max_imf_wad / WAD:
        raise ValidationError("min_mmf", min_mmf, f"<= max_mmf {base.max_mmf_wad / WAD} and min_imf {min_imf} <= "
                              f"max_imf {base.max_imf_wad / WAD} (the gap floor exceeds the caps)")
    return GapFloor(quantile=quantile, horizon_sec=base.horizon_sec, oracle_lag_sec=oracle_lag_sec,
                    settlement_delay_sec=settle, liquidator_latency_sec=liquidator_latency_sec, move=move,
                    min_mmf=min_mmf, min_imf=min_imf, datasets=tuple(per))


def _iso(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _toml_value(v: Any) -> str:
    """A TOML literal for a JSON-like value (non-finite floats as TOML's nan/inf)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValidationError("value", v, "not None (TOML has no null)")
    return json.dumps(v)


def _is_table_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def write_calibration(cal: Calibration, path: str | Path, *, command: str = "") -> None:
    """Write a calibration TOML file whose header names the training data."""
    lines = ["# Ballast calibrated tail parameters (issue 12), written by `ballast calibrate`.",
             f"# Fitted ONLY on: {', '.join(t.spec for t in cal.train)}"]
    lines += [f"#   {t.spec}: {t.bars} bars, {_iso(t.first_ts)} to {_iso(t.last_ts)}" for t in cal.train]
    if command:
        lines.append(f"# Command: {command}")
    lines += ["# Backtest on other data: ballast backtest --params THIS_FILE --dataset NAME[,NAME]",
              "# z -> zWad, skew_sens -> skewSensWad, tail_cap -> tailCapWad, regime_sens -> regimeSensWad,",
              "# vol_ref -> volRefWad (x 1e18); skew is the answer the keeper publishes on the skew feed.",
              "", "[calibration]",
              f"train = [{', '.join(json.dumps(t.spec) for t in cal.train)}]",
              f'method = "{cal.method}"            # fhs: empirical quantile; gpd: EVT over the top 10%',
              f'skew_mode = "{cal.skew_mode}"',
              f'measure = "{cal.measure}"',
              f"ewma_lambda = {cal.ewma_lambda!r}",
              f"horizon_sec = {cal.horizon_sec}", ""]
    for t in cal.train:
        lines += ["[[calibration.train_set]]", f"spec = {json.dumps(t.spec)}", f"base = {json.dumps(t.base)}",
                  f"first_ts = {t.first_ts}", f"last_ts = {t.last_ts}", f"bars = {t.bars}", ""]
    if cal.tail is not None:
        spec = cal.tail
        lines += ["# Published tail (ballast.tail): the keeper publishes tailFeed per side, in [1, cap] (0: none);",
                  f"# {spec.label()}.", "[tail]", 'mode = "fhs"',
                  f"window = {spec.window if spec.window is not None else 0}            # past windows; 0: all (expanding)",
                  f"fast_lambda = {spec.fast_lambda if spec.fast_lambda is not None else 0.0!r}       # 0: filter = the keeper's EWMA",
                  f"combine_expanding = {str(spec.combine_expanding).lower()}", f"cap = {spec.cap!r}", ""]
        for e in cal.tail_training:
            lines += ["[[tail.training_backtest]]  # the estimator on this training set alone"]
            lines += [f"{k} = {json.dumps(v)}" for k, v in e.items()] + [""]
        if cal.tail_selection is not None:
            sel = cal.tail_selection
            lines += ["# How the setting above was chosen, on the training data alone (--tail-select validation):",
                      "# each training set split in time, every candidate fitted on the inner parts and backtested",
                      "# on the validation parts; candidates below in rank order.", "[tail.selection]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in sel.items() if not _is_table_list(v)] + [""]
            for k, v in sel.items():
                if _is_table_list(v):
                    for e in v:
                        lines += [f"[[tail.selection.{k}]]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in e.items()]
                        lines.append("")
    if cal.gap_floor is not None:
        g = cal.gap_floor
        lines += [f"# Gap floor: the {g.quantile} quantile (GPD) of the adverse move over horizon {g.horizon_sec} s + oracle lag",
                  f"# {g.oracle_lag_sec} s + settlement {g.settlement_delay_sec} s + liquidator {g.liquidator_latency_sec} s = "
                  f"{g.total_sec} s -> min_mmf = move + liq_fee, min_imf = min_mmf + min_buffer (at least).",
                  "[gap_floor]", f"quantile = {g.quantile!r}", f"horizon_sec = {g.horizon_sec}",
                  f"oracle_lag_sec = {g.oracle_lag_sec}", f"settlement_delay_sec = {g.settlement_delay_sec}",
                  f"liquidator_latency_sec = {g.liquidator_latency_sec}", f"move = {g.move!r}",
                  f"min_mmf = {g.min_mmf!r}", f"min_imf = {g.min_imf!r}              # max leverage {1 / g.min_imf:.1f}x", ""]
        for name, steps, move in g.datasets:
            lines += ["[[gap_floor.dataset]]", f"spec = {json.dumps(name)}", f"bars = {steps}", f"move = {move!r}", ""]
    for f in cal.fits:
        lines += ["[[fit]]", f"alpha = {f.alpha!r}", f"z = {f.z!r}", f"skew = {f.skew!r}",
                  f"skew_sens = {f.skew_sens!r}", f"tail_cap = {f.tail_cap!r}", f"regime_sens = {f.regime_sens!r}",
                  f"vol_ref = {f.vol_ref!r}", f"quantile_long = {f.quantile_long!r}",
                  f"quantile_short = {f.quantile_short!r}", f"windows = {f.windows}"]
        if cal.tail is not None:
            lines += [f"prior_long = {f.prior_long!r}", f"prior_short = {f.prior_short!r}"]
        lines.append("")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines))


def load_calibration(path: str | Path) -> Calibration:
    """Read a file written by :func:`write_calibration`.

    Raises
    ------
    ValidationError
        If the file is missing, not TOML, or a field is missing or out of range (named).
    """
    p = Path(path)
    try:
        d = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise ValidationError("params", str(p), "an existing calibration TOML (ballast calibrate --out)") from e
    except tomllib.TOMLDecodeError as e:
        raise ValidationError("params", str(p), f"valid TOML ({e})") from e
    try:
        c = d["calibration"]
        trains = tuple(TrainSet(str(t["spec"]), str(t["base"]), int(t["first_ts"]), int(t["last_ts"]), int(t["bars"]))
                       for t in c["train_set"])
        fits = tuple(TailFit(alpha=float(f["alpha"]), z=float(f["z"]), skew=float(f["skew"]),
                             skew_sens=float(f["skew_sens"]), tail_cap=float(f["tail_cap"]),
                             regime_sens=float(f["regime_sens"]), vol_ref=float(f["vol_ref"]),
                             quantile_long=float(f["quantile_long"]), quantile_short=float(f["quantile_short"]),
                             windows=int(f["windows"]), prior_long=float(f.get("prior_long", 0.0)),
                             prior_short=float(f.get("prior_short", 0.0))) for f in d["fit"])
        tail = None
        training: tuple[dict[str, Any], ...] = ()
        selection: dict[str, Any] | None = None
        if "tail" in d:
            t = d["tail"]
            if t["mode"] != "fhs":
                raise ValueError(f"tail.mode {t['mode']!r}, allowed: 'fhs'")
            tail = TailSpec(window=int(t["window"]) or None, fast_lambda=float(t["fast_lambda"]) or None,
                            combine_expanding=bool(t["combine_expanding"]), cap=float(t["cap"]))
            training = tuple(t.get("training_backtest", []))
            selection = t.get("selection")
        gap = None
        if "gap_floor" in d:
            g = d["gap_floor"]
            gap = GapFloor(quantile=float(g["quantile"]), horizon_sec=int(g["horizon_sec"]),
                           oracle_lag_sec=int(g["oracle_lag_sec"]), settlement_delay_sec=int(g["settlement_delay_sec"]),
                           liquidator_latency_sec=int(g["liquidator_latency_sec"]), move=float(g["move"]),
                           min_mmf=float(g["min_mmf"]), min_imf=float(g["min_imf"]),
                           datasets=tuple((str(x["spec"]), int(x["bars"]), float(x["move"])) for x in g["dataset"]))
        cal = Calibration(train=trains, method=c["method"], skew_mode=c["skew_mode"], measure=c["measure"],
                          ewma_lambda=float(c["ewma_lambda"]), horizon_sec=int(c["horizon_sec"]), fits=fits,
                          tail=tail, gap_floor=gap, tail_training=training, tail_selection=selection)
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        raise ValidationError("params", str(p), f"a calibration file written by ballast calibrate ({e!r})") from e
    if not trains or not fits:
        raise ValidationError("params", str(p), "at least one [[calibration.train_set]] and one [[fit]]")
    return cal


# ------------------------------------------------------------------------------ backtest


def _measure_row(bt: BreachStats, model: FloatArray, fhs: FloatArray, fhs_stats: BreachStats,
                 starts: np.ndarray) -> dict[str, Any]:
    both = np.isfinite(fhs[starts])
    common = starts[both]
    ratio = float(np.mean(model[common]) / np.mean(fhs[common])) if common.size else math.nan
    k, c = bt.kupiec, bt.christoffersen
    kp = k.p_value if k else math.nan
    ip = c.p_independence if c else math.nan
    cp = c.p_conditional_coverage if c else math.nan
    fails = []
    if not kp >= PASS_LEVEL:
        fails.append("Kupiec (" + ("too many" if bt.breach_rate > bt.expected_rate else "too few") + ")")
    if not ip >= PASS_LEVEL:
        fails.append("independence")
    if not cp >= PASS_LEVEL:
        fails.append("cond. coverage")
    if not ratio <= MAX_FHS_RATIO:
        fails.append(f"margin > {MAX_FHS_RATIO}x FHS")
    fk = fhs_stats.kupiec
    return {
        "observations": bt.observations, "breaches": bt.breaches, "breach_rate": bt.breach_rate,
        "kupiec_p": kp, "christoffersen_ind_p": ip, "christoffersen_cc_p": cp,
        "transitions_00_01_10_11": list(c.transitions) if c else None,
        "mean_margin": bt.mean_margin, "worst_excess": bt.worst_excess,
        "fhs_windows": int(common.size),
        "mean_margin_same_windows": float(np.mean(model[common])) if common.size else math.nan,
        "fhs_mean_margin": float(np.mean(fhs[common])) if common.size else math.nan,
        "margin_ratio_vs_fhs": ratio,
        "fhs_breach_rate": fhs_stats.breach_rate, "fhs_kupiec_p": fk.p_value if fk else math.nan,
        "fhs_christoffersen_ind_p": fhs_stats.christoffersen.p_independence if fhs_stats.christoffersen else math.nan,
        "pass": not fails, "fails": fails,
    }


def backtest(dataset: str | PriceHistory | Dataset, alphas: list[float], config_path: str | None = None, *,
             skip_gaps: bool | None = None, periods: float | None = None,
             calibration: Calibration | None = None, gap_floor: bool = False) -> list[dict[str, Any]]:
    """The backtest table: one row per (alpha, side), each with both measures.

    Parameters
    ----------
    dataset
        A data set spec (``btc_15min``, ``sp500@2009-01-01..``), a loaded :class:`Dataset`, or a
        history (a user's CSV, :func:`ballast.data.load_csv`).
    alphas
        Confidence levels in (0.5, 1).
    config_path
        Market configuration TOML (default ``config/markets.toml``); the first market's model.
    skip_gaps
        Exclude windows that span a gap in the timestamps, or keep them (bars are consecutive
        trading periods). ``None``: the data set's convention (:data:`DATASET_CONVENTIONS`; skip
        for a CSV). See the module docstring.
    periods
        Bars per year for annualizing volatility (:func:`periods_per_year`); ``None``: the data
        set's convention (calendar time for a CSV).
    calibration
        Calibrated parameters (:func:`load_calibration`); ``None``: the shipped configuration with
        ``z = norm.ppf(alpha)``. Rows are marked in-/out-of-sample against its training sets.
        With a published tail (``[tail]``) the keeper's feed is computed at every tested bar from
        the bars before it (:func:`ballast.tail.tail_feed_series`) and enters the model.
    gap_floor
        Test ``max(varMove, gap move)``, the part of ``mmfBase`` above the liquidation fee with
        the calibration's gap floor (``min_mmf``), instead of the VaR move alone.

    Raises
    ------
    ValidationError
        On an unknown data set, a bad alpha or ``periods``, an alpha the calibration lacks.
    DataError
        If the history has no complete window after the volatility warm-up.
    """
    if isinstance(dataset, Dataset):
        data = dataset
    elif isinstance(dataset, PriceHistory):
        data = Dataset(dataset.name, dataset.name, dataset, Conventions())
    else:
        data = load_dataset(dataset)
    if skip_gaps is not None and not isinstance(skip_gaps, bool):
        raise ValidationError("skip_gaps", skip_gaps, "True, False or None")
    conv = Conventions(data.conventions.skip_gaps if skip_gaps is None else skip_gaps,
                       data.conventions.periods if periods is None else periods)
    skip = conv.skip_gaps
    h = data.full if data.full is not None else data.history
    lo, hi = data.offset, data.offset + len(data.history)  # tested window starts: lo .. hi - steps - 1
    cfg = load_config(config_path) if config_path else load_config()
    horizon_sec = calibration.horizon_sec if calibration else cfg.markets[0].params.horizon_sec
    lam = calibration.ewma_lambda if calibration else 0.94
    steps = horizon_steps(h, horizon_sec)
    eff_horizon = steps * h.interval_seconds
    bars_per_year = periods_per_year(h, conv.periods)
    model_horizon = eff_horizon if conv.periods is None else round(steps * YEAR_SEC / bars_per_year)
    if steps >= len(h):
        raise DataError(f"{h.name}: {len(h)} bars, fewer than the {steps}-bar horizon; allowed: at least "
                        f"{EWMA().min_bars + steps} contiguous bars")
    rows = []
    z_moves = standardized_moves(data.history, steps, lam, periods=conv.periods, skip_gaps=skip)
    sigma_h, usable, moves = standardized_windows(h, steps, lam, skip_gaps=skip)
    window_end = np.arange(sigma_h.size, dtype=np.float64) + steps
    sample = calibration.sample(data) if calibration else "shipped config"
    if gap_floor and (calibration is None or calibration.gap_floor is None):
        raise ValidationError("gap_floor", gap_floor, "only with a calibration that has a [gap_floor] (--params)")
    for a in alphas:
        feeds: dict[str, np.ndarray] | None = None
        if calibration and calibration.tail is not None:
            f = calibration.fit(a)
            fs = tail_feed_series(h, steps, a, calibration.tail, z=f.z, lam=lam, skip_gaps=skip,
                                  prior={"long": f.prior_long, "short": f.prior_short},
                                  bars=np.arange(lo, max(lo, hi - steps)))
            feeds = {"long": fs["long"], "short": fs["short"]}
        if calibration:
            ser = model_series(h, a, lam=lam, horizon_sec=model_horizon, periods=conv.periods,
                               params=calibration.params(a, cfg.markets[0].params), skew=calibration.fit(a).skew,
                               tail_feeds=feeds)
        else:
            ser = model_series(h, a, config_path, lam=lam, horizon_sec=model_horizon, periods=conv.periods)
        for side in SIDES:
            model = np.array(ser["var_long" if side == "long" else "var_short"])
            model[:lo] = np.nan
            model[max(lo, hi - steps):] = np.nan
            if gap_floor:
                assert calibration is not None and calibration.gap_floor is not None
                model = np.where(np.isfinite(model), np.maximum(model, calibration.gap_floor.move), np.nan)
            bt = backtest_margin(h, model, steps, side, alpha=a, step=steps, skip_gaps=skip)
            k = bt.kupiec
            if k is None or z_moves[side].size == 0:
                raise DataError(
                    f"{h.name}: no complete {steps}-bar window to test ({len(h)} bars, EWMA warm-up "
                    f"{EWMA().min_bars} bars, {bt.skipped_gap_windows} windows across gaps skipped); "
                    f"allowed: at least {EWMA().min_bars + steps} contiguous bars")
            starts = bt.window_starts
            measures: dict[str, Any] = {}
            for m in MEASURES:
                std = moves[(m, side)][usable] / sigma_h[usable]
                q = expanding_historical_var(std, window_end[usable], starts.astype(np.float64), a)
                fhs = np.full(len(h), np.nan)
                fhs[starts] = q * sigma_h[starts]
                fhs_bt = backtest_margin(h, fhs, steps, side, alpha=a, step=1, skip_gaps=skip)
                stats_m = bt.intrabar if m == "intrabar" else bt.close_to_close
                fhs_stats = fhs_bt.intrabar if m == "intrabar" else fhs_bt.close_to_close
                measures[m] = _measure_row(stats_m, model, fhs, fhs_stats, starts)
            rows.append({
                "dataset": data.spec, "sample": sample, "alpha": a, "side": side, "horizon_bars": steps,
                "observations": bt.observations, "breaches": bt.breaches,
                "breach_rate": bt.breach_rate, "expected_rate": 1 - a,
                "kupiec_lr": k.lr_statistic, "kupiec_p": k.p_value,
                "verdict": "consistent" if k.p_value >= 0.05 else ("too many breaches" if bt.breach_rate > 1 - a
                                                                    else "too few breaches"),
                "z_normal": float(norm.ppf(a)),
                "z_model": (calibration.fit(a).z if calibration else float(norm.ppf(a))),
                "z_calibrated": float(np.quantile(z_moves[side], a)),
                "horizon_sec": eff_horizon,
                "periods_per_year": bars_per_year,
                "gaps": "skip" if skip else "keep",
                "skipped_gap_windows": bt.skipped_gap_windows,
                "mean_max_leverage": float(np.nanmean(ser["max_leverage"][lo:hi])),
                "min_max_leverage": float(np.nanmin(ser["max_leverage"][lo:hi])),
                "first_bar_utc": data.history.start_utc, "last_bar_utc": data.history.end_utc,
                "bars": len(data.history),
                "intrabar": measures["intrabar"], "close_to_close": measures["close_to_close"],
            })
            if feeds is not None:
                fv = feeds[side][starts]
                fv = fv[np.isfinite(fv)]
                rows[-1]["tail_feed"] = {"mean": float(np.mean(fv)) if fv.size else math.nan,
                                         "max": float(np.max(fv)) if fv.size else math.nan,
                                         "at_cap": int(np.count_nonzero(fv >= calibration.tail.cap)) if calibration and calibration.tail else 0}
            rows[-1]["gap_floor_move"] = calibration.gap_floor.move if gap_floor and calibration and calibration.gap_floor else None
    return rows


TAIL_GRID: tuple[TailSpec, ...] = tuple(
    TailSpec(window=w, fast_lambda=f, combine_expanding=c, cap=5.0)
    for f in (None, 0.7, 0.8, 0.9)
    for w, c in ((None, False), (500, False), (1000, False), (2000, False), (500, True), (1000, True)))
"""The settings ``ballast backtest --tail-grid`` compares: window all/500/1,000/2,000 or the larger of
a rolling and the expanding quantile, filter the keeper's EWMA or max with an EWMA of decay
0.7/0.8/0.9."""


def tail_sensitivity(cal: Calibration, datasets: list[Dataset], alphas: list[float], config_path: str | None = None,
                     specs: tuple[TailSpec, ...] = TAIL_GRID) -> list[dict[str, Any]]:
    """Refit ``cal``'s training sets with each tail setting and backtest it on ``datasets``.

    Shows how much the result depends on the estimator's hyperparameters: per setting, the
    intrabar rows passing on the training sets (each read alone) and on ``datasets``.

    Raises
    ------
    ValidationError
        If a training set of ``cal`` is not a built-in data set (a CSV cannot be reloaded).
    """
    for t in cal.train:
        if t.base not in DATASETS:
            raise ValidationError("train", t.spec, f"a built-in data set {sorted(DATASETS)} to refit (--tail-grid)")
    train = _datasets(",".join(t.spec for t in cal.train), None, None, None)
    out = []
    for spec in specs:
        refit = fit_tail(train, alphas, method=cal.method, skew_mode=cal.skew_mode, measure=cal.measure,
                         lam=cal.ewma_lambda, config_path=config_path, tail=spec, gap_floor=cal.gap_floor)
        rows = [r for d in datasets for r in backtest(d, alphas, config_path, calibration=refit)]
        out.append({"tail": spec.label(), "window": spec.window, "fast_lambda": spec.fast_lambda,
                    "combine_expanding": spec.combine_expanding,
                    "train_pass": sum(bool(e["pass"]) for e in refit.tail_training), "train_rows": len(refit.tail_training),
                    "test_pass": sum(bool(r["intrabar"]["pass"]) for r in rows), "test_rows": len(rows),
                    "test_max_ratio_vs_fhs": max(r["intrabar"]["margin_ratio_vs_fhs"] for r in rows)})
    return out


VALIDATION_FRACTION = 0.3
"""Share of each training set's bars, its most recent ones, that ``--tail-select validation``
holds out as the validation part (the earlier bars are the inner fit part)."""
SELECTION_RULE = (
    "most validation rows passing (intrabar: Kupiec, Christoffersen independence and conditional coverage "
    f"p >= {PASS_LEVEL:g}, /FHS <= {MAX_FHS_RATIO:g}; each training set's validation part, each alpha, both "
    "sides), then the lowest mean |breach rate - (1 - alpha)| over those rows, then the lowest mean /FHS, then "
    "the simplest setting (fewest of: a rolling window, a fast filter, the max with the expanding quantile), "
    "then the grid order")
"""The rule :func:`select_tail` applies, fixed before any test result was seen."""


def tail_complexity(spec: TailSpec) -> int:
    """Hyperparameters a tail setting switches on: a rolling window, a fast filter, the max with the
    expanding quantile (0: the plain expanding FHS with the keeper's EWMA)."""
    return int(spec.window is not None) + int(spec.fast_lambda is not None) + int(spec.combine_expanding)


def _spec_time(ts: int) -> str:
    t = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%d") if (t.hour, t.minute, t.second) == (0, 0, 0) else t.strftime("%Y-%m-%dT%H:%M")


def split_training(d: Dataset, fraction: float = VALIDATION_FRACTION) -> tuple[Dataset, Dataset]:
    """A training set cut in time: the inner fit part (its first ``n - ceil(fraction * n)`` bars)
    and the validation part (its last ``ceil(fraction * n)`` bars).

    Only ``d.history`` (the training slice) is read: the validation part's ``full`` is the training
    slice, so its backtest lets the feed and the FHS reference read the inner part's bars (as a live
    keeper would) and nothing after the training cut-off.

    Raises
    ------
    ValidationError
        If ``fraction`` is not in [0.1, 0.5].
    DataError
        If either part would be empty.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.1 <= fraction <= 0.5:
        raise ValidationError("validation_fraction", fraction, "[0.1, 0.5] (share of each training set's bars)")
    h = d.history
    n = len(h)
    cut = n - math.ceil(fraction * n - 1e-9)
    if not 0 < cut < n:
        raise DataError(f"{d.spec}: {n} bars, too few to split into an inner fit part and a validation part")
    name, start, end = parse_dataset_spec(d.spec)
    at = _spec_time(int(h.timestamps[cut]))
    inner = Dataset(spec=f"{name}@{start or ''}..{at}", base=d.base, history=h.bars(0, cut),
                    conventions=d.conventions)
    valid = Dataset(spec=f"{name}@{at}..{end or ''}", base=d.base, history=h.bars(cut, n),
                    conventions=d.conventions, full=h, offset=cut)
    return inner, valid


def rank_key(score: dict[str, Any]) -> tuple[int, float, float, int, int]:
    """The sort key of :data:`SELECTION_RULE` for a candidate's score (first = chosen)."""
    return (-int(score["passes"]), round(float(score["mean_abs_rate_dev"]), 12),
            round(float(score["mean_ratio_vs_fhs"]), 12), int(score["complexity"]), int(score["grid_index"]))


def select_tail(train: list[Dataset], alphas: list[float], *, method: TailMethod = "fhs", skew_mode: SkewMode = "fit",
                measure: Measure = "intrabar", lam: float = 0.94, config_path: str | None = None,
                grid: tuple[TailSpec, ...] = TAIL_GRID,
                fraction: float = VALIDATION_FRACTION) -> tuple[TailSpec, dict[str, Any]]:
    """Choose the tail estimator's setting on the training data alone (``--tail-select validation``).

    Each training set is split in time (:func:`split_training`); every setting of ``grid`` is
    fitted on the inner parts (:func:`fit_tail`, pooled as the final fit pools the training sets)
    and backtested causally on each validation part at every alpha, both sides (the intrabar
    rows of :func:`backtest`). The setting ranked first by :data:`SELECTION_RULE`
    (:func:`rank_key`) is returned with a record of the selection: the split, the rule, and every
    candidate's score in rank order. Nothing after the training sets' last bars is read.

    Raises
    ------
    ValidationError
        On an empty grid or training list, a bad fraction or alpha.
    DataError
        If a training set is too short to split or to backtest its validation part.
    """
    if not grid:
        raise ValidationError("grid", grid, "at least one tail setting")
    if not train:
        raise ValidationError("train", train, "at least one data set")
    parts = [split_training(d, fraction) for d in train]
    inner = [p[0] for p in parts]
    scores: list[dict[str, Any]] = []
    for i, spec in enumerate(grid):
        cal = fit_tail(inner, alphas, method=method, skew_mode=skew_mode, measure=measure, lam=lam,
                       config_path=config_path, tail=spec, evaluate=False)
        rows = [r for _, v in parts for r in backtest(v, alphas, config_path, calibration=cal)]
        ib = [r["intrabar"] for r in rows]
        ratios = [float(x["margin_ratio_vs_fhs"]) for x in ib if math.isfinite(x["margin_ratio_vs_fhs"])]
        scores.append({
            "rank": 0, "label": spec.label(), "window": spec.window or 0, "fast_lambda": spec.fast_lambda or 0.0,
            "combine_expanding": spec.combine_expanding, "complexity": tail_complexity(spec), "grid_index": i,
            "passes": sum(bool(x["pass"]) for x in ib), "rows": len(ib),
            "mean_abs_rate_dev": float(np.mean([abs(x["breach_rate"] - r["expected_rate"]) for x, r in zip(ib, rows)])),
            "mean_ratio_vs_fhs": float(np.mean(ratios)) if ratios else math.inf,
            "max_ratio_vs_fhs": max(ratios) if ratios else math.inf,
            "row": [f"{r['dataset']} {r['alpha']:g} {r['side']}: {x['breaches']}/{x['observations']}, Kupiec p "
                    f"{x['kupiec_p']:.3g}, indep. p {x['christoffersen_ind_p']:.3g}, cc p {x['christoffersen_cc_p']:.3g}, "
                    f"/FHS {x['margin_ratio_vs_fhs']:.3f}: " + ("pass" if x["pass"] else "FAIL " + ", ".join(x["fails"]))
                    for x, r in zip(ib, rows)],
        })
    ranked = sorted(scores, key=rank_key)
    for k, sc in enumerate(ranked, 1):
        sc["rank"] = k
    chosen = grid[int(ranked[0]["grid_index"])]
    record: dict[str, Any] = {
        "mode": "validation", "validation_fraction": float(fraction),
        "split": (f"each training set in time: inner fit part = its first n - ceil({fraction:g} n) bars, validation "
                  f"part = its last ceil({fraction:g} n) bars; each setting fitted on the inner parts (pooled) and "
                  "backtested on each validation part, the feed reading earlier training bars only"),
        "rule": SELECTION_RULE, "alphas": [float(a) for a in alphas],
        "chosen": chosen.label(), "chosen_window": chosen.window or 0, "chosen_fast_lambda": chosen.fast_lambda or 0.0,
        "chosen_combine_expanding": chosen.combine_expanding,
        "part": [{"train": d.spec, "inner": i.spec, "inner_bars": len(i.history), "validation": v.spec,
                  "validation_bars": len(v.history)} for d, (i, v) in zip(train, parts)],
        "candidate": ranked,
    }
    return chosen, record


def standardized_moves(history: PriceHistory, steps: int, lam: float = 0.94, *,
                       periods: float | None = None, skip_gaps: bool = True) -> dict[str, np.ndarray]:
    """Worst adverse move over the next ``steps`` bars (intrabar), divided by the EWMA volatility
    over the same horizon, on non-overlapping windows: the empirical z of each window.

    The quotient does not depend on ``periods`` (annualization cancels); ``skip_gaps`` excludes
    windows spanning a gap in the timestamps, as :func:`~ballast.risk.backtest.backtest_margin`.
    """
    periods_per_year(history, periods)  # validates
    sigma_h, usable, moves = standardized_windows(history, steps, lam, skip_gaps=skip_gaps)
    grid = np.zeros(sigma_h.size, dtype=bool)
    grid[::steps] = True
    keep = grid & usable
    return {side: moves[("intrabar", side)][keep] / sigma_h[keep] for side in SIDES}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The backtest rows as a text table, one line per (alpha, side, measure); units in the header."""
    head = (f"{'dataset':24}{'sample':>15}{'alpha':>7}{'side':>6}{'measure':>15}{'windows':>8}{'breach':>7}"
            f"{'rate %':>8}{'exp. %':>7}{'Kupiec p':>9}{'indep p':>9}{'cc p':>9}{'margin %':>9}"
            f"{'/FHS x':>8}  verdict")
    out = [head, "-" * (len(head) + 30)]
    for r in rows:
        for m in MEASURES:
            s = r[m]
            verdict = "pass" if s["pass"] else "FAIL: " + ", ".join(s["fails"])
            out.append(
                f"{r['dataset']:24}{r['sample']:>15}{r['alpha']:>7.3f}{r['side']:>6}{m:>15}{s['observations']:>8}"
                f"{s['breaches']:>7}{100 * s['breach_rate']:>8.2f}{100 * r['expected_rate']:>7.2f}"
                f"{s['kupiec_p']:>9.3g}{s['christoffersen_ind_p']:>9.3g}{s['christoffersen_cc_p']:>9.3g}"
                f"{100 * s['mean_margin']:>9.3f}{s['margin_ratio_vs_fhs']:>8.2f}  {verdict}")
    return "\n".join(out)


def _load_csv_noted(csv_path: str, interval_seconds: int | None) -> PriceHistory:
    h = load_csv(csv_path, interval_seconds)
    c = h.cleaning
    assert c is not None  # load_csv always records its cleaning
    notes = [f"{c.rows_read} rows read"]
    notes += [f"{n} {what}" for n, what in ((c.dropped_missing, "without a price"),
                                            (c.dropped_off_grid, "off the bar grid")) if n]
    if c.newest_first:
        notes.append("newest-first, reversed")
    if c.filled_columns:
        notes.append(f"{'/'.join(c.filled_columns)} filled from closes")
    print(f"{csv_path}: {len(h)} bars of {h.interval_seconds} s, {h.start_utc} to {h.end_utc}, "
          f"{h.gap_indices().size} gaps ({'; '.join(notes)})")
    return h


def _datasets(specs: str, csv_history: PriceHistory | None, skip_gaps: bool | None,
              periods: float | None) -> list[Dataset]:
    out = []
    for spec in specs.split(","):
        d = load_dataset(spec, csv_history=csv_history)
        conv = Conventions(d.conventions.skip_gaps if skip_gaps is None else skip_gaps,
                           d.conventions.periods if periods is None else periods)
        out.append(replace(d, conventions=conv))
    return out


def backtest_cli(dataset: str, alphas: list[float] | None, json_out: str | None, config_path: str | None, *,
                 csv_path: str | None = None, interval_seconds: int | None = None, skip_gaps: bool | None = None,
                 periods: float | None = None, params_path: str | None = None, gap_floor: bool = False,
                 tail_grid: bool = False) -> int:
    """``ballast backtest``: bundled data sets (comma-separated specs), or the user's own OHLC(V) CSV
    (``csv_path``), with the shipped parameters or a calibration file (``params_path``)."""
    csv_history = _load_csv_noted(csv_path, interval_seconds) if csv_path is not None else None
    specs = csv_history.name if csv_history is not None else dataset
    cal = load_calibration(params_path) if params_path else None
    if tail_grid and (cal is None or cal.tail is None):
        raise ValidationError("--tail-grid", True, "with --params of a file written by calibrate --tail fhs")
    if alphas is None:
        alphas = [f.alpha for f in cal.fits] if cal else [0.95, 0.99, 0.995]
    if cal:
        print(f"Parameters: {params_path}, fitted on {', '.join(t.spec for t in cal.train)} "
              f"({cal.method} tail of the standardized {cal.measure} move, skew {cal.skew_mode})")
        for f in cal.fits:
            print(f"  alpha {f.alpha}: z {f.z:.4f}, skew input {f.skew:+.4f} (vol units), skew_sens {f.skew_sens:g}, "
                  f"tail_cap {f.tail_cap:g}, regime_sens {f.regime_sens:g}, vol_ref {f.vol_ref:g} (annualized)")
        if cal.tail is not None:
            print(f"  published tail per side: {cal.tail.label()}")
        if cal.gap_floor is not None:
            g = cal.gap_floor
            print(f"  gap floor: move {100 * g.move:.2f}% over {g.total_sec} s -> min_mmf {g.min_mmf:g}, min_imf "
                  f"{g.min_imf:g} (max leverage {1 / g.min_imf:.1f}x)" + ("; tested: max(varMove, gap move)" if gap_floor
                                                                         else "; not in the tested margin (--gap-floor)"))
    else:
        print(f"Parameters: shipped configuration {config_path or 'config/markets.toml'} with z = norm.ppf(alpha)")
    rows: list[dict[str, Any]] = []
    for d in _datasets(specs, csv_history, skip_gaps, periods):
        rs = backtest(d, alphas, config_path, calibration=cal, gap_floor=gap_floor)
        r0 = rs[0]
        print(f"\n{d.spec}: {r0['bars']} bars, {r0['first_bar_utc'][:16]} to {r0['last_bar_utc'][:16]}; horizon "
              f"{r0['horizon_bars']} bar(s) = {r0['horizon_sec']} s; {r0['periods_per_year']:g} bars per year; "
              f"gaps: {r0['gaps']} ({r0['skipped_gap_windows']} windows across gaps skipped)")
        rows += rs
    print("\nMargin model backtest: VaR move over the liquidation horizon vs the realized adverse move "
          "(non-overlapping windows, EWMA volatility, no look-ahead). rate and margin in % (of windows, of "
          "notional); p-values are probabilities (Kupiec POF, Christoffersen independence, conditional "
          "coverage); /FHS x = average model margin / average filtered-historical-simulation margin on the "
          f"same windows. pass = all three p >= {PASS_LEVEL:g} and /FHS <= {MAX_FHS_RATIO:g}.\n")
    print(format_table(rows))
    n_pass = sum(r[m]["pass"] for r in rows for m in MEASURES)
    print(f"\n{n_pass} of {2 * len(rows)} rows pass")
    grid: list[dict[str, Any]] = []
    if tail_grid:
        assert cal is not None
        print("\nSensitivity to the tail estimator's settings (intrabar rows passing; training sets read alone):")
        grid = tail_sensitivity(cal, _datasets(specs, csv_history, skip_gaps, periods), alphas, config_path)
        for row in grid:
            print(f"  {row['tail']:78} train {row['train_pass']:>2}/{row['train_rows']}  test {row['test_pass']:>2}/"
                  f"{row['test_rows']}  max /FHS {row['test_max_ratio_vs_fhs']:.2f}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        doc: Any = rows
        if cal is not None:
            doc = {"params": params_path, "train": [t.spec for t in cal.train], "method": cal.method,
                   "skew_mode": cal.skew_mode, "fits": [vars(f) for f in cal.fits],
                   "tail": None if cal.tail is None else {**vars(cal.tail), "label": cal.tail.label()},
                   "tail_training_backtest": list(cal.tail_training),
                   "tail_selection": cal.tail_selection,
                   "gap_floor": None if cal.gap_floor is None else {**vars(cal.gap_floor), "total_sec": cal.gap_floor.total_sec},
                   "gap_floor_tested": gap_floor, "rows": rows}
            if tail_grid:
                doc["tail_grid"] = grid
        Path(json_out).write_text(json.dumps(doc, indent=1))
        print(f"written: {json_out}")
    return 0


def calibrate_cli(train: str | None, out: str, alphas: list[float], config_path: str | None, *,
                  csv_path: str | None = None, interval_seconds: int | None = None, skip_gaps: bool | None = None,
                  periods: float | None = None, method: TailMethod = "fhs", skew_mode: SkewMode = "fit",
                  command: str = "", tail: TailSpec | None = None, gap_floor: dict[str, Any] | None = None,
                  tail_select: Literal["none", "validation"] = "none", validation_fraction: float = VALIDATION_FRACTION) -> int:
    """``ballast calibrate``: fit the tail on the named training data only and write ``out``.

    With ``tail_select="validation"`` the tail setting is not given but chosen on the training data
    (:func:`select_tail` over :data:`TAIL_GRID` with ``tail``'s cap), then fitted on all of it."""
    csv_history = _load_csv_noted(csv_path, interval_seconds) if csv_path is not None else None
    specs = [s for s in (train or "").split(",") if s]
    if csv_history is not None:
        specs.append(csv_history.name)
    if not specs:
        raise ValidationError("--train", train, "comma-separated data sets (NAME[@START..END]) and/or --csv FILE")
    data = _datasets(",".join(specs), csv_history, skip_gaps, periods)
    floor = fit_gap_floor(data, config_path=config_path, **gap_floor) if gap_floor is not None else None
    selection: dict[str, Any] | None = None
    if tail_select == "validation":
        cap = 5.0 if tail is None else tail.cap
        tail, selection = select_tail(data, alphas, method=method, skew_mode=skew_mode, config_path=config_path,
                                      grid=tuple(replace(g, cap=cap) for g in TAIL_GRID), fraction=validation_fraction)
        print(f"tail setting chosen on the training data alone: {selection['split']}.")
        for pt in selection["part"]:
            print(f"  {pt['train']}: inner {pt['inner']} ({pt['inner_bars']} bars), validation {pt['validation']} "
                  f"({pt['validation_bars']} bars)")
        print(f"rule: {selection['rule']}.")
        for sc in selection["candidate"]:
            print(f"  {sc['rank']:>2}. {sc['label']:78} validation {sc['passes']:>2}/{sc['rows']}  mean |rate - "
                  f"(1-alpha)| {100 * sc['mean_abs_rate_dev']:.3f}%  mean /FHS {sc['mean_ratio_vs_fhs']:.3f}")
        print(f"chosen: {tail.label()}")
    elif tail_select != "none":
        raise ValidationError("--tail-select", tail_select, "'none' or 'validation'")
    cal = fit_tail(data, alphas, method=method, skew_mode=skew_mode, config_path=config_path, tail=tail,
                   gap_floor=floor)
    if selection is not None:
        cal = replace(cal, tail_selection=selection)
    write_calibration(cal, out, command=command)
    for t in cal.train:
        print(f"train: {t.spec}: {t.bars} bars, {_iso(t.first_ts)} to {_iso(t.last_ts)}")
    for f in cal.fits:
        print(f"alpha {f.alpha}: quantile of the standardized adverse move long {f.quantile_long:.3f}, short "
              f"{f.quantile_short:.3f} ({f.windows} windows per side) -> z {f.z:.4f}, skew input {f.skew:+.4f} "
              f"(vol units), tail_cap {f.tail_cap:g}, regime_sens {f.regime_sens:g}"
              + (f"; tail feed prior long {f.prior_long:g}, short {f.prior_short:g}" if tail is not None else ""))
    if tail is not None:
        print(f"published tail: {tail.label()}; causal backtest on each training set alone (intrabar):")
        for e in cal.tail_training:
            print(f"  {e['dataset']:24} alpha {e['alpha']:<6} {e['side']:5} {e['breaches']:>3}/{e['windows']:<5} breaches, "
                  f"Kupiec p {e['kupiec_p']:.3g}, indep. p {e['christoffersen_ind_p']:.3g}, /FHS "
                  f"{e['margin_ratio_vs_fhs']:.2f}x: {'pass' if e['pass'] else 'FAIL'}")
    if floor is not None:
        print(f"gap floor: {floor.quantile} quantile of the adverse move over horizon {floor.horizon_sec} s + oracle lag "
              f"{floor.oracle_lag_sec} s + settlement {floor.settlement_delay_sec} s + liquidator {floor.liquidator_latency_sec} s "
              f"= {floor.total_sec} s: " + ", ".join(f"{n} ({b} bars) {100 * m:.2f}%" for n, b, m in floor.datasets)
              + f" -> min_mmf {floor.min_mmf:g}, min_imf {floor.min_imf:g}: max leverage {1 / floor.min_imf:.1f}x")
    print(f"written: {out}")
    return 0
