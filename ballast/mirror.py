"""An exact off-chain replica of ``MarginEngine`` + the controllers' ``quote`` (engine v2, issue 10).

Orders are committed (``commit``), then settled (``settle``) at the price of the first feed round
published at least ``order_min_delay_sec`` after the commit, or cancelled after their window
(``cancel_expired``); liquidations take two steps: ``flag_liquidation``, then ``liquidate`` at
the live price while it is the first round published at least ``order_min_delay_sec`` after the
flag, in the market the engine prefers (``liquidation_market``), with a market whose price is bad
valued at its last good price moved adversely by its maximum maintenance fraction. Price impact is the integral over
the market's skew (``ballast.model.skew_impact``), charged into and rebated out of a per-market
impact pool. Withdrawals count no unrealized profit and need fresh prices; funding accrues from
the funding feed's own publication times.

The stress lab applies every transaction it sends to this mirror in the same order as the chain,
and compares: health of every account after every block, the size and amounts of every
liquidation, bad debt, and token conservation. Integer arithmetic throughout, to the wei. Every
entry point either applies the whole transaction or raises :class:`MirrorRevert` (the contract's
error name and data) and leaves the mirror exactly as it was.

Token invariant (``conserved``)::

    sum(collateral) + vault + insurance + fees + order_escrow + impact_pools == net_deposits
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from ballast._typing import WAD
from ballast.errors import BallastError
from ballast.model import (
    MIN_REMAINING_NOTIONAL_USD_WAD,
    Ramp,
    RiskInputs,
    RiskParams,
    apply_trade,
    compute,
    div_ceil,
    div_floor,
    div_up,
    div_wad_down,
    div_wad_up,
    funding_index_delta,
    funding_owed,
    liquidation_notional,
    mul_div_up,
    mul_wad_down,
    mul_wad_up,
    notional,
    penalty_fraction,
    position_maintenance,
    required_initial,
    skew_impact,
    slippage,
    unrealized_pnl,
)
from ballast.riskreport import saturate

FEEDS = ("price", "volatility", "funding", "depth", "skew")
MAX_POSITIONS = 8
MAX_RAW_ANSWER = 10**40
INT128_MAX = 2**127 - 1
INT128_MIN = -(2**127)
UINT128_MAX = 2**128 - 1
UINT64_MAX = 2**64 - 1


class MirrorRevert(BallastError):
    """The mirror predicts that the engine reverts, with the contract's error name and data."""

    def __init__(self, error: str, *data: int | str | bool) -> None:
        self.error = error
        self.data = data
        super().__init__(f"{error}{data}")


@dataclass
class Feed:
    """A feed as the controller reads it: raw answer, decimals, timestamp, heartbeat, WAD bounds
    (the latest round; ``settle`` is given the settlement round's answer and times)."""

    answer: int
    decimals: int
    updated_at: int
    heartbeat_sec: int
    min_wad: int
    max_wad: int
    reverting: bool = False
    prev_updated_at: int = 0
    """Publication time of the round before the latest (0: the latest is round 1)."""
    round_id: int = 1
    """The latest round's id."""
    reported: bool = False
    """A field of the controller's risk report (``submitReport``): an answer outside int128 is
    stored as the int128 extreme of its sign (which reads as out of bounds, as the answer would)."""

    def push(self, answer: int, updated_at: int) -> None:
        """A new round (``MockAggregator.transmit``/``transmitAt``, or a report's field): the latest
        becomes the previous."""
        self.prev_updated_at = self.updated_at
        self.round_id += 1
        self.answer, self.updated_at = (saturate(answer) if self.reported else answer), updated_at

    def read_at(self, now: int) -> tuple[bool, int, int]:
        """``RiskOracleBase._readAt``: (ok, value WAD, publication time); (False, 0, 0) when bad."""
        if self.reverting or self.updated_at == 0 or self.updated_at > now or now - self.updated_at > self.heartbeat_sec:
            return False, 0, 0
        if abs(self.answer) > MAX_RAW_ANSWER:
            return False, 0, 0
        v = self.answer * 10 ** (18 - self.decimals)
        if v < self.min_wad or v > self.max_wad:
            return False, 0, 0
        return True, v, self.updated_at

    def read(self, now: int) -> tuple[bool, int]:
        ok, v, _ = self.read_at(now)
        return ok, v


@dataclass
class Quote:
    """``MarketQuote``, field for field and in order. ``price_wad`` is 0 when ``price_ok`` is False;
    ``price_time``/``funding_time`` are the feeds' publication times (0 when bad)."""

    price_wad: int
    price_time: int
    funding_rate_wad: int
    funding_time: int
    imf_wad: int
    mmf_base_wad: int
    max_mmf_wad: int
    max_imf_wad: int
    slip_wad: int
    impact_coef_wad: int
    depth_usd_wad: int
    liq_fee_wad: int
    price_ok: bool
    risk_feeds_ok: bool
    funding_ok: bool
    sequencer_up: bool


def exit_slip(q: Quote, slip_snap_wad: int) -> int:
    """``MarginEngine._exitSlip``: the slippage fraction counted for an exit (liquidation size and
    the preferred-market score): the live one, or at most the snapshot while a risk feed is bad."""
    if q.risk_feeds_ok or slip_snap_wad >= q.slip_wad:
        return q.slip_wad
    return slip_snap_wad


def exit_cost(q: Quote, slip_snap_wad: int, size: int, skew: int) -> int:
    """``MarginEngine._exitCost``: the cost fraction counted for closing a whole position (the
    liquidation size and the preferred-market score): the larger of ``exit_slip`` and the average
    skew-impact charge of closing it at the current skew; ``exit_slip`` alone while a risk feed is
    bad."""
    slip = exit_slip(q, slip_snap_wad)
    if not q.risk_feeds_ok:
        return slip
    charge, _ = skew_impact(q.impact_coef_wad, skew, skew - size, q.price_wad, q.depth_usd_wad)
    frac = div_wad_up(charge, notional(size, q.price_wad))
    return max(frac, slip)


