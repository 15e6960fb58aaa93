"""A quantized model's ONNX file with its integer weights, through ONNX Runtime's own quantizers.

`export_onnx` writes dense fp32 weights, so a 4-bit model's file is as large as the original's. `quantized_onnx`
rewrites that file so that every Linear layer whose weight is quantized holds nnopt's own codes and steps:
- 4 and 2 bits (and nnopt's 1-bit binary codes, stored as 2-bit ones): a com.microsoft MatMulNBits node (weights
  only; compute in fp32 on exactly the compressed model's weights), codes packed in blocks of BLOCK_SIZE along
  the input axis, the bias taken by the node itself. The graph rewrite is ONNX Runtime's n-bit weight-only
  quantizer (`onnxruntime.quantization.matmul_nbits_quantizer`);
- 8 bits: int8 codes (uint8 when asymmetric) and per-channel steps as initializers, turned back into the fp32
  weight by Cast / (Sub) / Mul, which ONNX Runtime folds into one weight when it loads the file: 3.9x smaller on
  disk, fp32's arithmetic and speed, exactly nnopt's predictions. ONNX Runtime's weight-only MatMulNBits(bits=8)
  computes in fp32 16x slower at batch 1 (accuracy_level 4 is fast but rounds the activations), and its dynamic
  int8 (`quantize_dynamic`: MatMulInteger) is 0.6x / 0.3x fp32's latency but rounds the activations per batch,
  which moved an automl model's class on 1.6 % of random rows; both stay as `int8=` options, and
  `quantize_onnx_int8` writes the static int8 file (benchmarks/RESULTS.md, "Compressed ONNX files").
ONNX Runtime's quantizers round the weights themselves; their codes are then replaced by nnopt's (a per-channel
step is the same step for every block of that channel), so the weights in the file are exactly the compressed
model's, even after QAT's learned steps, and the files predict what nnopt predicts to float rounding (but for
the dynamic int8 option).

The quantizers need MatMul nodes; torch's exporter writes a Linear as Gemm(transB=1), which `gemm_as_matmul`
rewrites as MatMul with the transposed weight, then Add of the bias (the ONNX definition of Gemm with alpha =
beta = 1). Layers are found by value: the initializer that equals a quantized weight (transposed) is that weight,
whatever name the exporter gave it. Conv layers have no weight-only quantized operator in ONNX Runtime: they stay
as exported (fp32 weights that take the quantized values); static int8 (`quantize_onnx_int8`) covers them.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnopt.errors import UsageError, unknown_name

from nnopt.compress._export import _check_onnx, _existing, _one_line, _quiet_root_logger, _write
from nnopt.compress._quant import QTensor, qrange

# ONNX Runtime's fast CPU kernels take 16..256; 64 stores half the per-block steps of 32: LeNet-300-100's int4 file
# 6.5x smaller than fp32 instead of 6.1x, at 1.08x / 1.04x fp32's latency at batch 1 / 256 (benchmarks/RESULTS.md)
BLOCK_SIZE = 64
NBITS = (2, 4, 8)  # what MatMulNBits stores; nnopt's binary (1-bit) codes are stored as 2-bit ones
INT8_FORMS = ("dequantize", "dynamic", "nbits")


def quantized_onnx(fp32_path: str | Path, out_path: str | Path, qweights: Mapping[str, QTensor], *,
                   int8: str = "dequantize", block_size: int = BLOCK_SIZE, accuracy_level: int | None = None) -> Path:
    """Write to `out_path` the fp32 ONNX file `fp32_path` with every Linear weight found in `qweights` (name ->
    QTensor, as quantize_model / finish_qat return them) stored as its own integer codes.

    8-bit weights are stored as int8 codes and steps that Cast and Mul turn back into the fp32 weight
    (`int8="dequantize"`: exact, fp32's speed), or go to MatMulInteger (`"dynamic"`: activations rounded too) or
    MatMulNBits (`"nbits"`); the others to MatMulNBits. Weights not found (Conv, or a model with no quantized
    Linear) stay as they are; with no quantized Linear at all the file is written unchanged. `accuracy_level` is MatMulNBits' (None: fp32 compute, the exact
    one; 4: int8 activations, faster on some CPUs, not the compressed model's arithmetic).
    """
    if int8 not in INT8_FORMS:
        raise unknown_name("int8 form", int8, INT8_FORMS)
    import onnx

    fp32_path = _existing(fp32_path)
    try:
        model = onnx.load(str(fp32_path))
    except Exception as exc:
        raise UsageError(f"cannot read ONNX model {fp32_path}: {_one_line(exc)}") from None
    linear = {name: q for name, q in qweights.items() if len(q.shape) == 2}
    targets = gemm_as_matmul(model, linear)
    if not targets:
        return _write(out_path, model.SerializeToString(), "write the ONNX model")
    groups: dict[tuple[int, bool], dict[str, QTensor]] = {}
    for output, q in targets.items():
        bits, symmetric = _stored_bits(q)
        groups.setdefault((bits, symmetric), {})[output] = q
    for (bits, symmetric), group in groups.items():
        if bits == 8 and int8 != "nbits":
            model = _ort_dynamic(model, group, symmetric) if int8 == "dynamic" else _dequantized(model, group)
            continue
        model = _ort_nbits(model, group, bits, symmetric, block_size, accuracy_level)
        _write_codes(model, group, bits, symmetric, block_size)
    _bias_into_matmul(model)
    blob = model.SerializeToString()
    _check_onnx(blob, f"cannot write the weight-only quantized ONNX model of {fp32_path}")
    return _write(out_path, blob, "write the weight-only quantized ONNX model")


def gemm_as_matmul(model, qweights: Mapping[str, QTensor]) -> dict[str, QTensor]:
    """Rewrite, in place, each Gemm / MatMul whose constant weight equals one of `qweights` (dequantized) as
    MatMul(x, W^T) (+ Add(bias)); return {MatMul output name: its QTensor}."""
    from onnx import helper, numpy_helper

    from nnopt.compress._quant import dequantize

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    weights = [(name, q, dequantize(q).numpy()) for name, q in qweights.items()]
    found: dict[str, QTensor] = {}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b_name = node.input[1] if len(node.input) > 1 else ""
        plain_gemm = node.op_type == "Gemm" and attrs.get("transA", 0) == 0 and attrs.get("transB", 0) == 1 \
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if not (plain_gemm or node.op_type == "MatMul") or b_name not in inits or uses[b_name] != 1:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(inits[b_name])
        weight = b if node.op_type == "Gemm" else b.T  # (out, in), as torch keeps it
        match = next((q for name, q, w in weights if w.shape == weight.shape and np.array_equal(w, weight)), None)
        if match is None:
            nodes.append(node)
            continue
        product = node.output[0] if node.op_type == "MatMul" or len(node.input) < 3 else node.output[0] + "_matmul"
        if node.op_type == "Gemm":
            transposed = numpy_helper.from_array(np.ascontiguousarray(b.T), b_name)
            inits[b_name].CopyFrom(transposed)
            nodes.append(helper.make_node("MatMul", [node.input[0], b_name], [product], name=node.name + "_matmul"))
            if len(node.input) > 2 and node.input[2]:
                nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                              name=node.name + "_bias"))
        else:
            nodes.append(node)
        found[product] = match
    del graph.node[:]
    graph.node.extend(nodes)
    transposed = {n.input[1] for n in nodes if n.op_type == "MatMul"}
    stale = [v for v in graph.value_info if v.name in transposed]  # the exporter's shapes of the (out, in) weights
    for v in stale:
        graph.value_info.remove(v)
    return found


def _stored_bits(q: QTensor) -> tuple[int, bool]:
    """(MatMulNBits bits, symmetric: codes centred on the operator's default zero point 2**(bits-1))."""
    if q.scheme == "binary":
        return 2, True
    if q.bits not in NBITS:
        raise UsageError(f"{q.bits}-bit weights have no MatMulNBits form; quantize to 8, 4 or 2 bits")
    return q.bits, q.scheme == "symmetric"


def _ort_nbits(model, group: Mapping[str, QTensor], bits: int, symmetric: bool, block_size: int,
               accuracy_level: int | None):
    """ONNX Runtime's n-bit quantizer on the MatMul nodes producing `group`'s outputs (the rest excluded)."""
    nbits = _nbits_quantizer()
    excluded = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.output[0] not in group]
    unnamed = [n for n in model.graph.node if n.op_type == "MatMul" and not n.name]
    for k, node in enumerate(unnamed):  # nodes_to_exclude goes by name
        node.name = f"nnopt_matmul_{k}"
        if node.output[0] not in group:
            excluded.append(node.name)
    config = nbits.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, bits=bits,
                                                accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",))
    quantizer = nbits.MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=symmetric,
                                           accuracy_level=accuracy_level, nodes_to_exclude=excluded,
                                           algo_config=config)
    try:
        with warnings.catch_warnings(), _quiet_root_logger(), _quiet("onnxruntime"):
            warnings.simplefilter("ignore")
            quantizer.process()
    except Exception as exc:
        raise UsageError(f"cannot quantize the ONNX weights to {bits} bits: {_one_line(exc)}") from None
    return quantizer.model.model


