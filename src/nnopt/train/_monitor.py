"""What the loop scores and watches: built-in metric names per split, a user's metrics as callables, and the
logged metric that early stopping and the choice of the best weights follow (`monitor=`, `mode=`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnopt.errors import UsageError, describe, did_you_mean, param
from nnopt.train._metrics import HIGHER_IS_BETTER, check_metric_names

MODES = ("min", "max")
CustomMetric = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class Scoring:
    """The metrics of each split: built-in names, and the user's callables (scored on val and test only)."""

    names: dict[str, tuple[str, ...]]
    custom: dict[str, CustomMetric]

    def logged(self, has_val: bool) -> list[str]:
        """The metric keys of a metrics.jsonl row, in the order the loop writes them."""
        keys = ["train_loss"] + [f"train_{m}" for m in self.names["train"] if m != "loss"]
        if has_val:
            keys += [f"val_{m}" for m in (*self.names["val"], *self.custom)]
        return keys


def scoring(task: str, metrics: Any) -> Scoring:
    """metrics: None (all built-ins), a list of built-in names, or {name: fn(outputs, targets) -> float} (all
    built-ins plus these). ROC-AUC ranks every row per class: worth it on held-out splits, skipped on train."""
    custom: dict[str, CustomMetric] = {}
    if isinstance(metrics, Mapping):
        builtin = check_metric_names(task, None)
        for name, fn in metrics.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise UsageError(f"{param('metrics')} keys must be names like 'f1_macro'; got {name!r}")
            if name in builtin:
                raise UsageError(f"{param('metrics')} key '{name}' is a built-in metric; name yours differently")
            if not callable(fn):
                raise UsageError(f"{param('metrics')} entry '{name}' must be a callable(outputs, targets) -> float; got "
                                 f"{describe(fn)}")
            custom[name] = fn
    else:
        builtin = check_metric_names(task, metrics)
    held_out = tuple(builtin)
    return Scoring({"train": tuple(m for m in builtin if m != "roc_auc"), "val": held_out, "test": held_out}, custom)


def custom_values(custom: Mapping[str, CustomMetric], outputs: torch.Tensor,
                  targets: torch.Tensor) -> dict[str, float | None]:
    """The user's metrics on one split: outputs are the raw model outputs, targets as trained on (CPU tensors)."""
    values: dict[str, float | None] = {}
    for name, fn in custom.items():
        value = fn(outputs, targets)
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{param('metrics')} entry '{name}' returned {describe(value)}; it must return a "
                             "number") from None
    return values


@dataclass(frozen=True)
class Monitor:
    """A logged metric and its better direction. score(): lower is better whatever the mode; None if absent."""

    name: str
    mode: str

    def score(self, row: Mapping[str, Any]) -> float | None:
        value = row.get(self.name)
        if value is None:
            return None
        return float(value) if self.mode == "min" else -float(value)


def monitor_for(name: str | None, mode: str | None, scores: Scoring, has_val: bool) -> Monitor:
    """The monitor of a run: `name` (default val_loss, or train_loss without validation rows) must be a logged
    metric; mode None is inferred: loss, mse, mae lower is better; accuracy, precision, recall, f1, roc_auc, r2
    higher; a custom metric needs its mode given."""
    logged = scores.logged(has_val)
    if name is None:
        name = "val_loss" if has_val else "train_loss"
    if name not in logged:
        raise UsageError(f"{param('monitor', name)} is not a logged metric{did_you_mean(name, logged)} logged "
                         f"metrics: {', '.join(logged)}")
    metric = name.split("_", 1)[1]
    if mode is None:
        if metric in scores.custom:
            raise UsageError(f"{param('monitor', name)} is a custom metric: say whether higher or lower is better "
                             f"with {param('mode', 'max')} or {param('mode', 'min')}")
        mode = "max" if metric in HIGHER_IS_BETTER else "min"
    return Monitor(name, mode)


def new_best(monitor: Monitor) -> dict[str, Any]:
    """The best-so-far record (kept in checkpoint.pt): what it watches, score (lower is better), epoch, epochs
    since, weights."""
    return {"monitor": [monitor.name, monitor.mode], "score": float("inf"), "epoch": 0, "bad": 0, "state": None}


def resumed_best(best: dict[str, Any], monitor: Monitor) -> dict[str, Any]:
    """A checkpoint's record, or a fresh one when the resumed run watches another metric (its scores would not
    compare). A checkpoint from before `monitor` watched val_loss, as `loss`."""
    if "loss" in best:
        best = {**best, "monitor": ["val_loss", "min"], "score": best["loss"]}
        del best["loss"]
    return best if best["monitor"] == [monitor.name, monitor.mode] else new_best(monitor)


def track_best(monitor: Monitor, patience: int | None, best: dict[str, Any], row: Mapping[str, Any],
               net: nn.Module) -> bool:
    """Keep the weights of the best epoch so far; True once `patience` epochs have not improved on it."""
    score = monitor.score(row)
    if score is not None and score < best["score"]:
        best.update(score=score, epoch=row["epoch"], bad=0,
                    state={k: v.detach().clone() for k, v in net.state_dict().items()})
        return False
    best["bad"] += 1
    return bool(patience) and best["bad"] >= patience
