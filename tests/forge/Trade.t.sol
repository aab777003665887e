// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MarginMath} from "../../contracts/libraries/MarginMath.sol";
import {Health, Position} from "../../interfaces/IMarginEngine.sol";
import {FeedKind, MarketQuote} from "../../interfaces/ILeverageController.sol";

/// @notice `trade` and `closePosition`: open, increase, reduce, close, flip, price limit, fees and
/// impact to the wei, funding accrual and settlement, and cross margin over a second market (ETH).
contract TradeTest is BaseTest {
    using FixedPointMathLib for uint256;

    uint256 internal constant ETH = 1;

    function beforeSeal() internal override {
        // ETH: 3000 USD, 80% vol, 20M USD depth.
        listExtraMarket(ETH, 3_000, 0.8e8, 20_000_000);
    }

    function trade(address who, uint256 market, int256 delta) internal {
        vm.prank(who);
        engine.trade(market, delta, 0);
    }

    /// @dev Expected fee and impact (token units) of trading `absSize` at `priceWad` in a market of
    /// `depthUsdWad` depth with the default impact 1%: every step rounds up.
    function costs(uint256 absSize, uint256 priceWad, uint256 depthUsdWad)
        internal
        pure
        returns (uint256 feeTokens, uint256 impactTokens)
    {
        uint256 n = absSize.mulWadUp(priceWad);
        feeTokens = n.mulWadUp(0.0005e18).divUp(1e12);
        uint256 impactWad = uint256(0.01e18).mulDivUp(n, depthUsdWad);
        impactTokens = n.mulWadUp(impactWad).divUp(1e12);
    }

    // ================================================================ open

    function test_trade_openLongChargesFeeAndImpactToTheWei() public {
        fund(alice, 10_000 * USDC);
        int256 v0 = engine.vaultBalance();
        uint256 i0 = engine.insuranceFund();
        uint256 f0 = engine.protocolFees();
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, 2e18, 2e18, 50_000e18, 0, 50 * USDC, 2 * USDC);
        open(alice, 2e18);

        // Notional 100k: fee 0.05% = 50, impact 1% * 100k / 50M = 0.002% of 100k = 2.
        assertEq(engine.collateralOf(alice), int256(9_948 * USDC));
        assertEq(engine.vaultBalance(), v0 + int256(2 * USDC));
        assertEq(engine.insuranceFund(), i0 + 25 * USDC);
        assertEq(engine.protocolFees(), f0 + 25 * USDC);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 2e18);
        assertEq(p.basisUsdWad, 100_000e18);
        assertEq(p.fundingIndexWad, 0);
        assertEq(p.slipSnapWad, 0.00002e18);
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l, 2e18);
        assertEq(s, 0);
        assertEq(engine.openMarkets(alice), 1);
        assertConserved();
    }

    /// @dev An odd size: every cost rounds up to the next token unit, the basis up to the next wei.
    function test_trade_oddSizeRoundsCostsUp() public {
        fund(alice, 10_000 * USDC);
        uint256 i0 = engine.insuranceFund();
        uint256 f0 = engine.protocolFees();
        int256 size = 1.234567890123456789e18;
        open(alice, size);
        // notional 61728.39450617283945 USD: fee 30.864197253086419725 -> 30.864198,
        // impact fraction ceil(0.01 * n / 50M) = 12345678901235 wei, impact 0.762078937661968511 -> 0.762079.
        assertEq(engine.collateralOf(alice), int256(10_000 * USDC - 30_864_198 - 762_079));
        assertEq(engine.insuranceFund(), i0 + 15_432_099);
        assertEq(engine.protocolFees(), f0 + 15_432_099);
        assertEq(engine.position(alice, BTC).basisUsdWad, 61_728_394_506_172_839_450_000);
        assertEq(engine.position(alice, BTC).slipSnapWad, 12_345_678_901_235);
        (uint256 fee, uint256 imp) = costs(uint256(size), 50_000e18, 50_000_000e18);
        assertEq(fee, 30_864_198);
        assertEq(imp, 762_079);
        assertConserved();
    }

    function test_trade_openShort() public {
        fund(alice, 10_000 * USDC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -2e18, -2e18, 50_000e18, 0, 50 * USDC, 2 * USDC);
        open(alice, -2e18);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, -2e18);
        assertEq(p.basisUsdWad, -100_000e18);
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l, 0);
        assertEq(s, 2e18);
        // A short gains when the price falls.
        setPrice(45_000);
        assertEq(engine.health(alice).equityUsdWad, 9_948e18 + 10_000e18);
        assertConserved();
    }

    function test_trade_revertsOnZeroSize() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(ErrorsLib.ZeroSize.selector);
        engine.trade(BTC, 0, 0);
    }

    function test_trade_revertsOnUnlistedMarket() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 7));
        engine.trade(7, 1e18, 0);
    }

    function test_trade_revertsOnSizeOverflow() public {
        fund(alice, 10_000 * USDC);
        int256 delta = int256(type(int128).max) + 1;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SizeOverflow.selector, delta));
        engine.trade(BTC, delta, 0);
    }

    /// @dev Too much leverage: the error carries the post-trade equity and the post-trade requirement.
    function test_trade_revertsAboveInitialMargin() public {
        fund(alice, 1_000 * USDC);
        // The requirement of the same position, measured on a richer copy of alice.
        uint256 snap = vm.snapshotState();
        fund(alice, 100_000 * USDC);
        open(alice, 1e18);
        uint256 initial = engine.health(alice).initialUsdWad;
        vm.revertToState(snap);
        // 1 BTC = 50k at ~35x max: 1k collateral minus fee 25 and impact 0.5 is not enough.
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, int256(974.5e18), initial));
        engine.trade(BTC, 1e18, 0);
    }

    /// @dev At exactly the max leverage the open passes and the account is not liquidatable.
    function test_trade_openAtMaxLeverageNotLiquidatable() public {
        fund(alice, 10_000 * USDC);
        MarketQuote memory q = controller.quote(BTC, true, 0, 0);
        // size whose requirement roughly equals the equity: then shave until it passes.
        uint256 size = uint256(9_900e18).divWad(q.imfWad).divWad(50_000e18);
        bool ok;
        for (uint256 i; i < 50 && !ok; ++i) {
            vm.prank(alice);
            try engine.trade(BTC, int256(size), 0) {
                ok = true;
            } catch {
                size = size * 995 / 1000;
            }
        }
        assertTrue(ok);
        Health memory h = engine.health(alice);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad));
        assertFalse(engine.isLiquidatable(alice));
        // Within 5% of the cap.
        assertGt(h.initialUsdWad, uint256(h.equityUsdWad) * 95 / 100);
    }

    // ================================================================ increase, reduce, close, flip

    function test_trade_increaseAddsBasisAtNewPrice() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(52_000);
        open(alice, 1e18);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 2e18);
        assertEq(p.basisUsdWad, 102_000e18);
        // slip of the whole 104k position at 52k: 0.01 * 104k / 50M
        assertEq(p.slipSnapWad, 0.0000208e18);
        // open: fee 25 + impact 0.5; increase: fee 26 + impact 52k * 0.00104% = 0.5408
        assertEq(engine.collateralOf(alice), int256(10_000 * USDC - 25 * USDC - 500_000 - 26 * USDC - 540_800));
        (uint256 fee, uint256 imp) = costs(1e18, 52_000e18, 50_000_000e18);
        assertEq(fee, 26 * USDC);
        assertEq(imp, 540_800);
        assertConserved();
    }

    function test_trade_reduceRealizesProRataPnl() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(55_000);
        int256 c0 = engine.collateralOf(alice);
        int256 v0 = engine.vaultBalance();
        // Closing 0.5 of 2 releases a quarter of the 100k basis; realized = 27.5k - 25k = 2.5k.
        // Fee on 27.5k = 13.75; impact 0.01 * 27.5k / 50M = 5.5e-6 -> 0.15125.
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -0.5e18, 1.5e18, 55_000e18, int256(2_500 * USDC), 13_750_000, 151_250);
        open(alice, -0.5e18);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 1.5e18);
        assertEq(p.basisUsdWad, 75_000e18);
        assertEq(p.slipSnapWad, 0.00002e18, "a reduction keeps the slip snapshot");
        assertEq(engine.collateralOf(alice), c0 + int256(2_500 * USDC) - 13_750_000 - 151_250);
        assertEq(engine.vaultBalance(), v0 - int256(2_500 * USDC) + 151_250);
        (uint256 l,) = engine.openInterest(BTC);
        assertEq(l, 1.5e18);
        assertConserved();
    }

    /// @dev A reduction is allowed even below the initial requirement (it only lowers risk).
    function test_trade_reduceAllowedWhenBelowInitial() public {
        fund(alice, 5_000 * USDC);
        open(alice, 2e18);
        setPrice(48_500);
        Health memory h = engine.health(alice);
        assertLt(h.equityUsdWad, int256(h.initialUsdWad));
        open(alice, -0.1e18);
        assertEq(engine.position(alice, BTC).sizeWad, 1.9e18);
    }

    function test_closePosition_closesAllAndClearsState() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(49_000);
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 0);
        assertEq(p.basisUsdWad, 0);
        assertEq(p.slipSnapWad, 0);
        assertEq(engine.openMarkets(alice), 0);
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l + s, 0);
        // realized -2000; close costs at 98k: fee 49, impact 98k * 0.00196% = 1.9208
        assertEq(engine.collateralOf(alice), int256(9_948 * USDC - 2_000 * USDC - 49 * USDC - 1_920_800));
        Health memory h = engine.health(alice);
        assertEq(h.maintenanceUsdWad, 0);
        assertEq(h.notionalUsdWad, 0);
        assertConserved();
    }

    function test_closePosition_revertsWithoutPosition() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPosition.selector, alice, BTC));
        engine.closePosition(BTC, 0);
    }

    function test_trade_flipLongToShort() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(48_000);
        // Sell 3 at 48k: realize -2000 on the long, open a 2 short at basis -96k.
        // fee on 144k = 72, impact 0.01 * 144k / 50M = 2.88e-5 -> 4.1472.
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -3e18, -2e18, 48_000e18, -int256(2_000 * USDC), 72 * USDC, 4_147_200);
        open(alice, -3e18);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, -2e18);
        assertEq(p.basisUsdWad, -96_000e18);
        assertEq(p.slipSnapWad, 0.0000192e18, "a flip snapshots the new side's slip");
        assertEq(engine.collateralOf(alice), int256(10_000 * USDC - 25_500_000 - 2_000 * USDC - 72 * USDC - 4_147_200));
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l, 0);
        assertEq(s, 2e18);
        assertConserved();
    }

    /// @dev A flip is new risk: it is checked against the initial requirement of the new side.
    function test_trade_flipCheckedAgainstInitial() public {
        fund(alice, 2_000 * USDC);
        open(alice, 0.5e18);
        vm.prank(alice);
        vm.expectRevert(); // InitialMarginViolated on the 2.5 BTC short
        engine.trade(BTC, -3e18, 0);
        // A flip to a small short passes.
        open(alice, -0.6e18);
        assertEq(engine.position(alice, BTC).sizeWad, -0.1e18);
    }

    // ================================================================ price limit

    function test_trade_buyRevertsAbovePriceLimit() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, 50_000e18, 50_000e18 - 1));
        engine.trade(BTC, 1e18, 50_000e18 - 1);
        vm.prank(alice);
        engine.trade(BTC, 1e18, 50_000e18);
        assertEq(engine.position(alice, BTC).sizeWad, 1e18);
    }

    function test_trade_sellRevertsBelowPriceLimit() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, 50_000e18, 50_000e18 + 1));
        engine.trade(BTC, -1e18, 50_000e18 + 1);
        vm.prank(alice);
        engine.trade(BTC, -1e18, 50_000e18);
        assertEq(engine.position(alice, BTC).sizeWad, -1e18);
    }

    function test_closePosition_respectsPriceLimit() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(49_000);
        // closing a long is a sell: it reverts below the limit.
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, 49_000e18, 49_500e18));
        engine.closePosition(BTC, 49_500e18);
        vm.prank(alice);
        engine.closePosition(BTC, 49_000e18);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
    }

    // ================================================================ funding

    function test_funding_accruesAndSettlesBothSides() public {
        setFeed(2, 0.001e8); // longs pay 0.1% per hour
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        open(alice, 2e18);
        open(bob, -2e18);
        (int256 idx, int256 rate, uint256 last) = engine.fundingState(BTC);
        assertEq(idx, 0);
        assertEq(rate, 0.001e18);
        assertEq(last, block.timestamp);

        skipAndRefresh(1 hours);
        // Pending: 0.1% of 50k per BTC per hour = 50 per BTC.
        Health memory ha = engine.health(alice);
        Health memory hb = engine.health(bob);
        assertEq(ha.equityUsdWad, 9_948e18 - 100e18);
        assertEq(hb.equityUsdWad, 9_948e18 + 100e18);

        int256 v0 = engine.vaultBalance();
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.FundingSettled(alice, BTC, int256(100 * USDC));
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        (idx,,) = engine.fundingState(BTC);
        assertEq(idx, 50e18);

        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.FundingSettled(bob, BTC, -int256(100 * USDC));
        vm.prank(bob);
        engine.closePosition(BTC, 0);
        // Each paid fee 50 + impact 2 twice; alice paid 100 of funding, bob received it.
        assertEq(engine.collateralOf(alice), int256(9_896 * USDC - 100 * USDC));
        assertEq(engine.collateralOf(bob), int256(9_896 * USDC + 100 * USDC));
        // The vault nets zero on funding (received 100, paid 100) and keeps the 8 of impact.
        assertEq(engine.vaultBalance(), v0 + 100 * 1e6 - 100 * 1e6 + 2 * 2 * 1e6);
        assertConserved();
    }

    /// @dev The rate recorded at the last accrual applies until the next one; a new feed rate
    /// applies only from the accrual that reads it.
    function test_funding_rateInForceSinceLastAccrual() public {
        setFeed(2, 0.001e8);
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        open(alice, 2e18);
        skipAndRefresh(1 hours);
        setFeed(2, -0.002e8); // shorts now pay, from the next accrual on
        open(bob, -0.1e18); // accrues 1h at +0.1%: index 50
        (int256 idx, int256 rate,) = engine.fundingState(BTC);
        assertEq(idx, 50e18);
        assertEq(rate, -0.002e18);
        skipAndRefresh(30 minutes);
        // Pending for alice: 2 * (50 - 0.2% * 50k / 2) = 2 * (50 - 50) = 0.
        assertEq(engine.health(alice).equityUsdWad, 9_948e18);
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        (idx,,) = engine.fundingState(BTC);
        assertEq(idx, 0);
        assertEq(engine.collateralOf(alice), int256(9_896 * USDC));
    }

    /// @dev Odd rate, size and time: the payer pays the rounded-up amount, the receiver gets the
    /// rounded-down amount (values checked against an exact integer computation).
    function test_funding_roundsAgainstEachSide() public {
        setFeed(2, 12_340); // 0.0001234 per hour
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        int256 size = 1.234567890123456789e18;
        open(alice, size);
        open(bob, -size);
        int256 ca = engine.collateralOf(alice);
        int256 cb = engine.collateralOf(bob);
        vm.warp(block.timestamp + 1234);
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        (int256 idx,,) = engine.fundingState(BTC);
        // trunc(0.0001234e18 * 50000e18 * 1234 / (1e18 * 3600))
        assertEq(idx, 2_114_938_888_888_888_888);
        vm.prank(bob);
        engine.closePosition(BTC, 0);
        (uint256 fee, uint256 imp) = costs(uint256(size), 50_000e18, 50_000_000e18);
        // long owes ceil(size * idx / 1e18) = 2.611035641795603564 USD -> 2.611036 tokens
        assertEq(engine.collateralOf(alice), ca - int256(fee + imp) - 2_611_036);
        // short is owed 2.611035641795603563 (ceil toward +inf of -x) -> receives 2.611035
        assertEq(engine.collateralOf(bob), cb - int256(fee + imp) + 2_611_035);
        assertConserved();
    }

    /// @dev Funding uses the price at accrual time.
    function test_funding_indexUsesAccrualPrice() public {
        setFeed(2, 0.001e8);
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        vm.warp(block.timestamp + 2 hours);
        setPrice(45_000);
        refreshFeeds();
        open(alice, 0.1e18);
        (int256 idx,,) = engine.fundingState(BTC);
        assertEq(idx, 90e18); // 0.1% * 45k * 2h
    }

    /// @dev A stale funding feed keeps the last good rate for accrual (and fails IMF closed).
    function test_funding_staleFeedKeepsLastRate() public {
        setFeed(2, 0.001e8);
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        vm.warp(block.timestamp + 2 hours);
        // refresh every feed but funding
        for (uint256 k; k < 5; ++k) {
            if (k != 2) setFeed(k, feedAnswer(k));
        }
        (bool ok,) = controller.readFeed(BTC, FeedKind.Funding);
        assertFalse(ok);
        open(alice, -0.5e18);
        (int256 idx, int256 rate,) = engine.fundingState(BTC);
        assertEq(idx, 100e18);
        assertEq(rate, 0.001e18);
    }

    // ================================================================ cross margin

    function test_crossMargin_healthSumsMarkets() public {
        fund(alice, 20_000 * USDC);
        trade(alice, BTC, 2e18);
        trade(alice, ETH, -10e18);
        assertEq(engine.openMarkets(alice), 3);
        Health memory h = engine.health(alice);
        uint256 expectedMaint;
        uint256 expectedInit;
        uint256 expectedNotional;
        for (uint256 m; m < 2; ++m) {
            Position memory p = engine.position(alice, m);
            uint256 absSize = p.sizeWad > 0 ? uint256(int256(p.sizeWad)) : uint256(-int256(p.sizeWad));
            MarketQuote memory q = controller.quote(m, p.sizeWad > 0, absSize, 0);
            uint256 n = absSize.mulWadUp(q.priceWad);
            uint256 mmf = MarginMath.positionMaintenance(q.mmfBaseWad, p.slipSnapWad, q.maxMmfWad);
            expectedNotional += n;
            expectedMaint += n.mulWadUp(mmf);
            expectedInit += n.mulWadUp(q.imfWad > mmf ? q.imfWad : mmf);
        }
        assertEq(h.notionalUsdWad, 130_000e18);
        assertEq(h.notionalUsdWad, expectedNotional);
        assertEq(h.maintenanceUsdWad, expectedMaint);
        assertEq(h.initialUsdWad, expectedInit);
        (uint256 fb, uint256 ib) = costs(2e18, 50_000e18, 50_000_000e18);
        (uint256 fe, uint256 ie) = costs(10e18, 3_000e18, 20_000_000e18);
        assertEq(h.equityUsdWad, int256((20_000 * USDC - fb - ib - fe - ie) * 1e12));
        assertConserved();
    }

    /// @dev Profit in ETH lets the account add BTC risk that its collateral alone would not carry.
    function test_crossMargin_profitInOneMarketSupportsAnother() public {
        fund(alice, 5_000 * USDC);
        trade(alice, ETH, -10e18);
        trade(alice, BTC, 1.5e18);
        vm.prank(alice);
        vm.expectRevert();
        engine.trade(BTC, 1e18, 0);
        // ETH falls 20%: the short gains 6k.
        setMarketFeed(ETH, 0, 2_400e8);
        trade(alice, BTC, 1e18);
        assertEq(engine.position(alice, BTC).sizeWad, 2.5e18);
        Health memory h = engine.health(alice);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad));
    }

    /// @dev A loss in ETH makes the account liquidatable; the BTC position (fine on its own) can be
    /// liquidated to restore the whole account.
    function test_crossMargin_lossElsewhereLiquidatesBtc() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 2e18);
        trade(alice, ETH, 20e18);
        assertFalse(engine.isLiquidatable(alice));
        setMarketFeed(ETH, 0, 2_640e8); // -12%: ETH loses 7.2k
        assertTrue(engine.isLiquidatable(alice));
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        Position memory p = engine.position(alice, BTC);
        assertGt(p.sizeWad, 0);
        assertLt(p.sizeWad, 2e18);
        assertEq(engine.position(alice, ETH).sizeWad, 20e18);
        assertFalse(engine.isLiquidatable(alice));
        assertConserved();
    }

    /// @dev Every open position is valued in every health check: a broken ETH price blocks new
    /// BTC risk (and withdrawals) but never a BTC close.
    function test_crossMargin_badPriceElsewhereBlocksIncreaseNotClose() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 1e18);
        trade(alice, ETH, 1e18);
        vm.prank(admin);
        marketFeeds[ETH][0].setReverting(true);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, ETH));
        engine.trade(BTC, 0.1e18, 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, ETH));
        engine.withdraw(1);
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        assertEq(engine.openMarkets(alice), 2);
    }

    /// @dev Negative collateral is not bad debt while another position is open.
    function test_crossMargin_noBadDebtWhileAPositionRemains() public {
        fund(alice, 4_000 * USDC);
        trade(alice, BTC, 1e18);
        trade(alice, ETH, -10e18);
        setPrice(45_000); // BTC loses 5k
        setMarketFeed(ETH, 0, 2_400e8); // ETH short gains 6k
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        int256 c = engine.collateralOf(alice);
        assertLt(c, 0);
        assertEq(engine.badDebtTotal(), 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, c, 1));
        engine.withdraw(1);
        vm.prank(alice);
        engine.closePosition(ETH, 0);
        assertGt(engine.collateralOf(alice), 0);
        assertEq(engine.badDebtTotal(), 0);
        assertConserved();
    }

    function testFuzz_trade_roundTripNeverProfitsAtConstantPrice(uint256 size, bool isLong) public {
        fund(alice, 100_000 * USDC);
        size = bound(size, 1, 20e18);
        int256 s = isLong ? int256(size) : -int256(size);
        int256 c0 = engine.collateralOf(alice);
        open(alice, s);
        vm.prank(alice);
        engine.closePosition(BTC, 0);
        (uint256 fee, uint256 imp) = costs(size, 50_000e18, 50_000_000e18);
        // Realized PnL at a constant price is 0 or -1 token unit (rounded against the trader).
        int256 c1 = engine.collateralOf(alice);
        assertLe(c1, c0 - 2 * int256(fee + imp));
        assertGe(c1, c0 - 2 * int256(fee + imp) - 1);
        assertConserved();
    }

    function testFuzz_trade_openInterestMatchesPositions(int256 a, int256 b, int256 c) public {
        fund(alice, 100_000 * USDC);
        fund(bob, 100_000 * USDC);
        a = bound(a, -10e18, 10e18);
        b = bound(b, -10e18, 10e18);
        c = bound(c, -10e18, 10e18);
        if (a != 0) open(alice, a);
        if (b != 0) open(bob, b);
        if (c != 0) open(alice, c);
        int256 sa = engine.position(alice, BTC).sizeWad;
        int256 sb = engine.position(bob, BTC).sizeWad;
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l, (sa > 0 ? uint256(sa) : 0) + (sb > 0 ? uint256(sb) : 0));
        assertEq(s, (sa < 0 ? uint256(-sa) : 0) + (sb < 0 ? uint256(-sb) : 0));
        assertConserved();
    }
}

/// @notice The per-account position cap (MAX_POSITIONS = 8) over nine listed markets.
contract TradeManyMarketsTest is BaseTest {
    function beforeSeal() internal override {
        for (uint256 id = 1; id <= 8; ++id) {
            listExtraMarket(id, 100, 0.5e8, 10_000_000);
        }
    }

    function test_trade_revertsOnNinthPosition() public {
        fund(alice, 100_000 * USDC);
        vm.startPrank(alice);
        for (uint256 id; id < 8; ++id) {
            engine.trade(id, 1e18, 0);
        }
        assertEq(engine.openMarkets(alice), 0xff);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.TooManyPositions.selector, alice, 8));
        engine.trade(8, 1e18, 0);
        // Closing one frees a slot.
        engine.closePosition(3, 0);
        engine.trade(8, 1e18, 0);
        vm.stopPrank();
        assertEq(engine.openMarkets(alice), 0x1f7);
    }
}
