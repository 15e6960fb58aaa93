"""What a finished run leaves in its run directory besides metrics.jsonl and checkpoint.pt: model.pt, the
instance's record in config.json, importance.json and summary.json."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from nnopt.data import Data
from nnopt.fileio import atomic_write_json
from nnopt.models import ArchSpec, module_takes_flat_rows, save_model, takes_flat_rows
from nnopt.train._importance import write_importance
from nnopt.train._prepare import data_shape


def model_meta(model: Any, arch: ArchSpec | None, data: Data) -> dict[str, Any]:
    """What model.pt records beside the weights: the network's spec, its input and output widths, the shape one
    sample had, the task, the class names and the data's preprocessing (also what nnopt.predict(fit_result)
    applies to new rows when the run has no directory)."""
    flat = takes_flat_rows(arch) or module_takes_flat_rows(model)
    shape = data_shape(data) if not flat else None  # what a user's module was given per sample
    return {"model_spec": arch.to_string() if arch else None, "in_features": data.n_features,
            "n_outputs": data.n_outputs, "input_shape": list(data.input_shape) if data.input_shape else None,
            "sample_shape": list(shape) if shape else None,
            "task": data.task, "class_names": data.class_names, "preprocessing": data.preprocessing}


def write_outputs(run_dir: Path, result: Any, arch: ArchSpec | None, data: Data) -> None:
    record = save_model(run_dir / "model.pt", result.model, model_meta(result.model, arch, data))
    if arch is None:  # an instance: how it was recorded (recipe, torch.export program) goes into config.json
        if record["program_error"]:
            warnings.warn(record["program_error"], stacklevel=4)
        result.config["model_record"] = {k: record[k] for k in ("model_spec", "module_class", "recipe_missing",
                                                                "program", "program_error")}
        atomic_write_json(run_dir / "config.json", result.config)
    write_importance(run_dir, result.model, data)  # a table's columns by permutation importance on val
    atomic_write_json(run_dir / "summary.json", {**result.summary(), "metrics": result.metrics,
                                                 "stopped_early": result.stopped_early})


def created_time(run_dir: Path, default: str) -> str:
    """A resumed run keeps the creation time of the run it continues."""
    try:
        return json.loads((run_dir / "config.json").read_text())["created"]
    except (OSError, ValueError, KeyError):
        return default


def describe_source(source: Any) -> Any:
    return source if isinstance(source, (str, int, float)) or source is None else f"<{type(source).__name__}>"
