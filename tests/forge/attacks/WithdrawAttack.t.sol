// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {SearchBase} from "./SearchBase.sol";
import {RiskParams} from "../../../interfaces/ILeverageController.sol";

/// @title Withdrawing against unrealized profit ahead of a price push (issue 10, finding 5)
/// @notice Threat: the withdrawal check counted unrealized profit at the oracle price: a 10x $1M
/// long withdrew $60k before a pending -5% push landed and left $15.9k of bad debt; after a pump,
/// withdrawing the deposit at the top raised bad debt from $38k to $93k.
/// Defence: with open positions a withdrawal counts unrealized losses but no unrealized profit,
/// and needs every price no older than `withdrawPriceMaxAgeSec` (`MarginEngine._healthTerm`,
/// `withdrawal` flag). Whatever remains is at least the initial requirement on the account's own
/// money, so a later move m costs the protocol at most what it would cost on a position just opened.
/// Search: leverage (2x..20x), the pump before the withdrawal (0..30%), the withdrawal amount (the
/// largest the engine accepts, found by bisection over side-effect-free probes), the pending drop
/// (0..30%) after it, the crew liquidating at the new price.
/// Claims: what a withdrawal leaves is at least imf x N of the account's own collateral (no
/// unrealized profit counted); the bad debt is at most N (m + f + k N / (2D) - imf)+, N the
/// notional at the withdrawal price, imf the initial fraction in force, f the liquidation fee (the
/// bound of a fresh position at its initial margin), and at most the loss from the entry price plus
/// exit costs minus the collateral kept; the crew's profit is at most that bad debt plus the pump's
/// gain (the latency part of it is the bad debt only).
contract WithdrawAttackTest is SearchBase {
    using FixedPointMathLib for uint256;
    error ProbeOk();

    uint256 internal constant EQUITY = 100_000 * USDC;

    function probeWithdraw(address who, uint256 amount) external {
        vm.prank(who);
        engine.withdraw(amount);
        revert ProbeOk();
    }

    function _canWithdraw(address who, uint256 amount) internal returns (bool ok) {
        try this.probeWithdraw(who, amount) {}
        catch (bytes memory err) {
            ok = err.length == 4 && bytes4(err) == ProbeOk.selector;
        }
    }

    function _maxWithdraw(address who) internal returns (uint256 lo) {
        int256 c = engine.collateralOf(who);
        if (c <= 0) return 0;
        uint256 hi = uint256(c);
        if (_canWithdraw(who, hi)) return hi;
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (_canWithdraw(who, mid)) lo = mid;
            else hi = mid;
        }
    }

    function testFuzz_withdrawAheadOfPush_boundedByFreshPositionLoss(uint256 levX10, uint256 pumpBps, uint256 dropBps)
        public
    {
        levX10 = bound(levX10, 20, 200);
        pumpBps = bound(pumpBps, 0, 3000);
        dropBps = bound(dropBps, 0, 3000);
        hire(2, EQUITY);
        address a = crew[0];
        int256 w0 = wealth();
        uint256 bad0 = engine.badDebtTotal();
        uint256 size = EQUITY * 1e12 * levX10 / 10 / 50_000;
        orderAs(a, BTC, int256(size));
        settleFirst(crew[1], a, BTC);
        uint256 pw = 50_000e8 * (10_000 + pumpBps) / 10_000;
        vm.warp(block.timestamp + 1);
        publish(BTC, pw);

        uint256 w = _maxWithdraw(a);
        if (w > 0) {
            vm.prank(a);
            engine.withdraw(w);
        }
        assertLe(w, EQUITY, "no unrealized profit withdrawn");
        uint256 notionalUsdWad = size * pw / 1e8;
        uint256 imf = controller.quote(BTC, true, size).imfWad;
        int256 kept = engine.collateralOf(a);
        // What a withdrawal leaves is the account's own money, at least the initial requirement:
        // unrealized profit does not count (counting it lets the withdrawal take all of it).
        if (w > 0) assertGe(kept * 1e12, int256(notionalUsdWad.mulWadUp(imf)) - 1e12, "kept >= imf x N (own money)");

        vm.warp(block.timestamp + 1);
        publish(BTC, pw * (10_000 - dropBps) / 10_000);
        liquidateAll(crew[1], a);
        vm.warp(block.timestamp + 1);
        closeNow(a, BTC);
        uint256 badDebt = engine.badDebtTotal() - bad0;

        assertLe(badDebt, _freshBound(notionalUsdWad, imf, dropBps), "bad debt within the fresh-position bound");
        // Measured from the entry: what is left after the withdrawal is the account's own money, at
        // least imf x N_w (no profit counted), so the bad debt is at most the loss from the entry
        // price plus exit costs minus that. Counting unrealized profit breaks this bound.
        assertLe(badDebt, _ownMoneyBound(size, pw, dropBps, notionalUsdWad, kept), "bad debt within the own-money bound");
        uint256 pumpGain = size * (pw - 50_000e8) / 1e8 / 1e12;
        assertLe(wealth() - w0, int256(badDebt + pumpGain), "no latency profit beyond that bad debt");
        assertConserved();
    }

    /// @dev N_w (m + f + k N_w / (2D) - imf)+, token units.
    function _freshBound(uint256 nw, uint256 imf, uint256 dropBps) internal view returns (uint256) {
        RiskParams memory p = controller.activeParams(BTC);
        uint256 term = dropBps * 1e14 + p.liqFeeWad + uint256(p.impactWad) * nw / (2 * 50_000_000e18);
        return (term > imf ? nw * (term - imf) / 1e18 / 1e12 : 0) + 2;
    }

    /// @dev (loss from the entry price + liquidation, trading and impact costs on the exit notional
    /// - the collateral kept)+, token units, plus one settlement fee.
    function _ownMoneyBound(uint256 size, uint256 pw, uint256 dropBps, uint256 nw, int256 kept)
        internal
        view
        returns (uint256)
    {
        RiskParams memory p = controller.activeParams(BTC);
        uint256 nExit = size * (pw * (10_000 - dropBps) / 10_000) / 1e8;
        int256 lossFromEntry = int256(size * 50_000) - int256(nExit);
        uint256 costFrac = p.liqFeeWad + engine.tradingFeeWad() + uint256(p.impactWad) * nw / (2 * 50_000_000e18);
        int256 b2 = lossFromEntry + int256(nExit * costFrac / 1e18) - kept * 1e12;
        return (b2 > 0 ? uint256(b2) / 1e12 : 0) + engine.settlementFeeTokens() + 2;
    }

    function test_withdrawalNeedsAFreshPrice() public {
        hire(1, EQUITY);
        orderAs(crew[0], BTC, int256(WAD));
        settleFirst(crew[0], crew[0], BTC);
        uint256 age = engine.withdrawPriceMaxAgeSec();
        vm.warp(block.timestamp + age + 1);
        // Every other feed fresh, the price just older than allowed (and within its heartbeat).
        for (uint256 k = 1; k < 5; ++k) {
            (, int256 ans,,,) = feeds[k].latestRoundData();
            setFeed(k, ans);
        }
        if (age + 1 <= 3600) {
            assertFalse(_canWithdraw(crew[0], USDC), "stale price: refused");
            publish(BTC, price8(BTC));
            assertTrue(_canWithdraw(crew[0], USDC), "fresh price: allowed");
        }
    }
}
