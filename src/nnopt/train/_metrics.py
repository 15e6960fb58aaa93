"""Task metrics from model outputs, computed with scikit-learn on the host once per evaluation.

Classification: loss, accuracy, macro precision / recall / F1, ROC-AUC (binary, or one-vs-rest).
Regression: loss, MSE, MAE, R² (MSE and MAE in the target's original units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn import metrics as skm

from nnopt.errors import UsageError, did_you_mean

CLASSIFICATION_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("loss", "mse", "mae", "r2")
HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "roc_auc", "r2"}


def metric_names(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def check_metric_names(task: str, names: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a user's metric list for the task; None means all of them. `loss` is always kept."""
    valid = metric_names(task)
    if names is None:
        return valid
    for name in names:
        if name not in valid:
            raise UsageError(
                f"metric '{name}' does not exist for {task}{did_you_mean(name, valid)} choices: {', '.join(valid)}"
            )
    return tuple(dict.fromkeys(("loss", *names)))


def compute_metrics(
    task: str,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    loss: float,
    names: Sequence[str],
    target_scale: tuple[Sequence[float], Sequence[float]] | None = None,
) -> dict[str, float | None]:
    """Metrics for one split. `outputs` are raw model outputs (logits / values), `targets` as trained on."""
    result: dict[str, float | None] = {"loss": _clean(loss)}
    if len(targets) == 0:
        return result
    out = outputs.detach().float().cpu().numpy()
    y = targets.detach().cpu().numpy()
    if task == "classification":
        if out.ndim == 1 or out.shape[1] == 1:  # binary: one logit
            p1 = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
            proba, pred = p1, (p1 >= 0.5).astype(np.int64)
            y = y.reshape(-1).astype(np.int64)
        else:
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            proba = shifted / shifted.sum(axis=1, keepdims=True)
            pred = proba.argmax(axis=1)
        wanted = set(names)
        if "accuracy" in wanted:
            result["accuracy"] = float(skm.accuracy_score(y, pred))
        if wanted & {"precision", "recall", "f1"}:
            p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
            result.update({k: float(v) for k, v in (("precision", p), ("recall", r), ("f1", f)) if k in wanted})
        if "roc_auc" in wanted:
            result["roc_auc"] = _roc_auc(y, proba)
    else:
        pred_v, true_v = out.reshape(len(y), -1), y.reshape(len(y), -1).astype(np.float64)
        if target_scale is not None:  # report in the target's own units
            mean, std = np.asarray(target_scale[0]), np.asarray(target_scale[1])
            pred_v, true_v = pred_v * std + mean, true_v * std + mean
        if "mse" in names:
            result["mse"] = float(skm.mean_squared_error(true_v, pred_v))
        if "mae" in names:
            result["mae"] = float(skm.mean_absolute_error(true_v, pred_v))
        if "r2" in names:
            result["r2"] = _clean(float(skm.r2_score(true_v, pred_v))) if len(y) > 1 else None
    return result


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """ROC-AUC, or None where it is undefined (a split that holds one class only)."""
    if len(np.unique(y)) < 2:
        return None
    try:
        if proba.ndim == 1:
            return float(skm.roc_auc_score(y, proba))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=np.arange(proba.shape[1])))
    except ValueError:  # a class absent from this split
        return None


def _clean(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
