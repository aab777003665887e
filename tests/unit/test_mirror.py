"""Tests for ballast.mirror.EngineMirror (engine v2, issue 10) on pure Python (no chain): orders
(commit, settle at the first round after the delay, expiry and refunds, price limits), price impact
as the integral over skew (path independence, the impact pool and its cap, the exit cap), open
interest caps, the preferred liquidation market and bad-price isolation, the withdrawal rule, the
funding rule, token conservation over random sequences, and reverts that leave the mirror as it was.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ballast._typing import WAD
from ballast.config import MarketConfig, load_config, to_wad
from ballast.mirror import (
    FEEDS,
    EngineMirror,
    Feed,
    MarketMirror,
    MirrorRevert,
    conservation_gap,
    exit_cap_usd,
    exit_slip,
    wad,
)
from ballast.model import (
    Ramp,
    RiskInputs,
    compute,
    div_up,
    funding_index_delta,
    mul_div_up,
    mul_wad_down,
    mul_wad_up,
    notional,
    position_maintenance,
    skew_impact,
)

USD = 10**6  # the mock USD token has 6 decimals
TOKEN_SCALE = 10**12  # token units -> WAD USD
T0 = 1_700_000_000
DYN, STAT = 0, 1
ACCOUNTS = [f"0x{i:040x}" for i in range(1, 9)]
KEEPER = "0x" + "ee" * 20
PROPS = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _market_cfg() -> MarketConfig:
    return load_config().markets[0]


def _feeds(m: MarketConfig, now: int) -> dict[str, Feed]:
    return {k: Feed(m.feed_answer(k, m.initial[k]), m.feed_decimals, now, m.heartbeat_sec, *m.bounds_wad(k))
            for k in FEEDS}


def make_mirror(now: int = T0) -> EngineMirror:
    """The shipped engine settings; a dynamic BTC market (0) and a static copy of it (1); the vault
    and insurance fund seeded as on a local chain."""
    cfg = load_config()
    m = _market_cfg()
    mir = EngineMirror.from_engine_config(cfg.engine.engine_config_tuple(), TOKEN_SCALE)
    dyn = MarketMirror(DYN, _feeds(m, now), "dynamic", params=m.params)
    x = RiskInputs(wad(m.initial["volatility"]), 0, wad(m.initial["depth"]), 0, 0, 0, 0, wad(m.initial["price"]), True)
    mmf = compute(m.params, x).mmf_base_wad
    dyn.ramps = [Ramp(mmf, mmf, now, m.params.mmf_ramp_wad_per_sec), Ramp(mmf, mmf, now, m.params.mmf_ramp_wad_per_sec)]
    s = m.static_calm
    stat = MarketMirror(STAT, _feeds(m, now), "static", static_imf_wad=to_wad(s.imf), static_mmf_wad=to_wad(s.mmf),
                        static_impact_wad=m.params.impact_wad, static_liq_fee_wad=m.params.liq_fee_wad)
    mir.markets = {DYN: dyn, STAT: stat}
    mir.fund_vault(int(cfg.engine.vault_seed_usd) * USD)
    mir.fund_insurance(int(cfg.engine.insurance_seed_usd) * USD)
    return mir


def conserved(mir: EngineMirror) -> None:
    """Every token is somewhere: collateral (possibly negative before bad debt is realized), vault,
    insurance, fees, order escrow, impact pools; only deposits, withdrawals, liquidator rewards and
    settlement fees cross the boundary."""
    assert conservation_gap(mir) == 0
    assert (mir.sum_collateral() + mir.vault + mir.insurance + mir.fees + mir.order_escrow + mir.impact_pools
            == mir.net_deposits)
    assert mir.order_escrow == sum(o.fee_tokens for o in mir.orders.values())
    assert mir.impact_pools == sum(m.impact_pool for m in mir.markets.values())
    for mid, m in mir.markets.items():
        assert m.impact_pool >= 0
        sizes = [a.positions[mid].size for a in mir.accounts.values() if mid in a.positions]
        assert m.oi_long == sum(s for s in sizes if s > 0) and m.oi_short == -sum(s for s in sizes if s < 0)
    assert mir.bad_debt_total == mir.bad_debt_covered + mir.bad_debt_socialized
    assert mir.insurance >= 0


def publish(mir: EngineMirror, now: int, price: float | None = None, mids: tuple[int, ...] = (DYN, STAT),
            vol: float | None = None) -> None:
    """Keepers push every feed of the given markets at ``now`` (optionally a new price/volatility)."""
    for mid in mids:
        m = mir.markets[mid]
        for k, feed in m.feeds.items():
            ans = feed.answer
            if k == "price" and price is not None:
                ans = round(price * 10**feed.decimals)
            if k == "volatility" and vol is not None:
                ans = round(vol * 10**feed.decimals)
            feed.push(ans, now)


def flag_and_wait(mir: EngineMirror, a: str, now: int, mids: tuple[int, ...] = (DYN, STAT)) -> int:
    """Flag ``a`` at ``now``; the keepers publish at the first second a liquidation may use."""
    t = mir.flag_liquidation(a, now)
    assert mir.flagged_at[a] == now and t == now + mir.order_min_delay_sec
    publish(mir, t, mids=mids)
    return t


def price_wad(mir: EngineMirror, mid: int = DYN) -> int:
    f = mir.markets[mid].feeds["price"]
    scale: int = 10 ** (18 - f.decimals)
    return f.answer * scale


@dataclass
class Fill:
    realized: int
    fee: int
    impact: int
    t: int


def trade(mir: EngineMirror, a: str, mid: int, delta: int, now: int, price: float | None = None,
          limit: int = 0, close_all: bool = False) -> Fill:
    """Commit at ``now``; the keepers publish (``price`` or the same price) at the first second
    allowed; the keeper settles at that round. The order is gone either way (a reverted settle is
    cancelled after expiry so the next trade can commit)."""
    mir.commit(a, mid, delta, now, close_all, acceptable_price_wad=limit)
    frm, expiry = mir.order_times(a, mid)
    prev = mir.markets[mid].feeds["price"].updated_at
    publish(mir, frm, price)
    try:
        r, fee, imp = mir.settle(a, mid, price_wad(mir, mid), frm, prev, frm, KEEPER)
    except MirrorRevert:
        mir.cancel_expired(a, mid, expiry + 1)
        raise
    return Fill(r, fee, imp, frm)


def open_size(mir: EngineMirror, a: str, leverage: float, side: int, mid: int = DYN) -> int:
    """A size worth ``leverage`` x the account's collateral at the current price."""
    usd = mir.account(a).collateral / USD * leverage
    return side * wad(usd / (price_wad(mir, mid) / WAD))


