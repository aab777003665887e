// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Health} from "./IMarginEngine.sol";

/// @notice What settling an order would do now, computed with the engine's own arithmetic.
/// @param fillPriceWad The fill price the preview used (the argument, or the live price when 0), WAD.
/// @param newSizeWad Position size after the order, base units, WAD (signed).
/// @param impactTokens Signed impact: a charge (> 0) paid into the market's impact pool, a rebate
/// (< 0) paid out of it (never more than the pool holds), token units.
/// @param feeTokens Trading fee on the traded notional at the fill price, token units.
/// @param settlementFeeTokens Settlement fee escrowed at commit (paid to whoever settles), token
/// units. Deducted from the collateral by the preview unless the account already has a pending
/// order in the market (then it is escrowed already).
/// @param effectivePriceWad Fill price plus (buy) or minus (sell) fee and impact per unit, rounded
/// against the trader: what `acceptablePriceWad` bounds, WAD.
/// @param realizedPnlTokens PnL realized by the reduced part, token units (rounded down).
/// @param fundingTokens Funding settled into collateral before the trade (> 0: paid), token units.
/// @param collateralAfterTokens Collateral after the settlement, token units.
/// @param imfWad Initial margin fraction the position faces after the order changes the open
/// interest (the engine's check), WAD.
/// @param mmfWad Maintenance fraction of the position after the order, WAD.
/// @param openInterestUsdWad Gross open interest of the side the order grows, after it, at the
/// live price, USD WAD (0 for a pure reduction: no cap applies).
/// @param openInterestCapUsdWad The cap on it: min(hard cap, oiDepthMult x depth), USD WAD.
/// @param healthAfter The account's health after the settlement at live prices (what
/// `MarginEngine.health` returns then).
/// @param ok Whether the settlement would succeed.
/// @param errorSelector The custom error the commit or the settlement would revert with (the
/// first the engine would hit), 0 when `ok`.
struct OrderPreview {
    uint256 fillPriceWad;
    int256 newSizeWad;
    int256 impactTokens;
    uint256 feeTokens;
    uint256 settlementFeeTokens;
    int256 effectivePriceWad;
    int256 realizedPnlTokens;
    int256 fundingTokens;
    int256 collateralAfterTokens;
    uint256 imfWad;
    uint256 mmfWad;
    uint256 openInterestUsdWad;
    uint256 openInterestCapUsdWad;
    Health healthAfter;
    bool ok;
    bytes4 errorSelector;
}

/// @title IMarginLens
/// @notice Read-only views a front end needs before it sends an order: a preview of the
/// settlement, the largest size the engine accepts, and an account's liquidation price.
/// @dev Every view evaluates the engine's rules at the current block: an order settles later
/// (at the first price published after `orderMinDelaySec`), so call the views again at the
/// settlement time (or bound the order with `acceptablePriceWad`) when funding, ramps or feeds
/// move in between. Units as in `IMarginEngine`: WAD sizes, prices and USD values, collateral in
/// token units. Supports the engine's two controllers (`LeverageController`,
/// `StaticLeverageController`).
interface IMarginLens {
    /// @notice What settling an order of `sizeDeltaWad` for `account` in `marketId` at
    /// `fillPriceWad` (0: the live price) with limit `acceptablePriceWad` (0: none) would do now.
    /// @dev Never reverts for an order the engine would reject: `ok` is false and `errorSelector`
    /// names the error (ZeroSize, SizeOverflow, MarketNotListed, InsufficientCollateral for the
    /// settlement fee, SettlementPriceInvalid for a fill outside the feed's bounds,
    /// PriceFeedInvalid, OpenInterestCapExceeded, PriceLimitExceeded, TooManyPositions,
    /// SequencerDown, InitialMarginViolated). The settlement round itself is not checked.
    function previewOrder(
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 fillPriceWad,
        uint256 acceptablePriceWad
    ) external view returns (OrderPreview memory p);

    /// @notice The largest order size, base units WAD, on side `isLong` (a buy when true) that
    /// the engine settles now at the live price without a limit: an order of that size passes
    /// and one wei more fails. Reductions of an opposite position always pass.
    /// @dev Bisection over the engine's own check (at most 128 steps): exact when the check is
    /// monotone in size beyond the current position, which holds unless impact rebates grow
    /// faster than the initial requirement.
    function maxOrderSize(address account, uint256 marketId, bool isLong) external view returns (uint256 sizeWad);

    /// @notice The price of `marketId`, WAD, at which `account` becomes liquidatable, all else
    /// equal (other markets at their live prices; accrued and pending funding, the pending part
    /// at that price; the maintenance fraction in force). A long is liquidatable at that price
    /// and not one wei above; a short at that price and not one wei below.
    /// @return priceWad The price (within the price feed's bounds).
    /// @return exists False when no price within the feed's bounds makes the account
    /// liquidatable (then `priceWad` is 0).
    function liquidationPrice(address account, uint256 marketId) external view returns (uint256 priceWad, bool exists);
}
