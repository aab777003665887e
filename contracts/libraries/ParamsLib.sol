// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {RiskParams} from "../../interfaces/ILeverageController.sol";
import {ConstantsLib as C} from "./ConstantsLib.sol";
import {ErrorsLib, ParamField} from "./ErrorsLib.sol";

/// @title ParamsLib
/// @notice Hard bounds, step limits and the "tighter of two" rule for `RiskParams`.
library ParamsLib {
    uint256 internal constant N_FIELDS = 19;

    function _values(RiskParams memory p) private pure returns (uint256[19] memory v) {
        v = [
            uint256(p.zWad), p.skewSensWad, p.tailCapWad, p.bufferMultWad, p.minBufferWad, p.liqFeeWad,
            p.impactWad, p.crowdWad, p.fundingSensWad, p.fundingThresholdWad, p.horizonSec, p.rampJitterSec,
            p.minImfWad, p.maxImfWad, p.minMmfWad, p.maxMmfWad, p.mmfRampWadPerSec, p.volRefWad, p.regimeSensWad
        ];
    }

    function _bounds() private pure returns (uint256[19] memory lo, uint256[19] memory hi) {
        lo = [
            C.Z_MIN, 0, C.TAIL_CAP_MIN, C.BUFFER_MULT_MIN, C.MIN_BUFFER_MIN, C.LIQ_FEE_MIN, 0, 0, 0, 0,
            C.HORIZON_MIN_SEC, 0, C.MIN_IMF_MIN, C.MIN_IMF_MIN, C.MIN_MMF_MIN, C.MIN_MMF_MIN, C.MMF_RAMP_MIN,
            C.VOL_REF_MIN, 0
        ];
        hi = [
            C.Z_MAX, C.SKEW_SENS_MAX, C.TAIL_CAP_MAX, C.BUFFER_MULT_MAX, C.MIN_BUFFER_MAX, C.LIQ_FEE_MAX,
            C.IMPACT_MAX, C.CROWD_MAX, C.FUNDING_SENS_MAX, C.FUNDING_THRESHOLD_MAX, C.HORIZON_MAX_SEC,
            C.RAMP_JITTER_MAX_SEC, C.IMF_MAX, C.IMF_MAX, C.IMF_MAX, C.IMF_MAX, C.MMF_RAMP_MAX, C.VOL_REF_MAX,
            C.REGIME_SENS_MAX
        ];
    }

    /// @notice Reverts unless every field is within its hard bounds and the fields are consistent.
    function validate(RiskParams memory p) internal pure {
        uint256[19] memory v = _values(p);
        (uint256[19] memory lo, uint256[19] memory hi) = _bounds();
        for (uint256 i; i < N_FIELDS; ++i) {
            if (v[i] < lo[i] || v[i] > hi[i]) revert ErrorsLib.ParamOutOfBounds(ParamField(i), v[i], lo[i], hi[i]);
        }
        if (p.minImfWad > p.maxImfWad) revert ErrorsLib.ParamsInconsistent(ParamField.MinImf, ParamField.MaxImf);
        if (p.minMmfWad > p.maxMmfWad) revert ErrorsLib.ParamsInconsistent(ParamField.MinMmf, ParamField.MaxMmf);
        if (uint256(p.minMmfWad) + p.minBufferWad > p.minImfWad) {
            revert ErrorsLib.ParamsInconsistent(ParamField.MinMmf, ParamField.MinImf);
        }
        if (uint256(p.maxMmfWad) + p.minBufferWad > p.maxImfWad) {
            revert ErrorsLib.ParamsInconsistent(ParamField.MaxMmf, ParamField.MaxImf);
        }
    }

    /// @notice Reverts if any field moves more than max(25% of its old value, 1/20 of its range).
    function validateStep(RiskParams memory oldP, RiskParams memory newP) internal pure {
        uint256[19] memory a = _values(oldP);
        uint256[19] memory b = _values(newP);
        (uint256[19] memory lo, uint256[19] memory hi) = _bounds();
        for (uint256 i; i < N_FIELDS; ++i) {
            uint256 rel = a[i] * C.MAX_STEP_REL_WAD / C.WAD;
            uint256 abs_ = (hi[i] - lo[i]) / C.MAX_STEP_RANGE_DIV;
            uint256 maxStep = rel > abs_ ? rel : abs_;
            uint256 diff = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
            if (diff > maxStep) revert ErrorsLib.ParamStepTooLarge(ParamField(i), a[i], b[i], maxStep);
        }
    }

    /// @notice Field by field, the value that requires more margin for new risk.
    /// @dev Larger is tighter for every field but `fundingThresholdWad` and `volRefWad`; the ramp fields do not
    /// price new risk and are taken from `a`.
    function tighter(RiskParams memory a, RiskParams memory b) internal pure returns (RiskParams memory t) {
        // A copy: assigning a memory struct would alias `a` and tighten the caller's copy too.
        t = abi.decode(abi.encode(a), (RiskParams));
        if (b.zWad > t.zWad) t.zWad = b.zWad;
        if (b.skewSensWad > t.skewSensWad) t.skewSensWad = b.skewSensWad;
        if (b.tailCapWad > t.tailCapWad) t.tailCapWad = b.tailCapWad;
        if (b.bufferMultWad > t.bufferMultWad) t.bufferMultWad = b.bufferMultWad;
        if (b.minBufferWad > t.minBufferWad) t.minBufferWad = b.minBufferWad;
        if (b.liqFeeWad > t.liqFeeWad) t.liqFeeWad = b.liqFeeWad;
        if (b.impactWad > t.impactWad) t.impactWad = b.impactWad;
        if (b.crowdWad > t.crowdWad) t.crowdWad = b.crowdWad;
        if (b.fundingSensWad > t.fundingSensWad) t.fundingSensWad = b.fundingSensWad;
        if (b.fundingThresholdWad < t.fundingThresholdWad) t.fundingThresholdWad = b.fundingThresholdWad;
        if (b.horizonSec > t.horizonSec) t.horizonSec = b.horizonSec;
        if (b.minImfWad > t.minImfWad) t.minImfWad = b.minImfWad;
        if (b.maxImfWad > t.maxImfWad) t.maxImfWad = b.maxImfWad;
        if (b.minMmfWad > t.minMmfWad) t.minMmfWad = b.minMmfWad;
        if (b.maxMmfWad > t.maxMmfWad) t.maxMmfWad = b.maxMmfWad;
        if (b.regimeSensWad > t.regimeSensWad) t.regimeSensWad = b.regimeSensWad;
        // A lower reference volatility counts more of the current volatility as excess: tighter.
        if (b.volRefWad < t.volRefWad) t.volRefWad = b.volRefWad;
    }
}
