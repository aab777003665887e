"""``ballast`` command line (also ``python -m ballast``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ballast.errors import BallastError, ValidationError


def _stress_args(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--scenario", default="btc_2021_12_04", help="built-in scenario name or a .toml scenario file")
    p.add_argument("--accounts", type=int, default=300, help="trader accounts (1..5000)")
    p.add_argument("--seed", type=int, default=42, help="seed of the scenario noise and the population")
    p.add_argument("--out", default=default_out, help="output folder (report.html, PNGs, metrics.json)")
    p.add_argument("--keeper", choices=["trailing", "predictive", "intraday"], default="trailing",
                   help="volatility feed mode (ballast.keeper.VOL_MODES)")
    p.add_argument("--depth-mode", choices=["trailing", "predictive"], default="trailing",
                   help="depth feed mode: predictive projects the book's trend one liquidation horizon ahead "
                        "(never above trailing)")
    p.add_argument("--anticipatory", type=float, default=0.0, help="share of traders who cut leverage as vol rises")
    p.add_argument("--liquidators", type=int, default=None,
                   help="liquidator keepers, 25 calls per block each (default: accounts/100, between 3 and 50)")
    p.add_argument("--liquidator-latency", type=int, default=1, help="blocks")
    p.add_argument("--workers", type=int, default=2, help="runs in parallel (1..3)")
    p.add_argument("--fork-url", default=None, help="run against a fork of this RPC instead of an empty chain")
    p.add_argument("--config", default=None, help="market configuration TOML (default config/markets.toml)")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--chain-salt", type=int, default=0, metavar="BLOCKS",
                   help="empty blocks mined before deploying: another draw of the ramp's random activation, "
                        "same population and path")
    p.add_argument("--rpc-drop-rate", type=float, default=0.0, help="fault injection: share of RPC requests lost")
    p.add_argument("--keeper-down", default=None, metavar="START:BLOCKS",
                   help="fault injection: the oracle keeper dies at block START and restarts BLOCKS later")
    p.add_argument("--allow-no-stress", action="store_true",
                   help="accept a calm run (no liquidation, no bad debt in any run) instead of an error")
    p.add_argument("--from-sweep", nargs=2, metavar=("FILE", "ROWID"), default=None,
                   help="re-run one stored sweep row (ballast sweep's sweep.sqlite) on Anvil and print the lab and "
                        "the simulator side by side")


def _stress(a: argparse.Namespace) -> int:
    from ballast.scenarios import list_scenarios
    from ballast.stress import StressOptions, stress

    if a.list:
        for name, doc in list_scenarios():
            print(f"{name:20} {doc}")
        return 0
    if a.from_sweep:
        from ballast.stress import from_sweep

        try:
            rowid = int(a.from_sweep[1])
        except ValueError as e:
            raise ValidationError("--from-sweep ROWID", a.from_sweep[1], "an integer row id") from e
        from_sweep(Path(a.from_sweep[0]), rowid, out=Path(a.out), fork_url=a.fork_url)
        return 0
    down = None
    if a.keeper_down:
        try:
            start, n = (int(x) for x in a.keeper_down.split(":"))
        except ValueError as e:
            raise ValidationError("--keeper-down", a.keeper_down, "START:BLOCKS, two integers") from e
        down = (start, n)
    stress(StressOptions(scenario=a.scenario, rpc_drop_rate=a.rpc_drop_rate, keeper_down=down, accounts=a.accounts, seed=a.seed, out=Path(a.out),
                         keeper_mode=a.keeper, depth_mode=a.depth_mode, anticipatory_share=a.anticipatory, liquidators=a.liquidators,
                         liquidator_latency=a.liquidator_latency, workers=a.workers, fork_url=a.fork_url,
                         config=Path(a.config) if a.config else None, chain_salt=a.chain_salt,
                         allow_no_stress=a.allow_no_stress))
    return 0


def _params(a: argparse.Namespace) -> int:
    from ballast.chain import Anvil, Chain
    from ballast.config import load_config
    from ballast.deploy import deploy, market_table

    cfg = load_config(a.config) if a.config else load_config()
    with Anvil() as node:
        dep = deploy(Chain(node.url), cfg)
        rows = market_table(dep)
    print(f"{'market':8}{'price USD':>12}{'vol %':>8}{'max lev long':>14}{'max lev short':>15}{'IMF long':>10}{'MMF long':>10}")
    for r in rows:
        print(f"{r['market']:8}{r['price_usd']:>12,.0f}{100 * r['volatility']:>8.1f}{r['max_leverage_long']:>13.1f}x"
              f"{r['max_leverage_short']:>14.1f}x{r['imf_long']:>10.4f}{r['mmf_long']:>10.4f}")
    if a.json:
        print(json.dumps(rows, indent=1))
    return 0


def _convention_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gaps", choices=["skip", "keep"], default=None,
                   help="windows spanning a gap in the timestamps: skip them (missing bars) or keep them "
                        "(consecutive rows are consecutive trading periods). Default: the data set's convention "
                        "(skip for BTC and CSV files, keep for sp500/nasdaq)")
    p.add_argument("--periods-per-year", type=float, default=None, metavar="N",
                   help="bars per year for annualizing volatility. Default: the data set's convention (24/7 "
                        "calendar time, 365 days, for BTC and CSV files; 252 for sp500/nasdaq)")


def _alphas(text: str | None, flag: str = "--alphas") -> list[float] | None:
    if text is None:
        return None
    try:
        alphas = [float(x) for x in text.split(",")]
    except ValueError as e:
        raise ValidationError(flag, text, "comma-separated numbers in (0.5, 1)") from e
    for x in alphas:
        if not 0.5 < x < 1.0:
            raise ValidationError(flag, text, f"comma-separated numbers in (0.5, 1) ({x} is not)")
    return alphas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast", description="Ballast: dynamic leverage risk engine")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stress", help="crash stress test: dynamic vs static on a local Anvil, with a report")
    _stress_args(s, "out/stress")
    d = sub.add_parser("demo", help="the main job: the default real-data crash, report in out/demo/")
    _stress_args(d, "out/demo")
    pr = sub.add_parser("params", help="deploy on an embedded Anvil and print every market's live parameters")
    pr.add_argument("--config", default=None)
    pr.add_argument("--json", action="store_true")
    sub.add_parser("keeper", help="run the oracle keeper against an RPC (see `ballast keeper --help`)",
                   add_help=False)
    sub.add_parser("deploy", help="deploy to the embedded Anvil, a testnet (--network/--rpc-url) or a fork; "
                   "record deployments/<chainId>.json; --verify (see `ballast deploy --help`)", add_help=False)
    sub.add_parser("sweep", help="crash x controller sweep in the vectorized simulator on Dask, resumable, with "
                   "the leverage/harm frontier (see `ballast sweep --help`)", add_help=False)
    sub.add_parser("abi", help="export the ABI package abi/ (--check: fail if it differs from the build)",
                   add_help=False)
    b = sub.add_parser("backtest", help="backtest the margin model on real data (Kupiec, Christoffersen, "
                       "margin vs FHS), with the shipped or calibrated (--params) parameters")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="btc_15min", metavar="NAME[@START..END][,...]",
                     help="bundled data sets, comma-separated: btc_15min, btc_daily (BTC-USD), sp500, nasdaq "
                          "(arch's index histories), each optionally a time slice @START..END (ISO dates, end "
                          "exclusive); default btc_15min")
    src.add_argument("--csv", default=None, metavar="FILE",
                     help="your own OHLC(V) CSV: a time column (unix s or ms, or ISO dates) and close or price; "
                          "open/high/low optional; any column order, oldest- or newest-first")
    b.add_argument("--interval", type=int, default=None, metavar="SECONDS",
                   help="bar length of --csv (default: the most common spacing of its timestamps)")
    _convention_args(b)
    b.add_argument("--alphas", default=None,
                   help="comma-separated confidence levels (default 0.95,0.99,0.995, or the --params file's)")
    b.add_argument("--params", default=None, metavar="FILE.toml",
                   help="calibrated parameters from `ballast calibrate` (rows marked in-/out-of-sample)")
    b.add_argument("--gap-floor", action="store_true",
                   help="test max(varMove, the --params file's gap move) (the margin with its min_mmf floor)")
    b.add_argument("--tail-grid", action="store_true",
                   help="also refit the --params file's training sets with each tail setting of a small grid and "
                        "report training and test passes (sensitivity to the estimator's hyperparameters)")
    b.add_argument("--json", dest="json_out", default=None, help="also write the table as JSON to this file")
    b.add_argument("--config", default=None)
    c = sub.add_parser("calibrate", help="fit the tail (quantile of standardized adverse moves) on named "
                       "training data only and write the parameters to a TOML file")
    c.add_argument("--train", default=None, metavar="NAME[@START..END][,...]",
                   help="training data sets (as backtest --dataset); --csv adds your own file")
    c.add_argument("--csv", default=None, metavar="FILE", help="your own OHLC(V) CSV as (more) training data")
    c.add_argument("--interval", type=int, default=None, metavar="SECONDS", help="bar length of --csv")
    _convention_args(c)
    c.add_argument("--alphas", default="0.99,0.995", help="comma-separated confidence levels (default 0.99,0.995)")
    c.add_argument("--method", choices=["fhs", "gpd"], default="fhs",
                   help="tail quantile: empirical (fhs, default) or a generalized Pareto fit over the top 10%% (gpd)")
    c.add_argument("--skew", choices=["fit", "zero"], default="fit",
                   help="fit: one z for the thinner side, a published skew input for the fatter (default); "
                        "zero: one symmetric z")
    c.add_argument("--tail", choices=["none", "fhs"], default="none",
                   help="fhs: the keeper publishes a per-side tail feed, the FHS quantile of past standardized "
                        "adverse moves over z (ballast.tail); none (default): fitted z and skew only")
    c.add_argument("--tail-window", type=int, default=None, metavar="N",
                   help="past windows in the feed's quantile (default: all, expanding)")
    c.add_argument("--tail-fast-lambda", type=float, default=None, metavar="L",
                   help="filter max(keeper EWMA, a faster EWMA with this decay) (default: the keeper's EWMA)")
    c.add_argument("--tail-combine-expanding", action="store_true",
                   help="with --tail-window: the larger of the rolling and the expanding quantile")
    c.add_argument("--tail-cap", type=float, default=5.0, help="largest published tail, = tailCap (1..5, default 5)")
    c.add_argument("--tail-select", choices=["none", "validation"], default="none",
                   help="validation: choose the tail setting (window, fast filter) on the training data alone: each "
                        "training set split in time (the last --validation-fraction of its bars held out), every "
                        "setting of the backtest --tail-grid grid fitted on the earlier part and backtested on the "
                        "held-out part, the best by a fixed rule (most rows passing, then breach rate closest to "
                        "1 - alpha, then lowest /FHS, then simplest) fitted on all the training data; implies --tail fhs")
    c.add_argument("--validation-fraction", type=float, default=0.3, metavar="F",
                   help="with --tail-select validation: share of each training set's bars held out (default 0.3)")
    c.add_argument("--gap-floor", action="store_true",
                   help="fit the gap-risk floor (min_mmf, min_imf) on the training data")
    c.add_argument("--gap-quantile", type=float, default=0.999, help="quantile of the gap move (default 0.999)")
    c.add_argument("--oracle-lag-sec", type=int, default=None,
                   help="oracle lag, s (default 900: one keeper round, ballast keeper --interval)")
    c.add_argument("--settlement-delay-sec", type=int, default=None,
                   help="settlement delay, s (default: the engine's order_min_delay_sec)")
    c.add_argument("--liquidator-latency-sec", type=int, default=None,
                   help="liquidator latency, s (default 300: the lab's 1 block of 300 s)")
    c.add_argument("--out", required=True, metavar="FILE.toml", help="calibration file to write")
    c.add_argument("--config", default=None, help="base market configuration (default config/markets.toml)")
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "keeper":
        from ballast.keeper import keeper_cli

        try:
            return keeper_cli(args[1:])
        except BallastError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args and args[0] == "deploy":
        from ballast.deployments import deploy_cli

        return deploy_cli(args[1:])
    if args and args[0] == "sweep":
        from ballast.sweep import main as sweep_main

        try:
            return sweep_main(args[1:])
        except BallastError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args and args[0] == "abi":
        from ballast.abi_export import main as abi_main

        return abi_main(args[1:], prog="ballast abi")
    a = parser.parse_args(args)
    try:
        if a.cmd == "demo" and not a.list:
            print("Live parameters of every market, freshly deployed on an embedded Anvil:")
            _params(argparse.Namespace(config=a.config, json=False))
            print()
        if a.cmd in ("stress", "demo"):
            return _stress(a)
        if a.cmd == "params":
            return _params(a)
        if a.cmd == "backtest":
            from ballast.calibration import backtest_cli

            alphas = _alphas(a.alphas)
            if a.interval is not None and a.csv is None:
                raise ValidationError("--interval", a.interval, "only with --csv")
            return backtest_cli(a.dataset, alphas, a.json_out, a.config, csv_path=a.csv,
                                interval_seconds=a.interval, skip_gaps=None if a.gaps is None else a.gaps == "skip",
                                periods=a.periods_per_year, params_path=a.params, gap_floor=a.gap_floor,
                                tail_grid=a.tail_grid)
        if a.cmd == "calibrate":
            from ballast.calibration import calibrate_cli

            if a.interval is not None and a.csv is None:
                raise ValidationError("--interval", a.interval, "only with --csv")
            alphas = _alphas(a.alphas)
            assert alphas is not None
            from ballast.tail import TailSpec

            tail = None
            if a.tail_select == "validation":
                if a.tail_window is not None or a.tail_fast_lambda is not None or a.tail_combine_expanding:
                    raise ValidationError("--tail-select", a.tail_select, "without --tail-window/--tail-fast-lambda/"
                                          "--tail-combine-expanding (the selection chooses them)")
                tail = TailSpec(cap=a.tail_cap)
            elif a.validation_fraction != 0.3:
                raise ValidationError("--validation-fraction", a.validation_fraction, "only with --tail-select validation")
            if a.tail_select != "validation" and a.tail == "fhs":
                tail = TailSpec(window=a.tail_window, fast_lambda=a.tail_fast_lambda,
                                combine_expanding=a.tail_combine_expanding, cap=a.tail_cap)
            elif a.tail_window is not None or a.tail_fast_lambda is not None or a.tail_combine_expanding:
                raise ValidationError("--tail", a.tail, "fhs when --tail-window/--tail-fast-lambda/--tail-combine-expanding is given")
            gap = None
            if a.gap_floor:
                gap = {"quantile": a.gap_quantile}
                for k in ("oracle_lag_sec", "settlement_delay_sec", "liquidator_latency_sec"):
                    if getattr(a, k) is not None:
                        gap[k] = getattr(a, k)
            return calibrate_cli(a.train, a.out, alphas, a.config, csv_path=a.csv, interval_seconds=a.interval,
                                 skip_gaps=None if a.gaps is None else a.gaps == "skip",
                                 periods=a.periods_per_year, method=a.method, skew_mode=a.skew,
                                 command="ballast " + " ".join(args), tail=tail, gap_floor=gap,
                                 tail_select=a.tail_select, validation_fraction=a.validation_fraction)
    except BallastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: local chains stopped", file=sys.stderr)
        return 130
    return 1