def _dequantized(model, group: Mapping[str, QTensor]):
    """Each MatMul producing one of `group`'s outputs takes its weight from int8 (uint8 when asymmetric) codes:
    Cast to float, minus the zero point, times the per-channel step, in that order, as `dequantize` computes it,
    so the weight is the compressed model's to the bit. The codes and steps are initializers: ONNX Runtime folds
    the three nodes into one fp32 weight when it loads the file (the file is small, the speed fp32's)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        q = group.get(node.output[0]) if node.op_type == "MatMul" else None
        if q is None:
            nodes.append(node)
            continue
        name = node.input[1]
        n_out = q.shape[0]
        asymmetric = q.scheme == "asymmetric"
        codes = q.q.detach().cpu().numpy().T.astype(np.uint8 if asymmetric else np.int8)  # (in, out)
        step = np.broadcast_to(q.scale.cpu().numpy().astype(np.float32).reshape(1, -1), (1, n_out))
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(codes), name + "_codes"),
                                  numpy_helper.from_array(np.ascontiguousarray(step), name + "_step")])
        nodes.append(helper.make_node("Cast", [name + "_codes"], [name + "_float"], to=TensorProto.FLOAT))
        value = name + "_float"
        if asymmetric:
            zero = np.broadcast_to(q.zero_point.cpu().numpy().astype(np.float32).reshape(1, -1), (1, n_out))
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(zero), name + "_zero"))
            nodes.append(helper.make_node("Sub", [value, name + "_zero"], [name + "_centred"]))
            value = name + "_centred"
        nodes.append(helper.make_node("Mul", [value, name + "_step"], [name]))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _ort_dynamic(model, group: Mapping[str, QTensor], symmetric: bool):
    """ONNX Runtime's dynamic int8 quantization of the MatMul nodes producing `group`'s outputs, then nnopt's codes
    and steps in the weights, steps and zero points it wrote (int8 codes with zero point 0 when symmetric, uint8
    codes and zero points otherwise)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = []
    for k, node in enumerate(n for n in model.graph.node if n.op_type == "MatMul"):
        node.name = node.name or f"nnopt_matmul_{k}"  # nodes_to_quantize goes by name
        if node.output[0] in group:
            names.append(node.name)
    with tempfile.TemporaryDirectory(prefix="nnopt-int8-") as tmp:
        target = Path(tmp) / "int8.onnx"
        try:
            with warnings.catch_warnings(), _quiet_root_logger():
                warnings.simplefilter("ignore")
                quantize_dynamic(model, target, op_types_to_quantize=["MatMul"], nodes_to_quantize=names,
                                 per_channel=True, weight_type=QuantType.QInt8 if symmetric else QuantType.QUInt8)
        except Exception as exc:
            raise UsageError(f"cannot quantize the ONNX weights to 8 bits: {_one_line(exc)}") from None
        import onnx

        model = onnx.load(str(target))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumer = {i: n for n in graph.node for i in n.input}
    done = set()
    for node in (n for n in graph.node if n.op_type == "MatMulInteger"):
        cast = consumer[node.output[0]]
        rescale = consumer[cast.output[0]]  # Mul(int32 product as float, input step x weight steps)
        steps = producer[next(i for i in rescale.input if i != cast.output[0])]
        scale_name = next(i for i in steps.input if i in inits)
        q = group.get(rescale.output[0])
        if q is None:
            continue
        codes = q.q.detach().cpu().numpy().T  # (in, out), as MatMul takes it
        n_out = q.shape[0]
        zero = q.zero_point.cpu().numpy().reshape(-1) if not symmetric else np.zeros(1)
        dtype = np.int8 if symmetric else np.uint8
        arrays = {node.input[1]: np.ascontiguousarray(codes.astype(dtype)),
                  node.input[3]: np.broadcast_to(zero.astype(dtype), (n_out,)).copy(),
                  scale_name: np.broadcast_to(q.scale.cpu().numpy().astype(np.float32).reshape(-1), (n_out,)).copy()}
        _replace(inits, arrays)
        done.add(rescale.output[0])
    if set(group) - done:
        raise UsageError(f"ONNX Runtime's quantizer left {len(set(group) - done)} int8 layer(s) as MatMul")
    return model


