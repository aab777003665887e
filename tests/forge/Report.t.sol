// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {BaseTest} from "./utils/BaseTest.sol";
import {FeedConfig, FeedKind, MarketQuote} from "../../interfaces/ILeverageController.sol";
import {IRiskReport} from "../../interfaces/IRiskReport.sol";
import {LeverageController} from "../../contracts/LeverageController.sol";
import {ReportFeed} from "../../contracts/ReportFeed.sol";
import {ErrorsLib} from "../../contracts/libraries/ErrorsLib.sol";
import {EventsLib} from "../../contracts/libraries/EventsLib.sol";
import {MockAggregator} from "../../contracts/mocks/MockAggregator.sol";

/// @notice The controller's risk report (issue 14): the four risk inputs written in one call and
/// read from the controller's storage price exactly what the same answers read from aggregators
/// price; each field keeps its own time and bounds; bad input is rejected or fails closed.
contract ReportTest is BaseTest {
    /// @dev The same market priced from aggregators (`feeds`, the same answers).
    LeverageController internal viaFeeds;

    function setUp() public override {
        super.setUp();
        vm.startPrank(admin);
        viaFeeds = new LeverageController(admin, 1 days);
        viaFeeds.listMarket(BTC, feedConfigs(feeds), defaultParams());
        viaFeeds.poke(BTC);
        vm.stopPrank();
    }

    function _report(uint256 mask, int256[4] memory a) internal {
        vm.prank(admin);
        controller.submitReport(BTC, mask, a);
    }

    function _assertSameQuote(MarketQuote memory a, MarketQuote memory b) internal pure {
        assertEq(abi.encode(a), abi.encode(b), "report and aggregators price alike");
    }

    /// @dev Fuzz over the four answers (in and out of bounds) and the position: the quote from the
    /// report equals the quote from aggregators carrying the same answers, field by field.
    function testFuzz_report_quotesLikeAggregators(int64 vol, int64 funding, int64 depth, int64 skew, uint96 size, bool isLong)
        public
    {
        int256[4] memory a = [int256(vol), funding, depth, skew];
        for (uint256 k = 1; k < 5; ++k) {
            setMarketFeed(BTC, k, a[k - 1]); // the mock and the report
        }
        _assertSameQuote(controller.quote(BTC, isLong, size), viaFeeds.quote(BTC, isLong, size));
        (bool okA, uint256 tA) = controller.maintenanceTarget(BTC, isLong);
        (bool okB, uint256 tB) = viaFeeds.maintenanceTarget(BTC, isLong);
        assertEq(okA, okB);
        assertEq(tA, tB);
        for (uint256 k = 1; k < 5; ++k) {
            (bool o1, int256 v1) = controller.readFeed(BTC, FeedKind(k));
            (bool o2, int256 v2) = viaFeeds.readFeed(BTC, FeedKind(k));
            assertEq(o1, o2);
            assertEq(v1, v2);
        }
    }

    /// @dev A field written alone keeps the others' times: after the heartbeat, a report of
    /// volatility only leaves skew stale (new risk fails closed, poke reverts) until it is reported.
    function test_report_eachFieldHasItsOwnTime() public {
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 3601);
        vm.prank(admin);
        feeds[0].transmit(50_000e8);
        _report(1, [int256(0.5e8), 0, 0, 0]);
        (,, uint256 tVol) = controller.reportRound(BTC, FeedKind.Volatility);
        (,, uint256 tSkew) = controller.reportRound(BTC, FeedKind.Skew);
        assertEq(tVol, t0 + 3601);
        assertEq(tSkew, t0);
        assertFalse(controller.quote(BTC, true, 1e18).riskFeedsOk, "stale skew fails closed");
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.RiskFeedInvalid.selector, BTC));
        controller.poke(BTC);
        _report(14, [int256(0), 0, 50_000_000e8, 0]);
        assertTrue(controller.quote(BTC, true, 1e18).riskFeedsOk);
        controller.poke(BTC);
    }

    /// @dev An answer beyond int128 is kept as the extreme of its sign and read as out of bounds:
    /// the field fails closed (it never leaves the previous answer live); the event carries the
    /// answers as submitted.
    function test_report_hugeAnswerSaturatesAndFailsClosed() public {
        int256[4] memory a = [int256(type(int256).max), 0, 0, 0];
        vm.expectEmit(true, false, false, true, address(controller));
        emit EventsLib.RiskReported(BTC, 1, a, block.timestamp);
        _report(1, a);
        (, int256 v,) = controller.reportRound(BTC, FeedKind.Volatility);
        assertEq(v, type(int128).max);
        (bool ok,) = controller.readFeed(BTC, FeedKind.Volatility);
        assertFalse(ok);
        assertEq(controller.quote(BTC, true, 1e18).imfWad, defaultParams().maxImfWad, "new risk at maxImf");
        _report(8, [int256(0), 0, 0, type(int256).min]);
        (, v,) = controller.reportRound(BTC, FeedKind.Skew);
        assertEq(v, type(int128).min);
    }

    /// @dev Who may report, which masks, which markets and fields; a rejected report changes nothing.
    function test_report_rejections() public {
        int256[4] memory a = [int256(0.9e8), 0, 0, 0];
        bytes32 role = controller.REPORTER_ROLE();
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, bob, role));
        controller.submitReport(BTC, 1, a);
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ReportMaskInvalid.selector, BTC, 0));
        controller.submitReport(BTC, 0, a);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.ReportMaskInvalid.selector, BTC, 16));
        controller.submitReport(BTC, 16, a);
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.MarketNotListed.selector, 9));
        controller.submitReport(9, 1, a);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(ErrorsLib.NotReported.selector, BTC, FeedKind.Price));
        controller.reportRound(BTC, FeedKind.Price);
        (, int256 v,) = controller.reportRound(BTC, FeedKind.Volatility);
        assertEq(v, 0.5e8, "unchanged");
    }

    /// @dev The adapter: a Chainlink-style view of one field (latest round only; round id = time).
    function test_reportFeed_aggregatorView() public {
        FeedConfig memory c = controller.feedConfig(BTC, FeedKind.Depth);
        ReportFeed f = ReportFeed(c.feed);
        (address ctl, uint256 m, FeedKind k) = f.source();
        assertEq(ctl, address(controller));
        assertEq(m, BTC);
        assertEq(uint256(k), uint256(FeedKind.Depth));
        assertEq(f.decimals(), 8);
        (uint80 r, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 inRound) = f.latestRoundData();
        assertEq(answer, 50_000_000e8);
        assertEq(updatedAt, block.timestamp);
        assertEq(startedAt, updatedAt);
        assertEq(r, 1, "the first write");
        assertEq(inRound, r);
        (, int256 again,,,) = f.getRoundData(r);
        assertEq(again, answer);
        vm.expectRevert(abi.encodeWithSelector(ReportFeed.RoundNotAvailable.selector, r - 1));
        f.getRoundData(r - 1);
        // Two writes in the same second: distinct, increasing round ids.
        _report(4, [int256(0), 0, 40_000_000e8, 0]);
        (uint80 r2,,,,) = f.latestRoundData();
        assertEq(r2, r + 1);
        vm.expectRevert(abi.encodeWithSelector(ReportFeed.NotAReportedField.selector, FeedKind.Price));
        new ReportFeed(IRiskReport(address(controller)), BTC, FeedKind.Price, 8, "price");
    }

    /// @dev Only the controller's own adapter of the same market and field is read from the
    /// report: another controller's adapter is an ordinary external feed (read through its view);
    /// bounds at the int128 extremes are refused for a reported field (a saturated answer must
    /// read as out of bounds).
    function test_report_listingDetectsOwnAdapterOnly() public {
        vm.startPrank(admin);
        LeverageController other = new LeverageController(admin, 1 days);
        FeedConfig[5] memory c = feedConfigs(feeds);
        // market 3 of `other` lists `controller`'s BTC adapters: external feeds for `other`.
        for (uint256 k = 1; k < 5; ++k) {
            c[k].feed = controller.feedConfig(BTC, FeedKind(k)).feed;
        }
        other.listMarket(3, c, defaultParams());
        vm.stopPrank();
        _report(1, [int256(0.8e8), 0, 0, 0]);
        (bool ok, int256 v) = other.readFeed(3, FeedKind.Volatility);
        assertTrue(ok);
        assertEq(v, 0.8e18, "read through the adapter's view");

        vm.startPrank(admin);
        c = listingConfigs(other, 4, feeds);
        c[1].maxWad = type(int128).max;
        vm.expectRevert(
            abi.encodeWithSelector(ErrorsLib.FeedBoundsInvalid.selector, 4, FeedKind.Volatility, c[1].minWad, c[1].maxWad)
        );
        other.listMarket(4, c, defaultParams());
        vm.stopPrank();
    }
}
