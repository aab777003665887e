// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {SignedMath} from "../../contracts/libraries/SignedMath.sol";
import {Health, Position} from "../../interfaces/IMarginEngine.sol";
import {MarketQuote} from "../../interfaces/ILeverageController.sol";

/// @notice `liquidate`: partial to the target ratio, full when underwater or dust, penalty split,
/// skew impact (a close rebates out of the market's impact pool), bad debt covered by the
/// insurance fund then socialized to the vault, all to the token unit.
contract LiquidateTest is OrderHelpers {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    uint256 internal constant TARGET = 1.25e18;

    /// @dev Everything a liquidation of `who` in BTC should move, computed from the pre-state with
    /// the documented formulas (no funding pending in these scenarios).
    struct Expect {
        uint256 closeSize;
        uint256 closedNotional;
        uint256 penalty;
        uint256 reward;
        int256 impact;
        int256 realized;
        int256 closedBasis;
        bool full;
    }

    function expectLiquidation(address who) internal view returns (Expect memory e) {
        Position memory p = engine.position(who, BTC);
        uint256 absSize = int256(p.sizeWad).abs();
        MarketQuote memory q = controller.quote(BTC, p.sizeWad > 0, absSize);
        Health memory h = engine.health(who);
        uint256 mmf = q.mmfBaseWad + p.slipSnapWad;
        if (mmf > q.maxMmfWad) mmf = q.maxMmfWad;
        uint256 posNotional = absSize.mulWadUp(q.priceWad);
        // c = (T * R - E) / (T * mmf - (fee + slip)), everything against the account, with fee
        // the liquidation fee scaled by the shortfall depth; the closing cost counted is the
        // position's slippage fraction (risk feeds are good here)
        uint256 denom = mmf.mulWad(TARGET);
        uint256 fee = depthScaledFee(q.liqFeeWad, h);
        uint256 cost = fee + q.slipWad;
        uint256 c;
        if (denom <= cost) {
            c = posNotional;
        } else {
            int256 deficit = int256(h.maintenanceUsdWad.mulWadUp(TARGET)) - h.equityUsdWad;
            c = uint256(deficit).divWadUp(denom - cost);
        }
        e.closeSize = c >= posNotional ? absSize : c.divWadUp(q.priceWad);
        if (e.closeSize > absSize) e.closeSize = absSize;
        if ((absSize - e.closeSize).mulWadUp(q.priceWad) < 10e18) e.closeSize = absSize;
        e.full = e.closeSize == absSize;
        e.closedNotional = e.closeSize.mulWadUp(q.priceWad);
        e.penalty = e.closedNotional.mulWadUp(fee).divUp(1e12);
        e.reward = e.penalty / 2;
        int256 closedSigned0 = p.sizeWad > 0 ? -int256(e.closeSize) : int256(e.closeSize);
        e.impact = impactTokens(BTC, skewOf(BTC), skewOf(BTC) + closedSigned0, q.priceWad);
        e.closedBasis = (int256(p.basisUsdWad) * int256(e.closeSize)).divCeil(int256(absSize));
        int256 closedSigned = p.sizeWad > 0 ? int256(e.closeSize) : -int256(e.closeSize);
        int256 valueWad = (closedSigned * int256(q.priceWad)).divFloor(1e18);
        e.realized = (valueWad - e.closedBasis).divFloor(1e12);
    }

    /// @dev Flags the account (and waits for the price after the delay: the same answer,
    /// re-published), then liquidates it in BTC as `who`.
    function liquidateAs(address who, address account) internal {
        flagAndLiquidate(who, account, BTC);
    }

    // ================================================================ partial

    function test_liquidate_partialRestoresTargetRatioExactly() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        assertTrue(engine.isLiquidatable(alice));
        Expect memory e = expectLiquidation(alice);
        assertFalse(e.full);
        int256 c0 = engine.collateralOf(alice);
        int256 v0 = engine.vaultBalance();
        uint256 i0 = engine.insuranceFund();
        Position memory p0 = engine.position(alice, BTC);

        flagAndWait(alice, BTC);
        vm.expectEmit(true, true, true, true, address(engine));
        emit EventsLib.Liquidated(
            alice, BTC, liquidator, -int256(e.closeSize), e.closedNotional, 45_500e18, e.penalty, e.reward
        );
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);

        Position memory p1 = engine.position(alice, BTC);
        assertEq(p1.sizeWad, int256(p0.sizeWad) - int256(e.closeSize));
        assertEq(p1.basisUsdWad, int256(p0.basisUsdWad) - e.closedBasis);
        assertEq(p1.slipSnapWad, p0.slipSnapWad);
        assertEq(engine.collateralOf(alice), c0 + e.realized - int256(e.penalty) - e.impact);
        assertLt(e.impact, 0, "a close shrinks the skew: a rebate from the pool");
        assertEq(engine.vaultBalance(), v0 - e.realized);
        assertEq(engine.insuranceFund(), i0 + e.penalty - e.reward);
        assertEq(engine.collateralOf(liquidator), int256(e.reward));
        assertGt(e.reward, 0);
        (uint256 l,) = engine.openInterest(BTC);
        assertEq(l, uint256(int256(p1.sizeWad)));

        // The account is back at the target ratio (a hair above: the close rounds up).
        Health memory h = engine.health(alice);
        assertGe(uint256(h.equityUsdWad), h.maintenanceUsdWad.mulWad(TARGET), "at least the target ratio");
        assertLe(uint256(h.equityUsdWad), h.maintenanceUsdWad.mulWad(1.26e18), "not much more");
        assertFalse(engine.isLiquidatable(alice));
        assertEq(engine.badDebtTotal(), 0);
        assertConserved();
    }

    /// @dev The smoke scenario, pinned: numbers logged by Smoke.t.sol (engine v2: the settlement
    /// fee and the skew impact of the open, the liquidation's rebate from the impact pool).
    function test_liquidate_partialSmokeNumbers() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        liquidateAs(liquidator, alice);
        Health memory h = engine.health(alice);
        assertEq(h.equityUsdWad, 640.070070287189557500e18);
        assertEq(h.maintenanceUsdWad, 510.563241469125952236e18);
        assertEq(engine.position(alice, BTC).sizeWad, 0.643198326602846765e18);
    }

    function test_liquidate_shortPosition() public {
        fund(alice, 10_000 * USDC);
        open(alice, -2e18);
        setPrice(54_500);
        assertTrue(engine.isLiquidatable(alice));
        Expect memory e = expectLiquidation(alice);
        assertFalse(e.full);
        int256 c0 = engine.collateralOf(alice);
        liquidateAs(liquidator, alice);
        assertEq(engine.position(alice, BTC).sizeWad, -2e18 + int256(e.closeSize));
        assertEq(engine.collateralOf(alice), c0 + e.realized - int256(e.penalty) - e.impact);
        Health memory h = engine.health(alice);
        assertGe(uint256(h.equityUsdWad), h.maintenanceUsdWad.mulWad(TARGET));
        (, uint256 s) = engine.openInterest(BTC);
        assertEq(s, 2e18 - e.closeSize);
        assertConserved();
    }

    /// @dev Pending funding is settled before health is judged: funding alone can make an
    /// account liquidatable.
    function test_liquidate_settlesFundingFirst() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setFeed(2, 0.01e8); // longs pay 1% per hour from its publication
        engine.accrueFunding(BTC);
        assertFalse(engine.isLiquidatable(alice));
        skipAndRefresh(9 hours - engine.orderMinDelaySec()); // with the flag's delay: 9% of 100k = 9k
        assertTrue(engine.isLiquidatable(alice));
        flagAndWait(alice, BTC);
        int256 c0 = engine.collateralOf(alice);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.FundingSettled(alice, BTC, int256(9_000 * USDC));
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        assertLt(engine.collateralOf(alice), c0 - int256(9_000 * USDC));
        (int256 idx,,) = engine.fundingState(BTC);
        assertEq(engine.position(alice, BTC).fundingIndexWad, idx);
        // 9 h in two accrual pieces (the refresh's re-publication splits it): 1 wei of truncation
        assertApproxEqAbs(idx, 4_500e18, 1);
        assertConserved();
    }

    /// @dev A partial close that would leave less than 10 USD of notional closes everything.
    function test_liquidate_dustRemainderClosesAll() public {
        fund(alice, 1 * USDC + SETTLE_FEE);
        open(alice, 0.0004e18); // 20 USD at 20x
        setPrice(48_000);
        assertTrue(engine.isLiquidatable(alice));
        Expect memory e = expectLiquidation(alice);
        assertTrue(e.full);
        liquidateAs(liquidator, alice);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        assertEq(engine.openMarkets(alice), 0);
        assertConserved();
    }

    // ================================================================ full and bad debt

    function test_liquidate_fullWhenUnderwaterInsuranceCovers() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(44_000);
        Health memory h = engine.health(alice);
        assertLt(h.equityUsdWad, 0);
        Expect memory e = expectLiquidation(alice);
        assertTrue(e.full);
        // realized -12000, penalty 0.5% of 88k = 440, the skew 2 -> 0 at 44k rebates
        // 0.01 * 88k^2 / 1e8 = 0.7744 out of the pool (which holds 1)
        assertEq(e.realized, -12_000 * 1e6);
        assertEq(e.penalty, 440 * USDC);
        assertEq(e.reward, 220 * USDC);
        assertEq(e.impact, -774_400);
        uint256 debt = 12_000 * USDC + 440 * USDC - 774_400 - 9_948 * USDC;
        assertEq(debt, 2_491_225_600);
        uint256 i0 = engine.insuranceFund();
        int256 v0 = engine.vaultBalance();

        flagAndWait(alice, BTC);
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.BadDebt(alice, debt, debt, 0);
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);

        assertEq(engine.position(alice, BTC).sizeWad, 0);
        assertEq(engine.openMarkets(alice), 0);
        assertEq(engine.collateralOf(alice), 0);
        assertEq(engine.badDebtTotal(), debt);
        assertEq(engine.badDebtCovered(), debt);
        assertEq(engine.badDebtSocialized(), 0);
        assertEq(engine.insuranceFund(), i0 + 220 * USDC - debt);
        assertEq(engine.vaultBalance(), v0 + 12_000 * int256(USDC));
        assertEq(poolOf(BTC), 1 * USDC - 774_400);
        assertEq(engine.collateralOf(liquidator), int256(220 * USDC));
        assertFalse(engine.isLiquidatable(alice));
        assertConserved();
    }

    /// @dev A debt larger than the insurance fund drains it and the rest is socialized to the vault.
    function test_liquidate_badDebtSocializedBeyondInsurance() public {
        fund(alice, 2_000_000 * USDC);
        fund(bob, 2_000_000 * USDC);
        open(bob, -280e18); // balance the book so alice pays no crowding
        open(alice, 280e18); // 14M notional
        setPrice(35_000); // -30%: alice loses 4.2M
        Expect memory e = expectLiquidation(alice);
        assertTrue(e.full);
        int256 c0 = engine.collateralOf(alice);
        uint256 debt = uint256(-(c0 + e.realized - int256(e.penalty) - e.impact));
        uint256 insuranceAtDebt = engine.insuranceFund() + e.penalty - e.reward;
        assertGt(debt, insuranceAtDebt);
        uint256 socialized = debt - insuranceAtDebt;
        int256 v0 = engine.vaultBalance();

        flagAndWait(alice, BTC);
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.BadDebt(alice, debt, insuranceAtDebt, socialized);
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);

        assertEq(engine.insuranceFund(), 0);
        assertEq(engine.badDebtTotal(), debt);
        assertEq(engine.badDebtCovered(), insuranceAtDebt);
        assertEq(engine.badDebtSocialized(), socialized);
        assertEq(engine.vaultBalance(), v0 - e.realized - int256(socialized));
        assertEq(engine.collateralOf(alice), 0);
        assertEq(engine.collateralOf(liquidator), int256(e.reward));
        assertConserved();

        // A second bad debt: the fund only holds carol's own fee share and penalty share.
        address carol = track("carol");
        fund(carol, 100_000 * USDC);
        open(carol, 50e18);
        setPrice(30_000);
        Expect memory e2 = expectLiquidation(carol);
        int256 c2 = engine.collateralOf(carol);
        uint256 debt2 = uint256(-(c2 + e2.realized - int256(e2.penalty) - e2.impact));
        uint256 cover2 = engine.insuranceFund() + e2.penalty - e2.reward;
        flagAndWait(carol, BTC);
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.BadDebt(carol, debt2, cover2, debt2 - cover2);
        vm.prank(liquidator);
        engine.liquidate(carol, BTC);
        assertEq(engine.insuranceFund(), 0);
        assertEq(engine.badDebtTotal(), debt + debt2);
        assertEq(engine.badDebtTotal(), engine.badDebtCovered() + engine.badDebtSocialized());
        assertConserved();
    }

    /// @dev An underwater trader closing their own position realizes the same bad-debt accounting.
    function test_closePosition_underwaterRealizesBadDebt() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(44_000);
        // realized -12000, fee 44, rebate 0.7744, and the close's settlement fee
        uint256 debt = 12_000 * USDC + 44 * USDC - 774_400 + SETTLE_FEE - 9_948 * USDC;
        commitCloseAndWait(alice, BTC, 0);
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.BadDebt(alice, debt, debt, 0);
        engine.settleOrder(alice, BTC, r);
        assertEq(engine.collateralOf(alice), 0);
        assertEq(engine.badDebtTotal(), debt);
        assertConserved();
    }

    // ================================================================ rejections

    /// @dev A healthy account can be neither flagged nor liquidated (unflagged: NotFlagged).
    function test_liquidate_revertsWhenHealthy() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        Health memory h = engine.health(alice);
        vm.prank(liquidator);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.AccountHealthy.selector, h.equityUsdWad, h.maintenanceUsdWad)
        );
        engine.flagLiquidation(alice);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NotFlagged.selector, alice));
        engine.liquidate(alice, BTC);
    }

    /// @dev Flagged while under water, healthy again at the price after the delay (the price came
    /// back): the liquidation reverts AccountHealthy at that price.
    function test_liquidate_flaggedButHealthyAtSettlementPrice() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        engine.flagLiquidation(alice);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        setPrice(50_000);
        Health memory h = engine.health(alice);
        vm.prank(liquidator);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.AccountHealthy.selector, h.equityUsdWad, h.maintenanceUsdWad)
        );
        engine.liquidate(alice, BTC);
    }

    /// @dev Right at the boundary: equity == maintenance is healthy.
    function test_liquidate_revertsAfterPartialLiquidation() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        liquidateAs(liquidator, alice);
        Health memory h = engine.health(alice);
        assertEq(engine.flaggedAt(alice), 0, "the flag is consumed");
        vm.prank(liquidator);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.AccountHealthy.selector, h.equityUsdWad, h.maintenanceUsdWad)
        );
        engine.flagLiquidation(alice);
    }

    function test_liquidate_revertsWithoutPosition() public {
        fund(alice, 10_000 * USDC);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPosition.selector, alice, BTC));
        engine.liquidate(alice, BTC);
    }

    function test_liquidate_revertsWhenPriceInvalid() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        vm.prank(admin);
        feeds[0].transmitAt(45_500e8, block.timestamp - 3601);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        engine.liquidate(alice, BTC);
    }

    /// @dev Anyone may liquidate, including the account itself; the reward goes to the caller.
    /// @dev Self-liquidation: the reward is credited to the liquidated account itself, after its
    /// penalty (and any bad debt) is settled: what it keeps is exactly the penalty's liquidator share.
    function test_liquidate_selfLiquidationPaysCaller() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500);
        Expect memory e = expectLiquidation(alice);
        int256 c0 = engine.collateralOf(alice);
        uint256 t0 = usd.balanceOf(alice);
        liquidateAs(alice, alice);
        assertGt(e.reward, 0);
        assertEq(engine.collateralOf(alice), c0 + e.realized - int256(e.penalty) - e.impact + int256(e.reward));
        assertEq(usd.balanceOf(alice), t0, "no token transfer");
        assertConserved();
    }

    // ================================================================ fuzz

    /// @dev Whatever the leverage and the drop: a liquidation either leaves the account at or
    /// above the target ratio, or closes it entirely; bad debt is only realized with no position.
    function testFuzz_liquidate_partialOrFull(uint256 size, uint256 dropBps, bool isLong) public {
        fund(alice, 10_000 * USDC);
        size = bound(size, 0.5e18, 5e18);
        open(alice, isLong ? int256(size) : -int256(size));
        dropBps = bound(dropBps, 100, 3_000);
        uint256 px = isLong ? 50_000 * (10_000 - dropBps) / 10_000 : 50_000 * (10_000 + dropBps) / 10_000;
        setPrice(px);
        if (!engine.isLiquidatable(alice)) {
            vm.prank(liquidator);
            vm.expectRevert();
            engine.liquidate(alice, BTC);
            return;
        }
        Expect memory e = expectLiquidation(alice);
        liquidateAs(liquidator, alice);
        Position memory p = engine.position(alice, BTC);
        if (e.full) {
            assertEq(p.sizeWad, 0);
            assertGe(engine.collateralOf(alice), 0);
        } else {
            assertEq(int256(p.sizeWad).abs(), size - e.closeSize);
            Health memory h = engine.health(alice);
            assertGe(h.equityUsdWad + 1e13, int256(h.maintenanceUsdWad.mulWad(TARGET)), "target ratio");
            assertFalse(engine.isLiquidatable(alice));
        }
        assertEq(engine.collateralOf(liquidator), int256(e.reward));
        assertEq(engine.badDebtTotal(), engine.badDebtCovered() + engine.badDebtSocialized());
        assertConserved();
    }
}

