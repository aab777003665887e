"""Zero-activity and zero-denominator rules of ``ballast stress`` (issue 11): a scenario on which no
order can settle, a run that opened no position and a scenario with no stress are errors naming
the scenario; a ratio with a zero denominator reads ``n/a: ...``, never ``nan``."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.config import load_config
from ballast.errors import ScenarioError
from ballast.scenarios import build
from ballast.stress import METRIC_KEYS, RUNS, check_activity, check_scenario, ratio_text, table


def _metrics(**per_run: dict[str, float]) -> dict[str, Any]:
    base = {k: 0.0 for k in METRIC_KEYS} | {"orders_committed": 10.0, "orders_settled": 10.0, "orders_expired": 0.0}
    runs = {k: base | per_run.get(k, {}) for k in RUNS}
    return {"scenario": "static_test", "seed": 1, "accounts": 5, "max_drawdown": 0.02, "runs": runs,
            "verification": {"checks": 10, "violations": 0}}


def test_ratio_with_zero_denominator_is_named_not_nan() -> None:
    assert ratio_text(3.0, 0.0, "static_calm", "bad debt") == "n/a: static_calm had no bad debt"
    assert ratio_text(1.0, 4.0, "static_calm", "bad debt") == "0.25"
    assert "n/a" in ratio_text(1.0, None, "static_calm", "bad debt")
    assert "n/a" in ratio_text(float("nan"), 1.0, "static_calm", "bad debt")


def test_table_prints_no_nan_when_static_calm_had_no_bad_debt() -> None:
    m = _metrics(dynamic={"liquidations": 3.0})
    text = table(m)
    assert "nan" not in text.lower()
    assert "n/a: static_calm had no bad debt" in text


def test_a_run_that_opened_no_position_is_an_error_naming_the_scenario() -> None:
    m = _metrics(static_calm={"orders_settled": 0.0, "orders_expired": 10.0}, dynamic={"liquidations": 2.0})
    with pytest.raises(ScenarioError, match=r"scenario static_test .*no position.*static_calm.*10 expired"):
        check_activity(m)


def test_no_stress_is_an_error_unless_allowed() -> None:
    m = _metrics()
    with pytest.raises(ScenarioError, match=r"scenario static_test .*no stress"):
        check_activity(m)
    check_activity(m, allow_no_stress=True)
    check_activity(_metrics(static_conservative={"liquidations": 1.0}))


def test_btc_2020_03_12_blocks_fit_the_order_window() -> None:
    """The shipped scenario's blocks let an order settle at the next block's round; 8-hour blocks
    (one per OHLC anchor) are refused by name before any chain starts."""
    cfg = load_config()
    sc = build("btc_2020_03_12", seed=1)
    assert sc.block_sec == 3_600 <= cfg.engine.order_window_sec
    check_scenario(sc, cfg)
    with pytest.raises(ScenarioError, match=r"scenario btc_2020_03_12: blocks of 28800 s .*order window"):
        check_scenario(build("btc_2020_03_12", seed=1, substeps=1), cfg)