def funded(usd: int = 20_000, lev: float = 10.0, side: int = 1) -> tuple[EngineMirror, str, int]:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, usd * USD)
    f = trade(mir, a, DYN, open_size(mir, a, lev, side), T0)
    return mir, a, f.t


# --------------------------------------------------------------------------- skew_impact


@PROPS
@given(st.integers(0, 2 * 10**17), st.lists(st.integers(-10**24, 10**24), min_size=2, max_size=12),
       st.integers(10**18, 10**23), st.integers(10**21, 10**28))
def test_skew_impact_is_path_independent(coef: int, path: list[int], price: int, depth: int) -> None:
    """Charges minus rebates along any path of skews equal the stock difference F(end) - F(start)
    up to rounding (a charge rounds up, a rebate down: the path never pays less)."""
    net = 0
    for b, a in zip(path, path[1:]):
        ch, rb = skew_impact(coef, b, a, price, depth)
        assert ch == 0 or rb == 0
        net += ch - rb
    end = skew_impact(coef, 0, path[-1], price, depth)[0] - skew_impact(coef, 0, path[0], price, depth)[0]
    # Rounding of each evaluation (USD WAD, i.e. 1e-18 USD): the two rounded factors, the product,
    # the coefficient and the division, propagated; the path's charges round up, its rebates down.
    big = max(abs(s) for s in path)
    tol = (len(path) + 2) * (coef * (3 * big * price // WAD // WAD + 3) // (2 * depth) + WAD // (2 * depth) + 3)
    assert -tol <= net - end <= tol
    # Exact formula (floats): k (Sa^2 - Sb^2) p^2 / (2 D)
    sb, sa = abs(path[0]) / WAD, abs(path[-1]) / WAD
    want = coef / WAD * (sa * sa - sb * sb) * (price / WAD) ** 2 / (2 * depth / WAD) * WAD
    assert math.isclose(end, want, rel_tol=1e-9, abs_tol=1e6)


def test_skew_impact_rounding_and_symmetry() -> None:
    k, p, d = 10**16, 50_000 * WAD, 50_000_000 * WAD
    ch, rb = skew_impact(k, 0, 1_000 * WAD, p, d)
    assert (ch, rb) == (250_000 * WAD, 0)  # 0.01 x ($50M)^2 / (2 x $50M)
    assert skew_impact(k, 1_000 * WAD, 0, p, d) == (0, 250_000 * WAD)
    assert skew_impact(k, -1_000 * WAD, 1_000 * WAD, p, d) == (0, 0)  # |skew| unchanged
    assert skew_impact(0, 0, 10**30, p, d) == (0, 0)
    ch1, _ = skew_impact(k, 7, 8, p + 1, d)
    _, rb1 = skew_impact(k, 8, 7, p + 1, d)
    assert ch1 >= rb1 and ch1 - rb1 <= 2  # tiny moves: the charge rounds up, the rebate down
    with pytest.raises(OverflowError):
        skew_impact(k, 0, 2**200, 2**100, d)


# --------------------------------------------------------------------------- orders


def test_commit_escrows_and_settle_pays_the_keeper() -> None:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 10_000 * USD)
    fee = mir.settlement_fee_tokens
    assert fee == 500_000  # $0.5
    o = mir.commit(a, DYN, wad(0.5), T0)
    assert (o.commit_sec, o.fee_tokens, o.size_delta, o.close_all) == (T0, fee, wad(0.5), False)
    assert mir.account(a).collateral == 10_000 * USD - fee and mir.order_escrow == fee
    assert mir.order_times(a, DYN) == (T0 + 1, T0 + 1 + 3600)
    conserved(mir)
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.commit(a, DYN, wad(1.0), T0)
    assert info.value.error == "OrderPending" and info.value.data == (a, DYN) and mir == before
    nd = mir.net_deposits
    publish(mir, T0 + 1, 50_100.0)
    r, trading_fee, impact = mir.settle(a, DYN, price_wad(mir), T0 + 1, T0, T0 + 5, KEEPER)
    assert r == 0 and trading_fee == div_up(notional(wad(0.5), 50_100 * WAD) * 5 * 10**14 // WAD, TOKEN_SCALE)
    assert impact > 0 and mir.markets[DYN].impact_pool == impact
    assert mir.order(a, DYN) is None and mir.order_escrow == 0
    # the fee stays in the engine, credited to the keeper's account
    assert mir.net_deposits == nd and mir.settlement_fees_paid == fee and mir.account(KEEPER).collateral == fee
    pos = mir.account(a).positions[DYN]
    assert pos.size == wad(0.5) and pos.basis == 50_100 * WAD // 2  # basis at the fill
    conserved(mir)


@pytest.mark.parametrize("case", ["round_too_early", "not_first_round", "round_after_now", "round_after_expiry",
                                  "expired", "price_out_of_bounds", "no_order", "price_limit"])
def test_settle_reverts_and_leaves_the_mirror_unchanged(case: str) -> None:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 10_000 * USD)
    mir.commit(a, DYN, wad(0.1), T0, acceptable_price_wad=60_000 * WAD if case != "price_limit" else 50_000 * WAD)
    frm, exp = T0 + 1, T0 + 1 + 3600
    p = 50_000 * WAD
    args = {"round_too_early": (p, T0, T0 - 10, T0 + 2), "not_first_round": (p, T0 + 5, T0 + 1, T0 + 6),
            "round_after_now": (p, T0 + 9, T0, T0 + 8), "round_after_expiry": (p, exp + 1, T0, exp),
            "expired": (p, T0 + 2, T0, exp + 1), "price_out_of_bounds": (20_000_000 * WAD, T0 + 1, T0, T0 + 1),
            "no_order": (p, T0 + 1, T0, T0 + 1), "price_limit": (p, T0 + 1, T0, T0 + 1)}[case]
    expected = {"round_too_early": ("SettlementRoundInvalid", 7, T0, frm, T0 - 10),
                "not_first_round": ("SettlementRoundInvalid", 7, T0 + 5, frm, T0 + 1),
                "round_after_now": ("SettlementRoundInvalid", 7, T0 + 9, frm, T0),
                "round_after_expiry": ("SettlementRoundInvalid", 7, exp + 1, frm, T0),
                "expired": ("OrderExpired", a, DYN, exp),
                "price_out_of_bounds": ("SettlementPriceInvalid", DYN, 7, 20_000_000 * 10**8),
                "no_order": ("NoOrder", ACCOUNTS[1], DYN)}
    publish(mir, args[1] if args[1] <= args[3] else args[3])
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.settle(ACCOUNTS[1] if case == "no_order" else a, DYN, *args, settler=KEEPER, round_id=7)
    if case == "price_limit":
        assert info.value.error == "PriceLimitExceeded"
        eff, limit = info.value.data
        assert limit == 50_000 * WAD and isinstance(eff, int) and eff > 50_000 * WAD
    else:
        assert (info.value.error, *info.value.data) == expected[case]
    assert mir == before, f"{case} changed the mirror"


def test_expired_orders_refund_and_close_all_closes_what_is_there() -> None:
    mir, a, t = funded()
    c = mir.account(a).collateral
    mir.commit(a, DYN, 0, t, close_all=True)
    _, exp = mir.order_times(a, DYN)
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.cancel_expired(a, DYN, exp)
    assert (info.value.error, *info.value.data) == ("OrderNotExpired", a, DYN, exp) and mir == before
    assert mir.cancel_expired(a, DYN, exp + 1) == mir.settlement_fee_tokens
    assert mir.account(a).collateral == c and mir.order_escrow == 0 and mir.order(a, DYN) is None
    with pytest.raises(MirrorRevert) as info:
        mir.cancel_expired(a, DYN, exp + 2)
    assert info.value.error == "NoOrder"
    conserved(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.commit(ACCOUNTS[3], DYN, 0, t, close_all=True)
    assert (info.value.error, *info.value.data) == ("NoPosition", ACCOUNTS[3], DYN)
    # A close-all order closes the size held at settlement (here after a partial reduction).
    t2 = exp + 10
    publish(mir, t2)
    size = mir.account(a).positions[DYN].size
    f = trade(mir, a, DYN, -size // 3, t2)
    trade(mir, a, DYN, 0, f.t + 1, close_all=True)
    assert mir.account(a).positions[DYN].size == 0 and not mir.account(a).open_markets()
    conserved(mir)


def test_price_limit_counts_fee_and_impact() -> None:
    """A buy whose fill equals the limit fails (fee and impact push the effective price above it);
    the limit at the exact effective price passes."""
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 100_000 * USD)
    delta = wad(2.0)
    probe = copy.deepcopy(mir)
    f = trade(probe, a, DYN, delta, T0)
    eff = 50_000 * WAD + div_up((f.fee + f.impact) * TOKEN_SCALE * WAD, delta)
    with pytest.raises(MirrorRevert) as info:
        trade(mir, a, DYN, delta, T0, limit=eff - 1)
    assert info.value.error == "PriceLimitExceeded" and info.value.data == (eff, eff - 1)
    g = trade(mir, a, DYN, delta, T0 + 3700, limit=eff)
    assert (g.fee, g.impact) == (f.fee, f.impact)
    conserved(mir)


# --------------------------------------------------------------------------- impact from skew


def _round_trip(n_open: int, n_close: int, total: int) -> tuple[int, int, EngineMirror]:
    """Open ``total`` in ``n_open`` orders, then close in ``n_close``: (impact paid opening, net
    impact over the cycle) in tokens, constant price and depth."""
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 3_000_000 * USD)
    t = T0
    paid_open = 0
    parts = [total // n_open] * n_open
    parts[-1] += total - sum(parts)
    for d in parts:
        f = trade(mir, a, DYN, d, t)
        paid_open += f.impact
        t = f.t
    net = paid_open
    cparts = [total // n_close] * n_close
    cparts[-1] += total - sum(cparts)
    for d in cparts:
        f = trade(mir, a, DYN, -d, t)
        net += f.impact
        t = f.t
    assert mir.account(a).positions[DYN].size == 0
    conserved(mir)
    return paid_open, net, mir


def test_one_trade_n_trades_and_cycles_pay_the_same_impact() -> None:
    """Issue 10, finding 2: the same round trip paid $53.7k of impact in one trade and $536 in 100.
    Now the impact of reaching a skew is the same however it is split, and a cycle back to the
    starting skew pays (at most a few token units of rounding) nothing net."""
    total = wad(200.0)  # $10M at $50k against $50M depth: F = 0.01 x 1e14 / 1e8 = $10,000
    one, net1, _ = _round_trip(1, 1, total)
    assert abs(one - 10_000 * USD) <= 1
    for n_open, n_close in [(5, 1), (20, 7), (50, 50)]:
        paid, net, mir = _round_trip(n_open, n_close, total)
        assert abs(paid - one) <= n_open + 1, (n_open, paid, one)
        assert 0 <= net <= n_open + n_close + 1, (n_open, n_close, net)
        assert mir.markets[DYN].impact_pool == net
    assert 0 <= net1 <= 2


@PROPS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-400, 400)), min_size=1, max_size=10))
def test_impact_pool_tracks_the_skew_stock(steps: list[tuple[int, int]]) -> None:
    """Any sequence of trades by several accounts: the pool holds the signed sum of every impact
    paid, and (the rebates never capped at constant depth) equals the stock F(skew) to rounding."""
    mir = make_mirror()
    for a in ACCOUNTS[:4]:
        mir.deposit(a, 5_000_000 * USD)
    t = T0
    paid = 0
    n = 0
    for i, units in steps:
        if units == 0:
            continue
        try:
            f = trade(mir, ACCOUNTS[i], DYN, units * WAD // 4, t)
        except MirrorRevert as e:
            assert e.error in ("InitialMarginViolated", "OpenInterestCapExceeded"), e
            t += 4000
            publish(mir, t)
            continue
        paid += f.impact
        n += 1
        t = f.t
    m = mir.markets[DYN]
    assert m.impact_pool == paid
    q = m.quote(True, 0, t)
    stock = div_up(skew_impact(q.impact_coef_wad, 0, m.skew, price_wad(mir), q.depth_usd_wad)[0], TOKEN_SCALE)
    assert abs(paid - stock) <= 2 * n + 1
    conserved(mir)


def test_rebates_are_capped_at_the_pool() -> None:
    """A rebate priced at a thinner depth than the charge would pay more than the pool holds: it is
    capped at the pool, so the vault never pays impact."""
    mir, a, t = funded(200_000, 10.0)
    pool = mir.markets[DYN].impact_pool
    assert pool > 0
    t += 10
    d = mir.markets[DYN].feeds["depth"]
    d.answer //= 20  # depth drops 20x: the stock is now 20x larger than the pool
    f = trade(mir, a, DYN, -mir.account(a).positions[DYN].size, t)
    assert f.impact == -pool and mir.markets[DYN].impact_pool == 0 and mir.impact_pools == 0
    conserved(mir)


def test_exit_cap_while_a_risk_feed_is_bad() -> None:
    """Mirror of the exit cap (old finding L2): with the depth feed bad the depth falls back to its
    floor; an exit that grows the skew pays at most its snapshotted slippage, pro rata, not the
    floor-priced integral; and makes no bad debt."""
    mir = make_mirror()
    a, b = ACCOUNTS[:2]
    mir.deposit(a, 20_000 * USD)
    mir.deposit(b, 2_000_000 * USD)
    f = trade(mir, a, DYN, open_size(mir, a, 5.0, 1), T0)
    g = trade(mir, b, DYN, -wad(100.0), f.t)  # skew now short: a's close grows it
    pos = mir.account(a).positions[DYN]
    snap, size = pos.slip_snap, pos.size
    assert snap > 0 and mir.markets[DYN].skew < 0
    mir.markets[DYN].feeds["depth"].answer = 0  # non-positive: bad
    q = mir.markets[DYN].quote(True, 0, g.t)
    assert not q.risk_feeds_ok and q.depth_usd_wad == mir.markets[DYN].feeds["depth"].min_wad
    half = -size // 2
    cap = exit_cap_usd(q, snap, half, size, price_wad(mir))
    assert cap == mul_wad_up(notional(half, price_wad(mir)), mul_div_up(snap, abs(half), abs(size)))
    uncapped = skew_impact(q.impact_coef_wad, mir.markets[DYN].skew, mir.markets[DYN].skew + half, price_wad(mir),
                           q.depth_usd_wad)[0]
    assert cap is not None and uncapped > 100 * cap
    bad0 = mir.bad_debt_total
    h = trade(mir, a, DYN, half, g.t)
    assert h.impact == div_up(cap, TOKEN_SCALE)
    assert exit_cap_usd(q, snap, -size * 2, size, price_wad(mir)) is None  # a flip is not capped
    trade(mir, a, DYN, -mir.account(a).positions[DYN].size, h.t)
    assert mir.bad_debt_total == bad0
    conserved(mir)


def test_open_interest_caps() -> None:
    mir = make_mirror()
    a, b = ACCOUNTS[:2]
    mir.deposit(a, 50_000_000 * USD)
    mir.deposit(b, 50_000_000 * USD)
    depth = 50_000_000 * WAD
    cap = mul_wad_down(depth, mir.oi_depth_mult_wad)  # $200M per side
    limit_size = cap * WAD // (50_000 * WAD)  # 4,000 BTC
    with pytest.raises(MirrorRevert) as info:
        trade(mir, a, DYN, limit_size + wad(0.01), T0)
    err, mid, is_long, oi_usd, c = (info.value.error, *info.value.data)
    assert (err, mid, is_long, c) == ("OpenInterestCapExceeded", DYN, True, cap)
    assert isinstance(oi_usd, int) and oi_usd > cap
    # Both sides count gross: a hedged pair cannot grow open interest past the cap either.
    f = trade(mir, a, DYN, wad(2_000.0), T0 + 4000)
    g = trade(mir, b, DYN, -wad(2_000.0), f.t)
    assert mir.markets[DYN].skew == 0
    mir.set_open_interest_cap(DYN, 100_000_000 * WAD)  # hard cap below the depth cap: $100M
    with pytest.raises(MirrorRevert) as info:
        trade(mir, a, DYN, wad(1.0), g.t)
    assert info.value.data[3] == 100_000_000 * WAD
    # Reductions are never refused by a cap.
    h = trade(mir, a, DYN, -wad(500.0), g.t + 4000)
    assert mir.account(a).positions[DYN].size == wad(1_500.0) and h.fee > 0
    with pytest.raises(MirrorRevert) as info:
        mir.set_open_interest_cap(9, 1)
    assert info.value.error == "MarketNotListed"
    conserved(mir)


# --------------------------------------------------------------------------- liquidation


def _two_markets(lev_dyn: float, lev_stat: float) -> tuple[EngineMirror, str, int]:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 10_000 * USD)
    f = trade(mir, a, DYN, open_size(mir, a, lev_dyn, 1), T0)
    g = trade(mir, a, STAT, open_size(mir, a, lev_stat, 1, STAT), f.t)
    return mir, a, g.t


