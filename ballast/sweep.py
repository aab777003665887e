"""``ballast sweep``: many crashes x many controllers in the vectorized simulator, on Dask
distributed (issue 11).

A sweep is a list of tasks; a task is (scenario, a chunk of seeds). Each task runs, in
``ballast.marketsim``, the dynamic controller on every seed of its chunk (one batch), then the
static controllers (static_calm at each dynamic run's calm-period fractions, static_conservative,
and the static caps curve) in a second batch. Rows (one per scenario, seed, controller) are written
to SQLite as each task finishes, so an interrupted sweep resumes where it stopped; each row carries
its scenario, seed and controller, so it can be re-run alone (``--rerun FILE ROWID``: a run's figures
do not depend on its batch, to the bit) and on Anvil, lab and simulator side by side, with
``ballast stress --from-sweep FILE ROWID`` (``ballast.stress.from_sweep``).

Scenario sources (``ballast.scenarios.build_source``): built-in names (real replays of BTC and of the
S&P 500 / NASDAQ histories shipped by ``arch``, synthetic families at their defaults), ``draw:FAMILY``
(a synthetic family whose parameters are drawn per seed from ``ballast.scenarios.PARAM_LAWS``; the
draw is stored in the row's ``params``), the user's ``.csv`` / ``.toml`` files, or ``corpus`` (all
of ``ballast.scenarios.CORPUS``).

Dask: a ``LocalCluster`` with one single-threaded worker process per core by default; ``--scheduler
ADDRESS`` uses a running cluster (``dask scheduler`` and ``dask worker ADDRESS`` started apart).

Keeper variants: ``--keeper predictive`` (GARCH volatility) and, independently, ``--depth-mode
predictive`` (``ballast.keeper.predictive_depth``: the depth feed projected one liquidation horizon
ahead from its recent trend, never above the trailing depth; issue 12). A variant's rows are
labelled ``NAME@predictive``, ``NAME@depth_predictive`` (or both, joined by ``+``) in the frontier.

Calibrated controllers (issue 12, ``--calibrated fhs,fhs_gap``): the model with a calibration file's
parameters (``ballast calibrate --tail fhs``, default ``docs/calibration-btc.toml``: z, skew, tail
cap, ``regime_sens = 0``) and the published tail feed (``ballast.marketsim.TailFeedSpec``: FHS on
the scenario's own past at each block, the file's prior before enough windows), labelled
``dynamic_fhs``; ``dynamic_fhs_gap`` adds the file's gap floor (``min_mmf``, ``min_imf``). Each has
its own ``static_calm_fhs`` / ``static_calm_fhs_gap`` pinned to its calm-period leverage. Their rows
are marked ``tuned`` where the scenario's data overlap the file's training sets (``REPLAY_WINDOWS``)
or the scenario is in ``TUNED``: out of sample means the other sources.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ballast.config import Config, StaticFractions, load_config
from ballast.data import parse_utc
from ballast.errors import ValidationError
from ballast.keeper import DEPTH_MODES, VOL_MODES
from ballast.marketsim import Controller, MarketSim, RunSpec, TailFeedSpec
from ballast.population import LiquidatorSpec, default_liquidator_count, generate
from ballast.scenarios import CORPUS, REPLAY_WINDOWS, build_source, check_source
from ballast.tail import TailSpec

TUNED = frozenset({"btc_2021_12_04"})
"""Scenarios the shipped parameters were chosen on (``regime_sens`` after seeing the 2021-12-04
crash): the frontier shows them apart."""
DEFAULT_CAPS = (3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0)
STATIC_MMF_RATIO = 0.5
"""Maintenance of a static cap as a fraction of its initial margin (the shipped baselines' ratio)."""
CALIBRATED = ("fhs", "fhs_gap")
"""The calibrated controllers ``--calibrated`` can add: ``dynamic_fhs`` (calibrated parameters and
the published tail feed) and ``dynamic_fhs_gap`` (and the calibration's gap floor)."""
DEFAULT_CALIBRATION = "docs/calibration-btc.toml"
TAIL_SPECS = ("plain", "file")
"""The tail estimator of the calibrated controllers: ``plain`` FHS (every past window, the keeper's
EWMA as the filter: no hyperparameter) or the calibration ``file``'s ``[tail]`` (its rolling window
and fast filter, chosen after a grid that also read the backtest's test periods: README)."""
COLUMNS = ("bad_debt_usd", "bad_debt_socialized_usd", "liquidations", "liquidated_notional_usd",
           "liquidation_penalties_usd", "peak_liquidations_per_block", "accounts_wiped_out", "calm_mean_max_leverage",
           "mean_max_leverage", "insurance_drawdown_usd", "orders_settled", "orders_expired")


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep (validated)."""

    scenarios: tuple[str, ...] = ("btc_2021_12_04", "flash_crash", "jump_diffusion", "garch")
    seeds: int = 20
    """Seeds per scenario: seed i of scenario s is ``seed_of(base_seed, s, i)``."""
    accounts: int = 300
    caps: tuple[float, ...] = DEFAULT_CAPS
    """Static caps (max leverage, x) of the frontier curve; maintenance = ``STATIC_MMF_RATIO`` x IMF."""
    chunk: int = 128
    """Seeds per task (one simulator batch). 128 measured fastest per core (2026-12-02, btc_2021_12_04
    at 300 accounts, one process: 14.4 three-controller runs/s at 64 seeds, 20.0 at 128, 19.5 at
    256): numpy's per-call overhead is shared by more runs, the arrays still fit the cache."""
    base_seed: int = 11
    keeper_mode: str = "trailing"
    model_set: tuple[tuple[str, float], ...] = ()
    """Model parameters set apart from ``config/markets.toml`` (``--set regime_sens=0``: a dynamic
    variant, another parameter set); its rows are labelled ``NAME@regime_sens=0`` in the frontier."""
    calibrated: tuple[str, ...] = ()
    """Calibrated controllers to add (``CALIBRATED``), each with its static_calm."""
    calibration: str = DEFAULT_CALIBRATION
    """The calibration file of the calibrated controllers (``ballast calibrate --tail fhs``)."""
    tail_spec: str = "plain"
    """``TAIL_SPECS``: the calibrated controllers' tail estimator."""
    depth_mode: str = "trailing"
    """The keeper's depth feed (``ballast.keeper.DEPTH_MODES``): ``predictive`` leads the book's trend."""

    def validate(self) -> SweepSpec:
        if not self.scenarios:
            raise ValidationError("--scenarios", "", "at least one scenario source")
        for s in self.scenarios:
            check_source(s)
        if not 1 <= self.seeds <= 1_000_000:
            raise ValidationError("--seeds", self.seeds, "[1, 1e6]")
        if not 1 <= self.accounts <= 5_000:
            raise ValidationError("--accounts", self.accounts, "[1, 5000]")
        if not 1 <= self.chunk <= 4096:
            raise ValidationError("--chunk", self.chunk, "[1, 4096]")
        for c in self.caps:
            if not 1.0 < c <= 100.0:
                raise ValidationError("--caps", c, "leverage in (1, 100]")
        if self.keeper_mode not in VOL_MODES:
            raise ValidationError("--keeper", self.keeper_mode, " or ".join(VOL_MODES))
        if self.depth_mode not in DEPTH_MODES:
            raise ValidationError("--depth-mode", self.depth_mode, "trailing or predictive")
        if self.model_set:
            config_with(self.model_set)  # raises, naming the key or value, if the set is not valid
        for name in self.calibrated:
            if name not in CALIBRATED:
                raise ValidationError("--calibrated", name, f"one of {CALIBRATED}")
        if len(set(self.calibrated)) != len(self.calibrated):
            raise ValidationError("--calibrated", ",".join(self.calibrated), "each controller once")
        if self.tail_spec not in TAIL_SPECS:
            raise ValidationError("--tail-spec", self.tail_spec, f"one of {TAIL_SPECS}")
        if self.calibrated:
            calibrated_setup(load_config(), self.calibration, self.tail_spec, self.calibrated)  # raises if unusable
        return self


def seed_of(base: int, scenario: str, i: int) -> int:
    """The seed of run ``i`` of ``scenario`` (stable across machines and Python versions)."""
    h = hashlib.sha256(f"{base}/{scenario}/{i}".encode()).digest()
    return int.from_bytes(h[:4], "big")


@dataclass(frozen=True)
class Task:
    task_id: str
    scenario: str
    seeds: tuple[int, ...]
    accounts: int
    caps: tuple[float, ...] = field(default=())
    keeper_mode: str = "trailing"
    model_set: tuple[tuple[str, float], ...] = ()
    calibrated: tuple[str, ...] = ()
    calibration: str = DEFAULT_CALIBRATION
    tail_spec: str = "plain"
    depth_mode: str = "trailing"


def resolve_calibration(path: str) -> Path:
    """A calibration file as given, or relative to the repository (``docs/...`` from any directory)."""
    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    alt = Path(__file__).resolve().parent.parent / p
    return alt if alt.is_file() else p


def trained_on(source: str, calibration: Any) -> bool:
    """True if ``source`` is a real replay whose window shares a data set and any time with one of
    the training sets of ``calibration`` (a ``ballast.calibration.Calibration``)."""
    w = REPLAY_WINDOWS.get(source)
    if w is None:
        return False
    base, start, end = w
    a, b = parse_utc(start), parse_utc(end)
    return any(t.base == base and a <= t.last_ts and t.first_ts < b for t in calibration.train)


def calibrated_setup(cfg: Config, calibration: str, tail_spec: str, variants: Sequence[str]
                     ) -> tuple[Any, dict[str, Config], TailFeedSpec]:
    """The calibration file (``Calibration``), a configuration per calibrated controller (the file's
    parameters at the market's alpha; with ``fhs_gap`` its gap floor, else the base ``min_mmf`` /
    ``min_imf``) and the tail feed they read."""
    from dataclasses import replace

    from ballast.calibration import load_calibration

    cal = load_calibration(resolve_calibration(calibration))
    m = cfg.market(0)
    fit = cal.fit(m.alpha)
    if cal.tail is None:
        raise ValidationError("--calibration", calibration, "a file written by `ballast calibrate --tail fhs`")
    if "fhs_gap" in variants and cal.gap_floor is None:
        raise ValidationError("--calibration", calibration, "a file with a gap floor (`ballast calibrate --gap-floor`)")
    full = cal.params(m.alpha, m.params)
    cfgs: dict[str, Config] = {}
    for v in variants:
        p = full if v == "fhs_gap" else replace(full, min_mmf_wad=m.params.min_mmf_wad, min_imf_wad=m.params.min_imf_wad)
        cfgs[v] = replace(cfg, markets=tuple(mm.with_params(p) if mm.id == m.id else mm for mm in cfg.markets))
    spec = cal.tail if tail_spec == "file" else TailSpec(cap=fit.tail_cap)
    prior = {"long": fit.prior_long, "short": fit.prior_short} if fit.prior_long > 0 and fit.prior_short > 0 else None
    return cal, cfgs, TailFeedSpec(m.alpha, fit.z, spec, prior, lam=cal.ewma_lambda)


def config_with(model_set: Sequence[tuple[str, float]]) -> Config:
    """``config/markets.toml`` with ``[markets.model]`` keys set (every market), validated as the file is."""
    import tomllib

    from ballast.config import DEFAULT_CONFIG, parse_config

    data = tomllib.loads(Path(DEFAULT_CONFIG).read_text())
    for k, v in model_set:
        for m in data["markets"]:
            if k not in m["model"]:
                raise ValidationError("--set", k, f"a key of [markets.model]: {sorted(m['model'])}")
            m["model"][k] = float(v)
    return parse_config(data)


def tasks_of(spec: SweepSpec) -> list[Task]:
    out = []
    for s in spec.scenarios:
        seeds = [seed_of(spec.base_seed, s, i) for i in range(spec.seeds)]
        for k in range(0, len(seeds), spec.chunk):
            chunk = tuple(seeds[k:k + spec.chunk])
            key: list[Any] = [s, chunk, spec.accounts, spec.caps, spec.keeper_mode]
            if spec.model_set:
                key.append(spec.model_set)
            if spec.calibrated:  # (tasks without them keep their ids: older sweeps resume)
                key.append([spec.calibrated, spec.calibration, spec.tail_spec])
            if spec.depth_mode != "trailing":  # (likewise)
                key.append(["depth", spec.depth_mode])
            tid = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
            out.append(Task(tid, s, chunk, spec.accounts, spec.caps, spec.keeper_mode, spec.model_set,
                            spec.calibrated, spec.calibration, spec.tail_spec, spec.depth_mode))
    return out


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Keep the simulator's (runs x accounts) temporaries on glibc's heap, once per process.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it turns off glibc's
    dynamic mmap threshold, so every array over 128 KiB (a 64 x 300 float64 array is 150 KiB) is
    mmapped and unmapped, page faults included: measured, a 64-seed task took 9.1-9.9 s of CPU with
    that variable against 6.4 s without and 5.2-5.7 s with these two settings (64 MiB trim, 16 MiB
    mmap threshold). Memory only, no figure changes. A no-op where the C library is not glibc."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def run_task(task: Task, config: Config | None = None) -> list[dict[str, Any]]:
    """Run one task in the simulator: rows (scenario, seed, controller, figures). Pure: the same
    task gives the same rows on any worker."""
    _tune_malloc()
    cfg = config or (config_with(task.model_set) if task.model_set else load_config())
    built = {sd: build_source(task.scenario, sd) for sd in task.seeds}
    paths = {sd: b[0] for sd, b in built.items()}
    pops = {sd: generate(task.accounts, paths[sd].blocks, seed=sd, long_bias=paths[sd].long_bias)
            for sd in task.seeds}
    liq = LiquidatorSpec(count=default_liquidator_count(task.accounts))
    mode: Any = task.keeper_mode
    dmode: Any = task.depth_mode
    cache: dict[bytes, Any] = {}
    dyn = MarketSim([RunSpec(paths[sd], pops[sd], Controller("dynamic", label="dynamic"), sd) for sd in task.seeds],
                    cfg, keeper_mode=mode, liquidators=liq, target_cache=cache, depth_mode=dmode).run()
    dm = dyn.metrics()
    # Calibrated controllers: one batch each (their parameters are their configuration's).
    cal_sims: list[tuple[str, MarketSim]] = []
    cal_tuned = False
    if task.calibrated:
        cal, cfgs, tail = calibrated_setup(cfg, task.calibration, task.tail_spec, task.calibrated)
        cal_tuned = task.scenario in TUNED or trained_on(task.scenario, cal)
        for v in task.calibrated:
            label = f"dynamic_{v}"
            cal_sims.append((v, MarketSim([RunSpec(paths[sd], pops[sd], Controller("dynamic", label=label,
                                                                                   tail_feed=True), sd)
                                           for sd in task.seeds], cfgs[v], keeper_mode=mode, liquidators=liq,
                                          target_cache=cache, tail=tail, depth_mode=dmode).run()))
    cal_m = [(v, sim.metrics()) for v, sim in cal_sims]
    cons = cfg.market(0).static_conservative
    specs: list[RunSpec] = []
    for i, sd in enumerate(task.seeds):
        calm = dyn.calm_fractions(i)
        specs.append(RunSpec(paths[sd], pops[sd], Controller.static(calm, "static_calm"), sd))
        specs.append(RunSpec(paths[sd], pops[sd], Controller.static(cons, "static_conservative"), sd))
        for c in task.caps:
            f = StaticFractions(round(1.0 / c, 6), round(STATIC_MMF_RATIO / c, 6))
            specs.append(RunSpec(paths[sd], pops[sd], Controller.static(f, f"static_{c:g}x"), sd))
        for v, sim in cal_sims:  # static at the calibrated controller's own calm-period leverage
            specs.append(RunSpec(paths[sd], pops[sd], Controller.static(sim.calm_fractions(i), f"static_calm_{v}"), sd))
    sm = MarketSim(specs, cfg, keeper_mode=mode, liquidators=liq, target_cache=cache, depth_mode=dmode).run().metrics()
    rows: list[dict[str, Any]] = []
    per = 2 + len(task.caps) + len(cal_sims)
    for i, sd in enumerate(task.seeds):
        base: dict[str, Any] = {"task_id": task.task_id, "scenario": task.scenario, "family": family_of(task.scenario),
                "params": json.dumps(built[sd][1], sort_keys=True) if built[sd][1] else None, "seed": sd,
                "accounts": task.accounts, "tuned": task.scenario in TUNED, "max_drawdown": paths[sd].max_drawdown(),
                "insurance_seed_usd": cfg.engine.insurance_seed_usd, "tail_feed_mean": None, "tail_stale_blocks": None}
        mine = [base | {"controller": "dynamic", "imf": None, "mmf": None} | _pick(dm[i])]
        for v, ms in cal_m:
            mine.append(base | {"controller": f"dynamic_{v}", "imf": None, "mmf": None, "tuned": cal_tuned,
                                "tail_feed_mean": ms[i]["tail_feed_mean"],
                                "tail_stale_blocks": ms[i]["tail_stale_blocks"]} | _pick(ms[i]))
        for j, sp in enumerate(specs[i * per:(i + 1) * per]):
            name = sp.controller.name()
            mine.append(base | {"controller": name, "imf": sp.controller.imf, "mmf": sp.controller.mmf}
                        | ({"tuned": cal_tuned} if name.startswith("static_calm_") else {})
                        | _pick(sm[i * per + j]))
        vol = dyn.series["vol"][i]
        rows.extend(_status(mine, flat_vol=bool(np.nanmax(vol) == np.nanmin(vol))))
    return rows


def family_of(source: str) -> str:
    """The family of a scenario source (frontier tables): a built-in name or a drawn family as is,
    ``csv`` / ``toml`` for the user's files."""
    low = source.lower()
    return "csv" if low.endswith(".csv") else "toml" if low.endswith(".toml") else source


def _status(rows: list[dict[str, Any]], *, flat_vol: bool = False) -> list[dict[str, Any]]:
    """Mark the rows of one (scenario, seed) path: ``flat_vol_feed`` on every run of a path whose
    dynamic run saw a volatility feed that never moved (the keeper published no volatility signal:
    the dynamic model ran blind and static_calm has no calm period; an error, left out of the
    frontier and counted), ``no_trading`` on a run in which no order settled (an error, likewise),
    ``no_stress`` on every run of a path where none of the three stress controllers liquidated
    anyone or had bad debt (a calm draw: kept, it is part of the distribution, and counted), else
    ``ok``."""
    three = [r for r in rows if r["controller"] in ("dynamic", "static_calm", "static_conservative")]
    calm = all((r["liquidations"] or 0) == 0 and (r["bad_debt_usd"] or 0) == 0 for r in three)
    for r in rows:
        r["status"] = ("flat_vol_feed" if flat_vol else "no_trading" if not r["orders_settled"]
                       else "no_stress" if calm else "ok")
    return rows


def _pick(m: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if v == v else None) for k in COLUMNS for v in (float(m[k]),)}


