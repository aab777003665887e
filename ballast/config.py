"""Typed, validated configuration: engine settings and markets, from a reviewed TOML file.

Every field is checked on load against the contracts' hard bounds, with an error that names the
field, the value and the allowed range. Nothing secret lives here: keys come from the environment
or the account store (see ``ballast.deploy``).
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scipy.stats import norm  # type: ignore[import-untyped]

from ballast._typing import WAD
from ballast.errors import ValidationError
from ballast.model import RiskParams, validate_params
from ballast.toolchain import ROOT

DEFAULT_CONFIG = ROOT / "config" / "markets.toml"
TOKEN_DECIMALS = 6
"""Decimals of the collateral token (``MockUSD``) the settlement fee is converted with by default."""
UINT64_MAX = 2**64 - 1
FEED_KINDS = ("price", "volatility", "funding", "depth", "skew")


def to_wad(x: float) -> int:
    """A decimal number as a WAD integer, exactly for decimal literals (via repr)."""
    from decimal import Decimal

    return int(Decimal(repr(float(x))) * WAD)


def _get(d: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in d:
        raise ValidationError(name, None, "a value (field missing)")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise ValidationError(name, v, f"a value of type {kind}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValidationError(name, v, "a finite number")
    return v


def _in(name: str, v: float, lo: float, hi: float) -> float:
    if not lo <= v <= hi:
        raise ValidationError(name, v, f"[{lo}, {hi}]")
    return v


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide settings (``MarginEngine.EngineConfig`` plus local seeding)."""

    trading_fee: float
    """Fee on traded notional, fraction (<= 0.01)."""
    fee_insurance_share: float
    """Share of trading fees to the insurance fund, fraction."""
    liquidator_share: float
    """Share of the liquidation penalty to the liquidator, fraction."""
    liq_target_ratio: float
    """A partial liquidation restores equity to this multiple of maintenance (1..3)."""
    param_delay_sec: int
    """Timelock of parameter changes after bootstrap, seconds (3600..30 days)."""
    vault_seed_usd: float
    """Vault liquidity seeded on local chains, USD."""
    insurance_seed_usd: float
    """Insurance fund seeded on local chains, USD."""
    order_min_delay_sec: int = 1
    """An order settles at the first price published at least this long after its commit (1..300 s)."""
    order_window_sec: int = 3600
    """After the minimum delay, how long an order may wait before it expires (60..86400 s)."""
    settlement_fee_usd: float = 0.5
    """Fee escrowed at commit and paid to whoever settles the order, USD (<= 2^64-1 token units)."""
    withdraw_price_max_age_sec: int = 600
    """A withdrawal with open positions needs every price published within this many seconds (1..3600)."""
    oi_depth_mult: float = 2.0
    """Each side's gross open interest (USD) is capped at this multiple of the depth input (0.1..100)."""
    liq_penalty_floor: float = 0.25
    """Share of the liquidation fee charged to an account barely under maintenance (0.1..1; 1: the
    full fee at every depth, the engine before issue 12)."""
    liq_penalty_full_depth: float = 0.2
    """Shortfall depth (maintenance - equity) / maintenance from which the full liquidation fee is
    charged; the share rises linearly from the floor up to it (0.01..1)."""

    def settlement_fee_tokens(self, token_decimals: int = TOKEN_DECIMALS) -> int:
        """The settlement fee in token units (rounded to the nearest unit, exact for decimal literals)."""
        from decimal import ROUND_HALF_EVEN, Decimal

        return int((Decimal(repr(float(self.settlement_fee_usd))) * 10**token_decimals)
                   .to_integral_value(rounding=ROUND_HALF_EVEN))

    def engine_config_tuple(self, token_decimals: int = TOKEN_DECIMALS) -> tuple[int, ...]:
        """``MarginEngine.EngineConfig`` in field order: tradingFeeWad, feeInsuranceShareWad,
        liquidatorShareWad, liqTargetRatioWad, orderMinDelaySec, orderWindowSec,
        settlementFeeTokens, withdrawPriceMaxAgeSec, oiDepthMultWad, liqPenaltyFloorWad,
        liqPenaltyFullDepthWad."""
        return (to_wad(self.trading_fee), to_wad(self.fee_insurance_share), to_wad(self.liquidator_share),
                to_wad(self.liq_target_ratio), self.order_min_delay_sec, self.order_window_sec,
                self.settlement_fee_tokens(token_decimals), self.withdraw_price_max_age_sec,
                to_wad(self.oi_depth_mult), to_wad(self.liq_penalty_floor), to_wad(self.liq_penalty_full_depth))


@dataclass(frozen=True)
class StaticFractions:
    """Fixed fractions of a static baseline."""

    imf: float
    mmf: float