def test_preferred_market_rule() -> None:
    mir, a, t = _two_markets(10.0, 10.0)
    t += 60
    publish(mir, t, 50_000.0 * 0.93)
    assert mir.health(a, t).liquidatable and mir.is_liquidatable(a, t)
    scores = {}
    for mid in (DYN, STAT):
        pos = mir.account(a).positions[mid]
        q = mir.markets[mid].quote(True, abs(pos.size), t)
        mmf = position_maintenance(q.mmf_base_wad, pos.slip_snap, q.max_mmf_wad)
        scores[mid] = mul_wad_down(mmf, mir.liq_target_ratio_wad) - (q.liq_fee_wad + exit_slip(q, pos.slip_snap))
    preferred = max(scores, key=lambda k: (scores[k], -k))
    other = STAT if preferred == DYN else DYN
    assert mir.liquidation_market(a, t) == preferred
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, preferred, t, KEEPER)
    assert (info.value.error, *info.value.data) == ("NotFlagged", a)
    t0 = t
    t = flag_and_wait(mir, a, t)
    with pytest.raises(MirrorRevert) as info:
        mir.flag_liquidation(a, t)
    assert (info.value.error, *info.value.data) == ("AlreadyFlagged", a, t0)
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, other, t, KEEPER)
    assert (info.value.error, *info.value.data) == ("LiquidationMarketNotPreferred", other, preferred)
    assert mir == before
    res = mir.liquidate(a, preferred, t, KEEPER)
    assert res.size_closed_wad < 0 and res.health_before.liquidatable and res.price_wad == price_wad(mir)
    assert a not in mir.flagged_at
    conserved(mir)
    healthy = ACCOUNTS[5]
    with pytest.raises(MirrorRevert) as info:
        mir.liquidation_market(healthy, t)
    assert info.value.error == "AccountHealthy"


