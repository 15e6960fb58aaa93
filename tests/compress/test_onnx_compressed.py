"""Compressed ONNX files: a quantized model's Linear weights as nnopt's own codes in ONNX Runtime's MatMulNBits,
structured-pruned models as the smaller dense graph, and torch's current exporter checked against torch.

Data: sklearn's digits in MNIST's layout (each pixel a 3x3 block, 2 pixels of padding: 784 inputs), so that
LeNet-300-100 has MNIST's 784x300 first layer."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from sklearn.datasets import load_digits
from torch import nn

from nnopt.compress import agreement, apply_dequantized, compress, dequantize, export_onnx, load, ort_predict, \
    quantize_model, quantized_onnx
from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.train import fit


@pytest.fixture(scope="module")
def digits28(tmp_path_factory):
    digits = load_digits()
    images = np.pad(np.kron(digits.images, np.ones((1, 3, 3))), ((0, 0), (2, 2), (2, 2)))
    path = tmp_path_factory.mktemp("digits28") / "digits28.npz"
    np.savez(path, X=np.clip(np.round(images * 255 / 16), 0, 255).astype(np.uint8), y=digits.target)
    return path


@pytest.fixture(scope="module")
def data(digits28):
    return load_data(str(digits28), seed=0)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory, digits28):
    run = tmp_path_factory.mktemp("lenet") / "run"
    fit("mlp:300,100", str(digits28), epochs=8, seed=0, out=run)
    return run


def quantized(model, bits, scheme="symmetric"):
    variant = copy.deepcopy(model).eval()
    qweights = quantize_model(variant, bits, scheme)
    apply_dequantized(variant, qweights)
    return variant, qweights


def logits(model, X):
    with torch.inference_mode():
        return model.eval()(X).numpy()


def nodes(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def stored_weights(path):
    """Every MatMulNBits weight of a file decoded from its initializers alone, (out, in) as torch keeps it."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = []
    for node in (n for n in model.graph.node if n.op_type == "MatMulNBits"):
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        bits, block, n_out, k_in = a["bits"], a["block_size"], a["N"], a["K"]
        per_byte = 8 // bits

        def unpack(packed, count):
            values = np.stack([(packed >> (bits * k)) & (2 ** bits - 1) for k in range(per_byte)], axis=-1)
            return values.reshape(n_out, -1)[:, :count].astype(np.float32)

        blocks = -(-k_in // block)
        codes = unpack(inits[node.input[1]], blocks * block).reshape(n_out, blocks, block)
        scales = inits[node.input[2]].reshape(n_out, blocks, 1)
        zero = unpack(inits[node.input[3]], blocks) if len(node.input) > 3 and node.input[3] \
            else np.full((n_out, blocks), 2 ** (bits - 1), dtype=np.float32)
        out.append(((codes - zero[..., None]) * scales).reshape(n_out, -1)[:, :k_in])
    for node in (n for n in model.graph.node if n.op_type == "MatMulInteger"):  # int8, dynamic: (in, out) codes
        codes, zero = inits[node.input[1]].astype(np.float32), inits[node.input[3]].astype(np.float32)
        scale = inits[node.input[1].replace("_quantized", "_scale")]  # ONNX Runtime's names
        out.append(((codes - zero) * scale).T)
    for name in (n for n in inits if n.endswith("_codes")):  # int8, dequantized when loaded: (in, out) codes
        base = name[:-len("_codes")]
        zero = inits.get(base + "_zero", np.zeros(1, dtype=np.float32))
        out.append(((inits[name].astype(np.float32) - zero) * inits[base + "_step"]).T)
    return out


def test_int4_file_is_over_5x_smaller_and_predicts_what_nnopt_predicts(lenet, data, tmp_path):
    model = load(lenet)
    fp32 = export_onnx(model, 784, tmp_path / "fp32.onnx")
    variant, qweights = quantized(model, 4)
    path = quantized_onnx(export_onnx(variant, 784, tmp_path / "variant.onnx"), tmp_path / "int4.onnx", qweights)
    assert path.stat().st_size <= fp32.stat().st_size / 5  # 784x300 + 300x100 + 100x10 codes at 4 bits
    assert nodes(path).count("MatMulNBits") == 3 and "Gemm" not in nodes(path) and "MatMul" not in nodes(path)
    expected, got = logits(variant, data.test.X), ort_predict(path, data.test.X)
    assert agreement(expected, got) >= 0.99 and np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == data.test.y.numpy()).mean() >= 0.9  # a real classifier on real rows


