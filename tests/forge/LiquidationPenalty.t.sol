// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {LiquidateTest} from "./Liquidate.t.sol";
import {MarginEngine} from "../../contracts/MarginEngine.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {PositionMath} from "../../contracts/libraries/PositionMath.sol";
import {SignedMath} from "../../contracts/libraries/SignedMath.sol";
import {Health, Position} from "../../interfaces/IMarginEngine.sol";
import {MarketQuote, RiskParams} from "../../interfaces/ILeverageController.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";

/// @notice The depth-scaled liquidation penalty (issue 12): liqFee x min(1, floor + (1 - floor) x
/// d / fullDepth), d = (maintenance - equity) / maintenance, rounded up; the same fraction sizes
/// the close. Shallow (ramp-induced) against deep (price-induced) shortfalls, the engine's
/// settings' bounds, and fuzz: monotone in the depth, never above liqFee x notional.
contract LiquidationPenaltyTest is OrderHelpers {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    uint256 internal constant TARGET = 1.25e18;

    /// @dev What one liquidation emitted (`Liquidated`) and the depth it ran at.
    struct Seen {
        uint256 closedNotional;
        uint256 penalty;
        uint256 reward;
        uint256 depthWad;
        uint256 expectedFee;
        uint256 liqFee;
    }

    /// @dev Flags and liquidates `who` in BTC, returning the `Liquidated` event's amounts and the
    /// depth-scaled fee expected at the health seen when the liquidation ran.
    function liquidateAndSee(address who) internal returns (Seen memory s) {
        return liquidateAndSeeAs(liquidator, who);
    }

    function liquidateAndSeeAs(address caller, address who) internal returns (Seen memory s) {
        flagAndWait(who, BTC);
        Position memory p = engine.position(who, BTC);
        MarketQuote memory q = controller.quote(BTC, p.sizeWad > 0, int256(p.sizeWad).abs());
        Health memory h = engine.health(who);
        s.liqFee = q.liqFeeWad;
        s.expectedFee = depthScaledFee(q.liqFeeWad, h);
        if (h.equityUsdWad <= 0) s.depthWad = WAD;
        else s.depthWad = (h.maintenanceUsdWad - uint256(h.equityUsdWad)).divWadUp(h.maintenanceUsdWad);
        vm.recordLogs();
        vm.prank(caller);
        engine.liquidate(who, BTC);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == EventsLib.Liquidated.selector) {
                (, s.closedNotional,, s.penalty, s.reward) =
                    abi.decode(logs[i].data, (int256, uint256, uint256, uint256, uint256));
            }
        }
        assertGt(s.closedNotional, 0, "Liquidated emitted");
    }

    /// @dev Opens a 10x long for alice (10,000 USD, 2 BTC at 50,000), raises volatility and pokes,
    /// then lets the maintenance ramp rise, a minute at a time, until alice is liquidatable:
    /// a shortfall due to the requirement alone (the price never moves).
    function rampUnderMaintenance() internal {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        assertFalse(engine.isLiquidatable(alice));
        setFeed(1, 4e8); // volatility 50% -> 400%
        controller.poke(BTC);
        for (uint256 i; i < 400 && !engine.isLiquidatable(alice); ++i) {
            skipAndRefresh(60);
        }
        assertTrue(engine.isLiquidatable(alice), "the ramp took alice under maintenance");
    }

    function test_penalty_rampInducedShortfallPaysNearTheFloor() public {
        rampUnderMaintenance();
        Seen memory s = liquidateAndSee(alice);
        assertLt(s.depthWad, 0.05e18, "shallow");
        assertEq(s.penalty, s.closedNotional.mulWadUp(s.expectedFee).divUp(1e12), "penalty = notional x scaled fee");
        // floor 25%: at a depth under 5% the share is under 25% + 75% x 5/20 = 43.75%
        assertLt(s.expectedFee, s.liqFee.mulWad(0.4375e18));
        assertGe(s.expectedFee, s.liqFee.mulWad(0.25e18));
        assertEq(s.reward, s.penalty / 2);
        assertFalse(engine.isLiquidatable(alice), "restored: no second liquidation");
        Health memory h = engine.health(alice);
        assertGe(h.equityUsdWad + 1e13, int256(h.maintenanceUsdWad.mulWad(TARGET)), "target ratio");
        assertConserved();
    }

    /// @dev The smaller penalty closes less: the close to the target ratio with the scaled fee is
    /// smaller than the one the full fee would need, and still restores the target.
    function test_penalty_shallowShortfallClosesLessThanTheFullFeeWould() public {
        rampUnderMaintenance();
        flagAndWait(alice, BTC);
        Position memory p = engine.position(alice, BTC);
        MarketQuote memory q = controller.quote(BTC, true, uint256(int256(p.sizeWad)));
        Health memory h = engine.health(alice);
        uint256 mmf = q.mmfBaseWad + p.slipSnapWad;
        uint256 n = uint256(int256(p.sizeWad)).mulWadUp(q.priceWad);
        uint256 fullFeeClose =
            PositionMath.liquidationNotional(h.equityUsdWad, h.maintenanceUsdWad, TARGET, mmf, q.liqFeeWad + q.slipWad, n);
        uint256 scaledClose = PositionMath.liquidationNotional(
            h.equityUsdWad, h.maintenanceUsdWad, TARGET, mmf, depthScaledFee(q.liqFeeWad, h) + q.slipWad, n
        );
        assertLt(scaledClose, fullFeeClose);
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        Position memory after_ = engine.position(alice, BTC);
        uint256 closed = uint256(int256(p.sizeWad - after_.sizeWad));
        assertEq(closed, scaledClose.divWadUp(q.priceWad), "closed the scaled-fee size");
        assertFalse(engine.isLiquidatable(alice));
    }

    function test_penalty_deepShortfallPaysTheFullFee() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(45_500); // -9%: equity ~0.9k against ~2k maintenance, depth > 20%
        Seen memory s = liquidateAndSee(alice);
        assertGe(s.depthWad, 0.2e18, "deep");
        assertEq(s.expectedFee, s.liqFee);
        assertEq(s.penalty, s.closedNotional.mulWadUp(s.liqFee).divUp(1e12), "the full fee");
        assertConserved();
    }

    function test_penalty_underwaterPaysTheFullFee() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(44_000); // -12%: equity < 0
        Seen memory s = liquidateAndSee(alice);
        assertEq(s.depthWad, WAD);
        assertEq(s.penalty, s.closedNotional.mulWadUp(s.liqFee).divUp(1e12));
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        assertConserved();
    }

    /// @dev Engine level, over price moves from just under maintenance to underwater, both sides:
    /// the penalty is the closed notional times the depth-scaled fee, to the token unit, never
    /// above the full fee's, never below the floor's share.
    function testFuzz_penalty_scaledAndNeverAboveTheFullFee(uint256 size, uint256 moveBps, bool isLong) public {
        fund(alice, 10_000 * USDC);
        size = bound(size, 0.5e18, 4e18);
        open(alice, isLong ? int256(size) : -int256(size));
        moveBps = bound(moveBps, 50, 3_000);
        setPrice(isLong ? 50_000 * (10_000 - moveBps) / 10_000 : 50_000 * (10_000 + moveBps) / 10_000);
        if (!engine.isLiquidatable(alice)) return;
        Seen memory s = liquidateAndSee(alice);
        assertEq(s.penalty, s.closedNotional.mulWadUp(s.expectedFee).divUp(1e12));
        assertLe(s.penalty, s.closedNotional.mulWadUp(s.liqFee).divUp(1e12), "<= liqFee x notional");
        assertGe(s.penalty, s.closedNotional.mulWad(s.liqFee.mulWad(0.25e18)) / 1e12, ">= floor share");
        assertConserved();
    }

    /// @dev Self-liquidation at a shallow, ramp-made shortfall (the smallest penalty) does not pay:
    /// whoever owns the account, the liquidator and the settlement keeper ends with no more than it
    /// deposited (the price never moves: fees, impact and the insurance fund's share are lost).
    function testFuzz_selfLiquidationAtShallowDepthDoesNotPay(uint256 sizeSeed, uint256 volSeed) public {
        address self = track("selfLiquidator");
        int256 keeper0 = engine.collateralOf(address(this));
        fund(alice, 10_000 * USDC);
        if (!tryTrade(alice, BTC, int256(bound(sizeSeed, 1.2e18, 3e18)))) return;
        setFeed(1, int256(bound(volSeed, 2e8, 8e8)));
        controller.poke(BTC);
        for (uint256 i; i < 600 && !engine.isLiquidatable(alice); ++i) {
            skipAndRefresh(60);
        }
        if (!engine.isLiquidatable(alice)) return;
        Seen memory s = liquidateAndSeeAs(self, alice);
        assertLt(s.depthWad, 0.2e18, "below full depth: a reduced penalty");
        if (engine.position(alice, BTC).sizeWad != 0) close(alice, BTC);
        int256 total = engine.collateralOf(alice) + engine.collateralOf(self) + engine.collateralOf(address(this)) - keeper0;
        assertLe(total, int256(10_000 * USDC), "self-liquidation profit");
        assertConserved();
    }

    /// @dev The library rule: monotone in the depth (equity falling against a fixed maintenance),
    /// within [liqFee x floor, liqFee], the full fee at equity <= 0 and from fullDepth on, the
    /// floor's share when not under maintenance; floor 100% is the fee itself.
    function testFuzz_penaltyFraction_monotoneInDepthAndBounded(
        uint256 liqFee,
        uint256 maint,
        int256 e1,
        int256 e2,
        uint256 floor,
        uint256 fullDepth
    ) public pure {
        liqFee = bound(liqFee, 0.001e18, 0.1e18);
        maint = bound(maint, 1, 1e40);
        floor = bound(floor, 0.1e18, 1e18);
        fullDepth = bound(fullDepth, 0.01e18, 1e18);
        e1 = bound(e1, -int256(maint), int256(maint) * 2);
        e2 = bound(e2, -int256(maint), e1);
        // e2 <= e1: account 2 is at least as deep
        uint256 f1 = PositionMath.penaltyFraction(liqFee, e1, maint, floor, fullDepth);
        uint256 f2 = PositionMath.penaltyFraction(liqFee, e2, maint, floor, fullDepth);
        assertLe(f1, f2, "monotone in depth");
        assertLe(f2, liqFee, "never above the fee");
        assertGe(f1, liqFee.mulWad(floor), "never below the floor's share");
        if (e2 <= 0) assertEq(f2, liqFee);
        if (e1 >= int256(maint)) assertEq(f1, liqFee.mulWadUp(floor));
        assertEq(PositionMath.penaltyFraction(liqFee, e1, maint, 1e18, fullDepth), liqFee, "floor 100%: the fee");
        if (e1 > 0 && e1 < int256(maint)) {
            uint256 d = (maint - uint256(e1)).divWadUp(maint);
            if (d >= fullDepth) assertEq(f1, liqFee, "full from fullDepth on");
        }
    }

    function test_penaltyFraction_examples() public pure {
        // 0.5% fee, floor 25%, full at 20%: 2% below maintenance -> 25% + 75% x 0.1 = 32.5%
        assertEq(PositionMath.penaltyFraction(0.005e18, 98e18, 100e18, 0.25e18, 0.2e18), 0.001625e18);
        // 10% below -> 62.5%; 20% and beyond -> 100%; at the line -> 25%
        assertEq(PositionMath.penaltyFraction(0.005e18, 90e18, 100e18, 0.25e18, 0.2e18), 0.003125e18);
        assertEq(PositionMath.penaltyFraction(0.005e18, 80e18, 100e18, 0.25e18, 0.2e18), 0.005e18);
        assertEq(PositionMath.penaltyFraction(0.005e18, 100e18, 100e18, 0.25e18, 0.2e18), 0.00125e18);
        assertEq(PositionMath.penaltyFraction(0.005e18, -1, 100e18, 0.25e18, 0.2e18), 0.005e18);
        // rounded up: a depth of 1 wei of 3 rounds the depth and the share up
        assertEq(PositionMath.penaltyFraction(0.005e18, 2, 3, 0.25e18, 0.2e18), 0.005e18); // d = 1/3 > 20%
        assertEq(PositionMath.penaltyFraction(1e18, 3e18 - 1, 3e18, 0.25e18, 0.2e18), 0.25e18 + 4);
    }

    // ================================================================ settings

    function deployWith(uint256 floor, uint256 fullDepth) internal returns (MarginEngine) {
        MarginEngine.EngineConfig memory cfg = defaultEngineConfig();
        cfg.liqPenaltyFloorWad = floor;
        cfg.liqPenaltyFullDepthWad = fullDepth;
        return new MarginEngine(admin, usd, controller, cfg);
    }

    function test_config_penaltySettingsBounded() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineConfigOutOfBounds.selector, 10, 0.1e18 - 1, 1e18));
        deployWith(0.1e18 - 1, 0.2e18);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineConfigOutOfBounds.selector, 10, 1e18 + 1, 1e18));
        deployWith(1e18 + 1, 0.2e18);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineConfigOutOfBounds.selector, 11, 0.01e18 - 1, 1e18));
        deployWith(0.25e18, 0.01e18 - 1);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineConfigOutOfBounds.selector, 11, 1e18 + 1, 1e18));
        deployWith(0.25e18, 1e18 + 1);
        MarginEngine e = deployWith(0.1e18, 1e18);
        assertEq(e.liqPenaltyFloorWad(), 0.1e18);
        assertEq(e.liqPenaltyFullDepthWad(), 1e18);
        e = deployWith(1e18, 0.01e18);
        assertEq(e.liqPenaltyFloorWad(), 1e18);
    }

    function test_config_defaultsAreReadable() public view {
        assertEq(engine.liqPenaltyFloorWad(), 0.25e18);
        assertEq(engine.liqPenaltyFullDepthWad(), 0.2e18);
    }
}

