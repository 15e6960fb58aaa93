"""Learning-rate schedules over torch.optim.lr_scheduler, behind one small object the fit loop drives.

Step-based schedules advance after every optimizer step and span the T = epochs * steps_per_epoch steps of a
run (step t = 0..T-1 is the lr the (t+1)-th update uses; past T-1 the last lr holds). reduce-on-plateau
advances once per epoch on the validation loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import torch
from torch.optim import lr_scheduler

from nnopt.errors import CheckpointError, ConfigError, UsageError, param
from nnopt.registry import Entry, Registry

from ._table import is_schedule_free


class Schedule:
    """A learning-rate schedule. Call ``step_batch()`` after each ``optimizer.step()`` and
    ``step_epoch(val_loss)`` at each epoch end; only the one that matches the schedule does anything.

    To resume, build the optimizer and then the schedule as for a fresh run, then load both states.
    """

    def __init__(
        self,
        name: str,
        optimizer: torch.optim.Optimizer,
        scheduler: lr_scheduler.LRScheduler | None = None,
        *,
        per_epoch: bool = False,
        total_steps: int | None = None,
    ) -> None:
        self.name = name
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.per_epoch = per_epoch
        self.total_steps = total_steps

    def step_batch(self) -> None:
        if self.scheduler is None or self.per_epoch:
            return
        if self.total_steps is None or self.scheduler.last_epoch < self.total_steps - 1:
            self.scheduler.step()

    def step_epoch(self, val_loss: float | None) -> None:
        """reduce-on-plateau steps on ``val_loss`` (an epoch without one is skipped); others do nothing."""
        if self.scheduler is not None and self.per_epoch and val_loss is not None:
            self.scheduler.step(float(val_loss))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("name") if isinstance(state, Mapping) else None
        if saved != self.name:
            raise CheckpointError(
                f"the checkpoint was saved with schedule '{saved}', not '{self.name}'; resume with "
                f"{param('schedule', saved)}"
            )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            # Write the restored lr back, so the order of optimizer / schedule loading does not matter.
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def last_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def __repr__(self) -> str:
        return f"Schedule({self.name!r})"


def _cosine_factor(t: int, total: int, min_ratio: float) -> float:
    progress = min(max(t, 0), total) / max(total, 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _constant(optimizer, *, epochs, steps_per_epoch) -> Schedule:
    return Schedule("constant", optimizer)


def _step(optimizer, *, epochs, steps_per_epoch, step_size, gamma) -> Schedule:
    step_size = max(1, epochs // 3) if step_size is None else step_size
    scheduler = lr_scheduler.StepLR(optimizer, step_size=step_size * steps_per_epoch, gamma=gamma)
    return Schedule("step", optimizer, scheduler, total_steps=epochs * steps_per_epoch)


def _exponential(optimizer, *, epochs, steps_per_epoch, gamma) -> Schedule:
    scheduler = lr_scheduler.ExponentialLR(optimizer, gamma=gamma ** (1.0 / steps_per_epoch))
    return Schedule("exponential", optimizer, scheduler, total_steps=epochs * steps_per_epoch)


def _cosine(optimizer, *, epochs, steps_per_epoch, min_lr_ratio) -> Schedule:
    total = epochs * steps_per_epoch
    # LambdaLR with the closed form rather than CosineAnnealingLR's recursion: exact, and the floor is a
    # ratio, so it holds for every param group whatever its lr.
    scheduler = lr_scheduler.LambdaLR(optimizer, lambda t: _cosine_factor(t, total, min_lr_ratio))
    return Schedule("cosine", optimizer, scheduler, total_steps=total)


def _warmup_cosine(optimizer, *, epochs, steps_per_epoch, warmup, min_lr_ratio) -> Schedule:
    total = epochs * steps_per_epoch
    warm = min(total - 1, round(warmup * total)) if warmup > 0 else 0

    def factor(t: int) -> float:  # linear (t+1)/(W+1) up to 1 at t = W, then cosine over the rest
        if t < warm:
            return (t + 1) / (warm + 1)
        return _cosine_factor(t - warm, total - warm, min_lr_ratio)

    scheduler = lr_scheduler.LambdaLR(optimizer, factor)
    return Schedule("warmup-cosine", optimizer, scheduler, total_steps=total)


def _one_cycle(optimizer, *, epochs, steps_per_epoch, pct_start, div_factor, final_div_factor) -> Schedule:
    total = epochs * steps_per_epoch
    # cycle_momentum=False: cycling would switch momentum on for plain SGD and RMSprop, and MuonAdamW's
    # halves keep momentum under different keys.
    scheduler = lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=max(total, 2),
        pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor, cycle_momentum=False,
    )
    return Schedule("one-cycle", optimizer, scheduler, total_steps=total)


def _plateau(optimizer, *, epochs, steps_per_epoch, factor, patience, threshold, min_lr) -> Schedule:
    scheduler = lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience, threshold=threshold, min_lr=min_lr
    )
    return Schedule("reduce-on-plateau", optimizer, scheduler, per_epoch=True)


SCHEDULES = Registry("schedule", [
    Entry("constant", _constant, "the optimizer's lr, unchanged", {"params": {}}),
    Entry("step", _step, "multiply lr by gamma every step_size epochs",
          {"params": {"step_size": None, "gamma": 0.1}, "formula": "lr * gamma^floor(epoch / step_size)"}),
    Entry("exponential", _exponential, "multiply lr by gamma each epoch, smoothly within the epoch",
          {"params": {"gamma": 0.95}, "formula": "lr * gamma^(t / steps_per_epoch)"}),
    Entry("cosine", _cosine, "cosine decay from lr to min_lr_ratio * lr over the run",
          {"params": {"min_lr_ratio": 0.0}, "formula": "lr * (r + (1-r) * (1 + cos(pi * t/T)) / 2)"}),
    Entry("warmup-cosine", _warmup_cosine, "linear warmup over a fraction of the run, then cosine decay",
          {"params": {"warmup": 0.05, "min_lr_ratio": 0.0},
           "formula": "lr * (t+1)/(W+1) for t < W = warmup*T, then cosine over T-W"}),
    Entry("one-cycle", _one_cycle, "1cycle: cosine up from lr/div_factor to lr, then down to ~0 (lr is the peak)",
          {"params": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
           "formula": "torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, anneal_strategy='cos')"}),
    Entry("reduce-on-plateau", _plateau, "multiply lr by factor when val loss stalls for patience epochs",
          {"params": {"factor": 0.5, "patience": 2, "threshold": 1e-4, "min_lr": 0.0},
           "formula": "lr *= factor after patience epochs without a relative improvement > threshold"}),
])

_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "step_size": (lambda v: v is None or (isinstance(v, Integral) and v >= 1), "an integer >= 1 (epochs)"),
    "gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "warmup": (lambda v: 0 <= v < 1, "a fraction of the run in [0, 1)"),
    "pct_start": (lambda v: 0 < v < 1, "in (0, 1)"),
    "div_factor": (lambda v: v >= 1, ">= 1"),
    "final_div_factor": (lambda v: v >= 1, ">= 1"),
    "factor": (lambda v: 0 < v < 1, "in (0, 1)"),
    "patience": (lambda v: isinstance(v, Integral) and v >= 0, "an integer >= 0"),
    "threshold": (lambda v: v >= 0, ">= 0"),
    "min_lr": (lambda v: v >= 0, ">= 0"),
}


def _check_param(schedule: str, key: str, value: Any) -> None:
    check, wanted = _CHECKS[key]
    numeric = value is None or (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value))
    if not (numeric and check(value)):
        raise ConfigError(f"schedule '{schedule}': {key} must be {wanted}; got {value!r}")


def _check_count(flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise UsageError(f"{param(flag)} must be an integer >= 1; got {value!r}")
    return int(value)


def create_schedule(
    name_or_dict: str | Mapping[str, Any] | Schedule | None,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    **params: Any,
) -> Schedule:
    """Build a schedule: ``create_schedule("cosine", opt, epochs=10, steps_per_epoch=29, min_lr_ratio=0.1)``.

    ``None`` means constant. A dict is ``{"name": ..., **params}``; keyword params win over it.
    """
    if isinstance(name_or_dict, Schedule):
        return name_or_dict
    entry, params = SCHEDULES.resolve("constant" if name_or_dict is None else name_or_dict, params)
    name = entry.name
    epochs = _check_count("epochs", epochs)
    steps_per_epoch = _check_count("steps_per_epoch", steps_per_epoch)
    for key, value in params.items():
        if key not in entry.params:
            options = ", ".join(entry.params) or "none"
            raise ConfigError(f"schedule '{name}' has no option '{key}'; options: {options}")
        _check_param(name, key, value)
    if name != "constant" and is_schedule_free(optimizer):
        raise UsageError(f"optimizer 'schedulefree' needs no schedule; drop {param('schedule')}")
    return entry.factory(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, **{**entry.params, **params})
