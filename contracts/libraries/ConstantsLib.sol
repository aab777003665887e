// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title ConstantsLib
/// @notice Scales and the hard bounds no admin action can cross.
library ConstantsLib {
    /// @dev Fixed-point scale of fractions, leverage, prices, sizes and USD amounts.
    uint256 internal constant WAD = 1e18;
    /// @dev Seconds in the volatility year (annualization of the volatility feed).
    uint256 internal constant YEAR_SEC = 365 days;
    /// @dev Funding feed rates are per hour.
    uint256 internal constant FUNDING_PERIOD_SEC = 1 hours;

    /// @dev Markets are ids 0..63 (an account keeps its open markets in a 64-bit bitmap).
    uint256 internal constant MAX_MARKETS = 64;
    /// @dev Open positions per account: bounds every loop over an account.
    uint256 internal constant MAX_POSITIONS = 8;

    // Parameter change rules.
    /// @dev Shortest timelock between proposing and executing a parameter change.
    uint256 internal constant MIN_PARAM_DELAY_SEC = 1 hours;
    /// @dev Longest timelock.
    uint256 internal constant MAX_PARAM_DELAY_SEC = 30 days;
    /// @dev Largest relative change of a parameter per update (25%) ...
    uint256 internal constant MAX_STEP_REL_WAD = 0.25e18;
    /// @dev ... or 1/20 of its hard range, whichever is larger (lets a zero parameter move).
    uint256 internal constant MAX_STEP_RANGE_DIV = 20;

    // Hard bounds of RiskParams (inclusive).
    uint256 internal constant Z_MIN = 1e18;
    uint256 internal constant Z_MAX = 6e18;
    uint256 internal constant SKEW_SENS_MAX = 18e18; // fits the uint64 field
    uint256 internal constant TAIL_CAP_MIN = 1e18;
    uint256 internal constant TAIL_CAP_MAX = 5e18;
    uint256 internal constant BUFFER_MULT_MIN = 0.1e18;
    uint256 internal constant BUFFER_MULT_MAX = 5e18;
    uint256 internal constant MIN_BUFFER_MIN = 0.001e18;
    uint256 internal constant MIN_BUFFER_MAX = 0.2e18;
    uint256 internal constant LIQ_FEE_MIN = 0.001e18;
    uint256 internal constant LIQ_FEE_MAX = 0.1e18;
    uint256 internal constant IMPACT_MAX = 0.2e18;
    uint256 internal constant CROWD_MAX = 1e18;
    uint256 internal constant FUNDING_SENS_MAX = 1000e18;
    uint256 internal constant FUNDING_THRESHOLD_MAX = 0.01e18;
    uint256 internal constant HORIZON_MIN_SEC = 60;
    uint256 internal constant HORIZON_MAX_SEC = 7 days;
    uint256 internal constant RAMP_JITTER_MAX_SEC = 1 days;
    /// @dev 200x is the highest leverage any market may ever allow.
    uint256 internal constant MIN_IMF_MIN = 0.005e18;
    uint256 internal constant IMF_MAX = 1e18;
    uint256 internal constant MIN_MMF_MIN = 0.001e18;
    /// @dev Maintenance may tighten by at most 25 percentage points per hour, at least 1e18 per year.
    uint256 internal constant MMF_RAMP_MIN = uint256(1e18) / 365 days;
    uint256 internal constant MMF_RAMP_MAX = uint256(0.25e18) / 1 hours;

    uint256 internal constant VOL_REF_MIN = 0.05e18;
    uint256 internal constant VOL_REF_MAX = 5e18;
    uint256 internal constant REGIME_SENS_MAX = 10e18;

    /// @dev Largest absolute feed answer before scaling (keeps scaling free of overflow).
    uint256 internal constant MAX_RAW_ANSWER = 1e40;
}
