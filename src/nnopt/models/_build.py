"""Build nn.Modules from an ArchSpec (or a user factory)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from nnopt.errors import ConfigError, require_int
from nnopt.models._spec import ArchSpec

_ACT = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
}
_POOL = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}  # by number of spatial dims


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


def build_model(
    spec: str | dict | ArchSpec,
    *,
    in_features: int,
    n_outputs: int,
    input_shape: tuple[int, ...] | None = None,
    task: str | None = None,
) -> nn.Module:
    """Build the network a spec describes for data with `in_features` inputs and `n_outputs` outputs."""
    arch = ArchSpec.parse(spec)
    require_int("in_features", in_features, 1)
    require_int("n_outputs", n_outputs, 1)
    if arch.kind == "linear":
        return nn.Linear(in_features, n_outputs)
    if arch.kind == "mlp":
        return MLP(in_features, n_outputs, arch)
    if arch.kind == "cnn":
        if not input_shape or len(input_shape) not in (2, 3):
            raise ConfigError(
                "model 'cnn' needs image-shaped data (digits, mnist1d or an IDX directory); use mlp for tabular data"
            )
        return CNN(tuple(input_shape), n_outputs, arch)
    return _call_factory(arch.factory or "", in_features=in_features, out_features=n_outputs,
                         n_outputs=n_outputs, input_shape=input_shape, task=task)


def _call_factory(path: str, **available: Any) -> nn.Module:
    module_name, _, func_name = path.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import model factory module '{module_name}' ({exc}); check PYTHONPATH") from None
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no function '{func_name}'") from None
    params = inspect.signature(func).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    model = func(**{k: v for k, v in available.items() if takes_all or k in params})
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory '{path}' returned {type(model).__name__}, not a torch.nn.Module")
    return model
