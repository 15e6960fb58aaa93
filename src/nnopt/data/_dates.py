"""Date columns: which columns hold dates, how their cells read (pandas), and the numbers a model takes from them.

A column is a date column when it is a datetime column (numpy datetime64, a pandas datetime dtype with or without
a time zone), holds datetime / date / pd.Timestamp objects, or holds text whose every present cell is a date or
date-time in one shape:

- ``YYYY-MM-DD``, optionally with a time ``[ T]HH:MM[:SS[.fff]]`` and a zone (``Z``, ``+02:00``): ISO 8601;
- ``YYYY/MM/DD``, ``DD/MM/YYYY`` or ``MM/DD/YYYY`` (4-digit year), the same optional time and zone, one time
  shape in the whole column. Day first when some first field is above 12, month first when some second field
  is; when every cell reads either way, month first (the column's reason says so).

Text cells are read by pandas (``pd.to_datetime`` with the column's format, found once): a cell the format does
not read keeps the column from being a date column. Numbers (2016, 20160101) are not dates.

Each cell becomes seconds since 1970-01-01T00:00:00 UTC (a value with a time zone converted to UTC, one without
read as it is), then the parts the model reads: ``days`` (days since 1970-01-01, fractional: the trend), ``year``,
``month`` (1-12), ``day`` (of the month), ``weekday`` (0 = Monday) and, when some train cell has a time other than
midnight, ``hour`` (of the day, fractional). numpy's datetime64 calendar computes them. A part that is the same in
every train date is left out (``days`` stays), and so is ``weekday`` when the day of the month is: monthly dates.
"""

from __future__ import annotations

import datetime
import re
import warnings

import numpy as np

from nnopt.data._values import MISSING_TOKENS, is_missing
from nnopt.errors import DataError

ISO = "ISO8601"  # pandas' format name for ISO 8601 text; also what a datetime column is written as in a CSV
PARTS = ("days", "year", "month", "day", "weekday")
HOUR = "hour"
PART_WORDS = {"days": "days since 1970", "year": "year", "month": "month", "day": "day", "weekday": "weekday",
              "hour": "hour"}
SECONDS_PER_DAY = 86400.0
_TIME = r"(?P<time>(?P<sep>[ T])\d{2}:\d{2}(?P<sec>:\d{2}(?P<frac>\.\d{1,9})?)?(?P<zone>Z|[+-]\d{2}:?\d{2})?)?"
DASH = re.compile(r"\d{4}-\d{2}-\d{2}" + _TIME)
YEAR_FIRST = re.compile(r"\d{4}/\d{1,2}/\d{1,2}" + _TIME)
YEAR_LAST = re.compile(r"(?P<first>\d{1,2})/(?P<second>\d{1,2})/\d{4}" + _TIME)
SHAPES = (("%H:%M:%S.%f", "HH:MM:SS.fff"), ("%H:%M:%S", "HH:MM:SS"), ("%H:%M", "HH:MM"), ("%z", "±HH:MM"),
          ("%Y", "YYYY"), ("%m", "MM"), ("%d", "DD"))


def shape(fmt: str) -> str:
    """A format as a person reads it: "%d/%m/%Y" -> "DD/MM/YYYY"."""
    if fmt == ISO:
        return "YYYY-MM-DD, optionally with a time HH:MM[:SS] and a zone (Z, +02:00)"
    for code, text in SHAPES:
        fmt = fmt.replace(code, text)
    return fmt


def _time_format(match: re.Match) -> str:
    if not match["time"]:
        return ""
    return (match["sep"] + "%H:%M" + (":%S" if match["sec"] else "") + (".%f" if match["frac"] else "")
            + ("%z" if match["zone"] else ""))


