"""Differential test: the contracts' margin model, position math and price impact (ImpactMath, the
integral over skew) against ballast.model, to the wei.

Over 1,200 random input sets per function (seeded), edge values included: zero skew, maximum
volatility, tiny and huge sizes, extreme open-interest imbalance, skews that cross zero, every
parameter at its hard bounds. A change to one side that is not made to the other fails here.

Engine level: a deployed engine (static controller) driven by a seeded random sequence of deposits,
order commits (with and without price limits), close-all orders, keeper price and risk-feed pushes
(some out of bounds), settlements (at the first round after the delay, and at wrong rounds),
expired-order cancellations, liquidation flags and liquidations, withdrawals and funding
accruals; after every transaction the outcome (success or the same custom error) and the whole
engine state (collateral, positions, orders, flags, open interest, funding state, impact pools,
every bucket, the token balance) equal ``ballast.mirror.EngineMirror``'s, to the wei.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from eth_abi.abi import decode as abi_decode
from web3 import Web3
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
    penalty_fraction,
    required_initial,
    skew_impact,
    sqrt_horizon_wad,
    validate_params,
)
from ballast.errors import ValidationError
from ballast.riskreport import report_input

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


def test_compute_with_tail_parity(chain: Chain, harness: Contract) -> None:
    """The published tail (issue 12): ``MarginMath.compute(p, x, tailFeed)`` against
    ``model.compute(p, x, tail_feed_wad=...)``, tails 0 (none), in [1, 5] and around the live tail."""
    cases = []
    for _ in range(N):
        r = rng.random()
        tail = 0 if r < 0.15 else (WAD if r < 0.2 else _u(WAD, 5 * WAD))
        cases.append((random_params(), random_inputs(), tail))
    got = _batch(chain, harness, "computeWithTail", [[p.as_tuple(), x.as_tuple(), t] for p, x, t in cases],
                 ["(uint256,uint256,uint256,uint256,uint256,uint256)"])
    mismatches = []
    for (p, x, t), (g,) in zip(cases, got):
        f = compute(p, x, tail_feed_wad=t)
        mine = (f.var_move_wad, f.mmf_base_wad, f.slip_wad, f.crowd_wad, f.funding_wad, f.imf_wad)
        if tuple(g) != mine:
            mismatches.append((p, x, t, g, mine))
    assert not mismatches, f"{len(mismatches)} of {N} differ; first: {mismatches[0]}"
    raised = sum(1 for (p, x, t) in cases if compute(p, x, tail_feed_wad=t).var_move_wad > compute(p, x).var_move_wad)
    assert raised > N // 4, f"only {raised} of {N} cases had a tail above the live one: the test would not see it"


def test_sqrt_horizon_and_required_initial_parity(chain: Chain, harness: Contract) -> None:
    hs = [60, 61, 3600, 86_400, 7 * 86_400] + [int(rng.integers(60, 7 * 86_400)) for _ in range(N)]
    got = _batch(chain, harness, "sqrtHorizonWad", [[h] for h in hs], ["uint256"])
    assert [g[0] for g in got] == [sqrt_horizon_wad(h) for h in hs]
    args = [[_u(0, WAD), _u(0, WAD), _u(10**15, WAD // 5), _u(10**16, WAD)] for _ in range(N)]
    got = _batch(chain, harness, "requiredInitial", args, ["uint256"])
    assert [g[0] for g in got] == [required_initial(*a) for a in args]


def test_ramp_parity(chain: Chain, harness: Contract) -> None:
    args: list[list[Any]] = []
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


def test_penalty_fraction_parity(chain: Chain, harness: Contract) -> None:
    """``PositionMath.penaltyFraction`` against ``ballast.model.penalty_fraction`` over depths from
    not liquidatable to deep underwater, many just under the line, and settings at their bounds."""
    cases = []
    for _ in range(N):
        r = _u(1, 10**40)
        u = rng.random()
        if u < 0.3:
            e = r - _u(0, max(1, r // 50))  # within 2% under the line
        elif u < 0.8:
            e = int(r * rng.uniform(-0.5, 1.2))
        else:
            e = _s(2 * r)
        floor = _u(WAD // 10, WAD)
        full = _u(WAD // 100, WAD)
        cases.append([e, r, _u(10**15, 10**17), floor, full])
    got = _batch(chain, harness, "penaltyFraction", cases, ["uint256"])
    mine = [penalty_fraction(c[2], c[0], c[1], c[3], c[4]) for c in cases]
    assert [g[0] for g in got] == mine
    # The sample reached the floor, the ramp between and the full fee.
    assert sum(1 for c, m in zip(cases, mine) if m == c[2]) > N // 10
    assert sum(1 for c, m in zip(cases, mine) if m < c[2] and 0 < c[0] < c[1]) > N // 5


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


# --------------------------------------------------------------------------- engine-level differential


def _error_names(abi: Any) -> dict[str, str]:
    from eth_utils.crypto import keccak

    out: dict[str, str] = {}
    for e in abi:
        if e.get("type") == "error":
            sig = f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
            out["0x" + keccak(text=sig)[:4].hex()] = e["name"]
    return out


class _EngineDiff:
    """One static-controller deployment driven by random commit / settle / cancel / liquidate /
    withdraw / accrue / price-push transactions, each applied to the mirror too; after every
    transaction the outcome (success or the same custom error) and the whole engine state must be
    the mirror's, to the wei."""

    def __init__(self, chain: Chain, seed: int) -> None:
        from ballast.config import load_config, to_wad
        from ballast.deploy import TOKEN_DECIMALS, deploy
        from ballast.mirror import EngineMirror, Feed, MarketMirror

        self.chain = chain
        self.rng = np.random.default_rng(seed)
        self.cfg = load_config()
        self.dep = deploy(chain, self.cfg, kind="static_calm")
        accts = chain.accounts()
        # Anvil has 3 funded accounts: the traders are impersonated addresses given gas money.
        self.admin, self.keeper = accts[0], accts[-1]
        self.traders = [Web3.to_checksum_address(f"0x{0xba11a57000 + i:040x}") for i in range(5)]
        chain.auto_impersonate(True)
        for t in self.traders:
            chain.set_balance(t, 10**21)
        self.e = self.dep.engine
        self.errors = _error_names(self.e.abi)
        self.mir = EngineMirror.from_engine_config(self.cfg.engine.engine_config_tuple(TOKEN_DECIMALS),
                                                   10 ** (18 - TOKEN_DECIMALS))
        self.mir.vault = self.e.functions.vaultBalance().call()
        self.mir.insurance = self.e.functions.insuranceFund().call()
        self.mir.net_deposits = self.e.functions.netDeposits().call()
        self.rounds: dict[int, list[tuple[int, int, int]]] = {}
        for m in self.cfg.markets:
            feeds = {}
            for k in FEED_KINDS_:
                _, ans, _, upd, _ = self.dep.feeds[m.id][k].functions.latestRoundData().call()
                r = self.dep.feeds[m.id][k].functions.latestRoundData().call()[0]
                # A report field has only its latest round (its id is its time).
                rep = k in self.dep.reported
                prev = self.dep.feeds[m.id][k].functions.getRoundData(r - 1).call()[3] if r > 1 and not rep else 0
                feeds[k] = Feed(ans, m.feed_decimals, upd, m.heartbeat_sec, *m.bounds_wad(k), prev_updated_at=prev,
                                round_id=r, reported=rep)
            s = self.dep.static[m.id]
            self.mir.markets[m.id] = MarketMirror(m.id, feeds, "static", static_imf_wad=to_wad(s.imf),
                                                  static_mmf_wad=to_wad(s.mmf), static_impact_wad=m.params.impact_wad,
                                                  static_liq_fee_wad=m.params.liq_fee_wad)
            r, ans, _, upd, _ = self.dep.feeds[m.id]["price"].functions.latestRoundData().call()
            self.rounds[m.id] = [(r, upd, ans)]
        for t in self.traders:
            chain.transact(self.dep.usd.functions.mint(t, 10**13), self.admin)
            chain.transact(self.dep.usd.functions.approve(self.e.address, 2**256 - 1), t)
        self.now = chain.latest_timestamp() + 10
        self.outcomes: dict[str, int] = {}

    def send(self, fn: Any, sender: str) -> str | None:
        """Mine ``fn`` at ``self.now``; the custom error's name when it reverts."""
        self.chain.set_next_timestamp(self.now)
        h = fn.transact({"from": sender, "gas": 5_000_000})
        rc = self.chain.w3.eth.wait_for_transaction_receipt(h)
        assert int(self.chain.w3.eth.get_block(rc["blockNumber"])["timestamp"]) == self.now
        if rc["status"] == 1:
            return None
        tr = self.chain.rpc.call("debug_traceTransaction", [h.hex() if isinstance(h, bytes) else h,
                                                            {"tracer": "callTracer"}])
        out = tr.get("output", "0x")
        return self.errors.get(out[:10], f"unknown revert {out[:10]}")

    def step(self, name: str, fn: Any, sender: str, mirror_op: Any) -> None:
        from ballast.mirror import MirrorRevert

        before = copy.deepcopy(self.mir)
        want: str | None = None
        try:
            mirror_op()
        except MirrorRevert as e:
            want = e.error
            assert self.mir == before, f"{name}: the mirror reverted ({e}) but changed"
        got = self.send(fn, sender)
        assert got == want, f"{name} at {self.now}: chain {got}, mirror {want}"
        key = f"{name}:{got or 'ok'}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.now += 1
        self.compare(name)

    def compare(self, name: str) -> None:
        e, mir = self.e, self.mir
        calls: list[tuple[str, list[Any], list[str], Any]] = []
        for t in self.traders:
            acc = mir.accounts.get(t)
            calls.append(("collateralOf", [t], ["int256"], (acc.collateral if acc else 0,)))
            calls.append(("flaggedAt", [t], ["uint256"], (mir.flagged_at.get(t, 0),)))
            for mid in mir.markets:
                p = acc.positions.get(mid) if acc else None
                calls.append(("position", [t, mid], ["(int128,int128,int128,uint64)"],
                              ((p.size, p.basis, p.funding_index, p.slip_snap) if p and p.size else None,)))
                o = mir.orders.get((t, mid))
                calls.append(("order", [t, mid], ["(int128,uint128,uint64,uint64,bool)"],
                              ((o.size_delta, o.acceptable_price_wad, o.commit_sec, o.fee_tokens, o.close_all)
                               if o else (0, 0, 0, 0, False),)))
        for mid, m in mir.markets.items():
            calls.append(("openInterest", [mid], ["uint256", "uint256"], (m.oi_long, m.oi_short)))
            calls.append(("fundingState", [mid], ["int256", "int256", "uint256"],
                          (m.funding_index, m.last_rate, m.last_accrual)))
            calls.append(("marketBook", [mid], ["uint256", "uint256"], (m.impact_pool, m.last_price_wad)))
        for fn, attr in [("vaultBalance", "vault"), ("insuranceFund", "insurance"), ("protocolFees", "fees"),
                         ("orderEscrow", "order_escrow"), ("impactPools", "impact_pools"),
                         ("netDeposits", "net_deposits"), ("badDebtTotal", "bad_debt_total"),
                         ("badDebtCovered", "bad_debt_covered")]:
            calls.append((fn, [], ["int256" if fn == "vaultBalance" else "uint256"], (getattr(mir, attr),)))
        res = self.chain.rpc.batch([("eth_call", [{"to": e.address, "data": e.encode_abi(fn, a)}, "latest"])
                                    for fn, a, _, _ in calls])
        bal = self.dep.usd.functions.balanceOf(e.address).call()
        assert bal == mir.token_balance(), f"after {name}: token balance {bal} != mirror buckets {mir.token_balance()}"
        for (fn, a, types, want), r in zip(calls, res):
            got = abi_decode(types, bytes.fromhex(r[2:]))
            if fn == "position" and want[0] is None:
                assert got[0][0] == 0, f"after {name}: {fn}{a} chain {got}, mirror none"
                continue
            assert tuple(got) == tuple(want), f"after {name}: {fn}{a} chain {got}, mirror {want}"

    # ------------------------------------------------------------------ actions
    def push_price(self, mid: int, price: float, bad: bool = False) -> None:
        m = self.cfg.market(mid)
        ans = 10**30 if bad else m.feed_answer("price", price)
        feed = self.mir.markets[mid].feeds["price"]

        def op() -> None:
            feed.push(ans, self.now)
        self.step("push", self.dep.feeds[mid]["price"].functions.transmit(ans), self.admin, op)
        r = self.dep.feeds[mid]["price"].functions.latestRoundData().call()[0]
        self.rounds[mid].append((r, self.now - 1, ans))

    def refresh(self, mid: int) -> None:
        """Re-push every non-price feed of a market (keeps risk and funding feeds fresh)."""
        for k in FEED_KINDS_:
            if k == "price":
                continue
            f = self.mir.markets[mid].feeds[k]
            ans = f.answer
            if k == "funding":
                ans = round(float(self.rng.uniform(-0.001, 0.001)) * 10**f.decimals)

            def op(f: Any = f, ans: int = ans) -> None:
                f.push(ans, self.now)
            # The risk inputs are fields of the controller's report, each written alone here.
            fn = (self.dep.controller.functions.submitReport(*report_input(mid, {k: ans})) if k in self.dep.reported
                  else self.dep.feeds[mid][k].functions.transmit(ans))
            self.step(f"push_{k}", fn, self.admin, op)

    def settle_all(self, wrong: bool = False) -> None:
        for (a, mid) in sorted(self.mir.orders):
            frm, _ = self.mir.order_times(a, mid)
            rounds = self.rounds[mid]
            idx = next((i for i, (_, t, _) in enumerate(rounds) if t >= frm), None)
            if idx is None:
                continue
            if wrong and idx + 1 < len(rounds):
                idx += 1
            r, t, ans = rounds[idx]
            prev = rounds[idx - 1][1] if idx > 0 else 0
            fill = ans * 10 ** (18 - self.mir.markets[mid].feeds["price"].decimals)
            self.step("settle", self.e.functions.settleOrder(a, mid, r), self.keeper,
                      lambda a=a, mid=mid, fill=fill, t=t, prev=prev, r=r: self.mir.settle(
                          a, mid, fill, t, prev, self.now, self.keeper, round_id=r))


