"""A user's torch.utils.data.Dataset: split by index (seeded) and batched through a DataLoader.

Its samples are used as the Dataset returns them (its own transforms apply; nnopt scales nothing),
features are flattened to rows, and classification labels must already be class indices 0..K-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, random_split

from nnopt.errors import DataError, param
from nnopt.data._prepare import check_fractions, detect_task
from nnopt.data._types import Data


@dataclass
class DatasetSplit:
    """One split of a torch Dataset: the Subset to load batches from, and its labels (read once)."""

    dataset: Dataset
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.dataset)


def _labels(dataset: Dataset) -> torch.Tensor:
    targets = getattr(dataset, "targets", None)  # torchvision-style datasets expose their labels
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]
    values = [t.item() if isinstance(t, torch.Tensor) and t.numel() == 1 else t for t in targets]
    return torch.as_tensor(np.asarray(values))


def from_torch_dataset(dataset: Dataset, *, task: str | None, val_fraction: float, test_fraction: float,
                       seed: int) -> Data:
    check_fractions(val_fraction, test_fraction)
    n = len(dataset)
    if n == 0:
        raise DataError("no rows in the torch Dataset; it has length 0")
    sample = dataset[0]
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError("a torch Dataset must return (features, label) pairs")
    x0 = torch.as_tensor(sample[0])
    y = _labels(dataset)
    task = task or detect_task(y)
    n_classes = None
    if task == "classification":
        if y.dtype.is_floating_point and not torch.equal(y, y.round()):
            raise DataError(f"labels are not class labels; use {param('task', 'regression')}")
        y = y.long()
        n_classes = int(y.max()) + 1
        if int(y.min()) < 0 or len(torch.unique(y)) < 2:
            raise DataError("a torch Dataset's labels must be class indices 0..K-1 with at least two classes")
    else:
        y = y.float()
    n_test = max(1, round(n * test_fraction))
    n_val = round(n * val_fraction)
    parts = random_split(range(n), [n - n_val - n_test, n_val, n_test], generator=torch.Generator().manual_seed(seed))
    splits = [DatasetSplit(Subset(dataset, list(p.indices)), y[list(p.indices)]) for p in parts]
    shape = tuple(x0.shape) if x0.dim() > 1 else None
    return Data(name=type(dataset).__name__, task=task, train=splits[0], val=splits[1], test=splits[2],
                n_features=int(x0.numel()), n_classes=n_classes, input_shape=shape,
                feature_names=[f"x{i}" for i in range(int(x0.numel()))],
                class_names=[str(i) for i in range(n_classes)] if n_classes else None, target_scale=None,
                preprocessing={"scale": "none", "source": "torch-dataset"}, source="torch-dataset")
