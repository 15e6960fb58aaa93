"""A user's torch data: a map-style Dataset, an IterableDataset or a DataLoader, read batch by batch in training.

Samples are used as the source returns them (its own transforms apply; nnopt scales nothing), and
classification labels must already be class indices 0..K-1. Labels are read without touching the samples
when the source says what they are: task= with n_classes=, the `.classes` list of torchvision's datasets
(MNIST, CIFAR10, ImageFolder), their `.targets` (SVHN and STL10 name it `.labels`). Otherwise a map-style
Dataset is read once, labels only; an IterableDataset cannot be read ahead, so it needs task= (and n_classes=).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, default_collate, random_split

from nnopt.errors import DataError, describe, param
from nnopt.data._prepare import check_fractions, detect_task
from nnopt.data._types import Data

TORCH_SOURCES = (Dataset, DataLoader)


@dataclass
class DatasetSplit:
    """One split of a torch source: what to read its samples from, and its labels when they were read.

    dataset: a Subset (a split of a map-style Dataset), or the source whole. loader: a user's DataLoader, which
    is iterated as it is. y: the labels, or, when none were read, an empty tensor whose width is the target's."""

    dataset: Dataset
    y: torch.Tensor
    loader: DataLoader | None = None
    size: int = 0

    def __len__(self) -> int:
        return self.size

    def empty(self) -> DatasetSplit:
        return DatasetSplit([], self.y[:0], None, 0)


def is_torch_source(value) -> bool:
    return isinstance(value, TORCH_SOURCES)


def _parts(source, name: str) -> tuple[Dataset, DataLoader | None]:
    """(the Dataset, the user's DataLoader or None) of a torch source given as `name`."""
    if isinstance(source, DataLoader):
        if source.batch_size is None:
            raise DataError(f"{param(name)} is a DataLoader with batch_size=None (no batching); give it a "
                            "batch_size, or pass its Dataset")
        return source.dataset, source
    return source, None


def _length(dataset: Dataset, name: str) -> int:
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{param(name)} is an IterableDataset without __len__; define __len__ (its samples per "
                        "epoch), which sizes the epoch and its learning-rate schedule") from None
    if n == 0:
        raise DataError(f"no samples in {param(name)}: {type(dataset).__name__} has length 0")
    return int(n)


