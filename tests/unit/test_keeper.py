"""Tests for ballast.keeper without a chain: Chainlink-style push rules, the restart-safe
OracleKeeper.decide, and FeedModel (no look-ahead; trailing and predictive volatility)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.errors import ValidationError
from ballast.keeper import FEEDS, FeedModel, OracleKeeper, PushRules, annualized, intraday_vol
from ballast.scenarios import ScenarioPath, build

PROPS = settings(max_examples=50, deadline=None, database=None, derandomize=True)
DEC = 8
NOW = 1_700_000_000
TARGETS = {"price": 50_000.0, "volatility": 0.55, "funding": 0.0001, "depth": 40_000_000.0, "skew": -0.02}


# --------------------------------------------------------------------------- PushRules


def test_push_rules_deviation_thresholds() -> None:
    r = PushRules()
    # Relative deviation for the positive feeds (0.5%, 5%, 5%).
    assert not r.due("price", 100.0, 100.49, 0) and not r.due("price", 100.0, 99.51, 0)
    assert r.due("price", 100.0, 100.51, 0) and r.due("price", 100.0, 99.49, 0)
    assert not r.due("volatility", 0.5, 0.524, 0) and r.due("volatility", 0.5, 0.526, 0)
    assert not r.due("depth", 1e6, 0.951e6, 0) and r.due("depth", 1e6, 0.949e6, 0)
    # Absolute deviation for the signed feeds (a relative rule would never settle around 0).
    assert not r.due("skew", 0.0, 0.005, 0) and r.due("skew", 0.0, 0.0051, 0) and r.due("skew", 0.0, -0.0051, 0)
    assert not r.due("funding", 0.0, 0.00002, 0) and r.due("funding", 0.0, 0.000021, 0)
    assert not r.due("funding", -0.001, -0.00099, 0)


def test_push_rules_heartbeat_and_missing_answer() -> None:
    r = PushRules(refresh_sec=1_800)
    for k in FEEDS:
        v = TARGETS[k]
        assert r.due(k, None, v, 0)  # nothing on chain yet
        assert not r.due(k, v, v, 1_799)
        assert r.due(k, v, v, 1_800) and r.due(k, v, v, 10**9)  # refresh due even without deviation
    assert not PushRules(refresh_sec=60).due("price", 1.0, 1.0, 59)


@PROPS
@given(st.sampled_from(FEEDS), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.integers(0, 10_000))
def test_push_rules_property(kind: str, onchain: float, target: float, age: int) -> None:
    r = PushRules()
    if kind in ("price", "volatility", "depth"):
        onchain, target = abs(onchain) + 1e-3, abs(target) + 1e-3
    due = r.due(kind, onchain, target, age)
    if age >= r.refresh_sec:
        assert due
    elif kind in ("skew", "funding"):
        assert due == (abs(target - onchain) > (r.skew_abs if kind == "skew" else r.funding_abs))
    else:
        dev = {"price": r.price_dev, "volatility": r.vol_dev, "depth": r.depth_dev}[kind]
        assert due == (abs(target - onchain) > dev * onchain)
    assert not r.due(kind, onchain, onchain, min(age, r.refresh_sec - 1))  # no deviation, fresh: never due


# --------------------------------------------------------------------------- OracleKeeper.decide


def encode(v: float) -> int:
    scale: int = 10**DEC
    return round(v * scale)


class FakeFeeds:
    """The on-chain side: (answer, updated_at) per feed; a push can be dropped."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[int, int]] = {}

    def apply(self, pushes: dict[str, int], now: int, dropped: frozenset[str] = frozenset()) -> None:
        for k, v in pushes.items():
            if k not in dropped:
                self.state[k] = (v, now)


def test_nothing_pushed_when_onchain_equals_targets() -> None:
    onchain = {k: (encode(v), NOW - 60) for k, v in TARGETS.items()}
    k = OracleKeeper(decimals=DEC)
    assert k.decide(NOW, TARGETS, onchain) == {}
    assert OracleKeeper(decimals=DEC).decide(NOW, TARGETS, onchain) == {}  # a restarted keeper too
    assert k.pushes == 0