def exit_cap_usd(q: Quote, slip_snap_wad: int, delta: int, old_size: int, price_wad: int) -> int | None:
    """The exit cap of ``MarginEngine._tradeImpact`` (the old L2 fix): while a risk feed is bad, a
    pure reduction (no flip) pays at most its notional times the slippage snapshotted at the
    position's last increase, pro rata to the size closed (USD WAD, rounded up). None: no cap."""
    if q.risk_feeds_ok or old_size == 0 or abs(delta) > abs(old_size) or (delta > 0) == (old_size > 0):
        return None
    return mul_wad_up(notional(delta, price_wad), mul_div_up(slip_snap_wad, abs(delta), abs(old_size)))


@dataclass
class MarketMirror:
    """Controller and engine state of one market."""

    market_id: int
    feeds: dict[str, Feed]
    kind: Literal["dynamic", "static"]
    params: RiskParams | None = None
    """Dynamic: active parameters (also the IMF parameters: the lab proposes no change)."""
    static_imf_wad: int = 0
    static_mmf_wad: int = 0
    static_impact_wad: int = 0
    static_liq_fee_wad: int = 0
    ramps: list[Ramp] = field(default_factory=list)
    oi_long: int = 0
    oi_short: int = 0
    funding_index: int = 0
    last_rate: int = 0
    last_accrual: int = 0
    impact_pool: int = 0
    """Impact charged and not yet rebated, token units (``marketBook().impactPoolTokens``)."""
    last_price_wad: int = 0
    """Last valid price seen at an accrual (``marketBook().lastPriceWad``)."""
    oi_hard_cap_usd_wad: int = 0
    """``oiHardCapUsdWad(market)``: 0 = only the depth-relative cap."""
    tail_long_wad: int = 0
    tail_short_wad: int = 0
    tail_published_at: int = 0
    """The controller's published calibrated tails (``publishTail``) and when (0: never published)."""

    def publish_tail(self, long_wad: int, short_wad: int, now: int) -> None:
        """``LeverageController.publishTail`` (bounds checked on chain: [1e18, 5e18])."""
        self.tail_long_wad, self.tail_short_wad, self.tail_published_at = long_wad, short_wad, now

    def tail_feed(self, is_long: bool, now: int) -> tuple[bool, int]:
        """``LeverageController._tailOf``: (True, 0) when none was published, (False, 0) when older
        than the volatility feed's heartbeat, else (True, the side's tail)."""
        if self.tail_published_at == 0:
            return True, 0
        if now - self.tail_published_at > self.feeds["volatility"].heartbeat_sec:
            return False, 0
        return True, self.tail_long_wad if is_long else self.tail_short_wad

    @property
    def skew(self) -> int:
        return self.oi_long - self.oi_short

    def index_now(self, q: Quote, now: int) -> tuple[int, int]:
        """``MarginEngine._indexNow``: (funding index now, rate to record). The last recorded rate
        applies until the funding feed's current answer was published, that answer from then on;
        the last rate is held while the feed is bad. Priced at the quote's price (the last valid
        price when the price is bad)."""
        rate = q.funding_rate_wad if q.funding_ok else self.last_rate
        last = self.last_accrual
        if last == 0:
            return self.funding_index, rate
        price = q.price_wad if q.price_ok else self.last_price_wad
        switch = q.funding_time if q.funding_ok and q.funding_time > last else last
        switch = min(switch, now)
        idx = (self.funding_index + funding_index_delta(self.last_rate, price, switch - last)
               + funding_index_delta(rate, price, now - switch))
        return idx, rate

    def quote(self, is_long: bool, position_size: int, now: int, sequencer_up: bool = True) -> Quote:
        """``controller.quote(market, isLong, positionSizeWad)``; never raises on a bad price
        (``price_ok`` False, price 0)."""
        ok_p, price, t_p = self.feeds["price"].read_at(now)
        ok_f, rate, t_f = self.feeds["funding"].read_at(now)
        ok_d, depth = self.feeds["depth"].read(now)
        if not ok_d:
            depth = self.feeds["depth"].min_wad
        notional_pos = mul_wad_up(position_size, price)
        if self.kind == "static":
            return Quote(price, t_p, rate, t_f, self.static_imf_wad, self.static_mmf_wad, self.static_mmf_wad,
                         self.static_imf_wad, slippage(self.static_impact_wad, notional_pos, depth),
                         self.static_impact_wad, depth, self.static_liq_fee_wad, ok_p, True, ok_f, sequencer_up)
        p = self.params
        assert p is not None
        ok_v, sigma = self.feeds["volatility"].read(now)
        ok_s, skew = self.feeds["skew"].read(now)
        x = RiskInputs(
            sigma_wad=sigma if ok_v else self.feeds["volatility"].max_wad,
            skew_wad=skew if ok_s else 0,
            depth_usd_wad=depth,
            funding_rate_wad=rate,
            oi_side_wad=self.oi_long if is_long else self.oi_short,
            oi_other_wad=self.oi_short if is_long else self.oi_long,
            notional_usd_wad=notional_pos,
            price_wad=price,
            is_long=is_long,
        )
        ok_t, tail = self.tail_feed(is_long, now)
        f = compute(p, x, tail_feed_wad=tail)
        risk_ok = ok_v and ok_s and ok_d and ok_f and ok_t
        mmf_base = self.ramps[0 if is_long else 1].value_at(now)
        imf_live = f.imf_wad if risk_ok else p.max_imf_wad
        imf = required_initial(imf_live, position_maintenance(mmf_base, f.slip_wad, p.max_mmf_wad),
                               p.min_buffer_wad, p.max_imf_wad)
        return Quote(price, t_p, rate, t_f, imf, mmf_base, p.max_mmf_wad, p.max_imf_wad, f.slip_wad, p.impact_wad,
                     depth, p.liq_fee_wad, ok_p, risk_ok, ok_f, sequencer_up)

    def update_oi(self, old: int, new: int) -> None:
        if old > 0:
            self.oi_long -= old
        else:
            self.oi_short -= -old
        if new > 0:
            self.oi_long += new
        else:
            self.oi_short += -new