def _replace(inits: Mapping[str, object], arrays: Mapping[str, np.ndarray]) -> None:
    """Each named initializer ONNX Runtime's quantizer wrote, replaced by nnopt's array of the same shape and
    dtype (a different one means the quantizer's layout is not the one nnopt writes into)."""
    from onnx import numpy_helper

    for name, array in arrays.items():
        old = numpy_helper.to_array(inits[name])
        if old.shape != array.shape or old.dtype != array.dtype:
            raise UsageError(f"ONNX Runtime's quantizer wrote {name} as {old.dtype}{list(old.shape)}; "
                             f"nnopt's codes are {array.dtype}{list(array.shape)}")
        inits[name].CopyFrom(numpy_helper.from_array(array, name))


def _nbits_quantizer():
    """onnxruntime.quantization.matmul_nbits_quantizer, imported without the logging.basicConfig(level=INFO) it
    runs on import: that would print every later INFO record of every library to stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization import matmul_nbits_quantizer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return matmul_nbits_quantizer


def _write_codes(model, group: Mapping[str, QTensor], bits: int, symmetric: bool, block_size: int) -> None:
    """Put nnopt's codes and steps in the MatMulNBits initializers the quantizer wrote (same shapes, same layout:
    B (N, blocks, block_size * bits / 8) with the first code of a byte in its low bits, scales (N, blocks),
    zero points (N, ceil(blocks * bits / 8)) packed the same way)."""
    from onnx import helper

    inits = {t.name: t for t in model.graph.initializer}
    done = set()
    for node in model.graph.node:
        if node.op_type != "MatMulNBits" or node.output[0] not in group:
            continue
        q = group[node.output[0]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        n_out, k_in = q.shape
        if (attrs["N"], attrs["K"], attrs["bits"], attrs["block_size"]) != (n_out, k_in, bits, block_size):
            raise UsageError(f"ONNX Runtime's quantizer wrote a {attrs['N']}x{attrs['K']} {attrs['bits']}-bit layer "
                             f"for a {n_out}x{k_in} {bits}-bit weight")
        packed, scales, zero_points = _blocks(q, bits, symmetric, block_size)
        _replace(inits, dict(zip(node.input[1:4], (packed, scales, zero_points))))
        done.add(node.output[0])
    missing = set(group) - done
    if missing:
        raise UsageError(f"ONNX Runtime's quantizer left {len(missing)} quantized layer(s) as MatMul")


def _bias_into_matmul(model) -> None:
    """Each MatMulNBits followed by Add(bias) takes the bias as its own input (MatMulNBits' input 5), in place: one
    kernel per layer instead of two (batch 1: about 0.8x the time of the unfused pair on LeNet-300-100)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    fused: dict[str, str] = {}  # the Add's output -> the MatMulNBits output it replaces
    for node in graph.node:
        if node.op_type != "MatMulNBits" or node.output[0] in outputs or len(consumers.get(node.output[0], [])) != 1:
            continue
        add = consumers[node.output[0]][0]
        n_out = next(a.i for a in node.attribute if a.name == "N")
        bias = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        if add.op_type != "Add" or bias not in inits or tuple(numpy_helper.to_array(inits[bias]).shape) != (n_out,):
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))  # zero_points and g_idx stay optional
        del node.input[:]
        node.input.extend([*inputs[:5], bias])
        fused[add.output[0]] = node.output[0]
        node.output[0] = add.output[0]
    kept = [n for n in graph.node if not (n.op_type == "Add" and n.output[0] in fused)]
    del graph.node[:]
    graph.node.extend(kept)


