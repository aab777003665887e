// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";

/// @title ImpactMath
/// @notice Price impact as the integral over the market's skew, so that one trade, n trades, or an
/// open-close cycle in steps pay the same. Pure; mirrored to the wei by `ballast.model`.
/// @dev With S the absolute skew (long minus short open interest) in USD at the fill price and D
/// the depth input, the skew's impact stock is F(S) = k * S^2 / (2 D): the marginal impact of the
/// last dollar of skew is k * S / D. A trade moving |skew| from Sb to Sa costs F(Sa) - F(Sb):
/// a charge (rounded up) when it grows the skew, a rebate (rounded down) when it shrinks it. The
/// engine pays rebates only out of what the market's impact pool holds, so the vault never pays
/// impact, and a cycle that returns the skew to where it was pays its fees and no impact at best.
library ImpactMath {
    using FixedPointMathLib for uint256;

    /// @notice Impact of moving a market's signed skew (base units) from `skewBefore` to
    /// `skewAfter` at `priceWad` against `depthUsdWad`, USD WAD: (charge, rebate), one of them 0.
    function skewImpact(uint256 coefWad, int256 skewBefore, int256 skewAfter, uint256 priceWad, uint256 depthUsdWad)
        internal
        pure
        returns (uint256 chargeUsdWad, uint256 rebateUsdWad)
    {
        uint256 b = skewBefore < 0 ? uint256(-skewBefore) : uint256(skewBefore);
        uint256 a = skewAfter < 0 ? uint256(-skewAfter) : uint256(skewAfter);
        if (a == b || coefWad == 0) return (0, 0);
        uint256 twoD = 2 * depthUsdWad;
        if (a > b) {
            uint256 x = (a - b).mulWadUp(priceWad).mulWadUp((a + b).mulWadUp(priceWad));
            chargeUsdWad = coefWad.mulWadUp(x).mulDivUp(1e18, twoD);
        } else {
            uint256 x = (b - a).mulWad(priceWad).mulWad((a + b).mulWad(priceWad));
            rebateUsdWad = coefWad.mulWad(x).mulDiv(1e18, twoD);
        }
    }
}
