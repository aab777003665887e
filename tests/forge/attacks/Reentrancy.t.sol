// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {AttackBase} from "./AttackBase.sol";
import {FeedConfig, RiskParams} from "../../../interfaces/ILeverageController.sol";
import {LeverageController} from "../../../contracts/LeverageController.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {StaticLeverageController} from "../../../contracts/StaticLeverageController.sol";
import {ConstantsLib as C} from "../../../contracts/libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "../../../contracts/libraries/ErrorsLib.sol";

/// @notice A collateral token that, once armed, calls back into a target from inside `transfer`
/// or `transferFrom` (before moving balances) and records how the re-entrant call ended.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public onTransfer;
    bool public onTransferFrom;
    bool public armed;
    bool public fired;
    bool public lastOk;
    bytes public lastError;

    constructor() ERC20("Evil USD", "eUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata payload_, bool inTransfer, bool inTransferFrom) external {
        target = target_;
        payload = payload_;
        onTransfer = inTransfer;
        onTransferFrom = inTransferFrom;
        armed = true;
        fired = false;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (onTransfer) _hook();
        return super.transfer(to, value);
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (onTransferFrom) _hook();
        return super.transferFrom(from, to, value);
    }

    function _hook() internal {
        if (!armed) return;
        armed = false;
        fired = true;
        (lastOk, lastError) = target.call(payload);
    }
}

