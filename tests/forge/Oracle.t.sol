// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {LeverageController} from "../../contracts/LeverageController.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";
import {FeedConfig, FeedKind, MarketQuote, PriceRound} from "../../interfaces/ILeverageController.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

/// @notice Feed validation. A bad price feed (stale, future, zero, negative, out of bounds, too
/// large, reverting) stops settlement and liquidation in that market (an order cannot settle at a
/// bad round, liquidations revert `PriceFeedInvalid`), the quote reports `priceOk = false` and
/// health values the market conservatively; deposits still work. A bad risk feed fails closed:
/// IMF = maxImf, while closes and deposits keep working.
contract OracleTest is OrderHelpers {
    /// @dev The aggregator read path (its faults: reverting, back-dated, out-of-bounds feeds);
    /// the report path is `Report.t.sol`.
    function reportMode() internal pure override returns (bool) {
        return false;
    }

    using FixedPointMathLib for uint256;

    enum Fault {
        Stale,
        Future,
        Zero,
        Negative,
        AboveMax,
        BelowMin,
        TooLarge,
        Reverting
    }

    uint256 internal constant N_FAULTS = 8;

    /// @dev Breaks BTC feed `k` with `fault`. Bounds are those of `feedConfigs`.
    function breakFeed(uint256 k, Fault fault) internal {
        MockAggregator f = feeds[k];
        int256 cur;
        if (!f.reverting()) (, cur,,,) = f.latestRoundData();
        vm.startPrank(admin);
        if (fault == Fault.Stale) f.transmitAt(cur, block.timestamp - 3601);
        else if (fault == Fault.Future) f.transmitAt(cur, block.timestamp + 1);
        else if (fault == Fault.Zero) f.transmit(0);
        else if (fault == Fault.Negative) f.transmit(-1e8);
        else if (fault == Fault.AboveMax) f.transmit(k == 0 ? int256(1e25 / 1e10 + 1) : _maxRaw(k) + 1);
        else if (fault == Fault.BelowMin) f.transmit(k == 0 ? int256(0.5e8) : _minRaw(k) - 1);
        else if (fault == Fault.TooLarge) f.transmit(int256(1e40) + 1);
        else f.setReverting(true);
        vm.stopPrank();
    }

    function _maxRaw(uint256 k) private pure returns (int256) {
        if (k == 1) return 10e8;
        if (k == 2) return 0.05e8;
        if (k == 3) return 1e30 / 1e10;
        return 1e8;
    }

    function _minRaw(uint256 k) private pure returns (int256) {
        if (k == 1) return 0.01e8;
        if (k == 2) return -0.05e8;
        if (k == 3) return 1e21 / 1e10;
        return -1e8;
    }

    /// @dev Whether `fault` makes feed `k` invalid (a zero or negative answer is valid for the
    /// signed funding and skew feeds when within bounds).
    function invalidates(uint256 k, Fault fault) internal pure returns (bool) {
        bool signed = k == 2 || k == 4;
        if (signed && fault == Fault.Zero) return false;
        if (k == 4 && fault == Fault.Negative) return false; // -1.0 is the skew lower bound
        return true;
    }

    // ================================================================ price feed

    function test_oracle_validPriceScaledToWad() public view {
        assertEq(controller.priceWad(BTC), 50_000e18);
        (bool ok, int256 v) = controller.readFeed(BTC, FeedKind.Price);
        assertTrue(ok);
        assertEq(v, 50_000e18);
    }

    function test_oracle_heartbeatBoundary() public {
        vm.prank(admin);
        feeds[0].transmitAt(50_000e8, block.timestamp - 3600);
        assertEq(controller.priceWad(BTC), 50_000e18);
        vm.prank(admin);
        feeds[0].transmitAt(50_000e8, block.timestamp - 3601);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        controller.priceWad(BTC);
    }

    function test_oracle_priceBoundsInclusive() public {
        setFeed(0, 1e8); // minWad 1e18
        assertEq(controller.priceWad(BTC), 1e18);
        setFeed(0, 1e15); // maxWad 1e25
        assertEq(controller.priceWad(BTC), 1e25);
    }

    function testFuzz_oracle_badPriceRevertsTrade(uint8 faultRaw) public {
        Fault fault = Fault(bound(faultRaw, 0, N_FAULTS - 1));
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        // alice commits an increase and a close is impossible alongside it (one order per
        // market): bob commits an open; the first round after the delay is the bad one.
        fund(bob, 10_000 * USDC);
        vm.prank(alice);
        engine.commitOrder(BTC, 0.1e18, 0);
        vm.prank(bob);
        engine.commitOrder(BTC, 1e18, 0);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        breakFeed(0, fault);

        (bool ok, int256 v) = controller.readFeed(BTC, FeedKind.Price);
        assertFalse(ok);
        assertEq(v, 0);
        bytes memory err = abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC);
        vm.expectRevert(err);
        controller.priceWad(BTC);
        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        assertFalse(q.priceOk, "the quote reports a bad price, never reverts");
        assertEq(q.priceWad, 0);

        // No order settles at a bad round; no liquidation without a price.
        uint80 r = fault == Fault.Reverting ? 1 : latestRound(BTC);
        vm.expectRevert();
        engine.settleOrder(alice, BTC, r);
        vm.expectRevert();
        engine.settleOrder(bob, BTC, r);
        if (fault != Fault.Reverting && fault != Fault.Stale && fault != Fault.Future) {
            (, int256 answer,,,) = feeds[0].latestRoundData();
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SettlementPriceInvalid.selector, BTC, r, answer));
            engine.settleOrder(bob, BTC, r);
        }
        vm.prank(liquidator);
        vm.expectRevert(err);
        engine.liquidate(alice, BTC);
        // Health values the position at the last good price moved by maxMmf (it does not revert).
        Health memory h = engine.health(alice);
        assertEq(h.notionalUsdWad, uint256(50_000e18).mulWad(1e18 - q.maxMmfWad));
        // Withdrawals with a position need the price; deposits and position-free withdrawals don't.
        vm.prank(alice);
        vm.expectRevert(err);
        engine.withdraw(1);
        fund(alice, 1 * USDC);
        fund(bob, 1 * USDC);
        vm.prank(bob);
        engine.withdraw(1 * USDC);
    }

    function test_oracle_int256MinAnswerInvalid() public {
        vm.prank(admin);
        feeds[0].transmit(type(int256).min);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC));
        controller.priceWad(BTC);
    }

    /// @dev A stale price cannot settle an order (no round published after the commit); the order
    /// settles at the first fresh answer.
    function test_oracle_priceRecoversAfterFreshAnswer() public {
        fund(alice, 10_000 * USDC);
        breakFeed(0, Fault.Stale);
        vm.prank(alice);
        engine.commitOrder(BTC, 1e18, 0);
        uint256 from = block.timestamp + engine.orderMinDelaySec();
        vm.warp(from);
        uint80 r = latestRound(BTC);
        (,,, uint256 prevAt,) = feeds[0].getRoundData(r - 1);
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, r, block.timestamp - 2 - 3601, from, prevAt)
        );
        engine.settleOrder(alice, BTC, r);
        setPrice(50_000);
        engine.settleOrder(alice, BTC, r + 1);
        assertEq(engine.position(alice, BTC).sizeWad, 1e18);
    }

    /// @dev `quoteAtRound` is `quoteWithOpenInterest` plus the round: every round of the feed
    /// (0: the latest) with its answer scaled to WAD and the time of the round before it; a round
    /// the feed does not have reads as unpublished (time 0, answer 0).
    function test_quoteAtRound_isTheQuoteAndTheRound() public {
        setPrice(51_000);
        setPrice(49_000);
        uint80 last = latestRound(BTC);
        MarketQuote memory q0 = controller.quoteWithOpenInterest(BTC, false, 2e18, 5e18, 3e18);
        for (uint80 r = 0; r <= last; r++) {
            (MarketQuote memory q, PriceRound memory pr) = controller.quoteAtRound(BTC, false, 2e18, 5e18, 3e18, r);
            assertEq(keccak256(abi.encode(q)), keccak256(abi.encode(q0)), "the same quote");
            uint80 want = r == 0 ? last : r;
            (, int256 a,, uint256 t,) = feeds[0].getRoundData(want);
            assertEq(pr.roundId, want);
            assertEq(pr.answer, a);
            assertEq(pr.answerWad, uint256(a) * 1e10);
            assertEq(pr.updatedAt, t);
            uint256 prevAt;
            if (want > 1) (,,, prevAt,) = feeds[0].getRoundData(want - 1);
            assertEq(pr.prevUpdatedAt, prevAt);
        }
        (, PriceRound memory none) = controller.quoteAtRound(BTC, true, 1e18, 0, 0, last + 1);
        assertEq(none.roundId, last + 1);
        assertEq(none.updatedAt, 0);
        assertEq(none.answerWad, 0);
        (,,, uint256 lastAt,) = feeds[0].getRoundData(last);
        assertEq(none.prevUpdatedAt, lastAt);
    }

    /// @dev An order cannot settle at a round the feed does not have (or reverts for): it reads
    /// as unpublished and the engine refuses it with the round's figures.
    function test_settle_missingRoundRevertsSettlementRoundInvalid() public {
        fund(alice, 10_000 * USDC);
        vm.prank(alice);
        engine.commitOrder(BTC, 1e18, 0);
        uint256 from = block.timestamp + engine.orderMinDelaySec();
        vm.warp(from);
        setPrice(50_000);
        uint80 r = latestRound(BTC);
        (,,, uint256 lastAt,) = feeds[0].getRoundData(r);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.SettlementRoundInvalid.selector, r + 1, 0, from, lastAt));
        engine.settleOrder(alice, BTC, r + 1);
        engine.settleOrder(alice, BTC, r);
        assertEq(engine.position(alice, BTC).sizeWad, 1e18);
    }

    // ================================================================ risk feeds: fail closed

    function checkFailClosed(uint256 k, Fault fault) internal {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        breakFeed(k, fault);
        (bool ok,) = controller.readFeed(BTC, FeedKind(k));
        assertFalse(ok);

        MarketQuote memory q = controller.quote(BTC, true, 1e18);
        assertFalse(q.riskFeedsOk);
        assertEq(q.imfWad, 0.5e18, "IMF = maxImf");
        assertEq(controller.quote(BTC, false, 0).imfWad, 0.5e18);
        assertEq(controller.maxLeverageWad(BTC, true), 2e18);
        assertEq(controller.maxLeverageWad(BTC, false), 2e18);
        assertEq(q.fundingOk, k != 2);
        assertEq(engine.health(alice).initialUsdWad, 25_000e18);

        // More than 2x of new risk is refused (the fault is re-applied at settlement: a "future"
        // answer would be valid again after the delay).
        fund(bob, 10_000 * USDC);
        vm.prank(bob);
        engine.commitOrder(BTC, 0.6e18, 0);
        waitAndPublish(BTC);
        breakFeed(k, fault);
        uint80 r = latestRound(BTC);
        vm.expectPartialRevert(ErrorsLib.InitialMarginViolated.selector);
        engine.settleOrder(bob, BTC, r);
        // Deposits work; so do closes.
        fund(alice, 1 * USDC);
        close(alice, BTC);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        assertConserved();
    }

    function testFuzz_oracle_badRiskFeedFailsClosed(uint8 kindRaw, uint8 faultRaw) public {
        uint256 k = bound(kindRaw, 1, 4);
        Fault fault = Fault(bound(faultRaw, 0, N_FAULTS - 1));
        if (!invalidates(k, fault)) return;
        checkFailClosed(k, fault);
    }

    function test_oracle_staleVolFailsClosed() public {
        checkFailClosed(1, Fault.Stale);
    }

    function test_oracle_revertingSkewFailsClosed() public {
        checkFailClosed(4, Fault.Reverting);
    }

    function test_oracle_outOfBoundsFundingFailsClosed() public {
        checkFailClosed(2, Fault.AboveMax);
    }

    function test_oracle_staleDepthFailsClosed() public {
        checkFailClosed(3, Fault.Stale);
    }

    /// @dev Under a risk-feed fault new risk is still possible, at no more than the leverage floor.
    function test_oracle_riskFeedBadStillAllowsLowLeverage() public {
        breakFeed(1, Fault.Reverting);
        fund(bob, 10_000 * USDC);
        open(bob, 0.3e18); // 15k notional = 1.5x
        Health memory h = engine.health(bob);
        assertEq(h.initialUsdWad, 7_500e18);
        assertGe(h.equityUsdWad, int256(h.initialUsdWad));
    }

    /// @dev With the vol feed bad, a close executes at the normal impact (the depth is fine).
    function test_oracle_volBadCloseAtNormalCost() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        breakFeed(1, Fault.Stale);
        close(alice, BTC);
        // 2 settlement fees, 2 x fee 50, impact 1 charged then rebated
        assertEq(engine.collateralOf(alice), int256(9_898 * USDC));
    }

    /// @dev The depth fallback: with the depth feed bad, the controller quotes the feed's minimum
    /// depth (1000 USD here), which is what new risk pays impact against. An exit that grows the
    /// skew pays at most the slippage snapshotted at the position's last increase, pro rata
    /// (finding L2): here alice's short close moves the skew 0.99 -> 1 BTC, which the floor depth
    /// would price at ~249 USD; she pays the open-time fraction of 500 USD instead.
    function test_oracle_depthBadImpactPricedAtMinDepth() public {
        fund(bob, 100_000 * USDC);
        open(bob, 1e18);
        fund(alice, 10_000 * USDC);
        open(alice, -0.01e18); // 500 USD
        uint256 snap = engine.position(alice, BTC).slipSnapWad;
        assertGt(snap, 0);
        breakFeed(3, Fault.Stale);
        MarketQuote memory q = controller.quote(BTC, true, 0.01e18);
        assertFalse(q.riskFeedsOk);
        assertEq(q.depthUsdWad, 1_000e18);
        assertEq(q.impactCoefWad, 0.01e18);
        (uint256 uncapped,) = skewImpactUsd(q.impactCoefWad, 0.99e18, 1e18, 50_000e18, q.depthUsdWad);
        uint256 capUsd = uint256(500e18).mulWadUp(snap);
        assertGt(uncapped, 100e18);
        assertLt(capUsd, uncapped);
        int256 c0 = engine.collateralOf(alice);
        uint256 p0 = poolOf(BTC);
        close(alice, BTC);
        // settlement fee 1, fee 0.25 USD, impact: the snapshot fraction of 500 USD, rounded up
        uint256 impact = capUsd.divUp(1e12);
        assertEq(engine.collateralOf(alice), c0 - int256(SETTLE_FEE) - 250_000 - int256(impact));
        assertEq(poolOf(BTC), p0 + impact);
        assertConserved();
    }

    /// @dev A bad funding feed: the engine keeps accruing at the last good rate.
    function test_oracle_fundingBadKeepsLastRate() public {
        setFeed(2, 0.0002e8);
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        breakFeed(2, Fault.Reverting);
        skipAndRefresh(1 hours);
        engine.accrueFunding(BTC);
        (int256 idx, int256 rate,) = engine.fundingState(BTC);
        assertEq(rate, 0.0002e18);
        assertEq(idx, 10e18); // 0.02% of 50k for an hour
    }

    function test_oracle_pokeRevertsOnBadVolOrSkew() public {
        breakFeed(4, Fault.AboveMax);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        controller.poke(BTC);
        (bool ok, uint256 t) = controller.maintenanceTarget(BTC, true);
        assertFalse(ok);
        assertEq(t, 0);
    }

    // ================================================================ feed configuration

    function newFeeds(uint8 dec, int256 price) internal returns (MockAggregator[5] memory f) {
        int256 one = int256(10 ** uint256(dec));
        f[0] = new MockAggregator(dec, "p", price);
        f[1] = new MockAggregator(dec, "v", one / 2);
        f[2] = new MockAggregator(dec, "f", 0);
        f[3] = new MockAggregator(dec, "d", 50_000_000 * one);
        f[4] = new MockAggregator(dec, "s", 0);
    }

    function test_oracle_decimalsScaling() public {
        vm.startPrank(admin);
        LeverageController c2 = new LeverageController(admin, 1 days);
        c2.listMarket(1, feedConfigs(newFeeds(18, 50_000e18)), defaultParams());
        c2.listMarket(2, feedConfigs(newFeeds(6, 50_000e6)), defaultParams());
        c2.listMarket(3, feedConfigs(newFeeds(0, 50_000)), defaultParams());
        vm.stopPrank();
        assertEq(c2.priceWad(1), 50_000e18);
        assertEq(c2.priceWad(2), 50_000e18);
        assertEq(c2.priceWad(3), 50_000e18);
        assertEq(c2.quote(1, true, 1e18).imfWad, c2.quote(2, true, 1e18).imfWad);
    }

    function test_oracle_listingRejectsBadFeedConfig() public {
        vm.startPrank(admin);
        LeverageController c2 = new LeverageController(admin, 1 days);
        FeedConfig[5] memory cfg = feedConfigs(feeds);

        cfg[1].feed = address(0);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.FeedMissing.selector, 1, FeedKind.Volatility));
        c2.listMarket(1, cfg, defaultParams());

        cfg = feedConfigs(feeds);
        cfg[3].heartbeatSec = 0;
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.FeedMissing.selector, 1, FeedKind.Depth));
        c2.listMarket(1, cfg, defaultParams());

        cfg = feedConfigs(feeds);
        cfg[0].minWad = 0;
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.FeedBoundsInvalid.selector, 1, FeedKind.Price, int256(0), int256(1e25))
        );
        c2.listMarket(1, cfg, defaultParams());

        cfg = feedConfigs(feeds);
        cfg[4].minWad = 1e18;
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.FeedBoundsInvalid.selector, 1, FeedKind.Skew, int256(1e18), int256(1e18))
        );
        c2.listMarket(1, cfg, defaultParams());

        cfg = feedConfigs(feeds);
        cfg[2].feed = address(new MockAggregator(19, "f", 0));
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.FeedDecimalsInvalid.selector, 1, FeedKind.Funding, 19));
        c2.listMarket(1, cfg, defaultParams());

        // A signed feed may have a non-positive lower bound.
        cfg = feedConfigs(feeds);
        c2.listMarket(1, cfg, defaultParams());
        vm.stopPrank();
        assertEq(c2.feedConfig(1, FeedKind.Funding).minWad, -0.05e18);
    }

    function test_oracle_unlistedMarketReverts() public {
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 42));
        controller.priceWad(42);
        (bool ok, int256 v) = controller.readFeed(42, FeedKind.Price);
        assertFalse(ok);
        assertEq(v, 0);
    }
}

