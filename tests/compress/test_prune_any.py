"""Compression of users' own modules (tests/usermodels.py, trained from their class + arguments): structured
pruning through torch-pruning's dependency graph, global pruning + int4 QAT on every Linear / Conv, the pruned
module saved and reloaded with its new layer shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nnopt.compress import compress, finetune_schedule, load, prepare_qat, prune, quantize_model, sparsity_table
from nnopt.compress._prune import finetune
from nnopt.compress._prune_graph import apply_shapes, example_batch, pruned_shapes
from nnopt.errors import UsageError
from nnopt.models import count_params
from nnopt.train import Callback, fit
from usermodels import ResNet18, SwishMLP, TwoBranchNet, bumps, rows, stripes

MAX_DROP = 7.0  # points of test accuracy a compressed model may lose: test splits of 72-120 rows, 1 row ~ 1 pt


ZOO = {  # spec, data, training epochs, fine-tuning epochs (None: compress's default, about 400 steps)
    "resnet18": ("usermodels:ResNet18:n_classes=6:width=4", lambda: stripes(480, size=8), 8, None),
    "rescnn": ("usermodels:ResidualCNN:n_classes=6:width=8:depth=2", lambda: stripes(480, size=12), 4, None),
    "conv1d": ("usermodels:SignalNet:n_classes=3:width=16", lambda: bumps(500), 8, 3),
    "swish_mlp": ("usermodels:SwishMLP:n_classes=4", lambda: rows(800), 15, None),
    "two_branch": ("usermodels:TwoBranchNet:n_classes=4", lambda: rows(800), 15, None),
}


@pytest.fixture(scope="module", params=sorted(ZOO))
def trained(request, tmp_path_factory):
    spec, make_data, epochs, finetune = ZOO[request.param]
    data = make_data()
    run = tmp_path_factory.mktemp(request.param) / "run"
    result = fit(spec, data, epochs=epochs, batch_size=32, lr=3e-3, seed=0, out=run)
    assert result.metrics["test"]["accuracy"] >= 0.7, request.param  # learnt: chance is 1/6 .. 1/3
    return request.param, run, data, finetune


def _channels(model):
    return sum(m.weight.shape[0] for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))


def _same_outputs(a, b, X):
    a.eval(), b.eval()
    with torch.no_grad():
        return float((a(X) - b(X)).abs().max())


def test_structured_50_percent_fine_tuned_is_smaller_close_and_reloads(trained, tmp_path):
    name, run, data, finetune = trained
    result = compress(run, data, prune=0.5, prune_method="structured", finetune_epochs=finetune, out=tmp_path / "c")
    original, pruned = result.rows
    assert pruned["params"] < 0.6 * original["params"], name
    assert 100 * (original["test"] - pruned["test"]) <= MAX_DROP, name
    assert pruned["identical_after_load"]
    back = load(tmp_path / "c" / "compressed.nnz")
    source = load(run)
    assert _channels(back) < _channels(source)
    assert [m.out_features for m in back.modules() if isinstance(m, nn.Linear)][-1] == \
        [m.out_features for m in source.modules() if isinstance(m, nn.Linear)][-1]  # no class was pruned
    X = torch.from_numpy(data[0][:64])
    assert back(X).shape == source(X).shape


def test_global_90_percent_with_int4_qat_keeps_accuracy_and_reloads(trained, tmp_path):
    name, run, data, finetune = trained
    result = compress(run, data, prune=0.9, prune_method="global", quantize="int4", finetune_epochs=finetune,
                      qat_epochs=2,
                      out=tmp_path / "c")
    original, variant = result.rows
    assert variant["nonzero_params"] <= 0.1 * original["params"] + 0.05 * original["params"], name
    assert 100 * (original["test"] - variant["test"]) <= MAX_DROP, name
    assert variant["identical_after_load"]
    # >= 3x even for the smallest zoo models (1,400 - 5,000 weights: header, BatchNorm and biases weigh);
    # benchmarks/compress_any.py measures the ratio of larger networks
    assert variant["file_bytes"] < original["file_bytes"] / 3


def test_the_pruned_shapes_rebuild_a_fresh_instance_exactly():
    torch.manual_seed(0)
    net = ResNet18(n_classes=10, width=8).eval()
    for m in net.modules():  # BatchNorm statistics that are not the defaults, so the copy has to carry them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    example = example_batch((3, 32, 32))
    small = prune(net, 0.5, "structured", example_inputs=example)
    assert count_params(small) < 0.3 * count_params(net)
    shapes = pruned_shapes(net, small)
    assert shapes["stem.0"] == {"out_channels": 4} and shapes["stem.1"] == {"num_features": 4}
    assert shapes["fc"] == {"in_features": 32} and "out_features" not in shapes["fc"]
    # a residual add ties the stem and stage 1's blocks: one set of channels for all of them
    assert small.layers[1].conv2.out_channels == small.stem[0].out_channels == 4
    fresh = apply_shapes(ResNet18(n_classes=10, width=8), shapes, small.state_dict())
    fresh.load_state_dict(small.state_dict(), strict=True)
    X = torch.randn(5, 3, 32, 32)
    assert _same_outputs(fresh, small, X) < 1e-5
    assert fresh.layers[2].shortcut[0].in_channels == small.layers[2].shortcut[0].in_channels


def test_a_concatenation_and_a_custom_activation_are_pruned_consistently():
    torch.manual_seed(0)
    two = TwoBranchNet(in_features=48, n_classes=4).eval()
    small = prune(two, 0.5, "structured", example_inputs=example_batch(48))
    assert small.left[0].out_features == small.right[0].out_features == 16
    assert small.hidden[0].in_features == 32 and small.head.out_features == 4
    assert small(torch.randn(3, 48)).shape == (3, 4)
    swish = SwishMLP(48, 4, width=32).eval()
    small = prune(swish, 0.5, "structured", example_inputs=example_batch(48))
    assert [m.out_features for m in small.modules() if isinstance(m, nn.Linear)] == [16, 16, 4]


def test_unstructured_pruning_and_quantization_reach_every_linear_and_conv():
    net = ResNet18(n_classes=10, width=4)
    layers = [n for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    prune(net, 0.5, "magnitude")
    table = {r["layer"]: r for r in sparsity_table(net)}
    assert all(abs(table[n]["sparsity"] - 0.5) < 0.02 for n in layers)  # 1x1 shortcut convs included
    qweights = quantize_model(net, 4)
    assert sorted(qweights) == sorted(f"{n}.weight" for n in layers)
    assert all(q.scale.numel() == q.shape[0] for q in qweights.values())  # one step per output channel
    qat = prepare_qat(ResNet18(n_classes=10, width=4), 4)
    assert sum(1 for m in qat.modules() if hasattr(m, "parametrizations")) == len(layers)


class PooledBranches(nn.Module):
    """Two conv branches, each pooled and flattened, concatenated into the head: a graph torch-pruning 1.6 prunes
    inconsistently (the head keeps 14 inputs for 12 channels)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.b = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def test_a_graph_torch_pruning_cannot_prune_is_one_line_naming_the_methods_that_can():
    with pytest.raises(UsageError, match=r"^structured pruning \(torch-pruning's dependency graph\) could not prune "
                                         r"PooledBranches \(.*\); use prune_method='magnitude' or global"):
        prune(PooledBranches().eval(), 0.5, "structured", example_inputs=example_batch((3, 16, 16)))
    small = prune(PooledBranches(), 0.5, "magnitude")  # what the message offers works
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_structured_pruning_of_a_user_module_needs_an_example_batch():
    with pytest.raises(UsageError, match=r"example_inputs="):
        prune(SwishMLP(48, 4), 0.5, "structured")


