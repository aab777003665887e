"""The margin model in Python: an exact integer mirror of the contracts, and a float version.

The integer functions reproduce ``contracts/libraries/MarginMath.sol``, ``PositionMath.sol`` and
``RampLib.sol`` to the wei (same operations, same rounding), so the stress lab can recompute every
account's health off chain and a differential test can compare both sides on random inputs. The
float functions (``*_float``) are the same model in ordinary arithmetic for research; they agree
with the integer version within 1e-12 relative wherever rounding is negligible.

Scales: WAD = 1e18 for fractions, prices (USD per base unit), sizes (base units) and USD amounts.
Volatility is annualized (1e18 = 100%), funding is per hour, skew is in volatility units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ballast._typing import WAD
from ballast.errors import ValidationError

YEAR_SEC = 365 * 86_400
FUNDING_PERIOD_SEC = 3_600
MIN_REMAINING_NOTIONAL_USD_WAD = 10 * WAD

# ------------------------------------------------------------------------------ fixed point


def mul_wad_up(x: int, y: int) -> int:
    """ceil(x * y / WAD) for non-negative x, y (solady ``mulWadUp``)."""
    return -((-x * y) // WAD)


def mul_wad_down(x: int, y: int) -> int:
    """floor(x * y / WAD) for non-negative x, y (solady ``mulWad``)."""
    return x * y // WAD


def div_wad_up(x: int, y: int) -> int:
    """ceil(x * WAD / y) (solady ``divWadUp``)."""
    return -((-x * WAD) // y)


def div_wad_down(x: int, y: int) -> int:
    """floor(x * WAD / y) (solady ``divWad``)."""
    return x * WAD // y


def mul_div_up(x: int, y: int, d: int) -> int:
    """ceil(x * y / d) for non-negative operands (solady ``mulDivUp``)."""
    return -((-x * y) // d)


def div_up(x: int, d: int) -> int:
    """ceil(x / d) for non-negative x (solady ``divUp``)."""
    return -((-x) // d)


def div_floor(a: int, d: int) -> int:
    """floor(a / d), d > 0 (``SignedMath.divFloor``)."""
    return a // d


def div_ceil(a: int, d: int) -> int:
    """ceil(a / d), d > 0 (``SignedMath.divCeil``)."""
    return -((-a) // d)


def div_trunc(a: int, d: int) -> int:
    """a / d truncated toward zero, as Solidity's signed ``/``."""
    q = abs(a) // abs(d)
    return q if (a >= 0) == (d > 0) else -q


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else (hi if v > hi else v)


