"""Tests for ballast.config: the shipped config, malformed configs (each error names the exact
offending field), and a property test mutating one field of a valid document at a time."""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm  # type: ignore[import-untyped]

from ballast._typing import WAD
from ballast.config import DEFAULT_CONFIG, FEED_KINDS, load_config, parse_config, to_wad
from ballast.errors import ValidationError
from ballast.model import YEAR_SEC, validate_params

PROPS = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


def shipped() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_CONFIG.read_text())


def two_markets() -> dict[str, Any]:
    """The shipped document plus a second market (id 1), so paths like markets[1].model.z exist."""
    d = shipped()
    m = copy.deepcopy(d["markets"][0])
    m["id"], m["symbol"] = 1, "ETH"
    d["markets"].append(m)
    return d


BASE = two_markets()


# --------------------------------------------------------------------------- the shipped file


def test_shipped_config_loads() -> None:
    cfg = load_config()
    assert cfg == load_config(DEFAULT_CONFIG) == parse_config(shipped())
    e = cfg.engine
    assert (e.trading_fee, e.fee_insurance_share, e.liquidator_share, e.liq_target_ratio) == (0.0005, 0.5, 0.5, 1.25)
    assert e.param_delay_sec == 86_400
    assert (e.order_min_delay_sec, e.order_window_sec, e.settlement_fee_usd) == (1, 3600, 0.5)
    assert (e.withdraw_price_max_age_sec, e.oi_depth_mult) == (600, 2.0)
    assert e.settlement_fee_tokens() == 500_000 and e.settlement_fee_tokens(18) == WAD // 2
    assert (e.liq_penalty_floor, e.liq_penalty_full_depth) == (0.25, 0.2)
    assert e.engine_config_tuple() == (5 * 10**14, WAD // 2, WAD // 2, 125 * 10**16, 1, 3600, 500_000, 600, 2 * WAD,
                                       WAD // 4, WAD // 5)
    (m,) = cfg.markets
    assert (m.id, m.symbol, m.feed_decimals, m.heartbeat_sec, m.alpha) == (0, "BTC", 8, 3600, 0.99)
    assert set(m.initial) == set(m.bounds) == set(FEED_KINDS)
    p = m.params
    assert validate_params(p) is p
    assert p.z_wad == round(norm.ppf(0.99) * 1e6) * 10**12 == 2_326_348 * 10**12
    assert p.horizon_sec == 3600 and p.ramp_jitter_sec == 600
    assert (p.min_imf_wad, p.max_imf_wad, p.min_mmf_wad, p.max_mmf_wad) == (10**16, WAD // 2, 3 * 10**15, 4 * 10**17)
    assert p.mmf_ramp_wad_per_sec == (5 * 10**16) // 3600
    assert p.vol_ref_wad == WAD // 2 and p.regime_sens_wad == 2 * WAD
    assert m.feed_answer("price", 50_000.0) == 50_000 * 10**8
    assert m.bounds_wad("funding") == (-5 * 10**16, 5 * 10**16)
    assert m.static_calm.mmf < m.static_calm.imf and m.static_conservative.imf == 0.1
    assert cfg.market(0) is m
    with pytest.raises(ValidationError) as info:
        cfg.market(7)
    assert info.value.field == "market_id"


def test_with_params_validates() -> None:
    m = load_config().markets[0]
    assert m.with_params(m.params).params == m.params
    from dataclasses import replace

    with pytest.raises(ValidationError) as info:
        m.with_params(replace(m.params, tail_cap_wad=0))
    assert info.value.field == "tail_cap_wad"


def test_to_wad_is_exact_for_decimal_literals() -> None:
    assert to_wad(0.1) == 10**17 and to_wad(0.0005) == 5 * 10**14 and to_wad(2.326) == 2_326 * 10**15
    assert to_wad(-0.05) == -5 * 10**16 and to_wad(1e-18) == 1


# --------------------------------------------------------------------------- malformed files


def test_missing_file_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.field == "config"
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\ntrading_fee = = 0.1\n")
    with pytest.raises(ValidationError) as info:
        load_config(bad)
    assert info.value.field == "config" and "valid TOML" in info.value.allowed
    dup_key = tmp_path / "dup.toml"
    dup_key.write_text(DEFAULT_CONFIG.read_text() + "\n[engine]\ntrading_fee = 0.001\n")
    with pytest.raises(ValidationError) as info:
        load_config(dup_key)
    assert info.value.field == "config"


def test_valid_file_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "ok.toml"
    f.write_text(DEFAULT_CONFIG.read_text().replace("alpha = 0.99 ", "alpha = 0.975"))
    cfg = load_config(str(f))
    assert cfg.markets[0].alpha == 0.975
    assert cfg.markets[0].params.z_wad == round(norm.ppf(0.975) * 1e6) * 10**12


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, v: Any) -> Mutation:
    def f(d: dict[str, Any]) -> None:
        node, last = _parent(d, path)
        node[last] = v
    return f


def _del(path: str) -> Mutation:
    def f(d: dict[str, Any]) -> None:
        node, last = _parent(d, path)
        del node[last]
    return f


def _parent(d: dict[str, Any], path: str) -> tuple[Any, Any]:
    """Container and key of a dotted path with [i] indexes (``markets[1].model.alpha``)."""
    keys: list[Any] = []
    for part in path.split("."):
        if part.endswith("]"):
            name, idx = part[:-1].split("[")
            keys += [name, int(idx)]
        else:
            keys.append(part)
    node: Any = d
    for k in keys[:-1]:
        node = node[k]
    return node, keys[-1]


MALFORMED: list[tuple[str, Mutation, str]] = [
    # missing fields
    ("missing engine table", _del("engine"), "engine"),
    ("missing markets", _del("markets"), "markets"),
    ("missing engine field", _del("engine.trading_fee"), "engine.trading_fee"),
    ("missing market id", _del("markets[1].id"), "markets[1].id"),
    ("missing symbol", _del("markets[0].symbol"), "markets[0].symbol"),
    ("missing model", _del("markets[0].model"), "markets[0].model"),
    ("missing alpha", _del("markets[0].model.alpha"), "markets[0].model.alpha"),
    ("missing horizon", _del("markets[1].model.horizon_sec"), "markets[1].model.horizon_sec"),
    ("missing bound", _del("markets[0].bounds.depth"), "markets[0].bounds.depth"),
    ("missing initial", _del("markets[0].initial.skew"), "markets[0].initial.skew"),
    ("missing static", _del("markets[0].static_calm.mmf"), "markets[0].static_calm.mmf"),
    # wrong types
    ("string fee", _set("engine.trading_fee", "0.001"), "engine.trading_fee"),
    ("bool share", _set("engine.liquidator_share", True), "engine.liquidator_share"),
    ("float delay", _set("engine.param_delay_sec", 3600.0), "engine.param_delay_sec"),
    ("engine not a table", _set("engine", [1, 2]), "engine"),
    ("markets not a list", _set("markets", {"id": 0}), "markets"),
    ("market not a table", _set("markets[1]", 3), "markets[1]"),
    ("string id", _set("markets[0].id", "0"), "markets[0].id"),
    ("int symbol", _set("markets[0].symbol", 7), "markets[0].symbol"),
    ("float decimals", _set("markets[0].feed_decimals", 8.0), "markets[0].feed_decimals"),
    ("bounds not a table", _set("markets[0].bounds", [1, 2]), "markets[0].bounds"),
    ("model not a table", _set("markets[1].model", "x"), "markets[1].model"),
    ("string tail cap", _set("markets[0].model.tail_cap", "3"), "markets[0].model.tail_cap"),
    ("float horizon", _set("markets[0].model.horizon_sec", 3600.5), "markets[0].model.horizon_sec"),
    ("nan impact", _set("markets[0].model.impact", math.nan), "markets[0].model.impact"),
    ("inf vault seed", _set("engine.vault_seed_usd", math.inf), "engine.vault_seed_usd"),
    ("string initial", _set("markets[0].initial.price", "50000"), "markets[0].initial.price"),
    ("static not a table", _set("markets[0].static_conservative", 0.1), "markets[0].static_conservative"),
    # out of range
    ("fee too high", _set("engine.trading_fee", 0.02), "engine.trading_fee"),
    ("negative share", _set("engine.fee_insurance_share", -0.1), "engine.fee_insurance_share"),
    ("target ratio < 1", _set("engine.liq_target_ratio", 0.9), "engine.liq_target_ratio"),
    ("delay too short", _set("engine.param_delay_sec", 60), "engine.param_delay_sec"),
    ("order delay 0", _set("engine.order_min_delay_sec", 0), "engine.order_min_delay_sec"),
    ("order delay 301", _set("engine.order_min_delay_sec", 301), "engine.order_min_delay_sec"),
    ("order window 59", _set("engine.order_window_sec", 59), "engine.order_window_sec"),
    ("order window > 1 day", _set("engine.order_window_sec", 86401), "engine.order_window_sec"),
    ("negative settlement fee", _set("engine.settlement_fee_usd", -0.01), "engine.settlement_fee_usd"),
    ("settlement fee > uint64", _set("engine.settlement_fee_usd", 2e13), "engine.settlement_fee_usd"),
    ("withdraw age 0", _set("engine.withdraw_price_max_age_sec", 0), "engine.withdraw_price_max_age_sec"),
    ("withdraw age 3601", _set("engine.withdraw_price_max_age_sec", 3601), "engine.withdraw_price_max_age_sec"),
    ("oi depth mult 0.05", _set("engine.oi_depth_mult", 0.05), "engine.oi_depth_mult"),
    ("oi depth mult 101", _set("engine.oi_depth_mult", 101.0), "engine.oi_depth_mult"),
    ("penalty floor 0.05", _set("engine.liq_penalty_floor", 0.05), "engine.liq_penalty_floor"),
    ("penalty floor 1.1", _set("engine.liq_penalty_floor", 1.1), "engine.liq_penalty_floor"),
    ("penalty full depth 0", _set("engine.liq_penalty_full_depth", 0.0), "engine.liq_penalty_full_depth"),
    ("penalty full depth 1.5", _set("engine.liq_penalty_full_depth", 1.5), "engine.liq_penalty_full_depth"),
    ("missing penalty floor", _del("engine.liq_penalty_floor"), "engine.liq_penalty_floor"),
    ("float window", _set("engine.order_window_sec", 3600.0), "engine.order_window_sec"),
    ("id 64", _set("markets[0].id", 64), "markets[0].id"),
    ("19 decimals", _set("markets[1].feed_decimals", 19), "markets[1].feed_decimals"),
    ("zero heartbeat", _set("markets[0].heartbeat_sec", 0), "markets[0].heartbeat_sec"),
    ("alpha 0.5", _set("markets[0].model.alpha", 0.5), "markets[0].model.alpha"),
    ("alpha 0.82: z < 1", _set("markets[0].model.alpha", 0.82), "markets[0].model.alpha"),
    ("alpha 1", _set("markets[1].model.alpha", 1.0), "markets[1].model.alpha"),
    ("tail cap 6", _set("markets[0].model.tail_cap", 6.0), "markets[0].model.tail_cap"),
    ("horizon 10 s", _set("markets[0].model.horizon_sec", 10), "markets[0].model.horizon_sec"),
    ("negative jitter", _set("markets[0].model.ramp_jitter_sec", -1), "markets[0].model.ramp_jitter_sec"),
    ("ramp too fast", _set("markets[0].model.mmf_ramp_per_hour", 0.5), "markets[0].model.mmf_ramp_per_hour"),
    ("ramp zero", _set("markets[0].model.mmf_ramp_per_hour", 0.0), "markets[0].model.mmf_ramp_per_hour"),
    ("max imf 2", _set("markets[0].model.max_imf", 2.0), "markets[0].model.max_imf"),
    ("min imf > max imf", _set("markets[0].model.min_imf", 0.6), "markets[0].model.min_imf"),
    ("max mmf + buffer > max imf", _set("markets[0].model.max_mmf", 0.499), "markets[0].model.max_mmf"),
    ("vol ref 0", _set("markets[1].model.vol_ref", 0.0), "markets[1].model.vol_ref"),
    ("static mmf >= imf", _set("markets[0].static_calm.mmf", 0.025), "markets[0].static_calm.mmf"),
    ("static imf 2", _set("markets[0].static_calm.imf", 2.0), "markets[0].static_calm.imf"),
    ("initial outside bounds", _set("markets[0].initial.volatility", 20.0), "markets[0].initial.volatility"),
    # bad bounds
    ("reversed bounds", _set("markets[0].bounds.price", [10.0, 1.0]), "markets[0].bounds.price"),
    ("equal bounds", _set("markets[0].bounds.skew", [0.5, 0.5]), "markets[0].bounds.skew"),
    ("one bound", _set("markets[0].bounds.funding", [0.05]), "markets[0].bounds.funding"),
    ("string bound", _set("markets[1].bounds.depth", ["1", 2.0]), "markets[1].bounds.depth"),
    ("zero price floor", _set("markets[0].bounds.price", [0.0, 1e7]), "markets[0].bounds.price"),
    ("negative vol floor", _set("markets[0].bounds.volatility", [-1.0, 10.0]), "markets[0].bounds.volatility"),
    ("infinite bound", _set("markets[0].bounds.depth", [1000.0, math.inf]), "markets[0].bounds.depth"),
    ("bound beyond int128", _set("markets[0].bounds.price", [1.0, 1e21]), "markets[0].bounds.price"),
    ("bounds equal as WAD", _set("markets[0].bounds.skew", [-1e-19, -5e-20]), "markets[0].bounds.skew"),
    # duplicates and counts
    ("duplicate ids", _set("markets[1].id", 0), "markets[1].id"),
    ("no markets", _set("markets", []), "markets"),
]


@pytest.mark.parametrize(("mutate", "field"), [pytest.param(m, f, id=name) for name, m, f in MALFORMED])
def test_malformed_config_names_the_field(mutate: Mutation, field: str) -> None:
    d = copy.deepcopy(BASE)
    mutate(d)
    with pytest.raises(ValidationError) as info:
        parse_config(d)
    assert info.value.field == field, str(info.value)


def test_malformed_file_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(DEFAULT_CONFIG.read_text().replace("tail_cap = 3.0", "tail_cap = 9.0"))
    with pytest.raises(ValidationError) as info:
        load_config(f)
    assert info.value.field == "markets[0].model.tail_cap" and info.value.value == 9.0
    f.write_text(DEFAULT_CONFIG.read_text().replace('symbol = "BTC"', "symbol = 1"))
    with pytest.raises(ValidationError) as info:
        load_config(f)
    assert info.value.field == "markets[0].symbol"


# --------------------------------------------------------------------------- property: one bad field

# Every leaf of a market and of the engine, with its type and the allowed closed range (for the
# model fields: the contracts' hard bounds in the file's units).
NUM, INT, STR, BOUNDS, TABLE = "num", "int", "str", "bounds", "table"
RAMP_LO = (WAD // YEAR_SEC) * 3600 / WAD + 1e-9  # the per-second floor, per hour
ENGINE_FIELDS: dict[str, tuple[str, float, float]] = {
    "trading_fee": (NUM, 0.0, 0.01), "fee_insurance_share": (NUM, 0.0, 1.0), "liquidator_share": (NUM, 0.0, 1.0),
    "liq_target_ratio": (NUM, 1.0, 3.0), "param_delay_sec": (INT, 3600, 30 * 86400),
    "vault_seed_usd": (NUM, 0.0, 1e15), "insurance_seed_usd": (NUM, 0.0, 1e15),
    "order_min_delay_sec": (INT, 1, 300), "order_window_sec": (INT, 60, 86400),
    "settlement_fee_usd": (NUM, 0.0, (2**64 - 1) / 10**6), "withdraw_price_max_age_sec": (INT, 1, 3600),
    "oi_depth_mult": (NUM, 0.1, 100.0), "liq_penalty_floor": (NUM, 0.1, 1.0),
    "liq_penalty_full_depth": (NUM, 0.01, 1.0),
}
MARKET_FIELDS: dict[str, tuple[str, float, float]] = {
    "id": (INT, 0, 63), "symbol": (STR, 0, 0), "feed_decimals": (INT, 0, 18), "heartbeat_sec": (INT, 1, 2**32 - 1),
    "initial": (TABLE, 0, 0), "bounds": (TABLE, 0, 0), "model": (TABLE, 0, 0), "static_calm": (TABLE, 0, 0),
    "static_conservative": (TABLE, 0, 0),
}
MODEL_FIELDS: dict[str, tuple[str, float, float]] = {
    "alpha": (NUM, float(norm.cdf(1.0)) + 1e-9, 0.999999), "horizon_sec": (INT, 60, 7 * 86400),
    "skew_sens": (NUM, 0.0, 18.0), "tail_cap": (NUM, 1.0, 5.0), "buffer_mult": (NUM, 0.1, 5.0),
    "min_buffer": (NUM, 0.001, 0.2), "liq_fee": (NUM, 0.001, 0.1), "impact": (NUM, 0.0, 0.2), "crowd": (NUM, 0.0, 1.0),
    "funding_sens": (NUM, 0.0, 1000.0), "funding_threshold": (NUM, 0.0, 0.01), "ramp_jitter_sec": (INT, 0, 86400),
    "min_imf": (NUM, 0.005, 1.0), "max_imf": (NUM, 0.005, 1.0), "min_mmf": (NUM, 0.001, 1.0),
    "max_mmf": (NUM, 0.001, 1.0), "mmf_ramp_per_hour": (NUM, RAMP_LO, 0.25), "vol_ref": (NUM, 0.05, 5.0),
    "regime_sens": (NUM, 0.0, 10.0),
}


def _leaves() -> dict[str, tuple[str, float, float]]:
    out: dict[str, tuple[str, float, float]] = {"engine": (TABLE, 0, 0), "markets": (TABLE, 0, 0)}
    out.update({f"engine.{k}": v for k, v in ENGINE_FIELDS.items()})
    for i, m in enumerate(BASE["markets"]):
        w = f"markets[{i}]"
        out[w] = (TABLE, 0, 0)
        out.update({f"{w}.{k}": v for k, v in MARKET_FIELDS.items()})
        out.update({f"{w}.model.{k}": v for k, v in MODEL_FIELDS.items()})
        for k in FEED_KINDS:
            lo, hi = m["bounds"][k]
            out[f"{w}.initial.{k}"] = (NUM, lo, hi)
            out[f"{w}.bounds.{k}"] = (BOUNDS, 0.0 if k in ("price", "volatility", "depth") else -math.inf, 0)
        for s in ("static_calm", "static_conservative"):
            out[f"{w}.{s}.imf"] = (NUM, 0.005, 1.0)  # (an imf in range but <= mmf is reported on mmf)
            out[f"{w}.{s}.mmf"] = (NUM, 0.001, m[s]["imf"] - 1e-9)
    return out


LEAVES = _leaves()
PATHS = sorted(LEAVES)

junk = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@st.composite
def bad_value(draw: st.DrawFn, path: str) -> Any:
    kind, lo, hi = LEAVES[path]
    if kind == TABLE:
        return draw(st.one_of(st.integers(), st.text(max_size=3), st.floats(allow_nan=True), st.booleans()))
    if kind == STR:
        return draw(st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(), max_size=1)))
    if kind == BOUNDS:
        positive_floor = lo == 0.0
        a = draw(st.floats(-1e6, 1e6))
        b = draw(st.floats(-1e6, 1e6))
        return draw(st.sampled_from([
            [max(a, b), min(a, b)],  # reversed or equal
            [a],
            [a, b, a],
            [a, "1"],
            [a, math.inf],
            [math.nan, b],
            [True, 2.0],
            [-abs(a), abs(a) + 1.0] if positive_floor else [a, 1e30],  # non-positive floor / beyond int128
            "1,2",
        ]))
    if kind == INT:
        out_of_range = st.one_of(st.integers(max_value=int(lo) - 1), st.integers(min_value=int(hi) + 1))
        return draw(st.one_of(out_of_range, st.floats(allow_nan=True), junk))
    scale = max(1.0, abs(lo), abs(hi))
    below = st.floats(1e-6 * scale, 1e12).map(lambda e: lo - e)
    above = st.floats(1e-6 * scale, 1e12).map(lambda e: hi + e)
    non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
    return draw(st.one_of(below, above, non_finite, junk))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    path = draw(st.sampled_from(PATHS))
    d = copy.deepcopy(BASE)
    if draw(st.integers(0, 9)) == 0 and not path.endswith("]"):  # a missing field (not a list element)
        _del(path)(d)
    else:
        _set(path, draw(bad_value(path)))(d)
    return path, d


