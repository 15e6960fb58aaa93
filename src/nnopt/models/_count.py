"""Size and cost of a model: parameter count and FLOPs per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nnopt.errors import ConfigError


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
    """Forward FLOPs for one sample (a multiply-add counts 2), measured by torch's FlopCounterMode on one zero
    input of `sample_shape`: an int for a flat row of that many features, or the shape a module takes per
    sample ((3, 32, 32) images, (2, 50) signals). None when the module cannot be counted that way (its forward
    fails on that input, or under the counter): "not countable", never an error."""
    dims = sample_dims(sample_shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *dims, device=device))
    except Exception:  # noqa: BLE001 - any module may be given; one that cannot be counted is reported as such
        return None
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
