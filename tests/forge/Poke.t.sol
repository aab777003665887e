// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {LeverageController} from "../../contracts/LeverageController.sol";
import {Ramp, RampLib} from "../../contracts/libraries/RampLib.sol";
import {MarketQuote, RiskParams} from "../../interfaces/ILeverageController.sol";

/// @notice `poke`: the maintenance ramp. Loosening applies at once; tightening starts after a
/// random delay in [0, rampJitterSec] and rises at most `mmfRampWadPerSec`; a target raised
/// mid-ramp keeps the ramp's start and rate.
contract PokeTest is BaseTest {
    uint256 internal constant RATE = uint256(0.05e18) / 3600;
    uint256 internal constant JITTER = 600;

    function target(bool isLong) internal view returns (uint256 t) {
        bool ok;
        (ok, t) = controller.maintenanceTarget(BTC, isLong);
        assertTrue(ok);
    }

    function mmfNow(bool isLong) internal view returns (uint256) {
        return controller.quote(BTC, isLong, 0).mmfBaseWad;
    }

    function setVol(uint256 vol8) internal {
        setFeed(1, int256(vol8));
    }

    function poke() internal {
        controller.poke(BTC);
    }

    function warpTo(uint256 t) internal {
        vm.warp(t);
        refreshFeeds();
    }

    // ================================================================ state after listing

    function test_poke_listingStartsAtCapUntilFirstPoke() public {
        vm.startPrank(admin);
        LeverageController c2 = new LeverageController(admin, 1 days);
        c2.listMarket(BTC, feedConfigs(feeds), defaultParams());
        vm.stopPrank();
        Ramp memory r = c2.ramp(BTC, true);
        assertEq(r.fromWad, 0.4e18);
        assertEq(r.toWad, 0.4e18);
        assertEq(c2.quote(BTC, true, 0).mmfBaseWad, 0.4e18);
        c2.poke(BTC);
        (, uint256 t) = c2.maintenanceTarget(BTC, true);
        assertEq(c2.quote(BTC, true, 0).mmfBaseWad, t);
    }

    function test_poke_setUpLoosenedToTarget() public view {
        uint256 t = target(true);
        // 2.326 * 50% * sqrt(1h / 1y) + 0.5% liquidation fee
        assertEq(t, 17_425_894_490_187_761);
        Ramp memory r = controller.ramp(BTC, true);
        assertEq(r.fromWad, t);
        assertEq(r.toWad, t);
        assertEq(r.rateWadPerSec, RATE);
        assertEq(mmfNow(true), t);
        assertEq(mmfNow(false), target(false));
    }

    function test_poke_noChangeNoEvent() public {
        vm.recordLogs();
        poke();
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 0);
    }

    // ================================================================ loosening

    function test_poke_loosensImmediately() public {
        uint256 t0 = target(true);
        setVol(0.3e8);
        uint256 t1 = target(true);
        assertLt(t1, t0);
        // Nothing moves until someone pokes.
        assertEq(mmfNow(true), t0);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.MaintenanceLoosened(BTC, true, t0, t1);
        poke();
        assertEq(mmfNow(true), t1);
        Ramp memory r = controller.ramp(BTC, true);
        assertEq(r.fromWad, t1);
        assertEq(r.toWad, t1);
        assertEq(r.activationSec, block.timestamp);
    }

    function test_poke_loosenMidRampDropsAtOnce() public {
        uint256 t0 = target(true);
        setVol(1e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        warpTo(r.activationSec + 300);
        uint256 cur = mmfNow(true);
        assertEq(cur, t0 + RATE * 300);
        setVol(0.4e8);
        uint256 t2 = target(true);
        assertLt(t2, cur);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.MaintenanceLoosened(BTC, true, cur, t2);
        poke();
        assertEq(mmfNow(true), t2);
    }

    // ================================================================ tightening

    function test_poke_tighteningWaitsForJitterThenRampsAtRate() public {
        uint256 t0 = target(true);
        setVol(1e8);
        uint256 t1 = target(true);
        assertGt(t1, t0);
        uint256 now0 = block.timestamp;
        vm.recordLogs();
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        assertEq(r.fromWad, t0);
        assertEq(r.toWad, t1);
        assertEq(r.rateWadPerSec, RATE);
        assertGe(r.activationSec, now0);
        assertLe(r.activationSec, now0 + JITTER);
        // The event carries the same schedule.
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 4); // long and short, each followed by its cleared record
        assertEq(logs[0].topics[0], EventsLib.MaintenanceTighteningScheduled.selector);
        (bool isLong, uint256 from, uint256 to, uint256 act, uint256 rate) =
            abi.decode(logs[0].data, (bool, uint256, uint256, uint256, uint256));
        assertTrue(isLong);
        assertEq(from, t0);
        assertEq(to, t1);
        assertEq(act, r.activationSec);
        assertEq(rate, RATE);

        // Flat until activation (inclusive), then exactly `rate` per second, capped at the target.
        assertEq(mmfNow(true), t0);
        warpTo(r.activationSec);
        assertEq(mmfNow(true), t0);
        warpTo(r.activationSec + 1);
        assertEq(mmfNow(true), t0 + RATE);
        warpTo(r.activationSec + 100);
        assertEq(mmfNow(true), t0 + 100 * RATE);
        uint256 full = (t1 - t0 + RATE - 1) / RATE;
        warpTo(r.activationSec + full - 1);
        assertLt(mmfNow(true), t1);
        warpTo(r.activationSec + full);
        assertEq(mmfNow(true), t1);
        warpTo(r.activationSec + full + 1 days);
        assertEq(mmfNow(true), t1);
    }

    function test_poke_jitterWithinWindow(uint256 seed) public {
        vm.prevrandao(bytes32(seed));
        vm.roll(bound(seed, 2, 1e9));
        setVol(1e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        assertLe(r.activationSec - block.timestamp, JITTER);
        Ramp memory rs = controller.ramp(BTC, false);
        assertLe(rs.activationSec - block.timestamp, JITTER);
    }

    /// @dev Raising the target mid-ramp keeps the start, the activation and the rate: the value is
    /// continuous and the rate bound still holds.
    function test_poke_targetRaisedMidRamp() public {
        uint256 t0 = target(true);
        setVol(1e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        warpTo(r.activationSec + 200);
        uint256 before = mmfNow(true);
        setVol(1.5e8);
        uint256 t2 = target(true);
        assertGt(t2, r.toWad);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.MaintenanceTargetRaised(BTC, true, t2);
        poke();
        Ramp memory r2 = controller.ramp(BTC, true);
        assertEq(r2.fromWad, t0);
        assertEq(r2.activationSec, r.activationSec);
        assertEq(r2.rateWadPerSec, RATE);
        assertEq(r2.toWad, t2);
        assertEq(mmfNow(true), before, "no jump at the poke");
        warpTo(r.activationSec + 1_000);
        assertEq(mmfNow(true), t0 + 1_000 * RATE);
        warpTo(r.activationSec + 1 days);
        assertEq(mmfNow(true), t2);
    }

    /// @dev Raising the target before activation keeps the pending start.
    function test_poke_targetRaisedBeforeActivation() public {
        vm.prevrandao(bytes32(uint256(7)));
        setVol(1e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        setVol(2e8);
        poke();
        Ramp memory r2 = controller.ramp(BTC, true);
        assertEq(r2.activationSec, r.activationSec);
        assertEq(r2.fromWad, r.fromWad);
        assertEq(r2.toWad, target(true));
    }

    /// @dev A lower target that is still above the current value shortens the ramp.
    function test_poke_targetLoweredMidRampAboveCurrent() public {
        setVol(2e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        warpTo(r.activationSec + 60);
        uint256 cur = mmfNow(true);
        setVol(1e8);
        uint256 t2 = target(true);
        assertGt(t2, cur);
        assertLt(t2, r.toWad);
        poke();
        Ramp memory r2 = controller.ramp(BTC, true);
        assertEq(r2.toWad, t2);
        assertEq(r2.fromWad, r.fromWad);
        assertEq(mmfNow(true), cur);
    }

    /// @dev Once a ramp has settled, the next tightening starts from the settled value with a new delay.
    function test_poke_newTighteningAfterSettled() public {
        setVol(1e8);
        poke();
        uint256 t1 = target(true);
        warpTo(block.timestamp + 1 days);
        assertEq(mmfNow(true), t1);
        setVol(1.2e8);
        poke();
        Ramp memory r = controller.ramp(BTC, true);
        assertEq(r.fromWad, t1);
        assertEq(r.toWad, target(true));
        assertGe(r.activationSec, block.timestamp);
    }

    /// @dev Put skew (negative risk reversal) only tightens the long side.
    function test_poke_adverseSkewTightensOneSide() public {
        uint256 l0 = target(true);
        uint256 s0 = target(false);
        setFeed(4, -0.1e8);
        assertGt(target(true), l0);
        assertEq(target(false), s0);
        poke();
        assertEq(controller.ramp(BTC, true).toWad, target(true));
        assertEq(controller.ramp(BTC, false).toWad, s0);
        // tail = 1 + 5 * 0.1 = 1.5: the VaR part grows by half.
        assertEq(target(true) - 0.005e18, (l0 - 0.005e18) * 3 / 2 + 1);
    }

    function test_poke_targetCappedAtMaxMmf() public {
        setVol(10e8);
        assertEq(target(true), 253_517_889_803_755_212);
        setFeed(4, -0.2e8); // tail 1 + 5 * 0.2 = 2 (the cap): the VaR part would double
        assertEq(target(true), 0.4e18);
        setFeed(4, -1e8); // the tail multiplier is capped at 2
        assertEq(target(true), 0.4e18);
        assertEq(target(false), 253_517_889_803_755_212);
    }

    // ================================================================ rejections

    /// @dev The report's volatility above its 10.0 bound.
    function test_poke_revertsWhenVolFeedBad() public {
        setFeed(1, 11e8);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        poke();
    }

    /// @dev Every field but the skew re-reported after its heartbeat.
    function test_poke_revertsWhenSkewFeedStale() public {
        vm.warp(block.timestamp + 3601);
        int256[4] memory a = riskAnswers(feeds);
        vm.prank(admin);
        controller.submitReport(BTC, 7, a);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        poke();
    }

    function test_poke_ignoresDepthAndFunding() public {
        vm.startPrank(admin);
        feeds[2].setReverting(true);
        feeds[3].setReverting(true);
        vm.stopPrank();
        setVol(0.3e8);
        poke();
        assertEq(mmfNow(true), target(true));
    }

    function test_poke_revertsWhenUnlisted() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 5));
        controller.poke(5);
    }

    // ================================================================ effect on positions

    /// @dev A volatility spike does not make an existing position liquidatable at once: the
    /// maintenance requirement climbs at the bounded rate after the delay.
    function test_poke_tighteningReachesPositionsGradually() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setPrice(47_000); // equity ~3.9k against ~1.6k maintenance
        assertFalse(engine.isLiquidatable(alice));
        setVol(3e8);
        poke();
        assertFalse(engine.isLiquidatable(alice), "not at the poke");
        Ramp memory r = controller.ramp(BTC, true);
        warpTo(r.activationSec);
        assertFalse(engine.isLiquidatable(alice), "not at activation");
        warpTo(r.activationSec + 2 hours);
        assertTrue(engine.isLiquidatable(alice), "after the ramp");
    }

    /// @dev New risk is priced live, and never below the ramped maintenance plus the minimum buffer
    /// (when the ramp sits above the live target because nobody poked after a calm-down).
    function test_quote_imfAtLeastRampedMaintenancePlusBuffer() public {
        setVol(3e8);
        poke();
        warpTo(block.timestamp + 1 days);
        setVol(0.2e8); // calm: the live IMF is low, but maintenance still sits at the high ramp
        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        RiskParams memory p = controller.imfParams(BTC);
        assertEq(q.imfWad, q.mmfBaseWad + q.slipWad + p.minBufferWad);
    }

    // ================================================================ fuzz: rate bound

    /// @dev Over any sequence of volatility and skew moves, warps and pokes: a poke never raises
    /// the maintenance fraction, and between two instants it rises by at most rate * elapsed.
    function testFuzz_poke_neverRisesFasterThanRate(uint256[8] memory vols, uint256[8] memory dts, int256[8] memory skews)
        public
    {
        for (uint256 i; i < 8; ++i) {
            uint256 l0 = mmfNow(true);
            uint256 s0 = mmfNow(false);
            setVol(bound(vols[i], 0.05e8, 5e8));
            setFeed(4, bound(skews[i], -0.3e8, 0.3e8));
            poke();
            assertLe(mmfNow(true), l0, "poke raised long");
            assertLe(mmfNow(false), s0, "poke raised short");
            l0 = mmfNow(true);
            s0 = mmfNow(false);
            uint256 dt = bound(dts[i], 0, 2 hours);
            warpTo(block.timestamp + dt);
            assertLe(mmfNow(true), l0 + RATE * dt, "long too fast");
            assertLe(mmfNow(false), s0 + RATE * dt, "short too fast");
            Ramp memory r = controller.ramp(BTC, true);
            assertLe(r.fromWad, r.toWad);
        }
    }

    // ================================================================ settled maintenance record

    /// @dev The side's maintenance as the ramp defines it now (what every quote must return).
    function rampNow(bool isLong) internal view returns (uint256) {
        return RampLib.valueAt(controller.ramp(BTC, isLong), block.timestamp);
    }

    function settled(bool isLong) internal view returns (bool s, uint256 v) {
        return controller.settledMaintenance(BTC, isLong);
    }

    function test_settled_recordedAtListingAndAfterLoosening() public {
        (bool s, uint256 v) = settled(true);
        assertTrue(s, "setUp's poke loosened the long side: settled");
        assertEq(v, target(true));
        (s, v) = settled(false);
        assertTrue(s);
        assertEq(v, target(false));
        vm.startPrank(admin);
        LeverageController c2 = new LeverageController(admin, 1 days);
        c2.listMarket(BTC, feedConfigs(feeds), defaultParams());
        vm.stopPrank();
        (s, v) = c2.settledMaintenance(BTC, false);
        assertTrue(s, "a listing starts settled at the cap");
        assertEq(v, 0.4e18);
    }

    /// @dev A tightening clears the record at once (quotes read the moving ramp); the poke after the
    /// ramp reached its end records it again; quotes equal the ramp throughout.
    function test_settled_clearedWhileRampingRecordedAfter() public {
        setVol(1e8);
        uint256 t1 = target(true);
        vm.recordLogs();
        poke();
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs[1].topics[0], EventsLib.MaintenanceRecordSet.selector, "the record's clearing is logged");
        (bool recLong, bool recSettled, uint256 recValue) = abi.decode(logs[1].data, (bool, bool, uint256));
        assertTrue(recLong);
        assertFalse(recSettled);
        assertEq(recValue, 0);
        (bool s,) = settled(true);
        assertFalse(s, "tightening scheduled: not settled");
        Ramp memory r = controller.ramp(BTC, true);
        uint256 end = r.activationSec + (t1 - r.fromWad + RATE - 1) / RATE;
        warpTo(r.activationSec + 10);
        assertEq(mmfNow(true), rampNow(true));
        warpTo(end + 1);
        assertEq(mmfNow(true), t1, "past its end the ramp is read, not the record");
        (s,) = settled(true);
        assertFalse(s, "not recorded until the next poke");
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.MaintenanceRecordSet(BTC, true, true, t1);
        poke();
        uint256 v;
        (s, v) = settled(true);
        assertTrue(s);
        assertEq(v, t1);
        assertEq(mmfNow(true), t1);
    }

    /// @dev A parameter proposal writes a new blob pointer into both side words and keeps the record.
    function test_settled_keptAcrossParameterChange() public {
        (, uint256 v0) = settled(true);
        RiskParams memory p = controller.activeParams(BTC);
        p.impactWad += 0.001e18;
        vm.prank(admin);
        controller.proposeParams(BTC, p);
        // A tightening prices new risk at once: the blob is rewritten (bootstrap or not).
        assertEq(controller.imfParams(BTC).impactWad, p.impactWad, "blob rewritten");
        (bool s, uint256 v) = settled(true);
        assertTrue(s);
        assertEq(v, v0);
        assertEq(mmfNow(true), rampNow(true));
        assertEq(mmfNow(false), rampNow(false));
    }

    /// @dev Over any sequence of volatility and skew moves, warps, pokes or none: every quote equals
    /// the ramp's value now, and a recorded side is one whose ramp has reached its end at that value.
    function testFuzz_settled_quoteAlwaysEqualsRamp(
        uint256[10] memory vols,
        uint256[10] memory dts,
        int256[10] memory skews,
        bool[10] memory pokes
    ) public {
        for (uint256 i; i < 10; ++i) {
            setVol(bound(vols[i], 0.05e8, 5e8));
            setFeed(4, bound(skews[i], -0.3e8, 0.3e8));
            if (pokes[i]) poke();
            warpTo(block.timestamp + bound(dts[i], 0, 3 hours));
            assertQuotedMaintenanceIsRamp(BTC, true);
            assertQuotedMaintenanceIsRamp(BTC, false);
        }
    }
}