FEED_KINDS_ = ("price", "volatility", "funding", "depth", "skew")


def test_engine_matches_the_mirror_to_the_wei(chain: Chain) -> None:
    try:
        _engine_sequence(chain, 7)
    finally:
        chain.auto_impersonate(False)


def _engine_sequence(chain: Chain, seed: int) -> None:
    d = _EngineDiff(chain, seed)
    mir, rng = d.mir, d.rng
    mids = sorted(mir.markets)
    price = {mid: d.cfg.market(mid).initial["price"] for mid in mids}
    for t in d.traders:
        amt = int(rng.integers(2_000, 200_000)) * 10**6
        d.step("deposit", d.e.functions.deposit(amt), t, lambda t=t, amt=amt: mir.deposit(t, amt))
    for step in range(140):
        a = d.traders[int(rng.integers(len(d.traders)))]
        mid = mids[int(rng.integers(len(mids)))]
        op = str(rng.choice(["commit", "commit", "close", "move", "move", "settle", "liquidate", "withdraw",
                             "accrue", "wait"]))
        if op == "commit":
            lev = float(rng.choice([0.5, 3.0, 10.0, 30.0, 80.0]))
            coll = mir.accounts[a].collateral / 1e6 if a in mir.accounts else 0.0
            delta = int(rng.choice([-1, 1])) * int(coll * lev / price[mid] * 1e18)
            limit = 0 if rng.random() < 0.7 else int(price[mid] * (1.02 if delta > 0 else 0.98) * 1e18)
            d.step("commit", d.e.functions.commitOrder(mid, delta, limit), a,
                   lambda a=a, mid=mid, delta=delta, limit=limit: mir.commit(a, mid, delta, d.now,
                                                                             acceptable_price_wad=limit))
        elif op == "close":
            d.step("close", d.e.functions.commitClose(mid, 0), a,
                   lambda a=a, mid=mid: mir.commit(a, mid, 0, d.now, close_all=True))
        elif op == "move":
            d.now += int(rng.integers(1, 120))
            for m_ in mids:
                shock = float(rng.normal(0, 0.02)) + (-0.12 if rng.random() < 0.06 else 0.0)
                price[m_] = float(np.clip(price[m_] * math.exp(shock), 1_000.0, 1e6))
                d.push_price(m_, price[m_], bad=bool(m_ == 1 and rng.random() < 0.08))
                d.refresh(m_)
            if rng.random() < 0.5:
                d.settle_all()
        elif op == "settle":
            d.settle_all(wrong=bool(rng.random() < 0.2))
        elif op == "liquidate":
            targets = [x for x in d.traders if mir.is_liquidatable(x, d.now)]
            x = targets[0] if targets else a
            d.step("flag", d.e.functions.flagLiquidation(x), d.keeper, lambda x=x: mir.flag_liquidation(x, d.now))
            d.now += d.mir.order_min_delay_sec
            for m_ in mids:  # the first round after the flag (same prices: the keeper's next push)
                d.push_price(m_, price[m_])
            if mir.is_liquidatable(x, d.now) and rng.random() < 0.8:
                m_ = mir.liquidation_market(x, d.now)
            else:
                m_ = mid
            d.step("liquidate", d.e.functions.liquidate(x, m_), d.keeper, lambda x=x, m_=m_: mir.liquidate(x, m_, d.now, d.keeper))
        elif op == "withdraw":
            amt = int(rng.integers(1, 30_000)) * 10**6
            d.step("withdraw", d.e.functions.withdraw(amt), a, lambda a=a, amt=amt: mir.withdraw(a, amt, d.now))
        elif op == "accrue":
            d.step("accrue", d.e.functions.accrueFunding(mid), d.keeper, lambda mid=mid: mir.accrue_funding(mid, d.now))
        else:
            d.now += int(rng.choice([30, 700, 4_000]))
            for (acct, m_) in sorted(mir.orders):
                d.step("cancel", d.e.functions.cancelExpiredOrder(acct, m_), d.keeper,
                       lambda acct=acct, m_=m_: mir.cancel_expired(acct, m_, d.now))
    o = d.outcomes
    print("engine differential outcomes:", dict(sorted(o.items())))
    assert o.get("settle:ok", 0) >= 10 and o.get("commit:ok", 0) >= 10, o
    assert sum(v for k, v in o.items() if not k.endswith(":ok")) >= 5, o


