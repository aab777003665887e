// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../../interfaces/AggregatorV3Interface.sol";

/// @title MockAggregator
/// @notice A Chainlink-style feed for local chains and tests, pushed by keepers. Rounds increase
/// by one per `transmit`; every round is kept (`getRoundData` of an unknown round reverts), as on a
/// Chainlink aggregator, so that an order can be settled at the first round after its commit.
/// @dev The owner adds transmitters; tests can back-date an answer or make the feed revert.
contract MockAggregator is AggregatorV3Interface {
    error NotTransmitter(address caller);
    error NotOwner(address caller);
    error RoundNotAvailable(uint80 roundId);
    error FeedReverting();

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event TransmitterSet(address indexed transmitter, bool allowed);
    event RevertingSet(bool reverting);

    uint8 public immutable override decimals;
    address public immutable owner;
    string internal _description;

    int256 internal _answer;
    uint80 internal _roundId;
    uint64 internal _updatedAt;
    uint64 internal _startedAt;
    bool public reverting;
    mapping(address => bool) public isTransmitter;
    /// @dev Answer and timestamp of every round (round 0 never exists).
    mapping(uint80 => int256) internal _answers;
    mapping(uint80 => uint64) internal _times;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        owner = msg.sender;
        _description = description_;
        isTransmitter[msg.sender] = true;
        _push(initialAnswer, block.timestamp);
    }

    function setTransmitter(address who, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        isTransmitter[who] = allowed;
        emit TransmitterSet(who, allowed);
    }

    /// @notice Pushes a new answer, timestamped now.
    function transmit(int256 answer) external {
        if (!isTransmitter[msg.sender]) revert NotTransmitter(msg.sender);
        _push(answer, block.timestamp);
    }

    /// @notice Pushes an answer with an explicit timestamp (tests: stale or future answers).
    function transmitAt(int256 answer, uint256 updatedAt) external {
        if (!isTransmitter[msg.sender]) revert NotTransmitter(msg.sender);
        _push(answer, updatedAt);
    }

    /// @notice Makes every read revert (tests: a broken feed).
    function setReverting(bool r) external {
        if (!isTransmitter[msg.sender]) revert NotTransmitter(msg.sender);
        reverting = r;
        emit RevertingSet(r);
    }

    function description() external view returns (string memory) {
        return _description;
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256, uint256, uint256, uint80)
    {
        if (reverting) revert FeedReverting();
        if (roundId == 0 || roundId > _roundId) revert RoundNotAvailable(roundId);
        uint64 t = _times[roundId];
        return (roundId, _answers[roundId], t, t, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (reverting) revert FeedReverting();
        return (_roundId, _answer, _startedAt, _updatedAt, _roundId);
    }

    function _push(int256 answer, uint256 updatedAt) internal {
        uint80 r = _roundId + 1;
        _answer = answer;
        _roundId = r;
        _updatedAt = uint64(updatedAt);
        _startedAt = uint64(updatedAt);
        _answers[r] = answer;
        _times[r] = uint64(updatedAt);
        emit AnswerUpdated(answer, r, updatedAt);
    }
}
