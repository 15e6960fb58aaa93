"""DDP ranks read only their own rows of every global batch (rows in memory): the same rows, in the same order and
with the same loss weights as slicing the whole global batch, from the same draws of the seeded generator."""

from __future__ import annotations

import pytest
import torch

import nnopt
from nnopt.distributed import DDPParallel
from nnopt.train import fit as fit_one_process
from nnopt.train._batches import TensorSource

HANG_LIMIT_S = 240  # the no_hang fixture in conftest.py


def _rank(rank: int, world: int) -> DDPParallel:
    return DDPParallel(rank, world, world, torch.device("cpu"))


@pytest.mark.parametrize("world, n, batch", [
    (w, n, b) for w in (2, 3, 7) for n, b in ((1257, 64), (65, 64), (129, 64), (7, 7), (700, 700), (10, 3), (9, 8))
    if w <= min(n, b)  # epoch_share refuses more processes than rows or than the batch
])
def test_a_rank_trains_on_the_slice_of_every_global_batch_it_would_cut(world, n, batch):
    X, Y = torch.randn(n, 5), torch.arange(n)
    source = TensorSource(X, Y)
    gathered = 0
    for rank in range(world):
        mine, whole = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        reader = _rank(rank, world)
        got = [reader.shard(xb, yb, len(xb)) for xb, yb in reader.batches(source, batch, mine)]
        slicer = _rank(rank, world)  # the global batch, sliced: what every rank did before
        want = [slicer.shard(xb, yb, len(xb)) for xb, yb in source.batches(batch, whole)]
        assert len(got) == len(want)
        for (x, y, w), (x0, y0, w0) in zip(got, want, strict=True):
            assert torch.equal(x, x0) and torch.equal(y, y0) and w == w0
        assert torch.equal(mine.get_state(), whole.get_state())  # the same draws: resumed runs stay bit-identical
        gathered += sum(len(x) for x, _, _ in got)
    # every row once over the ranks, plus one weight-0 row per rank left without a row of a small last batch
    sizes = [len(xb) for xb, _ in source.batches(batch, None)]
    assert gathered == n + sum(max(0, world - size) for size in sizes)


def test_a_weight_0_row_stands_in_for_a_rank_without_rows():
    # 11 rows at batch 3 over 3 ranks, in order: the last batch has 2 rows, rank 0 takes the first at weight 0
    rows, local, sizes = _rank(0, 3).epoch_rows(11, 3, None)
    assert sizes == [3, 3, 3, 2] and local == [1, 1, 1, 1] and rows.tolist() == [0, 3, 6, 9]
    assert _rank(2, 3).epoch_rows(11, 3, None)[0].tolist() == [2, 5, 8, 10]
    for rank, expected in ((0, 0.0), (1, 1.5), (2, 1.5)):
        r = _rank(rank, 3)
        batches = list(r.batches(TensorSource(torch.arange(11.0)[:, None], torch.arange(11)), 3,
                                 torch.Generator().manual_seed(0)))
        *_, last = [r.shard(xb, yb, len(xb)) for xb, yb in batches]
        assert len(last[0]) == 1 and last[2] == expected


def test_augmented_ddp_trains_the_weights_of_one_process():
    # augmentation draws its random values per global batch, as one process does, before the slice
    kwargs = dict(optimizer="sgd", batch_size=64, epochs=1, seed=0, device="cpu", augment="flip,crop", threads=1)
    one = fit_one_process("cnn:4,8", "digits", **kwargs)
    two = nnopt.fit("cnn:4,8", "digits", nproc=2, **kwargs)
    pairs = zip(one.model.state_dict().values(), two.model.state_dict().values(), strict=True)
    assert max(float((a - b).abs().max()) for a, b in pairs) <= 1e-6
