"""The oracle keeper: computes volatility, funding, depth and skew and pushes them to the
Chainlink-style feeds under Chainlink's rules (deviation threshold or heartbeat).

Three volatility modes:

``trailing``
    EWMA of squared log returns (RiskMetrics, ``lam``) on the keeper's sampling grid: the vol feed
    follows realized volatility. In a replay the grid is the history's bars (daily bars: one update
    per day, ``lam`` per day), on a synthetic path every block.
``intraday``
    The same EWMA up to the last history bar, then continued on every block's price with ``lam``
    per block (:func:`intraday_vol`), as the live keeper (:class:`ChainKeeper`) samples every
    round: in a replay of daily bars the feed moves every hour instead of once a day. On a path
    whose history is at block spacing (the synthetic families) it equals ``trailing``.
``predictive``
    GARCH(1,1) one-step-ahead forecast (``ballast.risk.volatility.Garch11``, fitted with ``arch``):
    tightens as soon as volatility clustering predicts a rise, before it is realized.

Two depth modes (``FeedModel.depth_mode``, independent of the volatility mode; issue 12):

``trailing``
    depth = base_depth x scenario depth multiplier x min(1, sigma_ref / sigma): the book as it is now,
    thinned by the current volatility estimate.
``predictive``
    :func:`predictive_depth`: the trailing depth projected one liquidation horizon ahead from its own
    log change over the last window (the book's trend and the volatility-driven thinning both move
    it), never above the trailing depth, at most ``DEPTH_FLOOR`` below it.

Synthesized inputs (no public history exists for them; see DATA notes in the README):

* depth = base_depth x scenario depth multiplier x min(1, sigma_ref / sigma)  (books thin as vol rises)
* skew  = scenario shock - skew_k x (24 h drawdown)                        (puts bid in a selloff)
* funding = funding_k x (OI_long - OI_short) / (OI_long + OI_short) + scenario shock, clipped

One transaction per round: every answer due is published through ``RiskPusher.push(feeds,
answers, reports, markets)`` (the price to its aggregator, the risk inputs as one report of the
controller, issue 14), which then pokes the controller (the maintenance target follows the new risk
inputs) and accrues the market's funding (the index integrates every published rate), in that
order, in the same transaction: nothing (a liquidation, a settlement) can land between a risk push
and the poke it calls for (issue 10).

Restart and failure safety: the keeper's only state is what the feeds hold on chain. Each round it
reads ``latestRoundData`` and pushes a feed only if the on-chain answer deviates from the target by
the threshold or is older than the refresh interval, so a dropped or failed transaction is retried
next round and a restarted keeper neither double-pushes nor skips a round. The push is one
transaction: it lands whole or not at all (no half-pushed round to reconcile). The nonce is the
node's pending count, read every round; while a transaction of the keeper's account is still pending
(sent, not mined: underpriced, or a receipt wait that timed out) the keeper sends nothing on top of
it, so a slow transaction cannot be followed by a second push of the same round.

Operations (``ballast keeper``): signs locally like ``ballast deploy`` (brownie account or keystore,
or a hex key in ``BALLAST_KEEPER_KEY``; ``ballast.deployments.resolve_signer``), EIP-1559 fees from
``GasStrategy``, one JSON log line per round (``round_log``) and an HTTP endpoint (``--metrics-port``:
Prometheus text at ``/metrics``, JSON at ``/health``; ``KeeperMetrics``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.signal import lfilter  # type: ignore[import-untyped]
from web3 import Web3

from ballast._typing import FloatArray
from ballast.errors import BallastError, ValidationError
from ballast.risk.volatility import EWMA, SECONDS_PER_YEAR, Garch11
from ballast.riskreport import pusher_args, reported_kinds
from ballast.scenarios import ScenarioPath

if TYPE_CHECKING:
    from ballast.chain import Chain
    from ballast.deployments import Signer

VolMode = Literal["trailing", "predictive", "intraday"]
VOL_MODES: tuple[VolMode, ...] = ("trailing", "predictive", "intraday")
DepthMode = Literal["trailing", "predictive"]
DEPTH_MODES: tuple[DepthMode, ...] = ("trailing", "predictive")
DEPTH_FLOOR = 0.5
"""The predictive depth is at least this fraction of the trailing depth (a forecast never more than
halves the book; fixed before any measurement, not tuned)."""
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


def predictive_depth(trailing: FloatArray, block_sec: int, horizon_sec: int = 3_600, window_sec: int | None = None,
                     floor: float = DEPTH_FLOOR) -> FloatArray:
    """The depth a keeper publishes in ``predictive`` depth mode, per keeper round (block).

    ``trailing[b]`` is the trailing depth target at round ``b`` (the book now, thinned by the current
    volatility estimate). Its log change over the last ``window_sec`` (default: the horizon) is
    taken as the trend and projected ``horizon_sec`` (the market's liquidation horizon) ahead; only
    a fall counts, and the projection is at most a cut to ``floor`` x the trailing depth::

        lag      = max(1, round(window_sec / block_sec))            rounds
        trend    = trailing[b] / trailing[max(b - lag, 0)]
        forecast = trailing[b] x clip(trend ** (horizon_sec / (lag x block_sec)), floor, 1)

    so the published depth is ``min(trailing[b], forecast)``: never above the trailing depth
    (conservative), and a book that has been thinning (a liquidity drought, or volatility rising:
    ``log depth = log multiplier + log min(1, sigma_ref / sigma)``, both trends move it) is published
    at the level the trend reaches one horizon later: the depth input leads instead of trails. Causal:
    the value at ``b`` reads ``trailing[b - lag .. b]`` only. Before ``lag`` rounds exist the first
    round stands in for the past (no trend)."""
    d = np.asarray(trailing, dtype=np.float64)
    if block_sec <= 0 or horizon_sec <= 0:
        raise ValidationError("predictive_depth", (block_sec, horizon_sec), "block and horizon seconds > 0")
    if not 0.0 < floor <= 1.0:
        raise ValidationError("predictive_depth.floor", floor, "(0, 1]")
    w = horizon_sec if window_sec is None else window_sec
    lag = max(1, round(w / block_sec))
    past = d[np.maximum(np.arange(d.size) - lag, 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        trend = np.where(past > 0, d / np.where(past > 0, past, 1.0), 1.0)
    factor = np.clip(np.minimum(trend, 1.0) ** (horizon_sec / (lag * block_sec)), floor, 1.0)
    return np.asarray(np.minimum(d, d * factor), dtype=np.float64)


def intraday_vol(start_sigma: float, prices: FloatArray, block_sec: int, lam: float) -> FloatArray:
    """Annualized EWMA volatility after each block: seeded with ``start_sigma`` (annualized, the
    estimate at the last history bar) and updated with every block's squared log return at decay
    ``lam`` per block (zero mean, ``SECONDS_PER_YEAR / block_sec`` periods a year, as
    ``ballast.risk.volatility.EWMA``). ``prices``: the last history price, then one price per block;
    element ``b`` of the result has seen the returns up to block ``b``."""
    if not (math.isfinite(start_sigma) and start_sigma > 0):
        raise ValidationError("start_sigma", start_sigma, "a finite positive annualized volatility")
    if not 0.0 < lam < 1.0:
        raise ValidationError("lam", lam, "a float in (0, 1)")
    if block_sec <= 0:
        raise ValidationError("block_sec", block_sec, "> 0 seconds")
    p = np.asarray(prices, dtype=np.float64)
    if p.size < 2 or not np.all(np.isfinite(p) & (p > 0)):
        raise ValidationError("prices", p.size, "at least two finite positive prices")
    r2 = np.diff(np.log(p)) ** 2 * (SECONDS_PER_YEAR / block_sec)
    var, _ = lfilter([1.0 - lam], [1.0, -lam], r2, zi=[lam * start_sigma**2])
    return np.asarray(np.sqrt(var), dtype=np.float64)


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
    depth_mode
        ``trailing`` (the book now) or ``predictive`` (:func:`predictive_depth`: the trend
        projected one ``horizon_sec`` ahead, never above the trailing depth).
    horizon_sec
        The market's liquidation horizon (``[markets.model] horizon_sec``), for the predictive depth.
    """

    scenario: ScenarioPath
    mode: VolMode = "trailing"
    base_depth_usd: float = 50_000_000.0
    lam: float = 0.94
    skew_k: float = 0.5
    funding_k: float = 0.0005
    funding_cap: float = 0.004
    depth_mode: DepthMode = "trailing"
    horizon_sec: int = 3_600
    vol: FloatArray = field(init=False)
    sigma_ref: float = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in VOL_MODES:
            raise ValidationError("keeper.mode", self.mode, "'trailing', 'predictive' or 'intraday'")
        if self.depth_mode not in DEPTH_MODES:
            raise ValidationError("keeper.depth_mode", self.depth_mode, "'trailing' or 'predictive'")
        s = self.scenario
        ratio = max(1, s.history_sec // s.block_sec)
        self._ratio = ratio
        grid = np.r_[s.history, s.price[ratio - 1::ratio]]
        est = EWMA(self.lam) if self.mode != "predictive" else Garch11(dist="t", refit_every=250, fit_window=2000,
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
        if self.mode == "intraday":
            self.vol = intraday_vol(float(sig[self._n_hist - 1]), np.r_[s.history[-1], s.price], s.block_sec,
                                    self.lam)
        # The depth target of every block (``targets`` reads it): trailing, or its predictive projection
        # (never above it).
        trailing = self.trailing_depth()
        self._depth = (predictive_depth(trailing, s.block_sec, self.horizon_sec) if self.depth_mode == "predictive"
                       else trailing)

    def trailing_depth(self) -> FloatArray:
        """The trailing depth target of every block (before the 1,000 USD floor of ``targets``)."""
        sigma = np.maximum(self.vol, 0.01)
        return np.asarray(self.base_depth_usd * self.scenario.depth_mult * np.minimum(1.0, self.sigma_ref / sigma),
                          dtype=np.float64)

    def targets(self, b: int, oi_long: float, oi_short: float) -> dict[str, float]:
        """Feed targets at block ``b`` given open interest (base units)."""
        s = self.scenario
        lag = int(s.oracle_delay[b])
        price = float(s.price[max(0, b - lag)])
        sigma = float(max(self.vol[b], 0.01))
        depth = float(self._depth[b])
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
        scale: int = 10**self.decimals
        return round(value * scale)

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


# ------------------------------------------------------------------------------ on-chain keeper


GWEI = 10**9


class FeeCapExceeded(BallastError):
    """The fee the network asks for now is above the operator's cap: the round is skipped."""

    def __init__(self, what: str, wei: int, cap_gwei: float) -> None:
        self.wei = wei
        super().__init__(f"{what} {wei / GWEI:.3f} gwei is above the fee cap {cap_gwei:g} gwei (--max-fee-gwei): "
                         "nothing sent")


@dataclass(frozen=True)
class GasStrategy:
    """EIP-1559 fees: ``maxFeePerGas = min(cap, base fee x multiplier + priority fee)``.

    Parameters
    ----------
    base_fee_multiplier
        Headroom over the latest block's base fee (2.0 survives six full blocks of +12.5%).
    priority_fee_gwei
        Tip, gwei; ``None``: the node's suggestion (``eth_maxPriorityFeePerGas``).
    max_fee_gwei
        Cap on ``maxFeePerGas`` (and on the legacy ``gasPrice``), gwei. When the base fee alone is
        above it, nothing is sent (``FeeCapExceeded``): the push waits for cheaper blocks.
    """

    base_fee_multiplier: float = 2.0
    priority_fee_gwei: float | None = None
    max_fee_gwei: float = 200.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_fee_multiplier) and self.base_fee_multiplier >= 1.0):
            raise ValidationError("base_fee_multiplier", self.base_fee_multiplier, ">= 1")
        if self.priority_fee_gwei is not None and not (math.isfinite(self.priority_fee_gwei)
                                                       and self.priority_fee_gwei >= 0):
            raise ValidationError("priority_fee_gwei", self.priority_fee_gwei, ">= 0 gwei")
        if not (math.isfinite(self.max_fee_gwei) and self.max_fee_gwei > 0):
            raise ValidationError("max_fee_gwei", self.max_fee_gwei, "> 0 gwei")

    @property
    def cap_wei(self) -> int:
        return int(round(self.max_fee_gwei * GWEI))

    def fees(self, base_fee_wei: int | None, suggested_tip_wei: int = 0, gas_price_wei: int = 0) -> dict[str, int]:
        """Fee fields of a transaction: EIP-1559 when the block has a base fee, else ``gasPrice``
        (the node's ``gas_price_wei``, capped). Raises ``FeeCapExceeded`` when the cap cannot pay
        the base fee (or the legacy gas price)."""
        cap = self.cap_wei
        if base_fee_wei is None:
            if gas_price_wei > cap:
                raise FeeCapExceeded("gas price", gas_price_wei, self.max_fee_gwei)
            return {"gasPrice": int(gas_price_wei)}
        if base_fee_wei > cap:
            raise FeeCapExceeded("base fee", base_fee_wei, self.max_fee_gwei)
        tip = suggested_tip_wei if self.priority_fee_gwei is None else int(round(self.priority_fee_gwei * GWEI))
        max_fee = min(cap, math.ceil(base_fee_wei * self.base_fee_multiplier) + tip)
        return {"maxFeePerGas": int(max_fee), "maxPriorityFeePerGas": int(min(tip, max_fee))}


@dataclass
class StepReport:
    """What one keeper round did."""

    pushed: dict[str, int]
    """Feeds published this round: kind -> integer answer (feed decimals); with calibrated tails,
    ``tail_long`` / ``tail_short`` -> WAD."""
    failed: dict[str, str]
    """What failed: every feed (and tail) of a reverted push transaction (nothing of it landed), or ``poke`` /
    ``accrue`` when that step reverted inside a push that landed (reported by RiskPusher)."""
    poked: bool
    """The market was poked in the push transaction (and did not revert)."""
    accrued: bool = False
    """The market's funding was accrued in the push transaction (and did not revert)."""
    tx_hash: str = ""
    block: int = 0
    """Block of the push (or the head the round read, when nothing was sent)."""
    gas_used: int = 0
    fee_wei: int = 0
    """Fee paid: gas used x effective gas price (a reverted push pays too)."""
    latency_sec: float = 0.0
    """From sending the transaction to its receipt."""
    skipped: str = ""
    """Why nothing was sent although feeds were due (a pending transaction, the fee cap)."""
    due: dict[str, int] = field(default_factory=dict)
    """The answers that were due this round (pushed, failed or skipped)."""

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if any(k not in ("poke", "accrue") for k in self.failed):
            return "failed"  # the push itself: every feed (and tail) it carried
        if self.failed:
            return "partial"  # the push landed; the poke or the accrual reverted inside it
        return "pushed" if self.pushed else "idle"


def round_log(n: int, rep: StepReport, *, now: float | None = None, sender: str = "", market: int = 0) -> str:
    """One JSON line for round ``n``: round, block, pushed feeds, tx hash, gas used, fee paid,
    latency (and what failed or why the round was skipped)."""
    ts = time.time() if now is None else now
    rec: dict[str, Any] = {
        "ts": _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds"),
        "event": "round",
        "round": n,
        "status": rep.status,
        "market": market,
        "block": rep.block,
        "pushed": sorted(rep.pushed),
        "answers": {k: rep.pushed[k] for k in sorted(rep.pushed)},
        "tx": rep.tx_hash or None,
        "gas_used": rep.gas_used,
        "fee_paid_wei": rep.fee_wei,
        "latency_s": round(rep.latency_sec, 3),
        "poked": rep.poked,
        "accrued": rep.accrued,
        "failed": rep.failed,
        "skipped": rep.skipped or None,
        "sender": sender,
    }
    return json.dumps(rec, separators=(",", ":"), sort_keys=False)


POKE_FAILED = "0x" + Web3.keccak(text="PokeFailed(uint256,bytes)").hex().removeprefix("0x")
ACCRUE_FAILED = "0x" + Web3.keccak(text="AccrueFailed(uint256,bytes)").hex().removeprefix("0x")


class ChainKeeper:
    """Pushes feed targets to Chainlink-style feeds on a live chain (web3.py), round by round.

    The keeper holds no state that could double-push: every round it reads ``latestRoundData`` of
    each feed and pushes only what is due (deviation or refresh interval), in ONE transaction to
    ``RiskPusher.push``: the answers, then the market's ``poke`` and funding accrual, atomically.
    A failed or dropped transaction is reported and simply retried the next round (nothing of it
    landed); a restarted keeper resumes from the chain. Volatility comes from the keeper's own
    price observations (``observe``). ``sender`` needs ``KEEPER_ROLE`` on the pusher, and the
    pusher must be a transmitter of every aggregator feed and hold the controller's
    ``REPORTER_ROLE`` for the risk report (``ballast.deploy`` sets all three up). Kinds whose feed is
    one of the controller's ``ReportFeed`` adapters go into one ``ReportInput``.
    """

    def __init__(self, chain: "Chain", feeds: dict[str, Any], sender: str | None = None, *, pusher: Any,
                 market_id: int = 0, mode: VolMode = "trailing", rules: PushRules | None = None,
                 interval_sec: int = 900, base_depth_usd: float = 50_000_000.0, lam: float = 0.94,
                 push_gas: int = 1_500_000, signer: "Signer | None" = None, gas: GasStrategy | None = None,
                 receipt_timeout_sec: float = 120.0, tail: TailPublishing | None = None) -> None:
        from ballast.deployments import UnlockedSigner

        if mode not in ("trailing", "predictive"):
            raise ValidationError("mode", mode, "'trailing' or 'predictive'")
        if interval_sec <= 0:
            raise ValidationError("interval_sec", interval_sec, "> 0 seconds")
        if signer is None:
            if sender is None:
                raise ValidationError("sender", None, "an unlocked address or a signer")
            signer = UnlockedSigner(Web3.to_checksum_address(sender))
        elif sender is not None and Web3.to_checksum_address(sender) != Web3.to_checksum_address(signer.address):
            raise ValidationError("sender", sender, f"the signer's address {signer.address}")
        self.chain = chain
        self.feeds = feeds
        self.signer = signer
        self.sender = Web3.to_checksum_address(signer.address)
        self.gas = gas or GasStrategy()
        self.receipt_timeout_sec = receipt_timeout_sec
        self.pusher = pusher
        self.market_id = market_id
        self.mode = mode
        self.rules = rules or PushRules()
        self.interval_sec = interval_sec
        self.base_depth_usd = base_depth_usd
        self.lam = lam
        self.push_gas = push_gas
        self.prices: list[float] = []
        self.decimals = {k: int(f.functions.decimals().call()) for k, f in feeds.items()}
        self.tail = tail
        """Calibrated tails published with the push (``RiskPusher.pushWithTails``); None: none."""
        self.controller = (chain.at("LeverageController", pusher.functions.controller().call())
                           if tail is not None else None)
        self.reported = reported_kinds(chain, pusher.functions.controller().call(), market_id, feeds)
        """Kinds written to the controller's risk report (their feeds are its ``ReportFeed``s)."""

    def observe(self, price: float) -> None:
        """Record one price sample (one per ``interval_sec``)."""
        if not (price > 0 and math.isfinite(price)):
            raise ValidationError("price", price, "a finite positive number")
        self.prices.append(float(price))

    def volatility(self) -> float:
        """Annualized volatility of the observed samples (EWMA, or GARCH one step ahead)."""
        if len(self.prices) < 3:
            return 0.5
        p = np.asarray(self.prices)
        if self.mode == "predictive" and len(p) > 120:
            est: Any = Garch11(dist="t", refit_every=250, min_fit=100, fit_window=2000)
        else:
            est = EWMA(self.lam, warmup=2)
        s = est.estimate(p, interval_seconds=self.interval_sec)
        v = float(s[-1]) if np.isfinite(s[-1]) else 0.5
        return max(v, 0.01)

    def targets(self, oi_long: float = 0.0, oi_short: float = 0.0, skew: float = 0.0,
                funding_k: float = 0.0005) -> dict[str, float]:
        if not self.prices:
            raise ValidationError("prices", 0, "at least one observed price")
        sigma = self.volatility()
        if len(self.prices) < self.WARMUP and "volatility" in self.feeds:
            # Warm-up (a fresh or restarted keeper has too few samples for an estimate): keep the
            # volatility on chain, so a restart does not push a placeholder over the last estimate.
            ans, upd, _ = self.onchain_feed("volatility")
            if upd and ans > 0:
                sigma = ans / 10 ** self.decimals["volatility"]
        tot = oi_long + oi_short
        imb = (oi_long - oi_short) / tot if tot > 0 else 0.0
        day = max(1, 86_400 // self.interval_sec)
        dd = 1.0 - self.prices[-1] / max(self.prices[-day:])
        return {"price": self.prices[-1], "volatility": sigma, "funding": funding_k * imb,
                "depth": self.base_depth_usd * min(1.0, 0.5 / sigma), "skew": skew - 0.5 * max(0.0, dd)}

    WARMUP = 3
    """Observations before the keeper's own volatility estimate replaces the on-chain answer."""

    def tail_due(self, now: int) -> tuple[int, int] | None:
        """The calibrated tails to publish this round (``TailPublishing``), or None: none configured,
        none estimable yet (0), or the on-chain tails are within ``tail.deviation`` of the estimate
        and younger than ``rules.refresh_sec``."""
        if self.tail is None or self.controller is None or len(self.prices) < 3:
            return None
        ts = np.arange(len(self.prices), dtype=np.int64) * self.interval_sec
        tl, tsh = self.tail.estimate(ts, np.asarray(self.prices), self.lam)
        if tl == 0 or tsh == 0:
            return None
        _, on_l, at = self.controller.functions.tailFeed(self.market_id, True).call()
        _, on_s, _ = self.controller.functions.tailFeed(self.market_id, False).call()
        if at and now - int(at) < self.rules.refresh_sec and on_l and on_s \
                and abs(tl / on_l - 1) <= self.tail.deviation and abs(tsh / on_s - 1) <= self.tail.deviation:
            return None
        return tl, tsh

    def onchain_feed(self, kind: str) -> tuple[int, int, int]:
        rid, ans, _, upd, _ = self.feeds[kind].functions.latestRoundData().call()
        return int(ans), int(upd), int(rid)

    def onchain(self) -> dict[str, tuple[int, int, int]]:
        """(answer, updated_at, round id) of each feed."""
        out = {}
        for k, f in self.feeds.items():
            rid, ans, _, upd, _ = f.functions.latestRoundData().call()
            out[k] = (int(ans), int(upd), int(rid))
        return out

    def due(self, targets: dict[str, float], now: int) -> dict[str, int]:
        """The answers due this round (kind -> integer answer), from the feeds' on-chain state."""
        chain_state = self.onchain()
        out: dict[str, int] = {}
        for k in FEEDS:
            if k not in self.feeds:
                continue
            ans, upd, _ = chain_state[k]
            dec = self.decimals[k]
            cur = ans / 10**dec if upd else None
            if self.rules.due(k, cur, targets[k], now - upd):
                out[k] = round(targets[k] * 10**dec)
        return out

    def fee_fields(self) -> tuple[dict[str, int], int]:
        """Fee fields from ``gas`` and the latest block; and that block's number."""
        w3 = self.chain.w3
        blk = w3.eth.get_block("latest")
        base = blk.get("baseFeePerGas")
        if base is None:
            return self.gas.fees(None, gas_price_wei=int(w3.eth.gas_price)), int(blk["number"])
        tip = int(w3.eth.max_priority_fee) if self.gas.priority_fee_gwei is None else 0
        return self.gas.fees(int(base), tip), int(blk["number"])

    def step(self, targets: dict[str, float], now: int | None = None) -> StepReport:
        """One round: every answer due, then the market's poke and funding accrual, in one
        ``RiskPusher.push`` transaction (none when nothing is due), signed by ``signer``."""
        w3 = self.chain.w3
        now = now if now is not None else self.chain.latest_timestamp()
        due = self.due(targets, now)
        tails = self.tail_due(now)
        if not due and tails is None:
            return StepReport({}, {}, False, block=int(w3.eth.block_number))
        # Restart safety on the nonce: the node's pending count. A transaction of ours still pending
        # would land later with (nearly) the same answers: send nothing on top of it.
        pending = int(w3.eth.get_transaction_count(self.sender, "pending"))
        mined = int(w3.eth.get_transaction_count(self.sender, "latest"))
        if pending > mined:
            return StepReport({}, {}, False, block=int(w3.eth.block_number), due=due,
                              skipped=f"{pending - mined} transaction(s) of {self.sender} pending (nonce {mined}): "
                                      "waiting for it, no second push on top")
        try:
            fees, head = self.fee_fields()
        except FeeCapExceeded as e:
            return StepReport({}, {}, False, block=int(w3.eth.block_number), due=due, skipped=str(e))
        kinds = list(due)
        addrs, answers, reports = pusher_args({self.market_id: self.feeds}, self.reported, {self.market_id: due})
        if tails is None:
            fn = self.pusher.functions.push(addrs, answers, reports, [self.market_id])
        else:
            fn = self.pusher.functions.pushWithTails(addrs, answers, reports, [self.market_id], [tails[0]], [tails[1]])
            due = {**due, "tail_long": tails[0], "tail_short": tails[1]}
            kinds = list(due)
        tx: dict[str, Any] = {"from": self.sender, "to": self.pusher.address, "data": fn._encode_transaction_data(),
                              "gas": self.push_gas, "nonce": pending, "chainId": self.chain.chain_id, **fees}
        t0 = time.monotonic()
        try:
            h = self.signer.send(w3, tx)
        except Exception as e:  # rejected by the node: nothing of it landed, retried next round
            return StepReport({}, {k: str(e)[:200] for k in kinds}, False, block=head, due=due)
        tx_hash = "0x" + bytes(h).hex().removeprefix("0x")
        try:
            receipt = w3.eth.wait_for_transaction_receipt(h, timeout=self.receipt_timeout_sec)  # type: ignore[arg-type]
        except Exception as e:  # not mined in time: still pending, the next rounds wait for it
            return StepReport({}, {k: f"no receipt after {self.receipt_timeout_sec:g} s: {str(e)[:120]}" for k in kinds},
                              False, tx_hash=tx_hash, block=head, due=due, latency_sec=time.monotonic() - t0)
        latency = time.monotonic() - t0
        gas_used = int(receipt["gasUsed"])
        fee = gas_used * int(receipt.get("effectiveGasPrice") or 0)
        blockno = int(receipt["blockNumber"])
        if receipt["status"] != 1:
            return StepReport({}, {k: f"push reverted (tx {tx_hash})" for k in kinds}, False, tx_hash=tx_hash,
                              block=blockno, gas_used=gas_used, fee_wei=fee, latency_sec=latency, due=due)
        failed: dict[str, str] = {}
        pusher_addr = str(self.pusher.address).lower()
        for lg in receipt["logs"]:
            if str(lg["address"]).lower() != pusher_addr:
                continue
            t0_topic = "0x" + bytes(lg["topics"][0]).hex().removeprefix("0x")
            if t0_topic == POKE_FAILED:
                failed["poke"] = "0x" + bytes(lg["data"]).hex()
            elif t0_topic == ACCRUE_FAILED:
                failed["accrue"] = "0x" + bytes(lg["data"]).hex()
        return StepReport(due, failed, "poke" not in failed, "accrue" not in failed, tx_hash, block=blockno,
                          gas_used=gas_used, fee_wei=fee, latency_sec=latency, due=due)


@dataclass(frozen=True)
class TailPublishing:
    """What the keeper needs to publish the calibrated tail (issue 12, ``ballast.tail``): the
    estimator and its level from a calibration file (``ballast calibrate --tail fhs``), and the
    relative deviation that makes a new publication due (else every ``PushRules.refresh_sec``)."""

    alpha: float
    horizon_sec: int
    spec: Any
    """``ballast.tail.TailSpec``."""
    z: float
    prior: dict[str, float]
    deviation: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.deviation < 1.0:
            raise ValidationError("deviation", self.deviation, "a relative deviation in (0, 1)")

    @classmethod
    def from_calibration(cls, path: str, horizon_sec: int, alpha: float | None = None,
                         deviation: float = 0.02) -> TailPublishing:
        """The fit at ``alpha`` (default: the file's first) of a calibration file with a tail."""
        from ballast.calibration import load_calibration

        cal = load_calibration(path)
        if cal.tail is None:
            raise ValidationError("tail calibration", path, "a file written by `ballast calibrate --tail fhs`")
        fits = [f for f in cal.fits if alpha is None or abs(f.alpha - alpha) < 1e-12]
        if not fits:
            raise ValidationError("alpha", alpha, f"one of {[f.alpha for f in cal.fits]}")
        f = fits[0]
        return cls(f.alpha, horizon_sec, cal.tail, f.z, {"long": f.prior_long, "short": f.prior_short}, deviation)

    def estimate(self, timestamps: np.ndarray, close: np.ndarray, lam: float) -> tuple[int, int]:
        """(tailLongWad, tailShortWad) at the latest observation (0: none yet)."""
        from ballast.tail import publish_tail

        prior = {k: v for k, v in self.prior.items() if v > 0} or None
        return publish_tail(timestamps, close, alpha=self.alpha, horizon_sec=self.horizon_sec, spec=self.spec,
                            z=self.z, lam=lam, prior=prior)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ operator endpoint


class KeeperMetrics:
    """Counters of a running keeper, read by the HTTP endpoint's thread (locked)."""

    def __init__(self, sender: str = "", market: int = 0, stale_after_sec: float = 300.0) -> None:
        self._lock = threading.Lock()
        self.sender = sender
        self.market = market
        self.stale_after_sec = stale_after_sec
        """``/health`` reports unhealthy when no round completed for this long."""
        self.started = time.time()
        self.rounds = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.skipped = 0
        self.transactions = 0
        self.feeds_pushed = 0
        self.gas_used = 0
        self.fee_paid_wei = 0
        self.last_round_time: float | None = None
        self.last_tx = ""
        self.last_tx_time: float | None = None
        self.last_block = 0
        self.last_status = ""
        self.last_error = ""

    def record(self, rep: StepReport, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self.rounds += 1
            self.last_round_time = now
            self.last_block = rep.block or self.last_block
            self.last_status = rep.status
            if rep.tx_hash:
                self.transactions += 1
                self.last_tx = rep.tx_hash
                self.last_tx_time = now
            self.feeds_pushed += len(rep.pushed)
            self.gas_used += rep.gas_used
            self.fee_paid_wei += rep.fee_wei
            if rep.skipped:
                self.skipped += 1
            if rep.failed:
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = "; ".join(f"{k}: {v}" for k, v in sorted(rep.failed.items()))[:300]
            else:
                self.consecutive_failures = 0

    def record_error(self, err: str, now: float | None = None) -> None:
        """A round that raised (the RPC unreachable...): counted as a round and a failure."""
        with self._lock:
            self.rounds += 1
            self.failures += 1
            self.consecutive_failures += 1
            self.last_round_time = time.time() if now is None else now
            self.last_status = "error"
            self.last_error = err[:300]

    def health(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self._lock:
            age = None if self.last_round_time is None else now - self.last_round_time
            ok = age is not None and age <= self.stale_after_sec and self.consecutive_failures < 3
            return {"ok": ok, "sender": self.sender, "market": self.market, "rounds": self.rounds,
                    "failures": self.failures, "consecutive_failures": self.consecutive_failures,
                    "skipped": self.skipped, "transactions": self.transactions, "feeds_pushed": self.feeds_pushed,
                    "gas_used": self.gas_used, "fee_paid_wei": self.fee_paid_wei,
                    "last_round_time": self.last_round_time, "last_round_age_s": age, "last_status": self.last_status,
                    "last_tx": self.last_tx or None, "last_tx_time": self.last_tx_time, "last_block": self.last_block,
                    "last_error": self.last_error or None, "uptime_s": now - self.started}

    def prometheus(self, now: float | None = None) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        h = self.health(now)
        lbl = f'sender="{self.sender}",market="{self.market}"'
        rows: list[tuple[str, str, str, float]] = [
            ("ballast_keeper_up", "gauge", "1 when the last round is recent and fewer than 3 rounds in a row failed",
             1.0 if h["ok"] else 0.0),
            ("ballast_keeper_rounds_total", "counter", "Keeper rounds run", h["rounds"]),
            ("ballast_keeper_failures_total", "counter", "Rounds that failed (push rejected, reverted, unconfirmed, "
             "poke or accrual reverted, RPC error)", h["failures"]),
            ("ballast_keeper_consecutive_failures", "gauge", "Failed rounds in a row", h["consecutive_failures"]),
            ("ballast_keeper_skipped_total", "counter", "Rounds with feeds due but nothing sent (pending tx, fee cap)",
             h["skipped"]),
            ("ballast_keeper_transactions_total", "counter", "Push transactions sent and mined", h["transactions"]),
            ("ballast_keeper_feeds_pushed_total", "counter", "Feed answers published", h["feeds_pushed"]),
            ("ballast_keeper_gas_used_total", "counter", "Gas used by push transactions", h["gas_used"]),
            ("ballast_keeper_fee_paid_wei_total", "counter", "Fees paid by push transactions, wei", h["fee_paid_wei"]),
            ("ballast_keeper_last_round_timestamp_seconds", "gauge", "Unix time of the last round",
             h["last_round_time"] or 0.0),
            ("ballast_keeper_last_tx_timestamp_seconds", "gauge", "Unix time of the last push transaction",
             h["last_tx_time"] or 0.0),
            ("ballast_keeper_last_block", "gauge", "Block of the last round", h["last_block"]),
        ]
        out: list[str] = []
        for name, kind, help_, v in rows:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name}{{{lbl}}} {float(v):g}"
                    if not float(v).is_integer() else f"{name}{{{lbl}}} {int(v)}"]
        out += ["# HELP ballast_keeper_last_tx_info Hash of the last push transaction",
                "# TYPE ballast_keeper_last_tx_info gauge",
                f'ballast_keeper_last_tx_info{{{lbl},tx="{h["last_tx"] or ""}"}} 1']
        return "\n".join(out) + "\n"


def serve_metrics(metrics: KeeperMetrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` (Prometheus text) and ``/health`` (JSON; HTTP 503 when unhealthy) from a
    daemon thread; ``port`` 0 picks a free one (``server.server_address``). ``shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, code = metrics.prometheus().encode(), "text/plain; version=0.0.4; charset=utf-8", 200
            elif path in ("/health", "/healthz", "/"):
                h = metrics.health()
                body, ctype, code = json.dumps(h).encode(), "application/json", 200 if h["ok"] else 503
            else:
                body, ctype, code = b"not found: /metrics or /health\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: stdout carries the JSON logs
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="keeper-metrics", daemon=True).start()
    return server


def keeper_cli(argv: list[str] | None = None) -> int:
    """``ballast keeper``: run the oracle keeper against an RPC and a deployment file."""
    import argparse
    import os
    import sys
    from pathlib import Path

    from ballast.chain import Chain
    from ballast.data import load_csv
    from ballast.deployments import LOCAL_CHAIN_IDS, UnlockedSigner, add_signer_args, redact_url, resolve_signer

    ap = argparse.ArgumentParser(prog="ballast keeper", description="Run the oracle keeper: one RiskPusher.push "
                                 "transaction per round, signed locally; one JSON log line per round on stdout.")
    ap.add_argument("--rpc-url", default=os.environ.get("BALLAST_RPC_URL", "http://127.0.0.1:8545"))
    ap.add_argument("--deployment", required=True, help="deployments JSON with controller and feeds addresses")
    ap.add_argument("--market", type=int, default=0)
    add_signer_args(ap, role="keeper", key_env="BALLAST_KEEPER_KEY", account_env="BALLAST_KEEPER_ACCOUNT")
    ap.add_argument("--sender", default=None, help="an account unlocked on the node (implies --unlocked)")
    ap.add_argument("--prices", default=None, help="replay this OHLC CSV, one bar per round (else read the price feed)")
    ap.add_argument("--interval", type=int, default=900, help="seconds between price samples")
    ap.add_argument("--mode", choices=["trailing", "predictive"], default="trailing")
    ap.add_argument("--tail-calibration", default=None, metavar="FILE",
                    help="publish the calibrated tail each round (a `ballast calibrate --tail fhs` file; "
                         "RiskPusher.pushWithTails, the pusher needs the controller's REPORTER_ROLE)")
    ap.add_argument("--tail-alpha", type=float, default=None, help="the file's fit to use (default: its first)")
    ap.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: run until Ctrl-C)")
    ap.add_argument("--sleep", type=float, default=None, help="wall seconds between rounds (default: interval)")
    g = ap.add_argument_group("gas (EIP-1559: maxFeePerGas = min(cap, base fee x multiplier + priority fee))")
    g.add_argument("--base-fee-multiplier", type=float, default=2.0, help="headroom over the latest base fee (x)")
    g.add_argument("--priority-fee-gwei", type=float, default=None,
                   help="tip in gwei (default: the node's eth_maxPriorityFeePerGas)")
    g.add_argument("--max-fee-gwei", type=float, default=200.0,
                   help="cap on maxFeePerGas in gwei; above it the round sends nothing")
    g.add_argument("--push-gas", type=int, default=1_500_000, help="gas limit of a push transaction (gas units)")
    g.add_argument("--receipt-timeout", type=float, default=120.0, help="seconds to wait for a push's receipt")
    m = ap.add_argument_group("operator endpoint")
    m.add_argument("--metrics-port", type=int, default=None,
                   help="serve /metrics (Prometheus text) and /health (JSON) on this port (0: a free port)")
    m.add_argument("--metrics-host", default="127.0.0.1", help="address the endpoint listens on")
    a = ap.parse_args(argv)
    gas = GasStrategy(a.base_fee_multiplier, a.priority_fee_gwei, a.max_fee_gwei)
    dep = json.loads(Path(a.deployment).read_text())
    chain = Chain(a.rpc_url)
    feeds_addr = dep["feeds"][str(a.market)] if "feeds" in dep else dep["markets"][str(a.market)]["feeds"]
    feeds = {k: chain.at("MockAggregator", v) for k, v in feeds_addr.items()}
    if "pusher" not in dep:
        raise SystemExit(f"{a.deployment} has no RiskPusher (deployed before engine v2): redeploy with `ballast deploy`")
    pusher = chain.at("RiskPusher", dep["pusher"])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    signer: Signer
    if a.sender:
        signer = UnlockedSigner(Web3.to_checksum_address(a.sender))
    else:
        # Like `ballast deploy`: a brownie account or keystore, a key in the environment, or (asked
        # for, or on a local dev chain) the node's unlocked account.
        signer = resolve_signer(chain, account=a.account, unlocked=a.unlocked or chain.chain_id in LOCAL_CHAIN_IDS,
                                ephemeral=False, log=log, key_env="BALLAST_KEEPER_KEY",
                                account_env="BALLAST_KEEPER_ACCOUNT", role="keeper")
    role = pusher.functions.KEEPER_ROLE().call()
    if not pusher.functions.hasRole(role, signer.address).call():
        raise ValidationError("keeper", signer.address, f"an account with KEEPER_ROLE on the RiskPusher {pusher.address} "
                              "(grantRole(KEEPER_ROLE, keeper) from the admin)")
    tail = None
    if a.tail_calibration:
        ctl = chain.at("LeverageController", pusher.functions.controller().call())
        horizon = int(ctl.functions.activeParams(a.market).call()[10])
        tail = TailPublishing.from_calibration(a.tail_calibration, horizon, a.tail_alpha)
    k = ChainKeeper(chain, feeds, pusher=pusher, market_id=a.market, mode=a.mode, interval_sec=a.interval,
                    signer=signer, gas=gas, push_gas=a.push_gas, receipt_timeout_sec=a.receipt_timeout, tail=tail)
    replay = load_csv(a.prices, a.interval, "replay").close.tolist() if a.prices else None
    pause = a.interval if a.sleep is None else a.sleep
    metrics = KeeperMetrics(k.sender, a.market, stale_after_sec=max(60.0, 3 * pause + a.receipt_timeout))
    server = serve_metrics(metrics, a.metrics_port, a.metrics_host) if a.metrics_port is not None else None
    start = {"ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"), "event": "start",
             "rpc": redact_url(a.rpc_url), "chain_id": chain.chain_id, "sender": k.sender,
             "signer": "local key" if signer.local_key else "unlocked on the node", "pusher": pusher.address,
             "market": a.market, "gas": {"base_fee_multiplier": gas.base_fee_multiplier,
                                         "priority_fee_gwei": gas.priority_fee_gwei, "max_fee_gwei": gas.max_fee_gwei},
             "metrics": None if server is None else f"http://{a.metrics_host}:{server.server_address[1]}"}
    print(json.dumps(start, separators=(",", ":")), flush=True)
    if threading.current_thread() is threading.main_thread():
        import signal

        def _stop(*_: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)  # `kill`: finish with the stop line, close the endpoint
    n = 0
    try:
        while a.rounds == 0 or n < a.rounds:
            if replay is not None and n >= len(replay):
                break
            try:
                if replay is not None:
                    k.observe(replay[n])
                else:
                    ans, upd, _ = k.onchain()["price"]
                    k.observe(ans / 10 ** k.decimals["price"])
                rep = k.step(k.targets())
            except Exception as e:  # the RPC down, a node error: logged, counted, next round
                metrics.record_error(f"{type(e).__name__}: {e}")
                print(json.dumps({"ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                                  "event": "error", "round": n, "error": f"{type(e).__name__}: {str(e)[:300]}"},
                                 separators=(",", ":")), flush=True)
            else:
                metrics.record(rep)
                print(round_log(n, rep, sender=k.sender, market=a.market), flush=True)
            n += 1
            if a.rounds == 0 or n < a.rounds:
                time.sleep(pause)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        h = metrics.health()
        print(json.dumps({"ts": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                          "event": "stop", "rounds": h["rounds"], "failures": h["failures"],
                          "transactions": h["transactions"]}, separators=(",", ":")), flush=True)
    return 0