def test_first_round_pushes_everything_then_nothing() -> None:
    feeds = FakeFeeds()
    k = OracleKeeper(decimals=DEC)
    first = k.decide(NOW, TARGETS, feeds.state)
    assert first == {kind: encode(v) for kind, v in TARGETS.items()}
    feeds.apply(first, NOW)
    assert k.decide(NOW + 12, TARGETS, feeds.state) == {}
    assert k.pushes == len(FEEDS)


def test_dropped_push_is_retried_exactly_once() -> None:
    feeds = FakeFeeds()
    k = OracleKeeper(decimals=DEC)
    feeds.apply(k.decide(NOW, TARGETS, feeds.state), NOW)
    moved = {**TARGETS, "price": 45_000.0, "volatility": 0.9}
    p1 = k.decide(NOW + 12, moved, feeds.state)
    assert p1 == {"price": encode(45_000.0), "volatility": encode(0.9)}
    feeds.apply(p1, NOW + 12, dropped=frozenset(p1))  # both transactions dropped: chain unchanged
    p2 = k.decide(NOW + 24, moved, feeds.state)
    assert p2 == p1  # pushed again, once each
    feeds.apply(p2, NOW + 24)
    assert k.decide(NOW + 36, moved, feeds.state) == {}  # landed: nothing more
    # A partial drop: only the dropped feed is retried.
    moved2 = {**moved, "price": 40_000.0, "skew": -0.1}
    p3 = k.decide(NOW + 48, moved2, feeds.state)
    assert set(p3) == {"price", "skew"}
    feeds.apply(p3, NOW + 48, dropped=frozenset({"skew"}))
    assert k.decide(NOW + 60, moved2, feeds.state) == {"skew": encode(-0.1)}


def test_stale_price_suppresses_price_pushes_only() -> None:
    feeds = FakeFeeds()
    k = OracleKeeper(decimals=DEC)
    out = k.decide(NOW, TARGETS, feeds.state, stale_price=True)
    assert "price" not in out and set(out) == set(FEEDS) - {"price"}
    assert k.skipped_stale == 1
    feeds.apply(out, NOW)
    moved = {**TARGETS, "price": 10.0}
    assert k.decide(NOW + 10**6, moved, feeds.state, stale_price=True).keys() == set(FEEDS) - {"price"}
    assert k.skipped_stale == 2
    assert k.decide(NOW + 10**6, moved, feeds.state)["price"] == encode(10.0)  # back: pushed at once


@st.composite
def rounds(draw: st.DrawFn) -> list[tuple[dict[str, float], frozenset[str], bool, int]]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        t = {k: v * draw(st.floats(0.9, 1.1)) if k in ("price", "volatility", "depth") else v + draw(st.floats(-0.01, 0.01))
             for k, v in TARGETS.items()}
        out.append((t, frozenset(draw(st.sets(st.sampled_from(FEEDS)))), draw(st.booleans()), draw(st.integers(1, 2_400))))
    return out


@PROPS
@given(rounds())
def test_decide_is_restart_safe(plan: list[tuple[dict[str, float], frozenset[str], bool, int]]) -> None:
    """The decision depends only on the chain: a keeper restarted before any round decides exactly
    what the long-running one does; after a round whose pushes all landed, re-deciding with the
    same targets pushes nothing (no double push); a dropped push is repeated the next round."""
    feeds = FakeFeeds()
    keeper = OracleKeeper(decimals=DEC)
    now = NOW
    for targets, dropped, stale, dt in plan:
        now += dt
        d = keeper.decide(now, targets, feeds.state, stale_price=stale)
        assert d == OracleKeeper(decimals=DEC).decide(now, targets, feeds.state, stale_price=stale)
        assert all(d[k] == encode(targets[k]) for k in d) and not (stale and "price" in d)
        before = dict(feeds.state)
        feeds.apply(d, now, dropped)
        again = keeper.decide(now, targets, feeds.state, stale_price=stale)
        assert set(again) == set(d) & dropped  # exactly the dropped ones, once each
        assert all(feeds.state.get(k) == before.get(k) for k in dropped)


