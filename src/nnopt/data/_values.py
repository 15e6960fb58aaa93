"""Raw cells as numbers or category text: what a missing cell is, and how a number reads as a category."""

from __future__ import annotations

import datetime
import re

import numpy as np

MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})
INTEGER = re.compile(r"[+-]?\d+")
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
TRUE_FALSE = {"true": "True", "false": "False"}


def is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TOKENS
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def canonical_text(cell: str) -> str:
    """One spelling per value of a category cell: spaces stripped, a number written as the shortest text that
    reads back ("0", "0.0" and "0.00" -> "0"; "11.0" -> "11"; "2.50" -> "2.5"), true/false in any letter case as
    "True" / "False" (what pandas writes). Other text is kept as written."""
    cell = cell.strip()
    if INTEGER.fullmatch(cell):
        return str(int(cell))
    if DECIMAL.fullmatch(cell):
        value = float(cell)
        return _number_text(value) if np.isfinite(value) else cell
    return TRUE_FALSE.get(cell.lower(), cell)


def seconds(value) -> float:
    """A duration (datetime.timedelta, pandas Timedelta, numpy timedelta64) in seconds; NaN for NaT."""
    if isinstance(value, np.timedelta64):
        return float("nan") if np.isnat(value) else float(value / np.timedelta64(1, "s"))
    return float(value.total_seconds())


def _text(value, spell: bool = True) -> str:
    """A cell as category text in its one spelling (canonical_text): numbers as the shortest text that reads
    back ("3", "2.5"), durations as their seconds."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (np.timedelta64, datetime.timedelta)):
        return _number_text(seconds(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _number_text(float(value))
    return canonical_text(str(value)) if spell else str(value).strip()


def as_numbers(values: np.ndarray) -> np.ndarray | None:
    """The column as float64 (NaN for a missing cell), or None when a present cell is not a number."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind == "b":
        return None
    if values.dtype.kind == "m":  # durations read as seconds
        out = values.astype("timedelta64[ns]").astype(np.int64) / 1e9
        out[np.isnat(values)] = np.nan
        return out
    out = np.full(len(values), np.nan)
    if values.dtype.kind == "U":  # text read from a file: convert in one numpy call
        stripped = np.char.strip(values)
        present = ~np.isin(np.char.lower(stripped), list(MISSING_TOKENS))
        try:
            out[present] = stripped[present].astype(np.float64)
        except ValueError:
            return None
        return out
    for i, value in enumerate(values):
        if is_missing(value):
            continue
        if isinstance(value, (bool, np.bool_)):
            return None
        if isinstance(value, (np.timedelta64, datetime.timedelta)):
            out[i] = seconds(value)
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            return None
    return out


def as_text(values: np.ndarray, spell: bool = True) -> np.ndarray:
    """The column as an object array of category text, None for a missing cell. `spell`: text in its one
    spelling (canonical_text); else only stripped (class labels keep the spelling they were given in)."""
    if values.dtype.kind == "f":
        return np.array([None if np.isnan(v) else _text(v) for v in values], dtype=object)
    if values.dtype.kind == "m":
        numbers = as_numbers(values)
        return np.array([None if np.isnan(v) else _number_text(float(v)) for v in numbers], dtype=object)
    if values.dtype.kind == "U":  # text read from a file: each distinct cell put in its one spelling once
        distinct, at = np.unique(values, return_inverse=True)
        spelled = np.array([None if v.strip().lower() in MISSING_TOKENS else canonical_text(v) if spell
                            else v.strip() for v in distinct], dtype=object)
        return spelled[at.reshape(-1)]
    # a DataFrame's object column: its text cells go the way of a file's (each distinct cell spelled once)
    strings = np.fromiter((type(v) is str for v in values), dtype=bool, count=len(values))
    out = np.empty(len(values), dtype=object)
    if strings.any():
        out[strings] = as_text(values[strings].astype(str), spell)
    if not strings.all():
        out[~strings] = [None if is_missing(v) else _text(v, spell) for v in values[~strings]]
    return out


def first_text(values: np.ndarray) -> tuple[int, str]:
    for i, value in enumerate(values):
        if not is_missing(value):
            try:
                float(value)
            except (TypeError, ValueError):
                return i, str(value)
    return 0, ""