def test_compress_fine_tunes_after_pruning_by_default(tmp_path):
    X, y = rows(800)
    fit("usermodels:SwishMLP:n_classes=4", (X, y), epochs=15, batch_size=32, lr=3e-3, seed=0, out=tmp_path / "run")
    default = compress(tmp_path / "run", (X, y), prune=0.5, prune_method="structured", out=tmp_path / "a").chosen
    none = compress(tmp_path / "run", (X, y), prune=0.5, prune_method="structured", finetune_epochs=0,
                    out=tmp_path / "b").chosen
    assert default["val"] > none["val"]  # one-shot pruning alone loses points that fine-tuning wins back


def test_default_fine_tuning_keeps_structured_50_percent_within_a_point_on_digits(tmp_path):
    fit("mlp:128,64", "digits", epochs=15, seed=0, threads=1, out=tmp_path / "run")
    result = compress(tmp_path / "run", prune=0.5, prune_method="structured", out=tmp_path / "c")
    original, pruned = result.rows
    assert pruned["model_spec"] == "mlp:64,32"
    assert 100 * (original["test"] - pruned["test"]) <= 1.0  # 270 test rows: 1 point is under 3 rows
    constant = compress(tmp_path / "run", prune=0.5, prune_method="structured", lr_schedule="constant").chosen
    assert constant["val"] != pruned["val"] or constant["test"] != pruned["test"]  # the schedule changed training
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["settings"]["schedule"] == "oneshot"
    assert config["settings"]["lr_schedule"] == "lr / 10 for the last third"


def test_finetune_schedule_drops_the_lr_for_the_last_third():
    assert finetune_schedule(6) == {"schedule": "step", "schedule_params": {"step_size": 4, "gamma": 0.1}}
    assert finetune_schedule(3)["schedule_params"]["step_size"] == 2
    assert finetune_schedule(1) == {} and finetune_schedule(10, "schedulefree") == {}
    model = nn.Linear(4, 3)
    lrs = []

    class Record(Callback):
        def on_epoch_end(self, epoch, logs):
            lrs.append(logs.get("lr"))

    X, y = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32), np.arange(64) % 3
    finetune(model, (X, y), 6, lr=0.01, batch_size=16, callbacks=[Record()], threads=1)
    assert lrs == pytest.approx([0.01] * 4 + [0.001] * 2)
    lrs.clear()
    finetune(model, (X, y), 6, lr=0.01, batch_size=16, callbacks=[Record()], schedule="constant", threads=1)
    assert lrs == pytest.approx([0.01] * 6)  # the caller's schedule wins
