// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {FeedKind} from "../interfaces/ILeverageController.sol";
import {IReportSource, IRiskReport} from "../interfaces/IRiskReport.sol";

/// @title ReportFeed
/// @notice One field of a controller's risk report as a Chainlink-style aggregator view, for
/// integrators and for the market's feed configuration (a market lists this address as the feed of
/// the field; the controller then reads its own report storage directly). Read-only.
/// @dev Only the latest answer exists (its round id: the field's write count); `getRoundData` of
/// any other round reverts `RoundNotAvailable`. Never written: `latestRoundData` returns a zero timestamp
/// (a consumer treats it as stale).
contract ReportFeed is AggregatorV3Interface, IReportSource {
    error RoundNotAvailable(uint80 roundId);
    error NotAReportedField(FeedKind kind);

    IRiskReport public immutable controller;
    uint256 public immutable marketId;
    FeedKind public immutable kind;
    uint8 public immutable override decimals;
    string internal _description;

    constructor(IRiskReport controller_, uint256 marketId_, FeedKind kind_, uint8 decimals_, string memory description_) {
        if (kind_ == FeedKind.Price) revert NotAReportedField(kind_);
        controller = controller_;
        marketId = marketId_;
        kind = kind_;
        decimals = decimals_;
        _description = description_;
    }

    /// @inheritdoc IReportSource
    function source() external view returns (address, uint256, FeedKind) {
        return (address(controller), marketId, kind);
    }

    function description() external view returns (string memory) {
        return _description;
    }

    function version() external pure returns (uint256) {
        return 1;
    }

    function latestRoundData() public view returns (uint80, int256, uint256, uint256, uint80) {
        (uint80 r, int256 answer, uint256 updatedAt) = controller.reportRound(marketId, kind);
        return (r, answer, updatedAt, updatedAt, r);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        (uint80 r, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 inRound) = latestRoundData();
        if (roundId == 0 || roundId != r) revert RoundNotAvailable(roundId);
        return (r, answer, startedAt, updatedAt, inRound);
    }
}
