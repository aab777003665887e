// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SearchBase} from "./SearchBase.sol";
import {ErrorsLib} from "../../../contracts/libraries/ErrorsLib.sol";

/// @title Oracle-latency trading (issue 10, finding 1)
/// @notice Threat: the oracle lags the market (deviation threshold, refresh interval, heartbeat).
/// A trader who sees the market before the next push trades at the stale price and unwinds after
/// the push: the gap minus costs, paid by the vault. Before engine v2 this netted about +$108k on
/// $100k equity at a 5% gap.
/// Defence: every trader order settles at the first price published at least `orderMinDelaySec`
/// after it was committed (`MarginEngine.settleOrder`, `_settlementPrice`), so whatever the trader
/// knew at commit time is already in the fill; there is no immediate trading path. Liquidations,
/// the one immediate path for reductions, are two-step: `flagLiquidation`, then `liquidate` at the
/// first price published after the flag (`_checkFlag`), so a hedged pair cannot close its losing
/// leg at the lagging price by liquidating itself.
/// Search: the fuzzer chooses the gap (-20%..+20%), the side, the number of accounts (1..3), the
/// leverage (1x..15x), and when the push lands relative to the commits (0..4 s, before and after
/// the minimum delay); for the self-liquidation route, the gap (0.1%..20%), the leverage and the
/// push timing. The attacker knows the next published price exactly and nothing more (after the
/// push the market stays there), and settles its own orders (so settlement fees stay with it).
/// Claim: the attacker's net profit after costs is <= 0 on the order route; on the liquidation
/// route it is at most the bad debt the gap itself creates (the gap-risk bound of the margin
/// model, not a latency profit), so it is <= 0 whenever the gap leaves no bad debt. The protocol
/// (vault, insurance, fees, impact pools) loses nothing on the order route.
contract LatencyAttackTest is SearchBase {
    uint256 internal constant P0 = 50_000;
    uint256 internal constant EQUITY = 100_000 * USDC;

    function testFuzz_orderRoute_noProfit(int256 gapBps, bool withGap, uint256 nAcc, uint256 levX10, uint256 pushDelay)
        public
    {
        gapBps = bound(gapBps, -2000, 2000);
        if (gapBps == 0) gapBps = 50;
        nAcc = bound(nAcc, 1, 3);
        levX10 = bound(levX10, 10, 150);
        pushDelay = bound(pushDelay, 0, 4);
        hire(nAcc, EQUITY);
        int256 w0 = wealth();
        int256 p0 = protocolBuckets();
        uint256 p1 = P0 * uint256(10_000 + gapBps) / 10_000;
        bool isLong = (gapBps > 0) == withGap;
        uint256 size = (EQUITY * 1e12 * levX10 / 10) * WAD / (P0 * WAD);
        uint80 staleRound = latestRound(BTC);

        // t0: every account commits, knowing the next published price is p1.
        for (uint256 i; i < nAcc; ++i) {
            orderAs(crew[i], BTC, isLong ? int256(size) : -int256(size));
        }
        vm.warp(block.timestamp + pushDelay);
        publish(BTC, p1 * 1e8);
        for (uint256 i; i < nAcc; ++i) {
            // The attacker's first choice: settle at the stale round (refused: it was published
            // before the order existed), else at the first eligible round.
            vm.prank(crew[0]);
            try engine.settleOrder(crew[i], BTC, staleRound) {} catch {
                _settleFirstOrExpire(crew[i]);
            }
            // Filled at the published price p1 (the basis is the fill), never at the stale one
            // (an order the engine refuses at p1, e.g. for margin, expires and is refunded).
            int256 basis = engine.position(crew[i], BTC).basisUsdWad;
            if (basis != 0) assertEq(abs(basis), size * p1, "filled at p1");
        }
        // Unwind at the market (it stays at p1: the attacker knew nothing more).
        vm.warp(block.timestamp + 1);
        for (uint256 i; i < nAcc; ++i) {
            closeNow(crew[i], BTC);
        }
        assertLe(wealth() - w0, 0, "order route: no latency profit");
        assertGe(protocolBuckets(), p0, "order route: the protocol loses nothing");
        assertConserved();
    }

    function testFuzz_selfLiquidationRoute_noProfitBeyondGapBadDebt(uint256 gapBps, uint256 levX10, uint256 pushDelay)
        public
    {
        gapBps = bound(gapBps, 10, 2000);
        levX10 = bound(levX10, 50, 200);
        pushDelay = bound(pushDelay, 0, 4);
        hire(3, EQUITY);
        (address a, address b, address liq) = (crew[0], crew[1], crew[2]);
        int256 w0 = wealth();
        uint256 size = (EQUITY * 1e12 * levX10 / 10) * WAD / (P0 * WAD);
        // A hedged pair: a long and a short of the same size, at the same price.
        orderAs(a, BTC, int256(size));
        orderAs(b, BTC, -int256(size));
        settleFirst(liq, a, BTC);
        settleFirst(liq, b, BTC);
        // The market drifts down (published) until the long is liquidatable at the oracle price.
        uint256 p = P0 * 1e8;
        for (uint256 i; i < 400 && !engine.isLiquidatable(a); ++i) {
            vm.warp(block.timestamp + 1);
            p = p * 9975 / 10_000;
            publish(BTC, p);
        }
        assertTrue(engine.isLiquidatable(a), "setup: long liquidatable");
        uint256 bad0 = engine.badDebtTotal();
        uint256 p1 = p * (10_000 - gapBps) / 10_000;

        // The attacker knows the next price is p1 and flags its own long at the lagging price.
        vm.prank(liq);
        engine.flagLiquidation(a);
        uint256 flagTime = block.timestamp;
        // The attacker's first choice: liquidate right now, at the lagging price (refused).
        vm.prank(liq);
        try engine.liquidate(a, BTC) {} catch {}
        vm.warp(block.timestamp + pushDelay);
        publish(BTC, p1);
        if (block.timestamp < flagTime + engine.orderMinDelaySec()) {
            vm.warp(flagTime + engine.orderMinDelaySec());
            publish(BTC, p1);
        }
        if (engine.isLiquidatable(a) && engine.flaggedAt(a) != 0) {
            vm.prank(liq);
            engine.liquidate(a, BTC);
        }
        liquidateAll(liq, a);
        vm.warp(block.timestamp + 1);
        closeNow(a, BTC);
        closeNow(b, BTC);
        int256 profit = wealth() - w0;
        uint256 gapBadDebt = engine.badDebtTotal() - bad0;
        assertLe(profit, int256(gapBadDebt), "liquidation route: no profit beyond the gap's bad debt");
        if (gapBadDebt == 0) assertLe(profit, 0, "no bad debt: no profit");
        assertConserved();
    }

    /// @dev Settles at the first eligible round; an order refused there (margin at p1 with the
    /// crew's own open interest crowding it) expires and is refunded.
    function _settleFirstOrExpire(address who) internal {
        uint256 from = uint256(engine.order(who, BTC).commitSec) + engine.orderMinDelaySec();
        uint256 s = vm.snapshotState();
        try this.settleFirstExternal(who) {} catch {
            vm.revertToState(s);
            uint256 t = block.timestamp;
            vm.warp(from + engine.orderWindowSec() + 1);
            engine.cancelExpiredOrder(who, BTC);
            vm.warp(t);
        }
    }

    function settleFirstExternal(address who) external {
        settleFirst(crew[0], who, BTC);
    }

    /// @notice The settlement round rule, directly: a round published before `settleFrom`, or a
    /// later round when an earlier eligible one exists, is refused with its data.
    function test_settlementRoundRule() public {
        hire(1, EQUITY);
        address a = crew[0];
        orderAs(a, BTC, int256(WAD));
        uint256 from = block.timestamp + engine.orderMinDelaySec();
        uint80 before = latestRound(BTC);
        (,,, uint256 tBefore,) = priceFeed(BTC).latestRoundData();
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, before, tBefore, from, uint256(0)));
        engine.settleOrder(a, BTC, before);
        vm.warp(from);
        publish(BTC, 50_100e8);
        uint80 first = latestRound(BTC);
        vm.warp(from + 1);
        publish(BTC, 49_000e8);
        uint80 second = latestRound(BTC);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, second, from + 1, from, from));
        engine.settleOrder(a, BTC, second);
        engine.settleOrder(a, BTC, first);
        assertEq(abs(engine.position(a, BTC).basisUsdWad), 50_100e18, "first eligible round");
    }
}
