"""DDP ranks read only their own rows of every global batch — rows in memory, a torch Dataset (counted in
__getitem__ calls), a memory-mapped array: the same rows, in the same order and with the same loss weights as
slicing the whole global batch, from the same draws of the seeded generator."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

import nnopt
from nnopt.data import load_data
from nnopt.distributed import DDPParallel
from nnopt.train import fit as fit_one_process
from nnopt.train._batches import TensorSource, make_source

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


class CountingDigits(Dataset):
    """sklearn's digits as a map-style Dataset that counts its __getitem__ calls (in `calls`), and, with a folder,
    appends every index a training step reads to <folder>/rank<r>.txt (evaluation runs under inference mode and
    is not written), so processes started by nnopt report what they read."""

    def __init__(self, folder: str | None = None):
        X, y = load_digits(return_X_y=True)
        self.X, self.targets = torch.from_numpy((X / 16.0).astype(np.float32)), torch.from_numpy(y)
        self.folder, self.calls = folder, 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.calls += 1
        if self.folder is not None and dist.is_initialized() and not torch.is_inference_mode_enabled():
            with open(os.path.join(self.folder, f"rank{dist.get_rank()}.txt"), "a") as fh:
                fh.write(f"{int(i)}\n")
        return self.X[i], self.targets[i]


class CountingStream(IterableDataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        return (self.dataset[i] for i in range(len(self.dataset)))


def _same_batches_as_slicing(source, world: int, batch: int, reads, reset=lambda: None) -> list[int]:
    """Every rank's (rows, weight) of an epoch equal the slices of the whole global batches, from the same draws;
    returns the samples each rank read (reads(): a counter of samples read so far; reset(): called before each
    epoch, to restart a user's DataLoader's own generator)."""
    read = []
    generator = torch.Generator()  # one per run, as in fit(): a source keeps its DataLoaders, which hold it
    for rank in range(world):
        reader, slicer = _rank(rank, world), _rank(rank, world)
        reset()
        generator.manual_seed(3)
        before = reads()
        got = [reader.shard(xb, yb, len(xb)) for xb, yb in reader.batches(source, batch, generator)]
        read.append(reads() - before)
        after = generator.get_state()
        reset()
        generator.manual_seed(3)
        want = [slicer.shard(xb, yb, len(xb)) for xb, yb in source.batches(batch, generator)]
        assert len(got) == len(want)
        for (x, y, w), (x0, y0, w0) in zip(got, want, strict=True):
            assert torch.equal(x, x0) and torch.equal(y, y0) and w == w0
        assert torch.equal(after, generator.get_state())  # the same draws: resumed runs stay bit-identical
    return read


@pytest.mark.parametrize("world, batch", [(2, 64), (3, 64), (2, 1000), (7, 7)])
def test_a_rank_reads_only_its_samples_of_a_torch_dataset(world, batch):
    dataset = CountingDigits()
    data = load_data(dataset, seed=0)
    source = make_source(data, "train", torch.device("cpu"), (64,))
    assert source.reads_parts
    n = len(source)
    read = _same_batches_as_slicing(source, world, batch, lambda: dataset.calls)
    sizes = [size for size in [batch] * (n // batch) + [n % batch] if size]
    if sizes[-1] == 1 and len(sizes) > 1:
        sizes.pop()  # a lone last sample sits the epoch out (nnopt's DataLoader, as in one process)
    # rank r reads its slice of every global batch: about n / world samples, every sample once over the ranks
    assert read == _part_sizes(sizes, world)
    assert sum(read) == sum(sizes) + sum(max(0, world - s) for s in sizes)
    assert max(read) <= -(-n // world) + len(sizes)  # within one sample per batch of n / world


def _part_sizes(sizes: list[int], world: int) -> list[int]:
    """Samples rank r reads of global batches of `sizes`: its slice of each, or 1 (weight 0) when that is empty."""
    return [sum(max(1, s * (r + 1) // world - s * r // world) for s in sizes) for r in range(world)]


def test_a_rank_reads_only_its_samples_through_a_users_data_loader():
    dataset = CountingDigits()
    shuffle = torch.Generator()
    loader = DataLoader(dataset, batch_size=50, shuffle=True, generator=shuffle)
    source = make_source(load_data(loader), "train", torch.device("cpu"), (64,))
    assert source.reads_parts
    read = _same_batches_as_slicing(source, 2, 50, lambda: dataset.calls, lambda: shuffle.manual_seed(1))
    assert read == _part_sizes([50] * 35 + [47], 2) == [898, 899]  # the loader's 1,797 samples, each once


def test_sources_that_cannot_read_a_part_give_every_global_batch_whole():
    # an IterableDataset has no indices to choose from; a DataLoader's own collate_fn may depend on the batch
    # (padding to its longest sample), so its part of a batch would not be the slice of the batch
    dataset = CountingDigits()
    for given in (CountingStream(dataset), DataLoader(dataset, batch_size=64, collate_fn=_own_collate)):
        source = make_source(load_data(given, task="classification", n_classes=10), "train", torch.device("cpu"),
                             (64,))
        assert not source.reads_parts
        before = dataset.calls
        rank = _rank(1, 2)
        batches = [rank.shard(xb, yb, len(xb)) for xb, yb in rank.batches(source, 64, torch.Generator())]
        assert dataset.calls - before == len(dataset)  # the whole stream, sliced
        assert sum(len(x) for x, _, w in batches if w) == sum((s + 1) // 2 for s in [64] * 28 + [5])  # its slices


def _own_collate(samples):
    return default_collate(samples)


def test_a_rank_reads_only_its_rows_of_a_memory_mapped_array(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    data = load_data((tmp_path / "X.npy", tmp_path / "y.npy"), seed=0)
    source = make_source(data, "train", torch.device("cpu"), (64,))
    rows = [0]
    read = source.split.read

    def counted(positions):
        rows[0] += len(positions)
        return read(positions)

    source.split.read = counted
    n = len(source)
    for world in (2, 3):
        got = _same_batches_as_slicing(source, world, 64, lambda: rows[0])
        count = n // 64 if n % 64 < 2 else n // 64 + 1  # a lone last row joins the batch before (epoch_batches)
        assert got == _part_sizes([64] * (count - 1) + [n - 64 * (count - 1)], world)
        assert sum(got) == n


def test_two_processes_on_a_torch_dataset_train_the_weights_of_one_and_read_half_each(tmp_path):
    kwargs = dict(optimizer="sgd", batch_size=64, epochs=2, seed=0, device="cpu", threads=1)
    one = fit_one_process("mlp:32", CountingDigits(), **kwargs)
    two = nnopt.fit("mlp:32", CountingDigits(str(tmp_path)), nproc=2, **kwargs)
    pairs = zip(one.model.state_dict().values(), two.model.state_dict().values(), strict=True)
    assert max(float((a - b).abs().max()) for a, b in pairs) <= 1e-6
    assert [r["train_loss"] for r in two.history] == pytest.approx([r["train_loss"] for r in one.history], rel=1e-6)
    reads = [collections.Counter(map(int, (tmp_path / f"rank{r}.txt").read_text().split())) for r in range(2)]
    train = [int(i) for i in one.data.train.dataset.indices]
    n = len(train)
    # each rank: sample 0 once (load_data checks the first sample), then its half of every global batch
    for counter in reads:
        counter[0] -= 1
    assert reads[0] + reads[1] == collections.Counter(train * 2)  # every training sample once an epoch, in all
    for counter in reads:
        assert abs(sum(counter.values()) - n) <= 2 * -(-n // 64)  # half of 2 epochs: n, within a row per batch


class CountingDigitImages(CountingDigits):
    """The digits as 1 x 8 x 8 images, counted as CountingDigits counts them."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x.reshape(1, 8, 8), y