@PROPS
@given(mutated())
def test_one_bad_field_is_named(case: tuple[str, dict[str, Any]]) -> None:
    path, d = case
    with pytest.raises(ValidationError) as info:  # and never another exception type
        parse_config(d)
    assert info.value.field == path, (path, str(info.value))


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.sampled_from([p for p in PATHS if LEAVES[p][0] in (NUM, INT)]), st.floats(0.0, 1.0))
def test_in_range_values_are_accepted(path: str, u: float) -> None:
    """The ranges the property test treats as allowed are really allowed (it tests the right thing)."""
    kind, lo, hi = LEAVES[path]
    if path.endswith(("min_imf", "max_imf", "min_mmf", "max_mmf", "min_buffer", "static_calm.imf",
                      "static_conservative.imf", ".id")):
        return  # constraints between fields (ordering, unique ids): covered by the explicit cases
    v: float = lo + (min(hi, 1e15) - lo) * u
    d = copy.deepcopy(BASE)
    _set(path, int(v) if kind == INT else v)(d)
    parse_config(d)


# --------------------------------------------------------------------------- default_params


def test_default_params_are_the_shipped_btc_market() -> None:
    from ballast.config import default_params

    shipped = load_config().markets[0]
    assert shipped.symbol == "BTC"
    assert default_params() == shipped.params
    assert default_params() is default_params()  # cached; RiskParams is frozen
    assert default_params().tail_cap_wad == 3 * 10**18
    assert default_params().regime_sens_wad == 2 * 10**18


