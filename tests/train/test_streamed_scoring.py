"""Scoring a streamed split: nnopt's own DataLoader reads scoring_chunk(net) samples a batch, the rows an in-memory
split scores in one forward pass, so the two give the same outputs bit for bit; a user's DataLoader keeps its batch
size."""

from collections import Counter

import pytest
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


def test_with_workers_smaller_reads_are_joined_into_the_same_chunks():
    # every worker reads while a chunk fills (a whole chunk in one batch kept the other workers idle), and the
    # forward passes and outputs stay those of in-memory scoring
    data = nnopt.load_data(Images(), task="classification", n_classes=10, seed=0)
    net = wide_cnn()
    chunk = scoring_chunk(net, (1, 8, 8))
    source = make_source(data, "val", torch.device("cpu"), (1, 8, 8), workers=2)
    val = torch.as_tensor(data.val.dataset.indices)
    sizes = forward_sizes(net)
    with torch.inference_mode():
        streamed, targets = source.outputs(net)
        in_memory, expected = TensorSource(IMAGES[val], LABELS[val]).outputs(net)
    assert [key[0] for key in source.loaders] == [64]  # max(64, 102 / (4 reads x 2 workers)) samples a batch
    full, rest = divmod(len(val), chunk)
    one_pass = [PROBE_ROWS] + [chunk] * full + [rest] * bool(rest)
    assert sizes == one_pass + one_pass
    assert torch.equal(targets, expected) and torch.equal(streamed, in_memory)


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


class ZeroLastLayer(nnopt.train.Callback):
    """Changes the weights after the last epoch was scored: the final metrics must be scored again."""

    def __init__(self, model: nn.Module, epoch: int):
        self.model, self.epoch = model, epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            with torch.no_grad():
                self.model[-1].weight.zero_()
                self.model[-1].bias.copy_(torch.arange(10.0))  # every row predicts class 9


def _fresh(result, split: str) -> dict:
    from nnopt.train._evaluate import evaluate
    from nnopt.train._monitor import scoring

    source = make_source(result.data, split, torch.device("cpu"), (1, 8, 8))
    # on the run's thread count: oneDNN's convolutions sum in another order on another count (on some CPUs the
    # loss then differs in its eighth digit), and the claim is that the same weights give the same scores
    before = torch.get_num_threads()
    torch.set_num_threads(result.config["threads"])
    try:
        return evaluate(result.model.eval(), nn.CrossEntropyLoss(), result.data, source,
                        scoring("classification", None).names[split], (0, 0))
    finally:
        torch.set_num_threads(before)


def test_the_final_metrics_reuse_the_last_epochs_scores_only_while_the_weights_are_the_ones_scored():
    ds = Images()
    options = dict(task="classification", n_classes=10, epochs=2, seed=0, device="cpu")
    result = nnopt.fit(wide_cnn(), ds, **options)
    val = result.data.val.dataset.indices
    assert [ds.calls[int(i)] for i in val] == [2] * len(val)  # scored once an epoch, not again at the end
    assert result.metrics["val"] == {k[4:]: v for k, v in result.history[-1].items() if k.startswith("val_")}
    assert result.metrics["val"] == _fresh(result, "val")  # what scoring the returned model gives
    # a callback changes the weights after the last epoch's scoring: the final metrics are those of the new weights
    net = wide_cnn()
    ds = Images()
    changed = nnopt.fit(net, ds, callbacks=[ZeroLastLayer(net, 2)], **options)
    assert [ds.calls[int(i)] for i in val] == [3] * len(val)
    assert changed.history[-1]["val_accuracy"] > 0.5
    assert changed.metrics["val"]["accuracy"] == pytest.approx(float((LABELS[val] == 9).float().mean()))
    assert changed.metrics["val"] == _fresh(changed, "val")
