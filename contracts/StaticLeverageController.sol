// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {FeedConfig, FeedKind, ILeverageController, MarketQuote} from "../interfaces/ILeverageController.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "./libraries/ErrorsLib.sol";
import {EventsLib} from "./libraries/EventsLib.sol";
import {MarginMath} from "./libraries/MarginMath.sol";
import {RiskOracleBase} from "./RiskOracleBase.sol";
import {BlobLib, FeedSlot} from "./libraries/BlobLib.sol";

/// @title StaticLeverageController
/// @notice The baseline: fixed initial and maintenance fractions per market, as most perpetuals
/// protocols ship. Same feeds, same execution impact and funding as the dynamic controller, so
/// that a comparison isolates the margin model.
contract StaticLeverageController is RiskOracleBase {
    using FixedPointMathLib for uint256;

    /// @param imfWad Initial margin fraction (1 / max leverage), WAD.
    /// @param mmfWad Maintenance margin fraction, WAD (< imfWad).
    /// @param impactWad Price impact of trading the depth feed's notional, WAD.
    /// @param liqFeeWad Liquidation penalty fraction, WAD.
    struct StaticParams {
        uint64 imfWad;
        uint64 mmfWad;
        uint64 impactWad;
        uint64 liqFeeWad;
    }

    mapping(uint256 marketId => StaticParams) internal _params;

    constructor(address admin) RiskOracleBase(admin) {}

    /// @notice Lists a market with fixed fractions. Bootstrap only; immutable once sealed.
    function listMarket(uint256 marketId, FeedConfig[5] calldata feeds, StaticParams calldata params)
        external
        onlyRole(RISK_ADMIN_ROLE)
    {
        _onlyBootstrap();
        if (marketId >= ConstantsLib.MAX_MARKETS) {
            revert ErrorsLib.MarketIdOutOfRange(marketId, ConstantsLib.MAX_MARKETS);
        }
        if (_pointer(marketId) != address(0)) revert ErrorsLib.MarketAlreadyListed(marketId);
        if (params.imfWad > ConstantsLib.IMF_MAX || params.imfWad < ConstantsLib.MIN_IMF_MIN) {
            revert ErrorsLib.ParamOutOfBounds(ParamField.MinImf, params.imfWad, ConstantsLib.MIN_IMF_MIN, ConstantsLib.IMF_MAX);
        }
        if (params.mmfWad < ConstantsLib.MIN_MMF_MIN || params.mmfWad >= params.imfWad) {
            revert ErrorsLib.ParamOutOfBounds(ParamField.MinMmf, params.mmfWad, ConstantsLib.MIN_MMF_MIN, params.imfWad - 1);
        }
        if (params.impactWad > ConstantsLib.IMPACT_MAX) {
            revert ErrorsLib.ParamOutOfBounds(ParamField.Impact, params.impactWad, 0, ConstantsLib.IMPACT_MAX);
        }
        if (params.liqFeeWad < ConstantsLib.LIQ_FEE_MIN || params.liqFeeWad > ConstantsLib.LIQ_FEE_MAX) {
            revert ErrorsLib.ParamOutOfBounds(
                ParamField.LiqFee, params.liqFeeWad, ConstantsLib.LIQ_FEE_MIN, ConstantsLib.LIQ_FEE_MAX
            );
        }
        _params[marketId] = params;
        _writeBlob(
            marketId,
            _checkFeeds(marketId, feeds),
            abi.encodePacked(
                uint256(params.imfWad) | (uint256(params.mmfWad) << 64) | (uint256(params.impactWad) << 128)
                    | (uint256(params.liqFeeWad) << 192)
            )
        );
        emit EventsLib.StaticFractionsSet(marketId, params.imfWad, params.mmfWad);
    }

    /// @notice The fixed parameters of a market.
    function staticParams(uint256 marketId) external view returns (StaticParams memory) {
        return _params[marketId];
    }

    /// @inheritdoc ILeverageController
    function quote(uint256 marketId, bool isLong, uint256 positionSizeWad) public view returns (MarketQuote memory q) {
        _quoteOf(q, _blobFor(marketId, isLong), marketId, isLong, positionSizeWad, 0, 0);
    }

    /// @dev The static model ignores the side and open interest.
    function _quoteOf(MarketQuote memory q, bytes memory b, uint256 marketId, bool, uint256 positionSizeWad, uint256, uint256)
        internal
        view
        override
    {
        _staticQuote(q, b, marketId, positionSizeWad);
    }

    function _staticQuote(MarketQuote memory q, bytes memory b, uint256 marketId, uint256 positionSizeWad)
        internal
        view
    {
        uint256 w = BlobLib.word(b, BlobLib.HEADER_WORDS);
        StaticParams memory p = StaticParams(uint64(w), uint64(w >> 64), uint64(w >> 128), uint64(w >> 192));
        Report memory rep = _loadReport(b, marketId);
        _quoteBase(q, b, rep);
        (bool okD, int256 depth,, int256 minD,) = _readK(b, uint256(FeedKind.Depth), rep);
        uint256 depthWad = okD ? uint256(depth) : uint256(minD);
        q.riskFeedsOk = true;
        q.imfWad = p.imfWad;
        q.mmfBaseWad = p.mmfWad;
        q.maxMmfWad = p.mmfWad;
        q.maxImfWad = p.imfWad;
        q.slipWad = MarginMath.slippage(p.impactWad, positionSizeWad.mulWadUp(q.priceWad), depthWad);
        q.impactCoefWad = p.impactWad;
        q.depthUsdWad = depthWad;
        q.liqFeeWad = p.liqFeeWad;
    }

    /// @inheritdoc ILeverageController
    /// @dev The static model ignores open interest.
    function quoteWithOpenInterest(uint256 marketId, bool isLong, uint256 positionSizeWad, uint256, uint256)
        external
        view
        returns (MarketQuote memory)
    {
        return quote(marketId, isLong, positionSizeWad);
    }

    /// @inheritdoc ILeverageController
    function initialMarginFraction(uint256 marketId, bool, uint256) external view returns (uint256) {
        _requireListed(marketId);
        return _params[marketId].imfWad;
    }

    /// @inheritdoc ILeverageController
    function maintenanceMarginFraction(uint256 marketId, bool, uint256) external view returns (uint256) {
        _requireListed(marketId);
        return _params[marketId].mmfWad;
    }

    /// @inheritdoc ILeverageController
    function maxLeverageWad(uint256 marketId, bool) external view returns (uint256) {
        _requireListed(marketId);
        return ConstantsLib.WAD.divWad(_params[marketId].imfWad);
    }

    /// @inheritdoc ILeverageController
    /// @dev Nothing to commit: static fractions never move.
    function poke(uint256 marketId) external view {
        _requireListed(marketId);
    }
}
