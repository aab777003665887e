// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {FeedConfig, RiskParams} from "../../../interfaces/ILeverageController.sol";
import {LeverageController} from "../../../contracts/LeverageController.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {ConstantsLib as C} from "../../../contracts/libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "../../../contracts/libraries/ErrorsLib.sol";
import {RiskOracleBase} from "../../../contracts/RiskOracleBase.sol";

/// @notice Executes a list of calls in ONE transaction, recording each outcome without
/// reverting: what a compromised admin key (or a malicious multisig batch) can do atomically.
contract AdminBatch {
    struct Call {
        address target;
        bytes data;
    }

    function run(Call[] calldata calls) external returns (bool[] memory ok, bytes[] memory ret) {
        ok = new bool[](calls.length);
        ret = new bytes[](calls.length);
        for (uint256 i; i < calls.length; ++i) {
            (ok[i], ret[i]) = calls[i].target.call(calls[i].data);
        }
    }
}

/// @title Admin-key abuse (Drift, April 2026 style)
/// @notice Threat: the admin key is stolen (or its holder turns hostile) and is used in one
/// transaction, or one block, to loosen risk parameters to extremes, list a rigged market, swap
/// oracles, or move user collateral.
///
/// Everything the admin can do, and its bound (each exercised below):
///  | power (role)                               | bound                                                       |
///  |--------------------------------------------|-------------------------------------------------------------|
///  | proposeParams (RISK_ADMIN)                 | every field within its hard bounds, consistent, at most one |
///  |                                            | step (max(25%, range/20)) from the ACTIVE value; tightening  |
///  |                                            | prices new risk at once, loosening only after paramDelaySec  |
///  |                                            | (immutable, 1 h..30 d); never touches existing maintenance   |
///  |                                            | (only a later poke + ramp does)                              |
///  | executeParams / executeMarket (anyone)     | only the proposed payload, only after its eta                |
///  | cancelParams (RISK_ADMIN)                  | returns new-risk pricing to the active params, nothing more  |
///  | proposeMarket (RISK_ADMIN)                 | timelocked like params; a listed market's feeds never change |
///  | listMarket, setSequencerFeed (bootstrap)   | BootstrapSealed once sealed; sealing is one way              |
///  | bindEngine (DEFAULT_ADMIN)                 | once (EngineAlreadyBound)                                    |
///  | withdrawVault (TREASURY)                   | amount <= vaultBalance (VaultWithdrawTooLarge)               |
///  | withdrawFees (TREASURY)                    | exactly protocolFees                                         |
///  | grant/revoke roles (DEFAULT_ADMIN)         | only redistributes the powers above                          |
///  No function moves an account's collateral, positions or the insurance fund; there is no
///  pause, upgrade, price setter or feed replacement.
/// Defences: ParamsLib.validate / validateStep in proposeParams (LeverageController.sol:90-91),
/// the tighter-of rule (:98), the timelock in _consume (:220), _onlyBootstrap (RiskOracleBase.sol:59,
/// :68; LeverageController.sol:60), bindEngine's once-check (RiskOracleBase.sol:52),
/// `if (vaultBalance < int256(amount)) revert VaultWithdrawTooLarge` (MarginEngine.sol:332), and the
/// absence of any other outflow from the collateral / insurance buckets.
/// Residual risk (documented in SECURITY-ANALYSIS.md): withdrawVault is bounded by the vault's
/// balance, not by its mark-to-market liability to open positions; see
/// test_vaultDrain_boundedByBalance_liabilityStaysExplicit.
contract AdminAbuseTest is AttackBase {
    address internal carol = makeAddr("carol");
    address internal thief = makeAddr("thief");
    AdminBatch internal batch;

    function setUp() public override {
        super.setUp();
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        fund(carol, 10_000 * USDC);
        openMax(alice, BTC, true);
        open(bob, -0.5e18);
        batch = new AdminBatch();
        // The attacker holds every role through the batch contract.
        vm.startPrank(admin);
        controller.grantRole(controller.DEFAULT_ADMIN_ROLE(), address(batch));
        controller.grantRole(controller.RISK_ADMIN_ROLE(), address(batch));
        engine.grantRole(engine.TREASURY_ROLE(), address(batch));
        engine.grantRole(engine.DEFAULT_ADMIN_ROLE(), address(batch));
        vm.stopPrank();
    }

    function _call(address t, bytes memory d) internal pure returns (AdminBatch.Call memory) {
        return AdminBatch.Call(t, d);
    }

    /// @dev Every field one full step looser (the most an accepted proposal can loosen).
    function _oneStepLooser(RiskParams memory cur) internal pure returns (RiskParams memory p) {
        p = copyParams(cur);
        for (uint256 i; i < N_FIELDS; ++i) {
            if (isRampField(i)) continue;
            uint256 v = getField(cur, i);
            (uint256 lo, uint256 hi) = fieldBounds(i);
            uint256 s = maxStepOf(i, v);
            if (smallerIsTighter(i)) setField(p, i, v + s > hi ? hi : v + s);
            else setField(p, i, v < lo + s ? lo : v - s);
        }
        // Keep it consistent: raise the maintenance floors' partners if needed (still looser).
        if (uint256(p.minMmfWad) + p.minBufferWad > p.minImfWad) p.minImfWad = uint64(p.minMmfWad + p.minBufferWad);
        if (uint256(p.maxMmfWad) + p.minBufferWad > p.maxImfWad) p.maxMmfWad = uint64(p.maxImfWad - p.minBufferWad);
    }

    /// @dev State before the attack (storage: keeps the test under the stack limit).
    struct Before {
        int256 vault;
        uint256 fees;
        uint256 ins;
        uint256 lev;
        int256 colAlice;
        int256 colBob;
        int256 colCarol;
        int256 sizeAlice;
        bytes32 activeHash;
    }

    Before internal pre;

    function _attackCalls(RiskParams memory active) internal view returns (AdminBatch.Call[] memory calls) {
        RiskParams memory loose = _oneStepLooser(active);
        RiskParams memory twoSteps = _oneStepLooser(loose);
        RiskParams memory absurd = copyParams(active);
        absurd.minImfWad = 0.001e18; // 1000x
        FeedConfig[5] memory rigged = feedConfigs(feeds);
        address ctl = address(controller);
        address eng = address(engine);
        uint256 v = uint256(pre.vault);
        calls = new AdminBatch.Call[](14);
        calls[0] = _call(ctl, abi.encodeCall(LeverageController.proposeParams, (BTC, loose)));
        calls[1] = _call(ctl, abi.encodeCall(LeverageController.executeParams, (BTC, loose)));
        calls[2] = _call(ctl, abi.encodeCall(LeverageController.proposeParams, (BTC, twoSteps)));
        calls[3] = _call(ctl, abi.encodeCall(LeverageController.proposeParams, (BTC, absurd)));
        calls[4] = _call(ctl, abi.encodeCall(LeverageController.listMarket, (5, rigged, active)));
        calls[5] = _call(ctl, abi.encodeCall(LeverageController.proposeMarket, (5, rigged, active)));
        calls[6] = _call(ctl, abi.encodeCall(LeverageController.executeMarket, (5, rigged, active)));
        calls[7] = _call(ctl, abi.encodeCall(RiskOracleBase.setSequencerFeed, (thief, 0)));
        calls[8] = _call(ctl, abi.encodeCall(RiskOracleBase.bindEngine, (thief)));
        calls[9] = _call(eng, abi.encodeCall(MarginEngine.withdrawVault, (thief, v + 1)));
        calls[10] = _call(eng, abi.encodeCall(MarginEngine.withdrawVault, (thief, v)));
        calls[11] = _call(eng, abi.encodeCall(MarginEngine.withdrawFees, (thief)));
        calls[12] = _call(ctl, abi.encodeCall(LeverageController.cancelParams, (BTC)));
        calls[13] = _call(ctl, abi.encodeCall(LeverageController.proposeParams, (BTC, absurd)));
    }

    /// @notice The whole attack in ONE transaction: every call a hostile admin could try, with the
    /// outcome of each, then the state of every user checked unchanged.
    function test_oneTransactionAdminAttack_movesNothingPastItsBound() public {
        RiskParams memory active = controller.activeParams(BTC);
        pre = Before({
            vault: engine.vaultBalance(),
            fees: engine.protocolFees(),
            ins: engine.insuranceFund(),
            lev: controller.maxLeverageWad(BTC, true),
            colAlice: engine.collateralOf(alice),
            colBob: engine.collateralOf(bob),
            colCarol: engine.collateralOf(carol),
            sizeAlice: engine.position(alice, BTC).sizeWad,
            activeHash: keccak256(abi.encode(active))
        });

        (bool[] memory ok, bytes[] memory ret) = batch.run(_attackCalls(active));
        _checkOutcomes(ok, ret);
        _checkNothingElseMoved();
    }

    function _checkOutcomes(bool[] memory ok, bytes[] memory ret) internal view {
        uint256 eta = block.timestamp + controller.paramDelaySec();
        assertTrue(ok[0], "a one-step loosening may be PROPOSED");
        assertEq(ret[1], abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, BTC, eta, block.timestamp));
        assertFalse(ok[2]);
        assertEq(bytes4(ret[2]), ErrorsLib.ParamStepTooLarge.selector, "two steps in one block");
        assertEq(
            ret[3],
            abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, ParamField.MinImf, 0.001e18, C.MIN_IMF_MIN, C.IMF_MAX)
        );
        assertEq(ret[4], abi.encodeWithSelector(ErrorsLib.BootstrapSealed.selector));
        assertTrue(ok[5], "a listing may be PROPOSED");
        assertEq(ret[6], abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, 5, eta, block.timestamp));
        assertEq(ret[7], abi.encodeWithSelector(ErrorsLib.BootstrapSealed.selector));
        assertEq(ret[8], abi.encodeWithSelector(ErrorsLib.EngineAlreadyBound.selector, address(engine)));
        assertEq(
            ret[9], abi.encodeWithSelector(ErrorsLib.VaultWithdrawTooLarge.selector, uint256(pre.vault) + 1, pre.vault)
        );
        assertTrue(ok[10], "vault liquidity: up to vaultBalance");
        assertTrue(ok[11], "protocol fees");
        assertTrue(ok[12]);
        assertFalse(ok[13]);
    }

    function _checkNothingElseMoved() internal {
        // What moved: exactly the vault balance and the protocol fees, to the thief.
        assertEq(usd.balanceOf(thief), uint256(pre.vault) + pre.fees, "only vault + fees left");
        assertEq(engine.vaultBalance(), 0);
        assertEq(engine.protocolFees(), 0);
        // What did not: parameters in force, collateral, positions, insurance.
        assertEq(controller.maxLeverageWad(BTC, true), pre.lev, "no looser new risk");
        assertEq(keccak256(abi.encode(controller.activeParams(BTC))), pre.activeHash);
        assertEq(keccak256(abi.encode(controller.imfParams(BTC))), pre.activeHash);
        assertFalse(controller.isListed(5));
        assertEq(controller.engine(), address(engine));
        assertEq(controller.sequencerFeed(), address(0));
        assertEq(engine.insuranceFund(), pre.ins, "insurance untouched");
        assertEq(engine.collateralOf(alice), pre.colAlice);
        assertEq(engine.collateralOf(bob), pre.colBob);
        assertEq(engine.collateralOf(carol), pre.colCarol);
        assertEq(engine.position(alice, BTC).sizeWad, pre.sizeAlice);
        assertFalse(engine.isLiquidatable(alice), "max-leverage account untouched");
        // Users still get their collateral out: a flat account withdraws everything.
        vm.prank(carol);
        engine.withdraw(uint256(pre.colCarol));
        assertEq(usd.balanceOf(carol), uint256(pre.colCarol));
        _assertConserved();
    }

    /// @notice Walking a parameter to its extreme takes one timelock per step: in one block only
    /// one step from the ACTIVE value can be proposed, and a re-proposal replaces (does not stack on)
    /// the pending one.
    function test_walkingParamsTakesOneDelayPerStep() public {
        RiskParams memory p = controller.activeParams(BTC);
        uint256 z0 = p.zWad;
        uint256 steps;
        vm.startPrank(admin);
        RiskParams memory far = copyParams(p);
        far.zWad = uint64(C.Z_MIN);
        vm.expectPartialRevert(ErrorsLib.ParamStepTooLarge.selector);
        controller.proposeParams(BTC, far);
        RiskParams memory s1 = copyParams(p);
        s1.zWad = uint64(z0 - maxStepOf(0, z0));
        controller.proposeParams(BTC, s1);
        RiskParams memory s2 = copyParams(s1);
        s2.zWad = uint64(s1.zWad - maxStepOf(0, s1.zWad));
        vm.expectPartialRevert(ErrorsLib.ParamStepTooLarge.selector);
        controller.proposeParams(BTC, s2); // same block: measured from active, not from pending
        vm.stopPrank();

        uint256 t0 = block.timestamp;
        RiskParams memory next = s1;
        while (true) {
            warpRefresh(controller.paramDelaySec());
            controller.executeParams(BTC, next);
            ++steps;
            uint256 z = controller.activeParams(BTC).zWad;
            if (z == C.Z_MIN) break;
            next = copyParams(controller.activeParams(BTC));
            uint256 s = maxStepOf(0, z);
            next.zWad = uint64(z > C.Z_MIN + s ? z - s : C.Z_MIN);
            vm.prank(admin);
            controller.proposeParams(BTC, next);
        }
        assertGe(steps, 3, "z 2.326 -> 1.0 needs at least three steps");
        assertGe(block.timestamp - t0, steps * controller.paramDelaySec(), "one delay per step");
    }

    /// @notice The treasury can take the vault's balance and no more; the accounting stays exact.
    /// Residual risk, stated: the bound is the vault's balance, not its mark-to-market liability.
    /// After a drain, a trader's profit is still credited in full (collateral) and the vault's
    /// debt is explicit (a negative vaultBalance, backed by the insurance fund's tokens and other
    /// accounts' collateral); the last withdrawers would be short if it were never repaid.
    function test_vaultDrain_boundedByBalance_liabilityStaysExplicit() public {
        int256 vault = engine.vaultBalance();
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.VaultWithdrawTooLarge.selector, uint256(vault) + 1, vault));
        engine.withdrawVault(thief, uint256(vault) + 1);
        engine.withdrawVault(thief, uint256(vault));
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.VaultWithdrawTooLarge.selector, 1, int256(0)));
        engine.withdrawVault(thief, 1);
        vm.stopPrank();

        setPrice(52_000); // alice (long) profits against the drained vault
        int256 c0 = engine.collateralOf(alice);
        close(alice, BTC);
        assertGt(engine.collateralOf(alice), c0, "profit credited");
        assertLt(engine.vaultBalance(), 0, "the vault's debt is explicit");
        _assertConserved();
    }

    function _assertConserved() internal view {
        address[] memory a = new address[](6);
        (a[0], a[1], a[2], a[3], a[4], a[5]) = (alice, bob, carol, liquidator, address(this), thief);
        assertConservedOver(a);
    }
}