def test_encode_rounds_to_feed_decimals() -> None:
    assert OracleKeeper(decimals=8).encode(0.123456789) == 12_345_679
    assert OracleKeeper(decimals=6).encode(-0.0000015) == -2
    assert annualized(1.0) == pytest.approx(math.sqrt(365 * 86_400))


# --------------------------------------------------------------------------- FeedModel


def _garch_returns(rng: np.random.Generator, n: int, sigma_ann: float, dt_sec: int) -> np.ndarray:
    """GARCH(1,1) log returns (alpha 0.1, beta 0.85) with unconditional volatility ``sigma_ann``:
    volatility clusters, so a fitted GARCH has something to forecast."""
    var_bar = sigma_ann**2 * dt_sec / 31_536_000
    omega, alpha, beta = 0.05 * var_bar, 0.1, 0.85
    r, v = np.empty(n), var_bar
    z = rng.standard_normal(n)
    for i in range(n):
        r[i] = math.sqrt(v) * z[i]
        v = omega + alpha * r[i] ** 2 + beta * v
    return r


def small_path(seed: int, blocks: int = 90, n_hist: int = 420, ratio: int = 3) -> ScenarioPath:
    """A path of ``blocks`` 5-minute blocks after ``n_hist`` history samples at ``ratio`` x block time."""
    rng = np.random.default_rng(seed)
    block_sec = 300
    hist = 50_000.0 * np.exp(np.cumsum(_garch_returns(rng, n_hist, 0.6, ratio * block_sec)))
    path = hist[-1] * np.exp(np.cumsum(_garch_returns(rng, blocks, 0.8, block_sec)))
    return ScenarioPath(name="small", block_sec=block_sec, price=path, depth_mult=np.ones(blocks),
                        skew_shock=np.zeros(blocks), funding_shock=np.zeros(blocks),
                        oracle_stale=np.zeros(blocks, dtype=bool), oracle_delay=np.zeros(blocks, dtype=np.int64),
                        history=hist, history_sec=ratio * block_sec)


def _perturb_after(sp: ScenarioPath, b: int, seed: int) -> ScenarioPath:
    rng = np.random.default_rng(seed)
    price = sp.price.copy()
    price[b + 1:] *= np.exp(rng.normal(0.0, 0.2, price.size - b - 1))  # a different future, crash included
    price[-1] *= 0.3
    return replace(sp, price=price)


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(st.integers(0, 3), st.integers(0, 88), st.sampled_from([1, 2, 3, 4]), st.integers(0, 100))
def test_trailing_feed_model_has_no_look_ahead(seed: int, b: int, ratio: int, oi: int) -> None:
    sp = small_path(seed, ratio=ratio)
    alt = _perturb_after(sp, b, seed + 1)
    m1, m2 = FeedModel(sp), FeedModel(alt)
    np.testing.assert_array_equal(m1.vol[: b + 1], m2.vol[: b + 1])
    assert m1.sigma_ref == m2.sigma_ref
    for blk in range(max(0, b - 3), b + 1):
        assert m1.targets(blk, 10.0 + oi, 5.0) == m2.targets(blk, 10.0 + oi, 5.0)
    assert not np.array_equal(m1.vol, m2.vol) or b >= 88 - ratio  # the future does move later vols


def test_predictive_feed_model_has_no_look_ahead() -> None:
    # 420 history + 300 path samples on one grid: GARCH fits at grid bars 418 (history only) and 668
    # (path block 248), so block 200 is before the re-fit and block 260 after it.
    sp = small_path(7, blocks=300, ratio=1)
    m1 = FeedModel(sp, mode="predictive")
    for b in (200, 260):
        m2 = FeedModel(_perturb_after(sp, b, 99), mode="predictive")
        np.testing.assert_array_equal(m1.vol[: b + 1], m2.vol[: b + 1])
        assert m1.targets(b, 3.0, 1.0) == m2.targets(b, 3.0, 1.0)
        assert not np.array_equal(m1.vol, m2.vol)