@dataclass
class PositionMirror:
    size: int = 0
    basis: int = 0
    funding_index: int = 0
    slip_snap: int = 0


@dataclass(frozen=True)
class OrderMirror:
    """``Order``: a committed order (one per account and market)."""

    size_delta: int
    acceptable_price_wad: int
    commit_sec: int
    fee_tokens: int
    close_all: bool


@dataclass
class AccountMirror:
    collateral: int = 0
    positions: dict[int, PositionMirror] = field(default_factory=dict)

    def open_markets(self) -> list[int]:
        return sorted(m for m, p in self.positions.items() if p.size != 0)


@dataclass
class Health:
    equity_usd_wad: int
    maintenance_usd_wad: int
    initial_usd_wad: int
    notional_usd_wad: int

    @property
    def liquidatable(self) -> bool:
        return self.equity_usd_wad < self.maintenance_usd_wad


@dataclass
class HealthScan:
    """What a health pass found besides the totals (``MarginEngine.HealthScan``)."""

    seq_up: bool = True
    found: bool = False
    preferred: int = 0
    best_score: int = 0
    candidates: list[tuple[int, int, int]] = field(default_factory=list)
    """Per valid-price market, ascending: (T*mmf - exit cost, liquidation fee, market id); the
    preferred market is scored after the loop (``MarginEngine._scorePreferred``)."""


@dataclass
class LiquidationResult:
    account: str
    market_id: int
    size_closed_wad: int
    notional_closed_usd_wad: int
    penalty_tokens: int
    reward_tokens: int
    bad_debt_tokens: int
    health_before: Health
    realized_tokens: int = 0
    impact_tokens: int = 0
    """Signed: > 0 charged into the pool, < 0 rebated out of it (``LiquidationSettled``)."""
    remaining_size_wad: int = 0
    price_wad: int = 0


_MARKET_STATE = ("oi_long", "oi_short", "funding_index", "last_rate", "last_accrual", "impact_pool", "last_price_wad",
                 "oi_hard_cap_usd_wad")
"""What the engine's transactions change in a market (feeds, parameters and ramps are not theirs)."""
_SCALARS = ("vault", "insurance", "fees", "order_escrow", "impact_pools", "bad_debt_total", "bad_debt_covered",
            "bad_debt_socialized", "net_deposits", "settlement_fees_paid")


