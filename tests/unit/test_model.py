"""Tests for ballast.model: integer model vs float model, monotonicity, floors and caps, parameter
validation, the maintenance ramp and position arithmetic (rounding against the user)."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ballast._typing import WAD
from ballast.config import default_params
from ballast.errors import ValidationError
from ballast.model import (
    HARD_BOUNDS,
    YEAR_SEC,
    Ramp,
    RiskInputs,
    RiskParams,
    apply_trade,
    compute,
    compute_float,
    funding_owed,
    notional,
    position_maintenance,
    required_initial,
    sqrt_horizon_wad,
    validate_params,
    value,
)

PROPS = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TERMS = ("var_move", "mmf_base", "slip", "crowd", "funding", "imf")
FIELD_OF = {"var_move": "var_move_wad", "mmf_base": "mmf_base_wad", "slip": "slip_wad", "crowd": "crowd_wad",
            "funding": "funding_wad", "imf": "imf_wad"}


# --------------------------------------------------------------------------- generators


def _consistent(p: RiskParams) -> RiskParams:
    """Repair the cross-field constraints of ``validate_params`` (keeping each field in bounds)."""
    min_imf, max_imf = sorted((p.min_imf_wad, p.max_imf_wad))
    min_mmf, max_mmf = sorted((p.min_mmf_wad, p.max_mmf_wad))
    buf = p.min_buffer_wad
    max_imf = max(max_imf, min(WAD, max_mmf + buf))
    max_mmf = min(max_mmf, max_imf - buf)
    min_mmf = min(min_mmf, max_mmf)
    min_imf = min(max(min_imf, min_mmf + buf), max_imf)
    min_mmf = min(min_mmf, min_imf - buf)
    return validate_params(replace(p, min_imf_wad=min_imf, max_imf_wad=max_imf, min_mmf_wad=min_mmf,
                                   max_mmf_wad=max_mmf))


def random_params(rng: np.random.Generator) -> RiskParams:
    """Valid parameters, every field drawn inside its hard bounds. ``funding_sens`` is kept <= 100
    (shipped: 20) so the float model's rounding of ``rate - threshold`` stays below the
    agreement tolerance (see test_float_model_agrees_with_integer_model)."""
    kw = {}
    for name, (lo, hi) in HARD_BOUNDS.items():
        if name == "funding_sens_wad":
            hi = 100 * WAD
        kw[name] = int(lo + (hi - lo) * rng.random()) if name.endswith("_wad") else int(rng.integers(lo, hi + 1))
    return _consistent(RiskParams(**kw))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def random_inputs(rng: np.random.Generator) -> RiskInputs:
    price = _log_uniform(rng, 1.0, 1e6)
    oi_side = _log_uniform(rng, 1e-3, 1e5) if rng.random() < 0.8 else 0.0
    oi_other = _log_uniform(rng, 1e-3, 1e5) if rng.random() < 0.8 else 0.0
    return RiskInputs(
        sigma_wad=int(_log_uniform(rng, 0.01, 10.0) * WAD),
        skew_wad=int(rng.uniform(-1.0, 1.0) * WAD),
        depth_usd_wad=int(_log_uniform(rng, 1e3, 1e12) * WAD),
        funding_rate_wad=int(rng.uniform(-0.05, 0.05) * WAD),
        oi_side_wad=int(oi_side * WAD),
        oi_other_wad=int(oi_other * WAD),
        notional_usd_wad=int(_log_uniform(rng, 1.0, 1e9) * WAD) if rng.random() < 0.9 else 0,
        price_wad=int(price * WAD),
        is_long=bool(rng.random() < 0.5),
    )


# --------------------------------------------------------------------------- float vs integer

REL_TOL = 1e-12
"""Agreement tolerance of the float model with the integer model (relative).

Why 1e-12 holds and where: the integer model rounds every multiplication up by at most 1 wei, and a
term goes through at most about a dozen of them (z x sigma x sqrt(h) x tail, then buffer x VaR),
so its absolute error is below ~1.1e-17 (11 wei); ``sqrt_horizon_wad`` is rounded up by 1 wei on
a value >= 1.4e-3, a relative 7e-16. The float model is within a few tens of ulps (~5e-15
relative), except for ``payer - threshold`` in the funding term, which cancels: its absolute error
is ~8e-18, i.e. relative 8e-18 / (payer - threshold).

