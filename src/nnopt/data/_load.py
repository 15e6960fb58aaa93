"""load_data: resolve the source (built-in name, path, arrays, Data), read it, then prepare it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nnopt.errors import DataError, describe, did_you_mean, keywords_checked, param
from nnopt.data._builtin import DATASETS
from nnopt.data._images import has_images, load_image_folder
from nnopt.data._files import _target_column, check_duplicates, check_separator, pick_target, read_file, target_name
from nnopt.data._table import table_options
from nnopt.data._prepare import SCALES, check_fractions, choice, prepare
from nnopt.data._memmap import from_memmap, is_memmap_source
from nnopt.data._torch_dataset import from_torch_dataset, is_torch_source
from nnopt.data._types import TASKS, Data, RawData


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or Path(text).suffix != "" or text.startswith("~")


def is_frame(value) -> bool:
    """A pandas DataFrame (recognized without importing pandas)."""
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns") and hasattr(value, "iloc")


def _frame_columns(frame, what: str) -> dict[str, np.ndarray]:
    """A pandas DataFrame's columns as numpy arrays; a categorical dtype becomes its values (NaN -> None)."""
    names = [str(name) for name in frame.columns]
    check_duplicates(names, what)
    out = {}
    for name, (_, series) in zip(names, frame.items()):
        if str(series.dtype) == "category" or str(series.dtype).startswith(("string", "boolean", "Int", "UInt",
                                                                            "Float")):
            values = series.astype(object).where(series.notna(), None).to_numpy()
        else:
            values = series.to_numpy()
        out[name] = values
    return out


def _from_frame(frame, y, target: str | None) -> RawData:
    """A DataFrame (target a column of it, default the last) or a (DataFrame, labels) pair -> a table."""
    columns = _frame_columns(frame, "the DataFrame")
    if y is None:
        names = list(columns)
        t = pick_target(names, target, "the DataFrame")
        target = names[t]
        y = columns.pop(target)
    else:
        if target is not None:
            raise DataError(f"{param('target')} names a column of a DataFrame given alone; with (X, y) the labels "
                            "are y already")
        target = str(getattr(y, "name", None) or "y")
        y = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
        if len(y) != len(frame):
            raise DataError(f"X has {len(frame)} rows but y has {len(y)}; they must match")
    if len(frame) == 0:
        raise DataError("no rows in the DataFrame; give data with at least a few rows")
    y = np.asarray(y)
    if y.dtype == object:
        y = _target_column(target, y)
    return RawData(X=None, y=y, source="dataframe", feature_names=list(columns), target=target, columns=columns)


def _resolve(source, target: str | None, sep: str | None = None) -> tuple[str, RawData]:
    if is_frame(source):
        return "dataframe", _from_frame(source, None, target)
    if isinstance(source, tuple) and len(source) == 2 and is_frame(source[0]):
        return "dataframe", _from_frame(source[0], source[1], target)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise DataError(f"an arrays source must be a tuple (X, y); got a tuple of {len(source)} items")
        if target is not None:
            raise DataError(f"{param('target')} applies to .csv and .parquet files only; (X, y) arrays have no "
                            "columns")
        return "arrays", RawData(X=source[0], y=source[1], source="arrays")
    if isinstance(source, str) and source in DATASETS:
        if target is not None:
            raise DataError(f"{param('target')} applies to .csv and .parquet files only; '{source}' is a built-in "
                            "dataset")
        X, y, meta = DATASETS.get(source).factory()
        return source, RawData(X=X, y=y, source="builtin", **meta)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.exists():
            return str(source), read_file(path, target, sep)
        if isinstance(source, str) and not _looks_like_path(source):
            names = DATASETS.names()
            hint = did_you_mean(source, names)
            raise DataError(f"unknown dataset '{source}'{hint} choices: {', '.join(names)} "
                            "(or give a path to a .csv, .npz, .parquet file or an IDX directory)")
        raise DataError(f"file not found: {source}; check the {param('data')} path")
    raise DataError(f"{param('data')} must be a dataset name, a path, an (X, y) tuple, a torch Dataset or a Data; "
                    f"got {describe(source)}")


