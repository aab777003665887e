"""The leverage / harm frontier of a sweep (issue 11): HTML and PNG.

x: calm-period mean max leverage of a controller (mean over its runs); y: the protocol's harm, bad
debt (mean, 95th and 99th percentile, expected shortfall at 95%) and P(bad debt > insurance fund)
(the share of runs with socialized bad debt: debt the fund could not cover); on its own axis the
traders' harm: liquidation penalties paid, liquidated notional and peak liquidations per block.
Static caps are a curve, the dynamic model and the stress baselines are points (a keeper mode other
than ``trailing`` is a separate point, ``dynamic@predictive``). Means carry 95% bootstrap intervals.
Scenarios the shipped parameters were tuned on (``ballast.sweep.TUNED``) are shown apart from the
rest. Per family, a paired comparison on the same paths: the ratio of mean bad debt dynamic /
static_calm with a paired bootstrap interval and the share of paths where the dynamic run lost less
(a zero denominator is written out, never ``nan``). Rows with status ``no_trading`` (no order
settled: an error) are left out and counted; ``no_stress`` paths (a calm draw) stay in.

``python -m ballast.frontier SWEEP.sqlite [SWEEP.sqlite ...] --out DIR`` merges sweeps (a row of the
same scenario, seed, accounts and controller counted once) and writes ``frontier.html``,
``frontier.png`` and ``frontier.json``.

Issue 12's targets (:func:`targets`): for each dynamic controller against the static cap at its own
calm-period leverage (``dynamic`` / ``static_calm``, ``dynamic_fhs`` / ``static_calm_fhs``, ...), on
the sources it was not tuned or trained on (rows not ``tuned``), the ratio of mean bad debt per
source; the median of those ratios over the real replays (target <= 0.2), the ratio on gaps with no
precursor (``flash_crash`` sources, <= 0.5), and the median over the sources of the ratio of mean
liquidation penalties paid by traders (<= 1.25).
"""

from __future__ import annotations

import argparse
import html
import json
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ballast._typing import FloatArray  # noqa: E402
from ballast.scenarios import REAL_REPLAYS  # noqa: E402

TARGETS = {"median_real_crash": 0.2, "gap_no_precursor": 0.5, "penalties_median_source": 1.25}
"""Issue 12: bad debt / static's at equal calm-period leverage on the median real crash and on gaps
with no precursor; liquidation penalties paid by traders / static's on the median scenario."""
GAP_SOURCES = frozenset({"flash_crash", "draw:flash_crash"})
"""Sources that are a gap with no precursor."""


def _v(rows: Sequence[dict[str, Any]], k: str) -> FloatArray:
    return np.array([np.nan if r[k] is None else float(r[k]) for r in rows], dtype=np.float64)


def es(x: FloatArray, q: float = 0.95) -> float:
    """Expected shortfall: the mean of the worst ``1 - q`` share of outcomes."""
    if x.size == 0:
        return float("nan")
    s = np.sort(x)
    k = max(1, int(np.ceil((1 - q) * s.size)))
    return float(np.mean(s[-k:]))


