"""Calibration and backtest of the margin model on real price history (``ballast backtest``).

For each target confidence alpha the model's VaR move over the liquidation horizon,
``z(alpha) * sigma_t * sqrt(h / year) * tail``, is computed at every bar from the keeper's
trailing volatility estimate (EWMA, no look-ahead) and compared with the adverse price move over
the following horizon (worst intrabar excursion, non-overlapping windows). A model that claims
alpha should breach about 1 - alpha of the time: the Kupiec proportion-of-failures test says
whether the observed rate is consistent with that.
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
from ballast.data import DATASETS, PriceHistory
from ballast.errors import ValidationError
from ballast.model import RiskInputs, compute, var_move
from ballast.risk.backtest import backtest_margin
from ballast.risk.volatility import EWMA


def model_series(history: PriceHistory, alpha: float, config_path: str | None = None,
                 lam: float = 0.94, horizon_sec: int | None = None) -> dict[str, np.ndarray]:
    """Per-bar volatility, VaR move (both sides) and max leverage of a small position."""
    if not 0.5 < alpha < 1.0:
        raise ValidationError("alpha", alpha, "(0.5, 1)")
    cfg = load_config(config_path) if config_path else load_config()
    p = replace(cfg.markets[0].params, z_wad=round(float(norm.ppf(alpha)) * 1e6) * 10**12)
    if horizon_sec is not None:
        p = replace(p, horizon_sec=horizon_sec)
    sigma = EWMA(lam).estimate(history)
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


def backtest(dataset: str, alphas: list[float], config_path: str | None = None) -> list[dict[str, Any]]:
    """The backtest table: one row per (alpha, side)."""
    if dataset not in DATASETS:
        raise ValidationError("dataset", dataset, f"one of {sorted(DATASETS)}")
    h = DATASETS[dataset]()
    cfg = load_config(config_path) if config_path else load_config()
    horizon_sec = cfg.markets[0].params.horizon_sec
    steps = max(1, math.ceil(horizon_sec / h.interval_seconds))
    eff_horizon = steps * h.interval_seconds
    rows = []
    z_moves = standardized_moves(h, steps)
    for a in alphas:
        ser = model_series(h, a, config_path, horizon_sec=eff_horizon)
        for side in ("long", "short"):
            bt = backtest_margin(h, ser["var_long" if side == "long" else "var_short"], steps, side,
                                 alpha=a, step=steps)
            k = bt.kupiec
            assert k is not None  # the history spans many horizons: observations > 0
            rows.append({
                "dataset": dataset, "alpha": a, "side": side, "horizon_bars": steps,
                "observations": bt.observations, "breaches": bt.breaches,
                "breach_rate": bt.breach_rate, "expected_rate": 1 - a,
                "kupiec_lr": k.lr_statistic, "kupiec_p": k.p_value,
                "verdict": "consistent" if k.p_value >= 0.05 else ("too many breaches" if bt.breach_rate > 1 - a
                                                                    else "too few breaches"),
                "z_normal": float(norm.ppf(a)),
                "z_calibrated": float(np.quantile(z_moves[side], a)),
                "horizon_sec": eff_horizon,
                "mean_max_leverage": float(np.nanmean(ser["max_leverage"])),
                "min_max_leverage": float(np.nanmin(ser["max_leverage"])),
            })
    return rows


def standardized_moves(history: PriceHistory, steps: int, lam: float = 0.94) -> dict[str, np.ndarray]:
    """Worst adverse move over the next ``steps`` bars (intrabar), divided by the EWMA volatility
    over the same horizon, on non-overlapping windows: the empirical z of each window."""
    sigma = EWMA(lam).estimate(history)
    close, low, high = np.asarray(history.close), np.asarray(history.low), np.asarray(history.high)
    scale = np.sqrt(steps * history.interval_seconds / (365 * 86_400))
    longs, shorts = [], []
    for t in range(0, len(history) - steps, steps):
        if not np.isfinite(sigma[t]) or sigma[t] <= 0:
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


def backtest_cli(dataset: str, alphas: list[float], json_out: str | None, config_path: str | None) -> int:
    rows = backtest(dataset, alphas, config_path)
    print(f"Margin model backtest: VaR move over the liquidation horizon vs the realized worst adverse move "
          f"(non-overlapping windows, EWMA volatility, no look-ahead)\n")
    print(format_table(rows))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(rows, indent=1))
        print(f"\nwritten: {json_out}")
    return 0