def test_default_params_unknown_symbol_names_the_markets() -> None:
    from ballast.config import default_params

    with pytest.raises(ValidationError) as info:
        default_params("DOGE")
    assert info.value.field == "symbol" and "['BTC']" in str(info.value)


def test_readme_worked_example_uses_the_shipped_parameters() -> None:
    """The README's worked example (shipped BTC parameters), term by term."""
    from ballast.config import default_params
    from ballast.model import RiskInputs, compute

    wad = 10**18
    p = default_params()
    long_ = compute(p, RiskInputs(wad // 2, -wad // 20, 50_000_000 * wad, 8 * 10**14, 400 * wad, 300 * wad,
                                  100_000 * wad, 50_000 * wad, True))
    assert round(100 * long_.var_move_wad / wad, 3) == 1.553
    assert round(100 * long_.mmf_base_wad / wad, 3) == 2.053
    assert round(100 * long_.imf_wad / wad, 3) == 6.709
    assert round(wad / long_.imf_wad, 1) == 14.9
    short = compute(p, RiskInputs(wad // 2, -wad // 20, 50_000_000 * wad, 8 * 10**14, 300 * wad, 400 * wad,
                                  100_000 * wad, 50_000 * wad, False))
    assert round(100 * short.imf_wad / wad, 3) == 3.488
    assert round(wad / short.imf_wad, 1) == 28.7
    small = [round(wad / compute(p, RiskInputs(int(s * wad), 0, 50_000_000 * wad, 0, 0, 0, 1_000 * wad,
                                                50_000 * wad, True)).imf_wad, 1) for s in (0.3, 0.5, 0.8, 1.5)]
    assert small == [40.1, 28.7, 10.3, 4.3]
