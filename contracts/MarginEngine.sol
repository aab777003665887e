// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {LibBit} from "solady/utils/LibBit.sol";
import {ILeverageController, MarketQuote} from "../interfaces/ILeverageController.sol";
import {Health, IMarginEngine, Position} from "../interfaces/IMarginEngine.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib} from "./libraries/ErrorsLib.sol";
import {EventsLib} from "./libraries/EventsLib.sol";
import {MarginMath} from "./libraries/MarginMath.sol";
import {PositionMath} from "./libraries/PositionMath.sol";
import {SignedMath} from "./libraries/SignedMath.sol";

/// @title MarginEngine
/// @notice Collateral, cross-margined perpetual positions against a counterparty vault, funding,
/// liquidations, an insurance fund and exact bad-debt accounting.
/// @dev Token accounting invariant (exact, in token units):
///   token.balanceOf(this) == sum(collateral) + vaultBalance + insuranceFund + protocolFees.
/// Every flow moves an amount from one of these buckets to another, or in/out with a transfer.
contract MarginEngine is IMarginEngine, AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    /// @notice May withdraw vault liquidity and protocol fees.
    bytes32 public constant TREASURY_ROLE = keccak256("TREASURY_ROLE");

    /// @notice Engine-wide economic settings, fixed at deployment.
    /// @param tradingFeeWad Fee on traded notional, WAD (at most 1%).
    /// @param feeInsuranceShareWad Share of trading fees paid to the insurance fund, WAD.
    /// @param liquidatorShareWad Share of the liquidation penalty paid to the liquidator, WAD
    /// (the rest goes to the insurance fund).
    /// @param liqTargetRatioWad A partial liquidation restores equity to this multiple of the
    /// maintenance requirement, WAD (between 1x and 3x).
    struct EngineConfig {
        uint256 tradingFeeWad;
        uint256 feeInsuranceShareWad;
        uint256 liquidatorShareWad;
        uint256 liqTargetRatioWad;
    }

    struct MarketState {
        uint128 oiLongWad;
        uint128 oiShortWad;
        int128 fundingIndexWad;
        int64 lastRateWad;
        uint64 lastAccrualSec;
    }

    /// @dev A position left smaller than this after a partial liquidation is closed in full.
    uint256 public constant MIN_REMAINING_NOTIONAL_USD_WAD = 10e18;

    IERC20 public immutable collateralToken;
    ILeverageController public immutable controller;
    /// @notice 10^(18 - token decimals): token units to USD WAD.
    uint256 public immutable tokenScale;
    uint256 public immutable tradingFeeWad;
    uint256 public immutable feeInsuranceShareWad;
    uint256 public immutable liquidatorShareWad;
    uint256 public immutable liqTargetRatioWad;

    /// @notice Counterparty vault balance, token units (negative only if traders out-won it).
    int256 public vaultBalance;
    /// @notice Insurance fund, token units.
    uint256 public insuranceFund;
    /// @notice Protocol fees, token units.
    uint256 public protocolFees;
    /// @notice Bad debt ever realized, token units, and how it was absorbed.
    uint256 public badDebtTotal;
    uint256 public badDebtCovered;
    uint256 public badDebtSocialized;
    /// @notice Sum of deposits minus withdrawals over every bucket, token units (conservation check).
    uint256 public netDeposits;

    mapping(uint256 marketId => MarketState) internal _markets;
    mapping(address account => int256) internal _collateral;
    mapping(address account => uint256) internal _openMarkets;
    mapping(address account => mapping(uint256 marketId => Position)) internal _positions;

    constructor(address admin, IERC20 token, ILeverageController controller_, EngineConfig memory cfg) {
        if (admin == address(0) || address(token) == address(0) || address(controller_) == address(0)) {
            revert ErrorsLib.ZeroAddress();
        }
        if (cfg.tradingFeeWad > 0.01e18) revert ErrorsLib.EngineConfigOutOfBounds(0, cfg.tradingFeeWad, 0.01e18);
        if (cfg.feeInsuranceShareWad > 1e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(1, cfg.feeInsuranceShareWad, 1e18);
        }
        if (cfg.liquidatorShareWad > 1e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(2, cfg.liquidatorShareWad, 1e18);
        }
        if (cfg.liqTargetRatioWad < 1e18 || cfg.liqTargetRatioWad > 3e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(3, cfg.liqTargetRatioWad, 3e18);
        }
        uint8 dec = IERC20Metadata(address(token)).decimals();
        if (dec > 18) revert ErrorsLib.EngineConfigOutOfBounds(4, dec, 18);
        collateralToken = token;
        controller = controller_;
        tokenScale = 10 ** (18 - uint256(dec));
        tradingFeeWad = cfg.tradingFeeWad;
        feeInsuranceShareWad = cfg.feeInsuranceShareWad;
        liquidatorShareWad = cfg.liquidatorShareWad;
        liqTargetRatioWad = cfg.liqTargetRatioWad;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(TREASURY_ROLE, admin);
    }

    // ================================================================ collateral

    /// @inheritdoc IMarginEngine
    function deposit(uint256 amount) external nonReentrant {
        _deposit(msg.sender, amount);
    }

    /// @inheritdoc IMarginEngine
    function depositFor(address account, uint256 amount) external nonReentrant {
        if (account == address(0)) revert ErrorsLib.ZeroAddress();
        _deposit(account, amount);
    }

    /// @inheritdoc IMarginEngine
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        int256 c = _collateral[msg.sender];
        if (c < 0 || uint256(c) < amount) revert ErrorsLib.InsufficientCollateral(c, amount);
        _collateral[msg.sender] = c - int256(amount);
        netDeposits -= amount;
        if (_openMarkets[msg.sender] != 0) {
            MarketQuote memory none;
            (Health memory h, bool seqUp) = _health(msg.sender, type(uint256).max, none);
            if (!seqUp) revert ErrorsLib.SequencerDown();
            if (h.equityUsdWad < int256(h.initialUsdWad)) {
                revert ErrorsLib.InitialMarginViolated(h.equityUsdWad, h.initialUsdWad);
            }
        }
        emit EventsLib.Withdrawn(msg.sender, amount);
        collateralToken.safeTransfer(msg.sender, amount);
    }

    // ================================================================ trading

    /// @inheritdoc IMarginEngine
    function trade(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external nonReentrant {
        _trade(msg.sender, marketId, sizeDeltaWad, acceptablePriceWad);
    }

    /// @inheritdoc IMarginEngine
    function closePosition(uint256 marketId, uint256 acceptablePriceWad) external nonReentrant {
        int256 size = _positions[msg.sender][marketId].sizeWad;
        if (size == 0) revert ErrorsLib.NoPosition(msg.sender, marketId);
        _trade(msg.sender, marketId, -size, acceptablePriceWad);
    }

    function _trade(address account, uint256 marketId, int256 delta, uint256 acceptablePriceWad) internal {
        if (delta == 0) revert ErrorsLib.ZeroSize();
        Position memory pos = _positions[account][marketId];
        int256 oldSize = pos.sizeWad;
        int256 newSize = oldSize + delta;
        if (newSize > type(int128).max || newSize < type(int128).min) revert ErrorsLib.SizeOverflow(newSize);
        bool increasing = newSize.abs() > oldSize.abs() || (oldSize != 0 && (newSize > 0) != (oldSize > 0) && newSize != 0);

        // Open interest first: the controller prices crowding on the post-trade book.
        _updateOpenInterest(marketId, oldSize, newSize);
        bool isLong = newSize != 0 ? newSize > 0 : oldSize > 0;
        MarketQuote memory q = controller.quote(marketId, isLong, newSize.abs(), delta.abs());
        if (!increasing) q.impactWad = _exitImpact(q, pos.slipSnapWad, delta.abs(), oldSize.abs());
        if (acceptablePriceWad != 0) {
            if (delta > 0 ? q.priceWad > acceptablePriceWad : q.priceWad < acceptablePriceWad) {
                revert ErrorsLib.PriceLimitExceeded(q.priceWad, acceptablePriceWad);
            }
        }
        _settleFunding(account, marketId, pos, _accrue(marketId, q));
        (int256 realizedTokens, uint256 feeTokens, uint256 impactTokens) =
            _settleTrade(account, marketId, pos, q, delta, increasing);

        if (increasing) {
            if (!q.sequencerUp) revert ErrorsLib.SequencerDown();
            (Health memory h,) = _health(account, marketId, q);
            if (h.equityUsdWad < int256(h.initialUsdWad)) {
                revert ErrorsLib.InitialMarginViolated(h.equityUsdWad, h.initialUsdWad);
            }
        }
        emit EventsLib.PositionModified(
            account, marketId, delta, oldSize + delta, q.priceWad, realizedTokens, feeTokens, impactTokens
        );
        if (_openMarkets[account] == 0 && _collateral[account] < 0) _realizeBadDebt(account);
    }

    /// @dev Impact fraction of an exit (a reduce, close or liquidation) of `exitSize` out of
    /// `posSize`. While a risk feed is bad the live depth falls back to its floor, which would
    /// price an exit as if the market had no liquidity: the exit then pays at most the slippage
    /// snapshotted when the position was last increased, pro rata to the size closed (rounded
    /// up). Never more than the live impact.
    function _exitImpact(MarketQuote memory q, uint256 slipSnapWad, uint256 exitSize, uint256 posSize)
        internal
        pure
        returns (uint256)
    {
        if (q.riskFeedsOk) return q.impactWad;
        uint256 snap = slipSnapWad.mulDivUp(exitSize, posSize);
        return snap < q.impactWad ? snap : q.impactWad;
    }

    /// @dev Applies a trade to a position and moves PnL, fee and impact between the buckets.
    function _settleTrade(
        address account,
        uint256 marketId,
        Position memory pos,
        MarketQuote memory q,
        int256 delta,
        bool increasing
    ) internal returns (int256 realizedTokens, uint256 feeTokens, uint256 impactTokens) {
        uint256 tradedNotional = PositionMath.notional(delta, q.priceWad);
        feeTokens = tradedNotional.mulWadUp(tradingFeeWad).divUp(tokenScale);
        impactTokens = tradedNotional.mulWadUp(q.impactWad).divUp(tokenScale);
        realizedTokens = _writePosition(account, marketId, pos, delta, q, increasing);

        _collateral[account] += realizedTokens - int256(feeTokens) - int256(impactTokens);
        vaultBalance += int256(impactTokens) - realizedTokens;
        uint256 feeToInsurance = feeTokens.mulWad(feeInsuranceShareWad);
        insuranceFund += feeToInsurance;
        protocolFees += feeTokens - feeToInsurance;
    }

    // ================================================================ liquidation

    /// @inheritdoc IMarginEngine
    function liquidate(address account, uint256 marketId) external nonReentrant {
        Position memory pos = _positions[account][marketId];
        int256 size = pos.sizeWad;
        if (size == 0) revert ErrorsLib.NoPosition(account, marketId);
        uint256 absSize = size.abs();
        MarketQuote memory q = controller.quote(marketId, size > 0, absSize, absSize);
        q.impactWad = _exitImpact(q, pos.slipSnapWad, absSize, absSize);
        if (!q.sequencerUp) revert ErrorsLib.SequencerDown();
        int256 index = _accrue(marketId, q);
        _settleFunding(account, marketId, pos, index);
        _positions[account][marketId].fundingIndexWad = pos.fundingIndexWad;

        (Health memory h,) = _health(account, marketId, q);
        if (h.equityUsdWad >= int256(h.maintenanceUsdWad)) {
            revert ErrorsLib.AccountHealthy(h.equityUsdWad, h.maintenanceUsdWad);
        }

        uint256 closeSize = _liquidationSize(h, pos, q, absSize);
        int256 delta = size > 0 ? -int256(closeSize) : int256(closeSize);
        (uint256 penaltyTokens, uint256 rewardTokens) = _settleLiquidation(account, marketId, pos, q, delta);

        emit EventsLib.Liquidated(
            account, marketId, msg.sender, delta, PositionMath.notional(delta, q.priceWad), q.priceWad, penaltyTokens, rewardTokens
        );
        if (_openMarkets[account] == 0 && _collateral[account] < 0) _realizeBadDebt(account);
        netDeposits -= rewardTokens;
        if (rewardTokens != 0) collateralToken.safeTransfer(msg.sender, rewardTokens);
    }

    /// @dev Size a liquidation closes: enough to restore the target ratio, all of it when that is
    /// impossible or would leave dust.
    function _liquidationSize(Health memory h, Position memory pos, MarketQuote memory q, uint256 absSize)
        internal
        view
        returns (uint256 closeSize)
    {
        uint256 mmf = MarginMath.positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad);
        uint256 posNotional = PositionMath.notional(pos.sizeWad, q.priceWad);
        uint256 closeNotional = PositionMath.liquidationNotional(
            h.equityUsdWad, h.maintenanceUsdWad, liqTargetRatioWad, mmf, q.liqFeeWad + q.impactWad, posNotional
        );
        closeSize = closeNotional >= posNotional ? absSize : closeNotional.divWadUp(q.priceWad);
        if (closeSize > absSize) closeSize = absSize;
        if (PositionMath.notional(int256(absSize - closeSize), q.priceWad) < MIN_REMAINING_NOTIONAL_USD_WAD) {
            closeSize = absSize;
        }
    }

    /// @dev Closes `delta` of a position at the quote's price and moves penalty, impact and PnL.
    function _settleLiquidation(
        address account,
        uint256 marketId,
        Position memory pos,
        MarketQuote memory q,
        int256 delta
    ) internal returns (uint256 penaltyTokens, uint256 rewardTokens) {
        int256 size = pos.sizeWad;
        _updateOpenInterest(marketId, size, size + delta);
        uint256 impactTokens;
        (penaltyTokens, impactTokens) = _liquidationCosts(q, delta, size);
        rewardTokens = penaltyTokens.mulWad(liquidatorShareWad);
        int256 realizedTokens = _writePosition(account, marketId, pos, delta, q, false);

        _collateral[account] += realizedTokens - int256(penaltyTokens) - int256(impactTokens);
        vaultBalance += int256(impactTokens) - realizedTokens;
        insuranceFund += penaltyTokens - rewardTokens;
    }

    /// @dev Applies `delta` to a position at the quote's price, stores it and returns the realized
    /// PnL in token units (rounded down).
    function _writePosition(
        address account,
        uint256 marketId,
        Position memory pos,
        int256 delta,
        MarketQuote memory q,
        bool increasing
    ) internal returns (int256 realizedTokens) {
        int256 oldSize = pos.sizeWad;
        (int256 size2, int256 basis2, int256 realizedWad) = PositionMath.applyTrade(oldSize, pos.basisUsdWad, delta, q.priceWad);
        pos.sizeWad = int128(size2);
        pos.basisUsdWad = int128(basis2);
        if (increasing) pos.slipSnapWad = uint64(q.slipWad);
        if (size2 == 0) pos.slipSnapWad = 0;
        _positions[account][marketId] = pos;
        _setOpen(account, marketId, oldSize != 0, size2 != 0);
        realizedTokens = realizedWad.divFloor(int256(tokenScale));
    }

    /// @dev Penalty and impact of a liquidation closing `delta` of `size`, token units, rounded up.
    function _liquidationCosts(MarketQuote memory q, int256 delta, int256 size)
        internal
        view
        returns (uint256 penaltyTokens, uint256 impactTokens)
    {
        uint256 closedNotional = PositionMath.notional(delta, q.priceWad);
        penaltyTokens = closedNotional.mulWadUp(q.liqFeeWad).divUp(tokenScale);
        impactTokens =
            closedNotional.mulWadUp(q.impactWad.mulDivUp(SignedMath.abs(delta), SignedMath.abs(size))).divUp(tokenScale);
    }

    // ================================================================ vault and insurance

    /// @inheritdoc IMarginEngine
    function fundVault(uint256 amount) external nonReentrant {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        vaultBalance += int256(amount);
        netDeposits += amount;
        emit EventsLib.VaultFunded(msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraws vault liquidity (treasury role), never more than the vault holds.
    function withdrawVault(address to, uint256 amount) external nonReentrant onlyRole(TREASURY_ROLE) {
        if (to == address(0)) revert ErrorsLib.ZeroAddress();
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        if (vaultBalance < int256(amount)) revert ErrorsLib.VaultWithdrawTooLarge(amount, vaultBalance);
        vaultBalance -= int256(amount);
        netDeposits -= amount;
        emit EventsLib.VaultWithdrawn(to, amount);
        collateralToken.safeTransfer(to, amount);
    }

    /// @inheritdoc IMarginEngine
    function fundInsurance(uint256 amount) external nonReentrant {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        insuranceFund += amount;
        netDeposits += amount;
        emit EventsLib.InsuranceFunded(msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraws protocol fees (treasury role).
    function withdrawFees(address to) external nonReentrant onlyRole(TREASURY_ROLE) {
        if (to == address(0)) revert ErrorsLib.ZeroAddress();
        uint256 amount = protocolFees;
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        protocolFees = 0;
        netDeposits -= amount;
        emit EventsLib.FeesWithdrawn(to, amount);
        collateralToken.safeTransfer(to, amount);
    }

    // ================================================================ views

    /// @inheritdoc IMarginEngine
    function health(address account) external view returns (Health memory h) {
        MarketQuote memory none;
        (h,) = _health(account, type(uint256).max, none);
    }

    /// @inheritdoc IMarginEngine
    function isLiquidatable(address account) external view returns (bool) {
        if (_openMarkets[account] == 0) return false;
        MarketQuote memory none;
        (Health memory h,) = _health(account, type(uint256).max, none);
        return h.equityUsdWad < int256(h.maintenanceUsdWad);
    }

    /// @inheritdoc IMarginEngine
    function openInterest(uint256 marketId) external view returns (uint256 longWad, uint256 shortWad) {
        MarketState storage m = _markets[marketId];
        return (m.oiLongWad, m.oiShortWad);
    }

    /// @inheritdoc IMarginEngine
    function position(address account, uint256 marketId) external view returns (Position memory) {
        return _positions[account][marketId];
    }

    /// @inheritdoc IMarginEngine
    function collateralOf(address account) external view returns (int256) {
        return _collateral[account];
    }

    /// @notice Bitmap of the markets where an account has a position (bit i: market i).
    function openMarkets(address account) external view returns (uint256) {
        return _openMarkets[account];
    }

    /// @notice Funding state of a market: index (USD per base unit, WAD), the hourly rate applied
    /// since the last accrual (WAD) and that accrual's time.
    function fundingState(uint256 marketId) external view returns (int256 indexWad, int256 rateWad, uint256 lastAccrualSec) {
        MarketState storage m = _markets[marketId];
        return (m.fundingIndexWad, m.lastRateWad, m.lastAccrualSec);
    }

    // ================================================================ internals

    function _deposit(address account, uint256 amount) internal {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        _collateral[account] += int256(amount);
        netDeposits += amount;
        emit EventsLib.Deposited(account, msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _updateOpenInterest(uint256 marketId, int256 oldSize, int256 newSize) internal {
        MarketState storage m = _markets[marketId];
        uint256 l = m.oiLongWad;
        uint256 s = m.oiShortWad;
        if (oldSize > 0) l -= uint256(oldSize);
        else s -= uint256(-oldSize);
        if (newSize > 0) l += uint256(newSize);
        else s += uint256(-newSize);
        m.oiLongWad = uint128(l);
        m.oiShortWad = uint128(s);
    }

    /// @dev Index at the quote's price, accruing the rate in force since the last accrual; then
    /// records the feed's current rate (or keeps the last good one when the feed is bad).
    function _accrue(uint256 marketId, MarketQuote memory q) internal returns (int256 index) {
        MarketState storage m = _markets[marketId];
        index = _indexNow(m, q.priceWad);
        int256 rate = q.fundingOk ? q.fundingRateWad : int256(m.lastRateWad);
        m.fundingIndexWad = int128(index);
        m.lastRateWad = int64(rate);
        m.lastAccrualSec = uint64(block.timestamp);
        emit EventsLib.FundingAccrued(marketId, rate, index, block.timestamp);
    }

    function _indexNow(MarketState storage m, uint256 priceWad) internal view returns (int256) {
        uint256 last = m.lastAccrualSec;
        if (last == 0) return m.fundingIndexWad;
        return int256(m.fundingIndexWad) + PositionMath.fundingIndexDelta(m.lastRateWad, priceWad, block.timestamp - last);
    }

    /// @dev Realizes a position's funding into collateral (the vault is the counterparty).
    function _settleFunding(address account, uint256 marketId, Position memory pos, int256 index) internal {
        if (pos.sizeWad != 0) {
            int256 owedTokens = PositionMath.fundingOwed(pos.sizeWad, index, pos.fundingIndexWad).divCeil(int256(tokenScale));
            if (owedTokens != 0) {
                _collateral[account] -= owedTokens;
                vaultBalance += owedTokens;
                emit EventsLib.FundingSettled(account, marketId, owedTokens);
            }
        }
        pos.fundingIndexWad = int128(index);
    }

    function _setOpen(address account, uint256 marketId, bool wasOpen, bool isOpen) internal {
        if (wasOpen == isOpen) return;
        uint256 bits = _openMarkets[account];
        if (isOpen) {
            bits |= (uint256(1) << marketId);
            if (LibBit.popCount(bits) > ConstantsLib.MAX_POSITIONS) {
                revert ErrorsLib.TooManyPositions(account, ConstantsLib.MAX_POSITIONS);
            }
        } else {
            bits &= ~(uint256(1) << marketId);
        }
        _openMarkets[account] = bits;
    }

    /// @dev Cross-margin health over at most MAX_POSITIONS positions. `cachedMarket`'s quote is
    /// reused (it was read for the same size and side in this transaction).
    function _health(address account, uint256 cachedMarket, MarketQuote memory cached)
        internal
        view
        returns (Health memory h, bool seqUp)
    {
        seqUp = true;
        h.equityUsdWad = _collateral[account] * int256(tokenScale);
        uint256 bits = _openMarkets[account];
        while (bits != 0) {
            uint256 marketId = LibBit.ffs(bits);
            bits &= bits - 1;
            Position memory pos = _positions[account][marketId];
            MarketQuote memory q = marketId == cachedMarket
                ? cached
                : controller.quote(marketId, pos.sizeWad > 0, SignedMath.abs(pos.sizeWad), 0);
            seqUp = seqUp && q.sequencerUp;
            int256 index = _indexNow(_markets[marketId], q.priceWad);
            h.equityUsdWad += PositionMath.unrealizedPnl(pos.sizeWad, pos.basisUsdWad, q.priceWad)
                - PositionMath.fundingOwed(pos.sizeWad, index, pos.fundingIndexWad);
            uint256 n = PositionMath.notional(pos.sizeWad, q.priceWad);
            uint256 mmf = MarginMath.positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad);
            h.notionalUsdWad += n;
            h.maintenanceUsdWad += n.mulWadUp(mmf);
            h.initialUsdWad += n.mulWadUp(q.imfWad > mmf ? q.imfWad : mmf);
        }
    }

    function _realizeBadDebt(address account) internal {
        uint256 debt = uint256(-_collateral[account]);
        uint256 covered = debt < insuranceFund ? debt : insuranceFund;
        uint256 socialized = debt - covered;
        _collateral[account] = 0;
        insuranceFund -= covered;
        vaultBalance -= int256(socialized);
        badDebtTotal += debt;
        badDebtCovered += covered;
        badDebtSocialized += socialized;
        emit EventsLib.BadDebt(account, debt, covered, socialized);
    }
}