def boot_ci(x: FloatArray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean (seeded)."""
    if x.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _is_cap(name: str) -> bool:
    return name.startswith("static_") and name.endswith("x") and name[7:-1].replace(".", "", 1).isdigit()


def equivalent_caps(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each controller that is not a cap: the static cap with the same mean bad debt, on the
    paths that carry the caps curve (``None`` if outside the curve's range), and the curve's bad
    debt at the controller's own calm-period leverage; both by linear interpolation between
    neighbouring caps. Compares a dynamic point with the curve on the same paths."""
    paths = {(r["scenario"], r["seed"]) for r in rows if _is_cap(r["controller"])}
    if not paths:
        return {}
    sub = [r for r in rows if (r["scenario"], r["seed"]) in paths]
    summ = summarize(sub)
    caps = sorted((s for s in summ if _is_cap(s["controller"])), key=lambda s: s["calm_lev"])
    xs = np.array([s["calm_lev"] for s in caps])
    ys = np.array([s["bad_mean"] for s in caps])
    out: dict[str, dict[str, Any]] = {}
    for s in summ:
        if _is_cap(s["controller"]):
            continue
        eq = None
        for k in range(len(caps) - 1):
            if ys[k] <= s["bad_mean"] <= ys[k + 1] and ys[k + 1] > ys[k]:
                eq = float(xs[k] + (s["bad_mean"] - ys[k]) / (ys[k + 1] - ys[k]) * (xs[k + 1] - xs[k]))
                break
        at = float(np.interp(s["calm_lev"], xs, ys)) if xs[0] <= s["calm_lev"] <= xs[-1] else None
        out[s["controller"]] = {"paths": len({(r["scenario"], r["seed"]) for r in sub if r["controller"] == s["controller"]}),
                                "calm_lev": s["calm_lev"], "bad_mean": s["bad_mean"], "equivalent_cap": eq,
                                "cap_curve_bad_mean_at_calm_lev": at}
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per controller: leverage, bad debt statistics, traders' harm."""
    out = []
    for c in sorted({r["controller"] for r in rows}):
        rs = [r for r in rows if r["controller"] == c]
        bad = _v(rs, "bad_debt_usd")
        soc = _v(rs, "bad_debt_socialized_usd")
        lo, hi = boot_ci(bad)
        out.append({"controller": c, "runs": len(rs), "calm_lev": float(np.nanmean(_v(rs, "calm_mean_max_leverage"))),
                    "bad_mean": float(bad.mean()), "bad_ci_lo": lo, "bad_ci_hi": hi,
                    "bad_p95": float(np.percentile(bad, 95)), "bad_p99": float(np.percentile(bad, 99)),
                    "bad_es95": es(bad), "p_over_fund": float(np.mean(soc > 0)),
                    "penalties": float(np.mean(_v(rs, "liquidation_penalties_usd"))),
                    "liq_notional": float(np.mean(_v(rs, "liquidated_notional_usd"))),
                    "peak_liq": float(np.mean(_v(rs, "peak_liquidations_per_block"))),
                    "wiped": float(np.mean(_v(rs, "accounts_wiped_out")))})
    return out


ERRORS = frozenset({"no_trading", "flat_vol_feed"})
"""Row statuses the frontier leaves out (and counts): see ``ballast.sweep._status``."""


def load_rows(dbs: Sequence[Path]) -> list[dict[str, Any]]:
    """The rows of one or more sweep files, a controller run under a keeper mode other than
    ``trailing`` or with model parameters set (``ballast sweep --set``) labelled ``NAME@predictive``,
    ``NAME@regime_sens=0`` or ``NAME@predictive+regime_sens=0`` (``depth_predictive``: ``ballast sweep
    --depth-mode predictive``; ``+tail=file``: the calibrated
    controllers with the calibration file's tail estimator, ``ballast sweep --tail-spec file``); duplicates (scenario, seed, accounts, controller) once."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for db in dbs:
        if not Path(db).is_file():
            raise FileNotFoundError(f"sweep file {db} not found")
        con = sqlite3.connect(str(db))
        specs = {t: json.loads(sp) for t, sp in con.execute("SELECT task_id, spec FROM tasks")}
        modes = {t: "+".join(x for x in (sp.get("keeper_mode", "trailing") if sp.get("keeper_mode", "trailing") != "trailing"
                                          else "",
                                          "depth_predictive" if sp.get("depth_mode", "trailing") == "predictive" else "",
                                          ",".join(f"{k}={v:g}" for k, v in sp.get("model_set", ())),
                                          f"tail={sp['tail_spec']}" if sp.get("tail_spec", "plain") != "plain" else "")
                                 if x)
                 for t, sp in specs.items()}
        cur = con.execute("SELECT * FROM runs")
        names = [d[0] for d in cur.description]
        for rec in cur:
            r = dict(zip(names, rec))
            r.setdefault("status", "ok")
            r.setdefault("family", r["scenario"])
            mode = modes.get(r["task_id"], "")
            if mode:
                r["controller"] = f"{r['controller']}@{mode}"
            out.setdefault((r["scenario"], r["seed"], r["accounts"], r["controller"]), r)
        con.close()
    return list(out.values())


def paired(rows: Sequence[dict[str, Any]], a: str = "dynamic", b: str = "static_calm", n: int = 1000,
           seed: int = 0) -> dict[str, Any]:
    """Controller ``a`` against ``b`` on the same (scenario, seed) paths: ratio of mean bad debt with
    a paired 95% bootstrap interval, share of paths where ``a`` lost less / more, the paths."""
    by: dict[tuple[Any, Any], dict[str, float]] = {}
    for r in rows:
        if r["controller"] in (a, b) and r["bad_debt_usd"] is not None:
            by.setdefault((r["scenario"], r["seed"]), {})[r["controller"]] = float(r["bad_debt_usd"])
    both = [v for v in by.values() if a in v and b in v]
    if not both:
        return {"paths": 0, "text": f"n/a: no path with both {a} and {b}"}
    x = np.array([v[a] for v in both])
    y = np.array([v[b] for v in both])
    res: dict[str, Any] = {"paths": len(both), "a_less": float(np.mean(x < y)), "a_more": float(np.mean(x > y)),
                           "mean_a": float(x.mean()), "mean_b": float(y.mean())}
    if y.sum() <= 0:
        res.update(ratio=None, ci=None, text=f"n/a: {b} had no bad debt on these {len(both)} paths "
                                             f"({a} mean {x.mean():,.0f} USD)")
        return res
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(both), size=(n, len(both)))
    sb = y[idx].sum(axis=1)
    ratios = x[idx].sum(axis=1) / np.where(sb > 0, sb, np.nan)
    lo, hi = np.nanpercentile(ratios, [2.5, 97.5])
    res.update(ratio=float(x.sum() / y.sum()), ci=(float(lo), float(hi)),
               text=f"{x.sum() / y.sum():.2f} [{lo:.2f}, {hi:.2f}]")
    return res


def _plot(ax_bad: Any, ax_harm: Any, summ: list[dict[str, Any]], title: str) -> None:
    caps = sorted((s for s in summ if _is_cap(s["controller"])), key=lambda s: s["calm_lev"])
    # points: the dynamic variants and the stress baselines (caps under another keeper mode: tables only)
    # (a static 10x run under another keeper mode differs: the depth feed follows the volatility feed)
    pts = [s for s in summ if s not in caps and not (s["controller"].startswith("static_") and "x@" in s["controller"])]
    palette = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff9896"]
    x = [s["calm_lev"] for s in caps]
    for key, style, label in (("bad_mean", "-o", "mean"), ("bad_p95", "--s", "p95"), ("bad_p99", ":^", "p99"),
                              ("bad_es95", "-.d", "ES 95%")):
        ax_bad.plot(x, [s[key] for s in caps], style, color="#7f7f7f", ms=4, label=f"static caps: {label}")
    colors = {"dynamic": "#1f77b4", "static_calm": "#d62728", "static_conservative": "#2ca02c"}
    for s in pts:  # calibrated controllers (dynamic_fhs...): a colour each, shared with its static_calm
        name = s["controller"]
        if name.startswith(("dynamic_", "static_calm_")) and "@" not in name:
            suffix = name.split("_", 2)[-1] if name.startswith("static_calm_") else name.split("_", 1)[1]
            colors[name] = {"fhs": "#ff7f0e", "fhs_gap": "#17becf"}.get(suffix, "#bcbd22")
    for s in pts:  # variants: a colour per variant, the dynamic point and its static_calm alike
        v = s["controller"].split("@", 1)[1] if "@" in s["controller"] else ""
        if v and s["controller"] not in colors:
            k = sorted({p["controller"].split("@", 1)[1] for p in pts if "@" in p["controller"]}).index(v)
            colors[s["controller"]] = palette[k % len(palette)]
    for s in pts:
        col = colors.get(s["controller"], "#9467bd")
        ax_bad.errorbar([s["calm_lev"]], [s["bad_mean"]], yerr=[[s["bad_mean"] - s["bad_ci_lo"]],
                                                                  [s["bad_ci_hi"] - s["bad_mean"]]],
                        fmt="D" if s["controller"].startswith("static") else "o", color=col, ms=8, capsize=3,
                        label=f"{s['controller']}: mean (95% CI)")
        ax_bad.plot([s["calm_lev"]] * 3, [s["bad_p95"], s["bad_p99"], s["bad_es95"]], "x", color=col, ms=7)
    ax_bad.set_xlabel("calm-period mean max leverage (x)")
    ax_bad.set_yscale("symlog", linthresh=1_000.0)
    ax_bad.set_ylim(bottom=0.0)
    ax_bad.set_ylabel("bad debt per run (USD; log above 1,000)")
    ax_bad.set_title(f"{title}: protocol harm")
    ax_bad.legend(fontsize=7)
    ax2 = ax_bad.twinx()
    ax2.plot(x, [s["p_over_fund"] for s in caps], color="#ff7f0e", lw=1, alpha=0.7)
    for s in pts:
        ax2.plot([s["calm_lev"]], [s["p_over_fund"]], "*", color=colors.get(s["controller"], "#9467bd"), ms=10)
    ax2.set_ylabel("P(bad debt > insurance fund)", color="#ff7f0e")
    ax2.set_ylim(-0.02, 1.02)
    for key, style, label in (("penalties", "-o", "liquidation penalties (USD)"),
                              ("liq_notional", "--s", "liquidated notional / 100 (USD)")):
        scale = 0.01 if key == "liq_notional" else 1.0
        ax_harm.plot(x, [s[key] * scale for s in caps], style, color="#7f7f7f", ms=4, label=f"static caps: {label}")
        for s in pts:
            ax_harm.plot([s["calm_lev"]], [s[key] * scale], "o" if key == "penalties" else "s",
                         color=colors.get(s["controller"], "#9467bd"), ms=8)
    ax3 = ax_harm.twinx()
    ax3.plot(x, [s["peak_liq"] for s in caps], ":", color="#8c564b", label="peak liquidations / block")
    for s in pts:
        ax3.plot([s["calm_lev"]], [s["peak_liq"]], "^", color=colors.get(s["controller"], "#9467bd"), ms=8)
    ax3.set_ylabel("peak liquidations per block", color="#8c564b")
    ax_harm.set_xlabel("calm-period mean max leverage (x)")
    ax_harm.set_yscale("symlog", linthresh=1_000.0)
    ax_harm.set_ylim(bottom=0.0)
    ax_harm.set_ylabel("USD per run (mean; log above 1,000)")
    ax_harm.set_title(f"{title}: traders' harm (points: dynamic, static_calm, static_conservative)")
    ax_harm.legend(fontsize=7, loc="upper left")


def _table(summ: list[dict[str, Any]]) -> str:
    head = ("controller", "runs", "calm lev (x)", "bad debt mean [95% CI]", "p95", "p99", "ES95", "P(> fund)",
            "penalties", "liq. notional", "peak liq/block", "wiped")
    rows = "".join(
        f"<tr><td>{html.escape(s['controller'])}</td><td>{s['runs']}</td><td>{s['calm_lev']:.1f}</td>"
        f"<td>{s['bad_mean']:,.0f} [{s['bad_ci_lo']:,.0f}, {s['bad_ci_hi']:,.0f}]</td><td>{s['bad_p95']:,.0f}</td>"
        f"<td>{s['bad_p99']:,.0f}</td><td>{s['bad_es95']:,.0f}</td><td>{s['p_over_fund']:.2f}</td>"
        f"<td>{s['penalties']:,.0f}</td><td>{s['liq_notional']:,.0f}</td><td>{s['peak_liq']:.1f}</td>"
        f"<td>{s['wiped']:.1f}</td></tr>" for s in sorted(summ, key=lambda s: s["calm_lev"]))
    return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>"


def write_frontier(rows: Sequence[dict[str, Any]], out: Path) -> Path:
    """``frontier.png`` (untuned and tuned scenarios apart) and ``frontier.html`` with the tables
    overall and per scenario family."""
    out.mkdir(parents=True, exist_ok=True)
    bad_rows = [r for r in rows if r.get("status") in ERRORS]
    rows = [r for r in rows if r.get("status") not in ERRORS]
    if not rows:
        raise ValueError(f"no usable sweep row ({len(bad_rows)} rows with status {sorted(ERRORS)})")
    calm_paths = {(r["scenario"], r["seed"]) for r in rows if r.get("status") == "no_stress"}
    groups = [("untuned scenarios", [r for r in rows if not r["tuned"]]),
              ("tuned-on scenarios", [r for r in rows if r["tuned"]])]
    groups = [(t, g) for t, g in groups if g]
    fig, axes = plt.subplots(len(groups), 2, figsize=(15, 5 * len(groups)), squeeze=False)
    for (title, g), (a, b) in zip(groups, axes):
        _plot(a, b, summarize(g), title)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=100)
    plt.close(fig)
    fams = sorted({r["scenario"] for r in rows})
    fam_rows = {f: [r for r in rows if r["scenario"] == f] for f in fams}
    report: dict[str, Any] = {
        "runs": len(rows), "paths": len({(r["scenario"], r["seed"]) for r in rows}),
        "excluded_rows": {st: sum(1 for r in bad_rows if r.get("status") == st) for st in sorted(ERRORS)},
        "excluded_by_controller": {c: sum(1 for r in bad_rows if r["controller"] == c)
                                   for c in sorted({r["controller"] for r in bad_rows})},
        "no_stress_paths": len(calm_paths),
        "groups": {t: {"summary": summarize(g), "paired": _paired_all(g), "against_caps": equivalent_caps(g)}
                   for t, g in groups},
        "families": {f: {"tuned": any(r["tuned"] for r in g), "summary": summarize(g), "paired": _paired_all(g)}
                     for f, g in fam_rows.items()},
        "targets": targets(rows)}
    (out / "frontier.json").write_text(json.dumps(_finite(report), indent=1, allow_nan=False))
    per = "".join(f"<h3>{html.escape(f)}{' (tuned on)' if report['families'][f]['tuned'] else ''}</h3>"
                  f"{_paired_html(report['families'][f]['paired'])}{_table(summarize(g))}" for f, g in fam_rows.items())
    sections = "".join(f"<h2>{html.escape(t)} ({len(g)} runs)</h2>{_paired_html(report['groups'][t]['paired'])}"
                       f"{_caps_html(report['groups'][t]['against_caps'])}"
                       f"{_table(summarize(g))}" for t, g in groups)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Ballast frontier</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}</style>
</head><body><h1>Leverage vs harm frontier</h1>
<p>{len(rows):,} simulator runs (ballast.marketsim), {len({(r['scenario'], r['seed']) for r in rows}):,} (scenario, seed)
paths. x: calm-period mean max leverage (x); protocol harm: bad debt per run (USD; mean with 95% bootstrap CI, 95th and
99th percentile, expected shortfall at 95%) and P(bad debt > insurance fund) (share of runs whose bad debt the fund
could not cover); traders' harm: liquidation penalties paid, liquidated notional (USD) and peak liquidations per block.
Static caps 3x..50x (maintenance = half the initial margin) form the grey curve; the dynamic model, static_calm (the
dynamic run's calm-period leverage) and static_conservative are points. Scenarios the shipped parameters were tuned on
are shown apart. Left out: {len(bad_rows)} rows with an error status (no order settled, or a volatility feed that never
moved: {html.escape(json.dumps(report["excluded_rows"]))}; by controller {html.escape(json.dumps(report["excluded_by_controller"]))});
kept: {len(calm_paths)} paths on which no stress controller liquidated anyone or had bad debt (calm draws).</p>
<img src="frontier.png" alt="frontier">{_targets_html(report["targets"])}{sections}<h2>Per scenario family</h2>{per}
</body></html>"""
    path = out / "frontier.html"
    path.write_text(page)
    return path


def _paired_all(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ctl = {r["controller"] for r in rows}
    out = {"dynamic vs static_calm": paired(rows, "dynamic", "static_calm"),
           "dynamic vs static_conservative": paired(rows, "dynamic", "static_conservative")}
    for c in sorted(x for x in ctl if x.startswith("dynamic@")):
        mode = c.split("@", 1)[1]
        out[f"{c} vs static_calm@{mode}"] = paired(rows, c, f"static_calm@{mode}")
        out[f"{c} vs dynamic"] = paired(rows, c, "dynamic")
    for c in sorted(x for x in ctl if x.startswith("dynamic_")):  # calibrated controllers (ballast sweep --calibrated)
        out[f"{c} vs {baseline_of(c)}"] = paired(rows, c, baseline_of(c))
        plain = "dynamic" + ("@" + c.split("@", 1)[1] if "@" in c else "")
        out[f"{c} vs {plain}"] = paired(rows, c, plain)
    return out


def baseline_of(controller: str) -> str:
    """The static cap at a dynamic controller's own calm-period leverage: ``dynamic_fhs@predictive``
    -> ``static_calm_fhs@predictive``."""
    return "static_calm" + controller[len("dynamic"):]


def _is_dynamic(name: str) -> bool:
    return name == "dynamic" or name.startswith(("dynamic_", "dynamic@"))


def _ratio_of_means(rows: Sequence[dict[str, Any]], a: str, b: str, key: str) -> float | None:
    """mean(a) / mean(b) of ``key`` on the paths with both (None: no path, or b's mean is 0)."""
    by: dict[tuple[Any, Any], dict[str, float]] = {}
    for r in rows:
        if r["controller"] in (a, b) and r[key] is not None:
            by.setdefault((r["scenario"], r["seed"]), {})[r["controller"]] = float(r[key])
    both = [v for v in by.values() if a in v and b in v]
    if not both:
        return None
    den = float(np.mean([v[b] for v in both]))
    return float(np.mean([v[a] for v in both])) / den if den > 0 else None


def _median(xs: Sequence[float | None]) -> float | None:
    ok = [x for x in xs if x is not None]
    return float(np.median(ok)) if ok else None


def targets(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue 12's targets (``TARGETS``) for every dynamic controller that has its static_calm, on
    the sources it was not tuned or trained on: per source the ratio of mean bad debt (paired, 95%
    interval) and of mean liquidation penalties, against its ``baseline_of``; then the median bad-debt
    ratio over the real replays (``ballast.scenarios.REAL_REPLAYS``), the ratio on ``GAP_SOURCES``
    (all their paths together), the median penalties ratio over all sources, each with its verdict
    (``met``, ``not met``, or ``n/a`` when undefined: a static with no bad debt, no such source)."""
    ctl = {r["controller"] for r in rows}
    out: dict[str, Any] = {}
    for c in sorted(x for x in ctl if _is_dynamic(x) and baseline_of(x) in ctl):
        b = baseline_of(c)
        held = [r for r in rows if not r["tuned"] and r["controller"] in (c, b)]
        per: dict[str, Any] = {}
        for src in sorted({r["scenario"] for r in held}):
            rs = [r for r in held if r["scenario"] == src]
            pb = paired(rs, c, b)
            if not pb["paths"]:
                continue
            caps = equivalent_caps([r for r in rows if r["scenario"] == src and not r["tuned"]
                                    and (r["controller"] == c or _is_cap(r["controller"]))]).get(c)
            at = caps["cap_curve_bad_mean_at_calm_lev"] if caps else None
            per[src] = {"paths": pb["paths"], "bad_ratio": pb.get("ratio"), "bad_ci": pb.get("ci"),
                        "caps_paths": caps["paths"] if caps else 0,
                        "caps_ratio": caps["bad_mean"] / at if caps and at else None,
                        "bad_text": pb["text"], "penalties_ratio": _ratio_of_means(rs, c, b, "liquidation_penalties_usd"),
                        "calm_lev": float(np.nanmean(_v([r for r in rs if r["controller"] == c], "calm_mean_max_leverage"))),
                        "real": src in REAL_REPLAYS, "gap": src in GAP_SOURCES}
        real = {k: v["bad_ratio"] for k, v in per.items() if v["real"]}
        gap_rows = [r for r in held if r["scenario"] in GAP_SOURCES]
        gp: dict[str, Any] = paired(gap_rows, c, b) if gap_rows else {"paths": 0, "text": "n/a: no gap source held out"}
        figures: dict[str, float | None] = {
                   "median_real_crash": _median(list(real.values())), "gap_no_precursor": gp.get("ratio"),
                   "penalties_median_source": _median([v["penalties_ratio"] for v in per.values()])}
        # the same bad-debt figures against the static caps curve (maintenance half the initial
        # margin) at the controller's calm-period leverage, on the paths that carry the caps
        vs_caps = {"median_real_crash": _median([v["caps_ratio"] for v in per.values() if v["real"]]),
                   "gap_no_precursor": _median([v["caps_ratio"] for v in per.values() if v["gap"]])}
        out[c] = {"baseline": b, "sources": per, "real_sources": sorted(real),
                  "real_undefined": sorted(k for k, v in real.items() if v is None),
                  "gap_paths": gp["paths"], "gap_text": gp["text"],
                  "overall": paired(held, c, b)["text"] if held else "n/a",
                  "figures": figures,
                  "against_caps_curve": vs_caps,
                  "verdicts": {k: ("n/a" if v is None else "met" if v <= TARGETS[k] else "not met")
                               for k, v in figures.items()}}
    return out


def compare_by_source(rows: Sequence[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Controller ``a`` against ``b`` per source and over the held-out paths (rows not ``tuned``), on
    the same (scenario, seed) paths: the paired ratio of mean bad debt (95% bootstrap interval), the
    ratio of mean liquidation penalties, each controller's mean calm-period leverage
    (``python -m ballast.frontier ... --compare A,B``: a keeper variant against another). Rows with
    an error status (``ERRORS``) are left out, as in the frontier."""
    def one(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        pb = paired(rs, a, b)
        lev = {c: float(np.nanmean(_v([r for r in rs if r["controller"] == c], "calm_mean_max_leverage")))
               if any(r["controller"] == c for r in rs) else None for c in (a, b)}
        return {"paths": pb["paths"], "bad_ratio": pb.get("ratio"), "bad_ci": pb.get("ci"), "bad_text": pb["text"],
                "mean_a": pb.get("mean_a"), "mean_b": pb.get("mean_b"), "a_less": pb.get("a_less"),
                "a_more": pb.get("a_more"),
                "penalties_ratio": _ratio_of_means(rs, a, b, "liquidation_penalties_usd"),
                "calm_lev_a": lev[a], "calm_lev_b": lev[b], "tuned": bool(rs and rs[0]["tuned"])}
    mine = [r for r in rows if r["controller"] in (a, b) and r["status"] not in ERRORS]
    per = {src: one([r for r in mine if r["scenario"] == src]) for src in sorted({r["scenario"] for r in mine})}
    return {"a": a, "b": b, "sources": {k: v for k, v in per.items() if v["paths"]},
            "held_out": one([r for r in mine if not r["tuned"]])}


def compare_text(c: dict[str, Any]) -> str:
    """``compare_by_source`` as a Markdown table."""
    head = (f"| source | paths | {c['a']} / {c['b']} mean bad debt [paired 95% CI] | {c['a']} lower / higher on | "
            f"penalties ratio | calm-period leverage {c['a']} / {c['b']} (x) |")
    lines = [head, "| --- | ---: | --- | ---: | ---: | ---: |"]

    def f(x: float | None, fmt: str = "{:.2f}") -> str:
        return "n/a" if x is None else fmt.format(x)
    for name, v in list(c["sources"].items()) + [("all held-out paths", c["held_out"])]:
        lab = f"{name} (tuned on)" if v["tuned"] and name in c["sources"] else name
        lines.append(f"| {lab} | {v['paths']:,} | {v['bad_text']} | {f(v['a_less'], '{:.0%}')} / "
                     f"{f(v['a_more'], '{:.0%}')} | {f(v['penalties_ratio'])} | {f(v['calm_lev_a'], '{:.1f}')} / "
                     f"{f(v['calm_lev_b'], '{:.1f}')} |")
    return "\n".join(lines)


def _targets_html(t: dict[str, Any]) -> str:
    if not t:
        return ""
    head = ("controller", "against", "median real crash (target <= 0.2)", "gap, no precursor (<= 0.5)",
            "penalties, median source (<= 1.25)", "real sources held out", "all held-out paths")

    def cell(v: Any, k: str) -> str:
        x = v["figures"][k]
        return f"{'n/a' if x is None else f'{x:.2f}'} ({v['verdicts'][k]})"
    rows = "".join(f"<tr><td>{html.escape(c)}</td><td>{html.escape(v['baseline'])}</td>"
                   f"<td>{cell(v, 'median_real_crash')}</td><td>{cell(v, 'gap_no_precursor')}</td>"
                   f"<td>{cell(v, 'penalties_median_source')}</td><td>{html.escape(', '.join(v['real_sources']))}</td>"
                   f"<td>{html.escape(v['overall'])}</td></tr>" for c, v in t.items())
    srcs = sorted({s for v in t.values() for s in v["sources"]})
    per = "".join(
        f"<tr><td>{html.escape(s)}</td>" + "".join(
            (f"<td>{html.escape(v['sources'][s]['bad_text'])}; penalties "
             + (f"{v['sources'][s]['penalties_ratio']:.2f}" if v['sources'][s]['penalties_ratio'] is not None else "n/a")
             + f"; {v['sources'][s]['calm_lev']:.1f}x</td>") if s in v["sources"] else "<td>(tuned or trained on)</td>"
            for v in t.values()) + "</tr>" for s in srcs)
    return (f"<h2>Issue 12 targets, held-out sources</h2><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>"
            f"{rows}</table><p>Per source: bad debt ratio of means [paired 95% CI]; penalties ratio of means; "
            f"calm-period leverage of the dynamic controller.</p><table><tr><th>source</th>"
            + "".join(f"<th>{html.escape(c)} / {html.escape(v['baseline'])}</th>" for c, v in t.items())
            + f"</tr>{per}</table>")


def _caps_html(c: dict[str, Any]) -> str:
    if not c:
        return ""
    items = "".join(
        f"<li>{html.escape(k)} ({v['paths']:,} paths with the caps curve): mean bad debt {v['bad_mean']:,.0f} USD at "
        f"{v['calm_lev']:.1f}x calm-period leverage; the caps curve there: "
        + (f"{v['cap_curve_bad_mean_at_calm_lev']:,.0f} USD" if v["cap_curve_bad_mean_at_calm_lev"] is not None else "n/a")
        + "; the static cap with the same mean bad debt: "
        + (f"{v['equivalent_cap']:.1f}x" if v["equivalent_cap"] is not None else "n/a (outside the curve)") + "</li>"
        for k, v in c.items())
    return f"<ul>{items}</ul>"


def _paired_html(p: dict[str, Any]) -> str:
    items = "".join(f"<li>{html.escape(k)}: bad debt ratio of means {html.escape(v['text'])}"
                    + (f"; lower on {v['a_less']:.0%} and higher on {v['a_more']:.0%} of {v['paths']:,} paths"
                       if v.get("paths") else "") + "</li>" for k, v in p.items())
    return f"<ul>{items}</ul>"


def _finite(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ballast.frontier", description="the leverage / harm frontier of "
                                 "one or more sweeps (HTML, PNG, JSON)")
    ap.add_argument("sweeps", nargs="+", help="sweep.sqlite files (merged; a duplicate row counted once)")
    ap.add_argument("--out", default="out/frontier")
    ap.add_argument("--compare", action="append", default=[], metavar="A,B",
                    help="also print controller A against B per source (paired bad debt, penalties, calm-period "
                         "leverage; e.g. dynamic@depth_predictive,dynamic) and write it to compare.json; repeatable")
    a = ap.parse_args(list(argv) if argv is not None else None)
    rows = load_rows([Path(x) for x in a.sweeps])
    page = write_frontier(rows, Path(a.out))
    print(f"frontier of {len(rows):,} rows: {page}")
    comps = []
    for pair in a.compare:
        x, _, y = pair.partition(",")
        comps.append(compare_by_source(rows, x.strip(), y.strip()))
        print(f"\n{compare_text(comps[-1])}")
    if comps:
        (Path(a.out) / "compare.json").write_text(json.dumps(_finite(comps), indent=1))
    for c, v in json.loads((Path(a.out) / "frontier.json").read_text())["targets"].items():
        f, vd = v["figures"], v["verdicts"]
        txt = ", ".join(f"{k} {'n/a' if f[k] is None else format(f[k], '.2f')} ({vd[k]})" for k in TARGETS)
        print(f"targets, {c} vs {v['baseline']} (held out; real: {', '.join(v['real_sources']) or 'none'}): {txt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
