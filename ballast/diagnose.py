"""Where the dynamic model's bad debt comes from against its ``static_calm`` (issue 12, a diagnostic).

``static_calm`` is pinned to the dynamic run's *mean* calm-period leverage (``ballast.calm``), so in
some blocks the dynamic cap is looser than it and in others tighter. This module splits each run's
bad debt, block by block, by that: a block is *looser* when the dynamic cap's largest max leverage
over the ``lookback`` blocks before it (the loosest cap a position alive in the block could have
been opened under; both sides averaged, as ``calm_fractions`` averages them) exceeds the static cap's
``1 / imf``, else *tighter*. Both controllers' bad debt in the same blocks is summed, so the ratio
dynamic / static_calm can be read separately where the dynamic cap was looser and where it was
tighter.

It measures; it changes nothing and fits nothing (the sources it reads are the sweep's held-out ones:
read it as an account of the frontier's figures, never as a tuning signal).

    python -m ballast.diagnose --sources sp500_2008_10,nasdaq_2000_04 --seeds 40 --lookback 24
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import numpy.typing as npt

from ballast.config import Config, load_config
from ballast.errors import ValidationError
from ballast.marketsim import Controller, MarketSim, RunSpec
from ballast.population import LiquidatorSpec, default_liquidator_count, generate
from ballast.scenarios import CORPUS, REAL_REPLAYS, build_source
from ballast.sweep import TUNED

FloatArray = npt.NDArray[np.float64]
GAP_SOURCE = "draw:flash_crash"


@dataclass(frozen=True)
class Split:
    """One run's (or a sum of runs') bad debt, USD, split by the dynamic cap's looseness."""

    dyn_looser: float
    dyn_tighter: float
    static_looser: float
    static_tighter: float
    looser_blocks: int
    blocks: int

    def __add__(self, o: Split) -> Split:
        return Split(self.dyn_looser + o.dyn_looser, self.dyn_tighter + o.dyn_tighter,
                     self.static_looser + o.static_looser, self.static_tighter + o.static_tighter,
                     self.looser_blocks + o.looser_blocks, self.blocks + o.blocks)


def looser_blocks(lev_dyn: FloatArray, lev_static: float, lookback: int) -> npt.NDArray[np.bool_]:
    """Per block: was the dynamic cap's largest max leverage over the ``lookback`` blocks before it
    above ``lev_static``? (Block 0 looks at itself; NaN leverage, a bad price, counts as not looser.)"""
    if lookback < 1:
        raise ValidationError("lookback", lookback, "at least 1 block")
    lev = np.where(np.isfinite(lev_dyn), lev_dyn, -np.inf)
    out = np.empty(lev.size, dtype=bool)
    for b in range(lev.size):
        lo = max(0, b - lookback)
        out[b] = bool(np.max(lev[lo:b] if b > 0 else lev[:1]) > lev_static)
    return out


def split_run(bad_dyn: FloatArray, bad_static: FloatArray, lev_dyn: FloatArray, lev_static: float,
              lookback: int) -> Split:
    """Split one run's bad debt (cumulative series, USD, one value per block) by ``looser_blocks``."""
    if not (bad_dyn.shape == bad_static.shape == lev_dyn.shape) or bad_dyn.size == 0:
        raise ValidationError("series", (bad_dyn.shape, bad_static.shape, lev_dyn.shape),
                              "three non-empty series of the same number of blocks")
    inc_d = np.diff(np.nan_to_num(bad_dyn), prepend=0.0)
    inc_s = np.diff(np.nan_to_num(bad_static), prepend=0.0)
    m = looser_blocks(lev_dyn, lev_static, lookback)
    return Split(float(inc_d[m].sum()), float(inc_d[~m].sum()), float(inc_s[m].sum()), float(inc_s[~m].sum()),
                 int(m.sum()), int(m.size))


