"""A two-class task with a network of two logits (nn.Linear(..., 2), as heads written for num_classes=2 are) trains
with cross-entropy over the 2 classes, and evaluate, predict, export and compress read its two outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import nnopt


class TwoLogits(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.body, self.head = nn.Sequential(nn.Linear(30, hidden), nn.ReLU()), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("binary2") / "run"
    torch.manual_seed(0)
    result = nnopt.fit(TwoLogits(), "breast_cancer", epochs=8, seed=0, threads=1, out=out)
    return out, result


def test_two_logits_train_with_cross_entropy_and_are_recorded(run):
    out, result = run
    assert result.data.n_outputs == 2 and result.data.n_classes == 2
    assert torch.load(out / "model.pt", weights_only=True)["n_outputs"] == 2
    assert result.metrics["test"]["accuracy"] >= 0.9 and result.metrics["test"]["roc_auc"] >= 0.95
    # the epoch's loss is the cross-entropy of the two logits
    net, split = result.model.eval(), result.data.test
    with torch.no_grad():
        loss = nn.functional.cross_entropy(net(split.X), split.y).item()
    assert math.isclose(result.metrics["test"]["loss"], loss, rel_tol=1e-5)


def test_evaluate_and_predict_read_the_softmax_of_the_two(run):
    from nnopt.inference import evaluate, predict

    out, result = run
    scored = evaluate(out, split="test")
    summary = json.loads((out / "summary.json").read_text())["metrics"]["test"]
    for name in ("loss", "accuracy", "roc_auc"):
        assert math.isclose(scored.metrics[name], summary[name], rel_tol=1e-6)
    X = load_breast_cancer().data[:40]
    got = predict(out, X, proba=True)
    p = result.data.preprocessing
    scaled = torch.from_numpy(((X - np.asarray(p["x_mean"])) / np.asarray(p["x_std"])).astype(np.float32))
    with torch.no_grad():
        expected = torch.softmax(result.model.eval()(scaled), dim=1).numpy()
    assert got.probabilities.shape == (40, 2)
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-5)
    assert list(got.predictions) == [result.data.class_names[i] for i in expected.argmax(1)]


def test_onnx_export_and_compress_take_the_two_logits(run, tmp_path):
    from nnopt.compress import compress
    from nnopt.inference import export
    from nnopt.inference._export import run_exported

    out, result = run
    exported = export(out, "onnx", tmp_path / "model.onnx")
    assert exported.agreement == 1.0 and exported.max_proba_diff <= 1e-4
    X = load_breast_cancer().data[:40].astype(np.float32)
    assert run_exported(exported.path, "onnx", X).shape == (40, 2)
    compressed = compress(out, quantize="int8", export="onnx", out=tmp_path / "compressed")
    original = compressed.rows[0]
    assert math.isclose(original["test"], result.metrics["test"]["accuracy"], rel_tol=1e-9)
    assert compressed.chosen["test"] >= original["test"] - 0.02
    assert (tmp_path / "compressed" / "model.onnx").is_file()


def test_other_widths_for_two_classes_are_still_refused():
    from nnopt.errors import UsageError

    with pytest.raises(UsageError, match=r"two classes take 1 output \(a logit, trained with binary cross-entropy\) "
                                         r"or 2 \(two logits, cross-entropy\); the model returns 3 per sample"):
        nnopt.fit(nn.Linear(30, 3), "breast_cancer", epochs=1, threads=1)
