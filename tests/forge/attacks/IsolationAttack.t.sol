// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SearchBase} from "./SearchBase.sol";
import {Position} from "../../../interfaces/IMarginEngine.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";

/// @title A bad price in one market shielding the whole account (issue 10, finding 4; was L3)
/// @notice Threat: a $10 position in a market whose price feed is stale, reverting or out of
/// bounds blocked every liquidation of the account: beside a max-leverage $100k BTC long, a
/// 5/10/20% BTC drop during the outage left $24k/135k/355k of bad debt (0 without the dust), while
/// a rise still closed at a profit: a free option the owner could arrange (tight bounds on a
/// pegged market).
/// Defence: health never needs every price. A market whose price is bad is valued at the last
/// valid price the engine saw moved against the position by its maximum maintenance fraction,
/// with maintenance at that maximum (`MarginEngine._healthTerm`); it cannot be liquidated itself,
/// but the account's other markets can (`flagLiquidation`, `liquidate` on the preferred market).
/// Search: the dust's size ($10..$10k) and side, the fault (reverting feed, non-positive answer,
/// stale answer, answer above the feed's bound), the BTC drop (2%..25%) and the number of steps
/// it takes (1..4), the crew liquidating at every step.
/// Claim: the BTC position is liquidated as if the dust market were healthy: the bad debt with the
/// faulty dust market is at most the bad debt of the same path without the dust plus the dust's
/// conservative value, dust notional x (1 + maxMmf).
contract IsolationAttackTest is SearchBase {
    uint256 internal constant DUST = 1;

    function beforeSeal() internal override {
        listExtraMarket(DUST, 1, 0.5e8, 50_000_000);
    }

    function testFuzz_badDustMarketDoesNotShield(uint256 dustUsd, bool dustLong, uint256 fault, uint256 dropBps, uint256 steps)
        public
    {
        dustUsd = bound(dustUsd, 10, 10_000);
        fault = bound(fault, 0, 3);
        dropBps = bound(dropBps, 200, 2500);
        steps = bound(steps, 1, 4);
        hire(2, 100_000 * USDC);
        address a = crew[0];
        // Max-leverage BTC long, opened at 20x.
        orderAs(a, BTC, int256(2_000_000 * WAD / 50_000));
        settleFirst(crew[1], a, BTC);

        uint256 snap = vm.snapshotState();
        uint256 badWithout = _dropAndLiquidate(dropBps, steps);
        vm.revertToState(snap);

        int256 dust = int256(dustUsd * WAD);
        orderAs(a, DUST, dustLong ? dust : -dust);
        settleFirst(crew[1], a, DUST);
        _breakDustPrice(fault);
        uint256 badWith = _dropAndLiquidate(dropBps, steps);
        uint256 dustBound = dustUsd * USDC * (1e18 + controller.activeParams(DUST).maxMmfWad) / 1e18;
        assertLe(badWith, badWithout + dustBound + 2, "the faulty dust market shields nothing");
        Position memory btc = engine.position(a, BTC);
        assertTrue(btc.sizeWad == 0 || !engine.isLiquidatable(a), "nothing left liquidatable in BTC");
    }

    function _breakDustPrice(uint256 fault) internal {
        MockAggregator f = marketFeeds[DUST][0];
        vm.startPrank(admin);
        if (fault == 0) f.setReverting(true);
        else if (fault == 1) f.transmit(0);
        else if (fault == 2) f.transmitAt(1e8, block.timestamp - 3601);
        else f.transmit(int256(1e7 * 1e8 + 1)); // above the feed's bound
        vm.stopPrank();
    }

    /// @dev BTC drops by `dropBps` in `steps` published steps; the crew liquidates its account at
    /// each step (two-step, at the next published price). Returns the protocol's loss: bad debt
    /// realized plus the account's negative collateral not yet realized (an account left holding
    /// only the faulty dust market cannot be closed, so its shortfall is not realized yet).
    function _dropAndLiquidate(uint256 dropBps, uint256 steps) internal returns (uint256) {
        uint256 bad0 = engine.badDebtTotal();
        uint256 p0 = price8(BTC);
        for (uint256 i = 1; i <= steps; ++i) {
            vm.warp(block.timestamp + 1);
            publish(BTC, p0 * (10_000 - dropBps * i / steps) / 10_000);
            liquidateAll(crew[1], crew[0]);
        }
        int256 c = engine.collateralOf(crew[0]);
        return engine.badDebtTotal() - bad0 + (c < 0 ? uint256(-c) : 0);
    }
}
