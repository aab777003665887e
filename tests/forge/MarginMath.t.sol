// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {OrderHelpers} from "./utils/OrderHelpers.sol";
import {ConstantsLib as C} from "../../contracts/libraries/ConstantsLib.sol";
import {Fractions, MarginMath, RiskInputs} from "../../contracts/libraries/MarginMath.sol";
import {ParamsLib} from "../../contracts/libraries/ParamsLib.sol";
import {PositionMath} from "../../contracts/libraries/PositionMath.sol";
import {Ramp, RampLib} from "../../contracts/libraries/RampLib.sol";
import {SignedMath} from "../../contracts/libraries/SignedMath.sol";
import {RiskParams} from "../../interfaces/ILeverageController.sol";
import {Health} from "../../interfaces/IMarginEngine.sol";

/// @notice Fuzz properties of the margin model and the position accounting:
///  - IMF is monotone in volatility, adverse skew, size, 1/depth, crowding and funding;
///  - floors and caps hold; a fresh position's requirement is >= its maintenance + minBuffer;
///  - every rounding goes against the trader (checked against exact integer references).
contract MarginMathTest is OrderHelpers {
    using FixedPointMathLib for uint256;
    using SignedMath for int256;

    // ================================================================ generators

    function _r(uint256 seed, uint256 i, uint256 lo, uint256 hi) private pure returns (uint256) {
        return lo + uint256(keccak256(abi.encode(seed, i))) % (hi - lo + 1);
    }

    /// @dev Any parameter set that passes `ParamsLib.validate`, drawn from a seed.
    function randomParams(uint256 seed) internal pure returns (RiskParams memory p) {
        p = defaultParams();
        p.zWad = uint64(_r(seed, 0, C.Z_MIN, C.Z_MAX));
        p.skewSensWad = uint64(_r(seed, 1, 0, C.SKEW_SENS_MAX));
        p.tailCapWad = uint64(_r(seed, 2, C.TAIL_CAP_MIN, C.TAIL_CAP_MAX));
        p.bufferMultWad = uint64(_r(seed, 3, C.BUFFER_MULT_MIN, C.BUFFER_MULT_MAX));
        p.minBufferWad = uint64(_r(seed, 4, C.MIN_BUFFER_MIN, C.MIN_BUFFER_MAX));
        p.liqFeeWad = uint64(_r(seed, 5, C.LIQ_FEE_MIN, C.LIQ_FEE_MAX));
        p.impactWad = uint64(_r(seed, 6, 0, C.IMPACT_MAX));
        p.crowdWad = uint64(_r(seed, 7, 0, C.CROWD_MAX));
        p.fundingSensWad = uint96(_r(seed, 8, 0, C.FUNDING_SENS_MAX));
        p.fundingThresholdWad = uint64(_r(seed, 9, 0, C.FUNDING_THRESHOLD_MAX));
        p.horizonSec = uint32(_r(seed, 10, C.HORIZON_MIN_SEC, C.HORIZON_MAX_SEC));
        p.rampJitterSec = uint32(_r(seed, 11, 0, C.RAMP_JITTER_MAX_SEC));
        uint256 buf = p.minBufferWad;
        uint256 lowMaxImf = buf + C.MIN_MMF_MIN > C.MIN_IMF_MIN ? buf + C.MIN_MMF_MIN : C.MIN_IMF_MIN;
        p.maxImfWad = uint64(_r(seed, 12, lowMaxImf, C.IMF_MAX));
        p.maxMmfWad = uint64(_r(seed, 13, C.MIN_MMF_MIN, p.maxImfWad - buf));
        p.minMmfWad = uint64(_r(seed, 14, C.MIN_MMF_MIN, p.maxMmfWad));
        uint256 lowMinImf = p.minMmfWad + buf > C.MIN_IMF_MIN ? p.minMmfWad + buf : C.MIN_IMF_MIN;
        p.minImfWad = uint64(_r(seed, 15, lowMinImf, p.maxImfWad));
        p.mmfRampWadPerSec = uint64(_r(seed, 16, C.MMF_RAMP_MIN, C.MMF_RAMP_MAX));
        p.volRefWad = uint64(_r(seed, 17, C.VOL_REF_MIN, C.VOL_REF_MAX));
        p.regimeSensWad = uint64(_r(seed, 18, 0, C.REGIME_SENS_MAX));
    }

    /// @dev Inputs within the default feed bounds (vol 1%..1000%, skew +-1, depth 1e3..1e12 USD).
    function randomInputs(uint256 seed) internal pure returns (RiskInputs memory x) {
        x.sigmaWad = _r(seed, 100, 0.01e18, 10e18);
        x.skewWad = int256(_r(seed, 101, 0, 2e18)) - 1e18;
        x.depthUsdWad = _r(seed, 102, 1e21, 1e30);
        x.fundingRateWad = int256(_r(seed, 103, 0, 0.1e18)) - 0.05e18;
        x.priceWad = _r(seed, 104, 1e18, 1e25);
        x.oiSideWad = _r(seed, 105, 0, 1e27);
        x.oiOtherWad = _r(seed, 106, 0, 1e27);
        x.notionalUsdWad = _r(seed, 107, 0, 1e30);
        x.isLong = _r(seed, 108, 0, 1) == 1;
    }

    function imf(RiskParams memory p, RiskInputs memory x) internal pure returns (uint256) {
        return MarginMath.compute(p, x).imfWad;
    }

    function testFuzz_generator_paramsAreValid(uint256 seed) public pure {
        ParamsLib.validate(randomParams(seed));
    }

    // ================================================================ monotonicity

    function testFuzz_imf_monotoneInSigma(uint256 ps, uint256 xs, uint256 s1, uint256 s2) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        s1 = bound(s1, 0.01e18, 10e18);
        s2 = bound(s2, s1, 10e18);
        x.sigmaWad = s1;
        Fractions memory a = MarginMath.compute(p, x);
        x.sigmaWad = s2;
        Fractions memory b = MarginMath.compute(p, x);
        assertLe(a.varMoveWad, b.varMoveWad, "varMove");
        assertLe(a.mmfBaseWad, b.mmfBaseWad, "mmfBase");
        assertLe(a.imfWad, b.imfWad, "imf");
    }

    function testFuzz_imf_monotoneInAdverseSkew(uint256 ps, uint256 xs, uint256 k1, uint256 k2) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        // adverse skew magnitude: put skew (negative) for longs, call skew (positive) for shorts
        k1 = bound(k1, 0, 1e18);
        k2 = bound(k2, k1, 1e18);
        x.skewWad = x.isLong ? -int256(k1) : int256(k1);
        Fractions memory a = MarginMath.compute(p, x);
        x.skewWad = x.isLong ? -int256(k2) : int256(k2);
        Fractions memory b = MarginMath.compute(p, x);
        assertLe(a.varMoveWad, b.varMoveWad, "varMove");
        assertLe(a.imfWad, b.imfWad, "imf");
        // favourable skew never loosens below the no-skew level
        x.skewWad = x.isLong ? int256(k2) : -int256(k2);
        Fractions memory fav = MarginMath.compute(p, x);
        x.skewWad = 0;
        assertEq(fav.imfWad, imf(p, x), "favourable skew is ignored");
    }

    function testFuzz_imf_monotoneInNotional(uint256 ps, uint256 xs, uint256 n1, uint256 n2) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        n1 = bound(n1, 0, 1e32);
        n2 = bound(n2, n1, 1e32);
        x.notionalUsdWad = n1;
        Fractions memory a = MarginMath.compute(p, x);
        x.notionalUsdWad = n2;
        Fractions memory b = MarginMath.compute(p, x);
        assertLe(a.slipWad, b.slipWad, "slip");
        assertLe(a.imfWad, b.imfWad, "imf");
    }

    function testFuzz_imf_monotoneInDepth(uint256 ps, uint256 xs, uint256 d1, uint256 d2) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        d1 = bound(d1, 1e21, 1e31);
        d2 = bound(d2, d1, 1e31);
        x.depthUsdWad = d1; // thinner
        Fractions memory thin = MarginMath.compute(p, x);
        x.depthUsdWad = d2; // deeper
        Fractions memory deep = MarginMath.compute(p, x);
        assertGe(thin.slipWad, deep.slipWad, "slip");
        assertGe(thin.crowdWad, deep.crowdWad, "crowd");
        assertGe(thin.imfWad, deep.imfWad, "imf");
    }

    function testFuzz_imf_monotoneInCrowding(uint256 ps, uint256 xs, uint256 side, uint256 other, uint256 more)
        public
        pure
    {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        x.oiSideWad = bound(side, 0, 1e27);
        x.oiOtherWad = bound(other, 0, 1e27);
        more = bound(more, 0, 1e27);
        Fractions memory a = MarginMath.compute(p, x);
        // more on the quoted side: never cheaper
        x.oiSideWad += more;
        Fractions memory b = MarginMath.compute(p, x);
        assertLe(a.crowdWad, b.crowdWad, "crowd side");
        assertLe(a.imfWad, b.imfWad, "imf side");
        // more on the other side: never dearer
        x.oiSideWad -= more;
        x.oiOtherWad += more;
        Fractions memory c = MarginMath.compute(p, x);
        assertGe(a.crowdWad, c.crowdWad, "crowd other");
        assertGe(a.imfWad, c.imfWad, "imf other");
        // a balanced or short-side book charges nothing
        if (x.oiSideWad <= x.oiOtherWad) assertEq(c.crowdWad, 0);
        assertLe(c.crowdWad, p.crowdWad);
    }

    function testFuzz_imf_monotoneInFunding(uint256 ps, uint256 xs, int256 r1, int256 r2) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        // payer rate: + for longs, - for shorts
        r1 = bound(r1, -0.05e18, 0.05e18);
        r2 = bound(r2, r1, 0.05e18);
        x.fundingRateWad = x.isLong ? r1 : -r1;
        Fractions memory a = MarginMath.compute(p, x);
        x.fundingRateWad = x.isLong ? r2 : -r2;
        Fractions memory b = MarginMath.compute(p, x);
        assertLe(a.fundingWad, b.fundingWad, "funding");
        assertLe(a.imfWad, b.imfWad, "imf");
        if (r2 <= int256(uint256(p.fundingThresholdWad))) assertEq(b.fundingWad, 0, "below threshold");
    }

    /// @dev The params "tighter" of two sets never prices less margin than either.
    function testFuzz_tighter_neverLooser(uint256 ps1, uint256 ps2, uint256 xs) public pure {
        RiskParams memory a = randomParams(ps1);
        RiskParams memory b = randomParams(ps2);
        RiskParams memory t = ParamsLib.tighter(a, b);
        RiskInputs memory x = randomInputs(xs);
        Fractions memory fa = MarginMath.compute(a, x);
        Fractions memory fb = MarginMath.compute(b, x);
        Fractions memory ft = MarginMath.compute(t, x);
        // each raw term is at least the larger of the two (the clamp caps use the larger caps too)
        assertGe(ft.varMoveWad, fa.varMoveWad > fb.varMoveWad ? fa.varMoveWad : fb.varMoveWad);
        assertGe(ft.imfWad, fa.imfWad > fb.imfWad ? fa.imfWad : fb.imfWad);
    }

    // ================================================================ floors and caps

    function testFuzz_bounds_hold(uint256 ps, uint256 xs) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        Fractions memory f = MarginMath.compute(p, x);
        assertGe(f.imfWad, p.minImfWad, "imf floor");
        assertLe(f.imfWad, p.maxImfWad, "imf cap");
        assertGe(f.mmfBaseWad, p.minMmfWad, "mmf floor");
        assertLe(f.mmfBaseWad, p.maxMmfWad, "mmf cap");
        assertLe(f.slipWad, 1e18, "slip cap");
        assertLe(f.crowdWad, p.crowdWad, "crowd cap");
        uint256 tail = MarginMath.tailMultiplier(p, x.sigmaWad, x.skewWad, x.isLong);
        assertGe(tail, 1e18, "tail floor");
        assertLe(tail, p.tailCapWad, "tail cap");
        uint256 pm = MarginMath.positionMaintenance(f.mmfBaseWad, f.slipWad, p.maxMmfWad);
        assertLe(pm, p.maxMmfWad, "position mmf cap");
    }

    /// @dev At open the required fraction covers the position's maintenance plus the minimum
    /// buffer, whatever the ramp holds (any value between the maintenance bounds).
    function testFuzz_requiredInitial_coversMaintenancePlusBuffer(uint256 ps, uint256 xs, uint256 rampMmf)
        public
        pure
    {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        Fractions memory f = MarginMath.compute(p, x);
        uint256 mmfBase = bound(rampMmf, p.minMmfWad, p.maxMmfWad);
        uint256 pm = MarginMath.positionMaintenance(mmfBase, f.slipWad, p.maxMmfWad);
        uint256 req = MarginMath.requiredInitial(f.imfWad, pm, p.minBufferWad, p.maxImfWad);
        assertGe(req, pm + p.minBufferWad, "buffer");
        assertGe(req, f.imfWad, "live imf");
        assertLe(req, p.maxImfWad, "cap");
        // fail-closed quote (maxImf) keeps the same property
        uint256 closed = MarginMath.requiredInitial(p.maxImfWad, pm, p.minBufferWad, p.maxImfWad);
        assertEq(closed, p.maxImfWad);
        assertGe(closed, pm + p.minBufferWad);
    }

    /// @dev End to end: whatever the market state and size, a position that the engine lets open
    /// is not liquidatable, and its equity clears maintenance by at least the minimum buffer.
    function testFuzz_engine_freshPositionNeverLiquidatable(uint256 vol, int256 skew, int256 rate, uint256 size, bool isLong)
        public
    {
        setFeed(1, int256(bound(vol, 0.05e8, 5e8)));
        setFeed(4, bound(skew, -0.5e8, 0.5e8));
        setFeed(2, bound(rate, -0.005e8, 0.005e8));
        controller.poke(BTC);
        fund(alice, 10_000 * USDC);
        size = bound(size, 0.001e18, 10e18);
        if (tryTrade(alice, BTC, isLong ? int256(size) : -int256(size))) {
            Health memory h = engine.health(alice);
            assertGe(h.equityUsdWad, int256(h.initialUsdWad), "initial");
            assertFalse(engine.isLiquidatable(alice), "liquidatable at open");
            uint256 minBuf = uint256(defaultParams().minBufferWad);
            assertGe(uint256(h.equityUsdWad) - h.maintenanceUsdWad + 1, h.notionalUsdWad.mulWad(minBuf), "buffer");
        }
    }

    // ================================================================ rounding: model

    function testFuzz_sqrtHorizon_roundsUp(uint256 h) public pure {
        h = bound(h, C.HORIZON_MIN_SEC, C.HORIZON_MAX_SEC);
        uint256 s = MarginMath.sqrtHorizonWad(h);
        uint256 x = (h * 1e36 + C.YEAR_SEC - 1) / C.YEAR_SEC;
        assertGe(s * s, x);
        assertLt((s - 1) * (s - 1), x);
        assertGe(s * s * C.YEAR_SEC, h * 1e36, "s^2 >= h / year exactly");
    }

    /// @dev varMove = z * sigma * sqrt(h/Y) * tail rounded up at each step: never below the exact
    /// product (one division at the end), and within a few wei of it.
    function testFuzz_varMove_roundsUpAgainstExact(uint256 ps, uint256 sigma, int256 skew, bool isLong) public pure {
        RiskParams memory p = randomParams(ps);
        sigma = bound(sigma, 0.01e18, 10e18);
        skew = bound(skew, -1e18, 1e18);
        uint256 sq = MarginMath.sqrtHorizonWad(p.horizonSec);
        uint256 tail = MarginMath.tailMultiplier(p, sigma, skew, isLong);
        uint256 prod = uint256(p.zWad) * sigma * sq * tail; // < 6e18 * 1e19 * 1.5e17 * 5e18 < 1e77
        uint256 exactUp = (prod + 1e54 - 1) / 1e54;
        uint256 v = MarginMath.varMove(p, sigma, skew, isLong);
        assertGe(v, exactUp);
        assertLe(v, exactUp + 12);
    }

    function testFuzz_tail_roundsUp(uint256 ps, uint256 sigma, int256 skew, bool isLong) public pure {
        RiskParams memory p = randomParams(ps);
        sigma = bound(sigma, 0.01e18, 10e18);
        skew = bound(skew, -1e18, 1e18);
        uint256 adverse = MarginMath.adverseSkew(skew, isLong);
        // exact: 1 + skewSens * adverse + regimeSens * excess / volRef, with one rounding
        uint256 excess = sigma > p.volRefWad ? sigma - p.volRefWad : 0;
        uint256 num = 1e36 * uint256(p.volRefWad) + uint256(p.skewSensWad) * adverse * uint256(p.volRefWad)
            + uint256(p.regimeSensWad) * excess * 1e18;
        uint256 den = 1e18 * uint256(p.volRefWad);
        uint256 exactDown = num / den;
        uint256 t = MarginMath.tailMultiplier(p, sigma, skew, isLong);
        uint256 capped = exactDown < p.tailCapWad ? exactDown : p.tailCapWad;
        assertGe(t, capped);
        // two ceilings, the inner one amplified by regimeSens (<= 10)
        assertLe(t, capped + 2 + uint256(p.regimeSensWad) / 1e18 + 1);
    }

    function testFuzz_slippage_roundsUp(uint256 impact, uint256 n, uint256 d) public pure {
        impact = bound(impact, 0, C.IMPACT_MAX);
        n = bound(n, 0, 1e32);
        d = bound(d, 1, 1e32);
        uint256 s = MarginMath.slippage(impact, n, d);
        if (s < 1e18) {
            assertGe(s * d, impact * n, "ceil");
            assertLt((s == 0 ? 0 : s - 1) * d, impact * n == 0 ? 1 : impact * n, "tight");
        } else {
            assertGe(impact * n, (1e18 - 1) * d, "capped only when >= 100%");
        }
    }

    /// @dev The model with every product and quotient rounded down (the reference the real model,
    /// which rounds up, must never undercut).
    function floorModel(RiskParams memory p, RiskInputs memory x) internal pure returns (Fractions memory r) {
        uint256 sq = FixedPointMathLib.sqrt(uint256(p.horizonSec) * 1e36 / C.YEAR_SEC);
        uint256 t = 1e18 + uint256(p.skewSensWad).mulWad(MarginMath.adverseSkew(x.skewWad, x.isLong));
        if (x.sigmaWad > p.volRefWad) {
            t += uint256(p.regimeSensWad).mulWad((x.sigmaWad - p.volRefWad).divWad(p.volRefWad));
        }
        if (t > p.tailCapWad) t = p.tailCapWad;
        r.varMoveWad = uint256(p.zWad).mulWad(x.sigmaWad).mulWad(sq).mulWad(t);
        r.mmfBaseWad = MarginMath.clamp(r.varMoveWad + p.liqFeeWad, p.minMmfWad, p.maxMmfWad);
        r.slipWad = uint256(p.impactWad).mulDiv(x.notionalUsdWad, x.depthUsdWad);
        if (r.slipWad > 1e18) r.slipWad = 1e18;
        if (x.oiSideWad > x.oiOtherWad) {
            uint256 ratio = (x.oiSideWad - x.oiOtherWad).mulWad(x.priceWad).divWad(x.depthUsdWad);
            r.crowdWad = uint256(p.crowdWad).mulWad(ratio > 1e18 ? 1e18 : ratio);
        }
        int256 payer = x.isLong ? x.fundingRateWad : -x.fundingRateWad;
        int256 thr = int256(uint256(p.fundingThresholdWad));
        if (payer > thr) r.fundingWad = uint256(p.fundingSensWad).mulWad(uint256(payer - thr));
        uint256 raw = r.mmfBaseWad + r.slipWad + uint256(p.bufferMultWad).mulWad(r.varMoveWad) + p.minBufferWad
            + r.crowdWad + r.fundingWad;
        r.imfWad = MarginMath.clamp(raw, p.minImfWad, p.maxImfWad);
    }

    /// @dev The model's IMF (rounded up everywhere) is at least the same model evaluated with every
    /// product rounded down, and within a small number of wei of it.
    function testFuzz_imf_roundsUpAgainstFloorReference(uint256 ps, uint256 xs) public pure {
        RiskParams memory p = randomParams(ps);
        RiskInputs memory x = randomInputs(xs);
        Fractions memory f = MarginMath.compute(p, x);
        Fractions memory ref = floorModel(p, x);
        assertGe(f.varMoveWad, ref.varMoveWad, "varMove");
        assertGe(f.mmfBaseWad, ref.mmfBaseWad, "mmfBase");
        assertGe(f.slipWad, ref.slipWad, "slip");
        assertGe(f.crowdWad, ref.crowdWad, "crowd");
        assertGe(f.fundingWad, ref.fundingWad, "funding");
        assertGe(f.imfWad, ref.imfWad, "imf");
        // the whole difference is rounding: a few wei per term, amplified through the tail and
        // the buffer multiple
        assertLe(f.imfWad - ref.imfWad, 1e3, "imf within rounding");
    }

    // ================================================================ rounding: positions

    /// @dev Value rounds down (a long is worth less, a short owes more); notional rounds up.
    function testFuzz_value_notional_againstHolder(int256 size, uint256 price) public pure {
        size = bound(size, -1e30, 1e30);
        price = bound(price, 1, 1e25);
        int256 v = PositionMath.value(size, price);
        assertLe(v * 1e18, size * int256(price));
        assertGt((v + 1) * 1e18, size * int256(price));
        uint256 n = PositionMath.notional(size, price);
        assertGe(n * 1e18, size.abs() * price);
        assertLt(n * 1e18, size.abs() * price + 1e18);
    }

    /// @dev Increasing: the basis grows by the traded value rounded up (a long pays more, a short
    /// is credited less), never by less than the exact amount and by less than a wei more.
    function testFuzz_applyTrade_increaseBasisAgainstHolder(uint256 size, bool long_, int256 basis, uint256 delta, uint256 price)
        public
        pure
    {
        price = bound(price, 1e18, 1e24);
        uint256 s = bound(size, 0, 1e24);
        uint256 d = bound(delta, 1, 1e24);
        int256 sz = long_ ? int256(s) : -int256(s);
        int256 dl = long_ ? int256(d) : -int256(d);
        int256 b = bound(basis, -1e42, 1e42);
        (int256 ns, int256 nb, int256 realized) = PositionMath.applyTrade(sz, b, dl, price);
        assertEq(ns, sz + dl);
        assertEq(realized, 0);
        int256 exactNum = dl * int256(price); // exact added basis * 1e18
        assertGe((nb - b) * 1e18, exactNum, "added basis >= exact");
        assertLt((nb - b) * 1e18, exactNum + 1e18, "within a wei");
    }

    /// @dev Reducing or closing: the realized PnL never exceeds its exact rational value
    /// (closed * price - basis * closed / size), is within 2 wei of it, and the basis is split
    /// without loss (closed part + remaining part == old basis).
    function testFuzz_applyTrade_reduceRealizedAgainstHolder(uint256 size, bool long_, int256 basisSeed, uint256 closed, uint256 price)
        public
        pure
    {
        uint256 s = bound(size, 1, 1e24);
        uint256 c = bound(closed, 1, s);
        price = bound(price, 1e18, 1e24);
        int256 sz = long_ ? int256(s) : -int256(s);
        // entry price in [1e18, 1e24]: basis = size * entry / 1e18, with a random residue
        int256 entry = int256(bound(basisSeed, 1e18, 1e24));
        int256 b = (sz * entry) / 1e18 + (basisSeed % 7);
        _checkReduce(sz, b, long_ ? -int256(c) : int256(c), price);
    }

    function _checkReduce(int256 sz, int256 b, int256 dl, uint256 price) private pure {
        (int256 ns, int256 nb, int256 realized) = PositionMath.applyTrade(sz, b, dl, price);
        assertEq(ns, sz + dl);
        int256 c = int256(dl.abs());
        int256 s = int256(sz.abs());
        int256 closedSigned = sz > 0 ? c : -c;
        // exact realized * 1e18 * s = closedSigned * price * s - b * c * 1e18
        int256 exactNum = closedSigned * int256(price) * s - b * c * 1e18;
        assertLe(realized * 1e18 * s, exactNum, "realized <= exact");
        assertGt((realized + 2) * 1e18 * s, exactNum, "within 2 wei");
        // the basis is split without loss between the realized part and the remaining position
        int256 closedBasis = b - nb;
        assertEq(realized, PositionMath.value(closedSigned, price) - closedBasis);
        if (c == s) assertEq(nb, 0, "a full close leaves no basis");
    }

    /// @dev Flip: the closed part realizes as a close; the new side's basis rounds against it.
    function testFuzz_applyTrade_flip(uint256 size, bool long_, uint256 extra, uint256 entry, uint256 price) public pure {
        uint256 s = bound(size, 1, 1e24);
        uint256 e = bound(extra, 1, 1e24);
        entry = bound(entry, 1e18, 1e24);
        price = bound(price, 1e18, 1e24);
        int256 sz = long_ ? int256(s) : -int256(s);
        int256 b = (sz * int256(entry)).divCeil(1e18);
        int256 dl = long_ ? -int256(s + e) : int256(s + e);
        (int256 ns, int256 nb, int256 realized) = PositionMath.applyTrade(sz, b, dl, price);
        assertEq(ns, long_ ? -int256(e) : int256(e));
        // closed all of it: realized = value(size) - basis
        assertEq(realized, PositionMath.value(sz, price) - b);
        // new basis >= exact (rounded up: a new short is credited less, a new long pays more)
        assertGe(nb * 1e18, ns * int256(price));
        assertLt(nb * 1e18, ns * int256(price) + 1e18);
    }

    /// @dev Funding owed rounds up: a payer pays at least the exact amount, a receiver receives at
    /// most the exact amount.
    function testFuzz_fundingOwed_roundsUp(int256 size, int256 idxNow, int256 idxEntry) public pure {
        size = bound(size, -1e30, 1e30);
        idxNow = bound(idxNow, -1e30, 1e30);
        idxEntry = bound(idxEntry, -1e30, 1e30);
        int256 owed = PositionMath.fundingOwed(size, idxNow, idxEntry);
        int256 exact = size * (idxNow - idxEntry);
        assertGe(owed * 1e18, exact);
        assertLt((owed - 1) * 1e18, exact);
    }

    /// @dev The funding index truncates toward zero (as documented): |delta| <= exact, within 1 wei.
    function testFuzz_fundingIndexDelta_truncates(int256 rate, uint256 price, uint256 dt) public pure {
        rate = bound(rate, -0.05e18, 0.05e18);
        price = bound(price, 1e18, 1e25);
        dt = bound(dt, 0, 365 days);
        int256 d = PositionMath.fundingIndexDelta(rate, price, dt);
        int256 num = rate * int256(price) * int256(dt);
        int256 den = 1e18 * 3600;
        assertLe(d.abs() * uint256(den), num.abs());
        assertGt((d.abs() + 1) * uint256(den), num.abs());
        assertTrue(d == 0 || (d > 0) == (rate > 0));
    }

    /// @dev The liquidation size is at least the exact solution of
    /// E - k c = T (R - mmf c) (closing more, never less, than needed), capped at the position.
    function testFuzz_liquidationNotional_closesEnough(
        int256 equity,
        uint256 maint,
        uint256 ratio,
        uint256 mmf,
        uint256 cost,
        uint256 n
    ) public pure {
        maint = bound(maint, 1e18, 1e30);
        equity = bound(equity, -1e30, int256(maint));
        ratio = bound(ratio, 1e18, 3e18);
        mmf = bound(mmf, 0.001e18, 1e18);
        cost = bound(cost, 0, 0.3e18);
        n = bound(n, 1e18, 1e32);
        uint256 c = PositionMath.liquidationNotional(equity, maint, ratio, mmf, cost, n);
        assertLe(c, n);
        uint256 denom = mmf * ratio; // exact T * mmf, scaled 1e36
        if (denom <= cost * 1e18) {
            assertEq(c, n, "all when closing cannot restore");
            return;
        }
        if (c == n) return;
        // exact: c * (T * mmf - k) >= T * R - E   (all scaled by 1e36)
        int256 lhs = int256(c) * (int256(denom) - int256(cost * 1e18));
        int256 rhs = int256(maint * ratio) - equity * 1e18;
        assertGe(lhs, rhs * 1e18);
    }

    // ================================================================ ramp

    function testFuzz_ramp_rateBoundAndMonotone(uint64 from, uint64 to, uint64 act, uint64 rate, uint256 t1, uint256 t2)
        public
        pure
    {
        from = uint64(bound(from, 0, 1e18));
        to = uint64(bound(to, from, 1e18));
        act = uint64(bound(act, 0, 1e10));
        rate = uint64(bound(rate, C.MMF_RAMP_MIN, C.MMF_RAMP_MAX));
        t1 = bound(t1, 0, 2e10);
        t2 = bound(t2, t1, 2e10);
        Ramp memory r = Ramp(from, to, act, rate);
        uint256 v1 = RampLib.valueAt(r, t1);
        uint256 v2 = RampLib.valueAt(r, t2);
        assertGe(v1, from);
        assertLe(v2, to);
        assertLe(v1, v2, "monotone");
        assertLe(v2 - v1, uint256(rate) * (t2 - t1), "rate bound");
        if (t1 <= act) assertEq(v1, from, "flat before activation");
    }

    /// @dev The quote's raw-word reader (`valueAtWord`, one SLOAD, unchecked arithmetic) equals
    /// `valueAt` on the same ramp, whatever its fields and the time (any uint64 fields, any
    /// timestamp below 2^64).
    function testFuzz_ramp_valueAtWordEqualsValueAt(uint64 from, uint64 to, uint64 act, uint64 rate, uint64 t)
        public
        pure
    {
        Ramp memory r = Ramp(from, to, act, rate);
        uint256 w = uint256(from) | (uint256(to) << 64) | (uint256(act) << 128) | (uint256(rate) << 192);
        assertEq(RampLib.valueAtWord(w, t), RampLib.valueAt(r, t));
    }
}
