// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ILeverageController} from "../interfaces/ILeverageController.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";

/// @notice A keeper-pushed feed (the project's `MockAggregator`, or any feed with this entry point).
interface ITransmitFeed {
    function transmit(int256 answer) external;
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

    ILeverageController public immutable controller;
    IMarginEngine public immutable engine;

    error LengthMismatch(uint256 feeds, uint256 answers);

    event Pushed(uint256 feeds, uint256 markets);
    event PokeFailed(uint256 indexed marketId, bytes reason);
    event AccrueFailed(uint256 indexed marketId, bytes reason);

    constructor(address admin, ILeverageController controller_, IMarginEngine engine_) {
        controller = controller_;
        engine = engine_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(KEEPER_ROLE, admin);
    }

    /// @notice Publishes `answers[i]` (feed decimals, not WAD) to `feeds[i]`, then pokes and
    /// accrues every market of `markets`, in this order, in this transaction.
    function push(address[] calldata feeds, int256[] calldata answers, uint256[] calldata markets)
        external
        onlyRole(KEEPER_ROLE)
    {
        if (feeds.length != answers.length) revert LengthMismatch(feeds.length, answers.length);
        for (uint256 i; i < feeds.length; ++i) {
            ITransmitFeed(feeds[i]).transmit(answers[i]);
        }
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
        emit Pushed(feeds.length, markets.length);
    }
}
