"""Size and cost of a model: parameter count and FLOPs per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnopt.errors import ConfigError
from nnopt.models._build import CNN, MLP, DenseBlock, _ACT, _POOL

# The layers whose FLOPs torch's FlopCounterMode counts in nnopt's own networks (matrix products and convolutions),
# and the layers it counts as free (it has no formula for normalization, activations, pooling, dropout, reshapes, or
# a residual's addition). A network built of these alone is counted from its layers' shapes; anything else goes
# through FlopCounterMode, whose first use costs about a second (it imports torch._dynamo).
_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d)
_FREE = (MLP, CNN, DenseBlock, nn.Sequential, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Unflatten,
         nn.Identity, *_ACT.values(), *(p for pair in _POOL.values() for p in pair))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def sample_dims(sample_shape: int | Sequence[int], what: str = "sample_shape") -> tuple[int, ...]:
    """One sample's shape as a tuple: an int is a flat row of that many features."""
    dims = (sample_shape,) if isinstance(sample_shape, int) and not isinstance(sample_shape, bool) else \
        tuple(sample_shape) if isinstance(sample_shape, (tuple, list, torch.Size)) else None
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ConfigError(f"{what} must be a number of features >= 1 or a shape like (3, 32, 32); "
                          f"got {sample_shape!r}")
    return dims


def flops_per_sample(model: nn.Module, sample_shape: int | Sequence[int]) -> int | None:
    """Forward FLOPs for one sample (a multiply-add counts 2), as torch's FlopCounterMode counts them on one zero
    input of `sample_shape`: an int for a flat row of that many features, or the shape a module takes per
    sample ((3, 32, 32) images, (2, 50) signals). A network made only of nnopt's own layers (linear, mlp, cnn) is
    counted from its layers' shapes, to the same number; any other module through FlopCounterMode. None when the
    module cannot be counted (its forward fails on that input, or under the counter): "not countable", never an
    error."""
    dims = sample_dims(sample_shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if _layers_known(model):
                return _count_layers(model, torch.zeros(1, *dims, device=device))
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                model(torch.zeros(1, *dims, device=device))
    except Exception:  # noqa: BLE001 - any module may be given; one that cannot be counted is reported as such
        return None
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _layers_known(model: nn.Module) -> bool:
    """Whether every module in `model` is exactly one of the layer types counted from shapes (not a subclass, not
    a module with hooks that could change what runs: a pruning mask's pre-hook leaves the product as it was)."""
    for module in model.modules():
        if type(module) not in _COUNTED and type(module) not in _FREE:
            return False
        if module._forward_hooks or getattr(module, "_forward_hooks_with_kwargs", None):
            return False
    return True


def _count_layers(model: nn.Module, x: torch.Tensor) -> int:
    """One forward pass on `x`, adding each matrix product's and convolution's FLOPs from its shapes:
    a linear layer 2 * in * out per output row, a convolution 2 * weight elements per output position."""
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * module.in_features * output.numel()
        else:  # Conv1d / Conv2d: out positions x (out channels x in channels / groups x kernel)
            total += 2 * module.weight.numel() * (output.numel() // output.shape[1])

    handles = [m.register_forward_hook(count) for m in model.modules() if type(m) in _COUNTED]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total
