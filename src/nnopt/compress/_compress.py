"""compress(): a trained nnopt model -> pruned and / or quantized -> measured in bytes, latency and accuracy.

Every variant is evaluated on the validation split (selection) and the test split (report), saved in the
packed file format (`compressed.nnz`: int4 codes take half a byte, int2 a quarter, sparse weights bitmap,
CSR or relative indices), loaded back and checked to predict identically, and optionally exported to ONNX
(fp32, and int8 QDQ through ONNX Runtime's static quantization) with CPU latency measured per runtime at
batch 1 and 256.

`max_accuracy_drop` tries a ladder of settings, smallest expected file first, and keeps the first whose
validation score is within the drop of the original's (so the smallest that qualifies among those tried).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnopt.config import TABLE_KEYS, table_settings
from nnopt.data import apply_preprocessing, feature_scaling_of, in_memory, load_data, with_scaling
from nnopt.errors import UsageError, did_you_mean, param, require_int, require_model_path, spelled
from nnopt.fileio import atomic_write_json, make_run_dir
from nnopt.models import CNN, MLP, ArchSpec, copy_module, count_params, needs_class, on_flat_rows, serialized_bytes, \
    takes_flat_rows
from nnopt.optim import SCHEDULES as LR_SCHEDULES
from nnopt.train import compute_metrics, fit, training_targets

from nnopt.compress._export import agreement, export_onnx, ort_latency_ms, ort_predict, quantize_onnx_int8, \
    torch_latency_ms
from nnopt.compress._onnx_quant import quantized_onnx
from nnopt.compress._onnx_table import FP32_TOLERANCE, QUANTIZED_TOLERANCE, output_gap, table_onnx_checked, \
    table_outputs, table_predict
from nnopt.compress._format import load_compressed, nnopt_load, save_compressed
from nnopt.compress._prune import PRUNE_METHODS, drop_dead_units, finetune_schedule, make_permanent, \
    prune as prune_model, prune_gradually, sparsity_table, structured_spec
from nnopt.compress._prune_graph import example_batch, pruned_shapes
from nnopt.compress._quant import apply_dequantized, finish_qat, prepare_qat, quantize_model

QUANTIZE = ("int8", "int4", "int2")
SCHEDULES = ("oneshot", "gradual")
EXPORTS = ("onnx",)
BATCHES = (1, 256)


@dataclass(frozen=True)
class Rung:
    """A setting `max_accuracy_drop` tries: `method` pruning to `amount` (gradual for global, during the
    fine-tuning; structured: the units out at once, then fine-tuned), fine-tuned for `finetune` x
    default_epochs, then `bits` weights, trained for them (QAT) for `qat` x default_epochs (0: round-to-nearest).
    Explicit finetune_epochs / qat_epochs replace the defaults on every rung."""

    amount: float
    method: str
    bits: str | None
    finetune: float = 1.0
    qat: float = 0.0


# tried smallest expected file first (`ladder_for` orders them for each model). At 95 % sparsity and more, about
# 400 fine-tuning steps are too few and 4-bit rounding without QAT costs points; five times the steps and QAT
# recover them (benchmarks/RESULTS.md: LeNet-300-100 on digits at 96 %, 52.6x smaller, within 0.5 pt of the
# original's test accuracy in 3 seeds of 3). Structured rungs give a smaller dense network with no positions to
# store: on mnist1d, whose 40 inputs leave little to prune in the first layer, 80 % of the units out (5x the
# steps, QAT for the default epochs) + int4 is 52x smaller at the original's test accuracy (10 seeds), where
# 95 % unstructured sparsity loses 0.8 pt
LADDER = (Rung(0.97, "global", "int4", finetune=5, qat=0.5), Rung(0.95, "global", "int4", finetune=5, qat=0.5),
          Rung(0.8, "structured", "int4", finetune=5, qat=1), Rung(0.5, "structured", "int4", qat=0.5),
          Rung(0.9, "global", "int4", qat=0.5), Rung(0.9, "global", "int8"), Rung(0.8, "global", "int8"),
          Rung(0.5, "global", "int8"), Rung(0.0, "global", "int8"))
DEFAULT_LR_SCHEDULE = "lr / 10 for the last third"  # finetune_schedule's, as config.json and the report name it
POSITION_BITS = 6.0  # what the file spends on the position of each kept weight of a sparse matrix (RESULTS.md)
DATA_KEYS = ("target", "task", "val_fraction", "test_fraction", "scale", "seed", *TABLE_KEYS)


@dataclass
class ModelInHand:
    """A network in this process, compressed as it is rather than reloaded from a file: a user's nn.Module or
    the network of a FitResult. `meta` is what its model file would record (model_spec: its recipe, or None
    with module_class when none rebuilds it: the compressed file then carries its torch.export graph),
    `settings` the data settings compress loads `data` with, `label` how config.json names it."""

    model: nn.Module
    meta: dict[str, Any]
    settings: dict[str, Any]
    label: str


@dataclass
class CompressResult:
    rows: list[dict[str, Any]]  # one per variant: original, each tried setting
    chosen: dict[str, Any]  # the row kept (written as compressed.nnz)
    sparsity: list[dict[str, Any]]
    latency: list[dict[str, Any]]
    metric: str
    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "chosen": self.chosen, "variants": self.rows, "latency": self.latency,
                "run_dir": str(self.run_dir) if self.run_dir else None}


def check_settings(prune: float | None, prune_method: str, schedule: str, quantize: str | None,
                   qat_epochs: int, finetune_epochs: int | None, max_accuracy_drop: float | None,
                   export: str | None, lr_schedule: str | None = None) -> None:
    """Every flag checked before anything is loaded or written (exit 2, one line)."""
    if lr_schedule is not None and lr_schedule not in LR_SCHEDULES:
        choices = LR_SCHEDULES.names()
        raise UsageError(f"unknown {param('lr_schedule')} '{lr_schedule}'{did_you_mean(str(lr_schedule), choices)} "
                         f"choices: {', '.join(choices)}")
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float))
                              or not 0.0 <= prune < 1.0):
        raise UsageError(f"{param('prune')} must be a sparsity in [0, 1), e.g. 0.9; got {prune!r}")
    for name, value, choices in (("prune_method", prune_method, PRUNE_METHODS), ("schedule", schedule, SCHEDULES),
                                 ("export", export, EXPORTS)):
        if value is not None and value not in choices:
            raise UsageError(f"unknown {param(name)} '{value}'{did_you_mean(str(value), choices)} choices: "
                             f"{', '.join(choices)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise UsageError(f"unsupported bit width '{quantize}' for {param('quantize')}"
                         f"{did_you_mean(str(quantize), QUANTIZE)} "
                         f"choices: {', '.join(QUANTIZE)}")
    for name, value in (("qat_epochs", qat_epochs), ("finetune_epochs", finetune_epochs)):
        if value is not None:
            require_int(name, value, 0)
    if qat_epochs and quantize is None:
        raise UsageError(f"{param('qat_epochs')} needs {param('quantize', metavar='int8|int4|int2')} (the bit width to "
                         "train for)")
    if schedule == "gradual" and prune_method == "structured":
        raise UsageError(f"{param('schedule', 'gradual')} works with magnitude, global and 2:4; structured pruning "
                         f"is one-shot (then fine-tuned with {param('finetune_epochs')})")
    if max_accuracy_drop is not None:
        if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) \
                or not 0 <= max_accuracy_drop < 100:
            raise UsageError(f"{param('max_accuracy_drop')} is in points, in [0, 100); got {max_accuracy_drop!r}")
        if prune is not None or quantize is not None:
            raise UsageError(f"{param('max_accuracy_drop')} chooses {param('prune')} and {param('quantize')} itself; "
                             "give it alone")
    elif prune is None and quantize is None:
        raise UsageError(f"nothing to do: give {param('prune', metavar='SPARSITY')}, "
                         f"{param('quantize', metavar='int8|int4|int2')}, or "
                         f"{param('max_accuracy_drop', metavar='PTS')}")


def compress(source: str | Path | ModelInHand, data: Any = None, *, prune: float | None = None, prune_method: str = "magnitude",
             schedule: str = "oneshot", finetune_epochs: int | None = None, quantize: str | None = None,
             scheme: str = "symmetric", qat_epochs: int = 0, max_accuracy_drop: float | None = None,
             export: str | None = None, out: str | Path | None = None, optimizer: str = "adam",
             lr: float | None = None, lr_schedule: str | None = None, batch_size: int | str | None = None,
             target: str | None = None, seed: int | None = None, drop: Any = None, categorical: Any = None,
             numeric: Any = None, sep: str | None = None, image_size: Any = None, strict: bool | None = None) -> CompressResult:
    """Compress the model of a run directory or model file on `data` (default: the data it was trained on).

    Fine-tuning after pruning and QAT keep `lr` for the first two thirds of their epochs and a tenth of it for
    the last third (`finetune_schedule`); `lr_schedule` (a schedule name, as `nnopt train --schedule` takes:
    "constant", "cosine", ...) replaces that."""
    check_settings(prune, prune_method, schedule, quantize, qat_epochs, finetune_epochs, max_accuracy_drop, export,
                   lr_schedule)
    model, meta, settings = _load_source(source)
    if meta.get("loaded_program") and (prune or qat_epochs or max_accuracy_drop is not None):
        # weights are rounded in the program's graph; pruning is fine-tuned, QAT and the ladder train: a program
        # cannot be trained
        needs_class(meta, f"nnopt compress with {param('prune')}, {param('qat_epochs')} or "
                          f"{param('max_accuracy_drop')} (they train the network; {param('quantize')} alone does not)")
    if data is None:
        data = settings.get("data")
        if data is None:
            raise UsageError(f"{_label(source)} does not say which data trained it; give {param('data')}")
        if isinstance(data, str) and data.startswith("<"):  # "<DataFrame>", "<tuple>": in memory, not kept
            raise UsageError(_not_kept(_label(source), data, settings.get("data_source")))
    if target is not None:
        settings["target"] = target
    settings.update(table_settings({"drop": drop, "categorical": categorical, "numeric": numeric, "sep": sep,
                                    "image_size": image_size, "strict": strict}))
    if seed is not None:
        settings["seed"] = seed
    data_settings = {k: settings[k] for k in DATA_KEYS if settings.get(k) is not None}
    loaded = load_data(data, **data_settings)
    recorded = feature_scaling_of(meta.get("preprocessing"))
    if recorded is not None:  # the model's own scaling, even where load_data's rule for these data changed since
        loaded = with_scaling(loaded, recorded, lambda: load_data(data, **{**data_settings, "scale": "none"}),
                              _label(source))
    # variants are scored and checked on whole splits: a torch Dataset's or memory-mapped array's rows are read once
    loaded = in_memory(loaded, "nnopt compress")
    if loaded.n_features != meta.get("in_features"):
        raise UsageError(f"data {loaded.name} has {loaded.n_features} features but the model takes "
                         f"{meta.get('in_features')}; give the data the model was trained on")
    if loaded.task == "classification" and loaded.n_classes == 2 and meta.get("n_outputs") == 2:
        loaded = replace(loaded, binary_outputs=2)  # two classes, two logits (a num_classes=2 head): cross-entropy
    if loaded.n_outputs != meta.get("n_outputs"):
        raise UsageError(f"data {loaded.name} needs {loaded.n_outputs} outputs but the model has "
                         f"{meta.get('n_outputs')}; give the data the model was trained on")
    if max_accuracy_drop is not None and len(loaded.val) == 0:
        raise UsageError(f"{param('max_accuracy_drop')} compares validation scores, but the model was trained "
                         f"without a validation split; give fixed settings ({param('prune')}, {param('quantize')}) "
                         "instead")
    if len(loaded.train) == 0 and (qat_epochs or finetune_epochs or schedule == "gradual"):
        raise UsageError("QAT and fine-tuning need training rows; the data has none")
    run_dir = Path(out) if out is not None else None
    train = {"optimizer": optimizer, "lr": lr, "schedule": lr_schedule, "batch_size": batch_size,
             "seed": int(settings.get("seed") or 0), "threads": 1}
    metric = "accuracy" if loaded.task == "classification" else "r2"
    original = _row("original (fp32)", model, loaded, metric, serialized_bytes(model), meta)
    rows = [original]
    if max_accuracy_drop is None:
        plan = [(prune or 0.0, prune_method, quantize, finetune_epochs, qat_epochs)]
    else:
        plan = [_rung_plan(rung, loaded, finetune_epochs, qat_epochs, scheme, train)
                for rung in ladder_for(model, _sample_shape(meta))]
    chosen = None
    for amount, method, bits, epochs, qat in plan:
        variant, spec, qweights, history = _apply(model, meta, loaded, amount, method, schedule, epochs,
                                                  bits, scheme, qat, train, ladder=max_accuracy_drop is not None)
        name = _name(amount, method, bits, qat)
        vmeta = {**meta, "model_spec": spec, "compression": {"prune": amount, "prune_method": method,
                                                             "schedule": schedule, "quantize": bits, "scheme": scheme,
                                                             "qat_epochs": qat}}
        if method == "structured" and amount > 0 and not isinstance(model, (MLP, CNN)):
            vmeta["pruned_shapes"] = pruned_shapes(model, variant)  # what load_compressed re-applies
        with tempfile.TemporaryDirectory() as scratch:  # the run directory is written only once all went well
            path = Path(scratch) / "variant.nnz"
            report = save_compressed(path, variant, vmeta, qweights)
            back, _ = load_compressed(path)
        row = _row(name, variant, loaded, metric, report["file_bytes"], vmeta)
        rows_X = check_rows(loaded)
        row["identical_after_load"] = bool(torch.equal(_outputs(back, rows_X, vmeta), _outputs(variant, rows_X, vmeta)))
        row["ratio"] = original["file_bytes"] / max(1, row["file_bytes"])
        row["fp32_state_dict_bytes"] = report.get("fp32_state_dict_bytes")
        row["history"] = history
        rows.append(row)
        # points of accuracy (or of R^2 x 100); none when the model was trained on every non-test row
        drop = None if original["val"] is None else 100 * (original["val"] - row["val"])
        row["val_drop_pts"] = drop
        if max_accuracy_drop is None or drop <= max_accuracy_drop:
            chosen = (row, variant, vmeta, qweights)
            break
    if chosen is None:
        raise UsageError(f"no setting of the ladder kept the validation {metric} within {max_accuracy_drop} points "
                         f"(best tried: {max(rows[1:], key=lambda r: r['val'])['name']}); allow a larger drop")
    row, variant, vmeta, qweights = chosen
    row["chosen"] = True
    result = CompressResult(rows=rows, chosen=row, sparsity=sparsity_table(variant), latency=[], metric=metric,
                            run_dir=run_dir)
    if run_dir is not None:
        make_run_dir(run_dir)
        save_compressed(run_dir / "compressed.nnz", variant, vmeta, qweights)
        if export == "onnx":
            result.latency = _export_and_time(model, variant, loaded, meta, vmeta, run_dir, bits=row["quantize"],
                                              qweights=qweights)
        else:
            result.latency = _time_torch(model, variant, meta)
        result.config = {"command": "compress", "source": _label(source), "data": str(data) if not hasattr(data, "name")
                         else data.name, "data_info": loaded.describe(), "metric": metric,
                         "settings": {"prune": prune, "prune_method": prune_method, "schedule": schedule,
                                      "finetune_epochs": finetune_epochs, "quantize": quantize, "scheme": scheme,
                                      "qat_epochs": qat_epochs, "max_accuracy_drop": max_accuracy_drop,
                                      "export": export,
                                      **{k: v for k, v in train.items() if v is not None and k != "schedule"},
                                      "lr_schedule": lr_schedule or DEFAULT_LR_SCHEDULE},
                         "model_spec": meta.get("model_spec"), "compressed_spec": vmeta.get("model_spec"),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(run_dir / "config.json", result.config)
        atomic_write_json(run_dir / "results.json", {"metric": metric, "variants": rows, "chosen": row["name"],
                                                     "sparsity": result.sparsity, "latency": result.latency})
    else:
        result.latency = []
    return result


def _not_kept(label: str, data: str, source: str | None) -> str:
    """Why a run trained on data in memory needs it again, and how to give it from Python or the command line."""
    if source == "torch-dataset":
        return (f"{label} was trained on a torch Dataset given in memory ({data}), which a run does not keep; "
                + spelled(f"give {param('data')}, the same Dataset",
                          f"the command line cannot take one: compress it from Python, "
                          f"nnopt.compress_model('{label}', dataset, ...)"))
    return (f"{label} was trained on data given in memory ({data}), which a run does not keep; give "
            + spelled(f"{param('data')}, the same rows",
                      f"{param('data')} the same rows in a file (.npz with X and y, .csv, .parquet), or compress it "
                      f"from Python: nnopt.compress_model('{label}', data, ...)"))


def _label(source: str | Path | ModelInHand) -> str:
    return source.label if isinstance(source, ModelInHand) else str(source)


def _load_source(source: str | Path | ModelInHand) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """The model and the data settings of the run that trained it (a run directory's config.json)."""
    if isinstance(source, ModelInHand):  # a copy: compressing never changes the caller's module or its mode
        model = copy_module(source.model).cpu()
        return model.eval(), dict(source.meta), dict(source.settings)
    require_model_path("source", source)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"model not found: {path}; give a run directory (with model.pt) or a model file")
    model, meta = nnopt_load(path)
    if not meta.get("model_spec") and not meta.get("loaded_program"):
        raise UsageError(f"{path} holds a custom nn.Module; nnopt compress needs a model nnopt can rebuild")
    config_path = (path if path.is_dir() else path.parent) / "config.json"
    settings: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            config = {}
        if config.get("command", "train") == "train":
            settings = {k: config.get(k) for k in ("data", *DATA_KEYS)}
            settings["data_source"] = (config.get("data_info") or {}).get("source")
    return model.eval(), meta, settings


