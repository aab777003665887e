"""Tests for ``ballast calibrate --tail-select validation`` (issue 12): the tail estimator's setting is
chosen on the training data alone (an inner fit part and a later validation part of each training
set), by a fixed, deterministic rule."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ballast.calibration import (
    SELECTION_RULE,
    Dataset,
    load_calibration,
    load_dataset,
    rank_key,
    select_tail,
    split_training,
    tail_complexity,
)
from ballast.cli import main
from ballast.data import PriceHistory
from ballast.errors import ValidationError
from ballast.tail import TailSpec

HOUR = 3_600
T0 = 1_600_000_000  # 2020-09-13T12:26:40Z


def _history(n: int, seed: int, *, wild_after: int | None = None) -> PriceHistory:
    """Hourly fat-tailed OHLC bars (student-t(3) returns and wicks); from ``wild_after`` on the
    returns swing 6x wider and the price crashes 30%."""
    rng = np.random.default_rng(seed)
    r = 0.004 * rng.standard_t(3, n)
    if wild_after is not None:
        r[wild_after:] *= 6.0
        r[wild_after + 5] = -0.3
    close = 100.0 * np.exp(np.cumsum(r))
    opn = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(0.002 * rng.standard_t(3, (2, n)))
    ts = T0 + HOUR * np.arange(n)
    return PriceHistory(ts, opn, np.maximum(opn, close) * (1 + wick[0]), np.minimum(opn, close) * (1 - wick[1]),
                        close, HOUR, "coin")


def _cut(bar: int) -> str:
    return dt.datetime.fromtimestamp(T0 + HOUR * bar, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _train(h: PriceHistory, bars: int) -> Dataset:
    return load_dataset(f"coin@..{_cut(bars)}", csv_history=h)


GRID = (TailSpec(cap=5.0), TailSpec(window=200, fast_lambda=0.8, cap=5.0), TailSpec(window=300, cap=5.0))


def test_split_is_in_time_and_reads_the_training_slice_only() -> None:
    h = _history(1_500, 1)
    d = _train(h, 1_000)
    assert d.full is not None and len(d.full) == 1_500  # the data set goes on after the training cut-off
    inner, valid = split_training(d, 0.3)
    assert len(inner.history) == 700 and len(valid.history) == 300
    assert inner.last_ts < valid.first_ts and valid.last_ts == d.last_ts
    # the validation backtest may read the inner part's bars, never a bar after the training cut-off
    assert valid.full is d.history and valid.offset == 700
    assert inner.spec == f"coin@..{_cut(700)}" and valid.spec == f"coin@{_cut(700)}..{_cut(1_000)}"
    with pytest.raises(ValidationError, match="validation_fraction"):
        split_training(d, 0.9)


def test_selection_reads_only_training_data() -> None:
    calm, wild = _history(1_500, 2), _history(1_500, 2, wild_after=1_000)
    assert not np.array_equal(calm.close[1_000:], wild.close[1_000:])
    assert np.array_equal(calm.close[:1_000], wild.close[:1_000])
    a = select_tail([_train(calm, 1_000)], [0.99], grid=GRID)
    b = select_tail([_train(wild, 1_000)], [0.99], grid=GRID)
    assert a == b  # the data after the cut-off changed completely: the choice and every score did not
    chosen, record = a
    assert record["part"][0]["validation"].endswith(f"..{_cut(1_000)}")
    assert [c["rank"] for c in record["candidate"]] == [1, 2, 3]
    assert record["candidate"][0]["label"] == chosen.label() == record["chosen"]
    assert all(c["rows"] == 2 for c in record["candidate"])  # one alpha, two sides, one training set
    # a perturbation inside the training data is seen
    inside = _history(1_500, 2, wild_after=800)
    assert select_tail([_train(inside, 1_000)], [0.99], grid=GRID)[1] != record


def test_rule_is_deterministic_and_ordered() -> None:
    h = _history(1_000, 3)
    assert select_tail([_train(h, 1_000)], [0.99], grid=GRID) == select_tail([_train(h, 1_000)], [0.99], grid=GRID)

    def score(passes: int, dev: float, ratio: float, spec: TailSpec, i: int) -> dict[str, Any]:
        return {"passes": passes, "mean_abs_rate_dev": dev, "mean_ratio_vs_fhs": ratio,
                "complexity": tail_complexity(spec), "grid_index": i}

    plain, fast, both = TailSpec(), TailSpec(fast_lambda=0.8), TailSpec(window=500, fast_lambda=0.8)
    expected = [
        score(8, 0.010, 1.10, both, 5),   # most rows passing wins, whatever else
        score(7, 0.002, 1.00, both, 4),   # then the breach rate closest to 1 - alpha
        score(7, 0.003, 0.90, both, 3),   # then the lowest /FHS
        score(7, 0.003, 0.95, plain, 2),  # then the simplest
        score(7, 0.003, 0.95, fast, 0),
        score(7, 0.003, 0.95, both, 1),   # then the grid order
    ]
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    assert sorted(shuffled, key=rank_key) == expected
    assert "most validation rows passing" in SELECTION_RULE


def test_selection_picks_the_expected_setting() -> None:
    h = _history(1_400, 4)
    train = [_train(h, 1_400)]
    # feed capped at 1 = the normal quantile: fat tails breach it too often; the FHS feed does not
    chosen, record = select_tail(train, [0.99], grid=(TailSpec(cap=1.0), TailSpec(cap=5.0)))
    assert chosen == TailSpec(cap=5.0)
    first, second = record["candidate"]
    assert first["passes"] == 2 and second["passes"] < 2 and "Kupiec (too many)" in " ".join(second["row"])
    # settings that give the same feed tie on every score: the simplest wins, not the grid order
    # (a rolling window longer than the history is the expanding window)
    chosen, record = select_tail(train, [0.99], grid=(TailSpec(window=50_000, cap=5.0), TailSpec(cap=5.0)))
    assert chosen == TailSpec(cap=5.0)
    a, b = record["candidate"]
    assert rank_key(a)[:3] == rank_key(b)[:3] and (a["complexity"], b["complexity"]) == (0, 1)


def test_calibrate_cli_tail_select(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = _history(1_200, 5)
    csv = tmp_path / "coin.csv"
    csv.write_text("Timestamp,Open,High,Low,Close\n" + "".join(
        f"{t},{o:.12g},{hi:.12g},{lo:.12g},{c:.12g}\n" for t, o, hi, lo, c in zip(h.timestamps, h.open, h.high, h.low, h.close)))
    out = tmp_path / "cal.toml"
    assert main(["calibrate", "--csv", str(csv), "--alphas", "0.99", "--tail-select", "validation",
                 "--validation-fraction", "0.4", "--out", str(out)]) == 0
    assert "chosen: FHS quantile" in capsys.readouterr().out
    cal = load_calibration(out)
    sel = cal.tail_selection
    assert cal.tail is not None and sel is not None
    assert sel["chosen"] == cal.tail.label() == sel["candidate"][0]["label"]
    assert sel["validation_fraction"] == 0.4 and sel["part"][0]["validation_bars"] == 480
    assert len(sel["candidate"]) == 24 and sel["rule"] == SELECTION_RULE
    assert len(cal.tail_training) == 2  # the final fit on all the training data is backtested as before
    assert main(["calibrate", "--csv", str(csv), "--tail-select", "validation", "--tail-window", "500",
                 "--out", str(out)]) == 2
    assert "--tail-select" in capsys.readouterr().err
    assert main(["calibrate", "--csv", str(csv), "--validation-fraction", "0.2", "--out", str(out)]) == 2
    assert "only with --tail-select validation" in capsys.readouterr().err
