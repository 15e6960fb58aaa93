"""export(): the model as one ONNX or TorchScript file that takes raw feature rows.

The feature scaling fitted at training time is put in front of the network and, for regression, the target
scaling is undone behind it, so the file needs nothing from nnopt: input (batch, n_features) float32 in the
training feature order, output "logits" (class scores, in class_names order) or values in target units.
ONNX goes through nnopt.compress.export_onnx. Feature names, class names and the task travel inside the
file (ONNX metadata_props, a TorchScript extra file "nnopt.json"). The file is written under a temporary name
beside `out`, run on rows drawn around the training statistics (and rows that sweep the features' range) and
compared with nnopt's own outputs; it takes its name only when they agree within a tolerance, else export
refuses it, naming the difference (a Python `if` on tensor values traced one way is the usual cause).

A compressed model (a compress run directory, a compressed.nnz file) is exported compressed in ONNX, as `nnopt
compress --export onnx` writes it: its quantized Linear weights as their own integer codes and steps
(nnopt.compress.quantized_onnx), a structurally pruned network as the smaller dense graph it is.

A model trained on a table (preprocessing["table"]) takes raw columns: in ONNX one input per column, float32 or
text, with the imputation and encoding built into the graph by nnopt.compress.table_onnx (the same function
`nnopt compress --export onnx` writes its files with); it is checked on raw rows that include rare, unseen and
missing categories and missing numbers. TorchScript has no string tensors: a table of numbers goes in as one
float tensor in column order (NaN filled in the module), a table with a text column is refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.compress import FP32_TOLERANCE, QUANTIZED_TOLERANCE, agreement, compare_outputs, export_onnx, \
    feature_scaling, is_compressed_file, ort_predict, ort_session, output_gap, quantized_onnx, read_qweights, \
    table_inputs, table_onnx, table_outputs, table_predict
from nnopt.data import feature_stat, kept_columns
from nnopt.errors import UsageError, keywords_checked, param, require_int, require_path, unknown_name
from nnopt.fileio import atomic_write
from nnopt.inference._predictor import Predictor, load_predictor

FORMATS = ("onnx", "torchscript")
DEFAULT_OUT = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
CHECK_ROWS = 1000
SWEEP_FRACTION = 0.1  # of the probe rows: every feature at the same point, from one end of its range to the other


@dataclass
class Exported:
    path: Path
    format: str
    task: str
    rows_checked: int
    agreement: float | None  # classification: fraction of rows with the same predicted class as nnopt
    max_abs_diff: float | None  # regression: largest |exported - nnopt| in target units
    max_proba_diff: float | None = None  # classification: largest |exported - nnopt| class probability
    inputs: list[dict[str, Any]] | None = None  # a table model's inputs: name, column, kind, dtype, missing

    def summary(self) -> dict[str, Any]:
        # level lists can run long: the file's metadata "nnopt.inputs" has them
        inputs = None if self.inputs is None else \
            [{k: v for k, v in entry.items() if k not in ("levels", "rare")} for entry in self.inputs]
        return {"path": str(self.path), "format": self.format, "task": self.task, "rows_checked": self.rows_checked,
                "agreement": self.agreement, "max_abs_diff": self.max_abs_diff,
                "max_proba_diff": self.max_proba_diff, "inputs": inputs}


class Deployed(nn.Module):
    """scale raw rows -> network -> (regression) back to target units."""

    def __init__(self, network: nn.Module, shift: np.ndarray, scale: np.ndarray,
                 y_mean: np.ndarray | None = None, y_std: np.ndarray | None = None):
        super().__init__()
        self.network = network
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.unscale = y_mean is not None
        self.register_buffer("y_mean", torch.as_tensor(y_mean if self.unscale else 0.0, dtype=torch.float32))
        self.register_buffer("y_std", torch.as_tensor(y_std if self.unscale else 1.0, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network((x - self.shift) / self.scale)
        return out * self.y_std + self.y_mean if self.unscale else out


def deployable(predictor: Predictor) -> Deployed:
    """The predictor's network with its recorded input (and target) scaling built in, in eval mode."""
    shift, scale = feature_scaling(predictor.preprocessing, predictor.n_features)
    y_scale = predictor.target_scale if predictor.task == "regression" else None
    y_mean, y_std = (np.asarray(y_scale[0]), np.asarray(y_scale[1])) if y_scale else (None, None)
    return Deployed(predictor.model, shift, scale, y_mean, y_std).eval()


