"""A user's own nn.Module trains on batches in the shape the data has — (N, C, H, W) images, (N, C, L) signals,
(N, F) tables — and its FLOPs and latency are measured on that shape, or reported as not countable."""

import numpy as np
import pytest
import torch
from torch import nn

import nnopt
import nnopt.models._count as count_module
from nnopt.errors import UsageError
from nnopt.models import count_params, flops_per_sample, load_model, measure_latency_ms, model_costs
from usermodels import RefusingCounter, ResidualCNN, SignalNet, TinyConv, bumps


def stripe_images(n, seed=0):
    """(n, 3, 16, 16) noise images with one bright stripe (a random row or column); the class is the channel that
    holds the stripe."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(0.0, 0.5, (n, 3, 16, 16)).astype(np.float32)
    for i in range(n):
        k = rng.integers(2, 14)
        if rng.integers(0, 2):
            X[i, y[i], :, k] += 2.0
        else:
            X[i, y[i], k, :] += 2.0
    return X, y


def record_shapes(net):
    seen = set()
    net.register_forward_pre_hook(lambda module, args: seen.add(tuple(args[0].shape[1:])))
    return seen


def conv_flops(c_in, c_out, kernel, out_positions):
    return 2 * c_in * c_out * kernel * out_positions  # kernel: the number of weights per output and input channel


def residual_cnn_flops(c_in, width, depth, hw, n_classes):
    stem = conv_flops(c_in, width, 9, hw)
    return stem + depth * 2 * conv_flops(width, width, 9, hw) + 2 * width * n_classes


def test_a_residual_cnn_trains_on_images_in_their_own_shape(tmp_path):
    X, y = stripe_images(450)
    torch.manual_seed(0)
    net = ResidualCNN(in_channels=3, n_classes=3, width=8, depth=1)
    seen = record_shapes(net)
    result = nnopt.fit(net, (X, y), epochs=3, batch_size=32, lr=3e-3, seed=0, out=tmp_path / "run")
    assert seen == {(3, 16, 16)}  # every batch, in training and evaluation
    assert result.metrics["test"]["accuracy"] >= 0.9  # chance is 1/3
    assert result.config["flops_per_sample"] == residual_cnn_flops(3, 8, 1, 16 * 16, 3) == 700_464
    assert result.config["n_params"] == count_params(net)
    payload = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert payload["sample_shape"] == [3, 16, 16]
    # the instance is recorded as its class and the arguments it keeps in self.hparams
    assert payload["model_spec"] == "usermodels:ResidualCNN:depth=1:in_channels=3:n_classes=3:width=8"


def test_a_1d_conv_net_trains_on_signals_of_shape_channels_by_length():
    X, y = bumps(600, length=50)
    torch.manual_seed(0)
    net = SignalNet(in_channels=2, n_classes=3, width=8)
    seen = record_shapes(net)
    result = nnopt.fit(net, (X, y), epochs=5, batch_size=32, lr=3e-3, seed=0)
    assert seen == {(2, 50)}  # a (C, L) signal, not the (1, 2, 50) image nnopt's own cnn would read
    assert result.metrics["test"]["accuracy"] >= 0.9
    by_hand = conv_flops(2, 8, 5, 50) + conv_flops(8, 8, 5, 50) + 2 * 8 * 3
    assert result.config["flops_per_sample"] == by_hand == 40_048


def test_builtin_digits_reach_a_module_as_one_channel_8x8_images():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    seen = record_shapes(net)
    result = nnopt.fit(net, "digits", epochs=3, seed=0)
    assert seen == {(1, 8, 8)}
    assert result.metrics["test"]["accuracy"] >= 0.9
    assert result.config["flops_per_sample"] == conv_flops(1, 8, 9, 64) + 2 * 512 * 10


def test_a_module_on_table_rows_gets_flat_rows():
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = nn.Sequential(nn.Linear(5, 1))
    seen = record_shapes(net)
    nnopt.fit(net, (X, y), epochs=1, seed=0)
    assert seen == {(5,)}


def test_flops_of_a_tiny_conv_net_equal_the_hand_count():
    # conv: 2 output channels x 2x2 positions, 1x3x3 multiply-adds each = 72 MACs; linear: 8 x 3 = 24 MACs
    assert flops_per_sample(TinyConv(), (1, 4, 4)) == 2 * (72 + 24) == 192
    assert flops_per_sample(nn.Linear(7, 3), 7) == flops_per_sample(nn.Linear(7, 3), (7,)) == 2 * 21


def test_latency_and_costs_are_measured_on_the_modules_input_shape():
    net = ResidualCNN(in_channels=3, n_classes=3, width=4)
    assert measure_latency_ms(net, (3, 16, 16), batch=2, repeats=3, warmup=1) > 0
    costs = model_costs(net, (3, 16, 16))
    assert costs["flops"] == residual_cnn_flops(3, 4, 1, 256, 3) and costs["latency_ms"] > 0
    assert costs["params"] == count_params(net)
    with pytest.raises(Exception, match="shape like"):
        measure_latency_ms(net, (3, 0, 16))


def test_a_module_that_cannot_run_on_a_zero_sample_is_not_countable_not_an_error():
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))  # takes token ids, not floats
    assert flops_per_sample(embed, (3,)) is None
    costs = model_costs(embed, (3,))
    assert costs["flops"] is None and costs["latency_ms"] is None and costs["params"] == count_params(embed)


def test_training_goes_on_when_torchs_flop_counter_fails(monkeypatch):
    monkeypatch.setattr(count_module, "FlopCounterMode", RefusingCounter)
    X, y = bumps(120, length=50)
    result = nnopt.fit(SignalNet(n_classes=3), (X, y), epochs=1, seed=0)
    assert result.config["flops_per_sample"] is None and result.epochs == 1


def test_a_module_that_does_not_take_the_datas_shape_is_one_clear_error():
    dense = nn.Sequential(nn.Linear(64, 10))  # digits arrive as (N, 1, 8, 8)
    with pytest.raises(UsageError, match=r"fails on a batch of shape \(1, 1, 8, 8\), the data's shape .*"
                                         r"add nn.Flatten\(\)"):
        nnopt.fit(dense, "digits", epochs=1)
    assert nnopt.fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), "digits", epochs=1).epochs == 1
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))  # built for 3 channels, digits have 1
    with pytest.raises(UsageError, match=r"the samples have 1 channel and the first convolution takes 3: build it "
                                         r"with in_channels=1 \(a factory is given input_shape=\(1, 8, 8\)\)$"):
        nnopt.fit(rgb, "digits", epochs=1)


def test_a_factory_gets_batches_in_the_datas_shape_and_reloads(tmp_path):
    import usermodels

    usermodels.CALLS.clear()
    result = nnopt.fit("usermodels:make_net:width=4:depth=2", "digits", epochs=2, seed=0, out=tmp_path / "run")
    assert usermodels.CALLS[0] == {"input_shape": (1, 8, 8), "n_outputs": 10, "width": 4, "depth": 2}
    assert result.config["model"] == "usermodels:make_net:depth=2:width=4"  # arguments sorted by name
    assert result.config["flops_per_sample"] == residual_cnn_flops(1, 4, 2, 64, 10)
    model, meta = load_model(tmp_path / "run")
    assert meta["sample_shape"] == [1, 8, 8] and usermodels.CALLS[-1]["width"] == 4
    X = result.data.test.X.reshape(-1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(X), result.model.eval()(X))


def test_nnopt_models_handed_back_as_modules_keep_flat_rows():
    """compress fine-tunes nnopt's own network as a module: it still takes flat rows, not digits' (1, 8, 8)."""
    import nnopt
    from nnopt.models import build_model, module_takes_flat_rows

    net = build_model("mlp:16", in_features=64, n_outputs=10)
    assert module_takes_flat_rows(net) and not module_takes_flat_rows(torch.nn.Linear(64, 10))
    result = nnopt.fit(net, "digits", epochs=5)
    assert result.metrics["test"]["accuracy"] > 0.8


class LogitsAndFeatures(nn.Module):
    """Returns (logits, features), as models with an auxiliary output do."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU()), nn.Linear(16, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head(h), h