# ------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class RiskParams:
    """A market's risk model parameters, field for field the Solidity ``RiskParams`` struct.

    Every ``*_wad`` field is a WAD integer (1e18 = 1.0).
    """

    z_wad: int
    """One-sided standard normal quantile of the target confidence (2.326e18 for 99%)."""
    skew_sens_wad: int
    """Tail multiplier slope per unit of adverse skew (volatility units)."""
    tail_cap_wad: int
    """Largest tail multiplier (>= 1e18)."""
    buffer_mult_wad: int
    """Initial-margin buffer above maintenance, as a multiple of the VaR move."""
    min_buffer_wad: int
    """Constant part of the initial-maintenance buffer."""
    liq_fee_wad: int
    """Liquidation penalty, fraction of the notional closed."""
    impact_wad: int
    """Price impact of trading the depth feed's notional."""
    crowd_wad: int
    """Initial-margin add-on when the net OI imbalance reaches the depth."""
    funding_sens_wad: int
    """Initial-margin add-on per unit of hourly funding paid above the threshold."""
    funding_threshold_wad: int
    """Hourly funding rate the paying side may pay penalty free."""
    horizon_sec: int
    """Liquidation horizon h, seconds."""
    ramp_jitter_sec: int
    """Width of the random delay before a maintenance tightening starts, seconds."""
    min_imf_wad: int
    """Initial margin floor (1 / max leverage cap)."""
    max_imf_wad: int
    """Initial margin cap (1 / min leverage); also the fail-closed level."""
    min_mmf_wad: int
    """Maintenance floor."""
    max_mmf_wad: int
    """Maintenance cap."""
    mmf_ramp_wad_per_sec: int
    """Largest rise of the maintenance fraction per second during a tightening."""
    vol_ref_wad: int = 500_000_000_000_000_000
    """Long-run (calm) annualized volatility of the market."""
    regime_sens_wad: int = 0
    """Tail multiplier slope per unit of relative excess volatility over ``vol_ref_wad``."""

    def as_tuple(self) -> tuple[int, ...]:
        """The struct as an ABI tuple (field order of the Solidity struct)."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RiskParams:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValidationError("params", sorted(unknown), f"only the fields {sorted(names)}")
        missing = names - set(d)
        if missing:
            raise ValidationError("params", sorted(missing), "every field present (missing ones listed)")
        return cls(**{k: int(v) for k, v in d.items()})


# Hard bounds, as contracts/libraries/ConstantsLib.sol (inclusive). Order of RiskParams fields.
HARD_BOUNDS: dict[str, tuple[int, int]] = {
    "z_wad": (WAD, 6 * WAD),
    "skew_sens_wad": (0, 18 * WAD),
    "tail_cap_wad": (WAD, 5 * WAD),
    "buffer_mult_wad": (WAD // 10, 5 * WAD),
    "min_buffer_wad": (WAD // 1000, WAD // 5),
    "liq_fee_wad": (WAD // 1000, WAD // 10),
    "impact_wad": (0, WAD // 5),
    "crowd_wad": (0, WAD),
    "funding_sens_wad": (0, 1000 * WAD),
    "funding_threshold_wad": (0, WAD // 100),
    "horizon_sec": (60, 7 * 86_400),
    "ramp_jitter_sec": (0, 86_400),
    "min_imf_wad": (WAD // 200, WAD),
    "max_imf_wad": (WAD // 200, WAD),
    "min_mmf_wad": (WAD // 1000, WAD),
    "max_mmf_wad": (WAD // 1000, WAD),
    "mmf_ramp_wad_per_sec": (WAD // YEAR_SEC, (WAD // 4) // 3_600),
    "vol_ref_wad": (WAD // 20, 5 * WAD),
    "regime_sens_wad": (0, 10 * WAD),
}


def validate_params(p: RiskParams) -> RiskParams:
    """Check hard bounds and consistency exactly as ``ParamsLib.validate``.

    Raises
    ------
    ValidationError
        Naming the field, its value and the allowed range.
    """
    for name, (lo, hi) in HARD_BOUNDS.items():
        v = getattr(p, name)
        if not lo <= v <= hi:
            raise ValidationError(name, v, f"[{lo}, {hi}]")
    if p.min_imf_wad > p.max_imf_wad:
        raise ValidationError("min_imf_wad", p.min_imf_wad, f"<= max_imf_wad ({p.max_imf_wad})")
    if p.min_mmf_wad > p.max_mmf_wad:
        raise ValidationError("min_mmf_wad", p.min_mmf_wad, f"<= max_mmf_wad ({p.max_mmf_wad})")
    if p.min_mmf_wad + p.min_buffer_wad > p.min_imf_wad:
        raise ValidationError("min_mmf_wad", p.min_mmf_wad, f"<= min_imf_wad - min_buffer_wad ({p.min_imf_wad - p.min_buffer_wad})")
    if p.max_mmf_wad + p.min_buffer_wad > p.max_imf_wad:
        raise ValidationError("max_mmf_wad", p.max_mmf_wad, f"<= max_imf_wad - min_buffer_wad ({p.max_imf_wad - p.min_buffer_wad})")
    return p


# ------------------------------------------------------------------------------ MarginMath


@dataclass(frozen=True)
class RiskInputs:
    """Live inputs for one (market, side, size); the Solidity ``RiskInputs`` struct."""

    sigma_wad: int
    skew_wad: int
    depth_usd_wad: int
    funding_rate_wad: int
    oi_side_wad: int
    oi_other_wad: int
    notional_usd_wad: int
    price_wad: int
    is_long: bool

    def as_tuple(self) -> tuple[int | bool, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Fractions:
    """The model's terms, WAD fractions of notional; the Solidity ``Fractions`` struct."""

    var_move_wad: int
    mmf_base_wad: int
    slip_wad: int
    crowd_wad: int
    funding_wad: int
    imf_wad: int


def sqrt_horizon_wad(horizon_sec: int) -> int:
    """sqrt(h / YEAR) as a WAD, rounded up."""
    x = div_up(horizon_sec * 10**36, YEAR_SEC)
    s = math.isqrt(x)
    return s + 1 if s * s < x else s


def adverse_skew(skew_wad: int, is_long: bool) -> int:
    if is_long:
        return -skew_wad if skew_wad < 0 else 0
    return skew_wad if skew_wad > 0 else 0


def _check_tail_feed(tail_feed_wad: int) -> int:
    if isinstance(tail_feed_wad, bool) or not isinstance(tail_feed_wad, int) or tail_feed_wad < 0:
        raise ValidationError("tail_feed_wad", tail_feed_wad,
                              "an int >= 0 (0: none published; else a WAD tail multiplier, 1e18 = 1.0)")
    return tail_feed_wad


