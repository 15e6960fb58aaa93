"""evaluate(): a trained model's metrics on labelled rows — the names and formulas `nnopt train` reports.

split="all" scores every row given. split="test" / "val" / "train" re-creates the training run's split from
its config.json (seed, fractions) and scores that part, so on the training data it reproduces the metrics
training reported: the same rows, scaled by the same recorded transform, with the same loss and metrics.
importance=True adds each input column's permutation importance on the rows scored (inference/_importance.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnopt.data import apply_target, image_split, split_positions
from nnopt.errors import DataError, UsageError, describe, keywords_checked, param, require_path, unknown_name
from nnopt.fileio import atomic_write_json, lock_run_dir, make_run_dir
from nnopt.inference._plots import (
    confusion_matrix,
    draw_confusion,
    draw_residuals,
    residual_points,
)
from nnopt.inference._importance import check_options, importance_groups, scores
from nnopt.inference._predictor import Predictor, Rows, load_predictor
from nnopt.train import IMPORTANCE_MAX_ROWS, IMPORTANCE_REPEATS, compute_metrics, importance_file, metric_names, \
    training_targets

SPLITS = ("all", "test", "val", "train")
DEFAULT_FRACTIONS = {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 0}  # load_data's defaults


@dataclass
class Evaluation:
    metrics: dict[str, float | None]
    task: str
    split: str
    rows: int
    model: str  # which model file, and from what kind of run
    data: str
    confusion: list[list[int]] | None = None  # classification: counts[true][predicted]
    class_names: list[str] | None = None
    run_dir: Path | None = None
    files: list[str] = field(default_factory=list)
    # a table model's rows: what the raw columns held that training had to treat
    unseen: dict[str, int] = field(default_factory=dict)  # column -> rows with a category training never saw
    missing: dict[str, int] = field(default_factory=dict)  # column -> missing cells, imputed
    unlabelled: int = 0  # rows without a label, left out
    ignored_columns: list[str] = field(default_factory=list)  # columns the model does not read
    importance: list[dict] | None = None  # permutation importance per column, when asked for
    skipped: list[str] = field(default_factory=list)  # image files that did not decode ("path: reason")
    read: int = 0  # rows the data held, every split (the image files that decoded), before split= chose some

    def summary(self) -> dict[str, Any]:
        """The `--json` object."""
        return {"metrics": self.metrics, "task": self.task, "split": self.split, "rows": self.rows,
                "model": self.model, "data": self.data, "class_names": self.class_names,
                "confusion": self.confusion, "run_dir": str(self.run_dir) if self.run_dir else None,
                "files": self.files, "unseen": self.unseen, "missing": self.missing, "unlabelled": self.unlabelled,
                "ignored_columns": self.ignored_columns, "importance": self.importance, "skipped": self.skipped}


@keywords_checked
def evaluate(model: Any, data: Any = None, *, target: str | None = None, split: str | None = None,
             out: str | Path | None = None, importance: bool = False,
             repeats: int = IMPORTANCE_REPEATS) -> Evaluation:
    """Score `model` (a run directory, model file, Predictor, nnopt.fit's FitResult or nn.Module) on labelled
    `data` (default: its training data; required for an nn.Module, which is given the data unscaled).

    target: the label column of a table (default: the training target). split: "all" by default; "val" when
    importance is asked for on the training data (data=None). out: a directory for config.json, metrics.json and
    the plot (confusion_matrix.png, or residuals.png for regression), and importance.json.
    importance: each input column's permutation importance on the rows scored, from `repeats` seeded permutations
    (Evaluation.importance).
    """
    if not isinstance(importance, bool):
        raise UsageError(f"{param('importance')} must be True or False; got {describe(importance)}")
    check_options(repeats, 0)
    if split is None:
        split = "val" if importance and data is None else "all"
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    if out is None:
        return _score(model, data, target, split, None, importance, repeats)
    require_path("out", out, "a directory path")
    with lock_run_dir(out):  # the out directory is this command's while it writes
        return _score(model, data, target, split, Path(out), importance, repeats)


def _score(model: Any, data: Any, target: str | None, split: str, out: Path | None, importance: bool,
           repeats: int) -> Evaluation:
    if data is None and isinstance(model, nn.Module):
        raise UsageError(f"an nn.Module has no training record to say which data it learned from: give {param('data')},"
                         " the labelled rows to score it on")
    predictor = load_predictor(model, data)
    groups = importance_groups(predictor) if importance else None  # refused (images) before any work
    if data is None:
        data = (predictor.settings or {}).get("data")
        if data is None:
            raise UsageError(f"{predictor.path} does not say which data trained it; give {param('data')}")
    rows = predictor.rows(data, target=target, labels=True)
    label = target or predictor.target
    if rows.y is None:
        column = f" (no column '{label}')" if label else ""
        raise DataError(f"'{data}' has no labels{column}; evaluate needs them: name the label column with "
                        f"{param('target')}, or use nnopt predict")
    task = predictor.task
    labels = predictor.label_codes(rows.y, rows.class_names) if task == "classification" else predictor.targets(rows.y)
    keep = _positions(predictor, split, rows, labels)
    if len(keep) == 0:
        raise DataError(f"the {split} split of '{data}' has no rows; use {param('split', 'all')}")
    inputs = predictor.inputs(rows.X[keep])
    outputs = predictor.outputs(inputs)
    y = torch.from_numpy(labels[keep]) if task == "classification" else \
        torch.from_numpy(apply_target(labels[keep], predictor.target_scale))
    Y = training_targets(y, task, predictor.n_outputs)
    loss = _loss(task, outputs, Y)
    metrics = compute_metrics(task, outputs, Y, loss, metric_names(task), predictor.target_scale)
    result = Evaluation(metrics=metrics, task=task, split=split, rows=len(keep), model=predictor.description,
                        data=str(data) if isinstance(data, (str, Path)) else f"<{type(data).__name__}>",
                        unlabelled=rows.unlabelled, ignored_columns=rows.ignored, skipped=rows.skipped,
                        read=len(rows.X))
    if groups is not None:
        result.importance = scores(predictor, inputs, Y, groups, repeats=repeats, seed=0, metric=None,
                                   max_rows=IMPORTANCE_MAX_ROWS)
    if rows.columns is not None:  # counted on the rows scored
        result.unseen, result.missing = _counts(predictor, rows, keep)
    predicted, _ = predictor.decode(outputs)
    if task == "classification":
        result.class_names = predictor.class_names
        counts = confusion_matrix(labels[keep], predicted, len(predictor.class_names))
        result.confusion = counts.tolist()
    if out is not None:
        _write(out, result, predictor, labels[keep], predicted, repeats)
    return result


def _counts(predictor: Predictor, rows: Rows, keep: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    from nnopt.data import encode_table

    if len(keep) == len(rows.X):
        return rows.unseen, rows.missing
    _, seen = encode_table({name: values[keep] for name, values in rows.columns.items()}, predictor.table)
    return seen["unseen"], seen["missing"]


def _positions(predictor: Predictor, split: str, rows: Rows, labels: np.ndarray) -> np.ndarray:
    """Row positions of the split, chosen exactly as load_data chose them when the model was trained."""
    n_all = len(rows.X)
    if split == "all":
        return np.arange(n_all)
    if predictor.settings is None:
        raise UsageError(f"{param('split', split)} re-creates the training split from the run's config.json, and "
                         f"none was found for {predictor.path}; give the run directory, or use {param('split', 'all')}")
    settings = {**DEFAULT_FRACTIONS, **{k: v for k, v in predictor.settings.items() if v is not None}}
    n = n_all - rows.shipped_test
    codes = labels[:n] if predictor.task == "classification" else None
    if rows.splits is not None:  # an image folder's own train / val / test folders
        train, val, test = image_split(codes, rows.splits, float(settings["val_fraction"]),
                                       float(settings["test_fraction"]), int(settings["seed"]))
        return {"train": train, "val": val, "test": test}[split]
    train, val, test = split_positions(n, codes, rows.shipped_test > 0, float(settings["val_fraction"]),
                                       float(settings["test_fraction"]), int(settings["seed"]))
    if test is None:  # the source's own test split, after its training rows
        test = np.arange(n, n_all)
    return {"train": train, "val": val, "test": test}[split]


def _loss(task: str, outputs: torch.Tensor, Y: torch.Tensor) -> float:
    """The loss nnopt trains with by default: cross-entropy, BCE on one logit, or MSE on scaled targets."""
    with torch.inference_mode():
        if task == "regression":
            return float(F.mse_loss(outputs, Y))
        if outputs.dim() == 2 and outputs.shape[1] == 1:
            return float(F.binary_cross_entropy_with_logits(outputs, Y))
        return float(F.cross_entropy(outputs, Y))


def _write(run_dir: Path, result: Evaluation, predictor: Predictor, labels: np.ndarray,
           predicted: np.ndarray, repeats: int) -> None:
    make_run_dir(run_dir)
    result.run_dir = run_dir
    title = f"{result.split} rows of {Path(result.data).name} ({result.rows})"
    if result.task == "classification":
        counts = np.asarray(result.confusion)
        plot = draw_confusion(run_dir / "confusion_matrix.png", counts, predictor.class_names, title)
    else:
        pred, residual = residual_points(labels, predicted)
        plot = draw_residuals(run_dir / "residuals.png", pred, residual, title)
    result.files = [str(run_dir / "metrics.json"), str(plot)]
    if result.importance is not None:
        rows = min(result.rows, IMPORTANCE_MAX_ROWS)
        atomic_write_json(run_dir / "importance.json", importance_file(result.importance, result.split, rows,
                                                                       repeats, 0))
        result.files.append(str(run_dir / "importance.json"))
    atomic_write_json(run_dir / "config.json", {
        "command": "evaluate", "model": result.model, "model_file": str(predictor.path), "data": result.data,
        "split": result.split, "training_split": predictor.settings, "rows": result.rows, "task": result.task,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    atomic_write_json(run_dir / "metrics.json", result.summary())
