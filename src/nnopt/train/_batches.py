"""Where fit() gets its batches: in-memory tensors by index slicing (fast path), or a user's torch
Dataset through a DataLoader."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from nnopt.data import Data, DatasetSplit, batch_count, epoch_batches
from nnopt.train._parallel import Parallel
from nnopt.train._setup import training_targets

EVAL_CHUNK = 8192  # rows per forward pass when evaluating


class TensorSource:
    """A split already in memory: moved to the device once, shuffled once per epoch, sliced."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor):
        self.X, self.Y = X, Y

    def __len__(self) -> int:
        return len(self.X)

    def batches(self, batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return epoch_batches(self.X, self.Y, batch, generator if batch < len(self.X) else None)

    def outputs(self, net: nn.Module, parallel: Parallel | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's outputs for every row. In a parallel group each rank computes a contiguous 1/world of the
        rows and every rank gets all of them (the per-epoch evaluation no longer waits on rank 0 alone)."""
        X = self.X
        if parallel is not None:
            n = len(X)
            X = X[n * parallel.rank // parallel.world:n * (parallel.rank + 1) // parallel.world]
        outputs = torch.cat([net(X[i:i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK)]) if len(X) else \
            net(self.X[:1])[:0]  # no rows here: an empty block of the right width
        return (outputs if parallel is None else parallel.gather_rows(outputs, len(self.X))), self.Y


class LoaderSource:
    """A split of a torch Dataset, loaded batch by batch; rows are flattened for nnopt's own models."""

    def __init__(self, split: DatasetSplit, data: Data, device: torch.device, flatten: bool):
        self.split, self.data, self.device, self.flatten = split, data, device, flatten

    def __len__(self) -> int:
        return len(self.split)

    def _prepare(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xb = xb.to(self.device, torch.float32)
        if self.flatten:
            xb = xb.reshape(len(xb), -1)
        return xb, training_targets(yb, self.data.task, self.data.n_outputs).to(self.device)

    def batches(self, batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # as epoch_batches: no lone last row after larger batches (batch normalization cannot train on one row);
        # a DataLoader cannot join it to the batch before, so it sits out this epoch (a different row each epoch)
        n = len(self.split)
        lone = batch_count(n, batch) < -(-n // batch)
        loader = DataLoader(self.split.dataset, batch_size=batch, shuffle=True, generator=generator, drop_last=lone)
        return (self._prepare(xb, yb) for xb, yb in loader)

    def outputs(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        outs, targets = [], []
        for xb, yb in DataLoader(self.split.dataset, batch_size=1024):
            xb, yb = self._prepare(xb, yb)
            outs.append(net(xb))
            targets.append(yb)
        return torch.cat(outs), torch.cat(targets)


def make_source(data: Data, split: str, device: torch.device,
                sample_shape: tuple[int, ...]) -> TensorSource | LoaderSource:
    """The batches of a split, each sample of `sample_shape`: (n_features,) flat rows for nnopt's own models,
    the data's own shape for a user's module (in-memory rows are stored flat; the reshape is a view)."""
    part = getattr(data, split)
    flat = tuple(sample_shape) == (data.n_features,)
    if isinstance(part, DatasetSplit):
        return LoaderSource(part, data, device, flatten=flat)
    X = part.X if flat else part.X.reshape(len(part.X), *sample_shape)
    return TensorSource(X.to(device), training_targets(part.y, data.task, data.n_outputs).to(device))