def _apply(model: nn.Module, meta: dict[str, Any], data: Any, amount: float, method: str, schedule: str,
           finetune_epochs: int | None, bits: str | None, scheme: str, qat_epochs: int, train: dict[str, Any],
           ladder: bool) -> tuple[nn.Module, str, dict | None, list]:
    variant = copy_module(model)
    spec = meta["model_spec"]
    history: list = []
    options = {k: v for k, v in train.items() if v is not None}
    # pruning without fine-tuning loses points (a digits MLP, 50 % + int4: 81 % -> 76 %): fine-tune by default
    epochs = finetune_epochs if finetune_epochs is not None else (
        default_epochs(data, train.get("batch_size")) if len(data.train) else 0)
    if amount > 0:
        if method == "structured":
            variant = prune_model(variant, amount, "structured", example_inputs=example_batch(_sample_shape(meta)))
            if isinstance(variant, (MLP, CNN)):
                spec = structured_spec(ArchSpec.parse(spec), variant).to_string()
            if epochs:
                fit(variant, data, epochs=epochs, **_scheduled(options, epochs))
        elif schedule == "gradual" or ladder:
            variant, history = prune_gradually(variant, data, amount, method, max(1, epochs), **options)
        else:
            variant = prune_model(variant, amount, method)
            if epochs:
                fit(variant, data, epochs=epochs, **_scheduled(options, epochs))
        make_permanent(variant)
    qweights = None
    if bits is not None:
        n_bits = int(bits[3:])
        if qat_epochs:
            variant = prepare_qat(variant, n_bits, scheme)
            fit(variant, data, epochs=qat_epochs, **_scheduled(options, qat_epochs))
            qweights = finish_qat(variant)
        else:
            qweights = quantize_model(variant, n_bits, scheme)
            apply_dequantized(variant, qweights)
    arch = ArchSpec.parse(spec) if spec else None
    if amount > 0 and arch is not None and arch.kind == "mlp" and not arch.residual:
        # last, so that fine-tuning and QAT train the network they always did: the same outputs, fewer units
        variant, dropped, kept = drop_dead_units(variant)
        if dropped:
            spec = structured_spec(arch, variant).to_string()
            if qweights is not None:
                qweights = {k: q.select(*kept[k]) if k in kept else q for k, q in qweights.items()}
    return variant.eval(), spec, qweights, history


