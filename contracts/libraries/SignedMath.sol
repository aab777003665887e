// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title SignedMath
/// @notice Signed division with an explicit rounding direction (Solidity's `/` truncates toward
/// zero, which rounds a loss down and a gain up: the wrong way for one side of every trade).
library SignedMath {
    /// @notice floor(a / d) for d > 0 (toward minus infinity).
    function divFloor(int256 a, int256 d) internal pure returns (int256 q) {
        q = a / d;
        if (a % d != 0 && a < 0) q -= 1;
    }

    /// @notice ceil(a / d) for d > 0 (toward plus infinity).
    function divCeil(int256 a, int256 d) internal pure returns (int256 q) {
        q = a / d;
        if (a % d != 0 && a > 0) q += 1;
    }

    function abs(int256 a) internal pure returns (uint256) {
        return a < 0 ? uint256(-a) : uint256(a);
    }
}
