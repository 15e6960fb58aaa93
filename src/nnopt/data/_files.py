"""Readers for tables and arrays on disk: .csv (csv module + numpy), .npz, .parquet (pyarrow, optional).

Row numbers in messages count data rows from 1, header excluded (blank lines are skipped).
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnopt.config import integer_name
from nnopt.errors import DataError, describe, did_you_mean, param
from nnopt.data._idx import read_idx_dir
from nnopt.data._values import as_numbers, as_text
from nnopt.data._types import RawData

SUPPORTED = ".csv, .tsv, .npz, .parquet, or a directory of MNIST-layout IDX files"
SEPARATORS = (",", ";", "\t", "|")


def _target_column(name: str, values: np.ndarray) -> np.ndarray:
    """Target column -> float64 (NaN where missing) if every present value is a number, else stripped strings
    ("" where missing): class labels."""
    if values.dtype.kind in "biufb":
        return values
    numbers = as_numbers(values)
    if numbers is not None:
        return numbers
    text = as_text(values, spell=False)  # class names keep the spelling they were given in
    return np.array(["" if v is None else v for v in text], dtype=str)


def sniff_separator(line: str) -> str:
    """The field separator of a CSV header line: a comma unless the line has none and has ';', tab or '|'."""
    counts = {sep: line.count(sep) for sep in SEPARATORS}
    if counts[","]:
        return ","
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def check_separator(sep: str | None) -> str | None:
    if sep is None:
        return None
    aliases = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    sep = aliases.get(sep, sep)
    if not isinstance(sep, str) or len(sep) != 1:
        raise DataError(f"{param('sep')} must be one character (e.g. ';', '|', or 'tab'); got {sep!r}")
    return sep


def target_name(target) -> str | None:
    """The target column's name as the columns are named (text): a DataFrame's integer column name 4 -> "4".

    Anything else that is not a name (a Series of labels, a list) is a DataError naming the parameter."""
    if target is None or isinstance(target, str):
        return target
    if integer_name(target):
        return str(int(target))
    name = getattr(target, "name", None)
    example = f"{param('target', str(name))}" if isinstance(name, str) else f"{param('target', 'price')}"
    raise DataError(f"{param('target')} must be the name of the target column; got {describe(target)}; give the "
                    f"column's name ({example}), or pass the features and the labels as (X, y)")


def pick_target(columns: list[str], target: str | None, path: Path) -> int:
    if target is None:
        if len(columns) < 2:
            raise DataError(f"{path} has {len(columns)} column(s); need at least one feature and a target column")
        return len(columns) - 1
    if target not in columns:
        raise DataError(f"{param('target', metavar=repr(target))} is not a column of {path}"
                        f"{did_you_mean(target, columns)} "
                        f"columns: {', '.join(columns)}")
    if len(columns) < 2:
        raise DataError(f"{path} has only the target column '{target}'; add feature columns")
    return columns.index(target)


def columns_to_raw(names: list[str], columns: list[np.ndarray], target: str | None, path: Path,
                   source: str, written: dict[str, str] | None = None) -> RawData:
    """A table's columns -> RawData with the feature columns kept raw (typed and encoded by preparation).
    `written`: parse_csv's columns read as numbers through a "decimal comma" or "thousands separators"."""
    check_duplicates(names, path)
    t = pick_target(names, target, path)
    features = {name: col for i, (name, col) in enumerate(zip(names, columns)) if i != t}
    kept = {n: how for n, how in (written or {}).items() if n != names[t]}
    return RawData(X=None, y=_target_column(names[t], columns[t]), source=source, feature_names=list(features),
                   target=names[t], columns=features,
                   decimal_comma=[n for n, how in kept.items() if how == "decimal comma"],
                   thousands=[n for n, how in kept.items() if how == "thousands separators"])


def check_duplicates(names: list[str], path) -> None:
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise DataError(f"{path} has duplicate column names: {', '.join(repr(n) for n in repeated)}; rename them so "
                        "each column has its own name")


def read_csv(path: Path, target: str | None, sep: str | None = None) -> RawData:
    header, table, columns, written = parse_csv(path, check=lambda names: _check_header(names, target, path, sep),
                                                sep=sep)
    if table is not None:
        columns = [table[:, i] for i in range(table.shape[1])]
    return columns_to_raw(header, columns, target, path, "csv", written)


def _check_header(names: list[str], target: str | None, path: Path, sep: str | None) -> None:
    if len(names) == 1 and (target is None or target not in names):
        hint = f"; if its fields are separated by another character, give it with {param('sep')}" \
            if sep is None else f" with {param('sep', repr(sep))}; give the file's separator with {param('sep')}"
        if target is not None:
            raise DataError(f"{param('target', metavar=repr(target))} is not a column of {path}, which was read as "
                            f"1 column ('{names[0][:40]}'){hint}")
        raise DataError(f"{path} has 1 column ('{names[0][:40]}'); need at least one feature and a target column"
                        f"{hint}")
    check_duplicates(names, path)
    pick_target(names, target, path)


