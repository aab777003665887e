// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {OrderHelpers} from "../utils/OrderHelpers.sol";
import {FeedConfig, MarketQuote, RiskParams} from "../../../interfaces/ILeverageController.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {LeverageController} from "../../../contracts/LeverageController.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {ConstantsLib as C} from "../../../contracts/libraries/ConstantsLib.sol";

/// @notice Helpers shared by the attack tests: side-effect-free trade probes, a binary search for
/// the largest position the live model allows, redeployment (sequencer feed, other collateral),
/// timelocked listing of extra markets, feed refreshes after a warp, and field-indexed access to
/// `RiskParams` with the hard bounds of `ParamsLib`.
abstract contract AttackBase is OrderHelpers {
    error ProbeOk();

    uint256 internal constant N_FIELDS = 19;

    // ---------------------------------------------------------------- trade probes

    /// @notice Commits and settles as `who` (at the next round, after the minimum delay), then
    /// reverts with `ProbeOk`: tells whether the order would settle without changing any state.
    /// External so that `canTrade` can catch its revert.
    function probeTrade(address who, uint256 marketId, int256 delta) external {
        vm.prank(who);
        engine.commitOrder(marketId, delta, 0);
        waitAndPublish(marketId);
        engine.settleOrder(who, marketId, latestRound(marketId));
        revert ProbeOk();
    }

    function canTrade(address who, uint256 marketId, int256 delta) internal returns (bool ok) {
        try this.probeTrade(who, marketId, delta) {}
        catch (bytes memory err) {
            ok = err.length == 4 && bytes4(err) == ProbeOk.selector;
        }
    }

    /// @notice Largest extra size (base units, WAD) `who` may add on a side now, to a relative
    /// precision of 1e-9 (a binary search over side-effect-free probes). 0 when nothing passes.
    function maxTradeSize(address who, uint256 marketId, bool isLong) internal returns (uint256 lo) {
        uint256 price = engine.controller().priceWad(marketId);
        Health memory h = engine.health(who);
        if (h.equityUsdWad <= 0) return 0;
        // 200x is the hard leverage ceiling (MIN_IMF_MIN): nothing larger can pass.
        uint256 hi = uint256(h.equityUsdWad) * 200 / price * WAD + WAD;
        if (canTrade(who, marketId, isLong ? int256(hi) : -int256(hi))) return hi;
        while (hi - lo > hi / 1e9 + 1) {
            uint256 mid = (lo + hi) / 2;
            if (canTrade(who, marketId, isLong ? int256(mid) : -int256(mid))) lo = mid;
            else hi = mid;
        }
    }

    /// @notice Opens (adds) the largest position the live model allows and returns its size.
    function openMax(address who, uint256 marketId, bool isLong) internal returns (uint256 size) {
        size = maxTradeSize(who, marketId, isLong);
        require(size > 0, "openMax: nothing passes");
        trade(who, marketId, isLong ? int256(size) : -int256(size), 0);
    }

    function imfOf(uint256 marketId, bool isLong, uint256 sizeWad) internal view returns (uint256) {
        return controller.quote(marketId, isLong, sizeWad).imfWad;
    }

    function quoteOf(uint256 marketId, bool isLong, uint256 sizeWad) internal view returns (MarketQuote memory) {
        return controller.quote(marketId, isLong, sizeWad);
    }

    // ---------------------------------------------------------------- feeds and time

    function refresh(MockAggregator f) internal {
        (, int256 a,,,) = f.latestRoundData();
        vm.prank(admin);
        f.transmit(a);
    }

    /// @notice Moves time (and blocks, 12 s each) forward and re-transmits every feed of every
    /// market (BTC and those listed through `listExtraMarket` / `listTimelocked`).
    function warpRefresh(uint256 dt) internal {
        vm.warp(block.timestamp + dt);
        vm.roll(block.number + dt / 12 + 1);
        refreshFeeds();
    }

    function newFeeds(string memory name, int256 price8, int256 vol8, int256 depth8)
        internal
        returns (MockAggregator[5] memory f)
    {
        vm.startPrank(admin);
        f[0] = new MockAggregator(8, string.concat(name, " / USD"), price8);
        f[1] = new MockAggregator(8, string.concat(name, " vol"), vol8);
        f[2] = new MockAggregator(8, string.concat(name, " funding"), 0);
        f[3] = new MockAggregator(8, string.concat(name, " depth"), depth8);
        f[4] = new MockAggregator(8, string.concat(name, " skew"), 0);
        vm.stopPrank();
    }

    /// @notice Lists a market after bootstrap: propose, wait the timelock, execute, poke.
    function listTimelocked(uint256 marketId, MockAggregator[5] memory f, RiskParams memory p) internal {
        FeedConfig[5] memory cfg = feedConfigs(f);
        vm.prank(admin);
        controller.proposeMarket(marketId, cfg, p);
        marketFeeds[marketId] = f;
        extraMarkets.push(marketId);
        warpRefresh(controller.paramDelaySec());
        controller.executeMarket(marketId, cfg, p);
        controller.poke(marketId);
    }

    /// @notice A fresh controller and engine over the same feeds, optionally with an L2 sequencer
    /// feed (set during bootstrap), sealed, with the vault and insurance funded.
    function redeploy(address seqFeed, uint256 graceSec) internal {
        vm.startPrank(admin);
        controller = new LeverageController(admin, 1 days);
        engine = new MarginEngine(admin, usd, controller, defaultEngineConfig());
        controller.bindEngine(address(engine));
        controller.listMarket(BTC, feedConfigs(feeds), defaultParams());
        if (seqFeed != address(0)) controller.setSequencerFeed(seqFeed, graceSec);
        controller.poke(BTC);
        controller.sealBootstrap();
        vm.stopPrank();
        usd.mint(address(this), 51_000_000 * USDC);
        usd.approve(address(engine), type(uint256).max);
        engine.fundVault(50_000_000 * USDC);
        engine.fundInsurance(1_000_000 * USDC);
    }

    // ---------------------------------------------------------------- accounting

    /// @notice Exact token conservation over `accts` (which must hold every account with collateral).
    function assertConservedOver(address[] memory accts) internal view {
        int256 sum;
        for (uint256 i; i < accts.length; ++i) {
            sum += engine.collateralOf(accts[i]);
        }
        int256 buckets = sum + engine.vaultBalance() + int256(engine.insuranceFund()) + int256(engine.protocolFees())
            + int256(engine.orderEscrow()) + int256(engine.impactPools());
        assertEq(int256(usd.balanceOf(address(engine))), buckets, "token conservation");
        assertEq(usd.balanceOf(address(engine)), engine.netDeposits(), "net deposits");
        assertEq(engine.badDebtTotal(), engine.badDebtCovered() + engine.badDebtSocialized(), "bad debt split");
    }

    // ---------------------------------------------------------------- RiskParams by field index

    /// @notice Field i of `p`, in `ParamField` / ParamsLib order.
    function getField(RiskParams memory p, uint256 i) internal pure returns (uint256) {
        if (i == 0) return p.zWad;
        if (i == 1) return p.skewSensWad;
        if (i == 2) return p.tailCapWad;
        if (i == 3) return p.bufferMultWad;
        if (i == 4) return p.minBufferWad;
        if (i == 5) return p.liqFeeWad;
        if (i == 6) return p.impactWad;
        if (i == 7) return p.crowdWad;
        if (i == 8) return p.fundingSensWad;
        if (i == 9) return p.fundingThresholdWad;
        if (i == 10) return p.horizonSec;
        if (i == 11) return p.rampJitterSec;
        if (i == 12) return p.minImfWad;
        if (i == 13) return p.maxImfWad;
        if (i == 14) return p.minMmfWad;
        if (i == 15) return p.maxMmfWad;
        if (i == 16) return p.mmfRampWadPerSec;
        if (i == 17) return p.volRefWad;
        return p.regimeSensWad;
    }

    /// @notice Sets field i of `p` (v must fit the field's type, see `fieldTypeMax`).
    function setField(RiskParams memory p, uint256 i, uint256 v) internal pure {
        if (i == 0) p.zWad = uint64(v);
        else if (i == 1) p.skewSensWad = uint64(v);
        else if (i == 2) p.tailCapWad = uint64(v);
        else if (i == 3) p.bufferMultWad = uint64(v);
        else if (i == 4) p.minBufferWad = uint64(v);
        else if (i == 5) p.liqFeeWad = uint64(v);
        else if (i == 6) p.impactWad = uint64(v);
        else if (i == 7) p.crowdWad = uint64(v);
        else if (i == 8) p.fundingSensWad = uint96(v);
        else if (i == 9) p.fundingThresholdWad = uint64(v);
        else if (i == 10) p.horizonSec = uint32(v);
        else if (i == 11) p.rampJitterSec = uint32(v);
        else if (i == 12) p.minImfWad = uint64(v);
        else if (i == 13) p.maxImfWad = uint64(v);
        else if (i == 14) p.minMmfWad = uint64(v);
        else if (i == 15) p.maxMmfWad = uint64(v);
        else if (i == 16) p.mmfRampWadPerSec = uint64(v);
        else if (i == 17) p.volRefWad = uint64(v);
        else p.regimeSensWad = uint64(v);
    }

    function fieldTypeMax(uint256 i) internal pure returns (uint256) {
        if (i == 8) return type(uint96).max;
        if (i == 10 || i == 11) return type(uint32).max;
        return type(uint64).max;
    }

    /// @notice Hard bounds of field i, as in ParamsLib._bounds (restated: a test must not trust
    /// the code it checks).
    function fieldBounds(uint256 i) internal pure returns (uint256 lo, uint256 hi) {
        uint256[19] memory l = [
            C.Z_MIN, 0, C.TAIL_CAP_MIN, C.BUFFER_MULT_MIN, C.MIN_BUFFER_MIN, C.LIQ_FEE_MIN, 0, 0, 0, 0,
            C.HORIZON_MIN_SEC, 0, C.MIN_IMF_MIN, C.MIN_IMF_MIN, C.MIN_MMF_MIN, C.MIN_MMF_MIN, C.MMF_RAMP_MIN,
            C.VOL_REF_MIN, 0
        ];
        uint256[19] memory h = [
            C.Z_MAX, C.SKEW_SENS_MAX, C.TAIL_CAP_MAX, C.BUFFER_MULT_MAX, C.MIN_BUFFER_MAX, C.LIQ_FEE_MAX,
            C.IMPACT_MAX, C.CROWD_MAX, C.FUNDING_SENS_MAX, C.FUNDING_THRESHOLD_MAX, C.HORIZON_MAX_SEC,
            C.RAMP_JITTER_MAX_SEC, C.IMF_MAX, C.IMF_MAX, C.IMF_MAX, C.IMF_MAX, C.MMF_RAMP_MAX, C.VOL_REF_MAX,
            C.REGIME_SENS_MAX
        ];
        return (l[i], h[i]);
    }

    /// @notice Largest move of field i in one update from `oldV`: max(25% of it, 1/20 of the range).
    function maxStepOf(uint256 i, uint256 oldV) internal pure returns (uint256) {
        (uint256 lo, uint256 hi) = fieldBounds(i);
        uint256 rel = oldV * C.MAX_STEP_REL_WAD / WAD;
        uint256 abs_ = (hi - lo) / C.MAX_STEP_RANGE_DIV;
        return rel > abs_ ? rel : abs_;
    }

    /// @notice Makes `p` (a move from `cur`) consistent without leaving one step: raises the
    /// initial bounds toward mmf + buffer (a tightening), then, if a step is not enough, pulls
    /// the maintenance bounds down to fit.
    function repairConsistency(RiskParams memory cur, RiskParams memory p) internal pure {
        uint256 capMin = uint256(cur.minImfWad) + maxStepOf(12, cur.minImfWad);
        uint256 capMax = uint256(cur.maxImfWad) + maxStepOf(13, cur.maxImfWad);
        if (capMax > C.IMF_MAX) capMax = C.IMF_MAX;
        uint256 needMin = uint256(p.minMmfWad) + p.minBufferWad;
        if (needMin > p.minImfWad) p.minImfWad = uint64(needMin < capMin ? needMin : capMin);
        if (needMin > p.minImfWad) p.minMmfWad = uint64(p.minImfWad - p.minBufferWad);
        uint256 needMax = uint256(p.maxMmfWad) + p.minBufferWad;
        if (needMax > p.maxImfWad) p.maxImfWad = uint64(needMax < capMax ? needMax : capMax);
        if (needMax > p.maxImfWad) p.maxMmfWad = uint64(p.maxImfWad - p.minBufferWad);
        if (p.minImfWad > p.maxImfWad) p.minImfWad = p.maxImfWad;
        if (p.minMmfWad > p.maxMmfWad) p.minMmfWad = p.maxMmfWad;
    }

    /// @notice A copy (memory structs alias on assignment).
    function copyParams(RiskParams memory p) internal pure returns (RiskParams memory) {
        return abi.decode(abi.encode(p), (RiskParams));
    }

    /// @notice Whether a SMALLER value of field i is tighter (fundingThreshold, volRef).
    function smallerIsTighter(uint256 i) internal pure returns (bool) {
        return i == 9 || i == 17;
    }

    /// @notice Whether field i only shapes the maintenance ramp (rampJitter, mmfRamp).
    function isRampField(uint256 i) internal pure returns (bool) {
        return i == 11 || i == 16;
    }

    /// @notice Every field of `p` one full step tighter (larger; `fundingThreshold`, `volRef` smaller),
    /// clipped to the hard bounds, then repaired to stay consistent (min <= max, mmf + buffer <= imf).
    /// The ramp fields are left alone.
    function oneStepTighter(RiskParams memory p) internal pure returns (RiskParams memory t) {
        t = copyParams(p);
        for (uint256 i; i < N_FIELDS; ++i) {
            if (isRampField(i)) continue;
            uint256 v = getField(p, i);
            (uint256 lo, uint256 hi) = fieldBounds(i);
            uint256 s = maxStepOf(i, v);
            if (smallerIsTighter(i)) {
                setField(t, i, v > lo + s ? v - s : lo);
            } else {
                uint256 cap = hi < fieldTypeMax(i) ? hi : fieldTypeMax(i);
                setField(t, i, v + s < cap ? v + s : cap);
            }
        }
        repairConsistency(p, t);
    }
}
