"""8-bit images given as arrays or IDX files are scaled as an image folder is: scale="auto" standardizes each
channel with the train split's means and stds (in pixel units, applied to the raw 0..255 values), and predict,
evaluate and the exported files apply the same numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from imagegen import FOUR_CLASSES, bn_residual_cnn, four_class_arrays, write_four_class_idx  # noqa: E402

from nnopt.data import load_data  # noqa: E402


def test_uint8_arrays_get_channel_statistics_in_pixel_units():
    X, y = four_class_arrays(30, 16)
    p = load_data((X, y), seed=0).preprocessing
    assert p["x_scale"] == "channel" and len(p["x_mean"]) == len(p["x_std"]) == 3
    raw = load_data((X, y), seed=0, scale="none")  # the same split, unscaled
    train = raw.train.X.numpy().astype(np.float64).reshape(len(raw.train), 3, -1)
    np.testing.assert_allclose(p["x_mean"], train.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(p["x_std"], train.std(axis=(0, 2)), rtol=1e-6)
    grey = load_data((X[:, 0], y), seed=0).preprocessing  # (n, H, W) uint8: one channel
    assert grey["x_scale"] == "channel" and len(grey["x_mean"]) == 1 and grey["input_shape"] == [1, 16, 16]
    # float arrays keep their rule: (n, C, H, W) per channel, (n, A, B) (maybe signals) per feature
    assert load_data((X.astype(np.float32), y), seed=0).preprocessing["x_scale"] == "channel"
    assert load_data((X[:, 0].astype(np.float32), y), seed=0).preprocessing["x_scale"] == "standard"


def test_a_uint8_memmap_is_standardized_per_channel_like_the_array(tmp_path):
    X, y = four_class_arrays(20, 16)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    mapped = load_data(f"{tmp_path / 'X.npy'},{tmp_path / 'y.npy'}", seed=0).preprocessing
    in_memory = load_data((X, y), seed=0).preprocessing
    assert mapped["x_scale"] == "channel"
    np.testing.assert_allclose(mapped["x_mean"], in_memory["x_mean"], rtol=1e-9)
    np.testing.assert_allclose(mapped["x_std"], in_memory["x_std"], rtol=1e-9)


def test_a_batchnorm_cnn_learns_low_contrast_uint8_images_given_as_an_array():
    # 4 classes x 100 RGB images of 32x32 as a uint8 array, 3 epochs, seed 1: divided by 255 alone (what auto did
    # before, given here as [0, 1] floats with scale="none") the CNN stays at chance; per channel it learns
    # (benchmarks/folder_scaling.py --source array)
    import nnopt

    X, y = four_class_arrays(100, 32)
    accuracy = {}
    for name, data, scale in (("auto", (X, y), "auto"), ("divided by 255", (X / np.float32(255), y), "none")):
        torch.manual_seed(1)
        result = nnopt.fit(bn_residual_cnn(3, len(FOUR_CLASSES), 16), data, epochs=3, seed=1, scale=scale,
                           threads=1)
        accuracy[name] = result.metrics["test"]["accuracy"]
    assert accuracy["auto"] >= 0.6 and accuracy["divided by 255"] <= 0.55, accuracy


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory) -> tuple[Path, Path]:
    from nnopt.cli import main

    base = tmp_path_factory.mktemp("idx")
    root = write_four_class_idx(base / "shapes", 40, 16)
    out = base / "run"
    assert main(["train", "--data", str(root), "--model", "cnn:8", "--epochs", "2", "--seed", "0", "--threads", "1",
                 "--out", str(out), "--json"]) == 0
    return root, out


def test_idx_files_train_predict_and_export_with_the_recorded_statistics(idx_run, tmp_path):
    from nnopt.data._idx import read_idx
    from nnopt.inference import export, predict
    from nnopt.inference._export import run_exported
    from nnopt.models import load_model

    root, run = idx_run
    p = torch.load(run / "model.pt", weights_only=True)["preprocessing"]
    assert p["x_scale"] == "channel" and len(p["x_mean"]) == 1
    assert json.loads((run / "config.json").read_text())["data_info"]["input_shape"] == [1, 16, 16]
    pixels = read_idx(root / "train-images-idx3-ubyte")[::7]  # raw 0..255 images, (n, 16, 16)
    net, _ = load_model(run)
    scaled = (pixels.reshape(len(pixels), -1).astype(np.float64) - p["x_mean"][0]) / p["x_std"][0]
    with torch.no_grad():
        logits = net(torch.from_numpy(scaled.astype(np.float32))).numpy()
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    got = predict(run, pixels, proba=True)
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-5)
    assert list(got.predictions) == [str(i) for i in expected.argmax(1)]  # IDX labels 0..3 name the classes
    rows = pixels.reshape(len(pixels), -1).astype(np.float32)  # the files take raw pixels, flat
    for fmt in ("onnx", "torchscript"):
        exported = export(run, fmt, tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}")
        assert exported.agreement == 1.0
        np.testing.assert_allclose(run_exported(exported.path, fmt, rows), logits, atol=1e-4)
    # the packed file keeps the statistics: predict from it scales the raw pixels as training did
    from nnopt.compress import compress, load

    compress(run, quantize="int8", out=tmp_path / "compressed")
    packed = tmp_path / "compressed" / "compressed.nnz"
    assert torch.load(run / "model.pt", weights_only=True)["preprocessing"]["x_mean"] == p["x_mean"]
    with torch.no_grad():
        packed_logits = load(packed).eval()(torch.from_numpy(scaled.astype(np.float32))).numpy()
    np.testing.assert_allclose(predict(packed, pixels, proba=True).probabilities,
                               torch.softmax(torch.from_numpy(packed_logits), dim=1).numpy(), atol=1e-5)
