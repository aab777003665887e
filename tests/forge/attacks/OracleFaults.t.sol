// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AttackBase} from "./AttackBase.sol";
import {FeedKind, MarketQuote} from "../../../interfaces/ILeverageController.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {Order} from "../../../interfaces/IMarginEngine.sol";
import {ErrorsLib} from "../../../contracts/libraries/ErrorsLib.sol";

/// @title Oracle faults
/// @notice Threat: a feed that is stale, zero, negative, absurd, reverting, dated in the future,
/// or an L2 sequencer outage is used to open risk at a wrong margin, to block users from
/// de-risking, or to liquidate at a wrong price.
/// Defined behaviour, and the defence that gives it:
///  * Every read is validated (RiskOracleBase._read, RiskOracleBase.sol:140-157): updatedAt == 0,
///    in the future or older than the heartbeat (:145), int256.min (:148), |answer| > 1e40 (:150),
///    outside [minWad, maxWad] (:152; min > 0 for price, volatility, depth) and a reverting feed
///    (try/catch, :154) all read as (false, 0).
///  * A bad RISK feed (volatility, skew, depth, funding) fails closed for new risk: the quote
///    prices new risk at maxImf, `uint256 imfLive = q.riskFeedsOk ? f.imfWad : p.maxImfWad;`
///    (LeverageController.sol:168). Reducing, closing, depositing and liquidating keep working
///    (maintenance comes from the committed ramp). `poke` refuses a bad volatility or skew feed
///    (RiskFeedInvalid), so nothing moves maintenance on bad data.
///  * A bad PRICE: no order settles at a bad round (SettlementPriceInvalid / SettlementRoundInvalid;
///    an order whose first eligible round is bad expires and is refunded), liquidations and
///    withdrawals with positions in that market revert PriceFeedInvalid; the quote reports
///    priceOk = false and health values the market at its last good price moved against the
///    position by maxMmf, so the account's OTHER markets can still be liquidated (L3 fixed).
///  * Sequencer down, or up for less than the grace period (RiskOracleBase.sequencerUp, :99-108):
///    no new risk (MarginEngine._trade `if (!q.sequencerUp) revert SequencerDown()` only when
///    increasing, MarginEngine.sol:181), no withdrawal with positions (:136), no liquidation
///    (:223: users who could not reach the chain are not liquidated before they can top up);
///    reducing, closing and depositing still work.
contract OracleFaultsTest is AttackBase {
    /// @dev The aggregator read path (its faults: reverting, back-dated, out-of-bounds feeds);
    /// the report path is `Report.t.sol`.
    function reportMode() internal pure override returns (bool) {
        return false;
    }

    enum Fault {
        Stale,
        Future,
        ZeroUpdatedAt,
        Zero,
        Negative,
        BelowMin,
        AboveMax,
        RawHuge,
        Int256Min,
        Reverting
    }

    uint256 internal constant N_FAULTS = 10;
    uint256 internal constant GRACE = 3600;

    MockAggregator internal seq;
    address internal carol = makeAddr("carol");

    /// @dev Runs in BaseTest.setUp, as admin, before the bootstrap is sealed: an L2 sequencer
    /// feed, up since a day ago, with a one-hour grace period.
    function beforeSeal() internal override {
        seq = new MockAggregator(0, "L2 sequencer uptime", 0);
        seq.transmitAt(0, block.timestamp - 1 days);
        controller.setSequencerFeed(address(seq), GRACE);
        listExtraMarket(THIN, 10, 1e8, 500_000); // a small market with its own price feed
    }

    uint256 internal constant THIN = 1;

    function setUp() public override {
        super.setUp();
        fund(alice, 10_000 * USDC);
        fund(bob, 10_000 * USDC);
        fund(carol, 10_000 * USDC);
        open(alice, 1e18); // $50k long on $10k: 5x, opened before the fault
        assertTrue(controller.sequencerUp());
    }

    // ---------------------------------------------------------------- helpers

    /// @dev Breaks feed k of BTC with `fault`; returns whether the answer must now read as bad
    /// (a zero or slightly negative funding or skew is a valid answer).
    function _break(uint256 k, Fault fault) internal returns (bool bad) {
        MockAggregator f = feeds[k];
        int256 a;
        if (!f.reverting()) (, a,,,) = f.latestRoundData();
        int128 lo = k == 0 ? int128(1e18) : k == 1 ? int128(0.01e18) : k == 2 ? int128(-0.05e18) : k == 3 ? int128(1e21) : int128(-1e18);
        int128 hi = k == 0 ? int128(1e25) : k == 1 ? int128(10e18) : k == 2 ? int128(0.05e18) : k == 3 ? int128(1e30) : int128(1e18);
        bool signed = k == uint256(FeedKind.Funding) || k == uint256(FeedKind.Skew);
        bad = true;
        vm.startPrank(admin);
        if (fault == Fault.Stale) f.transmitAt(a, block.timestamp - 3601);
        else if (fault == Fault.Future) f.transmitAt(a, block.timestamp + 1);
        else if (fault == Fault.ZeroUpdatedAt) f.transmitAt(a, 0);
        else if (fault == Fault.Zero) {
            f.transmit(0);
            bad = !signed;
        } else if (fault == Fault.Negative) {
            f.transmit(-1);
            bad = !signed;
        }
        else if (fault == Fault.BelowMin) f.transmit(int256(lo) / 1e10 - 1);
        else if (fault == Fault.AboveMax) f.transmit(int256(hi) / 1e10 + 1);
        else if (fault == Fault.RawHuge) f.transmit(1e40 + 1);
        else if (fault == Fault.Int256Min) f.transmit(type(int256).min);
        else f.setReverting(true);
        vm.stopPrank();
    }

    function _assertDeRiskingWorks() internal {
        // Adding margin, reducing and closing always work with a good price.
        fund(alice, 100 * USDC);
        trade(alice, BTC, -0.25e18, 0);
        close(alice, BTC);
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        int256 c = engine.collateralOf(alice);
        if (c > 0) {
            vm.prank(alice);
            engine.withdraw(uint256(c)); // no position left: all free collateral leaves
        }
    }

    // ---------------------------------------------------------------- risk feeds

    /// @notice Any fault of any risk feed: the read is bad, new risk is priced at maxImf (2x with
    /// the defaults), de-risking works, poke refuses bad volatility or skew.
    /// Fails without the validation in _read or without the maxImf fallback in quote.
    function testFuzz_riskFeedFault_failsClosedForNewRisk(uint256 kSeed, uint256 faultSeed) public {
        uint256 k = 1 + kSeed % 4;
        Fault fault = Fault(faultSeed % N_FAULTS);
        bool bad = _break(k, fault);
        (bool ok, int256 v) = controller.readFeed(BTC, FeedKind(k));
        if (!bad) {
            assertTrue(ok, "a zero or negative funding/skew is valid");
            return;
        }
        assertFalse(ok, "fault detected");
        assertEq(v, 0);

        MarketQuote memory q = quoteOf(BTC, true, 1e18);
        uint256 maxImf = controller.imfParams(BTC).maxImfWad;
        assertFalse(q.riskFeedsOk);
        assertEq(q.imfWad, maxImf, "new risk at maxImf");
        assertEq(controller.maxLeverageWad(BTC, false), WAD * WAD / maxImf, "both sides");
        if (k == uint256(FeedKind.Funding)) assertFalse(q.fundingOk);

        // New risk above 1 / maxImf is refused; below it passes (the fault is re-applied after
        // the settlement delay: a "future" answer would otherwise be valid again).
        uint256 s0 = vm.snapshotState();
        commitAndWait(bob, BTC, 0.5e18, 0); // $25k on $10k: 2.5x
        _break(k, fault);
        uint80 r = latestRound(BTC);
        vm.expectPartialRevert(ErrorsLib.InitialMarginViolated.selector);
        engine.settleOrder(bob, BTC, r);
        vm.revertToState(s0);
        commitAndWait(bob, BTC, -0.2e18, 0); // $10k on $10k: 1x
        _break(k, fault);
        engine.settleOrder(bob, BTC, latestRound(BTC));
        assertEq(engine.position(bob, BTC).sizeWad, -0.2e18);

        // Fail closed for releasing margin too: 5x alice cannot withdraw.
        vm.prank(alice);
        vm.expectPartialRevert(ErrorsLib.InitialMarginViolated.selector);
        engine.withdraw(1 * USDC);

        if (k == uint256(FeedKind.Volatility) || k == uint256(FeedKind.Skew)) {
            vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
            controller.poke(BTC);
        } else {
            controller.poke(BTC);
        }
        _assertDeRiskingWorks();
    }

    /// @notice A bad volatility feed does not stop the liquidation of an account that is under
    /// water at a good price (maintenance comes from the committed ramp).
    function test_riskFeedFault_liquidationStillWorks() public {
        openMax(carol, BTC, true);
        _break(uint256(FeedKind.Volatility), Fault.Reverting);
        setPrice(47_000);
        assertTrue(engine.isLiquidatable(carol));
        flagAndLiquidate(liquidator, carol, BTC);
        assertFalse(engine.isLiquidatable(carol));
    }

    /// @notice Fixed finding L2: while the DEPTH feed is bad the controller falls back to the depth
    /// floor (the feed's minWad), which used to price exits at up to 100% impact (a healthy 5x
    /// account became bad debt by closing). Exits now pay at most the slippage snapshotted at the
    /// position's last increase (MarginEngine._exitImpact): the outage close costs what the same
    /// close cost at open-time depth, and no bad debt appears.
    /// Engine v2: impact is the integral over the skew; the cap applies to an exit that GROWS the
    /// skew (bob's larger short makes alice's close push the skew from -2 to -3 BTC).
    function test_depthFeedFault_exitsPayAtMostOpenTimeSlippage() public {
        trade(bob, BTC, -3e18, 0);
        uint256 snap = vm.snapshotState();
        int256 c0 = engine.collateralOf(alice);
        close(alice, BTC);
        uint256 normalCost = uint256(c0 - engine.collateralOf(alice));
        vm.revertToState(snap);

        _break(uint256(FeedKind.Depth), Fault.Reverting);
        uint256 bad0 = engine.badDebtTotal();
        MarketQuote memory q = quoteOf(BTC, true, 1e18);
        (uint256 floorCharge,) = skewImpactUsd(q.impactCoefWad, -2e18, -3e18, 50_000e18, q.depthUsdWad);
        assertGt(floorCharge, 10_000e18, "the depth floor would price this exit absurdly");
        close(alice, BTC); // never blocked ...
        assertEq(engine.position(alice, BTC).sizeWad, 0);
        assertEq(engine.badDebtTotal(), bad0, "no bad debt from a fair exit");
        uint256 outageCost = uint256(c0 - engine.collateralOf(alice));
        emit log_named_decimal_uint("close cost, depth feed ok (USDC)", normalCost, 6);
        emit log_named_decimal_uint("close cost, depth feed down (USDC)", outageCost, 6);
        // ... and priced at open-time depth: at most a few units off the normal cost (rounding up).
        assertLe(outageCost, normalCost + 2, "exit not priced at the depth floor");
    }

    /// @notice A partial reduce during a depth outage costs what it costs with the depth feed up
    /// (the snapshot pro rata); a liquidation during the outage goes through and clears the account.
    function test_depthFeedFault_reduceAndLiquidationPayAtMostSnapshot() public {
        openMax(carol, BTC, true);
        int256 half = engine.position(carol, BTC).sizeWad / 2;
        int256 c0 = engine.collateralOf(carol);
        uint256 snap = vm.snapshotState();
        trade(carol, BTC, -half, 0);
        uint256 normalCost = uint256(c0 - engine.collateralOf(carol));
        vm.revertToState(snap);

        _break(uint256(FeedKind.Depth), Fault.Reverting);
        trade(carol, BTC, -half, 0);
        uint256 outageCost = uint256(c0 - engine.collateralOf(carol));
        assertLe(outageCost, normalCost + 2, "reduce pays the snapshot pro rata, not the depth floor");

        setPrice(44_000);
        assertTrue(engine.isLiquidatable(carol));
        flagAndLiquidate(liquidator, carol, BTC);
        assertFalse(engine.isLiquidatable(carol));
    }

    /// @notice Finding L3 fixed (engine v2): a bad price in one market no longer shields the rest
    /// of the account. The bad market is valued at its last good price moved against the position
    /// by maxMmf and cannot itself be liquidated (PriceFeedInvalid); the BTC position is
    /// liquidated during the outage (it used to revert PriceFeedInvalid(THIN) until the feed
    /// came back).
    function test_L3fixed_badPriceInOneMarketDoesNotBlockLiquidationElsewhere() public {
        trade(carol, THIN, 1e18, 0); // $10 of the small market
        openMax(carol, BTC, true);
        vm.prank(admin);
        marketFeeds[THIN][0].setReverting(true);
        setPrice(46_000); // carol's BTC position is far under water
        assertTrue(engine.isLiquidatable(carol));
        assertEq(engine.liquidationMarket(carol), BTC);
        flagAndWait(carol, BTC);
        vm.prank(liquidator);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, THIN));
        engine.liquidate(carol, THIN);
        uint256 bad0 = engine.badDebtTotal();
        vm.prank(liquidator);
        engine.liquidate(carol, BTC);
        assertTrue(!engine.isLiquidatable(carol) || engine.position(carol, BTC).sizeWad == 0);
        assertEq(engine.position(carol, THIN).sizeWad, 1e18, "the bad market is left alone");
        assertEq(engine.badDebtTotal(), bad0, "no bad debt: the account still held the THIN dust");
    }

    /// @notice Any fault of the price feed: no order settles at the bad round (the first round
    /// after the delay), liquidation and margin release revert PriceFeedInvalid, the quote reports
    /// priceOk = false; deposits and position-free withdrawals work. Orders stuck behind the bad
    /// round expire and are refunded; everything resumes with a good price.
    function testFuzz_priceFeedFault_revertsPriceFeedInvalid(uint256 faultSeed) public {
        Fault fault = Fault(faultSeed % N_FAULTS);
        vm.prank(bob);
        engine.commitOrder(BTC, 0.1e18, 0);
        vm.prank(alice);
        engine.commitClose(BTC, 0);
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        assertTrue(_break(0, fault));
        (bool ok,) = controller.readFeed(BTC, FeedKind.Price);
        assertFalse(ok);
        bytes memory err = abi.encodeWithSelector(ErrorsLib.PriceFeedInvalid.selector, BTC);

        uint80 r = fault == Fault.Reverting ? 1 : latestRound(BTC);
        vm.expectRevert();
        engine.settleOrder(bob, BTC, r);
        vm.expectRevert();
        engine.settleOrder(alice, BTC, r);
        vm.prank(liquidator);
        vm.expectRevert(err);
        engine.liquidate(alice, BTC);
        vm.prank(alice);
        vm.expectRevert(err);
        engine.withdraw(1 * USDC);
        assertFalse(controller.quote(BTC, true, 1e18).priceOk);

        fund(alice, 100 * USDC); // deposits always work
        vm.prank(carol);
        engine.withdraw(1 * USDC); // no position: no price needed

        // The orders expire; anyone cancels them and the fees are refunded.
        Order memory o = engine.order(alice, BTC);
        vm.warp(uint256(o.commitSec) + engine.orderMinDelaySec() + engine.orderWindowSec() + 1);
        int256 ca = engine.collateralOf(alice);
        engine.cancelExpiredOrder(alice, BTC);
        engine.cancelExpiredOrder(bob, BTC);
        assertEq(engine.collateralOf(alice), ca + int256(SETTLE_FEE));
        assertEq(engine.orderEscrow(), 0);

        vm.prank(admin);
        feeds[0].setReverting(false);
        setPrice(50_000);
        refreshFeeds();
        close(alice, BTC);
        assertEq(engine.position(alice, BTC).sizeWad, 0, "closing resumes with a good price");
    }

    /// @notice The boundaries themselves are accepted: heartbeat to the second, min and max bounds.
    function test_boundaryAnswersAccepted() public {
        vm.prank(admin);
        feeds[0].transmitAt(50_000e8, block.timestamp - 3600);
        (bool ok,) = controller.readFeed(BTC, FeedKind.Price);
        assertTrue(ok, "exactly heartbeat old");
        setFeed(1, 10e8);
        (ok,) = controller.readFeed(BTC, FeedKind.Volatility);
        assertTrue(ok, "max bound");
        setFeed(3, 1_000e8);
        (ok,) = controller.readFeed(BTC, FeedKind.Depth);
        assertTrue(ok, "min bound");
    }

    // ---------------------------------------------------------------- sequencer

    function _sequencerDownChecks() internal {
        assertFalse(controller.sequencerUp());
        bytes memory down = abi.encodeWithSelector(ErrorsLib.SequencerDown.selector);
        expectTradeRevert(bob, BTC, 0.01e18, 0, down);
        expectTradeRevert(alice, BTC, 0.01e18, 0, down);
        vm.prank(alice);
        vm.expectRevert(ErrorsLib.SequencerDown.selector);
        engine.withdraw(1 * USDC);
        setPrice(40_500); // alice under water
        assertTrue(engine.isLiquidatable(alice));
        vm.prank(liquidator);
        vm.expectRevert(ErrorsLib.SequencerDown.selector);
        engine.liquidate(alice, BTC);
        setPrice(50_000);
        vm.prank(bob);
        engine.withdraw(1 * USDC); // no position
        _assertDeRiskingWorks();
    }

    /// @notice Sequencer down: no new risk, no margin release, no liquidation; de-risking works.
    function test_sequencerDown() public {
        vm.prank(admin);
        seq.transmit(1);
        _sequencerDownChecks();
    }

    /// @notice Back up but within the grace period: still closed; open after it.
    function testFuzz_sequencerWithinGrace(uint256 sinceUp) public {
        // still within the grace period when an order committed now settles
        sinceUp = bound(sinceUp, 0, GRACE - engine.orderMinDelaySec());
        vm.prank(admin);
        seq.transmitAt(0, block.timestamp - sinceUp);
        uint256 snap = vm.snapshotState();
        _sequencerDownChecks();
        vm.revertToState(snap);
        vm.warp(block.timestamp + (GRACE - sinceUp) + 1);
        refreshFeeds();
        assertTrue(controller.sequencerUp(), "up after the grace period");
        trade(bob, BTC, 0.01e18, 0);
    }

    /// @notice A reverting sequencer feed, a status from the future or a zero start: down.
    function test_sequencerFeedFaults_readAsDown() public {
        uint256 snap = vm.snapshotState();
        vm.prank(admin);
        seq.setReverting(true);
        _sequencerDownChecks();
        vm.revertToState(snap);
        vm.prank(admin);
        seq.transmitAt(0, block.timestamp + 1);
        assertFalse(controller.sequencerUp(), "started in the future");
        vm.prank(admin);
        seq.transmitAt(0, 0);
        assertFalse(controller.sequencerUp(), "never started");
    }
}
