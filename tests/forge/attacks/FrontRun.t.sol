// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {RiskParams} from "../../../interfaces/ILeverageController.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {ErrorsLib} from "../../../contracts/libraries/ErrorsLib.sol";

/// @title Front-running the risk model
/// @notice Threat: an attacker watches the mempool, sees a keeper's volatility `transmit` (or a
/// risk admin's `proposeParams`) that will cut leverage, and opens before it, or in the same block
/// ahead of it, to lock in the old, looser leverage.
/// Defences:
///  (D1) LeverageController.quote reads every risk feed at execution:
///       `(q.riskFeedsOk, q.fundingOk, x) = _inputs(marketId, x);` (LeverageController.sol:158),
///       and MarginEngine._trade checks the whole post-trade account against that live quote:
///       `if (h.equityUsdWad < int256(h.initialUsdWad)) revert InitialMarginViolated` (MarginEngine.sol:183);
///       withdraw checks the same live requirement (MarginEngine.sol:137). No IMF is cached, so
///       there is no window between a feed update and its effect on new risk.
///  (D2) A proposed tightening prices new risk at once:
///       `_imfParams[marketId] = ParamsLib.tighter(cur, params);` (LeverageController.sol:98), read by
///       `RiskParams memory p = _imfParams[marketId];` in quote (LeverageController.sol:153).
/// What an early position keeps is the leverage the live model allowed when it executed; after
/// the update it can neither add size nor withdraw margin at the old terms.
contract FrontRunTest is AttackBase {
    address internal attacker = makeAddr("attacker");

    function setUp() public override {
        super.setUp();
        fund(attacker, 10_000 * USDC);
    }

    /// @notice The keeper's volatility transmit is ordered before the attacker's trade (same
    /// block): the attacker's pre-computed max-leverage order reverts, and what passes is priced
    /// on the new feed. Fails without D1 (an IMF cached before the transmit would accept sOld).
    /// (Two binary searches per run: 64 runs by default, 1000 in the deep profile.)
    /// forge-config: default.fuzz.runs = 64
    /// forge-config: deep.fuzz.runs = 1000
    function testFuzz_volTransmitFirst_attackerGetsOnlyLiveLeverage(uint256 vol8, bool isLong) public {
        vol8 = bound(vol8, 0.51e8, 10e8);
        uint256 sOld = maxTradeSize(attacker, BTC, isLong);
        uint256 imfBefore = imfOf(BTC, isLong, sOld);

        setFeed(1, int256(vol8)); // the pending transmit lands first, same block
        uint256 imfAfter = imfOf(BTC, isLong, sOld);
        assertGt(imfAfter, imfBefore, "vol spike raises IMF at once");

        expectTradeRevertSel(attacker, BTC, isLong ? int256(sOld) : -int256(sOld), 0, ErrorsLib.InitialMarginViolated.selector);

        uint256 sNew = openMax(attacker, BTC, isLong);
        assertLt(sNew, sOld, "less size than before the transmit");

        // The leverage obtained is bounded by the live model at execution.
        Health memory h = engine.health(attacker);
        uint256 imfLive = imfOf(BTC, isLong, sNew);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad), "within live initial margin");
        assertLe(h.notionalUsdWad * WAD / uint256(h.equityUsdWad), WAD * WAD / imfLive + 1, "leverage <= 1/IMF_live");
        assertGe(h.initialUsdWad, h.notionalUsdWad * imfLive / WAD, "requirement priced at the live IMF");
    }

    /// @notice The attacker opened at max leverage blocks before the spike. After the transmit
    /// (no poke needed) the position can neither grow nor release margin at the old terms.
    /// Fails without D1 (a cached IMF would let it add size or withdraw).
    function test_openedBlocksBefore_cannotAddOrWithdrawAfterSpike() public {
        uint256 sOld = openMax(attacker, BTC, true);
        vm.roll(block.number + 5);
        vm.warp(block.timestamp + 60);
        setFeed(1, 1.5e8);

        expectTradeRevertSel(attacker, BTC, int256(sOld / 1e6), 0, ErrorsLib.InitialMarginViolated.selector);

        vm.prank(attacker);
        vm.expectPartialRevert(ErrorsLib.InitialMarginViolated.selector);
        engine.withdraw(1);

        assertEq(maxTradeSize(attacker, BTC, true), 0, "no extra size at the old leverage");
        // Its maintenance did not move (the spike only tightens through the ramp): not liquidatable.
        assertFalse(engine.isLiquidatable(attacker));
    }

    /// @notice Poking before the transmit locks nothing in: poke only commits maintenance.
    function test_pokeBeforeTransmit_locksNothing() public {
        controller.poke(BTC);
        uint256 sOld = maxTradeSize(attacker, BTC, true);
        setFeed(1, 2e8);
        assertFalse(canTrade(attacker, BTC, int256(sOld)), "poke before the transmit gives no cover");
    }

    /// @notice A tightening proposal after bootstrap is sealed prices new positions in the same
    /// block; waiting for executeParams changes nothing more, so opening in between gains nothing.
    /// Fails without D2 (new risk would be priced on the looser active params until execution).
    function test_proposedTightening_appliesToNewRiskImmediately() public {
        RiskParams memory cur = controller.activeParams(BTC);
        RiskParams memory tight = oneStepTighter(cur);
        uint256 sOld = maxTradeSize(attacker, BTC, true);
        uint256 levOld = controller.maxLeverageWad(BTC, true);

        vm.prank(admin);
        controller.proposeParams(BTC, tight);

        RiskParams memory imfP = controller.imfParams(BTC);
        assertEq(imfP.zWad, tight.zWad);
        assertEq(imfP.horizonSec, tight.horizonSec);
        assertEq(imfP.minImfWad, tight.minImfWad);
        assertEq(imfP.fundingThresholdWad, tight.fundingThresholdWad);
        assertEq(controller.activeParams(BTC).zWad, cur.zWad, "active unchanged until execution");

        uint256 levProp = controller.maxLeverageWad(BTC, true);
        assertLt(levProp, levOld, "max leverage drops in the proposing block");
        expectTradeRevertSel(attacker, BTC, int256(sOld), 0, ErrorsLib.InitialMarginViolated.selector);
        uint256 sProp = maxTradeSize(attacker, BTC, true);
        assertLt(sProp, sOld);

        warpRefresh(controller.paramDelaySec());
        controller.executeParams(BTC, tight);
        assertEq(controller.maxLeverageWad(BTC, true), levProp, "execution adds nothing for new risk");
        assertEq(maxTradeSize(attacker, BTC, true), sProp, "opening before execution gained nothing");
    }

    /// @notice A loosening proposal does not loosen new risk before the timelock.
    function test_proposedLoosening_waitsForTimelock() public {
        RiskParams memory p = controller.activeParams(BTC);
        p.zWad = uint64(uint256(p.zWad) * 80 / 100);
        p.bufferMultWad = uint64(uint256(p.bufferMultWad) * 80 / 100);
        uint256 lev0 = controller.maxLeverageWad(BTC, true);
        vm.prank(admin);
        controller.proposeParams(BTC, p);
        assertEq(controller.maxLeverageWad(BTC, true), lev0, "no loosening before execution");
        vm.expectPartialRevert(ErrorsLib.ChangeNotReady.selector);
        controller.executeParams(BTC, p);
        warpRefresh(controller.paramDelaySec());
        controller.executeParams(BTC, p);
        assertGt(controller.maxLeverageWad(BTC, true), lev0, "loosening after the timelock");
    }

    /// @notice Any one-step proposal (fields moved up or down at random): while pending, new risk
    /// is priced at least as tightly as under both the active and the proposed parameters, so
    /// there is no size an attacker can open before execution that he could not open after it or
    /// before the proposal. Fails without D2.
    function testFuzz_pendingProposal_pricesTighterOfBoth(uint256 seed, uint256 sizeWad, bool isLong) public {
        sizeWad = bound(sizeWad, 0, 500e18);
        RiskParams memory cur = controller.activeParams(BTC);
        RiskParams memory p = _randomStep(cur, seed);

        uint256 imfOld = imfOf(BTC, isLong, sizeWad);
        vm.prank(admin);
        controller.proposeParams(BTC, p);
        uint256 imfPending = imfOf(BTC, isLong, sizeWad);

        uint256 snap = vm.snapshotState();
        warpRefresh(controller.paramDelaySec());
        controller.executeParams(BTC, p);
        uint256 imfNew = imfOf(BTC, isLong, sizeWad);
        vm.revertToState(snap);

        assertGe(imfPending, imfOld, "pending >= active");
        assertGe(imfPending, imfNew, "pending >= proposed");

        vm.prank(admin);
        controller.cancelParams(BTC);
        assertEq(imfOf(BTC, isLong, sizeWad), imfOld, "cancel restores the active pricing");
    }

    /// @dev A random consistent one-step move of the pricing fields.
    function _randomStep(RiskParams memory cur, uint256 seed) internal pure returns (RiskParams memory p) {
        p = copyParams(cur);
        for (uint256 i; i < N_FIELDS; ++i) {
            if (i == 4 || i == 14 || isRampField(i)) continue; // buffer and min mmf: kept (consistency)
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 v = getField(cur, i);
            (uint256 lo, uint256 hi) = fieldBounds(i);
            if (hi > fieldTypeMax(i)) hi = fieldTypeMax(i);
            uint256 s = maxStepOf(i, v) * (r % 1001) / 1000;
            uint256 nv = (r >> 128) % 2 == 0 ? (v + s > hi ? hi : v + s) : (v < lo + s ? lo : v - s);
            setField(p, i, nv);
        }
        repairConsistency(cur, p);
    }
}
