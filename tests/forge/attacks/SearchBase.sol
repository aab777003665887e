// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {BaseTest} from "../utils/BaseTest.sol";
import {Order} from "../../../interfaces/IMarginEngine.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";

/// @notice Helpers for the attacker-strategy searches (issue 10): a crew of attacker accounts whose
/// total wealth (collateral plus wallet tokens) is measured before and after, orders settled at the
/// first eligible price round (by the crew itself, so settlement fees stay in the crew), two-step
/// liquidations run by the crew, and the protocol's buckets.
abstract contract SearchBase is BaseTest {
    address[] internal crew;

    /// @notice `n` fresh attacker accounts, each with `eachTokens` collateral.
    function hire(uint256 n, uint256 eachTokens) internal {
        for (uint256 i; i < n; ++i) {
            address a = track(string.concat("crew", vm.toString(crew.length)));
            fund(a, eachTokens);
            crew.push(a);
        }
    }

    /// @notice The crew's wealth: collateral plus tokens in the wallets, token units.
    function wealth() internal view returns (int256 w) {
        for (uint256 i; i < crew.length; ++i) {
            w += engine.collateralOf(crew[i]) + int256(usd.balanceOf(crew[i]));
        }
    }

    /// @notice What the protocol holds for itself: vault, insurance fund, fees and impact pools.
    function protocolBuckets() internal view returns (int256) {
        return engine.vaultBalance() + int256(engine.insuranceFund()) + int256(engine.protocolFees())
            + int256(engine.impactPools());
    }

    /// @notice Publishes a price answer (feed decimals: 8) to market `id`'s feed, timestamped now.
    function publish(uint256 id, uint256 answer8) internal {
        setMarketFeed(id, 0, int256(answer8));
    }

    function price8(uint256 id) internal view returns (uint256) {
        (, int256 a,,,) = priceFeed(id).latestRoundData();
        return uint256(a);
    }

    /// @notice The first round of market `id`'s price feed published at or after `from` (0: none yet).
    function firstRoundFrom(uint256 id, uint256 from) internal view returns (uint80) {
        MockAggregator f = priceFeed(id);
        (uint80 r,,, uint256 t,) = f.latestRoundData();
        if (t < from) return 0;
        while (r > 1) {
            (,,, uint256 tp,) = f.getRoundData(r - 1);
            if (tp < from) break;
            --r;
        }
        return r;
    }

    /// @notice Settles `who`'s order in market `id` as `settler` at its first eligible round; when
    /// no round is published yet after the minimum delay, waits for it and re-publishes the
    /// current answer (the on-demand push).
    function settleFirst(address settler, address who, uint256 id) internal {
        uint256 from = uint256(engine.order(who, id).commitSec) + engine.orderMinDelaySec();
        uint80 r = firstRoundFrom(id, from);
        if (r == 0) {
            if (block.timestamp < from) vm.warp(from);
            publish(id, price8(id));
            r = latestRound(id);
        }
        vm.prank(settler);
        engine.settleOrder(who, id, r);
    }

    /// @notice Commits an order of `who` (side and size in `delta`).
    function orderAs(address who, uint256 id, int256 delta) internal {
        vm.prank(who);
        engine.commitOrder(id, delta, 0);
    }

    /// @notice Commits and settles a close-all order of `who`, when it holds a position.
    function closeNow(address who, uint256 id) internal {
        if (engine.position(who, id).sizeWad == 0) return;
        // The settlement fee comes out of collateral: top it up from the wallet if needed (wealth
        // is unchanged by the move).
        int256 c = engine.collateralOf(who);
        uint256 fee = engine.settlementFeeTokens();
        if (c < int256(fee)) {
            uint256 need = uint256(int256(fee) - c);
            if (usd.balanceOf(who) < need) usd.mint(who, need - usd.balanceOf(who));
            vm.prank(who);
            engine.deposit(need);
        }
        vm.prank(who);
        engine.commitClose(id, 0);
        settleFirst(crew[0], who, id);
    }

    /// @notice Liquidates `who` as `liq` until it is healthy or flat: flag, wait, re-publish the
    /// preferred market's price, liquidate (at most 8 rounds).
    function liquidateAll(address liq, address who) internal {
        for (uint256 i; i < 8; ++i) {
            if (!engine.isLiquidatable(who)) return;
            uint256 m = engine.liquidationMarket(who);
            vm.prank(liq);
            engine.flagLiquidation(who);
            vm.warp(block.timestamp + engine.orderMinDelaySec());
            publish(m, price8(m));
            vm.prank(liq);
            engine.liquidate(who, m);
        }
    }

    function abs(int256 x) internal pure returns (uint256) {
        return x < 0 ? uint256(-x) : uint256(x);
    }
}