/// @notice The preferred market is ranked with the depth-scaled fee (`_scorePreferred`). Market B
/// has a 2% liquidation fee and low volatility (maintenance 2.50%), BTC 0.5% and 50% (1.74%):
/// T x mmf - fee favours BTC at the full fee (0.0168 > 0.0112) but B once the fee is scaled below
/// 63% (a depth under ~10%), so a shallow shortfall is liquidated in B and a deep one in BTC.
contract LiquidationPenaltyPreferredTest is OrderHelpers {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    uint256 internal constant B = 1;
    uint256 internal constant TARGET = 1.25e18;

    function beforeSeal() internal override {
        MockAggregator[5] memory f;
        f[0] = new MockAggregator(8, "price", 100e8);
        f[1] = new MockAggregator(8, "vol", 0.2e8);
        f[2] = new MockAggregator(8, "funding", 0);
        f[3] = new MockAggregator(8, "depth", 50_000_000e8);
        f[4] = new MockAggregator(8, "skew", 0);
        RiskParams memory p = defaultParams();
        p.liqFeeWad = 0.02e18;
        controller.listMarket(B, listingConfigs(controller, B, f), p);
        seedReport(controller, B, f);
        controller.poke(B);
        marketFeeds[B] = f;
        extraMarkets.push(B);
    }

    /// @dev T x mmf - (fee + slip) of `who`'s position in `m`, with the fee scaled by the account's
    /// depth when `scaled`, else the full fee (the engine before issue 12).
    function score(address who, uint256 m, bool scaled) internal view returns (int256) {
        Position memory p = engine.position(who, m);
        MarketQuote memory q = controller.quote(m, p.sizeWad > 0, int256(p.sizeWad).abs());
        uint256 mmf = q.mmfBaseWad + p.slipSnapWad;
        if (mmf > q.maxMmfWad) mmf = q.maxMmfWad;
        uint256 fee = scaled ? depthScaledFee(q.liqFeeWad, engine.health(who)) : q.liqFeeWad;
        return int256(mmf.mulWad(TARGET)) - int256(fee + q.slipWad);
    }

    function openBoth() internal {
        fund(alice, 10_000 * USDC);
        trade(alice, BTC, 1e18, 0); // 50k
        trade(alice, B, 500e18, 0); // 50k
        assertFalse(engine.isLiquidatable(alice));
    }

    function depthOf(address who) internal view returns (uint256) {
        Health memory h = engine.health(who);
        if (h.equityUsdWad <= 0) return WAD;
        return (h.maintenanceUsdWad - uint256(h.equityUsdWad)).divWadUp(h.maintenanceUsdWad);
    }

    function test_preferred_shallowShortfallClosesTheMarketTheScaledFeeFavours() public {
        openBoth();
        uint256 px = 42_500;
        while (!engine.isLiquidatable(alice)) {
            px -= 10;
            setPrice(px);
        }
        assertLt(depthOf(alice), 0.05e18, "shallow");
        assertGt(score(alice, BTC, false), score(alice, B, false), "the full fee would pick BTC");
        assertGt(score(alice, B, true), score(alice, BTC, true), "the scaled fee picks B");
        assertEq(engine.liquidationMarket(alice), B);
        flagAndWait(alice, BTC);
        setMarketFeed(B, 0, 100e8); // B's first round after the flag
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.LiquidationMarketNotPreferred.selector, BTC, B));
        engine.liquidate(alice, BTC);
        vm.prank(liquidator);
        engine.liquidate(alice, B);
        assertFalse(engine.isLiquidatable(alice));
        assertConserved();
    }

    function test_preferred_deepShortfallClosesTheFullFeeChoice() public {
        openBoth();
        setPrice(41_000);
        assertGt(depthOf(alice), 0.2e18, "deep");
        assertGt(score(alice, BTC, true), score(alice, B, true));
        assertEq(engine.liquidationMarket(alice), BTC);
        flagAndLiquidate(liquidator, alice, BTC);
        assertConserved();
    }
}

