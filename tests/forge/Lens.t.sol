// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {console} from "forge-std/console.sol";
import {Vm} from "forge-std/Vm.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";
import {OrderPreview} from "../../interfaces/IMarginLens.sol";
import {MarginLens} from "../../contracts/MarginLens.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";

/// @notice MarginLens against the engine, to the wei: a preview then the settlement at that price
/// (same impact, fee, realized PnL, position, collateral, health, pass/fail and error); the
/// maximum size settles and one wei more does not; at the liquidation price the account is
/// liquidatable and one wei on the safe side it is not. Market 1 (ETH-like) has 18-decimal feeds
/// so that prices can be set to the wei; BTC (8 decimals) holds the account's other position.
contract LensTest is BaseTest {
    uint256 internal constant ETH = 1;
    uint256 internal constant ETH_PRICE = 2_000e18;

    MarginLens internal lens;
    MockAggregator[5] internal eth;

    function beforeSeal() internal override {
        eth[0] = new MockAggregator(18, "ETH / USD", int256(ETH_PRICE));
        eth[1] = new MockAggregator(18, "ETH vol", 0.6e18);
        eth[2] = new MockAggregator(18, "ETH funding per hour", 0.0002e18);
        eth[3] = new MockAggregator(18, "ETH depth USD", 20_000_000e18);
        eth[4] = new MockAggregator(18, "ETH 25d risk reversal", -0.05e18);
        controller.listMarket(ETH, feedConfigs(eth), defaultParams());
        controller.poke(ETH);
        marketFeeds[ETH] = eth;
        extraMarkets.push(ETH);
    }

    function setUp() public override {
        super.setUp();
        lens = new MarginLens(engine);
        fund(bob, 5_000_000 * USDC);
    }

    // ---------------------------------------------------------------- helpers

    function _publish(uint256 id, int256 answer) internal {
        vm.prank(admin);
        priceFeed(id).transmit(answer);
    }

    function _answer(uint256 id) internal view returns (int256 a) {
        (, a,,,) = priceFeed(id).latestRoundData();
    }

    /// @dev bob skews the ETH book (and fills its impact pool); alice gets collateral and, maybe,
    /// an ETH and a BTC position; then time passes (funding accrues, pending).
    function _scene(uint256 collUsd, int256 bobEth, int256 aliceEth, int256 aliceBtc, uint256 dt) internal {
        if (bobEth != 0) trade(bob, ETH, bobEth, 0);
        fund(alice, collUsd * USDC);
        if (aliceEth != 0) trade(alice, ETH, aliceEth, 0);
        if (aliceBtc != 0) trade(alice, BTC, aliceBtc, 0);
        if (dt != 0) skipAndRefresh(dt);
    }

    function _sceneFromSeeds(uint256 collSeed, int256 bobSeed, uint256 preSeed, uint256 dtSeed)
        internal
        returns (uint256 collUsd)
    {
        collUsd = bound(collSeed, 50, 500_000);
        int256 bobEth = int256(bound(uint256(bobSeed < 0 ? -(bobSeed + 1) : bobSeed), 0, 2_000e18));
        if (bobSeed < 0) bobEth = -bobEth;
        // alice's own positions: small enough to open (at most ~3x).
        int256 aliceEth;
        int256 aliceBtc;
        if (preSeed % 3 != 0) {
            aliceEth = int256(collUsd * 1e18 / 2_000) * int256(preSeed % 7 + 1) / 3;
            if (preSeed % 2 == 0) aliceEth = -aliceEth;
        }
        if (preSeed % 5 == 1) aliceBtc = int256(collUsd * 1e18 / 50_000) / 2;
        _scene(collUsd, bobEth, aliceEth, aliceBtc, bound(dtSeed, 0, 3000));
    }

    struct Modified {
        bool found;
        int256 delta;
        int256 newSize;
        uint256 price;
        int256 realized;
        uint256 fee;
        int256 impact;
    }

    function _positionModified(Vm.Log[] memory logs) internal pure returns (Modified memory m) {
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == EventsLib.PositionModified.selector) {
                m.found = true;
                (m.delta, m.newSize, m.price, m.realized, m.fee, m.impact) =
                    abi.decode(logs[i].data, (int256, int256, uint256, int256, uint256, int256));
            }
        }
    }

    function _assertHealth(Health memory a, Health memory b) internal pure {
        assertEq(a.equityUsdWad, b.equityUsdWad, "equity");
        assertEq(a.maintenanceUsdWad, b.maintenanceUsdWad, "maintenance");
        assertEq(a.initialUsdWad, b.initialUsdWad, "initial");
        assertEq(a.notionalUsdWad, b.notionalUsdWad, "notional");
    }

    // ---------------------------------------------------------------- previewOrder

    /// @notice Preview, then the settlement at the same price: same outcome to the wei.
    function testFuzz_preview_matchesSettlement(
        uint256 collSeed,
        int256 bobSeed,
        uint256 preSeed,
        uint256 dtSeed,
        int256 sizeSeed,
        uint256 moveSeed,
        uint256 limitSeed
    ) public {
        uint256 collUsd = _sceneFromSeeds(collSeed, bobSeed, preSeed, dtSeed);
        uint256 maxAbs = collUsd * 1e18 / 2_000 * 80; // up to 80x: many orders fail the margin check
        int256 delta = int256(bound(uint256(sizeSeed < 0 ? -(sizeSeed + 1) : sizeSeed), 1, maxAbs));
        if (sizeSeed < 0) delta = -delta;
        uint256 p0 = uint256(_answer(ETH));
        uint256 limit;
        if (limitSeed % 3 == 1) limit = delta > 0 ? p0 * 1005 / 1000 : p0 * 995 / 1000;
        else if (limitSeed % 3 == 2) limit = delta > 0 ? p0 * 1030 / 1000 : p0 * 970 / 1000;

        // Before the commit (the settlement fee still in collateral) and after it (escrowed): the
        // preview is the same.
        OrderPreview memory before = lens.previewOrder(alice, ETH, delta, 0, limit);
        vm.prank(alice);
        engine.commitOrder(ETH, delta, limit);
        assertEq(abi.encode(lens.previewOrder(alice, ETH, delta, 0, limit)), abi.encode(before), "escrow");

        vm.warp(block.timestamp + engine.orderMinDelaySec());
        uint256 fill = p0 * (970 + moveSeed % 61) / 1000 + moveSeed % 1e9; // -3%..+3%, odd wei
        _publish(ETH, int256(fill));
        OrderPreview memory p = lens.previewOrder(alice, ETH, delta, fill, limit);
        assertEq(p.fillPriceWad, fill);

        uint80 r = latestRound(ETH);
        vm.recordLogs();
        try engine.settleOrder(alice, ETH, r) {
            assertTrue(p.ok, "engine settled, lens said it would fail");
            assertEq(p.errorSelector, bytes4(0));
            Modified memory m = _positionModified(vm.getRecordedLogs());
            assertTrue(m.found);
            assertEq(m.newSize, p.newSizeWad, "new size");
            assertEq(m.price, p.fillPriceWad, "fill");
            assertEq(m.realized, p.realizedPnlTokens, "realized");
            assertEq(m.fee, p.feeTokens, "fee");
            assertEq(m.impact, p.impactTokens, "impact");
            assertEq(engine.collateralOf(alice), p.collateralAfterTokens, "collateral");
            assertEq(engine.position(alice, ETH).sizeWad, p.newSizeWad);
            _assertHealth(engine.health(alice), p.healthAfter);
            if (limit != 0) assertTrue(delta > 0 ? p.effectivePriceWad <= int256(limit) : p.effectivePriceWad >= int256(limit));
        } catch (bytes memory err) {
            assertFalse(p.ok, "engine reverted, lens said it would pass");
            assertEq(bytes4(err), p.errorSelector, "error");
        }
    }

    /// @notice Each error the lens names is the one the engine reverts with.
    function test_preview_namesErrors() public {
        _scene(1_000, 0, 0, 0, 0);
        OrderPreview memory p = lens.previewOrder(alice, ETH, 0, 0, 0);
        assertEq(p.errorSelector, ErrorsLib.ZeroSize.selector);
        p = lens.previewOrder(alice, 7, 1e18, 0, 0);
        assertEq(p.errorSelector, ErrorsLib.MarketNotListed.selector);
        p = lens.previewOrder(alice, ETH, 100e18, 0, 0); // 200x
        assertEq(p.errorSelector, ErrorsLib.InitialMarginViolated.selector);
        p = lens.previewOrder(alice, ETH, 0.1e18, 0, ETH_PRICE); // fee + impact above the limit
        assertEq(p.errorSelector, ErrorsLib.PriceLimitExceeded.selector);
        assertGt(p.effectivePriceWad, int256(ETH_PRICE));
        p = lens.previewOrder(carol(), ETH, 0.1e18, 0, 0); // no collateral for the settlement fee
        assertEq(p.errorSelector, ErrorsLib.InsufficientCollateral.selector);
        vm.prank(admin);
        engine.setOpenInterestCap(ETH, 100e18); // $100 per side
        p = lens.previewOrder(alice, ETH, 0.1e18, 0, 0);
        assertEq(p.errorSelector, ErrorsLib.OpenInterestCapExceeded.selector);
        assertGt(p.openInterestUsdWad, p.openInterestCapUsdWad);
        vm.prank(alice);
        engine.commitOrder(ETH, 0.1e18, 0);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        _publish(ETH, int256(ETH_PRICE));
        uint80 r = latestRound(ETH);
        vm.expectPartialRevert(ErrorsLib.OpenInterestCapExceeded.selector);
        engine.settleOrder(alice, ETH, r);
    }

    function carol() internal returns (address) {
        return makeAddr("carol");
    }

    // ---------------------------------------------------------------- maxOrderSize

    /// @notice The maximum settles; one wei more does not (same error as the lens names).
    function testFuzz_maxOrderSize_isExact(uint256 collSeed, int256 bobSeed, uint256 preSeed, uint256 dtSeed, bool isLong)
        public
    {
        _sceneFromSeeds(collSeed, bobSeed, preSeed, dtSeed);
        uint256 t0 = block.timestamp;
        uint256 delay = engine.orderMinDelaySec();
        int256 price = _answer(ETH);

        // The size, read at the settlement time (an order pending, its fee escrowed).
        uint256 s = vm.snapshotState();
        vm.prank(alice);
        engine.commitOrder(ETH, isLong ? int256(1) : -1, 0);
        vm.warp(t0 + delay);
        _publish(ETH, price);
        uint256 maxSize = lens.maxOrderSize(alice, ETH, isLong);
        vm.revertToState(s);
        assertGt(maxSize, 0, "some size always fits");

        // max settles
        s = vm.snapshotState();
        int256 d = isLong ? int256(maxSize) : -int256(maxSize);
        vm.prank(alice);
        engine.commitOrder(ETH, d, 0);
        vm.warp(t0 + delay);
        _publish(ETH, price);
        assertTrue(lens.previewOrder(alice, ETH, d, 0, 0).ok);
        engine.settleOrder(alice, ETH, latestRound(ETH));
        vm.revertToState(s);

        // max + 1 wei does not
        d = isLong ? int256(maxSize + 1) : -int256(maxSize + 1);
        vm.prank(alice);
        engine.commitOrder(ETH, d, 0);
        vm.warp(t0 + delay);
        _publish(ETH, price);
        OrderPreview memory p = lens.previewOrder(alice, ETH, d, 0, 0);
        assertFalse(p.ok);
        uint80 r = latestRound(ETH);
        vm.expectPartialRevert(p.errorSelector);
        engine.settleOrder(alice, ETH, r);
    }

    // ---------------------------------------------------------------- liquidationPrice

    /// @notice At the liquidation price the account is liquidatable (and can be flagged); one wei
    /// on the safe side it is not. Funding pending at that price, the ramp in force, a BTC
    /// position valued at its live price.
    function testFuzz_liquidationPrice_isTheBoundary(
        uint256 collSeed,
        uint256 levSeed,
        bool isLong,
        bool withBtc,
        int256 fundingSeed,
        uint256 dtSeed
    ) public {
        uint256 collUsd = bound(collSeed, 100, 1_000_000);
        fund(alice, collUsd * USDC);
        if (withBtc) trade(alice, BTC, int256(collUsd * 1e18 / 50_000) / 2, 0);
        uint256 maxSize = lens.maxOrderSize(alice, ETH, isLong);
        uint256 size = maxSize * bound(levSeed, 5, 95) / 100;
        vm.assume(size > 0);
        trade(alice, ETH, isLong ? int256(size) : -int256(size), 0);

        vm.prank(admin);
        eth[2].transmit(int256(bound(fundingSeed, -0.01e18, 0.01e18)));
        skipAndRefresh(bound(dtSeed, 0, 3000));

        (uint256 liqPrice, bool exists) = lens.liquidationPrice(alice, ETH);
        if (!exists) {
            // Too little leverage: not liquidatable anywhere within the feed's bounds.
            _publish(ETH, isLong ? int256(1e18) : int256(1e25));
            assertFalse(engine.isLiquidatable(alice), "no liquidation price: safe at the bound");
            return;
        }
        _publish(ETH, int256(liqPrice));
        assertTrue(engine.isLiquidatable(alice), "liquidatable at the price");
        uint256 s = vm.snapshotState();
        engine.flagLiquidation(alice);
        vm.revertToState(s);
        _publish(ETH, int256(isLong ? liqPrice + 1 : liqPrice - 1));
        assertFalse(engine.isLiquidatable(alice), "not liquidatable one wei on the safe side");
        vm.expectPartialRevert(ErrorsLib.AccountHealthy.selector);
        engine.flagLiquidation(alice);
    }

    function test_liquidationPrice_noPositionReverts() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPosition.selector, alice, ETH));
        lens.liquidationPrice(alice, ETH);
    }

    // ---------------------------------------------------------------- gas

    /// @notice Gas of each view for an account with two positions (logged; `-vv`).
    function test_gas_views() public {
        _scene(10_000, 500e18, 20e18, 0.05e18, 600);
        uint256 g = gasleft();
        lens.previewOrder(alice, ETH, 10e18, 0, 0);
        uint256 gPreview = g - gasleft();
        g = gasleft();
        uint256 m = lens.maxOrderSize(alice, ETH, true);
        uint256 gMax = g - gasleft();
        g = gasleft();
        lens.liquidationPrice(alice, ETH);
        uint256 gLiq = g - gasleft();
        console.log("previewOrder gas", gPreview);
        console.log("maxOrderSize gas", gMax);
        console.log("liquidationPrice gas", gLiq);
        assertGt(m, 0);
        assertLt(gMax, 5_000_000, "maxOrderSize fits an eth_call easily");
    }
}
