"""The in-memory batcher: the hot path of training. One permutation and one gather per epoch, then views."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nnopt.errors import UsageError, require_int


def epoch_batches(X: torch.Tensor, y: torch.Tensor, batch_size: int,
                  generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, y) batches covering every row exactly once.

    With a generator the rows are shuffled: one ``randperm`` on the generator's device, one gather of X and y,
    then contiguous slices (views). Without one, rows come in order. The last batch may be smaller. The
    permutation is drawn when this function is called, so the generator's stream does not depend on iteration.
    """
    require_int("batch_size", batch_size, 1)
    n = X.shape[0]
    if y.shape[0] != n:
        raise UsageError(f"X has {n} rows but y has {y.shape[0]}; they must match")
    if generator is not None and n > 1:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        if perm.device != X.device:
            perm = perm.to(X.device, non_blocking=True)
        X, y = X.index_select(0, perm), y.index_select(0, perm)
    return _slices(X, y, n, batch_size)


def _slices(X: torch.Tensor, y: torch.Tensor, n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield X[start:start + batch_size], y[start:start + batch_size]
