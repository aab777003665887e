"""Deploy, open positions, crash the price feed, liquidate, and check every balance to the wei
against the Python mirror of the engine (ballast.mirror)."""

import brownie
from brownie import accounts, chain

from ballast.mirror import EngineMirror, Feed, MarketMirror
from ballast.model import Ramp

USDC = 10**6
WAD = 10**18


def _mirror(system):
    e, c, m = system["engine"], system["controller"], system["market"]
    mir = EngineMirror(e.tradingFeeWad(), e.feeInsuranceShareWad(), e.liquidatorShareWad(), e.liqTargetRatioWad(),
                       e.tokenScale())
    feeds = {}
    for i, k in enumerate(("price", "volatility", "funding", "depth", "skew")):
        f = system["feeds"][k]
        cfg = c.feedConfig(m.id, i)
        _, ans, _, upd, _ = f.latestRoundData()
        feeds[k] = Feed(ans, f.decimals(), upd, cfg[1], cfg[2], cfg[3])
    mm = MarketMirror(m.id, feeds, "dynamic", params=m.params)
    mm.ramps = [Ramp(*c.ramp(m.id, True)), Ramp(*c.ramp(m.id, False))]
    mir.markets[m.id] = mm
    mir.vault, mir.insurance, mir.net_deposits = e.vaultBalance(), e.insuranceFund(), e.netDeposits()
    return mir


def _sync_feed(mir, system, kind):
    f = system["feeds"][kind]
    _, ans, _, upd, _ = f.latestRoundData()
    mir.markets[0].feeds[kind].answer, mir.markets[0].feeds[kind].updated_at = ans, upd


def test_crash_liquidate_balances_to_the_wei(system):
    e, usd, admin, c = system["engine"], system["usd"], system["admin"], system["controller"]
    usd.mint(admin, 10_000_000 * USDC, {"from": admin})
    usd.approve(e, 2**256 - 1, {"from": admin})
    e.fundVault(5_000_000 * USDC, {"from": admin})
    e.fundInsurance(200_000 * USDC, {"from": admin})
    mir = _mirror(system)
    traders = accounts[1:4]
    liquidator = accounts[5]
    sizes = [2 * WAD, 1 * WAD, -3 * WAD // 2]  # 2 BTC long, 1 BTC long, 1.5 BTC short
    for t, deposit, size in zip(traders, [10_000, 2_500, 8_000], sizes):
        usd.mint(t, deposit * USDC, {"from": t})
        usd.approve(e, 2**256 - 1, {"from": t})
        e.deposit(deposit * USDC, {"from": t})
        mir.deposit(t.address, deposit * USDC)
        tx = e.trade(0, size, 0, {"from": t})
        ev = tx.events["PositionModified"]
        realized, fee, impact = mir.trade(t.address, 0, size, tx.timestamp)
        assert (ev["realizedPnlTokens"], ev["feeTokens"], ev["impactTokens"]) == (realized, fee, impact)

    # A position too large for its margin is refused with the typed error.
    with brownie.reverts():
        e.trade(0, 100 * WAD, 0, {"from": traders[1]})

    # Crash: -12% in one update; push vol up too, then let an hour pass.
    chain.sleep(600)
    system["feeds"]["price"].transmit(44_000 * 10**8, {"from": admin})
    system["feeds"]["volatility"].transmit(150_000_000, {"from": admin})
    for k in ("price", "volatility"):
        _sync_feed(mir, system, k)
    for k in ("funding", "depth", "skew"):
        system["feeds"][k].transmit(system["feeds"][k].latestRoundData()[1], {"from": admin})
        _sync_feed(mir, system, k)
    now = chain[-1].timestamp
    liquidatable = [t for t in traders if e.isLiquidatable(t)]
    assert {t.address for t in liquidatable} == {t.address for t in traders if mir.health(t.address, now).liquidatable}
    assert traders[1] in liquidatable and traders[0] in liquidatable and traders[2] not in liquidatable

    for t in liquidatable:
        before = usd.balanceOf(liquidator)
        tx = e.liquidate(t, 0, {"from": liquidator})
        res = mir.liquidate(t.address, 0, tx.timestamp)
        ev = tx.events["Liquidated"]
        assert ev["sizeClosedWad"] == res.size_closed_wad
        assert ev["penaltyTokens"] == res.penalty_tokens
        assert usd.balanceOf(liquidator) - before == res.reward_tokens
        if "BadDebt" in tx.events:
            assert tx.events["BadDebt"]["amountTokens"] == res.bad_debt_tokens

    # A healthy account cannot be liquidated.
    with brownie.reverts():
        e.liquidate(traders[2], 0, {"from": liquidator})

    # Every balance, to the wei.
    for t in traders:
        assert e.collateralOf(t) == mir.account(t.address).collateral
        p = e.position(t, 0)
        mp = mir.account(t.address).positions[0]
        assert (p[0], p[1], p[2], p[3]) == (mp.size, mp.basis, mp.funding_index, mp.slip_snap)
    assert e.vaultBalance() == mir.vault
    assert e.insuranceFund() == mir.insurance
    assert e.protocolFees() == mir.fees
    assert e.badDebtTotal() == mir.bad_debt_total
    assert e.netDeposits() == mir.net_deposits
    assert usd.balanceOf(e) == mir.sum_collateral() + mir.vault + mir.insurance + mir.fees
    assert [int(x) for x in e.openInterest(0)] == [mir.markets[0].oi_long, mir.markets[0].oi_short]