/// @title Re-entrancy through the collateral token
/// @notice Threat: a collateral token with a transfer hook (ERC-777 style, or a malicious or
/// upgraded token) re-enters the engine in the middle of a deposit, withdrawal, liquidation or
/// treasury transfer, while balances and positions are half updated.
/// Defence: every state-changing entry point of MarginEngine is `nonReentrant` (OpenZeppelin
/// ReentrancyGuard): deposit, depositFor, withdraw, commitOrder, commitClose, settleOrder (which
/// pays the keeper with a transfer), cancelExpiredOrder, accrueFunding, liquidate, fundVault,
/// withdrawVault, fundInsurance, withdrawFees (MarginEngine.sol). Every re-entrant call must end in ReentrancyGuardReentrantCall; without the
/// guard the inner calls either succeed or fail with another error, and these tests fail.
contract ReentrancyTest is AttackBase {
    ReentrantToken internal evil;
    MarginEngine internal eng;
    LeverageController internal ctl;

    function setUp() public override {
        super.setUp();
        evil = new ReentrantToken();
        vm.startPrank(admin);
        ctl = new LeverageController(admin, 1 days);
        eng = new MarginEngine(admin, evil, ctl, defaultEngineConfig());
        ctl.bindEngine(address(eng));
        ctl.listMarket(BTC, feedConfigs(feeds), defaultParams());
        ctl.poke(BTC);
        ctl.sealBootstrap();
        vm.stopPrank();
        evil.mint(address(this), 10_000_000 * USDC);
        evil.approve(address(eng), type(uint256).max);
        eng.fundVault(5_000_000 * USDC);
        eng.fundInsurance(100_000 * USDC);
        _fundEvil(alice, 10_000 * USDC);
        _fundEvil(bob, 10_000 * USDC);
        evil.mint(alice, 1_000 * USDC); // wallet balance for the deposit-side outer calls
        // fees for withdrawFees, a position for close/liquidate payloads
        vm.prank(bob);
        eng.commitOrder(BTC, 1e18, 0);
        vm.warp(block.timestamp + eng.orderMinDelaySec());
        setFeed(0, feedAnswer(0));
        eng.settleOrder(bob, BTC, latestRound(BTC));
        // alice's order, ready to settle at the next round (the settlement pays the keeper)
        vm.prank(alice);
        eng.commitOrder(BTC, 0.01e18, 0);
        vm.warp(block.timestamp + eng.orderMinDelaySec());
    }

    function _fundEvil(address who, uint256 amount) internal {
        evil.mint(who, amount);
        vm.startPrank(who);
        evil.approve(address(eng), type(uint256).max);
        eng.deposit(amount);
        vm.stopPrank();
    }

    /// @dev Every state-changing engine entry point, as a re-entrant payload.
    function _payloads() internal view returns (bytes[] memory p) {
        p = new bytes[](13);
        p[0] = abi.encodeCall(MarginEngine.deposit, (1));
        p[1] = abi.encodeCall(MarginEngine.depositFor, (alice, 1));
        p[2] = abi.encodeCall(MarginEngine.withdraw, (1));
        p[3] = abi.encodeCall(MarginEngine.commitOrder, (BTC, int256(1e15), 0));
        p[4] = abi.encodeCall(MarginEngine.commitClose, (BTC, 0));
        p[5] = abi.encodeCall(MarginEngine.liquidate, (bob, BTC));
        p[6] = abi.encodeCall(MarginEngine.fundVault, (1));
        p[7] = abi.encodeCall(MarginEngine.fundInsurance, (1));
        p[8] = abi.encodeCall(MarginEngine.settleOrder, (alice, BTC, uint80(1)));
        p[9] = abi.encodeCall(MarginEngine.cancelExpiredOrder, (alice, BTC));
        p[10] = abi.encodeCall(MarginEngine.accrueFunding, (BTC));
        p[11] = abi.encodeCall(MarginEngine.withdrawVault, (admin, 1));
        p[12] = abi.encodeCall(MarginEngine.withdrawFees, (admin));
    }

    function _assertGuarded(string memory outer, uint256 j) internal view {
        assertTrue(evil.fired(), string.concat(outer, ": hook fired"));
        assertFalse(evil.lastOk(), string.concat(outer, ": re-entrant call must fail"));
        assertEq(
            evil.lastError(),
            abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector),
            string.concat(outer, ": rejected by the guard, payload ", vm.toString(j))
        );
    }

    /// @notice Re-entry from `transferFrom` during deposit, depositFor, fundVault, fundInsurance.
    function test_reenterFromTransferFrom_allPayloads() public {
        bytes[] memory p = _payloads();
        uint256 snap = vm.snapshotState();
        for (uint256 j; j < p.length; ++j) {
            for (uint256 o; o < 4; ++o) {
                vm.revertToState(snap);
                evil.arm(address(eng), p[j], false, true);
                vm.prank(alice);
                if (o == 0) eng.deposit(1 * USDC);
                else if (o == 1) eng.depositFor(bob, 1 * USDC);
                else if (o == 2) eng.fundVault(1 * USDC);
                else eng.fundInsurance(1 * USDC);
                _assertGuarded(["deposit", "depositFor", "fundVault", "fundInsurance"][o], j);
            }
        }
    }

    /// @notice Re-entry from `transfer` during withdraw, withdrawVault and withdrawFees; liquidate
    /// and settleOrder credit the liquidator's reward and the keeper's fee inside the engine, so
    /// they make no token call at all: the armed hook must not fire, and the call succeeds.
    function test_reenterFromTransfer_allPayloads() public {
        bytes[] memory p = _payloads();
        uint256 snap = vm.snapshotState();
        for (uint256 j; j < p.length; ++j) {
            for (uint256 o; o < 5; ++o) {
                vm.revertToState(snap);
                if (o == 4) setFeed(0, feedAnswer(0)); // the round alice's order settles at
                if (o == 3) {
                    // Make bob liquidatable and flag him.
                    setPrice(40_000);
                    eng.flagLiquidation(bob);
                    vm.warp(block.timestamp + eng.orderMinDelaySec());
                    setPrice(40_000);
                }
                evil.arm(address(eng), p[j], true, false);
                if (o == 0) {
                    vm.prank(alice);
                    eng.withdraw(1 * USDC);
                } else if (o == 1) {
                    vm.prank(admin);
                    eng.withdrawVault(admin, 1 * USDC);
                } else if (o == 2) {
                    vm.prank(admin);
                    eng.withdrawFees(admin);
                } else if (o == 3) {
                    vm.prank(liquidator);
                    eng.liquidate(bob, BTC);
                } else {
                    vm.prank(liquidator);
                    eng.settleOrder(alice, BTC, latestRound(BTC));
                }
                if (o < 3) _assertGuarded(["withdraw", "withdrawVault", "withdrawFees"][o], j);
                else assertFalse(evil.fired(), o == 3 ? "liquidate: no token call" : "settleOrder: no token call");
            }
        }
    }

    /// @notice A token that bubbles the re-entrant revert makes the outer call revert with it:
    /// nothing half-done can persist.
    function test_reentrantRevertBubbles() public {
        BubblingToken bt = new BubblingToken();
        vm.startPrank(admin);
        LeverageController c2 = new LeverageController(admin, 1 days);
        MarginEngine e2 = new MarginEngine(admin, bt, c2, defaultEngineConfig());
        vm.stopPrank();
        bt.mint(alice, 100 * USDC);
        vm.prank(alice);
        bt.approve(address(e2), type(uint256).max);
        bt.arm(address(e2), abi.encodeCall(MarginEngine.deposit, (1)));
        vm.prank(alice);
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        e2.deposit(1 * USDC);
        assertEq(e2.collateralOf(alice), 0);
        assertEq(e2.netDeposits(), 0);
    }
}

