"""Tests for ballast.data: bundled BTC-USD data, CSV cleaning and validation."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from ballast.data import (
    DATASETS,
    PriceHistory,
    load_btc_15min,
    load_btc_daily,
    load_csv,
    parse_utc,
)
from ballast.errors import DataError, ValidationError

HEADER = "Datetime,Open,High,Low,Close,Adj Close,Volume\n"


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp())


def _write(tmp_path: Path, body: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- parse_utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-09-27 14:45:00+01:00", _utc(2021, 9, 27, 13, 45)),
        ("2021-09-27T13:45:00Z", _utc(2021, 9, 27, 13, 45)),
        ("2021-09-27 13:45:00", _utc(2021, 9, 27, 13, 45)),
        ("2021-12-04 05:15:00+00:00", _utc(2021, 12, 4, 5, 15)),
        ("2020-03-12", _utc(2020, 3, 12)),
        ("2021-01-01T00:00:00-05:00", _utc(2021, 1, 1, 5)),
    ],
)
def test_parse_utc(text: str, expected: int) -> None:
    assert parse_utc(text) == expected


# --------------------------------------------------------------------------- bundled data


def test_btc_15min_shape_and_cleaning() -> None:
    h = load_btc_15min()
    assert h.name == "btc_15min"
    assert h.interval_seconds == 900
    assert h.timestamps.dtype == np.int64
    assert len(h) == 8686
    assert np.all(np.diff(h.timestamps) > 0)
    assert np.all(h.timestamps % 900 == 0)
    # First row of the file is "2021-09-27 14:45:00+01:00".
    assert int(h.timestamps[0]) == _utc(2021, 9, 27, 13, 45)
    assert int(h.timestamps[-1]) == _utc(2021, 12, 29, 13, 45)
    assert h.cleaning is not None
    assert h.cleaning.rows_read == 8721
    assert h.cleaning.dropped_missing == 0
    assert h.cleaning.dropped_off_grid == 3  # 14:46:02, 06:01:03, 13:50:02 snapshots
    assert h.cleaning.dropped_duplicate == 32  # overlapping re-download on 2021-10-27
    assert h.cleaning.rows_kept == len(h)
    assert np.all(h.low <= np.minimum(h.open, h.close))
    assert np.all(h.high >= np.maximum(h.open, h.close))


def test_btc_15min_duplicate_keeps_later_complete_bar() -> None:
    h = load_btc_15min()
    i = int(np.searchsorted(h.timestamps, _utc(2021, 10, 27, 13, 45)))
    assert int(h.timestamps[i]) == _utc(2021, 10, 27, 13, 45)
    # The earlier copy was a still-forming bar with open == high == low == close.
    assert_allclose(h.high[i], 59324.96484375)
    assert_allclose(h.low[i], 59048.71484375)


def test_btc_15min_contains_2021_12_04_flash_crash() -> None:
    h = load_btc_15min()
    day = h.window("2021-12-04", "2021-12-05")
    assert len(day) == 96
    assert day.low.min() < 44_000.0
    crash_bar = int(np.argmin(day.low))
    assert int(day.timestamps[crash_bar]) == _utc(2021, 12, 4, 5, 15)
    prior_close = float(h.window("2021-12-03", "2021-12-04").close[-1])
    drop = 1.0 - day.low.min() / prior_close
    assert drop > 0.10


def test_btc_daily_shape_and_2020_03_12_crash() -> None:
    d = load_btc_daily()
    assert d.interval_seconds == 86400
    assert len(d) == 662
    assert d.cleaning is not None
    assert d.cleaning.dropped_missing == 4  # four "null" days
    assert int(d.timestamps[0]) == _utc(2020, 1, 1)
    assert int(d.timestamps[-1]) == _utc(2021, 10, 27)
    assert_array_equal(d.gap_indices().size, 3)
    day = d.window("2020-03-12", "2020-03-13")
    before = d.window("2020-03-11", "2020-03-12")
    assert len(day) == 1
    assert 1.0 - day.close[0] / before.close[0] > 0.30


def test_datasets_registry() -> None:
    assert set(DATASETS) == {"btc_15min", "btc_daily"}
    for name, loader in DATASETS.items():
        history = loader()
        assert isinstance(history, PriceHistory)
        assert history.name == name
    assert load_btc_15min() is load_btc_15min()  # cached


def test_history_is_immutable() -> None:
    h = load_btc_daily()
    with pytest.raises(ValueError):
        h.close[0] = 1.0
    with pytest.raises(FrozenInstanceError):
        h.name = "other"  # type: ignore[misc]


def test_log_returns_and_gaps() -> None:
    d = load_btc_daily()
    r = d.log_returns()
    assert r.shape == (len(d) - 1,)
    assert_allclose(r[0], np.log(d.close[1] / d.close[0]))
    gaps = d.gap_indices()
    assert np.all(np.diff(d.timestamps)[gaps - 1] > 86400)


# --------------------------------------------------------------------------- window


def test_window_is_half_open() -> None:
    h = load_btc_15min()
    w = h.window("2021-12-04T05:00", "2021-12-04T06:00:00+00:00")
    assert_array_equal(
        w.timestamps, _utc(2021, 12, 4, 5) + 900 * np.arange(4, dtype=np.int64)
    )
    # Offsets are honoured: 07:00+01:00 is 06:00 UTC.
    w2 = h.window("2021-12-04T06:00+01:00", "2021-12-04T07:00+01:00")
    assert_array_equal(w.timestamps, w2.timestamps)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("not a date", "2021-12-05", "start_utc"),
        ("2021-12-04", "yesterday", "end_utc"),
        ("2021-12-05", "2021-12-04", "end_utc"),
        ("2021-12-04", "2021-12-04", "end_utc"),
    ],
)
def test_window_bad_bounds(start: str, end: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_btc_15min().window(start, end)
    assert info.value.field == field


def test_window_empty_raises_data_error() -> None:
    with pytest.raises(DataError):
        load_btc_15min().window("2030-01-01", "2030-01-02")


# --------------------------------------------------------------------------- load_csv


def test_load_csv_cleans_and_counts(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "2021-01-01 00:00:00+00:00,10,11,9,10.5,10.5,1\n"
        "2021-01-01 00:15:00+00:00,null,null,null,null,null,null\n"
        "2021-01-01 00:15:00+00:00,10.5,12,10,11,11,1\n"
        "2021-01-01 01:30:00+01:00,11,11,11,11,11,0\n"  # duplicate of 00:30 UTC, superseded
        "2021-01-01 00:30:00+00:00,11,13,10.8,12,12,1\n"
        "2021-01-01 00:31:07+00:00,12,12,12,12,12,0\n"  # off-grid snapshot
        "2021-01-01 00:45:00+00:00,12,12.5,NaN,12.2,12.2,1\n",
    )
    h = load_csv(path, 900, "tiny")
    assert_array_equal(h.timestamps, _utc(2021, 1, 1) + 900 * np.arange(3, dtype=np.int64))
    assert_allclose(h.close, [10.5, 11.0, 12.0])
    assert_allclose(h.high, [11.0, 12.0, 13.0])  # the later 00:30 row won
    assert h.cleaning is not None
    assert h.cleaning.rows_read == 7
    assert h.cleaning.dropped_missing == 2
    assert h.cleaning.dropped_duplicate == 1
    assert h.cleaning.dropped_off_grid == 1
    assert h.cleaning.rows_kept == 3


def test_load_csv_date_column(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text("Date,Open,High,Low,Close\n2020-01-01,1,2,0.5,1.5\n2020-01-02,1.5,2,1,1\n")
    h = load_csv(path, 86400, "daily")
    assert_array_equal(h.timestamps, [_utc(2020, 1, 1), _utc(2020, 1, 2)])


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("2021-01-01 00:00:00,1,2,0.5,1,1,1\n2021-01-01 00:15:00,1,abc,0.5,1,1,1\n", 3, "high"),
        ("2021-01-01 00:00:00,1,2,0.5,1,1,1\nyesterday,1,2,0.5,1,1,1\n", 3, "timestamp"),
        ("2021-01-01 00:00:00,1,2,-0.5,1,1,1\n", 2, "low"),
        ("2021-01-01 00:00:00,1,2,0,1,1,1\n", 2, "low"),
        ("2021-01-01 00:00:00,1,2,1.5,1,1,1\n", 2, "inconsistent"),
        ("2021-01-01 00:00:00,1,2\n", 2, "fields"),
        (
            "2021-01-01 00:30:00,1,2,0.5,1,1,1\n2021-01-01 00:15:00,1,2,0.5,1,1,1\n",
            3,
            "sorted",
        ),
    ],
)
def test_load_csv_garbage_names_file_and_line(
    tmp_path: Path, body: str, line: int, fragment: str
) -> None:
    path = _write(tmp_path, body, "garbage.csv")
    with pytest.raises(DataError) as info:
        load_csv(path, 900, "garbage")
    message = str(info.value)
    assert f"garbage.csv:{line}:" in message
    assert fragment in message


def test_load_csv_missing_file_and_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot open"):
        load_csv(tmp_path / "absent.csv", 900, "absent")
    path = tmp_path / "nocol.csv"
    path.write_text("Datetime,Open,High,Close\n2021-01-01,1,1,1\n")
    with pytest.raises(DataError, match="missing column 'low'"):
        load_csv(path, 900, "nocol")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_csv(empty, 900, "empty")
    only_null = _write(tmp_path, "2021-01-01,null,null,null,null,null,null\n", "null.csv")
    with pytest.raises(DataError, match="no usable rows"):
        load_csv(only_null, 900, "null")


@pytest.mark.parametrize(
    ("interval", "name", "field"),
    [(0, "x", "interval_seconds"), (-900, "x", "interval_seconds"), (900.0, "x", "interval_seconds"),
     (True, "x", "interval_seconds"), (900, "", "name")],
)
def test_load_csv_bad_arguments(
    tmp_path: Path, interval: object, name: str, field: str
) -> None:
    path = _write(tmp_path, "2021-01-01 00:00:00,1,2,0.5,1,1,1\n")
    with pytest.raises(ValidationError) as info:
        load_csv(path, interval, name)  # type: ignore[arg-type]
    assert info.value.field == field


# --------------------------------------------------------------------------- PriceHistory


def _arrays(n: int = 3) -> dict[str, object]:
    return {
        "timestamps": np.arange(n, dtype=np.int64) * 60,
        "open": np.full(n, 10.0),
        "high": np.full(n, 11.0),
        "low": np.full(n, 9.0),
        "close": np.full(n, 10.0),
        "interval_seconds": 60,
        "name": "synthetic",
    }


def test_price_history_validation() -> None:
    ok = PriceHistory(**_arrays())  # type: ignore[arg-type]
    assert len(ok) == 3
    assert ok.cleaning is None
    bad_len = _arrays() | {"close": np.full(2, 10.0)}
    with pytest.raises(ValidationError) as info:
        PriceHistory(**bad_len)  # type: ignore[arg-type]
    assert info.value.field == "close"
    with pytest.raises(DataError, match="close price"):
        PriceHistory(**(_arrays() | {"close": np.array([10.0, 0.0, 10.0])}))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="strictly increasing"):
        PriceHistory(**(_arrays() | {"timestamps": np.array([0, 60, 60])}))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="inconsistent OHLC"):
        PriceHistory(**(_arrays() | {"high": np.array([11.0, 9.5, 11.0])}))  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        PriceHistory(**(_arrays() | {"interval_seconds": 0}))  # type: ignore[arg-type]
    assert info.value.field == "interval_seconds"
    with pytest.raises(DataError, match="empty"):
        PriceHistory(**_arrays(0))  # type: ignore[arg-type]
