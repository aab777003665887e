"""Calibration and backtest of the margin model on real price history (``ballast backtest``).

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
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm  # type: ignore[import-untyped]

from ballast._typing import WAD
from ballast.config import load_config, to_wad
from ballast.data import DATASETS, PriceHistory, load_csv
from ballast.errors import DataError, ValidationError
from ballast.model import YEAR_SEC, RiskInputs, compute, var_move
from ballast.risk.backtest import backtest_margin
from ballast.risk.volatility import EWMA


PERIODS_FRACTION_OF_YEAR = (0.1, 1.0)
"""Allowed ``periods_per_year * interval_seconds / 365 days``: bars cover between 10% (an equity
session) and 100% (24/7 trading) of calendar time."""


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
                 periods: float | None = None) -> dict[str, np.ndarray]:
    """Per-bar volatility, VaR move (both sides) and max leverage of a small position.

    ``periods`` is the bars per year of :func:`periods_per_year` (``None``: calendar time);
    ``horizon_sec`` is in the model's year (``YEAR_SEC``), i.e. ``steps * YEAR_SEC / periods``.
    """
    if not 0.5 < alpha < 1.0:
        raise ValidationError("alpha", alpha, "(0.5, 1)")
    cfg = load_config(config_path) if config_path else load_config()
    p = replace(cfg.markets[0].params, z_wad=round(float(norm.ppf(alpha)) * 1e6) * 10**12)
    if horizon_sec is not None:
        p = replace(p, horizon_sec=horizon_sec)
    sigma = EWMA(lam).estimate(history)
    if periods is not None:
        # EWMA annualizes with calendar seconds; rescale to `periods` bars per year.
        sigma = sigma * math.sqrt(periods_per_year(history, periods) * history.interval_seconds / YEAR_SEC)
    n = len(history)
    vm_long = np.full(n, np.nan)
    vm_short = np.full(n, np.nan)
    lev = np.full(n, np.nan)
    close = np.asarray(history.close)
    for i in np.flatnonzero(np.isfinite(sigma)):
        s = to_wad(float(sigma[i]))
        vm_long[i] = var_move(p, s, 0, True) / WAD
        vm_short[i] = var_move(p, s, 0, False) / WAD
        x = RiskInputs(s, 0, 10**30, 0, 0, 0, 0, to_wad(float(close[i])), True)
        lev[i] = WAD / compute(p, x).imf_wad
    return {"sigma": np.asarray(sigma), "var_long": vm_long, "var_short": vm_short, "max_leverage": lev}


def backtest(dataset: str | PriceHistory, alphas: list[float], config_path: str | None = None, *,
             skip_gaps: bool = True, periods: float | None = None) -> list[dict[str, Any]]:
    """The backtest table: one row per (alpha, side).

    Parameters
    ----------
    dataset
        A bundled data set name (``btc_15min``, ``btc_daily``) or a loaded history (a user's CSV,
        :func:`ballast.data.load_csv`).
    alphas
        Confidence levels in (0.5, 1).
    config_path
        Market configuration TOML (default ``config/markets.toml``); the first market's model.
    skip_gaps
        Exclude windows that span a gap in the timestamps (default), or keep them (bars are
        consecutive trading periods). See the module docstring.
    periods
        Bars per year for annualizing volatility (:func:`periods_per_year`); ``None``: calendar.

    Raises
    ------
    ValidationError
        On an unknown data set, a bad alpha or ``periods``.
    DataError
        If the history has no complete window after the volatility warm-up.
    """
    if isinstance(dataset, PriceHistory):
        h = dataset
    elif dataset in DATASETS:
        h = DATASETS[dataset]()
    else:
        raise ValidationError("dataset", dataset, f"one of {sorted(DATASETS)} or a PriceHistory")
    if not isinstance(skip_gaps, bool):
        raise ValidationError("skip_gaps", skip_gaps, "True or False")
    cfg = load_config(config_path) if config_path else load_config()
    horizon_sec = cfg.markets[0].params.horizon_sec
    steps = max(1, math.ceil(horizon_sec / h.interval_seconds))
    eff_horizon = steps * h.interval_seconds
    bars_per_year = periods_per_year(h, periods)
    model_horizon = eff_horizon if periods is None else round(steps * YEAR_SEC / bars_per_year)
    rows = []
    z_moves = standardized_moves(h, steps, periods=periods, skip_gaps=skip_gaps)
    for a in alphas:
        ser = model_series(h, a, config_path, horizon_sec=model_horizon, periods=periods)
        for side in ("long", "short"):
            bt = backtest_margin(h, ser["var_long" if side == "long" else "var_short"], steps, side,
                                 alpha=a, step=steps, skip_gaps=skip_gaps)
            k = bt.kupiec
            if k is None or z_moves[side].size == 0:
                raise DataError(
                    f"{h.name}: no complete {steps}-bar window to test ({len(h)} bars, EWMA warm-up "
                    f"{EWMA().min_bars} bars, {bt.skipped_gap_windows} windows across gaps skipped); "
                    f"allowed: at least {EWMA().min_bars + steps} contiguous bars")
            rows.append({
                "dataset": h.name, "alpha": a, "side": side, "horizon_bars": steps,
                "observations": bt.observations, "breaches": bt.breaches,
                "breach_rate": bt.breach_rate, "expected_rate": 1 - a,
                "kupiec_lr": k.lr_statistic, "kupiec_p": k.p_value,
                "verdict": "consistent" if k.p_value >= 0.05 else ("too many breaches" if bt.breach_rate > 1 - a
                                                                    else "too few breaches"),
                "z_normal": float(norm.ppf(a)),
                "z_calibrated": float(np.quantile(z_moves[side], a)),
                "horizon_sec": eff_horizon,
                "periods_per_year": bars_per_year,
                "gaps": "skip" if skip_gaps else "keep",
                "skipped_gap_windows": bt.skipped_gap_windows,
                "mean_max_leverage": float(np.nanmean(ser["max_leverage"])),
                "min_max_leverage": float(np.nanmin(ser["max_leverage"])),
            })
    return rows


def standardized_moves(history: PriceHistory, steps: int, lam: float = 0.94, *,
                       periods: float | None = None, skip_gaps: bool = True) -> dict[str, np.ndarray]:
    """Worst adverse move over the next ``steps`` bars (intrabar), divided by the EWMA volatility
    over the same horizon, on non-overlapping windows: the empirical z of each window.

    The quotient does not depend on ``periods`` (annualization cancels); ``skip_gaps`` excludes
    windows spanning a gap in the timestamps, as :func:`~ballast.risk.backtest.backtest_margin`.
    """
    bars_per_year = periods_per_year(history, periods)
    sigma = EWMA(lam).estimate(history)
    if periods is not None:
        sigma = sigma * math.sqrt(bars_per_year * history.interval_seconds / YEAR_SEC)
    close, low, high = np.asarray(history.close), np.asarray(history.low), np.asarray(history.high)
    scale = (np.sqrt(steps * history.interval_seconds / YEAR_SEC) if periods is None
             else np.sqrt(steps / bars_per_year))
    contiguous = np.diff(history.timestamps) == history.interval_seconds
    longs, shorts = [], []
    for t in range(0, len(history) - steps, steps):
        if not np.isfinite(sigma[t]) or sigma[t] <= 0:
            continue
        if skip_gaps and not contiguous[t:t + steps].all():
            continue
        d = sigma[t] * scale
        longs.append((1 - low[t + 1:t + 1 + steps].min() / close[t]) / d)
        shorts.append((high[t + 1:t + 1 + steps].max() / close[t] - 1) / d)
    return {"long": np.asarray(longs), "short": np.asarray(shorts)}


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'dataset':10}{'alpha':>7}{'side':>6}{'windows':>9}{'breaches':>9}{'rate':>8}{'expected':>9}"
            f"{'Kupiec p':>10}{'z normal':>10}{'z needed':>10}  verdict")
    out = [head, "-" * (len(head) + 18)]
    for r in rows:
        out.append(f"{r['dataset']:10}{r['alpha']:>7.3f}{r['side']:>6}{r['observations']:>9}{r['breaches']:>9}"
                   f"{r['breach_rate']:>8.2%}{r['expected_rate']:>9.2%}{r['kupiec_p']:>10.3g}{r['z_normal']:>10.2f}"
                   f"{r['z_calibrated']:>10.2f}  {r['verdict']}")
    return "\n".join(out)


def backtest_cli(dataset: str, alphas: list[float], json_out: str | None, config_path: str | None, *,
                 csv_path: str | None = None, interval_seconds: int | None = None, skip_gaps: bool = True,
                 periods: float | None = None) -> int:
    """``ballast backtest``: a bundled data set, or the user's own OHLC(V) CSV (``csv_path``)."""
    source: str | PriceHistory = dataset
    if csv_path is not None:
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
        source = h
    rows = backtest(source, alphas, config_path, skip_gaps=skip_gaps, periods=periods)
    r0 = rows[0]
    print(f"Margin model backtest: VaR move over the liquidation horizon vs the realized worst adverse move "
          f"(non-overlapping windows, EWMA volatility, no look-ahead; {r0['periods_per_year']:g} bars per year; "
          f"gaps: {r0['gaps']}, {r0['skipped_gap_windows']} windows across gaps skipped)\n")
    print(format_table(rows))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(rows, indent=1))
        print(f"\nwritten: {json_out}")
    return 0