/// @notice Re-enters from transferFrom and bubbles the inner revert.
contract BubblingToken is ERC20 {
    address internal target;
    bytes internal payload;

    constructor() ERC20("Bubbling USD", "bUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address t, bytes calldata p) external {
        target = t;
        payload = p;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        (bool ok, bytes memory err) = target.call(payload);
        if (!ok) {
            assembly {
                revert(add(err, 32), mload(err))
            }
        }
        return super.transferFrom(from, to, value);
    }
}

/// @title Access control of every admin function
/// @notice Threat: anyone but the role holder lists a market, changes parameters, seals or
/// re-binds, sets the sequencer feed, or takes vault liquidity or fees.
/// Defence: OpenZeppelin AccessControl `onlyRole(...)` on each of them
/// (RiskOracleBase.sol: bindEngine :50 DEFAULT_ADMIN, setSequencerFeed :58 DEFAULT_ADMIN,
/// sealBootstrap :67 DEFAULT_ADMIN; LeverageController.sol: listMarket :56, proposeMarket :67,
/// proposeParams :87, cancelParams :109 RISK_ADMIN; MarginEngine.sol: withdrawVault :329,
/// withdrawFees :349 TREASURY; StaticLeverageController.listMarket :35 RISK_ADMIN).
/// Each call below must revert AccessControlUnauthorizedAccount(caller, role) even where the
/// call would also fail for another reason (the role check comes first).
contract AccessControlTest is AttackBase {
    StaticLeverageController internal sc;

    function setUp() public override {
        super.setUp();
        vm.prank(admin);
        sc = new StaticLeverageController(admin);
    }

    function _expectUnauthorized(address caller, bytes32 role) internal {
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, role));
    }

    function testFuzz_everyAdminFunctionRejectsNonRoleCaller(address caller) public {
        vm.assume(caller != admin);
        bytes32 adminRole = controller.DEFAULT_ADMIN_ROLE();
        bytes32 riskRole = controller.RISK_ADMIN_ROLE();
        bytes32 treasury = engine.TREASURY_ROLE();
        FeedConfig[5] memory cfg = feedConfigs(feeds);
        RiskParams memory p = defaultParams();

        _expectUnauthorized(caller, adminRole);
        controller.bindEngine(caller);
        _expectUnauthorized(caller, adminRole);
        controller.setSequencerFeed(caller, 0);
        _expectUnauthorized(caller, adminRole);
        controller.sealBootstrap();
        _expectUnauthorized(caller, riskRole);
        controller.listMarket(7, cfg, p);
        _expectUnauthorized(caller, riskRole);
        controller.proposeMarket(7, cfg, p);
        _expectUnauthorized(caller, riskRole);
        controller.proposeParams(BTC, p);
        _expectUnauthorized(caller, riskRole);
        controller.cancelParams(BTC);
        _expectUnauthorized(caller, treasury);
        engine.withdrawVault(caller, 1);
        _expectUnauthorized(caller, treasury);
        engine.withdrawFees(caller);
        _expectUnauthorized(caller, riskRole);
        sc.listMarket(0, cfg, StaticLeverageController.StaticParams(0.05e18, 0.03e18, 0.01e18, 0.005e18));
        _expectUnauthorized(caller, adminRole);
        sc.bindEngine(caller);
        _expectUnauthorized(caller, adminRole);
        sc.setSequencerFeed(caller, 0);
        _expectUnauthorized(caller, adminRole);
        sc.sealBootstrap();
        // Roles themselves: only DEFAULT_ADMIN grants or revokes.
        _expectUnauthorized(caller, adminRole);
        controller.grantRole(riskRole, caller);
        _expectUnauthorized(caller, adminRole);
        engine.grantRole(treasury, caller);
        _expectUnauthorized(caller, adminRole);
        engine.revokeRole(treasury, admin);
    }

    /// @notice Positive control: the role holder passes the role check on the same calls (and then
    /// meets the function's own rules).
    function test_roleHolderPassesRoleCheck() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.EngineAlreadyBound.selector, address(engine)));
        controller.bindEngine(admin);
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        controller.setSequencerFeed(admin, 0);
        vm.expectRevert(ErrorsLib.BootstrapSealed.selector);
        controller.listMarket(7, feedConfigs(feeds), defaultParams());
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.VaultWithdrawTooLarge.selector, 50_000_001 * USDC, int256(50_000_000 * USDC)));
        engine.withdrawVault(admin, 50_000_001 * USDC);
        vm.stopPrank();
    }
}

