// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {BaseTest} from "./utils/BaseTest.sol";
import {RiskParams} from "../../interfaces/ILeverageController.sol";

/// @notice One plain test per entry point, each body a single call, every precondition set up in
/// `setUp`: the figures in `.gas-snapshot` read as the cost of that call (plus a prank).
contract GasTest is BaseTest {
    address internal carol = makeAddr("carol"); // partially liquidatable
    address internal dave = makeAddr("dave"); // underwater: full liquidation with bad debt
    address internal erin = makeAddr("erin"); // first deposit
    RiskParams internal tighter;

    function setUp() public override {
        super.setUp();
        fund(alice, 100_000 * USDC);
        open(alice, 1e18);
        fund(bob, 100_000 * USDC);
        fund(carol, 10_000 * USDC);
        open(carol, 2e18);
        fund(dave, 10_000 * USDC);
        open(dave, 2.5e18);
        usd.mint(erin, 1_000 * USDC);
        vm.prank(erin);
        usd.approve(address(engine), type(uint256).max);

        setPrice(45_500);
        require(engine.isLiquidatable(carol) && engine.isLiquidatable(dave), "setup");
        require(engine.health(dave).equityUsdWad < 0, "dave underwater");
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

    function test_gas_openFresh() public {
        vm.prank(bob);
        engine.trade(BTC, 1e18, 0);
    }

    function test_gas_increase() public {
        vm.prank(alice);
        engine.trade(BTC, 0.5e18, 0);
    }

    function test_gas_reduce() public {
        vm.prank(alice);
        engine.trade(BTC, -0.5e18, 0);
    }

    function test_gas_close() public {
        vm.prank(alice);
        engine.closePosition(BTC, 0);
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

    function test_gas_poke() public {
        controller.poke(BTC);
    }

    function test_gas_proposeParams() public {
        vm.prank(admin);
        controller.proposeParams(BTC, tighter);
    }
}
