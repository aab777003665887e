"""The vectorized mirror (ballast.sim) against the exact integer mirror and the integer model."""

from __future__ import annotations

import numpy as np
import pytest

from ballast._typing import WAD
from ballast.errors import ValidationError
from ballast.mirror import AccountMirror, EngineMirror, Feed, MarketMirror, PositionMirror
from ballast.config import default_params
from ballast.model import Ramp, maintenance_base, penalty_fraction, var_move
from ballast.sim import (
    Book,
    ExactBook,
    classify,
    health,
    maintenance_base_path,
    penalty_share,
    random_book,
    simulate,
    simulate_parallel,
)

NOW = 1_700_000_000
TOKEN_SCALE = 10**12  # 6-decimal collateral token
PARAMS = default_params()


def _mirror(price_wad: int, mmf_long_wad: int, mmf_short_wad: int) -> EngineMirror:
    """An engine mirror with one dynamic market whose ramps sit at the given maintenance bases."""
    dec = 8
    feeds = {
        "price": Feed(price_wad // 10**10, dec, NOW, 3_600, WAD, 10**25),
        "volatility": Feed(50_000_000, dec, NOW, 3_600, 10**16, 10 * WAD),
        "funding": Feed(0, dec, NOW, 3_600, -5 * 10**16, 5 * 10**16),
        "depth": Feed(5 * 10**15, dec, NOW, 3_600, 10**21, 10**30),
        "skew": Feed(0, dec, NOW, 3_600, -WAD, WAD),
    }
    m = MarketMirror(0, feeds, "dynamic", params=PARAMS,
                     ramps=[Ramp(mmf_long_wad, mmf_long_wad, 0, 1), Ramp(mmf_short_wad, mmf_short_wad, 0, 1)])
    mir = EngineMirror(5 * 10**14, 5 * 10**17, 5 * 10**17, 125 * 10**16, TOKEN_SCALE)
    mir.markets[0] = m
    return mir


def _exact_book(rng: np.random.Generator, n: int, price_wad: int, mmf_long: int, mmf_short: int) -> ExactBook:
    """Random positions, a third of them placed within a hair of the maintenance line."""
    size, basis, coll, slip = [], [], [], []
    for i in range(n):
        s = int(rng.uniform(0.01, 20.0) * WAD) * (1 if rng.random() < 0.6 else -1)
        entry = int(price_wad * rng.uniform(0.8, 1.2))
        b = -((-s * entry) // WAD)
        sl = int(rng.uniform(0.0, 0.02) * WAD)
        c = int(rng.uniform(100.0, 200_000.0) * 10**6)
        if i % 3 == 0:  # near the line: collateral that leaves equity ~ maintenance (+- 1e-7)
            eb = ExactBook([s], [b], [0], [sl], TOKEN_SCALE)
            eq0, maint = eb.health(0, price_wad, mmf_long if s > 0 else mmf_short, PARAMS.max_mmf_wad)
            c = max(0, (maint - eq0) // TOKEN_SCALE + int(rng.integers(-3, 4)) * max(1, maint // TOKEN_SCALE // 10**7))
        size.append(s)
        basis.append(b)
        coll.append(c)
        slip.append(sl)
    return ExactBook(size, basis, coll, slip, TOKEN_SCALE)


def test_maintenance_base_path_matches_the_integer_model() -> None:
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.05, 4.0, 300)
    skew = rng.uniform(-0.5, 0.5, 300)
    for is_long in (True, False):
        got = maintenance_base_path(PARAMS, sigma, skew, is_long)
        want = [maintenance_base(PARAMS, var_move(PARAMS, int(s * WAD), int(k * WAD), is_long)) / WAD
                for s, k in zip(sigma, skew)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", [3, 4])
def test_liquidatable_mask_agrees_with_the_integer_mirror(seed: int) -> None:
    rng = np.random.default_rng(seed)
    price_wad = int(rng.uniform(20_000, 80_000)) * 10**18 + int(rng.integers(0, 10**8)) * 10**10
    mmf_l = int(rng.uniform(0.005, 0.05) * WAD)
    mmf_s = int(rng.uniform(0.005, 0.05) * WAD)
    exact = _exact_book(rng, 240, price_wad, mmf_l, mmf_s)
    mir = _mirror(price_wad, mmf_l, mmf_s)
    want = []
    for i in range(len(exact.size_wad)):
        a = f"0x{i + 1:040x}"
        mir.accounts[a] = AccountMirror(exact.collateral_tokens[i], {0: PositionMirror(exact.size_wad[i],
                                                                                      exact.basis_wad[i], 0,
                                                                                      exact.slip_wad[i])})
        want.append(mir.health(a, NOW).liquidatable)
    book = exact.to_float()
    args = (book, price_wad / WAD, mmf_l / WAD, mmf_s / WAD, PARAMS.max_mmf_wad / WAD)
    assert 20 < sum(want) < 220  # both outcomes are represented
    # Floats alone decide like the integers on this sample (margins of 1e-7 are far above rounding) ...
    assert health(*args).liquidatable.tolist() == want
    # ... and the exact path agrees by construction, resolving the band in integers.
    h = classify(*args, exact=exact, price_wad=price_wad, mmf_long_wad=mmf_l, mmf_short_wad=mmf_s,
                 max_mmf_wad=PARAMS.max_mmf_wad)
    assert h.liquidatable.tolist() == want


def test_exact_ties_are_resolved_in_integers() -> None:
    """Equity equal to maintenance to the wei is healthy, one wei less is liquidatable: below float
    resolution, so ``classify`` must settle them with the integer formulas."""
    price_wad = 43_217_123_456_789_0 * 10**10  # a feed with 8 decimals: a multiple of 1e10
    mmf = 17_345_678_901_234_567
    sizes = [3 * WAD + 123_456_789, -(7 * WAD + 987_654_321), WAD // 3]
    size, basis, coll, slip = [], [], [], []
    for s in sizes:
        for off in (0, 1):  # basis + off: equity = maintenance - off
            eb = ExactBook([s], [0], [10**10], [12_345_678_901_234], TOKEN_SCALE)
            eq0, maint = eb.health(0, price_wad, mmf, PARAMS.max_mmf_wad)
            size.append(s)
            basis.append(eq0 - maint + off)
            coll.append(10**10)
            slip.append(12_345_678_901_234)
    exact = ExactBook(size, basis, coll, slip, TOKEN_SCALE)
    mir = _mirror(price_wad, mmf, mmf)
    want = []
    for i in range(len(size)):
        a = f"0x{i + 1:040x}"
        mir.accounts[a] = AccountMirror(coll[i], {0: PositionMirror(size[i], basis[i], 0, slip[i])})
        want.append(mir.health(a, NOW).liquidatable)
    assert want == [False, True] * len(sizes)
    h = classify(exact.to_float(), price_wad / WAD, mmf / WAD, mmf / WAD, PARAMS.max_mmf_wad / WAD, exact=exact,
                 price_wad=price_wad, mmf_long_wad=mmf, mmf_short_wad=mmf, max_mmf_wad=PARAMS.max_mmf_wad)
    assert h.liquidatable.tolist() == want
    assert h.resolved_exactly == len(size)


def test_simulate_liquidates_in_full_with_penalty_and_bad_debt() -> None:
    # A 10x long, a 10x short and a 25x long; the price falls 5%, then gaps down 10%.
    book = Book(size=np.array([2.0, -2.0, 10.0]), basis=np.array([100.0, -100.0, 500.0]),
                collateral=np.array([10.0, 10.0, 20.0]), slip=np.zeros(3))
    price = np.array([50.0, 49.0, 47.5, 42.75])
    mmf = np.full(4, 0.03)
    r = simulate(book, price, mmf, mmf, max_mmf=0.4, liq_fee=0.005)
    # 25x long: equity 20 >= 15 at 50; at 49 equity 10 < maintenance 14.7 -> closed at step 1:
    # realized -10, penalty 0.005 * 490 = 2.45 -> collateral 7.55, no bad debt.
    # 10x long: equity 5 >= 2.85 at 47.5; at 42.75 equity -4.5 < 2.565 -> closed at step 3:
    # realized -14.5, penalty 0.4275 -> collateral -4.9275: bad debt 4.9275.
    assert r.liquidations.tolist() == [0, 1, 0, 1]
    assert r.liquidated_at.tolist() == [3, -1, 1]
    assert r.bad_debt.tolist() == pytest.approx([0.0, 0.0, 0.0, 4.9275])
    assert r.penalties.sum() == pytest.approx(2.45 + 0.4275)
    assert r.liquidated_notional.tolist() == pytest.approx([0.0, 490.0, 0.0, 85.5])
    assert r.book.collateral.tolist() == pytest.approx([0.0, 10.0, 7.55])
    assert r.book.size.tolist() == [0.0, -2.0, 0.0]
    # Equity at the last step, before its liquidation: short 10 + 100 - 85.5, closed 25x long 7.55,
    # 10x long -4.5.
    assert r.equity_total[-1] == pytest.approx(24.5 + 7.55 - 4.5)
    assert book.size.tolist() == [2.0, -2.0, 10.0]  # input untouched


def test_simulate_matches_health_step_by_step_and_is_chunk_independent() -> None:
    rng = np.random.default_rng(7)
    book = random_book(3_000, 50_000.0, 0.04, seed=rng)
    price = 50_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 40)))
    ml = maintenance_base_path(PARAMS, np.full(40, 0.6), 0.0, True)
    ms = maintenance_base_path(PARAMS, np.full(40, 0.6), 0.0, False)
    kw = {"max_mmf": 0.4, "liq_fee": 0.005}
    a = simulate(book, price, ml, ms, **kw)
    b = simulate(book, price, ml, ms, chunk=97, **kw)
    assert a.liquidations.tolist() == b.liquidations.tolist()
    np.testing.assert_allclose(a.bad_debt, b.bad_debt, rtol=1e-12, atol=1e-9)
    # The first step is exactly the one-step health mask.
    h = health(book, float(price[0]), float(ml[0]), float(ms[0]), 0.4)
    assert a.liquidations[0] == int(h.liquidatable.sum())
    assert a.maintenance_total[0] == pytest.approx(float(h.maintenance.sum()), rel=1e-12)
    assert a.liquidations.sum() > 0


def test_parallel_equals_serial() -> None:
    rng = np.random.default_rng(11)
    book = random_book(70_000, 50_000.0, 0.04, seed=rng)
    price = 50_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 12)))
    m = np.full(12, 0.02)
    kw = {"max_mmf": 0.4, "liq_fee": 0.005}
    s = simulate(book, price, m, m, **kw)
    p = simulate_parallel(book, price, m, m, workers=2, **kw)
    assert p.accounts == s.accounts and p.liquidations.tolist() == s.liquidations.tolist()
    np.testing.assert_allclose(p.bad_debt, s.bad_debt, rtol=1e-9)
    assert sorted(p.liquidated_at.tolist()) == sorted(s.liquidated_at.tolist())


