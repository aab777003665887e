// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice One position of an account in a market.
/// @param sizeWad Signed size in base units, WAD (> 0 long, < 0 short).
/// @param basisUsdWad Signed cost basis: the oracle notional at which the size was opened, USD, WAD.
/// @param fundingIndexWad Market funding index when funding was last settled, USD per base unit, WAD.
/// @param slipSnapWad Closing slippage fraction snapshotted at the last increase, WAD; part of the
/// position's maintenance fraction.
struct Position {
    int128 sizeWad;
    int128 basisUsdWad;
    int128 fundingIndexWad;
    uint64 slipSnapWad;
}

/// @notice A committed order, settled later at the first price published at or after `commitSec +
/// minDelay` (never a price the trader could see when committing).
/// @param sizeDeltaWad Signed size to trade, base units, WAD (0 for a close-all order).
/// @param acceptablePriceWad Worst acceptable effective price per base unit, fees and impact
/// included, USD, WAD: a buy fails above it, a sell below it (0: no limit).
/// @param commitSec When the order was committed, unix seconds (0: no order).
/// @param feeTokens Settlement fee escrowed from collateral: credited to the engine account of
/// whoever settles the order (withdrawable with `withdraw`), refunded if it expires.
/// @param closeAll Close whatever position exists at settlement (`sizeDeltaWad` is 0).
struct Order {
    int128 sizeDeltaWad;
    uint128 acceptablePriceWad;
    uint64 commitSec;
    uint64 feeTokens;
    bool closeAll;
}

/// @notice Health of an account at the oracle prices.
/// @param equityUsdWad Collateral + unrealized PnL - unsettled funding, USD, WAD (rounded down).
/// @param maintenanceUsdWad Sum over positions of notional * maintenance fraction, USD, WAD (rounded up).
/// @param initialUsdWad Sum over positions of notional * max(initial, maintenance) fraction, USD, WAD (up).
/// @param notionalUsdWad Sum of absolute position notionals, USD, WAD (rounded up).
struct Health {
    int256 equityUsdWad;
    uint256 maintenanceUsdWad;
    uint256 initialUsdWad;
    uint256 notionalUsdWad;
}

/// @title IMarginEngine
/// @notice Holds collateral and cross-margined perpetual positions, enforces the controller's margin
/// fractions, accrues funding, and liquidates with an insurance fund. A counterparty vault takes
/// the other side of every trade.
/// @dev Units: collateral amounts are in the collateral token's smallest unit (6 decimals for the
/// mock USD token); sizes are base units in WAD; notionals, equity and PnL are USD in WAD (1 USD =
/// 1e18); fractions are WAD. Rounding always goes against the account: debits and requirements
/// round up, credits and equity round down.
/// Warning: a position cannot be settled without a valid price: while a market's price feed is
/// stale, trades and liquidations in that market revert; deposits always work.
interface IMarginEngine {
    /// @notice Adds `amount` collateral tokens to the caller's account.
    function deposit(uint256 amount) external;

    /// @notice Adds `amount` collateral tokens to `account`, paid by the caller.
    function depositFor(address account, uint256 amount) external;

    /// @notice Withdraws `amount` collateral tokens if the account stays at or above its initial
    /// requirement afterwards, counting unrealized losses but no unrealized profit, at prices no
    /// older than `withdrawPriceMaxAgeSec` (and holds that much realized collateral).
    function withdraw(uint256 amount) external;

