// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MarginMath} from "../../contracts/libraries/MarginMath.sol";
import {Health, Position} from "../../interfaces/IMarginEngine.sol";
import {FeedKind, MarketQuote} from "../../interfaces/ILeverageController.sol";

/// @notice Orders settled through `commitOrder` / `commitClose` + `settleOrder`: open, increase,
/// reduce, close, flip, price limit (effective price incl. fee and impact), fees and skew impact to
/// the wei, funding accrual and settlement, and cross margin over a second market (ETH).
contract TradeTest is OrderHelpers {
    using FixedPointMathLib for uint256;

    uint256 internal constant ETH = 1;

    function beforeSeal() internal override {
        // ETH: 3000 USD, 80% vol, 20M USD depth.
        listExtraMarket(ETH, 3_000, 0.8e8, 20_000_000);
    }

    /// @dev Publishes a funding rate and accrues at once (what RiskPusher does with each push).
    function pushFunding(int256 rate8) internal {
        setFeed(2, rate8);
        engine.accrueFunding(BTC);
    }

    // ================================================================ open

    /// @dev 2 BTC from a flat book: fee 0.05% of 100k = 50; impact 0.01 * 100k^2 / (2 * 50M) = 1
    /// into the BTC impact pool (not the vault); settlement fee 1 to the keeper.
    function test_trade_openLongChargesFeeAndImpactToTheWei() public {
        fund(alice, 10_000 * USDC);
        int256 v0 = engine.vaultBalance();
        uint256 i0 = engine.insuranceFund();
        uint256 f0 = engine.protocolFees();
        int256 k0 = engine.collateralOf(address(this));
        commitAndWait(alice, BTC, 2e18, 0);
        assertEq(engine.orderEscrow(), SETTLE_FEE);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, 2e18, 2e18, 50_000e18, 0, 50 * USDC, int256(1 * USDC));
        vm.expectEmit(true, true, true, true, address(engine));
        emit EventsLib.OrderSettled(alice, BTC, address(this), r, 50_000e18, SETTLE_FEE);
        engine.settleOrder(alice, BTC, r);

        assertEq(engine.collateralOf(alice), int256(9_948 * USDC));
        assertEq(engine.vaultBalance(), v0, "impact no longer goes to the vault");
        assertEq(poolOf(BTC), 1 * USDC);
        assertEq(engine.impactPools(), 1 * USDC);
        assertEq(engine.orderEscrow(), 0);
        assertEq(engine.collateralOf(address(this)), k0 + int256(SETTLE_FEE), "keeper credited in the engine");
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
        assertEq(engine.order(alice, BTC).commitSec, 0, "order deleted");
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
        // impact 0.01 * n^2 / 1e8 = 0.381039... -> 0.381040.
        assertEq(engine.collateralOf(alice), int256(10_000 * USDC - SETTLE_FEE - 30_864_198 - 381_040));
        assertEq(engine.insuranceFund(), i0 + 15_432_099);
        assertEq(engine.protocolFees(), f0 + 15_432_099);
        assertEq(engine.position(alice, BTC).basisUsdWad, 61_728_394_506_172_839_450_000);
        assertEq(engine.position(alice, BTC).slipSnapWad, 12_345_678_901_235);
        assertEq(tradeFee(uint256(size), 50_000e18), 30_864_198);
        assertEq(poolOf(BTC), 381_040);
        assertConserved();
    }

    function test_trade_openShort() public {
        fund(alice, 10_000 * USDC);
        commitAndWait(alice, BTC, -2e18, 0);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -2e18, -2e18, 50_000e18, 0, 50 * USDC, int256(1 * USDC));
        engine.settleOrder(alice, BTC, r);
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
        engine.commitOrder(BTC, 0, 0);
    }

    function test_trade_revertsOnUnlistedMarket() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 7));
        engine.commitOrder(7, 1e18, 0);
    }

    function test_trade_revertsOnSizeOverflow() public {
        fund(alice, 10_000 * USDC);
        int256 delta = int256(type(int128).max) + 1;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SizeOverflow.selector, delta));
        engine.commitOrder(BTC, delta, 0);
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
        // 1 BTC = 50k at ~35x max: 1k collateral minus settlement fee 1, fee 25 and impact 0.25.
        expectTradeRevert(
            alice, BTC, 1e18, 0, abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, int256(973.75e18), initial)
        );
        assertEq(engine.position(alice, BTC).sizeWad, 0);
    }

    /// @dev At exactly the max leverage the open passes and the account is not liquidatable.
    function test_trade_openAtMaxLeverageNotLiquidatable() public {
        fund(alice, 10_000 * USDC);
        MarketQuote memory q = controller.quote(BTC, true, 0);
        // size whose requirement roughly equals the equity: then shave until it passes.
        uint256 size = uint256(9_900e18).divWad(q.imfWad).divWad(50_000e18);
        bool ok;
        for (uint256 i; i < 50 && !ok; ++i) {
            ok = tryTrade(alice, BTC, int256(size));
            if (!ok) size = size * 995 / 1000;
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
        // open: fee 25 + impact 0.01 * 50k^2 / 1e8 = 0.25; increase: fee 26 + impact of the skew
        // 1 -> 2 at 52k: 0.01 * (104k^2 - 52k^2) / 1e8 = 0.8112; two settlement fees.
        assertEq(engine.collateralOf(alice), int256(10_000 * USDC - 2 * SETTLE_FEE - 25 * USDC - 250_000 - 26 * USDC - 811_200));
        assertEq(tradeFee(1e18, 52_000e18), 26 * USDC);
        assertEq(poolOf(BTC), 250_000 + 811_200);
        assertConserved();
    }

    function test_trade_reduceRealizesProRataPnl() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(55_000);
        int256 c0 = engine.collateralOf(alice);
        int256 v0 = engine.vaultBalance();
        // Closing 0.5 of 2 releases a quarter of the 100k basis; realized = 27.5k - 25k = 2.5k.
        // Fee on 27.5k = 13.75; the skew shrinks 2 -> 1.5 at 55k: a rebate of
        // 0.01 * (110k^2 - 82.5k^2) / 1e8 = 0.529375 out of the pool (which holds 1).
        commitAndWait(alice, BTC, -0.5e18, 0);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -0.5e18, 1.5e18, 55_000e18, int256(2_500 * USDC), 13_750_000, -529_375);
        engine.settleOrder(alice, BTC, r);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 1.5e18);
        assertEq(p.basisUsdWad, 75_000e18);
        assertEq(p.slipSnapWad, 0.00002e18, "a reduction keeps the slip snapshot");
        assertEq(engine.collateralOf(alice), c0 + int256(2_500 * USDC) - int256(SETTLE_FEE) - 13_750_000 + 529_375);
        assertEq(engine.vaultBalance(), v0 - int256(2_500 * USDC));
        assertEq(poolOf(BTC), 1 * USDC - 529_375);
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
        close(alice, BTC);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 0);
        assertEq(p.basisUsdWad, 0);
        assertEq(p.slipSnapWad, 0);
        assertEq(engine.openMarkets(alice), 0);
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l + s, 0);
        // realized -2000; close fee 49; the skew returns 2 -> 0 at 49k: rebate 0.9604 (pool holds 1)
        assertEq(engine.collateralOf(alice), int256(9_948 * USDC - 2_000 * USDC - SETTLE_FEE - 49 * USDC + 960_400));
        assertEq(poolOf(BTC), 1 * USDC - 960_400);
        Health memory h = engine.health(alice);
        assertEq(h.maintenanceUsdWad, 0);
        assertEq(h.notionalUsdWad, 0);
        assertConserved();
    }

    function test_closePosition_revertsWithoutPosition() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPosition.selector, alice, BTC));
        engine.commitClose(BTC, 0);
    }

    function test_trade_flipLongToShort() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(48_000);
        // Sell 3 at 48k: realize -2000 on the long, open a 2 short at basis -96k.
        // fee on 144k = 72; the skew goes 1 -> -2: |skew| grows 1 -> 2, a charge of
        // 0.01 * (96k^2 - 48k^2) / 1e8 = 0.6912.
        commitAndWait(alice, BTC, -3e18, 0);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.PositionModified(alice, BTC, -3e18, -2e18, 48_000e18, -int256(2_000 * USDC), 72 * USDC, 691_200);
        engine.settleOrder(alice, BTC, r);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, -2e18);
        assertEq(p.basisUsdWad, -96_000e18);
        assertEq(p.slipSnapWad, 0.0000192e18, "a flip snapshots the new side's slip");
        assertEq(
            engine.collateralOf(alice),
            int256(10_000 * USDC - 2 * SETTLE_FEE - 25_250_000 - 2_000 * USDC - 72 * USDC - 691_200)
        );
        (uint256 l, uint256 s) = engine.openInterest(BTC);
        assertEq(l, 0);
        assertEq(s, 2e18);
        assertConserved();
    }

    /// @dev A flip is new risk: it is checked against the initial requirement of the new side.
    function test_trade_flipCheckedAgainstInitial() public {
        fund(alice, 2_000 * USDC);
        open(alice, 0.5e18);
        // InitialMarginViolated on the 2.5 BTC short
        expectTradeRevertSel(alice, BTC, -3e18, 0, ErrorsLib.InitialMarginViolated.selector);
        // A flip to a small short passes.
        open(alice, -0.6e18);
        assertEq(engine.position(alice, BTC).sizeWad, -0.1e18);
    }

    // ================================================================ price limit

    /// @dev The limit bounds the effective price: fill + (fee + impact) / size for a buy. 1 BTC at
    /// 50k from a flat book: fee 25, impact 0.25: effective 50,025.25.
    function test_trade_buyRevertsAbovePriceLimit() public {
        fund(alice, 10_000 * USDC);
        uint256 eff = 50_025.25e18;
        expectTradeRevert(
            alice, BTC, 1e18, eff - 1, abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, eff, eff - 1)
        );
        trade(alice, BTC, 1e18, eff);
        assertEq(engine.position(alice, BTC).sizeWad, 1e18);
    }

    /// @dev A sell: fill - (fee + impact) / size = 49,974.75.
    function test_trade_sellRevertsBelowPriceLimit() public {
        fund(alice, 10_000 * USDC);
        uint256 eff = 49_974.75e18;
        expectTradeRevert(
            alice, BTC, -1e18, eff + 1, abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, eff, eff + 1)
        );
        trade(alice, BTC, -1e18, eff);
        assertEq(engine.position(alice, BTC).sizeWad, -1e18);
    }

    /// @dev Closing a long is a sell: fill 49k minus (fee 24.5 - rebate 0.2401) per unit.
    function test_closePosition_respectsPriceLimit() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(49_000);
        uint256 eff = 48_975.7401e18;
        expectCloseRevert(alice, BTC, eff + 1, abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, eff, eff + 1));
        vm.prank(alice);
        engine.commitClose(BTC, eff);
        settle(alice, BTC);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
    }

    // ================================================================ funding

    function test_funding_accruesAndSettlesBothSides() public {
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        open(alice, 2e18); // impact charge 1
        open(bob, -2e18); // the skew returns to 0: rebate 1 from the pool
        pushFunding(0.001e8); // longs pay 0.1% per hour from now
        (int256 idx, int256 rate, uint256 last) = engine.fundingState(BTC);
        assertEq(idx, 0);
        assertEq(rate, 0.001e18);
        assertEq(last, block.timestamp);

        skipAndRefresh(1 hours);
        // Pending: 0.1% of 50k per BTC per hour = 50 per BTC.
        Health memory ha = engine.health(alice);
        Health memory hb = engine.health(bob);
        assertEq(ha.equityUsdWad, 9_948e18 - 100e18);
        assertEq(hb.equityUsdWad, 9_950e18 + 100e18);
        pushFunding(0); // the rate stops: the index is exactly one hour of 0.1%
        (idx,,) = engine.fundingState(BTC);
        assertEq(idx, 50e18);

        int256 v0 = engine.vaultBalance();
        commitCloseAndWait(alice, BTC, 0);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.FundingSettled(alice, BTC, int256(100 * USDC));
        engine.settleOrder(alice, BTC, r);

        commitCloseAndWait(bob, BTC, 0);
        r = latestRound(BTC);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.FundingSettled(bob, BTC, -int256(100 * USDC));
        engine.settleOrder(bob, BTC, r);
        // alice: 2 settlement fees, 2 x fee 50, 2 x impact 1 (0 -> 2, then 0 -> -2), funding -100;
        // bob: 2 settlement fees, 2 x fee 50, 2 x rebate 1, funding +100.
        assertEq(engine.collateralOf(alice), int256(9_896 * USDC - 100 * USDC));
        assertEq(engine.collateralOf(bob), int256(9_900 * USDC + 100 * USDC));
        // The vault nets zero on funding (received 100, paid 100); impact stays in the pool.
        assertEq(engine.vaultBalance(), v0);
        assertEq(poolOf(BTC), 0);
        assertConserved();
    }

    /// @dev Engine v2: a new feed rate applies from its publication time (the feed's updatedAt),
    /// not from the next accrual: the rate recorded at the last accrual covers only the time
    /// before the new answer was published, whoever accrues and whenever.
    function test_funding_rateSwitchesAtPublicationTime() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        pushFunding(0.001e8);
        uint256 t0 = block.timestamp;
        skipAndRefresh(1 hours); // re-published, same rate
        engine.accrueFunding(BTC); // one hour of 0.1% of 50k: index 50
        vm.warp(t0 + 90 minutes);
        setFeed(2, -0.002e8); // shorts pay from now on; nobody accrues
        vm.warp(t0 + 2 hours);
        engine.accrueFunding(BTC);
        (int256 idx, int256 rate,) = engine.fundingState(BTC);
        assertEq(rate, -0.002e18);
        // +0.1% for 30 min (+25), then -0.2% for 30 min (-50)
        assertEq(idx, 50e18 + 25e18 - 50e18);
        assertConserved();
    }

    /// @dev Odd rate, size and time: the payer pays the rounded-up amount, the receiver gets the
    /// rounded-down amount (values checked against an exact integer computation).
    function test_funding_roundsAgainstEachSide() public {
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        int256 size = 1.234567890123456789e18;
        open(alice, size);
        open(bob, -size);
        pushFunding(12_340); // 0.0001234 per hour from now
        int256 ca = engine.collateralOf(alice);
        int256 cb = engine.collateralOf(bob);
        vm.warp(block.timestamp + 1234 - engine.orderMinDelaySec());
        // both close orders settle at the same round, 1234 s after the accrual
        vm.prank(alice);
        engine.commitClose(BTC, 0);
        vm.prank(bob);
        engine.commitClose(BTC, 0);
        waitAndPublish(BTC);
        uint80 r = latestRound(BTC);
        engine.settleOrder(alice, BTC, r);
        (int256 idx,,) = engine.fundingState(BTC);
        // trunc(0.0001234e18 * 50000e18 * 1234 / (1e18 * 3600))
        assertEq(idx, 2_114_938_888_888_888_888);
        engine.settleOrder(bob, BTC, r);
        uint256 fee = tradeFee(uint256(size), 50_000e18);
        // long owes ceil(size * idx / 1e18) = 2.611035641795603564 USD -> 2.611036 tokens; its close
        // moves the skew 0 -> -size: impact 0.381040
        assertEq(engine.collateralOf(alice), ca - int256(SETTLE_FEE + fee + 381_040) - 2_611_036);
        // short is owed 2.611035641795603563 (ceil toward +inf of -x) -> receives 2.611035; its
        // close returns the skew to 0: rebate 0.381039
        assertEq(engine.collateralOf(bob), cb - int256(SETTLE_FEE + fee) + 381_039 + 2_611_035);
        assertConserved();
    }

    /// @dev Funding uses the price at accrual time.
    function test_funding_indexUsesAccrualPrice() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        pushFunding(0.001e8);
        vm.warp(block.timestamp + 2 hours);
        setPrice(45_000);
        refreshFeeds();
        engine.accrueFunding(BTC);
        (int256 idx,,) = engine.fundingState(BTC);
        assertEq(idx, 90e18); // 0.1% * 45k * 2h
    }

    /// @dev A stale funding feed keeps the last good rate for accrual (and fails IMF closed).
    function test_funding_staleFeedKeepsLastRate() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        pushFunding(0.001e8);
        vm.warp(block.timestamp + 2 hours);
        // refresh every feed but funding
        for (uint256 k; k < 5; ++k) {
            if (k != 2) setFeed(k, feedAnswer(k));
        }
        (bool ok,) = controller.readFeed(BTC, FeedKind.Funding);
        assertFalse(ok);
        engine.accrueFunding(BTC);
        (int256 idx, int256 rate,) = engine.fundingState(BTC);
        assertEq(idx, 100e18);
        assertEq(rate, 0.001e18);
        open(alice, -0.5e18); // a reduction still settles
        assertEq(engine.position(alice, BTC).sizeWad, 0.5e18);
    }

    // ================================================================ cross margin

    function test_crossMargin_healthSumsMarkets() public {
        fund(alice, 20_000 * USDC);
        trade(alice, BTC, 2e18, 0);
        trade(alice, ETH, -10e18, 0);
        assertEq(engine.openMarkets(alice), 3);
        Health memory h = engine.health(alice);
        uint256 expectedMaint;
        uint256 expectedInit;
        uint256 expectedNotional;
        for (uint256 m; m < 2; ++m) {
            Position memory p = engine.position(alice, m);
            uint256 absSize = p.sizeWad > 0 ? uint256(int256(p.sizeWad)) : uint256(-int256(p.sizeWad));
            MarketQuote memory q = controller.quote(m, p.sizeWad > 0, absSize);
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
        // BTC: fee 50, impact 1; ETH 30k short: fee 15, impact 0.01 * 30k^2 / (2 * 20M) = 0.225
        uint256 costs = 2 * SETTLE_FEE + 50 * USDC + 1 * USDC + 15 * USDC + 225_000;
        assertEq(h.equityUsdWad, int256((20_000 * USDC - costs) * 1e12));
        assertConserved();
    }

    /// @dev Profit in ETH lets the account add BTC risk that its collateral alone would not carry.
    function test_crossMargin_profitInOneMarketSupportsAnother() public {
        fund(alice, 5_000 * USDC);
        trade(alice, ETH, -10e18, 0);
        trade(alice, BTC, 1.5e18, 0);
        expectTradeRevertSel(alice, BTC, 1e18, 0, ErrorsLib.InitialMarginViolated.selector);
        // ETH falls 20%: the short gains 6k.
        setMarketFeed(ETH, 0, 2_400e8);
        trade(alice, BTC, 1e18, 0);
        assertEq(engine.position(alice, BTC).sizeWad, 2.5e18);
        Health memory h = engine.health(alice);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad));
    }

    /// @dev A loss in ETH makes the account liquidatable; the liquidation closes the market the
    /// engine prefers (the one restoring health with the least notional), the caller cannot pick
    /// the other, and one liquidation restores the whole account.
    function test_crossMargin_lossElsewhereLiquidatesPreferredMarket() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 2e18, 0);
        trade(alice, ETH, 20e18, 0);
        assertFalse(engine.isLiquidatable(alice));
        setMarketFeed(ETH, 0, 2_640e8); // -12%: ETH loses 7.2k
        assertTrue(engine.isLiquidatable(alice));
        uint256 pref = engine.liquidationMarket(alice);
        uint256 other = pref == BTC ? ETH : BTC;
        int256 otherSize = engine.position(alice, other).sizeWad;
        engine.flagLiquidation(alice);
        waitAndPublish(BTC);
        (, int256 ethAnswer,,,) = priceFeed(ETH).latestRoundData();
        setMarketFeed(ETH, 0, ethAnswer);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.LiquidationMarketNotPreferred.selector, other, pref));
        engine.liquidate(alice, other);
        vm.prank(liquidator);
        engine.liquidate(alice, pref);
        assertEq(engine.position(alice, other).sizeWad, otherSize, "the other market untouched");
        assertFalse(engine.isLiquidatable(alice));
        assertConserved();
    }

    /// @dev Engine v2: a broken ETH price no longer blocks the account. ETH is valued at its last
    /// good price moved against the position by maxMmf (40%), with maxImf initial; a BTC increase
    /// that the account carries under that valuation settles, a BTC close settles, withdrawals
    /// need every price and revert.
    function test_crossMargin_badPriceElsewhereValuedConservatively() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 1e18, 0);
        trade(alice, ETH, 1e18, 0);
        Health memory h0 = engine.health(alice);
        vm.prank(admin);
        marketFeeds[ETH][0].setReverting(true);
        Health memory h = engine.health(alice);
        // ETH 1 long, basis 3000, valued at 3000 * 0.6 = 1800: -1200, notional 1800
        assertEq(h.equityUsdWad, h0.equityUsdWad - 1_200e18);
        assertEq(h.notionalUsdWad, 50_000e18 + 1_800e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, ETH));
        engine.withdraw(1);
        trade(alice, BTC, 0.1e18, 0);
        assertEq(engine.position(alice, BTC).sizeWad, 1.1e18);
        close(alice, BTC);
        assertEq(engine.openMarkets(alice), 2);
        assertConserved();
    }

    /// @dev Negative collateral is not bad debt while another position remains. Both closes are
    /// committed first, then settled one after the other at the same round.
    function test_crossMargin_noBadDebtWhileAPositionRemains() public {
        fund(alice, 4_000 * USDC);
        trade(alice, BTC, 1e18, 0);
        trade(alice, ETH, -10e18, 0);
        setPrice(45_000); // BTC loses 5k
        setMarketFeed(ETH, 0, 2_400e8); // ETH short gains 6k
        vm.startPrank(alice);
        engine.commitClose(BTC, 0);
        engine.commitClose(ETH, 0);
        vm.stopPrank();
        waitAndPublish(BTC);
        waitAndPublish(ETH);
        engine.settleOrder(alice, BTC, latestRound(BTC));
        int256 c = engine.collateralOf(alice);
        assertLt(c, 0);
        assertEq(engine.badDebtTotal(), 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, c, 1));
        engine.withdraw(1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, c, SETTLE_FEE));
        engine.commitOrder(BTC, 0.01e18, 0);
        engine.settleOrder(alice, ETH, latestRound(ETH));
        assertGt(engine.collateralOf(alice), 0);
        assertEq(engine.badDebtTotal(), 0);
        assertConserved();
    }

    /// @dev A close is never refused for want of realized collateral: with collateral below zero
    /// (carried by a profitable position elsewhere) the account can still commit the close that
    /// realizes that profit, and the escrowed fee is settled by it.
    function test_crossMargin_closeCommitsWithNegativeCollateral() public {
        fund(alice, 4_000 * USDC);
        trade(alice, BTC, 1e18, 0);
        trade(alice, ETH, -10e18, 0);
        setPrice(45_000);
        setMarketFeed(ETH, 0, 2_400e8);
        close(alice, BTC);
        int256 c = engine.collateralOf(alice);
        assertLt(c, 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, c, SETTLE_FEE));
        engine.commitOrder(ETH, 1e18, 0);
        vm.prank(alice);
        engine.commitClose(ETH, 0);
        assertEq(engine.collateralOf(alice), c - int256(SETTLE_FEE));
        waitAndPublish(ETH);
        engine.settleOrder(alice, ETH, latestRound(ETH));
        assertGt(engine.collateralOf(alice), 0);
        assertEq(engine.badDebtTotal(), 0);
        assertConserved();
    }

    /// @dev A round trip at a constant price pays its fees and settlement fees; its impact nets to
    /// the charge minus the rebate of the same skew move (at most a few token units of rounding).
    function testFuzz_trade_roundTripNeverProfitsAtConstantPrice(uint256 size, bool isLong) public {
        fund(alice, 100_000 * USDC);
        size = bound(size, 1, 20e18);
        int256 s = isLong ? int256(size) : -int256(size);
        int256 c0 = engine.collateralOf(alice);
        int256 charge = impactTokens(BTC, 0, s, 50_000e18);
        open(alice, s);
        assertEq(poolOf(BTC), uint256(charge));
        int256 rebate = -impactTokens(BTC, s, 0, 50_000e18);
        close(alice, BTC);
        uint256 fee = tradeFee(size, 50_000e18);
        int256 expected = c0 - 2 * int256(fee + SETTLE_FEE) - charge + rebate;
        // Realized PnL at a constant price is 0 or -1 token unit (rounded against the trader).
        int256 c1 = engine.collateralOf(alice);
        assertLe(c1, expected);
        assertGe(c1, expected - 1);
        assertLe(rebate, charge, "never rebated more than charged");
        assertLe(c1, c0 - 2 * int256(fee + SETTLE_FEE), "never profits");
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
        assertEq(engine.impactPools(), poolOf(BTC));
        assertConserved();
    }
}

/// @notice The per-account position cap (MAX_POSITIONS = 8) over nine listed markets.
contract TradeManyMarketsTest is OrderHelpers {
    function beforeSeal() internal override {
        for (uint256 id = 1; id <= 8; ++id) {
            listExtraMarket(id, 100, 0.5e8, 10_000_000);
        }
    }

    function test_trade_revertsOnNinthPosition() public {
        fund(alice, 100_000 * USDC);
        for (uint256 id; id < 8; ++id) {
            trade(alice, id, 1e18, 0);
        }
        assertEq(engine.openMarkets(alice), 0xff);
        expectTradeRevert(alice, 8, 1e18, 0, abi.encodeWithSelector(ErrorsLib.TooManyPositions.selector, alice, 8));
        // Closing one frees a slot.
        close(alice, 3);
        trade(alice, 8, 1e18, 0);
        assertEq(engine.openMarkets(alice), 0x1f7);
    }
}
