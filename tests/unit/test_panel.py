"""The vectorized simulator against the Anvil lab on the small validation panel (issue 11): 2
(scenario, seed, accounts) x 3 controllers = 6 cases, lab figures stored in tests/data/panel_lab.json
by ``python -m ballast.panel --full --lab`` (``make panel``); tolerances in ``ballast.panel``."""

from __future__ import annotations

import json

import pytest

from ballast.config import load_config
from ballast.panel import REFERENCE, SMALL, compare, run_sim, table


@pytest.mark.parametrize("combo", SMALL, ids=[c.key for c in SMALL])
def test_simulator_agrees_with_the_lab(combo: object) -> None:
    ref = json.loads(REFERENCE.read_text())
    key = combo.key  # type: ignore[attr-defined]
    lab = ref[key]
    assert lab["violations"] == 0
    rows = compare(lab, run_sim(combo, load_config(), lab["fractions"]))  # type: ignore[arg-type]
    assert all(r["ok"] for r in rows), table({key: rows})