So both models agree within 1e-12 relative where a term is >= TINY = 1e-4 (0.01 % of notional;
11 wei is then 1.1e-13 relative, 10x margin) and, for the funding term, where payer - threshold
>= 1e-4 (8e-14 relative). Below TINY, 11 wei is no longer negligible against the value: there the
check is absolute (ABS_TOL). Observed on 8,000 random cases: worst relative 1.1e-14 (not tiny),
worst absolute 1.8e-18 (tiny terms) and 1.1e-17 (ill-conditioned funding)."""
TINY = 1e-4
ABS_TOL = 1e-15
"""Absolute agreement of every term, including tiny ones (on top of REL_TOL x value): 11 wei of
integer rounding plus the funding term's cancellation (8e-18 x funding_sens <= 100) is < 1e-15."""


def _funding_well_conditioned(p: RiskParams, x: RiskInputs) -> bool:
    payer = x.funding_rate_wad if x.is_long else -x.funding_rate_wad
    return payer <= p.funding_threshold_wad or payer - p.funding_threshold_wad >= TINY * WAD


def test_float_model_agrees_with_integer_model() -> None:
    rng = np.random.default_rng(20240611)
    compared = {t: 0 for t in TERMS}
    cases = 2000
    for i in range(cases):
        p = default_params() if i % 4 == 0 else random_params(rng)
        x = random_inputs(rng)
        exact = compute(p, x)
        approx = compute_float(p, x)
        for term in TERMS:
            iv = getattr(exact, FIELD_OF[term])
            fv = approx[term]
            if iv == 0 and fv == 0.0:
                continue  # exactly 0 in both (no crowding, funding below threshold...)
            ref = iv / WAD
            ctx = f"case {i}, {term}: int {ref!r} float {fv!r}\n{p}\n{x}"
            assert abs(fv - ref) <= ABS_TOL + REL_TOL * abs(ref), ctx
            if term == "funding" and not _funding_well_conditioned(p, x):
                continue
            if ref < TINY or fv < TINY:
                continue
            assert fv == pytest.approx(ref, rel=REL_TOL, abs=0.0), ctx
            compared[term] += 1
    # The comparison is not vacuous: every term was compared on a good share of the cases.
    assert compared["imf"] == cases
    assert compared["var_move"] > 0.8 * cases and compared["mmf_base"] == cases
    assert min(compared["slip"], compared["crowd"], compared["funding"]) > 0.1 * cases, compared


def test_sqrt_horizon_is_rounded_up_exactly() -> None:
    for h in (60, 61, 3600, 7 * 86_400, 12_345):
        s = sqrt_horizon_wad(h)
        exact = Fraction(h * 10**36, YEAR_SEC)
        assert (s - 1) ** 2 < exact <= s**2


# --------------------------------------------------------------------------- hypothesis strategies