def _blocks(q: QTensor, bits: int, symmetric: bool, block_size: int) -> tuple[np.ndarray, ...]:
    """(packed codes, scales, packed zero points) of a weight (out, in) in MatMulNBits' layout."""
    n_out, k_in = q.shape
    blocks = -(-k_in // block_size)
    offset = 2 ** (bits - 1)  # the operator's zero point when none is given
    scale = np.broadcast_to(q.scale.detach().cpu().numpy().astype(np.float32).reshape(-1, 1), (n_out, 1))
    codes = q.q.detach().cpu().numpy().astype(np.int32)
    if q.scheme == "binary":
        unsigned, zero = (codes > 0) * 2 - 1 + offset, np.full((n_out, 1), offset)
    elif symmetric:
        unsigned, zero = codes + offset, np.full((n_out, 1), offset)
    else:
        zero = np.broadcast_to(q.zero_point.cpu().numpy().astype(np.int32).reshape(-1, 1), (n_out, 1))
        unsigned = codes
    lo, hi = qrange(bits, "asymmetric")
    if unsigned.min(initial=lo) < lo or unsigned.max(initial=hi) > hi:
        raise UsageError(f"quantized codes outside 0..{hi} for {bits} bits")
    padded = np.concatenate([unsigned, np.broadcast_to(zero, (n_out, blocks * block_size - k_in))], axis=1)
    packed = _pack(padded.reshape(n_out, blocks, block_size), bits)
    scales = np.ascontiguousarray(np.broadcast_to(scale, (n_out, blocks)), dtype=np.float32)
    zero_points = _pack(np.broadcast_to(zero, (n_out, blocks)), bits, pad_to=-(-blocks * bits // 8) * 8 // bits)
    return packed, scales, zero_points


def _pack(values: np.ndarray, bits: int, pad_to: int | None = None) -> np.ndarray:
    """Pack the last axis, 8 // bits values a byte, the first in the lowest bits."""
    per_byte = 8 // bits
    values = np.asarray(values, dtype=np.uint8)
    if pad_to is not None and pad_to > values.shape[-1]:
        pad = [(0, 0)] * (values.ndim - 1) + [(0, pad_to - values.shape[-1])]
        values = np.pad(values, pad)
    grouped = values.reshape(*values.shape[:-1], -1, per_byte)
    out = np.zeros(grouped.shape[:-1], dtype=np.uint8)
    for k in range(per_byte):
        out |= (grouped[..., k] << (bits * k)).astype(np.uint8)
    return out


class _quiet:
    """Raise a library logger to ERROR for the duration (ONNX Runtime's quantizer logs each node at INFO)."""

    def __init__(self, name: str):
        self._logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


__all__ = ["BLOCK_SIZE", "INT8_FORMS", "gemm_as_matmul", "quantized_onnx"]
