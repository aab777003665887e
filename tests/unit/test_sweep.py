"""``ballast sweep`` (issue 11): tasks are pure (the same rows on any worker, a row re-runs alone to
the bit), results are stored per task and a sweep resumes, and a Dask scheduler with two worker
processes started apart gives exactly the rows of an in-process run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ballast.frontier import write_frontier
from ballast.marketsim import Controller, MarketSim, RunSpec
from ballast.config import load_config
from ballast.population import generate
from ballast.scenarios import build
from ballast.sweep import COLUMNS, Store, SweepSpec, rerun, run_sweep, run_task, tasks_of

SPEC = SweepSpec(scenarios=("flash_crash",), seeds=2, accounts=10, caps=(5.0,), chunk=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return sorted((r["scenario"], r["seed"], r["controller"]) + tuple(r[c] for c in COLUMNS) for r in rows)


def test_a_run_does_not_depend_on_its_batch() -> None:
    cfg = load_config()
    sc = build("flash_crash", 5)
    tr = generate(20, sc.blocks, seed=5, long_bias=sc.long_bias)
    sc2 = build("flash_crash", 6)
    tr2 = generate(20, sc2.blocks, seed=6, long_bias=sc2.long_bias)
    alone = MarketSim([RunSpec(sc, tr, Controller("dynamic"), 5)], cfg).run().metrics()[0]
    batch = MarketSim([RunSpec(sc2, tr2, Controller("dynamic"), 6), RunSpec(sc, tr, Controller("dynamic"), 5)],
                      cfg).run().metrics()[1]
    assert alone == batch


def test_two_separate_worker_processes_give_identical_results(tmp_path: Path) -> None:
    expected = [r for t in tasks_of(SPEC) for r in run_task(t)]
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(dask + ["--port", str(port), "--dashboard-address", ":0", "--host", "127.0.0.1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.0)
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                           f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads", "1",
                                           "--dashboard-address", ":0"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2.0)
        timing = run_sweep(SPEC, tmp_path, scheduler=f"tcp://127.0.0.1:{port}", progress=False)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    assert timing["tasks"] == 2
    store = Store(tmp_path / "sweep.sqlite")
    rows = store.rows()
    assert _key(rows) == _key(expected)
    # Resume: nothing left to do.
    assert store.done() == {t.task_id for t in tasks_of(SPEC)}
    # Any row re-runs alone to the bit.
    res = rerun(tmp_path / "sweep.sqlite", int(rows[0]["rowid"]))
    assert res["identical"]
    page = write_frontier(rows, tmp_path)
    assert page.stat().st_size > 1000 and (tmp_path / "frontier.png").stat().st_size > 10_000


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(Exception, match="--scenarios"):
        SweepSpec(scenarios=("nope",)).validate()


def test_drawn_rows_carry_their_parameters_and_a_status() -> None:
    import json as _json

    from ballast.scenarios import draw_params
    from ballast.sweep import Task

    rows = run_task(Task("t", "draw:flash_crash", (5, 6), 20, (10.0,), "trailing"))
    assert {r["controller"] for r in rows} == {"dynamic", "static_calm", "static_conservative", "static_10x"}
    for r in rows:
        assert _json.loads(r["params"]) == draw_params("flash_crash", r["seed"])
        assert r["family"] == "draw:flash_crash" and r["status"] in ("ok", "no_stress", "no_trading")
        assert (r["mmf"] is None) == (r["controller"] == "dynamic")
    assert next(r for r in rows if r["controller"] == "static_10x")["mmf"] == 0.05


def test_an_older_sweep_file_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(str(tmp_path / "sweep.sqlite"))
    cols = ", ".join(f"{c} REAL" for c in COLUMNS)
    db.execute(f"CREATE TABLE runs (rowid INTEGER PRIMARY KEY, task_id TEXT, scenario TEXT, seed INTEGER, "
               f"accounts INTEGER, controller TEXT, imf REAL, tuned INTEGER, max_drawdown REAL, "
               f"insurance_seed_usd REAL, {cols})")
    db.commit()
    db.close()
    have = {r[1] for r in Store(tmp_path / "sweep.sqlite").db.execute("PRAGMA table_info(runs)")}
    assert {"family", "params", "mmf", "status"} <= have


def test_frontier_paired_ratio_names_a_zero_denominator() -> None:
    from ballast.frontier import paired

    def row(ctl: str, seed: int, bad: float) -> dict[str, object]:
        return {"scenario": "s", "seed": seed, "controller": ctl, "bad_debt_usd": bad}

    rows = [row("dynamic", 1, 10.0), row("static_calm", 1, 40.0), row("dynamic", 2, 30.0), row("static_calm", 2, 20.0)]
    p = paired(rows)
    assert p["paths"] == 2 and p["ratio"] == 40.0 / 60.0 and p["a_less"] == 0.5 and p["a_more"] == 0.5
    z = paired([row("dynamic", 1, 5.0), row("static_calm", 1, 0.0)])
    assert z["ratio"] is None and z["text"].startswith("n/a: static_calm had no bad debt")
    assert "nan" not in z["text"]


def test_frontier_merges_sweeps_and_labels_keeper_modes(tmp_path: Path) -> None:
    import json as _json

    from ballast.frontier import load_rows, main as frontier_main
    from ballast.sweep import Task

    t1 = Task("a", "flash_crash", (5,), 10, (5.0,), "trailing")
    t2 = Task("b", "flash_crash", (5,), 10, (), "predictive")
    s1, s2 = Store(tmp_path / "one.sqlite"), Store(tmp_path / "two.sqlite")
    r1 = run_task(t1)
    s1.save(t1, r1)
    s1.save(Task("c", "flash_crash", (5,), 10, (5.0,), "trailing"), r1)  # the same rows again: counted once
    s2.save(t2, run_task(t2))
    rows = load_rows([tmp_path / "one.sqlite", tmp_path / "two.sqlite"])
    assert sorted(r["controller"] for r in rows) == ["dynamic", "dynamic@predictive", "static_5x", "static_calm",
                                                    "static_calm@predictive", "static_conservative",
                                                    "static_conservative@predictive"]
    assert frontier_main([str(tmp_path / "one.sqlite"), str(tmp_path / "two.sqlite"), "--out", str(tmp_path / "f")]) == 0
    rep = _json.loads((tmp_path / "f" / "frontier.json").read_text())
    assert rep["runs"] == 7 and "dynamic@predictive vs dynamic" in rep["families"]["flash_crash"]["paired"]


def test_a_parameter_set_variant_is_its_own_point(tmp_path: Path) -> None:
    from ballast.errors import ValidationError
    from ballast.frontier import load_rows
    from ballast.sweep import Task, config_with

    assert config_with([("regime_sens", 0.0)]).market(0).params.regime_sens_wad == 0
    with pytest.raises(ValidationError, match="markets.model"):
        config_with([("no_such_key", 1.0)])
    t = Task("v", "flash_crash", (5,), 10, (), "trailing", (("regime_sens", 0.0),))
    s = Store(tmp_path / "v.sqlite")
    s.save(t, run_task(t))
    assert {r["controller"] for r in load_rows([tmp_path / "v.sqlite"])} == {
        "dynamic@regime_sens=0", "static_calm@regime_sens=0", "static_conservative@regime_sens=0"}


def test_a_flat_volatility_feed_is_an_error_status_not_nan_fractions() -> None:
    # The predictive keeper's GARCH fit needs more history than btc_2020_03_12's 55 daily bars: its
    # volatility feed never moves, so there is no calm period (the rows say so; the frontier leaves
    # them out).
    from ballast.sweep import Task

    rows = run_task(Task("f", "btc_2020_03_12", (1,), 20, (), "predictive"))
    assert {r["status"] for r in rows} == {"flat_vol_feed"}
    calm = next(r for r in rows if r["controller"] == "static_calm")
    assert calm["imf"] == calm["imf"] and 0 < calm["imf"] < 1  # finite fractions: every block counts
