"""ONNX export, static int8 quantization with onnxruntime, and CPU latency of torch and ONNX Runtime models.

A network leaves nnopt as one `.onnx` file, written by torch's current exporter (torch.onnx.export with
dynamo=True; the TorchScript one only where that fails): input "input" (batch, in_features) with a dynamic batch
axis, output "logits". `quantize_onnx_int8` turns that file into a QDQ int8 model calibrated on real rows; ONNX
Runtime fuses the QuantizeLinear/DequantizeLinear pairs around MatMul/Gemm/Conv into integer kernels. Every file
is written atomically. onnx, onnxruntime and torch.onnx are imported on first use: they are slow to import.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nnopt.errors import ConfigError, UsageError, unknown_name
from nnopt.fileio import atomic_write
from nnopt.models import measure_latency_ms

if TYPE_CHECKING:
    import onnxruntime

INPUT_NAME, OUTPUT_NAME = "input", "logits"
RUNTIMES = ("torch", "onnxruntime")
MIN_CONV_CHANNELS = 16  # thinner convolutions stay fp32 in the int8 file: QDQ around them is slower in ONNX Runtime
_WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # the layers whose int8 kernels save time
_ACTIVATIONS = ("Relu", "Clip")  # the quantizer folds them into the layer before them
_RESHAPES = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")  # move values, compute nothing
CALIBRATION_ROWS = 512  # MinMax ranges settle well before this on small tabular / image data
CALIBRATION_BATCH = 64
_INPUT_SEED = 0  # latency inputs and the calibration subset come from their own generators
OPSET = 18  # the dynamo exporter's own; the TorchScript fallback uses it too
DYNAMO_MIN_OPSET = 18  # torch.onnx's current exporter writes opset 18 and newer
CHECK_TOLERANCE = 1e-4  # largest |ONNX Runtime - torch| on an export check, relative to the largest |logit| (>= 1)


# --------------------------------------------------------------------------------------------------- export

def export_onnx(model: nn.Module, in_features: int, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write `model` (flat rows (n, in_features) -> logits) to `path` as ONNX; return the path.

    torch's current exporter (`torch.onnx.export(..., dynamo=True)`, through torch.export) writes the file, with a
    dynamic batch axis; the result is run in ONNX Runtime and checked against torch's outputs. Where that exporter
    fails on a model, or its file disagrees with torch, the deprecated TorchScript exporter is used instead, with
    a one-line warning saying so. The model is exported in eval mode from a CPU copy when it lives elsewhere; its
    own mode is restored. Weights are stored dense fp32: `quantized_onnx` turns a quantized model's file into
    its integer codes.
    """
    _check_int("in_features", in_features, 1)
    _check_int("opset", opset, 7)
    if not isinstance(model, nn.Module):
        raise UsageError(f"cannot export model to ONNX: expected a torch.nn.Module; got {type(model).__name__}")
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        model = copy.deepcopy(model).cpu()
    dummy = torch.zeros(2, in_features)  # float32 rows; batch 2: a batch-1 trace may specialise the batch axis
    was_training = model.training
    model.eval()
    try:
        try:
            blob = _dynamo_export(model, dummy, max(opset, DYNAMO_MIN_OPSET))
            _check_onnx(blob, "torch.onnx's exporter")
            _check_against_torch(blob, model, in_features)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the fallback says why in one line
            reason = _root_cause(exc)
            blob = _torchscript_export(model, dummy, opset)
            warnings.warn(f"torch.onnx's exporter (dynamo=True) could not export {type(model).__name__} "
                          f"({reason[:200]}); exported it with the TorchScript exporter", stacklevel=2)
    finally:
        model.train(was_training)
    _check_onnx(blob, "cannot export model to ONNX")
    return _write(path, blob, "export model to ONNX")


def _dynamo_export(model: nn.Module, dummy: torch.Tensor, opset: int) -> bytes:
    """The model through torch.export and torch.onnx's current exporter, its graph optimised (constants folded)."""
    import torch.onnx as torch_onnx

    # torch.onnx logs every optional op set it skips (torchvision's); on a model torch.export cannot trace, torch
    # logs through its own handlers ("Unable to find user code ...") and prints the partial FX graph on stderr.
    # The fallback's one-line warning says what matters.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch_onnx.export(
                model, (dummy,), None, dynamo=True, opset_version=opset, verbose=False, report=False,
                verify=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
    return program.model_proto.SerializeToString()


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of an exporter's failure, in one line: torch.onnx wraps torch.export's error (a
    GuardOnDataDependentSymNode for a branch on tensor values) in a page of next steps."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    first = _one_line(str(exc).split("\n")[0]) if str(exc).strip() else type(exc).__name__
    return first if isinstance(exc, (UsageError, ConfigError)) else f"{type(exc).__name__}: {first}"