def test_engine_liquidations_at_many_depths_match_the_mirror(chain: Chain) -> None:
    """Liquidations at shortfall depths from just under maintenance to underwater (the depth-scaled
    penalty, issue 12), both sides: each trader opens, the price is pushed to where its account
    sits at a drawn depth, flag, liquidation in the preferred market, close of the rest; after
    every transaction the whole engine state equals the mirror's, to the wei."""
    try:
        _liquidation_depths(chain, 12)
    finally:
        chain.auto_impersonate(False)


def _liquidation_depths(chain: Chain, seed: int) -> None:
    d = _EngineDiff(chain, seed)
    mir, rng = d.mir, d.rng
    mid = 0
    base = d.cfg.market(mid).initial["price"]
    depths: list[float] = []
    targets = [0.002, 0.01, 0.03, 0.06, 0.1, 0.15, 0.19, 0.21, 0.3, 0.6, 0.95, 1.3]
    for t in d.traders:
        d.step("deposit", d.e.functions.deposit(50_000 * 10**6), t, lambda t=t: mir.deposit(t, 50_000 * 10**6))
    for k in range(36):
        t = d.traders[k % len(d.traders)]
        for m_ in sorted(mir.markets):
            d.refresh(m_)
        d.push_price(mid, base)
        lev = float(rng.choice([8.0, 12.0, 20.0]))
        side = 1 if k % 2 == 0 else -1
        coll = mir.accounts[t].collateral / 1e6
        delta = side * int(coll * lev / base * 1e18)
        d.step("commit", d.e.functions.commitOrder(mid, delta, 0), t,
               lambda t=t, delta=delta: mir.commit(t, mid, delta, d.now))
        d.now += mir.order_min_delay_sec
        d.push_price(mid, base)
        d.settle_all()
        pos = mir.accounts[t].positions.get(mid)
        if pos is None or pos.size == 0:
            continue
        # The price at which the account is at the drawn depth delta: E0 + s (P - P0) = (1 - delta) R0 P / P0.
        h = mir.health(t, d.now)
        s_, e0, r0 = pos.size / 1e18, h.equity_usd_wad / 1e18, h.maintenance_usd_wad / 1e18
        delta_t = float(targets[k % len(targets)] * rng.uniform(0.9, 1.1))
        px = (s_ * base - e0) / (s_ - (1 - delta_t) * r0 / base)
        d.push_price(mid, px)
        d.now += 1
        if not mir.is_liquidatable(t, d.now):
            continue
        d.step("flag", d.e.functions.flagLiquidation(t), d.keeper, lambda t=t: mir.flag_liquidation(t, d.now))
        d.now += mir.order_min_delay_sec
        d.push_price(mid, px)
        m_ = mir.liquidation_market(t, d.now) if mir.is_liquidatable(t, d.now) else mid
        res: list[Any] = []
        d.step("liquidate", d.e.functions.liquidate(t, m_), d.keeper,
               lambda t=t, m_=m_: res.append(mir.liquidate(t, m_, d.now, d.keeper)))
        if res:
            hb = res[0].health_before
            depths.append(1.0 if hb.equity_usd_wad <= 0 else
                          (hb.maintenance_usd_wad - hb.equity_usd_wad) / hb.maintenance_usd_wad)
        p2 = mir.accounts[t].positions.get(mid)
        if p2 is not None and p2.size != 0:
            d.step("close", d.e.functions.commitClose(mid, 0), t, lambda t=t: mir.commit(t, mid, 0, d.now, close_all=True))
            d.now += mir.order_min_delay_sec
            d.push_price(mid, px)
            d.settle_all()
        # Top the account up for its next round.
        d.step("deposit", d.e.functions.deposit(20_000 * 10**6), t, lambda t=t: mir.deposit(t, 20_000 * 10**6))
    print("liquidation depths:", sorted(round(x, 4) for x in depths))
    full = mir.liq_penalty_full_depth_wad / WAD
    assert len(depths) >= 20, depths
    assert sum(1 for x in depths if x < 0.05) >= 4, depths  # near the floor
    assert sum(1 for x in depths if 0.05 <= x < full) >= 4, depths  # on the ramp
    assert sum(1 for x in depths if x >= full) >= 4, depths  # the full fee