/// @notice The L2 sequencer uptime feed: while it is down, or within the grace period after it
/// comes back, new risk, withdrawals against positions and liquidations are blocked; closes,
/// reductions and deposits are not.
contract OracleSequencerTest is OrderHelpers {
    uint256 internal constant GRACE = 3600;
    MockAggregator internal seq;

    function beforeSeal() internal override {
        seq = new MockAggregator(0, "L2 sequencer uptime", 0); // 0 = up, since now
        controller.setSequencerFeed(address(seq), GRACE);
        // BTC was listed before the feed was set (its blob is rewritten), market 1 after.
        listExtraMarket(1, 3_000, 0.6e8, 20_000_000);
    }

    /// @dev Quotes read the sequencer from each market's blob: a market listed before
    /// `setSequencerFeed` and one listed after both follow the feed, as `sequencerUp()` does.
    function test_sequencer_copiedIntoEveryMarketsBlob() public {
        assertTrue(controller.quote(BTC, true, 1e18).sequencerUp);
        assertTrue(controller.quote(1, true, 1e18).sequencerUp);
        setSeq(1); // down
        assertFalse(controller.sequencerUp());
        assertFalse(controller.quote(BTC, true, 1e18).sequencerUp, "listed before the feed was set");
        assertFalse(controller.quote(1, false, 1e18).sequencerUp, "listed after");
        setSeq(0); // back up: within the grace period
        skipAndRefresh(GRACE / 2);
        assertFalse(controller.quote(BTC, true, 1e18).sequencerUp, "grace");
        skipAndRefresh(GRACE);
        assertTrue(controller.sequencerUp());
        assertTrue(controller.quote(BTC, true, 1e18).sequencerUp);
        assertTrue(controller.quote(1, true, 1e18).sequencerUp);
    }

    function setUp() public override {
        super.setUp();
        // The feed came up at listing: wait out the grace period.
        skipAndRefresh(GRACE + 1);
        assertTrue(controller.sequencerUp());
    }

    function setSeq(int256 answer) internal {
        vm.prank(admin);
        seq.transmit(answer);
    }

    function test_sequencer_upAllowsEverything() public {
        fund(alice, 10_000 * USDC);
        open(alice, 1e18);
        vm.prank(alice);
        engine.withdraw(1 * USDC);
        assertTrue(controller.quote(BTC, true, 0).sequencerUp);
    }

    function test_sequencer_downBlocksOpensAndLiquidationsNotCloses() public {
        address carol = track("carol");
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        open(alice, 2e18);
        open(bob, 1e18);
        setPrice(45_500);
        assertTrue(engine.isLiquidatable(alice));
        setSeq(1);
        assertFalse(controller.sequencerUp());
        assertFalse(controller.quote(BTC, true, 0).sequencerUp);

        bytes memory down = abi.encodeWithSelector(ErrorsLib.SequencerDown.selector);
        expectTradeRevert(bob, BTC, 0.1e18, 0, down);
        fund(carol, 10_000 * USDC);
        expectTradeRevert(carol, BTC, -0.1e18, 0, down);
        vm.prank(liquidator);
        vm.expectRevert(ErrorsLib.SequencerDown.selector);
        engine.liquidate(alice, BTC);
        vm.prank(bob);
        vm.expectRevert(ErrorsLib.SequencerDown.selector);
        engine.withdraw(1 * USDC);

        // Reductions, closes, deposits and position-free withdrawals go through.
        trade(bob, BTC, -0.5e18, 0);
        close(alice, BTC);
        fund(bob, 1 * USDC);
        vm.prank(carol);
        engine.withdraw(1 * USDC);
        assertConserved();
    }


    function test_sequencer_graceAfterRestart() public {
        fund(alice, 10_000 * USDC);
        setSeq(1);
        skipAndRefresh(10 minutes);
        setSeq(0); // back up now: grace starts
        uint256 upAt = block.timestamp;
        expectTradeRevert(alice, BTC, 1e18, 0, abi.encodeWithSelector(ErrorsLib.SequencerDown.selector));
        vm.warp(upAt + GRACE);
        refreshFeeds();
        assertFalse(controller.sequencerUp(), "grace is inclusive");
        vm.warp(upAt + GRACE + 1);
        refreshFeeds();
        assertTrue(controller.sequencerUp());
        open(alice, 1e18);
    }

    function test_sequencer_graceBlocksLiquidation() public {
        fund(alice, 10_000 * USDC);
        open(alice, 2e18);
        setSeq(1);
        setSeq(0);
        setPrice(45_500);
        vm.prank(liquidator);
        vm.expectRevert(ErrorsLib.SequencerDown.selector);
        engine.liquidate(alice, BTC);
        skipAndRefresh(GRACE + 1);
        flagAndLiquidate(liquidator, alice, BTC);
    }

    function test_sequencer_revertingFeedMeansDown() public {
        vm.prank(admin);
        seq.setReverting(true);
        assertFalse(controller.sequencerUp());
        fund(alice, 10_000 * USDC);
        expectTradeRevert(alice, BTC, 1e18, 0, abi.encodeWithSelector(ErrorsLib.SequencerDown.selector));
    }

    function test_sequencer_badTimestampsMeanDown() public {
        vm.prank(admin);
        seq.transmitAt(0, 0);
        assertFalse(controller.sequencerUp(), "startedAt 0");
        vm.prank(admin);
        seq.transmitAt(0, block.timestamp + 1);
        assertFalse(controller.sequencerUp(), "startedAt in the future");
        vm.prank(admin);
        seq.transmitAt(0, block.timestamp - GRACE - 1);
        assertTrue(controller.sequencerUp());
    }

    /// @dev The sequencer feed has no heartbeat: an old "up" answer stays valid.
    function test_sequencer_oldUpAnswerStaysValid() public {
        skipAndRefresh(30 days);
        assertTrue(controller.sequencerUp());
    }
}
