// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {FeedConfig, FeedKind, ILeverageController, MarketQuote, RiskParams} from "../interfaces/ILeverageController.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib} from "./libraries/ErrorsLib.sol";
import {EventsLib} from "./libraries/EventsLib.sol";
import {Fractions, MarginMath, RiskInputs} from "./libraries/MarginMath.sol";
import {ParamsLib} from "./libraries/ParamsLib.sol";
import {Ramp, RampLib} from "./libraries/RampLib.sol";
import {RiskOracleBase} from "./RiskOracleBase.sol";
import {BlobLib, FeedSlot} from "./libraries/BlobLib.sol";

/// @title LeverageController
/// @notice Ballast's dynamic leverage model: initial and maintenance margin fractions from the live
/// volatility, skew, depth, funding and open interest of each market (see `MarginMath`).
/// @dev Anti front-running and anti cascade rules:
///  - new risk is always checked against the live feeds at execution (no window to race);
///  - a proposed parameter change that tightens applies to new risk at once (imfParams = the
///    tighter of active and pending), a loosening only after the timelock;
///  - the maintenance fraction of existing positions only tightens through a `Ramp`: it starts
///    after a random delay drawn when the tightening is committed and rises at a bounded rate.
contract LeverageController is RiskOracleBase {
    using FixedPointMathLib for uint256;
    using RampLib for Ramp;

    /// @dev A timelocked change is stored as the hash of its payload; execution re-supplies it.
    struct Pending {
        bytes32 payloadHash;
        uint64 etaSec;
    }

    /// @notice Timelock between proposing and executing a change once bootstrap is sealed, seconds.
    uint256 public immutable paramDelaySec;

    // A market's active parameters and those pricing new risk (the tighter of active and pending)
    // live in its blob only (`BlobLib`, words 10-14 and 15-19): `activeParams`, `imfParams`.
    mapping(uint256 marketId => Pending) internal _pendingParams;
    mapping(uint256 marketId => Pending) internal _pendingListing;
    /// @dev Index 0: long, 1: short.
    mapping(uint256 marketId => Ramp[2]) internal _ramps;
    /// @dev Bit 160 of a side's market word (`_marketWords`): the side's ramp has reached its end,
    /// and bits 192-255 hold its value, the same at every later time until the ramp is written again
    /// (`_syncSettled` after every ramp write and every poke). A quote then reads no ramp slot.
    uint256 internal constant RAMP_SETTLED = 1 << 160;
    uint256 internal _rampNonce;
    /// @dev A market's published tail, one slot: long (64 bits) | short << 64 | publishedAt << 128
    /// (0: never published, the model without it).
    mapping(uint256 marketId => uint256) internal _tails;

    constructor(address admin, uint256 paramDelaySec_) RiskOracleBase(admin) {
        if (paramDelaySec_ < ConstantsLib.MIN_PARAM_DELAY_SEC || paramDelaySec_ > ConstantsLib.MAX_PARAM_DELAY_SEC) {
            revert ErrorsLib.DelayOutOfBounds(
                paramDelaySec_, ConstantsLib.MIN_PARAM_DELAY_SEC, ConstantsLib.MAX_PARAM_DELAY_SEC
            );
        }
        paramDelaySec = paramDelaySec_;
    }

    // ---------------------------------------------------------------- published tail

    /// @notice Publishes a market's calibrated tail multipliers (WAD, 1e18 = 1.0): the quantile of
    /// standardized adverse moves over z, estimated off chain (`ballast.tail`), long side from down
    /// moves, short side from up moves. The model uses min(tailCap, max(tail, live tail)). Each must
    /// lie in [1e18, TAIL_CAP_MAX]. A published tail goes stale after the volatility feed's
    /// heartbeat: new risk then fails closed and `poke` reverts, as for a stale risk feed.
    function publishTail(uint256 marketId, uint256 tailLongWad, uint256 tailShortWad)
        external
        onlyRole(REPORTER_ROLE)
    {
        _requireListed(marketId);
        _checkTail(marketId, tailLongWad);
        _checkTail(marketId, tailShortWad);
        _tails[marketId] = tailLongWad | (tailShortWad << 64) | (block.timestamp << 128);
        _reports[marketId].times |= TAIL_FLAG;
        emit EventsLib.TailPublished(marketId, tailLongWad, tailShortWad, block.timestamp);
    }

    /// @notice A market's published tail for a side: `ok` false when it is stale; `tailWad` 0 when
    /// none was ever published (or stale); `publishedAtSec` 0 when none.
    function tailFeed(uint256 marketId, bool isLong) external view returns (bool ok, uint256 tailWad, uint256 publishedAtSec) {
        (ok, tailWad) = _tailOf(_blob(marketId), marketId, isLong);
        publishedAtSec = _tails[marketId] >> 128;
    }

    function _checkTail(uint256 marketId, uint256 t) internal pure {
        if (t < ConstantsLib.WAD || t > ConstantsLib.TAIL_CAP_MAX) {
            revert ErrorsLib.TailOutOfBounds(marketId, t, ConstantsLib.WAD, ConstantsLib.TAIL_CAP_MAX);
        }
    }

    /// @dev (true, 0) when none was published; (false, 0) when stale (older than the volatility
    /// feed's heartbeat); else (true, the side's tail).
    function _tailOf(bytes memory b, uint256 marketId, bool isLong) internal view returns (bool, uint256) {
        return _tailOf(b, marketId, isLong, 0);
    }

    /// @dev `_tailOf` with the report's time word already read (`times`; 0: read it here, as a
    /// market without reported feeds loads no report).
    function _tailOf(bytes memory b, uint256 marketId, bool isLong, uint256 times) internal view returns (bool, uint256) {
        if (times == 0) times = _reports[marketId].times;
        if (times & TAIL_FLAG == 0) return (true, 0);
        uint256 w = _tails[marketId];
        uint256 at = w >> 128;
        if (block.timestamp - at > BlobLib.feed(b, uint256(FeedKind.Volatility)).heartbeatSec) return (false, 0);
        return (true, isLong ? uint64(w) : uint64(w >> 64));
    }

    // ---------------------------------------------------------------- listing and parameters

    /// @notice Lists a market at once. Bootstrap only.
    function listMarket(uint256 marketId, FeedConfig[5] calldata feeds, RiskParams calldata params)
        external
        onlyRole(RISK_ADMIN_ROLE)
    {
        _onlyBootstrap();
        _list(marketId, feeds, params);
    }

    /// @notice Proposes a new market; `executeMarket` with the same payload lists it after
    /// `paramDelaySec`.
    function proposeMarket(uint256 marketId, FeedConfig[5] calldata feeds, RiskParams calldata params)
        external
        onlyRole(RISK_ADMIN_ROLE)
    {
        _checkNewMarket(marketId);
        ParamsLib.validate(params);
        uint64 eta = uint64(block.timestamp + paramDelaySec);
        _pendingListing[marketId] = Pending(keccak256(abi.encode(feeds, params)), eta);
        emit EventsLib.MarketProposed(marketId, eta);
    }

    /// @notice Lists a proposed market once its timelock has passed. Anyone may call.
    function executeMarket(uint256 marketId, FeedConfig[5] calldata feeds, RiskParams calldata params) external {
        _consume(_pendingListing[marketId], marketId, keccak256(abi.encode(feeds, params)));
        _list(marketId, feeds, params);
    }

    /// @notice Proposes new parameters for a listed market. Each field must lie within its hard
    /// bounds and within one step of the active value. A tightening applies to new positions at
    /// once; the whole change becomes active through `executeParams` after the timelock
    /// (bootstrap: at once).
    function proposeParams(uint256 marketId, RiskParams calldata params) external onlyRole(RISK_ADMIN_ROLE) {
        _requireListed(marketId);
        RiskParams memory cur = BlobLib.params(_blob(marketId), BlobLib.HEADER_WORDS);
        ParamsLib.validate(params);
        ParamsLib.validateStep(cur, params);
        if (!bootstrapSealed) {
            _activate(marketId, params);
            return;
        }
        uint64 eta = uint64(block.timestamp + paramDelaySec);
        _pendingParams[marketId] = Pending(keccak256(abi.encode(params)), eta);
        _writeParams(marketId, cur, ParamsLib.tighter(cur, params));
        emit EventsLib.ParamsProposed(marketId, params, eta);
    }

    /// @notice Activates proposed parameters (the same payload) after the timelock. Anyone may call.
    function executeParams(uint256 marketId, RiskParams calldata params) external {
        _consume(_pendingParams[marketId], marketId, keccak256(abi.encode(params)));
        _activate(marketId, params);
    }

    /// @notice Withdraws a proposal; new risk goes back to the active parameters.
    function cancelParams(uint256 marketId) external onlyRole(RISK_ADMIN_ROLE) {
        if (_pendingParams[marketId].etaSec == 0) revert ErrorsLib.NoPendingChange(marketId);
        delete _pendingParams[marketId];
        RiskParams memory a = BlobLib.params(_blob(marketId), BlobLib.HEADER_WORDS);
        _writeParams(marketId, a, a);
        emit EventsLib.ParamsCancelled(marketId);
    }

    // ---------------------------------------------------------------- maintenance ramp

    /// @inheritdoc ILeverageController
    function poke(uint256 marketId) external {
        bytes memory b = _blob(marketId);
        RiskParams memory p = BlobLib.params(b, BlobLib.HEADER_WORDS);
        (bool okV, uint256 sigma, bool okS, int256 skew) = _volSkew(b, marketId);
        (bool okT, uint256 tailL) = _tailOf(b, marketId, true);
        (, uint256 tailS) = _tailOf(b, marketId, false);
        if (!okV || !okS || !okT) revert ErrorsLib.RiskFeedInvalid(marketId);
        _commit(marketId, true, p, sigma, skew, tailL);
        _commit(marketId, false, p, sigma, skew, tailS);
    }

    /// @notice The maintenance ramp of a side.
    function ramp(uint256 marketId, bool isLong) external view returns (Ramp memory) {
        return _ramps[marketId][isLong ? 0 : 1];
    }

    /// @notice The live maintenance target of a side (what `poke` would commit), WAD.
    function maintenanceTarget(uint256 marketId, bool isLong) external view returns (bool ok, uint256 targetWad) {
        bytes memory b = _blob(marketId);
        (bool okV, uint256 sigma, bool okS, int256 skew) = _volSkew(b, marketId);
        (bool okT, uint256 tail) = _tailOf(b, marketId, isLong);
        if (!okV || !okS || !okT) return (false, 0);
        return (true, _target(BlobLib.params(b, BlobLib.HEADER_WORDS), sigma, skew, isLong, tail));
    }

    /// @dev The volatility and skew inputs of the maintenance target (the market's report loaded once).
    function _volSkew(bytes memory b, uint256 marketId)
        internal
        view
        returns (bool okV, uint256 sigma, bool okS, int256 skew)
    {
        Report memory rep = _loadReport(b, marketId);
        int256 v;
        (okV, v,,,) = _readK(b, uint256(FeedKind.Volatility), rep);
        (okS, skew,,,) = _readK(b, uint256(FeedKind.Skew), rep);
        sigma = uint256(v);
    }

    /// @dev The maintenance target of a side: maintenanceBase(varMove(...)).
    function _target(RiskParams memory p, uint256 sigma, int256 skew, bool isLong, uint256 tail)
        internal
        pure
        returns (uint256)
    {
        return MarginMath.maintenanceBase(p, MarginMath.varMove(p, sigma, skew, isLong, tail));
    }

    // ---------------------------------------------------------------- quotes

    /// @inheritdoc ILeverageController
    function quote(uint256 marketId, bool isLong, uint256 positionSizeWad) public view returns (MarketQuote memory) {
        (uint256 oiLong, uint256 oiShort) = _engineOpenInterest(marketId);
        return _quote(marketId, isLong, positionSizeWad, oiLong, oiShort);
    }

    /// @inheritdoc ILeverageController
    function quoteWithOpenInterest(
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLongWad,
        uint256 oiShortWad
    ) external view returns (MarketQuote memory) {
        return _quote(marketId, isLong, positionSizeWad, oiLongWad, oiShortWad);
    }

    function _quote(uint256 marketId, bool isLong, uint256 positionSizeWad, uint256 oiLong, uint256 oiShort)
        internal
        view
        returns (MarketQuote memory q)
    {
        _quoteOf(q, _blobFor(marketId, isLong), marketId, isLong, positionSizeWad, oiLong, oiShort);
    }

    function _quoteOf(
        MarketQuote memory q,
        bytes memory b,
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLong,
        uint256 oiShort
    ) internal view override {
        RiskInputs memory x;
        x.isLong = isLong;
        (x.oiSideWad, x.oiOtherWad) = isLong ? (oiLong, oiShort) : (oiShort, oiLong);
        _priced(q, b, marketId, positionSizeWad, x);
    }

    /// @dev Fills `q` with the quote for a side and open interest already in `x` (the caller's
    /// struct, not a returned one: a memory-struct return is zero-filled again on every call).
    function _priced(MarketQuote memory q, bytes memory b, uint256 marketId, uint256 positionSizeWad, RiskInputs memory x)
        internal
        view
    {
        RiskParams memory p = BlobLib.paramsReader()(b, BlobLib.HEADER_WORDS + BlobLib.PARAM_WORDS);
        uint256 tail;
        {
            Report memory rep = _loadReport(b, marketId);
            _quoteBase(q, b, rep);
            x.notionalUsdWad = positionSizeWad.mulWadUp(q.priceWad);
            x.priceWad = q.priceWad;
            bool okT;
            (okT, tail) = _tailOf(b, marketId, x.isLong, rep.times);
            q.riskFeedsOk = _inputs(b, x, q.fundingOk, rep) && okT;
        }
        x.fundingRateWad = q.fundingRateWad;

        Fractions memory f =
            MarginMath.compute(p, x, tail, BlobLib.sqrtHorizon(b, BlobLib.HEADER_WORDS + BlobLib.PARAM_WORDS));
        q.slipWad = f.slipWad;
        q.impactCoefWad = p.impactWad;
        q.depthUsdWad = x.depthUsdWad;
        // The active parameters' liquidation fee and maintenance cap.
        (q.liqFeeWad, q.maxMmfWad) = BlobLib.liqFeeAndMaxMmf(b, BlobLib.HEADER_WORDS);
        q.maxImfWad = p.maxImfWad;
        q.mmfBaseWad = _rampValue(marketId, x.isLong);
        q.imfWad = MarginMath.requiredInitial(
            q.riskFeedsOk ? f.imfWad : p.maxImfWad,
            MarginMath.positionMaintenance(q.mmfBaseWad, q.slipWad, q.maxMmfWad),
            p.minBufferWad,
            p.maxImfWad
        );
    }

    /// @dev A side's ramped maintenance fraction now: its settled value from the side's market word
    /// (warm: the quote read the blob pointer there) or, while the ramp moves, from one raw SLOAD of
    /// the ramp.
    function _rampValue(uint256 marketId, bool isLong) internal view returns (uint256) {
        uint256 i = isLong ? 0 : 1;
        uint256 mw = _marketWords[marketId][i];
        if (mw & RAMP_SETTLED != 0) return mw >> 192;
        return RampLib.valueAtWord(_rampWord(marketId, i), block.timestamp);
    }

    function _rampWord(uint256 marketId, uint256 i) internal view returns (uint256 w) {
        Ramp storage rs = _ramps[marketId][i];
        assembly ("memory-safe") {
            w := sload(rs.slot)
        }
    }

    /// @dev Records in a side's market word whether its ramp has reached its end and, if so, the
    /// value it keeps (`RAMP_SETTLED`). Called after every write of the ramp and at every poke; a
    /// ramp that is still moving clears the record, so a quote never reads a stale value.
    function _syncSettled(uint256 marketId, uint256 i) internal {
        uint256 rw = _rampWord(marketId, i);
        uint256 v = RampLib.valueAtWord(rw, block.timestamp);
        // Settled: the value has reached the end (`toWad`), or the ramp never rises (to <= from).
        uint256 bits = v >= uint64(rw >> 64) ? RAMP_SETTLED | (v << 192) : 0;
        uint256 mw = _marketWords[marketId][i];
        if (mw >> 160 != bits >> 160) {
            _marketWords[marketId][i] = uint160(mw) | bits;
            emit EventsLib.MaintenanceRecordSet(marketId, i == 0, bits != 0, bits >> 192);
        }
    }

    /// @notice A side's settled maintenance as recorded for quotes: `settled` false while its ramp
    /// moves (quotes then read the ramp), else the value every later quote uses until the next
    /// poke, WAD.
    function settledMaintenance(uint256 marketId, bool isLong) external view returns (bool settled, uint256 valueWad) {
        uint256 mw = _marketWords[marketId][isLong ? 0 : 1];
        return (mw & RAMP_SETTLED != 0, mw >> 192);
    }

    /// @inheritdoc ILeverageController
    function initialMarginFraction(uint256 marketId, bool isLong, uint256 notionalUsdWad)
        external
        view
        returns (uint256)
    {
        uint256 price = priceWad(marketId);
        return quote(marketId, isLong, notionalUsdWad.divWad(price)).imfWad;
    }

    /// @inheritdoc ILeverageController
    function maintenanceMarginFraction(uint256 marketId, bool isLong, uint256 notionalUsdWad)
        external
        view
        returns (uint256)
    {
        uint256 price = priceWad(marketId);
        MarketQuote memory q = quote(marketId, isLong, notionalUsdWad.divWad(price));
        return MarginMath.positionMaintenance(q.mmfBaseWad, q.slipWad, q.maxMmfWad);
    }

    /// @inheritdoc ILeverageController
    function maxLeverageWad(uint256 marketId, bool isLong) external view returns (uint256) {
        return ConstantsLib.WAD.divWad(quote(marketId, isLong, 0).imfWad);
    }

    /// @notice Active parameters of a market.
    function activeParams(uint256 marketId) external view returns (RiskParams memory) {
        return BlobLib.params(_blob(marketId), BlobLib.HEADER_WORDS);
    }

    /// @notice Parameters that price new risk now (tighter of active and pending).
    function imfParams(uint256 marketId) external view returns (RiskParams memory) {
        return BlobLib.params(_blob(marketId), BlobLib.HEADER_WORDS + BlobLib.PARAM_WORDS);
    }

    /// @notice Hash of a pending parameter change and its eta (0: none).
    function pendingParams(uint256 marketId) external view returns (bytes32 payloadHash, uint256 etaSec) {
        Pending storage pp = _pendingParams[marketId];
        return (pp.payloadHash, pp.etaSec);
    }

    // ---------------------------------------------------------------- internals

    /// @dev The blob words after the feeds: the active parameters, then those pricing new risk.
    function _packParams(RiskParams memory active, RiskParams memory imf) internal pure returns (bytes memory) {
        return abi.encodePacked(BlobLib.packParams(active), BlobLib.packParams(imf));
    }

    /// @dev Rewrites a market's blob with new active and pricing parameters (same feeds).
    function _writeParams(uint256 marketId, RiskParams memory active, RiskParams memory imf) internal {
        _writeBlob(marketId, BlobLib.feeds(_blob(marketId)), _packParams(active, imf));
    }

    function _consume(Pending storage p, uint256 marketId, bytes32 payloadHash) internal {
        if (p.etaSec == 0 || p.payloadHash != payloadHash) revert ErrorsLib.NoPendingChange(marketId);
        if (block.timestamp < p.etaSec) revert ErrorsLib.ChangeNotReady(marketId, p.etaSec, block.timestamp);
        delete p.payloadHash;
        delete p.etaSec;
    }

    function _checkNewMarket(uint256 marketId) internal view {
        if (marketId >= ConstantsLib.MAX_MARKETS) {
            revert ErrorsLib.MarketIdOutOfRange(marketId, ConstantsLib.MAX_MARKETS);
        }
        if (_pointer(marketId) != address(0)) revert ErrorsLib.MarketAlreadyListed(marketId);
    }

    function _list(uint256 marketId, FeedConfig[5] memory feeds, RiskParams memory params) internal {
        _checkNewMarket(marketId);
        ParamsLib.validate(params);
        _writeBlob(marketId, _checkFeeds(marketId, feeds), _packParams(params, params));
        // Until the first poke, maintenance sits at its cap: conservative, and reachable only by
        // loosening (which applies at once).
        Ramp memory r = Ramp({
            fromWad: params.maxMmfWad,
            toWad: params.maxMmfWad,
            activationSec: uint64(block.timestamp),
            rateWadPerSec: params.mmfRampWadPerSec
        });
        _ramps[marketId][0] = r;
        _ramps[marketId][1] = r;
        _syncSettled(marketId, 0);
        _syncSettled(marketId, 1);
        emit EventsLib.MarketListed(marketId, feeds, params);
    }

    function _activate(uint256 marketId, RiskParams memory params) internal {
        _writeParams(marketId, params, params);
        emit EventsLib.ParamsExecuted(marketId, params);
    }

    /// @dev Volatility, skew and depth inputs (funding comes with the quote's base). Bad risk
    /// feeds fall back to the most conservative bound (the caller then prices new risk at maxImf).
    function _inputs(bytes memory b, RiskInputs memory x, bool okF, Report memory rep)
        internal
        view
        returns (bool riskOk)
    {
        (bool okV, int256 sigma,,, int256 maxV) = _readK(b, uint256(FeedKind.Volatility), rep);
        (bool okS, int256 skew,,,) = _readK(b, uint256(FeedKind.Skew), rep);
        (bool okD, int256 depth,, int256 minD,) = _readK(b, uint256(FeedKind.Depth), rep);
        x.sigmaWad = okV ? uint256(sigma) : uint256(maxV);
        x.skewWad = okS ? skew : int256(0);
        x.depthUsdWad = okD ? uint256(depth) : uint256(minD);
        return okV && okS && okD && okF;
    }

    /// @dev Moves one side's ramp toward the live target: loosen at once, tighten after a random
    /// delay at the bounded rate, or raise/lower the target of a ramp already under way.
    function _commit(uint256 marketId, bool isLong, RiskParams memory p, uint256 sigma, int256 skew, uint256 tail)
        internal
    {
        uint256 target = _target(p, sigma, skew, isLong, tail);
        Ramp storage rs = _ramps[marketId][isLong ? 0 : 1];
        Ramp memory r = rs;
        uint256 cur = r.valueAt(block.timestamp);
        if (target < cur) {
            rs.fromWad = uint64(target);
            rs.toWad = uint64(target);
            rs.activationSec = uint64(block.timestamp);
            rs.rateWadPerSec = p.mmfRampWadPerSec;
            emit EventsLib.MaintenanceLoosened(marketId, isLong, cur, target);
        } else if (target > r.toWad && cur >= r.toWad) {
            uint256 activation = block.timestamp + _jitter(marketId, isLong, p.rampJitterSec);
            rs.fromWad = uint64(cur);
            rs.toWad = uint64(target);
            rs.activationSec = uint64(activation);
            rs.rateWadPerSec = p.mmfRampWadPerSec;
            emit EventsLib.MaintenanceTighteningScheduled(marketId, isLong, cur, target, activation, p.mmfRampWadPerSec);
        } else if (target != r.toWad && target >= cur) {
            // A ramp is under way (or pending): keep its start and rate, move its end.
            rs.toWad = uint64(target);
            emit EventsLib.MaintenanceTargetRaised(marketId, isLong, target);
        }
        _syncSettled(marketId, isLong ? 0 : 1);
    }

    /// @dev A delay in [0, jitterSec] that nobody can know before the committing block.
    /// Warning: a block proposer, or a caller that reverts unless it likes the draw, can bias it
    /// within the window; the ramp rate bound holds whatever the draw.
    function _jitter(uint256 marketId, bool isLong, uint256 jitterSec) internal returns (uint256) {
        if (jitterSec == 0) return 0;
        uint256 nonce = ++_rampNonce;
        uint256 rand = uint256(
            keccak256(abi.encode(block.prevrandao, blockhash(block.number - 1), marketId, isLong, nonce, address(this)))
        );
        return rand % (jitterSec + 1);
    }
}
