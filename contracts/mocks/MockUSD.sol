// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockUSD
/// @notice A 6-decimal USD stablecoin for local chains and tests. Anyone may mint (test token).
contract MockUSD is ERC20 {
    constructor() ERC20("Mock USD", "mUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` (6 decimals) to `to`. Test token: unrestricted.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
