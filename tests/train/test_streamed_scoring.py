"""Scoring a streamed split: nnopt's own DataLoader reads scoring_chunk(net) samples a batch, the rows an in-memory
split scores in one forward pass, so the two give the same outputs bit for bit; a user's DataLoader keeps its batch
size."""

from collections import Counter

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset

import nnopt
from nnopt.train import scoring_chunk
from nnopt.train._batches import LoaderSource, TensorSource, make_source
from nnopt.train._chunk import PROBE_ROWS

DIGITS = load_digits()
IMAGES = torch.tensor(DIGITS.data.reshape(-1, 1, 8, 8) / 16, dtype=torch.float32)
LABELS = torch.tensor(DIGITS.target)


class Images(Dataset):
    """The digits as 1 x 8 x 8 images, counting __getitem__ calls."""

    def __init__(self):
        self.calls = Counter()

    def __len__(self):
        return len(IMAGES)

    def __getitem__(self, i):
        self.calls[int(i)] += 1
        return IMAGES[i], int(LABELS[i])


def wide_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(128 * 64, 10)).eval()


def forward_sizes(net: nn.Module) -> list[int]:
    sizes: list[int] = []
    net.register_forward_hook(lambda _m, inputs, _out: sizes.append(len(inputs[0])))
    return sizes


def test_a_streamed_split_is_scored_in_chunks_of_the_in_memory_size_with_the_same_outputs():
    ds = Images()
    data = nnopt.load_data(ds, task="classification", n_classes=10, seed=0)
    net = wide_cnn()
    chunk = scoring_chunk(net, (1, 8, 8))
    assert chunk == 102  # 16 MB over 5 x 32 KB of activations a row, well below the old 1024-row batches
    source = make_source(data, "val", torch.device("cpu"), (1, 8, 8))
    assert isinstance(source, LoaderSource)
    val = torch.as_tensor(data.val.dataset.indices)
    n = len(val)
    sizes = forward_sizes(net)
    ds.calls.clear()
    with torch.inference_mode():
        streamed, targets = source.outputs(net)
        in_memory, expected = TensorSource(IMAGES[val], LABELS[val]).outputs(net)
    full, rest = divmod(n, chunk)
    one_pass = [PROBE_ROWS] + [chunk] * full + [rest] * bool(rest)  # the probe sizes the chunk, then the batches
    assert sizes == one_pass + one_pass  # streamed, then in memory: the same forward passes
    assert sum(ds.calls.values()) == n and set(ds.calls) == set(val.tolist())  # every val sample read once
    assert torch.equal(targets, expected)
    assert torch.equal(streamed, in_memory)


def test_a_users_dataloader_is_scored_at_its_own_batch_size():
    loader = DataLoader(Images(), batch_size=50)
    data = nnopt.load_data(loader, task="classification", n_classes=10)
    net = wide_cnn()
    source = make_source(data, "train", torch.device("cpu"), (1, 8, 8))
    sizes = forward_sizes(net)
    with torch.inference_mode():
        outputs, targets = source.outputs(net)
    assert sizes == [PROBE_ROWS] + [50] * 35 + [47]  # 1,797 samples, 50 a batch as the user set
    assert torch.equal(targets, LABELS)
    with torch.inference_mode():
        assert torch.equal(outputs.argmax(1), net(IMAGES).argmax(1))
