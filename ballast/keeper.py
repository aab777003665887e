"""The oracle keeper: computes volatility, funding, depth and skew and pushes them to the
Chainlink-style feeds under Chainlink's rules (deviation threshold or heartbeat).

Two volatility modes:

``trailing``
    EWMA of squared log returns (RiskMetrics, ``lam``) on the keeper's sampling grid: the vol feed
    follows realized volatility.
``predictive``
    GARCH(1,1) one-step-ahead forecast (``ballast.risk.volatility.Garch11``, fitted with ``arch``):
    tightens as soon as volatility clustering predicts a rise, before it is realized.

Synthesized inputs (no public history exists for them; see DATA notes in the README):

* depth = base_depth x scenario depth multiplier x min(1, sigma_ref / sigma)  (books thin as vol rises)
* skew  = scenario shock - skew_k x (24 h drawdown)                        (puts bid in a selloff)
* funding = funding_k x (OI_long - OI_short) / (OI_long + OI_short) + scenario shock, clipped

Restart and failure safety: the keeper's only state is what the feeds hold on chain. Each round it
reads ``latestRoundData`` and pushes a feed only if the on-chain answer deviates from the target by
the threshold or is older than the refresh interval, so a dropped or failed transaction is retried
next round and a restarted keeper neither double-pushes nor skips a round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ballast._typing import FloatArray
from ballast.errors import ValidationError
from ballast.risk.volatility import EWMA, Garch11
from ballast.scenarios import ScenarioPath

VolMode = Literal["trailing", "predictive"]
FEEDS = ("price", "volatility", "funding", "depth", "skew")


@dataclass(frozen=True)
class PushRules:
    """Chainlink-style update rules, per feed: relative deviation for positive feeds, absolute for
    signed ones, and a refresh interval (a fraction of the heartbeat) after which a push is due."""

    price_dev: float = 0.005
    vol_dev: float = 0.05
    depth_dev: float = 0.05
    skew_abs: float = 0.005
    funding_abs: float = 0.00002
    refresh_sec: int = 1_800
    """Push at least this often, seconds (the feeds' heartbeat is 3,600 s)."""

    def due(self, kind: str, onchain: float | None, target: float, age_sec: float) -> bool:
        if onchain is None or age_sec >= self.refresh_sec:
            return True
        if kind in ("price", "volatility", "depth"):
            dev = {"price": self.price_dev, "volatility": self.vol_dev, "depth": self.depth_dev}[kind]
            return abs(target - onchain) > dev * abs(onchain)
        return abs(target - onchain) > (self.skew_abs if kind == "skew" else self.funding_abs)


@dataclass
class FeedModel:
    """Per-block feed targets for a scenario (volatility precomputed without look-ahead).

    Parameters
    ----------
    scenario
        The path.
    mode
        ``trailing`` (EWMA) or ``predictive`` (GARCH one-step-ahead).
    base_depth_usd
        Depth at normal volatility, USD.
    """

    scenario: ScenarioPath
    mode: VolMode = "trailing"
    base_depth_usd: float = 50_000_000.0
    lam: float = 0.94
    skew_k: float = 0.5
    funding_k: float = 0.0005
    funding_cap: float = 0.004
    vol: FloatArray = field(init=False)
    sigma_ref: float = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("trailing", "predictive"):
            raise ValidationError("keeper.mode", self.mode, "'trailing' or 'predictive'")
        s = self.scenario
        ratio = max(1, s.history_sec // s.block_sec)
        self._ratio = ratio
        grid = np.r_[s.history, s.price[ratio - 1::ratio]]
        est = EWMA(self.lam) if self.mode == "trailing" else Garch11(dist="t", refit_every=250, fit_window=2000,
                                                                      min_fit=min(500, max(100, len(s.history) - 2)))
        sig = est.estimate(grid, interval_seconds=s.history_sec)
        sig = np.where(np.isfinite(sig), sig, np.nan)
        first = np.nanmedian(sig[: len(s.history)]) if np.isfinite(sig[: len(s.history)]).any() else 0.5
        sig = np.where(np.isnan(sig), first, sig)
        self._grid_sigma = sig
        self._n_hist = len(s.history)
        self.sigma_ref = float(np.nanmedian(sig[: self._n_hist]))
        blocks = np.arange(s.blocks)
        # The last completed grid sample at block b: history plus floor((b+1)/ratio) path samples.
        idx = self._n_hist - 1 + (blocks + 1) // ratio
        self.vol = np.asarray(sig[np.minimum(idx, sig.size - 1)], dtype=np.float64)

    def targets(self, b: int, oi_long: float, oi_short: float) -> dict[str, float]:
        """Feed targets at block ``b`` given open interest (base units)."""
        s = self.scenario
        lag = int(s.oracle_delay[b])
        price = float(s.price[max(0, b - lag)])
        sigma = float(max(self.vol[b], 0.01))
        depth = self.base_depth_usd * float(s.depth_mult[b]) * min(1.0, self.sigma_ref / sigma)
        day = max(1, 86_400 // s.block_sec)
        lo = max(0, b - day)
        recent = np.r_[s.history[-max(0, day - b):] if b < day else [], s.price[lo:b + 1]]
        dd = 1.0 - price / float(np.max(recent)) if recent.size else 0.0
        skew = float(s.skew_shock[b]) - self.skew_k * max(0.0, dd)
        tot = oi_long + oi_short
        imb = (oi_long - oi_short) / tot if tot > 0 else 0.0
        funding = float(np.clip(self.funding_k * imb + s.funding_shock[b], -self.funding_cap, self.funding_cap))
        return {"price": price, "volatility": sigma, "funding": funding, "depth": max(depth, 1_000.0),
                "skew": float(np.clip(skew, -0.9, 0.9))}


@dataclass
class OracleKeeper:
    """Decides which feeds to push this round from the on-chain answers (restart safe)."""

    rules: PushRules = field(default_factory=PushRules)
    decimals: int = 8
    pushes: int = 0
    skipped_stale: int = 0

    def encode(self, value: float) -> int:
        return round(value * 10**self.decimals)

    def decide(self, now: int, targets: dict[str, float], onchain: dict[str, tuple[int, int]],
               stale_price: bool = False) -> dict[str, int]:
        """Feeds to push: {kind: integer answer}. ``onchain`` maps kind to (answer, updated_at)."""
        out: dict[str, int] = {}
        for k in FEEDS:
            if k == "price" and stale_price:
                self.skipped_stale += 1
                continue
            ans, upd = onchain.get(k, (0, 0))
            cur = ans / 10**self.decimals if upd else None
            if self.rules.due(k, cur, targets[k], now - upd):
                out[k] = self.encode(targets[k])
        self.pushes += len(out)
        return out


def annualized(x: float) -> float:
    return x * math.sqrt(365 * 86_400)
