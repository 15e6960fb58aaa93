"""Size and cost of a model: parameter count and FLOPs per sample."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_sample(model: nn.Module, in_features: int) -> int:
    """Forward FLOPs for one input row (a multiply-add counts 2), measured by torch's FlopCounterMode."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_features, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
