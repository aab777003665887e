// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {ConstantsLib} from "./ConstantsLib.sol";
import {SignedMath} from "./SignedMath.sol";

/// @title PositionMath
/// @notice Position accounting: cost basis, realized and unrealized PnL, funding, liquidation size.
/// Pure; mirrored to the wei by `ballast.model`. Sizes are signed base units (WAD), prices USD per
/// base unit (WAD), basis and PnL USD (WAD). Everything rounds against the position holder.
library PositionMath {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    int256 internal constant WAD = int256(ConstantsLib.WAD);

    /// @notice Signed value of a size at a price, rounded down (a long is worth less, a short owes more).
    function value(int256 sizeWad, uint256 priceWad) internal pure returns (int256) {
        return (sizeWad * int256(priceWad)).divFloor(WAD);
    }

    /// @notice Absolute notional, rounded up (requirements scale with it).
    function notional(int256 sizeWad, uint256 priceWad) internal pure returns (uint256) {
        return sizeWad.abs().mulWadUp(priceWad);
    }

    /// @notice Unrealized PnL of a position at a price.
    function unrealizedPnl(int256 sizeWad, int256 basisWad, uint256 priceWad) internal pure returns (int256) {
        return value(sizeWad, priceWad) - basisWad;
    }

    /// @notice Funding owed by a position since its last settlement (negative: owed to it), rounded up.
    function fundingOwed(int256 sizeWad, int256 indexNowWad, int256 indexEntryWad) internal pure returns (int256) {
        return (sizeWad * (indexNowWad - indexEntryWad)).divCeil(WAD);
    }

    /// @notice Funding index growth over `dtSec` at an hourly rate and a price (truncated toward zero).
    function fundingIndexDelta(int256 rateWad, uint256 priceWad, uint256 dtSec) internal pure returns (int256) {
        return (rateWad * int256(priceWad) * int256(dtSec)) / int256(ConstantsLib.WAD * ConstantsLib.FUNDING_PERIOD_SEC);
    }

    /// @notice Applies a trade of `deltaWad` at `priceWad` to (size, basis).
    /// @return newSize Size after the trade.
    /// @return newBasis Basis after the trade.
    /// @return realizedWad PnL realized by the reduced part (0 when only increasing).
    function applyTrade(int256 sizeWad, int256 basisWad, int256 deltaWad, uint256 priceWad)
        internal
        pure
        returns (int256 newSize, int256 newBasis, int256 realizedWad)
    {
        newSize = sizeWad + deltaWad;
        if (sizeWad == 0 || (sizeWad > 0) == (deltaWad > 0)) {
            return (newSize, basisWad + (deltaWad * int256(priceWad)).divCeil(WAD), 0);
        }
        uint256 oldAbs = sizeWad.abs();
        uint256 closedAbs = deltaWad.abs();
        if (closedAbs > oldAbs) closedAbs = oldAbs;
        int256 closedBasis = (basisWad * int256(closedAbs)).divCeil(int256(oldAbs));
        int256 closedSigned = sizeWad > 0 ? int256(closedAbs) : -int256(closedAbs);
        realizedWad = value(closedSigned, priceWad) - closedBasis;
        newBasis = basisWad - closedBasis;
        if (deltaWad.abs() > oldAbs) {
            // Flip: the remainder opens a new position on the other side.
            newBasis = (newSize * int256(priceWad)).divCeil(WAD);
        }
    }

    /// @notice Liquidation penalty fraction at the account's shortfall depth, WAD:
    /// liqFee x min(1, floor + (1 - floor) x d / fullDepth), d = (maintenance - equity) /
    /// maintenance, each step rounded up (against the account): d up, the share up, the product up.
    /// d >= 1 (the full fee) when equity <= 0; the floor's share when the account is not under
    /// maintenance. `floorWad` 1e18 gives `liqFeeWad` at every depth (today's penalty).
    /// @dev Monotone in the depth; with `floorWad` <= 1e18 and 0 < `fullDepthWad` <= 1e18 (the
    /// engine's `_checkConfig`) the result is within [liqFee x floor, liqFee].
    function penaltyFraction(
        uint256 liqFeeWad,
        int256 equityWad,
        uint256 maintenanceWad,
        uint256 floorWad,
        uint256 fullDepthWad
    ) internal pure returns (uint256) {
        if (equityWad <= 0) return liqFeeWad;
        uint256 e = uint256(equityWad);
        if (e >= maintenanceWad) return liqFeeWad.mulWadUp(floorWad);
        uint256 depthWad = (maintenanceWad - e).divWadUp(maintenanceWad);
        if (depthWad >= fullDepthWad) return liqFeeWad;
        // depth < fullDepth: the ramp term rounds up to at most 1e18 - floor, the share to 1e18.
        return liqFeeWad.mulWadUp(floorWad + (ConstantsLib.WAD - floorWad).mulDivUp(depthWad, fullDepthWad));
    }

    /// @notice Notional a liquidation closes so that equity returns to `targetRatio` times the
    /// maintenance requirement: c = (T*R - E) / (T*mmf - k), where k is the cost fraction of
    /// closing (penalty + impact). All of it when the denominator is not positive.
    function liquidationNotional(
        int256 equityWad,
        uint256 maintenanceWad,
        uint256 targetRatioWad,
        uint256 mmfWad,
        uint256 costWad,
        uint256 positionNotionalWad
    ) internal pure returns (uint256) {
        uint256 denom = mmfWad.mulWad(targetRatioWad);
        if (denom <= costWad) return positionNotionalWad;
        denom -= costWad;
        int256 deficit = int256(maintenanceWad.mulWadUp(targetRatioWad)) - equityWad;
        if (deficit <= 0) return 0;
        uint256 c = uint256(deficit).divWadUp(denom);
        return c < positionNotionalWad ? c : positionNotionalWad;
    }
}
