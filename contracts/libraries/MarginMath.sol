// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {RiskParams} from "../../interfaces/ILeverageController.sol";
import {ConstantsLib} from "./ConstantsLib.sol";

/// @notice The live inputs of the margin model for one (market, side, size).
/// @param sigmaWad Annualized volatility (1e18 = 100%).
/// @param skewWad 25-delta risk reversal, volatility units, signed (negative: puts bid).
/// @param depthUsdWad Notional that moves the price by `impactWad`, USD.
/// @param fundingRateWad Hourly funding rate, signed (positive: longs pay).
/// @param oiSideWad Open interest of the quoted side after the trade, base units.
/// @param oiOtherWad Open interest of the other side, base units.
/// @param notionalUsdWad Absolute notional of the position, USD.
/// @param priceWad Oracle price, USD per base unit (values the open-interest imbalance).
/// @param isLong Side.
struct RiskInputs {
    uint256 sigmaWad;
    int256 skewWad;
    uint256 depthUsdWad;
    int256 fundingRateWad;
    uint256 oiSideWad;
    uint256 oiOtherWad;
    uint256 notionalUsdWad;
    uint256 priceWad;
    bool isLong;
}

/// @notice The model's terms, all WAD fractions of notional.
struct Fractions {
    uint256 varMoveWad;
    uint256 mmfBaseWad;
    uint256 slipWad;
    uint256 crowdWad;
    uint256 fundingWad;
    uint256 imfWad;
}