def _parse(cells, fmt: str | None):
    """pandas' reading of `cells` in UTC (NaT where a cell does not read)."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format" and the like: a cell that does not read is NaT
        return pd.to_datetime(list(cells), format=fmt, utc=True, errors="coerce")


def _text_format(cells: list[str]) -> tuple[str, str] | None:
    """(format, reason) when every distinct present text cell is a date in one shape, else None."""
    pattern = next((p for p in (DASH, YEAR_FIRST, YEAR_LAST) if p.fullmatch(cells[0])), None)
    if pattern is None:
        return None
    matches = [pattern.fullmatch(cell) for cell in cells]
    if not all(matches):
        return None
    note = ""
    if pattern is DASH:
        fmt = ISO
    else:
        times = {_time_format(m) for m in matches}
        if len(times) != 1:
            return None
        date = "%Y/%m/%d"
        if pattern is YEAR_LAST:
            first, second = (max(int(m[key]) for m in matches) for key in ("first", "second"))
            if first > 12 and second > 12:
                return None
            date = "%d/%m/%Y" if first > 12 else "%m/%d/%Y"
            note = (" (day first: a first field is above 12)" if first > 12 else
                    " (month first: a second field is above 12)" if second > 12 else
                    "; every cell reads day first or month first (no field above 12): read month first")
        fmt = date + times.pop()
    if _parse(cells, fmt).isna().any():
        return None
    timed, zoned = any(m["time"] for m in matches), any(m["zone"] for m in matches)
    written = "YYYY-MM-DD" + (" with times" if timed else "") if fmt == ISO else shape(fmt)
    return fmt, f"dates, {written}{note}" + (", time zones read in UTC" if zoned else "")


def date_format(values: np.ndarray) -> tuple[str, str] | None:
    """(format text cells are read with, reason) when the column holds dates, else None."""
    if values.dtype.kind == "M":
        return ISO, "datetime values"
    if values.dtype.kind not in "UO":
        return None
    first = next((v for v in values if not is_missing(v)), None)  # most text columns stop here
    if isinstance(first, str) and not any(p.fullmatch(first.strip()) for p in (DASH, YEAR_FIRST, YEAR_LAST)) or \
            not isinstance(first, (str, datetime.date, np.datetime64)):
        return None
    if values.dtype.kind == "O":
        present = [v for v in values if not is_missing(v)]
        if present and all(isinstance(v, (datetime.date, np.datetime64)) for v in present):
            zoned = any(getattr(v, "tzinfo", None) is not None for v in present)
            return ISO, "datetime values" + (" with a time zone, read in UTC" if zoned else "")
        if not present or not all(isinstance(v, str) for v in present):
            return None
        values = np.array(present, dtype=str)
    cells = [c for c in np.unique(np.char.strip(np.unique(values))).tolist() if c.lower() not in MISSING_TOKENS]
    return _text_format(cells) if cells else None


def _seconds(stamps: np.ndarray) -> np.ndarray:
    """datetime64 values -> float64 seconds since 1970-01-01 (NaT -> NaN)."""
    return (stamps - np.datetime64(0, "s")) / np.timedelta64(1, "s")


def date_seconds(values, fmt: str, name: str) -> np.ndarray:
    """A date column's cells -> float64 seconds since 1970-01-01T00:00:00 UTC, NaN for a missing cell: datetime
    values as they are (in UTC when they have a zone), text read with `fmt`. A present cell that is not a date is
    a DataError naming the column, the row, the cell and the shape expected."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "M":
        return _seconds(values)
    out = np.full(len(values), np.nan)
    if values.dtype.kind == "U":
        text, stamps = np.ones(len(values), dtype=bool), np.zeros(len(values), dtype=bool)
    else:
        text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        stamps = np.fromiter((isinstance(v, (datetime.date, np.datetime64)) and not is_missing(v) for v in values),
                             dtype=bool, count=len(values))
        other = ~text & ~stamps & np.fromiter((not is_missing(v) for v in values), dtype=bool, count=len(values))
        if other.any():
            _bad(name, int(np.argmax(other)), values[int(np.argmax(other))], fmt)
    if text.any():
        distinct, at = np.unique(values[text].astype(str), return_inverse=True)  # each distinct cell read once
        distinct = np.char.strip(distinct)
        present = ~np.isin(np.char.lower(distinct), list(MISSING_TOKENS))
        read = np.full(len(distinct), np.nan)
        if present.any():
            read[present] = _seconds(_parse(distinct[present], fmt).tz_convert(None).to_numpy())
        failed = present & np.isnan(read)
        if failed.any():
            row = int(np.flatnonzero(text)[np.argmax(failed[at.reshape(-1)])])
            _bad(name, row, values[row], fmt)
        out[text] = read[at.reshape(-1)]
    if stamps.any():
        out[stamps] = _seconds(_parse(values[stamps], None).tz_convert(None).to_numpy())
    return out


