"""evaluate, predict, export and compress_model take an nn.Module in hand where they take a run directory: it has no
training record, so its input shape comes from the data (or sample_shape=), and the data go in unscaled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nnopt
from nnopt.inference import run_exported


class ChannelNet(nn.Module):
    """Scores each class by the mean of one image channel: the labels of `images` are its argmax, exactly."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(channels).reshape(channels, channels, 1, 1))

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def images(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3, 8, 8)).astype(np.float32)
    return X, X.mean((2, 3)).argmax(1)


def test_predict_and_evaluate_take_a_module_with_the_shape_of_the_data():
    X, y = images()
    net = ChannelNet()
    predictions = nnopt.predict(net, X, proba=True)
    with torch.no_grad():
        logits = net(torch.from_numpy(X))
    assert predictions.predictions.astype(int).tolist() == logits.argmax(1).tolist() == y.tolist()
    assert np.abs(predictions.probabilities - torch.softmax(logits, 1).numpy()).max() < 1e-6
    evaluation = nnopt.evaluate(net, (X, y))
    assert evaluation.metrics["accuracy"] == 1.0 and evaluation.rows == len(X)
    assert evaluation.metrics["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, torch.from_numpy(y))),
                                                       rel=1e-5)
    assert evaluation.model == "nn.Module ChannelNet"
    # one output: 0/1 labels make it a binary classifier (a logit), numbers a regression
    single = nn.Sequential(nn.Flatten(), nn.Linear(192, 1))
    binary = nnopt.evaluate(single, (X, (y == 0).astype(int)))
    assert binary.task == "classification" and binary.class_names == ["0", "1"]
    assert nnopt.predict(single, X).task == "regression"


def test_export_needs_the_sample_shape_of_a_module_and_onnx_runtime_agrees(tmp_path):
    X, _ = images(50)
    with pytest.raises(nnopt.UsageError, match=r"^an nn.Module has no training record .* give sample_shape=, "):
        nnopt.export(ChannelNet(), "onnx", tmp_path / "a.onnx")
    with pytest.raises(nnopt.UsageError, match=r"^sample_shape= must be the shape of one sample.*got 'big'"):
        nnopt.export(ChannelNet(), "onnx", tmp_path / "a.onnx", sample_shape="big")
    with pytest.raises(nnopt.UsageError, match=r"^the model fails on a batch of shape \(2, 5\) .*sample_shape="):
        nnopt.export(ChannelNet(), "onnx", tmp_path / "a.onnx", sample_shape=(5,))
    assert not any(tmp_path.iterdir())
    net = ChannelNet()
    exported = nnopt.export(net, "onnx", tmp_path / "net.onnx", sample_shape=(3, 8, 8))
    assert exported.agreement == 1.0 and exported.max_proba_diff < 1e-6
    theirs = run_exported(tmp_path / "net.onnx", "onnx", X.reshape(len(X), -1))  # flat rows in
    with torch.no_grad():
        assert np.abs(theirs - net(torch.from_numpy(X)).numpy()).max() < 1e-5


class RowNet(nn.Module):
    """Table rows (N, F): class k scores column k, so the labels of `rows` are its argmax, exactly."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.n_features, self.n_classes = n_features, n_classes
        self.layer = nn.Linear(n_features, n_classes)
        with torch.no_grad():
            self.layer.weight.copy_(torch.eye(n_classes, n_features))
            self.layer.bias.zero_()

    def forward(self, x):
        return self.layer(x)


def test_compress_model_takes_a_module_and_its_data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = X[:, :3].argmax(1)
    with pytest.raises(nnopt.UsageError, match=r"^an nn.Module has no training record .* give data=, "):
        nnopt.compress_model(RowNet(6, 3), quantize="int8")
    result = nnopt.compress_model(RowNet(6, 3), (X, y), quantize="int8", out=tmp_path / "small")
    assert result.rows[0]["test"] == 1.0 and result.chosen["identical_after_load"]
    assert result.config["source"] == "<RowNet>"
    model, meta = nnopt.compress.nnopt_load(tmp_path / "small")
    assert type(model) is RowNet and meta["model_spec"] == f"{__name__}:RowNet:n_classes=3:n_features=6"
    predicted = nnopt.predict(tmp_path / "small", X).predictions.astype(int)
    with torch.no_grad():
        assert predicted.tolist() == model(torch.from_numpy(X)).argmax(1).tolist()  # the data as given, unscaled
    # a module no recipe rebuilds (a Sequential's layers are its arguments) is compressed all the same, in hand;
    # its file carries the graph, and compressing that file again names the class it would need
    unbuildable = nn.Sequential(nn.Linear(6, 3))
    result = nnopt.compress_model(unbuildable, (X, y), quantize="int8", out=tmp_path / "seq")
    assert result.chosen["identical_after_load"] and result.config["source"] == "<Sequential>"
    model, meta = nnopt.compress.nnopt_load(tmp_path / "seq")
    assert meta["model_spec"] is None and meta["module_class"] == "torch.nn.modules.container:Sequential"
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).argmax(1).tolist()
    assert nnopt.predict(tmp_path / "seq", X).predictions.astype(int).tolist() == expected
    with pytest.raises(nnopt.UsageError, match=r"^nnopt compress with prune=, qat_epochs= or max_accuracy_drop= "
                                               r".* needs the class "
                                               r"torch\.nn\.modules\.container\.Sequential importable"):
        nnopt.compress_model(tmp_path / "seq", (X, y), prune=0.5)


def test_a_module_returning_a_tuple_is_one_clear_error_for_predict_and_evaluate():
    X, y = images(20)

    class WithFeatures(ChannelNet):
        def forward(self, x):
            return super().forward(x), x

    for call in (lambda: nnopt.predict(WithFeatures(), X), lambda: nnopt.evaluate(WithFeatures(), (X, y))):
        with pytest.raises(nnopt.UsageError, match=r"^the model returns a tuple for a batch of shape \(2, 3, 8, 8\); "
                                                   r"predict and evaluate read one tensor of shape \(batch, outputs\)"):
            call()