def tail_multiplier(p: RiskParams, sigma_wad: int, skew_wad: int, is_long: bool, *, tail_feed_wad: int = 0) -> int:
    """``min(tailCap, max(tailFeed, tailLive))`` with
    ``tailLive = 1 + skewSens * adverseSkew + regimeSens * max(0, sigma - volRef) / volRef``.

    ``tail_feed_wad`` is the calibrated tail the keeper publishes for this side (WAD, 1e18 = 1.0;
    long side from adverse down moves, short side from adverse up moves, :mod:`ballast.tail`);
    0 means none published and gives the model without it exactly.
    """
    t = WAD + mul_wad_up(p.skew_sens_wad, adverse_skew(skew_wad, is_long))
    if sigma_wad > p.vol_ref_wad:
        t += mul_wad_up(p.regime_sens_wad, div_wad_up(sigma_wad - p.vol_ref_wad, p.vol_ref_wad))
    if _check_tail_feed(tail_feed_wad) > t:
        t = tail_feed_wad
    return min(t, p.tail_cap_wad)


def var_move(p: RiskParams, sigma_wad: int, skew_wad: int, is_long: bool, *, tail_feed_wad: int = 0) -> int:
    """``z * sigma * sqrt(h / YEAR) * tail``, each product rounded up; ``tail_feed_wad`` as
    :func:`tail_multiplier` (0: none published)."""
    v = mul_wad_up(p.z_wad, sigma_wad)
    v = mul_wad_up(v, sqrt_horizon_wad(p.horizon_sec))
    return mul_wad_up(v, tail_multiplier(p, sigma_wad, skew_wad, is_long, tail_feed_wad=tail_feed_wad))


def maintenance_base(p: RiskParams, var_move_wad: int) -> int:
    return clamp(var_move_wad + p.liq_fee_wad, p.min_mmf_wad, p.max_mmf_wad)


def slippage(impact_wad: int, notional_usd_wad: int, depth_usd_wad: int) -> int:
    if depth_usd_wad == 0:
        return WAD
    return min(mul_div_up(impact_wad, notional_usd_wad, depth_usd_wad), WAD)


def crowding(crowd_k: int, oi_side: int, oi_other: int, price_wad: int, depth_usd_wad: int) -> int:
    if oi_side <= oi_other:
        return 0
    ratio = slippage(WAD, mul_wad_up(oi_side - oi_other, price_wad), depth_usd_wad)
    return mul_wad_up(crowd_k, ratio)


def funding_penalty(p: RiskParams, funding_rate_wad: int, is_long: bool) -> int:
    payer = funding_rate_wad if is_long else -funding_rate_wad
    if payer <= p.funding_threshold_wad:
        return 0
    return mul_wad_up(p.funding_sens_wad, payer - p.funding_threshold_wad)


def compute(p: RiskParams, x: RiskInputs, *, tail_feed_wad: int = 0) -> Fractions:
    """Every term of the model (``MarginMath.compute``); ``tail_feed_wad`` is the published tail of
    ``x``'s side (WAD; 0: none, the model without it exactly), see :func:`tail_multiplier`."""
    vm = var_move(p, x.sigma_wad, x.skew_wad, x.is_long, tail_feed_wad=tail_feed_wad)
    mb = maintenance_base(p, vm)
    slip = slippage(p.impact_wad, x.notional_usd_wad, x.depth_usd_wad)
    crowd = crowding(p.crowd_wad, x.oi_side_wad, x.oi_other_wad, x.price_wad, x.depth_usd_wad)
    fund = funding_penalty(p, x.funding_rate_wad, x.is_long)
    raw = mb + slip + mul_wad_up(p.buffer_mult_wad, vm) + p.min_buffer_wad + crowd + fund
    return Fractions(vm, mb, slip, crowd, fund, clamp(raw, p.min_imf_wad, p.max_imf_wad))


def position_maintenance(mmf_base_wad: int, slip_wad: int, max_mmf_wad: int) -> int:
    return min(mmf_base_wad + slip_wad, max_mmf_wad)


def required_initial(imf_live_wad: int, mmf_position_wad: int, min_buffer_wad: int, max_imf_wad: int) -> int:
    floor_ = min(mmf_position_wad + min_buffer_wad, max_imf_wad)
    return max(imf_live_wad, floor_)


# ------------------------------------------------------------------------------ RampLib


