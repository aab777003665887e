"""A vectorized simulator of the stress lab's whole market (issue 11): numpy float64, many runs at
once, no chain.

It replays what ``ballast.lab.LabRun`` does on Anvil, block by block and in the lab's order, for a
batch of ``R`` runs of ``N`` accounts each, held as ``(R, N)`` arrays (accounts in the order the
lab's settlement keeper visits them: sorted addresses):

1. **keeper** (``_keeper``): the feed targets of ``ballast.keeper.FeedModel`` (the same code the lab
   uses; ``depth_mode`` ``predictive``: ``ballast.keeper.predictive_depth``), clipped to the feed bounds, pushed under ``PushRules`` (deviation or refresh age); the
   price is skipped where the scenario marks it stale and pushed on demand (the lab's pull oracle)
   when a pending order or a flagged account waits for a round; then the controller's ``poke``
   (maintenance ramps: loosen at once, tighten after a random delay in ``[0, ramp_jitter_sec]`` at
   the bounded rate, or move a running ramp's target) and the funding accrual;
2. **settlement** (``_settle``): every pending order at its first round (the first price published
   after its commit; a failed settlement is retried at the same round until the order expires, then
   cancelled and refunded), in account order: funding, the gross OI cap, skew impact (the integral
   over the skew, charged into and rebated out of the market's pool), the trading fee, the
   position, the initial-margin check at the live quote, bad debt;
3. **liquidation** (``_liquidate``): flagged accounts at the first round after their flag, in flag
   order: the partial close to the target ratio (``PositionMath.liquidationNotional``), impact,
   penalty (the fee scaled by the shortfall depth, ``PositionMath.penaltyFraction``) and liquidator
   reward, bad debt covered by the insurance fund;
4. **flags** (``_flag``): what the liquidators saw under water ``latency`` blocks ago, largest
   notional first, up to ``count x max_per_block`` a block, if still under water;
5. **traders** (``_trader_decisions`` on the last mined state, ``_commit`` last): the population of
   ``ballast.population`` opening at its fraction of the live max leverage (net of settlement fee,
   trading fee and the impact of its own skew), closing at the end of a session, moving to the next
   session after a close or a liquidation, cutting in half (anticipatory traders) when volatility
   passes 1.5x its value at entry;
6. **watch** (``_watch``): who is below maintenance, the per-block series, the insurance drawdown.

The margin model is ``ballast.model``'s, in floats (``compute_float`` term for term, vectorized).

What it does not reproduce (each measured in docs/sweep.md): integer rounding (wei); the ramp's
random activation (the contract draws from block hashes, this draws from the run's seed: the same
distribution, other values); within one block, sequential effects are computed from the cumulative
sum in execution order assuming every earlier transaction of the block succeeded, then corrected
once (a second pass without the failures), except the partial liquidations of a block, sized one
after another from the skew the run's earlier ones left; an impact rebate is capped by the pool as it stood
before the block plus the block's earlier charges; the insurance fund covers a block's bad debt
after the block's penalties. Keeper faults and RPC drops are lab-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import numpy.typing as npt

from ballast._typing import WAD, FloatArray, IntArray
from ballast.calm import calm_fractions
from ballast.config import Config, StaticFractions
from ballast.errors import ValidationError
from ballast.keeper import DepthMode, FeedModel, PushRules, VolMode
from ballast.model import FUNDING_PERIOD_SEC, MIN_REMAINING_NOTIONAL_USD_WAD, YEAR_SEC
from ballast.population import LiquidatorSpec, Trader
from ballast.scenarios import ScenarioPath
from ballast.sim import penalty_share
from ballast.tail import TailSpec, publish_tail_path

BoolArray = npt.NDArray[np.bool_]
ControllerName = Literal["dynamic", "static"]
MIN_REMAINING_USD = MIN_REMAINING_NOTIONAL_USD_WAD / WAD
DEPLOY_AGE_SEC = 3_570
"""Age of the deployment's initial feed answers at the first block (the lab deploys on a chain
started an hour before the scenario, one second per setup block)."""


@dataclass(frozen=True)
class Controller:
    """The leverage controller of one run: ``dynamic`` (the model with maintenance ramps) or a static
    cap (``imf``, ``mmf`` fractions; maintenance is ``mmf``, max leverage ``1 / imf``)."""

    kind: ControllerName
    imf: float = 0.0
    mmf: float = 0.0
    label: str = ""
    """Name in results (``dynamic``, ``static_calm``, ``static_10x``...)."""
    tail_feed: bool = False
    """Dynamic only: the keeper publishes the calibrated tail (``MarketSim``'s ``tail``) and the
    model reads ``min(tailCap, max(tailFeed, tailLive))`` per side, as ``LeverageController``."""

    def __post_init__(self) -> None:
        if self.tail_feed and self.kind != "dynamic":
            raise ValidationError("controller.tail_feed", self.label or self.kind, "a dynamic controller (a static "
                                  "cap reads no feed)")

    @staticmethod
    def static(f: StaticFractions, label: str = "") -> Controller:
        return Controller("static", f.imf, f.mmf, label or f"static_{1 / f.imf:.4g}x")

    def name(self) -> str:
        return self.label or self.kind


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: a scenario path, its population, a controller and the seed of the
    maintenance ramp's random activation (the chain's block hashes in the lab)."""

    scenario: ScenarioPath
    traders: Sequence[Trader]
    controller: Controller
    ramp_seed: int = 0


@dataclass
class _P:
    """Float parameters of the dynamic model (``RiskParams`` / 1e18) and the engine."""

    z: float
    skew_sens: float
    tail_cap: float
    buffer_mult: float
    min_buffer: float
    liq_fee: float
    impact: float
    crowd: float
    funding_sens: float
    funding_threshold: float
    sqrt_h: float
    jitter: int
    min_imf: float
    max_imf: float
    min_mmf: float
    max_mmf: float
    ramp_rate: float
    vol_ref: float
    regime_sens: float
    trading_fee: float
    fee_ins: float
    liq_share: float
    target: float
    min_delay: int
    window: int
    settle_fee: float
    oi_mult: float
    heartbeat: int
    pen_floor: float
    """``EngineSettings.liq_penalty_floor``: share of the liquidation fee at zero shortfall depth."""
    pen_full_depth: float
    """``EngineSettings.liq_penalty_full_depth``: the depth from which the full fee is charged."""
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Config) -> _P:
        m = cfg.market(0)
        p = m.params
        e = cfg.engine
        f = 1.0 / WAD
        return cls(p.z_wad * f, p.skew_sens_wad * f, p.tail_cap_wad * f, p.buffer_mult_wad * f, p.min_buffer_wad * f,
                   p.liq_fee_wad * f, p.impact_wad * f, p.crowd_wad * f, p.funding_sens_wad * f,
                   p.funding_threshold_wad * f, math.sqrt(p.horizon_sec / YEAR_SEC), p.ramp_jitter_sec,
                   p.min_imf_wad * f, p.max_imf_wad * f, p.min_mmf_wad * f, p.max_mmf_wad * f,
                   p.mmf_ramp_wad_per_sec * f, p.vol_ref_wad * f, p.regime_sens_wad * f, e.trading_fee,
                   e.fee_insurance_share, e.liquidator_share, e.liq_target_ratio, e.order_min_delay_sec,
                   e.order_window_sec, e.settlement_fee_usd, e.oi_depth_mult, m.heartbeat_sec, e.liq_penalty_floor,
                   e.liq_penalty_full_depth, dict(m.bounds))


def _nonzero(mask: BoolArray) -> tuple[IntArray, IntArray]:
    """``np.nonzero`` of a C-contiguous (runs x accounts) mask, the same indices in the same order
    (row-major), from the flat indices (several times faster than the 2-D ``nonzero``)."""
    i = np.flatnonzero(mask)
    r, c = np.divmod(i, mask.shape[1])
    return r, c


def tail_multiplier(p: _P, sigma: FloatArray, skew: FloatArray, is_long: bool | BoolArray,
                    tail_feed: FloatArray | None = None) -> FloatArray:
    """``MarginMath``'s tail in floats: ``min(tailCap, max(tailFeed, tailLive))`` with ``tailLive =
    1 + skewSens * adverseSkew + regimeSens * max(0, sigma - volRef) / volRef`` (as
    ``ballast.model.tail_multiplier``); ``tail_feed`` the side's published tail per entry (0: none
    published), or None: no feed (the same bits as a feed of 0, since ``tailLive >= 1``)."""
    if isinstance(is_long, bool):
        adv = np.maximum(0.0, -skew) if is_long else np.maximum(0.0, skew)
    else:
        adv = np.where(is_long, np.maximum(0.0, -skew), np.maximum(0.0, skew))
    regime = p.regime_sens * np.maximum(0.0, sigma - p.vol_ref) / p.vol_ref
    live = 1.0 + p.skew_sens * adv + regime
    if tail_feed is not None:
        live = np.maximum(tail_feed, live)
    out: FloatArray = np.minimum(live, p.tail_cap)
    return out