@st.composite
def params_st(draw: st.DrawFn) -> RiskParams:
    return random_params(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


wad_frac = st.integers(0, 10 * WAD)
sigma_st = st.integers(0, 10 * WAD)
adverse_st = st.integers(0, WAD)
notional_st = st.integers(0, 10**9 * WAD)
depth_st = st.integers(1, 10**12 * WAD)
oi_st = st.integers(0, 10**5 * WAD)
price_st = st.integers(WAD, 10**6 * WAD)
rate_st = st.integers(-5 * 10**16, 5 * 10**16)


@st.composite
def inputs_st(draw: st.DrawFn) -> RiskInputs:
    return RiskInputs(draw(sigma_st), draw(st.integers(-WAD, WAD)), draw(depth_st), draw(rate_st), draw(oi_st),
                      draw(oi_st), draw(notional_st), draw(price_st), draw(st.booleans()))


def _imf(p: RiskParams, x: RiskInputs) -> int:
    return compute(p, x).imf_wad


def _imf_float(p: RiskParams, x: RiskInputs) -> float:
    return compute_float(p, x)["imf"]


def _ordered(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


# --------------------------------------------------------------------------- monotonicity


@PROPS
@given(params_st(), inputs_st(), sigma_st, sigma_st)
def test_imf_monotone_in_sigma(p: RiskParams, x: RiskInputs, s1: int, s2: int) -> None:
    lo, hi = _ordered(s1, s2)
    assert _imf(p, replace(x, sigma_wad=lo)) <= _imf(p, replace(x, sigma_wad=hi))
    assert compute(p, replace(x, sigma_wad=lo)).var_move_wad <= compute(p, replace(x, sigma_wad=hi)).var_move_wad
    assert _imf_float(p, replace(x, sigma_wad=lo)) <= _imf_float(p, replace(x, sigma_wad=hi))


@PROPS
@given(params_st(), inputs_st(), adverse_st, adverse_st)
def test_imf_monotone_in_adverse_skew(p: RiskParams, x: RiskInputs, a1: int, a2: int) -> None:
    lo, hi = _ordered(a1, a2)
    sign = -1 if x.is_long else 1  # puts bid (negative skew) hurt longs, calls bid hurt shorts
    assert _imf(p, replace(x, skew_wad=sign * lo)) <= _imf(p, replace(x, skew_wad=sign * hi))
    assert _imf_float(p, replace(x, skew_wad=sign * lo)) <= _imf_float(p, replace(x, skew_wad=sign * hi))
    # Favourable skew never changes anything.
    assert _imf(p, replace(x, skew_wad=-sign * hi)) == _imf(p, replace(x, skew_wad=0))


@PROPS
@given(params_st(), inputs_st(), notional_st, notional_st, depth_st, depth_st)
def test_imf_monotone_in_notional_over_depth(p: RiskParams, x: RiskInputs, n1: int, n2: int, d1: int,
                                             d2: int) -> None:
    n_lo, n_hi = _ordered(n1, n2)
    d_lo, d_hi = _ordered(d1, d2)
    assert _imf(p, replace(x, notional_usd_wad=n_lo)) <= _imf(p, replace(x, notional_usd_wad=n_hi))
    assert _imf(p, replace(x, depth_usd_wad=d_hi)) <= _imf(p, replace(x, depth_usd_wad=d_lo))
    assert compute(p, replace(x, depth_usd_wad=d_hi)).slip_wad <= compute(p, replace(x, depth_usd_wad=d_lo)).slip_wad
    assert _imf(p, replace(x, depth_usd_wad=d_lo)) <= _imf(p, replace(x, depth_usd_wad=0))  # no book: worst
    assert _imf_float(p, replace(x, notional_usd_wad=n_lo)) <= _imf_float(p, replace(x, notional_usd_wad=n_hi))
    assert _imf_float(p, replace(x, depth_usd_wad=d_hi)) <= _imf_float(p, replace(x, depth_usd_wad=d_lo))


@PROPS
@given(params_st(), inputs_st(), oi_st, oi_st, oi_st)
def test_imf_monotone_in_crowding(p: RiskParams, x: RiskInputs, s1: int, s2: int, other: int) -> None:
    lo, hi = _ordered(s1, s2)
    a = compute(p, replace(x, oi_side_wad=lo, oi_other_wad=other))
    b = compute(p, replace(x, oi_side_wad=hi, oi_other_wad=other))
    assert a.crowd_wad <= b.crowd_wad and a.imf_wad <= b.imf_wad
    # More open interest on the other side relieves crowding.
    c = compute(p, replace(x, oi_side_wad=hi, oi_other_wad=lo))
    d = compute(p, replace(x, oi_side_wad=hi, oi_other_wad=hi))
    assert d.crowd_wad == 0 and d.crowd_wad <= c.crowd_wad and d.imf_wad <= c.imf_wad
    assert c.crowd_wad <= p.crowd_wad
    fa = compute_float(p, replace(x, oi_side_wad=lo, oi_other_wad=other))
    fb = compute_float(p, replace(x, oi_side_wad=hi, oi_other_wad=other))
    assert fa["crowd"] <= fb["crowd"] and fa["imf"] <= fb["imf"]


@PROPS
@given(params_st(), inputs_st(), rate_st, rate_st)
def test_imf_monotone_in_funding_paid(p: RiskParams, x: RiskInputs, r1: int, r2: int) -> None:
    lo, hi = _ordered(r1, r2)
    sign = 1 if x.is_long else -1  # longs pay positive funding, shorts negative
    a = compute(p, replace(x, funding_rate_wad=sign * lo))
    b = compute(p, replace(x, funding_rate_wad=sign * hi))
    assert a.funding_wad <= b.funding_wad and a.imf_wad <= b.imf_wad
    # Funding received, or paid below the threshold, is free.
    assert compute(p, replace(x, funding_rate_wad=-sign * abs(hi))).funding_wad == 0
    assert compute(p, replace(x, funding_rate_wad=sign * p.funding_threshold_wad)).funding_wad == 0
    assert _imf_float(p, replace(x, funding_rate_wad=sign * lo)) <= _imf_float(p, replace(x, funding_rate_wad=sign * hi))


# --------------------------------------------------------------------------- floors and caps


@PROPS
@given(params_st(), inputs_st())
def test_fractions_within_floors_and_caps(p: RiskParams, x: RiskInputs) -> None:
    f = compute(p, x)
    assert p.min_imf_wad <= f.imf_wad <= p.max_imf_wad
    assert p.min_mmf_wad <= f.mmf_base_wad <= p.max_mmf_wad
    assert 0 <= f.slip_wad <= WAD and 0 <= f.crowd_wad <= p.crowd_wad and f.funding_wad >= 0
    g = compute_float(p, x)
    assert p.min_imf_wad / WAD <= g["imf"] <= p.max_imf_wad / WAD
    assert p.min_mmf_wad / WAD <= g["mmf_base"] <= p.max_mmf_wad / WAD


def _calm(**kw: int | bool) -> RiskInputs:
    base = dict(sigma_wad=0, skew_wad=0, depth_usd_wad=10**12 * WAD, funding_rate_wad=0, oi_side_wad=0,
                oi_other_wad=0, notional_usd_wad=0, price_wad=50_000 * WAD, is_long=True)
    base.update(kw)
    return RiskInputs(**base)  # type: ignore[arg-type]


def test_floor_binds_in_a_calm_deep_market() -> None:
    p = replace(default_params(), min_imf_wad=WAD // 10)
    f = compute(p, _calm())
    assert f.var_move_wad == 0 and f.slip_wad == 0 and f.crowd_wad == 0 and f.funding_wad == 0
    assert f.mmf_base_wad == p.liq_fee_wad  # above min_mmf (0.3%): VaR 0 + penalty
    assert f.imf_wad == p.min_imf_wad  # raw 1% < 10% floor
    assert compute_float(p, _calm())["imf"] == p.min_imf_wad / WAD
    q = replace(default_params(), liq_fee_wad=WAD // 1000)
    assert compute(q, _calm()).mmf_base_wad == q.min_mmf_wad  # maintenance floor


def test_cap_binds_in_extreme_markets() -> None:
    p = default_params()
    for x in (_calm(sigma_wad=10 * WAD), _calm(depth_usd_wad=0), _calm(funding_rate_wad=5 * 10**16),
              _calm(sigma_wad=5 * WAD, skew_wad=-WAD)):
        f = compute(p, x)
        assert f.imf_wad == p.max_imf_wad, x
        assert compute_float(p, x)["imf"] == p.max_imf_wad / WAD
    assert compute(p, _calm(sigma_wad=20 * WAD)).mmf_base_wad == p.max_mmf_wad
    # The tail multiplier is capped: beyond the cap more adverse skew changes nothing.
    a = compute(p, _calm(sigma_wad=WAD // 5, skew_wad=-WAD // 2))
    b = compute(p, _calm(sigma_wad=WAD // 5, skew_wad=-WAD))
    assert a.var_move_wad == b.var_move_wad


@PROPS
@given(params_st(), inputs_st(), st.integers(0, WAD), st.integers(0, WAD))
def test_maintenance_plus_min_buffer_below_initial(p: RiskParams, x: RiskInputs, ramp_mmf: int, slip: int) -> None:
    f = compute(p, x)
    assert f.mmf_base_wad + p.min_buffer_wad <= f.imf_wad
    # Per position: the ramped maintenance base (never above max_mmf on chain) plus the position's
    # slippage snapshot, capped, is still at least min_buffer below the required initial margin.
    mmf_pos = position_maintenance(min(ramp_mmf, p.max_mmf_wad), slip, p.max_mmf_wad)
    assert mmf_pos + p.min_buffer_wad <= required_initial(f.imf_wad, mmf_pos, p.min_buffer_wad, p.max_imf_wad)
    assert required_initial(f.imf_wad, mmf_pos, p.min_buffer_wad, p.max_imf_wad) <= p.max_imf_wad


# --------------------------------------------------------------------------- validate_params


def test_default_params_are_valid() -> None:
    assert validate_params(default_params()) == default_params()
    assert list(HARD_BOUNDS) == [f.name for f in fields(RiskParams)]


@pytest.mark.parametrize("name", list(HARD_BOUNDS))
@pytest.mark.parametrize("side", ["below", "above"])
def test_validate_params_rejects_each_field_out_of_bounds(name: str, side: str) -> None:
    lo, hi = HARD_BOUNDS[name]
    bad = lo - 1 if side == "below" else hi + 1
    with pytest.raises(ValidationError) as info:
        validate_params(replace(default_params(), **{name: bad}))
    assert info.value.field == name and info.value.value == bad
    assert str(lo) in info.value.allowed and str(hi) in info.value.allowed


@PROPS
@given(params_st(), st.sampled_from(list(HARD_BOUNDS)), st.integers(1, 10**40), st.booleans())
def test_validate_params_names_the_out_of_bounds_field(p: RiskParams, name: str, off: int, below: bool) -> None:
    lo, hi = HARD_BOUNDS[name]
    bad = lo - off if below else hi + off
    with pytest.raises(ValidationError) as info:
        validate_params(replace(p, **{name: bad}))
    assert info.value.field == name


@PROPS
@given(params_st())
def test_random_valid_params_pass(p: RiskParams) -> None:
    assert validate_params(p) is p


@pytest.mark.parametrize(("changes", "field"), [
    ({"min_imf_wad": WAD // 2, "max_imf_wad": WAD // 4}, "min_imf_wad"),
    ({"min_mmf_wad": WAD // 4, "max_mmf_wad": WAD // 5}, "min_mmf_wad"),
    ({"min_mmf_wad": 10**16 - 5 * 10**15 + 1}, "min_mmf_wad"),  # min_mmf + min_buffer > min_imf
    ({"max_mmf_wad": 5 * 10**17 - 5 * 10**15 + 1}, "max_mmf_wad"),  # max_mmf + min_buffer > max_imf
])
def test_validate_params_rejects_inconsistent_fields(changes: dict[str, int], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params(replace(default_params(), **changes))
    assert info.value.field == field


def test_from_dict_round_trip_and_errors() -> None:
    p = default_params()
    assert RiskParams.from_dict(p.to_dict()) == p
    assert len(p.as_tuple()) == len(HARD_BOUNDS)
    with pytest.raises(ValidationError) as info:
        RiskParams.from_dict({**p.to_dict(), "bogus": 1})
    assert info.value.field == "params" and info.value.value == ["bogus"]
    d = p.to_dict()
    del d["z_wad"]
    with pytest.raises(ValidationError) as info:
        RiskParams.from_dict(d)
    assert info.value.value == ["z_wad"]


# --------------------------------------------------------------------------- Ramp


ramp_st = st.builds(Ramp, st.integers(0, WAD), st.integers(0, WAD), st.integers(0, 10**9),
                    st.integers(0, 10**15))


@PROPS
@given(ramp_st, st.integers(0, 2 * 10**9), st.integers(0, 2 * 10**9))
def test_ramp_rises_at_a_bounded_rate(r: Ramp, t1: int, t2: int) -> None:
    lo, hi = _ordered(t1, t2)
    v1, v2 = r.value_at(lo), r.value_at(hi)
    assert 0 <= v2 - v1 <= r.rate_wad_per_sec * (hi - lo)  # never falls, never faster than the rate
    assert r.from_wad <= v1 <= max(r.from_wad, r.to_wad)
    assert r.value_at(r.activation_sec) == r.from_wad  # nothing moves before activation
    if r.to_wad > r.from_wad and r.rate_wad_per_sec > 0:
        done = r.activation_sec + -(-(r.to_wad - r.from_wad) // r.rate_wad_per_sec)
        assert r.value_at(done) == r.to_wad and r.value_at(done - 1) < r.to_wad
    if r.to_wad <= r.from_wad:
        assert v1 == v2 == r.from_wad


# --------------------------------------------------------------------------- PositionMath

size_st = st.integers(-(10**6) * WAD, 10**6 * WAD).filter(lambda s: s != 0)
basis_price_st = st.integers(WAD // 100, 10**6 * WAD)


@PROPS
@given(size_st, basis_price_st, price_st)
def test_closing_all_returns_zero_basis_and_realizes_value_minus_basis(size: int, entry: int, exit_: int) -> None:
    s, basis, realized = apply_trade(0, 0, size, entry)
    assert s == size and realized == 0
    s2, basis2, realized2 = apply_trade(size, basis, -size, exit_)
    assert s2 == 0 and basis2 == 0
    assert realized2 == value(size, exit_) - basis


@PROPS
@given(size_st, st.integers(-(10**12) * WAD, 10**12 * WAD), price_st)
def test_closing_all_any_basis(size: int, basis: int, price: int) -> None:
    s2, basis2, realized = apply_trade(size, basis, -size, price)
    assert (s2, basis2) == (0, 0) and realized == value(size, price) - basis


@PROPS
@given(size_st, basis_price_st, price_st, st.integers(1, 3 * 10**6 * WAD))
def test_realized_pnl_never_exceeds_exact_value(size: int, entry: int, exit_: int, close_abs: int) -> None:
    _, basis, _ = apply_trade(0, 0, size, entry)
    assert Fraction(basis) >= Fraction(size * entry, WAD)  # basis rounded up: the user paid at least that
    delta = -close_abs if size > 0 else close_abs  # reduce, close or flip
    new_size, new_basis, realized = apply_trade(size, basis, delta, exit_)
    closed = min(close_abs, abs(size))
    sign = 1 if size > 0 else -1
    exact = Fraction(sign * closed * exit_, WAD) - Fraction(basis * closed, abs(size))
    assert realized <= exact
    assert exact - realized < 2  # at most 1 wei on each of value and basis
    # Versus the true entry price: rounding never gives the user more than the exact PnL.
    assert realized <= Fraction(sign * closed * (exit_ - entry), WAD)
    assert new_size == size + delta
    if close_abs > abs(size):  # flipped: the new position's basis is rounded up too
        assert Fraction(new_basis) >= Fraction(new_size * exit_, WAD)


@PROPS
@given(size_st, basis_price_st, price_st, price_st, st.integers(1, 10**6 * WAD))
def test_partial_then_full_close_never_beats_exact_pnl(size: int, entry: int, p1: int, p2: int, part: int) -> None:
    _, basis, _ = apply_trade(0, 0, size, entry)
    part = min(part, abs(size))
    sign = 1 if size > 0 else -1
    s1, b1, r1 = apply_trade(size, basis, -sign * part, p1)
    s2, b2, r2 = apply_trade(s1, b1, -s1, p2) if s1 else (0, 0, 0)
    assert (s2, b2) == (0, 0)
    exact = Fraction(sign * part * (p1 - entry), WAD) + Fraction(sign * (abs(size) - part) * (p2 - entry), WAD)
    assert r1 + r2 <= exact


@PROPS
@given(size_st, price_st, st.integers(-(10**24), 10**24), st.integers(-(10**24), 10**24))
def test_value_notional_and_funding_round_against_the_user(size: int, price: int, i_now: int, i_entry: int) -> None:
    assert value(size, price) <= Fraction(size * price, WAD) < value(size, price) + 1
    assert notional(size, price) >= Fraction(abs(size) * price, WAD)
    owed = funding_owed(size, i_now, i_entry)
    assert owed >= Fraction(size * (i_now - i_entry), WAD) > owed - 1
