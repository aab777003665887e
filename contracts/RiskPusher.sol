// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ILeverageController} from "../interfaces/ILeverageController.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IRiskReport} from "../interfaces/IRiskReport.sol";

/// @notice A keeper-pushed feed (the project's `MockAggregator`, or any feed with this entry point).
interface ITransmitFeed {
    function transmit(int256 answer) external;
}

/// @notice The dynamic controller's published-tail entry point.
interface ITailReporter {
    function publishTail(uint256 marketId, uint256 tailLongWad, uint256 tailShortWad) external;
}

/// @title RiskPusher
/// @notice One keeper transaction that publishes feed answers, then commits each market's
/// maintenance target (`poke`) and accrues its funding: nothing can run between a risk push and
/// the poke it calls for (a liquidation between them could close part of an account the poke
/// would have made healthy).
/// @dev The pusher must be a transmitter of every feed it pushes. A poke or an accrual that
/// reverts (a bad risk or price feed) does not undo the pushes: it is reported by an event.
contract RiskPusher is AccessControl {
    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");

    /// @notice One market's risk report: the fields of `answers` selected by `mask` (bit k-1 for
    /// `FeedKind` k: volatility, funding, depth, skew), feed decimals (`IRiskReport.submitReport`).
    struct ReportInput {
        uint256 marketId;
        uint256 mask;
        int256[4] answers;
    }

    ILeverageController public immutable controller;
    IMarginEngine public immutable engine;

    error LengthMismatch(uint256 feeds, uint256 answers);
    error TailLengthMismatch(uint256 markets, uint256 tailsLong, uint256 tailsShort);

    event Pushed(uint256 feeds, uint256 reports, uint256 markets);
    event PokeFailed(uint256 indexed marketId, bytes reason);
    event AccrueFailed(uint256 indexed marketId, bytes reason);

    constructor(address admin, ILeverageController controller_, IMarginEngine engine_) {
        controller = controller_;
        engine = engine_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(KEEPER_ROLE, admin);
    }

    /// @notice Publishes `answers[i]` (feed decimals, not WAD) to `feeds[i]` (the price
    /// aggregators), writes each risk report of `reports` to the controller, then pokes and accrues
    /// every market of `markets`, in this order, in this transaction. The pusher needs the
    /// controller's REPORTER_ROLE for reports; a report the controller rejects reverts the push.
    function push(
        address[] calldata feeds,
        int256[] calldata answers,
        ReportInput[] calldata reports,
        uint256[] calldata markets
    ) external onlyRole(KEEPER_ROLE) {
        _transmit(feeds, answers);
        _report(reports);
        _pokeAndAccrue(markets);
        emit Pushed(feeds.length, reports.length, markets.length);
    }

    /// @notice `push`, with each market's calibrated tails (`tailsLong[i]`, `tailsShort[i]` for
    /// `markets[i]`, WAD) published to the controller after the feeds and before its poke. The
    /// pusher needs the controller's REPORTER_ROLE; a tail out of bounds reverts the whole push.
    function pushWithTails(
        address[] calldata feeds,
        int256[] calldata answers,
        ReportInput[] calldata reports,
        uint256[] calldata markets,
        uint256[] calldata tailsLong,
        uint256[] calldata tailsShort
    ) external onlyRole(KEEPER_ROLE) {
        if (tailsLong.length != markets.length || tailsShort.length != markets.length) {
            revert TailLengthMismatch(markets.length, tailsLong.length, tailsShort.length);
        }
        _transmit(feeds, answers);
        _report(reports);
        for (uint256 i; i < markets.length; ++i) {
            ITailReporter(address(controller)).publishTail(markets[i], tailsLong[i], tailsShort[i]);
        }
        _pokeAndAccrue(markets);
        emit Pushed(feeds.length, reports.length, markets.length);
    }

    function _transmit(address[] calldata feeds, int256[] calldata answers) internal {
        if (feeds.length != answers.length) revert LengthMismatch(feeds.length, answers.length);
        for (uint256 i; i < feeds.length; ++i) {
            ITransmitFeed(feeds[i]).transmit(answers[i]);
        }
    }

    function _report(ReportInput[] calldata reports) internal {
        for (uint256 i; i < reports.length; ++i) {
            IRiskReport(address(controller)).submitReport(reports[i].marketId, reports[i].mask, reports[i].answers);
        }
    }

    function _pokeAndAccrue(uint256[] calldata markets) internal {
        for (uint256 i; i < markets.length; ++i) {
            try controller.poke(markets[i]) {}
            catch (bytes memory reason) {
                emit PokeFailed(markets[i], reason);
            }
            try engine.accrueFunding(markets[i]) {}
            catch (bytes memory reason) {
                emit AccrueFailed(markets[i], reason);
            }
        }
    }
}