/// @title Parameter bounds, step limits, consistency, timelock
/// @notice Threat: a risk admin (or a stolen key) sets a parameter to an absurd value, moves it
/// further than one step, makes the set inconsistent (maintenance above initial), or executes a
/// change before its timelock.
/// Defences: ParamsLib.validate (hard bounds :38, consistency :40-47), ParamsLib.validateStep
/// (:51-62, ParamStepTooLarge :60), both called by LeverageController.proposeParams (:90-91);
/// validate also by every listing (:71, :234); LeverageController._consume (`block.timestamp < p.etaSec` -> ChangeNotReady, :220).
contract ParamBoundsTest is AttackBase {
    function _expectOutOfBounds(uint256 i, uint256 v) internal {
        (uint256 lo, uint256 hi) = fieldBounds(i);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamOutOfBounds.selector, ParamField(i), v, lo, hi));
    }

    /// @notice Any field set outside its hard bounds (above the max, or below a positive min) is
    /// rejected by proposeParams and by proposeMarket with ParamOutOfBounds(field, value, lo, hi).
    function testFuzz_outOfBounds_rejected(uint256 i, uint256 v, bool below) public {
        i = bound(i, 0, N_FIELDS - 1);
        (uint256 lo, uint256 hi) = fieldBounds(i);
        uint256 tmax = fieldTypeMax(i);
        bool canBelow = lo > 0;
        bool canAbove = hi < tmax;
        vm.assume(canBelow || canAbove); // a field whose bounds cover its whole type has no outside
        if ((below && canBelow) || !canAbove) v = bound(v, 0, lo - 1);
        else v = bound(v, hi + 1, tmax);
        RiskParams memory p = defaultParams();
        setField(p, i, v);

        vm.startPrank(admin);
        _expectOutOfBounds(i, v);
        controller.proposeParams(BTC, p);
        _expectOutOfBounds(i, v);
        controller.proposeMarket(9, feedConfigs(feeds), p);
        vm.stopPrank();
    }

    /// @notice Any in-bounds field moved further than max(25%, range/20) from the active value in
    /// one proposal is rejected: ParamStepTooLarge, or ParamsInconsistent when the move also breaks
    /// min <= max or mmf + minBuffer <= imf (checked first).
    function testFuzz_stepTooLarge_rejected(uint256 i, uint256 r, bool up) public {
        i = bound(i, 0, N_FIELDS - 1);
        RiskParams memory cur = controller.activeParams(BTC);
        uint256 a = getField(cur, i);
        (uint256 lo, uint256 hi) = fieldBounds(i);
        if (hi > fieldTypeMax(i)) hi = fieldTypeMax(i);
        uint256 s = maxStepOf(i, a);
        bool canUp = a + s + 1 <= hi;
        bool canDown = a >= lo + s + 1;
        vm.assume(canUp || canDown);
        uint256 v = (up && canUp) || !canDown ? bound(r, a + s + 1, hi) : bound(r, lo, a - s - 1);
        RiskParams memory p = copyParams(cur);
        setField(p, i, v);

        vm.prank(admin);
        if (p.minImfWad > p.maxImfWad) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinImf, ParamField.MaxImf));
        } else if (p.minMmfWad > p.maxMmfWad) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinMmf, ParamField.MaxMmf));
        } else if (uint256(p.minMmfWad) + p.minBufferWad > p.minImfWad) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MinMmf, ParamField.MinImf));
        } else if (uint256(p.maxMmfWad) + p.minBufferWad > p.maxImfWad) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, ParamField.MaxMmf, ParamField.MaxImf));
        } else {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamStepTooLarge.selector, ParamField(i), a, v, s));
        }
        controller.proposeParams(BTC, p);
    }

    /// @notice A move of exactly one step (up or down, when in bounds and consistent) is accepted.
    function testFuzz_oneStepAccepted(uint256 i, bool up) public {
        i = bound(i, 0, N_FIELDS - 1);
        RiskParams memory cur = controller.activeParams(BTC);
        uint256 a = getField(cur, i);
        (uint256 lo, uint256 hi) = fieldBounds(i);
        if (hi > fieldTypeMax(i)) hi = fieldTypeMax(i);
        uint256 s = maxStepOf(i, a);
        uint256 v = up ? (a + s > hi ? hi : a + s) : (a < lo + s ? lo : a - s);
        RiskParams memory p = copyParams(cur);
        setField(p, i, v);
        vm.assume(p.minImfWad <= p.maxImfWad && p.minMmfWad <= p.maxMmfWad);
        vm.assume(uint256(p.minMmfWad) + p.minBufferWad <= p.minImfWad);
        vm.assume(uint256(p.maxMmfWad) + p.minBufferWad <= p.maxImfWad);
        vm.prank(admin);
        controller.proposeParams(BTC, p);
    }

    /// @notice Each consistency rule, violated by a fuzzed margin, with every field in bounds.
    function testFuzz_inconsistent_rejected(uint256 rule, uint256 by) public {
        rule = bound(rule, 0, 3);
        by = bound(by, 1, 0.05e18);
        RiskParams memory p = defaultParams();
        ParamField a;
        ParamField b;
        if (rule == 0) {
            p.maxImfWad = 0.2e18;
            p.maxMmfWad = 0.1e18;
            p.minImfWad = uint64(0.2e18 + by);
            (a, b) = (ParamField.MinImf, ParamField.MaxImf);
        } else if (rule == 1) {
            p.minImfWad = 0.2e18;
            p.minMmfWad = uint64(p.maxMmfWad + by);
            (a, b) = (ParamField.MinMmf, ParamField.MaxMmf);
        } else if (rule == 2) {
            p.minMmfWad = uint64(p.minImfWad - p.minBufferWad + by);
            (a, b) = (ParamField.MinMmf, ParamField.MinImf);
        } else {
            p.maxMmfWad = uint64(p.maxImfWad - p.minBufferWad + by);
            (a, b) = (ParamField.MaxMmf, ParamField.MaxImf);
        }
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ParamsInconsistent.selector, a, b));
        controller.proposeMarket(9, feedConfigs(feeds), p);
    }

    /// @notice Executing a change (params or listing) before its timelock: ChangeNotReady; a
    /// different payload than the one proposed: NoPendingChange.
    function testFuzz_beforeTimelock_changeNotReady(uint256 dt) public {
        uint256 delay = controller.paramDelaySec();
        dt = bound(dt, 0, delay - 1);
        RiskParams memory p = oneStepTighter(controller.activeParams(BTC));
        FeedConfig[5] memory cfg = feedConfigs(feeds);
        RiskParams memory dp = defaultParams();
        vm.startPrank(admin);
        controller.proposeParams(BTC, p);
        controller.proposeMarket(9, cfg, dp);
        vm.stopPrank();
        uint256 eta = block.timestamp + delay;
        vm.warp(block.timestamp + dt);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, BTC, eta, block.timestamp));
        controller.executeParams(BTC, p);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ChangeNotReady.selector, 9, eta, block.timestamp));
        controller.executeMarket(9, cfg, dp);

        RiskParams memory other = copyParams(p);
        other.zWad -= 1;
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPendingChange.selector, BTC));
        controller.executeParams(BTC, other);
    }

    /// @notice The timelock itself is bounded at construction.
    function testFuzz_delayBounds(uint256 d) public {
        vm.assume(d < C.MIN_PARAM_DELAY_SEC || d > C.MAX_PARAM_DELAY_SEC);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.DelayOutOfBounds.selector, d, C.MIN_PARAM_DELAY_SEC, C.MAX_PARAM_DELAY_SEC)
        );
        new LeverageController(admin, d);
    }
}
