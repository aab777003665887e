"""Tests for ballast.mirror.EngineMirror on pure Python (no chain): token conservation over random
sequences, liquidation of healthy accounts, and reverts that leave the mirror untouched."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from ballast.config import MarketConfig, load_config, to_wad
from ballast.mirror import FEEDS, EngineMirror, Feed, MarketMirror, MirrorRevert, wad
from ballast.model import Ramp, RiskInputs, compute

USD = 10**6  # the mock USD token has 6 decimals
TOKEN_SCALE = 10**12  # token units -> WAD USD
T0 = 1_700_000_000
DYN, STAT = 0, 1
ACCOUNTS = [f"0x{i:040x}" for i in range(1, 9)]


def _market_cfg() -> MarketConfig:
    return load_config().markets[0]


def _feeds(m: MarketConfig, now: int) -> dict[str, Feed]:
    return {k: Feed(m.feed_answer(k, m.initial[k]), m.feed_decimals, now, m.heartbeat_sec, *m.bounds_wad(k))
            for k in FEEDS}


def make_mirror(now: int = T0) -> EngineMirror:
    """The shipped engine settings; a dynamic BTC market (0) and a static copy of it (1); the vault
    and insurance fund seeded as on a local chain."""
    cfg = load_config()
    m = _market_cfg()
    mir = EngineMirror(*cfg.engine.engine_config_tuple(), token_scale=TOKEN_SCALE)
    dyn = MarketMirror(DYN, _feeds(m, now), "dynamic", params=m.params)
    x = RiskInputs(wad(m.initial["volatility"]), 0, wad(m.initial["depth"]), 0, 0, 0, 0, wad(m.initial["price"]), True)
    mmf = compute(m.params, x).mmf_base_wad
    dyn.ramps = [Ramp(mmf, mmf, now, m.params.mmf_ramp_wad_per_sec), Ramp(mmf, mmf, now, m.params.mmf_ramp_wad_per_sec)]
    s = m.static_calm
    stat = MarketMirror(STAT, _feeds(m, now), "static", static_imf_wad=to_wad(s.imf), static_mmf_wad=to_wad(s.mmf),
                        static_impact_wad=m.params.impact_wad, static_liq_fee_wad=m.params.liq_fee_wad)
    mir.markets = {DYN: dyn, STAT: stat}
    mir.fund_vault(int(cfg.engine.vault_seed_usd) * USD)
    mir.fund_insurance(int(cfg.engine.insurance_seed_usd) * USD)
    return mir


def conserved(mir: EngineMirror) -> None:
    """Every token is somewhere: collateral (possibly negative before bad debt is realized), vault,
    insurance, fees; only deposits, withdrawals and liquidator rewards cross the boundary."""
    assert mir.sum_collateral() + mir.vault + mir.insurance + mir.fees == mir.net_deposits
    for mid, m in mir.markets.items():
        sizes = [a.positions[mid].size for a in mir.accounts.values() if mid in a.positions]
        assert m.oi_long == sum(s for s in sizes if s > 0) and m.oi_short == -sum(s for s in sizes if s < 0)
    assert mir.bad_debt_total == mir.bad_debt_covered + mir.bad_debt_socialized
    assert mir.insurance >= 0


def set_price(mir: EngineMirror, price: float, now: int, vol: float | None = None) -> None:
    for m in mir.markets.values():
        f = m.feeds["price"]
        f.answer = round(price * 10**f.decimals)
        if vol is not None:
            v = m.feeds["volatility"]
            v.answer = round(vol * 10**v.decimals)
        for feed in m.feeds.values():
            feed.updated_at = now


def price_of(mir: EngineMirror) -> float:
    f = mir.markets[DYN].feeds["price"]
    scale: int = 10**f.decimals
    return f.answer / scale


def open_size(mir: EngineMirror, a: str, mid: int, leverage: float, side: int) -> int:
    """A size worth ``leverage`` x the account's collateral at the current price."""
    usd = mir.account(a).collateral / USD * leverage
    return side * wad(usd / price_of(mir))


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize("seed", range(3))
def test_random_sequences_conserve_tokens_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mir = make_mirror()
    conserved(mir)
    now, price = T0, 50_000.0
    deposited = {a: 0 for a in ACCOUNTS}
    outcomes: dict[str, int] = {}
    for step in range(400):
        a = ACCOUNTS[int(rng.integers(len(ACCOUNTS)))]
        mid = int(rng.integers(2))
        op = str(rng.choice(["deposit", "open", "open", "reduce", "close", "move", "move", "liquidate", "withdraw"]))
        before = copy.deepcopy(mir)
        try:
            if op == "deposit" or deposited[a] == 0:
                amt = int(rng.integers(100, 50_000)) * USD
                mir.deposit(a, amt)
                deposited[a] += amt
            elif op == "open":
                lev = float(rng.choice([1.0, 5.0, 20.0, 60.0, 200.0]))  # some exceed the limit and revert
                delta = open_size(mir, a, mid, lev, int(rng.choice([-1, 1])))
                if delta == 0:
                    continue
                mir.trade(a, mid, delta, now)
            elif op in ("reduce", "close"):
                pos = mir.account(a).positions.get(mid)
                if pos is None or pos.size == 0:
                    continue
                delta = -pos.size if op == "close" else -(pos.size // int(rng.integers(2, 5))) or -pos.size
                mir.trade(a, mid, delta, now)
            elif op == "move":
                now += int(rng.integers(12, 900))
                shock = float(rng.normal(0.0, 0.02)) + (-0.15 if rng.random() < 0.05 else 0.0)
                price = float(np.clip(price * math.exp(shock), 1_000.0, 1e6))
                set_price(mir, price, now, vol=float(np.clip(0.5 + rng.normal(0, 0.2), 0.1, 3.0)))
                f = mir.markets[DYN].feeds["funding"]
                f.answer = round(float(rng.uniform(-0.002, 0.002)) * 10**f.decimals)
            elif op == "liquidate":
                liquidatable = [(acc, m_) for acc, st in mir.accounts.items() for m_ in (DYN, STAT)
                                if st.positions.get(m_) and st.positions[m_].size and mir.health(acc, now).liquidatable]
                target = liquidatable[0] if liquidatable else (a, mid)
                res = mir.liquidate(*target, now)
                assert res.reward_tokens <= res.penalty_tokens and res.health_before.liquidatable
            else:
                mir.withdraw(a, int(rng.integers(1, 20_000)) * USD, now)
            outcomes[op] = outcomes.get(op, 0) + 1
        except MirrorRevert as e:
            assert mir == before, f"step {step}: {op} reverted with {e} but changed the mirror"
            outcomes[e.error] = outcomes.get(e.error, 0) + 1
        conserved(mir)
    # The sequence exercised what it claims to.
    assert outcomes.get("open", 0) > 20 and outcomes.get("close", 0) > 5 and outcomes.get("InitialMarginViolated", 0) > 5
    assert outcomes.get("withdraw", 0) > 5 and outcomes.get("liquidate", 0) > 0 and outcomes.get("AccountHealthy", 0) > 0


def test_crash_liquidates_and_conserves_with_bad_debt() -> None:
    mir = make_mirror()
    now = T0
    for i, a in enumerate(ACCOUNTS[:4]):
        mir.deposit(a, 10_000 * USD)
        mir.trade(a, DYN, open_size(mir, a, DYN, 12.0, 1 if i % 2 == 0 else -1), now)
        mir.trade(a, STAT, open_size(mir, a, STAT, 8.0, 1), now)
    conserved(mir)
    now += 300
    set_price(mir, 50_000.0 * 0.80, now)  # -20%: the longs are far under water
    liquidated = 0
    for a in ACCOUNTS[:4]:
        for mid in (DYN, STAT):
            while mir.account(a).positions.get(mid) and mir.account(a).positions[mid].size and mir.health(a, now).liquidatable:
                res = mir.liquidate(a, mid, now)
                assert res.size_closed_wad != 0
                liquidated += 1
                conserved(mir)
    assert liquidated >= 2 and mir.bad_debt_total > 0
    assert all(not mir.health(a, now).liquidatable for a in ACCOUNTS[:4])


# --------------------------------------------------------------------------- reverts


def _funded_with_position(lev: float = 10.0) -> tuple[EngineMirror, str]:
    mir = make_mirror()
    a = ACCOUNTS[0]
    mir.deposit(a, 20_000 * USD)
    mir.trade(a, DYN, open_size(mir, a, DYN, lev, 1), T0)
    return mir, a


def test_liquidating_a_healthy_account_raises_account_healthy() -> None:
    mir, a = _funded_with_position()
    now = T0 + 3_600 * 5  # funding accrues meanwhile: the revert must undo the accrual too
    set_price(mir, 50_500.0, now)
    f = mir.markets[DYN].feeds["funding"]
    f.answer = round(0.001 * 10**f.decimals)
    before = copy.deepcopy(mir)
    assert not mir.health(a, now).liquidatable
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, DYN, now)
    assert info.value.error == "AccountHealthy"
    eq, maint = info.value.data
    assert isinstance(eq, int) and isinstance(maint, int) and eq >= maint
    assert mir == before
    with pytest.raises(MirrorRevert) as info:
        mir.liquidate(a, STAT, now)  # no position there
    assert info.value.error == "NoPosition" and mir == before


