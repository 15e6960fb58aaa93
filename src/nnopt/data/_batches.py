"""The in-memory batcher: the hot path of training. One permutation and one gather per epoch, then views."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nnopt.errors import UsageError, require_int


def epoch_batches(X: torch.Tensor, y: torch.Tensor, batch_size: int,
                  generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) batches covering every row exactly once.

    With a generator the rows are shuffled: one ``randperm`` on the generator's device, one gather of X and y,
    then contiguous slices (views). Without one, rows come in order. The last batch may be smaller, but never a
    single row after larger batches: that row joins the batch before it (batch normalization cannot train on one
    row), so an epoch has ``batch_count(n, batch_size)`` batches. The permutation is drawn when this function is
    called, so the generator's stream does not depend on iteration.
    """
    require_int("batch_size", batch_size, 1)
    n = X.shape[0]
    if y.shape[0] != n:
        raise UsageError(f"X has {n} rows but y has {y.shape[0]}; they must match")
    perm = epoch_order(n, generator)
    if perm is not None:
        if perm.device != X.device:
            perm = perm.to(X.device, non_blocking=True)
        X, y = X.index_select(0, perm), y.index_select(0, perm)
    return _slices(X, y, batch_bounds(n, batch_size))


def epoch_order(n: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """The row order of an epoch as epoch_batches draws it: a randperm on the generator's device, or None (rows in
    order, nothing drawn) without a generator or with a single row. Whoever reads a part of every batch draws the
    order here, so that it consumes the generator's stream exactly as epoch_batches does."""
    if generator is None or n <= 1:
        return None
    return torch.randperm(n, generator=generator, device=generator.device)


def batch_count(n: int, batch_size: int) -> int:
    """Batches in an epoch of n rows: ceil(n / batch_size), less one when a lone last row joins the batch before."""
    count = -(-n // batch_size)
    return count - 1 if batch_size > 1 and n > batch_size and n % batch_size == 1 else count


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of every batch of an epoch of n rows, in order: positions in the epoch's row order."""
    count = batch_count(n, batch_size)
    return [(k * batch_size, n if k == count - 1 else (k + 1) * batch_size) for k in range(count)]


def _slices(X: torch.Tensor, y: torch.Tensor, bounds: list[tuple[int, int]]):
    for start, stop in bounds:
        yield X[start:stop], y[start:stop]