def parse_csv(path: Path, check: Callable[[list[str]], object] | None = None, sep: str | None = None
              ) -> tuple[list[str], np.ndarray | None, list[np.ndarray] | None, dict[str, str]]:
    """(header, table, None, {}) when every cell is a number (one float64 array), else (header, None, columns,
    written): string columns, except a column whose cells are all numbers once their commas are read: in a
    ';'-separated file as a decimal comma ("94,71" -> 94.71), in any other as thousands separators ("42,000" or
    "1,234,567.5", quoted in a comma-separated file). Such a column is read as float64 and named in `written`
    ({name: "decimal comma" | "thousands separators"}).

    `check(header)` runs before the body is parsed, so a bad --target fails before a large file is read.
    `sep`: the field separator; None sniffs it from the header line (',', ';', tab or '|').
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = ""
            for line in fh:
                if line.strip():
                    first = line
                    break
            sep = sep or sniff_separator(first)
            fh.seek(0)
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)
            if header is None:
                raise DataError(f"no rows in {path}: the file is empty; give a CSV with a header row and data")
            header = [cell.strip() for cell in header]
            if check is not None:
                check(header)
            # Fast path: an all-numeric file goes through numpy's C parser in one call.
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    table = np.loadtxt(fh, delimiter=sep, dtype=np.float64, ndmin=2, comments=None,
                                       quotechar='"')
                if table.shape[0] and table.shape[1] == len(header):
                    return header, table, None, {}
                if table.shape[0] == 0:
                    raise DataError(f"no rows in {path}: only a header; add data rows")
            except ValueError:
                pass
            fh.seek(0)
            reader = csv.reader(fh, delimiter=sep)
            rows = [row for row in reader if any(cell.strip() for cell in row)][1:]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not valid CSV: {exc}") from None
    if not rows:
        raise DataError(f"no rows in {path}: only a header; add data rows")
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataError(f"{path}: row {number} has {len(row)} fields but the header has {len(header)}; "
                            "fix the row or quote fields that contain commas")
    columns = [np.array(col, dtype=str) for col in zip(*rows)]
    written = {}
    how, read = ("decimal comma", decimal_comma_numbers) if sep == ";" else \
        ("thousands separators", thousands_numbers)
    for i, (name, values) in enumerate(zip(header, columns)):
        numbers = read(values)
        if numbers is not None:
            columns[i] = numbers
            written[name] = how
    return header, None, columns, written


def decimal_comma_numbers(values: np.ndarray) -> np.ndarray | None:
    """A text column as float64 when a decimal comma ("94,71") is what keeps it from being numbers: every present
    cell reads as a number once its comma reads as a point, and some cell has one. Else None."""
    if as_numbers(values) is not None or not (np.char.count(values, ",") == 1).any():
        return None
    return as_numbers(np.char.replace(values, ",", "."))


THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


def thousands_numbers(values: np.ndarray) -> np.ndarray | None:
    """A text column as float64 when thousands separators ("42,000", "1,234,567.5") are what keep it from being
    numbers: every present cell is a number once its commas are dropped, some cell has one, and every cell with a
    comma has it between groups of three digits (so "3,5" or "1,23" stay text). Else None."""
    if as_numbers(values) is not None:
        return None
    stripped = np.char.strip(values)
    commas = np.char.find(stripped, ",") >= 0
    if not commas.any() or not all(THOUSANDS.fullmatch(cell) for cell in stripped[commas]):
        return None
    return as_numbers(np.char.replace(values, ",", ""))


NPZ_LAYOUTS = "'X' and 'y', or 'x_train', 'y_train' (+ 'x_test', 'y_test')"


def read_npz(path: Path) -> RawData:
    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            raise DataError(f"{path} is not a .npz archive (save it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:
        raise DataError(f"cannot read {path}: {exc}; save plain numeric/string arrays (no objects)") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}") from None
    lower = {key.lower(): key for key in arrays}

    def get(name: str) -> np.ndarray | None:
        return arrays[lower[name]] if name in lower else None

    test = None
    if get("x") is not None and get("y") is not None:
        X, y = get("x"), get("y")
    elif get("x_train") is not None and get("y_train") is not None:
        X, y = get("x_train"), get("y_train")
        x_test, y_test = get("x_test"), get("y_test")
        if (x_test is None) != (y_test is None):
            raise DataError(f"{path} has only one of 'x_test' / 'y_test'; give both or neither")
        if x_test is not None:
            test = (x_test, y_test)
    else:
        raise DataError(f"{path} has keys {sorted(arrays)}; expected {NPZ_LAYOUTS}")
    return RawData(X=X, y=y, source="npz", test=test)


def read_parquet(path: Path, target: str | None) -> RawData:
    names, columns = read_parquet_columns(path)
    return columns_to_raw(names, columns, target, path, "parquet")


def read_parquet_columns(path: Path) -> tuple[list[str], list[np.ndarray]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet files needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own exception types
        raise DataError(f"cannot read {path} as parquet: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"no rows in {path}; give a table with data rows")
    names = [str(name) for name in table.column_names]
    return names, [np.asarray(table.column(i).to_numpy(zero_copy_only=False)) for i in range(table.num_columns)]


def read_file(path: Path, target: str | None, sep: str | None = None) -> RawData:
    """Dispatch on the path: IDX directory, or a file by extension."""
    try:
        return _read_file(path, target, sep)
    except (PermissionError, IsADirectoryError) as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}; check the {param('data')} path and its "
                        "permissions") from None


def _read_file(path: Path, target: str | None, sep: str | None) -> RawData:
    suffix = "" if path.is_dir() else path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_csv(path, target, "\t" if suffix == ".tsv" and sep is None else sep)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, target)
    if suffix not in ("", ".npz") or (suffix == "" and not path.is_dir()):
        raise DataError(f"unsupported data file '{path.name}' (extension '{suffix or 'none'}'); "
                        f"supported: {SUPPORTED}")
    if target is not None:
        raise DataError(f"{param('target')} applies to .csv and .parquet files only; {path} has no named columns")
    return read_npz(path) if suffix == ".npz" else read_idx_dir(path)
