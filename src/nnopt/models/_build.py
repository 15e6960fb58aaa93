"""Build nn.Modules from an ArchSpec (or a user factory)."""

from __future__ import annotations

import importlib
import inspect
import numbers
import os
import sys
from typing import Any

import torch
from torch import nn

from nnopt.errors import ConfigError, UsageError, did_you_mean, keywords_checked, param, require_int
from nnopt.models._spec import KINDS, ArchSpec

_ACT = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
}
_POOL = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}  # by number of spatial dims


FLAT_ROWS = "nnopt_flat_rows"  # attribute marking a module of nnopt's own kinds (linear, mlp, cnn)


class DenseBlock(nn.Module):
    """Linear -> (BatchNorm) -> activation -> (Dropout), with an optional identity shortcut."""

    def __init__(self, n_in: int, n_out: int, spec: ArchSpec):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
        if spec.batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(_ACT[spec.act]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        self.body = nn.Sequential(*layers)
        self.residual = spec.residual and n_in == n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MLP(nn.Module):
    """Fully connected network: blocks of DenseBlock, then a linear head."""

    def __init__(self, in_features: int, n_outputs: int, spec: ArchSpec):
        super().__init__()
        widths = [in_features, *spec.hidden]
        # A block without a shortcut is its plain Sequential: one module call fewer per layer in the hot loop.
        self.blocks = nn.Sequential(*(
            block if block.residual else block.body
            for block in (DenseBlock(a, b, spec) for a, b in zip(widths, widths[1:]))))
        self.head = nn.Linear(widths[-1], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


class CNN(nn.Module):
    """LeNet-style: conv blocks (conv, BN, act, 2x pool while the map is large enough), dense head.

    `spec.pool` picks the pooling: "max" (default), "avg", or "none" (the map keeps its size).

    Input rows arrive flat (n, C*H*W) or (n, C*L) and are reshaped to `input_shape`;
    a 2-element shape (C, L) gives 1-D convolutions.
    """

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, spec: ArchSpec):
        super().__init__()
        dims = len(input_shape) - 1
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        pool = _POOL[spec.pool][dims - 1] if spec.pool != "none" else None
        self.unflatten = nn.Unflatten(1, tuple(input_shape))
        layers: list[nn.Module] = []
        channels, size = input_shape[0], min(input_shape[1:])
        for width in spec.hidden:
            layers.append(conv(channels, width, spec.kernel, padding=spec.kernel // 2))
            if spec.batchnorm:
                layers.append(norm(width))
            layers.append(_ACT[spec.act]())
            if pool is not None and size >= 4:  # pool while at least a 2x2 map remains
                layers.append(pool(2))
                size //= 2
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        head: list[nn.Module] = []
        if spec.head:
            head += [nn.Linear(n_flat, spec.head), _ACT[spec.act]()]
            if spec.dropout:
                head.append(nn.Dropout(spec.dropout))
            n_flat = spec.head
        self.head = nn.Sequential(*head, nn.Linear(n_flat, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.unflatten(x)))


@keywords_checked
def build_model(
    spec: str | dict | ArchSpec,
    *,
    in_features: int,
    n_outputs: int,
    input_shape: tuple[int, ...] | None = None,
    task: str | None = None,
) -> nn.Module:
    """Build the network a spec describes for data with `in_features` inputs and `n_outputs` outputs.

    input_shape: the cnn's (C, H, W) or (C, L); a factory receives it as its `input_shape` argument, the shape
    of one sample of the batches its module is given (None: flat rows of `in_features`).
    """
    arch = ArchSpec.parse(spec)
    require_int("in_features", in_features, 1)
    require_int("n_outputs", n_outputs, 1)
    _require_shape(input_shape)
    if arch.kind in KINDS:
        model = _own_model(arch, in_features, n_outputs, input_shape)
        setattr(model, FLAT_ROWS, True)  # it travels with the module (copies, pruning, fine-tuning by compress)
        return model
    func, params = factory_signature(arch)
    available = dict(in_features=in_features, out_features=n_outputs, n_outputs=n_outputs,
                     input_shape=tuple(input_shape) if input_shape else None, task=task)
    takes_all = params is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {**{k: v for k, v in available.items() if takes_all or k in params}, **arch.kwargs}
    try:
        model = func(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code failed on these arguments: say which call it was
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(f"model factory '{arch.factory}' failed when called with {given} ({detail})") from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory '{arch.factory}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _require_shape(input_shape: Any) -> None:
    dims = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if input_shape is not None and (dims is None or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in dims)):
        raise UsageError(f"{param('input_shape')} must be the shape of one sample, whole numbers >= 1 such as "
                         f"(3, 32, 32) or (1, 40); got {input_shape!r}")


def _own_model(arch: ArchSpec, in_features: int, n_outputs: int, input_shape: tuple[int, ...] | None) -> nn.Module:
    if arch.kind == "linear":
        return nn.Linear(in_features, n_outputs)
    if arch.kind == "mlp":
        return MLP(in_features, n_outputs, arch)
    if not input_shape or len(input_shape) not in (2, 3):
        raise ConfigError(
            "model 'cnn' needs image-shaped data (digits, mnist1d or an IDX directory); use mlp for tabular data"
        )
    return CNN(tuple(input_shape), n_outputs, arch)


def module_takes_flat_rows(module: nn.Module) -> bool:
    """Whether a module nnopt is handed (to fine-tune, compress, count) is one of nnopt's own kinds, built by
    build_model: those take flat rows; any other module takes batches in the data's shape."""
    return bool(getattr(module, FLAT_ROWS, False))


def takes_flat_rows(spec: str | dict | ArchSpec | None) -> bool:
    """Whether a model gets flat rows (batch, in_features): nnopt's own kinds do; a factory's module or a user's
    nn.Module (spec None) gets batches in the data's own shape, (batch, C, H, W) images, (batch, C, L) signals."""
    return spec is not None and ArchSpec.parse(spec).kind in KINDS


class Shaped(nn.Module):
    """Flat rows (batch, n_features) -> the network in the shape one sample had at training time: a factory's or a
    user's module takes (batch, C, H, W) images or (batch, C, L) signals, and every consumer of flat rows
    (predict, evaluate, importance, ONNX export, compress's checks) passes flat rows."""

    def __init__(self, network: nn.Module, sample_shape: tuple[int, ...]):
        super().__init__()
        self.network = network
        self.sample_shape = tuple(int(d) for d in sample_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.reshape(-1, *self.sample_shape))  # -1, not len(x): export keeps the batch dynamic


def on_flat_rows(model: nn.Module, meta: dict[str, Any]) -> nn.Module:
    """`model` taking flat rows: itself for nnopt's own kinds, else wrapped in Shaped with its recorded
    sample_shape."""
    shape = meta.get("sample_shape")
    if shape and not takes_flat_rows(meta.get("model_spec")):
        return Shaped(model, tuple(shape))
    return model


def import_user_module(name: str) -> Any:
    """Import the module of a user's factory or class. A module that is not importable as Python finds it is
    looked for in the current directory too, after everything on sys.path (the `nnopt` command, unlike
    `python -m`, does not put the directory it runs in on the path, and `--model mynets:Net` next to mynets.py
    should work); being last, it cannot shadow an installed package."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        top = name.split(".")[0]
        if exc.name != top or here in sys.path or "" in sys.path or not (
                os.path.isfile(os.path.join(here, top + ".py")) or os.path.isdir(os.path.join(here, top))):
            raise
        sys.path.append(here)
        return importlib.import_module(name)


def factory_signature(spec: str | dict | ArchSpec) -> tuple[Any, dict[str, inspect.Parameter] | None]:
    """(the factory, its parameters) of a factory spec, after checking that it can be imported and takes the
    spec's arguments; parameters None when Python cannot read its signature."""
    arch = ArchSpec.parse(spec)
    path = arch.factory or ""
    module_name, _, func_name = path.partition(":")
    try:
        func = getattr(import_user_module(module_name), func_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import model factory module '{module_name}' ({exc}); check PYTHONPATH (the "
                          "current directory is searched too)") from None
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no function '{func_name}'") from None
    try:
        params = dict(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # a builtin without a readable signature: call it and let it check
        return func, None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func, params
    named = [name for name, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in arch.kwargs:
        if key not in named:
            raise ConfigError(f"model factory '{path}' has no argument '{key}'{did_you_mean(key, named)} "
                              f"its arguments: {', '.join(named) or 'none'}")
    given = {*arch.kwargs, "in_features", "out_features", "n_outputs", "input_shape", "task"}
    missing = [name for name in named if params[name].default is inspect.Parameter.empty and name not in given]
    if missing:
        raise ConfigError(f"model factory '{path}' needs argument '{missing[0]}'; give it as "
                          f"'{path}:{missing[0]}=...' or under args: in a model dict")
    return func, params