def test_bad_price_market_cannot_shield_the_account() -> None:
    """Issue 10, finding 4: a dust position in a market whose price went bad used to block every
    liquidation of the account. Now that market is valued at its last good price moved against
    the position by max mmf, and the account's other market is liquidated."""
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 20_000 * USD)
    f = trade(mir, a, STAT, wad(0.0002), T0)  # $10 of dust
    g = trade(mir, a, DYN, open_size(mir, a, 14.0, 1), f.t)
    last = mir.markets[STAT].last_price_wad
    t = g.t + 600
    publish(mir, t, 50_000.0 * 0.9, mids=(DYN,))  # BTC -10%; market 1's price feed goes quiet ...
    mir.markets[STAT].feeds["price"].answer = 10**30  # ... and out of bounds: bad
    q = mir.markets[STAT].quote(True, 0, t)
    assert not q.price_ok and q.price_wad == 0 and q.price_time == 0
    h = mir.health(a, t)  # never raises
    assert h.liquidatable
    pos = mir.account(a).positions[STAT]
    val = mul_wad_down(last, WAD - q.max_mmf_wad)
    h_no_dust = copy.deepcopy(mir)
    h_no_dust.account(a).positions.pop(STAT)
    h_no_dust.markets[STAT].oi_long = 0
    eq_no = h_no_dust.health(a, t).equity_usd_wad
    from ballast.model import unrealized_pnl

    assert h.equity_usd_wad == eq_no + unrealized_pnl(pos.size, pos.basis, val)
    assert mir.liquidation_market(a, t) == DYN
    t = flag_and_wait(mir, a, t, mids=(DYN,))
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, STAT, t, KEEPER)
    assert (info.value.error, *info.value.data) == ("PriceFeedInvalid", STAT) and mir == before
    res = mir.liquidate(a, DYN, t, KEEPER)
    assert res.size_closed_wad < 0
    conserved(mir)