# ------------------------------------------------------------------------------ storage

EXTRA = (("family", "TEXT"), ("params", "TEXT"), ("mmf", "REAL"), ("status", "TEXT"), ("tail_feed_mean", "REAL"),
         ("tail_stale_blocks", "REAL"))
"""Columns added after the first stored sweeps (added to an older file when it is opened)."""


class Store:
    """SQLite results: a row per (scenario, seed, controller), a row per finished task."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        cols = ", ".join(f"{c} REAL" for c in COLUMNS)
        self.db.execute("CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, spec TEXT, finished REAL)")
        self.db.execute(f"CREATE TABLE IF NOT EXISTS runs (rowid INTEGER PRIMARY KEY, task_id TEXT, scenario TEXT, "
                        f"seed INTEGER, accounts INTEGER, controller TEXT, imf REAL, tuned INTEGER, max_drawdown REAL, "
                        f"insurance_seed_usd REAL, {cols})")
        have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        for name, kind in EXTRA:  # files written before these columns existed
            if name not in have:
                self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        self.db.commit()

    def done(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT task_id FROM tasks")}

    def save(self, task: Task, rows: Sequence[dict[str, Any]]) -> None:
        keys = ("task_id", "scenario", "seed", "accounts", "controller", "imf", "tuned", "max_drawdown",
                "insurance_seed_usd") + COLUMNS + tuple(n for n, _ in EXTRA)
        with self.db:
            self.db.executemany(f"INSERT INTO runs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                                [tuple(r[k] for k in keys) for r in rows])
            self.db.execute("INSERT INTO tasks VALUES (?, ?, ?)", (task.task_id, json.dumps(asdict(task)), time.time()))

    def rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY scenario, seed, controller")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


# ------------------------------------------------------------------------------ running

class Bar:
    """A progress bar with rate and ETA on stderr (one line per 10% when not a terminal)."""

    def __init__(self, total: int, unit: str = "runs", stream: Any = sys.stderr) -> None:
        self.total, self.unit, self.stream = total, unit, stream
        self.t0 = time.monotonic()
        self.last = -1.0

    def __call__(self, done: int) -> None:
        el = time.monotonic() - self.t0
        rate = done / el if el > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if not tty and done != self.total and int(10 * done / max(1, self.total)) == int(10 * self.last / max(1, self.total)):
            return
        self.last = done
        w = 30
        f = int(w * done / max(1, self.total))
        eta_s = "--" if eta == float("inf") else f"{eta:,.0f} s"
        head, tail = ("\r", "") if tty else ("", "\n")
        self.stream.write(f"{head}[{'#' * f}{'-' * (w - f)}] {done}/{self.total} {self.unit} "
                          f"{rate:,.1f}/s ETA {eta_s}{tail}")
        if done == self.total and tty:
            self.stream.write("\n")
        self.stream.flush()


def run_sweep(spec: SweepSpec, out: Path, *, scheduler: str | None = None, workers: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a sweep into ``out/sweep.sqlite``; returns timing figures."""
    import importlib

    dd: Any = importlib.import_module("dask.distributed")  # untyped: used through Any
    spec.validate()
    store = Store(out / "sweep.sqlite")
    todo = [t for t in tasks_of(spec) if t.task_id not in store.done()]
    per_task = 3 + len(spec.caps) + 2 * len(spec.calibrated)
    total_runs = sum(len(t.seeds) for t in todo) * per_task
    cluster = None
    if scheduler:
        client = dd.Client(scheduler)
    else:
        cluster = dd.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = dd.Client(cluster)
    t0 = time.monotonic()
    bar = Bar(total_runs) if progress else None
    done_runs = 0
    try:
        futs = {client.submit(run_task, t, key=f"sweep-{t.task_id}", pure=False): t for t in todo}
        for fut in dd.as_completed(futs):
            t = futs[fut]
            store.save(t, fut.result())
            done_runs += len(t.seeds) * per_task
            if bar:
                bar(done_runs)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    wall = time.monotonic() - t0
    return {"tasks": len(todo), "runs": total_runs, "wall_sec": wall,
            "runs_per_sec": total_runs / wall if wall > 0 else 0.0,
            "three_controller_runs_per_sec": total_runs / per_task / wall if wall > 0 else 0.0}


