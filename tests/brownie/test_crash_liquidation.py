"""Deploy, open positions through orders (commit, a later price round, settle), crash the price
feed, flag and liquidate at the next round, and check every balance to the wei against the Python
mirror of the engine (ballast.mirror)."""

import brownie
from brownie import accounts, chain

from ballast.mirror import EngineMirror, Feed, MarketMirror
from ballast.model import Ramp

USDC = 10**6
WAD = 10**18
PRICE_SCALE = 10**10  # 8-decimal feed answers to WAD


def _mirror(system, cfg):
    e, c, m = system["engine"], system["controller"], system["market"]
    mir = EngineMirror.from_engine_config(cfg.engine.engine_config_tuple(), e.tokenScale())
    feeds = {}
    for i, k in enumerate(("price", "volatility", "funding", "depth", "skew")):
        f = system["feeds"][k]
        fc = c.feedConfig(m.id, i)
        rid, ans, _, upd, _ = f.latestRoundData()
        feeds[k] = Feed(ans, f.decimals(), upd, fc[1], fc[2], fc[3], round_id=rid)
    mm = MarketMirror(m.id, feeds, "dynamic", params=m.params)
    mm.ramps = [Ramp(*c.ramp(m.id, True)), Ramp(*c.ramp(m.id, False))]
    mir.markets[m.id] = mm
    mir.vault, mir.insurance, mir.net_deposits = e.vaultBalance(), e.insuranceFund(), e.netDeposits()
    return mir


def _push(mir, system, kind, answer):
    """Transmit a new round (a second after the last block) and mirror it."""
    chain.sleep(1)
    tx = system["feeds"][kind].transmit(answer, {"from": system["admin"]})
    mir.markets[0].feeds[kind].push(answer, tx.timestamp)
    return tx


def _settle(mir, system, t, settler):
    """Publish the round after the commit (same price) and settle the order at it, chain and mirror."""
    e, feed = system["engine"], system["feeds"]["price"]
    f = mir.markets[0].feeds["price"]
    _push(mir, system, "price", f.answer)
    rid, ans, _, upd, _ = feed.latestRoundData()
    tx = e.settleOrder(t, 0, rid, {"from": settler})
    realized, fee, impact = mir.settle(t.address, 0, ans * PRICE_SCALE, upd, f.prev_updated_at, tx.timestamp,
                                       settler.address, round_id=rid)
    return tx, (realized, fee, impact)