@dataclass(frozen=True)
class MarketConfig:
    """One market: feeds, bounds and the model's parameters."""

    id: int
    symbol: str
    feed_decimals: int
    heartbeat_sec: int
    initial: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    alpha: float
    params: RiskParams
    static_calm: StaticFractions
    static_conservative: StaticFractions

    def feed_answer(self, kind: str, value: float) -> int:
        """A value as the integer answer of a feed with ``feed_decimals``."""
        scale: int = 10**self.feed_decimals
        return round(value * scale)

    def bounds_wad(self, kind: str) -> tuple[int, int]:
        lo, hi = self.bounds[kind]
        return to_wad(lo), to_wad(hi)

    def with_params(self, params: RiskParams) -> MarketConfig:
        return replace(self, params=validate_params(params))


@dataclass(frozen=True)
class Config:
    engine: EngineSettings
    markets: tuple[MarketConfig, ...]

    def market(self, market_id: int) -> MarketConfig:
        for m in self.markets:
            if m.id == market_id:
                return m
        raise ValidationError("market_id", market_id, f"one of {[m.id for m in self.markets]}")


def _engine(d: dict[str, Any]) -> EngineSettings:
    w = "engine"
    return EngineSettings(
        trading_fee=_in(f"{w}.trading_fee", _get(d, "trading_fee", w), 0.0, 0.01),
        fee_insurance_share=_in(f"{w}.fee_insurance_share", _get(d, "fee_insurance_share", w), 0.0, 1.0),
        liquidator_share=_in(f"{w}.liquidator_share", _get(d, "liquidator_share", w), 0.0, 1.0),
        liq_target_ratio=_in(f"{w}.liq_target_ratio", _get(d, "liq_target_ratio", w), 1.0, 3.0),
        param_delay_sec=int(_in(f"{w}.param_delay_sec", _get(d, "param_delay_sec", w, int), 3600, 30 * 86400)),
        vault_seed_usd=_in(f"{w}.vault_seed_usd", _get(d, "vault_seed_usd", w), 0.0, 1e15),
        insurance_seed_usd=_in(f"{w}.insurance_seed_usd", _get(d, "insurance_seed_usd", w), 0.0, 1e15),
        order_min_delay_sec=int(_in(f"{w}.order_min_delay_sec", _get(d, "order_min_delay_sec", w, int), 1, 300)),
        order_window_sec=int(_in(f"{w}.order_window_sec", _get(d, "order_window_sec", w, int), 60, 86400)),
        settlement_fee_usd=_settlement_fee(_get(d, "settlement_fee_usd", w), f"{w}.settlement_fee_usd"),
        withdraw_price_max_age_sec=int(_in(f"{w}.withdraw_price_max_age_sec",
                                           _get(d, "withdraw_price_max_age_sec", w, int), 1, 3600)),
        oi_depth_mult=_in(f"{w}.oi_depth_mult", _get(d, "oi_depth_mult", w), 0.1, 100.0),
        liq_penalty_floor=_in(f"{w}.liq_penalty_floor", _get(d, "liq_penalty_floor", w), 0.1, 1.0),
        liq_penalty_full_depth=_in(f"{w}.liq_penalty_full_depth", _get(d, "liq_penalty_full_depth", w), 0.01, 1.0),
    )


SETTLEMENT_FEE_MAX_USD = UINT64_MAX / 10**TOKEN_DECIMALS
"""Largest settlement fee the engine accepts (``uint64`` token units), USD at the default token decimals."""


def _settlement_fee(v: float, name: str) -> float:
    _in(name, v, 0.0, SETTLEMENT_FEE_MAX_USD)
    s = EngineSettings(0, 0, 0, 1, 3600, 0, 0, settlement_fee_usd=float(v))
    if s.settlement_fee_tokens() > UINT64_MAX:
        raise ValidationError(name, v, f"[0.0, {SETTLEMENT_FEE_MAX_USD}] (<= 2^64-1 token units)")
    return float(v)


_MODEL_KEY = {"z_wad": "alpha", "horizon_sec": "horizon_sec", "ramp_jitter_sec": "ramp_jitter_sec",
              "mmf_ramp_wad_per_sec": "mmf_ramp_per_hour"}
"""``[markets.model]`` key of a RiskParams field whose name is not the key plus ``_wad``."""

INT128_MAX_WAD = (2**127 - 1) / WAD
"""Largest feed bound the controller stores (``int128`` WAD)."""


def params_from_model(d: dict[str, Any], where: str) -> tuple[float, RiskParams]:
    """RiskParams from the human-unit ``[markets.model]`` table (alpha becomes z exactly once)."""
    def g(k: str) -> Any:
        return _get(d, k, where)

    alpha = _in(f"{where}.alpha", g("alpha"), 0.8, 0.999999)
    z = float(norm.ppf(alpha))
    p = RiskParams(
        z_wad=round(z * 1e6) * 10**12,
        skew_sens_wad=to_wad(g("skew_sens")),
        tail_cap_wad=to_wad(g("tail_cap")),
        buffer_mult_wad=to_wad(g("buffer_mult")),
        min_buffer_wad=to_wad(g("min_buffer")),
        liq_fee_wad=to_wad(g("liq_fee")),
        impact_wad=to_wad(g("impact")),
        crowd_wad=to_wad(g("crowd")),
        funding_sens_wad=to_wad(g("funding_sens")),
        funding_threshold_wad=to_wad(g("funding_threshold")),
        horizon_sec=int(_get(d, "horizon_sec", where, int)),
        ramp_jitter_sec=int(_get(d, "ramp_jitter_sec", where, int)),
        min_imf_wad=to_wad(g("min_imf")),
        max_imf_wad=to_wad(g("max_imf")),
        min_mmf_wad=to_wad(g("min_mmf")),
        max_mmf_wad=to_wad(g("max_mmf")),
        mmf_ramp_wad_per_sec=to_wad(g("mmf_ramp_per_hour")) // 3600,
        vol_ref_wad=to_wad(g("vol_ref")),
        regime_sens_wad=to_wad(g("regime_sens")),
    )
    try:
        validate_params(p)
    except ValidationError as e:
        key = _MODEL_KEY.get(e.field, e.field.removesuffix("_wad"))
        raise ValidationError(f"{where}.{key}", d.get(key, e.value), f"{e.allowed} (as {e.field}={e.value})") from e
    return alpha, p


