// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FeedKind} from "../../interfaces/ILeverageController.sol";

/// @notice The fields of `RiskParams` (and engine or static settings) named by parameter errors.
enum ParamField {
    Z,
    SkewSens,
    TailCap,
    BufferMult,
    MinBuffer,
    LiqFee,
    Impact,
    Crowd,
    FundingSens,
    FundingThreshold,
    Horizon,
    RampJitter,
    MinImf,
    MaxImf,
    MinMmf,
    MaxMmf,
    MmfRamp,
    VolRef,
    RegimeSens,
    SequencerGrace
}

/// @title ErrorsLib
/// @notice Every rejection in Ballast, each with the data that explains it.
library ErrorsLib {
    // Markets and feeds.
    error MarketNotListed(uint256 marketId);
    error MarketAlreadyListed(uint256 marketId);
    error MarketIdOutOfRange(uint256 marketId, uint256 maxMarkets);
    error FeedMissing(uint256 marketId, FeedKind kind);
    error FeedBoundsInvalid(uint256 marketId, FeedKind kind, int256 minWad, int256 maxWad);
    error FeedDecimalsInvalid(uint256 marketId, FeedKind kind, uint8 decimals);
    error PriceFeedInvalid(uint256 marketId);
    error RiskFeedInvalid(uint256 marketId);
    /// @notice A published tail multiplier outside [minWad, maxWad].
    error TailOutOfBounds(uint256 marketId, uint256 tailWad, uint256 minWad, uint256 maxWad);
    /// @notice A risk report's field mask must select at least one of the four fields (1..15).
    error ReportMaskInvalid(uint256 marketId, uint256 mask);
    /// @notice The price is never part of the risk report (it stays an aggregator).
    error NotReported(uint256 marketId, FeedKind kind);
    error SequencerDown();
    error ZeroAddress();

    // Parameters and governance.
    error ParamOutOfBounds(ParamField field, uint256 value, uint256 minValue, uint256 maxValue);
    error ParamStepTooLarge(ParamField field, uint256 oldValue, uint256 newValue, uint256 maxStep);
    /// @dev `a` must not exceed `b` (for the buffer checks: a + minBuffer must not exceed b).
    error ParamsInconsistent(ParamField a, ParamField b);
    error DelayOutOfBounds(uint256 delaySec, uint256 minSec, uint256 maxSec);
    error NoPendingChange(uint256 marketId);
    error ChangeNotReady(uint256 marketId, uint256 etaSec, uint256 nowSec);
    error BootstrapSealed();
    error EngineAlreadyBound(address engine);

    // Engine.
    error ZeroAmount();
    error ZeroSize();
    error InsufficientCollateral(int256 collateral, uint256 requested);
    error InitialMarginViolated(int256 equityUsdWad, uint256 initialUsdWad);
    error AccountHealthy(int256 equityUsdWad, uint256 maintenanceUsdWad);
    error NoPosition(address account, uint256 marketId);
    error TooManyPositions(address account, uint256 maxPositions);
    error PriceLimitExceeded(uint256 priceWad, uint256 acceptablePriceWad);
    error SizeOverflow(int256 sizeWad);
    error EngineConfigOutOfBounds(uint256 index, uint256 value, uint256 maxValue);
    error VaultWithdrawTooLarge(uint256 requested, int256 vaultBalance);
    error OrderPending(address account, uint256 marketId);
    error NoOrder(address account, uint256 marketId);
    error OrderNotExpired(address account, uint256 marketId, uint256 expiresAtSec);
    error OrderExpired(address account, uint256 marketId, uint256 expiresAtSec);
    error SettlementRoundInvalid(uint80 roundId, uint256 updatedAtSec, uint256 settleFromSec, uint256 previousUpdatedAtSec);
    error SettlementPriceInvalid(uint256 marketId, uint80 roundId, int256 answer);
    error OpenInterestCapExceeded(uint256 marketId, bool isLong, uint256 openInterestUsdWad, uint256 capUsdWad);
    error LiquidationMarketNotPreferred(uint256 requested, uint256 preferred);
    error NotFlagged(address account);
    error AlreadyFlagged(address account, uint256 flaggedAtSec);
    error PriceTooOld(uint256 marketId, uint256 updatedAtSec, uint256 maxAgeSec);
}
