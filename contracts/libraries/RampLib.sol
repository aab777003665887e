// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice A maintenance fraction moving from `fromWad` to `toWad`: constant until
/// `activationSec`, then rising by `rateWadPerSec` per second until it reaches `toWad`.
/// @dev One storage slot. `toWad >= fromWad` always (loosening is applied as from = to).
struct Ramp {
    uint64 fromWad;
    uint64 toWad;
    uint64 activationSec;
    uint64 rateWadPerSec;
}

/// @title RampLib
/// @notice Bounded-rate tightening of maintenance requirements.
library RampLib {
    /// @notice The value of a ramp at time `nowSec`, WAD.
    function valueAt(Ramp memory r, uint256 nowSec) internal pure returns (uint256) {
        if (nowSec <= r.activationSec || r.toWad <= r.fromWad) return r.fromWad;
        uint256 v = uint256(r.fromWad) + uint256(r.rateWadPerSec) * (nowSec - r.activationSec);
        return v < r.toWad ? v : r.toWad;
    }

    /// @notice `valueAt` of a ramp read as its raw storage word (fromWad: bits 0-63, toWad: 64-127,
    /// activationSec: 128-191, rateWadPerSec: 192-255), for a quote's single SLOAD.
    function valueAtWord(uint256 w, uint256 nowSec) internal pure returns (uint256 v) {
        uint256 from = uint64(w);
        uint256 to = uint64(w >> 64);
        uint256 activation = uint64(w >> 128);
        if (nowSec <= activation || to <= from) return from;
        // Unchecked: rate < 2^64 and nowSec - activation < 2^64 (timestamps), so the sum is < 2^129.
        unchecked {
            v = from + (w >> 192) * (nowSec - activation);
        }
        return v < to ? v : to;
    }

    /// @notice Whether the ramp has reached its target at `nowSec`.
    function settled(Ramp memory r, uint256 nowSec) internal pure returns (bool) {
        return valueAt(r, nowSec) >= r.toWad;
    }
}
