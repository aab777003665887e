// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {LibBit} from "solady/utils/LibBit.sol";
import {FeedConfig, FeedKind, ILeverageController, MarketQuote, RiskParams} from "../interfaces/ILeverageController.sol";
import {Health, Order, Position} from "../interfaces/IMarginEngine.sol";
import {IMarginLens, OrderPreview} from "../interfaces/IMarginLens.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib} from "./libraries/ErrorsLib.sol";
import {ImpactMath} from "./libraries/ImpactMath.sol";
import {MarginMath, RiskInputs} from "./libraries/MarginMath.sol";
import {PositionMath} from "./libraries/PositionMath.sol";
import {SignedMath} from "./libraries/SignedMath.sol";
import {MarginEngine} from "./MarginEngine.sol";

/// @dev The dynamic controller's views the lens reads to price a hypothetical open interest (the
/// static controller has no `imfParams`: its initial fraction does not depend on open interest).
interface IDynamicControllerViews {
    function imfParams(uint256 marketId) external view returns (RiskParams memory);
    function readFeed(uint256 marketId, FeedKind kind) external view returns (bool ok, int256 valueWad);
    function tailFeed(uint256 marketId, bool isLong) external view returns (bool ok, uint256 tailWad, uint256 publishedAtSec);
}

/// @title MarginLens
/// @notice Order preview, maximum order size and liquidation price for a front end, computed
/// with the engine's own libraries and rounding from its public state. Holds no state.
/// @dev The engine quotes a settlement after adding the order to the open interest, so the lens
/// re-prices the crowding term of the initial fraction at the post-trade open interest (dynamic
/// controller); every other quote field is the controller's. Tests compare each view with what
/// the engine then does, to the wei (tests/forge/Lens.t.sol).
contract MarginLens is IMarginLens {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    /// @notice Bound on the bisection steps of `maxOrderSize` and `liquidationPrice`.
    uint256 public constant MAX_ITERATIONS = 128;

    MarginEngine public immutable engine;
    ILeverageController public immutable controller;
    uint256 internal immutable _tokenScale;

    /// @dev The traded market and the account, read once.
    struct Ctx {
        address account;
        uint256 marketId;
        Position pos;
        int256 collateral;
        uint256 oiLong;
        uint256 oiShort;
        uint256 pool;
        int256 indexNow;
        bool pending;
        bool feeShort;
        uint256 openBits;
        uint256 tradingFeeWad;
        uint256 oiDepthMultWad;
        uint256 oiHardCapUsdWad;
        uint256 tokenScale;
        Health others;
        bool dynamic;
        RiskParams p;
        int256 sigma;
        int256 skew;
        uint256 tailLong;
        uint256 tailShort;
        MarketQuote qLong;
        MarketQuote qShort;
    }

    /// @dev One simulated settlement.
    struct Sim {
        int256 delta;
        uint256 fill;
        uint256 limit;
        int256 newSize;
        bool increasing;
        bool isLong;
        MarketQuote q;
        uint256 newSideOi;
        uint256 newOtherOi;
        int256 skewBefore;
        int256 skewAfter;
        int256 collateral;
        int256 newBasis;
    }

    constructor(MarginEngine engine_) {
        engine = engine_;
        controller = engine_.controller();
        _tokenScale = engine_.tokenScale();
    }

    // ================================================================ views

    /// @inheritdoc IMarginLens
    function previewOrder(
        address account,
        uint256 marketId,
        int256 sizeDeltaWad,
        uint256 fillPriceWad,
        uint256 acceptablePriceWad
    ) external view returns (OrderPreview memory r) {
        r.settlementFeeTokens = engine.settlementFeeTokens();
        if (sizeDeltaWad == 0) return _fail(r, ErrorsLib.ZeroSize.selector);
        if (sizeDeltaWad > type(int128).max || sizeDeltaWad < type(int128).min) {
            return _fail(r, ErrorsLib.SizeOverflow.selector);
        }
        if (!controller.isListed(marketId)) return _fail(r, ErrorsLib.MarketNotListed.selector);
        if (acceptablePriceWad > type(uint128).max) return _fail(r, ErrorsLib.SizeOverflow.selector);
        Ctx memory c = _context(account, marketId, true);
        if (c.feeShort) return _fail(r, ErrorsLib.InsufficientCollateral.selector);
        if (c.pending) r.settlementFeeTokens = engine.order(account, marketId).feeTokens;
        MarketQuote memory live = c.qLong;
        if (fillPriceWad == 0) {
            if (!live.priceOk) return _fail(r, ErrorsLib.PriceFeedInvalid.selector);
            fillPriceWad = live.priceWad;
        } else {
            FeedConfig memory fc = controller.feedConfig(marketId, FeedKind.Price);
            if (fillPriceWad < uint256(int256(fc.minWad)) || fillPriceWad > uint256(int256(fc.maxWad))) {
                return _fail(r, ErrorsLib.SettlementPriceInvalid.selector);
            }
        }
        r.fillPriceWad = fillPriceWad;
        _simulate(c, sizeDeltaWad, fillPriceWad, acceptablePriceWad, r);
    }

    /// @inheritdoc IMarginLens
    function maxOrderSize(address account, uint256 marketId, bool isLong) external view returns (uint256) {
        if (!controller.isListed(marketId)) return 0;
        Ctx memory c = _context(account, marketId, true);
        if (c.feeShort || !c.qLong.priceOk) return 0;
        int256 old = c.pos.sizeWad;
        uint256 base = old != 0 && (old > 0) != isLong ? old.abs() : 0;
        // Beyond `base` the order grows risk on side `isLong`; the new size must fit int128 and
        // the delta must too.
        uint256 hi = isLong
            ? uint256(int256(type(int128).max) - old)
            : uint256(old - int256(type(int128).min));
        if (hi > uint256(int256(type(int128).max))) hi = uint256(int256(type(int128).max));
        if (hi <= base) return hi;
        if (!_passes(c, base + 1, isLong)) return base;
        uint256 lo = base + 1;
        if (_passes(c, hi, isLong)) return hi;
        for (uint256 i; i < MAX_ITERATIONS && hi - lo > 1; ++i) {
            uint256 mid = lo + (hi - lo) / 2;
            if (_passes(c, mid, isLong)) lo = mid;
            else hi = mid;
        }
        return lo;
    }

    /// @inheritdoc IMarginLens
    function liquidationPrice(address account, uint256 marketId) external view returns (uint256, bool) {
        Ctx memory c = _context(account, marketId, false);
        int256 size = c.pos.sizeWad;
        if (size == 0) revert ErrorsLib.NoPosition(account, marketId);
        MarketQuote memory q = size > 0 ? c.qLong : c.qShort;
        FeedConfig memory fc = controller.feedConfig(marketId, FeedKind.Price);
        uint256 lo = uint256(int256(fc.minWad));
        uint256 hi = uint256(int256(fc.maxWad));
        uint256 mmf = MarginMath.positionMaintenance(q.mmfBaseWad, c.pos.slipSnapWad, q.maxMmfWad);
        if (size > 0) {
            // Liquidatable at low prices: largest P liquidatable with P + 1 not.
            if (!_liquidatableAt(c, q, mmf, lo)) return (0, false);
            if (_liquidatableAt(c, q, mmf, hi)) return (hi, true);
            for (uint256 i; i < MAX_ITERATIONS && hi - lo > 1; ++i) {
                uint256 mid = lo + (hi - lo) / 2;
                if (_liquidatableAt(c, q, mmf, mid)) lo = mid;
                else hi = mid;
            }
            return (lo, true);
        }
        // A short: smallest P liquidatable with P - 1 not.
        if (!_liquidatableAt(c, q, mmf, hi)) return (0, false);
        if (_liquidatableAt(c, q, mmf, lo)) return (lo, true);
        for (uint256 i; i < MAX_ITERATIONS && hi - lo > 1; ++i) {
            uint256 mid = lo + (hi - lo) / 2;
            if (_liquidatableAt(c, q, mmf, mid)) hi = mid;
            else lo = mid;
        }
        return (hi, true);
    }

    // ================================================================ context

    /// @dev Reads the account, the traded market and the health of every other open market.
    /// `order`: an order is about to be committed (the settlement fee leaves the collateral
    /// unless an order of this market is pending, i.e. escrowed already).
    function _context(address account, uint256 marketId, bool order) internal view returns (Ctx memory c) {
        c.account = account;
        c.marketId = marketId;
        c.pos = engine.position(account, marketId);
        c.collateral = engine.collateralOf(account);
        if (order) {
            Order memory o = engine.order(account, marketId);
            c.pending = o.commitSec != 0;
            if (!c.pending) {
                uint256 fee = engine.settlementFeeTokens();
                if (c.collateral < int256(fee)) c.feeShort = true;
                c.collateral -= int256(fee);
            }
        }
        (c.oiLong, c.oiShort) = engine.openInterest(marketId);
        (c.pool,) = engine.marketBook(marketId);
        c.qLong = controller.quote(marketId, true, 0);
        c.qShort = controller.quote(marketId, false, 0);
        c.indexNow = _indexNow(marketId, c.qLong);
        c.openBits = engine.openMarkets(account);
        c.tradingFeeWad = engine.tradingFeeWad();
        c.tokenScale = _tokenScale;
        c.oiDepthMultWad = engine.oiDepthMultWad();
        c.oiHardCapUsdWad = engine.oiHardCapUsdWad(marketId);
        c.others = _otherHealth(account, marketId, c.openBits, c.collateral);
        try IDynamicControllerViews(address(controller)).imfParams(marketId) returns (RiskParams memory p) {
            c.dynamic = true;
            c.p = p;
            (, c.sigma) = IDynamicControllerViews(address(controller)).readFeed(marketId, FeedKind.Volatility);
            (, c.skew) = IDynamicControllerViews(address(controller)).readFeed(marketId, FeedKind.Skew);
            (, c.tailLong,) = IDynamicControllerViews(address(controller)).tailFeed(marketId, true);
            (, c.tailShort,) = IDynamicControllerViews(address(controller)).tailFeed(marketId, false);
        } catch {}
    }

    /// @dev The engine's `_health` over every open market but `marketId`, with `collateral`.
    function _otherHealth(address account, uint256 marketId, uint256 bits, int256 collateral)
        internal
        view
        returns (Health memory h)
    {
        h.equityUsdWad = collateral * int256(_tokenScale);
        bits &= ~(uint256(1) << marketId);
        while (bits != 0) {
            uint256 m = LibBit.ffs(bits);
            bits &= bits - 1;
            Position memory pos = engine.position(account, m);
            MarketQuote memory q = controller.quote(m, pos.sizeWad > 0, SignedMath.abs(pos.sizeWad));
            _healthTerm(h, pos, q, m);
        }
    }

    /// @dev `MarginEngine._healthTerm` (not for a withdrawal).
    function _healthTerm(Health memory h, Position memory pos, MarketQuote memory q, uint256 marketId) internal view {
        uint256 mmf;
        uint256 imf;
        if (q.priceOk) {
            mmf = MarginMath.positionMaintenance(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad);
            imf = q.imfWad > mmf ? q.imfWad : mmf;
        } else {
            (, uint256 last) = engine.marketBook(marketId);
            q.priceWad = pos.sizeWad > 0 ? last.mulWad(1e18 - q.maxMmfWad) : last.mulWadUp(1e18 + q.maxMmfWad);
            mmf = q.maxMmfWad;
            imf = q.maxImfWad > mmf ? q.maxImfWad : mmf;
        }
        int256 index = _indexNow(marketId, q);
        int256 pnl = PositionMath.unrealizedPnl(pos.sizeWad, pos.basisUsdWad, q.priceWad);
        h.equityUsdWad += pnl - PositionMath.fundingOwed(pos.sizeWad, index, pos.fundingIndexWad);
        uint256 n = PositionMath.notional(pos.sizeWad, q.priceWad);
        h.notionalUsdWad += n;
        h.maintenanceUsdWad += n.mulWadUp(mmf);
        h.initialUsdWad += n.mulWadUp(imf);
    }

    /// @dev `MarginEngine._indexNow` from the engine's public funding state.
    function _indexNow(uint256 marketId, MarketQuote memory q) internal view returns (int256 index) {
        (int256 idx, int256 lastRate, uint256 last) = engine.fundingState(marketId);
        index = idx;
        if (last == 0) return index;
        int256 rate = q.fundingOk ? q.fundingRateWad : lastRate;
        uint256 price = q.priceWad;
        if (!q.priceOk) (, price) = engine.marketBook(marketId);
        uint256 switchAt = q.fundingOk && q.fundingTimeSec > last ? q.fundingTimeSec : last;
        if (switchAt > block.timestamp) switchAt = block.timestamp;
        index += PositionMath.fundingIndexDelta(lastRate, price, switchAt - last)
            + PositionMath.fundingIndexDelta(rate, price, block.timestamp - switchAt);
    }

    /// @dev The controller's quote of (side, size) at the open interest (side, other): the
    /// size-0 quote of that side with the slippage and the initial fraction of `size`.
    function _quoteAt(Ctx memory c, bool isLong, uint256 size, uint256 oiSide, uint256 oiOther)
        internal
        pure
        returns (MarketQuote memory q)
    {
        MarketQuote memory b = isLong ? c.qLong : c.qShort;
        q = MarketQuote({
            priceWad: b.priceWad,
            priceTimeSec: b.priceTimeSec,
            fundingRateWad: b.fundingRateWad,
            fundingTimeSec: b.fundingTimeSec,
            imfWad: b.imfWad,
            mmfBaseWad: b.mmfBaseWad,
            maxMmfWad: b.maxMmfWad,
            maxImfWad: b.maxImfWad,
            slipWad: 0,
            impactCoefWad: b.impactCoefWad,
            depthUsdWad: b.depthUsdWad,
            liqFeeWad: b.liqFeeWad,
            priceOk: b.priceOk,
            riskFeedsOk: b.riskFeedsOk,
            fundingOk: b.fundingOk,
            sequencerUp: b.sequencerUp
        });
        uint256 notional = size.mulWadUp(q.priceWad);
        q.slipWad = MarginMath.slippage(q.impactCoefWad, notional, q.depthUsdWad);
        if (!c.dynamic) return q;
        RiskParams memory p = c.p;
        uint256 imfLive = p.maxImfWad;
        if (q.riskFeedsOk) {
            RiskInputs memory x = RiskInputs({
                sigmaWad: uint256(c.sigma),
                skewWad: c.skew,
                depthUsdWad: q.depthUsdWad,
                fundingRateWad: q.fundingRateWad,
                oiSideWad: oiSide,
                oiOtherWad: oiOther,
                notionalUsdWad: notional,
                priceWad: q.priceWad,
                isLong: isLong
            });
            imfLive = MarginMath.compute(p, x, isLong ? c.tailLong : c.tailShort).imfWad;
        }
        q.imfWad = MarginMath.requiredInitial(
            imfLive, MarginMath.positionMaintenance(q.mmfBaseWad, q.slipWad, q.maxMmfWad), p.minBufferWad, p.maxImfWad
        );
    }

    // ================================================================ settlement

    /// @dev Whether an order of `size` on side `isLong` settles now at the live price, no limit.
    function _passes(Ctx memory c, uint256 size, bool isLong) internal view returns (bool) {
        OrderPreview memory r;
        int256 delta = isLong ? int256(size) : -int256(size);
        _simulate(c, delta, c.qLong.priceWad, 0, r);
        return r.ok;
    }

    /// @dev `MarginEngine._execute` on memory, in the engine's order of checks.
    function _simulate(Ctx memory c, int256 delta, uint256 fill, uint256 limit, OrderPreview memory r)
        internal
        view
    {
        Sim memory s;
        s.delta = delta;
        s.fill = fill;
        s.limit = limit;
        s.newSize = c.pos.sizeWad + delta;
        r.newSizeWad = s.newSize;
        if (s.newSize > type(int128).max || s.newSize < type(int128).min) {
            return _failSim(r, ErrorsLib.SizeOverflow.selector);
        }
        _openInterestAfter(c, s);
        s.q = _quoteAt(c, s.isLong, s.newSize.abs(), s.newSideOi, s.newOtherOi);
        r.imfWad = s.q.imfWad;
        if (!s.q.priceOk) return _failSim(r, ErrorsLib.PriceFeedInvalid.selector);

        // Funding settled at the accrual.
        s.collateral = c.collateral;
        if (c.pos.sizeWad != 0) {
            r.fundingTokens = PositionMath.fundingOwed(c.pos.sizeWad, c.indexNow, c.pos.fundingIndexWad).divCeil(
                int256(_tokenScale)
            );
            s.collateral -= r.fundingTokens;
        }

        if (s.increasing) {
            r.openInterestUsdWad = s.newSideOi.mulWadUp(s.q.priceWad);
            uint256 cap = s.q.depthUsdWad.mulWad(c.oiDepthMultWad);
            if (c.oiHardCapUsdWad != 0 && c.oiHardCapUsdWad < cap) cap = c.oiHardCapUsdWad;
            r.openInterestCapUsdWad = cap;
            if (r.openInterestUsdWad > cap) return _failSim(r, ErrorsLib.OpenInterestCapExceeded.selector);
        }

        r.impactTokens = _impact(c, s);
        r.feeTokens = PositionMath.notional(delta, fill).mulWadUp(c.tradingFeeWad).divUp(_tokenScale);
        r.effectivePriceWad = _effectivePrice(delta, fill, r.feeTokens, r.impactTokens);
        if (limit != 0 && (delta > 0 ? r.effectivePriceWad > int256(limit) : r.effectivePriceWad < int256(limit))) {
            return _failSim(r, ErrorsLib.PriceLimitExceeded.selector);
        }

        int256 realizedWad;
        (, s.newBasis, realizedWad) = PositionMath.applyTrade(c.pos.sizeWad, c.pos.basisUsdWad, delta, fill);
        r.realizedPnlTokens = realizedWad.divFloor(int256(_tokenScale));
        uint256 bits = c.openBits | (uint256(1) << c.marketId);
        if (c.pos.sizeWad == 0 && s.newSize != 0 && LibBit.popCount(bits) > ConstantsLib.MAX_POSITIONS) {
            return _failSim(r, ErrorsLib.TooManyPositions.selector);
        }
        s.collateral += r.realizedPnlTokens - int256(r.feeTokens) - r.impactTokens;
        r.collateralAfterTokens = s.collateral;
        _healthAfter(c, s, r);
        if (s.increasing) {
            if (!s.q.sequencerUp) return _failSim(r, ErrorsLib.SequencerDown.selector);
            if (r.healthAfter.equityUsdWad < int256(r.healthAfter.initialUsdWad)) {
                return _failSim(r, ErrorsLib.InitialMarginViolated.selector);
            }
        }
        r.ok = true;
    }

    /// @dev Side, increase flag and the open interest after the trade (`_updateOpenInterest`).
    function _openInterestAfter(Ctx memory c, Sim memory s) internal pure {
        int256 oldSize = c.pos.sizeWad;
        s.increasing = s.newSize.abs() > oldSize.abs()
            || (oldSize != 0 && (s.newSize > 0) != (oldSize > 0) && s.newSize != 0);
        s.isLong = s.newSize != 0 ? s.newSize > 0 : oldSize > 0;
        uint256 l = c.oiLong;
        uint256 sh = c.oiShort;
        s.skewBefore = int256(l) - int256(sh);
        if (oldSize > 0) l -= uint256(oldSize);
        else sh -= uint256(-oldSize);
        if (s.newSize > 0) l += uint256(s.newSize);
        else sh += uint256(-s.newSize);
        s.skewAfter = int256(l) - int256(sh);
        (s.newSideOi, s.newOtherOi) = s.isLong ? (l, sh) : (sh, l);
    }

    /// @dev The account's health after the settlement at live prices (the traded market at its
    /// post-trade quote, its funding settled).
    function _healthAfter(Ctx memory c, Sim memory s, OrderPreview memory r) internal pure {
        uint64 snap = s.newSize == 0 ? 0 : (s.increasing ? uint64(s.q.slipWad) : c.pos.slipSnapWad);
        r.mmfWad = MarginMath.positionMaintenance(s.q.mmfBaseWad, snap, s.q.maxMmfWad);
        Health memory h = Health({
            equityUsdWad: c.others.equityUsdWad + (s.collateral - c.collateral) * int256(c.tokenScale),
            maintenanceUsdWad: c.others.maintenanceUsdWad,
            initialUsdWad: c.others.initialUsdWad,
            notionalUsdWad: c.others.notionalUsdWad
        });
        if (s.newSize != 0) {
            uint256 imf = s.q.imfWad > r.mmfWad ? s.q.imfWad : r.mmfWad;
            h.equityUsdWad += PositionMath.unrealizedPnl(s.newSize, s.newBasis, s.q.priceWad);
            uint256 n = PositionMath.notional(s.newSize, s.q.priceWad);
            h.notionalUsdWad += n;
            h.maintenanceUsdWad += n.mulWadUp(r.mmfWad);
            h.initialUsdWad += n.mulWadUp(imf);
        }
        r.healthAfter = h;
    }

    /// @dev `MarginEngine._tradeImpact` without the writes: a charge (rounded up, capped for an
    /// exit while a risk feed is bad) or a rebate (rounded down, capped by the pool).
    function _impact(Ctx memory c, Sim memory s) internal view returns (int256) {
        (uint256 chargeUsd, uint256 rebateUsd) =
            ImpactMath.skewImpact(s.q.impactCoefWad, s.skewBefore, s.skewAfter, s.fill, s.q.depthUsdWad);
        int256 oldSize = c.pos.sizeWad;
        if (chargeUsd != 0) {
            if (!s.q.riskFeedsOk && oldSize != 0 && s.delta.abs() <= oldSize.abs() && (s.delta > 0) != (oldSize > 0)) {
                uint256 snapWad = s.increasing ? 0 : c.pos.slipSnapWad;
                uint256 capUsd = PositionMath.notional(s.delta, s.fill).mulWadUp(
                    snapWad.mulDivUp(s.delta.abs(), oldSize.abs())
                );
                if (capUsd < chargeUsd) chargeUsd = capUsd;
            }
            return int256(chargeUsd.divUp(_tokenScale));
        }
        uint256 rebate = rebateUsd / _tokenScale;
        if (rebate > c.pool) rebate = c.pool;
        return -int256(rebate);
    }

    /// @dev `MarginEngine._checkFillLimit`'s effective price.
    function _effectivePrice(int256 delta, uint256 fill, uint256 feeTokens, int256 impactTokens)
        internal
        view
        returns (int256)
    {
        int256 costUsd = (int256(feeTokens) + impactTokens) * int256(_tokenScale);
        uint256 absDelta = delta.abs();
        int256 per = costUsd >= 0
            ? int256(uint256(costUsd).divWadUp(absDelta))
            : -int256(uint256(-costUsd).divWad(absDelta));
        return delta > 0 ? int256(fill) + per : int256(fill) - per;
    }

    // ================================================================ liquidation price

    /// @dev `isLiquidatable` with `marketId`'s price at `priceWad` (valid), all else as now.
    function _liquidatableAt(Ctx memory c, MarketQuote memory q, uint256 mmf, uint256 priceWad)
        internal
        view
        returns (bool)
    {
        MarketQuote memory qp = _withPrice(q, priceWad);
        int256 index = _indexNow(c.marketId, qp);
        int256 size = c.pos.sizeWad;
        int256 equity = c.others.equityUsdWad + PositionMath.unrealizedPnl(size, c.pos.basisUsdWad, priceWad)
            - PositionMath.fundingOwed(size, index, c.pos.fundingIndexWad);
        uint256 maint = c.others.maintenanceUsdWad + PositionMath.notional(size, priceWad).mulWadUp(mmf);
        return equity < int256(maint);
    }

    function _withPrice(MarketQuote memory q, uint256 priceWad) internal pure returns (MarketQuote memory p) {
        p.priceWad = priceWad;
        p.priceOk = true;
        p.fundingOk = q.fundingOk;
        p.fundingRateWad = q.fundingRateWad;
        p.fundingTimeSec = q.fundingTimeSec;
    }

    // ================================================================ results

    function _fail(OrderPreview memory r, bytes4 sel) internal pure returns (OrderPreview memory) {
        r.ok = false;
        r.errorSelector = sel;
        return r;
    }

    function _failSim(OrderPreview memory r, bytes4 sel) internal pure {
        r.ok = false;
        r.errorSelector = sel;
    }
}
