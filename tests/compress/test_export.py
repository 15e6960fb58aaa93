"""ONNX export, int8 quantization and latency, on sklearn digits with real trained networks."""

import math

import numpy as np
import onnx
import pytest
import torch

from nnopt.compress._export import (
    agreement,
    export_onnx,
    latency_table,
    ort_latency_ms,
    ort_predict,
    ort_session,
    quantize_onnx_int8,
    torch_latency_ms,
)
from nnopt.data import load_data
from nnopt.errors import ConfigError, UsageError
from nnopt.models import build_model
from nnopt.train import fit


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


@pytest.fixture(scope="module")
def mlp(digits):
    return fit("mlp:128,64", digits, epochs=20, seed=0, device="cpu").model


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, digits, mlp):
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(mlp, digits.n_features, folder / "mlp.onnx")
    int8 = quantize_onnx_int8(fp32, folder / "mlp.int8.onnx", digits.train.X)
    return fp32, int8


def torch_logits(model, X):
    model.eval()
    with torch.inference_mode():
        return model(X).numpy()


def accuracy(logits, y):
    return float((logits.argmax(axis=1) == y.numpy()).mean())


def test_fp32_onnx_predicts_like_torch(digits, mlp, onnx_files):
    fp32, _ = onnx_files
    graph = onnx.load(str(fp32)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    batch_dim, feature_dim = graph.input[0].type.tensor_type.shape.dim
    assert batch_dim.dim_param and feature_dim.dim_value == 64  # dynamic batch, fixed width
    expected = torch_logits(mlp, digits.test.X)
    got = ort_predict(fp32, digits.test.X.numpy(), batch=100)  # ragged last chunk: the batch axis is dynamic
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4
    assert agreement(got, expected) == 1.0
    assert not list(fp32.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_cnn_with_unflatten_exports_and_agrees(tmp_path, digits):
    cnn = fit("cnn:8,16", digits, epochs=2, seed=0, device="cpu").model
    cnn.train()
    path = export_onnx(cnn, digits.n_features, tmp_path / "cnn.onnx")
    assert cnn.training  # the caller's mode is restored
    expected = torch_logits(cnn, digits.test.X)
    got = ort_predict(path, digits.test.X.numpy())
    assert np.abs(got - expected).max() < 1e-4
    assert agreement(got, expected) == 1.0
    # the CNN quantizes too (onnxruntime's symbolic shape inference fails on its Reshape; we fall back)
    int8 = quantize_onnx_int8(path, tmp_path / "cnn.int8.onnx", digits.train.X)
    assert agreement(ort_predict(int8, digits.test.X.numpy()), got) >= 0.9


def test_int8_qdq_model_is_small_and_agrees_with_fp32(digits, onnx_files):
    fp32, int8 = onnx_files
    assert int8.is_file()
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32_logits = ort_predict(fp32, digits.test.X.numpy())
    int8_logits = ort_predict(int8, digits.test.X.numpy())
    assert agreement(int8_logits, fp32_logits) >= 0.99
    assert abs(accuracy(int8_logits, digits.test.y) - accuracy(fp32_logits, digits.test.y)) <= 0.01
    assert accuracy(fp32_logits, digits.test.y) > 0.9
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size


def test_latencies_are_positive_and_finite_on_one_thread(digits, mlp, onnx_files):
    fp32, int8 = onnx_files
    session = ort_session(int8)
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_session_options().inter_op_num_threads == 1
    for batch in (1, 256):
        for ms in (ort_latency_ms(fp32, 64, batch=batch, repeats=5, warmup=1),
                   ort_latency_ms(session, 64, batch=batch, repeats=5, warmup=1),
                   torch_latency_ms(mlp, 64, batch=batch, repeats=5, warmup=1)):
            assert 0 < ms < math.inf
    rows = latency_table({"fp32 torch": ("torch", mlp), "fp32 ort": ("onnxruntime", fp32),
                          "int8 ort": ("onnxruntime", session)}, 64, repeats=3, warmup=1)
    assert [(r["model"], r["runtime"], r["batch"]) for r in rows] == [
        ("fp32 torch", "torch", 1), ("fp32 torch", "torch", 256), ("fp32 ort", "onnxruntime", 1),
        ("fp32 ort", "onnxruntime", 256), ("int8 ort", "onnxruntime", 1), ("int8 ort", "onnxruntime", 256)]
    assert all(0 < r["latency_ms"] < math.inf for r in rows)


def test_a_90_percent_zeroed_model_still_exports_dense(tmp_path, digits, onnx_files):
    model = build_model("mlp:128,64", in_features=64, n_outputs=10)
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
            w = layer.weight
            w.mul_(w.abs() > w.abs().flatten().kthvalue(int(0.9 * w.numel())).values)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(int((w == 0).sum()) for w in weights) >= 0.89 * sum(w.numel() for w in weights)
    path = export_onnx(model, 64, tmp_path / "sparse.onnx")
    got = ort_predict(path, digits.test.X)
    assert np.abs(got - torch_logits(model, digits.test.X)).max() < 1e-4
    # ONNX initializers are dense: the zeros cost as many bytes as the weights they replaced
    assert path.stat().st_size > 0.95 * onnx_files[0].stat().st_size


def test_calibration_with_the_wrong_width_names_the_expected_count(tmp_path, onnx_files):
    with pytest.raises(UsageError, match="64"):
        quantize_onnx_int8(onnx_files[0], tmp_path / "bad.onnx", np.zeros((100, 10), dtype=np.float32))
    with pytest.raises(UsageError, match="NaN"):
        quantize_onnx_int8(onnx_files[0], tmp_path / "bad.onnx", np.full((4, 64), np.nan, dtype=np.float32))
    assert not (tmp_path / "bad.onnx").exists()


def test_unwritable_path_and_unexportable_model_are_usage_errors(capfd, tmp_path, mlp, onnx_files):
    with pytest.raises(UsageError, match="cannot export model to ONNX"):
        export_onnx(mlp, 64, "/proc/nnopt/model.onnx")

    class Spectral(torch.nn.Module):  # linalg_svd has no ONNX symbolic in opset 17
        def forward(self, x):
            return torch.linalg.svd(x)[1]

    with pytest.raises(UsageError, match="cannot export model to ONNX: .*svd"):
        export_onnx(Spectral(), 64, tmp_path / "svd.onnx")
    assert "graph" not in capfd.readouterr().out  # torch's graph dump goes to stderr, not stdout
    assert not (tmp_path / "svd.onnx").exists()
    with pytest.raises(UsageError, match="does not exist"):
        ort_session(tmp_path / "missing.onnx")
    with pytest.raises(UsageError, match="64 columns"):
        ort_predict(onnx_files[0], np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match="batch"):
        ort_latency_ms(onnx_files[0], 64, batch=0)


def test_agreement_uses_argmax_or_the_sign_of_one_logit():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [5.0, 1.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 4.0], [9.0, 1.0]])
    assert agreement(a, b) == 0.75
    assert agreement(np.array([[0.3], [-1.0]]), torch.tensor([[2.0], [0.5]])) == 0.5
    assert agreement(np.array([0.3, -1.0]), np.array([1.0, -0.1])) == 1.0
    with pytest.raises(UsageError, match="same shape"):
        agreement(a, b[:2])


