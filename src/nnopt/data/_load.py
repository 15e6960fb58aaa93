"""load_data: resolve the source (built-in name, path, arrays, Data), read it, then prepare it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from nnopt.errors import DataError, describe, did_you_mean, param
from nnopt.data._builtin import DATASETS
from nnopt.data._files import read_file
from nnopt.data._prepare import SCALES, check_fractions, choice, prepare
from nnopt.data._torch_dataset import from_torch_dataset
from nnopt.data._types import TASKS, Data, RawData


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or Path(text).suffix != "" or text.startswith("~")


def _resolve(source, target: str | None) -> tuple[str, RawData]:
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
            return str(source), read_file(path, target)
        if isinstance(source, str) and not _looks_like_path(source):
            names = DATASETS.names()
            hint = did_you_mean(source, names)
            raise DataError(f"unknown dataset '{source}'{hint} choices: {', '.join(names)} "
                            "(or give a path to a .csv, .npz, .parquet file or an IDX directory)")
        raise DataError(f"file not found: {source}; check the {param('data')} path")
    raise DataError(f"{param('data')} must be a dataset name, a path, an (X, y) tuple, a torch Dataset or a Data; "
                    f"got {describe(source)}")


def load_data(data, *, target: str | None = None, task: str | None = None, val_fraction: float = 0.15,
              test_fraction: float = 0.15, seed: int = 0, scale: str = "auto") -> Data:
    """Load a dataset and return it split (seeded, stratified for classification) and scaled on train.

    ``data``: a built-in name (see ``list_datasets()``), a path to a .csv / .npz / .parquet file or an
    MNIST-layout IDX directory, an ``(X, y)`` tuple of arrays/tensors/lists, a torch ``Dataset`` (batched through a DataLoader), or a
    ``Data`` (returned as is).
    ``task``: None or "auto" detects it from the labels (see ``detect_task``). ``scale``: "auto" (pixels are
    divided by their max, other features standardized), "standard", "minmax" or "none".
    """
    if isinstance(data, Data):
        return data
    if task == "auto":
        task = None
    if task is not None:
        choice("task", task, TASKS)
    if isinstance(data, Dataset):
        return from_torch_dataset(data, task=task, val_fraction=val_fraction, test_fraction=test_fraction,
                                  seed=int(seed))
    choice("scale", scale, SCALES)
    check_fractions(val_fraction, test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"{param('seed')} must be an integer; got {seed!r}")
    name, raw = _resolve(data, target)
    return prepare(raw, name=name, task=task, val_fraction=val_fraction, test_fraction=test_fraction,
                   seed=int(seed), scale=scale)
