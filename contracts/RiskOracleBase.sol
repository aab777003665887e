// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {SSTORE2} from "solady/utils/SSTORE2.sol";
import {LibBit} from "solady/utils/LibBit.sol";
import {BlobLib, FeedSlot} from "./libraries/BlobLib.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {FeedConfig, FeedKind, ILeverageController, MarketQuote, PriceRound} from "../interfaces/ILeverageController.sol";
import {IMarginEngine} from "../interfaces/IMarginEngine.sol";
import {IReportSource, IRiskReport} from "../interfaces/IRiskReport.sol";
import {ConstantsLib} from "./libraries/ConstantsLib.sol";
import {ErrorsLib, ParamField} from "./libraries/ErrorsLib.sol";
import {EventsLib} from "./libraries/EventsLib.sol";

/// @title RiskOracleBase
/// @notice Feed configuration and validated reads shared by the dynamic and the static controller:
/// per-feed heartbeat, bounds and sign checks, a feed that reverts counts as bad, and an optional
/// L2 sequencer uptime feed with a grace period.
abstract contract RiskOracleBase is AccessControl, ILeverageController, IRiskReport {
    /// @notice Lists markets and proposes parameter changes.
    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    /// @notice Writes risk reports (`submitReport`) and, on the dynamic controller, calibrated tails.
    bytes32 public constant REPORTER_ROLE = keccak256("REPORTER_ROLE");

    /// @notice The margin engine whose open interest feeds the crowding term (bound once).
    address public engine;
    /// @notice Optional L2 sequencer uptime feed (zero address: none).
    address public sequencerFeed;
    /// @notice Seconds after the sequencer comes back during which new risk stays closed.
    uint256 public sequencerGraceSec;
    /// @notice Once sealed, listings and parameter changes go through the timelock.
    bool public bootstrapSealed;

    /// @dev A listed market's immutable-until-replaced configuration, written with SSTORE2 as the
    /// code of a data contract: the packed feeds, then the controller's own words (parameters;
    /// layout in `BlobLib`). A quote reads it with one EXTCODECOPY instead of ~18 cold storage slots. The
    /// zero address: not listed. Rewritten (a new pointer) whenever the parameters change.
    /// Stored twice, once per side (index 0: long, 1: short), in the low 160 bits of the side's word,
    /// so that a quote of a side reads one word that also carries the bits above the pointer, which
    /// the controller keeps per side (`LeverageController`: the side's settled maintenance) and a
    /// pointer rewrite preserves.
    mapping(uint256 marketId => uint256[2]) internal _marketWords;
    /// @dev Bit i: market i is listed (i < MAX_MARKETS; `setSequencerFeed` rewrites their blobs).
    uint256 internal _listedBits;

    /// @dev A market's risk report (`IRiskReport`), three slots: answers (feed decimals, int128
    /// each) of volatility | funding << 128 and of depth | skew << 128, then the four write times
    /// (uint40 each, field k at bits 40(k-1)), write counters (23 bits each, field k at bits
    /// 160 + 23(k-1): a field's round id, +1 per write) and, at bit 255, `TAIL_FLAG`.
    struct Report {
        uint256 volFunding;
        uint256 depthSkew;
        uint256 times;
    }

    mapping(uint256 marketId => Report) internal _reports;
    /// @dev A report field's write counter: 23 bits.
    uint256 internal constant COUNTER_MASK = (1 << 23) - 1;
    /// @dev Bit 255 of a report's `times`: a calibrated tail was published for the market (the
    /// dynamic controller reads its tail slot only then; the slot is warm in every quote).
    uint256 internal constant TAIL_FLAG = 1 << 255;

    constructor(address admin) {
        if (admin == address(0)) revert ErrorsLib.ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(RISK_ADMIN_ROLE, admin);
        _grantRole(REPORTER_ROLE, admin);
    }

    // ---------------------------------------------------------------- risk report

    /// @inheritdoc IRiskReport
    /// @dev Reverts `MarketNotListed`, `ReportMaskInvalid` (mask 0 or above 15). An answer outside
    /// int128 is stored as the int128 extreme of its sign, which every read rejects as out of
    /// bounds (the field fails closed, as an aggregator answer above `MAX_RAW_ANSWER` does); any
    /// other answer is stored as given and checked against the field's bounds at each read.
    function submitReport(uint256 marketId, uint256 mask, int256[4] calldata answers)
        external
        onlyRole(REPORTER_ROLE)
    {
        _requireListed(marketId);
        if (mask == 0 || mask > 15) revert ErrorsLib.ReportMaskInvalid(marketId, mask);
        Report storage r = _reports[marketId];
        uint256[2] memory pairs = [r.volFunding, r.depthSkew];
        uint256 times = r.times;
        for (uint256 i; i < 4; ++i) {
            if (mask & (1 << i) == 0) continue;
            uint256 sh = 128 * (i & 1);
            pairs[i >> 1] = (pairs[i >> 1] & ~(uint256(type(uint128).max) << sh)) | (uint256(uint128(_sat(answers[i]))) << sh);
            uint256 n = ((times >> (160 + 23 * i)) + 1) & COUNTER_MASK;
            times = (times & ~(uint256(type(uint40).max) << (40 * i)) & ~(COUNTER_MASK << (160 + 23 * i)))
                | (block.timestamp << (40 * i)) | (n << (160 + 23 * i));
        }
        if (mask & 3 != 0) r.volFunding = pairs[0];
        if (mask & 12 != 0) r.depthSkew = pairs[1];
        r.times = times;
        emit EventsLib.RiskReported(marketId, mask, answers, block.timestamp);
    }

    /// @inheritdoc IRiskReport
    function reportRound(uint256 marketId, FeedKind kind)
        public
        view
        returns (uint80 roundId, int256 answer, uint256 updatedAt)
    {
        if (kind == FeedKind.Price) revert ErrorsLib.NotReported(marketId, kind);
        uint256 i = uint256(kind) - 1;
        Report storage r = _reports[marketId];
        uint256 times = r.times;
        answer = int128(uint128((i < 2 ? r.volFunding : r.depthSkew) >> (128 * (i & 1))));
        updatedAt = uint40(times >> (40 * i));
        roundId = uint80((times >> (160 + 23 * i)) & COUNTER_MASK);
    }

    function _sat(int256 v) private pure returns (int128) {
        if (v > type(int128).max) return type(int128).max;
        if (v < type(int128).min) return type(int128).min;
        return int128(v);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Binds the engine whose open interest the controller reads. Once.
    function bindEngine(address engine_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (engine_ == address(0)) revert ErrorsLib.ZeroAddress();
        if (engine != address(0)) revert ErrorsLib.EngineAlreadyBound(engine);
        engine = engine_;
        emit EventsLib.EngineBound(engine_);
    }

    /// @notice Sets the L2 sequencer uptime feed and its grace period. Bootstrap only.
    function setSequencerFeed(address feed, uint256 graceSec) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _onlyBootstrap();
        if (graceSec > 1 days) revert ErrorsLib.ParamOutOfBounds(ParamField.SequencerGrace, graceSec, 0, 1 days);
        sequencerFeed = feed;
        sequencerGraceSec = graceSec;
        // Every listed market's blob carries a copy (quotes read it there): rewrite them (at most
        // MAX_MARKETS, bootstrap only).
        uint256 w = _sequencerWord();
        uint256 at = 32 * (BlobLib.SEQUENCER_WORD + 1); // byte offset of the word in a `bytes`
        uint256 bits = _listedBits;
        while (bits != 0) {
            uint256 m = LibBit.ffs(bits);
            bits &= bits - 1;
            bytes memory b = _blob(m);
            assembly ("memory-safe") {
                mstore(add(b, at), w)
            }
            _setPointer(m, SSTORE2.write(b));
        }
        emit EventsLib.SequencerFeedSet(feed, graceSec);
    }

    /// @notice Ends the bootstrap phase: from now on every change is timelocked. One way.
    function sealBootstrap() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _onlyBootstrap();
        bootstrapSealed = true;
        emit EventsLib.BootstrapSealedEvent(msg.sender);
    }

    // ---------------------------------------------------------------- views

    function isListed(uint256 marketId) public view returns (bool) {
        return _pointer(marketId) != address(0);
    }

    /// @inheritdoc ILeverageController
    function quoteAtRound(
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLongWad,
        uint256 oiShortWad,
        uint80 roundId
    ) external view returns (MarketQuote memory q, PriceRound memory r) {
        bytes memory b = _blobFor(marketId, isLong);
        _quoteOf(q, b, marketId, isLong, positionSizeWad, oiLongWad, oiShortWad);
        _priceRound(r, b, roundId);
    }

    /// @dev The controller's quote of a market from its blob (already read), into `q`.
    function _quoteOf(
        MarketQuote memory q,
        bytes memory b,
        uint256 marketId,
        bool isLong,
        uint256 positionSizeWad,
        uint256 oiLongWad,
        uint256 oiShortWad
    ) internal view virtual;

    /// @dev Round `roundId` (0: the latest) of the blob's price feed (feed 0, always listed and
    /// never a report field), its answer checked against the feed's decimals and bounds as
    /// `_check` does (heartbeat aside: the engine checks the round's time), and the time of the
    /// round before it (0 when that round cannot be read). A feed that reverts for the round
    /// leaves it unpublished (time 0, answer 0), which the engine refuses.
    function _priceRound(PriceRound memory r, bytes memory b, uint80 roundId) internal view {
        uint256 w0;
        uint256 w1;
        assembly ("memory-safe") {
            w0 := mload(add(b, 32))
            w1 := mload(add(b, 64))
        }
        AggregatorV3Interface feed = AggregatorV3Interface(address(uint160(w0)));
        int256 answer;
        if (roundId == 0) {
            try feed.latestRoundData() returns (uint80 id, int256 a, uint256, uint256 t, uint80) {
                (roundId, answer, r.updatedAt) = (id, a, t);
            } catch {
                return;
            }
        } else {
            try feed.getRoundData(roundId) returns (uint80, int256 a, uint256, uint256 t, uint80) {
                (answer, r.updatedAt) = (a, t);
            } catch {}
        }
        r.roundId = roundId;
        r.answer = answer;
        if (roundId > 1) {
            try feed.getRoundData(roundId - 1) returns (uint80, int256, uint256, uint256 prevAt, uint80) {
                r.prevUpdatedAt = prevAt;
            } catch {}
        }
        if (answer > 0 && uint256(answer) <= ConstantsLib.MAX_RAW_ANSWER) {
            int256 v = answer * int256(10 ** (18 - uint256(uint8(w0 >> 192))));
            if (v >= int128(uint128(w1)) && v <= int128(uint128(w1 >> 128))) r.answerWad = uint256(v);
        }
    }

    /// @notice The feed configuration of a market input.
    function feedConfig(uint256 marketId, FeedKind kind) external view returns (FeedConfig memory c) {
        if (_pointer(marketId) == address(0)) return c;
        FeedSlot memory s = BlobLib.feed(_blob(marketId), uint256(kind));
        c = FeedConfig({feed: s.feed, heartbeatSec: s.heartbeatSec, minWad: s.minWad, maxWad: s.maxWad});
    }

    /// @notice A feed's answer scaled to WAD, and whether it passed every check.
    function readFeed(uint256 marketId, FeedKind kind) external view returns (bool ok, int256 valueWad) {
        if (_pointer(marketId) == address(0)) return (false, 0);
        bytes memory b = _blob(marketId);
        (ok, valueWad,,,) = _readK(b, uint256(kind), _loadReport(b, marketId));
    }

    /// @notice Oracle price, USD per base unit, WAD. Reverts `PriceFeedInvalid` when bad.
    function priceWad(uint256 marketId) public view returns (uint256) {
        Report memory none; // the price is never a report field
        (bool ok, int256 p,,,) = _readK(_blob(marketId), uint256(FeedKind.Price), none);
        if (!ok) revert ErrorsLib.PriceFeedInvalid(marketId);
        return uint256(p);
    }

    /// @notice False while the sequencer is down or within the grace period after it came back.
    function sequencerUp() public view returns (bool) {
        return _sequencerUp(sequencerFeed, sequencerGraceSec);
    }

    function _sequencerUp(address f, uint256 graceSec) internal view returns (bool) {
        if (f == address(0)) return true;
        try AggregatorV3Interface(f).latestRoundData() returns (uint80, int256 answer, uint256 startedAt, uint256, uint80) {
            if (answer != 0 || startedAt == 0 || startedAt > block.timestamp) return false;
            return block.timestamp - startedAt > graceSec;
        } catch {
            return false;
        }
    }

    /// @dev `sequencerUp` from the copy in a market's blob.
    function _sequencerUpOf(bytes memory b) internal view returns (bool) {
        uint256 w = BlobLib.word(b, BlobLib.SEQUENCER_WORD);
        return _sequencerUp(address(uint160(w)), w >> 160);
    }

    /// @dev The blob's sequencer word from storage.
    function _sequencerWord() internal view returns (uint256) {
        return uint256(uint160(sequencerFeed)) | (sequencerGraceSec << 160);
    }

    // ---------------------------------------------------------------- internals

    function _onlyBootstrap() internal view {
        if (bootstrapSealed) revert ErrorsLib.BootstrapSealed();
    }

    function _requireListed(uint256 marketId) internal view {
        if (_pointer(marketId) == address(0)) revert ErrorsLib.MarketNotListed(marketId);
    }

    /// @dev A market's blob pointer (zero: not listed), from its long side's word.
    function _pointer(uint256 marketId) internal view returns (address) {
        return address(uint160(_marketWords[marketId][0]));
    }

    /// @dev A listed market's whole blob. Reverts `MarketNotListed`.
    function _blob(uint256 marketId) internal view returns (bytes memory) {
        return _blobFor(marketId, true);
    }

    /// @dev `_blob` read through the word of a side (what a quote of that side reads).
    function _blobFor(uint256 marketId, bool isLong) internal view returns (bytes memory) {
        address ptr = address(uint160(_marketWords[marketId][isLong ? 0 : 1]));
        if (ptr == address(0)) revert ErrorsLib.MarketNotListed(marketId);
        return SSTORE2.read(ptr);
    }

    /// @dev Points both side words of a market at a new blob, keeping the bits above the pointer.
    function _setPointer(uint256 marketId, address ptr) internal {
        uint256[2] storage ws = _marketWords[marketId];
        for (uint256 i; i < 2; ++i) {
            ws[i] = ((ws[i] >> 160) << 160) | uint160(ptr);
        }
    }

    /// @dev Writes a market's blob: its feeds, then `extra` (the controller's parameter words).
    function _writeBlob(uint256 marketId, FeedSlot[5] memory fs, bytes memory extra) internal {
        _setPointer(marketId, SSTORE2.write(bytes.concat(abi.encodePacked(BlobLib.packFeeds(fs), _sequencerWord()), extra)));
        _listedBits |= 1 << marketId;
    }

    /// @dev Validates the five feeds of a market (reads each feed's decimals).
    function _checkFeeds(uint256 marketId, FeedConfig[5] memory cfg) internal view returns (FeedSlot[5] memory fs) {
        for (uint256 k; k < 5; ++k) {
            FeedConfig memory c = cfg[k];
            FeedKind kind = FeedKind(k);
            if (c.feed == address(0) || c.heartbeatSec == 0) revert ErrorsLib.FeedMissing(marketId, kind);
            bool positive = kind == FeedKind.Price || kind == FeedKind.Volatility || kind == FeedKind.Depth;
            if (c.minWad >= c.maxWad || (positive && c.minWad <= 0)) {
                revert ErrorsLib.FeedBoundsInvalid(marketId, kind, c.minWad, c.maxWad);
            }
            uint8 dec = AggregatorV3Interface(c.feed).decimals();
            if (dec > 18) revert ErrorsLib.FeedDecimalsInvalid(marketId, kind, dec);
            bool reported = kind != FeedKind.Price && _isOwnReport(c.feed, marketId, kind);
            // A saturated report answer must read as out of bounds.
            if (reported && (c.maxWad == type(int128).max || c.minWad == type(int128).min)) {
                revert ErrorsLib.FeedBoundsInvalid(marketId, kind, c.minWad, c.maxWad);
            }
            fs[k] = FeedSlot({
                feed: c.feed,
                heartbeatSec: c.heartbeatSec,
                decimals: dec,
                reported: reported,
                minWad: c.minWad,
                maxWad: c.maxWad
            });
        }
    }

    /// @dev True when `feed` is a `ReportFeed` of this controller for this market and field.
    function _isOwnReport(address feed, uint256 marketId, FeedKind kind) internal view returns (bool) {
        try IReportSource(feed).source() returns (address c, uint256 m, FeedKind k) {
            return c == address(this) && m == marketId && k == kind;
        } catch {
            return false;
        }
    }

    /// @dev An answer and its time against a feed's heartbeat, decimals and WAD bounds: (ok, value
    /// WAD, time), (false, 0, 0) when stale, from the future, too large or out of bounds.
    function _check(int256 answer, uint256 updatedAt, uint256 heartbeatSec, uint256 decimals, int256 lo, int256 hi)
        internal
        view
        returns (bool ok, int256 v, uint256 t)
    {
        uint256 lim = ConstantsLib.MAX_RAW_ANSWER;
        assembly ("memory-safe") {
            let now_ := timestamp()
            // published (t != 0), not from the future, within the heartbeat (a future time makes
            // the difference wrap above any heartbeat)
            let fresh := and(iszero(iszero(updatedAt)), iszero(gt(sub(now_, updatedAt), heartbeatSec)))
            // |answer| <= MAX_RAW_ANSWER (1e40); decimals <= 18 (checked at listing): the product
            // below fits in int256 (1e58) whenever the answer is in range
            let inRange := and(iszero(sgt(answer, lim)), iszero(slt(answer, sub(0, lim))))
            v := mul(answer, exp(10, sub(18, decimals)))
            ok := and(and(fresh, inRange), and(iszero(slt(v, lo)), iszero(sgt(v, hi))))
            v := mul(v, ok)
            t := mul(updatedAt, ok)
        }
    }

    /// @dev A market's report for a quote: its three slots when any of the blob's feeds is
    /// reported, else zeros (no storage read).
    function _loadReport(bytes memory b, uint256 marketId) internal view returns (Report memory r) {
        uint256 any;
        assembly ("memory-safe") {
            let p := add(b, 32)
            // reported bits (200) of the words of feeds 1..4 (words 2, 4, 6, 8)
            any := or(or(mload(add(p, 64)), mload(add(p, 128))), or(mload(add(p, 192)), mload(add(p, 256))))
        }
        if ((any >> 200) & 1 == 1) r = _reports[marketId];
    }

    /// @dev Feed `k` of a blob read and checked: a reported field from `rep` (`_loadReport`, read
    /// once per quote or poke), any other feed with `latestRoundData` (a feed that reverts is bad):
    /// (ok, value WAD, time, the feed's min and max WAD); ok false (value and time 0) when it is
    /// stale, from the future, too large or outside its bounds (`_check`).
    function _readK(bytes memory b, uint256 k, Report memory rep)
        internal
        view
        returns (bool ok, int256 v, uint256 t, int256 lo, int256 hi)
    {
        // k <= 4 (a FeedKind): no overflow; checked arithmetic here cost ~200 gas a read
        unchecked {
            if (2 * k + 1 >= b.length >> 5) revert BlobLib.BlobTooShort(2 * k + 1, b.length);
        }
        uint256 w0;
        uint256 w1;
        assembly ("memory-safe") {
            let p := add(add(b, 32), mul(k, 64))
            w0 := mload(p)
            w1 := mload(add(p, 32))
            lo := signextend(15, w1)
            hi := signextend(15, shr(128, w1))
        }
        int256 answer;
        uint256 updatedAt;
        if ((w0 >> 200) & 1 == 1) {
            // Field k (1..4) of the report in memory: answers in words 0 (vol | funding) and 1
            // (depth | skew), times in word 2 (`Report`).
            assembly ("memory-safe") {
                let i := sub(k, 1)
                answer := signextend(15, shr(mul(128, and(i, 1)), mload(add(rep, mul(32, shr(1, i))))))
                updatedAt := and(shr(mul(40, i), mload(add(rep, 64))), 0xffffffffff)
            }
        } else {
            address feed = address(uint160(w0));
            if (feed == address(0)) return (false, 0, 0, lo, hi);
            try AggregatorV3Interface(feed).latestRoundData() returns (uint80, int256 a, uint256, uint256 u, uint80) {
                answer = a;
                updatedAt = u;
            } catch {
                return (false, 0, 0, lo, hi);
            }
        }
        (ok, v, t) = _check(answer, updatedAt, uint32(w0 >> 160), uint8(w0 >> 192), lo, hi);
    }

    /// @dev Price, funding and sequencer fields of a quote (the price never reverts here).
    function _quoteBase(MarketQuote memory q, bytes memory blob, Report memory rep) internal view {
        (bool okP, int256 p, uint256 tP,,) = _readK(blob, uint256(FeedKind.Price), rep);
        q.priceOk = okP;
        q.priceWad = uint256(p);
        q.priceTimeSec = tP;
        (bool okF, int256 f, uint256 tF,,) = _readK(blob, uint256(FeedKind.Funding), rep);
        q.fundingOk = okF;
        q.fundingRateWad = f;
        q.fundingTimeSec = tF;
        q.sequencerUp = _sequencerUpOf(blob);
    }

    /// @dev The bound engine's gross open interest of a market (long, short), base units, WAD.
    function _engineOpenInterest(uint256 marketId) internal view returns (uint256 oiLong, uint256 oiShort) {
        address e = engine;
        if (e == address(0)) return (0, 0);
        return IMarginEngine(e).openInterest(marketId);
    }
}
