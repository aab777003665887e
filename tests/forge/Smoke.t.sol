// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {BaseTest} from "./utils/BaseTest.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

contract SmokeTest is BaseTest {
    function test_openCrashLiquidate() public {
        fund(alice, 10_000 * USDC);
        uint256 lev = controller.maxLeverageWad(BTC, true);
        emit log_named_decimal_uint("max leverage long", lev, 18);
        // 10x long: 100k notional = 2 BTC
        open(alice, 2e18);
        Health memory h = engine.health(alice);
        emit log_named_decimal_int("equity", h.equityUsdWad, 18);
        emit log_named_decimal_uint("maint", h.maintenanceUsdWad, 18);
        emit log_named_decimal_uint("init", h.initialUsdWad, 18);
        assertFalse(engine.isLiquidatable(alice));
        setPrice(45_500);
        assertTrue(engine.isLiquidatable(alice));
        flagAndWait(alice, BTC);
        vm.prank(liquidator);
        engine.liquidate(alice, BTC);
        h = engine.health(alice);
        emit log_named_decimal_int("equity after", h.equityUsdWad, 18);
        emit log_named_decimal_uint("maint after", h.maintenanceUsdWad, 18);
        emit log_named_decimal_int("size after", engine.position(alice, BTC).sizeWad, 18);
        assertGt(engine.collateralOf(liquidator), 0);
        assertConserved();
    }
}