@keywords_checked
def export(model: Any, format: str = "onnx", out: str | Path | None = None, *, check_rows: int = CHECK_ROWS,
           sample_shape: Any = None) -> Exported:
    """Write `model` (a run directory, model file, Predictor, nnopt.fit's FitResult or nn.Module) as `format`
    ("onnx" or "torchscript") to `out` (default model.onnx / model.torchscript.pt) and check it against nnopt on
    `check_rows` sampled rows.

    sample_shape: the shape of one input sample of an nn.Module, e.g. (3, 32, 32) (a run records its own); the
    exported file takes flat rows (batch, product of the shape)."""
    if format not in FORMATS:
        raise unknown_name("export format", format, FORMATS)
    if out is not None:
        require_path("out", out, "a file path")
    require_int("check_rows", check_rows, 1)
    predictor = load_predictor(model, sample_shape=sample_shape)
    path = Path(out if out is not None else DEFAULT_OUT[format])
    with _staged(path) as staging:  # written beside `path`, and renamed onto it only once the check passed
        export_checked = _export_table if predictor.table is not None else _export_rows
        result, ours, theirs = export_checked(predictor, format, staging, check_rows)
        _require_close(result, ours, theirs, predictor, format, path)
    result.path = path
    return result


def _export_rows(predictor: Predictor, format: str, path: Path,
                 check_rows: int) -> tuple[Exported, np.ndarray, np.ndarray]:
    """A model on feature rows: the scaling and network in one file, checked on probe rows. Returns the check and
    the outputs it compared: nnopt's and the file's (logits, or values in target units)."""
    deployed = deployable(predictor)
    info = _info(predictor)
    if format == "onnx":
        _network_onnx(deployed, predictor, path)
        _add_onnx_metadata(path, info)
    else:
        _save_torchscript(deployed, predictor.n_features, path, info)
    rows = probe_rows(predictor, check_rows)
    # a Python `if` decides once per batch: the sweep's rows go one at a time, so that each can take its own branch
    swept = int(len(rows) * SWEEP_FRACTION)
    batches = [rows[:len(rows) - swept]] + [rows[i:i + 1] for i in range(len(rows) - swept, len(rows))]
    run = _runner(path, format)
    theirs = np.concatenate([run(batch) for batch in batches])
    outputs = [predictor.outputs(predictor.inputs(batches[0]))]  # the network in eval mode from here
    with torch.inference_mode():  # a row a pass: the network itself, without outputs()' chunk sizing each call
        outputs += [predictor.model(predictor.inputs(batch)) for batch in batches[1:]]
    ours = torch.cat(outputs).numpy()
    result = Exported(path=path, format=format, task=predictor.task, rows_checked=len(rows), agreement=None,
                      max_abs_diff=None)
    if predictor.task == "classification":
        result.agreement = agreement(ours, theirs)
        ours_p, theirs_p = (predictor.decode(torch.from_numpy(o))[1] for o in (ours, theirs))
        result.max_proba_diff = float(np.abs(ours_p - theirs_p).max())
    else:
        values, _ = predictor.decode(torch.from_numpy(ours))
        result.max_abs_diff = float(np.max(np.abs(theirs.reshape(values.shape) - values)))
        ours = values
    return result, ours, theirs


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` (same directory, same suffix) to write and check the export in; renamed onto
    `path` when the block ends normally, removed otherwise: a file that failed its check never takes the name,
    and an earlier file at `path` stays as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc}); choose another {param('out')}") from None
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _tolerance(predictor: Predictor) -> float:
    """How far an exported file may be from nnopt: FP32_TOLERANCE, or QUANTIZED_TOLERANCE for a compressed model
    whose quantized weights the file holds as codes (ONNX Runtime's MatMulNBits adds them up in its own order)."""
    quantized = is_compressed_file(predictor.path) and bool(read_qweights(predictor.path))
    return QUANTIZED_TOLERANCE if quantized else FP32_TOLERANCE


def _require_close(result: Exported, ours: np.ndarray, theirs: np.ndarray, predictor: Predictor, format: str,
                   path: Path) -> None:
    """Refuse a file whose outputs are not nnopt's (`ours`, `theirs`: logits, or values in target units), as
    compress.output_gap measures them (compress refuses its ONNX files the same way)."""
    y_scale = predictor.target_scale if result.task == "regression" else None
    what = output_gap(result.task, ours, theirs, _tolerance(predictor), y_scale[1] if y_scale else None)
    if what is None:
        return
    tracer = "the exporter" if format == "onnx" else "torch.jit.trace"
    raise UsageError(f"{path} not written: on {result.rows_checked} sampled rows its {what}; likely cause: control "
                     f"flow in the model's forward (a Python `if` on tensor values) that {tracer} followed one way; "
                     "make forward traceable by torch.export (torch.where or torch.cond in place of the `if`) "
                     "and export again")


def _export_table(predictor: Predictor, format: str, path: Path,
                  check_rows: int) -> tuple[Exported, np.ndarray, np.ndarray]:
    """A table model: raw columns in, the table treatment, scaling and network in one file, checked on raw rows.
    Returns the check and the outputs it compared: nnopt's (raw network outputs) and the file's."""
    table, info = predictor.table, _info(predictor)
    if format == "onnx":
        with tempfile.TemporaryDirectory(prefix="nnopt-export-") as scratch:
            network = _network_onnx(predictor.model, predictor, Path(scratch) / "network.onnx")
            table_onnx(network, predictor.preprocessing, path)
        _add_onnx_metadata(path, info)
        exported = functools.partial(table_predict, path)
    else:
        text = [c for c in table["columns"] if c["kind"] in ("categorical", "date")]
        if text:
            what = "dates" if text[0]["kind"] == "date" else "text"
            raise UsageError(f"column '{text[0]['name']}' of this model is {what}, which TorchScript cannot take; "
                             f"export it with {param('format', 'onnx')} (one input per column, {what} included)")
        names = kept_columns(table)
        module = nn.Sequential(NumericColumns(table), deployable(predictor)).eval()
        _save_torchscript(module, len(names), path, {**info, "columns": names})

        def exported(columns: dict[str, np.ndarray]) -> np.ndarray:
            return run_exported(path, format, np.stack([columns[name] for name in names], axis=1))
    ours, theirs = table_outputs(predictor.preprocessing, lambda X: predictor.outputs(predictor.inputs(X)).numpy(),
                                 exported, check_rows)
    check = compare_outputs(predictor.task, ours, theirs)
    result = Exported(path=path, format=format, task=predictor.task, rows_checked=check["rows"],
                      agreement=check.get("agreement"), max_abs_diff=check.get("max_abs_diff"),
                      max_proba_diff=check.get("max_proba_diff"),
                      inputs=table_inputs(table) if format == "onnx" else None)
    return result, ours, theirs  # logits, or values in target units


def _network_onnx(module: nn.Module, predictor: Predictor, path: Path) -> Path:
    """`module` (the predictor's network, maybe behind its scaling) as ONNX at `path`; the quantized weights of a
    compressed file as their codes (the Linear layers found by value, whatever wraps them)."""
    qweights = read_qweights(predictor.path) if is_compressed_file(predictor.path) else {}
    if not qweights:
        return export_onnx(module, predictor.n_features, path)
    with tempfile.TemporaryDirectory(prefix="nnopt-export-") as scratch:
        fp32 = export_onnx(module, predictor.n_features, Path(scratch) / "fp32.onnx")
        return quantized_onnx(fp32, path, qweights)


class NumericColumns(nn.Module):
    """A table of numeric columns, (batch, columns) in the order training read them with NaN for a missing value ->
    the encoded features: skewed columns on a log scale, the train median in a missing cell, then a 0/1 indicator
    where training had one."""

    def __init__(self, table: dict):
        super().__init__()
        kept = [c for c in table["columns"] if c["kind"] == "numeric"]
        order = []  # columns of cat([filled, indicators]) in encode's order
        for i, c in enumerate(kept):
            order += [i] + ([len(kept) + i] if c["indicator"] else [])
        self.register_buffer("fill", torch.tensor([c["fill"] for c in kept], dtype=torch.float32))
        self.register_buffer("order", torch.tensor(order, dtype=torch.int64))
        # the skewed columns are read through sign(x) log(1 + |x|), as data.signed_log does
        self.register_buffer("logged", torch.tensor([bool(c.get("log")) for c in kept]))
        # ... from the train maximum for a left-skewed column (data.log_scale), from 0 for the others
        self.register_buffer("center", torch.tensor([float(c.get("center") or 0.0) for c in kept],
                                                    dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        absent = torch.isnan(x)
        centered = x - self.center
        x = torch.where(self.logged, torch.sign(centered) * torch.log1p(torch.abs(centered)), x)
        both = torch.cat([torch.where(absent, self.fill, x), absent.to(x.dtype)], dim=1)
        return both.index_select(1, self.order)


def _info(predictor: Predictor) -> dict[str, Any]:
    return {"task": predictor.task, "feature_names": predictor.feature_names, "target": predictor.target,
            "class_names": predictor.class_names if predictor.task == "classification" else None,
            "output": "logits" if predictor.task == "classification" else "values in target units",
            "source": predictor.description, **_image_input(predictor)}


def _image_input(predictor: Predictor) -> dict[str, Any]:
    """For a model trained on an image folder, what its flat input holds: each image decoded to this size and these
    channels, its pixels in [0, 1] in channel, row, column order (the recorded scaling is inside the file)."""
    image = (predictor.preprocessing or {}).get("image")
    if not image:
        return {}
    (height, width), channels = image["size"], image["channels"]
    return {"image": {"size": [int(height), int(width)], "channels": int(channels), "pixels": "[0, 1]",
                      "layout": f"flat (batch, {int(channels) * int(height) * int(width)}): channel, row, column"}}


def run_exported(path: str | Path, format: str, rows: np.ndarray | Mapping[str, Any]) -> np.ndarray:
    """Outputs of an exported file on raw rows: ONNX Runtime for .onnx, torch.jit for TorchScript. A table
    model's file takes its raw columns by name ({column: values})."""
    if isinstance(rows, Mapping):
        if format != "onnx":
            raise UsageError(f"raw columns by name go to a table model's ONNX file; give {param('format', 'onnx')}")
        return table_predict(path, rows)
    return _runner(Path(path), format)(np.ascontiguousarray(rows, dtype=np.float32))


def _runner(path: Path, format: str) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file, loaded once, as a function of raw rows (batch, features) -> its outputs."""
    if format == "onnx":
        session = ort_session(path)
        return lambda rows: ort_predict(session, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+ steers to torch.export; TorchScript loads
        module = torch.jit.load(str(path), map_location="cpu")

    @torch.inference_mode()
    def run(rows: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))).numpy()

    return run


def probe_rows(predictor: Predictor, n: int) -> np.ndarray:
    """Rows spread like the training features (their mean and spread, or range), from a fixed seed; the last
    SWEEP_FRACTION of them sweep the range, every feature at the same point of it in a row (from mean - 3 std to
    mean + 3 std, or from the minimum to the maximum): independent draws average out, so rows of random features
    all have about the same mean, and a branch on a row's mean or norm would see only one side."""
    p, width = predictor.preprocessing, predictor.n_features
    rng = np.random.default_rng(0)
    kind = p.get("x_scale", "none")
    sweep = np.repeat(np.linspace(0.0, 1.0, int(n * SWEEP_FRACTION))[:, None], width, axis=1)
    draws = n - len(sweep)
    if kind in ("standard", "channel"):
        mean, std = feature_stat(p, "x_mean", width), feature_stat(p, "x_std", width)
        rows = mean + std * np.concatenate([rng.standard_normal((draws, width)), 6.0 * sweep - 3.0])
    elif kind == "minmax":
        low, high = np.asarray(p["x_min"]), np.asarray(p["x_max"])
        rows = low + (high - low) * np.concatenate([rng.random((draws, width)), sweep])
    elif kind == "pixel":
        rows = float(p["x_divisor"]) * np.concatenate([rng.random((draws, width)), sweep])
    else:
        rows = np.concatenate([rng.standard_normal((draws, width)), 6.0 * sweep - 3.0])
    return rows.astype(np.float32)


def _add_onnx_metadata(path: Path, info: dict[str, Any]) -> None:
    import onnx

    graph = onnx.load(str(path))
    for key, value in info.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f"nnopt.{key}", value if isinstance(value, str) else json.dumps(value)
    blob = graph.SerializeToString()
    atomic_write(path, lambda fh: fh.write(blob))


def _save_torchscript(deployed: nn.Module, n_features: int, path: Path, info: dict[str, Any]) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about constants: the network has no data-dependent flow
            traced = torch.jit.trace(deployed, torch.zeros(2, n_features), check_trace=False)
    except Exception as exc:  # noqa: BLE001 - tracing raises many types (RuntimeError, TracingCheckError, ...)
        raise UsageError(f"cannot export the model to TorchScript: {' '.join(str(exc).split())[:300]}") from None
    extra = {"nnopt.json": json.dumps(info)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            atomic_write(path, lambda fh: torch.jit.save(traced, fh, _extra_files=extra))
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc}); choose another {param('out')}") from None
