"""Tests for ballast.scenarios: built-in scenarios, seeding, the real 2021-12-04 crash, OHLC path
reconstruction and scenario TOML files (valid ones build, malformed ones name the field)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ballast.data import parse_utc
from ballast.errors import ValidationError
from ballast.scenarios import (
    DEFAULT_SCENARIO,
    GENERATORS,
    REAL_REPLAYS,
    ScenarioPath,
    _params_of,
    build,
    build_source,
    check_source,
    list_scenarios,
    load_scenario_file,
    ohlc_to_blocks,
    parse_scenario,
)

PROPS = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FEW = settings(PROPS, max_examples=30)

HISTORICAL = tuple(sorted(REAL_REPLAYS))
SYNTHETIC = tuple(sorted(k for k in GENERATORS if k not in HISTORICAL))
ARRAYS = ("price", "depth_mult", "skew_shock", "funding_shock", "oracle_stale", "oracle_delay", "history")


def _same(a: ScenarioPath, b: ScenarioPath) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ARRAYS)


def _check_path(sp: ScenarioPath) -> None:
    n = sp.blocks
    assert n >= 10 and sp.block_sec > 0 and sp.history_sec > 0
    for f in ARRAYS[:-1]:
        assert getattr(sp, f).shape == (n,), f
    assert sp.price.dtype == np.float64 and sp.oracle_stale.dtype == bool
    assert np.issubdtype(sp.oracle_delay.dtype, np.integer) and (sp.oracle_delay >= 0).all()
    for f in ("price", "depth_mult", "history"):
        a = getattr(sp, f)
        assert np.isfinite(a).all() and (a > 0).all(), f
    assert np.isfinite(sp.skew_shock).all() and np.isfinite(sp.funding_shock).all()
    assert sp.history.size >= 20
    assert 0.0 <= sp.long_bias <= 1.0 and sp.description
    assert 0 <= sp.crash_block < n and 0.0 <= sp.max_drawdown() < 1.0


# --------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_builtin_scenario_builds(name: str) -> None:
    sp = build(name, seed=7)
    _check_path(sp)
    assert sp.name == name


def test_list_scenarios_and_default() -> None:
    listed = dict(list_scenarios())
    assert set(listed) == set(GENERATORS) and DEFAULT_SCENARIO in listed
    assert all(doc for doc in listed.values())
    with pytest.raises(ValidationError) as info:
        build("no_such_scenario")
    assert info.value.field == "scenario"


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_path_different_seed_different_path(name: str) -> None:
    a, b, c = build(name, seed=11), build(name, seed=11), build(name, seed=12)
    assert _same(a, b)
    assert not np.array_equal(a.price, c.price)
    assert not np.array_equal(a.history, c.history)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert _same(build(name, seed=g1), build(name, seed=g2))  # a Generator seeds the same way


@pytest.mark.parametrize("name", HISTORICAL)
def test_historical_replays_are_deterministic_with_one_substep_and_seeded_otherwise(name: str) -> None:
    assert _same(build(name, seed=1, substeps=1), build(name, seed=2, substeps=1))  # real bars only: nothing random
    a, b, c = (build(name, seed=s, substeps=4) for s in (3, 3, 4))
    assert _same(a, b) and not np.array_equal(a.price, c.price)
    assert a.blocks == 4 * build(name, seed=1, substeps=1).blocks


def test_btc_2021_12_04_contains_the_real_crash() -> None:
    sp = build("btc_2021_12_04")
    assert sp.block_sec == 300  # 15-minute bars, 3 blocks per bar
    assert sp.blocks == 2 * 96 * 3  # 2021-12-03 and 2021-12-04
    assert sp.start_utc == parse_utc("2021-12-03T00:00:00Z")
    assert sp.price.min() < 43_000.0
    assert sp.price[0] > 55_000.0  # it started from above 55k
    assert sp.max_drawdown() > 0.2
    crash_time = sp.start_utc + sp.crash_block * sp.block_sec
    assert parse_utc("2021-12-04T04:00:00Z") <= crash_time <= parse_utc("2021-12-04T06:00:00Z")
    assert sp.history_sec == 900 and sp.history[-1] > 50_000.0 and sp.history.size > 6000
    # Substeps scale block time and keep the anchors.
    fine = build("btc_2021_12_04", seed=0, substeps=5)
    assert fine.block_sec == 60
    np.testing.assert_allclose(fine.price[4::5], sp.price, rtol=1e-12)


def test_btc_2020_03_12_black_thursday() -> None:
    sp = build("btc_2020_03_12")
    # Hourly blocks (8 substeps x 3 segments per daily bar): 8-hour blocks never let an order settle.
    assert sp.block_sec == 3_600 and sp.blocks == 24 * 24
    assert sp.price.min() < 4_500.0 * 1.05
    np.testing.assert_allclose(sp.price[7::8], build("btc_2020_03_12", substeps=1).price, rtol=1e-12)


def test_short_paths_truncate_crash_windows() -> None:
    """Regression: a crash/dump window running past the end of a short path raised a numpy
    broadcast ValueError (flash_crash, oracle_fault, funding_squeeze with few blocks)."""
    for sp in (GENERATORS["flash_crash"](1, blocks=10, crash_at=0.95), GENERATORS["flash_crash"](1, crash_blocks=400),
               GENERATORS["oracle_fault"](1, blocks=10), GENERATORS["funding_squeeze"](1, blocks=12)):
        _check_path(sp)
    fc = GENERATORS["flash_crash"](1, blocks=300, crash_blocks=400, vol=1e-9, crash_pct=0.5)
    assert fc.price[-1] / fc.price[179] == pytest.approx(0.5 ** (120 / 400), rel=1e-6)  # partway down at the end
    fs = GENERATORS["funding_squeeze"](1, blocks=30)
    assert (fs.skew_shock == -0.08).all()  # the window [k - 20, k + 30) clipped to the path, not wrapped


# --------------------------------------------------------------------------- ohlc_to_blocks


@st.composite
def bars(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 30))
    pos = st.floats(1.0, 1e6)
    o, c, x, y = (np.array([draw(pos) for _ in range(n)]) for _ in range(4))
    h = np.maximum.reduce([o, c, x, y])
    lo = np.minimum.reduce([o, c, x, y])
    return o, h, lo, c


@FEW
@given(bars(), st.integers(0, 2**32 - 1))
def test_ohlc_with_one_substep_passes_through_low_high_close(b: tuple[np.ndarray, ...], seed: int) -> None:
    o, h, lo, c = b
    out = ohlc_to_blocks(o, h, lo, c, 1, np.random.default_rng(seed))
    assert out.shape == (3 * o.size,)
    for i in range(o.size):
        first, second = (lo[i], h[i]) if c[i] >= o[i] else (h[i], lo[i])  # low first on an up bar
        assert list(out[3 * i:3 * i + 3]) == [first, second, c[i]]


@FEW
@given(bars(), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_ohlc_substeps_land_on_the_anchors(b: tuple[np.ndarray, ...], k: int, seed: int) -> None:
    o, h, lo, c = b
    out = ohlc_to_blocks(o, h, lo, c, k, np.random.default_rng(seed))
    assert out.shape == (3 * k * o.size,) and np.isfinite(out).all() and (out > 0).all()
    anchors = ohlc_to_blocks(o, h, lo, c, 1, np.random.default_rng(0))
    np.testing.assert_allclose(out[k - 1::k], anchors, rtol=1e-12)


@FEW
@given(bars(), st.integers(2, 6))
def test_ohlc_step_moves_each_leg_in_its_last_block(b: tuple[np.ndarray, ...], k: int) -> None:
    o, h, lo, c = b
    out = ohlc_to_blocks(o, h, lo, c, k, np.random.default_rng(0), "step")
    anchors = ohlc_to_blocks(o, h, lo, c, 1, np.random.default_rng(0))
    starts = np.r_[o[0], anchors[:-1]]
    starts[3::3] = o[1:]  # each bar's first leg starts at its own open
    np.testing.assert_array_equal(out[k - 1::k], anchors)
    for j in range(k - 1):
        np.testing.assert_array_equal(out[j::k], starts)


def test_ohlc_unknown_intrabar_is_refused() -> None:
    one = np.array([1.0])
    with pytest.raises(ValidationError, match="intrabar"):
        ohlc_to_blocks(one, one, one, one, 2, np.random.default_rng(0), "linear")


def test_step_source_is_the_daily_replay_reconstructed_in_steps() -> None:
    sp, params = build_source("sp500_2008_10+step", 5)
    base = build_source("sp500_2008_10", 5)[0]
    assert sp.name == "sp500_2008_10+step" and params == {}
    assert sp.blocks == base.blocks and sp.block_sec == base.block_sec
    np.testing.assert_array_equal(sp.history, base.history)
    np.testing.assert_allclose(sp.price[7::8], base.price[7::8], rtol=1e-12)  # the anchors
    assert np.count_nonzero(np.diff(sp.price)) <= sp.blocks // 6  # 3 legs a day and the gap to the next open
    assert check_source("btc_2020_03_12+step") == "btc_2020_03_12+step"
    for bad in ("btc_2021_12_04+step", "draw:garch+step", "nope+step"):
        with pytest.raises(ValidationError, match="NAME\\+step"):
            check_source(bad)


# --------------------------------------------------------------------------- scenario files

VALID_DOC = """\
name = "deep_flash"
base = "flash_crash"
description = "A deeper, faster flash crash."
[params]
crash_pct = 0.35
crash_blocks = 3
blocks = 200
s0 = 30000
"""


def test_valid_scenario_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "deep.toml"
    f.write_text(VALID_DOC)
    sp = load_scenario_file(f, seed=3)
    _check_path(sp)
    assert sp.name == "deep_flash" and sp.description == "A deeper, faster flash crash."
    assert sp.blocks == 200 and sp.history[-1] == pytest.approx(30_000.0)
    assert sp.max_drawdown() > 0.3
    assert _same(sp, build(str(f), seed=3))  # build() takes files too
    ref = GENERATORS["flash_crash"](3, crash_pct=0.35, crash_blocks=3, blocks=200, s0=30000)
    assert _same(sp, ref)
    g = tmp_path / "plain.toml"
    g.write_text('base = "garch"\n')
    assert load_scenario_file(g, seed=1).name == "plain"  # name defaults to the file's stem


def test_scenario_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_scenario_file(tmp_path / "missing.toml")
    assert info.value.field == "scenario"
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "flash_crash"\n[params\ncrash_pct = 0.3\n')
    with pytest.raises(ValidationError) as info:
        load_scenario_file(bad)
    assert info.value.field == "scenario" and "valid TOML" in info.value.allowed
    bad.write_text('base = "flash_crash"\nname = ""\n')
    with pytest.raises(ValidationError) as info:
        load_scenario_file(bad)
    assert info.value.field == f"{bad}: name"
    bad.write_text('base = "flash_crash"\n[params]\ncrash_pct = 1.5\n')
    with pytest.raises(ValidationError) as info:
        load_scenario_file(bad)
    assert info.value.field == f"{bad}: params.crash_pct"


SRC = "s.toml"


@pytest.mark.parametrize(("doc", "field"), [
    ({"base": "flash_crash", "nmae": "x"}, "nmae"),
    ({"base": "flash_crash", "params": {"crash_pc": 0.3}}, "params.crash_pc"),
    ({"base": "garch", "params": {"vol": 0.3}}, "params.vol"),  # a parameter of another generator
    ({"base": "btc_2021_12_04"}, "base"),  # historical replays take no file
    ({"base": "nope"}, "base"),
    ({"name": "x"}, "base"),
    ({"base": 3}, "base"),
    ({"base": "gbm_regimes", "params": [1]}, "params"),
    ({"base": "gbm_regimes", "name": 5}, "name"),
    ({"base": "gbm_regimes", "description": ["x"]}, "description"),
    ({"base": "gbm_regimes", "params": {"blocks": 300.0}}, "params.blocks"),
    ({"base": "gbm_regimes", "params": {"blocks": "300"}}, "params.blocks"),
    ({"base": "gbm_regimes", "params": {"calm_vol": True}}, "params.calm_vol"),
    ({"base": "gbm_regimes", "params": {"calm_vol": math.nan}}, "params.calm_vol"),
    ({"base": "gbm_regimes", "params": {"switch_at": 1.0}}, "params.switch_at"),
    ({"base": "flash_crash", "params": {"crash_pct": 0}}, "params.crash_pct"),
    ({"base": "liquidity_drought", "params": {"depth_floor": -0.1}}, "params.depth_floor"),
    ({"base": "gbm_regimes", "params": {"blocks": 5}}, "params.blocks"),
    ({"base": "gbm_regimes", "params": {"block_sec": 0}}, "params.block_sec"),
    ({"base": "gbm_regimes", "params": {"stress_vol": 11.0}}, "params.stress_vol"),
    ({"base": "gbm_regimes", "params": {"s0": -1.0}}, "params.s0"),
    ({"base": "jump_diffusion", "params": {"jump_std": -0.01}}, "params.jump_std"),
    ({"base": "jump_diffusion", "params": {"jumps_per_day": -1.0}}, "params.jumps_per_day"),
    ({"base": "garch", "params": {"omega": 0.0}}, "params.omega"),
    ({"base": "garch", "params": {"alpha": 0.5, "beta": 0.6}}, "params.beta"),
    ({"base": "garch", "params": {"alpha": 0.2}}, "params.alpha"),  # 0.2 + default beta 0.86 > 0.999
    ({"base": "funding_squeeze", "params": {"peak_funding": 0.5}}, "params.peak_funding"),
])
def test_malformed_scenario_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_scenario(doc, SRC)
    assert info.value.field == f"{SRC}: {field}", str(info.value)


# --------------------------------------------------------------------------- property tests

DEFAULTS = {b: _params_of(GENERATORS[b]) for b in SYNTHETIC}
FRACTIONS = ("_pct", "_at", "floor")


def _is_fraction(k: str) -> bool:
    return k.endswith(FRACTIONS)


def valid_value(base: str, k: str) -> st.SearchStrategy[Any]:
    """Moderate valid values (what a scenario author would write)."""
    if k == "blocks":
        return st.integers(10, 600)
    if k == "block_sec":
        return st.integers(1, 3_600)
    if k in ("crash_blocks", "delay_blocks", "stale_blocks"):
        return st.integers(1, 700)
    if _is_fraction(k):
        return st.floats(0.01, 0.95)
    if k.endswith("vol"):
        return st.floats(0.01, 3.0)
    if k == "s0":
        return st.floats(1.0, 1e6)
    return {"jumps_per_day": st.floats(0.0, 50.0), "jump_mean": st.floats(-0.2, 0.2), "jump_std": st.floats(0.0, 0.2),
            "omega": st.floats(1e-9, 1e-5), "alpha": st.floats(0.0, 0.3), "beta": st.floats(0.0, 0.69),
            "peak_funding": st.floats(-0.01, 0.01)}[k]


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(st.sampled_from(SYNTHETIC))
    keys = draw(st.lists(st.sampled_from(sorted(DEFAULTS[base])), unique=True, max_size=4))
    if base == "garch" and {"alpha", "beta"} & set(keys):
        keys = sorted(set(keys) | {"alpha", "beta"})  # set together: alpha + beta <= 0.99 stays stationary
    doc: dict[str, Any] = {"base": base, "params": {k: draw(valid_value(base, k)) for k in keys}}
    if draw(st.booleans()):
        doc["name"] = draw(st.text(min_size=1, max_size=8))
    return doc


@PROPS
@given(valid_docs(), st.integers(0, 2**32 - 1))
def test_valid_docs_parse_and_build(doc: dict[str, Any], seed: int) -> None:
    base, params = parse_scenario(doc, SRC)
    assert base == doc["base"] and params == doc["params"]
    sp = GENERATORS[base](seed, **params)
    _check_path(sp)
    assert sp.blocks == params.get("blocks", DEFAULTS[base]["blocks"])


@st.composite
def malformed_docs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid document with exactly one defect, and the field the error must name."""
    doc = draw(valid_docs())
    base, params = doc["base"], doc["params"]
    kind = draw(st.sampled_from(["unknown_key", "unknown_param", "wrong_type", "bad_fraction", "bad_range"]))
    if kind == "unknown_key":
        k = draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in ("name", "base", "description", "params")))
        doc[k] = draw(st.one_of(st.integers(), st.text(max_size=3)))
        return doc, k
    if kind == "unknown_param":
        k = draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in DEFAULTS[base]))
        params[k] = draw(st.floats(0.1, 0.9))
        return doc, f"params.{k}"
    if kind == "wrong_type":
        k = draw(st.sampled_from(sorted(DEFAULTS[base])))
        junk = st.one_of(st.text(max_size=4), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                         st.sampled_from([math.nan, math.inf, -math.inf]))
        if isinstance(DEFAULTS[base][k], int):
            junk = st.one_of(junk, st.floats(allow_nan=False))
        params[k] = draw(junk)
        return doc, f"params.{k}"
    if kind == "bad_fraction":
        fracs = sorted(k for k in DEFAULTS[base] if _is_fraction(k))
        assume(fracs)
        k = draw(st.sampled_from(fracs))
        params[k] = draw(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, allow_infinity=False),
                                   st.integers(max_value=0), st.integers(min_value=1)))
        return doc, f"params.{k}"
    k = draw(st.sampled_from(sorted(DEFAULTS[base])))
    assume(not _is_fraction(k))
    bad: dict[str, st.SearchStrategy[Any]] = {
        "blocks": st.one_of(st.integers(max_value=9), st.integers(min_value=100_001)),
        "block_sec": st.one_of(st.integers(max_value=0), st.integers(min_value=86_401)),
        "s0": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0000001e9, allow_infinity=False)),
        "jumps_per_day": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1000.001, allow_infinity=False)),
        "jump_mean": st.one_of(st.floats(max_value=-1.000001), st.floats(min_value=1.000001, allow_infinity=False)),
        "jump_std": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001, allow_infinity=False)),
        "omega": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.00001e-4, allow_infinity=False)),
        "alpha": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001, allow_infinity=False)),
        "beta": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001, allow_infinity=False)),
        "peak_funding": st.one_of(st.floats(max_value=-0.0500001), st.floats(min_value=0.0500001, allow_infinity=False)),
    }
    for c in ("crash_blocks", "delay_blocks", "stale_blocks"):
        bad[c] = st.one_of(st.integers(max_value=0), st.integers(min_value=86_401))
    strat = bad.get(k, st.one_of(st.floats(max_value=0.0), st.floats(min_value=10.000001, allow_infinity=False)))
    params[k] = draw(strat)  # (the remaining keys are volatilities, allowed (0, 10])
    return doc, f"params.{k}"


