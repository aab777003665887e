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
    assert set(DATASETS) == {"btc_15min", "btc_daily", "sp500", "nasdaq"}
    for name, loader in DATASETS.items():
        history = loader()
        assert isinstance(history, PriceHistory)
        assert history.name == name
    assert load_btc_15min() is load_btc_15min()  # cached


@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_arch_index_histories(name: str) -> None:
    h = DATASETS[name]()
    assert len(h) == 5031 and h.interval_seconds == 86400
    assert h.start_utc.startswith("1999-01-04") and h.end_utc.startswith("2018-12-31")
    # Trading days only: every weekend is a timestamp gap (kept by the backtest's convention).
    assert h.gap_indices().size > 1000


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
    h = load_csv(path, 900, "tiny", duplicates="keep_last")
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
            "2021-01-01 00:00:00,1,2,0.5,1,1,1\n2021-01-01 00:30:00,1,2,0.5,1,1,1\n"
            "2021-01-01 00:15:00,1,2,0.5,1,1,1\n",
            4,
            "sorted",
        ),
        (
            "2021-01-01 00:00:00,1,2,0.5,1,1,1\n2021-01-01 00:15:00,1,2,0.5,1,1,1\n"
            "2021-01-01 00:00:00,1,2,0.5,1,1,1\n",
            4,
            "already on line 2",
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
    path.write_text("Datetime,Open,High,Low\n2021-01-01,1,1,1\n")
    with pytest.raises(DataError, match="nocol.csv:1: missing column 'close'"):
        load_csv(path, 900, "nocol")
    notime = tmp_path / "notime.csv"
    notime.write_text("When,Open,High,Low,Close\n2021-01-01,1,1,1,1\n")
    with pytest.raises(DataError, match="no header with a time column"):
        load_csv(notime, 900, "notime")
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
     (True, "x", "interval_seconds"), (900, "", "name"), (900, 7, "name")],
)
def test_load_csv_bad_arguments(
    tmp_path: Path, interval: object, name: str, field: str
) -> None:
    path = _write(tmp_path, "2021-01-01 00:00:00,1,2,0.5,1,1,1\n")
    with pytest.raises(ValidationError) as info:
        load_csv(path, interval, name)  # type: ignore[arg-type]
    assert info.value.field == field


def test_load_csv_rejects_unknown_duplicates_policy(tmp_path: Path) -> None:
    path = _write(tmp_path, "2021-01-01 00:00:00,1,2,0.5,1,1,1\n")
    with pytest.raises(ValidationError) as info:
        load_csv(path, 900, "x", duplicates="first")  # type: ignore[arg-type]
    assert info.value.field == "duplicates"


# --------------------------------------------------------------------------- any user CSV


def _write_raw(tmp_path: Path, content: str | bytes, name: str = "user.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def test_bom_newest_first_any_order_and_case(tmp_path: Path) -> None:
    t0 = _utc(2021, 12, 4)
    body = "".join(
        f"{1000 + i},{c},{t0 + 3600 * i},{c - 1},{c - 0.5},{c + 1}\r\n"
        for i, c in reversed(list(enumerate([100.0, 101.0, 99.0, 102.0])))
    )
    path = _write_raw(tmp_path, "\ufeffVolume,close,TIMESTAMP,Low,OPEN,high\r\n" + body, "btc-1h.csv")
    h = load_csv(path)
    assert h.name == "btc-1h"
    assert h.interval_seconds == 3600
    assert_array_equal(h.timestamps, t0 + 3600 * np.arange(4, dtype=np.int64))
    assert_allclose(h.close, [100.0, 101.0, 99.0, 102.0])
    assert_allclose(h.open, h.close - 0.5)
    assert_allclose(h.high, h.close + 1)
    assert_allclose(h.low, h.close - 1)
    assert h.cleaning is not None
    assert h.cleaning.newest_first
    assert h.cleaning.filled_columns == ()
    assert h.cleaning.timestamp_format == "s"
    assert h.cleaning.rows_kept == 4


def test_unix_milliseconds(tmp_path: Path) -> None:
    t0 = _utc(2021, 12, 4, 5, 15)
    path = _write_raw(
        tmp_path,
        "open_time,open,high,low,close,volume\n"
        f"{t0 * 1000},50000,50100,49900,50050,1\n"
        f"{(t0 + 900) * 1000},50050,50060,42875,43000,9\n",
    )
    h = load_csv(path)
    assert_array_equal(h.timestamps, [t0, t0 + 900])
    assert h.interval_seconds == 900
    assert h.cleaning is not None and h.cleaning.timestamp_format == "ms"


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (("2021-12-04", "2021-12-05", "2021-12-06"), [_utc(2021, 12, d) for d in (4, 5, 6)]),
        (("20211204", "20211205", "20211206"), [_utc(2021, 12, d) for d in (4, 5, 6)]),
        (("2021-12-04T00:00:00Z", "2021-12-05T00:00:00Z", "2021-12-06T00:00:00Z"),
         [_utc(2021, 12, d) for d in (4, 5, 6)]),
        (("2021-12-04 01:00:00+01:00", "2021-12-05 01:00:00+01:00", "2021-12-06 01:00:00+01:00"),
         [_utc(2021, 12, d) for d in (4, 5, 6)]),
        (("2021-12-04 00:00:00 UTC", "2021-12-05 00:00:00 UTC", "2021-12-06 00:00:00 UTC"),
         [_utc(2021, 12, d) for d in (4, 5, 6)]),
    ],
)
def test_iso_dates_and_datetimes(tmp_path: Path, cells: tuple[str, ...], expected: list[int]) -> None:
    rows = "".join(f"{t},{p}\n" for t, p in zip(cells, (10.0, 11.0, 12.0), strict=True))
    h = load_csv(_write_raw(tmp_path, "Date,Price\n" + rows))
    assert_array_equal(h.timestamps, expected)
    assert h.interval_seconds == 86400
    assert h.cleaning is not None and h.cleaning.timestamp_format == "iso"