@pytest.mark.parametrize("case", ["over_leverage", "stale_price", "sequencer_down", "withdraw_too_much",
                                  "withdraw_below_initial", "zero_size", "zero_deposit", "unknown_account"])
def test_reverting_calls_leave_the_mirror_unchanged(case: str) -> None:
    mir, a = _funded_with_position()
    now = T0 + 60
    set_price(mir, 49_000.0, now)
    mir.trade(a, STAT, open_size(mir, a, STAT, 5.0, -1), now)
    before = copy.deepcopy(mir)
    expected = {"over_leverage": "InitialMarginViolated", "stale_price": "PriceFeedInvalid",
                "sequencer_down": "SequencerDown", "withdraw_too_much": "InsufficientCollateral",
                "withdraw_below_initial": "InitialMarginViolated", "zero_size": "ZeroSize",
                "zero_deposit": "ZeroAmount", "unknown_account": "InitialMarginViolated"}[case]
    held = mir.markets[DYN]  # a reference taken before the revert (the lab holds one per block)
    with pytest.raises(MirrorRevert) as info:
        if case == "over_leverage":
            mir.trade(a, DYN, open_size(mir, a, DYN, 150.0, 1), now)
        elif case == "stale_price":
            mir.trade(a, DYN, -1, now + 4_000)  # past the heartbeat
        elif case == "sequencer_down":
            mir.sequencer_up = False
            before.sequencer_up = False
            mir.trade(a, DYN, open_size(mir, a, DYN, 1.0, 1), now)  # accrues, settles, writes, then reverts
        elif case == "withdraw_too_much":
            mir.withdraw(a, mir.account(a).collateral + 1, now)
        elif case == "withdraw_below_initial":
            mir.withdraw(a, mir.account(a).collateral - 10 * USD, now)
        elif case == "zero_size":
            mir.trade(a, DYN, 0, now)
        elif case == "zero_deposit":
            mir.deposit(a, 0)
        else:
            mir.trade(ACCOUNTS[5], DYN, wad(1.0), now)  # no collateral at all
    assert info.value.error == expected
    assert mir == before, f"{case} changed the mirror"
    assert mir.markets[DYN] is held, "a revert must restore the market in place, not replace the object"
    # And the mirror still works after the revert.
    mir.trade(a, DYN, -(mir.account(a).positions[DYN].size // 2), now) if mir.sequencer_up else None
    conserved(mir)


def test_exit_during_a_depth_outage_pays_open_time_slippage() -> None:
    """Mirror of MarginEngine._exitImpact (finding L2): with the depth feed bad the live depth falls
    back to its floor; a close still costs what it costs with the feed up, and makes no bad debt."""
    mir, a = _funded_with_position(5.0)
    now = T0 + 60
    ok = copy.deepcopy(mir)
    c0 = mir.account(a).collateral
    ok.trade(a, DYN, -ok.account(a).positions[DYN].size, now)
    normal_cost = c0 - ok.account(a).collateral
    depth = mir.markets[DYN].feeds["depth"]
    depth.answer = 0  # non-positive: bad
    bad0 = mir.bad_debt_total
    q = mir.markets[DYN].quote(True, 0, mir.account(a).positions[DYN].size, now, True)
    assert not q.risk_feeds_ok and q.impact_wad > 100 * mir.account(a).positions[DYN].slip_snap
    mir.trade(a, DYN, -mir.account(a).positions[DYN].size, now)
    assert mir.bad_debt_total == bad0
    assert c0 - mir.account(a).collateral == normal_cost
    conserved(mir)
