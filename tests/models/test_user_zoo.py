"""A zoo of users' own modules, each given to nnopt as an instance, end to end: fit -> load_model -> evaluate ->
predict -> compress (pruned + int8, with its ONNX file) -> export ONNX -> ONNX Runtime agrees with torch.

The modules live in tests/usermodels.py (importable, so the run records their class and arguments and also a
torch.export program); images, signals and table rows are generated with a learnable rule. One regression and
one binary task go through the same steps."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import nnopt
from usermodels import ResidualCNN, ResNet18, SignalNet, SwishMLP, TwoBranchNet, bumps, rows, stripes


def _regression_rows(n, seed=0):
    X, _ = rows(n, seed)
    return X, (2.0 * X[:, 0] - X[:, 12] + 0.1 * np.random.default_rng(seed).normal(size=n)).astype(np.float32)


def _binary_rows(n, seed=0):
    X, _ = rows(n, seed)
    return X, (X[:, 0] + X[:, 12] > 0).astype(np.int64)


# name: (module, data, epochs, pruning method, the least test score the trained module reaches)
ZOO = {
    "resnet18": (lambda: ResNet18(in_channels=3, n_classes=6, width=4), lambda: stripes(480, size=8), 8,
                 "structured", 0.7),
    # width 12 (6 channels once 50 % pruned): at width 8, 4 channels were left, and structured 50 % + int8 lost
    # 0-14 points on the 72 test rows over six initialisations, whichever scaling; at 12, none lost any
    "residual_cnn": (lambda: ResidualCNN(in_channels=3, n_classes=6, width=12, depth=2),
                     lambda: stripes(480, size=12), 5, "structured", 0.7),
    "conv1d": (lambda: SignalNet(in_channels=2, n_classes=3, width=16), lambda: bumps(500), 8, "structured", 0.8),
    "swish_mlp": (lambda: SwishMLP(48, 4), lambda: rows(800), 15, "global", 0.8),
    "two_inputs": (lambda: TwoBranchNet(48, 4), lambda: rows(800), 15, "structured", 0.8),
    "regression": (lambda: SwishMLP(48, 1), lambda: _regression_rows(800), 20, "global", 0.8),
    "binary": (lambda: TwoBranchNet(48, 1), lambda: _binary_rows(800), 15, "global", 0.8),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_user_module_goes_through_every_step(name, tmp_path):
    make, make_data, epochs, method, least = ZOO[name]
    X, y = make_data()
    task = "regression" if name == "regression" else None
    run = tmp_path / "run"
    torch.manual_seed(0)
    result = nnopt.fit(make(), (X, y), task=task, epochs=epochs, batch_size=32, lr=3e-3, seed=0, out=run)
    metric = "r2" if name == "regression" else "accuracy"
    assert result.metrics["test"][metric] >= least, result.metrics["test"]

    # load_model rebuilds the user's class from the run, with the trained weights
    model, meta = nnopt.load_model(run)
    assert type(model).__name__ == type(make()).__name__  # the recipe (class + self.hparams), not the program
    record = result.config["model_record"]
    assert record["model_spec"].startswith(f"usermodels:{type(make()).__name__}:") and record["program"] == "model.pt2"
    sample = torch.from_numpy(X[:64])
    trained = result.model.eval()
    with torch.no_grad():
        assert float((model(sample) - trained(sample)).abs().max()) < 1e-5

    # evaluate re-creates the test split and scores it as training did
    scored = nnopt.evaluate(run, (X, y), split="test")
    assert scored.metrics[metric] == pytest.approx(result.metrics["test"][metric], abs=1e-6)

    # predict on raw samples (scaled as training scaled them): classes, probabilities, or values in target units
    predicted = nnopt.predict(run, X[:64], proba=name != "regression")
    if name != "regression":
        probabilities = np.asarray(predicted.probabilities)
        assert probabilities.shape == (64, 2 if name == "binary" else len(np.unique(y)))
        labels = np.asarray(predicted.class_names)[probabilities.argmax(1)]
        assert (np.asarray(predicted.predictions).astype(str) == labels).all()

    # compress: pruned + int8 with fine-tuning, reloaded identically, its model.onnx agreeing with it
    compressed = nnopt.compress_model(run, (X, y), prune=0.5, prune_method=method, quantize="int8",
                                      export="onnx", out=tmp_path / "c")
    original, variant = compressed.rows
    assert variant["identical_after_load"]
    assert variant["params"] < original["params"] if method == "structured" else \
        variant["nonzero_params"] < 0.6 * original["params"]
    assert variant["test"] >= original["test"] - 0.1, compressed.rows  # 10 points (0.1 of R²) on 72-120 test rows
    onnx_rows = [r for r in compressed.latency if r["runtime"] == "onnxruntime" and r["model"] == "compressed"]
    assert onnx_rows and all(r["agreement"] >= 0.99 for r in onnx_rows), onnx_rows
    assert json.loads((tmp_path / "c" / "results.json").read_text())["chosen"] == variant["name"]

    # export the trained module to ONNX (raw rows in, scaling inside); ONNX Runtime agrees with nnopt predict
    exported = nnopt.export(run, out=tmp_path / "model.onnx")
    assert exported.agreement is None or exported.agreement == 1.0
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X[:64].reshape(64, -1)})[0]
    if name == "regression":
        np.testing.assert_allclose(got.reshape(-1), np.asarray(predicted.predictions, dtype=float), rtol=1e-4,
                                   atol=1e-4)
    elif name == "binary":
        np.testing.assert_allclose(1 / (1 + np.exp(-got[:, 0])), probabilities[:, 1], atol=1e-5)
    else:
        soft = np.exp(got - got.max(1, keepdims=True))
        np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), probabilities, atol=1e-5)