def test_single_price_column_fills_open_high_low_from_closes(tmp_path: Path) -> None:
    path = _write_raw(tmp_path, "time,price\n1638576000,100\n1638579600,110\n1638583200,105\n")
    h = load_csv(path)
    assert_allclose(h.close, [100.0, 110.0, 105.0])
    assert_allclose(h.open, [100.0, 100.0, 110.0])  # previous close
    assert_allclose(h.high, [100.0, 110.0, 110.0])
    assert_allclose(h.low, [100.0, 100.0, 105.0])
    assert h.cleaning is not None and h.cleaning.filled_columns == ("open", "high", "low")


def test_missing_open_stays_inside_the_given_range(tmp_path: Path) -> None:
    path = _write_raw(
        tmp_path,
        "Date,High,Low,Close\n2021-12-04,110,90,100\n2021-12-05,80,60,70\n",
    )
    h = load_csv(path)
    assert_allclose(h.open, [100.0, 80.0])  # previous close 100, clipped to the bar's high
    assert h.cleaning is not None and h.cleaning.filled_columns == ("open",)


def test_banner_semicolons_and_dollar_prices(tmp_path: Path) -> None:
    path = _write_raw(
        tmp_path,
        "https://www.example.com/export\n"
        "Date;Close/Last;Volume;Open;High;Low\n"
        "2021-12-06;$102;5;$100;$103;$99\n"
        "2021-12-05;$100;5;$101;$102;$98\n",
    )
    h = load_csv(path)
    assert_allclose(h.close, [100.0, 102.0])
    assert_allclose(h.open, [101.0, 100.0])
    assert h.cleaning is not None and h.cleaning.newest_first


def test_separate_date_and_time_columns(tmp_path: Path) -> None:
    path = _write_raw(
        tmp_path, "Date,Time,Close\n2021-12-04,05:00,1\n2021-12-04,05:15,2\n2021-12-04,05:30,3\n"
    )
    h = load_csv(path)
    assert_array_equal(h.timestamps, _utc(2021, 12, 4, 5) + 900 * np.arange(3, dtype=np.int64))


def test_trading_days_infer_daily_interval_and_keep_weekend_gaps(tmp_path: Path) -> None:
    days = ["2021-12-02", "2021-12-03", "2021-12-06", "2021-12-07", "2021-12-08"]  # Thu..Wed
    path = _write_raw(tmp_path, "Date,Close\n" + "".join(f"{d},{100 + i}\n" for i, d in enumerate(days)))
    h = load_csv(path)
    assert h.interval_seconds == 86400
    assert_array_equal(h.gap_indices(), [2])


def test_grid_follows_the_files_phase(tmp_path: Path) -> None:
    # Daily bars stamped 05:00 UTC are on their own grid; the 05:07 snapshot is not.
    t0 = _utc(2021, 12, 4, 5)
    stamps = [t0, t0 + 86400, t0 + 86400 + 420, t0 + 2 * 86400]
    path = _write_raw(tmp_path, "unix,close\n" + "".join(f"{t},100\n" for t in stamps))
    h = load_csv(path, 86400)
    assert_array_equal(h.timestamps, [t0, t0 + 86400, t0 + 2 * 86400])
    assert h.cleaning is not None and h.cleaning.dropped_off_grid == 1


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("Date,Close\n2021-12-04,1\n2021-12-05,abc\n",
         ["bad.csv:3:", "'Close'", "'abc'", "decimal number"]),
        ("Date,Close\n2021-12-04,1\n04/12/2021,2\n",
         ["bad.csv:3:", "'04/12/2021'", "'Date'", "unix seconds, unix milliseconds or an ISO-8601"]),
        ("Timestamp,Close\n1638576000,1\n1638576000000000,2\n",
         ["bad.csv:3:", "'1638576000000000'", "milliseconds in [1e+11, 1e+14)"]),
        ("Timestamp,Close\n1638576000,1\n2021-12-05,2\n",
         ["bad.csv:3:", "'2021-12-05'", "ISO-8601", "line 2 is unix seconds"]),
        ("Timestamp,Close\n1638576000,1\n1638662400000,2\n",
         ["bad.csv:3:", "unix milliseconds but line 2 is unix seconds"]),
        ("Date,Close\n2021-12-04,1\n2021-12-05,-2\n", ["bad.csv:3:", "-2.0", "finite and > 0"]),
        ("Date,Close\n2021-12-04,1\n2021-12-05,2\n2021-12-04,3\n",
         ["bad.csv:4:", "duplicate timestamp 2021-12-04", "already on line 2"]),
        ("Date,Open,High,Low,Close\n2021-12-04,1,2,0.5,1\n2021-12-05,1,2,0.5,3\n",
         ["bad.csv:3:", "inconsistent OHLC", "high=2.0", "close=3.0"]),
        ("Date,Close\n2021-12-04\n", ["bad.csv:2:", "expected >= 2 fields"]),
        ("Date,Close\n2021-12-04,1\n", ["cannot infer the bar interval", "interval_seconds"]),
    ],
)
def test_bad_rows_name_line_column_and_value(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    with pytest.raises(DataError) as info:
        load_csv(_write_raw(tmp_path, content, "bad.csv"))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _write_raw(tmp_path, b"Date,Close\n2021-12-04,1\n2021-12-05,\xff\n", "latin.csv")
    with pytest.raises(DataError, match=r"latin.csv:3: not UTF-8 text \(byte 0xff"):
        load_csv(path)


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