@dataclass
class EngineMirror:
    """The engine's buckets, accounts, markets and orders.

    The first five fields keep their positions (older callers pass them positionally); build one
    from the deployed ``EngineConfig`` with :meth:`from_engine_config`.
    """

    trading_fee_wad: int
    fee_insurance_share_wad: int
    liquidator_share_wad: int
    liq_target_ratio_wad: int
    token_scale: int
    order_min_delay_sec: int = 1
    order_window_sec: int = 3600
    settlement_fee_tokens: int = 0
    withdraw_price_max_age_sec: int = 600
    oi_depth_mult_wad: int = 2 * WAD
    liq_penalty_floor_wad: int = WAD
    """Share of the liquidation fee charged at zero shortfall depth (``liqPenaltyFloorWad``; WAD:
    the full fee at every depth, the engine before issue 12)."""
    liq_penalty_full_depth_wad: int = WAD // 5
    """Shortfall depth at and beyond which the full fee is charged (``liqPenaltyFullDepthWad``)."""
    markets: dict[int, MarketMirror] = field(default_factory=dict)
    accounts: dict[str, AccountMirror] = field(default_factory=dict)
    orders: dict[tuple[str, int], OrderMirror] = field(default_factory=dict)
    vault: int = 0
    insurance: int = 0
    fees: int = 0
    order_escrow: int = 0
    """Settlement fees escrowed by pending orders, token units (``orderEscrow``)."""
    impact_pools: int = 0
    """Sum of the markets' impact pools, token units (``impactPools``)."""
    bad_debt_total: int = 0
    bad_debt_covered: int = 0
    bad_debt_socialized: int = 0
    net_deposits: int = 0
    settlement_fees_paid: int = 0
    """Settlement fees credited to settlers' engine accounts, token units."""
    flagged_at: dict[str, int] = field(default_factory=dict)
    """``flaggedAt(account)``: when an account was flagged for liquidation (absent: not flagged)."""
    sequencer_up: bool = True

    @classmethod
    def from_engine_config(cls, cfg: tuple[int, ...] | list[int], token_scale: int) -> EngineMirror:
        """From ``EngineConfig`` in field order (``EngineSettings.engine_config_tuple()``): fee,
        insurance share, liquidator share, target ratio, min delay, window, settlement fee tokens,
        withdrawal price age, OI depth multiple, liquidation penalty floor and full depth."""
        fee, ins, liq, tgt, delay, window, sfee, age, oim, pfloor, pdepth = cfg
        return cls(fee, ins, liq, tgt, token_scale, order_min_delay_sec=delay, order_window_sec=window,
                   settlement_fee_tokens=sfee, withdraw_price_max_age_sec=age, oi_depth_mult_wad=oim,
                   liq_penalty_floor_wad=pfloor, liq_penalty_full_depth_wad=pdepth)

    # ------------------------------------------------------------------ buckets
    def account(self, a: str) -> AccountMirror:
        acc = self.accounts.get(a)
        if acc is None:
            acc = self.accounts[a] = AccountMirror()
        return acc

    def deposit(self, a: str, amount: int) -> None:
        if amount == 0:
            raise MirrorRevert("ZeroAmount")
        self.account(a).collateral += amount
        self.net_deposits += amount

    def fund_vault(self, amount: int) -> None:
        if amount == 0:
            raise MirrorRevert("ZeroAmount")
        self.vault += amount
        self.net_deposits += amount

    def fund_insurance(self, amount: int) -> None:
        if amount == 0:
            raise MirrorRevert("ZeroAmount")
        self.insurance += amount
        self.net_deposits += amount

    def set_open_interest_cap(self, mid: int, cap_usd_wad: int) -> None:
        """``setOpenInterestCap`` (admin): hard cap on each side's gross open interest, USD WAD."""
        if mid not in self.markets:
            raise MirrorRevert("MarketNotListed", mid)
        self.markets[mid].oi_hard_cap_usd_wad = cap_usd_wad

    def sum_collateral(self) -> int:
        return sum(a.collateral for a in self.accounts.values())

    def token_balance(self) -> int:
        """What ``collateralToken.balanceOf(engine)`` must be (the buckets' sum)."""
        return (self.sum_collateral() + self.vault + self.insurance + self.fees + self.order_escrow
                + self.impact_pools)

    def order(self, a: str, mid: int) -> OrderMirror | None:
        return self.orders.get((a, mid))

    # ------------------------------------------------------------------ health
    def _quote(self, mid: int, is_long: bool, size: int, now: int) -> Quote:
        m = self.markets.get(mid)
        if m is None:
            raise MirrorRevert("MarketNotListed", mid)
        return m.quote(is_long, size, now, self.sequencer_up)

    def _health(self, a: str, now: int, cached: tuple[int, Quote] | None, withdrawal: bool) -> tuple[Health, HealthScan]:
        """``MarginEngine._health``: cross-margin health in ascending market order; raises
        ``PriceTooOld``/``PriceFeedInvalid`` for a withdrawal as the contract does."""
        acc = self.accounts.get(a) or AccountMirror()
        h = Health(acc.collateral * self.token_scale, 0, 0, 0)
        scan = HealthScan()
        for mid in acc.open_markets():
            pos = acc.positions[mid]
            q = cached[1] if cached is not None and cached[0] == mid else self._quote(mid, pos.size > 0, abs(pos.size), now)
            scan.seq_up = scan.seq_up and q.sequencer_up
            self._health_term(h, scan, pos, q, mid, now, withdrawal)
        # ``_scorePreferred``: the largest T*mmf - (depth-scaled fee + exit cost), lowest id on ties.
        for i, (base, fee, mid) in enumerate(scan.candidates):
            score = base - self.penalty_fraction(fee, h)
            if i == 0 or score > scan.best_score:
                scan.best_score, scan.preferred = score, mid
        return h, scan

    def penalty_fraction(self, liq_fee_wad: int, h: Health) -> int:
        """``MarginEngine._penaltyFraction``: the liquidation fee scaled by the shortfall depth of
        an account of health ``h``."""
        return penalty_fraction(liq_fee_wad, h.equity_usd_wad, h.maintenance_usd_wad, self.liq_penalty_floor_wad,
                                self.liq_penalty_full_depth_wad)

    def _health_term(self, h: Health, scan: HealthScan, pos: PositionMirror, q: Quote, mid: int, now: int,
                     withdrawal: bool) -> None:
        m = self.markets[mid]
        if q.price_ok:
            if withdrawal and now - q.price_time > self.withdraw_price_max_age_sec:
                raise MirrorRevert("PriceTooOld", mid, q.price_time, self.withdraw_price_max_age_sec)
            price = q.price_wad
            mmf = position_maintenance(q.mmf_base_wad, pos.slip_snap, q.max_mmf_wad)
            imf = max(q.imf_wad, mmf)
            base = mul_wad_down(mmf, self.liq_target_ratio_wad) - exit_cost(q, pos.slip_snap, pos.size, m.skew)
            scan.candidates.append((base, q.liq_fee_wad, mid))
            scan.found = True
        else:
            if withdrawal:
                raise MirrorRevert("PriceFeedInvalid", mid)
            last = m.last_price_wad
            price = mul_wad_down(last, WAD - q.max_mmf_wad) if pos.size > 0 else mul_wad_up(last, WAD + q.max_mmf_wad)
            mmf = q.max_mmf_wad
            imf = max(q.max_imf_wad, mmf)
        idx, _ = m.index_now(q, now)
        pnl = unrealized_pnl(pos.size, pos.basis, price)
        if withdrawal and pnl > 0:
            pnl = 0
        h.equity_usd_wad += pnl - funding_owed(pos.size, idx, pos.funding_index)
        n = notional(pos.size, price)
        h.notional_usd_wad += n
        h.maintenance_usd_wad += mul_wad_up(n, mmf)
        h.initial_usd_wad += mul_wad_up(n, imf)

    def health(self, a: str, now: int, cached: tuple[int, Quote] | None = None) -> Health:
        """``health(account)``: never raises on a bad price (the market is valued conservatively)."""
        return self._health(a, now, cached, False)[0]

    def is_liquidatable(self, a: str, now: int) -> bool:
        acc = self.accounts.get(a)
        if acc is None or not acc.open_markets():
            return False
        h, scan = self._health(a, now, None, False)
        return scan.found and h.liquidatable

    def liquidation_market(self, a: str, now: int) -> int:
        """``liquidationMarket(account)``: the market a liquidation must close; raises
        ``AccountHealthy`` when the account is not liquidatable."""
        h, scan = self._health(a, now, None, False)
        if not scan.found or not h.liquidatable:
            raise MirrorRevert("AccountHealthy", h.equity_usd_wad, h.maintenance_usd_wad)
        return scan.preferred

    def maintenance_health(self, a: str, now: int, cache: dict[tuple[int, bool], tuple[int, int, int, int]]) -> Health:
        """Equity and maintenance requirement only (``initial_usd_wad`` is 0), equal to
        ``health``'s: what a liquidation check needs, without size-dependent quotes. ``cache``
        holds, per (market, side) and for one timestamp, (valuation price, funding index now,
        ramped mmf base, max mmf); pass a fresh dict per block. A market whose price is bad is
        cached at its conservative valuation price with mmf base = max mmf (so the position's
        maintenance is exactly max mmf, as in ``health``)."""
        acc = self.account(a)
        eq = acc.collateral * self.token_scale
        maint = ntl = 0
        for mid, pos in acc.positions.items():
            if pos.size == 0:
                continue
            key = (mid, pos.size > 0)
            c = cache.get(key)
            if c is None:
                m = self.markets[mid]
                q = m.quote(pos.size > 0, 0, now, self.sequencer_up)
                if q.price_ok:
                    c = (q.price_wad, m.index_now(q, now)[0], q.mmf_base_wad, q.max_mmf_wad)
                else:
                    last = m.last_price_wad
                    price = mul_wad_down(last, WAD - q.max_mmf_wad) if pos.size > 0 else mul_wad_up(last, WAD + q.max_mmf_wad)
                    c = (price, m.index_now(q, now)[0], q.max_mmf_wad, q.max_mmf_wad)
                cache[key] = c
            price, idx, mmf_base, max_mmf = c
            eq += unrealized_pnl(pos.size, pos.basis, price) - funding_owed(pos.size, idx, pos.funding_index)
            n = notional(pos.size, price)
            ntl += n
            maint += mul_wad_up(n, position_maintenance(mmf_base, pos.slip_snap, max_mmf))
        return Health(eq, maint, 0, ntl)

    # ------------------------------------------------------------------ internals
    def _accrue(self, m: MarketMirror, q: Quote, now: int) -> int:
        idx, rate = m.index_now(q, now)
        m.funding_index = idx
        m.last_rate = rate
        m.last_accrual = now
        m.last_price_wad = q.price_wad
        return idx

    def _settle_funding(self, acc: AccountMirror, pos: PositionMirror, idx: int) -> None:
        if pos.size != 0:
            owed = div_ceil(funding_owed(pos.size, idx, pos.funding_index), self.token_scale)
            acc.collateral -= owed
            self.vault += owed
        pos.funding_index = idx

    def _write_position(self, a: str, acc: AccountMirror, mid: int, pos: PositionMirror, delta: int, price: int,
                        slip_wad: int, increasing: bool) -> int:
        old = pos.size
        size2, basis2, realized = apply_trade(old, pos.basis, delta, price)
        if not -(2**119) <= basis2 < 2**119:  # the engine stores the basis in 120 bits (SafeCast)
            raise MirrorRevert("SafeCastOverflowedIntDowncast", 120, basis2)
        pos.size, pos.basis = size2, basis2
        if increasing:
            pos.slip_snap = slip_wad
        if size2 == 0:
            pos.slip_snap = 0
        acc.positions[mid] = pos
        if old == 0 and size2 != 0 and len(acc.open_markets()) > MAX_POSITIONS:
            raise MirrorRevert("TooManyPositions", a, MAX_POSITIONS)
        return div_floor(realized, self.token_scale)

    def _trade_impact(self, m: MarketMirror, q: Quote, skew_before: int, price: int, snap: int, delta: int,
                      old: int) -> int:
        """``MarginEngine._tradeImpact``: signed impact tokens of the skew move just applied (charge
        into the market's pool, rebate out of it, capped by the pool)."""
        charge_usd, rebate_usd = skew_impact(q.impact_coef_wad, skew_before, m.skew, price, q.depth_usd_wad)
        if charge_usd != 0:
            cap = exit_cap_usd(q, snap, delta, old, price)
            if cap is not None and cap < charge_usd:
                charge_usd = cap
            charge = div_up(charge_usd, self.token_scale)
            m.impact_pool += charge
            self.impact_pools += charge
            return charge
        rebate = min(rebate_usd // self.token_scale, m.impact_pool)
        m.impact_pool -= rebate
        self.impact_pools -= rebate
        return -rebate

    def _check_fill_limit(self, delta: int, fill: int, fee: int, impact: int, limit: int) -> None:
        if limit == 0:
            return
        cost = (fee + impact) * self.token_scale
        per = div_wad_up(cost, abs(delta)) if cost >= 0 else -div_wad_down(-cost, abs(delta))
        eff = fill + per if delta > 0 else fill - per
        if (delta > 0 and eff > limit) or (delta < 0 and eff < limit):
            raise MirrorRevert("PriceLimitExceeded", max(eff, 0), limit)

    def _check_oi_cap(self, m: MarketMirror, is_long: bool, q: Quote) -> None:
        oi_usd = mul_wad_up(m.oi_long if is_long else m.oi_short, q.price_wad)
        cap = mul_wad_down(q.depth_usd_wad, self.oi_depth_mult_wad)
        if m.oi_hard_cap_usd_wad != 0 and m.oi_hard_cap_usd_wad < cap:
            cap = m.oi_hard_cap_usd_wad
        if oi_usd > cap:
            raise MirrorRevert("OpenInterestCapExceeded", m.market_id, is_long, oi_usd, cap)

    def _realize_bad_debt(self, acc: AccountMirror) -> int:
        debt = -acc.collateral
        covered = min(debt, self.insurance)
        acc.collateral = 0
        self.insurance -= covered
        self.vault -= debt - covered
        self.bad_debt_total += debt
        self.bad_debt_covered += covered
        self.bad_debt_socialized += debt - covered
        return debt

    def _snapshot(self, a: str, mid: int) -> tuple[Any, ...]:
        acc = self.accounts.get(a)  # None: the account does not exist yet (and must not after a revert)
        m = self.markets.get(mid)
        return (copy.deepcopy(acc), tuple(getattr(m, k) for k in _MARKET_STATE) if m is not None else None,
                dict(self.orders),
                tuple(getattr(self, k) for k in _SCALARS), dict(self.flagged_at))

    def _restore(self, a: str, mid: int, snap: tuple[Any, ...]) -> None:
        acc, mstate, orders, scalars, flagged = snap
        self.flagged_at = flagged
        if acc is None:
            self.accounts.pop(a, None)
        else:
            self.accounts[a] = acc
        if mstate is not None:
            # In place: callers may hold references to the market and its feeds (the lab keeps them).
            m = self.markets[mid]
            for k, v in zip(_MARKET_STATE, mstate):
                setattr(m, k, v)
        self.orders = orders
        for k, v in zip(_SCALARS, scalars):
            setattr(self, k, v)

    def _atomic(self, a: str, mid: int, fn: Any, *args: Any) -> Any:
        snap = self._snapshot(a, mid)
        try:
            return fn(*args)
        except MirrorRevert:
            self._restore(a, mid, snap)
            raise

    # ------------------------------------------------------------------ collateral
    def withdraw(self, a: str, amount: int, now: int) -> None:
        """``withdraw(amount)``: with open positions, equity counts unrealized losses and no
        unrealized profit, every price must be valid (``PriceFeedInvalid``) and no older than
        ``withdraw_price_max_age_sec`` (``PriceTooOld``), the sequencer up, and the account at or
        above its initial requirement afterwards."""
        self._atomic(a, -1, self._withdraw, a, amount, now)

    def _withdraw(self, a: str, amount: int, now: int) -> None:
        if amount == 0:
            raise MirrorRevert("ZeroAmount")
        acc = self.accounts.get(a)
        c = acc.collateral if acc else 0
        if acc is None or c < 0 or c < amount:
            raise MirrorRevert("InsufficientCollateral", c, amount)
        acc.collateral -= amount
        self.net_deposits -= amount
        if acc.open_markets():
            h, scan = self._health(a, now, None, True)
            if not scan.seq_up:
                raise MirrorRevert("SequencerDown")
            if h.equity_usd_wad < h.initial_usd_wad:
                raise MirrorRevert("InitialMarginViolated", h.equity_usd_wad, h.initial_usd_wad)

    # ------------------------------------------------------------------ orders
    def commit(self, a: str, mid: int, delta: int, now: int, close_all: bool = False, *,
               acceptable_price_wad: int = 0) -> OrderMirror:
        """``commitOrder(mid, delta, acceptable)`` or, with ``close_all``, ``commitClose(mid,
        acceptable)`` (``delta`` ignored) by ``a`` at block time ``now``: escrows the settlement
        fee from collateral. Returns the stored order (settle from ``now + order_min_delay_sec``,
        expires ``order_window_sec`` after that)."""
        if close_all:
            acc = self.accounts.get(a)
            pos = acc.positions.get(mid) if acc else None
            if pos is None or pos.size == 0:
                raise MirrorRevert("NoPosition", a, mid)
            delta = 0
        else:
            if delta == 0:
                raise MirrorRevert("ZeroSize")
            if not INT128_MIN <= delta <= INT128_MAX:
                raise MirrorRevert("SizeOverflow", delta)
        result: OrderMirror = self._atomic(a, mid, self._commit, a, mid, delta, acceptable_price_wad, close_all, now)
        return result

    def _commit(self, a: str, mid: int, delta: int, acceptable: int, close_all: bool, now: int) -> OrderMirror:
        if mid not in self.markets:
            raise MirrorRevert("MarketNotListed", mid)
        if acceptable > UINT128_MAX:
            raise MirrorRevert("SizeOverflow", acceptable)
        if (a, mid) in self.orders:
            raise MirrorRevert("OrderPending", a, mid)
        fee = self.settlement_fee_tokens
        acc = self.accounts.get(a)
        c = acc.collateral if acc else 0
        if c < fee and not close_all:
            raise MirrorRevert("InsufficientCollateral", c, fee)
        self.account(a).collateral -= fee
        self.order_escrow += fee
        o = OrderMirror(delta, acceptable, now, fee, close_all)
        self.orders[(a, mid)] = o
        return o

    def order_times(self, a: str, mid: int) -> tuple[int, int]:
        """(settle from, expires at) of a pending order, as in ``OrderCommitted``."""
        o = self.orders[(a, mid)]
        frm = o.commit_sec + self.order_min_delay_sec
        return frm, frm + self.order_window_sec

    def settle(self, a: str, mid: int, fill_price_wad: int, round_time: int, prev_round_time: int, now: int,
               settler: str | None = None, *, round_id: int = 0) -> tuple[int, int, int]:
        """``settleOrder(a, mid, roundId)`` at block time ``now``: the round's answer as WAD
        (``fill_price_wad``) and publication time (``round_time``), and the previous round's
        (``prev_round_time``; 0 when there is none). The round must be the first published at or
        after the order's settle-from time, no later than its expiry (nor ``now``); the fill must
        lie within the price feed's bounds. Executes the trade at the fill, then credits the
        settlement fee to ``settler``'s engine account (required: the engine pays no token out).
        Returns (realized PnL, trading fee, signed impact) tokens; ``round_id`` only fills the
        revert data."""
        if settler is None:
            raise ValueError("settle: settler is None; the settlement fee is credited to the settler's account, "
                             "so pass the address that sends settleOrder")
        result: tuple[int, int, int] = self._atomic(a, mid, self._settle, a, mid, fill_price_wad, round_time,
                                                    prev_round_time, now, round_id, settler)
        return result

    def _settle(self, a: str, mid: int, fill: int, round_time: int, prev_time: int, now: int,
                round_id: int, settler: str) -> tuple[int, int, int]:
        o = self.orders.get((a, mid))
        if o is None:
            raise MirrorRevert("NoOrder", a, mid)
        frm = o.commit_sec + self.order_min_delay_sec
        expiry = frm + self.order_window_sec
        if now > expiry:
            raise MirrorRevert("OrderExpired", a, mid, expiry)
        if round_time < frm or round_time > expiry or round_time > now or prev_time >= frm:
            raise MirrorRevert("SettlementRoundInvalid", round_id, round_time, frm, prev_time)
        f = self.markets[mid].feeds["price"]
        scale = 10 ** (18 - f.decimals)
        answer = fill // scale
        if fill <= 0 or answer > MAX_RAW_ANSWER or fill < f.min_wad or fill > f.max_wad:
            raise MirrorRevert("SettlementPriceInvalid", mid, round_id, answer)
        del self.orders[(a, mid)]
        self.order_escrow -= o.fee_tokens
        delta = o.size_delta
        if o.close_all:
            acc = self.accounts.get(a)
            pos = acc.positions.get(mid) if acc else None
            delta = -(pos.size if pos else 0)
            if delta == 0:
                raise MirrorRevert("NoPosition", a, mid)
        result = self._execute(a, mid, delta, fill, o.acceptable_price_wad, now)
        # After the trade and its checks, as on chain: nothing can revert past this point.
        self.account(settler).collateral += o.fee_tokens
        self.settlement_fees_paid += o.fee_tokens
        return result

    def cancel_expired(self, a: str, mid: int, now: int) -> int:
        """``cancelExpiredOrder(a, mid)``: refunds the escrowed fee to collateral after expiry.
        Returns the refund."""
        result: int = self._atomic(a, mid, self._cancel_expired, a, mid, now)
        return result

    def _cancel_expired(self, a: str, mid: int, now: int) -> int:
        o = self.orders.get((a, mid))
        if o is None:
            raise MirrorRevert("NoOrder", a, mid)
        expiry = o.commit_sec + self.order_min_delay_sec + self.order_window_sec
        if now <= expiry:
            raise MirrorRevert("OrderNotExpired", a, mid, expiry)
        del self.orders[(a, mid)]
        self.order_escrow -= o.fee_tokens
        self.account(a).collateral += o.fee_tokens
        return o.fee_tokens

    def _execute(self, a: str, mid: int, delta: int, fill: int, limit: int, now: int) -> tuple[int, int, int]:
        acc = self.account(a)
        m = self.markets[mid]
        pos = copy.copy(acc.positions.get(mid) or PositionMirror())
        old = pos.size
        new = old + delta
        if not INT128_MIN <= new <= INT128_MAX:
            raise MirrorRevert("SizeOverflow", new)
        increasing = abs(new) > abs(old) or (old != 0 and new != 0 and (new > 0) != (old > 0))
        skew_before = m.skew
        m.update_oi(old, new)
        q = m.quote(new > 0 if new != 0 else old > 0, abs(new), now, self.sequencer_up)
        if not q.price_ok:
            raise MirrorRevert("PriceFeedInvalid", mid)
        self._settle_funding(acc, pos, self._accrue(m, q, now))
        if increasing:
            self._check_oi_cap(m, new > 0, q)
        impact = self._trade_impact(m, q, skew_before, fill, 0 if increasing else pos.slip_snap, delta, old)
        fee = div_up(mul_wad_up(notional(delta, fill), self.trading_fee_wad), self.token_scale)
        self._check_fill_limit(delta, fill, fee, impact, limit)
        realized = self._write_position(a, acc, mid, pos, delta, fill, q.slip_wad, increasing)
        acc.collateral += realized - fee - impact
        self.vault -= realized
        fee_ins = mul_wad_down(fee, self.fee_insurance_share_wad)
        self.insurance += fee_ins
        self.fees += fee - fee_ins
        if increasing:
            if not q.sequencer_up:
                raise MirrorRevert("SequencerDown")
            h = self.health(a, now, (mid, q))
            if h.equity_usd_wad < h.initial_usd_wad:
                raise MirrorRevert("InitialMarginViolated", h.equity_usd_wad, h.initial_usd_wad)
        if not acc.open_markets() and acc.collateral < 0:
            self._realize_bad_debt(acc)
        return realized, fee, impact

    # ------------------------------------------------------------------ funding
    def accrue_funding(self, mid: int, now: int) -> int:
        """``accrueFunding(mid)`` (permissionless): returns the new index."""
        result: int = self._atomic("", mid, self._accrue_funding, mid, now)
        return result

    def _accrue_funding(self, mid: int, now: int) -> int:
        q = self._quote(mid, True, 0, now)
        if not q.price_ok:
            raise MirrorRevert("PriceFeedInvalid", mid)
        return self._accrue(self.markets[mid], q, now)

    # ------------------------------------------------------------------ liquidation
    def flag_liquidation(self, a: str, now: int) -> int:
        """``flagLiquidation(a)`` (anyone): marks a liquidatable account; a liquidation then settles
        at the first price published at least ``order_min_delay_sec`` later. Returns that time."""
        result: int = self._atomic(a, -1, self._flag, a, now)
        return result

    def _flag(self, a: str, now: int) -> int:
        acc = self.accounts.get(a)
        if acc is None or not acc.open_markets():
            raise MirrorRevert("NoPosition", a, 2**256 - 1)
        f = self.flagged_at.get(a, 0)
        if f != 0 and now <= f + self.order_min_delay_sec:
            raise MirrorRevert("AlreadyFlagged", a, f)
        h, scan = self._health(a, now, None, False)
        if not scan.seq_up:
            raise MirrorRevert("SequencerDown")
        if not scan.found or not h.liquidatable:
            raise MirrorRevert("AccountHealthy", h.equity_usd_wad, h.maintenance_usd_wad)
        self.flagged_at[a] = now
        return now + self.order_min_delay_sec

    def _check_flag(self, a: str, mid: int, q: Quote) -> None:
        """``MarginEngine._checkFlag``: the live price must be the first round published at or
        after flag + min delay."""
        f = self.flagged_at.get(a, 0)
        if f == 0:
            raise MirrorRevert("NotFlagged", a)
        frm = f + self.order_min_delay_sec
        feed = self.markets[mid].feeds["price"]
        at = feed.updated_at
        prev = feed.prev_updated_at if feed.round_id > 1 else 0
        if at != q.price_time or at < frm or prev >= frm:
            raise MirrorRevert("SettlementRoundInvalid", feed.round_id, at, frm, prev)

    def liquidate(self, a: str, mid: int, now: int, liquidator: str) -> LiquidationResult:
        """``liquidate(a, mid)`` sent by ``liquidator`` (credited the reward in its engine account)
        at the live price, or raise MirrorRevert (state untouched):
        ``PriceFeedInvalid`` when that market's price is bad, ``NotFlagged`` /
        ``SettlementRoundInvalid`` unless the account was flagged (:meth:`flag_liquidation`) and
        the live price is the first round published at or after flag + min delay (the price feed's
        ``prev_updated_at``/``round_id``: update feeds with :meth:`Feed.push`),
        ``LiquidationMarketNotPreferred`` when ``mid`` is not :meth:`liquidation_market`."""
        result: LiquidationResult = self._atomic(a, mid, self._liquidate, a, mid, now, liquidator)
        return result

    def _liquidate(self, a: str, mid: int, now: int, liquidator: str) -> LiquidationResult:
        acc = self.accounts.get(a)
        pos = acc.positions.get(mid) if acc else None
        if acc is None or pos is None or pos.size == 0:
            raise MirrorRevert("NoPosition", a, mid)
        m = self.markets[mid]
        size = pos.size
        abs_size = abs(size)
        q = m.quote(size > 0, abs_size, now, self.sequencer_up)
        if not q.price_ok:
            raise MirrorRevert("PriceFeedInvalid", mid)
        if not q.sequencer_up:
            raise MirrorRevert("SequencerDown")
        self._check_flag(a, mid, q)
        self._settle_funding(acc, pos, self._accrue(m, q, now))
        h, scan = self._health(a, now, (mid, q), False)
        if not h.liquidatable:
            raise MirrorRevert("AccountHealthy", h.equity_usd_wad, h.maintenance_usd_wad)
        if scan.preferred != mid:
            raise MirrorRevert("LiquidationMarketNotPreferred", mid, scan.preferred)
        price = q.price_wad
        mmf = position_maintenance(q.mmf_base_wad, pos.slip_snap, q.max_mmf_wad)
        pos_n = notional(size, price)
        fee = self.penalty_fraction(q.liq_fee_wad, h)  # depth-scaled: sizes the close and is charged
        close_n = liquidation_notional(h.equity_usd_wad, h.maintenance_usd_wad, self.liq_target_ratio_wad, mmf,
                                       fee + exit_cost(q, pos.slip_snap, size, m.skew), pos_n)
        close = abs_size if close_n >= pos_n else min(div_wad_up(close_n, price), abs_size)
        if notional(abs_size - close, price) < MIN_REMAINING_NOTIONAL_USD_WAD:
            close = abs_size
        delta = -close if size > 0 else close
        self.flagged_at.pop(a, None)
        skew_before = m.skew
        m.update_oi(size, size + delta)
        impact = self._trade_impact(m, q, skew_before, price, pos.slip_snap, delta, size)
        closed_n = notional(delta, price)
        penalty = div_up(mul_wad_up(closed_n, fee), self.token_scale)
        reward = mul_wad_down(penalty, self.liquidator_share_wad)
        realized = self._write_position(a, acc, mid, pos, delta, price, q.slip_wad, False)
        acc.collateral += realized - penalty - impact
        self.vault -= realized
        self.insurance += penalty - reward
        bad = 0
        if not acc.open_markets() and acc.collateral < 0:
            bad = self._realize_bad_debt(acc)
        # After the bad debt, as on chain: the reward is credited, not transferred.
        self.account(liquidator).collateral += reward
        return LiquidationResult(a, mid, delta, closed_n, penalty, reward, bad, h, realized, impact, pos.size, price)


def conservation_gap(mir: EngineMirror) -> int:
    """Token buckets minus net deposits: 0 when every token is accounted for."""
    return mir.token_balance() - mir.net_deposits


def wad(x: float) -> int:
    """Float to WAD (for tests and scenario inputs; not exact for every decimal)."""
    return int(round(x * WAD))
