// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {ConstantsLib as C} from "../../../contracts/libraries/ConstantsLib.sol";

/// @title Liquidation storm
/// @notice Threat: after a crash, hundreds of accounts are under water at once. If a liquidation's
/// gas grew with the number of accounts, positions or markets, liquidators could not keep up (or
/// a block could not hold the work), bad debt would grow while they wait, and the accounting could
/// drift under many partial liquidations.
/// Defences:
///  (D1) No loop over accounts anywhere: a liquidation touches one account; its only loop is the
///       cross-margin health over the account's open markets, capped at MAX_POSITIONS = 8
///       (MarginEngine._health, MarginEngine.sol:480-496; the cap in _setOpen, :461).
///  (D2) Partial liquidation to the target ratio, full close when that is impossible or leaves
///       dust (MarginEngine._liquidationSize, :247-262): one call clears an account.
///  (D3) Exact token accounting: every flow moves between buckets (MarginEngine.sol:23-25).
///
/// Gas bounds, measured with every contract COLD (vm.cool before each call, as in a fresh
/// transaction; the 21k intrinsic cost excluded):
///  * one position: LIQ_GAS_BOUND = 300k. Measured worst path (full close + bad debt + the first
///    reward to a zero token balance): ~242k = the quote ~92k (five cold feeds, the engine's open
///    interest callback, ~30 cold parameter/feed/ramp slots) + engine storage ~115k (position x2,
///    collateral, vault, insurance, market state, open-market bitmap, bad-debt counters,
///    netDeposits) + the reward transfer ~30k (22k of it a zero-to-nonzero balance). 300k is that
///    plus ~25% headroom for compiler and feed implementation changes; nothing in it scales with
///    the number of accounts, so a storm of any size costs N x (at most) this.
///  * eight positions (the cap): LIQ_GAS_BOUND_MAX_POSITIONS = 1,000k = 300k + 7 x 100k: each other
///    open market adds one cold quote to the health loop (measured ~92k each; ~893k in total).
contract StormTest is AttackBase {
    uint256 internal constant LIQ_GAS_BOUND = 300_000;
    uint256 internal constant LIQ_GAS_BOUND_MAX_POSITIONS = 1_000_000;

    /// @dev Seven more markets (ids 1..7), listed during bootstrap, for the eight-position case.
    function beforeSeal() internal override {
        for (uint256 id = 1; id < C.MAX_POSITIONS; ++id) {
            listExtraMarket(id, 1_000 * id, 0.8e8, 20_000_000);
        }
    }

    function _coolAll() internal {
        vm.cool(address(engine));
        vm.cool(address(controller));
        vm.cool(address(usd));
        vm.cool(liquidator);
        for (uint256 k; k < 5; ++k) {
            vm.cool(address(feeds[k]));
        }
        for (uint256 i; i < extraMarkets.length; ++i) {
            for (uint256 k; k < 5; ++k) {
                vm.cool(address(marketFeeds[extraMarkets[i]][k]));
            }
        }
    }

    function _liquidateMeasured(address a, uint256 marketId) internal returns (uint256 used) {
        _coolAll();
        vm.prank(liquidator);
        uint256 g0 = gasleft();
        engine.liquidate(a, marketId);
        used = g0 - gasleft();
    }

    /// @notice STORM_ACCOUNTS (default 200) accounts, long and short, 8x..20x; BTC crashes 8%:
    /// every long above ~10x is under water at once (partial, full and bad-debt liquidations).
    /// Every liquidation stays under LIQ_GAS_BOUND, one call clears each account, none is left
    /// liquidatable, and tokens are conserved to the unit.
    function test_crashStorm_everyLiquidationBoundedAndAllCleared() public {
        uint256 n = vm.envOr("STORM_ACCOUNTS", uint256(200));
        address[] memory accts = new address[](n + 4);
        for (uint256 i; i < n; ++i) {
            address a = address(uint160(0x5703_0000 + i));
            accts[i] = a;
            uint256 col = 1_000 + (i % 7) * 500; // USDC
            uint256 levX10 = 80 + (i * 37) % 120; // 8.0x .. 19.9x
            uint256 sizeWad = col * levX10 * WAD / 10 / 50_000;
            fund(a, col * USDC);
            open(a, i % 2 == 0 ? int256(sizeWad) : -int256(sizeWad));
            assertFalse(engine.isLiquidatable(a));
        }
        (accts[n], accts[n + 1], accts[n + 2], accts[n + 3]) = (alice, bob, liquidator, address(this));
        uint256 fees0 = engine.protocolFees();

        setPrice(46_000);
        uint256 under;
        for (uint256 i; i < n; ++i) {
            if (engine.isLiquidatable(accts[i])) ++under;
        }
        assertGe(under, n / 4, "a storm: many accounts under water at once");

        // Keepers flag every account under water; the liquidations settle at the next round.
        for (uint256 i; i < n; ++i) {
            if (engine.isLiquidatable(accts[i])) engine.flagLiquidation(accts[i]);
        }
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        setPrice(46_000);

        uint256 maxGas;
        uint256 partials;
        uint256 bad0 = engine.badDebtTotal();
        for (uint256 i; i < n; ++i) {
            address a = accts[i];
            if (!engine.isLiquidatable(a)) continue;
            uint256 used = _liquidateMeasured(a, BTC);
            assertLt(used, LIQ_GAS_BOUND, "liquidation gas bounded");
            if (used > maxGas) maxGas = used;
            assertFalse(engine.isLiquidatable(a), "one call clears the account");
            if (engine.position(a, BTC).sizeWad != 0) ++partials;
        }
        for (uint256 i; i < n; ++i) {
            assertFalse(engine.isLiquidatable(accts[i]), "none left liquidatable");
        }
        assertConservedOver(accts);
        assertEq(engine.protocolFees(), fees0, "liquidations pay no protocol fee");
        emit log_named_uint("accounts", n);
        emit log_named_uint("liquidated", under);
        emit log_named_uint("partial liquidations", partials);
        emit log_named_decimal_uint("bad debt (USDC)", engine.badDebtTotal() - bad0, 6);
        emit log_named_uint("max liquidation gas (cold)", maxGas);
    }

    /// @notice The worst case per call: an account with the maximum of eight positions, all under
    /// water; each of its eight liquidations stays under LIQ_GAS_BOUND_MAX_POSITIONS.
    function test_liquidationGas_worstCaseEightPositions() public {
        address a = makeAddr("eight");
        fund(a, 80_000 * USDC);
        open(a, 3e18); // BTC $150k
        for (uint256 id = 1; id < C.MAX_POSITIONS; ++id) {
            // $150k in each market at price 1000 * id.
            trade(a, id, int256(150 * WAD / id), 0);
        }
        assertEq(engine.openMarkets(a), 0xff);
        Health memory h = engine.health(a);
        emit log_named_decimal_uint("leverage", h.notionalUsdWad * WAD / uint256(h.equityUsdWad), 18);

        // Everything drops 7%.
        setPrice(46_500);
        for (uint256 id = 1; id < C.MAX_POSITIONS; ++id) {
            setMarketFeed(id, 0, int256(1_000 * id * 93 / 100 * 1e8));
        }
        assertTrue(engine.isLiquidatable(a));
        uint256 maxGas;
        for (uint256 j; j < C.MAX_POSITIONS && engine.isLiquidatable(a); ++j) {
            // the engine's preferred market, at the round after the flag
            uint256 id = engine.liquidationMarket(a);
            engine.flagLiquidation(a);
            vm.warp(block.timestamp + engine.orderMinDelaySec());
            (, int256 px,,,) = priceFeed(id).latestRoundData();
            setMarketFeed(id, 0, px);
            uint256 used = _liquidateMeasured(a, id);
            assertLt(used, LIQ_GAS_BOUND_MAX_POSITIONS, "eight-position liquidation gas bounded");
            if (used > maxGas) maxGas = used;
        }
        assertFalse(engine.isLiquidatable(a));
        emit log_named_uint("max liquidation gas, 8 positions (cold)", maxGas);
        address[] memory accts = new address[](5);
        (accts[0], accts[1], accts[2], accts[3], accts[4]) = (alice, bob, liquidator, address(this), a);
        assertConservedOver(accts);
    }
}