/// @notice Engine v2 liquidation rules over two markets: the preferred market (the valid-price
/// market whose closing restores health with the least notional: largest T * mmf - (liqFee +
/// exit slip), lowest id on ties) and isolation of a market whose price is bad (valued at its last
/// good price moved against the position by maxMmf; it cannot shield the others: finding L3).
contract LiquidateIsolationTest is OrderHelpers {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    uint256 internal constant ETH = 1;
    uint256 internal constant TARGET = 1.25e18;

    function beforeSeal() internal override {
        listExtraMarket(ETH, 3_000, 0.8e8, 20_000_000);
    }

    function feedAnswerOf(uint256 id) internal view returns (int256 a) {
        (, a,,,) = priceFeed(id).latestRoundData();
    }

    /// @dev The preference score of `who`'s position in market `m`, restated from the quote (the
    /// fee scaled by the account's shortfall depth, as the liquidation charges it).
    function score(address who, uint256 m) internal view returns (int256) {
        Position memory p = engine.position(who, m);
        MarketQuote memory q = controller.quote(m, p.sizeWad > 0, int256(p.sizeWad).abs());
        uint256 mmf = q.mmfBaseWad + p.slipSnapWad;
        if (mmf > q.maxMmfWad) mmf = q.maxMmfWad;
        return int256(mmf.mulWad(TARGET)) - int256(depthScaledFee(q.liqFeeWad, engine.health(who)) + q.slipWad);
    }

    function test_liquidate_preferredMarketRule() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 2e18, 0);
        trade(alice, ETH, 20e18, 0);
        setMarketFeed(ETH, 0, 2_640e8);
        assertTrue(engine.isLiquidatable(alice));
        int256 sb = score(alice, BTC);
        int256 se = score(alice, ETH);
        uint256 pref = se > sb ? ETH : BTC;
        assertEq(engine.liquidationMarket(alice), pref);
        uint256 other = pref == BTC ? ETH : BTC;
        engine.flagLiquidation(alice);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        setMarketFeed(BTC, 0, feedAnswerOf(BTC));
        setMarketFeed(ETH, 0, feedAnswerOf(ETH));
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.LiquidationMarketNotPreferred.selector, other, pref));
        engine.liquidate(alice, other);
        vm.prank(liquidator);
        engine.liquidate(alice, pref);
        assertConserved();
    }

    /// @dev The view reverts AccountHealthy on a healthy account (and one without positions).
    function test_liquidationMarket_revertsWhenHealthy() public {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 1e18, 0);
        Health memory h = engine.health(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.AccountHealthy.selector, h.equityUsdWad, h.maintenanceUsdWad));
        engine.liquidationMarket(alice);
    }

    /// @dev A market with a bad price is valued at its last good price moved against each
    /// position by maxMmf, maintenance at maxMmf, initial at max(maxImf, maxMmf).
    function test_health_badPriceMarketValuedConservatively() public {
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        trade(alice, ETH, 2e18, 0);
        trade(bob, ETH, -2e18, 0);
        Health memory ha0 = engine.health(alice);
        Health memory hb0 = engine.health(bob);
        (, uint256 last) = engine.marketBook(ETH);
        assertEq(last, 3_000e18);
        vm.prank(admin);
        marketFeeds[ETH][0].setReverting(true);
        MarketQuote memory q = controller.quote(ETH, true, 0);
        assertFalse(q.priceOk);
        uint256 maxMmf = q.maxMmfWad;
        uint256 pl = last.mulWad(1e18 - maxMmf); // long valued down
        uint256 ps = last.mulWadUp(1e18 + maxMmf); // short valued up
        Health memory ha = engine.health(alice);
        Health memory hb = engine.health(bob);
        assertEq(ha.equityUsdWad, ha0.equityUsdWad - int256((3_000e18 - pl) * 2));
        assertEq(hb.equityUsdWad, hb0.equityUsdWad - int256((ps - 3_000e18) * 2));
        assertEq(ha.maintenanceUsdWad, uint256(2e18).mulWadUp(pl).mulWadUp(maxMmf));
        uint256 imf = q.maxImfWad > maxMmf ? q.maxImfWad : maxMmf;
        assertEq(hb.initialUsdWad, uint256(2e18).mulWadUp(ps).mulWadUp(imf));
        // Nothing to liquidate: no valid-price market.
        assertFalse(engine.isLiquidatable(alice));
    }

    /// @dev Finding L3 fixed: $10 in a market whose price goes bad no longer shields a max-leverage
    /// BTC long. Over any drop, a liquidatable account is liquidated in BTC (the bad market
    /// reverts PriceFeedInvalid) and left healthy or closed in BTC.
    function testFuzz_liquidate_badPriceMarketDoesNotShield(uint256 dropBps, bool stale) public {
        fund(alice, 10_000 * USDC);
        trade(alice, ETH, int256(uint256(10e18).divWad(3_000e18)), 0); // $10 of ETH
        uint256 size;
        for (size = 7e18; size > 0.5e18; size -= 0.1e18) {
            if (tryTrade(alice, BTC, int256(size))) break;
        }
        vm.prank(admin);
        if (stale) marketFeeds[ETH][0].transmitAt(3_000e8, block.timestamp - 3601);
        else marketFeeds[ETH][0].transmit(int256(0.5e8)); // below the 1 USD bound
        assertFalse(controller.quote(ETH, true, 0).priceOk);
        dropBps = bound(dropBps, 100, 2_000);
        setPrice(50_000 * (10_000 - dropBps) / 10_000);
        if (!engine.isLiquidatable(alice)) return;
        assertEq(engine.liquidationMarket(alice), BTC);
        flagAndWait(alice, BTC);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, ETH));
        engine.liquidate(alice, ETH);
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        assertTrue(!engine.isLiquidatable(alice) || engine.position(alice, BTC).sizeWad == 0);
        assertGt(engine.position(alice, ETH).sizeWad, 0, "the bad market is left alone");
        assertConserved();
    }
}
