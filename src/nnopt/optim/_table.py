"""The optimizer table as data: name -> factory, one-line summary, update rule, default lr, source, knobs.

Default lrs are measured, not copied: benchmarks/defaults_sweep.py takes, per optimizer, the smallest lr of a
grid whose validation score (10 epochs of an MLP on digits, mnist1d, penguins, diabetes and penguins-mass) is
within noise of the best (benchmarks/RESULTS.md, "Default learning rates").

Each factory is ``factory(model_or_params, *, lr, **hyperparams) -> torch.optim.Optimizer``; create_optimizer
validates lr and the knob names once, at the boundary, before any factory runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from numbers import Real
from typing import Any

import schedulefree
import torch
from torch import nn

from nnopt.errors import ConfigError, UsageError, describe, param
from nnopt.registry import Entry, Registry

from ._lion import Lion
from ._muon import MuonAdamW, split_muon_params

_ADAM_KNOBS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
# Fused CPU/CUDA kernels exist for SGD, Adagrad, Adam, AdamW; benchmarks/optim_step.py shows they beat
# foreach on a small CPU MLP except for SGD without momentum (one axpy: no gain), which stays on foreach.
_FUSED_DEVICES = {"fused": ("cpu", "cuda"), "fused-cpu": ("cpu",)}


def _trainable(model_or_params: nn.Module | Iterable[Any]) -> list[Any]:
    if isinstance(model_or_params, nn.Module):
        return [p for p in model_or_params.parameters() if p.requires_grad]
    return list(model_or_params)


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    return [p for item in params for p in (item["params"] if isinstance(item, Mapping) else [item])]


def _impl_kwargs(impl: str, params: list[Any]) -> dict[str, bool]:
    """Turn the entry's preferred implementation into torch kwargs; fall back to foreach where fused can't run."""
    devices = _FUSED_DEVICES.get(impl)
    if devices is not None:
        tensors = _tensors(params)
        if all(p.is_floating_point() and p.device.type in devices for p in tensors):
            return {"fused": True}
    return {"foreach": True}


def _torch_factory(cls: type[torch.optim.Optimizer], impl: str, **fixed: Any) -> Callable[..., torch.optim.Optimizer]:
    def factory(model_or_params: Any, *, lr: float, **hyperparams: Any) -> torch.optim.Optimizer:
        params = _trainable(model_or_params)
        return cls(params, lr=lr, **fixed, **hyperparams, **_impl_kwargs(impl, params))

    factory.__name__ = f"create_{cls.__name__.lower()}"
    return factory


def _lion(model_or_params: Any, *, lr: float, **hyperparams: Any) -> Lion:
    return Lion(_trainable(model_or_params), lr=lr, **hyperparams)


def _schedulefree(model_or_params: Any, *, lr: float, **hyperparams: Any) -> torch.optim.Optimizer:
    return schedulefree.AdamWScheduleFree(_trainable(model_or_params), lr=lr, foreach=True, **hyperparams)


def _muon(model_or_params: Any, *, lr: float, **hyperparams: Any) -> MuonAdamW:
    muon_params, adamw_params = split_muon_params(model_or_params)
    impl = _impl_kwargs("fused", adamw_params)
    return MuonAdamW(muon_params, adamw_params, lr=lr, adamw_impl=impl, **hyperparams)


def _entry(name, factory, summary, *, rule, default_lr, source, hyperparams, impl, full_batch=False) -> Entry:
    extra = {"rule": rule, "default_lr": default_lr, "full_batch": full_batch, "source": source,
             "hyperparams": hyperparams, "impl": impl}
    return Entry(name, factory, summary, extra)


SGD, FUSED, FOREACH = torch.optim.SGD, "fused", "foreach"

OPTIMIZERS = Registry("optimizer", [
    _entry("gd", _torch_factory(SGD, FOREACH), "full-batch gradient descent: one exact-gradient step per epoch",
           rule="w -= lr * g  (g = gradient of the whole training set)", default_lr=0.2, full_batch=True,
           source="torch.optim.SGD", hyperparams={"weight_decay": 0.0}, impl=FOREACH),
    _entry("sgd", _torch_factory(SGD, FOREACH), "mini-batch stochastic gradient descent, no momentum",
           rule="w -= lr * g", default_lr=0.2, source="torch.optim.SGD",
           hyperparams={"weight_decay": 0.0}, impl=FOREACH),
    _entry("momentum", _torch_factory(SGD, FUSED), "SGD with heavy-ball momentum 0.9",
           rule="b = mu*b + g; w -= lr * b", default_lr=0.05, source="torch.optim.SGD",
           hyperparams={"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0}, impl=FUSED),
    _entry("nesterov", _torch_factory(SGD, FUSED, nesterov=True), "SGD with Nesterov momentum 0.9",
           rule="b = mu*b + g; w -= lr * (g + mu*b)", default_lr=0.05, source="torch.optim.SGD",
           hyperparams={"momentum": 0.9, "weight_decay": 0.0}, impl=FUSED),
    _entry("adagrad", _torch_factory(torch.optim.Adagrad, "fused-cpu"),
           "per-coordinate lr that shrinks with the summed squared gradients",
           rule="s += g^2; w -= lr * g / (sqrt(s) + eps)", default_lr=0.1, source="torch.optim.Adagrad",
           hyperparams={"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
           impl="fused-cpu"),
    _entry("rmsprop", _torch_factory(torch.optim.RMSprop, FOREACH),
           "per-coordinate lr from a moving average of squared gradients",
           rule="v = a*v + (1-a)*g^2; w -= lr * g / (sqrt(v) + eps)", default_lr=5e-3,
           source="torch.optim.RMSprop",
           hyperparams={"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
           impl=FOREACH),
    _entry("adam", _torch_factory(torch.optim.Adam, FUSED), "momentum + RMSprop with bias correction",
           rule="m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lr * m_hat / (sqrt(v_hat) + eps)",
           default_lr=5e-3, source="torch.optim.Adam", hyperparams={**_ADAM_KNOBS, "amsgrad": False}, impl=FUSED),
    _entry("adamw", _torch_factory(torch.optim.AdamW, FUSED), "Adam with decoupled weight decay (default 0.01)",
           rule="adam's m, v; w -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * w)", default_lr=5e-3,
           source="torch.optim.AdamW", hyperparams={**_ADAM_KNOBS, "weight_decay": 0.01, "amsgrad": False},
           impl=FUSED),
    _entry("nadam", _torch_factory(torch.optim.NAdam, FOREACH), "Adam with a Nesterov look-ahead on the momentum",
           rule="adam's m, v; w -= lr * (mu*m_hat + (1-mu)*g_hat) / (sqrt(v_hat) + eps)  (mu warms up to b1)",
           default_lr=5e-3, source="torch.optim.NAdam",
           hyperparams={**_ADAM_KNOBS, "momentum_decay": 0.004, "decoupled_weight_decay": False}, impl=FOREACH),
    _entry("radam", _torch_factory(torch.optim.RAdam, FOREACH),
           "Adam whose adaptive step is switched on only once the variance estimate is reliable",
           rule="adam's m, v; w -= lr * m_hat while rho_t <= 5, else w -= lr * r_t * m_hat / (sqrt(v_hat) + eps)",
           default_lr=0.05, source="torch.optim.RAdam",
           hyperparams={**_ADAM_KNOBS, "decoupled_weight_decay": False}, impl=FOREACH),
    _entry("adamax", _torch_factory(torch.optim.Adamax, FOREACH), "Adam with an infinity-norm second moment",
           rule="m = b1*m + (1-b1)*g; u = max(b2*u, |g| + eps); w -= lr / (1-b1^t) * m / u", default_lr=2e-2,
           source="torch.optim.Adamax", hyperparams=dict(_ADAM_KNOBS), impl=FOREACH),
    _entry("adadelta", _torch_factory(torch.optim.Adadelta, FOREACH),
           "step sizes from the ratio of past update and gradient magnitudes; lr is only a multiplier",
           rule="v = r*v + (1-r)*g^2; d = sqrt(u + eps) / sqrt(v + eps) * g; u = r*u + (1-r)*d^2; w -= lr * d",
           default_lr=2.0, source="torch.optim.Adadelta",
           hyperparams={"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}, impl=FOREACH),
    _entry("adafactor", _torch_factory(torch.optim.Adafactor, FOREACH),
           "memory-light Adam without momentum: row/column-factored second moment, relative step size",
           rule="v = factored EMA of g^2 (1-b2_t = t^-0.8); w -= min(lr, 1/sqrt(t)) * max(eps2, rms(w)) * g / sqrt(v)",
           default_lr=1.0, source="torch.optim.Adafactor",
           hyperparams={"beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0, "weight_decay": 0.0}, impl=FOREACH),
    _entry("muon", _muon, "Muon (orthogonalized momentum) on hidden weight matrices, AdamW on the rest",
           rule="hidden W: B = mu*B + g; W -= lr*wd*W + 0.2*sqrt(max(rows, cols))*lr*NewtonSchulz5(g + mu*B); "
                "biases, norms, output layer: AdamW with the same lr and wd",
           default_lr=5e-3, source="torch.optim.Muon + torch.optim.AdamW (nnopt.optim.MuonAdamW)",
           hyperparams={"weight_decay": 0.1, "momentum": 0.95, "nesterov": True, "ns_steps": 5,
                        "adjust_lr_fn": "match_rms_adamw", "betas": (0.9, 0.999), "eps": 1e-8},
           impl="muon: for-loop (torch has no other); adamw: fused"),
    _entry("lion", _lion, "sign of interpolated momentum: every coordinate moves by lr each step",
           rule="c = b1*m + (1-b1)*g; w -= lr * (sign(c) + wd*w); m = b2*m + (1-b2)*g", default_lr=5e-3,
           source="nnopt.optim.Lion", hyperparams={"betas": (0.9, 0.99), "weight_decay": 0.0}, impl=FOREACH),
    _entry("schedulefree", _schedulefree,
           "schedule-free AdamW: averages iterates instead of decaying lr; needs no schedule",
           rule="y = (1-b1)*z + b1*x; z -= lr * g(y) / (sqrt(v_hat) + eps); x = (1-c)*x + c*z, c = lr^2 / sum(lr_i^2)",
           default_lr=2e-2, source="schedulefree.AdamWScheduleFree",
           hyperparams={**_ADAM_KNOBS, "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0}, impl=FOREACH),
])


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, Real):
        raise UsageError(f"{param('lr')} must be a number > 0; got {lr!r}")
    if not math.isfinite(lr):
        raise UsageError(f"{param('lr')} must be finite; got {lr}")
    if lr <= 0:
        raise UsageError(f"{param('lr')} must be > 0; got {lr}")
    return float(lr)


def create_optimizer(
    name_or_dict: str | Mapping[str, Any] | torch.optim.Optimizer,
    model_or_params: nn.Module | Iterable[Any],
    *,
    lr: float | None = None,
    **hyperparams: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer from the table: ``create_optimizer("adam", model, lr=1e-3, betas=(0.9, 0.99))``.

    ``name_or_dict`` may be ``{"name": "adam", "lr": 1e-3, **knobs}``; keyword arguments win over the dict.
    An ``Optimizer`` instance is returned as is. Pass the ``nn.Module`` rather than its parameters where you
    can: muon needs it to tell hidden weight matrices from the output layer.
    """
    if isinstance(name_or_dict, torch.optim.Optimizer):
        return name_or_dict
    if not isinstance(model_or_params, (nn.Module, Iterable)):
        raise UsageError(f"{param('model_or_params')} must be an nn.Module or its parameters; "
                         f"got {describe(model_or_params)}")
    entry, hyperparams = OPTIMIZERS.resolve(name_or_dict, hyperparams)
    name = entry.name
    spec_lr = hyperparams.pop("lr", None)  # a dict may carry its lr; the keyword wins
    lr = spec_lr if lr is None else lr
    lr = _check_lr(entry.default_lr if lr is None else lr)
    for key in hyperparams:
        if key not in entry.hyperparams:
            options = ", ".join(entry.hyperparams) or "none"
            raise ConfigError(f"optimizer '{name}' has no option '{key}'; options: {options}")
    try:
        return entry.factory(model_or_params, lr=lr, **{**entry.hyperparams, **hyperparams})
    except ValueError as error:  # torch's own range checks (betas, eps, empty params)
        raise ConfigError(f"optimizer '{name}': {error}") from error
    except TypeError as error:  # a value of the wrong kind, e.g. betas=0.9 for a pair
        defaults = ", ".join(f"{k}={v!r}" for k, v in entry.hyperparams.items())
        raise ConfigError(f"optimizer '{name}': an option has the wrong type ({error}); defaults: {defaults}") from error


def optimizer_table() -> list[dict[str, Any]]:
    """One plain dict per optimizer, for ``nnopt optimizers`` and the docs."""
    return [
        {"name": e.name, "summary": e.summary, "rule": e.rule, "default_lr": e.default_lr,
         "source": e.source, "full_batch": e.full_batch}
        for e in OPTIMIZERS
    ]


def is_schedule_free(optimizer: Any) -> bool:
    """True for the schedulefree package's optimizers (they keep ``train_mode`` in their groups)."""
    return type(optimizer).__module__.startswith("schedulefree") or (
        bool(getattr(optimizer, "param_groups", None))
        and all("train_mode" in group for group in optimizer.param_groups)
    )


def set_optimizer_mode(optimizer: Any, training: bool) -> None:
    """Call ``optimizer.train()`` before training steps and ``.eval()`` before evaluating or saving.

    Schedule-free optimizers train at one point (y) and evaluate at another (x); other optimizers have no
    modes, and this is a no-op for them.
    """
    method = getattr(optimizer, "train" if training else "eval", None)
    if callable(method):
        method()