def stored_row(db: Path, rowid: int) -> tuple[dict[str, Any], Task]:
    """Row ``rowid`` of a sweep file and the one-seed task that re-runs it."""
    if not Path(db).is_file():
        raise ValidationError("FILE", str(db), "an existing sweep.sqlite")
    store = Store(Path(db))
    cur = store.db.execute("SELECT * FROM runs WHERE rowid = ?", (int(rowid),))
    names = [d[0] for d in cur.description]
    found = cur.fetchone()
    if found is None:
        n = next(iter(store.db.execute("SELECT COUNT(*), MIN(rowid), MAX(rowid) FROM runs")))
        raise ValidationError("ROWID", rowid, f"a row of {db} ({n[0]} rows, ids {n[1]}..{n[2]})")
    r = dict(zip(names, found))
    spec = json.loads(next(iter(store.db.execute("SELECT spec FROM tasks WHERE task_id = ?", (r["task_id"],))))[0])
    task = Task(r["task_id"], r["scenario"], (int(r["seed"]),), int(r["accounts"]), tuple(spec["caps"]),
                spec["keeper_mode"], tuple((str(k), float(v)) for k, v in spec.get("model_set", ())),
                tuple(spec.get("calibrated", ())), spec.get("calibration", DEFAULT_CALIBRATION),
                spec.get("tail_spec", "plain"), spec.get("depth_mode", "trailing"))
    return r, task


