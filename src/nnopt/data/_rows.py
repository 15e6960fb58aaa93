"""Rows as a source holds them — not split, not scaled — for using a trained model on new data.

A table (.csv, .parquet) is matched to the model's feature columns by name, so its columns may come in any
order; built-in names, .npz and .npy files, IDX directories and arrays are taken by position (a .npy file alone is rows
without labels; "X.npy,y.npy" or an (X, y) pair of .npy paths, rows and labels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nnopt.data._files import _target_column, check_duplicates, parse_csv, read_parquet_columns
from nnopt.data._images import image_rows, is_image_source
from nnopt.data._load import _frame_columns, _resolve, is_frame, npy_pair
from nnopt.data._memmap import _npy, is_memmap_source
from nnopt.data._torch_dataset import is_torch_source, torch_rows
from nnopt.data._values import as_numbers
from nnopt.data._prepare import _split_rows
from nnopt.data._types import Data, RawData
from nnopt.errors import DataError, param

TABLES = (".csv", ".tsv", ".parquet", ".pq")


def load_rows(source, *, features: Sequence[str] | None = None, target: str | None = None,
              ignore: Sequence[str] = (), raw_columns: bool = False, sep: str | None = None,
              image: dict | None = None, labelled: bool = True, strict: bool = False) -> RawData:
    """The rows of `source` in file order, with their labels when the source has them (else y is None).

    For a table: `target` names the label column (it may be absent). With `raw_columns` (a model trained on
    a table, which types and encodes its columns itself) every other column comes back as read, in
    `columns`. Otherwise `features` (the model's feature names) picks the feature columns by name — a
    missing one, or a column that is neither a feature, the target nor in `ignore`, is a DataError naming
    it; without `features` every other column is a feature.
    Any other source (a built-in name, .npz, IDX directory, (X, y) tuple, an X array, or a torch Dataset or
    DataLoader, read through whole) keeps its order;
    a shipped test split stays in `test`.
    `image` (the size and channels a model was trained on): a folder of images or image files, decoded to them;
    `labelled` reads class folders as labels (an ImageFolder), else any layout; `strict` stops at a bad file.
    """
    if is_image_source(source):
        if image is None:  # else a folder would be read as an IDX directory, and file names as values
            what = f"{source} is a folder of images" if isinstance(source, (str, os.PathLike)) and \
                Path(source).is_dir() else "these are image files"
            raise DataError(f"{what}, and the model records no image size to decode them to (it was not trained "
                            "on an image folder); give the rows in the shape the model takes as arrays: an .npz file "
                            "(x, y), or from Python X, (X, y) or a torch Dataset")
        return image_rows(source, image, labels=labelled, strict=strict)
    if is_frame(source) or (isinstance(source, tuple) and len(source) == 2 and is_frame(source[0])):
        frame, labels = (source, None) if is_frame(source) else source
        by_name = _frame_columns(frame, "the DataFrame")
        y = labels if labels is not None else (by_name.get(target) if target is not None else None)
        if y is not None:
            y = _target_column(target or "y", np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y))
        return _select("the DataFrame", list(by_name), by_name, y, features, target, ignore, raw_columns,
                       "dataframe")
    if isinstance(source, Data):
        raise DataError("a prepared Data is already split and scaled; give the raw rows (a path, a dataset "
                        "name, an (X, y) tuple or an X array)")
    if isinstance(source, (np.ndarray, torch.Tensor, list)):
        return RawData(X=_array(source), y=None, source="arrays")
    if is_torch_source(source):  # its samples in its order, as the source transforms them
        X, y, names = torch_rows(source, labelled=labelled)
        return RawData(X=X, y=y, source="torch-dataset", class_names=names)
    source = npy_pair(source)
    if is_memmap_source(source):  # .npy files: X alone (rows to predict), or the (X, y) pair a model trained on
        X, y = (source, None) if isinstance(source, (str, os.PathLike)) else source
        X = np.asarray(_npy(X, "data") if isinstance(X, (str, os.PathLike)) else X)
        y = None if y is None else np.asarray(_npy(y, "data") if isinstance(y, (str, os.PathLike)) else y)
        return RawData(X=X, y=y, source="npy")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() in TABLES:
            return _table(path, features, target, ignore, raw_columns, sep)
    _, raw = _resolve(source, None)
    return raw


def split_positions(n: int, labels: np.ndarray | None, has_test: bool, val_fraction: float,
                    test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, val, test) row positions exactly as load_data splits n rows with these settings.

    `labels`: class codes 0..K-1 (stratification) or None for regression; with `has_test` the source
    ships its own test split and test is None.
    """
    return _split_rows(n, labels, has_test, val_fraction, test_fraction, seed)


def _array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except ValueError as exc:
        raise DataError(f"rows cannot be made into an array ({exc}); give rows of equal length") from None


def _table(path: Path, features: Sequence[str] | None, target: str | None, ignore: Sequence[str],
           raw_columns: bool, sep: str | None) -> RawData:
    if path.suffix.lower() in (".parquet", ".pq"):
        names, columns = read_parquet_columns(path)
    else:
        names, table, columns, _ = parse_csv(path, sep="\t" if path.suffix.lower() == ".tsv" and sep is None else sep)
        if table is not None:
            columns = [table[:, i] for i in range(table.shape[1])]
    check_duplicates(names, path)
    by_name = dict(zip(names, columns))
    y = _target_column(target, by_name[target]) if target is not None and target in by_name else None
    return _select(path.name, names, by_name, y, features, target, ignore, raw_columns,
                   path.suffix.lower().lstrip("."))


def _select(what: str, names: list[str], by_name: dict, y, features: Sequence[str] | None, target: str | None,
            ignore: Sequence[str], raw_columns: bool, source: str) -> RawData:
    if raw_columns:
        columns = {name: np.asarray(values) for name, values in by_name.items() if name != target}
        return RawData(X=None, y=y, source=source, feature_names=list(columns),
                       target=target if y is not None else None, columns=columns)
    if features is None:
        wanted = [n for n in names if n != target and n not in ignore]
    else:
        wanted = list(features)
        _check_columns(what, names, wanted, target, ignore)
    if not wanted:
        raise DataError(f"{what} has no feature columns; give at least one")
    X = np.stack([_numbers(name, np.asarray(by_name[name])) for name in wanted], axis=1)
    return RawData(X=X, y=y, source=source, feature_names=wanted, target=target if y is not None else None)


def _numbers(name: str, values: np.ndarray) -> np.ndarray:
    numbers = as_numbers(values)
    if numbers is None:
        raise DataError(f"column '{name}' is not numeric but the model takes numbers there; fix the column or "
                        "retrain on this table (nnopt encodes text columns of the tables it trains on)")
    return numbers


def _check_columns(what: str, names: list[str], features: list[str], target: str | None,
                   ignore: Sequence[str]) -> None:
    listing = f"the model's features: {_listing(features)}"
    missing = [f for f in features if f not in names]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{what} has no column '{missing[0]}'{more}, a feature the model was trained on; "
                        f"add it ({listing})")
    known = set(features) | set(ignore) | ({target} if target else set())
    extra = [n for n in names if n not in known]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        label = f"; if it holds the labels, name it with {param('target')}" if target is not None else ""
        raise DataError(f"{what} has a column '{extra[0]}'{more} the model was not trained on; drop it"
                        f"{label} ({listing})")


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