def npy_pair(data):
    """"X.npy,y.npy" (how the command line gives an (X, y) pair of .npy files) -> the pair; anything else as is."""
    if isinstance(data, str) and "," in data:
        parts = [part.strip() for part in data.split(",")]
        if len(parts) == 2 and all(part.lower().endswith(".npy") for part in parts):
            return tuple(parts)
    return data


@keywords_checked
def load_data(data, *, target: str | None = None, task: str | None = None, val_fraction: float = 0.15,
              test_fraction: float = 0.15, seed: int = 0, scale: str = "auto", drop=None, categorical=None,
              numeric=None, sep: str | None = None, image_size=None, strict: bool = False,
              n_classes: int | None = None, val_data=None) -> Data:
    """Load a dataset and return it split (seeded, stratified for classification) and scaled on train.

    ``data``: a built-in name (see ``list_datasets()``), a path to a .csv / .npz / .parquet file or an
    MNIST-layout IDX directory, an ``(X, y)`` tuple of arrays/tensors/lists, a torch ``Dataset``,
    ``IterableDataset`` or ``DataLoader`` (read batch by batch), a ``.npy`` file or an ``(X, y)`` pair of
    ``.npy`` paths / ``np.memmap`` arrays (memory-mapped, read batch by batch), or a ``Data`` (returned as is).
    For a torch source: ``n_classes`` (with ``task``, no pass over the samples reads labels) and ``val_data``
    (validation samples of its own); see docs/data.md.
    ``task``: None or "auto" detects it from the labels (see ``detect_task``). ``scale``: "auto" (pixels are
    divided by their max, float (n, C, H, W) images standardized per channel, other features per feature),
    "standard", "channel", "minmax" or "none".
    A table (.csv, .parquet, a pandas DataFrame) may hold text, empty cells and ID columns: each column is typed
    and encoded as docs/data.md describes; ``drop`` / ``categorical`` / ``numeric`` (column names) override the
    typing, ``sep`` the CSV separator (sniffed by default).
    An image folder (ImageFolder layout: one subfolder per class, optional train/ val/ test/) is decoded with
    Pillow: ``image_size`` (N or "HxW"; default the images' common size, else 32) and ``strict`` (a file that does
    not decode is an error instead of being skipped and counted).
    """
    if isinstance(data, Data):
        return data
    data = npy_pair(data)
    target = target_name(target)
    if task == "auto":
        task = None
    if task is not None:
        choice("task", task, TASKS)
    if is_torch_source(data):
        return from_torch_dataset(data, task=task, val_fraction=val_fraction, test_fraction=test_fraction,
                                  seed=int(seed), n_classes=n_classes, val_data=val_data)
    for key, value in (("n_classes", n_classes), ("val_data", val_data)):
        if value is not None:
            raise DataError(f"{param(key)} applies to a torch Dataset, IterableDataset or DataLoader; "
                            f"{describe(data)} is not one")
    choice("scale", scale, SCALES)
    check_fractions(val_fraction, test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"{param('seed')} must be an integer; got {seed!r}")
    options = table_options(drop, categorical, numeric)
    if isinstance(data, (str, os.PathLike)) and not (isinstance(data, str) and data in DATASETS):
        path = Path(data).expanduser()
        if path.is_dir() and has_images(path):
            if any(options.values()) or sep is not None:
                key = next((k for k, v in options.items() if v), "sep")
                raise DataError(f"{param(key)} applies to tables (.csv, .parquet, a DataFrame); {data} is an image "
                                "folder")
            return load_image_folder(path, image_size=image_size, strict=bool(strict), val_fraction=val_fraction,
                                     test_fraction=test_fraction, seed=int(seed), scale=scale, name=str(data))
    for key, value in (("image_size", image_size), ("strict", strict)):
        if value:
            raise DataError(f"{param(key)} applies to image folders; {describe(data)} is not one")
    if is_memmap_source(data):
        if any(options.values()) or sep is not None or target is not None:
            raise DataError(f"{param('target')}, {param('drop')} and the other column options apply to tables; "
                            f"a .npy array has no columns")
        return from_memmap(data, task=task, val_fraction=val_fraction, test_fraction=test_fraction, seed=int(seed),
                           scale=scale)
    name, raw = _resolve(data, target, check_separator(sep))
    return prepare(raw, name=name, task=task, val_fraction=val_fraction, test_fraction=test_fraction,
                   seed=int(seed), scale=scale, options=options)