def rerun(db: Path, rowid: int) -> dict[str, Any]:
    """Re-run one stored row alone (its scenario, seed and controller) and return both figures, the
    row's controller fractions (``imf``, ``mmf``; None for dynamic) and its drawn parameters."""
    r, task = stored_row(db, rowid)
    new = next(x for x in run_task(task) if x["controller"] == r["controller"])
    return {"stored": {k: r[k] for k in COLUMNS}, "rerun": {k: new[k] for k in COLUMNS},
            "identical": all(r[k] == new[k] for k in COLUMNS),
            "scenario": r["scenario"], "seed": r["seed"], "accounts": r["accounts"], "controller": r["controller"],
            "keeper_mode": task.keeper_mode, "depth_mode": task.depth_mode, "model_set": [list(kv) for kv in task.model_set], "imf": new["imf"],
            "mmf": new["mmf"], "params": new["params"],
            "anvil": f"ballast stress --from-sweep {db} {rowid}"}


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x)
    except ValueError as e:
        raise ValidationError("--caps", text, "comma-separated numbers") from e


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ballast sweep", description="crash x controller sweep in the vectorized "
                                 "simulator on Dask, stored in SQLite (resumable), and its frontier report")
    ap.add_argument("--scenarios", default=",".join(SweepSpec.scenarios),
                    help="comma-separated sources: built-in names, draw:FAMILY (parameters drawn from "
                         "ballast.scenarios.PARAM_LAWS), .toml or .csv files; 'corpus' for " + ",".join(CORPUS))
    ap.add_argument("--seeds", type=int, default=SweepSpec.seeds, help="seeds per scenario")
    ap.add_argument("--accounts", type=int, default=SweepSpec.accounts)
    ap.add_argument("--caps", default=",".join(f"{c:g}" for c in DEFAULT_CAPS), help="static caps (x); '' for none")
    ap.add_argument("--chunk", type=int, default=SweepSpec.chunk, help="seeds per Dask task")
    ap.add_argument("--base-seed", type=int, default=SweepSpec.base_seed)
    ap.add_argument("--keeper", default="trailing", choices=list(VOL_MODES),
                    help="volatility feed: trailing (EWMA on the path's bars), predictive (GARCH) or intraday "
                         "(EWMA continued on every block)")
    ap.add_argument("--depth-mode", default="trailing", choices=list(DEPTH_MODES),
                    help="depth feed: trailing (the book now) or predictive (its trend projected one liquidation "
                         "horizon ahead, never above the trailing depth)")
    ap.add_argument("--set", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [markets.model] parameter other than config/markets.toml's (a dynamic variant; repeatable)")
    ap.add_argument("--calibrated", default="", help="calibrated controllers to add, comma-separated: "
                    + ",".join(CALIBRATED) + " (dynamic_fhs, dynamic_fhs_gap, each with its static_calm)")
    ap.add_argument("--calibration", default=DEFAULT_CALIBRATION, help="their calibration file (ballast calibrate "
                    "--tail fhs [--gap-floor])")
    ap.add_argument("--tail-spec", default="plain", choices=list(TAIL_SPECS),
                    help="their tail estimator: plain FHS (no hyperparameter) or the calibration file's [tail]")
    ap.add_argument("--out", default="out/sweep")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler (tcp://host:8786)")
    ap.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: every core)")
    ap.add_argument("--rerun", nargs=2, metavar=("FILE", "ROWID"), default=None, help="re-run one stored row alone")
    ap.add_argument("--no-report", action="store_true", help="skip the frontier report")
    a = ap.parse_args(list(argv) if argv is not None else None)
    if a.rerun:
        print(json.dumps(rerun(Path(a.rerun[0]), int(a.rerun[1])), indent=1))
        return 0
    sources: list[str] = []
    for x in (x.strip() for x in a.scenarios.split(",")):
        sources.extend(CORPUS if x == "corpus" else [x] if x else [])
    sets: list[tuple[str, float]] = []
    for kv in a.model_set:
        k, eq, v = kv.partition("=")
        try:
            sets.append((k.strip(), float(v)))
        except ValueError as e:
            raise ValidationError("--set", kv, "KEY=NUMBER") from e
        if not eq:
            raise ValidationError("--set", kv, "KEY=NUMBER")
    spec = SweepSpec(tuple(sources), a.seeds, a.accounts, _floats(a.caps), a.chunk, a.base_seed, a.keeper,
                     tuple(sets), tuple(x.strip() for x in a.calibrated.split(",") if x.strip()), a.calibration,
                     a.tail_spec, a.depth_mode).validate()
    out = Path(a.out)
    timing = run_sweep(spec, out, scheduler=a.scheduler, workers=a.workers)
    print(f"{timing['runs']:,} runs in {timing['wall_sec']:,.1f} s: {timing['runs_per_sec']:,.1f} runs/s "
          f"({timing['three_controller_runs_per_sec']:,.2f} three-controller runs/s); results {out / 'sweep.sqlite'}")
    if not a.no_report:
        from ballast.frontier import write_frontier

        page = write_frontier(Store(out / "sweep.sqlite").rows(), out)
        print(f"frontier: {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