def test_dynamic_quote_with_published_tail_matches_the_mirror(chain: Chain) -> None:
    """``LeverageController.quote`` against ``MarketMirror.quote`` to the wei, with no tail, with
    published tails (above and below the live tail, per side, capped by tailCap) and with a stale
    tail (older than the volatility heartbeat: fails closed)."""
    from ballast.config import load_config
    from ballast.deploy import deploy
    from ballast.mirror import Feed, MarketMirror

    cfg = load_config()
    dep = deploy(chain, cfg, kind="dynamic")
    m = cfg.markets[0]
    c = dep.controller

    def mirror() -> MarketMirror:
        feeds = {}
        for i, k in enumerate(FEED_KINDS_):
            _, ans, _, upd, _ = dep.feeds[m.id][k].functions.latestRoundData().call()
            fc = c.functions.feedConfig(m.id, i).call()
            feeds[k] = Feed(ans, m.feed_decimals, upd, fc[1], fc[2], fc[3], reported=k in dep.reported)
        mm = MarketMirror(m.id, feeds, "dynamic", params=m.params)
        mm.ramps = [Ramp(*c.functions.ramp(m.id, True).call()), Ramp(*c.functions.ramp(m.id, False).call())]
        t = c.functions.tailFeed(m.id, True).call()
        u = c.functions.tailFeed(m.id, False).call()
        if t[2]:
            mm.publish_tail(t[1], u[1], t[2])
        return mm

    def check(label: str) -> int:
        now = chain.latest_timestamp()
        mm = mirror()
        n = 0
        for is_long in (True, False):
            for size in (0, 10**17, 3 * 10**18, 10**21):
                got = c.functions.quote(m.id, is_long, size).call()
                want = mm.quote(is_long, size, now)
                assert tuple(got) == tuple(vars(want).values()), f"{label} {is_long} {size}: {got} != {want}"
                n += 1
        return n

    admin = dep.admin
    assert check("no tail") == 8
    base = c.functions.quote(m.id, True, 10**18).call()[4]
    chain.transact(c.functions.publishTail(m.id, 3 * 10**18, WAD), admin)
    check("tail long 3, short 1")
    assert c.functions.quote(m.id, True, 10**18).call()[4] > base, "the long tail raised the long IMF"
    chain.transact(c.functions.publishTail(m.id, 5 * 10**18, 2 * 10**18 + 12_345), admin)
    check("tails at and above the cap")
    hb = c.functions.feedConfig(m.id, 1).call()[1]
    chain.set_next_timestamp(chain.latest_timestamp() + hb + 1)
    dep.set_feeds(m.id, {k: dep.feeds[m.id][k].functions.latestRoundData().call()[1] for k in FEED_KINDS_})
    assert not c.functions.tailFeed(m.id, True).call()[0], "stale after the heartbeat"
    check("stale tail")
    assert not c.functions.quote(m.id, True, 10**18).call()[13], "a stale tail fails closed (riskFeedsOk false)"
