"""A vectorized (numpy, float64) mirror of the engine's health and liquidation checks, for many
accounts over a price path: research-scale populations (millions of account-steps per second)
where the exact mirror (``ballast.mirror``, Python integers) does thousands.

What it computes, per step ``t`` and account ``i`` (one position per account, one market; the
formulas of ``EngineMirror.health`` in floats)::

    equity_i      = collateral_i - basis_i + size_i * price_t  [- size_i * (F_t - F_entry_i)]
    notional_i    = |size_i| * price_t
    mmf_i         = min(mmf_base_t(side_i) + slip_i, max_mmf)
    maintenance_i = notional_i * mmf_i
    liquidatable  = equity_i < maintenance_i

and a simplified liquidation: a liquidatable account is closed in full at the step's price, pays a
penalty (``liq_fee`` scaled by its shortfall depth, as the engine's ``PositionMath.penaltyFraction``
(:func:`penalty_share`), and ``impact`` of the closed notional) and its negative collateral, if any,
is bad debt. (The engine closes partially when it can: this is the conservative bound used for
research sweeps, not a replica of the partial-close rule.)

Units: prices USD per base unit, sizes base units, money USD, fractions as plain numbers.

Exactness: float64 decides the same as the integer mirror except within rounding of the
maintenance line; ``classify`` recomputes, with the integer formulas, every account whose margin is
within ``tol`` of the line when given the integer inputs (``ExactBook``), so its mask is exactly the
engine's. ``tests/unit/test_sim.py`` checks both against ``EngineMirror.health``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ballast._typing import WAD, FloatArray, IntArray
from ballast.errors import ValidationError
from ballast.model import YEAR_SEC, RiskParams, mul_wad_up, notional, position_maintenance, unrealized_pnl

BoolArray = npt.NDArray[np.bool_]
DEFAULT_CHUNK = 16_384
"""Accounts per chunk: the chunk's arrays stay in cache across the steps of the path."""


# ------------------------------------------------------------------------------ inputs


@dataclass
class Book:
    """N accounts with one position each (float64 arrays of length N).

    Attributes
    ----------
    size
        Signed position size, base units (> 0 long, < 0 short, 0 none).
    basis
        Signed cost basis, USD (size x entry price for a fresh position).
    collateral
        Collateral, USD.
    slip
        Slippage snapshot of the position (fraction of notional added to maintenance).
    funding_entry
        Funding index at the position's last settlement, USD per base unit (optional).
    """

    size: FloatArray
    basis: FloatArray
    collateral: FloatArray
    slip: FloatArray
    funding_entry: FloatArray | None = None

    def __post_init__(self) -> None:
        n = self.size.shape[0]
        for name in ("size", "basis", "collateral", "slip"):
            a = getattr(self, name)
            if a.shape != (n,):
                raise ValidationError(f"Book.{name}", a.shape, f"shape ({n},) like size")
        if self.funding_entry is not None and self.funding_entry.shape != (n,):
            raise ValidationError("Book.funding_entry", self.funding_entry.shape, f"shape ({n},)")

    @property
    def n(self) -> int:
        return int(self.size.shape[0])

    def copy(self) -> Book:
        return Book(self.size.copy(), self.basis.copy(), self.collateral.copy(), self.slip.copy(),
                    None if self.funding_entry is None else self.funding_entry.copy())

    def take(self, idx: slice | IntArray) -> Book:
        return Book(self.size[idx].copy(), self.basis[idx].copy(), self.collateral[idx].copy(), self.slip[idx].copy(),
                    None if self.funding_entry is None else self.funding_entry[idx].copy())


@dataclass
class ExactBook:
    """The same accounts in the engine's integers (WAD sizes, prices, fractions; token collateral)."""

    size_wad: list[int]
    basis_wad: list[int]
    collateral_tokens: list[int]
    slip_wad: list[int]
    token_scale: int = 10**12

    def to_float(self) -> Book:
        s = self.token_scale
        return Book(np.array([x / WAD for x in self.size_wad]), np.array([x / WAD for x in self.basis_wad]),
                    np.array([x * s / WAD for x in self.collateral_tokens]), np.array([x / WAD for x in self.slip_wad]))

    def health(self, i: int, price_wad: int, mmf_base_wad: int, max_mmf_wad: int) -> tuple[int, int]:
        """(equity, maintenance), USD WAD, of account ``i``: ``EngineMirror.health`` for one position
        without unsettled funding."""
        size = self.size_wad[i]
        eq = self.collateral_tokens[i] * self.token_scale
        if size == 0:
            return eq, 0
        eq += unrealized_pnl(size, self.basis_wad[i], price_wad)
        n = notional(size, price_wad)
        return eq, mul_wad_up(n, position_maintenance(mmf_base_wad, self.slip_wad[i], max_mmf_wad))