def var_move(p: _P, sigma: FloatArray, skew: FloatArray, is_long: bool | BoolArray,
             tail_feed: FloatArray | None = None) -> FloatArray:
    """``MarginMath.varMove`` in floats (vectorized; ``is_long`` one side, or a side per entry;
    ``tail_feed`` as :func:`tail_multiplier`)."""
    out: FloatArray = p.z * sigma * p.sqrt_h * tail_multiplier(p, sigma, skew, is_long, tail_feed)
    return out


def maintenance_base(p: _P, vm: FloatArray) -> FloatArray:
    out: FloatArray = np.minimum(np.maximum(vm + p.liq_fee, p.min_mmf), p.max_mmf)  # np.clip, without its wrapper
    return out


@dataclass(frozen=True)
class TailFeedSpec:
    """The calibrated tail the keeper publishes (``LeverageController.publishTail``), per side, as
    ``ballast.keeper.TailPublishing`` does: the estimator ``spec`` (``ballast.tail.TailSpec``) at
    level ``alpha`` with the model's ``z``, the per-side ``prior`` published before enough windows
    are known (None: nothing published until then), the keeper's EWMA decay ``lam``; a new
    publication is due when either side's estimate moved by more than ``deviation`` (relative) or
    the last one is ``PushRules.refresh_sec`` old (or stale, or none yet)."""

    alpha: float
    z: float
    spec: TailSpec
    prior: dict[str, float] | None = None
    lam: float = 0.94
    deviation: float = 0.02

    def __post_init__(self) -> None:
        if not 0.5 < self.alpha < 1.0:
            raise ValidationError("tail.alpha", self.alpha, "(0.5, 1)")
        if not 0.0 < self.deviation < 1.0:
            raise ValidationError("tail.deviation", self.deviation, "a relative deviation in (0, 1)")
        if self.prior is not None and set(self.prior) != {"long", "short"}:
            raise ValidationError("tail.prior", self.prior, "None or {'long': x, 'short': y}")