def test_crash_liquidate_balances_to_the_wei(system, cfg):
    e, usd, admin = system["engine"], system["usd"], system["admin"]
    usd.mint(admin, 10_000_000 * USDC, {"from": admin})
    usd.approve(e, 2**256 - 1, {"from": admin})
    e.fundVault(5_000_000 * USDC, {"from": admin})
    e.fundInsurance(200_000 * USDC, {"from": admin})
    mir = _mirror(system, cfg)
    traders = accounts[1:4]
    liquidator, settler = accounts[5], accounts[6]
    sizes = [2 * WAD, 1 * WAD, -3 * WAD // 2]  # 2 BTC long, 1 BTC long, 1.5 BTC short
    for t, deposit, size in zip(traders, [10_000, 2_500, 8_000], sizes):
        usd.mint(t, deposit * USDC, {"from": t})
        usd.approve(e, 2**256 - 1, {"from": t})
        e.deposit(deposit * USDC, {"from": t})
        mir.deposit(t.address, deposit * USDC)
        tx = e.commitOrder(0, size, 0, {"from": t})
        o = mir.commit(t.address, 0, size, tx.timestamp)
        ev = tx.events["OrderCommitted"]
        assert (ev["sizeDeltaWad"], ev["settlementFeeTokens"]) == (size, o.fee_tokens)
        assert (ev["settleFromSec"], ev["expiresAtSec"]) == mir.order_times(t.address, 0)
        fee_before, wallet_before = e.collateralOf(settler), usd.balanceOf(settler)
        tx, (realized, fee, impact) = _settle(mir, system, t, settler)
        ev = tx.events["PositionModified"]
        assert (ev["realizedPnlTokens"], ev["feeTokens"], ev["impactTokens"]) == (realized, fee, impact)
        assert tx.events["OrderSettled"]["settlementFeeTokens"] == o.fee_tokens
        # the fee is credited to the settler's engine account, no token moves
        assert e.collateralOf(settler) - fee_before == o.fee_tokens and usd.balanceOf(settler) == wallet_before

    # A position too large for its margin: the commit is accepted, its settlement refused.
    tx = e.commitOrder(0, 100 * WAD, 0, {"from": traders[1]})
    mir.commit(traders[1].address, 0, 100 * WAD, tx.timestamp)
    _push(mir, system, "price", mir.markets[0].feeds["price"].answer)
    with brownie.reverts():
        e.settleOrder(traders[1], 0, system["feeds"]["price"].latestRoundData()[0], {"from": settler})

    # Crash: -12% in one update; push vol up too, then let an hour pass.
    chain.sleep(600)
    _push(mir, system, "price", 44_000 * 10**8)
    _push(mir, system, "volatility", 150_000_000)
    for k in ("funding", "depth", "skew"):
        _push(mir, system, k, system["feeds"][k].latestRoundData()[1])
    now = chain[-1].timestamp
    liquidatable = [t for t in traders if e.isLiquidatable(t)]
    assert {t.address for t in liquidatable} == {t.address for t in traders if mir.is_liquidatable(t.address, now)}
    assert traders[1] in liquidatable and traders[0] in liquidatable and traders[2] not in liquidatable

    # Two steps: flag, then liquidate at the first price round after flag + min delay.
    for t in liquidatable:
        assert e.liquidationMarket(t) == mir.liquidation_market(t.address, now) == 0
        tx = e.flagLiquidation(t, {"from": liquidator})
        mir.flag_liquidation(t.address, tx.timestamp)
    with brownie.reverts():  # no round since the flag yet
        e.liquidate(liquidatable[0], 0, {"from": liquidator})
    _push(mir, system, "price", 44_000 * 10**8)
    for t in liquidatable:
        before = e.collateralOf(liquidator)
        tx = e.liquidate(t, 0, {"from": liquidator})
        res = mir.liquidate(t.address, 0, tx.timestamp, liquidator.address)
        ev = tx.events["Liquidated"]
        assert ev["sizeClosedWad"] == res.size_closed_wad
        assert ev["penaltyTokens"] == res.penalty_tokens
        st = tx.events["LiquidationSettled"]
        assert (st["realizedPnlTokens"], st["impactTokens"], st["remainingSizeWad"]) == (
            res.realized_tokens, res.impact_tokens, res.remaining_size_wad)
        assert e.collateralOf(liquidator) - before == res.reward_tokens  # credited in the engine
        if "BadDebt" in tx.events:
            assert tx.events["BadDebt"]["amountTokens"] == res.bad_debt_tokens

    # A healthy account cannot be flagged.
    with brownie.reverts():
        e.flagLiquidation(traders[2], {"from": liquidator})

    # Every balance, to the wei (the refused order is still pending: its fee stays in escrow).
    for t in list(traders) + [liquidator, settler]:
        assert e.collateralOf(t) == mir.account(t.address).collateral
        p = e.position(t, 0)
        mp = mir.account(t.address).positions.get(0)
        assert (p[0], p[1], p[2], p[3]) == ((mp.size, mp.basis, mp.funding_index, mp.slip_snap) if mp else (0, 0, 0, 0))
    assert e.vaultBalance() == mir.vault
    assert e.insuranceFund() == mir.insurance
    assert e.protocolFees() == mir.fees
    assert e.orderEscrow() == mir.order_escrow > 0
    assert e.impactPools() == mir.impact_pools
    assert e.badDebtTotal() == mir.bad_debt_total
    assert e.netDeposits() == mir.net_deposits
    assert usd.balanceOf(e) == mir.token_balance() == mir.net_deposits
    assert [int(x) for x in e.openInterest(0)] == [mir.markets[0].oi_long, mir.markets[0].oi_short]
