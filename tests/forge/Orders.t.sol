// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MarginEngine} from "../../contracts/MarginEngine.sol";
import {RiskPusher} from "../../contracts/RiskPusher.sol";
import {Ramp} from "../../contracts/libraries/RampLib.sol";
import {Order, Position} from "../../interfaces/IMarginEngine.sol";
import {FeedKind} from "../../interfaces/ILeverageController.sol";

/// @notice Engine v2 order rules: commit escrows the settlement fee; settlement only at the first
/// round published at or after commit + minDelay and no later than the expiry; expiry and
/// refund; the fill limit on the effective price (fee and impact included, both sides); one
/// pending order per market; close-all orders; open-interest caps; funding from the feed's
/// publication time; the RiskPusher keeper transaction.
contract OrdersTest is OrderHelpers {
    using FixedPointMathLib for uint256;

    uint256 internal constant DELAY = 2;
    uint256 internal constant WINDOW = 3600;

    function setUp() public override {
        super.setUp();
        fund(alice, 100_000 * USDC);
        fund(bob, 100_000 * USDC);
    }

    function commit(address who, int256 delta) internal returns (uint256 from, uint256 expiry) {
        vm.prank(who);
        engine.commitOrder(BTC, delta, 0);
        from = block.timestamp + DELAY;
        expiry = from + WINDOW;
    }

    function roundAt(uint80 r) internal view returns (uint256 t) {
        (,,, t,) = feeds[0].getRoundData(r);
    }

    // ================================================================ commit

    function test_commit_escrowsFeeStoresOrderAndEmits() public {
        int256 c0 = engine.collateralOf(alice);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.OrderCommitted(
            alice, BTC, 1e18, false, 51_000e18, block.timestamp + DELAY, block.timestamp + DELAY + WINDOW, SETTLE_FEE
        );
        vm.prank(alice);
        engine.commitOrder(BTC, 1e18, 51_000e18);
        Order memory o = engine.order(alice, BTC);
        assertEq(o.sizeDeltaWad, 1e18);
        assertEq(o.acceptablePriceWad, 51_000e18);
        assertEq(o.commitSec, block.timestamp);
        assertEq(o.feeTokens, SETTLE_FEE);
        assertFalse(o.closeAll);
        assertEq(engine.collateralOf(alice), c0 - int256(SETTLE_FEE));
        assertEq(engine.orderEscrow(), SETTLE_FEE);
        assertEq(engine.position(alice, BTC).sizeWad, 0, "nothing trades at commit");
        assertConserved();
    }

    /// @dev The order slot is written as one packed word (`_storeOrder`): every field reads back as
    /// committed, negative sizes and extreme prices included, and the escrow counts the orders.
    function testFuzz_commit_packedOrderReadsBack(int96 delta, uint96 price, bool close, uint32 dt) public {
        vm.assume(delta != 0);
        vm.warp(block.timestamp + dt);
        if (close) {
            trade(alice, BTC, 1e18, 0);
            vm.prank(alice);
            engine.commitClose(BTC, price);
        } else {
            vm.prank(alice);
            engine.commitOrder(BTC, delta, price);
        }
        Order memory o = engine.order(alice, BTC);
        assertEq(o.sizeDeltaWad, close ? int256(0) : int256(delta));
        assertEq(o.acceptablePriceWad, price);
        assertEq(o.commitSec, block.timestamp);
        assertEq(o.closeAll, close);
        assertEq(o.feeTokens, SETTLE_FEE);
        vm.prank(bob);
        engine.commitOrder(BTC, 1e18, 0);
        assertEq(engine.orderEscrow(), 2 * SETTLE_FEE, "two pending orders");
        vm.warp(block.timestamp + DELAY + WINDOW + 1);
        engine.cancelExpiredOrder(alice, BTC);
        o = engine.order(alice, BTC);
        assertEq(o.commitSec, 0);
        assertEq(o.sizeDeltaWad, 0);
        assertEq(o.acceptablePriceWad, 0);
        assertFalse(o.closeAll);
        assertEq(engine.orderEscrow(), SETTLE_FEE, "one pending order");
        assertConserved();
    }

    /// @dev A first commit in a market asks the controller whether it is listed (an unlisted
    /// market is refused) ...
    function test_commit_firstInMarketChecksListing() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 7));
        engine.commitOrder(7, 1e18, 0);
        vm.expectCall(address(controller), abi.encodeCall(controller.isListed, (BTC)), 1);
        commit(alice, 1e18);
    }

    /// @dev ... a returning trader's (its order slot kept) does not: the market was listed at its
    /// first commit and markets are never delisted.
    function test_commit_returningTraderSkipsListingCall() public {
        fund(alice, 10_000 * USDC);
        commit(alice, 1e18);
        settle(alice, BTC);
        vm.expectCall(address(controller), abi.encodeCall(controller.isListed, (BTC)), 0);
        commit(alice, 1e18);
        assertGt(engine.order(alice, BTC).commitSec, 0);
    }

    /// @dev Kept slots (issue 14): after a settlement and a close the views show no order and an
    /// empty position, as before; the account's next order and next position rewrite the kept
    /// slots instead of creating them (each a 20,000-gas slot creation saved: the second commit
    /// costs at least 15,000 gas less than the first, the second open at least 30,000 less).
    function test_keptSlots_invisibleInViewsAndReused() public {
        fund(bob, 100_000 * USDC);
        trade(bob, BTC, 1e18, 0); // the market's own slots exist: only alice's differ below
        _cool();
        uint256 g = gasleft();
        vm.prank(alice);
        engine.commitOrder(BTC, 1e18, 0);
        uint256 commit1 = g - gasleft();
        waitAndPublish(BTC);
        uint80 r = latestRound(BTC);
        _cool();
        g = gasleft();
        engine.settleOrder(alice, BTC, r);
        uint256 open1 = g - gasleft();
        Order memory o = engine.order(alice, BTC);
        assertEq(abi.encode(o), abi.encode(Order(0, 0, 0, 0, false)), "no order in the view");
        close(alice, BTC);
        Position memory p = engine.position(alice, BTC);
        assertEq(p.sizeWad, 0);
        assertEq(p.basisUsdWad, 0);
        assertEq(p.slipSnapWad, 0);
        assertEq(engine.openMarkets(alice), 0);
        _cool();
        g = gasleft();
        vm.prank(alice);
        engine.commitOrder(BTC, 1e18, 0);
        uint256 commit2 = g - gasleft();
        waitAndPublish(BTC);
        r = latestRound(BTC);
        _cool();
        g = gasleft();
        engine.settleOrder(alice, BTC, r);
        uint256 open2 = g - gasleft();
        assertLt(commit2 + 15_000, commit1, "the order slot is rewritten, not created");
        assertLt(open2 + 30_000, open1, "both position slots are rewritten, not created");
        assertEq(engine.position(alice, BTC).sizeWad, 1e18);
        assertConserved();
    }

    /// @dev Every account and slot the order flow touches made cold again (as in a new transaction).
    function _cool() internal {
        vm.cool(address(engine));
        vm.cool(address(controller));
        vm.cool(address(usd));
        vm.cool(address(feeds[0]));
        vm.cool(address(this));
    }

    function test_commit_onePendingOrderPerMarket() public {
        commit(alice, 1e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.OrderPending.selector, alice, BTC));
        engine.commitOrder(BTC, -1e18, 0);
        settle(alice, BTC);
        // settled: a new order is possible, including a close
        vm.prank(alice);
        engine.commitClose(BTC, 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.OrderPending.selector, alice, BTC));
        engine.commitOrder(BTC, 1e18, 0);
    }

    function test_commit_revertsWithoutTheFee() public {
        address carol = track("carol");
        fund(carol, SETTLE_FEE - 1);
        vm.prank(carol);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.InsufficientCollateral.selector, int256(SETTLE_FEE - 1), SETTLE_FEE)
        );
        engine.commitOrder(BTC, 1e18, 0);
    }

    function test_commit_acceptablePriceOverflow() public {
        uint256 big = uint256(type(uint128).max) + 1;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SizeOverflow.selector, int256(big)));
        engine.commitOrder(BTC, 1e18, big);
    }

    function test_settle_revertsWithoutOrder() public {
        uint80 r = latestRound(BTC);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoOrder.selector, alice, BTC));
        engine.settleOrder(alice, BTC, r);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoOrder.selector, alice, BTC));
        engine.cancelExpiredOrder(alice, BTC);
    }

    // ================================================================ the settlement round

    /// @dev Minimum delay: a round published after the commit but before settleFrom is not
    /// eligible (nor is the round the trader saw when committing).
    function test_settle_roundBeforeSettleFromReverts() public {
        uint80 seen = latestRound(BTC);
        (uint256 from,) = commit(alice, 1e18);
        vm.warp(from - 1);
        setPrice(50_100);
        uint80 early = latestRound(BTC);
        vm.warp(from);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, early, from - 1, from, roundAt(early - 1))
        );
        engine.settleOrder(alice, BTC, early);
        vm.expectRevert(
            abi.encodeWithSelector(
                ErrorsLib.SettlementRoundInvalid.selector, seen, roundAt(seen), from, seen > 1 ? roundAt(seen - 1) : 0
            )
        );
        engine.settleOrder(alice, BTC, seen);
        // the first round at settleFrom is eligible
        setPrice(50_200);
        engine.settleOrder(alice, BTC, early + 1);
        assertEq(engine.position(alice, BTC).basisUsdWad, 50_200e18);
    }

    /// @dev First-round rule: a later round is refused while an earlier one is eligible (the
    /// settler cannot pick the price); the earlier one fills at its own answer.
    function test_settle_laterRoundWhenEarlierEligibleReverts() public {
        (uint256 from,) = commit(alice, 1e18);
        vm.warp(from);
        setPrice(49_000);
        uint80 first = latestRound(BTC);
        vm.warp(from + 5);
        setPrice(52_000);
        uint80 later = latestRound(BTC);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, later, from + 5, from, from));
        engine.settleOrder(alice, BTC, later);
        engine.settleOrder(alice, BTC, first);
        assertEq(engine.position(alice, BTC).basisUsdWad, 49_000e18, "filled at the first round's answer");
    }

    /// @dev A round dated after the expiry is refused; once the window is over the order cannot
    /// be settled at all.
    function test_settle_roundAfterExpiryReverts() public {
        (, uint256 expiry) = commit(alice, 1e18);
        vm.warp(expiry);
        refreshFeeds(); // keep the other feeds fresh: publishes a price round at the expiry ...
        uint80 atExpiry = latestRound(BTC);
        vm.prank(admin);
        feeds[0].transmitAt(50_000e8, expiry + 1); // ... and one dated after it
        uint80 after_ = latestRound(BTC);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, after_, expiry + 1, expiry - WINDOW, expiry)
        );
        engine.settleOrder(alice, BTC, after_);
        vm.warp(expiry + 1);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.OrderExpired.selector, alice, BTC, expiry));
        engine.settleOrder(alice, BTC, atExpiry);
    }

    /// @dev Whatever the price the trader saw at commit and however it moves before settleFrom,
    /// the fill is the answer of the first round at or after settleFrom.
    function testFuzz_settle_fillIsFirstRoundAfterDelay(uint256 pSeen, uint256 pEarly, uint256 pFill, uint256 dt) public {
        pSeen = bound(pSeen, 40_000, 60_000);
        pEarly = bound(pEarly, 40_000, 60_000);
        pFill = bound(pFill, 40_000, 60_000);
        dt = bound(dt, 0, WINDOW);
        setPrice(pSeen);
        (uint256 from,) = commit(alice, 0.5e18);
        vm.warp(from - 1);
        setPrice(pEarly);
        vm.warp(from + dt);
        refreshFeeds();
        setPrice(pFill);
        // refreshFeeds re-published pEarly at settleFrom + dt: that is the first eligible round;
        // pFill's round, published at the same second after it, is not.
        uint80 r = latestRound(BTC) - 1;
        vm.expectPartialRevert(ErrorsLib.SettlementRoundInvalid.selector);
        engine.settleOrder(alice, BTC, r + 1);
        uint256 expected = pEarly * 1e18;
        vm.expectEmit(true, true, true, true, address(engine));
        emit EventsLib.OrderSettled(alice, BTC, bob, r, expected, SETTLE_FEE);
        vm.prank(bob);
        engine.settleOrder(alice, BTC, r);
        assertEq(engine.position(alice, BTC).basisUsdWad, int256(expected / 2));
        assertConserved();
    }

    /// @dev The keeper (anyone) is credited the escrowed fee in its engine account, no transfer.
    function test_settle_paysTheCaller() public {
        commit(alice, 1e18);
        waitAndPublish(BTC);
        uint80 r = latestRound(BTC);
        int256 b0 = engine.collateralOf(bob);
        uint256 t0 = usd.balanceOf(bob);
        uint256 n0 = engine.netDeposits();
        vm.prank(bob);
        engine.settleOrder(alice, BTC, r);
        assertEq(engine.collateralOf(bob), b0 + int256(SETTLE_FEE), "fee credited to the keeper's account");
        assertEq(usd.balanceOf(bob), t0, "no token transfer");
        assertEq(engine.netDeposits(), n0, "the fee stays in the engine");
        assertEq(engine.orderEscrow(), 0);
        assertConserved();
    }

    // ================================================================ expiry and cancel

    function test_cancel_onlyAfterExpiryAndRefunds() public {
        (, uint256 expiry) = commit(alice, 1e18);
        int256 c1 = engine.collateralOf(alice);
        vm.warp(expiry);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.OrderNotExpired.selector, alice, BTC, expiry));
        engine.cancelExpiredOrder(alice, BTC);
        vm.warp(expiry + 1);
        vm.expectEmit(true, true, false, true, address(engine));
        emit EventsLib.OrderCancelled(alice, BTC, SETTLE_FEE);
        vm.prank(bob); // anyone
        engine.cancelExpiredOrder(alice, BTC);
        assertEq(engine.collateralOf(alice), c1 + int256(SETTLE_FEE));
        assertEq(engine.orderEscrow(), 0);
        assertEq(engine.order(alice, BTC).commitSec, 0);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        // a second cancel finds nothing; a new order can be committed
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoOrder.selector, alice, BTC));
        engine.cancelExpiredOrder(alice, BTC);
        refreshFeeds();
        open(alice, 1e18);
        assertConserved();
    }

    function testFuzz_cancel_beforeExpiryAlwaysReverts(uint256 dt) public {
        (, uint256 expiry) = commit(alice, 1e18);
        dt = bound(dt, 0, DELAY + WINDOW);
        vm.warp(block.timestamp + dt);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.OrderNotExpired.selector, alice, BTC, expiry));
        engine.cancelExpiredOrder(alice, BTC);
    }

    // ================================================================ fill limit

    /// @dev The limit bounds the effective price fill +/- (fee + impact) per unit, rounded against
    /// the trader: exactly at it the order settles, one wei worse it reverts with the effective
    /// price. Both sides, with a book skewed by bob so that impact is a charge or a rebate.
    function testFuzz_fillLimit_includesFeeAndImpactBothSides(uint256 size, int256 bobSize, bool isLong, uint256 px)
        public
    {
        bobSize = bound(bobSize, -20e18, 20e18);
        if (bobSize != 0) open(bob, bobSize);
        size = bound(size, 0.001e18, 20e18);
        px = bound(px, 45_000, 55_000);
        int256 delta = isLong ? int256(size) : -int256(size);
        setPrice(px);
        uint256 fill = px * 1e18;
        int256 sb = skewOf(BTC);
        int256 imp = impactTokens(BTC, sb, sb + delta, fill);
        uint256 fee = tradeFee(size, fill);
        int256 cost = (int256(fee) + imp) * 1e12;
        int256 per = cost >= 0 ? int256(uint256(cost).divWadUp(size)) : -int256(uint256(-cost).divWad(size));
        uint256 eff = uint256(isLong ? int256(fill) + per : int256(fill) - per);
        uint256 worse = isLong ? eff - 1 : eff + 1;
        expectTradeRevert(
            alice, BTC, delta, worse, abi.encodeWithSelector(ErrorsLib.PriceLimitExceeded.selector, eff, worse)
        );
        trade(alice, BTC, delta, eff);
        assertEq(engine.position(alice, BTC).sizeWad, delta);
        assertConserved();
    }

    // ================================================================ close-all orders

    /// @dev A close committed before a partial liquidation closes what is left at settlement: it
    /// never flips the position (a fixed-size order of the original size would).
    function test_commitClose_afterPartialLiquidationDoesNotFlip() public {
        address carol = track("carol");
        fund(carol, 10_000 * USDC);
        open(carol, 2e18);
        vm.prank(carol);
        engine.commitClose(BTC, 0);
        assertTrue(engine.order(carol, BTC).closeAll);
        setPrice(45_500);
        flagAndLiquidate(liquidator, carol, BTC);
        int256 left = engine.position(carol, BTC).sizeWad;
        assertGt(left, 0);
        assertLt(left, 2e18);
        // the liquidation's round (published after the flag's delay) is also the order's first
        // eligible round
        uint80 r = latestRound(BTC);
        vm.expectEmit(true, true, false, false, address(engine));
        emit EventsLib.PositionModified(carol, BTC, -left, 0, 0, 0, 0, 0);
        engine.settleOrder(carol, BTC, r);
        assertEq(engine.position(carol, BTC).sizeWad, 0);
        assertEq(engine.openMarkets(carol), 0);
        assertConserved();
    }

    /// @dev A close order whose position is gone by settlement (fully liquidated) cannot settle;
    /// it expires and refunds.
    function test_commitClose_positionGoneRevertsNoPosition() public {
        address carol = track("carol");
        fund(carol, 10_000 * USDC);
        open(carol, 2e18);
        uint256 expiry = block.timestamp + DELAY + WINDOW;
        vm.prank(carol);
        engine.commitClose(BTC, 0);
        setPrice(44_000);
        flagAndLiquidate(liquidator, carol, BTC);
        assertEq(engine.position(carol, BTC).sizeWad, 0);
        uint80 r = latestRound(BTC); // the liquidation's round: the order's first eligible one
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NoPosition.selector, carol, BTC));
        engine.settleOrder(carol, BTC, r);
        vm.warp(expiry + 1);
        engine.cancelExpiredOrder(carol, BTC);
        assertEq(engine.collateralOf(carol), int256(SETTLE_FEE), "the refund is all that is left");
        assertConserved();
    }

    // ================================================================ open-interest caps

    function test_oiCap_setterAccessAndEvent() public {
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, bytes32(0))
        );
        vm.prank(bob);
        engine.setOpenInterestCap(BTC, 1);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 9));
        engine.setOpenInterestCap(9, 1);
        vm.expectEmit(true, false, false, true, address(engine));
        emit EventsLib.OpenInterestCapSet(BTC, 100_000e18);
        vm.prank(admin);
        engine.setOpenInterestCap(BTC, 100_000e18);
        assertEq(engine.oiHardCapUsdWad(BTC), 100_000e18);
    }

    /// @dev The hard cap bounds each side's GROSS open interest (USD at the live price), whoever
    /// holds it: offsetting accounts do not net it away.
    function test_oiCap_hardCapPerSideGross() public {
        vm.prank(admin);
        engine.setOpenInterestCap(BTC, 100_000e18);
        open(alice, 2e18); // exactly at the cap: allowed
        expectTradeRevert(
            bob,
            BTC,
            0.01e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, true, 100_500e18, 100_000e18)
        );
        // The short side has its own cap; a short does not free long capacity.
        open(bob, -2e18);
        expectTradeRevert(
            bob,
            BTC,
            -0.01e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, false, 100_500e18, 100_000e18)
        );
        expectTradeRevert(
            alice,
            BTC,
            0.01e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, true, 100_500e18, 100_000e18)
        );
    }

    /// @dev Lowering the cap refuses new risk only: nobody becomes liquidatable, reductions and
    /// closes settle, an increase does not, a flip is checked on its new side.
    function test_oiCap_loweringLiquidatesNobodyAndAllowsReductions() public {
        open(alice, 2e18);
        open(bob, -1e18);
        bool la = engine.isLiquidatable(alice);
        vm.prank(admin);
        engine.setOpenInterestCap(BTC, 50_000e18);
        assertEq(engine.isLiquidatable(alice), la);
        assertFalse(engine.isLiquidatable(alice));
        open(alice, -0.5e18); // still above the cap after it: a reduction passes
        assertEq(engine.position(alice, BTC).sizeWad, 1.5e18);
        expectTradeRevertSel(alice, BTC, 0.1e18, 0, ErrorsLib.OpenInterestCapExceeded.selector);
        // bob's increase to a 1.5 short: short OI 75k > 50k
        expectTradeRevert(
            bob,
            BTC,
            -0.5e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, false, 75_000e18, 50_000e18)
        );
        close(alice, BTC);
        close(bob, BTC);
        assertConserved();
    }

    /// @dev The depth-relative cap: oiDepthMult x the depth input (an engine with 0.1x here: 5M
    /// USD per side at 50M depth); it follows the depth feed; the hard cap applies when lower.
    function test_oiCap_depthMultiple() public {
        MarginEngine.EngineConfig memory cfg = defaultEngineConfig();
        cfg.oiDepthMultWad = 0.1e18;
        engine = new MarginEngine(admin, usd, controller, cfg);
        usd.approve(address(engine), type(uint256).max);
        engine.fundVault(10_000_000 * USDC);
        fund(alice, 1_000_000 * USDC);
        fund(bob, 1_000_000 * USDC);
        open(alice, 100e18); // 5M: at the cap
        expectTradeRevert(
            bob,
            BTC,
            0.02e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, true, 5_001_000e18, 5_000_000e18)
        );
        // a hard cap above the depth cap changes nothing; below it, it binds
        vm.startPrank(admin);
        engine.setOpenInterestCap(BTC, 6_000_000e18);
        vm.stopPrank();
        expectTradeRevertSel(bob, BTC, 0.02e18, 0, ErrorsLib.OpenInterestCapExceeded.selector);
        // the depth halves: the cap follows (2.5M); the existing 5M stays, reductions pass
        setFeed(3, 25_000_000e8);
        expectTradeRevert(
            bob,
            BTC,
            0.02e18,
            0,
            abi.encodeWithSelector(ErrorsLib.OpenInterestCapExceeded.selector, BTC, true, 5_001_000e18, 2_500_000e18)
        );
        open(alice, -10e18);
        assertEq(engine.position(alice, BTC).sizeWad, 90e18);
        assertConserved();
    }

    /// @dev Over random opens by two accounts under a random hard cap: after every settled
    /// increase, each side's gross OI at the live price is within the cap.
    function testFuzz_oiCap_neverExceededByIncrease(uint256 capUsd, int256[6] memory sizes) public {
        capUsd = bound(capUsd, 10_000, 1_000_000);
        vm.prank(admin);
        engine.setOpenInterestCap(BTC, capUsd * 1e18);
        for (uint256 i; i < sizes.length; ++i) {
            int256 d = bound(sizes[i], -5e18, 5e18);
            if (d == 0) continue;
            address who = i % 2 == 0 ? alice : bob;
            int256 old = engine.position(who, BTC).sizeWad;
            bool ok = tryTrade(who, BTC, d);
            int256 nw = engine.position(who, BTC).sizeWad;
            bool increasing = (nw > 0 ? nw : -nw) > (old > 0 ? old : -old) || (old != 0 && nw != 0 && (nw > 0) != (old > 0));
            if (ok && increasing) {
                (uint256 l, uint256 s) = engine.openInterest(BTC);
                uint256 side = nw > 0 ? l : s;
                assertLe(side.mulWadUp(50_000e18), capUsd * 1e18, "side OI within the cap");
            }
        }
        assertConserved();
    }

    // ================================================================ funding

    /// @dev The issue's case: a trader's trade records +0.4%/h; the feed then publishes -0.1%/h and
    /// nobody accrues for hours. The next accrual charges the recorded rate only until the new
    /// answer's publication and the feed's rate after it, whoever accrues and whenever; a trade
    /// in between changes nothing (up to the index's rounding).
    function testFuzz_funding_tradeCannotSetRateForIdleInterval(uint256 t1, uint256 t2, uint256 tTrade) public {
        open(alice, 2e18);
        open(bob, -6e18); // a short that collects funding while longs pay
        setFeed(2, 0.004e8);
        open(bob, -0.001e18); // the trader's trade accrues and records +0.4%
        (int256 i0, int256 r0, uint256 a0) = engine.fundingState(BTC);
        assertEq(r0, 0.004e18);
        t1 = bound(t1, 1, 1 hours);
        t2 = bound(t2, 1, 1 hours - 1);
        vm.warp(a0 + t1);
        setFeed(2, -0.001e8); // the live feed now says shorts pay
        uint256 snap = vm.snapshotState();
        vm.warp(a0 + t1 + t2);
        refreshAllButFunding();
        engine.accrueFunding(BTC);
        (int256 idxIdle,,) = engine.fundingState(BTC);
        // +0.4% of 50k for t1, then -0.1% for t2
        int256 expected = i0 + int256(uint256(200e18) * t1 / 3600) - int256(uint256(50e18) * t2 / 3600);
        assertApproxEqAbs(idxIdle, expected, 2);
        vm.revertToState(snap);
        // the same interval with a trade (an accrual) somewhere inside it
        tTrade = bound(tTrade, 0, t2 - 1);
        vm.warp(a0 + t1 + tTrade);
        refreshAllButFunding();
        vm.prank(bob);
        engine.commitOrder(BTC, -0.001e18, 0);
        waitAndPublish(BTC);
        if (block.timestamp > a0 + t1 + t2) return;
        engine.settleOrder(bob, BTC, latestRound(BTC));
        vm.warp(a0 + t1 + t2);
        refreshAllButFunding();
        engine.accrueFunding(BTC);
        (int256 idxTraded,,) = engine.fundingState(BTC);
        assertApproxEqAbs(idxTraded, idxIdle, 4, "a trade does not move the index");
    }

    /// @dev Keeps every BTC feed but funding fresh (re-publishing the funding answer would move
    /// its publication time, which is what the engine switches rates at).
    function refreshAllButFunding() internal {
        for (uint256 k; k < 5; ++k) {
            if (k != 2) setFeed(k, feedAnswer(k));
        }
    }

    // ================================================================ RiskPusher

    function _pusher() internal returns (RiskPusher p) {
        p = new RiskPusher(admin, controller, engine);
        vm.startPrank(admin);
        for (uint256 k; k < 5; ++k) {
            feeds[k].setTransmitter(address(p), true);
        }
        controller.grantRole(controller.REPORTER_ROLE(), address(p));
        vm.stopPrank();
    }

    function _report(uint256 mask, int256[4] memory answers) internal pure returns (RiskPusher.ReportInput[] memory r) {
        r = new RiskPusher.ReportInput[](1);
        r[0] = RiskPusher.ReportInput({marketId: BTC, mask: mask, answers: answers});
    }

    function _reported(FeedKind kind) internal view returns (int256 answer) {
        (, answer,) = controller.reportRound(BTC, kind);
    }

    /// @dev One transaction: the report lands, the poke commits the new maintenance target (a
    /// tightening ramp is scheduled) and funding is accrued from the new rate's publication.
    function test_riskPusher_pushPokeAccrueInOneTx() public {
        RiskPusher p = _pusher();
        open(alice, 1e18);
        Ramp memory r0 = controller.ramp(BTC, true);
        // volatility spike, funding: the report's fields 1 and 2 (mask 0b11)
        RiskPusher.ReportInput[] memory rep = _report(3, [int256(1.5e8), 0.001e8, 0, 0]);
        uint256[] memory ms = new uint256[](1);
        ms[0] = BTC;
        vm.warp(block.timestamp + 60);
        vm.expectEmit(false, false, false, true, address(p));
        emit RiskPusher.Pushed(0, 1, 1);
        vm.prank(admin);
        p.push(new address[](0), new int256[](0), rep, ms);
        assertEq(_reported(FeedKind.Volatility), 1.5e8);
        assertEq(_reported(FeedKind.Funding), 0.001e8);
        assertEq(_reported(FeedKind.Depth), 50_000_000e8, "a field outside the mask is kept");
        Ramp memory r1 = controller.ramp(BTC, true);
        assertGt(r1.toWad, r0.toWad, "poked in the same transaction");
        (, int256 rate, uint256 last) = engine.fundingState(BTC);
        assertEq(rate, 0.001e18, "accrued in the same transaction");
        assertEq(last, block.timestamp);
    }

    /// @dev A failing poke (a skew answer above its bound) is reported, never undoes the pushes,
    /// and the accrual still runs; a bad price makes the accrual fail, reported likewise.
    function test_riskPusher_failingPokeEmitsAndKeepsPushes() public {
        RiskPusher p = _pusher();
        // skew above its 1.0 bound (poke reverts RiskFeedInvalid) and funding: mask 0b1010
        RiskPusher.ReportInput[] memory rep = _report(10, [int256(0), 0.002e8, 0, 2e8]);
        uint256[] memory ms = new uint256[](1);
        ms[0] = BTC;
        vm.expectEmit(true, false, false, true, address(p));
        emit RiskPusher.PokeFailed(BTC, abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        vm.prank(admin);
        p.push(new address[](0), new int256[](0), rep, ms);
        assertEq(_reported(FeedKind.Skew), 2e8, "the report stays");
        (, int256 rate,) = engine.fundingState(BTC);
        assertEq(rate, 0.002e18, "the accrual ran");

        address[] memory fs = new address[](1);
        fs[0] = address(feeds[0]);
        int256[] memory answers = new int256[](1);
        answers[0] = 0; // a bad price
        vm.expectEmit(true, false, false, true, address(p));
        emit RiskPusher.AccrueFailed(BTC, abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        vm.prank(admin);
        p.push(fs, answers, new RiskPusher.ReportInput[](0), ms);
        assertEq(feedAnswer(0), 0);
    }

    function test_riskPusher_rejections() public {
        RiskPusher p = _pusher();
        address[] memory fs = new address[](1);
        int256[] memory answers = new int256[](2);
        uint256[] memory ms = new uint256[](0);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(RiskPusher.LengthMismatch.selector, 1, 2));
        p.push(fs, answers, new RiskPusher.ReportInput[](0), ms);
        bytes32 role = p.KEEPER_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        p.push(new address[](0), new int256[](0), new RiskPusher.ReportInput[](0), ms);
        // A report the controller rejects reverts the whole push.
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ReportMaskInvalid.selector, BTC, 16));
        p.push(new address[](0), new int256[](0), _report(16, [int256(0), 0, 0, 0]), ms);
        // Without REPORTER_ROLE on the controller, a push with a report reverts.
        bytes32 reporter = controller.REPORTER_ROLE();
        vm.prank(admin);
        controller.revokeRole(reporter, address(p));
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, address(p), reporter)
        );
        p.push(new address[](0), new int256[](0), _report(1, [int256(0.6e8), 0, 0, 0]), ms);
    }
}
