// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FeedKind} from "./ILeverageController.sol";

/// @title IRiskReport
/// @notice A controller's own risk report: each market's volatility, funding, depth and skew
/// written by a keeper in one transaction (`submitReport`) and read by the controller from its own
/// storage (three slots) instead of four external feeds. Each field keeps its own timestamp and is
/// checked against its own heartbeat and bounds at every read, exactly as an aggregator answer is.
/// A `ReportFeed` adapter per field exposes it as a Chainlink-style `AggregatorV3Interface`.
interface IRiskReport {
    /// @notice Writes the fields of `answers` selected by `mask` (bit k-1 for `FeedKind` k: 1
    /// volatility, 2 funding, 3 depth, 4 skew), each in its feed's decimals (as an aggregator
    /// answer), timestamped now. REPORTER_ROLE.
    function submitReport(uint256 marketId, uint256 mask, int256[4] calldata answers) external;

    /// @notice The latest reported answer of a field (feed decimals), when it was written (0:
    /// never) and its round id: the field's write count (+1 per write, as an aggregator's rounds;
    /// it restarts after 2^23 writes: 16 years at one a minute). An answer outside int128 reads as the int128 extreme of its sign (out of bounds).
    function reportRound(uint256 marketId, FeedKind kind)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 updatedAt);
}

/// @notice What a `ReportFeed` adapter serves: the controller, market and field it reads.
interface IReportSource {
    function source() external view returns (address controller, uint256 marketId, FeedKind kind);
}