@PROPS
@given(malformed_docs())
def test_malformed_docs_name_the_field(case: tuple[dict[str, Any], str]) -> None:
    doc, field = case
    with pytest.raises(ValidationError) as info:  # and never another exception type
        parse_scenario(doc, SRC)
    assert info.value.field == f"{SRC}: {field}", str(info.value)


# ------------------------------------------------------------------------------ user CSV scenarios


def _user_csv(path: Path, bars: int = 300, interval: int = 900) -> None:
    """A user's OHLC CSV: UTF-8 with a BOM, newest-first, columns out of order, ISO times."""
    import datetime as _dt

    rng = np.random.default_rng(5)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, bars)))
    close[-40:] *= np.linspace(1.0, 0.8, 40)
    rows = []
    for i, c in enumerate(close):
        o = close[i - 1] if i else c
        t = _dt.datetime(2022, 5, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=i * interval)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},{c:.2f},{max(o, c) * 1.001:.2f},{o:.2f},{min(o, c) * 0.999:.2f},1")
    rows.reverse()
    path.write_text("Date,Close,High,Open,Low,Volume\n" + "\n".join(rows) + "\n", encoding="utf-8-sig")


def test_csv_scenario_reads_a_bom_newest_first_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    _user_csv(f)
    sc = build(str(f), 1)
    assert sc.name == "csv:mine.csv"
    assert sc.blocks == 96 * 3 and sc.block_sec == 300  # the last 96 bars, 3 blocks each
    assert sc.history.size == 300 - 96  # the bars before the window
    assert sc.max_drawdown() > 0.15
    assert np.all(np.isfinite(sc.price)) and np.all(sc.price > 0)


