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

One transaction per round: every answer due is published through ``RiskPusher.push(feeds,
answers, markets)``, which then pokes the controller (the maintenance target follows the new risk
inputs) and accrues the market's funding (the index integrates every published rate), in that
order, in the same transaction: nothing (a liquidation, a settlement) can land between a risk push
and the poke it calls for (issue 10).

Restart and failure safety: the keeper's only state is what the feeds hold on chain. Each round it
reads ``latestRoundData`` and pushes a feed only if the on-chain answer deviates from the target by
the threshold or is older than the refresh interval, so a dropped or failed transaction is retried
next round and a restarted keeper neither double-pushes nor skips a round. The push is one
transaction: it lands whole or not at all (no half-pushed round to reconcile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from web3 import Web3

from ballast._typing import FloatArray
from ballast.errors import ValidationError
from ballast.risk.volatility import EWMA, Garch11
from ballast.scenarios import ScenarioPath

if TYPE_CHECKING:
    from ballast.chain import Chain

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


@dataclass
class StepReport:
    """What one keeper round did."""

    pushed: dict[str, int]
    """Feeds published this round: kind -> integer answer (feed decimals)."""
    failed: dict[str, str]
    """What failed: every feed of a reverted push transaction (nothing of it landed), or ``poke`` /
    ``accrue`` when that step reverted inside a push that landed (reported by RiskPusher)."""
    poked: bool
    """The market was poked in the push transaction (and did not revert)."""
    accrued: bool = False
    """The market's funding was accrued in the push transaction (and did not revert)."""
    tx_hash: str = ""


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
    pusher must be a transmitter of every feed (``ballast.deploy`` sets both up).
    """

    def __init__(self, chain: "Chain", feeds: dict[str, Any], sender: str, *, pusher: Any,
                 market_id: int = 0, mode: VolMode = "trailing", rules: PushRules | None = None,
                 interval_sec: int = 900, base_depth_usd: float = 50_000_000.0, lam: float = 0.94,
                 push_gas: int = 1_500_000) -> None:
        if mode not in ("trailing", "predictive"):
            raise ValidationError("mode", mode, "'trailing' or 'predictive'")
        if interval_sec <= 0:
            raise ValidationError("interval_sec", interval_sec, "> 0 seconds")
        self.chain = chain
        self.feeds = feeds
        self.sender = sender
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
        tot = oi_long + oi_short
        imb = (oi_long - oi_short) / tot if tot > 0 else 0.0
        day = max(1, 86_400 // self.interval_sec)
        dd = 1.0 - self.prices[-1] / max(self.prices[-day:])
        return {"price": self.prices[-1], "volatility": sigma, "funding": funding_k * imb,
                "depth": self.base_depth_usd * min(1.0, 0.5 / sigma), "skew": skew - 0.5 * max(0.0, dd)}

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

    def step(self, targets: dict[str, float], now: int | None = None) -> StepReport:
        """One round: every answer due, then the market's poke and funding accrual, in one
        ``RiskPusher.push`` transaction (none when nothing is due)."""
        now = now if now is not None else self.chain.latest_timestamp()
        due = self.due(targets, now)
        if not due:
            return StepReport({}, {}, False)
        kinds = list(due)
        fn = self.pusher.functions.push([self.feeds[k].address for k in kinds], [due[k] for k in kinds],
                                        [self.market_id])
        try:
            receipt = self.chain.transact(fn, self.sender, gas=self.push_gas)
        except Exception as e:  # a failed or dropped push is retried next round: nothing of it landed
            return StepReport({}, {k: str(e)[:200] for k in kinds}, False)
        failed: dict[str, str] = {}
        pusher_addr = str(self.pusher.address).lower()
        for lg in receipt["logs"]:
            if str(lg["address"]).lower() != pusher_addr:
                continue
            t0 = "0x" + bytes(lg["topics"][0]).hex().removeprefix("0x")
            if t0 == POKE_FAILED:
                failed["poke"] = "0x" + bytes(lg["data"]).hex()
            elif t0 == ACCRUE_FAILED:
                failed["accrue"] = "0x" + bytes(lg["data"]).hex()
        return StepReport(due, failed, "poke" not in failed, "accrue" not in failed,
                          "0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x"))


def keeper_cli(argv: list[str] | None = None) -> int:
    """``ballast keeper``: run the oracle keeper against an RPC and a deployment file."""
    import argparse
    import json
    import os
    import time as _time
    from pathlib import Path

    from ballast.chain import Chain
    from ballast.data import load_csv

    ap = argparse.ArgumentParser(prog="ballast keeper")
    ap.add_argument("--rpc-url", default=os.environ.get("BALLAST_RPC_URL", "http://127.0.0.1:8545"))
    ap.add_argument("--deployment", required=True, help="deployments JSON with controller and feeds addresses")
    ap.add_argument("--market", type=int, default=0)
    ap.add_argument("--sender", default=None, help="unlocked account (default: the node's first account)")
    ap.add_argument("--prices", default=None, help="replay this OHLC CSV, one bar per round (else read the price feed)")
    ap.add_argument("--interval", type=int, default=900, help="seconds between price samples")
    ap.add_argument("--mode", choices=["trailing", "predictive"], default="trailing")
    ap.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: run until Ctrl-C)")
    ap.add_argument("--sleep", type=float, default=None, help="wall seconds between rounds (default: interval)")
    a = ap.parse_args(argv)
    dep = json.loads(Path(a.deployment).read_text())
    chain = Chain(a.rpc_url)
    feeds_addr = dep["feeds"][str(a.market)] if "feeds" in dep else dep["markets"][str(a.market)]["feeds"]
    feeds = {k: chain.at("MockAggregator", v) for k, v in feeds_addr.items()}
    if "pusher" not in dep:
        raise SystemExit(f"{a.deployment} has no RiskPusher (deployed before engine v2): redeploy with `ballast deploy`")
    pusher = chain.at("RiskPusher", dep["pusher"])
    sender = a.sender or chain.accounts()[0]
    k = ChainKeeper(chain, feeds, sender, pusher=pusher, market_id=a.market, mode=a.mode, interval_sec=a.interval)
    replay = load_csv(a.prices, a.interval, "replay").close.tolist() if a.prices else None
    n = 0
    try:
        while a.rounds == 0 or n < a.rounds:
            if replay is not None:
                if n >= len(replay):
                    break
                k.observe(replay[n])
            else:
                ans, upd, _ = k.onchain()["price"]
                k.observe(ans / 10 ** k.decimals["price"])
            rep = k.step(k.targets())
            print(f"round {n}: pushed {sorted(rep.pushed)} failed {sorted(rep.failed)} poked {rep.poked} "
                  f"accrued {rep.accrued} {rep.tx_hash}", flush=True)
            n += 1
            _time.sleep(a.interval if a.sleep is None else a.sleep)
    except KeyboardInterrupt:
        print("keeper stopped", flush=True)
    return 0
