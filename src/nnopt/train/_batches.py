"""Where fit() gets its batches: in-memory tensors by index slicing (the fast path), a user's torch Dataset /
IterableDataset / DataLoader through a DataLoader, or a memory-mapped array read batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, Sampler, default_collate

from nnopt.data import Data, DatasetSplit, MemmapSplit, batch_count, epoch_batches
from nnopt.errors import DataError, describe, param
from nnopt.train._chunk import scoring_chunk
from nnopt.train._parallel import Parallel
from nnopt.train._setup import training_targets

# scoring a streamed split with workers: each worker reads READS_PER_WORKER batches of a scoring chunk (at least
# MIN_READ samples each), which are joined into the chunk
READS_PER_WORKER, MIN_READ = 4, 64

# A part of a global batch: given the batch's sample indices, the ones to read (a DDP rank's share of them)
Part = Callable[[Sequence[int]], Sequence[int]]


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
        step = scoring_chunk(net, X.shape[1:], X.dtype)  # rows per forward pass, sized by the activations
        outputs = torch.cat([net(X[i:i + step]) for i in range(0, len(X), step)]) if len(X) else \
            net(self.X[:1])[:0]  # no rows here: an empty block of the right width
        return (outputs if parallel is None else parallel.gather_rows(outputs, len(self.X))), self.Y


class LoaderSource:
    """A split of a torch Dataset, IterableDataset or DataLoader, read batch by batch (nnopt's own DataLoader with
    num_workers / pin_memory, or the user's as it is); rows are flattened for nnopt's own models. Streamed: the
    loop takes this split's training metrics from the batches it trains on, not from a second pass."""

    streamed = True

    def __init__(self, split: DatasetSplit, data: Data, device: torch.device, flatten: bool, workers: int = 0,
                 pin: bool = False, sample_shape: tuple[int, ...] | None = None):
        self.split, self.data, self.device, self.flatten = split, data, device, flatten
        self.shape = tuple(sample_shape) if sample_shape is not None else (data.n_features,)  # as the net gets it
        self.workers, self.pin = workers, pin
        self.k = data.n_classes if data.task == "classification" else None
        self.loaders: dict[tuple[int, bool], DataLoader] = {}  # kept: persistent workers start once per run

    def __len__(self) -> int:
        return len(self.split)

    def _prepare(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(f"a batch of {param('data')} must be (features, labels); got {describe(batch)}")
        xb, yb = (torch.as_tensor(v) for v in batch)
        if self.k is not None and yb.device.type == "cpu" and len(yb):  # before the copy: no device sync
            low, high = int(yb.min()), int(yb.max())
            if low < 0 or high >= self.k:
                raise DataError(f"a label of {param('data')} is {low if low < 0 else high}, outside 0..{self.k - 1} "
                                f"for {self.k} classes; give {param('n_classes')} the number of classes")
        xb = xb.to(self.device, torch.float32, non_blocking=self.pin)
        if self.flatten:
            xb = xb.reshape(len(xb), -1)
        return xb, training_targets(yb, self.data.task, self.data.n_outputs).to(self.device, non_blocking=self.pin)

    def loader(self, batch: int, generator: torch.Generator | None) -> DataLoader:
        """The DataLoader of batches of `batch` samples, shuffled with `generator` (None: in order)."""
        key = (batch, generator is not None)
        if key not in self.loaders:
            self.loaders[key] = self._loader(batch, generator)
        return self.loaders[key]

    def _loader(self, batch: int, generator: torch.Generator | None) -> DataLoader:
        user, dataset = self.split.loader, self.split.dataset
        iterable = isinstance(dataset, IterableDataset)
        if user is not None:
            if batch == user.batch_size or generator is None and user.batch_size is not None:
                return user  # the user's loader as it is (evaluation reads it whole, whatever its batch size)
            shuffle = isinstance(user.sampler, RandomSampler)  # batch_size= replaces the loader's own
            return DataLoader(dataset, batch_size=batch, shuffle=shuffle, generator=generator if shuffle else None,
                              num_workers=user.num_workers, collate_fn=user.collate_fn, pin_memory=user.pin_memory,
                              drop_last=user.drop_last, timeout=user.timeout, worker_init_fn=user.worker_init_fn,
                              multiprocessing_context=user.multiprocessing_context,
                              persistent_workers=user.persistent_workers,
                              **({"prefetch_factor": user.prefetch_factor} if user.num_workers else {}))
        # as epoch_batches: no lone last row after larger batches (batch normalization cannot train on one row);
        # a DataLoader cannot join it to the batch before, so it sits out this epoch (a different row each epoch)
        n = len(self.split)
        lone = generator is not None and batch_count(n, batch) < -(-n // batch)
        shuffle = generator is not None and not iterable
        return DataLoader(dataset, batch_size=batch, shuffle=shuffle, generator=generator if shuffle else None,
                          drop_last=lone, num_workers=self.workers, pin_memory=self.pin,
                          persistent_workers=self.workers > 0)

    def steps(self, batch: int) -> int:
        """Batches in a training epoch (what a learning-rate schedule counts)."""
        return len(self._loader(batch, torch.Generator()))

    @property
    def reads_parts(self) -> bool:
        """Whether batches(part=...) reads only a part of each batch: a map-style Dataset batched with torch's
        default collate, which stacks samples, so the part's batch is that slice of the whole batch (a user's
        collate_fn may not be: one that pads to the batch's longest sample)."""
        user = self.split.loader
        return not isinstance(self.split.dataset, IterableDataset) and (
            user is None or user.batch_sampler is not None and user.collate_fn is default_collate)

    def batches(self, batch: int, generator: torch.Generator,
                part: Part | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches; with `part` (when reads_parts), only part(indices) of each batch's samples are
        read, from the same draws of `generator` as the whole batches."""
        return (self._prepare(b) for b in (self.loader(batch, generator) if part is None else
                                           self._part_loader(batch, generator, part)))

    def _part_loader(self, batch: int, generator: torch.Generator, part: Part) -> DataLoader:
        key = (batch, True, part)
        if key not in self.loaders:
            whole = self.loader(batch, generator)  # the same sampler and generator: the same global batches
            self.loaders[key] = DataLoader(
                whole.dataset, batch_sampler=_PartSampler(whole.batch_sampler, part), collate_fn=whole.collate_fn,
                num_workers=whole.num_workers, pin_memory=whole.pin_memory, timeout=whole.timeout,
                worker_init_fn=whole.worker_init_fn, multiprocessing_context=whole.multiprocessing_context,
                generator=whole.generator, persistent_workers=whole.persistent_workers,
                **({"prefetch_factor": whole.prefetch_factor} if whole.num_workers else {}))
        return self.loaders[key]

    def outputs(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's outputs for every sample, in order, scored scoring_chunk(net) samples a forward pass (the rows
        an in-memory split scores in one pass); a user's DataLoader keeps its batch size. With workers, nnopt's own
        loader reads smaller batches (READS_PER_WORKER for each worker in a chunk) so that every worker reads
        while a chunk fills, and they are joined into the same chunks: one 8192-sample batch was read by one
        worker while the others waited."""
        chunk = scoring_chunk(net, self.shape)
        read = chunk
        if self.split.loader is None and self.workers > 0:
            read = min(chunk, max(MIN_READ, -(-min(chunk, len(self.split)) // (READS_PER_WORKER * self.workers))))
        outs, targets, held, held_rows = [], [], [], 0
        for b in self.loader(read, None):
            xb, yb = self._prepare(b)
            if read == chunk:
                outs.append(net(xb))
                targets.append(yb)
                continue
            held.append((xb, yb))
            held_rows += len(xb)
            if held_rows >= chunk:
                xs, ys = torch.cat([x for x, _ in held]), torch.cat([y for _, y in held])
                outs.append(net(xs[:chunk]))
                targets.append(ys[:chunk])
                held, held_rows = ([(xs[chunk:], ys[chunk:])], held_rows - chunk) if held_rows > chunk else ([], 0)
        if held:
            outs.append(net(torch.cat([x for x, _ in held])))
            targets.append(torch.cat([y for _, y in held]))
        return torch.cat(outs), torch.cat(targets)


class MemmapSource:
    """A split of a memory-mapped array: a shuffled order per epoch (the permutation TensorSource draws), each
    batch's rows read from disk in increasing order (the same set of rows, read with locality) and scaled as they
    arrive. Streamed."""

    streamed = True

    def __init__(self, split: MemmapSplit, data: Data, device: torch.device, sample_shape: tuple[int, ...]):
        self.split, self.device, self.shape = split, device, tuple(sample_shape)
        self.Y = training_targets(split.y, data.task, data.n_outputs)

    def __len__(self) -> int:
        return len(self.split)

    def _rows(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        xb = self.split.read(positions).reshape(len(positions), *self.shape)
        return xb.to(self.device), self.Y[torch.from_numpy(positions)].to(self.device)

    reads_parts = True

    def batches(self, batch: int, generator: torch.Generator,
                part: Part | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches; with `part`, only the rows part(positions) of each batch (in disk order)."""
        n = len(self.split)
        order = torch.randperm(n, generator=generator).numpy() if batch < n else np.arange(n)
        count = batch_count(n, batch)
        for k in range(count):
            stop = n if k == count - 1 else (k + 1) * batch
            positions = self.split.in_disk_order(order[k * batch:stop])
            yield self._rows(positions if part is None else np.asarray(part(positions)))

    def outputs(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        n, step = len(self.split), min(scoring_chunk(net, self.shape), self.split.chunk())
        outs = [net(self._rows(np.arange(i, min(n, i + step)))[0]) for i in range(0, n, step)]  # split order
        return torch.cat(outs), self.Y.to(self.device)


class _PartSampler(Sampler):
    """A batch sampler that yields part(batch) of every batch of another (its draws are the other's)."""

    def __init__(self, batches: Any, part: Part):
        self.whole, self.part = batches, part

    def __iter__(self) -> Iterator[Sequence[int]]:
        return (self.part(indices) for indices in self.whole)

    def __len__(self) -> int:
        return len(self.whole)


def make_source(data: Data, split: str, device: torch.device, sample_shape: tuple[int, ...], workers: int = 0,
                pin: bool = False) -> TensorSource | LoaderSource | MemmapSource:
    """The batches of a split, each sample of `sample_shape`: (n_features,) flat rows for nnopt's own models,
    the data's own shape for a user's module (in-memory rows are stored flat; the reshape is a view)."""
    part = getattr(data, split)
    flat = tuple(sample_shape) == (data.n_features,)
    if isinstance(part, DatasetSplit):
        return LoaderSource(part, data, device, flatten=flat, workers=workers, pin=pin, sample_shape=sample_shape)
    if isinstance(part, MemmapSplit):
        return MemmapSource(part, data, device, sample_shape)
    X = part.X if flat else part.X.reshape(len(part.X), *sample_shape)
    return TensorSource(X.to(device), training_targets(part.y, data.task, data.n_outputs).to(device))
