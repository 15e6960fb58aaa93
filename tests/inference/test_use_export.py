"""ONNX and TorchScript exports take raw feature rows and predict what nnopt predicts."""

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from use_helpers import COLUMNS, read_csv

import nnopt


def _raw_rows(path):
    return np.array([[float(row[c]) for c in COLUMNS[:4]] for row in read_csv(path)], dtype=np.float32)


def test_onnx_and_torchscript_predict_like_nnopt(run_cli, iris_csv, iris_run, tmp_path):
    rows = _raw_rows(iris_csv)
    ours = nnopt.predict(iris_run, iris_csv).predictions
    names = np.array(["setosa", "versicolor", "virginica"])
    code, stdout, err = run_cli("export", iris_run, "--format", "onnx", "--out", tmp_path / "iris.onnx")
    assert code == 0 and err == "" and "100.00 % same class" in stdout
    session = ort.InferenceSession(str(tmp_path / "iris.onnx"), providers=["CPUExecutionProvider"])
    # an all-numeric table takes one float matrix in column order, as a model trained on arrays does
    assert [(i.name, i.shape[1]) for i in session.get_inputs()] == [("input", 4)]
    onnx_logits = session.run(None, {"input": rows})[0]
    assert np.mean(names[onnx_logits.argmax(axis=1)] == ours) >= 0.999
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "iris.onnx")).metadata_props}
    assert json.loads(meta["nnopt.class_names"]) == list(names)
    assert json.loads(meta["nnopt.feature_names"]) == COLUMNS[:4]

    code, stdout, err = run_cli("export", iris_run, "--format", "torchscript", "--out", tmp_path / "iris.pt",
                                "--json")
    assert code == 0 and json.loads(stdout)["agreement"] == 1.0
    extra = {"nnopt.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch steers to torch.export; TorchScript still loads
        module = torch.jit.load(str(tmp_path / "iris.pt"), _extra_files=extra)
    assert json.loads(extra["nnopt.json"])["class_names"] == list(names)
    with torch.no_grad():
        ts_logits = module(torch.from_numpy(rows)).numpy()
    assert np.mean(names[ts_logits.argmax(axis=1)] == ours) >= 0.999
    np.testing.assert_allclose(ts_logits, onnx_logits, rtol=1e-4, atol=1e-5)


def test_regression_export_outputs_target_units(tmp_path):
    from sklearn.datasets import load_diabetes

    result = nnopt.fit("mlp:8", "diabetes", epochs=3, out=tmp_path / "run")
    path = nnopt.export(tmp_path / "run", "onnx", tmp_path / "d.onnx").path
    X = load_diabetes().data.astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    values = session.run(None, {"input": X})[0][:, 0]
    np.testing.assert_allclose(values, nnopt.predict(result.run_dir, "diabetes").predictions, rtol=1e-4, atol=1e-3)
