"""The leverage / harm frontier of a sweep (issue 11): HTML and PNG.

x: calm-period mean max leverage of a controller (mean over its runs); y: the protocol's harm, bad
debt (mean, 95th and 99th percentile, expected shortfall at 95%) and P(bad debt > insurance fund)
(the share of runs with socialized bad debt: debt the fund could not cover); on its own axis the
traders' harm: liquidation penalties paid, liquidated notional and peak liquidations per block.
Static caps are a curve, the dynamic model and the stress baselines are points. Means carry 95%
bootstrap intervals. Scenarios the shipped parameters were tuned on (``ballast.sweep.TUNED``) are
shown apart from the rest.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ballast._typing import FloatArray  # noqa: E402


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


def _plot(ax_bad: Any, ax_harm: Any, summ: list[dict[str, Any]], title: str) -> None:
    caps = sorted((s for s in summ if s["controller"].startswith("static_") and s["controller"].endswith("x")),
                  key=lambda s: s["calm_lev"])
    pts = [s for s in summ if s not in caps]
    x = [s["calm_lev"] for s in caps]
    for key, style, label in (("bad_mean", "-o", "mean"), ("bad_p95", "--s", "p95"), ("bad_p99", ":^", "p99"),
                              ("bad_es95", "-.d", "ES 95%")):
        ax_bad.plot(x, [s[key] for s in caps], style, color="#7f7f7f", ms=4, label=f"static caps: {label}")
    colors = {"dynamic": "#1f77b4", "static_calm": "#d62728", "static_conservative": "#2ca02c"}
    for s in pts:
        col = colors.get(s["controller"], "#9467bd")
        ax_bad.errorbar([s["calm_lev"]], [s["bad_mean"]], yerr=[[s["bad_mean"] - s["bad_ci_lo"]],
                                                                  [s["bad_ci_hi"] - s["bad_mean"]]],
                        fmt="o", color=col, ms=8, capsize=3, label=f"{s['controller']}: mean (95% CI)")
        ax_bad.plot([s["calm_lev"]] * 3, [s["bad_p95"], s["bad_p99"], s["bad_es95"]], "x", color=col, ms=7)
    ax_bad.set_xlabel("calm-period mean max leverage (x)")
    ax_bad.set_ylabel("bad debt per run (USD)")
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
    ax_harm.set_ylabel("USD per run (mean)")
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
    per = "".join(f"<h3>{html.escape(f)}{' (tuned on)' if any(r['tuned'] for r in rows if r['scenario'] == f) else ''}"
                  f"</h3>{_table(summarize([r for r in rows if r['scenario'] == f]))}" for f in fams)
    sections = "".join(f"<h2>{html.escape(t)} ({len(g)} runs)</h2>{_table(summarize(g))}" for t, g in groups)
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
are shown apart.</p><img src="frontier.png" alt="frontier">{sections}<h2>Per scenario family</h2>{per}</body></html>"""
    path = out / "frontier.html"
    path.write_text(page)
    return path
