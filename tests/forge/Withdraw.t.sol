// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {MarginEngine} from "../../contracts/MarginEngine.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

/// @notice `withdraw`: realized collateral only, never below the initial requirement counting
/// unrealized losses but no unrealized profit, and only at fresh prices.
contract WithdrawTest is OrderHelpers {
    using FixedPointMathLib for uint256;

    /// @dev Largest withdrawal that keeps equity >= initial requirement (equity in whole tokens).
    function maxWithdrawable(address who) internal view returns (uint256) {
        Health memory h = engine.health(who);
        if (h.equityUsdWad <= int256(h.initialUsdWad)) return 0;
        uint256 freeWad = uint256(h.equityUsdWad) - h.initialUsdWad;
        uint256 byMargin = freeWad / 1e12;
        uint256 c = uint256(engine.collateralOf(who));
        return byMargin < c ? byMargin : c;
    }

    function test_withdraw_noPositionWithdrawsAll() public {
        fund(alice, 1_000 * USDC);
        uint256 n0 = engine.netDeposits();
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.Withdrawn(alice, 1_000 * USDC);
        vm.prank(alice);
        engine.withdraw(1_000 * USDC);
        assertEq(engine.collateralOf(alice), 0);
        assertEq(usd.balanceOf(alice), 1_000 * USDC);
        assertEq(engine.netDeposits(), n0 - 1_000 * USDC);
        assertConserved();
    }

    function test_withdraw_partial() public {
        fund(alice, 1_000 * USDC);
        vm.prank(alice);
        engine.withdraw(1);
        assertEq(engine.collateralOf(alice), int256(1_000 * USDC - 1));
        assertEq(usd.balanceOf(alice), 1);
    }

    function test_withdraw_revertsOnZero() public {
        fund(alice, 1_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(ErrorsLib.ZeroAmount.selector);
        engine.withdraw(0);
    }

    function test_withdraw_revertsAboveCollateral() public {
        fund(alice, 1_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, int256(1_000 * USDC), 1_000 * USDC + 1)
        );
        engine.withdraw(1_000 * USDC + 1);
    }

    function test_withdraw_revertsWithoutAccount() public {
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, int256(0), 1));
        engine.withdraw(1);
    }

    /// @dev The exact boundary: the largest amount leaving equity >= initial passes, one more unit fails
    /// with the post-withdrawal equity and the unchanged requirement.
    function test_withdraw_withPositionStopsAtInitialRequirement() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        Health memory h = engine.health(alice);
        // 2 BTC at 50k: settlement fee 1, fee 50 and impact 1 were charged, no unrealized PnL.
        assertEq(h.equityUsdWad, 9_948e18);
        uint256 maxAmt = maxWithdrawable(alice);
        assertGt(maxAmt, 0);
        assertLt(maxAmt, 9_948 * USDC);

        uint256 over = maxAmt + 1;
        int256 equityAfter = int256((9_948 * USDC - over) * 1e12);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, equityAfter, h.initialUsdWad)
        );
        engine.withdraw(over);

        vm.prank(alice);
        engine.withdraw(maxAmt);
        Health memory h2 = engine.health(alice);
        assertGe(h2.equityUsdWad, int256(h2.initialUsdWad));
        assertLt(uint256(h2.equityUsdWad) - h2.initialUsdWad, 1e12, "left less than one token unit of slack");
        assertFalse(engine.isLiquidatable(alice));
        assertConserved();
    }

    /// @dev Unrealized profit counts toward health but cannot be withdrawn until realized.
    function test_withdraw_unrealizedProfitNotWithdrawable() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        setPrice(60_000);
        Health memory h = engine.health(alice);
        int256 c = engine.collateralOf(alice);
        assertGt(h.equityUsdWad, c * 1e12 + 9_000e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, c, uint256(c) + 1));
        engine.withdraw(uint256(c) + 1);

        close(alice, BTC);
        int256 c2 = engine.collateralOf(alice);
        assertGt(c2, c + int256(9_900 * USDC));
        vm.prank(alice);
        engine.withdraw(uint256(c2));
        assertEq(engine.collateralOf(alice), 0);
        assertConserved();
    }

    /// @dev A bad risk feed prices the open position's initial requirement at maxImf: less is free.
    function test_withdraw_riskFeedBadRequiresMaxImf() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        uint256 freeBefore = maxWithdrawable(alice);
        setFeed(1, 11e8); // the report's volatility above its 10.0 bound
        Health memory h = engine.health(alice);
        // maxImf = 50% of 50k notional.
        assertEq(h.initialUsdWad, 25_000e18);
        assertEq(maxWithdrawable(alice), 0);
        assertGt(freeBefore, 0);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, h.equityUsdWad - 1e12, 25_000e18)
        );
        engine.withdraw(1);
    }

    function test_withdraw_withPositionRevertsWhenPriceInvalid() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        vm.prank(admin);
        feeds[0].setReverting(true);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        engine.withdraw(1);
    }

    function test_withdraw_noPositionWorksWhileFeedsBroken() public {
        fund(alice, 10 * USDC);
        for (uint256 k; k < 5; ++k) {
            vm.prank(admin);
            feeds[k].setReverting(true);
        }
        vm.prank(alice);
        engine.withdraw(10 * USDC);
        assertEq(usd.balanceOf(alice), 10 * USDC);
    }

    function test_withdraw_afterCloseReturnsAllButCosts() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        close(alice, BTC);
        // Open: settlement 1 + fee 50 + impact 1 (skew 0 -> 2); close: settlement 1 + fee 50 and
        // the rebate of the same skew move, 1.
        assertEq(engine.collateralOf(alice), int256(9_898 * USDC));
        vm.prank(alice);
        engine.withdraw(9_898 * USDC);
        assertConserved();
    }

    function testFuzz_withdraw_neverBelowInitial(uint256 size, uint256 amt) public {
        fund(alice, 10_000 * USDC);
        size = bound(size, 0.01e18, 5e18);
        open(alice, int256(size));
        uint256 maxAmt = maxWithdrawable(alice);
        amt = bound(amt, 1, 10_000 * USDC);
        vm.prank(alice);
        if (amt > maxAmt) {
            vm.expectRevert();
            engine.withdraw(amt);
        } else {
            engine.withdraw(amt);
            Health memory h = engine.health(alice);
            assertGe(h.equityUsdWad, int256(h.initialUsdWad));
        }
        assertConserved();
    }

    // ================================================================ engine v2: no unrealized profit, fresh prices

    /// @dev Unrealized profit no longer counts toward a withdrawal (it still counts toward
    /// liquidation health): an amount that fits only with the profit reverts with the equity
    /// without it; unrealized losses count in full.
    function testFuzz_withdraw_unrealizedProfitNeverCounts(uint256 moveBps, uint256 amt, bool up) public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        moveBps = bound(moveBps, 1, 1_500);
        uint256 px = up ? 50_000 * (10_000 + moveBps) / 10_000 : 50_000 * (10_000 - moveBps) / 10_000;
        setPrice(px);
        Health memory h = engine.health(alice);
        int256 pnl = int256(2 * px * 1e18) - 100_000e18;
        int256 eqNoProfit = pnl > 0 ? h.equityUsdWad - pnl : h.equityUsdWad;
        int256 c = engine.collateralOf(alice);
        amt = bound(amt, 1, uint256(c));
        int256 after_ = eqNoProfit - int256(amt * 1e12);
        vm.prank(alice);
        if (after_ < int256(h.initialUsdWad)) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, after_, h.initialUsdWad));
            engine.withdraw(amt);
        } else {
            engine.withdraw(amt);
            assertEq(engine.collateralOf(alice), c - int256(amt));
        }
        assertConserved();
    }

    /// @dev The concrete case: after +10%, the 10k of profit on a 10x long frees nothing.
    function test_withdraw_profitAfterPumpFreesNothing() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        uint256 free0 = maxWithdrawable(alice);
        setPrice(55_000);
        Health memory h = engine.health(alice);
        assertGt(uint256(h.equityUsdWad) - h.initialUsdWad, free0 * 1e12 + 9_000e18, "the old rule would free 9k more");
        // without the profit: 9,948 of equity against the initial requirement at 110k notional
        uint256 amt = free0;
        int256 after_ = 9_948e18 - int256(amt * 1e12);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.InitialMarginViolated.selector, after_, h.initialUsdWad));
        engine.withdraw(amt);
    }

    /// @dev A withdrawal with open positions needs every price published within
    /// withdrawPriceMaxAgeSec (an engine with 60 s here), else PriceTooOld(market, updatedAt, age).
    function test_withdraw_priceTooOld() public {
        MarginEngine.EngineConfig memory cfg = defaultEngineConfig();
        cfg.withdrawPriceMaxAgeSec = 60;
        vm.prank(admin);
        engine = new MarginEngine(admin, usd, controller, cfg);
        usd.approve(address(engine), type(uint256).max);
        engine.fundVault(1_000_000 * USDC);
        fund(alice, 10_000 * USDC);
        open(alice, 0.1e18);
        uint256 t = block.timestamp; // the settlement round was published now
        vm.warp(t + 60);
        vm.prank(alice);
        engine.withdraw(1 * USDC); // exactly 60 s old: fresh enough
        vm.warp(t + 61);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceTooOld.selector, BTC, t, 60));
        engine.withdraw(1 * USDC);
        refreshFeeds();
        vm.prank(alice);
        engine.withdraw(1 * USDC);
        // Without positions the price is not read at all.
        close(alice, BTC);
        vm.warp(block.timestamp + 1_000);
        int256 c = engine.collateralOf(alice);
        vm.prank(alice);
        engine.withdraw(uint256(c));
        assertConserved();
    }
}