@pytest.mark.parametrize("bits, scheme, int8, op", [
    (8, "symmetric", "dequantize", "Cast"), (8, "asymmetric", "dequantize", "Cast"),
    (8, "symmetric", "dynamic", "MatMulInteger"), (4, "asymmetric", None, "MatMulNBits"),
    (2, "symmetric", None, "MatMulNBits"),
])
def test_the_file_holds_nnopts_own_codes_for_each_width_and_scheme(lenet, data, tmp_path, bits, scheme, int8, op):
    variant, qweights = quantized(load(lenet), bits, scheme)
    path = quantized_onnx(export_onnx(variant, 784, tmp_path / "variant.onnx"), tmp_path / "q.onnx", qweights,
                          **({"int8": int8} if int8 else {}))
    stored = stored_weights(path)
    wanted = [dequantize(q).numpy() for q in qweights.values()]
    assert len(stored) == len(wanted) == 3
    assert all(np.array_equal(s, w) for s, w in zip(stored, wanted))  # exactly the compressed model's weights
    got, expected = ort_predict(path, data.test.X), logits(variant, data.test.X)
    assert agreement(expected, got) >= 0.99
    # dynamic int8 rounds the activations to uint8 per batch too; the other forms compute in fp32
    assert np.abs(got - expected).max() < (0.1 if int8 == "dynamic" else 1e-4)
    assert nodes(path).count(op) == 3


def test_compress_writes_the_small_file_and_reports_its_real_bytes(lenet, digits28, tmp_path):
    result = compress(lenet, str(digits28), prune=0.9, prune_method="global", quantize="int4", export="onnx",
                      out=tmp_path / "run")
    onnx_rows = [r for r in result.latency if r["runtime"] == "onnxruntime"]
    compressed = [r for r in onnx_rows if r["model"] == "compressed"]
    original = [r for r in onnx_rows if r["model"] == "original (fp32)"]
    size = (tmp_path / "run" / "model.onnx").stat().st_size
    assert {r["file_bytes"] for r in compressed} == {size} and {r["file"] for r in compressed} == {"model.onnx"}
    assert original[0]["file_bytes"] >= 5 * size
    assert all(r["agreement"] >= 0.99 and r["max_abs_diff"] < 1e-4 for r in compressed)
    assert "MatMulNBits" in nodes(tmp_path / "run" / "model.onnx")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["latency"]
    assert [r["file_bytes"] for r in saved if r["model"] == "compressed" and r["runtime"] == "onnxruntime"] == \
        [size, size]


def test_structured_pruning_exports_the_smaller_dense_graph(lenet, digits28, tmp_path):
    compress(lenet, str(digits28), prune=0.5, prune_method="structured", finetune_epochs=0, export="onnx",
             out=tmp_path / "run")
    graph = onnx.load(str(tmp_path / "run" / "model.onnx")).graph
    shapes = sorted(tuple(t.dims) for t in graph.initializer if len(t.dims) == 2)
    assert shapes == [(10, 50), (50, 150), (150, 784)]  # half the units of each hidden layer, no zeros stored
    assert nodes(tmp_path / "run" / "model.onnx").count("Gemm") == 3


def test_conv_layers_stay_float_and_the_linear_head_takes_codes(data, tmp_path):
    torch.manual_seed(0)
    cnn = build_model("cnn:8,16", in_features=784, n_outputs=10, input_shape=(1, 28, 28)).eval()
    variant, qweights = quantized(cnn, 4)
    path = quantized_onnx(export_onnx(variant, 784, tmp_path / "cnn.onnx"), tmp_path / "cnn.int4.onnx", qweights)
    ops = nodes(path)
    linear = sum(isinstance(m, nn.Linear) for m in variant.modules())
    assert ops.count("Conv") == 2 and ops.count("MatMulNBits") == linear >= 1
    got = ort_predict(path, data.test.X)
    assert np.abs(got - logits(variant, data.test.X)).max() < 1e-4


def test_current_exporter_agrees_with_torch_at_any_batch(lenet, data, tmp_path):
    model = load(lenet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the TorchScript exporter
        path = export_onnx(model, 784, tmp_path / "m.onnx")
    graph = onnx.load(str(path))
    assert graph.producer_name == "pytorch" and max(o.version for o in graph.opset_import if o.domain == "") >= 18
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch axis
    for rows in (data.test.X[:1], data.test.X):
        assert np.abs(ort_predict(path, rows) - logits(model, rows)).max() < 1e-4


def test_a_model_torch_export_cannot_trace_falls_back_in_one_line(tmp_path, capfd):
    class Branchy(nn.Module):  # a Python branch on a value: torch.export refuses, TorchScript traces one branch
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x):
            return self.a(x) if float(x.sum()) > 0 else self.b(x)

    torch.manual_seed(0)
    model = Branchy().eval()
    with pytest.warns(UserWarning, match="TorchScript exporter") as caught:
        path = export_onnx(model, 8, tmp_path / "branchy.onnx")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    message = str(caught[0].message)  # torch.export's own reason, without its terminal colours
    assert "\x1b" not in message and "GuardOnDataDependentSymNode: Could not guard on data-dependent" in message
    assert capfd.readouterr() == ("", "")  # nothing else: no partial FX graph, no log lines of torch's
    rows = -torch.rand(5, 8)  # the branch the zeros of the trace took
    assert np.abs(ort_predict(path, rows) - logits(model, rows)).max() < 1e-5