def _scheduled(options: dict[str, Any], epochs: int) -> dict[str, Any]:
    """fit() options with the fine-tuning lr schedule, unless they name a schedule of their own."""
    if options.get("schedule") is not None:
        return options
    return {**options, **finetune_schedule(epochs, options.get("optimizer", "adam"))}


def ladder_for(model: nn.Module, sample_shape: Any = None) -> list[Rung]:
    """The LADDER rungs that apply to `model`, smallest `expected_bytes` first (ties: LADDER's order).
    sample_shape: what one sample of the model's input is (needed for structured rungs of a user's module)."""
    sized = [(expected_bytes(model, rung, sample_shape), i) for i, rung in enumerate(LADDER)]
    return [LADDER[i] for size, i in sorted(x for x in sized if x[0] is not None)]


def expected_bytes(model: nn.Module, rung: Rung, sample_shape: Any = None) -> float | None:
    """The file a rung should give, for ordering the ladder: every weight matrix's kept values at the rung's bits
    (+ POSITION_BITS each when sparse), a float16 step and bias per output unit. None: the rung does not apply
    (structured pruning of a model without hidden units, or one that would empty a layer)."""
    if rung.method == "structured" and rung.amount > 0:
        try:
            example = example_batch(sample_shape, model) if sample_shape is not None else None
            model = prune_model(model, rung.amount, "structured", example_inputs=example)
        except UsageError:
            return None
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    weights = sum(m.weight.numel() for m in layers)
    outputs = sum(m.weight.shape[0] for m in layers)
    bits = int(rung.bits[3:]) if rung.bits else 32
    if rung.method == "structured" or rung.amount == 0:
        return weights * bits / 8 + 4 * outputs
    return (1 - rung.amount) * weights * (bits + POSITION_BITS) / 8 + 4 * outputs


