// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

/// @notice `deposit`, `depositFor`, `fundVault`, `fundInsurance`: bucket moves and rejections.
contract DepositTest is BaseTest {
    function test_deposit_creditsCollateralAndNetDeposits() public {
        usd.mint(alice, 1_000 * USDC);
        uint256 engineBefore = usd.balanceOf(address(engine));
        uint256 netBefore = engine.netDeposits();
        vm.startPrank(alice);
        usd.approve(address(engine), type(uint256).max);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.Deposited(alice, alice, 1_000 * USDC);
        engine.deposit(1_000 * USDC);
        vm.stopPrank();

        assertEq(engine.collateralOf(alice), int256(1_000 * USDC));
        assertEq(usd.balanceOf(alice), 0);
        assertEq(usd.balanceOf(address(engine)), engineBefore + 1_000 * USDC);
        assertEq(engine.netDeposits(), netBefore + 1_000 * USDC);
        Health memory h = engine.health(alice);
        assertEq(h.equityUsdWad, 1_000e18);
        assertEq(h.maintenanceUsdWad, 0);
        assertEq(h.initialUsdWad, 0);
        assertConserved();
    }

    function test_deposit_accumulates() public {
        fund(alice, 1 * USDC);
        fund(alice, 2);
        assertEq(engine.collateralOf(alice), int256(USDC + 2));
        assertConserved();
    }

    function test_deposit_revertsOnZero() public {
        vm.prank(alice);
        vm.expectRevert(ErrorsLib.ZeroAmount.selector);
        engine.deposit(0);
    }

    function test_deposit_revertsWithoutAllowance() public {
        usd.mint(alice, 10 * USDC);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(engine), 0, 10 * USDC)
        );
        engine.deposit(10 * USDC);
    }

    function test_deposit_revertsWithoutBalance() public {
        vm.startPrank(alice);
        usd.approve(address(engine), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, alice, 0, 10 * USDC));
        engine.deposit(10 * USDC);
        vm.stopPrank();
    }

    function test_depositFor_creditsAccountChargesPayer() public {
        usd.mint(bob, 500 * USDC);
        vm.startPrank(bob);
        usd.approve(address(engine), type(uint256).max);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.Deposited(alice, bob, 500 * USDC);
        engine.depositFor(alice, 500 * USDC);
        vm.stopPrank();
        assertEq(engine.collateralOf(alice), int256(500 * USDC));
        assertEq(engine.collateralOf(bob), 0);
        assertEq(usd.balanceOf(bob), 0);
        assertConserved();
    }

    function test_depositFor_revertsOnZeroAddress() public {
        vm.expectRevert(ErrorsLib.ZeroAddress.selector);
        engine.depositFor(address(0), 1);
    }

    function test_depositFor_revertsOnZeroAmount() public {
        vm.expectRevert(ErrorsLib.ZeroAmount.selector);
        engine.depositFor(alice, 0);
    }

    /// @dev Deposits never read a feed: they work with every feed broken.
    function test_deposit_worksWhileFeedsBroken() public {
        for (uint256 k; k < 5; ++k) {
            vm.prank(admin);
            feeds[k].setReverting(true);
        }
        fund(alice, 100 * USDC);
        assertEq(engine.collateralOf(alice), int256(100 * USDC));
    }

    /// @dev A deposit repays a negative (cross-margin) balance first: it is plain addition.
    function test_deposit_topsUpOpenPositionHealth() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        Health memory h0 = engine.health(alice);
        fund(alice, 1_000 * USDC);
        Health memory h1 = engine.health(alice);
        assertEq(h1.equityUsdWad, h0.equityUsdWad + 1_000e18);
        assertEq(h1.maintenanceUsdWad, h0.maintenanceUsdWad);
        assertEq(h1.initialUsdWad, h0.initialUsdWad);
    }

    function test_fundVault_creditsVault() public {
        int256 v0 = engine.vaultBalance();
        uint256 n0 = engine.netDeposits();
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.VaultFunded(address(this), 7 * USDC);
        engine.fundVault(7 * USDC);
        assertEq(engine.vaultBalance(), v0 + int256(7 * USDC));
        assertEq(engine.netDeposits(), n0 + 7 * USDC);
        vm.expectRevert(ErrorsLib.ZeroAmount.selector);
        engine.fundVault(0);
        assertConserved();
    }

    function test_fundInsurance_creditsInsurance() public {
        uint256 i0 = engine.insuranceFund();
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.InsuranceFunded(address(this), 3 * USDC);
        engine.fundInsurance(3 * USDC);
        assertEq(engine.insuranceFund(), i0 + 3 * USDC);
        vm.expectRevert(ErrorsLib.ZeroAmount.selector);
        engine.fundInsurance(0);
        assertConserved();
    }

    function testFuzz_deposit_conserves(uint256 a, uint256 b) public {
        a = bound(a, 1, 1e15 * USDC);
        b = bound(b, 1, 1e15 * USDC);
        fund(alice, a);
        fund(bob, b);
        assertEq(engine.collateralOf(alice), int256(a));
        assertEq(engine.collateralOf(bob), int256(b));
        assertConserved();
    }
}
