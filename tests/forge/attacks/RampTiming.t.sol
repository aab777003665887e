// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {Ramp} from "../../../contracts/libraries/RampLib.sol";

/// @title Timing the maintenance tightening
/// @notice Threats: (1) a liquidator (or a block builder) who knows in advance when maintenance
/// starts to tighten can position itself to liquidate the first second it is possible, or a
/// trader can time an exit; (2) a volatility spike followed by a poke instantly turns accounts
/// that were opened within limits into liquidation targets (a cascade trigger).
/// Defences:
///  (D1) LeverageController._commit schedules a tightening at `block.timestamp + _jitter(...)`
///       (LeverageController.sol:291), with `_jitter` drawn from
///       `keccak256(block.prevrandao, blockhash(block.number - 1), market, side, nonce, this)`
///       (LeverageController.sol:310-313): unknown before the poke block.
///  (D2) The maintenance fraction of existing positions follows the Ramp: constant until its
///       activation, then rising by at most `mmfRampWadPerSec` per second
///       (RampLib.valueAt; LeverageController.quote: `q.mmfBaseWad = _rampValue(marketId, isLong)`,
///       RampLib.valueAtWord of the side's ramp slot). A tightening never jumps.
contract RampTimingTest is AttackBase {
    function setUp() public override {
        super.setUp();
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
    }

    // ---------------------------------------------------------------- D1: unknowable start

    /// @notice The same poke in the same state, with 24 different prevrandao values, schedules
    /// the tightening at many different times, all within [now, now + rampJitterSec].
    /// Fails without D1 (a deterministic delay gives one activation time).
    function test_activationDependsOnPrevrandao() public {
        setFeed(1, 1.5e8);
        uint256 jitter = controller.activeParams(BTC).rampJitterSec;
        uint256[] memory acts = new uint256[](24);
        uint256 snap = vm.snapshotState();
        for (uint256 i; i < acts.length; ++i) {
            vm.revertToState(snap);
            vm.prevrandao(uint256(keccak256(abi.encode("randao", i))));
            controller.poke(BTC);
            Ramp memory r = controller.ramp(BTC, true);
            assertGt(r.toWad, r.fromWad, "a tightening is scheduled");
            assertGe(r.activationSec, block.timestamp);
            assertLe(r.activationSec, block.timestamp + jitter);
            acts[i] = r.activationSec;
        }
        (uint256 distinct, uint256 spread) = _stats(acts);
        assertGe(distinct, 16, "prevrandao changes the activation");
        assertGe(spread, jitter / 3, "activation spreads over the jitter window");
    }

    /// @notice Same prevrandao, different parent block hash: different activations too.
    function test_activationDependsOnParentBlockhash() public {
        setFeed(1, 1.5e8);
        vm.roll(block.number + 10);
        vm.prevrandao(uint256(7));
        uint256[] memory acts = new uint256[](24);
        uint256 snap = vm.snapshotState();
        for (uint256 i; i < acts.length; ++i) {
            vm.revertToState(snap);
            vm.setBlockhash(block.number - 1, keccak256(abi.encode("parent", i)));
            controller.poke(BTC);
            acts[i] = controller.ramp(BTC, true).activationSec;
        }
        (uint256 distinct,) = _stats(acts);
        assertGe(distinct, 16, "parent hash changes the activation");
    }

    /// @notice A re-poke while a tightening is pending or under way cannot re-draw its start nor
    /// change its rate (no grinding of the draw by repeated pokes): it only moves the target.
    function test_repokeKeepsStartAndRate() public {
        setFeed(1, 1.5e8);
        controller.poke(BTC);
        Ramp memory r1 = controller.ramp(BTC, true);
        for (uint256 i; i < 5; ++i) {
            vm.roll(block.number + 1);
            vm.prevrandao(uint256(keccak256(abi.encode("again", i))));
            setFeed(1, int256(1.5e8 + (i + 1) * 0.2e8));
            controller.poke(BTC);
            Ramp memory r2 = controller.ramp(BTC, true);
            assertEq(r2.activationSec, r1.activationSec, "start kept");
            assertEq(r2.rateWadPerSec, r1.rateWadPerSec, "rate kept");
            assertEq(r2.fromWad, r1.fromWad, "origin kept");
            assertGt(r2.toWad, r1.toWad, "only the target moves");
            r1 = r2;
        }
    }

    // ---------------------------------------------------------------- D2: bounded rate

    /// @notice After a spike and a poke, a max-leverage position's maintenance requirement is flat
    /// until activation and then rises by at most notional * mmfRampWadPerSec per second, exactly
    /// along the ramp, until it reaches the target. Fails without D2.
    /// forge-config: default.fuzz.runs = 128
    /// forge-config: deep.fuzz.runs = 2000
    function testFuzz_maintenanceRisesNoFasterThanRate(uint256 vol8, uint256 seed) public {
        vol8 = bound(vol8, 0.6e8, 10e8);
        openMax(alice, BTC, true);
        Health memory h0 = engine.health(alice);
        setFeed(1, int256(vol8));
        controller.poke(BTC);
        Ramp memory r = controller.ramp(BTC, true);
        uint256 rate = r.rateWadPerSec;
        assertEq(rate, controller.activeParams(BTC).mmfRampWadPerSec);

        // Flat until activation.
        vm.warp(r.activationSec);
        assertEq(engine.health(alice).maintenanceUsdWad, h0.maintenanceUsdWad, "flat until activation");

        uint256 prevM = h0.maintenanceUsdWad;
        uint256 prevBase = quoteOf(BTC, true, 0).mmfBaseWad;
        uint256 n = h0.notionalUsdWad;
        for (uint256 i; i < 40 && prevBase < r.toWad; ++i) {
            uint256 dt = 1 + uint256(keccak256(abi.encode(seed, i))) % 900;
            warpRefresh(dt);
            uint256 base = quoteOf(BTC, true, 0).mmfBaseWad;
            uint256 m = engine.health(alice).maintenanceUsdWad;
            assertLe(base - prevBase, rate * dt, "fraction rises <= rate * dt");
            assertLe(m - prevM, n * rate * dt / WAD + 1, "requirement rises <= notional * rate * dt");
            uint256 expected = r.fromWad + rate * (block.timestamp - r.activationSec);
            assertEq(base, expected < r.toWad ? expected : r.toWad, "exactly on the ramp");
            prevBase = base;
            prevM = m;
        }
    }

    /// @notice An account opened at the largest size the model allowed is not liquidatable right
    /// after a volatility spike and the poke that commits it, nor at activation, nor before
    /// activation + (equity/notional - mmf0) / rate; it becomes liquidatable only once the ramp
    /// has climbed that far. Fails without D2 (an instant jump to the new target).
    function test_maxLeverageAccountSurvivesSpikeAndPoke_untilRampProgresses() public {
        openMax(alice, BTC, true);
        openMax(bob, BTC, false);
        Health memory h0 = engine.health(alice);
        uint256 n = h0.notionalUsdWad;

        setFeed(1, 3e8); // 50% -> 300% annualized
        controller.poke(BTC);
        (, uint256 target) = controller.maintenanceTarget(BTC, true);
        assertGt(target * n / WAD, uint256(h0.equityUsdWad), "the new target would liquidate at once");
        assertFalse(engine.isLiquidatable(alice), "not liquidatable in the poke block");
        assertFalse(engine.isLiquidatable(bob), "short side neither");

        Ramp memory r = controller.ramp(BTC, true);
        vm.warp(r.activationSec);
        assertFalse(engine.isLiquidatable(alice), "not at activation");

        // Earliest second at which the ramp can reach the account's equity ratio.
        uint256 slack = uint256(h0.equityUsdWad) - h0.maintenanceUsdWad;
        uint256 tMin = r.activationSec + slack / (n * r.rateWadPerSec / WAD + 1);
        assertGt(tMin, r.activationSec + 600, "at least 10 minutes of warning at max leverage");
        while (block.timestamp + 600 < tMin) {
            warpRefresh(600);
            assertFalse(engine.isLiquidatable(alice), "safe while the ramp is below equity");
        }
        uint256 tLiq;
        for (uint256 i; i < 200; ++i) {
            warpRefresh(30);
            if (engine.isLiquidatable(alice)) {
                tLiq = block.timestamp;
                break;
            }
        }
        assertGt(tLiq, 0, "liquidatable once the ramp has progressed");
        assertGe(tLiq, tMin, "not before the bound");
        emit log_named_uint("seconds of warning after activation", tLiq - r.activationSec);
    }

    /// @notice The ramp leaves time to react: the trader who adds margin during the ramp is never
    /// liquidated even after it completes.
    function test_addingMarginDuringRampAvoidsLiquidation() public {
        openMax(alice, BTC, true);
        setFeed(1, 3e8);
        controller.poke(BTC);
        Ramp memory r = controller.ramp(BTC, true);
        warpRefresh(r.activationSec - block.timestamp + 300);
        Health memory h = engine.health(alice);
        uint256 need = (h.notionalUsdWad * r.toWad / WAD) * 12 / 10 / 1e12; // 1.2x the final requirement
        fund(alice, need);
        warpRefresh(6 hours);
        assertEq(quoteOf(BTC, true, 0).mmfBaseWad, r.toWad, "ramp complete");
        assertFalse(engine.isLiquidatable(alice));
    }

    function _stats(uint256[] memory a) internal pure returns (uint256 distinct, uint256 spread) {
        uint256 lo = type(uint256).max;
        uint256 hi;
        for (uint256 i; i < a.length; ++i) {
            bool seen;
            for (uint256 j; j < i; ++j) {
                if (a[j] == a[i]) seen = true;
            }
            if (!seen) ++distinct;
            if (a[i] < lo) lo = a[i];
            if (a[i] > hi) hi = a[i];
        }
        spread = hi - lo;
    }
}
