// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {BaseTest} from "../utils/BaseTest.sol";
import {Handler} from "./Handler.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";

/// @notice Stateful invariants of the engine under random deposits, withdrawals, committed orders
/// (opens, reductions, flips, closes) settled by a keeper at the first eligible round or expired
/// and cancelled, liquidations, feed moves (price, volatility, depth, skew, funding), funding
/// accruals, time and pokes, over five actors and two cross-margined markets.
contract EngineInvariantTest is BaseTest {
    uint256 internal constant ETH = 1;
    Handler internal handler;
    address[] internal actorList;

    function beforeSeal() internal override {
        listExtraMarket(ETH, 3_000, 0.8e8, 20_000_000);
    }

    /// @dev A small fund, so that bad debt is also socialized.
    function insuranceSeed() internal pure override returns (uint256) {
        return 2_000 * USDC;
    }

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 5; ++i) {
            actorList.push(makeAddr(string.concat("actor", vm.toString(i))));
        }
        uint256[] memory ms = new uint256[](2);
        ms[0] = BTC;
        ms[1] = ETH;
        MockAggregator[5][] memory fs = new MockAggregator[5][](2);
        fs[0] = feeds;
        fs[1] = marketFeeds[ETH];
        handler = new Handler(engine, controller, usd, admin, ms, fs, actorList);
        // Every actor starts with collateral (5k to 25k).
        for (uint256 i; i < actorList.length; ++i) {
            fund(actorList[i], (5_000 + 5_000 * i) * USDC);
        }

        targetContract(address(handler));
        // Weights: commits x3, settlements x3, liquidations x3, gaps x2.
        bytes4[] memory selectors = new bytes4[](25);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.withdraw.selector;
        selectors[2] = Handler.trade.selector;
        selectors[3] = Handler.trade.selector;
        selectors[4] = Handler.trade.selector;
        selectors[5] = Handler.reduce.selector;
        selectors[6] = Handler.close.selector;
        selectors[7] = Handler.liquidate.selector;
        selectors[8] = Handler.liquidate.selector;
        selectors[9] = Handler.liquidate.selector;
        selectors[10] = Handler.movePrice.selector;
        selectors[11] = Handler.jumpPrice.selector;
        selectors[12] = Handler.jumpPrice.selector;
        selectors[13] = Handler.moveVol.selector;
        selectors[14] = Handler.moveFunding.selector;
        selectors[15] = Handler.moveDepth.selector;
        selectors[16] = Handler.moveSkew.selector;
        selectors[17] = Handler.warp.selector;
        selectors[18] = Handler.poke.selector;
        selectors[19] = Handler.deposit.selector;
        selectors[20] = Handler.settle.selector;
        selectors[21] = Handler.settle.selector;
        selectors[22] = Handler.settle.selector;
        selectors[23] = Handler.expire.selector;
        selectors[24] = Handler.accrue.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev Over the actors and the handler's keeper (credited with settlement fees and
    /// liquidation rewards in the engine).
    function _sumCollateral() internal view returns (int256 sum, uint256 positive) {
        for (uint256 i; i <= actorList.length; ++i) {
            int256 c = engine.collateralOf(i < actorList.length ? actorList[i] : handler.keeper());
            sum += c;
            if (c > 0) positive += uint256(c);
        }
    }

    /// @notice Every token the engine holds belongs to exactly one bucket, and the total equals
    /// deposits minus withdrawals.
    function invariant_tokenConservation() public view {
        (int256 sum,) = _sumCollateral();
        uint256 bal = usd.balanceOf(address(engine));
        int256 buckets = sum + engine.vaultBalance() + int256(engine.insuranceFund()) + int256(engine.protocolFees())
            + int256(engine.orderEscrow()) + int256(engine.impactPools());
        assertEq(int256(bal), buckets, "balance == collateral + vault + insurance + fees + escrow + impact pools");
        assertEq(bal, engine.netDeposits(), "balance == net deposits");
    }

    /// @notice The escrow holds exactly the fees of the pending orders; the engine's impact pools
    /// are exactly the sum of the markets' pools.
    function invariant_orderEscrowAndImpactPools() public view {
        assertEq(engine.orderEscrow(), handler.pendingFees(), "escrow == pending orders' fees");
        uint256 pools;
        for (uint256 m; m < 2; ++m) {
            (uint256 pool,) = engine.marketBook(m);
            pools += pool;
        }
        assertEq(engine.impactPools(), pools, "impactPools == sum of markets' pools");
    }

    /// @notice Orders follow their rules: settled only at the first eligible round, cancelled only
    /// after expiry with the exact refund, the keeper paid the escrowed fee.
    function invariant_orderRules() public view {
        assertEq(handler.orderViolations(), 0);
    }

    /// @notice The tokens held cover every claim on them: traders' positive collateral, the
    /// insurance fund, protocol fees, escrowed settlement fees and the impact pools (the vault
    /// absorbs the rest and stays solvent).
    function invariant_claimsCovered() public view {
        (, uint256 positive) = _sumCollateral();
        assertGe(
            usd.balanceOf(address(engine)),
            positive + engine.insuranceFund() + engine.protocolFees() + engine.orderEscrow() + engine.impactPools()
        );
        assertGe(engine.vaultBalance(), 0, "vault solvent");
    }

    /// @notice Right after every open by the handler, equity >= initial requirement and the
    /// account is not liquidatable.
    function invariant_noOpenBelowInitial() public view {
        assertEq(handler.openViolations(), 0);
    }

    /// @notice No liquidation ever succeeded on an account the view called healthy, and no
    /// liquidatable account failed to be liquidated.
    function invariant_liquidationsOnlyWhenUnhealthy() public view {
        assertEq(handler.healthyLiquidations(), 0, "healthy account liquidated");
        assertEq(handler.stuckLiquidations(), 0, "liquidatable account not liquidatable");
    }

    /// @notice Bad debt is accounted exactly: total == covered + socialized == sum of BadDebt events.
    function invariant_badDebtAccounted() public view {
        assertEq(engine.badDebtTotal(), engine.badDebtCovered() + engine.badDebtSocialized(), "split");
        assertEq(engine.badDebtTotal(), handler.ghostBadDebt(), "events total");
        assertEq(engine.badDebtCovered(), handler.ghostBadDebtCovered(), "events covered");
        assertEq(engine.badDebtSocialized(), handler.ghostBadDebtSocialized(), "events socialized");
    }

    /// @notice An account without positions never carries negative collateral (it became bad debt).
    function invariant_flatAccountsHoldNoDebt() public view {
        for (uint256 i; i < actorList.length; ++i) {
            if (engine.openMarkets(actorList[i]) == 0) assertGe(engine.collateralOf(actorList[i]), 0);
        }
    }

    /// @notice Open interest of each side equals the sum of the actors' positions on that side.
    function invariant_openInterestMatchesPositions() public view {
        for (uint256 m; m < 2; ++m) {
            uint256 l;
            uint256 s;
            for (uint256 i; i < actorList.length; ++i) {
                int256 z = engine.position(actorList[i], m).sizeWad;
                if (z > 0) l += uint256(z);
                else s += uint256(-z);
            }
            (uint256 ol, uint256 os) = engine.openInterest(m);
            assertEq(ol, l, "long OI");
            assertEq(os, s, "short OI");
        }
    }

    /// @notice Every side's quoted maintenance is its ramp's value now, and a side recorded as
    /// settled (`settledMaintenance`, read by quotes instead of the ramp) holds its ramp's end value.
    function invariant_quotedMaintenanceIsTheRamp() public view {
        for (uint256 m; m < 2; ++m) {
            assertQuotedMaintenanceIsRamp(m, true);
            assertQuotedMaintenanceIsRamp(m, false);
        }
    }
}
