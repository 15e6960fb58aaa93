"""permutation_importance(): which of a trained model's input columns its score depends on.

A table model gets one entry per raw column the model reads, its encoded columns (a one-hot group, a value and its
missing indicator) permuted together; a model trained on a feature matrix gets one entry per feature. Images are
refused: a pixel's importance says little, and thousands of them cost thousands of passes. The method and its
permutations are scikit-learn's (train/_importance.py holds the loop, which also runs at the end of training).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnopt.data import apply_target, column_groups
from nnopt.errors import DataError, UsageError, param, require_int
from nnopt.inference._predictor import Predictor, Rows, load_predictor
from nnopt.train import IMPORTANCE_MAX_ROWS, IMPORTANCE_REPEATS, importance_metric, permutation_scores, \
    training_targets

MAX_FEATURES = 200  # features of a model without a table above which importance is refused (one pass each)


def permutation_importance(predictor: Any, X: Any, y: Any = None, *, repeats: int = IMPORTANCE_REPEATS,
                           seed: int = 0, metric: str | None = None,
                           max_rows: int | None = IMPORTANCE_MAX_ROWS) -> list[dict[str, Any]]:
    """Each input column's permutation importance, most important first.

    predictor: a Predictor, run directory or model file. X: Rows from `predictor.rows(...)` (their labels are used
    when y is None), the model's feature matrix (a table model's encoded columns, unscaled), or data as
    `nnopt evaluate` takes it (a path, DataFrame, ...). y: labels (class names or codes) or targets in their units.
    metric: accuracy (classification) or r2 (regression) by default, or another of the task's metrics (loss, f1,
    mae, ...); the importance is the drop in the score (the rise of a loss or error). max_rows: rows scored (a
    seeded sample of that many when there are more; None: all).
    Returns [{column, importance_mean, importance_std, metric, baseline}] over `repeats` seeded permutations.
    """
    check_options(repeats, seed, max_rows)
    predictor = load_predictor(predictor)
    metric = importance_metric(predictor.task, metric)
    groups = importance_groups(predictor)
    if not isinstance(X, (Rows, np.ndarray)):
        X = predictor.rows(X, labels=True)
    names = None  # a built-in dataset's names for its integer labels
    if isinstance(X, Rows):
        X, y, names = X.X, (X.y if y is None else y), X.class_names
    if y is None:
        raise DataError(f"permutation importance scores the model against labels; give {param('y')}, or rows "
                        "with a label column")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != predictor.n_features or len(X) != len(np.asarray(y)):
        raise DataError(f"X must be ({len(np.asarray(y))}, {predictor.n_features}): the model's features, one row per "
                        f"label; got shape {X.shape}")
    labels = predictor.label_codes(np.asarray(y), names) if predictor.task == "classification" else \
        predictor.targets(np.asarray(y))
    return scores(predictor, predictor.inputs(X), targets(predictor, labels), groups, repeats=repeats, seed=seed,
                  metric=metric, max_rows=max_rows)


def check_options(repeats: Any, seed: Any, max_rows: Any = None) -> None:
    require_int("repeats", repeats, 1)
    require_int("seed", seed, 0)
    if max_rows is not None:
        require_int("max_rows", max_rows, 2, " or None")


def importance_groups(predictor: Predictor) -> dict[str, list[int]]:
    """Raw column -> positions of its encoded features; one feature each for a model without a table."""
    if predictor.table is not None:
        return column_groups(predictor.table)
    shape = predictor.meta.get("input_shape") or predictor.preprocessing.get("input_shape")
    if shape and len(shape) > 1:
        raise UsageError(f"permutation importance is per table column, and this model reads images "
                         f"({'x'.join(str(s) for s in shape)}); use it on a model trained on a table")
    if predictor.n_features > MAX_FEATURES:
        raise UsageError(f"permutation importance needs a pass per feature and this model reads "
                         f"{predictor.n_features} (more than {MAX_FEATURES}); train on a table of named columns")
    names = predictor.feature_names or [f"x{i}" for i in range(predictor.n_features)]
    return {name: [i] for i, name in enumerate(names)}


def targets(predictor: Predictor, labels: np.ndarray) -> torch.Tensor:
    """Class codes or targets in their units -> targets as the model's loss takes them."""
    y = torch.from_numpy(labels) if predictor.task == "classification" else \
        torch.from_numpy(apply_target(labels, predictor.target_scale))
    return training_targets(y, predictor.task, predictor.n_outputs)


def scores(predictor: Predictor, inputs: torch.Tensor, Y: torch.Tensor, groups: dict[str, list[int]], *,
           repeats: int, seed: int, metric: str | None, max_rows: int | None) -> list[dict[str, Any]]:
    return permutation_scores(predictor.outputs, inputs, Y, groups, task=predictor.task, n_outputs=predictor.n_outputs,
                              target_scale=predictor.target_scale, metric=metric, repeats=repeats, seed=seed,
                              max_rows=max_rows)
