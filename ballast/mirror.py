"""An exact off-chain replica of ``MarginEngine`` + the controllers' ``quote``.

The stress lab applies every transaction it sends to this mirror in the same order as the chain,
and compares: health of every account after every block, the size and amounts of every
liquidation, bad debt, and token conservation. Integer arithmetic throughout, to the wei.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Literal

from ballast._typing import WAD
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
    div_wad_up,
    funding_index_delta,
    funding_owed,
    liquidation_notional,
    mul_div_up,
    mul_wad_down,
    mul_wad_up,
    notional,
    position_maintenance,
    required_initial,
    slippage,
    unrealized_pnl,
)
from ballast.errors import BallastError

FEEDS = ("price", "volatility", "funding", "depth", "skew")
MAX_POSITIONS = 8


class MirrorRevert(BallastError):
    """The mirror predicts that the engine reverts, with the contract's error name."""

    def __init__(self, error: str, *data: int | str) -> None:
        self.error = error
        self.data = data
        super().__init__(f"{error}{data}")


@dataclass
class Feed:
    """A feed as the controller reads it: raw answer, decimals, timestamp, heartbeat, WAD bounds."""

    answer: int
    decimals: int
    updated_at: int
    heartbeat_sec: int
    min_wad: int
    max_wad: int
    reverting: bool = False

    def read(self, now: int) -> tuple[bool, int]:
        if self.reverting or self.updated_at == 0 or self.updated_at > now or now - self.updated_at > self.heartbeat_sec:
            return False, 0
        if abs(self.answer) > 10**40:
            return False, 0
        v = self.answer * 10 ** (18 - self.decimals)
        if v < self.min_wad or v > self.max_wad:
            return False, 0
        return True, v


@dataclass
class Quote:
    price_wad: int
    funding_rate_wad: int
    imf_wad: int
    mmf_base_wad: int
    max_mmf_wad: int
    slip_wad: int
    impact_wad: int
    liq_fee_wad: int
    risk_feeds_ok: bool
    funding_ok: bool
    sequencer_up: bool


def exit_impact(q: Quote, slip_snap_wad: int, exit_size: int, pos_size: int) -> int:
    """``MarginEngine._exitImpact``: while a risk feed is bad, an exit pays at most the slippage
    snapshotted at the position's last increase, pro rata to the size closed (rounded up)."""
    if q.risk_feeds_ok:
        return q.impact_wad
    return min(mul_div_up(slip_snap_wad, exit_size, pos_size), q.impact_wad)


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

    def index_now(self, price_wad: int, now: int) -> int:
        if self.last_accrual == 0:
            return self.funding_index
        return self.funding_index + funding_index_delta(self.last_rate, price_wad, now - self.last_accrual)

    def quote(self, is_long: bool, position_size: int, trade_size: int, now: int, sequencer_up: bool = True) -> Quote:
        ok_p, price = self.feeds["price"].read(now)
        if not ok_p:
            raise MirrorRevert("PriceFeedInvalid", self.market_id)
        ok_f, rate = self.feeds["funding"].read(now)
        ok_d, depth = self.feeds["depth"].read(now)
        if not ok_d:
            depth = self.feeds["depth"].min_wad
        notional_pos = mul_wad_up(position_size, price)
        notional_trade = mul_wad_up(trade_size, price)
        if self.kind == "static":
            return Quote(price, rate, self.static_imf_wad, self.static_mmf_wad, self.static_mmf_wad,
                         slippage(self.static_impact_wad, notional_pos, depth),
                         slippage(self.static_impact_wad, notional_trade, depth), self.static_liq_fee_wad,
                         True, ok_f, sequencer_up)
        p = self.params
        assert p is not None
        ok_v, sigma = self.feeds["volatility"].read(now)
        ok_s, skew = self.feeds["skew"].read(now)
        x = RiskInputs(
            sigma_wad=sigma if ok_v else self.feeds["volatility"].max_wad,
            skew_wad=skew if ok_s else 0,
            depth_usd_wad=depth,
            funding_rate_wad=rate if ok_f else 0,
            oi_side_wad=self.oi_long if is_long else self.oi_short,
            oi_other_wad=self.oi_short if is_long else self.oi_long,
            notional_usd_wad=notional_pos,
            price_wad=price,
            is_long=is_long,
        )
        f = compute(p, x)
        risk_ok = ok_v and ok_s and ok_d and ok_f
        mmf_base = self.ramps[0 if is_long else 1].value_at(now)
        imf_live = f.imf_wad if risk_ok else p.max_imf_wad
        imf = required_initial(imf_live, position_maintenance(mmf_base, f.slip_wad, p.max_mmf_wad),
                               p.min_buffer_wad, p.max_imf_wad)
        return Quote(price, x.funding_rate_wad, imf, mmf_base, p.max_mmf_wad, f.slip_wad,
                     slippage(p.impact_wad, notional_trade, depth), p.liq_fee_wad, risk_ok, ok_f, sequencer_up)

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
class LiquidationResult:
    account: str
    market_id: int
    size_closed_wad: int
    notional_closed_usd_wad: int
    penalty_tokens: int
    reward_tokens: int
    bad_debt_tokens: int
    health_before: Health