def _bad(name: str, row: int, value, fmt: str) -> None:
    raise DataError(f"column '{name}' holds '{value}' in row {row + 1}, which is not a date in the shape the model "
                    f"reads there ({shape(fmt)}); fix the cell or leave it empty (an empty cell is missing)")


def date_parts(seconds: np.ndarray, parts) -> np.ndarray:
    """Seconds since 1970-01-01 UTC -> float64 (n, len(parts)), NaN rows for NaN seconds; numpy's calendar."""
    seconds = np.asarray(seconds, dtype=np.float64).reshape(-1)
    absent = np.isnan(seconds)
    day = np.floor(np.where(absent, 0.0, seconds) / SECONDS_PER_DAY)
    dates = day.astype(np.int64).astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    values = {"days": seconds / SECONDS_PER_DAY,
              "year": dates.astype("datetime64[Y]").astype(np.int64) + 1970.0,
              "month": months.astype(np.int64) % 12 + 1.0,
              "day": (dates - months).astype(np.int64) + 1.0,
              "weekday": (day + 3.0) % 7.0,  # 1970-01-01 was a Thursday (3, Monday = 0)
              "hour": (seconds - day * SECONDS_PER_DAY) / 3600.0}
    block = np.stack([np.asarray(values[part], dtype=np.float64) for part in parts], axis=1)
    block[absent] = np.nan
    return block


def fit_date(seconds: np.ndarray) -> dict:
    """The treatment of a date column from its train cells (seconds): the parts, each part's median for a missing
    cell, and a 0/1 indicator when training had missing cells."""
    present = seconds[~np.isnan(seconds)]
    timed = bool(len(present)) and bool(np.any(np.floor(present / SECONDS_PER_DAY) * SECONDS_PER_DAY != present))
    parts = list(PARTS) + ([HOUR] if timed else [])
    block = date_parts(seconds, parts)
    varies = {part: len(np.unique(block[~np.isnan(block[:, k]), k])) > 1 for k, part in enumerate(parts)}
    # a part the train dates do not vary in says nothing (the day of monthly data, the year of one year's); and
    # when the day of the month does not vary, the dates are not daily, so the weekday is an accident of the
    # calendar (economics, one row a month: psavert R2 0.863 with it, 0.878 without; benchmarks/table_dates.py)
    keep = [k for k, part in enumerate(parts) if part == "days" or varies[part] and
            (part != "weekday" or varies["day"])]
    parts, block = [parts[k] for k in keep], block[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no train value at all: filled with 0, as numeric columns
        fill = np.nan_to_num(np.nanmedian(block, axis=0), nan=0.0) if len(block) else np.zeros(len(parts))
    missing = int(np.isnan(seconds).sum())
    return {"parts": parts, "fill": [float(v) for v in fill], "indicator": missing > 0, "missing_train": missing}


def describe_date(c: dict) -> str:
    """"days since 1970, year, month, day, weekday; each part's median (days: 2016-07-01) for missing + indicator"."""
    text = ", ".join(PART_WORDS[part] for part in c["parts"])
    if c["missing_train"] or c["indicator"]:
        median = np.datetime64(int(np.floor(c["fill"][0])), "D")
        text += f"; each part's train median (days: {median}) for missing" + (" + indicator" if c["indicator"] else "")
    return text


def encode_date(values, c: dict) -> tuple[np.ndarray, int]:
    """A date column's encoded block (its parts, the median in a missing cell, then the indicator) and its missing
    cells."""
    seconds = date_seconds(values, c["format"], c["name"])
    absent = np.isnan(seconds)
    block = date_parts(seconds, c["parts"])
    block[absent] = np.asarray(c["fill"], dtype=np.float64)
    if c["indicator"]:
        block = np.concatenate([block, absent.astype(np.float64)[:, None]], axis=1)
    return block, int(absent.sum())
