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
    /// requirement afterwards (and holds that much realized collateral).
    function withdraw(uint256 amount) external;

    /// @notice Opens, increases, reduces, closes or flips the caller's position by `sizeDeltaWad`
    /// (signed base units, WAD) at the oracle price plus size-dependent impact.
    /// @param acceptablePriceWad Worst acceptable oracle price, USD per base unit, WAD: a buy
    /// reverts above it, a sell below it (0 = no limit).
    function trade(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external;

    /// @notice Closes the caller's whole position in a market.
    function closePosition(uint256 marketId, uint256 acceptablePriceWad) external;

    /// @notice Liquidates `account` in `marketId` when its equity is below its maintenance
    /// requirement: closes just enough to restore health to the target ratio (all of it when
    /// that is not possible), pays the caller a reward and the insurance fund a share. When
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

    /// @notice Open interest of a market: total long and total short size, base units, WAD.
    function openInterest(uint256 marketId) external view returns (uint256 longWad, uint256 shortWad);

    /// @notice A position of an account.
    function position(address account, uint256 marketId) external view returns (Position memory);

    /// @notice Realized collateral of an account, collateral token units (may be negative
    /// transiently under cross margin).
    function collateralOf(address account) external view returns (int256);
}