def test_latency_table_rejects_an_unknown_runtime(mlp):
    with pytest.raises(ConfigError, match="did you mean 'onnxruntime'"):
        latency_table({"m": ("onnxruntim", mlp)}, 64)


def _conv_weight_inputs(path):
    """{Conv node name: True when its weight comes through a DequantizeLinear (int8), False for an fp32 initializer}"""
    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    return {node.name: made_by.get(node.input[1]) == "DequantizeLinear" for node in graph.node
            if node.op_type == "Conv"}


def test_int8_leaves_thin_convolutions_in_fp32_and_agrees_with_torch(tmp_path, digits):
    cnn = fit("cnn:8,16", digits, epochs=3, seed=0, device="cpu", threads=1).model
    path = export_onnx(cnn, digits.n_features, tmp_path / "cnn.onnx")
    expected = torch_logits(cnn, digits.test.X)
    default = quantize_onnx_int8(path, tmp_path / "cnn.int8.onnx", digits.train.X)
    assert sorted(_conv_weight_inputs(default).values()) == [False, True]  # the 8-channel conv stays fp32
    every = quantize_onnx_int8(path, tmp_path / "all.int8.onnx", digits.train.X, min_channels=0)
    assert sorted(_conv_weight_inputs(every).values()) == [True, True]
    none = quantize_onnx_int8(path, tmp_path / "none.int8.onnx", digits.train.X, min_channels=17)
    assert sorted(_conv_weight_inputs(none).values()) == [False, False]
    got = ort_predict(default, digits.test.X.numpy())
    assert agreement(got, expected) >= 0.97
    assert np.abs(got - expected).max() < 0.25 * np.abs(expected).max()
    with pytest.raises(ConfigError, match="min_channels"):
        quantize_onnx_int8(path, tmp_path / "bad.onnx", digits.train.X, min_channels=-1)