def test_csv_scenario_daily_bars_keep_blocks_within_the_order_window(tmp_path: Path) -> None:
    f = tmp_path / "daily.csv"
    _user_csv(f, bars=150, interval=86_400)
    sc = build(str(f), 1)
    assert sc.block_sec <= 3_600 and sc.block_sec == 3_600


def test_scenario_file_with_a_csv_source_and_window(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    _user_csv(f)
    t = tmp_path / "s.toml"
    t.write_text('name = "my crash"\ncsv = "mine.csv"\nstart = "2022-05-03"\nend = "2022-05-04"\n')
    sc = build(str(t), 2)
    assert sc.name == "my crash" and sc.blocks == 96 * 3
    t.write_text('csv = "mine.csv"\nstart = "2022-05-03"\n')
    with pytest.raises(ValidationError, match="both start and end"):
        build(str(t), 2)
    t.write_text('csv = "missing.csv"\n')
    with pytest.raises(ValidationError, match="existing CSV"):
        build(str(t), 2)
    t.write_text('csv = "mine.csv"\nbase = "flash_crash"\n')
    with pytest.raises(ValidationError, match="only the keys"):
        build(str(t), 2)


# --------------------------------------------------------------------------- corpus draws (issue 11)


def test_corpus_draws_follow_their_laws_and_reseed_alone() -> None:
    from ballast.scenarios import CORPUS, DRAW_PREFIX, PARAM_LAWS, build_source, draw_params

    for fam, laws in PARAM_LAWS.items():
        assert fam in GENERATORS and fam not in REAL_REPLAYS
        for seed in range(20):
            p = draw_params(fam, seed)
            assert p == draw_params(fam, seed)  # a row re-runs alone
            for k, law in laws.items():
                if k in p:
                    assert law.lo <= p[k] <= law.hi, (fam, k, p[k])
                    assert isinstance(p[k], int) == (law.kind == "integers")
            if fam == "garch":
                assert 0 < p["omega"] and p["alpha"] + p["beta"] < 1
            parse_scenario({"base": fam, "params": p})  # inside the ranges a scenario file accepts
        sp, params = build_source(DRAW_PREFIX + fam, 3)
        _check_path(sp)
        assert sp.name == DRAW_PREFIX + fam and params == draw_params(fam, 3)
    assert draw_params("flash_crash", 1) != draw_params("flash_crash", 2)
    from ballast.scenarios import FRESH_REPLAYS

    assert set(REAL_REPLAYS) - set(FRESH_REPLAYS) <= set(CORPUS)  # the fresh ones are held back on purpose


@pytest.mark.parametrize("source, allowed", [("draw:btc_2021_12_04", "draw:FAMILY"), ("nope", "built-in"),
                                             ("missing.csv", "existing")])
def test_sweep_sources_are_checked_by_name(source: str, allowed: str) -> None:
    from ballast.scenarios import check_source

    with pytest.raises(ValidationError, match=allowed):
        check_source(source)


def test_index_replays_are_scaled_real_bars() -> None:
    from ballast.data import load_sp500
    from ballast.scenarios import INDEX_LEVEL

    sp = build("sp500_2008_10", seed=1, substeps=1)
    win = load_sp500().window("2008-09-26", "2008-10-31")
    k = INDEX_LEVEL / float(win.open[0])
    np.testing.assert_allclose(sp.price[2::3], np.asarray(win.close) * k, rtol=1e-12)
    assert sp.block_sec == 8 * 3600 and build("sp500_2008_10", seed=1).block_sec == 3600
    assert sp.max_drawdown() > 0.25  # October 2008


# --------------------------------------------------------------------------- fresh replays (blind test)


def _worst_windows(close: np.ndarray, days: np.ndarray, used: list[tuple[np.datetime64, np.datetime64]],
                   k: int, dataset: str) -> list[tuple[float, str, np.datetime64, np.datetime64]]:
    """FRESH_REPLAYS' rule on one series: 25-bar close-to-close drawdowns from each bar, worst first; a
    window runs from 5 bars before that bar to its 25th bar; keep those overlapping nothing used."""
    n, span = close.size, 25
    cands = sorted((float(np.min(close[i:i + span]) / close[i] - 1), dataset, days[i - 5], days[i + span - 1])
                   for i in range(5, n - span))
    out: list[tuple[float, str, np.datetime64, np.datetime64]] = []
    for c in cands:
        if all(c[3] < a or c[2] > b for a, b in used + [(x[2], x[3]) for x in out]):
            out.append(c)
        if len(out) == k:
            break
    return out


def test_fresh_replays_are_the_rules_windows_and_stay_out_of_the_corpus() -> None:
    from ballast.data import DATASETS, load_btc_daily
    from ballast.scenarios import CORPUS, FRESH_REPLAYS, INDEX_REPLAYS, REPLAY_WINDOWS

    def days(h: Any) -> np.ndarray:
        return np.asarray(h.timestamps, dtype="datetime64[s]").astype("datetime64[D]")

    def window(name: str) -> tuple[np.datetime64, np.datetime64]:
        _, a, b = REPLAY_WINDOWS[name]
        return np.datetime64(a), np.datetime64(b)

    corpus_windows = [window(n) for n in INDEX_REPLAYS]
    series = {k: DATASETS[k]() for k in ("sp500", "nasdaq")}
    cands = sorted(c for k, h in series.items()
                   for c in _worst_windows(np.asarray(h.close), days(h), corpus_windows, 10, k))
    picked: list[tuple[float, str, np.datetime64, np.datetime64]] = []
    for c in cands:  # the four worst over both indices, no two overlapping
        if all(c[3] < x[2] or c[2] > x[3] for x in picked):
            picked.append(c)
        if len(picked) == 4:
            break
    btc = load_btc_daily()
    picked += _worst_windows(np.asarray(btc.close), days(btc),
                             [window("btc_2020_03_12")], 1, "btc")
    want = {("nasdaq", "2001-02-08", "2001-03-22"), ("nasdaq", "2001-08-06", "2001-09-21"),
            ("nasdaq", "2000-11-08", "2000-12-20"), ("sp500", "2002-06-11", "2002-07-23"),
            ("btc", "2021-05-03", "2021-06-01")}
    assert {(d, str(a), str(b)) for _, d, a, b in picked} == want
    for d, a, b in want:  # each window's table entry: its start, and the day after its last bar as the end
        name = next(n for n in FRESH_REPLAYS if REPLAY_WINDOWS[n][:2] == ("btc_daily" if d == "btc" else d, a))
        assert np.datetime64(REPLAY_WINDOWS[name][2]) == np.datetime64(b) + 1
    for name in FRESH_REPLAYS:
        assert name in REAL_REPLAYS and name in GENERATORS and name not in CORPUS
        sp = build(name, 3)
        assert sp.blocks == 720 and sp.block_sec == 3_600 and np.isfinite(sp.price).all()
        assert sp.price.min() / sp.price[0] < 0.8  # a crash is in it