def test_crash_liquidates_and_conserves_with_bad_debt() -> None:
    mir = make_mirror()
    t = T0
    for i, a in enumerate(ACCOUNTS[:4]):
        mir.deposit(a, 10_000 * USD)
        t = trade(mir, a, DYN, open_size(mir, a, 12.0, 1 if i % 2 == 0 else -1), t).t
        t = trade(mir, a, STAT, open_size(mir, a, 8.0, 1, STAT), t).t
    conserved(mir)
    t += 300
    publish(mir, t, 50_000.0 * 0.80)  # -20%: the longs are far under water
    liquidated = 0
    for a in ACCOUNTS[:4]:
        while mir.is_liquidatable(a, t):
            t = flag_and_wait(mir, a, t)
            mid = mir.liquidation_market(a, t)
            res = mir.liquidate(a, mid, t, KEEPER)
            assert res.size_closed_wad != 0 and res.reward_tokens <= res.penalty_tokens
            liquidated += 1
            conserved(mir)
    assert liquidated >= 2 and mir.bad_debt_total > 0
    assert all(not mir.health(a, t).liquidatable for a in ACCOUNTS[:4])


# --------------------------------------------------------------------------- withdrawals


def test_withdrawal_counts_no_unrealized_profit() -> None:
    """Issue 10, finding 5: unrealized profit no longer backs a withdrawal; losses still count."""
    mir, a, t = funded(20_000, 12.0)
    t += 60
    publish(mir, t, 50_000.0 * 1.10)  # +10% on a 12x long: ~$24k of unrealized profit
    h = mir.health(a, t)
    c = mir.account(a).collateral
    pos = mir.account(a).positions[DYN]
    assert h.equity_usd_wad > c * TOKEN_SCALE + 20_000 * WAD
    # With profit counted, withdrawing the whole collateral would pass; without it, it cannot.
    assert h.equity_usd_wad - c * TOKEN_SCALE >= h.initial_usd_wad
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.withdraw(a, c, t)
    assert info.value.error == "InitialMarginViolated" and mir == before
    # Equity after the withdrawal: no collateral, the profit not counted, no funding (rate 0).
    assert info.value.data == (0, h.initial_usd_wad) and pos.size > 0
    # The part of collateral above the initial requirement is withdrawable.
    free = (c * TOKEN_SCALE - h.initial_usd_wad) // TOKEN_SCALE
    mir.withdraw(a, free - 10 * USD, t)
    conserved(mir)


