// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title AggregatorV3Interface
/// @notice The Chainlink price/data feed read interface, declared here because the npm Chainlink
/// package does not install offline. Ballast reads every market input through it.
/// @dev Units: `answer` is a fixed-point number with `decimals()` decimals; `updatedAt` and
/// `startedAt` are unix seconds. For an L2 sequencer uptime feed, `answer` 0 means up, 1 down, and
/// `startedAt` is when the current status began.
interface AggregatorV3Interface {
    /// @notice Number of decimals of `answer`.
    function decimals() external view returns (uint8);

    /// @notice Human-readable description, e.g. "BTC / USD".
    function description() external view returns (string memory);

    /// @notice Version of the aggregator implementation.
    function version() external view returns (uint256);

    /// @notice Data of a given round.
    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80 roundId_, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    /// @notice Data of the latest round.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
