// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {BaseTest} from "./BaseTest.sol";
import {MarketQuote} from "../../../interfaces/ILeverageController.sol";

/// @notice Order-flow helpers for the engine v2 tests (commit, then settle at the first price
/// published after the minimum delay) and the new impact rule restated independently of the
/// engine: impact is the integral over the market's skew, charged into the market's impact pool
/// and rebated out of it (never beyond what it holds).
abstract contract OrderHelpers is BaseTest {
    using FixedPointMathLib for uint256;

    /// @notice Settlement fee escrowed per order (BaseTest's engine config), token units.
    uint256 internal constant SETTLE_FEE = 1 * USDC;

    /// @notice Commits `who`'s order, waits the minimum delay and re-publishes the market's price
    /// (the round the order settles at is then `latestRound(id)`).
    function commitAndWait(address who, uint256 id, int256 delta, uint256 limit) internal {
        vm.prank(who);
        engine.commitOrder(id, delta, limit);
        waitAndPublish(id);
    }

    function commitCloseAndWait(address who, uint256 id, uint256 limit) internal {
        vm.prank(who);
        engine.commitClose(id, limit);
        waitAndPublish(id);
    }


    /// @notice Expects the settlement of `who`'s order (`delta`, `limit`) to revert with `err`
    /// (empty: any revert), then restores the state from before the commit.
    function expectTradeRevert(address who, uint256 id, int256 delta, uint256 limit, bytes memory err) internal {
        uint256 s = vm.snapshotState();
        commitAndWait(who, id, delta, limit);
        uint80 r = latestRound(id);
        if (err.length == 0) vm.expectRevert();
        else vm.expectRevert(err);
        engine.settleOrder(who, id, r);
        vm.revertToState(s);
    }

    /// @notice `expectTradeRevert` matching only the error's selector.
    function expectTradeRevertSel(address who, uint256 id, int256 delta, uint256 limit, bytes4 sel) internal {
        uint256 s = vm.snapshotState();
        commitAndWait(who, id, delta, limit);
        uint80 r = latestRound(id);
        vm.expectPartialRevert(sel);
        engine.settleOrder(who, id, r);
        vm.revertToState(s);
    }

    /// @notice `expectTradeRevert` for a close-all order.
    function expectCloseRevert(address who, uint256 id, uint256 limit, bytes memory err) internal {
        uint256 s = vm.snapshotState();
        commitCloseAndWait(who, id, limit);
        uint80 r = latestRound(id);
        if (err.length == 0) vm.expectRevert();
        else vm.expectRevert(err);
        engine.settleOrder(who, id, r);
        vm.revertToState(s);
    }

    /// @notice Commits and settles; on any failure restores the state from before the commit and
    /// returns false.
    function tryTrade(address who, uint256 id, int256 delta) internal returns (bool ok) {
        uint256 s = vm.snapshotState();
        vm.prank(who);
        try engine.commitOrder(id, delta, 0) {
            waitAndPublish(id);
            try engine.settleOrder(who, id, latestRound(id)) {
                ok = true;
            } catch {}
        } catch {}
        if (!ok) vm.revertToState(s);
    }

    /// @notice Flags `account` for liquidation, waits the minimum delay, re-publishes market `id`'s
    /// price and liquidates it there as `caller`.
    function flagAndLiquidate(address caller, address account, uint256 id) internal {
        flagAndWait(account, id);
        vm.prank(caller);
        engine.liquidate(account, id);
    }

    /// @notice Trade fee of `absSize` at `priceWad`, token units (rounded up twice).
    function tradeFee(uint256 absSize, uint256 priceWad) internal pure returns (uint256) {
        return absSize.mulWadUp(priceWad).mulWadUp(0.0005e18).divUp(1e12);
    }

    /// @notice Impact in USD WAD of moving the skew from `sb` to `sa`: coef * (|sa|^2 - |sb|^2) *
    /// p^2 / (2 depth), a charge rounded up or a rebate rounded down.
    function skewImpactUsd(uint256 coef, int256 sb, int256 sa, uint256 p, uint256 depth)
        internal
        pure
        returns (uint256 charge, uint256 rebate)
    {
        uint256 b = sb < 0 ? uint256(-sb) : uint256(sb);
        uint256 a = sa < 0 ? uint256(-sa) : uint256(sa);
        if (a == b || coef == 0) return (0, 0);
        if (a > b) {
            uint256 x = (a - b).mulWadUp(p).mulWadUp((a + b).mulWadUp(p));
            charge = coef.mulWadUp(x).mulDivUp(1e18, 2 * depth);
        } else {
            uint256 x = (b - a).mulWad(p).mulWad((a + b).mulWad(p));
            rebate = coef.mulWad(x).mulDiv(1e18, 2 * depth);
        }
    }

    /// @notice Signed impact in token units the engine would charge (> 0) or rebate (< 0) for a
    /// skew move of market `id` from `sb` to `sa` at `p`, with the live coefficient and depth and
    /// the rebate capped at the market's impact pool now.
    function impactTokens(uint256 id, int256 sb, int256 sa, uint256 p) internal view returns (int256) {
        MarketQuote memory q = controller.quote(id, true, 0);
        (uint256 charge, uint256 rebate) = skewImpactUsd(q.impactCoefWad, sb, sa, p, q.depthUsdWad);
        if (charge != 0) return int256(charge.divUp(1e12));
        uint256 r = rebate / 1e12;
        (uint256 pool,) = engine.marketBook(id);
        if (r > pool) r = pool;
        return -int256(r);
    }

    /// @notice Signed skew (long minus short open interest) of market `id`, base units.
    function skewOf(uint256 id) internal view returns (int256) {
        (uint256 l, uint256 s) = engine.openInterest(id);
        return int256(l) - int256(s);
    }

    function poolOf(uint256 id) internal view returns (uint256 pool) {
        (pool,) = engine.marketBook(id);
    }
}