@pytest.mark.parametrize("case", ["stale_for_withdrawal", "bad_price", "sequencer_down", "too_much", "zero"])
def test_withdrawal_price_rules(case: str) -> None:
    mir, a, t = funded(20_000, 2.0)
    t += 601  # the last publication is 601 s old: valid for trading (heartbeat 1 h), too old here
    if case == "bad_price":
        mir.markets[DYN].feeds["price"].answer = -1
    elif case == "sequencer_down":
        publish(mir, t)
        mir.sequencer_up = False
    elif case in ("too_much", "zero"):
        publish(mir, t)
    before = copy.deepcopy(mir)
    amount = {"too_much": mir.account(a).collateral + 1, "zero": 0}.get(case, 100 * USD)
    with pytest.raises(MirrorRevert) as info:
        mir.withdraw(a, amount, t)
    expected = {"stale_for_withdrawal": ("PriceTooOld", DYN, t - 601, 600), "bad_price": ("PriceFeedInvalid", DYN),
                "sequencer_down": ("SequencerDown",), "too_much": ("InsufficientCollateral", amount - 1, amount),
                "zero": ("ZeroAmount",)}[case]
    assert (info.value.error, *info.value.data) == expected
    assert mir == before
    if case == "stale_for_withdrawal":
        publish(mir, t)
        mir.withdraw(a, 100 * USD, t)  # fresh price: fine
        conserved(mir)


def test_withdrawal_without_positions_needs_no_price() -> None:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 1_000 * USD)
    for f in mir.markets[DYN].feeds.values():
        f.reverting = True
    mir.withdraw(a, 1_000 * USD, T0 + 10**6)
    assert mir.account(a).collateral == 0
    conserved(mir)


# --------------------------------------------------------------------------- funding


def _set_funding(mir: EngineMirror, rate: float, at: int) -> None:
    f = mir.markets[DYN].feeds["funding"]
    f.answer = round(rate * 10**f.decimals)
    f.updated_at = at


def test_funding_switches_at_the_feeds_publication_time() -> None:
    mir = make_mirror()
    p = price_wad(mir)
    _set_funding(mir, 0.001, T0)
    mir.accrue_funding(DYN, T0)  # the first accrual starts the index
    m = mir.markets[DYN]
    assert (m.funding_index, m.last_rate, m.last_accrual, m.last_price_wad) == (0, 10**15, T0, p)
    _set_funding(mir, -0.002, T0 + 1_000)  # published at +1000 s, accrued only at +3000 s
    publish(mir, T0 + 3_000, mids=(DYN,))
    mir.markets[DYN].feeds["funding"].updated_at = T0 + 1_000
    idx = mir.accrue_funding(DYN, T0 + 3_000)
    assert idx == funding_index_delta(10**15, p, 1_000) + funding_index_delta(-2 * 10**15, p, 2_000)
    assert m.last_rate == -2 * 10**15
    # A funding answer published before the last accrual applies from the last accrual.
    idx2 = mir.accrue_funding(DYN, T0 + 3_600)
    assert idx2 == idx + funding_index_delta(-2 * 10**15, p, 600)
    # While the funding feed is bad the last rate is held for the whole interval.
    mir.markets[DYN].feeds["funding"].answer = 10**9  # out of bounds
    publish(mir, T0 + 5_000, mids=(DYN,))
    mir.markets[DYN].feeds["funding"].updated_at = T0 + 5_000
    idx3 = mir.accrue_funding(DYN, T0 + 5_000)
    assert idx3 == idx2 + funding_index_delta(-2 * 10**15, p, 1_400) and m.last_rate == -2 * 10**15


