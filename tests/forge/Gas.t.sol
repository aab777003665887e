// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {BaseTest} from "./utils/BaseTest.sol";
import {RiskParams} from "../../interfaces/ILeverageController.sol";

/// @notice One plain test per entry point, each body a single call, every precondition set up in
/// `setUp`: the figures in `.gas-snapshot` read as the cost of that call (plus a prank). An order
/// is two calls: `commitOrder` (escrow the settlement fee, store the order) and `settleOrder`
/// (check the round, execute the trade, pay the keeper), measured separately.
contract GasTest is BaseTest {
    address internal carol = makeAddr("carol"); // partially liquidatable
    address internal dave = makeAddr("dave"); // underwater: full liquidation with bad debt
    address internal erin = makeAddr("erin"); // first deposit
    address internal frank = makeAddr("frank"); // pending orders, ready to settle
    address internal gina = makeAddr("gina"); // an expired order
    address internal hank = makeAddr("hank"); // liquidatable, not flagged
    RiskParams internal tighter;
    uint80 internal settleRound;

    function setUp() public override {
        super.setUp();
        fund(alice, 100_000 * USDC);
        open(alice, 1e18);
        fund(bob, 100_000 * USDC);
        fund(carol, 10_000 * USDC);
        open(carol, 2e18);
        fund(dave, 10_000 * USDC);
        open(dave, 2.5e18);
        fund(frank, 100_000 * USDC);
        fund(gina, 100_000 * USDC);
        fund(hank, 10_000 * USDC);
        open(hank, 2e18);
        usd.mint(erin, 1_000 * USDC);
        vm.prank(erin);
        usd.approve(address(engine), type(uint256).max);

        // gina's order expires unsettled
        vm.prank(gina);
        engine.commitOrder(BTC, 1e18, 0);
        vm.warp(block.timestamp + engine.orderMinDelaySec() + engine.orderWindowSec() + 1);
        refreshFeeds();

        // alice (reduce), frank (fresh open) commit; the next round is published after the delay
        vm.prank(alice);
        engine.commitOrder(BTC, -0.5e18, 0);
        vm.prank(frank);
        engine.commitOrder(BTC, 1e18, 0);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        setPrice(45_500);
        require(engine.isLiquidatable(carol) && engine.isLiquidatable(dave) && engine.isLiquidatable(hank), "setup");
        require(engine.health(dave).equityUsdWad < 0, "dave underwater");
        // carol and dave flagged; the round after the delay is both the flags' and no order's:
        // orders are settled at the round published now (the first after their delay)
        settleRound = latestRound(BTC);
        engine.flagLiquidation(carol);
        engine.flagLiquidation(dave);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        setPrice(45_500);
        setFeed(1, 0.8e8); // the next poke schedules a tightening on both sides

        tighter = defaultParams();
        tighter.zWad = 2.5e18;
    }

    function test_gas_deposit() public {
        vm.prank(erin);
        engine.deposit(1_000 * USDC);
    }

    /// @dev With an open position: the withdrawal re-checks the initial requirement.
    function test_gas_withdraw() public {
        vm.prank(alice);
        engine.withdraw(1_000 * USDC);
    }

    /// @dev A fresh order: escrow the settlement fee, store the order.
    function test_gas_commitOrder() public {
        vm.prank(bob);
        engine.commitOrder(BTC, 1e18, 0);
    }

    function test_gas_commitClose() public {
        vm.prank(carol);
        engine.commitClose(BTC, 0);
    }

    /// @dev Settles a fresh open: round checks, impact, OI cap, margin check, keeper paid.
    function test_gas_settleOrder_open() public {
        engine.settleOrder(frank, BTC, settleRound);
    }

    /// @dev Settles a reduction (no margin check).
    function test_gas_settleOrder_reduce() public {
        engine.settleOrder(alice, BTC, settleRound);
    }

    function test_gas_cancelExpiredOrder() public {
        engine.cancelExpiredOrder(gina, BTC);
    }

    function test_gas_accrueFunding() public {
        engine.accrueFunding(BTC);
    }

    function test_gas_flagLiquidation() public {
        engine.flagLiquidation(hank);
    }

    function test_gas_liquidatePartial() public {
        vm.prank(liquidator);
        engine.liquidate(carol, BTC);
    }

    function test_gas_liquidateFull() public {
        vm.prank(liquidator);
        engine.liquidate(dave, BTC);
    }

    function test_gas_feedTransmit() public {
        vm.prank(admin);
        feeds[0].transmit(45_600e8);
    }

    /// @dev A whole risk report (volatility, funding, depth, skew) of a market, over the previous one.
    function test_gas_submitReport() public {
        vm.prank(admin);
        controller.submitReport(BTC, 15, [int256(0.62e8), 0.0001e8, 45_000_000e8, -0.02e8]);
    }

    function test_gas_poke() public {
        controller.poke(BTC);
    }

    /// @dev The first calibrated tail publication of a market (issue 12): a fresh slot.
    function test_gas_publishTail() public {
        vm.prank(admin);
        controller.publishTail(BTC, 1.6e18, 1.3e18);
    }

    function test_gas_proposeParams() public {
        vm.prank(admin);
        controller.proposeParams(BTC, tighter);
    }
}