def tail_feed_targets(sc: ScenarioPath, tail: TailFeedSpec, horizon_sec: int) -> FloatArray:
    """The keeper's tail estimate at each block of a scenario, ``(blocks, 2)`` (long, short; 0:
    none estimable yet), causal: at block ``b`` it is ``ballast.tail.publish_tail`` on the
    keeper's price grid up to the last sample completed by ``b``, the grid and the sample of
    ``ballast.keeper.FeedModel``'s volatility (the scenario's pre-history at ``history_sec``
    spacing, then the path sampled at that spacing). No price after block ``b`` is read."""
    ratio = max(1, sc.history_sec // sc.block_sec)
    grid = np.r_[sc.history, sc.price[ratio - 1::ratio]].astype(np.float64)
    n_hist = len(sc.history)
    blocks = np.arange(sc.blocks)
    idx = np.minimum(n_hist - 1 + (blocks + 1) // ratio, grid.size - 1)
    need = np.unique(idx)
    feed = publish_tail_path(np.arange(grid.size, dtype=np.int64) * sc.history_sec, grid, alpha=tail.alpha,
                             horizon_sec=horizon_sec, spec=tail.spec, bars=need, z=tail.z, lam=tail.lam,
                             prior=tail.prior)  # type: ignore[arg-type]
    pos = np.searchsorted(need, idx)
    out: FloatArray = np.stack([feed["long"][pos], feed["short"][pos]], axis=1)
    return out


class _Feeds:
    """The five feeds of each run: answer (float, rounded to the feed's decimals) and time."""

    KINDS = ("price", "volatility", "funding", "depth", "skew")

    def __init__(self, r: int, initial: dict[str, float], t0: int, decimals: int) -> None:
        self.scale = float(10**decimals)
        self.ans = {k: np.full(r, round(initial[k] * self.scale) / self.scale) for k in self.KINDS}
        self.upd = {k: np.full(r, t0, dtype=np.int64) for k in self.KINDS}

    def ok(self, k: str, now: int) -> BoolArray:
        out: BoolArray = (self.upd[k] > 0) & (now - self.upd[k] <= self._hb)
        return out

    _hb = 3_600


@dataclass
class _Exec:
    """One settlement pass's figures per event (``MarketSim._exec_calc``)."""

    passed: BoolArray
    new: FloatArray
    basis: FloatArray
    snap: FloatArray
    coll: FloatArray
    dl: FloatArray
    ds: FloatArray
    realized: FloatArray
    fee: FloatArray
    impact: FloatArray


class MarketSim:
    """A batch of runs of equal length (block count and block time). Build with the runs, call
    :meth:`run`; :meth:`metrics` gives one dict per run with the lab's metric keys."""

    def __init__(self, runs: Sequence[RunSpec], config: Config, *, keeper_mode: VolMode = "trailing",
                 liquidators: LiquidatorSpec | None = None, rules: PushRules | None = None,
                 models: Sequence[FeedModel] | None = None,
                 target_cache: dict[bytes, tuple[FloatArray, ...]] | None = None,
                 tail: TailFeedSpec | None = None, tail_targets: Sequence[FloatArray] | None = None,
                 depth_mode: DepthMode = "trailing") -> None:
        if not runs:
            raise ValidationError("runs", 0, "at least one run")
        b0, s0 = runs[0].scenario.blocks, runs[0].scenario.block_sec
        n0 = len(runs[0].traders)
        for r in runs:
            if (r.scenario.blocks, r.scenario.block_sec, len(r.traders)) != (b0, s0, n0):
                raise ValidationError("runs", (r.scenario.name, r.scenario.blocks, r.scenario.block_sec, len(r.traders)),
                                      f"the same blocks ({b0}), block time ({s0} s) and accounts ({n0}) in one batch")
        self.runs = list(runs)
        self.cfg = config
        self.p = _P.of(config)
        self.rules = rules or PushRules()
        self.liq = liquidators or LiquidatorSpec()
        self.R, self.N, self.B, self.block_sec = len(runs), n0, b0, s0
        m = config.market(0)
        self._cache = target_cache if target_cache is not None else {}
        self._feed_targets(models, keeper_mode, m.initial["depth"], depth_mode, m.params.horizon_sec)
        self._population()
        self.is_dyn = np.array([r.controller.kind == "dynamic" for r in runs])
        self.s_imf = np.array([r.controller.imf if r.controller.kind == "static" else 0.0 for r in runs])
        self.s_mmf = np.array([r.controller.mmf if r.controller.kind == "static" else 0.0 for r in runs])
        self.rng = [np.random.default_rng([r.ramp_seed, 0x5A3B]) for r in runs]
        self._jit = np.array([rg.integers(0, self.p.jitter + 1, size=(2, 4 * self.B + 8)) for rg in self.rng])
        self._jit_i = np.zeros((self.R, 2), dtype=np.int64)
        self._mi_cache: tuple[int, dict[str, FloatArray]] | None = None
        self._mmf_cache: dict[tuple[int, int], FloatArray] = {}
        self._max_mmf_arr: FloatArray = np.where(self.is_dyn, self.p.max_mmf, self.s_mmf)
        self._tail_setup(tail, tail_targets, m.params.horizon_sec)

    # ------------------------------------------------------------------ setup
    def _feed_targets(self, models: Sequence[FeedModel] | None, mode: VolMode, depth: float,
                      depth_mode: DepthMode = "trailing", horizon_sec: int = 3_600) -> None:
        """Per run and block: the keeper's price, volatility, depth and skew targets (they do not
        depend on the market's state) and the scenario's funding shock and stale flags. ``depth_mode``
        ``predictive``: ``ballast.keeper.predictive_depth`` over ``horizon_sec`` (the lab's code)."""
        R, B = self.R, self.B
        self.tgt = {k: np.empty((R, B)) for k in ("price", "volatility", "depth", "skew")}
        self.model_vol = np.empty((R, B))
        self.fshock = np.empty((R, B))
        self.stale = np.empty((R, B), dtype=bool)
        self.t0 = np.empty(R, dtype=np.int64)
        self.path_price = np.empty((R, B))
        cache = self._cache
        self.funding_k, self.funding_cap = 0.0005, 0.004
        for i, r in enumerate(self.runs):
            sc = r.scenario
            # Content key: paths that are the same (a real replay with one block per anchor is the
            # same for every seed) share their targets.
            key = (mode + sc.name).encode() + sc.price.tobytes() + sc.history.tobytes() + sc.depth_mult.tobytes() \
                + sc.skew_shock.tobytes() + sc.oracle_delay.tobytes()
            if depth_mode != "trailing":  # (trailing keys unchanged)
                key += f"/depth={depth_mode}/{horizon_sec}".encode()
            if models is not None:
                key += str(id(models[i])).encode()
            if key not in cache:
                fm = models[i] if models is not None else FeedModel(sc, mode, base_depth_usd=depth,
                                                                    depth_mode=depth_mode, horizon_sec=horizon_sec)
                rows = [fm.targets(b, 0.0, 0.0) for b in range(B)]
                cache[key] = tuple(np.array([row[k] for row in rows]) for k in ("price", "volatility", "depth", "skew")) \
                    + (np.asarray(fm.vol, dtype=np.float64), np.array([fm.funding_k, fm.funding_cap]))
            arrs = cache[key]
            for j, k in enumerate(("price", "volatility", "depth", "skew")):
                lo, hi = self.p.bounds[k]
                self.tgt[k][i] = np.clip(arrs[j], lo, hi)
            self.model_vol[i] = arrs[4]
            self.funding_k, self.funding_cap = float(arrs[5][0]), float(arrs[5][1])
            self.fshock[i] = sc.funding_shock
            self.stale[i] = sc.oracle_stale
            self.t0[i] = sc.start_utc
            self.path_price[i] = sc.price
        if len(set(self.t0.tolist())) != 1:
            # Block times are relative in the simulator: only differences matter.
            self.t0[:] = self.t0[0]

    def _tail_setup(self, tail: TailFeedSpec | None, given: Sequence[FloatArray] | None, horizon_sec: int) -> None:
        """Per run and block, the keeper's tail estimate ``(R, B, 2)`` for the runs whose controller
        reads the published tail (``tail_targets``: given per run, e.g. by a test; else estimated
        from each scenario by ``tail``); zeros for the others."""
        self.tail_ans: FloatArray = np.zeros((self.R, 2))
        """The published tail per run (long, short), as ``LeverageController._tails`` holds it."""
        self.tail_upd: IntArray = np.zeros(self.R, dtype=np.int64)
        """When it was published (0: never)."""
        self.tail_stale_blocks: FloatArray = np.zeros(self.R)
        self.use_tail = np.array([r.controller.tail_feed for r in self.runs])
        self.any_tail = bool(self.use_tail.any())
        self.tail_spec = tail
        self.tail_tgt = np.zeros((self.R, self.B, 2))
        if not self.any_tail:
            return
        if given is not None:
            if len(given) != self.R:
                raise ValidationError("tail_targets", len(given), f"one (blocks, 2) array per run ({self.R})")
            for i, g in enumerate(given):
                a = np.asarray(g, dtype=np.float64)
                if a.shape != (self.B, 2) or not np.all(np.isfinite(a)) or np.any((a != 0) & (a < 1.0)):
                    raise ValidationError("tail_targets", a.shape, f"({self.B}, 2) arrays, each 0 (none) or >= 1")
                self.tail_tgt[i] = a if self.use_tail[i] else 0.0
            return
        if tail is None:
            raise ValidationError("tail", None, "a TailFeedSpec (a run's controller reads the published tail)")
        for i, r in enumerate(self.runs):
            if not r.controller.tail_feed:
                continue
            sc = r.scenario
            key = (b"tail" + repr(tail).encode() + str(horizon_sec).encode() + sc.price.tobytes()
                   + sc.history.tobytes() + str((sc.history_sec, sc.block_sec)).encode())
            if key not in self._cache:
                self._cache[key] = (tail_feed_targets(sc, tail, horizon_sec),)
            self.tail_tgt[i] = self._cache[key][0]

    def _population(self) -> None:
        """The populations as arrays, accounts in sorted-address order (the settlement order)."""
        R, N = self.R, self.N
        order = sorted(range(N), key=lambda i: self.runs[0].traders[i].address)
        self.order = np.array(order)
        smax = max(max(len(t.sessions) for t in r.traders) for r in self.runs)
        self.sess = np.full((R, N, smax + 1, 2), np.iinfo(np.int64).max // 4, dtype=np.int64)
        self.n_sess = np.zeros((R, N), dtype=np.int64)
        self.deposit = np.zeros((R, N))
        self.side = np.zeros((R, N))
        self.frac = np.zeros((R, N))
        self.antic = np.zeros((R, N), dtype=bool)
        seen: dict[int, int] = {}  # runs sharing one population (a seed's static controllers) copy it
        for i, r in enumerate(self.runs):
            first = seen.setdefault(id(r.traders), i)
            if first != i:
                for a in (self.deposit, self.side, self.frac, self.antic, self.n_sess, self.sess):
                    a[i] = a[first]
                continue
            ts = [r.traders[k] for k in order]
            self.deposit[i] = [int(t.collateral_usd * 10**6) / 10**6 for t in ts]
            self.side[i] = [t.side for t in ts]
            self.frac[i] = [t.lev_frac for t in ts]
            self.antic[i] = [t.anticipatory for t in ts]
            self.n_sess[i] = [len(t.sessions) for t in ts]
            for j, t in enumerate(ts):
                if t.sessions:
                    self.sess[i, j, : len(t.sessions)] = np.asarray(t.sessions, dtype=np.int64)

    # ------------------------------------------------------------------ quotes
    def _imf(self, is_long: bool | BoolArray, notional: FloatArray, oi_side: FloatArray, oi_other: FloatArray,
             mmf_base: FloatArray, m: dict[str, FloatArray], rows: IntArray | None = None) -> tuple[FloatArray, FloatArray]:
        """(initial margin fraction, slippage) of a quote for a side and size: the dynamic model
        (``LeverageController.quote``) or the static cap. Per run (``rows`` None: arrays of length
        R) or per event (``rows``: the run of each entry; ``m`` gathered the same way). ``is_long``:
        one side for all, or a side per entry (the same figures, entry by entry, as a call per side)."""
        p = self.p
        depth, price = m["depth"], m["price"]
        slip = np.minimum(p.impact * notional / depth, 1.0)
        tail: FloatArray | None = None
        if "tail_l" in m:
            tail = (m["tail_l"] if is_long else m["tail_s"]) if isinstance(is_long, bool) else \
                np.where(is_long, m["tail_l"], m["tail_s"])
        vm = var_move(p, m["sigma"], m["skew"], is_long, tail)
        mb = maintenance_base(p, vm)
        net = np.maximum(oi_side - oi_other, 0.0) * price
        crowd = np.where(oi_side > oi_other, p.crowd * np.minimum(net / depth, 1.0), 0.0)
        if isinstance(is_long, bool):
            payer = m["rate"] if is_long else -m["rate"]
        else:
            payer = np.where(is_long, m["rate"], -m["rate"])
        fund = np.maximum(0.0, payer - p.funding_threshold) * p.funding_sens
        raw = mb + slip + p.buffer_mult * vm + p.min_buffer + crowd + fund
        live = np.where(m["risk_ok"] > 0, np.minimum(np.maximum(raw, p.min_imf), p.max_imf), p.max_imf)
        dyn = np.maximum(live, np.minimum(np.minimum(mmf_base + slip, p.max_mmf) + p.min_buffer, p.max_imf))
        isd = self.is_dyn if rows is None else self.is_dyn[rows]
        s_imf = self.s_imf if rows is None else self.s_imf[rows]
        out: FloatArray = np.where(isd, dyn, s_imf)
        return out, slip

    @staticmethod
    def _at(x: dict[str, FloatArray], rows: IntArray) -> dict[str, FloatArray]:
        """Market inputs gathered per event (``rows``: the run of each event)."""
        return {k: v[rows] for k, v in x.items()}

    def _ramp_value(self, side: int, now: int) -> FloatArray:
        fr, to, act, rate = self.ramp[side]
        grow = (now > act) & (to > fr)
        out: FloatArray = np.where(grow, np.minimum(fr + rate * (now - act), to), fr)
        return out

    def _mmf_base(self, side: int, now: int) -> FloatArray:
        """Maintenance base of a side per run: the ramp (dynamic) or the static fraction. Cached
        per (side, time) until the ramp moves (``_poke_side``); callers do not write into it."""
        key = (side, now)
        hit = self._mmf_cache.get(key)
        if hit is not None:
            return hit
        out: FloatArray = np.where(self.is_dyn, self._ramp_value(side, now), self.s_mmf)
        self._mmf_cache[key] = out
        return out

    def _max_mmf(self) -> FloatArray:
        return self._max_mmf_arr

    def _market_inputs(self, now: int) -> dict[str, FloatArray]:
        """The market's inputs per run at ``now``; cached per time until the keeper pushes
        (the feeds change nowhere else). Callers do not write into the arrays."""
        if self._mi_cache is not None and self._mi_cache[0] == now:
            return self._mi_cache[1]
        f = self.feeds
        p = self.p
        ok_v, ok_s, ok_d, ok_f = (f.ok(k, now) for k in ("volatility", "skew", "depth", "funding"))
        risk_ok = ok_v & ok_s & ok_d & ok_f
        out = {"sigma": np.where(ok_v, f.ans["volatility"], p.bounds["volatility"][1]),
                "skew": np.where(ok_s, f.ans["skew"], 0.0),
                "depth": np.where(ok_d, f.ans["depth"], p.bounds["depth"][0]),
                "rate": np.where(ok_f, f.ans["funding"], 0.0),
                "risk_ok": risk_ok.astype(np.float64),
                "price_ok": f.ok("price", now).astype(np.float64),
                "price": f.ans["price"]}
        if self.any_tail:
            # ``LeverageController._tailOf``: none published -> (ok, 0); older than the volatility
            # feed's heartbeat -> not ok (new risk fails closed, poke reverts); else the side's tail.
            ok_t, tl, tsh = self._tail_of(now)
            out["tail_l"], out["tail_s"] = tl, tsh
            out["tail_ok"] = ok_t.astype(np.float64)
            out["risk_ok"] = (risk_ok & ok_t).astype(np.float64)
        self._mi_cache = (now, out)
        return out

    def _tail_of(self, now: int) -> tuple[BoolArray, FloatArray, FloatArray]:
        """(ok, long tail, short tail) per run, as ``LeverageController._tailOf`` reads them."""
        pub = self.tail_upd > 0
        ok: BoolArray = ~pub | (now - self.tail_upd <= self.p.heartbeat)
        live = pub & ok
        return ok, np.where(live, self.tail_ans[:, 0], 0.0), np.where(live, self.tail_ans[:, 1], 0.0)

    def _publish_tail(self, b: int, ts: int) -> BoolArray:
        """The keeper's tail publication this round (``OracleKeeper.tail_due`` then ``publishTail``
        in the push transaction): where the run reads the tail and an estimate exists, unless the
        on-chain tails are fresh, younger than ``refresh_sec`` and within ``deviation`` of it."""
        dev = self.tail_spec.deviation if self.tail_spec is not None else 0.02
        est = self.tail_tgt[:, b]
        have = self.use_tail & (est[:, 0] > 0) & (est[:, 1] > 0)
        if not have.any():
            return np.zeros(self.R, dtype=bool)
        ok, tl, tsh = self._tail_of(ts)
        on = np.stack([tl, tsh], axis=1)
        on_pos = (on > 0).all(axis=1)
        within = on_pos & (np.abs(est / np.where(on > 0, on, 1.0) - 1.0) <= dev).all(axis=1)
        skip = (self.tail_upd > 0) & (ts - self.tail_upd < self.rules.refresh_sec) & within
        pub: BoolArray = have & ~skip
        self.tail_ans = np.where(pub[:, None], est, self.tail_ans)
        self.tail_upd = np.where(pub, ts, self.tail_upd)
        return pub

    def _side_imf0(self, x: dict[str, FloatArray], now: int) -> tuple[FloatArray, FloatArray]:
        """IMF of a fresh small position (size 0) per run, long and short."""
        z = np.zeros(self.R)
        il, _ = self._imf(True, z, self.oi_l, self.oi_s, self._mmf_base(0, now), x)
        is_, _ = self._imf(False, z, self.oi_s, self.oi_l, self._mmf_base(1, now), x)
        return il, is_

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        R, N, p = self.R, self.N, self.p
        m = self.cfg.market(0)
        t0 = int(self.t0[0])
        self.feeds = _Feeds(R, m.initial, t0 - DEPLOY_AGE_SEC, m.feed_decimals)
        self.feeds._hb = p.heartbeat
        self._mi_cache = None
        self._mmf_cache = {}
        self._max_mmf_arr = np.where(self.is_dyn, self.p.max_mmf, self.s_mmf)
        self.prev_round = np.zeros(R, dtype=np.int64)
        mx = np.full(R, p.max_mmf)
        # [from, to, activation, rate] per side, per run: the listing leaves maintenance at its cap.
        self.ramp = [[mx.copy(), mx.copy(), np.full(R, t0 - DEPLOY_AGE_SEC, dtype=np.int64), np.full(R, p.ramp_rate)]
                     for _ in range(2)]
        self.oi_l, self.oi_s = np.zeros(R), np.zeros(R)
        self.fidx, self.last_rate = np.zeros(R), np.zeros(R)
        self.last_acc = np.zeros(R, dtype=np.int64)
        self.last_price = np.zeros(R)
        self.pool = np.zeros(R)
        self.insurance = np.full(R, float(self.cfg.engine.insurance_seed_usd))
        self.ins_peak = self.insurance.copy()
        self.ins_dd = np.zeros(R)
        self.vault = np.full(R, float(self.cfg.engine.vault_seed_usd))
        self.bad = np.zeros(R)
        self.bad_social = np.zeros(R)
        self.coll = self.deposit.copy()
        self.size = np.zeros((R, N))
        self.basis = np.zeros((R, N))
        self.fent = np.zeros((R, N))
        self.snap = np.zeros((R, N))
        self.o_pend = np.zeros((R, N), dtype=bool)
        self.o_delta = np.zeros((R, N))
        self.o_close = np.zeros((R, N), dtype=bool)
        self.o_ts = np.zeros((R, N), dtype=np.int64)
        self.o_exp = np.full((R, N), p.min_delay + p.window, dtype=np.int64)
        """``o_ts + min_delay + window``: when a pending order expires."""
        self.o_has_round = np.zeros((R, N), dtype=bool)
        self.o_fill = np.zeros((R, N))
        self.o_round_ts = np.zeros((R, N), dtype=np.int64)
        self.f_pend = np.zeros((R, N), dtype=bool)
        self.f_time = np.zeros((R, N), dtype=np.int64)
        self.f_rank = np.zeros((R, N))
        self.t_sess = np.zeros((R, N), dtype=np.int64)
        self.cur_s0 = self.sess[:, :, 0, 0].copy()
        self.cur_s1 = self.sess[:, :, 0, 1].copy()
        self.t_open = np.zeros((R, N), dtype=bool)
        self.t_entry_vol = np.zeros((R, N))
        self.t_cut = np.zeros((R, N), dtype=bool)
        self.seen: list[tuple[BoolArray, FloatArray]] = []
        self.c = {k: np.zeros(R) for k in ("liquidations", "liq_notional", "penalties", "peak", "commits", "settled",
                                           "expired", "settle_reverts", "flags", "on_demand", "accounts_liquidated",
                                           "impact_paid")}
        self.liquidated_ever = np.zeros((R, N), dtype=bool)
        self.series = {k: np.full((R, self.B), np.nan) for k in ("vol", "lev_long", "lev_short", "liquidations",
                                                                 "bad_debt_usd", "insurance_usd", "oi_long",
                                                                 "oi_short", "mmf_long", "mmf_short", "tail_long",
                                                                 "tail_short")}
        # The published tail (``LeverageController._tails``): per side, and when (0: never).
        self.tail_ans = np.zeros((R, 2))
        self.tail_upd = np.zeros(R, dtype=np.int64)
        self.tail_stale_blocks = np.zeros(R)

    def _idx_now(self, now: int, price: FloatArray) -> FloatArray:
        """Funding index now (``MarketMirror.index_now``, with the rate recorded at the last accrual)."""
        dt = np.where(self.last_acc > 0, now - self.last_acc, 0)
        out: FloatArray = self.fidx + self.last_rate * price * dt / FUNDING_PERIOD_SEC
        return out

    def _accrue(self, mask: BoolArray, now: int, x: dict[str, FloatArray]) -> None:
        idx = self._idx_now(now, x["price"])
        ok_f = self.feeds.ok("funding", now)
        rate = np.where(ok_f, self.feeds.ans["funding"], self.last_rate)
        self.fidx = np.where(mask, idx, self.fidx)
        self.last_rate = np.where(mask, rate, self.last_rate)
        self.last_acc = np.where(mask, now, self.last_acc)
        self.last_price = np.where(mask, x["price"], self.last_price)

    def _settle_funding(self, mask: BoolArray) -> None:
        r, c = _nonzero(mask)
        self._settle_funding_ev(r, c)

    def _settle_funding_ev(self, r: IntArray, c: IntArray) -> None:
        """Funding owed by the accounts of events (``r``, ``c``, in row-major order)."""
        owed = self.size[r, c] * (self.fidx[r] - self.fent[r, c])
        self.coll[r, c] -= owed
        self.vault += np.bincount(r, weights=owed, minlength=self.R)
        self.fent[r, c] = self.fidx[r]

    # ------------------------------------------------------------------ the block
    def run(self) -> MarketSim:
        self._reset()
        for b in range(self.B):
            ts = int(self.t0[0]) + b * self.block_sec
            dec = self._trader_decisions(b, ts)
            pushed_price = self._keeper(b, ts)
            self._settle(ts, pushed_price)
            self._liquidate(b, ts, pushed_price)
            self._flag(b, ts)
            self._commit(b, ts, dec)
            self._watch(b, ts)
        return self

    # 5a. traders decide on the last mined state
    def _trader_decisions(self, b: int, ts: int) -> dict[str, npt.NDArray[np.generic]]:
        p = self.p
        npend = ~self.o_pend
        has = self.size != 0
        self.t_open |= has & npend
        s0, s1 = self.cur_s0, self.cur_s1
        sess_ok = self.t_sess < self.n_sess
        idle = npend & ~has
        busy = npend & has
        adv = idle & self.t_open
        want_open = idle & ~self.t_open & sess_ok & (s0 <= b) & (b < s1)
        close = busy & sess_ok & (b >= s1)
        vprev = self.model_vol[:, max(0, b - 1)][:, None]
        cut = (busy & ~close & self.antic & ~self.t_cut & (vprev > 1.5 * self.t_entry_vol)
               & (self.t_entry_vol > 0))
        delta = np.zeros((self.R, self.N))
        if not want_open.any():
            return {"adv": adv, "open": want_open, "delta": delta, "close": close, "cut": cut}
        rows, cols = _nonzero(want_open)
        if rows.size:
            x = self._market_inputs(ts)
            xr = self._at(x, rows)
            price = xr["price"]
            eq = self.coll[rows, cols] - p.settle_fee
            frac = self.frac[rows, cols]
            side = self.side[rows, cols]
            long_ = side > 0
            il, is_ = self._side_imf0(x, ts)
            imf0 = np.where(long_, il[rows], is_[rows])
            size1 = np.where((xr["price_ok"] > 0) & (eq >= 10.0), eq * frac / imf0 / price, 0.0)
            dep = xr["depth"]
            ntl = size1 * price
            oil, ois = self.oi_l[rows], self.oi_s[rows]
            mb1 = np.where(long_, self._mmf_base(0, ts)[rows], self._mmf_base(1, ts)[rows])
            imf1, _ = self._imf(long_, ntl, np.where(long_, oil, ois), np.where(long_, ois, oil), mb1, xr, rows)
            skew0 = oil - ois
            a = np.abs(skew0 + side * size1)
            b0 = np.abs(skew0)
            charge = np.where(a > b0, p.impact * (a * a - b0 * b0) * price * price / (2 * dep), 0.0)
            frac_i = np.where(ntl > 0, charge / np.where(ntl > 0, ntl, 1.0), 0.0)
            size = np.where(size1 > 0, eq * frac / (imf1 + frac_i + 2 * p.trading_fee) / price, 0.0)
            delta[rows, cols] = side * size
        return {"adv": adv, "open": want_open & (delta != 0), "delta": delta, "close": close, "cut": cut}

    # 1. oracle keeper
    def _keeper(self, b: int, ts: int) -> BoolArray:
        f, p, rules = self.feeds, self.p, self.rules
        tot = self.oi_l + self.oi_s
        imb = np.where(tot > 0, (self.oi_l - self.oi_s) / np.where(tot > 0, tot, 1.0), 0.0)
        lo, hi = p.bounds["funding"]
        fund = np.clip(np.clip(self.funding_k * imb + self.fshock[:, b], -self.funding_cap, self.funding_cap), lo, hi)
        targets = {"price": self.tgt["price"][:, b], "volatility": self.tgt["volatility"][:, b], "funding": fund,
                   "depth": self.tgt["depth"][:, b], "skew": self.tgt["skew"][:, b]}
        dev = {"price": rules.price_dev, "volatility": rules.vol_dev, "depth": rules.depth_dev}
        stale = self.stale[:, b]
        pushes: dict[str, BoolArray] = {}
        for k in _Feeds.KINDS:
            cur, upd = f.ans[k], f.upd[k]
            age_due = (upd == 0) | (ts - upd >= rules.refresh_sec)
            if k in dev:
                move = np.abs(targets[k] - cur) > dev[k] * np.abs(cur)
            else:
                move = np.abs(targets[k] - cur) > (rules.skew_abs if k == "skew" else rules.funding_abs)
            pushes[k] = age_due | move
        pushes["price"] &= ~stale
        no_wait = np.zeros(self.R, dtype=bool)
        if self.o_pend.any():
            frm_o = self.o_ts + p.min_delay
            wait_o = (self.o_pend & ~self.o_has_round & (frm_o <= ts) & (f.upd["price"][:, None] < frm_o)).any(axis=1)
        else:
            wait_o = no_wait
        if self.f_pend.any():
            frm_f = self.f_time + p.min_delay
            wait_f = (self.f_pend & (frm_f <= ts) & (f.upd["price"][:, None] < frm_f)).any(axis=1)
        else:
            wait_f = no_wait
        demand = ~stale & ~pushes["price"] & (wait_o | wait_f)
        self.c["on_demand"] += demand
        pushes["price"] |= demand
        tx = np.zeros(self.R, dtype=bool)
        for k in _Feeds.KINDS:
            m = pushes[k]
            tx |= m
            if k == "price":
                self.prev_round = np.where(m, f.upd["price"], self.prev_round)
            f.ans[k] = np.where(m, np.round(targets[k] * f.scale) / f.scale, f.ans[k])
            f.upd[k] = np.where(m, ts, f.upd[k])
        if self.any_tail:  # the calibrated tails ride in the same push (``RiskPusher.pushWithTails``)
            tx |= self._publish_tail(b, ts)
        self._mi_cache = None
        if b == 0:
            tx[:] = True
        x = self._market_inputs(ts)
        # poke (dynamic): the maintenance target of each side from the volatility and skew feeds
        # (and the published tail: poke reverts while it is stale)
        poke = tx & self.is_dyn & f.ok("volatility", ts) & f.ok("skew", ts)
        tails: tuple[FloatArray | None, FloatArray | None] = (None, None)
        if self.any_tail:
            poke &= x["tail_ok"] > 0
            tails = (x["tail_l"], x["tail_s"])
        if poke.any():
            for side, is_long in ((0, True), (1, False)):
                self._poke_side(side, is_long, poke, ts, f.ans["volatility"], f.ans["skew"], tails[side])
        self._accrue(tx & (x["price_ok"] > 0), ts, x)
        return pushes["price"]

    def _poke_side(self, side: int, is_long: bool, mask: BoolArray, ts: int, sigma: FloatArray,
                   skew: FloatArray, tail: FloatArray | None = None) -> None:
        """``LeverageController._commit`` for one side (per run where ``mask``; ``tail``: the
        side's published tail, None without a tail feed)."""
        p = self.p
        target = maintenance_base(p, var_move(p, sigma, skew, is_long, tail))
        fr, to, act, rate = self.ramp[side]
        cur = self._ramp_value(side, ts)
        loosen = mask & (target < cur)
        tighten = mask & ~loosen & (target > to) & (cur >= to)
        move = mask & ~loosen & ~tighten & (target != to) & (target >= cur)
        jit = np.zeros(self.R, dtype=np.int64)
        if tighten.any():
            rows = np.flatnonzero(tighten)
            k = self._jit_i[rows, side]
            jit[rows] = self._jit[rows, side, np.minimum(k, self._jit.shape[2] - 1)]
            self._jit_i[rows, side] += 1
        new_fr = np.where(loosen, target, np.where(tighten, cur, fr))
        new_to = np.where(loosen | tighten | move, target, to)
        new_act = np.where(loosen, ts, np.where(tighten, ts + jit, act))
        new_rate = np.where(loosen | tighten, p.ramp_rate, rate)
        self.ramp[side] = [new_fr, new_to, new_act, new_rate]
        self._mmf_cache = {}

    # 2. settlement keeper
    def _settle(self, ts: int, pushed: BoolArray) -> None:
        p = self.p
        if not self.o_pend.any():
            return
        exp = self.o_exp
        cancel = self.o_pend & (ts > exp)
        if cancel.any():
            np.add(self.coll, p.settle_fee, out=self.coll, where=cancel)
            self.o_pend &= ~cancel
            self.c["expired"] += cancel.sum(axis=1)
        # A round for the orders waiting: this block's price push.
        if pushed.any():
            new_round = self.o_pend & ~self.o_has_round & pushed[:, None]
            if new_round.any():
                self.o_has_round |= new_round
                np.copyto(self.o_fill, self.feeds.ans["price"][:, None], where=new_round)
                np.copyto(self.o_round_ts, ts, where=new_round)
        go = self.o_pend & self.o_has_round & (self.o_round_ts <= exp)
        if not go.any():
            return
        x = self._market_inputs(ts)
        # The settling orders as events (run by run, in account (settlement) order), not masks.
        rows, cols = _nonzero(go)
        pk = (x["price_ok"] > 0)[rows]
        if not pk.any():
            return
        rows, cols = rows[pk], cols[pk]
        d_all = np.where(self.o_close[rows, cols], -self.size[rows, cols], self.o_delta[rows, cols])
        nz = d_all != 0
        rows, cols, d_ev = rows[nz], cols[nz], d_all[nz]
        # Funding first (health-neutral: equity counts what is owed either way).
        acc = np.zeros(self.R, dtype=bool)
        acc[rows] = True
        self._accrue(acc, ts, x)
        self._settle_funding_ev(rows, cols)
        seg = self._segments(rows)
        fill_ev = self.o_fill[rows, cols]
        # Two dry passes (the second without the first's failures), then the trades of what passed.
        # A pass is a pure function of ``ok``: where a pass leaves ``ok`` unchanged, the next pass
        # would compute the same figures, so they are reused (same arithmetic, same bits).
        ok = np.ones(rows.size, dtype=bool)
        calc = self._exec_calc(rows, cols, ok, d_ev, fill_ev, x, ts, seg)
        for _ in range(2):
            ok2 = ok & calc.passed
            if not np.array_equal(ok2, ok):
                ok = ok2
                calc = self._exec_calc(rows, cols, ok, d_ev, fill_ev, x, ts, seg)
        self._exec_write(rows, cols, ok, calc)
        self.o_pend[rows[ok], cols[ok]] = False
        self.o_has_round &= self.o_pend
        self.c["settled"] += np.bincount(rows[ok], minlength=self.R)
        self.c["settle_reverts"] += np.bincount(rows[~ok], minlength=self.R)

    @staticmethod
    def _segments(rows: IntArray) -> tuple[IntArray, IntArray, tuple[int, int]] | None:
        """(segment, position in segment, matrix shape) of events ``rows`` (sorted) for
        :meth:`_segsum`; computed once per phase, reused by each of its sums."""
        if rows.size == 0:
            return None
        start = np.r_[True, rows[1:] != rows[:-1]]
        head: IntArray = np.maximum.accumulate(np.where(start, np.arange(rows.size), 0))
        pos: IntArray = np.arange(rows.size) - head
        seg: IntArray = np.cumsum(start) - 1
        return seg, pos, (int(seg[-1]) + 1, int(pos.max()) + 1)

    def _segsum(self, rows: IntArray, v: FloatArray,
                segs: tuple[IntArray, IntArray, tuple[int, int]] | None = None) -> FloatArray:
        """Inclusive cumulative sum of ``v`` within each run (``rows`` sorted), summed from zero in
        each run: a run's figures do not depend on the other runs of its batch, to the bit."""
        if rows.size == 0:
            return v.copy()
        seg, pos, shape = segs if segs is not None else self._segments(rows)  # type: ignore[misc]
        mat = np.zeros(shape)
        mat[seg, pos] = v
        out: FloatArray = np.cumsum(mat, axis=1)[seg, pos]
        return out

    def _per_run(self, rows: IntArray, v: FloatArray) -> FloatArray:
        out: FloatArray = np.bincount(rows, weights=v, minlength=self.R).astype(np.float64)
        return out

    def _exec_calc(self, rows: IntArray, cols: IntArray, ok: BoolArray, delta: FloatArray, fill: FloatArray,
                   x: dict[str, FloatArray], ts: int,
                   segs: tuple[IntArray, IntArray, tuple[int, int]] | None) -> _Exec:
        """``MarginEngine._execute`` for every settling account of a block (events ``rows``,
        ``cols``, in execution order), given that the events ``ok`` execute: which of them pass
        (OI cap, initial margin) and what the trades of ``ok`` write (:meth:`_exec_write`)."""
        p = self.p
        d = np.where(ok, delta, 0.0)
        old = self.size[rows, cols]
        new = old + d
        inc = ok & ((np.abs(new) > np.abs(old)) | ((old != 0) & (new != 0) & (np.sign(new) != np.sign(old))))
        dl = np.maximum(new, 0) - np.maximum(old, 0)
        ds = np.maximum(-new, 0) - np.maximum(-old, 0)
        oil = self.oi_l[rows] + self._segsum(rows, dl, segs)
        ois = self.oi_s[rows] + self._segsum(rows, ds, segs)
        xr = self._at(x, rows)
        price, dep = xr["price"], xr["depth"]
        long_new = np.where(new != 0, new > 0, old > 0)
        ntl_new = np.abs(new) * price
        mb = np.where(long_new, self._mmf_base(0, ts)[rows], self._mmf_base(1, ts)[rows])
        imf, slip = self._imf(long_new, ntl_new, np.where(long_new, oil, ois), np.where(long_new, ois, oil), mb, xr,
                              rows)
        side_oi = np.where(long_new, oil, ois) * price
        pass_cap = ~inc | (side_oi <= dep * p.oi_mult)
        skew_after = oil - ois
        skew_before = skew_after - (dl - ds)
        a, bb = np.abs(skew_after), np.abs(skew_before)
        q = p.impact * (a * a - bb * bb) * fill * fill / (2 * dep)
        charge = np.where(ok & (a > bb), q, 0.0)
        snap0 = self.snap[rows, cols]
        risk_bad = xr["risk_ok"] <= 0
        if risk_bad.any():
            exit_cap = np.abs(d) * fill * snap0 * np.abs(d) / np.where(old != 0, np.abs(old), 1.0)
            capped = ~inc & risk_bad & (old != 0)
            charge = np.where(capped, np.minimum(charge, exit_cap), charge)
        pool_before = self.pool[rows] + self._segsum(rows, charge, segs) - charge
        rebate = np.minimum(np.where(ok & (a < bb), -q, 0.0), np.maximum(pool_before, 0.0))
        impact = charge - rebate
        fee = np.abs(d) * fill * p.trading_fee
        basis0 = self.basis[rows, cols]
        same = (old == 0) | (np.sign(d) == np.sign(old))
        closed = np.minimum(np.abs(d), np.abs(old))
        cb = np.where(same, 0.0, basis0 * closed / np.where(old != 0, np.abs(old), 1.0))
        realized = np.where(same, 0.0, np.sign(old) * closed * fill - cb)
        basis = np.where(same, basis0 + d * fill, basis0 - cb)
        basis = np.where(~same & (np.abs(d) > np.abs(old)), new * fill, basis)
        coll = self.coll[rows, cols] + np.where(ok, realized - fee - impact, 0.0)
        snap = np.where(inc, slip, snap0)
        snap = np.where(new == 0, 0.0, snap)
        mmf_pos = np.minimum(mb + snap, self._max_mmf()[rows])
        eq = coll + new * price - basis
        pass_im = ~inc | (eq >= np.abs(new) * price * np.maximum(imf, mmf_pos))
        passed: BoolArray = ok & pass_cap & pass_im
        return _Exec(passed, new, basis, snap, coll, dl, ds, realized, fee, impact)

    def _exec_write(self, rows: IntArray, cols: IntArray, ok: BoolArray, e: _Exec) -> None:
        """Write the trades of events ``ok`` (``e``: :meth:`_exec_calc` with that ``ok``)."""
        p = self.p
        r, c = rows[ok], cols[ok]
        self.size[r, c] = e.new[ok]
        self.basis[r, c] = e.basis[ok]
        self.snap[r, c] = e.snap[ok]
        self.coll[r, c] = e.coll[ok]
        self.oi_l += self._per_run(rows, e.dl)
        self.oi_s += self._per_run(rows, e.ds)
        self.vault -= self._per_run(rows, np.where(ok, e.realized, 0.0))
        self.insurance += self._per_run(rows, e.fee) * p.fee_ins
        imp = self._per_run(rows, np.where(ok, e.impact, 0.0))
        self.pool += imp
        self.c["impact_paid"] += imp
        m = np.zeros((self.R, self.N), dtype=bool)
        m[r, c] = True
        self._bad_debt(m & (self.size == 0) & (self.coll < 0))

    def _bad_debt(self, m: BoolArray) -> None:
        if not m.any():
            return
        debt = np.where(m, -self.coll, 0.0).sum(axis=1)
        covered = np.minimum(debt, np.maximum(self.insurance, 0.0))
        self.coll = np.where(m, 0.0, self.coll)
        self.insurance -= covered
        self.vault -= debt - covered
        self.bad += debt
        self.bad_social += debt - covered

    # 3. liquidators liquidate what they flagged, at the first round after the flag
    def _liquidate(self, b: int, ts: int, pushed: BoolArray) -> None:
        p = self.p
        go = self.f_pend & pushed[:, None]
        if not go.any():
            return
        self.f_pend &= ~go
        x = self._market_inputs(ts)
        self._accrue(np.asarray(go.any(axis=1)), ts, x)
        go &= self.size != 0
        self._settle_funding(go)
        rows, cols = _nonzero(go)
        # execution order: flag order within each run
        o = np.lexsort((self.f_rank[rows, cols], rows))
        rows, cols = rows[o], cols[o]
        xr = self._at(x, rows)
        price, dep = xr["price"], xr["depth"]
        size = self.size[rows, cols]
        snap = self.snap[rows, cols]
        basis0 = self.basis[rows, cols]
        coll0 = self.coll[rows, cols]
        mmf_b = np.where(size > 0, self._mmf_base(0, ts)[rows], self._mmf_base(1, ts)[rows])
        mmf = np.minimum(mmf_b + snap, self._max_mmf()[rows])
        abs_size = np.abs(size)
        pos_n = abs_size * price
        eq = coll0 + size * price - basis0
        maint = pos_n * mmf
        ok = eq < maint  # else AccountHealthy: the liquidation reverts
        # MarginEngine._liquidationSize / _liquidateClose: the fee scaled by the shortfall depth
        # (PositionMath.penaltyFraction), which sizes the close and is charged.
        fee = p.liq_fee * penalty_share(eq, maint, p.pen_floor, p.pen_full_depth)
        slip = np.minimum(p.impact * pos_n / dep, 1.0)
        exit_slip = np.where((xr["risk_ok"] > 0) | (snap >= slip), slip, snap)
        # MarginEngine._exitCost: the larger of the slippage and the average skew-impact charge of
        # closing the whole position at the current skew (after the block's earlier liquidations
        # of the run, as the lab executes them one after another), the capped slippage while a
        # risk feed is bad. The size of each close depends on the skew the earlier ones left, so
        # the events are sized one position-in-run at a time (vectorized across runs).
        skew0 = (self.oi_l - self.oi_s)[rows]
        deficit = maint * p.target - eq
        risk_ok = xr["risk_ok"] > 0
        segs = self._segments(rows)

        def sized(k: IntArray, skew: FloatArray) -> FloatArray:
            a0, b0 = np.abs(skew - size[k]), np.abs(skew)
            whole = np.where(a0 > b0, p.impact * (a0 * a0 - b0 * b0) * price[k] * price[k] / (2 * dep[k]), 0.0)
            frac = whole / np.where(pos_n[k] > 0, pos_n[k], 1.0)
            exit_cost = np.where(risk_ok[k], np.maximum(frac, slip[k]), exit_slip[k])
            denom = mmf[k] * p.target - (fee[k] + exit_cost)
            close_n = np.where(denom <= 0, pos_n[k],
                               np.minimum(np.maximum(deficit[k], 0.0) / np.where(denom > 0, denom, 1.0), pos_n[k]))
            close = np.where(close_n >= pos_n[k], abs_size[k], np.minimum(close_n / price[k], abs_size[k]))
            close = np.where((abs_size[k] - close) * price[k] < MIN_REMAINING_USD, abs_size[k], close)
            close = np.where(ok[k], close, 0.0)
            out: FloatArray = -np.sign(size[k]) * close
            return out

        if segs is None or segs[2][1] == 1:  # at most one liquidation per run in this block
            d = sized(np.arange(rows.size), skew0)
        else:
            d = np.zeros(rows.size)
            moved = np.zeros(self.R)  # the skew moved by the run's earlier liquidations of this block
            for k_pos in range(segs[2][1]):
                k = np.flatnonzero(segs[1] == k_pos)
                d[k] = sized(k, skew0[k] + moved[rows[k]])
                moved[rows[k]] += d[k]
        close = np.abs(d)  # the closed size (``sized`` returns it with the closing sign)
        skew_after = (self.oi_l - self.oi_s)[rows] + self._segsum(rows, d, segs)
        skew_before = skew_after - d
        a, bb = np.abs(skew_after), np.abs(skew_before)
        q = p.impact * (a * a - bb * bb) * price * price / (2 * dep)
        charge = np.where(ok & (a > bb), q, 0.0)
        risk_bad = xr["risk_ok"] <= 0
        if risk_bad.any():
            cap = close * price * snap * close / np.where(abs_size > 0, abs_size, 1.0)
            charge = np.where(risk_bad, np.minimum(charge, cap), charge)
        pool_before = self.pool[rows] + self._segsum(rows, charge, segs) - charge
        rebate = np.minimum(np.where(ok & (a < bb), -q, 0.0), np.maximum(pool_before, 0.0))
        impact = charge - rebate
        closed_n = close * price
        penalty = closed_n * fee
        reward = penalty * p.liq_share
        cb = basis0 * close / np.where(abs_size > 0, abs_size, 1.0)
        realized = np.sign(size) * close * price - cb
        new = size + d
        r, c = rows[ok], cols[ok]
        self.basis[r, c] = (basis0 - cb)[ok]
        self.coll[r, c] = (coll0 + realized - penalty - impact)[ok]
        self.size[r, c] = new[ok]
        self.snap[r, c] = np.where(new == 0, 0.0, snap)[ok]
        self.f_time[r, c] = 0
        okf = ok.astype(np.float64)
        self.vault -= self._per_run(rows, realized * okf)
        self.insurance += self._per_run(rows, (penalty - reward) * okf)
        imp = self._per_run(rows, impact * okf)
        self.pool += imp
        self.c["impact_paid"] += imp
        self.oi_l += self._per_run(rows, (np.maximum(new, 0) - np.maximum(size, 0)) * okf)
        self.oi_s += self._per_run(rows, (np.maximum(-new, 0) - np.maximum(-size, 0)) * okf)
        n = self._per_run(rows, okf)
        self.c["liquidations"] += n
        self.c["peak"] = np.maximum(self.c["peak"], n)
        self.c["liq_notional"] += self._per_run(rows, closed_n * okf)
        self.c["penalties"] += self._per_run(rows, penalty * okf)
        self.liquidated_ever[r, c] = True
        self._block_liqs = n
        m = np.zeros((self.R, self.N), dtype=bool)
        m[r, c] = True
        self._bad_debt(m & (self.size == 0) & (self.coll < 0))

    # 4. liquidators flag what they saw under water `latency` blocks ago
    def _flag(self, b: int, ts: int) -> None:
        lb = b - self.liq.latency_blocks
        if lb < 0 or lb >= len(self.seen):
            return
        seen, key = self.seen[lb]
        cand = seen & ~self.f_pend
        if not cand.any():
            return
        cap = self.liq.count * self.liq.max_per_block
        rank = np.argsort(np.argsort(np.where(cand, -key, np.inf), axis=1, kind="stable"), axis=1, kind="stable")
        cand &= rank < cap
        x = self._market_inputs(ts)
        if not (x["price_ok"] > 0).any():
            return
        liq = self._under_water(ts, x) & cand & (x["price_ok"] > 0)[:, None]
        self.f_pend |= liq
        self.f_time = np.where(liq, ts, self.f_time)
        self.f_rank = np.where(liq, b * self.N + rank, self.f_rank)
        self.c["flags"] += liq.sum(axis=1)

    def _under_water(self, ts: int, x: dict[str, FloatArray]) -> BoolArray:
        price = x["price"][:, None]
        idx = self._idx_now(ts, x["price"])[:, None]
        long_ = self.size > 0
        mmf_b = np.where(long_, self._mmf_base(0, ts)[:, None], self._mmf_base(1, ts)[:, None])
        mmf = np.minimum(mmf_b + self.snap, self._max_mmf()[:, None])
        eq = self.coll + self.size * price - self.basis - self.size * (idx - self.fent)
        self._notional = np.abs(self.size) * price
        out: BoolArray = (self.size != 0) & (eq < self._notional * mmf)
        return out

    # 5b. traders' orders land last in the block
    def _commit(self, b: int, ts: int, dec: dict[str, npt.NDArray[np.generic]]) -> None:
        p = self.p
        adv = np.asarray(dec["adv"], dtype=bool)
        if adv.any():
            self.t_open &= ~adv
            self.t_sess += adv
            r, c = _nonzero(adv)
            k = np.minimum(self.t_sess[r, c], self.sess.shape[2] - 1)
            self.cur_s0[r, c] = self.sess[r, c, k, 0]
            self.cur_s1[r, c] = self.sess[r, c, k, 1]
        op = np.asarray(dec["open"], dtype=bool)
        cl = np.asarray(dec["close"], dtype=bool)
        cut = np.asarray(dec["cut"], dtype=bool)
        if not (op.any() or cl.any() or cut.any()):
            return
        fee_ok = self.coll >= p.settle_fee
        has = self.size != 0
        op = op & fee_ok
        cl = cl & has & fee_ok
        cut = cut & fee_ok & has
        new = op | cl | cut
        if not new.any():
            return
        # Masked writes (``np.copyto(..., where=)``): the values of the former ``np.where`` forms.
        np.subtract(self.coll, p.settle_fee, out=self.coll, where=new)
        self.o_pend |= new
        self.o_has_round &= ~new
        np.copyto(self.o_ts, ts, where=new)
        np.copyto(self.o_exp, ts + p.min_delay + p.window, where=new)
        np.copyto(self.o_close, cl, where=new)
        np.copyto(self.o_delta, -self.size / 2, where=cut)
        np.copyto(self.o_delta, np.asarray(dec["delta"], dtype=np.float64), where=op)
        np.copyto(self.t_entry_vol, self.model_vol[:, max(0, b - 1)][:, None], where=op)
        self.t_cut |= cut
        self.t_cut &= ~op
        self.c["commits"] += new.sum(axis=1)

    # 6. end of block: who is under water, the series
    def _watch(self, b: int, ts: int) -> None:
        x = self._market_inputs(ts)
        pok = x["price_ok"] > 0
        uw = self._under_water(ts, x) & pok[:, None]
        self.seen.append((uw, self._notional))
        if len(self.seen) > self.liq.latency_blocks + 1:
            self.seen[-self.liq.latency_blocks - 2] = (np.zeros((0, 0), dtype=bool), np.zeros((0, 0)))
        il, is_ = self._side_imf0(x, ts)
        s = self.series
        s["vol"][:, b] = self.feeds.ans["volatility"]
        s["lev_long"][:, b] = np.where(pok, 1.0 / il, np.nan)
        s["lev_short"][:, b] = np.where(pok, 1.0 / is_, np.nan)
        s["mmf_long"][:, b] = np.where(pok, np.minimum(self._mmf_base(0, ts), self._max_mmf()), np.nan)
        s["mmf_short"][:, b] = np.where(pok, np.minimum(self._mmf_base(1, ts), self._max_mmf()), np.nan)
        s["liquidations"][:, b] = getattr(self, "_block_liqs", np.zeros(self.R))
        self._block_liqs = np.zeros(self.R)
        s["bad_debt_usd"][:, b] = self.bad
        s["insurance_usd"][:, b] = self.insurance
        s["oi_long"][:, b] = self.oi_l
        s["oi_short"][:, b] = self.oi_s
        if self.any_tail:
            s["tail_long"][:, b] = np.where(self.use_tail, x["tail_l"], np.nan)
            s["tail_short"][:, b] = np.where(self.use_tail, x["tail_s"], np.nan)
            self.tail_stale_blocks += self.use_tail & (x["tail_ok"] <= 0)
        self.ins_peak = np.maximum(self.ins_peak, self.insurance)
        self.ins_dd = np.maximum(self.ins_dd, self.ins_peak - self.insurance)

    # ------------------------------------------------------------------ results
    def metrics(self) -> list[dict[str, float]]:
        """One dict per run, with the lab's metric keys (``RunResult.metrics``) and a few more."""
        ts_end = int(self.t0[0]) + (self.B - 1) * self.block_sec
        x = self._market_inputs(ts_end)
        pok = (x["price_ok"] > 0)[:, None]
        idx = self._idx_now(ts_end, x["price"])[:, None]
        eq = np.where(pok, self.coll + self.size * x["price"][:, None] - self.basis - self.size * (idx - self.fent),
                      self.coll)
        wiped = (eq < 0.05 * self.deposit).sum(axis=1)
        s = self.series
        lev = (s["lev_long"] + s["lev_short"]) / 2
        out = []
        for i in range(self.R):
            vol = s["vol"][i]
            calm = vol < np.median(vol)
            li = lev[i]
            calm_lev = _nanmean(li[calm]) if calm.any() else _nanmean(li)
            stress_lev = _nanmean(li[~calm]) if (~calm).any() else _nanmean(li)
            c = {k: float(v[i]) for k, v in self.c.items()}
            out.append({
                "bad_debt_usd": float(self.bad[i]),
                "bad_debt_socialized_usd": float(self.bad_social[i]),
                "liquidations": c["liquidations"],
                "accounts_liquidated": float(self.liquidated_ever[i].sum()),
                "liquidated_notional_usd": c["liq_notional"],
                "liquidation_penalties_usd": c["penalties"],
                "peak_liquidations_per_block": c["peak"],
                "insurance_drawdown_usd": float(self.ins_dd[i]),
                "insurance_end_usd": float(self.insurance[i]),
                "mean_max_leverage": _nanmean(li),
                "calm_mean_max_leverage": calm_lev,
                "stress_mean_max_leverage": stress_lev,
                "accounts_wiped_out": float(wiped[i]),
                "orders_committed": c["commits"],
                "orders_settled": c["settled"],
                "settlement_reverts": c["settle_reverts"],
                "orders_expired": c["expired"],
                "liquidation_flags": c["flags"],
                "on_demand_price_pushes": c["on_demand"],
                "impact_pool_usd": float(self.pool[i]),
                "tail_feed_mean": _tail_mean(s["tail_long"][i], s["tail_short"][i]),
                "tail_stale_blocks": float(self.tail_stale_blocks[i]),
            })
        return out

    def calm_fractions(self, i: int) -> StaticFractions:
        """The static cap equal to run ``i``'s calm-period leverage: ``ballast.calm.calm_fractions``
        on its series, the function the lab's ``calm_fractions_from_run`` calls."""
        s = self.series
        return calm_fractions(s["vol"][i], s["lev_long"][i], s["lev_short"][i], s["mmf_long"][i], s["mmf_short"][i])


def _tail_mean(tl: FloatArray, tsh: FloatArray) -> float:
    """Mean published tail over the blocks and sides where one was live (0: none, as on chain)."""
    both = np.r_[tl, tsh]
    both = both[np.isfinite(both) & (both > 0)]
    return float(np.mean(both)) if both.size else 0.0


def _nanmean(a: FloatArray) -> float:
    a = a[np.isfinite(a)]
    return float(np.mean(a)) if a.size else float("nan")


def simulate(runs: Sequence[RunSpec], config: Config, *, keeper_mode: VolMode = "trailing",
             liquidators: LiquidatorSpec | None = None, depth_mode: DepthMode = "trailing") -> list[dict[str, float]]:
    """Run a batch and return one metrics dict per run."""
    return MarketSim(runs, config, keeper_mode=keeper_mode, liquidators=liquidators,
                     depth_mode=depth_mode).run().metrics()


def three_controllers(scenario: ScenarioPath, traders: Sequence[Trader], config: Config, *, ramp_seed: int = 0,
                      keeper_mode: VolMode = "trailing", liquidators: LiquidatorSpec | None = None,
                      depth_mode: DepthMode = "trailing") -> dict[str, dict[str, float]]:
    """What ``ballast stress`` does, in the simulator: the dynamic run first, then static_calm at
    its calm-period fractions and static_conservative from the configuration."""
    dyn = MarketSim([RunSpec(scenario, traders, Controller("dynamic", label="dynamic"), ramp_seed)], config,
                    keeper_mode=keeper_mode, liquidators=liquidators, depth_mode=depth_mode).run()
    calm = dyn.calm_fractions(0)
    cons = config.market(0).static_conservative
    st = MarketSim([RunSpec(scenario, traders, Controller.static(calm, "static_calm"), ramp_seed),
                    RunSpec(scenario, traders, Controller.static(cons, "static_conservative"), ramp_seed)],
                   config, keeper_mode=keeper_mode, liquidators=liquidators, depth_mode=depth_mode).run().metrics()
    m = dyn.metrics()[0]
    return {"dynamic": m, "static_calm": st[0] | {"imf": calm.imf, "mmf": calm.mmf},
            "static_conservative": st[1] | {"imf": cons.imf, "mmf": cons.mmf}}


__all__ = ["Controller", "MarketSim", "RunSpec", "TailFeedSpec", "simulate", "tail_feed_targets", "tail_multiplier",
           "three_controllers"]