def _torchscript_export(model: nn.Module, dummy: torch.Tensor, opset: int) -> bytes:
    import torch.onnx as torch_onnx

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _onnx_log_to_stderr():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+ deprecates this exporter
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch_onnx.export(
                model, (dummy,), buffer, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises many types (RuntimeError, SymbolicValueError, ...)
        raise UsageError(f"cannot export model to ONNX: {_one_line(exc)}") from None
    return buffer.getvalue()


def _check_against_torch(blob: bytes, model: nn.Module, in_features: int) -> None:
    """ONNX Runtime's outputs on random rows (batch 1 and 3: the batch axis must stay dynamic) against torch's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(_INPUT_SEED).standard_normal((4, in_features), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[:1]})[0],
                          session.run(None, {session.get_inputs()[0].name: x[1:]})[0]])
    scale = max(1.0, float(np.abs(expected).max()))
    if got.shape != expected.shape or not np.abs(got - expected).max() <= CHECK_TOLERANCE * scale:
        raise UsageError(f"its ONNX outputs differ from torch's (shape {got.shape} vs {expected.shape})")


@contextlib.contextmanager
def _onnx_log_to_stderr() -> Iterator[None]:
    """On a failed export torch's C++ exporter dumps its graph to stdout; keep stdout clean (the CLI's --json)."""
    set_stream = getattr(torch._C, "_jit_set_onnx_log_output_stream", None)
    if set_stream is None:
        yield
        return
    set_stream("stderr")
    try:
        yield
    finally:
        set_stream("stdout")  # torch's default


# ------------------------------------------------------------------------------------------------- quantize

class _RowReader:
    """onnxruntime CalibrationDataReader over calibration rows, CALIBRATION_BATCH rows at a time."""

    def __init__(self, rows: np.ndarray, input_name: str):
        self._batches: Iterator[np.ndarray] = iter(
            [rows[i:i + CALIBRATION_BATCH] for i in range(0, len(rows), CALIBRATION_BATCH)])
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def quantize_onnx_int8(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray | torch.Tensor, *,
                       per_channel: bool = True, max_rows: int = CALIBRATION_ROWS,
                       min_channels: int = MIN_CONV_CHANNELS) -> Path:
    """Static post-training int8 quantization of an fp32 ONNX file, QDQ format; return `out_path`.

    Weights are QInt8 (per output channel when `per_channel`), activations QUInt8, ranges from MinMax
    calibration on up to `max_rows` rows of `calibration` (a seeded random subset when there are more) —
    pass training rows, scaled like the model's inputs. The graph is shape-inferred and optimised
    (quant_pre_process) before quantization. Conv layers with fewer than `min_channels` output channels stay fp32:
    on a thin convolution the Quantize / Dequantize pairs cost more than the int8 arithmetic saves (0: quantize
    every Conv). So does every node that is not a weighted layer (pooling, adds, ...) with no int8 weighted layer
    next to it (`_fp32_nodes`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _check_int("max_rows", max_rows, 1)
    _check_int("min_channels", min_channels, 0)
    fp32_path = _existing(fp32_path)
    input_name, n_features = _model_input(fp32_path)
    rows = _calibration_rows(calibration, n_features, max_rows)
    with tempfile.TemporaryDirectory(prefix="nnopt-quant-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        try:
            with warnings.catch_warnings(), _quiet_root_logger():
                warnings.simplefilter("ignore")
                _pre_process(quant_pre_process, fp32_path, prepared)
                fp32 = _fp32_nodes(prepared, min_channels)
                quantize_static(
                    str(prepared), str(quantized), _RowReader(rows, input_name),
                    quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=fp32,
                )
        except Exception as exc:
            raise UsageError(f"cannot quantize {fp32_path} to int8: {_one_line(exc)}") from None
        blob = quantized.read_bytes()
    _check_onnx(blob, f"cannot quantize {fp32_path} to int8")
    return _write(out_path, blob, "write the int8 ONNX model")


def _fp32_nodes(path: Path, min_channels: int) -> list[str]:
    """The names of the nodes of the ONNX file at `path` that stay fp32 in the int8 file: Conv nodes with fewer than
    `min_channels` output channels (their weight initializer's first axis), and every other node that is not a
    weighted layer (MaxPool, Add, Concat, ...) with no int8 weighted layer next to it. Such a node would become an
    int8 island between fp32 layers: Quantize / Dequantize pairs around it and ONNX Runtime's plain int8 kernel in
    place of its blocked fp32 one (an 8-channel MaxPool at batch 64: about 10x its fp32 time, benchmarks/RESULTS.md).
    Activations (Relu, Clip) and reshapes (Reshape, Flatten, Transpose, ...) are looked through; activations are left
    to the quantizer, which folds them into the layer before them. Unnamed nodes are named, and the file rewritten,
    so they can be excluded."""
    import onnx

    model = onnx.load(str(path))
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    nodes = list(model.graph.node)
    renamed = False
    for i, node in enumerate(nodes):
        if not node.name:
            node.name, renamed = f"nnopt_{node.op_type.lower()}_{i}", True
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def thin(node) -> bool:
        weight = shapes.get(node.input[1], ()) if len(node.input) > 1 else ()
        return len(weight) >= 1 and weight[0] < min_channels

    int8 = {node.name for node in nodes if node.op_type in _WEIGHTED and not (node.op_type == "Conv" and thin(node))}

    def neighbours(node, seen: set[str]) -> Iterator[Any]:
        for near in [producer[i] for i in node.input if i in producer] + \
                [c for out in node.output for c in consumers.get(out, [])]:
            if near.name in seen:
                continue
            seen.add(near.name)
            yield near
            if near.op_type in _ACTIVATIONS or near.op_type in _RESHAPES:
                yield from neighbours(near, seen)

    keep_fp32 = [node.name for node in nodes if node.op_type == "Conv" and thin(node)]
    keep_fp32 += [node.name for node in nodes if node.op_type not in _WEIGHTED and node.op_type not in _ACTIVATIONS
                  and not any(near.name in int8 for near in neighbours(node, {node.name}))]
    if renamed:
        onnx.save(model, str(path))
    return keep_fp32


@contextlib.contextmanager
def _quiet_root_logger() -> Any:
    """onnxruntime.quantization logs through the root logger ("Axis 1 is out-of-range for weight ..." for a
    batch norm's 1-D weight, which it then quantizes per tensor, as wanted); the library logs nothing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _pre_process(quant_pre_process: Any, source: Path, target: Path) -> None:
    """Shape inference + graph optimisation before quantization, as onnxruntime recommends.

    The symbolic shape inference asserts on the CNN's Unflatten (a Reshape to a shape computed from the
    dynamic batch size), so on failure it is skipped and ONNX's own shape inference is used alone.
    """
    try:
        quant_pre_process(str(source), str(target))
    except Exception:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)


# ----------------------------------------------------------------------------------------------- inference

def ort_session(path: str | Path, threads: int = 1) -> onnxruntime.InferenceSession:
    """A CPU InferenceSession: `threads` intra-op threads, one inter-op thread, sequential, all graph optimisations."""
    import onnxruntime as ort

    _check_int("threads", threads, 1)
    path = _existing(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the library logs nothing by default
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UsageError(f"cannot load ONNX model {path}: {_one_line(exc)}") from None


def ort_predict(path_or_session: str | Path | onnxruntime.InferenceSession, X: np.ndarray | torch.Tensor,
                batch: int = 4096) -> np.ndarray:
    """Logits (float32) of every row of X, in input order, computed `batch` rows at a time."""
    _check_int("batch", batch, 1)
    session = _session(path_or_session)
    name, n_features = _session_input(session)
    x = _as_rows(X, n_features, "X")
    chunks = [session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    if not chunks:
        n_out = session.get_outputs()[0].shape[1:]
        return np.zeros((0, *[d if isinstance(d, int) else 0 for d in n_out]), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def agreement(a_logits: np.ndarray | torch.Tensor, b_logits: np.ndarray | torch.Tensor) -> float:
    """Fraction of rows whose predicted class agrees: argmax for K logits, the logit's sign for one."""
    a, b = _as_numpy(a_logits), _as_numpy(b_logits)
    if a.shape != b.shape or a.ndim not in (1, 2) or len(a) == 0:
        raise UsageError(f"agreement needs two non-empty logit arrays of the same shape; got {a.shape} and {b.shape}")
    if a.ndim == 1 or a.shape[1] == 1:
        same = (a.reshape(-1) > 0) == (b.reshape(-1) > 0)
    else:
        same = a.argmax(axis=1) == b.argmax(axis=1)
    return float(same.mean())


# ------------------------------------------------------------------------------------------------- latency

def ort_latency_ms(path_or_session: str | Path | onnxruntime.InferenceSession, in_features: int, *,
                   batch: int = 1, repeats: int = 30, warmup: int = 5) -> float:
    """Median ms of `repeats` timed session.run calls on random float32 input, after `warmup` untimed ones.

    A path is loaded with one intra-op thread; a session is timed as it was configured.
    """
    for name, value, least in (("in_features", in_features, 1), ("batch", batch, 1),
                               ("repeats", repeats, 1), ("warmup", warmup, 0)):
        _check_int(name, value, least)
    session = _session(path_or_session)
    name, n_features = _session_input(session)
    if n_features is not None and n_features != in_features:
        raise UsageError(f"the ONNX model takes {n_features} features; got in_features={in_features}")
    x = np.random.default_rng(_INPUT_SEED).standard_normal((batch, in_features), dtype=np.float32)
    feed = {name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times_ns = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        session.run(None, feed)
        times_ns.append(time.perf_counter_ns() - start)
    return statistics.median(times_ns) / 1e6


def torch_latency_ms(model: nn.Module, sample_shape: int | Sequence[int], *, batch: int = 1, repeats: int = 30,
                     warmup: int = 5) -> float:
    """Median ms of the torch eager forward on one CPU thread (nnopt.models.measure_latency_ms); sample_shape:
    the row width, or the shape of one sample a user's module takes."""
    return measure_latency_ms(model, sample_shape, batch=batch, repeats=repeats, warmup=warmup, threads=1)


def latency_table(entries: Mapping[str, tuple[str, Any]], in_features: int,
                  batches: Sequence[int] = (1, 256), *, repeats: int = 30, warmup: int = 5) -> list[dict[str, Any]]:
    """Latency of several variants at several batch sizes, one thread each.

    entries: {name: ("torch", nn.Module) | ("onnxruntime", path or InferenceSession)}.
    Returns rows {"model", "runtime", "batch", "latency_ms"}, entries in order, batches inner.
    """
    rows = []
    for name, entry in entries.items():
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise UsageError(f"latency_table entry '{name}' must be a (runtime, model) pair; got {entry!r}")
        kind, obj = entry
        if kind not in RUNTIMES:
            raise unknown_name("runtime", kind, RUNTIMES)
        if kind == "onnxruntime":
            obj = _session(obj)  # load once, time every batch size on the same session
        for b in batches:
            if kind == "torch":
                ms = torch_latency_ms(obj, in_features, batch=b, repeats=repeats, warmup=warmup)
            else:
                ms = ort_latency_ms(obj, in_features, batch=b, repeats=repeats, warmup=warmup)
            rows.append({"model": name, "runtime": kind, "batch": b, "latency_ms": ms})
    return rows


# ------------------------------------------------------------------------------------------------- helpers

def _check_int(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}; got {value!r}")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # torch's messages colour words for a terminal


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(_ANSI.sub("", str(exc)).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _write(path: str | Path, blob: bytes, what: str) -> Path:
    try:
        return atomic_write(path, lambda fh: fh.write(blob))
    except OSError as exc:
        raise UsageError(f"cannot {what} at {path} ({exc.strerror or exc}); choose a writable path") from None


def _check_onnx(blob: bytes, failure: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(blob))
    except Exception as exc:
        raise UsageError(f"{failure}: the result fails onnx.checker: {_one_line(exc)}") from None


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX model file {path} does not exist; export one with export_onnx first")
    return path


def _model_input(path: Path) -> tuple[str, int | None]:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise UsageError(f"cannot read ONNX model {path}: {_one_line(exc)}") from None
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"ONNX model {path} must have one input; it has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    width = dims[1].dim_value if len(dims) == 2 and dims[1].HasField("dim_value") else None
    return inputs[0].name, width


def _session(path_or_session: Any) -> onnxruntime.InferenceSession:
    if isinstance(path_or_session, (str, Path)):
        return ort_session(path_or_session, threads=1)
    if not (hasattr(path_or_session, "run") and hasattr(path_or_session, "get_inputs")):
        raise UsageError(f"expected an ONNX file path or an onnxruntime.InferenceSession; "
                         f"got {type(path_or_session).__name__}")
    return path_or_session


def _session_input(session: Any) -> tuple[str, int | None]:
    info = session.get_inputs()[0]
    width = info.shape[1] if len(info.shape) == 2 and isinstance(info.shape[1], int) else None
    return info.name, width


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _as_rows(values: Any, n_features: int | None, what: str) -> np.ndarray:
    x = _as_numpy(values)
    if x.ndim != 2:
        raise UsageError(f"{what} must be a 2-D array of rows (n, features); got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise UsageError(f"{what} must have {n_features} columns, the model's input features; "
                         f"got {x.shape[1]} (shape {x.shape})")
    return np.ascontiguousarray(x, dtype=np.float32)


def _calibration_rows(calibration: Any, n_features: int | None, max_rows: int) -> np.ndarray:
    x = _as_rows(calibration, n_features, "calibration")
    if len(x) == 0:
        raise UsageError("calibration needs at least one row; pass training rows scaled like the model's input")
    if not np.isfinite(x).all():
        raise UsageError("calibration rows contain NaN or inf; pass finite, scaled training rows")
    if len(x) > max_rows:
        keep = np.sort(np.random.default_rng(_INPUT_SEED).choice(len(x), size=max_rows, replace=False))
        x = x[keep]
    return x


__all__ = [
    "INPUT_NAME", "OUTPUT_NAME", "RUNTIMES", "agreement", "export_onnx", "latency_table", "ort_latency_ms",
    "ort_predict", "ort_session", "quantize_onnx_int8", "torch_latency_ms",
]
