"""Streamed splits (a torch Dataset's, a memory-mapped array's) read into memory as Splits, for the steps that
score and check whole splits at once (compress), up to a size limit."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import DataLoader

from nnopt.errors import DataError, param
from nnopt.data._memmap import MemmapSplit
from nnopt.data._torch_dataset import DatasetSplit, torch_rows
from nnopt.data._types import Data, Split

IN_MEMORY_BYTES = 512 * 2**20  # float32 rows of all three splits together
READ_BATCH = 256  # samples a DataLoader collates at a time while reading a torch Dataset


def in_memory(data: Data, what: str, max_bytes: int = IN_MEMORY_BYTES) -> Data:
    """`data` with every streamed split read into memory: float32 rows (n, n_features) as the network was trained
    on them (a Dataset's samples as it returns them, flattened; a memory-mapped array's rows scaled), labels as
    class codes or targets. In-memory data is returned as it is. `what` names the step in the message when the
    rows of all splits together would take more than `max_bytes`."""
    names = [name for name in ("train", "val", "test") if isinstance(getattr(data, name), (DatasetSplit, MemmapSplit))]
    if not names:
        return data
    rows = sum(len(getattr(data, name)) for name in names)
    size = rows * data.n_features * 4
    if size > max_bytes:
        raise DataError(f"{what} reads the rows of {data.name} into memory: {rows} samples of {data.n_features} "
                        f"values take {size / 2**20:.3g} MB, over its {max_bytes / 2**20:.3g} MB limit; give "
                        f"{param('data')} fewer samples (a torch.utils.data.Subset of them)")
    return dataclasses.replace(data, **{name: _read(getattr(data, name), data) for name in names})


def _read(split: DatasetSplit | MemmapSplit, data: Data) -> Split:
    if isinstance(split, MemmapSplit):
        return Split(split.read(np.arange(len(split))), split.y)
    labels = torch.long if data.task == "classification" else torch.float32
    if len(split) == 0:
        return Split(torch.zeros(0, data.n_features), split.y[:0].to(labels))
    user = split.loader  # its collate_fn makes the batches training read; its sampler and drop_last do not matter
    loader = DataLoader(split.dataset, batch_size=READ_BATCH,
                        **({"collate_fn": user.collate_fn} if user is not None else {}))
    X, y, _ = torch_rows(loader)  # the samples in order, as predict and evaluate read a torch source
    y = torch.from_numpy(y).to(labels)
    return Split(torch.from_numpy(X).reshape(len(X), -1), y.reshape(-1) if data.task == "classification" else y)
