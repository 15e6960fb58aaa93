"""Compression that is measured for real: pruning (magnitude, global, structured, 2:4; one-shot or gradual),
8/4/2-bit weight quantization (round-to-nearest or quantization-aware training), a packed file format in which
int4 codes take half a byte and sparse weights are stored sparse, ONNX export (a quantized model's Linear weights as
its own integer codes in ONNX Runtime's MatMulNBits; int8 static quantization through ONNX Runtime), and CPU
latency per runtime.

    model = nnopt.load("runs/compress/compressed.nnz")      # a working nn.Module again
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nnopt.compress._compress import LADDER, QUANTIZE, SCHEDULES, CompressResult, compress, default_epochs, \
    expected_bytes, ladder_for
from nnopt.compress._export import agreement, export_onnx, ort_latency_ms, ort_predict, ort_session, \
    quantize_onnx_int8, torch_latency_ms
from nnopt.compress._onnx_quant import quantized_onnx
from nnopt.compress._onnx_table import FP32_TOLERANCE, QUANTIZED_TOLERANCE, check_table, compare_outputs, \
    feature_scaling, output_gap, table_feed, table_inputs, table_onnx, table_outputs, table_predict
from nnopt.compress._format import is_compressed_file, load_compressed, nnopt_load, read_compressed, read_qweights, \
    save_compressed
from nnopt.compress._prune import PRUNE_METHODS, cubic_schedule, finetune_schedule, make_permanent, prune, \
    prune_gradually, sparsity_table, structured_spec
from nnopt.compress._quant import BITS, SCHEMES, apply_dequantized, dequantize, finish_qat, prepare_qat, \
    quantize_model, quantize_tensor
from nnopt.errors import keywords_checked


@keywords_checked
def load(path: Any) -> nn.Module:
    """The model of a compressed file (.nnz), an nnopt model file or a run directory, ready to predict."""
    return nnopt_load(path)[0]


__all__ = [
    "BITS", "FP32_TOLERANCE", "LADDER", "QUANTIZED_TOLERANCE", "PRUNE_METHODS", "QUANTIZE", "SCHEDULES", "SCHEMES",
    "CompressResult", "agreement",
    "apply_dequantized", "check_table", "compare_outputs", "compress", "cubic_schedule", "default_epochs", "dequantize",
    "expected_bytes", "export_onnx", "feature_scaling", "finetune_schedule", "finish_qat", "is_compressed_file",
    "ladder_for", "load", "load_compressed", "make_permanent", "nnopt_load", "ort_latency_ms", "ort_predict",
    "ort_session", "output_gap", "prepare_qat", "prune", "prune_gradually", "quantize_model", "quantize_onnx_int8",
    "quantize_tensor",
    "quantized_onnx", "read_compressed", "read_qweights", "save_compressed", "sparsity_table", "structured_spec", "table_feed",
    "table_inputs", "table_onnx", "table_outputs", "table_predict", "torch_latency_ms",
]