@dataclass(frozen=True)
class Ramp:
    """Maintenance ramp of one side (``RampLib.Ramp``)."""

    from_wad: int
    to_wad: int
    activation_sec: int
    rate_wad_per_sec: int

    def value_at(self, now_sec: int) -> int:
        if now_sec <= self.activation_sec or self.to_wad <= self.from_wad:
            return self.from_wad
        return min(self.from_wad + self.rate_wad_per_sec * (now_sec - self.activation_sec), self.to_wad)


# ------------------------------------------------------------------------------ PositionMath


def value(size_wad: int, price_wad: int) -> int:
    """Signed value of a size, rounded down."""
    return div_floor(size_wad * price_wad, WAD)


def notional(size_wad: int, price_wad: int) -> int:
    """Absolute notional, rounded up."""
    return mul_wad_up(abs(size_wad), price_wad)


def unrealized_pnl(size_wad: int, basis_wad: int, price_wad: int) -> int:
    return value(size_wad, price_wad) - basis_wad


def funding_owed(size_wad: int, index_now_wad: int, index_entry_wad: int) -> int:
    return div_ceil(size_wad * (index_now_wad - index_entry_wad), WAD)


def funding_index_delta(rate_wad: int, price_wad: int, dt_sec: int) -> int:
    return div_trunc(rate_wad * price_wad * dt_sec, WAD * FUNDING_PERIOD_SEC)


def apply_trade(size_wad: int, basis_wad: int, delta_wad: int, price_wad: int) -> tuple[int, int, int]:
    """(new size, new basis, realized PnL) of a trade (``PositionMath.applyTrade``)."""
    new_size = size_wad + delta_wad
    if size_wad == 0 or (size_wad > 0) == (delta_wad > 0):
        return new_size, basis_wad + div_ceil(delta_wad * price_wad, WAD), 0
    old_abs = abs(size_wad)
    closed_abs = min(abs(delta_wad), old_abs)
    closed_basis = div_ceil(basis_wad * closed_abs, old_abs)
    closed_signed = closed_abs if size_wad > 0 else -closed_abs
    realized = value(closed_signed, price_wad) - closed_basis
    new_basis = basis_wad - closed_basis
    if abs(delta_wad) > old_abs:
        new_basis = div_ceil(new_size * price_wad, WAD)
    return new_size, new_basis, realized


UINT256_MAX = 2**256 - 1


def _u256(*products: int) -> None:
    """Solady's overflow check: a product above 2^256 - 1 reverts (here: OverflowError)."""
    for v in products:
        if v > UINT256_MAX:
            raise OverflowError("uint256 overflow (solady MulWadFailed / MulDivFailed)")


def skew_impact(coef_wad: int, skew_before: int, skew_after: int, price_wad: int, depth_usd_wad: int) -> tuple[int, int]:
    """``ImpactMath.skewImpact``: impact of moving a market's signed skew (long minus short open
    interest, base units WAD) from ``skew_before`` to ``skew_after`` at ``price_wad`` against
    ``depth_usd_wad``, as (charge, rebate) USD WAD, one of them 0.

    The impact stock of a skew S (USD) is k S^2 / (2 D), so the cost of a move is the integral of
    the marginal impact k S / D over the skew it crosses: one trade, n trades or an open-close
    cycle pay the same. A charge (|skew| grows) rounds up, a rebate (|skew| shrinks) rounds down,
    with solady's ``mulWadUp``/``mulDivUp`` and ``mulWad``/``mulDiv`` in the contract's order.
    Raises OverflowError where the contract's arithmetic reverts.
    """
    b = abs(skew_before)
    a = abs(skew_after)
    if a == b or coef_wad == 0:
        return 0, 0
    two_d = 2 * depth_usd_wad
    _u256(two_d)
    if two_d == 0:
        raise ZeroDivisionError("skew_impact: depth 0 (solady MulDivFailed)")
    if a > b:
        _u256((a - b) * price_wad, (a + b) * price_wad)
        lhs, rhs = mul_wad_up(a - b, price_wad), mul_wad_up(a + b, price_wad)
        _u256(lhs * rhs)
        x = mul_wad_up(lhs, rhs)
        _u256(coef_wad * x)
        cx = mul_wad_up(coef_wad, x)
        _u256(cx * WAD)
        return mul_div_up(cx, WAD, two_d), 0
    _u256((b - a) * price_wad, (a + b) * price_wad)
    lhs, rhs = mul_wad_down(b - a, price_wad), mul_wad_down(a + b, price_wad)
    _u256(lhs * rhs)
    x = mul_wad_down(lhs, rhs)
    _u256(coef_wad * x)
    cx = mul_wad_down(coef_wad, x)
    _u256(cx * WAD)
    return 0, cx * WAD // two_d


