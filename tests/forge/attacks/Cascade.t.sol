// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {RiskParams} from "../../../interfaces/ILeverageController.sol";

/// @title Liquidation cascades triggered by the risk model itself
/// @notice Threat: a model whose maintenance requirement reacts instantly to its inputs turns a
/// volatility, skew or depth shock (or an admin parameter change) into a wave of liquidations of
/// accounts that were healthy a block before; their forced closes move the market and feed the
/// next wave (the cascade). Here every account is opened at the LARGEST size the model allows
/// (found by binary search on side-effect-free probes), the most fragile position possible, and
/// each shock is fuzzed over its whole admissible range.
/// Defences (each test names the one it exercises):
///  (D1) Maintenance of existing positions moves only through the Ramp: LeverageController._commit
///       schedules a tightening after a delay at a bounded rate (LeverageController.sol:290-295),
///       and quote reads `q.mmfBaseWad = _rampValue(marketId, isLong)` (RampLib.valueAtWord of the ramp).
///       Volatility and skew only reach maintenance through it.
///  (D2) The closing-slippage part of a position's maintenance is snapshotted when it grows:
///       `if (increasing) pos.slipSnapWad = uint64(q.slipWad);` (MarginEngine.sol:298), and health uses
///       `positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad)` (MarginEngine.sol:492),
///       so a depth collapse does not re-price existing maintenance.
///  (D3) Crowding is an initial-margin term only (MarginMath.compute), never maintenance.
///  (D4) Parameter changes reach maintenance only through a later poke and the ramp (D1):
///       `executeParams` writes `_active`/`_imfParams` and leaves `_ramps` alone
///       (LeverageController._activate, LeverageController.sol:252-256).
contract CascadeTest is AttackBase {
    address internal carol = makeAddr("carol");
    address internal whale = makeAddr("whale");

    function setUp() public override {
        super.setUp();
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        fund(carol, 250_000 * USDC);
        openMax(alice, BTC, true);
        openMax(bob, BTC, false);
        openMax(carol, BTC, true); // a large one: its slippage snapshot matters
        assertSafe("setUp");
    }

    function assertSafe(string memory what) internal view {
        assertFalse(engine.isLiquidatable(alice), string.concat(what, ": alice (max long)"));
        assertFalse(engine.isLiquidatable(bob), string.concat(what, ": bob (max short)"));
        assertFalse(engine.isLiquidatable(carol), string.concat(what, ": carol (large max long)"));
    }

    /// @notice Volatility from 1% to 1000% annualized, with and without the poke that commits it.
    /// Fails without D1.
    function testFuzz_volatilitySpike_noInstantLiquidation(uint256 vol8) public {
        vol8 = bound(vol8, 0.01e8, 10e8);
        setFeed(1, int256(vol8));
        assertSafe("vol, before poke");
        controller.poke(BTC);
        assertSafe("vol, after poke");
    }

    /// @notice Skew (25-delta risk reversal) anywhere in its bounds, both signs. Defence in depth:
    /// D1, and, with the default parameters, the initial buffer alone: skew raises the tail at most
    /// to tailCap = 2, i.e. adds at most one varMove to maintenance, which bufferMult = 1 (plus
    /// minBuffer) already reserved at open. (So this test passes even without the ramp; the
    /// combined test below, with volatility, is the one that fails without D1.)
    function testFuzz_skewSpike_noInstantLiquidation(int256 skew8) public {
        skew8 = bound(skew8, -1e8, 1e8);
        setFeed(4, skew8);
        assertSafe("skew, before poke");
        controller.poke(BTC);
        assertSafe("skew, after poke");
    }

    /// @notice Depth from $50M down to its $1,000 floor, or the depth feed failing. Fails without D2.
    function testFuzz_depthCollapse_noInstantLiquidation(uint256 depthUsd, bool feedFails) public {
        depthUsd = bound(depthUsd, 1_000, 50_000_000);
        if (feedFails) setFeed(3, 0); // out of bounds: the controller falls back to the depth floor
        else setFeed(3, int256(depthUsd * 1e8));
        assertSafe("depth, before poke");
        controller.poke(BTC);
        assertSafe("depth, after poke");
    }

    /// @notice A whale crowds the long side with $3M-$150M of notional at 3x (up to 3x the depth:
    /// the crowding add-on at its cap). Fails without D3.
    function testFuzz_crowdingSpike_noInstantLiquidation(uint256 whaleUsd) public {
        whaleUsd = bound(whaleUsd, 1_000_000, 50_000_000);
        fund(whale, whaleUsd * USDC);
        open(whale, int256(whaleUsd * 3 * WAD / 50_000));
        assertSafe("crowding");
    }

    /// @notice Every shock at once, then the poke.
    function testFuzz_combinedShock_noInstantLiquidation(uint256 vol8, int256 skew8, uint256 depthUsd) public {
        vol8 = bound(vol8, 0.01e8, 10e8);
        skew8 = bound(skew8, -1e8, 1e8);
        depthUsd = bound(depthUsd, 1_000, 50_000_000);
        setFeed(1, int256(vol8));
        setFeed(4, skew8);
        setFeed(3, int256(depthUsd * 1e8));
        controller.poke(BTC);
        assertSafe("combined");
    }

    /// @notice The admin proposes the largest tightening one step allows, waits the timelock,
    /// executes it and pokes, optionally together with a volatility spike: no account opened
    /// within limits is liquidatable in that block. Fails without D4/D1.
    function testFuzz_adminParamChange_noInstantLiquidation(uint256 seed, uint256 vol8) public {
        RiskParams memory cur = controller.activeParams(BTC);
        RiskParams memory p = oneStepTighter(cur);
        // Fuzz how much of the step each field takes (0..100%).
        for (uint256 i; i < N_FIELDS; ++i) {
            if (isRampField(i)) continue;
            uint256 a = getField(cur, i);
            uint256 b = getField(p, i);
            uint256 f = uint256(keccak256(abi.encode(seed, i))) % 101;
            setField(p, i, b >= a ? a + (b - a) * f / 100 : a - (a - b) * f / 100);
        }
        repairConsistency(cur, p);

        vm.prank(admin);
        controller.proposeParams(BTC, p);
        assertSafe("params proposed");

        warpRefresh(controller.paramDelaySec());
        controller.executeParams(BTC, p);
        assertSafe("params executed");
        controller.poke(BTC);
        assertSafe("params executed + poke");

        vol8 = bound(vol8, 0.5e8, 10e8);
        setFeed(1, int256(vol8));
        controller.poke(BTC);
        assertSafe("params executed + vol spike + poke");
    }

    /// @notice Loosening then re-tightening cannot be used to jump maintenance either: after a
    /// calm period (maintenance loosened at once), a spike is ramped again.
    function test_calmThenSpike_isRampedAgain() public {
        setFeed(1, 0.2e8);
        controller.poke(BTC); // loosening: immediate
        // A new account opens at the looser, calm-market maximum.
        fund(whale, 10_000 * USDC);
        openMax(whale, BTC, true);
        setFeed(1, 5e8);
        controller.poke(BTC);
        assertFalse(engine.isLiquidatable(whale), "calm-market max position survives the spike block");
        assertSafe("calm then spike");
    }
}
