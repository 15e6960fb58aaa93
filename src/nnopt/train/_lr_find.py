"""The LR range test (Smith 2017, "Cyclical Learning Rates"): train briefly while the learning rate grows
exponentially from min_lr to max_lr, record the loss, and suggest the lr where the smoothed loss falls fastest.

Suggestion rule: the steepest descent — the lr where the smoothed loss falls fastest against log10(lr), measured
as the slope of a least-squares line over half a decade of lr (at least three points), looking only at lrs below
the one with the lowest smoothed loss. A pointwise derivative was tried first: on small tables (diabetes, 4 batches
an epoch) the first steps' noise made it pick the smallest lr tried (1.6e-5 for every optimizer but full-batch gd,
where the loss falls fastest around 1e-3); on digits, iris, wine and breast_cancer the half-decade fit picks 0.57-1.6x
the derivative's lr, and 0.36x for rmsprop and adagrad on digits (benchmarks/lr_find.py --suggest-only). The loss is
an exponential moving average (beta 0.9, bias-corrected: about 10 steps of memory, so it follows 150 steps over 6
decades without lag); the test stops once it exceeds 4x its minimum or turns non-finite. Against a 9-point grid
around the suggestion (quarter-decade steps, mlp:128,64, 10 epochs, validation score averaged over 3 seeds;
benchmarks/lr_find.py), the suggestion lay within 0.32-3.2x of the best grid lr for adam, sgd, momentum, nesterov,
rmsprop, adagrad and gd on digits and on diabetes, and scored within 1.4 points of the best grid accuracy on digits
and 0.023 of the best R² on diabetes (gd: 0.079). tests/train/test_train_lr_find.py checks adam and sgd on digits
and adam on diabetes within 10x.

Noisy batches: each step's loss is its own batch's. On a heavy-tailed regression target (a skewed count such as
AER's NMES1988 `visits`) the batches' losses differ by more than training changes them (0.3-2.0 per batch of 64),
and the smoothed curve's lowest point was the first step, so the rule returned the floor. A sweep counts as clear
when the smoothed loss reaches its lowest point after the average's warm-up (1 / (1 - beta) = 10 steps), more than
four standard errors (and 1 %) below the warm-up batches' mean loss, and its steepest part lies past the warm-up.
Otherwise the sweep runs again from the same weights, each step scored on one fixed sample of up to 1,024 training
rows (dropout off); on nmes.csv this gives adam 1.5e-3 and sgd 8.8e-2 where the batch sweep gave 1e-5. On digits and
diabetes the batch sweep is clear for every optimizer and the suggestions are unchanged. If the loss still never
falls, the result says so (`descent=False`, `note`) and suggests the optimizer's default lr rather than the floor.
The sweep does not stop on a rise within the warm-up either (one heavy batch after a light one is not divergence).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnopt.config import TrainSpec, spec_from_mapping
from nnopt.errors import UsageError, param, require_int
from nnopt.optim import OPTIMIZERS, create_optimizer, set_optimizer_mode
from nnopt.fileio import atomic_write_json, make_run_dir
from nnopt.train._prepare import deterministic_kernels, prepare, thread_count
from nnopt.train._setup import clear_grads

RULE = ("steepest descent of the smoothed loss (EMA 0.9) against log10(lr), fitted over half a decade, "
        "among lrs below the smoothed-loss minimum")
SLOPE_DECADES = 0.5  # the width of the window each slope is fitted on
MIN_DROP = 0.01  # a descent is at least 1 % of the starting loss (on fixed rows the standard error can be 0)
FIXED_ROWS = 1024  # the training rows a second sweep measures every step on, when the batches show no descent


@dataclass
class LRFindResult:
    optimizer: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float
    rule: str = RULE
    config: dict[str, Any] = field(default_factory=dict)
    descent: bool = True  # False: the loss never fell, and `suggested` is the optimizer's default lr
    measured: str = "batch"  # "batch": each step's own batch; "fixed": a fixed sample of training rows (see note)
    note: str = ""  # one line saying how the suggestion was reached when it was not the plain rule

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed, "suggested": self.suggested,
                "rule": self.rule, "descent": self.descent, "measured": self.measured, "note": self.note}


def find_lr(model: Any, data: Any, *, optimizer: str = "adam", min_lr: float = 1e-5, max_lr: float = 10.0,
            steps: int = 150, seed: int = 0, device: str = "auto", beta: float = 0.9, stop_factor: float = 4.0,
            out: str | Path | None = None, **options: Any) -> LRFindResult:
    """Run the LR range test for `optimizer`; the model's weights are trained on a throw-away copy.

    options: the other TrainSpec fields (batch_size, target, task, optimizer_params, scale, threads, ...).
    out: a run directory for config.json and lr_find.json (the report is drawn from them).
    """
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (min_lr, max_lr))
    if not numbers or not (0 < min_lr < max_lr) or not math.isfinite(max_lr):
        raise UsageError(f"{param('min_lr')} and {param('max_lr')} must be numbers with 0 < min_lr < max_lr; "
                         f"got {min_lr!r} and {max_lr!r}")
    require_int("steps", steps, 10)
    module = model if isinstance(model, torch.nn.Module) else None
    spec = spec_from_mapping(TrainSpec, dict(data=data, model=None if module else model, optimizer=optimizer,
                                             seed=seed, device=device, **options), source="find_lr()")
    spec.validate()
    if module is not None:
        module = copy.deepcopy(module)
    p = prepare(spec, module=module)
    if out is not None:
        make_run_dir(Path(out))
    sweep = dict(min_lr=min_lr, max_lr=max_lr, steps=steps, seed=seed, beta=beta, stop_factor=stop_factor)
    with thread_count(p.threads), deterministic_kernels(p.device):
        start = copy.deepcopy(p.net.state_dict())
        lrs, losses, smoothed = _sweep(p, spec, None, **sweep)
        measured, rows = "batch", 0
        if len(lrs) >= 5 and not _clear(lrs, losses, smoothed, beta):
            # Each step's loss is its own batch's: on a heavy-tailed target the batches' losses differ by more than
            # training changes them, and the smoothed curve's lowest point is the luck of its first batches.
            # Measure every step on one fixed sample of training rows instead.
            p.net.load_state_dict(start)
            fixed = next(iter(p.sources["train"].batches(min(len(p.sources["train"]), FIXED_ROWS),
                                                          torch.Generator().manual_seed(seed))))
            rows = len(fixed[1])
            lrs, losses, smoothed = _sweep(p, spec, fixed, **sweep)
            measured = "fixed"
    if len(lrs) < 5:
        raise UsageError(f"the loss diverged within {len(lrs)} steps from lr {min_lr:g}; lower {param('min_lr')}")
    config = {"command": "lr-find", "data": spec.data if isinstance(spec.data, str) else f"<{type(spec.data).__name__}>",
              "model": p.arch.to_string() if p.arch else type(p.net).__name__, "optimizer": spec.optimizer,
              "batch_size": p.batch, "min_lr": min_lr, "max_lr": max_lr, "steps": steps, "seed": seed,
              "task": p.data.task, "data_info": p.data.describe(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    descent = descends(losses, smoothed, beta)
    suggested, note = suggest_lr(lrs, smoothed), ""
    if measured == "fixed":
        note = (f"the batches' losses were too noisy to show a descent; measured each step on {rows} fixed "
                f"training rows")
    if not descent:
        suggested = float(OPTIMIZERS.get(spec.optimizer).default_lr)
        note = (f"the loss never fell over the sweep ({min_lr:g} to {lrs[-1]:.3g}, each step's batch and "
                f"{rows} fixed training rows); suggesting {spec.optimizer}'s default lr {suggested:g}")
    result = LRFindResult(optimizer=spec.optimizer, lrs=lrs, losses=losses, smoothed=smoothed, suggested=suggested,
                          config=config, descent=descent, measured=measured, note=note)
    if out is not None:
        atomic_write_json(Path(out) / "config.json", config)
        atomic_write_json(Path(out) / "lr_find.json", {spec.optimizer: result.to_dict()})
    return result


def suggest_lr(lrs: list[float], smoothed: list[float]) -> float:
    """The steepest-descent lr of the smoothed loss curve, before its minimum (see RULE): the centre of the
    half-decade window whose least-squares slope is the most negative."""
    log_lr = np.log10(np.asarray(lrs))
    loss = np.asarray(smoothed)
    end = int(np.argmin(loss)) + 1
    if end < 3:
        return float(lrs[0])
    best_slope, best_at = 0.0, 0
    for start in range(end - 2):
        stop = max(start + 3, int(np.searchsorted(log_lr, log_lr[start] + SLOPE_DECADES, side="right")))
        if stop > end:
            break
        slope = np.polyfit(log_lr[start:stop], loss[start:stop], 1)[0]
        if slope < best_slope:
            best_slope, best_at = slope, (start + stop - 1) // 2
    return float(lrs[best_at])


def descends(losses: list[float], smoothed: list[float], beta: float = 0.9) -> bool:
    """Whether the loss fell: the smoothed loss reaches its lowest point after the moving average's warm-up (its
    first 1 / (1 - beta) steps, 10 for beta 0.9), and that point lies below the mean of the warm-up steps' losses by
    more than four standard errors of that mean and more than 1 % of it. Before then the bias-corrected average is
    the mean of a few batches, and a lowest point there, or one within the batches' noise, is their luck, not a
    descent."""
    warmup = warmup_steps(beta)
    if len(smoothed) <= warmup:
        return False
    low = int(np.argmin(np.asarray(smoothed)))
    first = np.asarray(losses[:warmup])
    margin = max(4 * first.std(ddof=1) / math.sqrt(warmup), MIN_DROP * abs(first.mean()))
    return bool(low >= warmup and smoothed[low] < first.mean() - margin)


def _clear(lrs: list[float], losses: list[float], smoothed: list[float], beta: float) -> bool:
    """Whether a sweep on each step's batch shows a descent and its steepest part lies past the warm-up."""
    return descends(losses, smoothed, beta) and suggest_lr(lrs, smoothed) >= lrs[warmup_steps(beta)]


