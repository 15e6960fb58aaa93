"""Raw cells as numbers or category text: what a missing cell is, and how a number reads as a category."""

from __future__ import annotations

import numpy as np

MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "?"})


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


def _text(value) -> str:
    """A cell as category text: numbers written as the shortest text that reads back ("3", "2.5")."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value).strip()


def as_numbers(values: np.ndarray) -> np.ndarray | None:
    """The column as float64 (NaN for a missing cell), or None when a present cell is not a number."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind == "b":
        return None
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
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            return None
    return out


def as_text(values: np.ndarray) -> np.ndarray:
    """The column as an object array of category text, None for a missing cell."""
    if values.dtype.kind == "f":
        return np.array([None if np.isnan(v) else _text(v) for v in values], dtype=object)
    if values.dtype.kind == "U":
        stripped = np.char.strip(values)
        out = stripped.astype(object)
        out[np.isin(np.char.lower(stripped), list(MISSING_TOKENS))] = None
        return out
    return np.array([None if is_missing(v) else _text(v) for v in values], dtype=object)


def first_text(values: np.ndarray) -> tuple[int, str]:
    for i, value in enumerate(values):
        if not is_missing(value):
            try:
                float(value)
            except (TypeError, ValueError):
                return i, str(value)
    return 0, ""