def test_inputs_are_validated() -> None:
    with pytest.raises(ValidationError):
        Book(np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(3))
    book = Book(np.ones(2), np.ones(2), np.ones(2), np.zeros(2))
    with pytest.raises(ValidationError):
        simulate(book, np.array([1.0, -1.0]), np.zeros(2), np.zeros(2), max_mmf=0.4, liq_fee=0.0)
    with pytest.raises(ValidationError):
        simulate(book, np.ones(3), np.zeros(2), np.zeros(3), max_mmf=0.4, liq_fee=0.0)


# --------------------------------------------------------------------------- depth-scaled penalty (issue 12)


def test_penalty_share_is_the_engines_rule() -> None:
    eq = np.array([99.0, 98.0, 90.0, 80.0, 50.0, 0.0, -5.0, 120.0])
    maint = np.full(eq.size, 100.0)
    share = penalty_share(eq, maint, 0.25, 0.2)
    # 1% -> 25% + 75% x 0.05; 2% -> 32.5%; 10% -> 62.5%; 20% and beyond, or equity <= 0 -> 100%;
    # not under maintenance -> the floor
    np.testing.assert_allclose(share, [0.2875, 0.325, 0.625, 1.0, 1.0, 1.0, 1.0, 0.25])
    np.testing.assert_array_equal(penalty_share(eq, maint, 1.0, 0.2), np.ones(eq.size))  # floor 100%: today's
    np.testing.assert_array_equal(penalty_share(np.array([-1.0]), np.array([0.0]), 0.25, 0.2), [1.0])
    # the float form of the integer rule the engine and the mirror apply
    rng = np.random.default_rng(3)
    for _ in range(500):
        r = float(rng.uniform(1.0, 1e6))
        e = float(r * rng.uniform(-0.5, 1.1))
        fl, fd = float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.01, 1.0))
        want = penalty_fraction(5 * 10**15, int(e * WAD), int(r * WAD), int(fl * WAD), int(fd * WAD)) / WAD
        got = 0.005 * float(penalty_share(np.array([e]), np.array([r]), fl, fd)[0])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_simulate_charges_the_depth_scaled_penalty() -> None:
    # Two longs of 2 at 50 (maintenance 3%); at 46 (maintenance 2.76) the first has equity 2.6,
    # 5.8% under maintenance (share 25% + 75% x 0.058 / 0.2), the second -0.5 (the full fee).
    book = Book(size=np.array([2.0, 2.0]), basis=np.array([100.0, 100.0]),
                collateral=np.array([10.6, 7.5]), slip=np.zeros(2))
    price = np.array([50.0, 46.0])
    mmf = np.full(2, 0.03)
    full = simulate(book, price, mmf, mmf, max_mmf=0.4, liq_fee=0.005)
    scaled = simulate(book, price, mmf, mmf, max_mmf=0.4, liq_fee=0.005, liq_penalty_floor=0.25,
                      liq_penalty_full_depth=0.2)
    ntl = 92.0
    d0 = (2.76 - 2.6) / 2.76
    assert full.penalties.sum() == pytest.approx(2 * ntl * 0.005)
    assert scaled.penalties.sum() == pytest.approx(ntl * 0.005 * (0.25 + 0.75 * d0 / 0.2) + ntl * 0.005)
    assert scaled.book.collateral[0] > full.book.collateral[0]  # the shallow account keeps more
    assert scaled.bad_debt.sum() == pytest.approx(full.bad_debt.sum())  # the underwater one pays the full fee