def maintenance_base_path(p: RiskParams, sigma: FloatArray, skew: FloatArray | float = 0.0,
                          is_long: bool = True) -> FloatArray:
    """The model's maintenance base fraction along a path of annualized volatility and skew
    (``ballast.model.maintenance_base(var_move(...))`` in floats, vectorized)."""
    def f(v: int) -> float:
        return v / WAD

    sig = np.asarray(sigma, dtype=np.float64)
    sk = np.broadcast_to(np.asarray(skew, dtype=np.float64), sig.shape)
    adv = np.maximum(0.0, -sk) if is_long else np.maximum(0.0, sk)
    ref = f(p.vol_ref_wad)
    regime = f(p.regime_sens_wad) * np.maximum(0.0, sig - ref) / ref
    tail = np.minimum(1.0 + f(p.skew_sens_wad) * adv + regime, f(p.tail_cap_wad))
    vm = f(p.z_wad) * sig * math.sqrt(p.horizon_sec / YEAR_SEC) * tail
    out: FloatArray = np.clip(vm + f(p.liq_fee_wad), f(p.min_mmf_wad), f(p.max_mmf_wad))
    return out


# ------------------------------------------------------------------------------ one step


@dataclass
class Health:
    """Per-account health at one step (arrays of length N)."""

    equity: FloatArray
    maintenance: FloatArray
    notional: FloatArray
    liquidatable: BoolArray
    resolved_exactly: int = 0
    """Accounts within ``tol`` of the line recomputed in integers (``classify`` with an ExactBook)."""


def health(book: Book, price: float, mmf_long: float, mmf_short: float, max_mmf: float,
           funding_index: float | None = None) -> Health:
    """Equity, maintenance, notional and the liquidatable mask of every account at one price."""
    size = book.size
    eq = book.collateral - book.basis + size * price
    if funding_index is not None and book.funding_entry is not None:
        eq -= size * (funding_index - book.funding_entry)
    ntl = np.abs(size) * price
    mmf = np.minimum(np.where(size > 0, mmf_long, mmf_short) + book.slip, max_mmf)
    maint = ntl * mmf
    maint[size == 0] = 0.0
    return Health(eq, maint, ntl, eq < maint)


def classify(book: Book, price: float, mmf_long: float, mmf_short: float, max_mmf: float, *,
             exact: ExactBook | None = None, price_wad: int | None = None, mmf_long_wad: int | None = None,
             mmf_short_wad: int | None = None, max_mmf_wad: int | None = None, tol: float = 1e-9) -> Health:
    """``health`` whose mask is exact: with ``exact`` (and the integer price and fractions), every
    account whose margin ``equity - maintenance`` is within ``tol`` x (|equity| + maintenance + 1)
    of zero is recomputed with the engine's integer formulas."""
    h = health(book, price, mmf_long, mmf_short, max_mmf)
    if exact is None:
        return h
    if price_wad is None or mmf_long_wad is None or mmf_short_wad is None or max_mmf_wad is None:
        raise ValidationError("classify", "exact without integer inputs", "price_wad, mmf_*_wad and max_mmf_wad")
    band = np.abs(h.equity - h.maintenance) <= tol * (np.abs(h.equity) + h.maintenance + 1.0)
    idx = np.flatnonzero(band)
    for i in idx:
        side = mmf_long_wad if exact.size_wad[i] > 0 else mmf_short_wad
        eq, maint = exact.health(int(i), price_wad, side, max_mmf_wad)
        h.liquidatable[i] = eq < maint
    h.resolved_exactly = int(idx.size)
    return h


# ------------------------------------------------------------------------------ a path


