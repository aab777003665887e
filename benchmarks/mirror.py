"""Mirror throughput: the vectorized health/liquidation mirror (``ballast.sim``) over a real crash
path, the exact integer mirror for comparison, its agreement with the exact mirror, and Monte
Carlo VaR paths per second (``ballast.risk.var.monte_carlo_var``).

Path: ``btc_2021_12_04`` (576 blocks of 5 minutes, about -25% peak to trough), the keeper's
trailing volatility and drawdown skew per block, the model's maintenance base per side
(``ballast.sim.maintenance_base_path``). Book: ``ballast.sim.random_book`` (population-like
collateral and leverage up to the model's maximum at the first block), opened at the first price.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from ballast._typing import WAD
from ballast.config import load_config
from ballast.keeper import FeedModel
from ballast.mirror import AccountMirror, EngineMirror, Feed, MarketMirror, PositionMirror
from ballast.model import Ramp, RiskInputs, compute_float
from ballast.risk.var import monte_carlo_var
from ballast.scenarios import build
from ballast.sim import ExactBook, classify, maintenance_base_path, random_book, simulate, simulate_parallel

ACCOUNTS = 1_000_000
TARGET = 10_000_000.0
MC_PATHS = 2_000_000


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def crash_path(seed: int = 42) -> dict[str, Any]:
    cfg = load_config()
    m = cfg.markets[0]
    p = m.params
    sc = build("btc_2021_12_04", seed)
    fm = FeedModel(sc, "trailing", base_depth_usd=m.initial["depth"])
    skew = np.array([fm.targets(b, 0.0, 0.0)["skew"] for b in range(sc.blocks)])
    price = np.asarray(sc.price, dtype=np.float64)
    ml = maintenance_base_path(p, fm.vol, skew, True)
    ms = maintenance_base_path(p, fm.vol, skew, False)
    x = RiskInputs(int(fm.vol[0] * WAD), 0, int(m.initial["depth"] * WAD), 0, 0, 0, 0, int(price[0] * WAD), True)
    imf = compute_float(p, x)["imf"]
    return {"price": price, "mmf_long": ml, "mmf_short": ms, "imf0": imf, "params": p, "blocks": sc.blocks,
            "depth": m.initial["depth"], "max_mmf": p.max_mmf_wad / WAD, "liq_fee": p.liq_fee_wad / WAD,
            "impact": p.impact_wad / WAD, "liq_penalty_floor": cfg.engine.liq_penalty_floor,
            "liq_penalty_full_depth": cfg.engine.liq_penalty_full_depth}


def _exact_mirror_rate(path: dict[str, Any], n: int = 1_000, steps: int = 20) -> float:
    """Account-steps per second of the exact integer mirror (``EngineMirror.maintenance_health``)."""
    p = path["params"]
    rng = np.random.default_rng(5)
    book = random_book(n, float(path["price"][0]), path["imf0"], seed=rng)
    mir = EngineMirror(5 * 10**14, 5 * 10**17, 5 * 10**17, 125 * 10**16, 10**12)
    feeds = {"price": Feed(0, 8, 0, 10**9, WAD, 10**25), "volatility": Feed(50_000_000, 8, 0, 10**9, 10**16, 10 * WAD),
             "funding": Feed(0, 8, 0, 10**9, -5 * 10**16, 5 * 10**16),
             "depth": Feed(5 * 10**15, 8, 0, 10**9, 10**21, 10**30), "skew": Feed(0, 8, 0, 10**9, -WAD, WAD)}
    mm = MarketMirror(0, feeds, "dynamic", params=p, ramps=[Ramp(0, 0, 0, 1), Ramp(0, 0, 0, 1)])
    mir.markets[0] = mm
    for i in range(n):
        s = int(book.size[i] * WAD)
        mir.accounts[f"a{i}"] = AccountMirror(int(book.collateral[i] * 1e6),
                                              {0: PositionMirror(s, int(book.basis[i] * WAD), 0, int(book.slip[i] * WAD))})
    t = time.perf_counter()
    for k in range(steps):
        now = 1_700_000_000 + k
        mm.feeds["price"].answer = int(path["price"][k] * 1e8)
        for f in mm.feeds.values():
            f.updated_at = now
        lw, sw = int(path["mmf_long"][k] * WAD), int(path["mmf_short"][k] * WAD)
        mm.ramps = [Ramp(lw, lw, 0, 1), Ramp(sw, sw, 0, 1)]
        cache: dict[tuple[int, bool], tuple[int, int, int, int]] = {}
        for a in mir.accounts:
            mir.maintenance_health(a, now, cache)
    return n * steps / (time.perf_counter() - t)


def _agreement(path: dict[str, Any], n: int = 2_000) -> dict[str, Any]:
    """Float mask (no integer fallback) vs ``EngineMirror.health`` on ``n`` accounts at the crash's
    worst blocks."""
    p = path["params"]
    rng = np.random.default_rng(9)
    book = random_book(n, float(path["price"][0]), path["imf0"], seed=rng)
    exact = ExactBook([int(x * WAD) for x in book.size], [int(x * WAD) for x in book.basis],
                      [int(x * 1e6) for x in book.collateral], [int(x * WAD) for x in book.slip], 10**12)
    fbook = exact.to_float()
    price = path["price"]
    steps = [int(np.argmin(price)), int(np.argmin(price)) - 5, int(price.size // 2)]
    checked = agree = liq = banded = 0
    for b in steps:
        pw = int(price[b] * 1e8) * 10**10
        lw, sw = int(path["mmf_long"][b] * WAD), int(path["mmf_short"][b] * WAD)
        h_fast = classify(fbook, pw / WAD, lw / WAD, sw / WAD, p.max_mmf_wad / WAD)
        h_exact = classify(fbook, pw / WAD, lw / WAD, sw / WAD, p.max_mmf_wad / WAD, exact=exact, price_wad=pw,
                           mmf_long_wad=lw, mmf_short_wad=sw, max_mmf_wad=p.max_mmf_wad)
        banded += h_exact.resolved_exactly
        feeds = {"price": Feed(pw // 10**10, 8, 1, 10**9, WAD, 10**25),
                 "volatility": Feed(50_000_000, 8, 1, 10**9, 10**16, 10 * WAD),
                 "funding": Feed(0, 8, 1, 10**9, -5 * 10**16, 5 * 10**16),
                 "depth": Feed(5 * 10**15, 8, 1, 10**9, 10**21, 10**30), "skew": Feed(0, 8, 1, 10**9, -WAD, WAD)}
        mir = EngineMirror(5 * 10**14, 5 * 10**17, 5 * 10**17, 125 * 10**16, 10**12)
        mir.markets[0] = MarketMirror(0, feeds, "dynamic", params=p, ramps=[Ramp(lw, lw, 0, 1), Ramp(sw, sw, 0, 1)])
        for i in range(n):
            a = f"a{i}"
            mir.accounts[a] = AccountMirror(exact.collateral_tokens[i], {0: PositionMirror(
                exact.size_wad[i], exact.basis_wad[i], 0, exact.slip_wad[i])})
            want = mir.health(a, 2).liquidatable
            checked += 1
            liq += want
            agree += (bool(h_fast.liquidatable[i]) == want) and (bool(h_exact.liquidatable[i]) == want)
    return {"checked": checked, "agree": agree, "liquidatable": liq, "resolved_in_integers": banded}


def run(accounts: int = ACCOUNTS, verbose: bool = True) -> dict[str, Any]:
    path = crash_path()
    book = random_book(accounts, float(path["price"][0]), path["imf0"], seed=1, impact=path["impact"],
                       depth_usd=path["depth"])
    kw = {"max_mmf": path["max_mmf"], "liq_fee": path["liq_fee"], "impact": path["impact"],
          "liq_penalty_floor": path["liq_penalty_floor"], "liq_penalty_full_depth": path["liq_penalty_full_depth"]}
    args = (book, path["price"], path["mmf_long"], path["mmf_short"])
    simulate(book.take(slice(0, 50_000)), *args[1:], **kw)  # warm-up
    t1, r1 = _best(lambda: simulate(*args, **kw), 2)
    cores = os.cpu_count() or 1
    workers = max(2, min(cores, 4))
    t2, r2 = _best(lambda: simulate_parallel(*args, workers=workers, **kw), 2)
    if verbose:
        print(f"  mirror: {accounts:,} accounts x {path['blocks']} blocks: {r1.account_steps / t1 / 1e6:.1f} M/s "
              f"(1 process), {r2.account_steps / t2 / 1e6:.1f} M/s ({workers} processes)", flush=True)
    exact_rate = _exact_mirror_rate(path)
    agreement = _agreement(path)
    mc: dict[str, dict[str, float]] = {}
    for label, kwargs in (("normal, linear", {}), ("student-t 4, exact mapping", {"dof": 4.0, "loss_mapping": "exact"})):
        t, res = _best(lambda: monte_carlo_var(0.8, 3_600, 0.99, MC_PATHS, seed=1, **kwargs), 3)  # type: ignore[arg-type]
        mc[label] = {"paths_per_s": MC_PATHS / t, "seconds": t, "var": res.var, "es": res.es}
    return {
        "accounts": accounts, "steps": path["blocks"], "account_steps": r1.account_steps,
        "seconds_1": t1, "rate_1": r1.account_steps / t1, "workers": workers, "seconds_n": t2,
        "rate_n": r2.account_steps / t2, "liquidations": int(r1.liquidations.sum()),
        "liquidations_parallel": int(r2.liquidations.sum()), "bad_debt_usd": float(r1.bad_debt.sum()),
        "exact_rate": exact_rate, "agreement": agreement, "mc": mc, "mc_paths": MC_PATHS,
    }


def summary(r: dict[str, Any]) -> dict[str, Any]:
    best = max(r["rate_1"], r["rate_n"])
    return {
        "account_steps_per_s": best,
        "account_steps_per_s_1_process": r["rate_1"],
        f"account_steps_per_s_{r['workers']}_processes": r["rate_n"],
        "exact_mirror_account_steps_per_s": r["exact_rate"],
        "accounts": r["accounts"], "steps": r["steps"],
        "liquidations": r["liquidations"], "bad_debt_usd": r["bad_debt_usd"],
        "agreement_with_exact_mirror": r["agreement"],
        "monte_carlo_var_paths_per_s": {k: v["paths_per_s"] for k, v in r["mc"].items()},
        "target_account_steps_per_s": TARGET,
    }


def tables(r: dict[str, Any]) -> str:
    a = r["agreement"]
    best = max(r["rate_1"], r["rate_n"])
    lines = [f"MIRROR: health + liquidation checks, {r['accounts']:,} accounts x {r['steps']} blocks of btc_2021_12_04 "
             f"({r['account_steps'] / 1e6:,.0f} M account-steps), float64 numpy (ballast.sim)", ""]
    head = f"{'engine':<44}{'seconds':>10}{'account-steps/s':>18}"
    lines += [head, "-" * len(head)]
    lines.append(f"{'ballast.sim, 1 process':<44}{r['seconds_1']:>10.2f}{r['rate_1']:>18,.0f}")
    label_n = f"ballast.sim, {r['workers']} processes"
    lines.append(f"{label_n:<44}{r['seconds_n']:>10.2f}{r['rate_n']:>18,.0f}")
    lines.append(f"{'exact integer mirror (maintenance_health)':<44}{'':>10}{r['exact_rate']:>18,.0f}")
    lines.append(f"target >= {TARGET:,.0f} account-steps/s on 2 cores: {'pass' if best >= TARGET else 'MISS'} "
                 f"({best / TARGET:.0f}x); {r['liquidations']:,} liquidations, bad debt {r['bad_debt_usd']:,.0f} USD "
                 f"(full close with penalty)")
    lines.append(f"agreement with EngineMirror.health: {a['agree']:,} / {a['checked']:,} accounts "
                 f"({a['liquidatable']:,} liquidatable; {a['resolved_in_integers']} within 1e-9 of the line, "
                 "re-decided in integers)")
    lines.append("")
    lines.append(f"Monte Carlo VaR (monte_carlo_var, {r['mc_paths']:,} paths, sigma 80%, 1 h, 99%)")
    head = f"{'draws':<44}{'seconds':>10}{'paths/s':>18}{'VaR':>9}{'ES':>9}"
    lines += [head, "-" * len(head)]
    for k, v in r["mc"].items():
        lines.append(f"{k:<44}{v['seconds']:>10.3f}{v['paths_per_s']:>18,.0f}{v['var']:>9.4f}{v['es']:>9.4f}")
    lines.append("")
    return "\n".join(lines)


__all__ = ["run", "summary", "tables", "crash_path"]
