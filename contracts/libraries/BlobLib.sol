// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {RiskParams} from "../../interfaces/ILeverageController.sol";
import {MarginMath} from "./MarginMath.sol";

/// @notice Storage form of a feed configuration, with the feed's decimals read at listing.
/// @param reported True when the feed is the controller's own `ReportFeed` for this market and
/// field: the controller then reads its report storage instead of calling the feed.
struct FeedSlot {
    address feed;
    uint32 heartbeatSec;
    uint8 decimals;
    bool reported;
    int128 minWad;
    int128 maxWad;
}

/// @title BlobLib
/// @notice Packing of a market's configuration into the words of an SSTORE2 blob (read by a quote
/// with one EXTCODECOPY) and cheap unpacking (shifts and masks, no ABI decoder).
/// @dev Layout, in 32-byte words: feed k (k = 0..4) in words 2k and 2k+1
///   (word 2k: feed | heartbeat << 160 | decimals << 192 | reported << 200;
///   word 2k+1: uint128(min) | uint128(max) << 128), the sequencer word (word 10),
/// then the controller's words from word 11 on (`RiskParams`: 5 words each, see `packParams`).
library BlobLib {
    /// @notice Words of the five feeds at the start of every blob.
    uint256 internal constant FEED_WORDS = 10;
    /// @notice The word after the feeds: the L2 sequencer uptime feed (160 bits) and its grace
    /// period, seconds (<< 160), copied from the controller's storage (a quote reads it here).
    uint256 internal constant SEQUENCER_WORD = 10;
    /// @notice Words before the controller's own words (feeds, then the sequencer word).
    uint256 internal constant HEADER_WORDS = 11;
    /// @notice Words of one packed `RiskParams`.
    uint256 internal constant PARAM_WORDS = 5;

    error BlobTooShort(uint256 word, uint256 lengthBytes);

    /// @notice Word `i` of `b`.
    function word(bytes memory b, uint256 i) internal pure returns (uint256 w) {
        // `i >= length / 32` cannot overflow, whatever `i`
        if (i >= b.length >> 5) revert BlobTooShort(i, b.length);
        assembly ("memory-safe") {
            w := mload(add(add(b, 32), mul(i, 32)))
        }
    }

    function packFeeds(FeedSlot[5] memory fs) internal pure returns (uint256[10] memory w) {
        for (uint256 k; k < 5; ++k) {
            FeedSlot memory s = fs[k];
            w[2 * k] = uint256(uint160(s.feed)) | (uint256(s.heartbeatSec) << 160) | (uint256(s.decimals) << 192)
                | (s.reported ? uint256(1) << 200 : 0);
            w[2 * k + 1] = uint256(uint128(s.minWad)) | (uint256(uint128(s.maxWad)) << 128);
        }
    }

    /// @notice Feed `k` of a blob (one bounds check, the two words read and split in assembly: a
    /// quote decodes four or five of these).
    function feed(bytes memory b, uint256 k) internal pure returns (FeedSlot memory s) {
        if (2 * k + 1 >= b.length >> 5) revert BlobTooShort(2 * k + 1, b.length);
        assembly ("memory-safe") {
            let p := add(add(b, 32), mul(k, 64))
            let w0 := mload(p)
            let w1 := mload(add(p, 32))
            mstore(s, and(w0, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(s, 32), and(shr(160, w0), 0xffffffff))
            mstore(add(s, 64), and(shr(192, w0), 0xff))
            mstore(add(s, 96), and(shr(200, w0), 1))
            mstore(add(s, 128), signextend(15, w1))
            mstore(add(s, 160), signextend(15, shr(128, w1)))
        }
    }

    function feeds(bytes memory b) internal pure returns (FeedSlot[5] memory fs) {
        for (uint256 k; k < 5; ++k) {
            fs[k] = feed(b, k);
        }
    }

    /// @notice `RiskParams` in five words: (z, skewSens, tailCap, bufferMult), (minBuffer, liqFee,
    /// impact, crowd), (fundingSens (96 bits), fundingThreshold, horizon (32), rampJitter (32)),
    /// (minImf, maxImf, minMmf, maxMmf), (mmfRamp, volRef, regimeSens, sqrt(horizon / YEAR));
    /// 64 bits each unless noted.
    function packParams(RiskParams memory p) internal pure returns (uint256[5] memory w) {
        w[0] = _four(p.zWad, p.skewSensWad, p.tailCapWad, p.bufferMultWad);
        w[1] = _four(p.minBufferWad, p.liqFeeWad, p.impactWad, p.crowdWad);
        w[2] = uint256(p.fundingSensWad) | (uint256(p.fundingThresholdWad) << 96) | (uint256(p.horizonSec) << 160)
            | (uint256(p.rampJitterSec) << 192);
        w[3] = _four(p.minImfWad, p.maxImfWad, p.minMmfWad, p.maxMmfWad);
        // Word 4's last 64 bits cache sqrt(horizon / YEAR) (`sqrtHorizon`), which every quote needs.
        w[4] = _four(p.mmfRampWadPerSec, p.volRefWad, p.regimeSensWad, uint64(MarginMath.sqrtHorizonWad(p.horizonSec)));
    }

    /// @notice The `RiskParams` packed at word `at` of a blob (one bounds check; the 19 fields
    /// written in `RiskParams`' memory order in assembly).
    function params(bytes memory b, uint256 at) internal pure returns (RiskParams memory) {
        return paramsReader()(b, at);
    }

    /// @notice `params` as a function pointer: `RiskParams memory p = paramsReader()(b, at)`
    /// allocates and fills the struct once, where a call to `params` first zero-fills its return
    /// value (19 words, ~490 gas; every dynamic quote decodes one).
    function paramsReader()
        internal
        pure
        returns (function(bytes memory, uint256) internal pure returns (RiskParams memory) typed)
    {
        function(bytes memory, uint256) internal pure returns (uint256) raw = _decodeParams;
        assembly ("memory-safe") {
            typed := raw
        }
    }

    /// @dev Checks that the blob holds the five words at `at`, allocates the 19 words of a
    /// `RiskParams` and fills them from the blob; returns the pointer.
    function _decodeParams(bytes memory b, uint256 at) private pure returns (uint256 p) {
        // `at` is a word index of this library's layout (11 or 16): no overflow
        unchecked {
            if (at + PARAM_WORDS > b.length >> 5) revert BlobTooShort(at + PARAM_WORDS - 1, b.length);
        }
        assembly ("memory-safe") {
            p := mload(0x40)
            mstore(0x40, add(p, 608))
            let m64 := 0xffffffffffffffff
            let src := add(add(b, 32), mul(at, 32))
            let w := mload(src)
            mstore(p, and(w, m64))
            mstore(add(p, 32), and(shr(64, w), m64))
            mstore(add(p, 64), and(shr(128, w), m64))
            mstore(add(p, 96), shr(192, w))
            w := mload(add(src, 32))
            mstore(add(p, 128), and(w, m64))
            mstore(add(p, 160), and(shr(64, w), m64))
            mstore(add(p, 192), and(shr(128, w), m64))
            mstore(add(p, 224), shr(192, w))
            w := mload(add(src, 64))
            mstore(add(p, 256), and(w, 0xffffffffffffffffffffffff))
            mstore(add(p, 288), and(shr(96, w), m64))
            mstore(add(p, 320), and(shr(160, w), 0xffffffff))
            mstore(add(p, 352), and(shr(192, w), 0xffffffff))
            w := mload(add(src, 96))
            mstore(add(p, 384), and(w, m64))
            mstore(add(p, 416), and(shr(64, w), m64))
            mstore(add(p, 448), and(shr(128, w), m64))
            mstore(add(p, 480), shr(192, w))
            w := mload(add(src, 128))
            mstore(add(p, 512), and(w, m64))
            mstore(add(p, 544), and(shr(64, w), m64))
            mstore(add(p, 576), and(shr(128, w), m64))
        }
    }

    /// @notice sqrt(horizonSec / YEAR), WAD, of the `RiskParams` packed at word `at` (cached in
    /// word 4, bits 192-255, by `packParams`).
    function sqrtHorizon(bytes memory b, uint256 at) internal pure returns (uint256) {
        return word(b, at + 4) >> 192;
    }

    /// @notice The liquidation fee (word 1, bits 64-127) and the maintenance cap (word 3, bits
    /// 192-255) of the `RiskParams` packed at word `at`, one bounds check.
    function liqFeeAndMaxMmf(bytes memory b, uint256 at) internal pure returns (uint256 liqFee, uint256 maxMmf) {
        unchecked {
            if (at + 4 > b.length >> 5) revert BlobTooShort(at + 3, b.length);
        }
        assembly ("memory-safe") {
            let p := add(add(b, 32), mul(at, 32))
            liqFee := and(shr(64, mload(add(p, 32))), 0xffffffffffffffff)
            maxMmf := shr(192, mload(add(p, 96)))
        }
    }

    function _four(uint64 a, uint64 b, uint64 c, uint64 d) private pure returns (uint256) {
        return uint256(a) | (uint256(b) << 64) | (uint256(c) << 128) | (uint256(d) << 192);
    }
}
