"""Differential test: the contracts' margin model, position math and price impact (ImpactMath, the
integral over skew) against ballast.model, to the wei.

Over 1,200 random input sets per function (seeded), edge values included: zero skew, maximum
volatility, tiny and huge sizes, extreme open-interest imbalance, skews that cross zero, every
parameter at its hard bounds. A change to one side that is not made to the other fails here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from eth_abi import decode as abi_decode
from web3.contract import Contract

from ballast._typing import WAD
from ballast.chain import Chain
from ballast.model import (
    HARD_BOUNDS,
    Ramp,
    RiskInputs,
    RiskParams,
    apply_trade,
    compute,
    funding_index_delta,
    funding_owed,
    liquidation_notional,
    required_initial,
    skew_impact,
    sqrt_horizon_wad,
    validate_params,
)
from ballast.errors import ValidationError

pytestmark = pytest.mark.integration
N = 1_200
rng = np.random.default_rng(20211204)


@pytest.fixture(scope="module")
def harness(chain: Chain) -> Contract:
    return chain.deploy("MathHarness", sender=chain.accounts()[0])


def _u(lo: int, hi: int) -> int:
    """A log-uniform integer in [lo, hi] with random low digits; the bounds themselves 10% of the time."""
    r = rng.random()
    if r < 0.05 or hi <= lo:
        return lo
    if r < 0.10:
        return hi
    base = int(math.exp(rng.uniform(math.log(max(lo, 1)), math.log(hi))))
    noise = int(rng.integers(0, 2**62)) % max(1, base // 1000 + 1)
    return min(hi, max(lo, base + noise))


def _s(m: int) -> int:
    """A signed integer of magnitude up to m."""
    return int(rng.choice([-1, 1])) * _u(0, m)


def random_params() -> RiskParams:
    while True:
        vals = {k: _u(lo, hi) for k, (lo, hi) in HARD_BOUNDS.items()}
        vals["max_imf_wad"] = max(vals["max_imf_wad"], vals["min_imf_wad"])
        vals["max_mmf_wad"] = min(max(vals["max_mmf_wad"], vals["min_mmf_wad"]), vals["max_imf_wad"] - vals["min_buffer_wad"])
        vals["min_mmf_wad"] = min(vals["min_mmf_wad"], vals["min_imf_wad"] - vals["min_buffer_wad"], vals["max_mmf_wad"])
        try:
            return validate_params(RiskParams(**vals))
        except ValidationError:
            continue


def random_inputs() -> RiskInputs:
    edge = rng.random()
    sigma = _u(10**16, 10 * WAD)
    skew = 0 if edge < 0.15 else int(rng.uniform(-1, 1) * WAD)
    depth = _u(10**21, 10**30)
    funding = int(rng.uniform(-0.05, 0.05) * WAD) if rng.random() < 0.8 else 0
    oi_a = 0 if rng.random() < 0.1 else _u(1, 10**27)
    oi_b = 0 if rng.random() < 0.3 else _u(1, 10**27)
    notional = 0 if rng.random() < 0.05 else _u(1, 10**33)
    price = _u(WAD, 10**25)
    return RiskInputs(sigma, skew, depth, funding, oi_a, oi_b, notional, price, bool(rng.random() < 0.5))


def _batch(chain: Chain, c: Contract, fn: str, args: list[list[Any]], types: list[str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(args), 300):
        res = chain.rpc.batch([("eth_call", [{"to": c.address, "data": c.encode_abi(fn, a)}, "latest"])
                               for a in args[i:i + 300]])
        for r in res:
            assert isinstance(r, str), f"{fn} reverted: {r}"
            out.append(abi_decode(types, bytes.fromhex(r[2:])))
    return out


def test_compute_parity(chain: Chain, harness: Contract) -> None:
    cases = [(random_params(), random_inputs()) for _ in range(N)]
    got = _batch(chain, harness, "compute", [[p.as_tuple(), x.as_tuple()] for p, x in cases],
                 ["(uint256,uint256,uint256,uint256,uint256,uint256)"])
    mismatches = []
    for (p, x), (g,) in zip(cases, got):
        f = compute(p, x)
        mine = (f.var_move_wad, f.mmf_base_wad, f.slip_wad, f.crowd_wad, f.funding_wad, f.imf_wad)
        if tuple(g) != mine:
            mismatches.append((p, x, g, mine))
    assert not mismatches, f"{len(mismatches)} of {N} differ; first: {mismatches[0]}"


def test_sqrt_horizon_and_required_initial_parity(chain: Chain, harness: Contract) -> None:
    hs = [60, 61, 3600, 86_400, 7 * 86_400] + [int(rng.integers(60, 7 * 86_400)) for _ in range(N)]
    got = _batch(chain, harness, "sqrtHorizonWad", [[h] for h in hs], ["uint256"])
    assert [g[0] for g in got] == [sqrt_horizon_wad(h) for h in hs]
    args = [[_u(0, WAD), _u(0, WAD), _u(10**15, WAD // 5), _u(10**16, WAD)] for _ in range(N)]
    got = _batch(chain, harness, "requiredInitial", args, ["uint256"])
    assert [g[0] for g in got] == [required_initial(*a) for a in args]


def test_ramp_parity(chain: Chain, harness: Contract) -> None:
    args = []
    for _ in range(N):
        frm = _u(10**15, WAD // 2)
        to = frm + (_u(0, WAD // 2) if rng.random() < 0.8 else 0)
        act = int(rng.integers(1_600_000_000, 1_700_000_000))
        args.append([(frm, to, act, _u(10**10, 10**14)), act + int(rng.integers(-10_000, 100_000))])
    got = _batch(chain, harness, "rampValue", args, ["uint256"])
    assert [g[0] for g in got] == [Ramp(*a[0]).value_at(a[1]) for a in args]


def test_position_math_parity(chain: Chain, harness: Contract) -> None:
    trades = []
    for _ in range(N):
        size = 0 if rng.random() < 0.1 else int(rng.choice([-1, 1])) * _u(1, 10**24)
        price0 = _u(WAD, 10**25)
        basis = (size * price0 + WAD - 1) // WAD
        delta = int(rng.choice([-1, 1])) * _u(1, 10**24)
        if delta == 0:
            delta = 1
        trades.append([size, basis, delta, _u(WAD, 10**25)])
    got = _batch(chain, harness, "applyTrade", trades, ["int256", "int256", "int256"])
    assert [tuple(g) for g in got] == [apply_trade(*t) for t in trades]

    fo = [[int(rng.choice([-1, 1])) * _u(1, 10**24), _s(10**24),
           _s(10**24)] for _ in range(N)]
    got = _batch(chain, harness, "fundingOwed", fo, ["int256"])
    assert [g[0] for g in got] == [funding_owed(*a) for a in fo]

    fd = [[int(rng.uniform(-0.05, 0.05) * WAD), _u(WAD, 10**25), int(rng.integers(0, 10**7))] for _ in range(N)]
    got = _batch(chain, harness, "fundingIndexDelta", fd, ["int256"])
    assert [g[0] for g in got] == [funding_index_delta(*a) for a in fd]

    ln = [[_s(10**24), _u(0, 10**24), _u(WAD, 3 * WAD), _u(10**15, WAD // 2),
           _u(0, WAD // 5), _u(0, 10**26)] for _ in range(N)]
    got = _batch(chain, harness, "liquidationNotional", ln, ["uint256"])
    assert [g[0] for g in got] == [liquidation_notional(*a) for a in ln]


def _skew_case() -> list[int]:
    """(coef, skew before, skew after, price, depth): moves that grow, shrink, cross zero, stay put,
    move by one wei; coefficients from 0 to the hard bound (0.2)."""
    coef = 0 if rng.random() < 0.03 else _u(1, 2 * 10**17)
    before = _s(10**27)
    r = rng.random()
    if r < 0.05:
        after = before
    elif r < 0.10:
        after = before + int(rng.choice([-1, 1]))
    elif r < 0.25:
        after = -before + _s(10**20)  # across zero
    elif r < 0.60:
        after = int(before * rng.uniform(-1.0, 1.0))  # toward zero (a rebate unless it crosses past |before|)
    else:
        after = before + _s(10**27)
    return [coef, before, after, _u(WAD, 10**25), _u(10**21, 10**30)]


def test_skew_impact_parity(chain: Chain, harness: Contract) -> None:
    cases = [_skew_case() for _ in range(N)]
    got = _batch(chain, harness, "skewImpact", cases, ["uint256", "uint256"])
    mine = [skew_impact(*c) for c in cases]
    mismatches = [(c, tuple(g), m) for c, g, m in zip(cases, got, mine) if tuple(g) != m]
    assert not mismatches, f"{len(mismatches)} of {N} differ; first: {mismatches[0]}"
    # The sample exercised both branches and the zero cases.
    assert sum(1 for ch, _ in mine if ch > 0) > N // 5 and sum(1 for _, rb in mine if rb > 0) > N // 5
    assert sum(1 for m in mine if m == (0, 0)) > 10