def test_trades_do_not_set_the_funding_rate() -> None:
    """Issue 10: the rate recorded at an accrual is the feed's, whoever triggers it."""
    mir, a, t = funded(100_000, 3.0, -1)
    _set_funding(mir, 0.004, t)  # the feed says longs pay 0.4%/h
    f = trade(mir, a, DYN, -wad(1.0), t)
    assert mir.markets[DYN].last_rate == 4 * 10**15
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.accrue_funding(7, f.t)
    assert info.value.error == "MarketNotListed" and mir == before
    mir.markets[DYN].feeds["price"].reverting = True
    before = copy.deepcopy(mir)
    with pytest.raises(MirrorRevert) as info:
        mir.accrue_funding(DYN, f.t)
    assert (info.value.error, *info.value.data) == ("PriceFeedInvalid", DYN) and mir == before


# --------------------------------------------------------------------------- reverts


@pytest.mark.parametrize("case", ["over_leverage", "stale_price", "sequencer_down", "zero_size", "zero_deposit",
                                  "unknown_account", "no_fee", "unknown_market", "healthy", "no_position"])
def test_reverting_calls_leave_the_mirror_unchanged(case: str) -> None:
    mir, a, t = funded()
    t = trade(mir, a, STAT, open_size(mir, a, 5.0, -1, STAT), t + 60, 49_000.0).t
    held = mir.markets[DYN]  # a reference taken before the revert (the lab holds one per block)
    held_feeds = held.feeds
    expected = {"over_leverage": "InitialMarginViolated", "stale_price": "PriceFeedInvalid",
                "sequencer_down": "SequencerDown", "zero_size": "ZeroSize", "zero_deposit": "ZeroAmount",
                "unknown_account": "InsufficientCollateral", "no_fee": "InsufficientCollateral",
                "unknown_market": "MarketNotListed", "healthy": "NotFlagged", "no_position": "NoPosition"}[case]
    if case in ("over_leverage", "stale_price", "sequencer_down"):
        delta = {"over_leverage": open_size(mir, a, 150.0, 1), "stale_price": -1,
                 "sequencer_down": open_size(mir, a, 1.0, 1)}[case]
        mir.commit(a, DYN, delta, t)
        prev = mir.markets[DYN].feeds["price"].updated_at
        publish(mir, t + 1)
        fill = price_wad(mir)
        now = t + 1
        if case == "stale_price":  # the settlement round is fine, the next (latest) one is out of bounds
            f = mir.markets[DYN].feeds["price"]
            f.answer, f.updated_at, now = 10**30, t + 2, t + 2
        if case == "sequencer_down":
            mir.sequencer_up = False  # accrues, settles, writes, then reverts
        before = copy.deepcopy(mir)
        with pytest.raises(MirrorRevert) as info:
            mir.settle(a, DYN, fill, t + 1, prev, now, KEEPER)
    else:
        before = copy.deepcopy(mir)
        with pytest.raises(MirrorRevert) as info:
            if case == "zero_size":
                mir.commit(a, DYN, 0, t)
            elif case == "zero_deposit":
                mir.deposit(a, 0)
            elif case == "unknown_account":
                mir.withdraw(ACCOUNTS[5], 1, t)
            elif case == "no_fee":
                mir.commit(ACCOUNTS[5], DYN, wad(1.0), t)
            elif case == "unknown_market":
                mir.commit(a, 9, wad(1.0), t)
            elif case == "healthy":
                mir.liquidate(a, DYN, t, KEEPER)
            else:
                mir.liquidate(ACCOUNTS[5], DYN, t, KEEPER)
    assert info.value.error == expected, info.value
    assert mir == before, f"{case} changed the mirror"
    assert mir.markets[DYN] is held, "a revert must restore the market in place, not replace the object"
    assert mir.markets[DYN].feeds is held_feeds, "nor its feeds"
    assert ACCOUNTS[5] not in mir.accounts
    conserved(mir)


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("seed", range(3))
def test_random_sequences_conserve_tokens_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mir = make_mirror()
    conserved(mir)
    now, price = T0, 50_000.0
    deposited = {a: 0 for a in ACCOUNTS}
    outcomes: dict[str, int] = {}

    def keeper_round(t: int, px: float | None, vol: float | None) -> int:
        """The keepers publish every feed at ``t``, then settle each order whose first round this
        is (and, now and then, one whose round it is not: that must revert and change nothing)."""
        prev = {m_: mir.markets[m_].feeds["price"].updated_at for m_ in mir.markets}
        publish(mir, t, px, vol=vol)
        for (acc, m_) in sorted(mir.orders):
            frm, _ = mir.order_times(acc, m_)
            if not prev[m_] < frm <= t and rng.random() > 0.1:
                continue
            snap = copy.deepcopy(mir)
            try:
                mir.settle(acc, m_, price_wad(mir, m_), t, prev[m_], t, KEEPER)
                outcomes["settled"] = outcomes.get("settled", 0) + 1
            except MirrorRevert as e:
                assert mir == snap, f"settle reverted with {e} but changed the mirror"
                outcomes[e.error] = outcomes.get(e.error, 0) + 1
            conserved(mir)
        return t

    for step in range(500):
        a = ACCOUNTS[int(rng.integers(len(ACCOUNTS)))]
        mid = int(rng.integers(2))
        op = str(rng.choice(["deposit", "open", "open", "reduce", "close", "settle", "settle", "move", "move",
                             "liquidate", "withdraw", "cancel", "accrue"]))
        before = copy.deepcopy(mir)
        try:
            if op == "deposit" or deposited[a] == 0:
                amt = int(rng.integers(100, 50_000)) * USD
                mir.deposit(a, amt)
                deposited[a] += amt
                op = "deposit"
            elif op == "open":
                lev = float(rng.choice([1.0, 5.0, 20.0, 60.0, 200.0]))  # some exceed the limit and revert at settle
                delta = open_size(mir, a, lev, int(rng.choice([-1, 1])), mid)
                mir.commit(a, mid, delta, now)
            elif op in ("reduce", "close"):
                pos = mir.account(a).positions.get(mid)
                if pos is None or pos.size == 0:
                    continue
                if op == "close":
                    mir.commit(a, mid, 0, now, close_all=True)
                else:
                    mir.commit(a, mid, -(pos.size // int(rng.integers(2, 5))) or -pos.size, now)
            elif op == "settle":
                now = keeper_round(now + int(rng.integers(1, 30)), None, None)
            elif op == "cancel":
                for (acc, m_) in sorted(mir.orders):
                    _, exp = mir.order_times(acc, m_)
                    if exp < now:
                        mir.cancel_expired(acc, m_, now)
            elif op == "move":
                now += int(rng.integers(12, 900))
                shock = float(rng.normal(0.0, 0.02)) + (-0.15 if rng.random() < 0.05 else 0.0)
                price = float(np.clip(price * math.exp(shock), 1_000.0, 1e6))
                f = mir.markets[DYN].feeds["funding"]
                f.answer = round(float(rng.uniform(-0.002, 0.002)) * 10**f.decimals)
                keeper_round(now, price, float(np.clip(0.5 + rng.normal(0, 0.2), 0.1, 3.0)))
                if rng.random() < 0.1:
                    now += 4_000  # every order's window passes; prices go stale until the next move
            elif op == "liquidate":
                liq = [acc for acc in mir.accounts if mir.is_liquidatable(acc, now)]
                if liq:
                    x = liq[0]
                    if mir.flagged_at.get(x, 0) + mir.order_min_delay_sec < now:
                        mir.flag_liquidation(x, now)
                        outcomes["flag"] = outcomes.get("flag", 0) + 1
                    now = keeper_round(now + mir.order_min_delay_sec, None, None)
                    before = copy.deepcopy(mir)
                    res = mir.liquidate(x, mir.liquidation_market(x, now), now, KEEPER)
                    assert res.reward_tokens <= res.penalty_tokens and res.health_before.liquidatable
                else:
                    mir.liquidate(a, mid, now, KEEPER)
            elif op == "accrue":
                mir.accrue_funding(mid, now)
            else:
                mir.withdraw(a, int(rng.integers(1, 20_000)) * USD, now)
            outcomes[op] = outcomes.get(op, 0) + 1
        except MirrorRevert as e:
            assert mir == before, f"step {step}: {op} reverted with {e} but changed the mirror"
            outcomes[e.error] = outcomes.get(e.error, 0) + 1
        conserved(mir)
    # The sequence exercised what it claims to.
    assert outcomes.get("settled", 0) > 30 and outcomes.get("close", 0) > 3, outcomes
    assert outcomes.get("InitialMarginViolated", 0) > 3 and outcomes.get("withdraw", 0) > 5, outcomes
    assert outcomes.get("liquidate", 0) + outcomes.get("AccountHealthy", 0) > 0, outcomes


def test_liquidation_settles_at_the_first_price_after_the_flag() -> None:
    """Two-step liquidation: flag, then liquidate only while the live price is the first round
    published at or after flag + min delay (nobody knew it when flagging)."""
    mir, a, t = funded(20_000, 14.0)
    t += 60
    publish(mir, t, 50_000.0 * 0.9)
    assert mir.is_liquidatable(a, t)
    with pytest.raises(MirrorRevert) as info:
        mir.flag_liquidation(ACCOUNTS[4], t)
    assert (info.value.error, *info.value.data) == ("NoPosition", ACCOUNTS[4], 2**256 - 1)
    mir.flag_liquidation(a, t)
    before = copy.deepcopy(mir)
    f = mir.markets[DYN].feeds["price"]
    with pytest.raises(MirrorRevert) as info:  # the live price is the one the flagger saw
        mir.liquidate(a, DYN, t + 5, KEEPER)
    assert (info.value.error, *info.value.data) == ("SettlementRoundInvalid", f.round_id, t, t + 1, f.prev_updated_at)
    assert mir == before
    publish(mir, t + 1)
    publish(mir, t + 2)  # a second round after the flag: the first one has passed
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, DYN, t + 2, KEEPER)
    assert (info.value.error, *info.value.data) == ("SettlementRoundInvalid", f.round_id, t + 2, t + 1, t + 1)
    t2 = flag_and_wait(mir, a, t + 2)  # a stale flag can be set again
    res = mir.liquidate(a, DYN, t2, KEEPER)
    assert res.size_closed_wad < 0 and a not in mir.flagged_at
    conserved(mir)
