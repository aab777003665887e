"""The stress report: PNG plots, an HTML page a risk team can hand around, and the table."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RUNS = ("dynamic", "static_calm", "static_conservative")
COLORS = {"dynamic": "#1f77b4", "static_calm": "#d62728", "static_conservative": "#7f7f7f"}


def _arr(xs: list[Any]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _hours(metrics: dict[str, Any], n: int) -> np.ndarray:
    hours: np.ndarray = np.arange(n) * metrics["block_sec"] / 3600.0
    return hours


def plot_all(metrics: dict[str, Any], out: Path) -> list[tuple[str, str]]:
    s = metrics["series"]
    n = len(s["dynamic"]["price"])
    t = _hours(metrics, n)
    crash_h = metrics["crash_block"] * metrics["block_sec"] / 3600.0
    figs: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, _arr(s["dynamic"]["price"]), color="black", lw=1, label="market price")
    ax.plot(t, _arr(s["dynamic"]["oracle_price"]), color="#2ca02c", lw=0.8, ls="--", label="oracle price (on chain)")
    ax.set_xlabel("hours since start")
    ax.set_ylabel("price (USD)")
    ax2 = ax.twinx()
    ax2.plot(t, 100 * _arr(s["dynamic"]["vol"]), color="#ff7f0e", lw=1, label="volatility feed")
    ax2.set_ylabel("annualized volatility (%)")
    ax.axvline(crash_h, color="red", alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left")
    ax.set_title("Price and volatility")
    fig.tight_layout()
    fig.savefig(out / "price_vol.png", dpi=110)
    plt.close(fig)
    figs.append(("price_vol.png", "Market and oracle price (USD) with the keeper's volatility feed (annualized %)."))

    fig, ax = plt.subplots(figsize=(10, 4))
    for k in RUNS:
        ax.plot(t, _arr(s[k]["max_lev_long"]), color=COLORS[k], lw=1.2, label=f"{k} long")
        if k == "dynamic":
            ax.plot(t, _arr(s[k]["max_lev_short"]), color=COLORS[k], lw=1, ls=":", label=f"{k} short")
    ax.axvline(crash_h, color="red", alpha=0.3)
    ax.set_xlabel("hours since start")
    ax.set_ylabel("max leverage (x)")
    ax.set_title("Allowed leverage per side")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "max_leverage.png", dpi=110)
    plt.close(fig)
    figs.append(("max_leverage.png", "Max leverage (1 / initial margin fraction, x) per side over time."))

    fig, ax = plt.subplots(figsize=(10, 4))
    w = 0.3
    for i, k in enumerate(RUNS):
        ax.bar(t + (i - 1) * w * metrics["block_sec"] / 3600.0, _arr(s[k]["liquidations"]),
               width=w * metrics["block_sec"] / 3600.0, color=COLORS[k], label=k)
    ax.set_xlabel("hours since start")
    ax.set_ylabel("liquidations per block (calls)")
    ax.set_title("Liquidations per block")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "liquidations.png", dpi=110)
    plt.close(fig)
    figs.append(("liquidations.png", "Successful liquidation calls per block."))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for k in RUNS:
        a1.plot(t, _arr(s[k]["insurance_usd"]) / 1e3, color=COLORS[k], label=k)
        a2.plot(t, _arr(s[k]["bad_debt_usd"]) / 1e3, color=COLORS[k], label=k)
    a1.set_title("Insurance fund")
    a1.set_ylabel("thousand USD")
    a2.set_title("Cumulative bad debt")
    a2.set_ylabel("thousand USD")
    for a in (a1, a2):
        a.set_xlabel("hours since start")
        a.legend()
    fig.tight_layout()
    fig.savefig(out / "insurance_bad_debt.png", dpi=110)
    plt.close(fig)
    figs.append(("insurance_bad_debt.png", "Insurance fund and cumulative bad debt (thousand USD)."))

    keys = [("bad_debt_usd", "bad debt (USD)"), ("liquidated_notional_usd", "liquidated notional (USD)"),
            ("liquidation_penalties_usd", "liquidation penalties paid (USD)"),
            ("peak_liquidations_per_block", "peak liquidations / block"), ("accounts_wiped_out", "accounts wiped out"),
            ("calm_mean_max_leverage", "calm-period max leverage (x)")]
    fig, axes = plt.subplots(1, len(keys), figsize=(14, 3.4))
    for ax, (k, label) in zip(axes, keys):
        vals = [metrics["runs"][r][k] for r in RUNS]
        ax.bar(range(3), vals, color=[COLORS[r] for r in RUNS])
        ax.set_xticks(range(3), ["dyn", "calm", "cons"])
        ax.set_title(label, fontsize=9)
    fig.suptitle("Dynamic vs static, same scenario and population")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=110)
    plt.close(fig)
    figs.append(("comparison.png", "Side-by-side comparison of the three runs."))
    return figs


def _cell(v: float | None) -> str:
    """A figure of the table: ``n/a`` where the run could not measure it (JSON null), never ``nan``."""
    return "n/a" if v is None or v != v else f"{v:,.2f}"


def write_report(metrics: dict[str, Any], out: Path) -> Path:
    """Write the PNGs and ``report.html`` into ``out``."""
    from ballast.stress import table

    figs = plot_all(metrics, out)
    v = metrics["verification"]
    sf = metrics["static_fractions"]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_cell(metrics['runs'][r][k])}</td>" for r in RUNS) + "</tr>"
        for k in metrics["runs"]["dynamic"])
    imgs = "".join(f"<figure><img src='{f}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}</figcaption></figure>"
                   for f, c in figs)
    viol = "".join(f"<li>run {html.escape(str(x['run']))}, block {x['block']}: {html.escape(x['check'])} "
                   f"{html.escape(x['account'])} {html.escape(x['detail'])}</li>" for x in metrics["violations"][:50])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Ballast stress report: {html.escape(metrics['scenario'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>Ballast crash stress report</h1>
<p><b>Scenario</b> {html.escape(metrics['scenario'])}: {html.escape(metrics['scenario_description'])}<br>
{metrics['blocks']} blocks of {metrics['block_sec']} s, max drawdown {metrics['max_drawdown']:.1%}; {metrics['accounts']} accounts,
seed {metrics['seed']}, oracle keeper <i>{html.escape(metrics['keeper_mode'])}</i>, anticipatory traders {metrics['anticipatory_share']:.0%}.</p>
<p><b>Baselines</b>: static_calm = the dynamic model's calm-period fractions (IMF {sf['static_calm']['imf']:.4f},
MMF {sf['static_calm']['mmf']:.4f}); static_conservative IMF {sf['static_conservative']['imf']:.4f}, MMF {sf['static_conservative']['mmf']:.4f}.</p>
<p><b>Verification</b>: {v['checks']:,} checks against the exact Python mirror, <b>{v['violations']} violations</b>.</p>
<h2>Side by side</h2><pre>{html.escape(table(metrics))}</pre>
<h2>Every figure</h2><table><tr><th>metric</th>{''.join(f'<th>{r}</th>' for r in RUNS)}</tr>{rows}</table>
<h2>Plots</h2>{imgs}
{'<h2>Violations</h2><ul>' + viol + '</ul>' if viol else ''}
<p>Units: USD amounts in US dollars of the 6-decimal mock stablecoin; leverage in x (1 / initial margin fraction);
liquidations in successful calls. metrics.json holds every figure and every per-block series.</p>
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