def split_source(source: str, seeds: Sequence[int], config: Config, accounts: int = 300,
                 lookback: int = 24) -> Split:
    """The sweep's dynamic and static_calm runs of ``source`` (same paths, populations, liquidators
    and ramp seeds as ``ballast.sweep.run_task``), their bad debt split and summed over ``seeds``."""
    if not seeds:
        raise ValidationError("seeds", 0, "at least one seed")
    paths = {sd: build_source(source, sd)[0] for sd in seeds}
    pops = {sd: generate(accounts, paths[sd].blocks, seed=sd, long_bias=paths[sd].long_bias) for sd in seeds}
    liq = LiquidatorSpec(count=default_liquidator_count(accounts))
    cache: dict[bytes, tuple[FloatArray, ...]] = {}
    dyn = MarketSim([RunSpec(paths[sd], pops[sd], Controller("dynamic", label="dynamic"), sd) for sd in seeds],
                    config, liquidators=liq, target_cache=cache).run()
    calm = [dyn.calm_fractions(i) for i in range(len(seeds))]
    st = MarketSim([RunSpec(paths[sd], pops[sd], Controller.static(calm[i], "static_calm"), sd)
                    for i, sd in enumerate(seeds)], config, liquidators=liq,
                   target_cache=cache).run()
    if not any(dyn.bad[i] > 0 or st.bad[i] > 0 for i in range(len(seeds))):
        raise ValidationError("source", source, "a source with bad debt under dynamic or static_calm in some seed "
                              "(none in any: nothing to split)")
    lev = (dyn.series["lev_long"] + dyn.series["lev_short"]) / 2
    total = Split(0.0, 0.0, 0.0, 0.0, 0, 0)
    for i in range(len(seeds)):
        total = total + split_run(dyn.series["bad_debt_usd"][i], st.series["bad_debt_usd"][i], lev[i],
                                  1.0 / calm[i].imf, lookback)
    return total


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a (static: 0)"


def table(rows: dict[str, Split], n_seeds: int, lookback: int) -> str:
    """The split as text, USD per run (mean over seeds)."""
    lines = [f"bad debt, USD per run (mean of {n_seeds} seeds), split by whether the dynamic cap was looser than "
             f"static_calm's over the {lookback} blocks before",
             f"{'source':<22}{'looser blocks':>14}{'dyn looser':>12}{'static':>10}{'ratio':>8}"
             f"{'dyn tighter':>13}{'static':>10}{'ratio':>8}{'whole ratio':>13}"]
    for src, s in rows.items():
        n = n_seeds
        lines.append(f"{src:<22}{s.looser_blocks / s.blocks:>13.0%} {s.dyn_looser / n:>12,.0f}"
                     f"{s.static_looser / n:>10,.0f}{_ratio(s.dyn_looser, s.static_looser):>8}"
                     f"{s.dyn_tighter / n:>13,.0f}{s.static_tighter / n:>10,.0f}"
                     f"{_ratio(s.dyn_tighter, s.static_tighter):>8}"
                     f"{_ratio(s.dyn_looser + s.dyn_tighter, s.static_looser + s.static_tighter):>13}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ballast.diagnose", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", default=",".join([*sorted(s for s in CORPUS if s in REAL_REPLAYS and s not in TUNED),
                                                   GAP_SOURCE]),
                    help="comma-separated corpus sources (default: the corpus's held-out real replays and the gap "
                         "family)")
    ap.add_argument("--seeds", type=int, default=40, help="seeds 0..N-1 per source (default 40)")
    ap.add_argument("--lookback", type=int, default=24, help="blocks before each block (default 24)")
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None, help="write the sums here")
    a = ap.parse_args(argv)
    if a.seeds < 1:
        raise ValidationError("--seeds", a.seeds, "at least 1")
    cfg = load_config()
    rows: dict[str, Split] = {}
    for k, src in enumerate(s for s in a.sources.split(",") if s):
        print(f"[{k + 1}] {src}: {a.seeds} seeds ...", file=sys.stderr, flush=True)
        rows[src] = split_source(src, list(range(a.seeds)), cfg, a.accounts, a.lookback)
    print(table(rows, a.seeds, a.lookback))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"seeds": a.seeds, "lookback": a.lookback, "accounts": a.accounts,
                                      "sources": {s: v.__dict__ for s, v in rows.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
