"""Everything fit() decides before the first step: device, loss, targets, batch size, threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnopt.errors import UsageError, describe, did_you_mean, param

if TYPE_CHECKING:
    from nnopt.optim import Schedule

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCEWithLogitsLoss,
    "mse": nn.MSELoss,
    "mae": nn.L1Loss,
    "huber": nn.HuberLoss,
}
REGRESSION_LOSSES = ("mse", "mae", "huber")  # classification takes exactly one: cross_entropy, or bce on one logit


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{param('device', name)} but no CUDA device is available; use "
                             f"{param('device', 'auto')} or {param('device', 'cpu')}")
        index, count = torch.device(name).index, torch.cuda.device_count()
        if index is not None and index >= count:
            raise UsageError(f"{param('device', name)} but this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}; use one of them or {param('device', 'auto')}")
    return torch.device(name)


def default_loss(task: str, n_outputs: int) -> str:
    if task == "regression":
        return "mse"
    return "bce" if n_outputs == 1 else "cross_entropy"


def make_loss(loss: str | Callable[..., torch.Tensor] | None, task: str, n_outputs: int) -> Callable[..., torch.Tensor]:
    """A loss callable(outputs, targets); by default cross-entropy, BCE (binary) or MSE from the task."""
    if callable(loss):
        return loss
    if loss is not None and not isinstance(loss, str):
        raise UsageError(f"{param('loss')} must be a loss name ({', '.join(LOSSES)}) or a callable(outputs, "
                         f"targets); got {describe(loss)}")
    name = loss or default_loss(task, n_outputs)
    if name not in LOSSES:
        raise UsageError(f"unknown {param('loss')} '{name}'{did_you_mean(name, LOSSES)} choices: {', '.join(LOSSES)}")
    if task == "classification" and name != default_loss(task, n_outputs):
        raise UsageError(f"{param('loss', name)} does not fit {n_outputs}-output classification; use "
                         f"{default_loss(task, n_outputs)!r}")
    if task == "regression" and name not in REGRESSION_LOSSES:
        raise UsageError(f"{param('loss', name)} is for classification and this task is regression; use one of "
                         f"{', '.join(REGRESSION_LOSSES)}")
    return LOSSES[name]()


def training_targets(y: torch.Tensor, task: str, n_outputs: int) -> torch.Tensor:
    """Targets in the shape and dtype the loss takes, converted once (never per batch)."""
    if task == "classification" and n_outputs == 1:
        return y.float().reshape(-1, 1)  # BCE on one logit
    if task == "regression":
        return y.float().reshape(len(y), n_outputs)  # n_outputs, not -1: a split may be empty
    return y.long()


def resolve_batch_size(requested: int | str | None, full_batch_optimizer: bool, optimizer: str, n_train: int) -> int:
    """`full` = batch gradient descent, 1 = pure SGD, N = mini-batch; None = the optimizer's default."""
    if full_batch_optimizer:
        if requested not in (None, "full") and int(requested) < n_train:
            raise UsageError(
                f"optimizer '{optimizer}' is full-batch gradient descent; drop {param('batch_size')} or use 'sgd' for "
                "mini-batches"
            )
        return n_train
    if requested is None:
        return min(64, n_train)
    if requested == "full":
        return n_train
    return min(int(requested), n_train)


def describe_model(model: nn.Module | Any) -> str:
    return getattr(model, "to_string", lambda: type(model).__name__)()


def step_function(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """optimizer.step without torch's per-call profiler wrapper (a record_function scope, 3-4 % of a small
    MLP's train step: benchmarks/optim_step.py --mode scope), used only while no optimizer step hooks are
    registered."""
    raw = getattr(type(optimizer).step, "__wrapped__", None)
    from torch.optim import optimizer as torch_optimizer

    hooks = (getattr(optimizer, "_optimizer_step_pre_hooks", None) or getattr(optimizer, "_optimizer_step_post_hooks", None)
             or torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks)
    if raw is None or hooks:
        return optimizer.step

    def step() -> Any:
        out = raw(optimizer)
        optimizer._opt_called = True  # what the LR scheduler's step wrapper would record
        return out

    return step


def clear_grads(params: list[torch.Tensor]) -> None:
    """zero_grad(set_to_none=True) without its profiler scope."""
    for p in params:
        p.grad = None


def update_function(optimizer: torch.optim.Optimizer, schedule: Schedule, params: list[torch.Tensor],
                    clip_grad: float | None) -> Callable[[torch.Tensor], None]:
    """update(loss): everything a training step does after the forward pass — clear the gradients, backward,
    clip, optimizer step, per-batch schedule step: the step of the training loop, whatever the strategy (one
    process, DDP, local SGD, every Hogwild worker). Built once per run: the returned closure holds the unwrapped step
    and the settings, so a step costs one Python call more and no host sync (the loss is never read)."""
    step = step_function(optimizer)
    step_batch = schedule.step_batch
    clip = nn.utils.clip_grad_norm_

    def update(loss: torch.Tensor) -> None:
        for p in params:
            p.grad = None  # what clear_grads does, without a second call per step
        loss.backward()
        if clip_grad:
            clip(params, clip_grad, foreach=True)
        step()
        step_batch()

    return update