def test_trailing_and_predictive_vols_are_finite_and_positive() -> None:
    sp = small_path(3)
    t, p = FeedModel(sp, mode="trailing"), FeedModel(sp, mode="predictive")
    for m in (t, p):
        assert m.vol.shape == (sp.blocks,)
        assert np.isfinite(m.vol).all() and (m.vol > 0).all()
        assert 0.05 < m.sigma_ref < 5.0
        assert 0.2 < float(np.median(m.vol)) < 3.0  # the path's vol is 60-80% annualized
    assert not np.array_equal(t.vol, p.vol)
    real = FeedModel(build("btc_2021_12_04"))
    assert np.isfinite(real.vol).all() and (real.vol > 0).all()
    assert real.vol[real.scenario.crash_block + 3] > real.vol[0]  # the crash raises the trailing estimate


def test_feed_model_targets_are_within_feed_conventions() -> None:
    sp = build("funding_squeeze", seed=2)
    m = FeedModel(sp)
    for b in range(0, sp.blocks, 7):
        t = m.targets(b, oi_long=30.0, oi_short=10.0)
        assert set(t) == set(FEEDS)
        assert t["price"] == sp.price[b] and t["volatility"] >= 0.01
        assert t["depth"] >= 1_000.0 and -0.9 <= t["skew"] <= 0.9
        assert abs(t["funding"]) <= m.funding_cap
    lagged = FeedModel(build("oracle_fault", seed=2))
    b = int(np.argmax(lagged.scenario.oracle_delay > 0))
    lag = int(lagged.scenario.oracle_delay[b])
    assert lagged.targets(b, 0.0, 0.0)["price"] == lagged.scenario.price[b - lag]  # the oracle lags the market
    with pytest.raises(ValidationError) as info:
        FeedModel(sp, mode="psychic")  # type: ignore[arg-type]
    assert info.value.field == "keeper.mode"


# ------------------------------------------------------------------------------ operations


from ballast.keeper import GWEI, FeeCapExceeded, GasStrategy, KeeperMetrics, StepReport, round_log, serve_metrics  # noqa: E402


def test_gas_strategy_base_fee_times_multiplier_plus_tip() -> None:
    g = GasStrategy(base_fee_multiplier=2.0, priority_fee_gwei=1.5, max_fee_gwei=100.0)
    assert g.fees(10 * GWEI) == {"maxFeePerGas": 21_500_000_000, "maxPriorityFeePerGas": 1_500_000_000}
    # The node's suggested tip when none is given.
    assert GasStrategy(priority_fee_gwei=None).fees(10 * GWEI, 3 * GWEI) == {
        "maxFeePerGas": 23 * GWEI, "maxPriorityFeePerGas": 3 * GWEI}
    # Capped: maxFee never above the cap, the tip never above maxFee.
    assert GasStrategy(3.0, 50.0, 40.0).fees(30 * GWEI) == {"maxFeePerGas": 40 * GWEI, "maxPriorityFeePerGas": 40 * GWEI}
    # Wei exact at tiny base fees (L2s): rounded up, never below the base fee.
    assert GasStrategy(1.0, 0.0, 1.0).fees(7) == {"maxFeePerGas": 7, "maxPriorityFeePerGas": 0}


