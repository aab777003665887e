// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice Which input a feed carries. The index into a market's feed arrays.
/// @dev Price: USD per base unit (> 0). Volatility: annualized realized volatility, 1.0 = 100%
/// (> 0). Funding: funding rate per hour, signed, positive means longs pay shorts. Depth: USD
/// notional that moves the price by `impactWad` (> 0). Skew: options 25-delta risk reversal in
/// volatility units (call IV minus put IV), signed; negative means downside protection is bid.
enum FeedKind {
    Price,
    Volatility,
    Funding,
    Depth,
    Skew
}

/// @notice Where one input of a market comes from and what answers are acceptable.
/// @param feed Chainlink-style aggregator.
/// @param heartbeatSec An answer older than this many seconds is stale.
/// @param minWad Smallest acceptable answer, scaled to WAD (1e18). Must be > 0 for price,
/// volatility and depth.
/// @param maxWad Largest acceptable answer, scaled to WAD.
struct FeedConfig {
    address feed;
    uint32 heartbeatSec;
    int128 minWad;
    int128 maxWad;
}

/// @notice A market's risk model parameters. Every `...Wad` field is a WAD (1e18 = 1.0).
/// @dev Every field is "larger is tighter" except `fundingThresholdWad` (larger is looser) and
/// the two ramp fields, which only shape how maintenance tightens.
/// @param zWad One-sided standard normal quantile of the target confidence alpha (2.326e18 for 99%).
/// @param skewSensWad Tail multiplier slope: tail = 1 + skewSens * adverse skew (volatility units).
/// @param tailCapWad Largest tail multiplier (>= 1e18).
/// @param bufferMultWad Initial-margin buffer above maintenance, as a multiple of the VaR move.
/// @param minBufferWad Constant part of the buffer between initial and maintenance margin.
/// @param liqFeeWad Liquidation penalty, a fraction of the notional closed by a liquidation.
/// @param impactWad Price impact of trading the depth feed's notional (0.01e18 = 1%).
/// @param crowdWad Initial-margin add-on of the crowded side when its net open-interest imbalance
/// reaches the depth feed's notional (scales linearly below).
/// @param fundingSensWad Initial-margin add-on per unit of hourly funding paid above the threshold.
/// @param fundingThresholdWad Hourly funding rate (0.0005e18 = 0.05%/h) the payer may pay penalty free.
/// @param horizonSec Liquidation horizon h in seconds: how long a liquidation may take.
/// @param rampJitterSec Width of the random delay before a maintenance tightening starts.
/// @param minImfWad Initial margin floor (1 / max leverage cap).
/// @param maxImfWad Initial margin cap (1 / min leverage floor); also the fail-closed level.
/// @param minMmfWad Maintenance margin floor.
/// @param maxMmfWad Maintenance margin cap.
/// @param mmfRampWadPerSec Largest rise of the maintenance fraction per second during a tightening.
/// @param volRefWad Long-run (calm) annualized volatility of the market (0.5e18 = 50%).
/// @param regimeSensWad Tail multiplier slope per unit of relative excess volatility:
/// tail += regimeSens * max(0, sigma - volRef) / volRef (crashes cluster in high-volatility regimes).
struct RiskParams {
    uint64 zWad;
    uint64 skewSensWad;
    uint64 tailCapWad;
    uint64 bufferMultWad;
    uint64 minBufferWad;
    uint64 liqFeeWad;
    uint64 impactWad;
    uint64 crowdWad;
    uint96 fundingSensWad;
    uint64 fundingThresholdWad;
    uint32 horizonSec;
    uint32 rampJitterSec;
    uint64 minImfWad;
    uint64 maxImfWad;
    uint64 minMmfWad;
    uint64 maxMmfWad;
    uint64 mmfRampWadPerSec;
    uint64 volRefWad;
    uint64 regimeSensWad;
}

/// @notice Everything the engine needs about one position of a market, read once.
/// @param priceWad Oracle price, USD per base unit, WAD; 0 when `priceOk` is false.
/// @param priceTimeSec When the price answer was published (the feed's updatedAt), unix seconds.
/// @param fundingRateWad Hourly funding rate, WAD, signed (longs pay when positive). 0 when
/// `fundingOk` is false (the engine then keeps its last good rate).
/// @param fundingTimeSec When the funding answer was published, unix seconds (0 when bad).
/// @param imfWad Initial margin fraction for a position of the quoted size and side, WAD.
/// @param mmfBaseWad Size-independent maintenance fraction now in force for that side, WAD.
/// @param maxMmfWad Cap on a position's maintenance fraction, WAD.
/// @param maxImfWad Cap on the initial margin fraction (the fail-closed level), WAD.
/// @param slipWad Slippage fraction of closing the quoted position against the depth, WAD.
/// @param impactCoefWad Price impact of moving the market's skew by the depth's notional (the
/// `impactWad` parameter), WAD; the engine charges the integral over the skew it moves.
/// @param depthUsdWad Depth input in force (the floor while the depth feed is bad), USD, WAD.
/// @param liqFeeWad Liquidation penalty fraction, WAD.
/// @param priceOk False when the price feed is stale, non-positive, reverting or out of bounds.
/// @param riskFeedsOk False when a risk feed is stale or out of bounds (then imf = maxImf).
/// @param fundingOk False when the funding feed is stale or out of bounds.
/// @param sequencerUp False while the L2 sequencer is down or within its grace period.
struct MarketQuote {
    uint256 priceWad;
    uint256 priceTimeSec;
    int256 fundingRateWad;
    uint256 fundingTimeSec;
    uint256 imfWad;
    uint256 mmfBaseWad;
    uint256 maxMmfWad;
    uint256 maxImfWad;
    uint256 slipWad;
    uint256 impactCoefWad;
    uint256 depthUsdWad;
    uint256 liqFeeWad;
    bool priceOk;
    bool riskFeedsOk;
    bool fundingOk;
    bool sequencerUp;
}

