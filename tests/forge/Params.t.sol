// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {ConstantsLib} from "../../contracts/libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {LeverageController} from "../../contracts/LeverageController.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {FeedConfig, MarketQuote, RiskParams} from "../../interfaces/ILeverageController.sol";

/// @notice Governance of risk parameters: bootstrap vs sealed, the timelock, step limits and hard
/// bounds, the "tighter of active and pending" rule for new risk, cancellation, market listing.
contract ParamsTest is OrderHelpers {
    uint256 internal constant DELAY = 1 days;

    function imfNow(bool isLong) internal view returns (uint256) {
        return controller.quote(BTC, isLong, 1e18).imfWad;
    }

    function propose(RiskParams memory p) internal {
        vm.prank(admin);
        controller.proposeParams(BTC, p);
    }

    function assertParamsEq(RiskParams memory a, RiskParams memory b) internal pure {
        assertEq(keccak256(abi.encode(a)), keccak256(abi.encode(b)));
    }

    function bootstrapController() internal returns (LeverageController c2) {
        vm.startPrank(admin);
        c2 = new LeverageController(admin, DELAY);
        c2.listMarket(BTC, feedConfigs(feeds), defaultParams());
        vm.stopPrank();
    }

    // ================================================================ bootstrap

    function test_params_bootstrapAppliesAtOnce() public {
        LeverageController c2 = bootstrapController();
        RiskParams memory p = defaultParams();
        p.zWad = 2.8e18;
        vm.expectEmit(true, false, false, true, address(c2));
        emit EventsLib.ParamsExecuted(BTC, p);
        vm.prank(admin);
        c2.proposeParams(BTC, p);
        assertParamsEq(c2.activeParams(BTC), p);
        assertParamsEq(c2.imfParams(BTC), p);
        (bytes32 h, uint256 eta) = c2.pendingParams(BTC);
        assertEq(h, bytes32(0));
        assertEq(eta, 0);
    }

    function test_params_bootstrapStillStepLimited() public {
        LeverageController c2 = bootstrapController();
        RiskParams memory p = defaultParams();
        p.zWad = 3e18;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField.Z, 2.326e18, 3e18, 0.5815e18)
        );
        c2.proposeParams(BTC, p);
    }

    function test_params_bootstrapOnlyActionsRevertWhenSealed() public {
        assertTrue(controller.bootstrapSealed());
        vm.startPrank(admin);
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        controller.listMarket(3, feedConfigs(feeds), defaultParams());
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        controller.setSequencerFeed(address(feeds[0]), 60);
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        controller.sealBootstrap();
        vm.stopPrank();
    }

    function test_params_sealIsAdminOnly() public {
        LeverageController c2 = bootstrapController();
        vm.prank(bob);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, bytes32(0))
        );
        c2.sealBootstrap();
        vm.expectEmit(true, false, false, false, address(c2));
        emit EventsLib.BootstrapSealedEvent(admin);
        vm.prank(admin);
        c2.sealBootstrap();
        assertTrue(c2.bootstrapSealed());
    }

    function test_params_constructorDelayBounds() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.DelayOutOfBounds.selector, 3599, 3600, 30 days));
        new LeverageController(admin, 3599);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.DelayOutOfBounds.selector, 30 days + 1, 3600, 30 days));
        new LeverageController(admin, 30 days + 1);
        vm.expectRevert(ErrorsLib.ZeroAddress.selector);
        new LeverageController(address(0), 1 days);
        assertEq(new LeverageController(admin, 1 hours).paramDelaySec(), 1 hours);
    }

    function test_params_bindEngineOnce() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineAlreadyBound.selector, address(engine)));
        controller.bindEngine(address(0xbeef));
        LeverageController c2 = bootstrapController();
        vm.prank(admin);
        vm.expectRevert(ErrorsLib.ZeroAddress.selector);
        c2.bindEngine(address(0));
    }

    function test_params_sequencerGraceBounded() public {
        LeverageController c2 = bootstrapController();
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, ParamField.SequencerGrace, 1 days + 1, 0, 1 days)
        );
        c2.setSequencerFeed(address(feeds[0]), 1 days + 1);
    }

    // ================================================================ timelock

    function test_params_proposeIsTimelockedWhenSealed() public {
        RiskParams memory p = defaultParams();
        p.zWad = 2.8e18;
        uint256 eta = block.timestamp + DELAY;
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.ParamsProposed(BTC, p, eta);
        propose(p);
        assertParamsEq(controller.activeParams(BTC), defaultParams());
        (bytes32 h, uint256 e) = controller.pendingParams(BTC);
        assertEq(h, keccak256(abi.encode(p)));
        assertEq(e, eta);

        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, BTC, eta, block.timestamp));
        controller.executeParams(BTC, p);
        vm.warp(eta - 1);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, BTC, eta, eta - 1));
        controller.executeParams(BTC, p);

        vm.warp(eta);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.ParamsExecuted(BTC, p);
        vm.prank(bob); // permissionless
        controller.executeParams(BTC, p);
        assertParamsEq(controller.activeParams(BTC), p);
        assertParamsEq(controller.imfParams(BTC), p);
        (h, e) = controller.pendingParams(BTC);
        assertEq(e, 0);

        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, p);
    }

    function test_params_executeRequiresSamePayload() public {
        RiskParams memory p = defaultParams();
        p.zWad = 2.8e18;
        propose(p);
        vm.warp(block.timestamp + DELAY);
        RiskParams memory other = p;
        other.zWad = 2.7e18;
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, other);
    }

    function test_params_executeWithoutProposalReverts() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, defaultParams());
    }

    function test_params_newProposalReplacesPending() public {
        RiskParams memory p1 = defaultParams();
        p1.zWad = 2.8e18;
        propose(p1);
        vm.warp(block.timestamp + 1 hours);
        RiskParams memory p2 = defaultParams();
        p2.zWad = 2.5e18;
        propose(p2);
        (, uint256 eta) = controller.pendingParams(BTC);
        assertEq(eta, block.timestamp + DELAY);
        vm.warp(eta);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, p1);
        controller.executeParams(BTC, p2);
        assertEq(controller.activeParams(BTC).zWad, 2.5e18);
    }

    function test_params_proposeIsRiskAdminOnly() public {
        bytes32 role = controller.RISK_ADMIN_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        controller.proposeParams(BTC, defaultParams());
    }

    function test_params_proposeUnlistedReverts() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 9));
        controller.proposeParams(9, defaultParams());
    }

    // ================================================================ tighter of pending

    function test_params_tighterPendingAppliesToImfImmediately() public {
        uint256 imf0 = imfNow(true);
        uint256 mmf0 = controller.quote(BTC, true, 1e18).mmfBaseWad;
        (, uint256 target0) = controller.maintenanceTarget(BTC, true);
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18;
        propose(p);
        // New risk is priced with the tighter z at once ...
        assertGt(imfNow(true), imf0);
        assertGt(imfNow(false), imf0 - 1);
        assertEq(controller.imfParams(BTC).zWad, 2.9e18);
        // ... existing positions are not: maintenance and its target use the active set.
        assertEq(controller.quote(BTC, true, 1e18).mmfBaseWad, mmf0);
        (, uint256 target1) = controller.maintenanceTarget(BTC, true);
        assertEq(target1, target0);
        controller.poke(BTC);
        assertEq(controller.quote(BTC, true, 1e18).mmfBaseWad, mmf0);

        // After execution, poking schedules the maintenance tightening through the ramp.
        skipAndRefresh(DELAY);
        controller.executeParams(BTC, p);
        controller.poke(BTC);
        assertGt(controller.ramp(BTC, true).toWad, mmf0);
        assertEq(controller.quote(BTC, true, 1e18).mmfBaseWad, mmf0, "ramp not yet active");
    }

    function test_params_looserPendingWaitsForTimelock() public {
        uint256 imf0 = imfNow(true);
        RiskParams memory p = defaultParams();
        p.zWad = 1.9e18;
        p.bufferMultWad = 0.8e18;
        propose(p);
        assertEq(imfNow(true), imf0);
        assertParamsEq(controller.imfParams(BTC), defaultParams());
        skipAndRefresh(DELAY);
        controller.executeParams(BTC, p);
        assertLt(imfNow(true), imf0);
        // Loosened maintenance applies at the next poke.
        uint256 mmf0 = controller.quote(BTC, true, 0).mmfBaseWad;
        controller.poke(BTC);
        assertLt(controller.quote(BTC, true, 0).mmfBaseWad, mmf0);
    }

    /// @dev Field by field: a mixed proposal tightens what it tightens and keeps the rest.
    function test_params_mixedProposalTakesTighterPerField() public {
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18; // tighter
        p.bufferMultWad = 0.8e18; // looser
        p.fundingThresholdWad = 0.0003e18; // tighter (smaller)
        p.crowdWad = 0.15e18; // looser
        p.rampJitterSec = 300; // ramp fields are not taken from the proposal
        p.mmfRampWadPerSec = uint64(uint256(0.04e18) / 3600);
        propose(p);
        RiskParams memory t = controller.imfParams(BTC);
        RiskParams memory d = defaultParams();
        assertEq(t.zWad, 2.9e18);
        assertEq(t.bufferMultWad, d.bufferMultWad);
        assertEq(t.fundingThresholdWad, 0.0003e18);
        assertEq(t.crowdWad, d.crowdWad);
        assertEq(t.rampJitterSec, d.rampJitterSec);
        assertEq(t.mmfRampWadPerSec, d.mmfRampWadPerSec);
    }

    /// @dev With a pending tightening, a trade priced only by the active set is rejected.
    function test_params_pendingTighteningGatesOpens() public {
        fund(alice, 1_000 * USDC);
        // ~ 25x: fits the active set (max ~28.7x) but not a much tighter buffer.
        uint256 size = 0.48e18;
        uint256 snap = vm.snapshotState();
        open(alice, int256(size));
        vm.revertToState(snap);
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18;
        p.bufferMultWad = 1.25e18;
        propose(p);
        expectTradeRevertSel(alice, BTC, int256(size), 0, ErrorsLib.InitialMarginViolated.selector);
    }

    function test_params_cancelRestoresActive() public {
        uint256 imf0 = imfNow(true);
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18;
        propose(p);
        assertGt(imfNow(true), imf0);
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.ParamsCancelled(BTC);
        vm.prank(admin);
        controller.cancelParams(BTC);
        assertEq(imfNow(true), imf0);
        assertParamsEq(controller.imfParams(BTC), defaultParams());
        (bytes32 h, uint256 eta) = controller.pendingParams(BTC);
        assertEq(h, bytes32(0));
        assertEq(eta, 0);
        skipAndRefresh(DELAY);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, p);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.cancelParams(BTC);
    }

    function test_params_cancelIsRiskAdminOnly() public {
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18;
        propose(p);
        bytes32 role = controller.RISK_ADMIN_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        controller.cancelParams(BTC);
    }

    // ================================================================ hard bounds and steps

    function expectOutOfBounds(RiskParams memory p, ParamField f, uint256 v, uint256 lo, uint256 hi) internal {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, f, v, lo, hi));
        controller.proposeParams(BTC, p);
    }

    function test_params_hardBounds() public {
        RiskParams memory p = defaultParams();
        p.zWad = 0.99e18;
        expectOutOfBounds(p, ParamField.Z, 0.99e18, 1e18, 6e18);
        p = defaultParams();
        p.tailCapWad = 0.9e18;
        expectOutOfBounds(p, ParamField.TailCap, 0.9e18, 1e18, 5e18);
        p = defaultParams();
        p.liqFeeWad = 0;
        expectOutOfBounds(p, ParamField.LiqFee, 0, 0.001e18, 0.1e18);
        p = defaultParams();
        p.impactWad = 0.3e18;
        expectOutOfBounds(p, ParamField.Impact, 0.3e18, 0, 0.2e18);
        p = defaultParams();
        p.horizonSec = 59;
        expectOutOfBounds(p, ParamField.Horizon, 59, 60, 7 days);
        p = defaultParams();
        p.rampJitterSec = 1 days + 1;
        expectOutOfBounds(p, ParamField.RampJitter, 1 days + 1, 0, 1 days);
        p = defaultParams();
        p.minImfWad = 0.004e18;
        expectOutOfBounds(p, ParamField.MinImf, 0.004e18, 0.005e18, 1e18);
        p = defaultParams();
        p.mmfRampWadPerSec = 0;
        expectOutOfBounds(p, ParamField.MmfRamp, 0, ConstantsLib.MMF_RAMP_MIN, ConstantsLib.MMF_RAMP_MAX);
        p = defaultParams();
        p.fundingThresholdWad = 0.011e18;
        expectOutOfBounds(p, ParamField.FundingThreshold, 0.011e18, 0, 0.01e18);
    }

    function test_params_inconsistentSets() public {
        RiskParams memory p = defaultParams();
        p.minImfWad = 0.45e18;
        p.maxImfWad = 0.44e18;
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinImf, ParamField.MaxImf));
        controller.proposeParams(BTC, p);

        p = defaultParams();
        p.minMmfWad = 0.006e18; // 0.006 + 0.005 buffer > 0.01 min IMF
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinMmf, ParamField.MinImf));
        controller.proposeParams(BTC, p);

        p = defaultParams();
        p.maxMmfWad = 0.496e18; // + 0.005 > 0.5 max IMF
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MaxMmf, ParamField.MaxImf));
        controller.proposeParams(BTC, p);

        p = defaultParams();
        p.minMmfWad = 0.39e18;
        p.maxMmfWad = 0.38e18;
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinMmf, ParamField.MaxMmf));
        controller.proposeParams(BTC, p);
    }

    function test_params_stepLimitExactBoundary() public {
        RiskParams memory p = defaultParams();
        // z: max(25% of 2.326, 5 / 20) = 0.5815
        p.zWad = 2.326e18 + 0.5815e18;
        propose(p);
        p.zWad = 2.326e18 + 0.5815e18 + 1;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField.Z, 2.326e18, p.zWad, 0.5815e18)
        );
        controller.proposeParams(BTC, p);
        // down as well
        p.zWad = 2.326e18 - 0.5815e18 - 1;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField.Z, 2.326e18, p.zWad, 0.5815e18)
        );
        controller.proposeParams(BTC, p);
    }

    /// @dev A small field moves by 1/20 of its range even when 25% of it is less.
    function test_params_stepLimitRangeFloor() public {
        RiskParams memory p = defaultParams();
        // funding threshold 0.0005: 25% = 0.000125 < range/20 = 0.0005 -> may go to 0
        p.fundingThresholdWad = 0;
        propose(p);
        // crowd 0.2: 25% = 0.05 = range/20; 0.26 is too far
        p = defaultParams();
        p.crowdWad = 0.26e18;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField.Crowd, 0.2e18, 0.26e18, 0.05e18)
        );
        controller.proposeParams(BTC, p);
    }

    /// @dev Steps are measured from the active set, not from a pending one: no chaining.
    function test_params_stepsMeasuredFromActive() public {
        RiskParams memory p = defaultParams();
        p.zWad = 2.9e18;
        propose(p);
        p.zWad = 3.4e18;
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField.Z, 2.326e18, 3.4e18, 0.5815e18)
        );
        controller.proposeParams(BTC, p);
    }

    function testFuzz_params_stepRule(uint256 z, uint256 crowd) public {
        z = bound(z, ConstantsLib.Z_MIN, ConstantsLib.Z_MAX);
        crowd = bound(crowd, 0, ConstantsLib.CROWD_MAX);
        RiskParams memory p = defaultParams();
        p.zWad = uint64(z);
        p.crowdWad = uint64(crowd);
        uint256 dz = z > 2.326e18 ? z - 2.326e18 : 2.326e18 - z;
        uint256 dc = crowd > 0.2e18 ? crowd - 0.2e18 : 0.2e18 - crowd;
        vm.prank(admin);
        if (dz > 0.5815e18 || dc > 0.05e18) {
            vm.expectRevert();
            controller.proposeParams(BTC, p);
        } else {
            controller.proposeParams(BTC, p);
            RiskParams memory t = controller.imfParams(BTC);
            assertEq(t.zWad, z > 2.326e18 ? z : 2.326e18);
            assertEq(t.crowdWad, crowd > 0.2e18 ? crowd : 0.2e18);
        }
    }

    // ================================================================ listing

    function test_listing_timelockedWhenSealed() public {
        vm.startPrank(admin);
        MockAggregator[5] memory f;
        f[0] = new MockAggregator(8, "p", 3_000e8);
        f[1] = new MockAggregator(8, "v", 0.8e8);
        f[2] = new MockAggregator(8, "f", 0);
        f[3] = new MockAggregator(8, "d", 20_000_000e8);
        f[4] = new MockAggregator(8, "s", 0);
        FeedConfig[5] memory cfg = feedConfigs(f);
        uint256 eta = block.timestamp + DELAY;
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.MarketProposed(2, eta);
        controller.proposeMarket(2, cfg, defaultParams());
        vm.stopPrank();

        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, 2, eta, block.timestamp));
        controller.executeMarket(2, cfg, defaultParams());
        vm.warp(eta);
        RiskParams memory other = defaultParams();
        other.zWad = 3e18;
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, 2));
        controller.executeMarket(2, cfg, other);
        controller.executeMarket(2, cfg, defaultParams());
        assertTrue(controller.isListed(2));
        // Until the first poke, the listed market's maintenance sits at the cap.
        assertEq(controller.ramp(2, true).fromWad, 0.4e18);
    }

    function test_listing_rejections() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketAlreadyListed.selector, BTC));
        controller.proposeMarket(BTC, feedConfigs(feeds), defaultParams());
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketIdOutOfRange.selector, 256, 64));
        controller.proposeMarket(256, feedConfigs(feeds), defaultParams());
        RiskParams memory bad = defaultParams();
        bad.zWad = 7e18;
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, ParamField.Z, 7e18, 1e18, 6e18));
        controller.proposeMarket(4, feedConfigs(feeds), bad);
        vm.stopPrank();
        bytes32 role = controller.RISK_ADMIN_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        controller.proposeMarket(4, feedConfigs(feeds), defaultParams());
    }

    /// @dev A fresh market quote at listing: the live IMF floor is never below maintenance + buffer.
    function test_params_quoteFloorAtListing() public view {
        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        RiskParams memory p = controller.imfParams(BTC);
        assertGe(q.imfWad, q.mmfBaseWad + q.slipWad + p.minBufferWad);
        assertLe(q.imfWad, p.maxImfWad);
        assertGe(q.imfWad, p.minImfWad);
    }
}
