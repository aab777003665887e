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

    /// @dev One slot per round: the answer (when it fits in 192 bits) and its timestamp.
    struct Round {
        int192 answer;
        uint64 time;
    }

    /// @dev Marks a round whose answer did not fit in 192 bits (kept in `_wideAnswers`).
    int192 internal constant WIDE = type(int192).min;

    uint80 internal _roundId;
    bool public reverting;
    mapping(address => bool) public isTransmitter;
    /// @dev Every round (round 0 never exists); the latest is `_rounds[_roundId]`.
    mapping(uint80 => Round) internal _rounds;
    /// @dev Answers outside int192 (tests of out-of-range answers).
    mapping(uint80 => int256) internal _wideAnswers;

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
        (int256 a, uint256 t) = _round(roundId);
        return (roundId, a, t, t, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (reverting) revert FeedReverting();
        uint80 r = _roundId;
        (int256 a, uint256 t) = _round(r);
        return (r, a, t, t, r);
    }

    function _round(uint80 r) internal view returns (int256 answer, uint256 time) {
        Round memory rd = _rounds[r];
        answer = rd.answer == WIDE ? _wideAnswers[r] : int256(rd.answer);
        time = rd.time;
    }

    function _push(int256 answer, uint256 updatedAt) internal {
        uint80 r = _roundId + 1;
        _roundId = r;
        if (answer > type(int192).max || answer <= WIDE) {
            _rounds[r] = Round(WIDE, uint64(updatedAt));
            _wideAnswers[r] = answer;
        } else {
            _rounds[r] = Round(int192(answer), uint64(updatedAt));
        }
        emit AnswerUpdated(answer, r, updatedAt);
    }
}