def liquidation_notional(
    equity_wad: int, maintenance_wad: int, target_ratio_wad: int, mmf_wad: int, cost_wad: int, position_notional_wad: int
) -> int:
    """Notional a liquidation closes (``PositionMath.liquidationNotional``)."""
    denom = mul_wad_down(mmf_wad, target_ratio_wad)
    if denom <= cost_wad:
        return position_notional_wad
    denom -= cost_wad
    deficit = mul_wad_up(maintenance_wad, target_ratio_wad) - equity_wad
    if deficit <= 0:
        return 0
    return min(div_wad_up(deficit, denom), position_notional_wad)


def penalty_fraction(liq_fee_wad: int, equity_wad: int, maintenance_wad: int, floor_wad: int,
                     full_depth_wad: int) -> int:
    """Liquidation penalty fraction at the account's shortfall depth (``PositionMath.penaltyFraction``):
    ``liq_fee x min(1, floor + (1 - floor) x d / full_depth)`` with
    ``d = (maintenance - equity) / maintenance``, WAD, each step rounded up (against the account).
    The full fee when equity <= 0 (d >= 1), the floor's share when the account is not under
    maintenance; ``floor_wad = WAD`` gives ``liq_fee_wad`` at every depth."""
    if equity_wad <= 0:
        return liq_fee_wad
    if equity_wad >= maintenance_wad:
        return mul_wad_up(liq_fee_wad, floor_wad)
    depth = div_wad_up(maintenance_wad - equity_wad, maintenance_wad)
    if depth >= full_depth_wad:
        return liq_fee_wad
    return mul_wad_up(liq_fee_wad, floor_wad + mul_div_up(WAD - floor_wad, depth, full_depth_wad))


# ------------------------------------------------------------------------------ float model


def compute_float(p: RiskParams, x: RiskInputs, *, tail_feed: float = 0.0) -> dict[str, float]:
    """The same model in float arithmetic (fractions as plain numbers, 1.0 = 100%); ``tail_feed``
    is the published tail of ``x``'s side as a plain number (0: none published)."""
    def f(v: int) -> float:
        return v / WAD

    if not (isinstance(tail_feed, (int, float)) and math.isfinite(tail_feed) and tail_feed >= 0.0):
        raise ValidationError("tail_feed", tail_feed, "a finite number >= 0 (0: none published)")
    sigma, skew, depth, rate = f(x.sigma_wad), f(x.skew_wad), f(x.depth_usd_wad), f(x.funding_rate_wad)
    adv = max(0.0, -skew) if x.is_long else max(0.0, skew)
    regime = f(p.regime_sens_wad) * max(0.0, sigma - f(p.vol_ref_wad)) / f(p.vol_ref_wad)
    tail = min(max(tail_feed, 1.0 + f(p.skew_sens_wad) * adv + regime), f(p.tail_cap_wad))
    vm = f(p.z_wad) * sigma * math.sqrt(p.horizon_sec / YEAR_SEC) * tail
    mb = min(max(vm + f(p.liq_fee_wad), f(p.min_mmf_wad)), f(p.max_mmf_wad))
    slip = 1.0 if depth == 0 else min(f(p.impact_wad) * f(x.notional_usd_wad) / depth, 1.0)
    if x.oi_side_wad <= x.oi_other_wad:
        crowd = 0.0
    else:
        net = f(x.oi_side_wad - x.oi_other_wad) * f(x.price_wad)
        crowd = f(p.crowd_wad) * (1.0 if depth == 0 else min(net / depth, 1.0))
    payer = rate if x.is_long else -rate
    fund = max(0.0, payer - f(p.funding_threshold_wad)) * f(p.funding_sens_wad)
    raw = mb + slip + f(p.buffer_mult_wad) * vm + f(p.min_buffer_wad) + crowd + fund
    imf = min(max(raw, f(p.min_imf_wad)), f(p.max_imf_wad))
    return {"var_move": vm, "mmf_base": mb, "slip": slip, "crowd": crowd, "funding": fund, "imf": imf}


def max_leverage_float(p: RiskParams, sigma: float, skew: float = 0.0, is_long: bool = True, *,
                       tail_feed: float = 0.0) -> float:
    """Max leverage (1 / IMF) for a small position at annualized volatility ``sigma`` (1.0 = 100%),
    with the side's published tail ``tail_feed`` (0: none)."""
    x = RiskInputs(int(sigma * WAD), int(skew * WAD), 10**30, 0, 0, 0, 0, WAD, is_long)
    return 1.0 / compute_float(p, x, tail_feed=tail_feed)["imf"]