/// @title MarginMath
/// @notice Ballast's margin model. Pure; mirrored to the wei by `ballast.model` in Python.
/// @dev Every term rounds up (against the trader). With h the liquidation horizon:
///   live     = 1 + skewSens * adverseSkew                        adverseSkew = max(0, -skew) long,
///              + regimeSens * max(0, sigma - volRef) / volRef               max(0, skew) short
///   tail     = min(tailCap, max(tailFeed, live))     tailFeed: the side's published calibrated tail
///                                                    (LeverageController.publishTail; 0: none)
///   varMove  = z * sigma * sqrt(h / YEAR) * tail                 the VaR move over h
///   mmfBase  = clamp(varMove + liqFee, minMmf, maxMmf)           maintenance, size independent
///   slip     = min(1, impact * notional / depth)                 cost of closing against depth
///   crowd    = crowdK * min(1, max(0, oiSide - oiOther) * price / depth)
///                                 the net imbalance the vault carries, relative to depth
///   funding  = fundingSens * max(0, payerRate - threshold)       payerRate = rate long, -rate short
///   imf      = clamp(mmfBase + slip + bufferMult * varMove + minBuffer + crowd + funding,
///                    minImf, maxImf)
/// Solady's FixedPointMathLib (node_modules/solady/src/utils/FixedPointMathLib.sol) supplies
/// mulWadUp, mulDivUp and sqrt.
library MarginMath {
    using FixedPointMathLib for uint256;

    uint256 internal constant WAD = ConstantsLib.WAD;

    /// @notice sqrt(horizonSec / YEAR) as a WAD, rounded up.
    function sqrtHorizonWad(uint256 horizonSec) internal pure returns (uint256 s) {
        uint256 x = (horizonSec * 1e36).divUp(ConstantsLib.YEAR_SEC);
        s = FixedPointMathLib.sqrt(x);
        if (s * s < x) s += 1;
    }

    /// @notice The skew that hurts a side: put skew for longs, call skew for shorts.
    function adverseSkew(int256 skewWad, bool isLong) internal pure returns (uint256) {
        if (isLong) return skewWad < 0 ? uint256(-skewWad) : 0;
        return skewWad > 0 ? uint256(skewWad) : 0;
    }

    /// @notice Tail multiplier, WAD, in [1, tailCap]: grows with the adverse options skew and with
    /// volatility in excess of the market's calm reference (a high-volatility regime).
    function tailMultiplier(RiskParams memory p, uint256 sigmaWad, int256 skewWad, bool isLong)
        internal
        pure
        returns (uint256)
    {
        return tailMultiplier(p, sigmaWad, skewWad, isLong, 0);
    }

    /// @notice The tail multiplier with a published (calibrated) tail for the side:
    /// min(tailCap, max(tailFeed, live tail)); `tailFeedWad` 0 means none published.
    function tailMultiplier(RiskParams memory p, uint256 sigmaWad, int256 skewWad, bool isLong, uint256 tailFeedWad)
        internal
        pure
        returns (uint256)
    {
        // Unchecked: a mulWadUp result is below 2^256 / 1e18 < 2^197 (it reverts when the product
        // overflows), so WAD plus two of them cannot overflow; the subtraction is guarded.
        uint256 t;
        unchecked {
            t = WAD + uint256(p.skewSensWad).mulWadUp(adverseSkew(skewWad, isLong));
            if (sigmaWad > p.volRefWad) {
                t += uint256(p.regimeSensWad).mulWadUp((sigmaWad - p.volRefWad).divWadUp(p.volRefWad));
            }
        }
        if (tailFeedWad > t) t = tailFeedWad;
        return t < p.tailCapWad ? t : p.tailCapWad;
    }

    /// @notice The VaR move over the liquidation horizon, a fraction of notional.
    function varMove(RiskParams memory p, uint256 sigmaWad, int256 skewWad, bool isLong)
        internal
        pure
        returns (uint256)
    {
        return varMove(p, sigmaWad, skewWad, isLong, 0);
    }

    /// @notice `varMove` with the side's published tail (0: none).
    function varMove(RiskParams memory p, uint256 sigmaWad, int256 skewWad, bool isLong, uint256 tailFeedWad)
        internal
        pure
        returns (uint256)
    {
        return varMove(p, sigmaWad, skewWad, isLong, tailFeedWad, sqrtHorizonWad(p.horizonSec));
    }

    /// @notice `varMove` with sqrt(horizon / YEAR) given (`sqrtHorizonWad(p.horizonSec)`, cached).
    function varMove(
        RiskParams memory p,
        uint256 sigmaWad,
        int256 skewWad,
        bool isLong,
        uint256 tailFeedWad,
        uint256 sqrtHorizon
    ) internal pure returns (uint256) {
        return uint256(p.zWad).mulWadUp(sigmaWad).mulWadUp(sqrtHorizon).mulWadUp(
            tailMultiplier(p, sigmaWad, skewWad, isLong, tailFeedWad)
        );
    }

    /// @notice Size-independent maintenance fraction for a VaR move.
    function maintenanceBase(RiskParams memory p, uint256 varMoveWad) internal pure returns (uint256) {
        return clamp(varMoveWad + p.liqFeeWad, p.minMmfWad, p.maxMmfWad);
    }

    /// @notice Slippage of trading `notionalUsdWad` against `depthUsdWad`, capped at 100%.
    function slippage(uint256 impactWad, uint256 notionalUsdWad, uint256 depthUsdWad) internal pure returns (uint256) {
        if (depthUsdWad == 0) return WAD;
        uint256 s = impactWad.mulDivUp(notionalUsdWad, depthUsdWad);
        return s < WAD ? s : WAD;
    }

    /// @notice Initial-margin add-on of the over-represented side: grows with the net open-interest
    /// imbalance (which the counterparty vault carries) relative to the market's depth.
    function crowding(uint256 crowdK, uint256 oiSideWad, uint256 oiOtherWad, uint256 priceWad, uint256 depthUsdWad)
        internal
        pure
        returns (uint256)
    {
        if (oiSideWad <= oiOtherWad) return 0;
        uint256 net;
        unchecked {
            net = oiSideWad - oiOtherWad; // guarded above
        }
        uint256 ratio = slippage(WAD, net.mulWadUp(priceWad), depthUsdWad);
        return crowdK.mulWadUp(ratio);
    }

    /// @notice Initial-margin add-on of the side paying funding above the threshold.
    function fundingPenalty(RiskParams memory p, int256 fundingRateWad, bool isLong) internal pure returns (uint256) {
        int256 payer = isLong ? fundingRateWad : -fundingRateWad;
        int256 threshold = int256(uint256(p.fundingThresholdWad));
        if (payer <= threshold) return 0;
        unchecked {
            // payer > threshold >= 0: the difference of two non-negative int256 cannot overflow
            return uint256(p.fundingSensWad).mulWadUp(uint256(payer - threshold));
        }
    }

    /// @notice Every term of the model for one input set.
    function compute(RiskParams memory p, RiskInputs memory x) internal pure returns (Fractions memory f) {
        return compute(p, x, 0);
    }

    /// @notice `compute` with the side's published tail (0: none).
    function compute(RiskParams memory p, RiskInputs memory x, uint256 tailFeedWad)
        internal
        pure
        returns (Fractions memory f)
    {
        return compute(p, x, tailFeedWad, sqrtHorizonWad(p.horizonSec));
    }

    /// @notice `compute` with sqrt(horizon / YEAR) given (`sqrtHorizonWad(p.horizonSec)`, cached).
    function compute(RiskParams memory p, RiskInputs memory x, uint256 tailFeedWad, uint256 sqrtHorizon)
        internal
        pure
        returns (Fractions memory f)
    {
        f.varMoveWad = varMove(p, x.sigmaWad, x.skewWad, x.isLong, tailFeedWad, sqrtHorizon);
        f.mmfBaseWad = maintenanceBase(p, f.varMoveWad);
        f.slipWad = slippage(p.impactWad, x.notionalUsdWad, x.depthUsdWad);
        f.crowdWad = crowding(p.crowdWad, x.oiSideWad, x.oiOtherWad, x.priceWad, x.depthUsdWad);
        f.fundingWad = fundingPenalty(p, x.fundingRateWad, x.isLong);
        uint256 raw;
        unchecked {
            // six terms, each a uint64, a clamped fraction or a mulWadUp result (< 2^197): no overflow
            raw = f.mmfBaseWad + f.slipWad + uint256(p.bufferMultWad).mulWadUp(f.varMoveWad) + p.minBufferWad
                + f.crowdWad + f.fundingWad;
        }
        f.imfWad = clamp(raw, p.minImfWad, p.maxImfWad);
    }

    /// @notice A position's maintenance fraction: ramped base plus its slippage, capped.
    function positionMaintenance(uint256 mmfBaseWad, uint256 slipWad, uint256 maxMmfWad) internal pure returns (uint256) {
        uint256 m = mmfBaseWad + slipWad;
        return m < maxMmfWad ? m : maxMmfWad;
    }

    /// @notice The initial fraction actually required: the live IMF, never less than the position's
    /// maintenance fraction now in force plus the minimum buffer, and never more than the cap.
    function requiredInitial(uint256 imfLiveWad, uint256 mmfPositionWad, uint256 minBufferWad, uint256 maxImfWad)
        internal
        pure
        returns (uint256)
    {
        uint256 floor_ = mmfPositionWad + minBufferWad;
        if (floor_ > maxImfWad) floor_ = maxImfWad;
        return imfLiveWad > floor_ ? imfLiveWad : floor_;
    }

    function clamp(uint256 v, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return v < lo ? lo : (v > hi ? hi : v);
    }
}