/// @notice floor = 100% is the engine before issue 12: the whole `LiquidateTest` suite (partial
/// to the target ratio, full, penalty split, impact, bad debt) again, and the ramp-induced shallow
/// liquidation charged the full fee, sized with it.
contract LiquidateFloorFullTest is LiquidateTest {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    function defaultEngineConfig() internal pure override returns (MarginEngine.EngineConfig memory c) {
        c = super.defaultEngineConfig();
        c.liqPenaltyFloorWad = 1e18;
    }

    function test_floorFull_shallowShortfallPaysTheFullFee() public {
        assertEq(engine.liqPenaltyFloorWad(), 1e18);
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setFeed(1, 4e8);
        controller.poke(BTC);
        for (uint256 i; i < 400 && !engine.isLiquidatable(alice); ++i) {
            skipAndRefresh(60);
        }
        assertTrue(engine.isLiquidatable(alice));
        flagAndWait(alice, BTC);
        Position memory p = engine.position(alice, BTC);
        uint256 absSize = uint256(int256(p.sizeWad));
        MarketQuote memory q = controller.quote(BTC, true, absSize);
        Health memory h = engine.health(alice);
        assertLt(int256(h.maintenanceUsdWad) - h.equityUsdWad, int256(h.maintenanceUsdWad / 20), "shallow");
        // today's rule, written out: cost liqFee + slip, penalty notional x liqFee
        uint256 mmf = q.mmfBaseWad + p.slipSnapWad;
        uint256 n = absSize.mulWadUp(q.priceWad);
        uint256 closeN =
            PositionMath.liquidationNotional(h.equityUsdWad, h.maintenanceUsdWad, TARGET, mmf, q.liqFeeWad + q.slipWad, n);
        uint256 closeSize = closeN.divWadUp(q.priceWad);
        uint256 penalty = closeSize.mulWadUp(q.priceWad).mulWadUp(q.liqFeeWad).divUp(1e12);
        uint256 ins0 = engine.insuranceFund();
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        assertEq(absSize - uint256(int256(engine.position(alice, BTC).sizeWad)), closeSize);
        assertEq(engine.collateralOf(liquidator), int256(penalty / 2));
        assertEq(engine.insuranceFund() - ins0, penalty - penalty / 2);
    }
}