@dataclass
class PathResult:
    """Per-step totals of a simulated path and the book at its end."""

    accounts: int
    steps: int
    liquidations: IntArray
    liquidated_notional: FloatArray
    penalties: FloatArray
    bad_debt: FloatArray
    equity_total: FloatArray
    maintenance_total: FloatArray
    book: Book
    liquidated_at: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Step at which each account was liquidated (-1: never)."""

    @property
    def account_steps(self) -> int:
        return self.accounts * self.steps

    def merge(self, other: PathResult) -> PathResult:
        b, o = self.book, other.book
        fe = None if b.funding_entry is None or o.funding_entry is None else np.r_[b.funding_entry, o.funding_entry]
        return PathResult(self.accounts + other.accounts, self.steps, self.liquidations + other.liquidations,
                          self.liquidated_notional + other.liquidated_notional, self.penalties + other.penalties,
                          self.bad_debt + other.bad_debt, self.equity_total + other.equity_total,
                          self.maintenance_total + other.maintenance_total,
                          Book(np.r_[b.size, o.size], np.r_[b.basis, o.basis], np.r_[b.collateral, o.collateral],
                               np.r_[b.slip, o.slip], fe),
                          np.r_[self.liquidated_at, other.liquidated_at])


def penalty_share(equity: FloatArray, maintenance: FloatArray, floor: float, full_depth: float) -> FloatArray:
    """Share of the liquidation fee charged at each account's shortfall depth, the float form of
    ``PositionMath.penaltyFraction`` (``ballast.model.penalty_fraction``), vectorized:
    ``min(1, floor + (1 - floor) x d / full_depth)`` with ``d = (maintenance - equity) /
    maintenance``; 1 when equity <= 0, ``floor`` when the account is not under maintenance.
    ``floor`` 1 gives 1 everywhere (the engine before issue 12)."""
    safe = np.where(maintenance > 0, maintenance, 1.0)
    depth = np.where(equity > 0, np.maximum(maintenance - equity, 0.0) / safe, 1.0)
    out: FloatArray = np.minimum(1.0, floor + (1.0 - floor) * depth / full_depth)
    return out


def _check_path(price: FloatArray, mmf_long: FloatArray, mmf_short: FloatArray) -> int:
    t = int(price.shape[0])
    if price.ndim != 1 or t == 0 or mmf_long.shape != (t,) or mmf_short.shape != (t,):
        raise ValidationError("path", (price.shape, mmf_long.shape, mmf_short.shape), "three 1-D arrays of one length")
    if not np.all(np.isfinite(price) & (price > 0)):
        raise ValidationError("price", "non-positive or non-finite entries", "prices > 0")
    return t


def simulate(book: Book, price: FloatArray, mmf_long: FloatArray, mmf_short: FloatArray, *, max_mmf: float,
             liq_fee: float, impact: float = 0.0, funding_index: FloatArray | None = None,
             chunk: int = DEFAULT_CHUNK, liq_penalty_floor: float = 1.0,
             liq_penalty_full_depth: float = 1.0) -> PathResult:
    """Replay a price path over a book: health of every account at every step, liquidations (full
    close with penalty) where ``equity < maintenance``. The book is not modified (a copy is).

    Parameters
    ----------
    price, mmf_long, mmf_short
        Per step: price, and the maintenance base fraction of each side (``maintenance_base_path``).
    max_mmf
        Maintenance cap (position maintenance = min(base + slip, cap)).
    liq_fee, impact
        Penalty and impact of a liquidation, fractions of the notional closed; the penalty is
        ``liq_fee`` x :func:`penalty_share` of the account's depth below maintenance.
    liq_penalty_floor, liq_penalty_full_depth
        The engine's ``liqPenaltyFloorWad`` and ``liqPenaltyFullDepthWad`` as plain numbers
        (``EngineSettings.liq_penalty_floor``, ``liq_penalty_full_depth``); the default floor 1
        charges the full fee at every depth.
    funding_index
        Optional per-step funding index (USD per base unit); needs ``book.funding_entry``.
    chunk
        Accounts per chunk (chunk-major loop: a chunk's arrays stay in cache over the path).
    """
    price = np.asarray(price, dtype=np.float64)
    mmf_long = np.asarray(mmf_long, dtype=np.float64)
    mmf_short = np.asarray(mmf_short, dtype=np.float64)
    steps = _check_path(price, mmf_long, mmf_short)
    use_f = funding_index is not None and book.funding_entry is not None
    fidx = np.asarray(funding_index, dtype=np.float64) if use_f and funding_index is not None else None
    out = book.copy()
    n = out.n
    liqs = np.zeros(steps, dtype=np.int64)
    liq_ntl = np.zeros(steps)
    pens = np.zeros(steps)
    bad = np.zeros(steps)
    eq_tot = np.zeros(steps)
    mt_tot = np.zeros(steps)
    liquidated_at = np.full(n, -1, dtype=np.int64)
    # Longs first, then shorts, within each chunk: each side's fraction is one scalar per step.
    order = np.argsort(out.size <= 0, kind="stable")
    for lo in range(0, n, chunk):
        idx = order[lo:lo + chunk]
        size = out.size[idx]
        absz = np.abs(size)
        cmb = out.collateral[idx] - out.basis[idx]
        slip = out.slip[idx]
        fe = out.funding_entry[idx] if fidx is not None and out.funding_entry is not None else None
        k = int(np.count_nonzero(size > 0))
        m = np.empty_like(size)
        eq = np.empty_like(size)
        mask = np.empty(size.shape, dtype=np.bool_)
        coll = out.collateral[idx]
        basis = out.basis[idx]
        for t in range(steps):
            p = float(price[t])
            # equity = collateral - basis + size * p (- size * (F_t - F_entry))
            np.multiply(size, p, out=eq)
            eq += cmb
            if fe is not None and fidx is not None:
                eq -= size * (float(fidx[t]) - fe)
            # maintenance = |size| * p * min(base(side) + slip, cap)
            np.add(slip[:k], float(mmf_long[t]), out=m[:k])
            np.add(slip[k:], float(mmf_short[t]), out=m[k:])
            np.minimum(m, max_mmf, out=m)
            m *= absz
            m *= p
            np.less(eq, m, out=mask)
            eq_tot[t] += float(eq.sum())
            mt_tot[t] += float(m.sum())
            if mask.any():
                hit = np.flatnonzero(mask)
                ntl = absz[hit] * p
                realized = size[hit] * p - basis[hit]
                share = penalty_share(eq[hit], m[hit], liq_penalty_floor, liq_penalty_full_depth)
                pen = ntl * (liq_fee * share + impact)
                c2 = coll[hit] + realized - pen
                if fe is not None and fidx is not None:
                    c2 -= size[hit] * (float(fidx[t]) - fe[hit])
                neg = np.minimum(c2, 0.0)
                coll[hit] = np.maximum(c2, 0.0)
                size[hit] = 0.0
                absz[hit] = 0.0
                basis[hit] = 0.0
                cmb[hit] = coll[hit]
                liqs[t] += hit.size
                liq_ntl[t] += float(ntl.sum())
                pens[t] += float(pen.sum())
                bad[t] -= float(neg.sum())
                liquidated_at[idx[hit]] = t
        out.size[idx] = size
        out.basis[idx] = basis
        out.collateral[idx] = coll
    return PathResult(n, steps, liqs, liq_ntl, pens, bad, eq_tot, mt_tot, out, liquidated_at)


_SHARED: dict[str, Any] = {}


def _worker(args: tuple[int, int]) -> PathResult:
    lo, hi = args
    s = _SHARED
    return simulate(s["book"].take(slice(lo, hi)), s["price"], s["mmf_long"], s["mmf_short"], **s["kw"])


def simulate_parallel(book: Book, price: FloatArray, mmf_long: FloatArray, mmf_short: FloatArray, *,
                      workers: int = 2, **kw: Any) -> PathResult:
    """``simulate`` with the accounts split over ``workers`` processes (fork: the inputs are shared,
    not copied). Falls back to one process where fork is unavailable."""
    if workers <= 1 or book.n < 2 * DEFAULT_CHUNK or "fork" not in mp.get_all_start_methods():
        return simulate(book, price, mmf_long, mmf_short, **kw)
    _SHARED.update(book=book, price=price, mmf_long=mmf_long, mmf_short=mmf_short, kw=kw)
    try:
        bounds = np.linspace(0, book.n, workers + 1).astype(int)
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_worker, [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])])
    finally:
        _SHARED.clear()
    res = parts[0]
    for p in parts[1:]:
        res = res.merge(p)
    return res


def random_book(n: int, price: float, imf: float, *, seed: int | np.random.Generator | None = None,
                long_share: float = 0.6, impact: float = 0.01, depth_usd: float = 5e7) -> Book:
    """A population like ``ballast.population``: log-normal collateral (median 5,000 USD), leverage
    Beta(6, 1.5) x the maximum (1 / ``imf``), ``long_share`` longs, opened at ``price``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    coll = np.minimum(500_000.0, rng.lognormal(math.log(5_000.0), 1.0, n))
    lev = np.clip(rng.beta(6.0, 1.5, n), 0.2, 0.97) / imf
    side = np.where(rng.random(n) < long_share, 1.0, -1.0)
    ntl = coll * lev
    size = side * ntl / price
    return Book(size, size * price, coll, np.minimum(impact * ntl / depth_usd, 1.0))


__all__ = ["Book", "ExactBook", "Health", "PathResult", "classify", "health", "maintenance_base_path",
           "penalty_share", "random_book", "simulate", "simulate_parallel"]
