"""How many rows one forward pass scores: sized by the network's activations, not a fixed row count.

A row of a tiny MLP leaves a few hundred bytes of activations, a row of a wide CNN hundreds of kilobytes: a fixed
8192-row chunk suits the first and holds gigabytes for the second. scoring_chunk() runs the
network once on two rows, adds up the bytes every leaf module returns (and the input's), and picks the rows whose
activations come to about CHUNK_BYTES (layers written as functions in a forward are not counted: an estimate).
The count depends only on the network's shapes, so training, predict, evaluate and importance, which all call it,
cut the same rows into the same chunks and get the same outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

CHUNK_BYTES = 16 * 2**20  # activations of one scoring chunk
MIN_ROWS, MAX_ROWS = 64, 8192
PROBE_ROWS = 2


def scoring_chunk(net: nn.Module, sample_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """Rows per forward pass when `net` scores samples of `sample_shape`: CHUNK_BYTES of activations (the input and
    what every leaf module returns, measured on PROBE_ROWS rows; the output alone for a network without leaf modules,
    such as a loaded torch.export program), clamped to MIN_ROWS..MAX_ROWS. The probe runs in eval mode without
    autograd and leaves every module's mode as it was."""
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    probe = torch.zeros((PROBE_ROWS, *sample_shape), dtype=dtype, device=device)
    total = [0]

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        for tensor in (output if isinstance(output, (tuple, list)) else (output,)):
            if isinstance(tensor, torch.Tensor):
                total[0] += tensor.numel() * tensor.element_size()

    modes = [(m, m.training) for m in net.modules()]
    hooks = [m.register_forward_hook(count) for m in net.modules() if next(m.children(), None) is None]
    try:
        net.eval()  # batch normalization's running statistics stay as they are
        with torch.inference_mode():
            output = net(probe)
        if total[0] == 0:  # no leaf module ran (a graph of functions): the output is what is known
            count(net, None, output)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
    per_row = (total[0] + probe.numel() * probe.element_size()) / PROBE_ROWS
    return int(min(MAX_ROWS, max(MIN_ROWS, CHUNK_BYTES // max(per_row, 1))))
