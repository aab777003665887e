// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MarginMath, RiskInputs} from "../../contracts/libraries/MarginMath.sol";
import {Ramp} from "../../contracts/libraries/RampLib.sol";
import {RiskPusher} from "../../contracts/RiskPusher.sol";
import {MarketQuote, RiskParams} from "../../interfaces/ILeverageController.sol";

/// @notice The published calibrated tail (issue 12): `publishTail` stores a per-side multiplier the
/// model uses as min(tailCap, max(tail, live tail)); bounded at publication, stale after the
/// volatility feed's heartbeat (fails closed), and atomic with the poke through `RiskPusher`.
contract TailTest is BaseTest {
    function _maxLev(bool isLong) internal view returns (uint256) {
        return controller.maxLeverageWad(BTC, isLong);
    }

    function test_tail_noneIsTheModelWithout() public view {
        (bool ok, uint256 t, uint256 at) = controller.tailFeed(BTC, true);
        assertTrue(ok);
        assertEq(t, 0);
        assertEq(at, 0);
        (bool okT, uint256 target) = controller.maintenanceTarget(BTC, true);
        assertTrue(okT);
        RiskParams memory p = controller.activeParams(BTC);
        assertEq(target, MarginMath.maintenanceBase(p, MarginMath.varMove(p, 0.5e18, 0, true)));
    }

    /// @dev A long tail of 3 raises the long side's requirement only, by exactly the model's terms.
    function test_tail_raisesItsSideOnly() public {
        uint256 longBefore = _maxLev(true);
        uint256 shortBefore = _maxLev(false);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.TailPublished(BTC, 3e18, 1e18, block.timestamp);
        vm.prank(admin);
        controller.publishTail(BTC, 3e18, 1e18);
        assertLt(_maxLev(true), longBefore, "long leverage falls");
        assertEq(_maxLev(false), shortBefore, "a tail of 1 is below the live tail: short unchanged");
        RiskParams memory p = controller.activeParams(BTC);
        (, uint256 target) = controller.maintenanceTarget(BTC, true);
        assertEq(target, MarginMath.maintenanceBase(p, MarginMath.varMove(p, 0.5e18, 0, true, 3e18)));
        // The quote's initial fraction is the model's with the tail (no position, no open interest).
        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        RiskInputs memory x = RiskInputs(0.5e18, 0, 50_000_000e18, 0, 0, 0, q.priceWad, q.priceWad, true);
        uint256 imfLive = MarginMath.compute(controller.imfParams(BTC), x, 3e18).imfWad;
        assertEq(
            q.imfWad,
            MarginMath.requiredInitial(
                imfLive, MarginMath.positionMaintenance(q.mmfBaseWad, q.slipWad, q.maxMmfWad), p.minBufferWad, p.maxImfWad
            )
        );
        // tailCap (2 in the test parameters) caps a larger published tail.
        vm.prank(admin);
        controller.publishTail(BTC, 4.5e18, 1e18);
        (, uint256 capped) = controller.maintenanceTarget(BTC, true);
        assertEq(capped, MarginMath.maintenanceBase(p, MarginMath.varMove(p, 0.5e18, 0, true, 2e18)));
    }

    function test_tail_publishRejections() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.TailOutOfBounds.selector, BTC, 0.5e18, 1e18, 5e18));
        controller.publishTail(BTC, 0.5e18, 1e18);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.TailOutOfBounds.selector, BTC, 5e18 + 1, 1e18, 5e18));
        controller.publishTail(BTC, 1e18, 5e18 + 1);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 7));
        controller.publishTail(7, 1e18, 1e18);
        vm.stopPrank();
        bytes32 role = controller.REPORTER_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, alice, role));
        vm.prank(alice);
        controller.publishTail(BTC, 1e18, 1e18);
        (,, uint256 at) = controller.tailFeed(BTC, true);
        assertEq(at, 0, "nothing stored by a rejected publication");
    }

    /// @dev Older than the volatility feed's heartbeat (3,600 s), a published tail fails closed:
    /// new risk at maxImf, poke refuses; a fresh publication restores it.
    function test_tail_staleFailsClosed() public {
        vm.prank(admin);
        controller.publishTail(BTC, 1.5e18, 1.5e18);
        skipAndRefresh(3601);
        (bool ok,,) = controller.tailFeed(BTC, true);
        assertFalse(ok);
        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        assertFalse(q.riskFeedsOk);
        assertEq(q.imfWad, q.maxImfWad);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        controller.poke(BTC);
        vm.prank(admin);
        controller.publishTail(BTC, 1.5e18, 1.5e18);
        assertTrue(controller.quote(BTC, true, 1e18).riskFeedsOk);
        controller.poke(BTC);
    }

    /// @dev Through the pusher, the tail lands and the poke that follows schedules the tightening
    /// it calls for, in one transaction; mismatched lengths revert.
    function test_tail_pushWithTailsPokesAtomically() public {
        RiskPusher pusher = new RiskPusher(admin, controller, engine);
        vm.startPrank(admin);
        controller.grantRole(controller.REPORTER_ROLE(), address(pusher));
        vm.stopPrank();
        Ramp memory r0 = controller.ramp(BTC, true);
        uint256[] memory ms = new uint256[](1);
        ms[0] = BTC;
        uint256[] memory tl = new uint256[](1);
        tl[0] = 1.8e18;
        uint256[] memory ts = new uint256[](1);
        ts[0] = 1e18;
        vm.prank(admin);
        pusher.pushWithTails(new address[](0), new int256[](0), new RiskPusher.ReportInput[](0), ms, tl, ts);
        Ramp memory r1 = controller.ramp(BTC, true);
        assertGt(r1.toWad, r0.toWad, "poked with the new tail in the same transaction");
        (, uint256 target) = controller.maintenanceTarget(BTC, true);
        assertEq(r1.toWad, target);
        vm.expectRevert(abi.encodeWithSelector(RiskPusher.TailLengthMismatch.selector, 1, 1, 0));
        vm.prank(admin);
        pusher.pushWithTails(new address[](0), new int256[](0), new RiskPusher.ReportInput[](0), ms, tl, new uint256[](0));
    }

    /// @dev Fuzz: the multiplier with a published tail is min(tailCap, max(tail, live tail)), and 0
    /// gives the model without it.
    function testFuzz_tail_multiplierRule(uint256 sigma, int256 skew, uint256 feed, bool isLong) public pure {
        RiskParams memory p = defaultParams();
        p.regimeSensWad = 1e18;
        sigma = bound(sigma, 0.01e18, 10e18);
        skew = bound(skew, -1e18, 1e18);
        feed = bound(feed, 0, 5e18);
        uint256 live = MarginMath.tailMultiplier(p, sigma, skew, isLong);
        uint256 withFeed = MarginMath.tailMultiplier(p, sigma, skew, isLong, feed);
        uint256 expect = feed > live ? (feed < p.tailCapWad ? feed : p.tailCapWad) : live;
        assertEq(withFeed, expect);
        assertEq(MarginMath.tailMultiplier(p, sigma, skew, isLong, 0), live);
    }
}