def test_augmented_ranks_read_half_each_and_train_the_weights_of_one(tmp_path):
    # the augmentation draws its values for the whole global batch and applies this rank's rows of them, so the
    # ranks no longer read every global batch whole
    kwargs = dict(optimizer="sgd", batch_size=64, epochs=1, seed=0, device="cpu", threads=1, augment="flip,crop")
    one = fit_one_process("cnn:4,8", CountingDigitImages(), **kwargs)
    two = nnopt.fit("cnn:4,8", CountingDigitImages(str(tmp_path)), nproc=2, **kwargs)
    pairs = zip(one.model.state_dict().values(), two.model.state_dict().values(), strict=True)
    assert max(float((a - b).abs().max()) for a, b in pairs) <= 1e-6
    reads = [collections.Counter(map(int, (tmp_path / f"rank{r}.txt").read_text().split())) for r in range(2)]
    train = [int(i) for i in one.data.train.dataset.indices]
    for counter in reads:
        counter[0] -= 1  # load_data reads the first sample
    assert reads[0] + reads[1] == collections.Counter(train)
    assert all(abs(sum(c.values()) - len(train) / 2) <= -(-len(train) // 64) for c in reads)


def test_two_processes_on_a_memory_mapped_array_train_the_weights_of_one(tmp_path):
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    data = (tmp_path / "X.npy", tmp_path / "y.npy")
    kwargs = dict(optimizer="sgd", batch_size=64, epochs=2, seed=0, device="cpu", threads=1)
    one = fit_one_process("mlp:32", data, **kwargs)
    two = nnopt.fit("mlp:32", data, nproc=2, **kwargs)
    pairs = zip(one.model.state_dict().values(), two.model.state_dict().values(), strict=True)
    assert max(float((a - b).abs().max()) for a, b in pairs) <= 1e-6