def _static(d: dict[str, Any], where: str) -> StaticFractions:
    imf = _in(f"{where}.imf", _get(d, "imf", where), 0.005, 1.0)
    mmf = _in(f"{where}.mmf", _get(d, "mmf", where), 0.001, imf)
    if mmf >= imf:
        raise ValidationError(f"{where}.mmf", mmf, f"< imf ({imf})")
    return StaticFractions(imf, mmf)


def _market(d: dict[str, Any], i: int) -> MarketConfig:
    w = f"markets[{i}]"
    mid = int(_in(f"{w}.id", _get(d, "id", w, int), 0, 63))
    symbol = _get(d, "symbol", w, str)
    dec = int(_in(f"{w}.feed_decimals", _get(d, "feed_decimals", w, int), 0, 18))
    hb = int(_in(f"{w}.heartbeat_sec", _get(d, "heartbeat_sec", w, int), 1, 2**32 - 1))
    init_t = _get(d, "initial", w, dict)
    bounds_t = _get(d, "bounds", w, dict)
    initial: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    for k in FEED_KINDS:
        b = _get(bounds_t, k, f"{w}.bounds", list)
        if (len(b) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
                or not all(math.isfinite(x) and abs(x) <= INT128_MAX_WAD for x in b)
                or b[0] >= b[1] or to_wad(b[0]) >= to_wad(b[1])):
            raise ValidationError(f"{w}.bounds.{k}", b, f"[min, max] with min < max, |bound| <= {INT128_MAX_WAD:.3g}")
        if k in ("price", "volatility", "depth") and to_wad(b[0]) <= 0:
            raise ValidationError(f"{w}.bounds.{k}", b, "a positive minimum")
        bounds[k] = (float(b[0]), float(b[1]))
        v = float(_get(init_t, k, f"{w}.initial"))
        initial[k] = _in(f"{w}.initial.{k}", v, bounds[k][0], bounds[k][1])
    alpha, params = params_from_model(_get(d, "model", w, dict), f"{w}.model")
    return MarketConfig(mid, symbol, dec, hb, initial, bounds, alpha, params,
                        _static(_get(d, "static_calm", w, dict), f"{w}.static_calm"),
                        _static(_get(d, "static_conservative", w, dict), f"{w}.static_conservative"))


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document."""
    engine = _engine(_get(data, "engine", "", dict))
    mlist = _get(data, "markets", "", list)
    if not 1 <= len(mlist) <= 64:
        raise ValidationError("markets", len(mlist), "1..64 markets")
    markets: list[MarketConfig] = []
    for i, t in enumerate(mlist):
        if not isinstance(t, dict):
            raise ValidationError(f"markets[{i}]", t, "a [[markets]] table")
        m = _market(t, i)
        if any(x.id == m.id for x in markets):
            raise ValidationError(f"markets[{i}].id", m.id, f"an id not used by another market ({[x.id for x in markets]})")
        markets.append(m)
    return Config(engine, tuple(markets))


@functools.cache
def _shipped_params(path: str, symbol: str) -> RiskParams:
    cfg = load_config(path)
    for m in cfg.markets:
        if m.symbol == symbol:
            return m.params
    raise ValidationError("symbol", symbol, f"one of {[m.symbol for m in cfg.markets]} (markets in {path})")


def default_params(symbol: str = "BTC", path: str | Path = DEFAULT_CONFIG) -> RiskParams:
    """The shipped parameters of market ``symbol``, read from ``config/markets.toml``.

    The one source of truth for shipped values is the TOML file; this reads it (and caches the
    result per file and symbol; :class:`~ballast.model.RiskParams` is immutable). ``z_wad`` comes
    from the market's ``alpha`` (99% gives 2.326348e18).

    Raises
    ------
    ValidationError
        If the file is missing or invalid, or has no market ``symbol`` (the message lists them).
    """
    return _shipped_params(str(Path(path).resolve()), symbol)


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Load and validate a TOML configuration file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError as e:
        raise ValidationError("config", str(p), "an existing TOML file") from e
    except tomllib.TOMLDecodeError as e:
        raise ValidationError("config", str(p), f"valid TOML ({e})") from e
    return parse_config(data)