@dataclass
class EngineMirror:
    """The engine's buckets, accounts and markets."""

    trading_fee_wad: int
    fee_insurance_share_wad: int
    liquidator_share_wad: int
    liq_target_ratio_wad: int
    token_scale: int
    markets: dict[int, MarketMirror] = field(default_factory=dict)
    accounts: dict[str, AccountMirror] = field(default_factory=dict)
    vault: int = 0
    insurance: int = 0
    fees: int = 0
    bad_debt_total: int = 0
    bad_debt_covered: int = 0
    bad_debt_socialized: int = 0
    net_deposits: int = 0
    sequencer_up: bool = True

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
        self.vault += amount
        self.net_deposits += amount

    def fund_insurance(self, amount: int) -> None:
        self.insurance += amount
        self.net_deposits += amount

    def withdraw(self, a: str, amount: int, now: int) -> None:
        if amount == 0:
            raise MirrorRevert("ZeroAmount")
        acc = self.accounts.get(a)  # (a revert must not leave an empty account behind)
        if acc is None or acc.collateral < amount:
            raise MirrorRevert("InsufficientCollateral", acc.collateral if acc else 0, amount)
        acc.collateral -= amount
        if acc.open_markets():
            h = self.health(a, now)
            if h.equity_usd_wad < h.initial_usd_wad:
                acc.collateral += amount
                raise MirrorRevert("InitialMarginViolated", h.equity_usd_wad, h.initial_usd_wad)
        self.net_deposits -= amount

    def sum_collateral(self) -> int:
        return sum(a.collateral for a in self.accounts.values())

    # ------------------------------------------------------------------ health
    def health(self, a: str, now: int, cached: tuple[int, Quote] | None = None) -> Health:
        acc = self.account(a)
        eq = acc.collateral * self.token_scale
        maint = init = ntl = 0
        for mid in acc.open_markets():
            pos = acc.positions[mid]
            m = self.markets[mid]
            q = cached[1] if cached and cached[0] == mid else m.quote(pos.size > 0, abs(pos.size), 0, now, self.sequencer_up)
            idx = m.index_now(q.price_wad, now)
            eq += unrealized_pnl(pos.size, pos.basis, q.price_wad) - funding_owed(pos.size, idx, pos.funding_index)
            n = notional(pos.size, q.price_wad)
            mmf = position_maintenance(q.mmf_base_wad, pos.slip_snap, q.max_mmf_wad)
            ntl += n
            maint += mul_wad_up(n, mmf)
            init += mul_wad_up(n, max(q.imf_wad, mmf))
        return Health(eq, maint, init, ntl)

    def maintenance_health(self, a: str, now: int, cache: dict[tuple[int, bool], tuple[int, int, int, int]]) -> Health:
        """Equity and maintenance requirement only (``initial_usd_wad`` is 0): what a liquidation
        check needs, without size-dependent quotes. ``cache`` holds, per (market, side) and for one
        timestamp, (price, funding index now, ramped mmf base, max mmf); pass a fresh dict per block."""
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
                q = m.quote(pos.size > 0, 0, 0, now, self.sequencer_up)
                c = cache[key] = (q.price_wad, m.index_now(q.price_wad, now), q.mmf_base_wad, q.max_mmf_wad)
            price, idx, mmf_base, max_mmf = c
            eq += unrealized_pnl(pos.size, pos.basis, price) - funding_owed(pos.size, idx, pos.funding_index)
            n = notional(pos.size, price)
            ntl += n
            maint += mul_wad_up(n, position_maintenance(mmf_base, pos.slip_snap, max_mmf))
        return Health(eq, maint, 0, ntl)

    # ------------------------------------------------------------------ internals
    def _accrue(self, m: MarketMirror, q: Quote, now: int) -> int:
        idx = m.index_now(q.price_wad, now)
        m.funding_index = idx
        m.last_rate = q.funding_rate_wad if q.funding_ok else m.last_rate
        m.last_accrual = now
        return idx

    def _settle_funding(self, acc: AccountMirror, pos: PositionMirror, idx: int) -> None:
        if pos.size != 0:
            owed = div_ceil(funding_owed(pos.size, idx, pos.funding_index), self.token_scale)
            acc.collateral -= owed
            self.vault += owed
        pos.funding_index = idx

    def _write_position(self, acc: AccountMirror, mid: int, pos: PositionMirror, delta: int, q: Quote,
                        increasing: bool) -> int:
        old = pos.size
        size2, basis2, realized = apply_trade(old, pos.basis, delta, q.price_wad)
        pos.size, pos.basis = size2, basis2
        if increasing:
            pos.slip_snap = q.slip_wad
        if size2 == 0:
            pos.slip_snap = 0
        acc.positions[mid] = pos
        if old == 0 and size2 != 0 and len(acc.open_markets()) > MAX_POSITIONS:
            raise MirrorRevert("TooManyPositions")
        return div_floor(realized, self.token_scale)

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

    def _snapshot(self, a: str, mid: int) -> tuple[AccountMirror | None, MarketMirror, tuple[int, ...]]:
        acc = self.accounts.get(a)  # None: the account does not exist yet (and must not after a revert)
        return (copy.deepcopy(acc), copy.deepcopy(self.markets[mid]),
                (self.vault, self.insurance, self.fees, self.bad_debt_total, self.bad_debt_covered,
                 self.bad_debt_socialized, self.net_deposits))

    def _restore(self, a: str, mid: int, snap: tuple[AccountMirror | None, MarketMirror, tuple[int, ...]]) -> None:
        if snap[0] is None:
            self.accounts.pop(a, None)
        else:
            self.accounts[a] = snap[0]
        # In place: callers may hold a reference to the market object (the lab keeps one per block).
        self.markets[mid].__dict__.update(snap[1].__dict__)
        (self.vault, self.insurance, self.fees, self.bad_debt_total, self.bad_debt_covered,
         self.bad_debt_socialized, self.net_deposits) = snap[2]

    # ------------------------------------------------------------------ entry points
    def trade(self, a: str, mid: int, delta: int, now: int) -> tuple[int, int, int]:
        """Apply ``MarginEngine.trade``; returns (realized, fee, impact) tokens or raises MirrorRevert
        (state untouched)."""
        if delta == 0:
            raise MirrorRevert("ZeroSize")
        snap = self._snapshot(a, mid)
        try:
            return self._trade(a, mid, delta, now)
        except MirrorRevert:
            self._restore(a, mid, snap)
            raise

    def _trade(self, a: str, mid: int, delta: int, now: int) -> tuple[int, int, int]:
        acc = self.account(a)
        m = self.markets[mid]
        pos = acc.positions.get(mid) or PositionMirror()
        old = pos.size
        new = old + delta
        increasing = abs(new) > abs(old) or (old != 0 and new != 0 and (new > 0) != (old > 0))
        m.update_oi(old, new)
        is_long = new > 0 if new != 0 else old > 0
        q = m.quote(is_long, abs(new), abs(delta), now, self.sequencer_up)
        if not increasing:
            q = replace(q, impact_wad=exit_impact(q, pos.slip_snap, abs(delta), abs(old)))
        idx = self._accrue(m, q, now)
        self._settle_funding(acc, pos, idx)
        tn = notional(delta, q.price_wad)
        fee = div_up(mul_wad_up(tn, self.trading_fee_wad), self.token_scale)
        impact = div_up(mul_wad_up(tn, q.impact_wad), self.token_scale)
        realized = self._write_position(acc, mid, pos, delta, q, increasing)
        acc.collateral += realized - fee - impact
        self.vault += impact - realized
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

    def liquidate(self, a: str, mid: int, now: int) -> LiquidationResult:
        """Apply ``MarginEngine.liquidate`` or raise MirrorRevert (state untouched)."""
        snap = self._snapshot(a, mid)
        try:
            return self._liquidate(a, mid, now)
        except MirrorRevert:
            self._restore(a, mid, snap)
            raise

    def _liquidate(self, a: str, mid: int, now: int) -> LiquidationResult:
        acc = self.account(a)
        m = self.markets[mid]
        pos = acc.positions.get(mid)
        if pos is None or pos.size == 0:
            raise MirrorRevert("NoPosition", a, mid)
        size = pos.size
        abs_size = abs(size)
        q = m.quote(size > 0, abs_size, abs_size, now, self.sequencer_up)
        q = replace(q, impact_wad=exit_impact(q, pos.slip_snap, abs_size, abs_size))
        if not q.sequencer_up:
            raise MirrorRevert("SequencerDown")
        idx = self._accrue(m, q, now)
        self._settle_funding(acc, pos, idx)
        h = self.health(a, now, (mid, q))
        if h.equity_usd_wad >= h.maintenance_usd_wad:
            raise MirrorRevert("AccountHealthy", h.equity_usd_wad, h.maintenance_usd_wad)
        mmf = position_maintenance(q.mmf_base_wad, pos.slip_snap, q.max_mmf_wad)
        pos_n = notional(size, q.price_wad)
        close_n = liquidation_notional(h.equity_usd_wad, h.maintenance_usd_wad, self.liq_target_ratio_wad, mmf,
                                       q.liq_fee_wad + q.impact_wad, pos_n)
        close = abs_size if close_n >= pos_n else min(div_wad_up(close_n, q.price_wad), abs_size)
        if notional(abs_size - close, q.price_wad) < MIN_REMAINING_NOTIONAL_USD_WAD:
            close = abs_size
        delta = -close if size > 0 else close
        m.update_oi(size, size + delta)
        closed_n = notional(delta, q.price_wad)
        penalty = div_up(mul_wad_up(closed_n, q.liq_fee_wad), self.token_scale)
        impact = div_up(mul_wad_up(closed_n, mul_div_up(q.impact_wad, abs(delta), abs_size)), self.token_scale)
        reward = mul_wad_down(penalty, self.liquidator_share_wad)
        realized = self._write_position(acc, mid, pos, delta, q, False)
        acc.collateral += realized - penalty - impact
        self.vault += impact - realized
        self.insurance += penalty - reward
        bad = 0
        if not acc.open_markets() and acc.collateral < 0:
            bad = self._realize_bad_debt(acc)
        self.net_deposits -= reward
        return LiquidationResult(a, mid, delta, closed_n, penalty, reward, bad, h)


def wad(x: float) -> int:
    """Float to WAD (for tests and scenario inputs; not exact for every decimal)."""
    return int(round(x * WAD))
