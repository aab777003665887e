"""The whole stress pipeline on a small scenario: chain, keeper, traders, liquidators, mirror
verification, baselines, report. Also against a fork of a second local Anvil."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ballast.chain import Anvil
from ballast.config import load_config
from ballast.stress import METRIC_KEYS, RUNS, StressOptions, stress

pytestmark = pytest.mark.integration


def _scenario_file(tmp: Path) -> Path:
    p = tmp / "small_crash.toml"
    p.write_text('name = "small_crash"\nbase = "flash_crash"\n[params]\nblocks = 60\ncrash_pct = 0.3\n'
                 'crash_blocks = 2\ncrash_at = 0.5\n')
    return p


def test_small_scenario_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    m = stress(StressOptions(scenario=str(_scenario_file(tmp_path)), accounts=25, seed=3, out=out, workers=2))
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["scenario"] == "small_crash" and on_disk["seed"] == 3 and on_disk["accounts"] == 25
    assert on_disk["blocks"] == 60
    assert on_disk["verification"]["violations"] == 0
    assert on_disk["verification"]["checks"] > 60 * 3
    for run in RUNS:
        r = on_disk["runs"][run]
        for k in METRIC_KEYS:
            assert isinstance(r[k], float), (run, k)
        s = on_disk["series"][run]
        assert sum(s["liquidations"]) == r["liquidations"]
        assert max(s["liquidations"]) == r["peak_liquidations_per_block"]
        assert s["bad_debt_usd"][-1] == pytest.approx(r["bad_debt_usd"])
        assert sum(s["liquidated_notional_usd"]) == pytest.approx(r["liquidated_notional_usd"])
        assert (r["liquidated_notional_usd"] > 0) == (r["liquidations"] > 0)
        # Penalties paid by traders (issue 12): the liquidation fee scaled by each account's depth
        # under maintenance, between the floor's share and the full fee of the notional closed, each
        # liquidation's penalty rounded up to a token unit (1e-6 USD).
        cfg = load_config()
        fee = cfg.markets[0].params.liq_fee_wad / 1e18
        ntl, pen = r["liquidated_notional_usd"], r["liquidation_penalties_usd"]
        assert cfg.engine.liq_penalty_floor * fee * ntl - 1e-9 <= pen <= fee * ntl + 1e-6 * r["liquidations"] + 1e-9
        assert 0 <= r["accounts_wiped_out"] <= 25
    # The static baselines allow exactly their configured leverage all the time.
    cons = on_disk["static_fractions"]["static_conservative"]["imf"]
    assert on_disk["runs"]["static_conservative"]["mean_max_leverage"] == pytest.approx(1 / cons)
    calm = on_disk["static_fractions"]["static_calm"]["imf"]
    assert on_disk["runs"]["static_calm"]["calm_mean_max_leverage"] == pytest.approx(1 / calm)
    # A 30% crash with traders near max leverage liquidates someone in every run.
    assert all(on_disk["runs"][k]["liquidations"] > 0 for k in RUNS)
    for f in ("report.html", "price_vol.png", "max_leverage.png", "liquidations.png", "insurance_bad_debt.png",
              "comparison.png"):
        assert (out / f).stat().st_size > 1000, f
    assert m["runs"]["dynamic"]["bad_debt_usd"] == on_disk["runs"]["dynamic"]["bad_debt_usd"]


def test_fork_of_a_second_anvil(tmp_path: Path) -> None:
    """--fork-url: the lab deploys onto a fork of another running node and verifies as usual."""
    with Anvil() as upstream:
        out = tmp_path / "fork"
        m = stress(StressOptions(scenario=str(_scenario_file(tmp_path)), accounts=10, seed=5, out=out, workers=1,
                                 fork_url=upstream.url))
    assert m["verification"]["violations"] == 0
    assert (out / "metrics.json").is_file()
