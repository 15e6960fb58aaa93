"""(n, C, L) signal arrays given with a user's Conv1d module: the run records the sample shape (C, L) wherever it
records one (config.json, the model file, its preprocessing), and load_model, predict and export read it."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

import nnopt


class SignalNet(nn.Module):
    """Three channels of 16 steps -> 3 classes, through one Conv1d."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv1d(3, 4, 3), nn.Linear(4 * 14, 3)

    def forward(self, x):
        return self.head(self.conv(x).relu().flatten(1))


def signals(n: int = 150):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3, 16)).astype(np.float32)
    X[:, 1] += np.sin(np.linspace(0, 6, 16, dtype=np.float32))  # channels unlike each other
    return X, np.digitize(X[:, 0].mean(axis=1), [-0.1, 0.1])


def test_a_conv1d_module_on_signals_records_c_l_and_inference_uses_it(tmp_path):
    from nnopt.inference import export, predict
    from nnopt.inference._export import run_exported
    from nnopt.models import load_model

    X, y = signals()
    run = tmp_path / "run"
    torch.manual_seed(0)
    nnopt.fit(SignalNet(), (X, y), epochs=2, seed=0, threads=1, out=run)
    config = json.loads((run / "config.json").read_text())
    assert config["data_info"]["input_shape"] == [3, 16]
    payload = torch.load(run / "model.pt", weights_only=True)
    assert payload["input_shape"] == payload["sample_shape"] == payload["preprocessing"]["input_shape"] == [3, 16]
    net, meta = load_model(run)
    assert meta["sample_shape"] == [3, 16]
    p = payload["preprocessing"]  # (n, A, B) floats are standardized per feature
    scaled = ((X[:20].reshape(20, -1) - np.asarray(p["x_mean"])) / np.asarray(p["x_std"])).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(scaled.reshape(20, 3, 16))).numpy()
    assert logits.shape == (20, 3)
    got = predict(run, X[:20], proba=True)  # the rows in their own (n, C, L) shape
    np.testing.assert_allclose(got.probabilities, torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-5)
    exported = export(run, "onnx", tmp_path / "model.onnx")
    assert exported.agreement == 1.0
    np.testing.assert_allclose(run_exported(exported.path, "onnx", X[:20].reshape(20, -1)), logits, atol=1e-4)


def test_the_data_handed_in_keeps_its_own_shapes():
    from nnopt.data import load_data

    X, y = signals()
    data = load_data((X, y))
    nnopt.fit(SignalNet(), data, epochs=1, seed=0, threads=1)
    assert data.input_shape == (1, 3, 16) and data.preprocessing["input_shape"] == [1, 3, 16]  # nnopt's cnn reads
    assert data.sample_shape == (3, 16)
