// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SearchBase} from "./SearchBase.sol";

/// @title Splitting impact away (issue 10, finding 2)
/// @notice Threat: impact priced on each trade alone falls with the number of pieces: the same
/// $11.6M round trip paid $53.7k of impact in one trade, $10.7k in 5, $536 in 100.
/// Defence: impact is the integral over the market's skew (`ImpactMath.skewImpact`): a trade moving
/// |skew| from Sb to Sa pays k (Sa^2 - Sb^2) / (2 D), charged into the market's impact pool, or is
/// rebated out of the pool (never beyond what it holds). Any path between the same two skews pays
/// the same, up to rounding that always favours the pool.
/// Search: total size ($10k..$12M), pieces to open (1..8) and to close (1..8), accounts (1..3),
/// open/close cycles (1..3), an honest skew already in the market (-$5M..$5M), and for the depth
/// variant a depth drop between opening and closing ($1k..$50M).
/// Claims: (1) a round trip's net impact is the same for every split (0 up to 2 token units per
/// order, in the pool's favour) and the attacker's profit is <= 0 at a constant price; (2) when the
/// depth changes under a held skew, the attacker gains at most what the pool held before it came
/// (other traders' impact), and the vault pays no impact at all.
contract ImpactSplitTest is SearchBase {
    uint256 internal constant P0 = 50_000;

    function _honest(int256 honestUsd) internal {
        if (honestUsd == 0) return;
        fund(bob, 10_000_000 * USDC);
        int256 size = honestUsd * int256(WAD) / int256(P0);
        vm.prank(bob);
        engine.commitOrder(BTC, size, 0);
        settleFirst(bob, bob, BTC);
    }

    /// @dev Opens `size` (signed) for `who` in `n` pieces, then closes it in `m` pieces.
    function _roundTrip(address who, int256 size, uint256 n, uint256 m) internal returns (uint256 orders) {
        for (uint256 i; i < n; ++i) {
            int256 piece = i + 1 == n ? size - size / int256(n) * int256(n - 1) : size / int256(n);
            if (piece == 0) continue;
            orderAs(who, BTC, piece);
            settleFirst(crew[0], who, BTC);
            ++orders;
        }
        int256 held = engine.position(who, BTC).sizeWad;
        for (uint256 j; j + 1 < m; ++j) {
            int256 piece = -held / int256(m);
            if (piece == 0) continue;
            orderAs(who, BTC, piece);
            settleFirst(crew[0], who, BTC);
            ++orders;
        }
        closeNow(who, BTC);
        ++orders;
    }

    function testFuzz_roundTripImpactIndependentOfSplits(
        uint256 totalUsd,
        bool isLong,
        uint256 n,
        uint256 m,
        uint256 nAcc,
        uint256 cycles,
        int256 honestUsd
    ) public {
        totalUsd = bound(totalUsd, 10_000, 12_000_000);
        n = bound(n, 1, 8);
        m = bound(m, 1, 8);
        nAcc = bound(nAcc, 1, 3);
        cycles = bound(cycles, 1, 3);
        honestUsd = bound(honestUsd, -5_000_000, 5_000_000);
        _honest(honestUsd);
        hire(nAcc, 2_000_000 * USDC);
        int256 w0 = wealth();
        (uint256 pool0,) = engine.marketBook(BTC);
        int256 vault0 = engine.vaultBalance();
        int256 size = int256(totalUsd * WAD / P0 / nAcc);
        if (!isLong) size = -size;
        uint256 orders;
        for (uint256 c; c < cycles; ++c) {
            for (uint256 i; i < nAcc; ++i) {
                orders += _roundTrip(crew[i], size, n, m);
            }
        }
        (uint256 pool1,) = engine.marketBook(BTC);
        assertGe(pool1, pool0, "net impact never favours the attacker");
        assertLe(pool1 - pool0, 2 * orders, "net impact of a round trip: 0 up to rounding, whatever the split");
        assertLe(wealth() - w0, 0, "no profit at a constant price");
        assertGe(engine.vaultBalance(), vault0, "the vault pays no impact");
        assertConserved();
    }

    /// @notice The measured case of the finding: an $11.6M round trip in 1, 5 and 100 pieces.
    /// The opening leg pays the same impact in each (to 100 token units), and the round trip nets 0.
    function test_elevenMillionRoundTrip_samePriceEverySplit() public {
        hire(1, 3_000_000 * USDC);
        int256 size = int256(11_600_000 * WAD / P0);
        uint256[3] memory splits = [uint256(1), 5, 100];
        uint256[3] memory openLeg;
        for (uint256 k; k < 3; ++k) {
            uint256 s = vm.snapshotState();
            (uint256 pool0,) = engine.marketBook(BTC);
            for (uint256 i; i < splits[k]; ++i) {
                int256 piece = i + 1 == splits[k] ? size - size / int256(splits[k]) * int256(splits[k] - 1) : size / int256(splits[k]);
                orderAs(crew[0], BTC, piece);
                settleFirst(crew[0], crew[0], BTC);
            }
            (uint256 poolOpen,) = engine.marketBook(BTC);
            openLeg[k] = poolOpen - pool0;
            closeNow(crew[0], BTC);
            (uint256 poolEnd,) = engine.marketBook(BTC);
            assertLe(poolEnd - pool0, 2 * splits[k] + 2, "round trip nets 0 impact");
            vm.revertToState(s);
        }
        // k S^2 / (2D) = 0.01 * 11.6M^2 / (2 * 50M) = $13,456.
        assertApproxEqAbs(openLeg[0], 13_456 * USDC, USDC, "one trade");
        assertApproxEqAbs(openLeg[1], openLeg[0], 100, "5 pieces pay what 1 pays");
        assertApproxEqAbs(openLeg[2], openLeg[0], 200, "100 pieces pay what 1 pays");
    }

    function testFuzz_depthDropUnderHeldSkew_gainBoundedByPool(uint256 totalUsd, int256 honestUsd, uint256 depth2Usd)
        public
    {
        totalUsd = bound(totalUsd, 10_000, 12_000_000);
        honestUsd = bound(honestUsd, -5_000_000, 5_000_000);
        depth2Usd = bound(depth2Usd, 1_000, 50_000_000);
        _honest(honestUsd);
        hire(1, 3_000_000 * USDC);
        int256 w0 = wealth();
        (uint256 pool0,) = engine.marketBook(BTC);
        int256 vault0 = engine.vaultBalance();
        int256 size = int256(totalUsd * WAD / P0);
        if (honestUsd < 0) size = -size; // with the honest skew: the largest stock to be rebated
        orderAs(crew[0], BTC, size);
        settleFirst(crew[0], crew[0], BTC);
        setFeed(3, int256(depth2Usd * 1e8));
        vm.warp(block.timestamp + 1);
        closeNow(crew[0], BTC);
        assertLe(wealth() - w0, int256(pool0), "gain at most what the pool held before");
        assertGe(engine.vaultBalance(), vault0, "the vault pays no impact");
        assertConserved();
    }
}
