"""Parsing and validation of a comparison's settings: `adam@3e-4` items, seeds, grid, target metric."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnopt.errors import UsageError, did_you_mean, param, require_int
from nnopt.optim import OPTIMIZERS
from nnopt.train import metric_names

SEED_OPTIMIZERS = ("gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
LOWER_IS_BETTER = {"loss", "mse", "mae"}


@dataclass(frozen=True)
class OptimizerChoice:
    name: str
    lr: float | None  # given with name@lr


@dataclass(frozen=True)
class Target:
    name: str  # e.g. val_accuracy
    value: float

    @property
    def higher_is_better(self) -> bool:
        return self.name.split("_", 1)[1] not in LOWER_IS_BETTER

    def reached(self, row: dict) -> bool:
        value = row.get(self.name)
        if value is None:
            return False
        return value >= self.value if self.higher_is_better else value <= self.value

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value}


def parse_optimizers(items: str | list[str] | tuple[str, ...]) -> list[OptimizerChoice]:
    """`gd,sgd,adam@3e-4` (or a list) -> choices; unknown names, duplicates and bad lrs are usage errors."""
    if isinstance(items, str):
        parts = [p.strip() for p in items.split(",")]
    elif isinstance(items, (list, tuple)) and all(isinstance(p, str) for p in items):
        parts = [p.strip() for p in items]
    else:
        parts = []
    if not parts or any(not p for p in parts):
        raise UsageError(f"{param('optimizers')} must be a comma-separated list of names like adam,sgd (or a list "
                         f"of them); got {items!r}")
    choices, seen = [], set()
    for part in parts:
        name, at, lr_text = part.partition("@")
        name = name.strip()
        OPTIMIZERS.get(name)  # unknown -> error with did-you-mean
        lr = None
        if at:
            try:
                lr = float(lr_text)
            except ValueError:
                raise UsageError(f"malformed '{part}': expected NAME@LR like adam@3e-4") from None
            if not (lr > 0 and math.isfinite(lr)):
                raise UsageError(f"malformed '{part}': the lr must be > 0; got {lr_text}")
        if name in seen:
            raise UsageError(f"optimizer '{name}' is listed twice in {param('optimizers')}; list each once")
        seen.add(name)
        choices.append(OptimizerChoice(name, lr))
    return choices


def parse_lr_grid(grid: str | list[float] | None) -> list[float] | None:
    if grid is None:
        return None
    try:
        values = [float(v) for v in (grid.split(",") if isinstance(grid, str) else grid)]
    except (TypeError, ValueError):
        raise UsageError(f"{param('lr_grid')} must be comma-separated numbers like 1e-4,1e-3,1e-2; "
                         f"got '{grid}'") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise UsageError(f"{param('lr_grid')} values must be > 0; got '{grid}'")
    return sorted(set(values))


def parse_target(text: str | None, task: str) -> Target | None:
    """`val_accuracy=0.95` -> Target; the metric must exist for the task."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise UsageError(f"{param('target_metric')} must be a text NAME=VALUE, e.g. 'val_accuracy=0.95'; got {text!r}")
    name, eq, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not eq or number is None:
        raise UsageError(f"{param('target_metric')} must look like NAME=VALUE, e.g. val_accuracy=0.95; got '{text}'")
    valid = [f"{split}_{m}" for split in ("train", "val") for m in metric_names(task) if m != "roc_auc" or
             split == "val"]
    if name not in valid:
        raise UsageError(f"{param('target_metric')} '{name}' does not exist for {task}{did_you_mean(name, valid)} "
                         f"choices: {', '.join(valid)}")
    return Target(name, number)


def check_seeds(seeds: int) -> list[int]:
    require_int("seeds", seeds, 1)
    return list(range(seeds))


def check_workers(workers: int) -> int:
    require_int("workers", workers, 1)
    return workers