def test_a_module_whose_output_does_not_fit_the_classes_is_one_clear_error_before_training(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=r"^10 classes take 10 outputs \(one logit per class\); the model returns 7 "
                                         r"per sample .*give the last layer 10 outputs"):
        nnopt.fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), "digits", epochs=1, out=out)
    assert not out.exists()  # nothing written: the check runs before the run directory is made
    with pytest.raises(UsageError, match=r"^the model returns a tuple, not a tensor, .*shape \(batch, 10\): have "
                                         r"forward return the logits alone"):
        nnopt.fit(LogitsAndFeatures(), "digits", epochs=1)
    with pytest.raises(UsageError, match=r"^the model returns shape \(1,\) .*must return \(batch, outputs\), here "
                                         r"\(1, 1\): 1 regression target takes 1 output"):
        nnopt.fit(nn.Sequential(nn.Linear(10, 1), nn.Flatten(0)), "diabetes", epochs=1)


def test_two_classes_take_one_logit_or_two_and_other_widths_are_refused_by_name():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(UsageError, match=r"^two classes take 1 output \(a logit, trained with binary "
                                         r"cross-entropy\) or 2 \(two logits, cross-entropy\); the model returns 4 "
                                         r"per sample .*n_outputs=1"):
        nnopt.fit(nn.Linear(30, 4), (X, y), epochs=1)
    result = nnopt.fit(nn.Linear(30, 1), (X, y), epochs=20, lr=0.01, seed=0)
    assert result.metrics["test"]["accuracy"] > 0.9
    two = nnopt.fit(nn.Linear(30, 2), (X, y), epochs=20, lr=0.01, seed=0)  # a num_classes=2 head: cross-entropy
    assert two.data.n_outputs == 2 and two.metrics["test"]["accuracy"] > 0.9