def test_gas_strategy_cap_and_legacy() -> None:
    g = GasStrategy(2.0, 1.0, 20.0)
    with pytest.raises(FeeCapExceeded, match=r"base fee 25\.000 gwei is above the fee cap 20 gwei"):
        g.fees(25 * GWEI)
    assert g.fees(None, gas_price_wei=7 * GWEI) == {"gasPrice": 7 * GWEI}
    with pytest.raises(FeeCapExceeded, match="gas price"):
        g.fees(None, gas_price_wei=21 * GWEI)
    for bad in ({"base_fee_multiplier": 0.9}, {"priority_fee_gwei": -1.0}, {"max_fee_gwei": 0.0},
                {"base_fee_multiplier": math.nan}):
        with pytest.raises(ValidationError):
            GasStrategy(**bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(base=st.integers(0, 10**13), mult=st.floats(1.0, 10.0), tip=st.floats(0.0, 100.0), cap=st.floats(0.001, 5_000.0))
def test_gas_strategy_property(base: int, mult: float, tip: float, cap: float) -> None:
    g = GasStrategy(mult, tip, cap)
    try:
        f = g.fees(base)
    except FeeCapExceeded:
        assert base > g.cap_wei
        return
    assert base <= f["maxFeePerGas"] <= g.cap_wei
    assert 0 <= f["maxPriorityFeePerGas"] <= f["maxFeePerGas"]


def test_round_log_is_one_json_line_with_the_operator_fields() -> None:
    rep = StepReport({"volatility": 5_000_000, "depth": 7}, {}, True, True, "0xabc", block=42, gas_used=123_456,
                     fee_wei=987_654_321, latency_sec=0.12345, due={"volatility": 5_000_000, "depth": 7})
    line = round_log(3, rep, now=0.0, sender="0xS", market=1)
    assert "\n" not in line
    rec = json.loads(line)
    assert rec == {"ts": "1970-01-01T00:00:00.000+00:00", "event": "round", "round": 3, "status": "pushed", "market": 1,
                   "block": 42, "pushed": ["depth", "volatility"], "answers": {"depth": 7, "volatility": 5_000_000},
                   "tx": "0xabc", "gas_used": 123_456, "fee_paid_wei": 987_654_321, "latency_s": 0.123,
                   "poked": True, "accrued": True, "failed": {}, "skipped": None, "sender": "0xS"}
    assert json.loads(round_log(4, StepReport({}, {}, False, block=43)))["status"] == "idle"
    assert json.loads(round_log(5, StepReport({}, {"price": "x"}, False)))["status"] == "failed"
    # A reverted push that carried only the calibrated tails failed too (it is not a poke failure).
    assert StepReport({}, {"tail_long": "x", "tail_short": "x"}, False).status == "failed"
    assert json.loads(round_log(6, StepReport({"price": 1}, {"poke": "0x"}, False, True, "0x1")))["status"] == "partial"
    skipped = json.loads(round_log(7, StepReport({}, {}, False, skipped="1 transaction(s) pending")))
    assert skipped["status"] == "skipped" and skipped["tx"] is None and skipped["skipped"].startswith("1 transaction")


def test_metrics_health_and_prometheus_text() -> None:
    m = KeeperMetrics("0xS", 0, stale_after_sec=60)
    assert not m.health(now=m.started)["ok"]  # no round yet
    m.record(StepReport({"price": 1, "skew": 2}, {}, True, True, "0xt1", block=10, gas_used=100, fee_wei=5), now=1_000.0)
    m.record(StepReport({}, {}, False, block=11), now=1_010.0)
    h = m.health(now=1_020.0)
    assert h["ok"] and h["rounds"] == 2 and h["transactions"] == 1 and h["feeds_pushed"] == 2 and h["last_tx"] == "0xt1"
    assert h["last_round_time"] == 1_010.0 and h["last_block"] == 11 and h["fee_paid_wei"] == 5
    assert not m.health(now=1_071.0)["ok"]  # stale
    for _ in range(3):
        m.record(StepReport({}, {"price": "reverted"}, False, tx_hash="0xbad", block=12), now=1_030.0)
    h = m.health(now=1_031.0)
    assert not h["ok"] and h["failures"] == 3 and h["consecutive_failures"] == 3
    text = m.prometheus(now=1_031.0)
    assert text.endswith("\n")
    samples = {}
    for ln in text.splitlines():
        if ln.startswith("#"):
            assert ln.startswith(("# HELP ballast_keeper_", "# TYPE ballast_keeper_"))
            continue
        name_lbl, value = ln.rsplit(" ", 1)
        samples[name_lbl.split("{")[0]] = float(value)
        assert name_lbl.count("{") == 1 and name_lbl.endswith("}")
    assert samples["ballast_keeper_rounds_total"] == 5 and samples["ballast_keeper_failures_total"] == 3
    assert samples["ballast_keeper_up"] == 0 and samples["ballast_keeper_transactions_total"] == 4
    assert 'ballast_keeper_last_tx_info{sender="0xS",market="0",tx="0xbad"} 1' in text


def test_metrics_endpoint_serves_health_and_metrics() -> None:
    import urllib.error
    import urllib.request

    m = KeeperMetrics("0xS")
    srv = serve_metrics(m, 0)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/health", timeout=5)
        assert e.value.code == 503 and json.loads(e.value.read())["rounds"] == 0
        m.record(StepReport({}, {}, False, block=1))
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["ok"]
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "ballast_keeper_rounds_total{" in r.read().decode()
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------ intraday volatility (issue 12)


@settings(max_examples=30, deadline=None, database=None, derandomize=True)
@given(st.integers(0, 3), st.integers(0, 88), st.sampled_from([1, 3, 24]))
def test_intraday_feed_model_has_no_look_ahead(seed: int, b: int, ratio: int) -> None:
    sp = small_path(seed, ratio=ratio)
    m1, m2 = FeedModel(sp, mode="intraday"), FeedModel(_perturb_after(sp, b, seed + 1), mode="intraday")
    np.testing.assert_array_equal(m1.vol[: b + 1], m2.vol[: b + 1])
    assert m1.targets(b, 4.0, 2.0) == m2.targets(b, 4.0, 2.0)
    assert b == 88 or not np.array_equal(m1.vol, m2.vol)  # every later block moves it


def test_intraday_vol_is_the_ewma_recursion_per_block() -> None:
    prices = np.array([100.0, 101.0, 99.0, 99.0, 105.0])
    lam, sigma0, block_sec = 0.9, 0.5, 3_600
    per_year = 365 * 86_400 / block_sec
    v, want = sigma0**2, []
    for a, c in zip(prices[:-1], prices[1:]):
        v = lam * v + (1 - lam) * math.log(c / a) ** 2 * per_year
        want.append(math.sqrt(v))
    np.testing.assert_allclose(intraday_vol(sigma0, prices, block_sec, lam), want, rtol=1e-12)


def test_intraday_equals_trailing_when_the_history_is_at_block_spacing() -> None:
    sp = small_path(5, ratio=1)
    np.testing.assert_allclose(FeedModel(sp, mode="intraday").vol, FeedModel(sp).vol, rtol=1e-9)
    flash = build("flash_crash", 11)
    np.testing.assert_allclose(FeedModel(flash, mode="intraday").vol, FeedModel(flash).vol, rtol=1e-9)


def test_intraday_moves_every_block_on_a_daily_history() -> None:
    sp = small_path(2, ratio=24)
    t, i = FeedModel(sp), FeedModel(sp, mode="intraday")
    assert np.count_nonzero(np.diff(t.vol)) <= sp.blocks // 24 + 1  # the trailing feed: once a history bar
    assert np.count_nonzero(np.diff(i.vol)) >= sp.blocks - 2  # intraday: every block
    assert i.vol[0] != t.vol[0] and np.isfinite(i.vol).all() and (i.vol > 0).all()


@pytest.mark.parametrize(("args", "match"), [
    ((0.0, np.array([1.0, 2.0]), 300, 0.94), "start_sigma"),
    ((0.5, np.array([1.0, 2.0]), 300, 1.0), "lam"),
    ((0.5, np.array([1.0, 2.0]), 0, 0.94), "block_sec"),
    ((0.5, np.array([1.0]), 300, 0.94), "prices"),
    ((0.5, np.array([1.0, -2.0]), 300, 0.94), "prices"),
])
def test_intraday_vol_rejects_bad_input(args: tuple[float, npt.NDArray[np.float64], int, float], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        intraday_vol(*args)


def test_unknown_keeper_mode_names_the_three() -> None:
    with pytest.raises(ValidationError, match="intraday"):
        FeedModel(small_path(1), mode="hourly")  # type: ignore[arg-type]
