// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {ConstantsLib} from "../../contracts/libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MarginEngine} from "../../contracts/MarginEngine.sol";
import {StaticLeverageController} from "../../contracts/StaticLeverageController.sol";
import {MarketQuote} from "../../interfaces/ILeverageController.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

/// @notice The static baseline: fixed fractions whatever the feeds, the same execution impact and
/// funding as the dynamic controller, behind a second engine on the same feeds.
contract StaticTest is BaseTest {
    /// @dev The aggregator read path (its faults: reverting, back-dated, out-of-bounds feeds);
    /// the report path is `Report.t.sol`.
    function reportMode() internal pure override returns (bool) {
        return false;
    }

    StaticLeverageController internal sc;
    MarginEngine internal se;

    function staticParams() internal pure returns (StaticLeverageController.StaticParams memory) {
        return StaticLeverageController.StaticParams({imfWad: 0.05e18, mmfWad: 0.03e18, impactWad: 0.01e18, liqFeeWad: 0.005e18});
    }

    function setUp() public override {
        super.setUp();
        vm.startPrank(admin);
        sc = new StaticLeverageController(admin);
        vm.expectEmit(true, false, false, true);
        emit EventsLib.StaticFractionsSet(BTC, 0.05e18, 0.03e18);
        sc.listMarket(BTC, feedConfigs(feeds), staticParams());
        se = new MarginEngine(admin, usd, sc, defaultEngineConfig());
        vm.stopPrank();
        usd.approve(address(se), type(uint256).max);
        se.fundVault(10_000_000 * USDC);
        se.fundInsurance(100_000 * USDC);
    }

    function fundStatic(address who, uint256 amount) internal {
        usd.mint(who, amount);
        vm.startPrank(who);
        usd.approve(address(se), type(uint256).max);
        se.deposit(amount);
        vm.stopPrank();
    }

    /// @dev Commits on the static engine, waits the delay and re-publishes the price.
    function commitStatic(address who, int256 delta) internal returns (uint80 r) {
        vm.prank(who);
        se.commitOrder(BTC, delta, 0);
        vm.warp(block.timestamp + se.orderMinDelaySec());
        setFeed(0, feedAnswer(0));
        r = latestRound(BTC);
    }

    function tradeStatic(address who, int256 delta) internal {
        uint80 r = commitStatic(who, delta);
        se.settleOrder(who, BTC, r);
    }

    // ================================================================ fixed fractions

    function test_static_fixedFractions() public view {
        assertEq(sc.initialMarginFraction(BTC, true, 1_000_000e18), 0.05e18);
        assertEq(sc.maintenanceMarginFraction(BTC, false, 1e18), 0.03e18);
        assertEq(sc.maxLeverageWad(BTC, true), 20e18);
        StaticLeverageController.StaticParams memory p = sc.staticParams(BTC);
        assertEq(p.imfWad, 0.05e18);
        assertEq(p.mmfWad, 0.03e18);
        MarketQuote memory q = sc.quote(BTC, true, 2e18);
        assertEq(q.priceWad, 50_000e18);
        assertEq(q.imfWad, 0.05e18);
        assertEq(q.mmfBaseWad, 0.03e18);
        assertEq(q.maxMmfWad, 0.03e18);
        assertEq(q.slipWad, 0.00002e18); // same depth-based slip as the dynamic model
        assertEq(q.impactCoefWad, 0.01e18); // impact = integral over the skew against this depth
        assertEq(q.depthUsdWad, 50_000_000e18);
        assertTrue(q.priceOk);
        assertEq(q.liqFeeWad, 0.005e18);
        assertTrue(q.riskFeedsOk);
        assertTrue(q.fundingOk);
        assertTrue(q.sequencerUp);
    }

    /// @dev Volatility, skew, funding and crowding move the dynamic IMF, never the static one.
    function testFuzz_static_ignoresRiskFeeds(uint256 vol, int256 skew, int256 rate, uint256 size) public {
        setFeed(1, int256(bound(vol, 0.01e8, 10e8)));
        setFeed(4, bound(skew, -1e8, 1e8));
        setFeed(2, bound(rate, -0.05e8, 0.05e8));
        size = bound(size, 0, 1e24);
        MarketQuote memory q = sc.quote(BTC, true, size);
        assertEq(q.imfWad, 0.05e18);
        assertEq(q.mmfBaseWad, 0.03e18);
        assertEq(sc.maxLeverageWad(BTC, false), 20e18);
    }

    function test_static_riskFeedFaultsIgnored() public {
        vm.startPrank(admin);
        feeds[1].setReverting(true);
        feeds[4].setReverting(true);
        vm.stopPrank();
        MarketQuote memory q = sc.quote(BTC, true, 1e18);
        assertTrue(q.riskFeedsOk);
        assertEq(q.imfWad, 0.05e18);
        // while the dynamic controller fails closed
        assertEq(controller.quote(BTC, true, 1e18).imfWad, 0.5e18);
    }

    function test_static_comparedWithDynamic() public {
        // calm market: the dynamic model allows more than the static 20x
        setFeed(1, 0.2e8);
        controller.poke(BTC);
        assertGt(controller.maxLeverageWad(BTC, true), sc.maxLeverageWad(BTC, true));
        // stressed market: less
        setFeed(1, 2e8);
        assertLt(controller.maxLeverageWad(BTC, true), sc.maxLeverageWad(BTC, true));
        assertEq(sc.maxLeverageWad(BTC, true), 20e18);
    }

    function test_static_pokeIsNoOp() public {
        vm.recordLogs();
        sc.poke(BTC);
        assertEq(vm.getRecordedLogs().length, 0);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 3));
        sc.poke(3);
    }

    function test_static_unlistedReverts() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 3));
        sc.initialMarginFraction(3, true, 0);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 3));
        sc.maintenanceMarginFraction(3, true, 0);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 3));
        sc.maxLeverageWad(3, true);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 3));
        sc.quote(3, true, 0);
    }

    /// @dev A price fault never reverts the quote: it reports priceOk = false and price 0.
    function test_static_priceFaultReported() public {
        vm.prank(admin);
        feeds[0].setReverting(true);
        MarketQuote memory q = sc.quote(BTC, true, 0);
        assertFalse(q.priceOk);
        assertEq(q.priceWad, 0);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        sc.priceWad(BTC);
    }

    // ================================================================ engine on static fractions

    function test_static_openUpTo20x() public {
        fundStatic(alice, 1_000 * USDC);
        // 20k notional: settlement fee 1, fee 10, impact 0.01 * 20k^2 / (2 * 50M) = 0.04 ->
        // equity 988.96 < 1000 required
        uint256 snap = vm.snapshotState();
        uint80 r = commitStatic(alice, 0.4e18);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, int256(988.96e18), uint256(1_000e18))
        );
        se.settleOrder(alice, BTC, r);
        vm.revertToState(snap);
        // 19.5k: required 975
        tradeStatic(alice, 0.39e18);
        Health memory h = se.health(alice);
        assertEq(h.initialUsdWad, 975e18);
        assertEq(h.maintenanceUsdWad, 585e18);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad));
    }

    function test_static_liquidatesAtFixedMaintenance() public {
        fundStatic(alice, 1_000 * USDC);
        tradeStatic(alice, 0.39e18);
        int256 c = se.collateralOf(alice);
        // settlement fee 1, fee 9.75 and impact 0.01 * 19.5k^2 / 1e8 = 0.038025 on 19.5k
        assertEq(c, 989_211_975);
        // equity = c + 0.39 * (p - 50k) < 0.03 * 0.39 * p  <=>  p < (19.5k - c) / (0.39 * 0.97) = 48929.0
        setPrice(49_000);
        Health memory h = se.health(alice);
        assertEq(h.maintenanceUsdWad, 0.39e18 * uint256(49_000) * 3 / 100);
        assertEq(h.equityUsdWad, c * 1e12 - 0.39e18 * 1_000);
        assertFalse(se.isLiquidatable(alice));
        setPrice(48_900);
        assertTrue(se.isLiquidatable(alice));
        se.flagLiquidation(alice);
        vm.warp(block.timestamp + se.orderMinDelaySec());
        setFeed(0, feedAnswer(0));
        vm.prank(liquidator);
        se.liquidate(alice, BTC);
        h = se.health(alice);
        assertGe(uint256(h.equityUsdWad) * 1e18 / h.maintenanceUsdWad, 1.25e18);
        assertGt(se.collateralOf(liquidator), 0);
    }

    /// @dev Same funding as the dynamic engine: longs pay the feed rate.
    function test_static_fundingAccruesLikeDynamic() public {
        setFeed(2, 0.001e8);
        fundStatic(alice, 10_000 * USDC);
        tradeStatic(alice, 1e18);
        skipAndRefresh(1 hours);
        assertEq(se.health(alice).equityUsdWad, int256(se.collateralOf(alice)) * 1e12 - 50e18);
    }

    // ================================================================ listing

    function expectBadListing(StaticLeverageController.StaticParams memory p, bytes memory err) internal {
        vm.prank(admin);
        vm.expectRevert(err);
        sc.listMarket(2, feedConfigs(feeds), p);
    }

    function test_static_listingValidation() public {
        StaticLeverageController.StaticParams memory p = staticParams();
        p.imfWad = 1.1e18;
        expectBadListing(
            p,
            abi.encodeWithSelector(
                ErrorsLib.ParamOutOfBounds.selector, ParamField.MinImf, 1.1e18, ConstantsLib.MIN_IMF_MIN, ConstantsLib.IMF_MAX
            )
        );
        p = staticParams();
        p.imfWad = 0.004e18;
        expectBadListing(
            p,
            abi.encodeWithSelector(
                ErrorsLib.ParamOutOfBounds.selector, ParamField.MinImf, 0.004e18, ConstantsLib.MIN_IMF_MIN, ConstantsLib.IMF_MAX
            )
        );
        p = staticParams();
        p.mmfWad = 0.05e18;
        expectBadListing(
            p,
            abi.encodeWithSelector(
                ErrorsLib.ParamOutOfBounds.selector, ParamField.MinMmf, 0.05e18, ConstantsLib.MIN_MMF_MIN, 0.05e18 - 1
            )
        );
        p = staticParams();
        p.mmfWad = 0.0009e18;
        expectBadListing(
            p,
            abi.encodeWithSelector(
                ErrorsLib.ParamOutOfBounds.selector, ParamField.MinMmf, 0.0009e18, ConstantsLib.MIN_MMF_MIN, 0.05e18 - 1
            )
        );
        p = staticParams();
        p.impactWad = 0.21e18;
        expectBadListing(
            p, abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, ParamField.Impact, 0.21e18, 0, ConstantsLib.IMPACT_MAX)
        );
        p = staticParams();
        p.liqFeeWad = 0.2e18;
        expectBadListing(
            p,
            abi.encodeWithSelector(
                ErrorsLib.ParamOutOfBounds.selector, ParamField.LiqFee, 0.2e18, ConstantsLib.LIQ_FEE_MIN, ConstantsLib.LIQ_FEE_MAX
            )
        );
        vm.prank(admin);
        sc.listMarket(2, feedConfigs(feeds), staticParams());
        assertTrue(sc.isListed(2));
    }

    function test_static_listingRejections() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketAlreadyListed.selector, BTC));
        sc.listMarket(BTC, feedConfigs(feeds), staticParams());
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketIdOutOfRange.selector, 300, 64));
        sc.listMarket(300, feedConfigs(feeds), staticParams());
        sc.sealBootstrap();
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        sc.listMarket(2, feedConfigs(feeds), staticParams());
        vm.stopPrank();
        bytes32 role = sc.RISK_ADMIN_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        sc.listMarket(2, feedConfigs(feeds), staticParams());
    }
}