/// @notice One round of a market's price feed, read for settling at it (`quoteAtRound`).
/// @param roundId The round (the latest when 0 was asked).
/// @param answer Its raw answer.
/// @param answerWad The answer scaled to WAD; 0 when it is not positive, too large or outside the
/// feed's bounds.
/// @param updatedAt Its publication time.
/// @param prevUpdatedAt Publication time of round `roundId - 1`; 0 when `roundId <= 1` or that
/// round cannot be read.
struct PriceRound {
    uint80 roundId;
    int256 answer;
    uint256 answerWad;
    uint256 updatedAt;
    uint256 prevUpdatedAt;
}

/// @title ILeverageController
/// @notice Prices leverage: for a (market, side, size) it returns the initial and maintenance
/// margin fractions derived from the live feeds. Max leverage = 1 / initial margin fraction.
/// @dev Units: fractions and leverage are WAD (1e18 = 1.0 = 1x); prices are USD per base unit in
/// WAD; sizes are base units in WAD; notionals are USD in WAD; times are unix seconds.
interface ILeverageController {
    /// @notice The quote the engine uses for every check on a position.
    /// @param marketId Market id (< 256).
    /// @param isLong Side of the position.
    /// @param positionSizeWad Absolute position size after the action, base units, WAD.
    /// @dev Never reverts on a bad feed: a bad price gives `priceOk = false` (the engine then
    /// values the market conservatively and settles nothing in it); risk-feed faults fail closed.
    /// Reverts `MarketNotListed` for an unknown market.
    function quote(uint256 marketId, bool isLong, uint256 positionSizeWad)
        external
        view
        returns (MarketQuote memory q);

    /// @notice `quote` with the market's gross open interest given by the caller (long, short,
    /// base units, WAD) instead of read back from the bound engine: the engine passes its own, the
    /// numbers `quote` would read, and saves the callback. A view: anyone may call it with any
    /// figures; only the engine's own call prices its positions.
    function quoteWithOpenInterest(
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLongWad,
        uint256 oiShortWad
    ) external view returns (MarketQuote memory q);

    /// @notice `quoteWithOpenInterest`, plus round `roundId` of the market's price feed (0: its
    /// latest round) and the time of the round before it, in one call: the engine settles an order
    /// (or a liquidation) at the first round published after the commit (or the flag) and checks
    /// that from these figures. A feed that reverts for the round gives it time 0 and answer 0.
    function quoteAtRound(
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLongWad,
        uint256 oiShortWad,
        uint80 roundId
    ) external view returns (MarketQuote memory q, PriceRound memory r);

    /// @notice The configuration of one feed of a market (the engine reads the price feed's
    /// rounds through it to settle orders at a price published after they were committed).
    function feedConfig(uint256 marketId, FeedKind kind) external view returns (FeedConfig memory);

    /// @notice Oracle price of a market, USD per base unit, WAD. Reverts when invalid.
    function priceWad(uint256 marketId) external view returns (uint256);

    /// @notice Initial margin fraction for a new position of `notionalUsdWad` on a side, WAD.
    function initialMarginFraction(uint256 marketId, bool isLong, uint256 notionalUsdWad)
        external
        view
        returns (uint256 imfWad);

    /// @notice Maintenance fraction now in force for a fresh position of `notionalUsdWad`, WAD.
    function maintenanceMarginFraction(uint256 marketId, bool isLong, uint256 notionalUsdWad)
        external
        view
        returns (uint256 mmfWad);

    /// @notice Largest leverage allowed for a new small position on a side: 1 / IMF, WAD (1e18 = 1x).
    function maxLeverageWad(uint256 marketId, bool isLong) external view returns (uint256);

    /// @notice Whether a market id is listed.
    function isListed(uint256 marketId) external view returns (bool);

    /// @notice Commits the live maintenance target of both sides of a market. Loosening applies at
    /// once; tightening starts after a random delay and rises at a bounded rate. Permissionless.
    /// @dev Reverts `RiskFeedInvalid` when the volatility or skew feed is bad (nothing moves then).
    function poke(uint256 marketId) external;
}