    /// @notice Commits an order to open, increase, reduce or flip the caller's position by
    /// `sizeDeltaWad` (signed base units, WAD). It escrows the settlement fee from collateral and
    /// settles later, at the first price published at least `orderMinDelaySec` after now, by
    /// anyone (`settleOrder`); unsettled by the end of its window it expires and refunds.
    /// One pending order per account and market.
    /// @param acceptablePriceWad Worst acceptable effective price (fill price plus impact and fee
    /// per unit for a buy, minus for a sell), USD per base unit, WAD (0 = no limit).
    function commitOrder(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external;

    /// @notice Commits an order that closes whatever position the caller holds in the market when
    /// it settles (a partial liquidation in between cannot turn it into a flip). Never refused for
    /// want of realized collateral: the escrowed fee may take collateral below zero.
    function commitClose(uint256 marketId, uint256 acceptablePriceWad) external;

    /// @notice Settles `account`'s order in `marketId` at the price of round `priceRoundId` of the
    /// market's price feed, which must be the first round published at or after the order's
    /// `settleFrom` time and no later than its expiry. Credits the settlement fee to the caller's engine
    /// account (its collateral, withdrawable with `withdraw`; no token transfer).
    function settleOrder(address account, uint256 marketId, uint80 priceRoundId) external;

    /// @notice Cancels an expired order and refunds its settlement fee to the account. Anyone.
    function cancelExpiredOrder(address account, uint256 marketId) external;

    /// @notice Accrues a market's funding from the live funding feed (permissionless; keepers
    /// call it with each funding push so the index integrates every published rate).
    function accrueFunding(uint256 marketId) external;

    /// @notice Flags `account` for liquidation when its equity is below its maintenance
    /// requirement at the oracle prices. A liquidation then settles at the first price published
    /// at least `orderMinDelaySec` after the flag: a price nobody knew when flagging, so a trader
    /// cannot close a position at a lagging price by liquidating it himself. A flag whose first
    /// eligible price has passed can be set again after `orderMinDelaySec`. Anyone may call.
    function flagLiquidation(address account) external;

    /// @notice Liquidates a flagged `account` in `marketId` while the market's live price is the
    /// first round published at or after flag + `orderMinDelaySec` and the account is below its
    /// maintenance requirement at it. `marketId` must be the market the engine prefers (`liquidationMarket`): the
    /// valid-price market that restores health with the least notional closed. A market whose
    /// price is bad cannot be liquidated, and is valued conservatively (last good price moved
    /// adversely by its maximum maintenance fraction) so it cannot shield the others. Closes just enough to restore health to the target ratio (all of it when
    /// that is not possible). The penalty is the closed notional times the market's liquidation
    /// fee scaled by the account's shortfall depth d = (maintenance - equity) / maintenance:
    /// min(1, floor + (1 - floor) d / fullDepth) of it (`liqPenaltyFloorWad`,
    /// `liqPenaltyFullDepthWad`; rounded up), so an account pushed just under maintenance by a
    /// tightening pays less than one the price carried deep below it; the same fraction sizes
    /// the close and ranks the markets. Credits the caller's engine account with a reward (its collateral,
    /// withdrawable with `withdraw`; no token transfer) and pays the insurance fund a share. When
    /// the account is left with no position and negative collateral the shortfall is bad debt,
    /// covered by the insurance fund and then socialized to the vault.
    function liquidate(address account, uint256 marketId) external;

    /// @notice Adds collateral tokens to the counterparty vault (liquidity providers).
    function fundVault(uint256 amount) external;

    /// @notice Adds collateral tokens to the insurance fund.
    function fundInsurance(uint256 amount) external;

    /// @notice Current health of an account at oracle prices, with pending funding.
    function health(address account) external view returns (Health memory);

    /// @notice Whether an account can be liquidated now (equity < maintenance requirement).
    function isLiquidatable(address account) external view returns (bool);

    /// @notice The market a liquidation of `account` must close now (see `liquidate`); reverts
    /// `AccountHealthy` when it is not liquidatable.
    function liquidationMarket(address account) external view returns (uint256 marketId);

    /// @notice The pending order of an account in a market (commitSec 0: none).
    function order(address account, uint256 marketId) external view returns (Order memory);

    /// @notice Open interest of a market: total long and total short size, base units, WAD.
    function openInterest(uint256 marketId) external view returns (uint256 longWad, uint256 shortWad);

    /// @notice A position of an account.
    function position(address account, uint256 marketId) external view returns (Position memory);

    /// @notice Realized collateral of an account, collateral token units (may be negative
    /// transiently under cross margin).
    function collateralOf(address account) external view returns (int256);
}