def _first_batch(dataset: Dataset, loader: DataLoader | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample collated into a batch of one (by the DataLoader's collate_fn when there is one): its structure
    checked, read with a single __getitem__ (an IterableDataset: its first sample)."""
    sample = next(iter(dataset)) if isinstance(dataset, IterableDataset) else dataset[0]
    try:
        batch = (loader.collate_fn if loader is not None else default_collate)([sample])
    except (TypeError, RuntimeError) as exc:
        raise DataError(f"the samples of {param(name)} cannot be batched ({exc}); return (features, label) with "
                        "features a tensor or array") from None
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"the samples of {param(name)} must be (features, label) pairs; got {describe(sample)}")
    xb, yb = (torch.as_tensor(v) for v in batch)
    if not (xb.dtype.is_floating_point or xb.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                     torch.int64, torch.bool)):
        raise DataError(f"the features of {param(name)} must be numbers; got {xb.dtype}")
    return xb, yb


def _known_labels(dataset: Dataset) -> torch.Tensor | None:
    """The labels a dataset states without reading its samples: `.targets` / `.labels`, through Subsets."""
    if isinstance(dataset, Subset):
        base = _known_labels(dataset.dataset)
        return None if base is None else base[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None and not callable(values):
            try:
                return _stack(values)
            except (TypeError, ValueError, RuntimeError):
                return None
    return None


def _stack(values) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values)
    return torch.stack([torch.as_tensor(v) for v in values]) if len(values) else torch.zeros(0)


def _class_names(dataset: Dataset) -> list[str] | None:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    names = getattr(dataset, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) >= 2 and not callable(names):
        return [str(n) for n in names]
    return None


def _read_labels(dataset: Dataset) -> torch.Tensor:
    """One pass over a map-style Dataset, keeping only the labels."""
    return _stack([dataset[i][1] for i in range(len(dataset))])


def _labels(dataset: Dataset, task: str | None, n_classes: int | None, y0: torch.Tensor,
            name: str) -> tuple[str, int | None, torch.Tensor | None, list[str] | None]:
    """(task, n_classes, the labels or None when not read, class names)."""
    names = _class_names(dataset)
    if names is not None and task != "regression":
        if n_classes is not None and n_classes != len(names):
            raise DataError(f"{param('n_classes', n_classes)} but {type(dataset).__name__}.classes names "
                            f"{len(names)} classes; drop {param('n_classes')} or fix .classes")
        task, n_classes = "classification", len(names)
    if n_classes is not None:
        task = "classification"
    y = _known_labels(dataset)
    if y is None and (task is None or n_classes is None and task == "classification"):
        if isinstance(dataset, IterableDataset):
            raise DataError(f"the labels of an IterableDataset cannot be read before training; give "
                            f"{param('task')} and, for classification, {param('n_classes')}")
        y = _read_labels(dataset)
    if y is not None:
        task = task or detect_task(y)
        if task == "classification":
            if y.dtype.is_floating_point and not torch.equal(y, y.round()):
                raise DataError(f"the labels of {param(name)} are not class indices; use "
                                f"{param('task', 'regression')}")
            y = y.long().reshape(-1)
            if len(y) and int(y.min()) < 0:
                raise DataError(f"the labels of {param(name)} must be class indices 0..K-1; got {int(y.min())}")
            top = int(y.max()) + 1 if len(y) else 0
            if n_classes is not None and top > n_classes:
                raise DataError(f"a label of {param(name)} is {top - 1}, outside 0..{n_classes - 1} for "
                                f"{param('n_classes', n_classes)}; give the number of classes")
            n_classes = n_classes or top
            if n_classes < 2:
                raise DataError(f"the labels of {param(name)} must be class indices 0..K-1 with at least two "
                                "classes")
        else:
            y = y.float()
    if task == "regression" and y is None:
        width = int(y0[0].numel())
        y = torch.zeros((0, width)) if y0.dim() > 1 and width > 1 else torch.zeros(0)
    return task, n_classes, y, names


def _whole(dataset: Dataset, y: torch.Tensor | None, loader: DataLoader | None, n: int) -> DatasetSplit:
    return DatasetSplit(dataset, y if y is not None and len(y) == n else _none(y), loader, n)


def _none(y: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros(0, dtype=torch.long) if y is None else y[:0]


def from_torch_dataset(source, *, task: str | None, val_fraction: float, test_fraction: float, seed: int,
                       n_classes: int | None = None, val_data=None) -> Data:
    """A Data over a torch source. A map-style Dataset is split by index (seeded) into train / val / test
    (train / test when val_data is given); an IterableDataset or a DataLoader trains whole, validated on
    val_data when given, with no test split."""
    check_fractions(val_fraction, test_fraction)
    dataset, loader = _parts(source, "data")
    n = _length(dataset, "data")
    xb, yb = _first_batch(dataset, loader, "data")
    task, n_classes, y, names = _labels(dataset, task, n_classes, yb, "data")
    if loader is None and not isinstance(dataset, IterableDataset):
        n_test = max(1, round(n * test_fraction))
        n_val = 0 if val_data is not None else round(n * val_fraction)
        parts = random_split(range(n), [n - n_val - n_test, n_val, n_test],
                             generator=torch.Generator().manual_seed(seed))
        known = y is not None and len(y) == n
        train, val, test = (DatasetSplit(Subset(dataset, list(p.indices)),
                                         y[list(p.indices)] if known else _none(y), None, len(p.indices))
                            for p in parts)
    else:
        train = _whole(dataset, y, loader, n)
        val = test = train.empty()
    if val_data is not None:
        val = _val_split(val_data, xb, train)
    x0 = xb[0]
    shape = tuple(x0.shape) if x0.dim() > 1 else None
    return Data(name=type(dataset).__name__, task=task, train=train, val=val, test=test,
                n_features=int(x0.numel()), n_classes=n_classes, input_shape=shape,
                feature_names=[f"x{i}" for i in range(int(x0.numel()))],
                class_names=names or ([str(i) for i in range(n_classes)] if n_classes else None), target_scale=None,
                preprocessing={"scale": "none", "source": "torch-dataset"}, source="torch-dataset")


def _val_split(val_data, xb: torch.Tensor, train: DatasetSplit) -> DatasetSplit:
    if not is_torch_source(val_data):
        raise DataError(f"{param('val_data')} must be a torch Dataset, IterableDataset or DataLoader (as "
                        f"{param('data')} is); got {describe(val_data)}")
    dataset, loader = _parts(val_data, "val_data")
    n = _length(dataset, "val_data")
    vx, _ = _first_batch(dataset, loader, "val_data")
    if vx[0].numel() != xb[0].numel():
        raise DataError(f"the samples of {param('val_data')} have {vx[0].numel()} features, those of "
                        f"{param('data')} {xb[0].numel()}; they must match")
    return DatasetSplit(dataset, train.y[:0], loader, n)


def torch_rows(source, *, labelled: bool = True,
               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """Every sample of a torch source, in its order, as (X, y) arrays for using a trained model, and the
    names of its class indices (`.classes`) when it has them: a map-style Dataset by index, an IterableDataset
    as it yields, a DataLoader batch by batch as it is (shuffled if it shuffles). Samples are (features, label)
    pairs, or features alone when labels are not wanted."""
    dataset, loader = _parts(source, "data")
    if not isinstance(dataset, IterableDataset):
        _length(dataset, "data")  # an empty one is an error here, as in training
    batches = loader if loader is not None else DataLoader(dataset, batch_size=batch_size, shuffle=False)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    try:
        for batch in batches:
            if isinstance(batch, (tuple, list)) and len(batch) == 1:  # (features,) samples: TensorDataset(X)
                batch = batch[0]
            pair = isinstance(batch, (tuple, list)) and len(batch) == 2
            if not pair and (labelled or not isinstance(batch, torch.Tensor)):
                got = f"samples of {len(batch)} items" if isinstance(batch, (tuple, list)) else \
                    "features alone" if isinstance(batch, torch.Tensor) else f"samples batched to {describe(batch)}"
                why = " (evaluate needs the labels; nnopt.predict takes features alone)" if labelled else ""
                raise DataError(f"the samples of {param('data')} must be (features, label) pairs"
                                f"{'' if labelled else ' or features alone'}; got {got}{why}")
            xb = torch.as_tensor(batch[0] if pair else batch)
            xs.append(xb.detach().cpu().numpy())
            if pair:
                ys.append(torch.as_tensor(batch[1]).detach().cpu().numpy())
    except (TypeError, RuntimeError) as exc:
        raise DataError(f"the samples of {param('data')} cannot be batched ({' '.join(str(exc).split())[:200]}); "
                        "return (features, label) with features a tensor or array") from None
    if not xs:
        raise DataError(f"no samples in {param('data')}: {type(dataset).__name__} yielded none")
    X = np.concatenate(xs)
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"the features of {param('data')} must be numbers; got {X.dtype}")
    y = np.concatenate(ys) if ys and len(ys) == len(xs) and labelled else None
    return X.astype(np.float32, copy=False), y, _class_names(dataset)