def warmup_steps(beta: float) -> int:
    return max(3, round(1 / (1 - beta)))


def _sweep(p: Any, spec: TrainSpec, fixed: tuple[torch.Tensor, torch.Tensor] | None, *, min_lr: float, max_lr: float,
           steps: int, seed: int, beta: float, stop_factor: float) -> tuple[list[float], list[float], list[float]]:
    """Train p.net for up to `steps` steps while the lr grows from min_lr to max_lr; the loss of each step is its
    batch's, or with `fixed` (x, y) the loss on those rows after the step."""
    opt = create_optimizer(spec.optimizer, p.net, lr=min_lr, **spec.optimizer_params)
    set_optimizer_mode(opt, True)
    p.net.train()
    params = [q for q in p.net.parameters() if q.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    growth = (max_lr / min_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    warmup = warmup_steps(beta)  # the average of the first few batches is too noisy to stop on
    batches = iter(())
    for i in range(steps):
        lr = min_lr * growth**i
        for group in opt.param_groups:
            group["lr"] = lr
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(p.sources["train"].batches(p.batch, generator))
            xb, yb = next(batches)
        loss = p.loss_fn(p.net(xb), yb)
        clear_grads(params)
        loss.backward()
        opt.step()
        if fixed is not None:  # scored as the loop scores a split: dropout off, schedule-free at its eval weights
            p.net.eval()
            set_optimizer_mode(opt, False)
            with torch.no_grad():
                loss = p.loss_fn(p.net(fixed[0]), fixed[1])
            set_optimizer_mode(opt, True)
            p.net.train()
        value = float(loss.detach())  # one sync per step is fine for a short probe
        if not math.isfinite(value):
            break
        average = beta * average + (1 - beta) * value
        current = average / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(current)
        best = min(best, current)
        if i >= warmup and current > stop_factor * best:
            break
    return lrs, losses, smoothed
