// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {FixedPointMathLib} from "solady/utils/FixedPointMathLib.sol";
import {AttackBase} from "./AttackBase.sol";
import {FeedConfig, RiskParams} from "../../../interfaces/ILeverageController.sol";
import {Health} from "../../../interfaces/IMarginEngine.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {StaticLeverageController} from "../../../contracts/StaticLeverageController.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {ErrorsLib} from "../../../contracts/libraries/ErrorsLib.sol";

/// @title Thin-market manipulation (dYdX v3 YFI, November 2023)
/// @notice Threat: on a market with little depth, an attacker (spread over Sybil accounts) builds a
/// huge one-sided open interest, pushes the oracle price with spot buying so that the unrealized
/// profit becomes margin for more size, then the price collapses: the positions are liquidated
/// far below their bankruptcy price and the insurance fund eats the difference (dYdX: ~$9M).
///
/// Defences:
///  (D1) Slippage: IMF includes `slip = impact * notional / depth` of the position itself
///       (MarginMath.compute: `f.slipWad = slippage(p.impactWad, x.notionalUsdWad, x.depthUsdWad)`),
///       so the margin a position needs grows with the square of its size.
///  (D2) Crowding: IMF includes `crowdK * min(1, net OI imbalance * price / depth)` on the
///       over-represented side (MarginMath.crowding), priced on the post-trade book
///       (`_updateOpenInterest` before `controller.quote` in MarginEngine._trade, MarginEngine.sol:168-170).
///       It aggregates over every account, so Sybils cannot split it away.
///  (D3) A newly listed market starts with maintenance at its cap until the first poke
///       (LeverageController._list, Ramp at maxMmf), and a listing after bootstrap is timelocked.
///
/// Loss bound derived here (all amounts USD; d = depth, k = crowdK, i = impact, f = liqFee):
///  * Every account i opened (or last grew) when its equity E_i >= IMF_i * N_i, and IMF_i >= the
///    crowding add-on of the net imbalance after its trade (IMF is clamped at maxImf >= k, so this
///    holds even when clamped). The accounts of one side therefore paid at least
///        Cmin(N) = integral_0^N k * min(1, x / d) dx = k N^2 / (2d)            (N <= d)
///                                                    = k d / 2 + k (N - d)      (N >  d)
///    so with total equity E the side's net notional is at most Nmax(E) = Cmin^-1(E):
///        Nmax(E) = sqrt(2 E d / k)  if E <= k d / 2,  else  d + (E - k d / 2) / k.
///  * When the price then moves against the side by a fraction m and an account is closed in full
///    by liquidation at the new price, its shortfall is
///        badDebt_i <= max(0, N_i m + N_i' (f + min(1, i N_i' / d)) - E_i),  N_i' = N_i (1 - m),
///    i.e. loss <= N x (move - IMF) + liquidation costs, summed over accounts.
///  * Hence insurance-fund loss <= bad debt <= Nmax(E) * (m + f + i * Nmax(E) / d): it grows with
///    the square root of the attacker's capital times the depth, not linearly with a fixed
///    leverage (a static 20x market lets the same capital reach 20 E).
///  * LIMITATION (reported, not fixed: it is the crowding formula's): crowding is priced on the
///    net imbalance at the moment of an increase only. An attacker who first opens an offsetting
///    position (flash-loaned collateral, same transaction) opens his real side at zero crowding,
///    then closes the offset. The Nmax(E) bound then does not hold; what still holds is the
///    per-account bound above with IMF_i >= base + impact * N_i / d (slippage of the account's own
///    size), i.e. N <= E / base with enough Sybils. See
///    test_LIMITATION_flashOffsetBypassesCrowding_perAccountBoundStillHolds.
contract ThinMarketTest is AttackBase {
    using FixedPointMathLib for uint256;

    uint256 internal constant YFI = 1;
    uint256 internal constant YFI_PRICE = 5_000;
    uint256 internal constant DEPTH_USD = 300_000;
    uint256 internal constant N_SYBILS = 5;
    uint256 internal constant SYBIL_USDC = 20_000;
    uint256 internal constant PUMP_PRICE = 6_500; // +30 %
    uint256 internal constant DUMP_PRICE = 3_250; // -50 % from the top (m = 0.5)

    MockAggregator[5] internal yfi;
    address[] internal sybils;

    struct Outcome {
        uint256 notionalBeforePump;
        uint256 notionalAtTop;
        uint256 equityAtTop;
        uint256 badDebt;
        uint256 insuranceLoss;
        uint256 perAccountBound;
    }

    function setUp() public override {
        super.setUp();
        MockAggregator[5] memory f = newFeeds("YFI", int256(YFI_PRICE * 1e8), 1e8, int256(DEPTH_USD * 1e8));
        for (uint256 k; k < 5; ++k) {
            yfi[k] = f[k];
        }
        listTimelocked(YFI, f, defaultParams());
        for (uint256 i; i < N_SYBILS; ++i) {
            sybils.push(makeAddr(string.concat("sybil", vm.toString(i))));
        }
    }

    // ---------------------------------------------------------------- the model's terms

    /// @notice (D3) A market listed after bootstrap goes through the timelock and, until its first
    /// poke, allows at most 1 / (maxMmf + minBuffer) leverage.
    function test_listingIsTimelocked_andStartsAtMaintenanceCap() public {
        MockAggregator[5] memory f = newFeeds("THIN", 10e8, 1e8, 100_000e8);
        FeedConfig[5] memory cfg = feedConfigs(f);
        RiskParams memory p = defaultParams();
        vm.prank(admin);
        controller.proposeMarket(2, cfg, p);
        vm.expectPartialRevert(ErrorsLib.ChangeNotReady.selector);
        controller.executeMarket(2, cfg, p);
        vm.warp(block.timestamp + controller.paramDelaySec());
        for (uint256 k; k < 5; ++k) {
            refresh(f[k]);
        }
        controller.executeMarket(2, cfg, p);
        uint256 capLev = WAD * WAD / (uint256(p.maxMmfWad) + p.minBufferWad);
        assertLe(controller.maxLeverageWad(2, true), capLev, "capped until poked");
        assertLe(controller.maxLeverageWad(2, false), capLev);
        controller.poke(2);
        assertGt(controller.maxLeverageWad(2, true), capLev, "the poke loosens at once");
    }

    /// @notice (D1) On an empty book, IMF rises with the position's own size at least by
    /// impact * notional / depth.
    function test_imfRisesWithSize() public view {
        RiskParams memory p = controller.imfParams(YFI);
        uint256 price = controller.priceWad(YFI);
        uint256 imf0 = imfOf(YFI, true, 0);
        uint256[5] memory usdSizes = [uint256(10_000), 30_000, 100_000, 300_000, 1_000_000];
        uint256 prev = imf0;
        for (uint256 j; j < usdSizes.length; ++j) {
            uint256 n = usdSizes[j] * WAD;
            uint256 imf = imfOf(YFI, true, n.divWad(price));
            assertGt(imf, prev, "strictly increasing in size");
            uint256 slip = uint256(p.impactWad) * n / (DEPTH_USD * WAD);
            if (imf < p.maxImfWad) assertGe(imf, imf0 + slip, "at least the slippage of the size");
            prev = imf;
        }
    }

    /// @notice (D2) The crowding add-on is exactly crowdK * min(1, net imbalance notional / depth)
    /// on the over-represented side, zero on the other, netted by the other side's OI, capped at crowdK.
    function test_crowdingTracksNetImbalance() public {
        uint256 k = controller.imfParams(YFI).crowdWad;
        uint256 tiny = 1e12;
        uint256 baseL = imfOf(YFI, true, tiny);
        uint256 baseS = imfOf(YFI, false, tiny);

        fund(sybils[0], 50_000 * USDC);
        trade(sybils[0], YFI, 20e18, 0); // 20 YFI = $100k long: a third of the depth
        assertApproxEqAbs(imfOf(YFI, true, tiny) - baseL, _crowd(k, 20e18), 2, "longs pay k * 1/3");
        assertEq(imfOf(YFI, false, tiny), baseS, "the side that offsets the vault pays nothing");

        fund(bob, 50_000 * USDC);
        trade(bob, YFI, -10e18, 0); // shorts net half of it
        assertApproxEqAbs(imfOf(YFI, true, tiny) - baseL, _crowd(k, 10e18), 2, "net imbalance only");

        fund(sybils[1], 200_000 * USDC);
        trade(sybils[1], YFI, 100e18, 0); // imbalance $550k > depth
        assertApproxEqAbs(imfOf(YFI, true, tiny) - baseL, k, 2, "capped at crowdK");
    }

    /// @notice (D1+D2) Sybils opening one after another at their maximum never pay less margin than
    /// the one before, and together reach no more than Nmax(E) of net notional.
    function test_sybilsCannotSplitAwayCrowding() public {
        uint256 prevLev = type(uint256).max;
        for (uint256 i; i < N_SYBILS; ++i) {
            fund(sybils[i], SYBIL_USDC * USDC);
            openMax(sybils[i], YFI, true);
            // Size per funded capital (every Sybil deposits the same): equity after costs would
            // move with the skew impact each one pays, the size it was allowed does not.
            uint256 lev = engine.health(sybils[i]).notionalUsdWad * WAD / (SYBIL_USDC * WAD);
            // Strictly less while the imbalance is below the depth, equal once crowding is capped.
            if (i == 1) assertLt(lev, prevLev, "the second Sybil gets less leverage");
            assertLe(lev, prevLev, "no later Sybil gets more leverage");
            prevLev = lev;
        }
        (uint256 n, uint256 e) = _sideTotals();
        assertLe(n, _nMax(e), "net notional <= Nmax(total equity)");
    }

    /// @notice Unrealized (pumped) profit is not withdrawable: withdraw is capped by REALIZED
    /// collateral (MarginEngine.sol:130) and by the live initial requirement (:137). Realizing it
    /// means closing against the depth, paying impact on the size.
    function test_pumpedProfitNotWithdrawable() public {
        fund(sybils[0], SYBIL_USDC * USDC);
        openMax(sybils[0], YFI, true);
        setMarketFeed(YFI, 0, int256(PUMP_PRICE * 1e8));
        int256 c = engine.collateralOf(sybils[0]);
        assertGt(engine.health(sybils[0]).equityUsdWad, c * 1e12, "in profit");
        vm.prank(sybils[0]);
        vm.expectPartialRevert(ErrorsLib.InsufficientCollateral.selector);
        engine.withdraw(uint256(c) + 1);
    }

    /// @notice LIMITATION, quantified (see the contract comment): a same-transaction offset with
    /// flash-loaned collateral lets the attacker's long open at zero crowding. What the test pins
    /// down: (1) the bypass gains size, (2) its cost is only fees and impact, (3) the bypassing
    /// account still met IMF >= base + own slippage at its open (the per-account bound that the
    /// insurance-loss bound needs), (4) afterwards the live IMF (with crowding) blocks any further
    /// increase or withdrawal, and the account is not liquidatable at once.
    function test_LIMITATION_flashOffsetBypassesCrowding_perAccountBoundStillHolds() public {
        address longAcct = sybils[0];
        address offset = sybils[1];
        fund(longAcct, 40_000 * USDC);
        uint256 nHonest = maxTradeSize(longAcct, YFI, true);
        uint256 baseImf = imfOf(YFI, true, 0); // empty book: no size, no crowding

        // "Flash loan": deposit, offset short, long at zero crowding, close the offset, withdraw.
        uint256 flash = 400_000 * USDC;
        fund(offset, flash);
        trade(offset, YFI, -int256(nHonest * 3), 0);
        uint256 nBypass = openMax(longAcct, YFI, true);
        close(offset, YFI);
        uint256 left = uint256(engine.collateralOf(offset));
        vm.prank(offset);
        engine.withdraw(left);
        uint256 offsetCost = flash - usd.balanceOf(offset);

        emit log_named_decimal_uint("honest max long (YFI)", nHonest, 18);
        emit log_named_decimal_uint("max long behind a flash offset (YFI)", nBypass, 18);
        emit log_named_decimal_uint("offset cost (USDC)", offsetCost, 6);
        assertGt(nBypass, nHonest * 12 / 10, "(1) the offset bypasses crowding");
        // (2) The offset's only cost is the fee and the impact of opening and closing it: crowding
        // is a margin requirement, not a charge, so it costs nothing but transient capital (and
        // splitting the offset over k accounts divides its impact by k).
        uint256 xn = (nHonest * 3).mulWadUp(controller.priceWad(YFI));
        uint256 oneWay = xn.mulWadUp(engine.tradingFeeWad()) + xn.mulWadUp(uint256(_impactParam()).mulDivUp(xn, DEPTH_USD * WAD));
        // (engine v2: the skew impact of opening the offset, i * xn^2 / (2d), is below the per-trade
        // bound i * xn^2 / d used here; its close shrinks the skew; plus two settlement fees)
        assertLe(offsetCost, 2 * oneWay / 1e12 + 2 * SETTLE_FEE + 4, "(2) the offset costs only fees and impact");
        Health memory h = engine.health(longAcct);
        uint256 slip = uint256(_impactParam()) * h.notionalUsdWad / (DEPTH_USD * WAD);
        uint256 floorImf = baseImf + slip;
        if (floorImf > controller.imfParams(YFI).maxImfWad) floorImf = controller.imfParams(YFI).maxImfWad;
        assertGe(uint256(h.equityUsdWad), h.notionalUsdWad * floorImf / WAD, "(3) per-account bound holds");
        assertEq(maxTradeSize(longAcct, YFI, true), 0, "(4) no further increase at live crowding");
        vm.prank(longAcct);
        vm.expectPartialRevert(ErrorsLib.InitialMarginViolated.selector);
        engine.withdraw(1);
        assertFalse(engine.isLiquidatable(longAcct));
    }

    // ---------------------------------------------------------------- the attack, end to end

    /// @notice The full YFI-style attack on the dynamic model, then on a static 20x market with the
    /// same feeds, capital and price path. Asserts the derived bounds on the dynamic one and that
    /// the dynamic loss is a fraction of the static one. Fails without D1/D2 (the static run is
    /// what the dynamic engine degenerates to without them: its loss breaks the bound).
    function test_yfiStylePumpAndDump_insuranceLossBounded() public {
        RiskParams memory p = controller.imfParams(YFI);
        uint256 snap = vm.snapshotState();
        Outcome memory dyn = _attack();

        uint256 m = WAD - DUMP_PRICE * WAD / PUMP_PRICE;
        assertLe(dyn.notionalBeforePump, _nMax(N_SYBILS * SYBIL_USDC * WAD), "size bounded by capital");
        assertLe(dyn.notionalAtTop, _nMax(dyn.equityAtTop), "size bounded by equity incl. pumped PnL");
        assertLe(dyn.badDebt, dyn.perAccountBound, "bad debt <= sum max(0, N m + costs - E)");
        uint256 nMax = _nMax(dyn.equityAtTop);
        uint256 headline =
            nMax.mulWad(m + p.liqFeeWad + uint256(p.impactWad).mulDiv(nMax, DEPTH_USD * WAD)) / 1e12 + 1;
        assertLe(dyn.badDebt, headline, "bad debt <= Nmax (m + f + i Nmax / d)");
        assertLe(dyn.insuranceLoss, dyn.badDebt, "insurance loss <= bad debt");

        vm.revertToState(snap);
        _useStaticEngine();
        Outcome memory st = _attack();
        emit log_named_decimal_uint("dynamic: net notional at top (USD)", dyn.notionalAtTop, 18);
        emit log_named_decimal_uint("static:  net notional at top (USD)", st.notionalAtTop, 18);
        emit log_named_decimal_uint("dynamic: bad debt (USDC)", dyn.badDebt, 6);
        emit log_named_decimal_uint("static:  bad debt (USDC)", st.badDebt, 6);
        emit log_named_decimal_uint("dynamic: derived bound (USDC)", headline, 6);
        assertGt(st.badDebt, headline, "a fixed 20x market breaks the bound");
        assertLt(dyn.badDebt * 4, st.badDebt, "dynamic loss < 1/4 of the static one");
    }

    /// @dev Sybils open at max, the price is pumped, they grow at max with the pumped PnL, the price
    /// dumps, everything is liquidated. Uses whatever `engine` is current.
    function _attack() internal returns (Outcome memory o) {
        for (uint256 i; i < N_SYBILS; ++i) {
            fund(sybils[i], SYBIL_USDC * USDC);
            openMax(sybils[i], YFI, true);
        }
        (o.notionalBeforePump,) = _sideTotals();

        setMarketFeed(YFI, 0, int256(PUMP_PRICE * 1e8));
        for (uint256 i; i < N_SYBILS; ++i) {
            uint256 s = maxTradeSize(sybils[i], YFI, true);
            if (s > 0) {
                trade(sybils[i], YFI, int256(s), 0);
            }
        }
        (o.notionalAtTop, o.equityAtTop) = _sideTotals();

        // Per-account bound, from each account's equity and notional at the top.
        uint256 m = WAD - DUMP_PRICE * WAD / PUMP_PRICE;
        uint256 f = engine.controller().quote(YFI, true, 0).liqFeeWad;
        uint256 impact = _impactParam();
        for (uint256 i; i < N_SYBILS; ++i) {
            Health memory h = engine.health(sybils[i]);
            uint256 n1 = h.notionalUsdWad;
            uint256 n2 = n1.mulWad(WAD - m);
            uint256 slip = impact.mulDivUp(n2, DEPTH_USD * WAD);
            if (slip > WAD) slip = WAD;
            uint256 lossPlusCosts = n1.mulWadUp(m) + n2.mulWadUp(f + slip);
            if (lossPlusCosts > uint256(h.equityUsdWad)) {
                o.perAccountBound += (lossPlusCosts - uint256(h.equityUsdWad)) / 1e12 + 3; // + rounding, tokens
            }
        }

        uint256 bad0 = engine.badDebtTotal();
        uint256 ins0 = engine.insuranceFund();
        setMarketFeed(YFI, 0, int256(DUMP_PRICE * 1e8));
        for (uint256 i; i < N_SYBILS; ++i) {
            for (uint256 j; j < 10 && engine.position(sybils[i], YFI).sizeWad != 0; ++j) {
                if (!engine.isLiquidatable(sybils[i])) break;
                flagAndLiquidate(liquidator, sybils[i], YFI);
            }
            assertFalse(engine.isLiquidatable(sybils[i]), "cleared");
        }
        o.badDebt = engine.badDebtTotal() - bad0;
        uint256 ins1 = engine.insuranceFund();
        o.insuranceLoss = ins0 > ins1 ? ins0 - ins1 : 0;
    }

    function _sideTotals() internal view returns (uint256 n, uint256 e) {
        for (uint256 i; i < sybils.length; ++i) {
            Health memory h = engine.health(sybils[i]);
            n += h.notionalUsdWad;
            if (h.equityUsdWad > 0) e += uint256(h.equityUsdWad);
        }
    }

    /// @dev Nmax(E) = Cmin^-1(E): the largest one-sided net notional total equity E can carry
    /// under the crowding add-on alone (see the contract comment).
    function _nMax(uint256 e) internal view returns (uint256) {
        uint256 k = controller.imfParams(YFI).crowdWad;
        uint256 d = DEPTH_USD * WAD;
        uint256 half = k.mulWad(d) / 2;
        if (e <= half) return (2 * e * d / k * WAD).sqrt() + 1;
        return d + (e - half).divWadUp(k);
    }

    /// @dev Expected crowding add-on for a long imbalance of `sizeWad` YFI at the current price.
    function _crowd(uint256 k, uint256 sizeWad) internal view returns (uint256) {
        uint256 usdImb = sizeWad.mulWadUp(controller.priceWad(YFI));
        uint256 ratio = WAD.mulDivUp(usdImb, DEPTH_USD * WAD);
        if (ratio > WAD) ratio = WAD;
        return k.mulWadUp(ratio);
    }

    function _impactParam() internal view returns (uint256) {
        return controller.imfParams(YFI).impactWad;
    }

    /// @dev The baseline: same feeds, a fixed 5% initial / 3% maintenance (20x), same impact and
    /// liquidation fee, a fresh engine with the same vault and insurance fund.
    function _useStaticEngine() internal {
        vm.startPrank(admin);
        StaticLeverageController sc = new StaticLeverageController(admin);
        MarginEngine se = new MarginEngine(admin, usd, sc, defaultEngineConfig());
        sc.bindEngine(address(se));
        sc.listMarket(
            YFI,
            feedConfigs(yfi),
            StaticLeverageController.StaticParams({imfWad: 0.05e18, mmfWad: 0.03e18, impactWad: 0.01e18, liqFeeWad: 0.005e18})
        );
        sc.sealBootstrap();
        vm.stopPrank();
        usd.mint(address(this), 51_000_000 * USDC);
        usd.approve(address(se), type(uint256).max);
        se.fundVault(50_000_000 * USDC);
        se.fundInsurance(1_000_000 * USDC);
        engine = se;
    }
}
