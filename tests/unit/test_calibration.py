"""Tests for ballast.calibration: ``ballast backtest`` on a user's CSV, the gap switch and the
annualization convention (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from ballast.calibration import backtest, model_series, periods_per_year, standardized_moves
from ballast.cli import main
from ballast.data import load_btc_15min, load_csv
from ballast.errors import DataError, ValidationError

DAY = 86_400


def _closes(n: int, daily_sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50_000.0 * np.exp(np.cumsum(rng.normal(0.0, daily_sigma, n)))


def _write_csv(path: Path, stamps: list[int], closes: np.ndarray, *, newest_first: bool = False) -> Path:
    rows = [f"{t},{c:.2f}\n" for t, c in zip(stamps, closes, strict=True)]
    if newest_first:
        rows.reverse()
    path.write_text("Timestamp,Close\n" + "".join(rows), encoding="utf-8")
    return path


def _weekdays(n: int, start: int = 1_609_459_200) -> list[int]:
    """``n`` daily stamps from 2021-01-01 (a Friday), weekends left out."""
    out: list[int] = []
    t = start
    while len(out) < n:
        if (t // DAY + 3) % 7 < 5:  # 1970-01-01 was a Thursday: weekday index 0 = Monday
            out.append(t)
        t += DAY
    return out


def test_backtest_cli_on_a_newest_first_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamps = [1_609_459_200 + 3_600 * i for i in range(300)]
    csv = _write_csv(tmp_path / "my-coin.csv", stamps, _closes(300, 0.01, 1), newest_first=True)
    out = tmp_path / "bt.json"
    assert main(["backtest", "--csv", str(csv), "--alphas", "0.95,0.99", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "300 bars of 3600 s" in printed and "newest-first, reversed" in printed
    rows = json.loads(out.read_text())
    assert [(r["alpha"], r["side"]) for r in rows] == [(0.95, "long"), (0.95, "short"),
                                                        (0.99, "long"), (0.99, "short")]
    for r in rows:
        assert r["dataset"] == "my-coin"
        assert r["horizon_bars"] == 1 and r["horizon_sec"] == 3_600
        assert r["periods_per_year"] == 8_760
        assert r["gaps"] == "skip" and r["skipped_gap_windows"] == 0
        assert 250 < r["observations"] < 300


def test_gap_switch_on_weekday_data(tmp_path: Path) -> None:
    history = load_csv(_write_csv(tmp_path / "stock.csv", _weekdays(200), _closes(200, 0.02, 2)))
    assert history.interval_seconds == DAY
    skip = backtest(history, [0.99], skip_gaps=True)
    keep = backtest(history, [0.99], skip_gaps=False)
    assert skip[0]["skipped_gap_windows"] > 30  # every Friday -> Monday window
    assert keep[0]["skipped_gap_windows"] == 0
    assert keep[0]["observations"] == skip[0]["observations"] + skip[0]["skipped_gap_windows"]
    assert keep[0]["gaps"] == "keep"


def test_periods_per_year_changes_annualized_vol_not_the_standardized_move(tmp_path: Path) -> None:
    # 4% daily moves: 76% annualized over 365 days, 63% over 252 trading days (vol_ref is 50%).
    history = load_csv(_write_csv(tmp_path / "wild.csv", _weekdays(120), _closes(120, 0.04, 3)))
    calendar = model_series(history, 0.99, horizon_sec=DAY)
    trading = model_series(history, 0.99, horizon_sec=round(365 * DAY / 252), periods=252)
    ok = np.isfinite(calendar["sigma"])
    assert_allclose(trading["sigma"][ok], calendar["sigma"][ok] * np.sqrt(252 / 365))
    # Same per-bar move; a lower annualized vol lowers only the regime tail term.
    assert np.all(trading["var_long"][ok] <= calendar["var_long"][ok] * (1 + 1e-12))
    assert np.any(trading["var_long"][ok] < calendar["var_long"][ok] * 0.99)
    z_cal = standardized_moves(history, 1, skip_gaps=False)
    z_252 = standardized_moves(history, 1, periods=252, skip_gaps=False)
    assert_allclose(z_252["long"], z_cal["long"])
    row = backtest(history, [0.99], periods=252, skip_gaps=False)[0]
    assert row["periods_per_year"] == 252


@pytest.mark.parametrize("value", [365, 1e9, 0, -252, float("nan"), True])
def test_periods_per_year_out_of_range_names_value_and_range(value: float) -> None:
    history = load_btc_15min()  # 900 s bars: allowed [3504, 35040]
    with pytest.raises(ValidationError) as info:
        periods_per_year(history, value)
    assert info.value.field == "periods_per_year"
    assert "[3504, 35040]" in str(info.value)
    assert periods_per_year(history) == 35_040
    assert periods_per_year(history, 35_040) == 35_040


def test_too_short_csv_is_a_data_error(tmp_path: Path) -> None:
    stamps = [1_609_459_200 + 3_600 * i for i in range(20)]
    history = load_csv(_write_csv(tmp_path / "short.csv", stamps, _closes(20, 0.01, 4)))
    with pytest.raises(DataError, match="short: no complete 1-bar window .* at least 32 contiguous bars"):
        backtest(history, [0.99])


@pytest.mark.parametrize(("argv", "needle"), [
    (["--dataset", "btc_daily", "--periods-per-year", "1000"], "periods_per_year=1000.0"),
    (["--interval", "900"], "--interval=900"),
    (["--alphas", "0.99,abc"], "--alphas='0.99,abc'"),
    (["--csv", "/nonexistent/prices.csv"], "cannot open"),
])
def test_backtest_cli_errors_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err


def test_dataset_and_csv_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["backtest", "--dataset", "btc_daily", "--csv", "x.csv"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
