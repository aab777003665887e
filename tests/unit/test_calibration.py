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


# --------------------------------------------------------------------------- calibrate (issue 12)


def _ohlc_csv(path: Path, n: int, seed: int, *, crash_after: int | None = None) -> Path:
    """Hourly OHLC bars; with ``crash_after`` every bar from that index on swings 5x wider."""
    rng = np.random.default_rng(seed)
    r = rng.standard_t(4, n) * 0.004
    if crash_after is not None:
        r[crash_after:] *= 5.0
    close = 100.0 * np.exp(np.cumsum(r))
    opn = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, 0.001, (2, n)))
    high = np.maximum(opn, close) * (1 + wick[0])
    low = np.minimum(opn, close) * (1 - wick[1])
    stamps = 1_609_459_200 + 3_600 * np.arange(n)
    rows = "".join(f"{t},{o:.6f},{h:.6f},{lo:.6f},{c:.6f}\n" for t, o, h, lo, c in zip(stamps, opn, high, low, close))
    path.write_text("Timestamp,Open,High,Low,Close\n" + rows)
    return path


def test_fit_never_reads_the_test_period(tmp_path: Path) -> None:
    from ballast.calibration import fit_tail, load_dataset

    calm = load_csv(_ohlc_csv(tmp_path / "coin.csv", 3_000, 5))
    wild = load_csv(_ohlc_csv(tmp_path / "coin.csv", 3_000, 5, crash_after=2_000))
    assert not np.array_equal(calm.close[2_000:], wild.close[2_000:])
    assert_allclose(calm.close[:2_000], wild.close[:2_000])
    cut = "coin@..2021-03-25T08:00"  # 2,000 hourly bars from 2021-01-01
    fits = [fit_tail([load_dataset(cut, csv_history=h)], [0.99, 0.995], method=m) for h in (calm, wild) for m in ("fhs",)]
    assert fits[0] == fits[1]  # the test period changed completely; the fit did not move
    assert fits[0].train[0].bars == 2_000
    # The test period is marked out-of-sample, an overlapping one in-sample.
    assert fits[0].sample(load_dataset("coin@2021-03-25T08:00..", csv_history=wild)) == "out-of-sample"
    assert fits[0].sample(load_dataset("coin@2021-03-01..", csv_history=wild)) == "in-sample"


def test_calibrate_then_backtest_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _ohlc_csv(tmp_path / "coin.csv", 3_000, 6)
    out = tmp_path / "cal.toml"
    assert main(["calibrate", "--csv", str(csv), "--out", str(out), "--alphas", "0.99"]) == 0
    text = out.read_text()
    assert "# Fitted ONLY on: coin" in text and "[[fit]]" in text
    from ballast.calibration import load_calibration

    cal = load_calibration(out)
    assert cal.fit(0.99).regime_sens == 0.0 and 1.0 <= cal.fit(0.99).z <= 6.0
    js = tmp_path / "bt.json"
    assert main(["backtest", "--params", str(out), "--dataset", "btc_daily@2021-01-01..", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "out-of-sample" in printed and "Kupiec p" in printed and "/FHS x" in printed
    doc = json.loads(js.read_text())
    assert doc["train"] == ["coin"]
    row = doc["rows"][0]
    assert row["sample"] == "out-of-sample" and row["dataset"] == "btc_daily@2021-01-01.."
    for m in ("intrabar", "close_to_close"):
        r = row[m]
        assert 0 <= r["christoffersen_ind_p"] <= 1 and 0 <= r["christoffersen_cc_p"] <= 1
        assert r["fhs_windows"] > 0 and r["margin_ratio_vs_fhs"] > 0
    # An alpha the file was not fitted at is named with the allowed ones.
    assert main(["backtest", "--params", str(out), "--dataset", "btc_daily", "--alphas", "0.995"]) == 2
    assert "alpha=0.995" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "needle"), [
    (["calibrate", "--train", "btc_weekly", "--out", "x.toml"], "dataset='btc_weekly'"),
    (["calibrate", "--train", "sp500@2009..", "--out", "x.toml"], "dataset='sp500@2009..'"),
    (["calibrate", "--train", "sp500@..", "--out", "x.toml"], "NAME@START..END"),
    (["calibrate", "--train", "sp500", "--alphas", "0.99,1.5", "--out", "x.toml"], "--alphas='0.99,1.5'"),
    (["calibrate", "--out", "x.toml"], "--train=None"),
    (["backtest", "--dataset", "btc_daily", "--params", "/nonexistent.toml"], "params='/nonexistent.toml'"),
    (["backtest", "--dataset", "nasdaq@2030-01-01.."], "no bars"),
])
def test_calibrate_cli_errors_name_value_and_range(argv: list[str], needle: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err
