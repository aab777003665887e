"""Oracle bound (issue 12): how far below a static cap could a margin rule of the shipped shape go?

NON-CAUSAL DIAGNOSTIC, AN UPPER BOUND, NEVER A MODEL TO SHIP. Variants of the dynamic controller
are run in the simulator (``ballast.marketsim``), each against its own ``static_calm`` (a static cap
at that variant's own calm-period leverage, ``MarketSim.calm_fractions``, as
``ballast.marketsim.three_controllers`` does), on the same paths, populations and seeds as the sweep:

``shipped``
    Today's controller: the trailing EWMA keeper, the configured ramp.
``instant``
    Same feeds; the maintenance ramp reacts at once: no random activation delay
    (``ramp_jitter_sec`` 0), a ramp rate of 1.0 per second (:func:`instant_config`, above the
    contract's hard bound on purpose) and a tightening that applies in the block it is computed
    (:class:`InstantSim`).
``instant_next_block``
    The same configuration under the contract's ramp rule (a ramp starts the second after its
    activation): a tightening lands in the next block.
``foresight_{H}``
    The keeper's volatility feed replaced by a look-ahead one (:class:`ForesightFeed`): at block
    ``b``, the realized volatility of the scenario's price path over the next ``H`` seconds
    (:func:`lookahead_vol`), max'ed with the trailing feed. Price, depth, skew and funding, and the
    volatility the traders read, stay the trailing keeper's.
``foresight_instant_{H}``
    Both.
``intraday``, ``intraday_instant`` (``--variants``)
    The causal intraday keeper (``ballast.keeper`` mode ``intraday``: the EWMA continued on every
    block), with the configured ramp and with the instant one: how much of what is left after a
    faster causal feed is the ramp.

Every ``static_calm`` runs the shipped configuration and keeper (a static cap reads no volatility
feed and has no ramp): only its fractions differ between variants. Issue 12's targets are computed
by ``ballast.frontier.targets`` on the rows (labels ``dynamic@VARIANT`` / ``static_calm@VARIANT``).

``python -m ballast.bound --seeds 40 --sources corpus-oos --out out/bound`` writes ``bound.json`` and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ballast._typing import WAD, FloatArray
from ballast.config import Config, load_config
from ballast.errors import ScenarioError, ValidationError
from ballast.frontier import GAP_SOURCES, TARGETS, paired, targets
from ballast.keeper import FeedModel, VolMode
from ballast.marketsim import Controller, MarketSim, RunSpec
from ballast.population import LiquidatorSpec, Trader, default_liquidator_count, generate
from ballast.risk.volatility import annualization_factor
from ballast.scenarios import CORPUS, REAL_REPLAYS, ScenarioPath, build_source, check_source
from ballast.sweep import TUNED, seed_of

DAY = 86_400
INSTANT_RAMP_WAD_PER_SEC = WAD
"""The instant variant's ramp rate: 1.0 (100 percentage points of margin) per second, more than any
maintenance gap (fractions are at most 1): the ramp completes within any block."""
CHUNK = 64
"""Seeds per simulator batch."""
OOS_SOURCES = tuple(s for s in CORPUS if s not in TUNED)
"""The corpus sources the shipped parameters were not chosen on (out of sample)."""


@dataclass(frozen=True)
class Variant:
    name: str
    instant: bool = False
    same_block: bool = True
    """Instant only: the tightening applies in the block it is computed (``InstantSim``), or, False,
    from the next block (the contract's ramp rule: it starts the second after its activation)."""
    ahead_sec: int | None = None
    """Look-ahead of the volatility feed, seconds (None: the keeper's own feed)."""
    keeper: VolMode = "trailing"
    """The keeper's volatility mode (``ballast.keeper.VOL_MODES``)."""

    @property
    def label(self) -> str:
        return "dynamic" if self.name == "shipped" else f"dynamic@{self.name}"

    @property
    def static_label(self) -> str:
        return "static_calm" + self.label[len("dynamic"):]


def variants(horizons_h: Sequence[int] = (24, 4)) -> tuple[Variant, ...]:
    out = [Variant("shipped"), Variant("instant", instant=True), Variant("instant_next_block", instant=True, same_block=False)]
    out += [Variant(f"foresight_{h}h", ahead_sec=h * 3_600) for h in horizons_h]
    out += [Variant(f"foresight_instant_{h}h", instant=True, ahead_sec=h * 3_600) for h in horizons_h]
    return tuple(out)


INTRADAY_VARIANTS = (Variant("intraday", keeper="intraday"), Variant("intraday_instant", instant=True, keeper="intraday"))
"""Causal variants with the intraday keeper (``--variants``)."""


def select_variants(default: Sequence[Variant], names: str) -> tuple[Variant, ...]:
    """The variants named in ``names`` (comma-separated; empty: ``default``), among ``default`` and
    :data:`INTRADAY_VARIANTS`, in the order given."""
    if not names.strip():
        return tuple(default)
    known = {v.name: v for v in (*default, *INTRADAY_VARIANTS)}
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in known:
            raise ValidationError("--variants", n, f"one of {sorted(known)}")
        out.append(known[n])
    return tuple(out)


def instant_config(cfg: Config) -> Config:
    """``cfg`` with every market's ramp at once: no activation delay and a ramp rate of
    :data:`INSTANT_RAMP_WAD_PER_SEC` (``dataclasses.replace``: not validated, the rate is above the
    contract's hard bound on purpose)."""
    ms = tuple(replace(m, params=replace(m.params, ramp_jitter_sec=0, mmf_ramp_wad_per_sec=INSTANT_RAMP_WAD_PER_SEC))
               for m in cfg.markets)
    return replace(cfg, markets=ms)


class InstantSim(MarketSim):
    """The simulator with a ramp that is at its target from its activation second on (with
    :func:`instant_config`, activation is the block the tightening is computed in). Existing callers
    of ``MarketSim`` are unchanged."""

    def _ramp_value(self, side: int, now: int) -> FloatArray:
        fr, to, act, _ = self.ramp[side]
        out: FloatArray = np.where((now >= act) & (to > fr), to, fr)
        return out


def lookahead_vol(price: FloatArray, block_sec: int, ahead_sec: int) -> FloatArray:
    """Per block ``b``: the realized volatility of ``price`` over the next ``ahead_sec`` seconds,
    ``sqrt(mean(r**2))`` over the block log returns ``r`` from block ``b`` to block
    ``min(b + ahead_sec // block_sec, last)`` (zero mean, as the keeper's EWMA), annualized as the
    keeper's (``sqrt(365 d / block_sec)``); 0 at the last block (nothing ahead). Reads no price
    after the path's end. NON-CAUSAL: it reads the future."""
    p = np.asarray(price, dtype=np.float64)
    if block_sec <= 0 or ahead_sec < block_sec:
        raise ValidationError("lookahead_vol", (block_sec, ahead_sec), "block_sec > 0, ahead_sec >= block_sec")
    k = ahead_sec // block_sec
    r2 = np.diff(np.log(p)) ** 2
    c = np.r_[0.0, np.cumsum(r2)]
    b = np.arange(p.size)
    end = np.minimum(b + k, p.size - 1)
    n = end - b
    var = np.where(n > 0, (c[end] - c[b]) / np.maximum(n, 1), 0.0)
    out: FloatArray = np.sqrt(var) * annualization_factor(block_sec)
    return out


@dataclass
class ForesightFeed(FeedModel):
    """The trailing keeper with the volatility target max'ed with :func:`lookahead_vol`; ``vol``
    (the traders' reading and the depth target's input) stays trailing. NON-CAUSAL."""

    ahead_sec: int = DAY
    ahead: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ahead = lookahead_vol(self.scenario.price, self.scenario.block_sec, self.ahead_sec)

    def targets(self, b: int, oi_long: float, oi_short: float) -> dict[str, float]:
        out = super().targets(b, oi_long, oi_short)
        out["volatility"] = max(out["volatility"], float(self.ahead[b]))
        return out


def _base_row(source: str, seed: int, accounts: int) -> dict[str, Any]:
    return {"scenario": source, "seed": seed, "accounts": accounts, "tuned": source in TUNED}


def run_paths(source: str, paths: Sequence[ScenarioPath], pops: Sequence[Sequence[Trader]], seeds: Sequence[int],
              cfg: Config, vs: Sequence[Variant], *, progress: bool = False) -> list[dict[str, Any]]:
    """Every variant's dynamic run on every path (one batch per variant), then every variant's
    ``static_calm`` at its own run's calm fractions (one batch); one row per (seed, controller).
    Raises ``ScenarioError`` on a run with no order settled or a volatility feed that never moved."""
    liq = LiquidatorSpec(count=default_liquidator_count(len(pops[0])))
    icfg = instant_config(cfg)
    dyn: dict[str, MarketSim] = {}
    for v in vs:
        t0 = time.monotonic()
        runs = [RunSpec(p, t, Controller("dynamic", label=v.label), sd) for p, t, sd in zip(paths, pops, seeds)]
        models = None if v.ahead_sec is None else [ForesightFeed(p, v.keeper, base_depth_usd=cfg.market(0).initial["depth"],
                                                                 ahead_sec=v.ahead_sec) for p in paths]
        sim_cls = InstantSim if v.instant and v.same_block else MarketSim
        dyn[v.name] = sim_cls(runs, icfg if v.instant else cfg, liquidators=liq, models=models,
                              keeper_mode=v.keeper).run()
        if progress:
            print(f"  {source}: {v.label} x {len(seeds)} seeds {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    specs = [RunSpec(p, t, Controller.static(dyn[v.name].calm_fractions(i), v.static_label), sd)
             for v in vs for i, (p, t, sd) in enumerate(zip(paths, pops, seeds))]
    t0 = time.monotonic()
    st = MarketSim(specs, cfg, liquidators=liq).run().metrics()
    if progress:
        print(f"  {source}: {len(specs)} static_calm runs {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for j, v in enumerate(vs):
        dm = dyn[v.name].metrics()
        for i, sd in enumerate(seeds):
            base = _base_row(source, sd, len(pops[0]))
            s = specs[j * len(seeds) + i].controller
            rows.append(base | {"controller": v.label, "variant": v.name} | dm[i])
            rows.append(base | {"controller": v.static_label, "variant": v.name, "imf": s.imf, "mmf": s.mmf} | st[j * len(seeds) + i])
            vol = dyn[v.name].series["vol"][i]
            if float(np.nanmax(vol)) == float(np.nanmin(vol)):
                raise ScenarioError(f"source {source} seed {sd} ({v.label}): the volatility feed never moved; no calm "
                                    "period to pin static_calm to")
    for r in rows:
        if not (r["orders_settled"] or 0) > 0:
            raise ScenarioError(f"source {r['scenario']} seed {r['seed']} ({r['controller']}): no order settled "
                                f"({r['orders_committed']:.0f} committed, {r['orders_expired']:.0f} expired); its "
                                "figures would be zeros, not a result")
    return rows


def check_stress(source: str, rows: Sequence[dict[str, Any]]) -> int:
    """A source on which no run liquidated anyone or had bad debt measures nothing: an error naming
    it. Returns the number of calm seeds (no liquidation, no bad debt in any run of the seed: kept,
    as the sweep keeps its ``no_stress`` paths)."""
    if not rows:
        raise ScenarioError(f"source {source}: no run")
    by: dict[int, bool] = {}
    for r in rows:
        hit = (r["liquidations"] or 0) > 0 or (r["bad_debt_usd"] or 0) > 0
        by[r["seed"]] = by.get(r["seed"], False) or hit
    if not any(by.values()):
        raise ScenarioError(f"source {source}: no stress: no liquidation and no bad debt in any run of its "
                            f"{len(by)} seeds; the comparison measures nothing")
    return sum(1 for v in by.values() if not v)


def run_source(source: str, seeds: Sequence[int], cfg: Config, vs: Sequence[Variant], accounts: int = 300, *,
               progress: bool = False) -> list[dict[str, Any]]:
    """Build the source's paths and populations (as ``ballast.sweep.run_task``) and run them, in
    batches of ``CHUNK`` seeds (a run's figures do not depend on its batch)."""
    rows: list[dict[str, Any]] = []
    for k in range(0, len(seeds), CHUNK):
        part = list(seeds[k:k + CHUNK])
        paths = [build_source(source, sd)[0] for sd in part]
        pops = [generate(accounts, p.blocks, seed=sd, long_bias=p.long_bias) for p, sd in zip(paths, part)]
        rows.extend(run_paths(source, paths, pops, part, cfg, vs, progress=progress))
    return rows


def _median_ci(rows: Sequence[dict[str, Any]], a: str, b: str, sources: Sequence[str], n: int = 1000,
               seed: int = 0) -> tuple[float, float] | None:
    """95% interval of the median over ``sources`` of the per-source ratio of mean bad debt ``a`` /
    ``b``: paths resampled within each source (paired), the median taken per draw."""
    rng = np.random.default_rng(seed)
    draws = []
    for s in sources:
        by: dict[int, dict[str, float]] = {}
        for r in rows:
            if r["scenario"] == s and r["controller"] in (a, b):
                by.setdefault(r["seed"], {})[r["controller"]] = float(r["bad_debt_usd"])
        both = [v for v in by.values() if a in v and b in v]
        if not both:
            return None
        x, y = np.array([v[a] for v in both]), np.array([v[b] for v in both])
        idx = rng.integers(0, len(both), size=(n, len(both)))
        sb = y[idx].sum(axis=1)
        draws.append(x[idx].sum(axis=1) / np.where(sb > 0, sb, np.nan))
    if not draws:
        return None
    med = np.nanmedian(np.array(draws), axis=0)
    lo, hi = np.nanpercentile(med, [2.5, 97.5])
    return float(lo), float(hi)


def report(rows: Sequence[dict[str, Any]], vs: Sequence[Variant]) -> dict[str, Any]:
    """Per source and variant: calm-period leverage, mean bad debt of the variant and its
    static_calm, the paired ratio (95% bootstrap interval); the targets (``ballast.frontier.targets``)
    with intervals; the variant against shipped."""
    t = targets(rows)
    out: dict[str, Any] = {"variants": {}, "sources": sorted({r["scenario"] for r in rows}, key=list(CORPUS).index)}
    for v in vs:
        tv = t[v.label]
        per: dict[str, Any] = {}
        for s in out["sources"]:
            rs = [r for r in rows if r["scenario"] == s]
            p = paired(rs, v.label, v.static_label)
            mine = [r for r in rs if r["controller"] == v.label]
            stat = [r for r in rs if r["controller"] == v.static_label]
            per[s] = {"paths": p["paths"], "real": s in REAL_REPLAYS, "gap": s in GAP_SOURCES,
                      "calm_lev": float(np.mean([r["calm_mean_max_leverage"] for r in mine])),
                      "static_calm_lev": float(np.mean([r["calm_mean_max_leverage"] for r in stat])),
                      "bad_mean": p["mean_a"], "static_bad_mean": p["mean_b"], "ratio": p.get("ratio"),
                      "ci": p.get("ci"), "text": p["text"],
                      "vs_shipped": paired(rs, v.label, "dynamic")["text"] if v.name != "shipped" else None}
        real = tv["real_sources"]
        gap = [r for r in rows if r["scenario"] in GAP_SOURCES]
        gp = paired(gap, v.label, v.static_label)
        out["variants"][v.name] = {
            "label": v.label, "baseline": v.static_label, "instant": v.instant, "ahead_sec": v.ahead_sec,
            "sources": per,
            "median_real_crash": {"value": tv["figures"]["median_real_crash"], "ci": _median_ci(rows, v.label, v.static_label, real),
                                  "over": real, "target": TARGETS["median_real_crash"],
                                  "verdict": tv["verdicts"]["median_real_crash"]},
            "gap_no_precursor": {"value": tv["figures"]["gap_no_precursor"], "ci": gp.get("ci"), "paths": gp["paths"],
                                 "target": TARGETS["gap_no_precursor"], "verdict": tv["verdicts"]["gap_no_precursor"]},
            "penalties_median_source": {"value": tv["figures"]["penalties_median_source"],
                                        "verdict": tv["verdicts"]["penalties_median_source"]}}
    return out


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _ci(c: Sequence[float] | None) -> str:
    return "" if c is None else f" [{c[0]:.2f}, {c[1]:.2f}]"


def table(rep: dict[str, Any]) -> str:
    """The report as Markdown: per source and variant, then the targets."""
    lines = ["| source | variant | calm-period leverage, variant / its static_calm (x) | mean bad debt, variant (USD) "
             "| mean bad debt, its static_calm (USD) | ratio [paired 95% CI] | variant / shipped bad debt |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for s in rep["sources"]:
        for name, v in rep["variants"].items():
            x = v["sources"][s]
            kind = "real" if x["real"] else "synthetic"
            lines.append(f"| {s} ({kind}) | {name} | {x['calm_lev']:.1f} / {x['static_calm_lev']:.1f} | "
                         f"{x['bad_mean']:,.0f} | {x['static_bad_mean']:,.0f} | {x['text']} | {x['vs_shipped'] or '-'} |")
    lines += ["", "| variant | median real crash (target <= 0.2) [95% CI] | gap, no precursor (target <= 0.5) [95% CI] "
              "| penalties, median source (<= 1.25) |", "| --- | --- | --- | --- |"]
    for name, v in rep["variants"].items():
        m, g, pen = v["median_real_crash"], v["gap_no_precursor"], v["penalties_median_source"]
        lines.append(f"| {name} | {_f(m['value'])}{_ci(m['ci'])} ({m['verdict']}) | {_f(g['value'])}{_ci(g['ci'])} "
                     f"({g['verdict']}) | {_f(pen['value'])} ({pen['verdict']}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ballast.bound", description="NON-CAUSAL oracle bound (issue 12): "
                                 "dynamic variants with instant ramps and look-ahead volatility, each against its "
                                 "own static_calm; an upper bound, not a model")
    ap.add_argument("--seeds", type=int, default=40, help="seeds per source (the sweep's: seed_of(11, source, i))")
    ap.add_argument("--sources", default="corpus-oos", help="comma-separated sources; corpus-oos: every corpus "
                    "source but the in-sample " + ",".join(sorted(TUNED)))
    ap.add_argument("--horizons", default="24,4", help="look-ahead horizons of the foresight variants, hours")
    ap.add_argument("--variants", default="", help="comma-separated variant names to run (default: shipped, the "
                    "instant and foresight ones); also intraday, intraday_instant")
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--base-seed", type=int, default=11)
    ap.add_argument("--out", default="out/bound")
    a = ap.parse_args(list(argv) if argv is not None else None)
    sources: list[str] = []
    for x in (x.strip() for x in a.sources.split(",")):
        sources.extend(OOS_SOURCES if x == "corpus-oos" else [check_source(x)] if x else [])
    if not sources:
        raise ValidationError("--sources", a.sources, "at least one source")
    if not 1 <= a.seeds <= 100_000:
        raise ValidationError("--seeds", a.seeds, "[1, 100000]")
    vs = select_variants(variants(tuple(int(h) for h in a.horizons.split(",") if h.strip())), a.variants)
    cfg = load_config()
    rows: list[dict[str, Any]] = []
    calm: dict[str, int] = {}
    t0 = time.monotonic()
    for k, s in enumerate(sources):
        seeds = [seed_of(a.base_seed, s, i) for i in range(a.seeds)]
        print(f"[{k + 1}/{len(sources)}] {s}: {len(seeds)} seeds x {len(vs)} variants x 2 runs", file=sys.stderr, flush=True)
        rs = run_source(s, seeds, cfg, vs, a.accounts, progress=True)
        calm[s] = check_stress(s, rs)
        rows.extend(rs)
        print(f"[{k + 1}/{len(sources)}] {s} done, {time.monotonic() - t0:,.0f} s elapsed", file=sys.stderr, flush=True)
    wall = time.monotonic() - t0
    rep = report(rows, vs)
    rep.update(seeds=a.seeds, base_seed=a.base_seed, accounts=a.accounts, wall_sec=wall, runs=len(rows),
               calm_seeds=calm, note="NON-CAUSAL oracle bound: an upper bound on what a better volatility forecast "
               "and a faster ramp could buy at equal calm-period leverage, never a model to ship")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bound.json").write_text(json.dumps({"report": rep, "rows": rows}, indent=1, default=float))
    print(table(rep))
    print(f"\n{len(rows):,} runs in {wall:,.0f} s; {out / 'bound.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
