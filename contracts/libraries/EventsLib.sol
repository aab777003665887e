// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FeedConfig, RiskParams} from "../../interfaces/ILeverageController.sol";

/// @title EventsLib
/// @notice Every state change in Ballast emits one of these. Units as in the interfaces.
library EventsLib {
    // Controller.
    event MarketListed(uint256 indexed marketId, FeedConfig[5] feeds, RiskParams params);
    event MarketProposed(uint256 indexed marketId, uint256 etaSec);
    event ParamsProposed(uint256 indexed marketId, RiskParams params, uint256 etaSec);
    event ParamsExecuted(uint256 indexed marketId, RiskParams params);
    event ParamsCancelled(uint256 indexed marketId);
    event BootstrapSealedEvent(address indexed by);
    event EngineBound(address indexed engine);
    event SequencerFeedSet(address indexed feed, uint256 graceSec);
    /// @notice A risk report written: the fields selected by `mask` (bit k-1: `FeedKind` k) of
    /// `answers` (feed decimals), timestamped `reportedAtSec`.
    event RiskReported(uint256 indexed marketId, uint256 mask, int256[4] answers, uint256 reportedAtSec);
    event TailPublished(uint256 indexed marketId, uint256 tailLongWad, uint256 tailShortWad, uint256 publishedAtSec);
    event MaintenanceLoosened(uint256 indexed marketId, bool isLong, uint256 fromWad, uint256 toWad);
    event MaintenanceTighteningScheduled(
        uint256 indexed marketId, bool isLong, uint256 fromWad, uint256 toWad, uint256 activationSec, uint256 rateWadPerSec
    );
    event MaintenanceTargetRaised(uint256 indexed marketId, bool isLong, uint256 toWad);
    /// @notice A side's settled maintenance recorded for quotes (`settled`, its ramp's end value) or
    /// cleared (a ramp under way: quotes read the ramp). The quoted value does not change.
    event MaintenanceRecordSet(uint256 indexed marketId, bool isLong, bool settled, uint256 valueWad);
    event StaticFractionsSet(uint256 indexed marketId, uint256 imfWad, uint256 mmfWad);

    // Engine.
    event Deposited(address indexed account, address indexed payer, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event PositionModified(
        address indexed account,
        uint256 indexed marketId,
        int256 sizeDeltaWad,
        int256 newSizeWad,
        uint256 priceWad,
        int256 realizedPnlTokens,
        uint256 feeTokens,
        int256 impactTokens
    );
    event OrderCommitted(
        address indexed account,
        uint256 indexed marketId,
        int256 sizeDeltaWad,
        bool closeAll,
        uint256 acceptablePriceWad,
        uint256 settleFromSec,
        uint256 expiresAtSec,
        uint256 settlementFeeTokens
    );
    event OrderSettled(
        address indexed account, uint256 indexed marketId, address indexed settler, uint80 priceRoundId, uint256 fillPriceWad, uint256 settlementFeeTokens
    );
    event OrderCancelled(address indexed account, uint256 indexed marketId, uint256 refundTokens);
    event LiquidationFlagged(address indexed account, address indexed flagger, uint256 settleFromSec);
    event OpenInterestCapSet(uint256 indexed marketId, uint256 capUsdWad);
    event FundingSettled(address indexed account, uint256 indexed marketId, int256 fundingTokens);
    event FundingAccrued(uint256 indexed marketId, int256 rateWad, int256 indexWad, uint256 timestamp);
    event Liquidated(
        address indexed account,
        uint256 indexed marketId,
        address indexed liquidator,
        int256 sizeClosedWad,
        uint256 notionalClosedUsdWad,
        uint256 priceWad,
        uint256 penaltyTokens,
        uint256 rewardTokens
    );
    /// @notice The rest of a liquidation's accounting (with `Liquidated`, every change of the
    /// account's collateral: realized PnL minus penalty minus impact).
    event LiquidationSettled(
        address indexed account, uint256 indexed marketId, int256 realizedPnlTokens, int256 impactTokens, int256 remainingSizeWad
    );
    event BadDebt(address indexed account, uint256 amountTokens, uint256 coveredByInsuranceTokens, uint256 socializedTokens);
    event VaultFunded(address indexed by, uint256 amount);
    event VaultWithdrawn(address indexed to, uint256 amount);
    event InsuranceFunded(address indexed by, uint256 amount);
    event FeesWithdrawn(address indexed to, uint256 amount);
}
