"""`nnopt export --format onnx` of a compress run writes the compressed network: int4 weights as their codes
(MatMulNBits), not the dense fp32 weights the compressed file was loaded into."""

import json

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_digits
from use_helpers import cli

import nnopt
from nnopt.compress import compress, read_qweights


def test_export_of_an_int4_compress_run_is_small_and_predicts_like_nnopt(tmp_path):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    train, unseen = (X[:1500], y[:1500]), X[1500:]  # the last 297 rows: neither trained nor fine-tuned on
    nnopt.fit("mlp:128,64", train, epochs=10, seed=0, threads=1, out=tmp_path / "run")
    compress(tmp_path / "run", train, quantize="int4", out=tmp_path / "int4")
    codes = read_qweights(tmp_path / "int4" / "compressed.nnz")
    assert sorted(codes) == ["blocks.0.0.weight", "blocks.1.0.weight", "head.weight"]
    assert all(q.bits == 4 and q.q.dtype.is_signed for q in codes.values())

    code, stdout, err = cli("export", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "fp32.onnx", "--json")
    assert code == 0, err
    code, stdout, err = cli("export", tmp_path / "int4", "--format", "onnx", "--out", tmp_path / "int4.onnx",
                            "--json")
    assert code == 0, err
    assert json.loads(stdout)["agreement"] == 1.0  # the export's own check on sampled rows
    fp32_bytes, int4_bytes = (tmp_path / "fp32.onnx").stat().st_size, (tmp_path / "int4.onnx").stat().st_size
    assert int4_bytes * 4 <= fp32_bytes, (int4_bytes, fp32_bytes)  # 19 kB against 82 kB
    graph = onnx.load(str(tmp_path / "int4.onnx"))
    assert [n.op_type for n in graph.graph.node].count("MatMulNBits") == 3

    session = ort.InferenceSession(str(tmp_path / "int4.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: unseen})[0]
    names = json.loads({p.key: p.value for p in graph.metadata_props}["nnopt.class_names"])
    exported = [str(names[i]) for i in logits.argmax(axis=1)]
    ours = [str(v) for v in nnopt.predict(tmp_path / "int4", unseen).predictions]
    assert exported == ours
