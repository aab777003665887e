"""``ballast stress --from-sweep FILE ROWID`` (issue 11): one stored sweep row re-run on Anvil, lab and
simulator side by side, on a tiny case (60 blocks, 25 accounts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ballast.errors import ValidationError
from ballast.stress import from_sweep
from ballast.sweep import Store, Task, run_task

pytestmark = pytest.mark.integration


def _sweep(tmp: Path) -> Path:
    src = tmp / "small_crash.toml"
    src.write_text('name = "small_crash"\nbase = "flash_crash"\n[params]\nblocks = 60\ncrash_pct = 0.3\n'
                   'crash_blocks = 2\ncrash_at = 0.5\n')
    task = Task("t1", str(src), (3,), 25, (5.0,), "trailing")
    store = Store(tmp / "sweep.sqlite")
    store.save(task, run_task(task))
    return tmp / "sweep.sqlite"


def test_a_static_and_a_dynamic_row_rerun_on_anvil(tmp_path: Path) -> None:
    db = _sweep(tmp_path)
    rows = {r["controller"]: r for r in Store(db).rows()}
    st = from_sweep(db, int(rows["static_5x"]["rowid"]), out=tmp_path / "s")
    assert st["controller"] == "static_5x" and st["static_fractions"] == {"imf": 0.2, "mmf": 0.1}
    assert st["verification"]["violations"] == 0 and st["verification"]["checks"] > 60
    assert all(r["ok"] for r in st["rows"] if r["ok"] is not None), st["rows"]
    on_disk = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert on_disk["rowid"] == rows["static_5x"]["rowid"] and on_disk["sim_draws"] == 1
    dyn = from_sweep(db, int(rows["dynamic"]["rowid"]), out=tmp_path / "d", draws=4)
    assert dyn["sim_draws"] == 4 and dyn["verification"]["violations"] == 0
    by = {r["metric"]: r for r in dyn["rows"]}
    assert by["orders_settled"]["lab"] > 0  # the case trades
    assert by["calm_mean_max_leverage"]["ok"], by["calm_mean_max_leverage"]
    with pytest.raises(ValidationError, match="ROWID"):
        from_sweep(db, 999, out=tmp_path / "x")


def test_a_parameter_set_variant_row_runs_with_its_parameters(tmp_path: Path) -> None:
    src = tmp_path / "small_crash.toml"
    src.write_text('name = "small_crash"\nbase = "flash_crash"\n[params]\nblocks = 60\ncrash_pct = 0.3\n'
                   'crash_blocks = 2\ncrash_at = 0.5\n')
    task = Task("v1", str(src), (4,), 25, (), "trailing", (("regime_sens", 0.0),))
    Store(tmp_path / "sweep.sqlite").save(task, run_task(task))
    row = next(r for r in Store(tmp_path / "sweep.sqlite").rows() if r["controller"] == "static_calm")
    res = from_sweep(tmp_path / "sweep.sqlite", int(row["rowid"]), out=tmp_path / "o")
    assert res["model_set"] == [("regime_sens", 0.0)] and res["verification"]["violations"] == 0
    assert all(r["ok"] for r in res["rows"] if r["ok"] is not None), res["rows"]
