// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {FeedConfig, FeedKind, RiskParams} from "../../../interfaces/ILeverageController.sol";
import {LeverageController} from "../../../contracts/LeverageController.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {StaticLeverageController} from "../../../contracts/StaticLeverageController.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSD} from "../../../contracts/mocks/MockUSD.sol";
import {ReportFeed} from "../../../contracts/ReportFeed.sol";
import {Ramp, RampLib} from "../../../contracts/libraries/RampLib.sol";
import {IRiskReport} from "../../../interfaces/IRiskReport.sol";

/// @notice Deploys a dynamic engine with one BTC-like market (id 0) and helpers to move feeds,
/// fund accounts and open positions. Feeds have 8 decimals.
/// @dev By default (`reportMode`) the four risk inputs are the controller's risk report, as in a
/// deployment: each market lists `ReportFeed` adapters for them, and the helpers (`setFeed`,
/// `setMarketFeed`, `refreshFeeds`) write the report; the `MockAggregator`s in `feeds[1..4]` keep
/// the same answers (what `feedAnswer` reads). The price is always a `MockAggregator`. Tests of the
/// aggregator read path override `reportMode` to false.
abstract contract BaseTest is Test {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant BTC = 0;
    uint256 internal constant USDC = 1e6;

    address internal admin = makeAddr("admin");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");
    address internal liquidator = makeAddr("liquidator");

    MockUSD internal usd;
    LeverageController internal controller;
    MarginEngine internal engine;
    MockAggregator[5] internal feeds;
    /// @dev Feeds of markets listed through `listExtraMarket` (BTC's are `feeds`).
    mapping(uint256 marketId => MockAggregator[5]) internal marketFeeds;
    uint256[] internal extraMarkets;
    /// @dev Accounts besides alice, bob and liquidator that `assertConserved` sums (see `track`).
    address[] internal trackedAccounts;

    function defaultParams() internal pure returns (RiskParams memory p) {
        p = RiskParams({
            zWad: 2.326e18,
            skewSensWad: 5e18,
            tailCapWad: 2e18,
            bufferMultWad: 1e18,
            minBufferWad: 0.005e18,
            liqFeeWad: 0.005e18,
            impactWad: 0.01e18,
            crowdWad: 0.2e18,
            fundingSensWad: 20e18,
            fundingThresholdWad: 0.0005e18,
            horizonSec: 3600,
            rampJitterSec: 600,
            minImfWad: 0.01e18,
            maxImfWad: 0.5e18,
            minMmfWad: 0.003e18,
            maxMmfWad: 0.4e18,
            mmfRampWadPerSec: uint64(uint256(0.05e18) / 3600),
            volRefWad: 0.5e18,
            regimeSensWad: 0
        });
    }

    function defaultEngineConfig() internal pure virtual returns (MarginEngine.EngineConfig memory) {
        return MarginEngine.EngineConfig({
            tradingFeeWad: 0.0005e18,
            feeInsuranceShareWad: 0.5e18,
            liquidatorShareWad: 0.5e18,
            liqTargetRatioWad: 1.25e18,
            orderMinDelaySec: 2,
            orderWindowSec: 3600,
            settlementFeeTokens: 1 * USDC,
            withdrawPriceMaxAgeSec: 3600,
            oiDepthMultWad: 100e18,
            liqPenaltyFloorWad: 0.25e18,
            liqPenaltyFullDepthWad: 0.2e18
        });
    }

    function feedConfigs(MockAggregator[5] memory f) internal pure returns (FeedConfig[5] memory c) {
        c[uint256(FeedKind.Price)] = FeedConfig(address(f[0]), 3600, 1e18, 1e25);
        c[uint256(FeedKind.Volatility)] = FeedConfig(address(f[1]), 3600, 0.01e18, 10e18);
        c[uint256(FeedKind.Funding)] = FeedConfig(address(f[2]), 3600, -0.05e18, 0.05e18);
        c[uint256(FeedKind.Depth)] = FeedConfig(address(f[3]), 3600, 1e21, 1e30);
        c[uint256(FeedKind.Skew)] = FeedConfig(address(f[4]), 3600, -1e18, 1e18);
    }

    /// @dev True: risk inputs from the controller's report; false: from the `MockAggregator`s.
    function reportMode() internal pure virtual returns (bool) {
        return true;
    }

    /// @notice `feedConfigs`, with `ReportFeed` adapters of `ctl` for the four risk inputs of
    /// market `id` in report mode.
    function listingConfigs(IRiskReport ctl, uint256 id, MockAggregator[5] memory f)
        internal
        returns (FeedConfig[5] memory c)
    {
        c = feedConfigs(f);
        if (!reportMode()) return c;
        for (uint256 k = 1; k < 5; ++k) {
            c[k].feed = address(new ReportFeed(ctl, id, FeedKind(k), f[k].decimals(), "report"));
        }
    }

    /// @notice Writes the mocks' current risk answers as market `id`'s report (report mode; the
    /// caller must hold REPORTER_ROLE).
    function seedReport(IRiskReport ctl, uint256 id, MockAggregator[5] memory f) internal {
        if (!reportMode()) return;
        ctl.submitReport(id, 15, riskAnswers(f));
    }

    /// @notice The mocks' current answers of the four risk inputs (report order).
    function riskAnswers(MockAggregator[5] memory f) internal view returns (int256[4] memory a) {
        for (uint256 k = 1; k < 5; ++k) {
            (, a[k - 1],,,) = f[k].latestRoundData();
        }
    }

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        vm.startPrank(admin);
        usd = new MockUSD();
        feeds[0] = new MockAggregator(8, "BTC / USD", 50_000e8);
        feeds[1] = new MockAggregator(8, "BTC realized vol", 0.5e8);
        feeds[2] = new MockAggregator(8, "BTC funding per hour", 0);
        feeds[3] = new MockAggregator(8, "BTC depth USD", 50_000_000e8);
        feeds[4] = new MockAggregator(8, "BTC 25d risk reversal", 0);
        controller = new LeverageController(admin, 1 days);
        engine = new MarginEngine(admin, usd, controller, defaultEngineConfig());
        controller.bindEngine(address(engine));
        controller.listMarket(BTC, listingConfigs(controller, BTC, feeds), defaultParams());
        seedReport(controller, BTC, feeds);
        controller.poke(BTC);
        beforeSeal();
        controller.sealBootstrap();
        vm.stopPrank();

        usd.mint(address(this), 100_000_000 * USDC);
        usd.approve(address(engine), type(uint256).max);
        engine.fundVault(50_000_000 * USDC);
        if (insuranceSeed() != 0) engine.fundInsurance(insuranceSeed());
    }

    /// @dev Hook run inside setUp while `admin` is pranked and before the bootstrap is sealed
    /// (list extra markets, set a sequencer feed). Default: nothing.
    function beforeSeal() internal virtual {}

    /// @dev Insurance fund seeded in setUp, token units. Default: 1M.
    function insuranceSeed() internal view virtual returns (uint256) {
        return 1_000_000 * USDC;
    }

    // ---------------------------------------------------------------- helpers

    /// @notice Lists market `id` with fresh 8-decimal feeds (funding and skew 0) and default params,
    /// then pokes it. Call from `beforeSeal` (bootstrap, admin pranked).
    function listExtraMarket(uint256 id, uint256 usdPrice, uint256 vol8, uint256 depthUsd)
        internal
        returns (MockAggregator[5] memory f)
    {
        f[0] = new MockAggregator(8, "price", int256(usdPrice * 1e8));
        f[1] = new MockAggregator(8, "vol", int256(vol8));
        f[2] = new MockAggregator(8, "funding", 0);
        f[3] = new MockAggregator(8, "depth", int256(depthUsd * 1e8));
        f[4] = new MockAggregator(8, "skew", 0);
        controller.listMarket(id, listingConfigs(controller, id, f), defaultParams());
        seedReport(controller, id, f);
        controller.poke(id);
        marketFeeds[id] = f;
        extraMarkets.push(id);
    }

    /// @notice Pushes an 8-decimal answer to feed `k` of any market (BTC or extra); in report
    /// mode a risk input (k > 0) is also written to the market's report, alone.
    function setMarketFeed(uint256 id, uint256 k, int256 answer8) internal {
        MockAggregator f = id == BTC ? feeds[k] : marketFeeds[id][k];
        vm.prank(admin);
        f.transmit(answer8);
        if (reportMode() && k > 0) {
            int256[4] memory a;
            a[k - 1] = answer8;
            vm.prank(admin);
            controller.submitReport(id, 1 << (k - 1), a);
        }
    }

    /// @notice Re-transmits every feed's current answer, timestamped now (after a warp); in report
    /// mode also re-writes each market's whole report.
    /// @dev A side's quoted maintenance is its ramp's value now, and a side recorded as settled
    /// (`settledMaintenance`, read by quotes instead of the ramp) holds its ramp's end value.
    function assertQuotedMaintenanceIsRamp(uint256 marketId, bool isLong) internal view {
        Ramp memory r = controller.ramp(marketId, isLong);
        uint256 v = RampLib.valueAt(r, block.timestamp);
        assertEq(controller.quote(marketId, isLong, 0).mmfBaseWad, v, "quote differs from the ramp");
        (bool settled, uint256 rec) = controller.settledMaintenance(marketId, isLong);
        if (settled) {
            assertEq(rec, v, "record differs from the ramp");
            assertGe(v, r.toWad, "recorded before the ramp's end");
        }
    }

    function refreshFeeds() internal {
        _refreshMarket(BTC, feeds);
        for (uint256 i; i < extraMarkets.length; ++i) {
            _refreshMarket(extraMarkets[i], marketFeeds[extraMarkets[i]]);
        }
    }

    function _refreshMarket(uint256 id, MockAggregator[5] memory f) private {
        for (uint256 k; k < 5; ++k) {
            _refresh(f[k]);
        }
        if (!reportMode() || !controller.isListed(id)) return;
        int256[4] memory a = riskAnswers(f);
        vm.prank(admin);
        controller.submitReport(id, 15, a);
    }

    /// @notice Advances time by `dt` seconds and refreshes every feed.
    function skipAndRefresh(uint256 dt) internal {
        vm.warp(block.timestamp + dt);
        refreshFeeds();
    }

    function _refresh(MockAggregator f) private {
        if (f.reverting()) return;
        (, int256 answer,,,) = f.latestRoundData();
        vm.prank(admin);
        f.transmit(answer);
    }

    /// @notice Current answer of BTC feed `k` (8 decimals).
    function feedAnswer(uint256 k) internal view returns (int256 answer) {
        (, answer,,,) = feeds[k].latestRoundData();
    }

    function setFeed(uint256 k, int256 answer8) internal {
        setMarketFeed(BTC, k, answer8);
    }

    function setPrice(uint256 usdPerBtc) internal {
        setFeed(0, int256(usdPerBtc * 1e8));
    }

    function fund(address who, uint256 amountTokens) internal {
        usd.mint(who, amountTokens);
        vm.startPrank(who);
        usd.approve(address(engine), type(uint256).max);
        engine.deposit(amountTokens);
        vm.stopPrank();
    }

    /// @notice Opens (or changes) `who`'s BTC position by `sizeWad`: commit, then settle at the
    /// first price published after the minimum delay (the same answer, re-published).
    function open(address who, int256 sizeWad) internal {
        trade(who, BTC, sizeWad, 0);
    }

    /// @notice Commit and settle an order of `who` in market `id` (see `open`).
    function trade(address who, uint256 id, int256 sizeWad, uint256 acceptablePriceWad) internal {
        vm.prank(who);
        engine.commitOrder(id, sizeWad, acceptablePriceWad);
        settle(who, id);
    }

    /// @notice Commit and settle a close-all order of `who` in market `id`.
    function close(address who, uint256 id) internal {
        vm.prank(who);
        engine.commitClose(id, 0);
        settle(who, id);
    }

    /// @notice Waits the minimum delay, re-publishes market `id`'s price and settles `who`'s order
    /// at that round (as the settlement keeper, `address(this)`).
    function settle(address who, uint256 id) internal {
        waitAndPublish(id);
        engine.settleOrder(who, id, latestRound(id));
    }

    /// @notice Waits the minimum delay and re-publishes market `id`'s current price answer.
    function waitAndPublish(uint256 id) internal {
        vm.warp(block.timestamp + engine.orderMinDelaySec());
        MockAggregator f = priceFeed(id);
        (, int256 answer,,,) = f.latestRoundData();
        vm.prank(admin);
        f.transmit(answer);
    }

    /// @notice Flags `who` for liquidation, waits the minimum delay and re-publishes market `id`'s
    /// price, so that `engine.liquidate(who, id)` can settle at that round next.
    function flagAndWait(address who, uint256 id) internal {
        engine.flagLiquidation(who);
        waitAndPublish(id);
    }

    /// @notice The settlement step alone, at the latest round (for `expectRevert` on settlement).
    function settleAtLatest(address who, uint256 id) internal {
        engine.settleOrder(who, id, latestRound(id));
    }

    function priceFeed(uint256 id) internal view returns (MockAggregator) {
        return id == BTC ? feeds[0] : marketFeeds[id][0];
    }

    function latestRound(uint256 id) internal view returns (uint80 r) {
        (r,,,,) = priceFeed(id).latestRoundData();
    }

    /// @notice A labelled account that `assertConserved` includes.
    function track(string memory name) internal returns (address a) {
        a = makeAddr(name);
        trackedAccounts.push(a);
    }

    /// @notice The liquidation penalty fraction `engine` charges an account of health `h` in a
    /// market of fee `liqFeeWad`, restated from the documented rule (not from the library):
    /// liqFee x min(1, floor + (1 - floor) x d / fullDepth), d = (maintenance - equity) /
    /// maintenance (1 when equity <= 0, 0 when not under maintenance), each step rounded up.
    function depthScaledFee(uint256 liqFeeWad, Health memory h) internal view returns (uint256) {
        uint256 floor = engine.liqPenaltyFloorWad();
        uint256 d;
        if (h.equityUsdWad <= 0) {
            d = WAD;
        } else if (uint256(h.equityUsdWad) < h.maintenanceUsdWad) {
            d = FixedPointMathLib.divWadUp(h.maintenanceUsdWad - uint256(h.equityUsdWad), h.maintenanceUsdWad);
        }
        uint256 share = floor + FixedPointMathLib.mulDivUp(WAD - floor, d, engine.liqPenaltyFullDepthWad());
        if (share > WAD) share = WAD;
        return FixedPointMathLib.mulWadUp(liqFeeWad, share);
    }

    /// @notice Token conservation: the engine's balance equals every bucket.
    function assertConserved() internal view {
        address[4] memory accts = [alice, bob, liquidator, address(this)];
        int256 sum;
        for (uint256 i; i < accts.length; ++i) {
            sum += engine.collateralOf(accts[i]);
        }
        for (uint256 i; i < trackedAccounts.length; ++i) {
            sum += engine.collateralOf(trackedAccounts[i]);
        }
        int256 buckets = sum + engine.vaultBalance() + int256(engine.insuranceFund()) + int256(engine.protocolFees())
            + int256(engine.orderEscrow()) + int256(engine.impactPools());
        assertEq(int256(usd.balanceOf(address(engine))), buckets, "token conservation");
        assertEq(usd.balanceOf(address(engine)), engine.netDeposits(), "net deposits");
    }
}
