// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SearchBase} from "./SearchBase.sol";
import {RiskParams} from "../../../interfaces/ILeverageController.sol";

/// @title Gross open interest in a thin market (issue 10, finding 3)
/// @notice Threat: crowding sees only the net imbalance, so accounts holding both sides grew open
/// interest 58x (to $2.3M) in a $120k-depth market; moving the thin price 10-30% then left
/// $78k-313k of bad debt (the losing side goes bankrupt, the winning side is paid by the vault).
/// Defence: each side's gross open interest, valued at the live price, is capped at
/// min(hard cap, oiDepthMult x depth) (`MarginEngine._checkOpenInterestCap`), checked on every
/// increase. Choosing cap <= 2 minImf D / k (D depth, k impact coefficient) makes the attack
/// unprofitable under the depth feed's own meaning (a spot trade of N moves the price by k N / D):
/// moving the price by x costs the manipulator about D x^2 / (2k), while the bad debt it can make
/// is at most cap (|x| + f (1 + |x|) + k cap / (2D) - minImf), f the liquidation fee; the
/// difference is largest at x = 2 minImf and is <= 0 there.
/// Search: accounts (2..6), each one's side and size (up to 10x its equity, both sides allowed),
/// and the price move (-30%..+30%), the crew liquidating its own losers at the new price.
/// Claims: each side's open interest stays within the cap; the bad debt is within the formula
/// above; a hedged crew (the finding's shape: both sides, zero net) makes no profit after the
/// manipulation cost; any crew (net exposure allowed: plain oracle manipulation) makes at most
/// max_x (cap x - D x^2 / (2k)) = k cap^2 / (2D) after it ($2.4k here: cap x minImf).
contract OpenInterestAttackTest is SearchBase {
    uint256 internal constant THIN = 1;
    uint256 internal constant PRICE = 100;
    uint256 internal constant DEPTH_USD = 120_000;
    /// @dev 2 * minImf * D / k with minImf 1%, k 1%: $240k per side.
    uint256 internal constant CAP_USD = 240_000;

    function beforeSeal() internal override {
        listExtraMarket(THIN, PRICE, 0.5e8, DEPTH_USD);
    }

    function setUp() public override {
        super.setUp();
        vm.prank(admin);
        engine.setOpenInterestCap(THIN, CAP_USD * WAD);
    }

    function testFuzz_grossOpenInterest_badDebtAndProfitBounded(uint256 nAcc, uint256 seed, int256 moveBps) public {
        _attack(nAcc, seed, moveBps, false);
    }

    function testFuzz_hedgedCrew_noProfitAfterManipulationCost(uint256 nAcc, uint256 seed, int256 moveBps) public {
        _attack(nAcc, seed, moveBps, true);
    }

    function _attack(uint256 nAcc, uint256 seed, int256 moveBps, bool hedged) internal {
        nAcc = bound(nAcc, 2, 6);
        if (hedged) nAcc = nAcc / 2 * 2;
        moveBps = bound(moveBps, -3000, 3000);
        hire(nAcc, 50_000 * USDC);
        int256 w0 = wealth();
        uint256 bad0 = engine.badDebtTotal();
        for (uint256 i; i < nAcc; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            bool isLong = hedged ? i % 2 == 0 : r & 1 == 0;
            // up to 10x the account's equity; a hedged crew pairs equal sizes
            uint256 usdSize = 1_000 + uint256(keccak256(abi.encode(seed, hedged ? i / 2 : i))) % 500_000;
            int256 size = int256(usdSize * WAD / PRICE);
            orderAs(crew[i], THIN, isLong ? size : -size);
            _settleOrExpire(crew[i]);
        }
        (uint256 l, uint256 s) = engine.openInterest(THIN);
        assertLe(l * PRICE, CAP_USD * WAD, "long OI within cap");
        assertLe(s * PRICE, CAP_USD * WAD, "short OI within cap");

        uint256 p1 = PRICE * 1e8 * uint256(10_000 + moveBps) / 10_000;
        vm.warp(block.timestamp + 1);
        publish(THIN, p1);
        for (uint256 i; i < nAcc; ++i) {
            liquidateAll(crew[0], crew[i]);
        }
        vm.warp(block.timestamp + 1);
        for (uint256 i; i < nAcc; ++i) {
            closeNow(crew[i], THIN);
        }
        uint256 badDebt = engine.badDebtTotal() - bad0;
        uint256 x = abs(moveBps) * 1e14; // |move|, WAD
        RiskParams memory p = controller.activeParams(THIN);
        uint256 capTok = CAP_USD * USDC;
        uint256 term = x + uint256(p.liqFeeWad) * (1e18 + x) / 1e18 + uint256(p.impactWad) * CAP_USD / (2 * DEPTH_USD);
        uint256 bound_ = term > p.minImfWad ? capTok * (term - p.minImfWad) / 1e18 : 0;
        assertLe(badDebt, bound_ + 10, "bad debt within cap (|x| + f(1+|x|) + k cap/2D - minImf)");
        // Moving the thin price by x costs about D x^2 / (2k) (the depth feed's own meaning).
        uint256 manipulation = DEPTH_USD * USDC * x / 1e18 * x / (2 * uint256(p.impactWad));
        int256 net = wealth() - w0 - int256(manipulation);
        if (hedged) assertLe(net, 0, "hedged crew: no profit after the cost of moving the price");
        else assertLe(net, int256(uint256(p.impactWad) * CAP_USD * CAP_USD / (2 * DEPTH_USD) * USDC / 1e18), "at most k cap^2 / 2D");
        assertConserved();
    }

    /// @dev Settles an order at its first round, or, when settlement reverts (cap, margin), lets it
    /// expire and takes the refund.
    function _settleOrExpire(address who) internal {
        uint256 from = uint256(engine.order(who, THIN).commitSec) + engine.orderMinDelaySec();
        if (block.timestamp < from) vm.warp(from);
        publish(THIN, price8(THIN));
        vm.prank(crew[0]);
        try engine.settleOrder(who, THIN, latestRound(THIN)) {} catch {
            vm.warp(from + engine.orderWindowSec() + 1);
            refreshFeeds();
            engine.cancelExpiredOrder(who, THIN);
        }
    }

    /// @notice The finding's own shape: both sides in several accounts; at $240k a side nothing
    /// more can be added, whatever the account.
    function test_bothSidesStopAtTheCap() public {
        hire(4, 100_000 * USDC);
        int256 side = int256(120_000 * WAD / PRICE);
        orderAs(crew[0], THIN, side);
        _settleOrExpire(crew[0]);
        orderAs(crew[1], THIN, -side);
        _settleOrExpire(crew[1]);
        orderAs(crew[2], THIN, side);
        _settleOrExpire(crew[2]);
        orderAs(crew[3], THIN, -side);
        _settleOrExpire(crew[3]);
        (uint256 l, uint256 s) = engine.openInterest(THIN);
        assertEq(l * PRICE, CAP_USD * WAD, "long side full");
        assertEq(s * PRICE, CAP_USD * WAD, "short side full");
        orderAs(crew[0], THIN, int256(WAD));
        _settleOrExpire(crew[0]);
        (l,) = engine.openInterest(THIN);
        assertEq(l * PRICE, CAP_USD * WAD, "one more unit is refused");
    }
}