def test_a_factory_that_ignores_n_outputs_is_named_by_every_entry_point(tmp_path, run_cli):
    out = tmp_path / "cli"
    code, stdout, stderr = run_cli("train", "--data", "digits", "--model", "usermodels:make_fixed_head",
                                   "--epochs", "1", "--out", out)
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith("error: 10 classes take 10 outputs") and \
        "the factory usermodels:make_fixed_head is given n_outputs=10: build its last layer with it" in stderr
    assert not out.exists()
    with pytest.raises(UsageError, match="returns 7 per sample"):
        nnopt.find_lr("usermodels:make_fixed_head", "digits")
    with pytest.raises(UsageError, match="returns 7 per sample"):
        nnopt.compare("digits", "usermodels:make_fixed_head", optimizers="adam,sgd", epochs=1)
    with pytest.raises(UsageError, match="returns 7 per sample"):  # before any fine-tuning or file
        nnopt.compress_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), "digits", quantize="int8",
                             out=tmp_path / "compressed")
    assert not (tmp_path / "compressed" / "results.json").exists()
    result = nnopt.tune({"data": "digits", "model": {"factory": "usermodels:make_fixed_head"},
                         "train": {"epochs": 1}, "trials": 1, "space": {"lr": {"choices": [0.01]}}}, report=False)
    reasons = [t.user_attrs.get("fail_reason", "") for t in result.frozen_trials]
    assert len(reasons) == 1 and "the factory usermodels:make_fixed_head is given n_outputs=10" in reasons[0]
    # the command line: a study whose every trial failed is not a success; the records are written all the same
    code, _, stderr = run_cli("tune", "--data", "digits", "--model", "usermodels:make_fixed_head", "--epochs", "1",
                              "--trials", "2", "--out", tmp_path / "tune")
    assert code == 2 and stderr.startswith("error: every trial failed (2); the first: ") and \
        "is given n_outputs=10" in stderr and stderr.count("\n") == 1
    assert (tmp_path / "tune" / "trials.json").is_file()