def _rung_plan(rung: Rung, data: Any, finetune_epochs: int | None, qat_epochs: int, scheme: str,
               train: dict[str, Any]) -> tuple[float, str, str | None, int, int]:
    """(amount, method, bits, fine-tuning epochs, QAT epochs) of a ladder rung on `data`."""
    base = default_epochs(data, train.get("batch_size"))
    epochs = finetune_epochs if finetune_epochs is not None else max(1, round(rung.finetune * base))
    qat = 0
    if rung.bits is not None and scheme == "symmetric":  # LSQ learns symmetric steps only
        qat = qat_epochs or math.ceil(rung.qat * (finetune_epochs or base))
    return rung.amount, rung.method, rung.bits, epochs, qat


def default_epochs(data: Any, batch_size: Any) -> int:
    """Fine-tuning epochs for gradual pruning: enough for about 400 optimizer steps, within [3, 20]."""
    batch = batch_size if isinstance(batch_size, int) else 64
    steps = max(1, -(-len(data.train) // batch))
    return min(20, max(3, -(-400 // steps)))


def _name(amount: float, method: str, bits: str | None, qat_epochs: int) -> str:
    parts = []
    if amount > 0:
        parts.append(f"{method} {amount:.0%} sparse" if method != "2:4" else "2:4 sparse")
    if bits:
        parts.append(f"{bits}{' QAT' if qat_epochs else ''}")
    return " + ".join(parts) or "fp32"


def _outputs(model: nn.Module, X: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """The model's outputs on flat rows `X`, given in the shape it takes (a user's module: the data's own)."""
    shape = meta.get("sample_shape")
    if shape and not takes_flat_rows(meta.get("model_spec")):
        X = X.reshape(len(X), *shape)
    model.eval()
    with torch.inference_mode():
        return model(X)


def _row(name: str, model: nn.Module, data: Any, metric: str, file_bytes: int, meta: dict[str, Any]) -> dict[str, Any]:
    scores = {}
    for split in ("val", "test"):
        part = getattr(data, split)
        out = _outputs(model, part.X, meta)
        scores[split] = compute_metrics(data.task, out, training_targets(part.y, data.task, data.n_outputs), 0.0,
                                        [metric], data.target_scale).get(metric)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    compression = meta.get("compression") or {}
    return {"name": name, "val": scores["val"], "test": scores["test"], "file_bytes": int(file_bytes),
            "params": count_params(model), "nonzero_params": nonzero, "model_spec": meta.get("model_spec"),
            "prune": compression.get("prune"), "prune_method": compression.get("prune_method"),
            "quantize": compression.get("quantize")}


def check_rows(data: Any) -> torch.Tensor:
    """The inputs a written file is checked on against the network in memory: the test split, or, when none was
    held out (test_fraction 0), the validation rows, else the training rows."""
    for split in (data.test, data.val, data.train):
        if len(split):
            return split.X
    return data.test.X


def _sample_shape(meta: dict[str, Any]) -> Any:
    """The shape of one sample the model takes: the data's (images, signals) for a user's module, else flat rows."""
    return meta.get("sample_shape") or meta["in_features"]


def _time_torch(original: nn.Module, variant: nn.Module, meta: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for batch in BATCHES:
        for name, model in (("original (fp32)", original), ("compressed", variant)):
            rows.append({"model": name, "runtime": "torch", "batch": batch,
                         "latency_ms": torch_latency_ms(model, meta.get("sample_shape") or meta["in_features"],
                                                        batch=batch)})
    return _speedups(rows)


def _export_and_time(original: nn.Module, variant: nn.Module, data: Any, meta: dict[str, Any],
                     vmeta: dict[str, Any], run_dir: Path, bits: str | None,
                     qweights: dict | None = None) -> list[dict[str, Any]]:
    """model.onnx (the compressed network; quantized Linear weights as their codes in MatMulNBits, the rest
    fp32) and, for int8, model.int8.onnx (static QDQ int8 through ONNX Runtime, calibrated on training rows);
    predictions checked against torch; latency per runtime.

    Every file is written in a scratch directory first. model.onnx is checked as `nnopt export` checks its files
    (output_gap on the check rows and on rows that sweep the features' range, one row a pass): past FP32_TOLERANCE
    (QUANTIZED_TOLERANCE with quantized codes) compress stops with a UsageError and no file takes its name. The int8
    QDQ file approximates the network by design (its activations are rounded too): it is measured (agreement, largest
    difference), not refused. A table model's files take raw columns (table_onnx), checked on raw rows; its networks
    alone are timed."""
    n = meta["in_features"]
    preprocessing = vmeta.get("preprocessing") or {}
    table = preprocessing.get("table") is not None
    rows = _time_torch(original, variant, meta)
    scratch = tempfile.TemporaryDirectory()  # the original in ONNX Runtime too: the baseline of that runtime
    staged = Path(scratch.name) / "staged"
    staged.mkdir()
    # the files take flat rows, as nnopt's own networks' do; a module on images or signals reshapes them in the graph
    fp32_path = export_onnx(on_flat_rows(variant, vmeta), n, Path(scratch.name) / "compressed.fp32.onnx")
    rows_X = check_rows(data)
    X = rows_X.numpy().astype(np.float32)
    reference = _outputs(variant, rows_X, vmeta).numpy()
    entries = [("original (fp32)", export_onnx(on_flat_rows(original, meta), n, Path(scratch.name) / "original.onnx")),
               ("compressed", quantized_onnx(fp32_path, staged / "model.onnx", qweights or {}))]
    _require_close(entries[1][1], variant, vmeta, X, run_dir / "model.onnx",
                   QUANTIZED_TOLERANCE if qweights else FP32_TOLERANCE)
    if bits == "int8":
        calibration = data.train.X[:512].numpy().astype(np.float32)
        entries.append(("compressed int8 (ORT QDQ)", quantize_onnx_int8(fp32_path, staged / "model.int8.onnx",
                                                                       calibration)))
    written_files = []
    for name, path in entries:
        expected = reference if name != "original (fp32)" else _outputs(original, rows_X, meta).numpy()
        got = ort_predict(path, X)
        agree, diff = agreement(expected, got), float(np.abs(got - expected).max())
        written, raw_check = path, None
        if table and name != "original (fp32)":
            written, raw_check = table_onnx_checked(path, preprocessing, staged / f"table.{path.name}", variant)
            if name == "compressed":  # the raw-column file is refused as the network's is
                _require_close_table(written, preprocessing, variant, run_dir / path.name,
                                     QUANTIZED_TOLERANCE if qweights else FP32_TOLERANCE)
        if name != "original (fp32)":
            written_files.append((written, run_dir / path.name))
        for batch in BATCHES:
            rows.append({"model": name, "runtime": "onnxruntime", "batch": batch,
                         "latency_ms": ort_latency_ms(path, n, batch=batch), "agreement": agree, "max_abs_diff": diff,
                         "file": path.name if name != "original (fp32)" else None,
                         "file_bytes": written.stat().st_size, **({"raw_rows_check": raw_check} if table else {})})
    for staged_file, final in written_files:  # every file checked: each takes its name
        os.replace(staged_file, final)
    scratch.cleanup()
    return _speedups(rows)


SWEEP_ROWS = 50  # rows from every feature's smallest checked value to its largest, all features at the same point


def _require_close(path: Path, variant: nn.Module, vmeta: dict[str, Any], X: np.ndarray, final: Path,
                   limit: float) -> None:
    """Refuse the ONNX file at `path` (scaled flat rows in, the network's outputs out) when its outputs are not the
    network's within `limit` (output_gap, as `nnopt export` refuses its files), on the check rows `X` and on rows
    that sweep each feature from its smallest value in `X` to its largest, one row a pass: a Python `if` decides
    once per batch, so each swept row can take its own branch."""
    low, high = X.min(axis=0), X.max(axis=0)
    sweep = (low + np.linspace(0.0, 1.0, SWEEP_ROWS)[:, None] * (high - low)).astype(np.float32)
    ours = np.concatenate([_outputs(variant, torch.from_numpy(X), vmeta).numpy()] +
                          [_outputs(variant, torch.from_numpy(row[None]), vmeta).numpy() for row in sweep])
    theirs = np.concatenate([ort_predict(path, X)] + [ort_predict(path, row[None]) for row in sweep])
    p, task = vmeta.get("preprocessing") or {}, vmeta.get("task")
    y_std = None
    if task == "regression" and p.get("y_mean") is not None and p.get("y_std") is not None:  # to target units
        y_std = np.asarray(p["y_std"], dtype=np.float64)
        ours = ours.reshape(len(ours), -1) * y_std + np.asarray(p["y_mean"])
        theirs = theirs.reshape(len(theirs), -1) * y_std + np.asarray(p["y_mean"])
    _refuse(output_gap(task, ours.astype(np.float64), theirs.astype(np.float64), limit, y_std), final, len(ours))


def _require_close_table(path: Path, preprocessing: dict[str, Any], variant: nn.Module, final: Path,
                         limit: float) -> None:
    """A table model's raw-column file refused as _require_close refuses the network's, on table_outputs' rows."""
    @torch.inference_mode()
    def reference(encoded: np.ndarray) -> np.ndarray:
        variant.eval()
        return variant(apply_preprocessing(encoded, preprocessing)).numpy()

    ours, theirs = table_outputs(preprocessing, reference, lambda columns: table_predict(path, columns))
    y_std = preprocessing.get("y_std") if preprocessing.get("task") == "regression" else None
    _refuse(output_gap(preprocessing.get("task"), ours, theirs, limit, y_std), final, len(ours))


def _refuse(gap: str | None, final: Path, rows: int) -> None:
    if gap is not None:
        raise UsageError(f"{final} not written: on {rows} rows its {gap}; likely cause: control flow in the "
                         "model's forward (a Python `if` on tensor values) that the exporter followed one way; make "
                         "forward traceable by torch.export (torch.where or torch.cond in place of the `if`) and "
                         "compress again")


def _speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {r["batch"]: r["latency_ms"] for r in rows if r["model"] == "original (fp32)" and r["runtime"] == "torch"}
    for r in rows:
        r["speedup"] = base[r["batch"]] / r["latency_ms"] if r["latency_ms"] else None
    return rows
