"""``ballast stress``: one scenario and population against the dynamic controller and two static
baselines, side by side, verified, with a report."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ballast.config import Config, StaticFractions, load_config
from ballast.errors import ScenarioError, ValidationError, VerificationError
from ballast.keeper import DEPTH_MODES, VOL_MODES, DepthMode, VolMode
from ballast.lab import RunResult, calm_fractions_from_run, run_one
from ballast.population import MAX_ACCOUNTS, LiquidatorSpec, default_liquidator_count, generate
from ballast.scenarios import ScenarioPath, build

RUNS = ("dynamic", "static_calm", "static_conservative")
METRIC_KEYS = ("bad_debt_usd", "liquidations", "liquidated_notional_usd", "liquidation_penalties_usd",
               "peak_liquidations_per_block", "insurance_drawdown_usd", "mean_max_leverage", "calm_mean_max_leverage",
               "accounts_wiped_out")


@dataclass(frozen=True)
class StressOptions:
    """Options of a stress run (validated)."""

    scenario: str = "btc_2021_12_04"
    accounts: int = 300
    seed: int = 42
    out: Path = Path("out/stress")
    keeper_mode: VolMode = "trailing"
    depth_mode: DepthMode = "trailing"
    """The keeper's depth feed: ``predictive`` projects the book's trend one liquidation horizon ahead
    (``ballast.keeper.predictive_depth``)."""
    anticipatory_share: float = 0.0
    liquidators: int | None = None
    """Liquidator keepers; ``None``: ``default_liquidator_count(accounts)`` (3 up to 399 accounts)."""
    liquidator_latency: int = 1
    workers: int = 2
    fork_url: str | None = None
    config: Path | None = None
    rpc_drop_rate: float = 0.0
    keeper_down: tuple[int, int] | None = None
    chain_salt: int = 0
    """Empty blocks mined before deploying: changes every block hash, hence the ramp's random
    activation draws, and nothing else (population, path and feeds stay the same)."""
    allow_no_stress: bool = False
    """Accept a run in which no controller liquidated anyone and nobody lost money to bad debt (a
    calm control run); by default that is a :class:`ScenarioError`."""

    def validate(self) -> StressOptions:
        if not 1 <= self.accounts <= MAX_ACCOUNTS:
            raise ValidationError("--accounts", self.accounts, f"[1, {MAX_ACCOUNTS}]")
        if not 0 <= self.seed < 2**32:
            raise ValidationError("--seed", self.seed, "[0, 2**32)")
        if self.keeper_mode not in VOL_MODES:
            raise ValidationError("--keeper", self.keeper_mode, " or ".join(VOL_MODES))
        if self.depth_mode not in DEPTH_MODES:
            raise ValidationError("--depth-mode", self.depth_mode, "trailing or predictive")
        if not 0.0 <= self.anticipatory_share <= 1.0:
            raise ValidationError("--anticipatory", self.anticipatory_share, "[0, 1]")
        if self.liquidators is not None and not 1 <= self.liquidators <= 50:
            raise ValidationError("--liquidators", self.liquidators, "[1, 50]")
        if not 0 <= self.liquidator_latency <= 20:
            raise ValidationError("--liquidator-latency", self.liquidator_latency, "[0, 20] blocks")
        if not 0.0 <= self.rpc_drop_rate < 0.5:
            raise ValidationError("--rpc-drop-rate", self.rpc_drop_rate, "[0, 0.5)")
        if self.keeper_down is not None and (self.keeper_down[0] < 0 or self.keeper_down[1] < 1):
            raise ValidationError("--keeper-down", self.keeper_down, "START:BLOCKS with START >= 0, BLOCKS >= 1")
        if not 0 <= self.chain_salt <= 1_000:
            raise ValidationError("--chain-salt", self.chain_salt, "[0, 1000] blocks")
        if not 1 <= self.workers <= 3:
            raise ValidationError("--workers", self.workers, "[1, 3]")
        return self


class Progress:
    """A one-line progress bar on stderr (one per run; shown for the first run of a pool)."""

    def __init__(self, label: str, stream: Any = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int, info: dict[str, float]) -> None:
        now = time.monotonic()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if not tty:
            # Logs and CI: one line per 10%.
            step = max(1, total // 10)
            if done % step and done != total:
                return
            self.stream.write(f"{self.label}: {done}/{total} blocks, {int(info['liquidations'])} liquidations, "
                              f"bad debt {info['bad_debt_usd']:,.0f} USD, {info['tx'] / max(info['sec'], 1e-9):,.0f} tx/s\n")
            self.stream.flush()
            return
        if done != total and now - self.last < 0.5:
            return
        self.last = now
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label:<20} [{bar}] {done}/{total} blocks  liq {int(info['liquidations'])}  "
                          f"bad debt {info['bad_debt_usd']:,.0f} USD  {info['tx'] / max(info['sec'], 1e-9):,.0f} tx/s ")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _run(args: tuple[Any, ...]) -> RunResult:
    kind, sc, traders, cfg, static, mode, liq, fork, show, drop, down, salt, dmode = args
    return run_one(kind, sc, traders, cfg, static=static, keeper_mode=mode, liquidators=liq, fork_url=fork,
                   rpc_drop_rate=drop, keeper_down=down, chain_salt=salt, progress=Progress(kind) if show else None,
                   depth_mode=dmode)


def stress(opts: StressOptions) -> dict[str, Any]:
    """Run the three controllers on one scenario and population; write the report; return metrics."""
    opts.validate()
    cfg = load_config(opts.config) if opts.config else load_config()
    sc = build(opts.scenario, opts.seed)
    traders = generate(opts.accounts, sc.blocks, seed=opts.seed, long_bias=sc.long_bias,
                       anticipatory_share=opts.anticipatory_share)
    check_scenario(sc, cfg)
    cons = cfg.markets[0].static_conservative
    n_liq = opts.liquidators if opts.liquidators is not None else default_liquidator_count(opts.accounts)
    liq = LiquidatorSpec(count=n_liq, latency_blocks=opts.liquidator_latency)
    print(f"scenario {sc.name}: {sc.blocks} blocks of {sc.block_sec} s, max drawdown {sc.max_drawdown():.1%}; "
          f"{opts.accounts} accounts, seed {opts.seed}, keeper {opts.keeper_mode}, depth {opts.depth_mode}; {liq.count} liquidators x "
          f"{liq.max_per_block} calls/block, latency {liq.latency_blocks} block(s)", file=sys.stderr)
    t0 = time.monotonic()

    def job(kind: str, static: StaticFractions | None, show: bool) -> tuple[Any, ...]:
        return (kind, sc, traders, cfg, static, opts.keeper_mode, liq, opts.fork_url, show, opts.rpc_drop_rate,
                opts.keeper_down, opts.chain_salt, opts.depth_mode)

    # The dynamic run first: static_calm is pinned to its measured calm-period leverage.
    with ProcessPoolExecutor(max_workers=opts.workers) as pool:
        dyn = _run(job("dynamic", None, True)) if opts.workers == 1 else pool.submit(_run, job("dynamic", None, True)).result()
        calm = calm_fractions_from_run(dyn.series)
        print(f"static_calm = the dynamic run's calm-period leverage: IMF {calm.imf:.4f} ({1 / calm.imf:.1f}x), "
              f"MMF {calm.mmf:.4f}; static_conservative: IMF {cons.imf:.4f} ({1 / cons.imf:.1f}x)", file=sys.stderr)
        statics = [job("static_calm", calm, True), job("static_conservative", cons, False)]
        if opts.workers == 1:
            results = [dyn] + [_run(j) for j in statics]
        else:
            results = [dyn] + list(pool.map(_run, statics))
    wall = time.monotonic() - t0
    runs = {r.kind: r for r in results}
    checks = sum(r.checks for r in results)
    violations = [dict(v, run=r.kind) for r in results for v in r.violations]
    metrics: dict[str, Any] = {
        "scenario": sc.name,
        "seed": opts.seed,
        "accounts": opts.accounts,
        "blocks": sc.blocks,
        "verification": {"checks": checks, "violations": len(violations)},
        "runs": {k: {**{m: float(runs[k].metrics[m]) for m in METRIC_KEYS},
                     **{m: float(v) for m, v in runs[k].metrics.items() if m not in METRIC_KEYS}} for k in RUNS},
        "static_fractions": {"static_calm": asdict(calm), "static_conservative": asdict(cons)},
        "scenario_description": sc.description,
        "block_sec": sc.block_sec,
        "max_drawdown": sc.max_drawdown(),
        "crash_block": sc.crash_block,
        "keeper_mode": opts.keeper_mode,
        "depth_mode": opts.depth_mode,
        "anticipatory_share": opts.anticipatory_share,
        "chain_salt": opts.chain_salt,
        "liquidators": {"count": liq.count, "latency_blocks": liq.latency_blocks,
                        "max_per_block": liq.max_per_block},
        "wall_sec": wall,
        "violations": violations[:200],
        "series": {k: runs[k].series for k in RUNS},
    }
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = _finite(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False))
    check_activity(metrics, allow_no_stress=opts.allow_no_stress)
    from ballast.report import write_report

    write_report(metrics, out)
    print(table(metrics))
    print(f"\nreport: {out / 'report.html'}   metrics: {out / 'metrics.json'}   ({wall:.0f} s)")
    if violations:
        first = violations[0]
        raise VerificationError(f"{len(violations)} verification violations; first: run {first['run']} block "
                                f"{first['block']} {first['check']} account {first['account']}: {first['detail']}")
    return metrics


FROM_SWEEP_METRICS = ("bad_debt_usd", "bad_debt_socialized_usd", "liquidations", "liquidated_notional_usd",
                      "liquidation_penalties_usd", "peak_liquidations_per_block", "accounts_wiped_out", "calm_mean_max_leverage",
                      "mean_max_leverage", "insurance_drawdown_usd", "orders_settled", "orders_expired")


def from_sweep(db: Path, rowid: int, *, out: Path = Path("out/from_sweep"), fork_url: str | None = None,
               draws: int = 8) -> dict[str, Any]:
    """Re-run one stored sweep row on Anvil (``ballast stress --from-sweep FILE ROWID``): the row's
    scenario source (drawn parameters included), seed, accounts, keeper mode and controller (a
    static row at its stored fractions), one lab run; then the simulator on the same case: the row
    re-run alone (it must equal the stored figures to the bit) and, for a dynamic row, ``draws`` ramp
    draws (the lab's ramp starts at a draw from block hashes, so its value is compared with the range,
    as ``ballast.panel`` does). Prints lab and simulator side by side with the panel's tolerances;
    writes ``metrics.json``. Lab verification violations raise :class:`VerificationError`."""
    from ballast.marketsim import Controller, MarketSim, RunSpec
    from ballast.panel import TOLERANCE
    from ballast.scenarios import build_source
    from ballast.sweep import config_with, rerun

    if not 1 <= draws <= 64:
        raise ValidationError("draws", draws, "[1, 64]")
    again = rerun(Path(db), int(rowid))
    if not again["identical"]:
        raise VerificationError(f"sweep row {rowid} of {db} does not re-run to its stored figures: stored "
                                f"{again['stored']}, re-run {again['rerun']}")
    name, seed, n = str(again["controller"]), int(again["seed"]), int(again["accounts"])
    mode: VolMode = again["keeper_mode"]
    dmode: DepthMode = again.get("depth_mode", "trailing")
    sets = [(str(k), float(v)) for k, v in again["model_set"]]
    cfg = config_with(sets) if sets else load_config()  # a parameter-set variant's row runs with its parameters
    sc, _ = build_source(str(again["scenario"]), seed)
    traders = generate(n, sc.blocks, seed=seed, long_bias=sc.long_bias)
    check_scenario(sc, cfg)
    liq = LiquidatorSpec(count=default_liquidator_count(n))
    static = None if name == "dynamic" else StaticFractions(float(again["imf"]), float(again["mmf"]))
    print(f"sweep row {rowid} of {db}: {sc.name} seed {seed}, {n} accounts, {name}"
          f"{'' if static is None else f' (IMF {static.imf:.6f}, MMF {static.mmf:.6f})'}, keeper {mode}, depth {dmode}; "
          f"drawn parameters {again['params'] or 'none'}; model parameters set {sets or 'none'}", file=sys.stderr)
    t0 = time.monotonic()
    lab = run_one("dynamic" if static is None else "static_calm", sc, traders, cfg, static=static, keeper_mode=mode,
                  liquidators=liq, fork_url=fork_url, progress=Progress(name), depth_mode=dmode)
    wall = time.monotonic() - t0
    sim = [dict(again["rerun"])]
    if static is None and draws > 1:
        specs = [RunSpec(sc, traders, Controller("dynamic", label="dynamic"), (seed + k) % 2**32) for k in range(1, draws)]
        sim += MarketSim(specs, cfg, keeper_mode=mode, liquidators=liq, depth_mode=dmode).run().metrics()
    rows = []
    for m in (x for x in FROM_SWEEP_METRICS if x in lab.metrics):
        lv = float(lab.metrics[m])
        vs = [float(x[m]) for x in sim if x.get(m) is not None]
        a, r = TOLERANCE.get(m, (0.0, 0.0))
        tol = max(a, r * abs(lv)) if m in TOLERANCE else None
        lo, hi = min(vs), max(vs)
        ok = None if tol is None else bool(lo - tol <= lv <= hi + tol)
        rows.append({"metric": m, "lab": lv, "sim_row": vs[0], "sim_lo": lo, "sim_hi": hi, "tol": tol, "ok": ok})
    result = {"file": str(db), "rowid": int(rowid), "scenario": sc.name, "seed": seed, "accounts": n,
              "controller": name, "keeper_mode": mode, "depth_mode": dmode, "params": again["params"], "model_set": sets,
              "static_fractions": None if static is None else asdict(static), "sim_draws": len(sim),
              "rows": rows, "lab_wall_sec": wall,
              "verification": {"checks": lab.checks, "violations": len(lab.violations)},
              "violations": lab.violations[:200]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_finite(result), indent=1, allow_nan=False))
    print(from_sweep_table(result))
    if lab.violations:
        v = lab.violations[0]
        raise VerificationError(f"{len(lab.violations)} verification violations; first: block {v['block']} "
                                f"{v['check']} account {v['account']}: {v['detail']}")
    return result


def from_sweep_table(res: dict[str, Any]) -> str:
    """Lab vs simulator, one line per metric (a dynamic row: the simulator's range over ramp draws)."""
    sim_head = "simulator (row)" if res["sim_draws"] == 1 else f"simulator (row; {res['sim_draws']} draws)"
    head = f"{'metric':<30}{'lab':>16}{sim_head:>40}{'tolerance':>13}  within"
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        sim = f"{r['sim_row']:,.1f}" if r["sim_lo"] == r["sim_hi"] else \
            f"{r['sim_row']:,.1f} ({r['sim_lo']:,.1f}..{r['sim_hi']:,.1f})"
        tol = "" if r["tol"] is None else f"{r['tol']:,.1f}"
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        lines.append(f"{r['metric']:<30}{r['lab']:>16,.1f}{sim:>40}{tol:>13}  {ok}")
    v = res["verification"]
    lines.append(f"\nlab verification: {v['checks']:,} checks, {v['violations']} violations; lab run {res['lab_wall_sec']:.0f} s. "
                 "Units: USD for *_usd, x for leverage, counts otherwise; tolerances of ballast.panel.")
    return "\n".join(lines)


def _finite(o: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(o, float):
        return o if o == o and abs(o) != float("inf") else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def table(metrics: dict[str, Any]) -> str:
    """The side-by-side table, plain text."""
    rows = [("bad debt", "bad_debt_usd", "USD", "{:,.0f}"),
            ("liquidations", "liquidations", "calls", "{:,.0f}"),
            ("liquidated notional", "liquidated_notional_usd", "USD", "{:,.0f}"),
            ("liquidation penalties paid", "liquidation_penalties_usd", "USD", "{:,.0f}"),
            ("peak liquidations / block", "peak_liquidations_per_block", "calls", "{:,.0f}"),
            ("insurance fund drawdown", "insurance_drawdown_usd", "USD", "{:,.0f}"),
            ("mean max leverage", "mean_max_leverage", "x", "{:.1f}"),
            ("calm-period mean max leverage", "calm_mean_max_leverage", "x", "{:.1f}"),
            ("accounts wiped out", "accounts_wiped_out", "accounts", "{:,.0f}")]
    head = f"{'':32}{'dynamic':>16}{'static_calm':>16}{'static_cons.':>16}  unit"
    lines = [head, "-" * len(head)]
    for label, key, unit, fmt in rows:
        vals = [fmt.format(metrics["runs"][k][key]) for k in RUNS]
        lines.append(f"{label:32}{vals[0]:>16}{vals[1]:>16}{vals[2]:>16}  {unit}")
    v = metrics["verification"]
    r = metrics["runs"]
    ratio = ratio_text(r["dynamic"]["bad_debt_usd"], r["static_calm"]["bad_debt_usd"], "static_calm", "bad debt")
    lines.append(f"\nverification: {v['checks']:,} checks, {v['violations']} violations. "
                 f"bad debt dynamic / static_calm = {ratio} (target <= 0.20)")
    return "\n".join(lines)


def ratio_text(num: float | None, den: float | None, den_name: str, what: str, fmt: str = "{:.2f}") -> str:
    """A ratio for people: ``n/a: static_calm had no bad debt`` when the denominator is zero (or
    missing), never ``nan`` or ``inf``."""
    if den is None or num is None or not math.isfinite(den) or not math.isfinite(num):
        return f"n/a: {what} of {den_name} not measured"
    if den == 0:
        return f"n/a: {den_name} had no {what}"
    return fmt.format(num / den)


def check_scenario(sc: ScenarioPath, cfg: Config) -> None:
    """Refuse, before any chain starts, a scenario on which no order can settle: an order settles at
    the first price round at least ``order_min_delay_sec`` after its commit and expires
    ``order_window_sec`` after that; rounds come with blocks, so blocks longer than the window make
    every order expire (what ``btc_2020_03_12`` did with 8-hour blocks)."""
    e = cfg.engine
    if sc.block_sec > e.order_window_sec:
        raise ScenarioError(
            f"scenario {sc.name}: blocks of {sc.block_sec} s are longer than the order window "
            f"({e.order_window_sec} s): every order would expire before the next block's price round, so no "
            f"position could open. Use shorter blocks (more substeps per bar) or a longer order_window_sec.")
    if sc.blocks < 2:
        raise ScenarioError(f"scenario {sc.name}: {sc.blocks} block(s); an order needs a second block to settle")


def check_activity(metrics: dict[str, Any], *, allow_no_stress: bool = False) -> None:
    """A run that opened no position, or a scenario in which nothing came under stress, is an error
    naming the scenario and what was missing (never a row of zeros that reads as "no risk")."""
    name = metrics["scenario"]
    runs = metrics["runs"]
    idle = [k for k in RUNS if not (runs[k].get("orders_settled") or 0) > 0]
    if idle:
        detail = ", ".join(f"{k}: {runs[k].get('orders_committed') or 0:.0f} orders committed, "
                           f"{runs[k].get('orders_expired') or 0:.0f} expired" for k in idle)
        raise ScenarioError(f"scenario {name} (seed {metrics['seed']}, {metrics['accounts']} accounts): no position "
                            f"was opened in run(s) {', '.join(idle)} ({detail}); its figures would be zeros, not a "
                            f"result. metrics.json is written for inspection.")
    calm = all((runs[k].get("liquidations") or 0) == 0 and (runs[k].get("bad_debt_usd") or 0) == 0 for k in RUNS)
    if calm and not allow_no_stress:
        raise ScenarioError(f"scenario {name} (seed {metrics['seed']}): no stress: no liquidation and no bad debt in "
                            f"any of the three runs (max drawdown {metrics['max_drawdown']:.1%}); the comparison "
                            f"measures nothing. Pass --allow-no-stress for a calm control run.")


def cpu_count() -> int:
    return os.cpu_count() or 1
