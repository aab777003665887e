// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {RiskParams} from "../../interfaces/ILeverageController.sol";
import {ImpactMath} from "../libraries/ImpactMath.sol";
import {Fractions, MarginMath, RiskInputs} from "../libraries/MarginMath.sol";
import {PositionMath} from "../libraries/PositionMath.sol";
import {Ramp, RampLib} from "../libraries/RampLib.sol";

/// @title MathHarness
/// @notice Exposes the pure model libraries for differential tests against `ballast.model`.
/// Not part of a deployment.
contract MathHarness {
    function compute(RiskParams memory p, RiskInputs memory x) external pure returns (Fractions memory) {
        return MarginMath.compute(p, x);
    }

    function computeWithTail(RiskParams memory p, RiskInputs memory x, uint256 tailFeedWad)
        external
        pure
        returns (Fractions memory)
    {
        return MarginMath.compute(p, x, tailFeedWad);
    }

    function sqrtHorizonWad(uint256 horizonSec) external pure returns (uint256) {
        return MarginMath.sqrtHorizonWad(horizonSec);
    }

    function requiredInitial(uint256 imfLive, uint256 mmfPos, uint256 minBuffer, uint256 maxImf)
        external
        pure
        returns (uint256)
    {
        return MarginMath.requiredInitial(imfLive, mmfPos, minBuffer, maxImf);
    }

    function rampValue(Ramp memory r, uint256 nowSec) external pure returns (uint256) {
        return RampLib.valueAt(r, nowSec);
    }

    function applyTrade(int256 size, int256 basis, int256 delta, uint256 price)
        external
        pure
        returns (int256, int256, int256)
    {
        return PositionMath.applyTrade(size, basis, delta, price);
    }

    function fundingOwed(int256 size, int256 idxNow, int256 idxEntry) external pure returns (int256) {
        return PositionMath.fundingOwed(size, idxNow, idxEntry);
    }

    function fundingIndexDelta(int256 rate, uint256 price, uint256 dt) external pure returns (int256) {
        return PositionMath.fundingIndexDelta(rate, price, dt);
    }

    function liquidationNotional(int256 e, uint256 r, uint256 t, uint256 mmf, uint256 cost, uint256 n)
        external
        pure
        returns (uint256)
    {
        return PositionMath.liquidationNotional(e, r, t, mmf, cost, n);
    }

    function penaltyFraction(int256 e, uint256 r, uint256 liqFee, uint256 floor, uint256 fullDepth)
        external
        pure
        returns (uint256)
    {
        return PositionMath.penaltyFraction(liqFee, e, r, floor, fullDepth);
    }

    function skewImpact(uint256 coefWad, int256 skewBefore, int256 skewAfter, uint256 priceWad, uint256 depthUsdWad)
        external
        pure
        returns (uint256 chargeUsdWad, uint256 rebateUsdWad)
    {
        return ImpactMath.skewImpact(coefWad, skewBefore, skewAfter, priceWad, depthUsdWad);
    }
}
