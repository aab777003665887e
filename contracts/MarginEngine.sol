// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {LibBit} from "solady/utils/LibBit.sol";
import {ILeverageController, MarketQuote, PriceRound} from "../interfaces/ILeverageController.sol";
import {Health, IMarginEngine, Order, Position} from "../interfaces/IMarginEngine.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib} from "./libraries/ErrorsLib.sol";
import {EventsLib} from "./libraries/EventsLib.sol";
import {ImpactMath} from "./libraries/ImpactMath.sol";
import {MarginMath} from "./libraries/MarginMath.sol";
import {PositionMath} from "./libraries/PositionMath.sol";
import {SignedMath} from "./libraries/SignedMath.sol";

/// @title MarginEngine
/// @notice Collateral, cross-margined perpetual positions against a counterparty vault, funding,
/// liquidations, an insurance fund and exact bad-debt accounting.
/// Traders commit orders that settle later at a price published after the commit; liquidations
/// are immediate.
/// @dev Token accounting invariant (exact, in token units):
///   token.balanceOf(this) == sum(collateral) + vaultBalance + insuranceFund + protocolFees
///                            + orderEscrow + impactPools.
/// Every flow moves an amount from one of these buckets to another, or in/out with a transfer.
contract MarginEngine is IMarginEngine, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using FixedPointMathLib for uint256;
    using SignedMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @notice May withdraw vault liquidity and protocol fees.
    bytes32 public constant TREASURY_ROLE = keccak256("TREASURY_ROLE");

    /// @notice Engine-wide economic settings, fixed at deployment.
    /// @param tradingFeeWad Fee on traded notional, WAD (at most 1%).
    /// @param feeInsuranceShareWad Share of trading fees paid to the insurance fund, WAD.
    /// @param liquidatorShareWad Share of the liquidation penalty paid to the liquidator, WAD
    /// (the rest goes to the insurance fund).
    /// @param liqTargetRatioWad A partial liquidation restores equity to this multiple of the
    /// maintenance requirement, WAD (between 1x and 3x).
    /// @param orderMinDelaySec An order settles at the first price published at least this long
    /// after it was committed (1 s to 5 min).
    /// @param orderWindowSec After `orderMinDelaySec`, how long an order may wait for its price and
    /// its settlement before it expires (1 min to 1 day).
    /// @param settlementFeeTokens Fee escrowed at commit and paid to whoever settles, token units.
    /// @param withdrawPriceMaxAgeSec A withdrawal with open positions needs every price published
    /// within this many seconds (1 s to 1 h).
    /// @param oiDepthMultWad Gross open interest of one side of a market, in USD, is capped at this
    /// multiple of the market's depth input (0.1x to 100x), WAD.
    /// @param liqPenaltyFloorWad Share of the market's liquidation fee charged to an account barely
    /// under maintenance (10% to 100%; 100%: the full fee at every depth), WAD.
    /// @param liqPenaltyFullDepthWad Shortfall depth (maintenance - equity) / maintenance at and
    /// beyond which the full fee is charged (1% to 100%), WAD. Between zero depth and this one the
    /// share rises linearly from the floor (`PositionMath.penaltyScale`).
    struct EngineConfig {
        uint256 tradingFeeWad;
        uint256 feeInsuranceShareWad;
        uint256 liquidatorShareWad;
        uint256 liqTargetRatioWad;
        uint256 orderMinDelaySec;
        uint256 orderWindowSec;
        uint256 settlementFeeTokens;
        uint256 withdrawPriceMaxAgeSec;
        uint256 oiDepthMultWad;
        uint256 liqPenaltyFloorWad;
        uint256 liqPenaltyFullDepthWad;
    }

    struct MarketState {
        uint128 oiLongWad;
        uint128 oiShortWad;
        int128 fundingIndexWad;
        int64 lastRateWad;
        uint64 lastAccrualSec;
        uint128 impactPoolTokens;
        uint128 lastPriceWad;
    }

    /// @dev What a health pass is for: a margin check (initial and maintenance), a withdrawal (no
    /// unrealized profit, fresh prices), or a liquidation (also scores the preferred market).
    enum HealthMode {
        Margin,
        Withdrawal,
        Liquidation
    }

    /// @dev What a cross-margin health pass found besides the totals (`preferred` only in
    /// `HealthMode.Liquidation`; `single`: one open market, which is then the preferred one
    /// without scoring its exit cost).
    struct HealthScan {
        bool seqUp;
        bool found;
        bool single;
        uint256 preferred;
        int256 bestScore;
    }

    /// @dev One order's execution, kept in memory (the stack is too small for it).
    struct Exec {
        address account;
        uint256 marketId;
        int256 delta;
        uint256 fill;
        uint256 limit;
        int256 oldSize;
        bool increasing;
        int256 impactTokens;
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
    uint256 public immutable orderMinDelaySec;
    uint256 public immutable orderWindowSec;
    uint256 public immutable settlementFeeTokens;
    uint256 public immutable withdrawPriceMaxAgeSec;
    uint256 public immutable oiDepthMultWad;
    /// @notice Depth-scaled liquidation penalty: the share of the liquidation fee charged at zero
    /// shortfall depth, WAD (`EngineConfig.liqPenaltyFloorWad`).
    /// @dev Why 25% and 20% by default (config/markets.toml). A position pushed under maintenance
    /// only by a tightening ramp sits just below the line: charging it the full fee, sized for a
    /// position the price carried through maintenance, takes collateral the account still has and
    /// can tip it into the next liquidation (the cascade issue 12 forbids). At 25% the shallowest
    /// liquidation still pays the liquidator a quarter of today's reward: with BTC's 0.5% fee and
    /// a 50% share, 0.0625% of the notional closed, so a ~150k-gas call (0.045 USD at 0.1 gwei
    /// and 3,000 USD/ETH on an L2) pays from about 72 USD closed, and 9 USD at 20 gwei on L1 from
    /// about 14.4k USD. The full fee is reached 20% below maintenance: for a position at the
    /// 0.5-2% maintenance fractions of the shipped markets, a price move of well under 1% past
    /// the line, i.e. what the price (not the ramp) did. 100% here is the engine before issue 12.
    uint256 public immutable liqPenaltyFloorWad;
    /// @notice Shortfall depth at and beyond which the full liquidation fee is charged, WAD
    /// (`EngineConfig.liqPenaltyFullDepthWad`).
    uint256 public immutable liqPenaltyFullDepthWad;

    /// @dev The engine's token buckets, packed in three slots (see the views of the same names).
    /// The order escrow is `pendingOrders x settlementFeeTokens` (the fee is immutable), counted
    /// in the slot a settlement writes anyway (protocol fees), so that neither commit nor settle
    /// touches a third slot. `protocolFees` holds up to 2^96 - 1 token units (7.9e10 tokens of 18
    /// decimals; a trade that would pass it reverts `SafeCastOverflowedUintDowncast` until the
    /// treasury withdraws the fees).
    struct Book {
        int128 vaultBalance;
        uint128 insuranceFund;
        uint96 protocolFees;
        uint32 pendingOrders;
        uint128 impactPools;
        uint128 netDeposits;
    }

    /// @dev An account's collateral (token units), the bitmap of its open markets (bit i: market i,
    /// i < MAX_MARKETS = 64) and when it was flagged for liquidation (0: not flagged): one slot.
    struct Account {
        int128 collateral;
        uint64 openMarkets;
        uint64 flaggedAt;
    }

    /// @dev A pending order in one slot (its fee is the immutable `settlementFeeTokens`). `kept`
    /// is set on every write and never cleared: a settled or cancelled order leaves the slot
    /// non-zero (commitSec 0: no order), so the account's next order in the market rewrites it
    /// (2,900 gas) instead of creating it (22,100), at the cost of the clearing refund (4,800).
    struct OrderSlot {
        int96 sizeDeltaWad;
        uint96 acceptablePriceWad;
        uint40 commitSec;
        bool closeAll;
        bool kept;
    }

    /// @dev A position as stored: `Position` with its basis in 120 bits and a flag in each of its
    /// two slots, set on every write and never cleared, so that a closed position's slots stay
    /// non-zero and the account's next position in the market rewrites them (2 x 2,900 gas)
    /// instead of creating them (2 x 22,100), at the cost of the clearing refunds.
    struct PositionSlot {
        int128 sizeWad;
        int120 basisUsdWad;
        bool kept;
        int128 fundingIndexWad;
        uint64 slipSnapWad;
        bool kept2;
    }

    Book internal _book;
    /// @dev Bad debt ever realized and the part the insurance fund covered, token units, in one
    /// slot (the socialized part is their difference): see the views of the same names.
    struct BadDebtBook {
        uint128 total;
        uint128 covered;
    }

    BadDebtBook internal _badDebt;
    /// @notice Hard cap on each side's gross open interest of a market, USD, WAD (0: only the
    /// depth-relative cap applies).
    mapping(uint256 marketId => uint256) public oiHardCapUsdWad;

    mapping(uint256 marketId => MarketState) internal _markets;
    mapping(address account => Account) internal _accounts;
    mapping(address account => mapping(uint256 marketId => PositionSlot)) internal _positions;
    mapping(address account => mapping(uint256 marketId => OrderSlot)) internal _orders;

    constructor(address admin, IERC20 token, ILeverageController controller_, EngineConfig memory cfg) {
        if (admin == address(0) || address(token) == address(0) || address(controller_) == address(0)) {
            revert ErrorsLib.ZeroAddress();
        }
        _checkConfig(cfg);
        uint8 dec = IERC20Metadata(address(token)).decimals();
        if (dec > 18) revert ErrorsLib.EngineConfigOutOfBounds(4, dec, 18);
        collateralToken = token;
        controller = controller_;
        tokenScale = 10 ** (18 - uint256(dec));
        tradingFeeWad = cfg.tradingFeeWad;
        feeInsuranceShareWad = cfg.feeInsuranceShareWad;
        liquidatorShareWad = cfg.liquidatorShareWad;
        liqTargetRatioWad = cfg.liqTargetRatioWad;
        orderMinDelaySec = cfg.orderMinDelaySec;
        orderWindowSec = cfg.orderWindowSec;
        settlementFeeTokens = cfg.settlementFeeTokens;
        withdrawPriceMaxAgeSec = cfg.withdrawPriceMaxAgeSec;
        oiDepthMultWad = cfg.oiDepthMultWad;
        liqPenaltyFloorWad = cfg.liqPenaltyFloorWad;
        liqPenaltyFullDepthWad = cfg.liqPenaltyFullDepthWad;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(TREASURY_ROLE, admin);
    }

    /// @dev Reverts `EngineConfigOutOfBounds(index, value, max)` naming the first bad field
    /// (indices: 0 fee, 1 insurance share, 2 liquidator share, 3 target ratio, 4 token decimals,
    /// 5 min delay, 6 window, 7 settlement fee, 8 withdrawal price age, 9 OI depth multiple,
    /// 10 liquidation penalty floor, 11 liquidation penalty full depth).
    function _checkConfig(EngineConfig memory cfg) internal pure {
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
        if (cfg.orderMinDelaySec < 1 || cfg.orderMinDelaySec > 300) {
            revert ErrorsLib.EngineConfigOutOfBounds(5, cfg.orderMinDelaySec, 300);
        }
        if (cfg.orderWindowSec < 60 || cfg.orderWindowSec > 1 days) {
            revert ErrorsLib.EngineConfigOutOfBounds(6, cfg.orderWindowSec, 1 days);
        }
        if (cfg.settlementFeeTokens > type(uint64).max) {
            revert ErrorsLib.EngineConfigOutOfBounds(7, cfg.settlementFeeTokens, type(uint64).max);
        }
        if (cfg.withdrawPriceMaxAgeSec < 1 || cfg.withdrawPriceMaxAgeSec > 1 hours) {
            revert ErrorsLib.EngineConfigOutOfBounds(8, cfg.withdrawPriceMaxAgeSec, 1 hours);
        }
        if (cfg.oiDepthMultWad < 0.1e18 || cfg.oiDepthMultWad > 100e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(9, cfg.oiDepthMultWad, 100e18);
        }
        if (cfg.liqPenaltyFloorWad < 0.1e18 || cfg.liqPenaltyFloorWad > 1e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(10, cfg.liqPenaltyFloorWad, 1e18);
        }
        if (cfg.liqPenaltyFullDepthWad < 0.01e18 || cfg.liqPenaltyFullDepthWad > 1e18) {
            revert ErrorsLib.EngineConfigOutOfBounds(11, cfg.liqPenaltyFullDepthWad, 1e18);
        }
    }

    /// @notice Sets the hard cap on each side's gross open interest of a market, USD WAD (0: only
    /// the depth-relative cap). Caps only refuse new risk: lowering one liquidates nobody.
    function setOpenInterestCap(uint256 marketId, uint256 capUsdWad) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!controller.isListed(marketId)) revert ErrorsLib.MarketNotListed(marketId);
        oiHardCapUsdWad[marketId] = capUsdWad;
        emit EventsLib.OpenInterestCapSet(marketId, capUsdWad);
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
        Account storage acc = _accounts[msg.sender];
        int256 c = acc.collateral;
        if (c < 0 || uint256(c) < amount) revert ErrorsLib.InsufficientCollateral(c, amount);
        acc.collateral = int128(c - int256(amount));
        _book.netDeposits -= uint128(amount);
        if (acc.openMarkets != 0) {
            MarketQuote memory none;
            (Health memory h, HealthScan memory scan) = _health(msg.sender, type(uint256).max, none, HealthMode.Withdrawal);
            if (!scan.seqUp) revert ErrorsLib.SequencerDown();
            if (h.equityUsdWad < int256(h.initialUsdWad)) {
                revert ErrorsLib.InitialMarginViolated(h.equityUsdWad, h.initialUsdWad);
            }
        }
        emit EventsLib.Withdrawn(msg.sender, amount);
        collateralToken.safeTransfer(msg.sender, amount);
    }

    // ================================================================ orders

    /// @inheritdoc IMarginEngine
    function commitOrder(uint256 marketId, int256 sizeDeltaWad, uint256 acceptablePriceWad) external nonReentrant {
        if (sizeDeltaWad == 0) revert ErrorsLib.ZeroSize();
        if (sizeDeltaWad > type(int96).max || sizeDeltaWad < type(int96).min) revert ErrorsLib.SizeOverflow(sizeDeltaWad);
        _commit(marketId, sizeDeltaWad, acceptablePriceWad, false);
    }

    /// @inheritdoc IMarginEngine
    function commitClose(uint256 marketId, uint256 acceptablePriceWad) external nonReentrant {
        if (_positions[msg.sender][marketId].sizeWad == 0) revert ErrorsLib.NoPosition(msg.sender, marketId);
        _commit(marketId, 0, acceptablePriceWad, true);
    }

    function _commit(uint256 marketId, int256 delta, uint256 acceptablePriceWad, bool closeAll) internal {
        OrderSlot memory prev = _orders[msg.sender][marketId];
        // A kept order slot means this account committed in this market before, when it was listed,
        // and a controller never delists a market (`_listedBits` only gains bits): the call is
        // skipped for a returning trader.
        if (!prev.kept && !controller.isListed(marketId)) revert ErrorsLib.MarketNotListed(marketId);
        if (acceptablePriceWad > type(uint96).max) revert ErrorsLib.SizeOverflow(int256(acceptablePriceWad));
        if (prev.commitSec != 0) revert ErrorsLib.OrderPending(msg.sender, marketId);
        uint256 fee = settlementFeeTokens;
        Account storage acc = _accounts[msg.sender];
        int256 c = acc.collateral;
        // A close is never refused for want of realized collateral (its position may carry the
        // account): its fee may take collateral below zero, settled by the close itself.
        if (c < int256(fee) && !closeAll) revert ErrorsLib.InsufficientCollateral(c, fee);
        acc.collateral = (c - int256(fee)).toInt128();
        _book.pendingOrders += 1;
        _storeOrder(msg.sender, marketId, delta, acceptablePriceWad, block.timestamp, closeAll);
        uint256 from = block.timestamp + orderMinDelaySec;
        emit EventsLib.OrderCommitted(
            msg.sender, marketId, delta, closeAll, acceptablePriceWad, from, from + orderWindowSec, fee
        );
    }

    /// @inheritdoc IMarginEngine
    function settleOrder(address account, uint256 marketId, uint80 priceRoundId) external nonReentrant {
        OrderSlot memory o = _orders[account][marketId];
        if (o.commitSec == 0) revert ErrorsLib.NoOrder(account, marketId);
        uint256 from = uint256(o.commitSec) + orderMinDelaySec;
        uint256 expiry = from + orderWindowSec;
        if (block.timestamp > expiry) revert ErrorsLib.OrderExpired(account, marketId, expiry);
        _clearOrder(account, marketId);
        uint256 fee = settlementFeeTokens;
        _book.pendingOrders -= 1;

        Exec memory x;
        x.account = account;
        x.marketId = marketId;
        x.delta = o.sizeDeltaWad;
        x.limit = o.acceptablePriceWad;
        if (o.closeAll) {
            x.delta = -int256(_positions[account][marketId].sizeWad);
            if (x.delta == 0) revert ErrorsLib.NoPosition(account, marketId);
        }
        _execute(x, priceRoundId, from, expiry);
        // The keeper's fee is credited to its own engine account (withdrawable with `withdraw`),
        // after the trade and its margin check: no token transfer.
        if (fee != 0) _addCollateral(msg.sender, int256(fee));
        emit EventsLib.OrderSettled(account, marketId, msg.sender, priceRoundId, x.fill, fee);
    }

    /// @inheritdoc IMarginEngine
    function cancelExpiredOrder(address account, uint256 marketId) external nonReentrant {
        OrderSlot memory o = _orders[account][marketId];
        if (o.commitSec == 0) revert ErrorsLib.NoOrder(account, marketId);
        uint256 expiry = uint256(o.commitSec) + orderMinDelaySec + orderWindowSec;
        if (block.timestamp <= expiry) revert ErrorsLib.OrderNotExpired(account, marketId, expiry);
        _clearOrder(account, marketId);
        uint256 fee = settlementFeeTokens;
        _book.pendingOrders -= 1;
        _addCollateral(account, int256(fee));
        emit EventsLib.OrderCancelled(account, marketId, fee);
    }

    /// @dev The controller's quote with this engine's open interest of the market passed in (the
    /// numbers the controller would read back from `openInterest`).
    function _quote(uint256 marketId, bool isLong, uint256 sizeWad) internal view returns (MarketQuote memory) {
        MarketState storage m = _markets[marketId];
        return controller.quoteWithOpenInterest(marketId, isLong, sizeWad, m.oiLongWad, m.oiShortWad);
    }

    /// @dev No order any more (commitSec 0), the slot kept non-zero (`OrderSlot.kept`).
    function _clearOrder(address account, uint256 marketId) internal {
        _storeOrder(account, marketId, 0, 0, 0, false);
    }

    /// @dev Writes an `OrderSlot` (with `kept` set) in one SSTORE: a struct assignment writes it
    /// member by member (five SSTOREs). Callers bound `delta` to int96, the price to uint96 and
    /// the time to uint40.
    function _storeOrder(address account, uint256 marketId, int256 delta, uint256 priceWad, uint256 sec, bool closeAll)
        internal
    {
        OrderSlot storage o = _orders[account][marketId];
        uint256 w = uint256(uint96(int96(delta))) | (priceWad << 96) | (uint256(uint40(sec)) << 192)
            | (closeAll ? uint256(1) << 232 : 0) | (uint256(1) << 240);
        assembly ("memory-safe") {
            sstore(o.slot, w)
        }
    }

    /// @dev A stored position as the interface's `Position`.
    function _position(address account, uint256 marketId) internal view returns (Position memory p) {
        PositionSlot memory s = _positions[account][marketId];
        p.sizeWad = s.sizeWad;
        p.basisUsdWad = s.basisUsdWad;
        p.fundingIndexWad = s.fundingIndexWad;
        p.slipSnapWad = s.slipSnapWad;
    }

    /// @dev The quote of a market at its open interest now, with round `roundId` of its price
    /// feed (0: the latest) read in the same call.
    function _quoteAt(uint256 marketId, bool isLong, uint256 sizeWad, uint80 roundId)
        internal
        view
        returns (MarketQuote memory, PriceRound memory)
    {
        MarketState storage m = _markets[marketId];
        return controller.quoteAtRound(marketId, isLong, sizeWad, m.oiLongWad, m.oiShortWad, roundId);
    }

    /// @dev The settlement price of an order: round `r`'s answer, WAD, after checking that it is
    /// the first round published at or after `from`, no later than `expiry`, and valid.
    function _settlementPrice(uint256 marketId, PriceRound memory r, uint256 from, uint256 expiry)
        internal
        view
        returns (uint256)
    {
        _checkFirstRound(r, from, r.updatedAt > expiry || r.updatedAt > block.timestamp);
        if (r.answerWad == 0) revert ErrorsLib.SettlementPriceInvalid(marketId, r.roundId, r.answer);
        return r.answerWad;
    }

    // ================================================================ execution

    /// @dev Executes `x.delta` of `x.account`'s position in `x.marketId` at the answer of price
    /// round `roundId` (`_settlementPrice`, into `x.fill`): impact from the skew it moves, fee,
    /// open-interest caps, margin at the live quote, then events and bad debt.
    function _execute(Exec memory x, uint80 roundId, uint256 from, uint256 expiry) internal {
        uint256 marketId = x.marketId;
        Position memory pos = _position(x.account, marketId);
        x.oldSize = pos.sizeWad;
        int256 newSize = x.oldSize + x.delta;
        if (newSize > type(int128).max || newSize < type(int128).min) revert ErrorsLib.SizeOverflow(newSize);
        x.increasing =
            newSize.abs() > x.oldSize.abs() || (x.oldSize != 0 && (newSize > 0) != (x.oldSize > 0) && newSize != 0);

        int256 skewBefore = _skew(marketId);
        _updateOpenInterest(marketId, x.oldSize, newSize);
        MarketQuote memory q;
        {
            PriceRound memory r;
            (q, r) = _quoteAt(marketId, newSize != 0 ? newSize > 0 : x.oldSize > 0, newSize.abs(), roundId);
            x.fill = _settlementPrice(marketId, r, from, expiry);
        }
        if (!q.priceOk) revert ErrorsLib.PriceFeedInvalid(marketId);
        _settleFunding(x.account, marketId, pos, _accrue(marketId, q));
        if (x.increasing) _checkOpenInterestCap(marketId, newSize > 0, q);

        x.impactTokens =
            _tradeImpact(marketId, q, skewBefore, x.fill, x.increasing ? 0 : pos.slipSnapWad, x.delta, x.oldSize);
        _settleTrade(x, pos, q);

        if (x.increasing) {
            if (!q.sequencerUp) revert ErrorsLib.SequencerDown();
            (Health memory h,) = _health(x.account, marketId, q, HealthMode.Margin);
            if (h.equityUsdWad < int256(h.initialUsdWad)) {
                revert ErrorsLib.InitialMarginViolated(h.equityUsdWad, h.initialUsdWad);
            }
        }
        _realizeIfBankrupt(x.account);
    }

    /// @dev The effective price (fill, plus fee and impact per unit for a buy, minus for a sell,
    /// rounded against the trader) must not be worse than the trader's limit.
    function _checkFillLimit(int256 delta, uint256 fill, uint256 feeTokens, int256 impactTokens, uint256 limit)
        internal
        view
    {
        if (limit == 0) return;
        int256 costUsd = (int256(feeTokens) + impactTokens) * int256(tokenScale);
        uint256 absDelta = delta.abs();
        int256 per = costUsd >= 0 ? int256(uint256(costUsd).divWadUp(absDelta)) : -int256(uint256(-costUsd).divWad(absDelta));
        if (delta > 0) {
            int256 eff = int256(fill) + per;
            if (eff > int256(limit)) revert ErrorsLib.PriceLimitExceeded(eff < 0 ? 0 : uint256(eff), limit);
        } else {
            int256 eff = int256(fill) - per;
            if (eff < int256(limit)) revert ErrorsLib.PriceLimitExceeded(eff < 0 ? 0 : uint256(eff), limit);
        }
    }

    /// @dev Gross open interest of the side a trade grows, valued at the live price, within
    /// min(hard cap, oiDepthMult x depth).
    function _checkOpenInterestCap(uint256 marketId, bool isLong, MarketQuote memory q) internal view {
        MarketState storage m = _markets[marketId];
        uint256 oiUsd = uint256(isLong ? m.oiLongWad : m.oiShortWad).mulWadUp(q.priceWad);
        uint256 cap = q.depthUsdWad.mulWad(oiDepthMultWad);
        uint256 hard = oiHardCapUsdWad[marketId];
        if (hard != 0 && hard < cap) cap = hard;
        if (oiUsd > cap) revert ErrorsLib.OpenInterestCapExceeded(marketId, isLong, oiUsd, cap);
    }

    /// @dev Signed impact in token units of the skew move just applied (charge > 0 into the
    /// market's pool, rebate < 0 out of it, capped by the pool). An exit (snapWad != 0 path) while a
    /// risk feed is bad pays at most its snapshotted slippage, pro rata (the depth floor would
    /// otherwise price it as if the market had no liquidity).
    function _tradeImpact(
        uint256 marketId,
        MarketQuote memory q,
        int256 skewBefore,
        uint256 price,
        uint256 snapWad,
        int256 delta,
        int256 oldSize
    ) internal returns (int256) {
        MarketState storage m = _markets[marketId];
        (uint256 chargeUsd, uint256 rebateUsd) =
            ImpactMath.skewImpact(q.impactCoefWad, skewBefore, _skew(marketId), price, q.depthUsdWad);
        if (chargeUsd != 0) {
            if (!q.riskFeedsOk && oldSize != 0 && delta.abs() <= oldSize.abs() && (delta > 0) != (oldSize > 0)) {
                uint256 capUsd = PositionMath.notional(delta, price).mulWadUp(snapWad.mulDivUp(delta.abs(), oldSize.abs()));
                if (capUsd < chargeUsd) chargeUsd = capUsd;
            }
            uint256 charge = chargeUsd.divUp(tokenScale);
            m.impactPoolTokens += uint128(charge);
            _book.impactPools += uint128(charge);
            return int256(charge);
        }
        uint256 rebate = rebateUsd / tokenScale;
        uint256 pool = m.impactPoolTokens;
        if (rebate > pool) rebate = pool;
        m.impactPoolTokens = uint128(pool - rebate);
        _book.impactPools -= uint128(rebate);
        return -int256(rebate);
    }

    /// @dev Applies a trade to a position at `fill`, moves PnL, fee and impact between buckets,
    /// checks the trader's price limit and emits `PositionModified`.
    function _settleTrade(Exec memory x, Position memory pos, MarketQuote memory q) internal {
        uint256 feeTokens = PositionMath.notional(x.delta, x.fill).mulWadUp(tradingFeeWad).divUp(tokenScale);
        _checkFillLimit(x.delta, x.fill, feeTokens, x.impactTokens, x.limit);
        int256 realizedTokens =
            _writePosition(x.account, x.marketId, pos, x.delta, x.fill, q.slipWad, x.increasing, true);

        _addCollateral(x.account, realizedTokens - int256(feeTokens) - x.impactTokens);
        uint256 feeToInsurance = feeTokens.mulWad(feeInsuranceShareWad);
        Book storage b = _book;
        b.vaultBalance = (b.vaultBalance - realizedTokens).toInt128();
        b.insuranceFund = (b.insuranceFund + feeToInsurance).toUint128();
        b.protocolFees = (b.protocolFees + feeTokens - feeToInsurance).toUint96();
        emit EventsLib.PositionModified(
            x.account, x.marketId, x.delta, x.oldSize + x.delta, x.fill, realizedTokens, feeTokens, x.impactTokens
        );
    }

    // ================================================================ liquidation

    /// @inheritdoc IMarginEngine
    function flagLiquidation(address account) external nonReentrant {
        if (_accounts[account].openMarkets == 0) revert ErrorsLib.NoPosition(account, type(uint256).max);
        uint256 f = _accounts[account].flaggedAt;
        if (f != 0 && block.timestamp <= f + orderMinDelaySec) revert ErrorsLib.AlreadyFlagged(account, f);
        MarketQuote memory none;
        (Health memory h, HealthScan memory scan) = _health(account, type(uint256).max, none, HealthMode.Margin);
        if (!scan.seqUp) revert ErrorsLib.SequencerDown();
        if (!scan.found || h.equityUsdWad >= int256(h.maintenanceUsdWad)) {
            revert ErrorsLib.AccountHealthy(h.equityUsdWad, h.maintenanceUsdWad);
        }
        _accounts[account].flaggedAt = uint64(block.timestamp);
        emit EventsLib.LiquidationFlagged(account, msg.sender, block.timestamp + orderMinDelaySec);
    }

    /// @inheritdoc IMarginEngine
    function liquidate(address account, uint256 marketId) external nonReentrant {
        Position memory pos = _position(account, marketId);
        int256 size = pos.sizeWad;
        if (size == 0) revert ErrorsLib.NoPosition(account, marketId);
        uint256 absSize = size.abs();
        (MarketQuote memory q, PriceRound memory r) = _quoteAt(marketId, size > 0, absSize, 0);
        if (!q.priceOk) revert ErrorsLib.PriceFeedInvalid(marketId);
        if (!q.sequencerUp) revert ErrorsLib.SequencerDown();
        _checkFlag(account, r, q);
        _settleFunding(account, marketId, pos, _accrue(marketId, q));
        _positions[account][marketId].fundingIndexWad = pos.fundingIndexWad;

        (Health memory h, HealthScan memory scan) = _health(account, marketId, q, HealthMode.Liquidation);
        if (h.equityUsdWad >= int256(h.maintenanceUsdWad)) {
            revert ErrorsLib.AccountHealthy(h.equityUsdWad, h.maintenanceUsdWad);
        }
        if (scan.preferred != marketId) revert ErrorsLib.LiquidationMarketNotPreferred(marketId, scan.preferred);

        uint256 closeSize = _liquidationSize(marketId, h, pos, q, absSize);
        int256 delta = size > 0 ? -int256(closeSize) : int256(closeSize);
        _accounts[account].flaggedAt = 0;
        _liquidateClose(account, marketId, pos, q, delta);
    }

    /// @dev A liquidation settles at a price published after the account was flagged: the live
    /// price (`q`, its round `r`) must be the first round of the market's feed at or after flag +
    /// orderMinDelaySec (so neither the flagger nor the account's owner knew it when the flag was
    /// set).
    function _checkFlag(address account, PriceRound memory r, MarketQuote memory q) internal view {
        uint256 f = _accounts[account].flaggedAt;
        if (f == 0) revert ErrorsLib.NotFlagged(account);
        _checkFirstRound(r, f + orderMinDelaySec, r.updatedAt != q.priceTimeSec);
    }

    /// @dev Reverts `SettlementRoundInvalid` unless round `r` is the first round of its feed
    /// published at or after `from` (the previous round, if it can be read, was published before
    /// `from`) and `alsoInvalid` is false.
    function _checkFirstRound(PriceRound memory r, uint256 from, bool alsoInvalid) internal pure {
        if (alsoInvalid || r.updatedAt < from || r.prevUpdatedAt >= from) {
            revert ErrorsLib.SettlementRoundInvalid(r.roundId, r.updatedAt, from, r.prevUpdatedAt);
        }
    }

    /// @dev Closes `delta` at the live price and charges the penalty: the closed notional times
    /// `q.liqFeeWad`, the depth-scaled fraction `_liquidationSize` wrote there (rounded up).
    function _liquidateClose(address account, uint256 marketId, Position memory pos, MarketQuote memory q, int256 delta)
        internal
    {
        int256 size = pos.sizeWad;
        int256 skewBefore = _skew(marketId);
        _updateOpenInterest(marketId, size, size + delta);
        int256 impactTokens = _tradeImpact(marketId, q, skewBefore, q.priceWad, pos.slipSnapWad, delta, size);
        uint256 penaltyTokens = PositionMath.notional(delta, q.priceWad).mulWadUp(q.liqFeeWad).divUp(tokenScale);
        uint256 rewardTokens = penaltyTokens.mulWad(liquidatorShareWad);
        int256 realizedTokens = _writePosition(account, marketId, pos, delta, q.priceWad, q.slipWad, false, false);
        _addCollateral(account, realizedTokens - int256(penaltyTokens) - impactTokens);
        Book storage b = _book;
        b.vaultBalance = (b.vaultBalance - realizedTokens).toInt128();
        b.insuranceFund = (b.insuranceFund + penaltyTokens - rewardTokens).toUint128();
        _emitLiquidated(account, marketId, delta, q.priceWad, penaltyTokens, rewardTokens, realizedTokens, impactTokens);

        _realizeIfBankrupt(account);
        // The liquidator's reward is credited to its own engine account (withdrawable with
        // `withdraw`), after the account's bad debt is realized: no token transfer.
        if (rewardTokens != 0) _addCollateral(msg.sender, int256(rewardTokens));
    }

    function _emitLiquidated(
        address account,
        uint256 marketId,
        int256 delta,
        uint256 price,
        uint256 penaltyTokens,
        uint256 rewardTokens,
        int256 realizedTokens,
        int256 impactTokens
    ) internal {
        emit EventsLib.Liquidated(
            account,
            marketId,
            msg.sender,
            delta,
            PositionMath.notional(delta, price),
            price,
            penaltyTokens,
            rewardTokens
        );
        emit EventsLib.LiquidationSettled(
            account, marketId, realizedTokens, impactTokens, _positions[account][marketId].sizeWad
        );
    }

    /// @dev Size a liquidation closes: enough to restore the target ratio, all of it when that is
    /// impossible or would leave dust. The closing cost counted is the penalty plus `_exitCost`
    /// (`q.liqFeeWad`, which it replaces by the depth-scaled fraction `_liquidateClose` charges).
    function _liquidationSize(uint256 marketId, Health memory h, Position memory pos, MarketQuote memory q, uint256 absSize)
        internal
        view
        returns (uint256 closeSize)
    {
        // The penalty fraction at this account's shortfall depth, used for the size and (in
        // `_liquidateClose`) for the charge alike.
        q.liqFeeWad = _penaltyFraction(q.liqFeeWad, h);
        uint256 mmf = MarginMath.positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad);
        uint256 posNotional = PositionMath.notional(pos.sizeWad, q.priceWad);
        uint256 closeNotional = PositionMath.liquidationNotional(
            h.equityUsdWad,
            h.maintenanceUsdWad,
            liqTargetRatioWad,
            mmf,
            q.liqFeeWad + _exitCost(marketId, q, pos.sizeWad, pos.slipSnapWad),
            posNotional
        );
        closeSize = closeNotional >= posNotional ? absSize : closeNotional.divWadUp(q.priceWad);
        if (closeSize > absSize) closeSize = absSize;
        if (PositionMath.notional(int256(absSize - closeSize), q.priceWad) < MIN_REMAINING_NOTIONAL_USD_WAD) {
            closeSize = absSize;
        }
    }

    /// @dev Cost fraction counted for closing a whole position (liquidation size and the preferred
    /// market's score): the larger of its slippage fraction and the average skew-impact charge of
    /// closing it at the market's current skew (closing the minority side grows the skew, and in a
    /// thin market costs far more than the position's own slippage); while a risk feed is bad, the
    /// capped `_exitSlip`, as the charge itself is then capped.
    function _exitCost(uint256 marketId, MarketQuote memory q, int256 size, uint256 snapWad)
        internal
        view
        returns (uint256)
    {
        uint256 slip = _exitSlip(q, snapWad);
        if (!q.riskFeedsOk) return slip;
        int256 skew = _skew(marketId);
        (uint256 chargeUsd,) = ImpactMath.skewImpact(q.impactCoefWad, skew, skew - size, q.priceWad, q.depthUsdWad);
        uint256 frac = chargeUsd.divWadUp(PositionMath.notional(size, q.priceWad));
        return frac > slip ? frac : slip;
    }

    /// @dev Slippage fraction counted for an exit: the live one, or at most the snapshot while a
    /// risk feed is bad.
    function _exitSlip(MarketQuote memory q, uint256 snapWad) internal pure returns (uint256) {
        if (q.riskFeedsOk || snapWad >= q.slipWad) return q.slipWad;
        return snapWad;
    }

    /// @dev Applies `delta` to a position at `price`, stores it and returns the realized PnL in
    /// token units (rounded down). `keep`: a position closed by the account's own order keeps its
    /// slots non-zero for its next position (`PositionSlot`); one closed by a liquidation clears its
    /// first slot (the refund goes to the liquidator's transaction).
    function _writePosition(
        address account,
        uint256 marketId,
        Position memory pos,
        int256 delta,
        uint256 price,
        uint256 slipWad,
        bool increasing,
        bool keep
    ) internal returns (int256 realizedTokens) {
        int256 oldSize = pos.sizeWad;
        (int256 size2, int256 basis2, int256 realizedWad) = PositionMath.applyTrade(oldSize, pos.basisUsdWad, delta, price);
        pos.sizeWad = int128(size2);
        pos.basisUsdWad = int128(basis2);
        if (increasing) pos.slipSnapWad = uint64(slipWad);
        if (size2 == 0) pos.slipSnapWad = 0;
        _storePosition(account, marketId, pos, SafeCast.toInt120(basis2), keep || size2 != 0);
        _setOpen(account, marketId, oldSize != 0, size2 != 0);
        realizedTokens = realizedWad.divFloor(int256(tokenScale));
    }

    /// @dev Writes both slots of a `PositionSlot` in one SSTORE each (a struct assignment writes
    /// it member by member: six SSTOREs), `kept` and `kept2` both set to `kept`.
    function _storePosition(address account, uint256 marketId, Position memory pos, int120 basis, bool kept) internal {
        PositionSlot storage s = _positions[account][marketId];
        uint256 k = kept ? 1 : 0;
        uint256 w0 = uint256(uint128(pos.sizeWad)) | (uint256(uint120(basis)) << 128) | (k << 248);
        uint256 w1 = uint256(uint128(pos.fundingIndexWad)) | (uint256(pos.slipSnapWad) << 128) | (k << 192);
        assembly ("memory-safe") {
            sstore(s.slot, w0)
            sstore(add(s.slot, 1), w1)
        }
    }

    // ================================================================ vault and insurance

    /// @inheritdoc IMarginEngine
    function fundVault(uint256 amount) external nonReentrant {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        Book storage b = _book;
        b.vaultBalance = (b.vaultBalance + amount.toInt256()).toInt128();
        b.netDeposits = (b.netDeposits + amount).toUint128();
        emit EventsLib.VaultFunded(msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraws vault liquidity (treasury role), never more than the vault holds.
    function withdrawVault(address to, uint256 amount) external nonReentrant onlyRole(TREASURY_ROLE) {
        if (to == address(0)) revert ErrorsLib.ZeroAddress();
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        Book storage b = _book;
        if (b.vaultBalance < amount.toInt256()) revert ErrorsLib.VaultWithdrawTooLarge(amount, b.vaultBalance);
        b.vaultBalance -= int128(int256(amount));
        b.netDeposits -= uint128(amount);
        emit EventsLib.VaultWithdrawn(to, amount);
        collateralToken.safeTransfer(to, amount);
    }

    /// @inheritdoc IMarginEngine
    function fundInsurance(uint256 amount) external nonReentrant {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        Book storage b = _book;
        b.insuranceFund = (b.insuranceFund + amount).toUint128();
        b.netDeposits = (b.netDeposits + amount).toUint128();
        emit EventsLib.InsuranceFunded(msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraws protocol fees (treasury role).
    function withdrawFees(address to) external nonReentrant onlyRole(TREASURY_ROLE) {
        if (to == address(0)) revert ErrorsLib.ZeroAddress();
        Book storage b = _book;
        uint256 amount = b.protocolFees;
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        b.protocolFees = 0;
        b.netDeposits -= uint128(amount);
        emit EventsLib.FeesWithdrawn(to, amount);
        collateralToken.safeTransfer(to, amount);
    }

    // ================================================================ views

    /// @notice Bad debt ever realized, token units.
    function badDebtTotal() external view returns (uint256) {
        return _badDebt.total;
    }

    /// @notice The part of `badDebtTotal` the insurance fund covered, token units.
    function badDebtCovered() external view returns (uint256) {
        return _badDebt.covered;
    }

    /// @notice The part of `badDebtTotal` socialized to the vault (total - covered), token units.
    function badDebtSocialized() external view returns (uint256) {
        BadDebtBook memory bd = _badDebt;
        return bd.total - bd.covered;
    }

    /// @inheritdoc IMarginEngine
    function health(address account) external view returns (Health memory h) {
        MarketQuote memory none;
        (h,) = _health(account, type(uint256).max, none, HealthMode.Margin);
    }

    /// @inheritdoc IMarginEngine
    function isLiquidatable(address account) external view returns (bool) {
        if (_accounts[account].openMarkets == 0) return false;
        MarketQuote memory none;
        (Health memory h, HealthScan memory scan) = _health(account, type(uint256).max, none, HealthMode.Margin);
        return scan.found && h.equityUsdWad < int256(h.maintenanceUsdWad);
    }

    /// @inheritdoc IMarginEngine
    function liquidationMarket(address account) external view returns (uint256) {
        MarketQuote memory none;
        (Health memory h, HealthScan memory scan) = _health(account, type(uint256).max, none, HealthMode.Liquidation);
        if (!scan.found || h.equityUsdWad >= int256(h.maintenanceUsdWad)) {
            revert ErrorsLib.AccountHealthy(h.equityUsdWad, h.maintenanceUsdWad);
        }
        return scan.preferred;
    }

    /// @notice When `account` was flagged for liquidation (0: not flagged), unix seconds.
    function flaggedAt(address account) external view returns (uint256) {
        return _accounts[account].flaggedAt;
    }

    /// @inheritdoc IMarginEngine
    function order(address account, uint256 marketId) external view returns (Order memory) {
        OrderSlot memory o = _orders[account][marketId];
        return Order({
            sizeDeltaWad: o.sizeDeltaWad,
            acceptablePriceWad: o.acceptablePriceWad,
            commitSec: o.commitSec,
            feeTokens: o.commitSec == 0 ? 0 : uint64(settlementFeeTokens),
            closeAll: o.closeAll
        });
    }

    /// @notice Counterparty vault balance, token units (negative only if traders out-won it).
    function vaultBalance() external view returns (int256) {
        return _book.vaultBalance;
    }

    /// @notice Insurance fund, token units.
    function insuranceFund() external view returns (uint256) {
        return _book.insuranceFund;
    }

    /// @notice Protocol fees, token units.
    function protocolFees() external view returns (uint256) {
        return _book.protocolFees;
    }

    /// @notice Impact charged and not yet rebated, over every market, token units.
    function impactPools() external view returns (uint256) {
        return _book.impactPools;
    }

    /// @notice Settlement fees escrowed by pending orders, token units.
    function orderEscrow() external view returns (uint256) {
        return uint256(_book.pendingOrders) * settlementFeeTokens;
    }

    /// @notice Sum of deposits minus withdrawals over every bucket, token units (conservation check).
    function netDeposits() external view returns (uint256) {
        return _book.netDeposits;
    }

    /// @inheritdoc IMarginEngine
    function openInterest(uint256 marketId) external view returns (uint256 longWad, uint256 shortWad) {
        MarketState storage m = _markets[marketId];
        return (m.oiLongWad, m.oiShortWad);
    }

    /// @inheritdoc IMarginEngine
    function position(address account, uint256 marketId) external view returns (Position memory) {
        return _position(account, marketId);
    }

    /// @inheritdoc IMarginEngine
    function collateralOf(address account) external view returns (int256) {
        return _accounts[account].collateral;
    }

    /// @notice Bitmap of the markets where an account has a position (bit i: market i).
    function openMarkets(address account) external view returns (uint256) {
        return _accounts[account].openMarkets;
    }

    /// @notice Funding state of a market: index (USD per base unit, WAD), the hourly rate of the
    /// funding feed at the last accrual (WAD) and that accrual's time.
    function fundingState(uint256 marketId) external view returns (int256 indexWad, int256 rateWad, uint256 lastAccrualSec) {
        MarketState storage m = _markets[marketId];
        return (m.fundingIndexWad, m.lastRateWad, m.lastAccrualSec);
    }

    /// @notice A market's impact pool (impact charged, not yet rebated), token units, and the last
    /// valid price the engine saw (WAD; values the market conservatively while its feed is bad).
    function marketBook(uint256 marketId) external view returns (uint256 impactPoolTokens, uint256 lastPriceWad) {
        MarketState storage m = _markets[marketId];
        return (m.impactPoolTokens, m.lastPriceWad);
    }

    // ================================================================ funding

    /// @inheritdoc IMarginEngine
    function accrueFunding(uint256 marketId) external nonReentrant {
        MarketQuote memory q = _quote(marketId, true, 0);
        if (!q.priceOk) revert ErrorsLib.PriceFeedInvalid(marketId);
        _accrue(marketId, q);
    }

    // ================================================================ internals

    function _deposit(address account, uint256 amount) internal {
        if (amount == 0) revert ErrorsLib.ZeroAmount();
        _addCollateral(account, amount.toInt256());
        _book.netDeposits = (_book.netDeposits + amount).toUint128();
        emit EventsLib.Deposited(account, msg.sender, amount);
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _skew(uint256 marketId) internal view returns (int256) {
        MarketState storage m = _markets[marketId];
        return int256(uint256(m.oiLongWad)) - int256(uint256(m.oiShortWad));
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

    /// @dev Accrues the index to now from the funding feed (see `_indexNow`), records the feed's
    /// rate (or keeps the last good one while the feed is bad) and the last valid price.
    function _accrue(uint256 marketId, MarketQuote memory q) internal returns (int256 index) {
        MarketState storage m = _markets[marketId];
        int256 rate;
        (index, rate) = _indexNow(m, q);
        m.fundingIndexWad = int128(index);
        m.lastRateWad = int64(rate);
        m.lastAccrualSec = uint64(block.timestamp);
        m.lastPriceWad = uint128(q.priceWad);
        emit EventsLib.FundingAccrued(marketId, rate, index, block.timestamp);
    }

    /// @dev Funding index now and the rate to record. The rate recorded at the last accrual (the
    /// feed's answer then) applies until the feed's current answer was published, the current
    /// answer from then on: the rate always comes from the feed, never from when someone trades.
    /// While the feed is bad the last rate is held. Priced at the quote's price (the last valid
    /// price when the price feed is bad).
    function _indexNow(MarketState storage m, MarketQuote memory q) internal view returns (int256 index, int256 rate) {
        index = m.fundingIndexWad;
        uint256 last = m.lastAccrualSec;
        int256 lastRate = m.lastRateWad;
        rate = q.fundingOk ? q.fundingRateWad : lastRate;
        if (last == 0) return (index, rate);
        uint256 price = q.priceOk ? q.priceWad : m.lastPriceWad;
        uint256 switchAt = q.fundingOk && q.fundingTimeSec > last ? q.fundingTimeSec : last;
        if (switchAt > block.timestamp) switchAt = block.timestamp;
        index += PositionMath.fundingIndexDelta(lastRate, price, switchAt - last)
            + PositionMath.fundingIndexDelta(rate, price, block.timestamp - switchAt);
    }

    /// @dev Realizes a position's funding into collateral (the vault is the counterparty).
    function _settleFunding(address account, uint256 marketId, Position memory pos, int256 index) internal {
        if (pos.sizeWad != 0) {
            int256 owedTokens = PositionMath.fundingOwed(pos.sizeWad, index, pos.fundingIndexWad).divCeil(int256(tokenScale));
            if (owedTokens != 0) {
                _addCollateral(account, -owedTokens);
                _book.vaultBalance = (_book.vaultBalance + owedTokens).toInt128();
                emit EventsLib.FundingSettled(account, marketId, owedTokens);
            }
        }
        pos.fundingIndexWad = int128(index);
    }

    function _setOpen(address account, uint256 marketId, bool wasOpen, bool isOpen) internal {
        if (wasOpen == isOpen) return;
        Account storage acc = _accounts[account];
        uint256 bits = acc.openMarkets;
        if (isOpen) {
            bits |= (uint256(1) << marketId);
            if (LibBit.popCount(bits) > ConstantsLib.MAX_POSITIONS) {
                revert ErrorsLib.TooManyPositions(account, ConstantsLib.MAX_POSITIONS);
            }
        } else {
            bits &= ~(uint256(1) << marketId);
        }
        acc.openMarkets = uint64(bits);
    }

    /// @dev Cross-margin health over at most MAX_POSITIONS positions. `cachedMarket`'s quote is
    /// reused (it was read for the same size and side in this transaction). A market whose price
    /// is bad is valued at its last valid price moved against the position by its maximum
    /// maintenance fraction, with maintenance at that maximum and initial at the maximum initial
    /// fraction. Withdrawal mode: no unrealized profit counts, and every price must be valid and no
    /// older than `withdrawPriceMaxAgeSec`. `scan.preferred` (liquidation mode): among valid-price markets, the one
    /// whose closing restores health with the least notional (largest T*mmf - cost), lowest id
    /// on ties.
    function _health(address account, uint256 cachedMarket, MarketQuote memory cached, HealthMode mode)
        internal
        view
        returns (Health memory h, HealthScan memory scan)
    {
        scan.seqUp = true;
        Account memory acc = _accounts[account];
        h.equityUsdWad = int256(acc.collateral) * int256(tokenScale);
        uint256 bits = acc.openMarkets;
        // Liquidation mode with several open markets: each valid-price market is a candidate for
        // the preferred one, recorded by `_healthTerm` and scored after the loop (`_scorePreferred`).
        uint256[] memory candidates;
        if (mode == HealthMode.Liquidation) {
            unchecked {
                scan.single = bits & (bits - 1) == 0; // at most one bit set (0 - 1 wraps harmlessly)
            }
            if (!scan.single) candidates = new uint256[](1 + 2 * LibBit.popCount(bits));
        }
        while (bits != 0) {
            uint256 marketId = LibBit.ffs(bits);
            bits &= bits - 1;
            Position memory pos = _position(account, marketId);
            MarketQuote memory q = marketId == cachedMarket
                ? cached
                : _quote(marketId, pos.sizeWad > 0, SignedMath.abs(pos.sizeWad));
            scan.seqUp = scan.seqUp && q.sequencerUp;
            _healthTerm(h, scan, pos, q, marketId, mode, candidates);
        }
        if (candidates.length != 0) _scorePreferred(h, scan, candidates);
    }

    /// @dev The liquidation penalty fraction of a market of fee `liqFeeWad` for an account of
    /// health `h` (`PositionMath.penaltyFraction` with this engine's settings).
    function _penaltyFraction(uint256 liqFeeWad, Health memory h) internal view returns (uint256) {
        return PositionMath.penaltyFraction(
            liqFeeWad, h.equityUsdWad, h.maintenanceUsdWad, liqPenaltyFloorWad, liqPenaltyFullDepthWad
        );
    }

    /// @dev The preferred market among the candidates `_healthTerm` recorded (valid price,
    /// ascending id; `c[0]` their count, then per candidate T*mmf - exit cost and liqFee << 8 | id):
    /// the largest T*mmf - (liqFee x penalty scale + exit cost), the lowest id on ties, with the
    /// depth-scaled fee a liquidation charges. The scale depends on the whole account's depth,
    /// known only after the loop, hence the second pass.
    function _scorePreferred(Health memory h, HealthScan memory scan, uint256[] memory c) internal view {
        uint256 n = c[0];
        for (uint256 i; i < n; ++i) {
            uint256 feeId = c[2 + 2 * i];
            int256 score = int256(c[1 + 2 * i]) - int256(_penaltyFraction(feeId >> 8, h));
            if (i == 0 || score > scan.bestScore) {
                scan.bestScore = score;
                scan.preferred = feeId & 0xff;
            }
        }
    }

    function _healthTerm(
        Health memory h,
        HealthScan memory scan,
        Position memory pos,
        MarketQuote memory q,
        uint256 marketId,
        HealthMode mode,
        uint256[] memory candidates
    ) internal view {
        bool withdrawal = mode == HealthMode.Withdrawal;
        MarketState storage m = _markets[marketId];
        uint256 mmf;
        uint256 imf;
        if (q.priceOk) {
            if (withdrawal && block.timestamp - q.priceTimeSec > withdrawPriceMaxAgeSec) {
                revert ErrorsLib.PriceTooOld(marketId, q.priceTimeSec, withdrawPriceMaxAgeSec);
            }
            mmf = MarginMath.positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad);
            imf = q.imfWad > mmf ? q.imfWad : mmf;
            if (mode == HealthMode.Liquidation) {
                // The preferred market's score compares markets: with one open market it is that
                // one; with several, each valid-price market is a candidate scored after the loop
                // (`_scorePreferred`).
                if (scan.single) {
                    scan.preferred = marketId;
                } else {
                    uint256 i = candidates[0]++;
                    candidates[1 + 2 * i] = uint256(
                        int256(mmf.mulWad(liqTargetRatioWad)) - int256(_exitCost(marketId, q, pos.sizeWad, pos.slipSnapWad))
                    );
                    candidates[2 + 2 * i] = q.liqFeeWad << 8 | marketId;
                }
            }
            scan.found = true;
        } else {
            if (withdrawal) revert ErrorsLib.PriceFeedInvalid(marketId);
            uint256 last = m.lastPriceWad;
            q.priceWad = pos.sizeWad > 0 ? last.mulWad(1e18 - q.maxMmfWad) : last.mulWadUp(1e18 + q.maxMmfWad);
            mmf = q.maxMmfWad;
            imf = q.maxImfWad > mmf ? q.maxImfWad : mmf;
        }
        (int256 index,) = _indexNow(m, q);
        int256 pnl = PositionMath.unrealizedPnl(pos.sizeWad, pos.basisUsdWad, q.priceWad);
        if (withdrawal && pnl > 0) pnl = 0;
        h.equityUsdWad += pnl - PositionMath.fundingOwed(pos.sizeWad, index, pos.fundingIndexWad);
        uint256 n = PositionMath.notional(pos.sizeWad, q.priceWad);
        h.notionalUsdWad += n;
        h.maintenanceUsdWad += n.mulWadUp(mmf);
        h.initialUsdWad += n.mulWadUp(imf);
    }

    /// @dev Adds `delta` token units to an account's collateral (reverts past int128).
    function _addCollateral(address account, int256 delta) internal {
        Account storage acc = _accounts[account];
        acc.collateral = (acc.collateral + delta).toInt128();
    }

    /// @dev Realizes the bad debt of an account left with no position and negative collateral.
    function _realizeIfBankrupt(address account) internal {
        Account storage acc = _accounts[account];
        if (acc.openMarkets == 0 && acc.collateral < 0) _realizeBadDebt(account, acc);
    }

    function _realizeBadDebt(address account, Account storage acc) internal {
        uint256 debt = uint256(-int256(acc.collateral));
        Book storage b = _book;
        uint256 fund = b.insuranceFund;
        uint256 covered = debt < fund ? debt : fund;
        uint256 socialized = debt - covered;
        acc.collateral = 0;
        b.insuranceFund = uint128(fund - covered);
        b.vaultBalance = (b.vaultBalance - int256(socialized)).toInt128();
        BadDebtBook memory bd = _badDebt;
        _badDebt = BadDebtBook({total: (bd.total + debt).toUint128(), covered: (bd.covered + covered).toUint128()});
        emit EventsLib.BadDebt(account, debt, covered, socialized);
    }
}