def _takes_int8(path, op_type):
    """{name of each `op_type` node: True when it is quantized (an input comes through a DequantizeLinear or its
    output goes into a QuantizeLinear: ONNX Runtime then runs it on int8)}"""
    graph = onnx.load(str(path)).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    quantized = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    return {node.name: any(made_by.get(i) == "DequantizeLinear" for i in node.input)
            or any(o in quantized for o in node.output) for node in graph.node if node.op_type == op_type}


@pytest.fixture(scope="module")
def thin_residual_cnn():
    """A user's CNN whose convolutions are all thin (8 channels): a max pool and a residual add between them."""
    from usermodels import ResidualBlock, stripes

    X, y = stripes(400, size=12)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              ResidualBlock(8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 6))
    result = fit(net, (X, y), epochs=6, batch_size=32, lr=3e-3, seed=0, device="cpu", threads=1)
    assert result.metrics["test"]["accuracy"] >= 0.7  # learnt: chance is 1/6
    flat = torch.nn.Sequential(torch.nn.Unflatten(1, (3, 12, 12)), result.model).eval()
    return flat, X.reshape(len(X), -1)


def test_int8_keeps_pooling_and_adds_between_fp32_convolutions_in_fp32(tmp_path, thin_residual_cnn):
    net, X = thin_residual_cnn
    path = export_onnx(net, X.shape[1], tmp_path / "thin.onnx")
    default = quantize_onnx_int8(path, tmp_path / "thin.int8.onnx", X[:256])
    # every conv is thin: no int8 island between them (a Quantize / Dequantize pair and a plain int8 kernel)
    assert not any(_conv_weight_inputs(default).values())
    assert list(_takes_int8(default, "MaxPool").values()) == [False]
    assert len(_takes_int8(default, "Add")) == 1 and not any(_takes_int8(default, "Add").values())
    assert any(_takes_int8(default, "Gemm").values()) or any(_takes_int8(default, "MatMul").values())  # the head
    every = quantize_onnx_int8(path, tmp_path / "all.int8.onnx", X[:256], min_channels=0)
    assert all(_conv_weight_inputs(every).values()) and all(_takes_int8(every, "MaxPool").values())
    assert all(_takes_int8(every, "Add").values())  # next to int8 convs they stay int8: ONNX Runtime fuses them
    expected = torch_logits(net, torch.from_numpy(X[256:]))
    for path in (default, every):
        assert agreement(ort_predict(path, X[256:]), expected) >= 0.97
