"""Scoring the model on whole splits, at every epoch's end and once at the run's end: outputs, loss, the divergence
check, the built-in metrics and the user's. In a group with the splits in memory every rank scores a share of the
rows; otherwise rank 0 scores them all and hands the result to the others.

The run's end takes a split's scores from the last epoch when the weights are still the ones it scored (no best
epoch restored, no callback changed them): the same weights score the same (a streamed validation split is not read
a second time for nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnopt.data import Data
from nnopt.errors import DivergedError
from nnopt.train._batches import TensorSource
from nnopt.train._metrics import compute_metrics
from nnopt.train._monitor import Scoring, custom_values
from nnopt.train._parallel import Parallel


def evaluate_splits(net: nn.Module, loss_fn: Any, data: Data, sources: dict[str, Any], scores: Scoring,
                    splits: tuple[str, ...], at: tuple[int, int],
                    parallel: Parallel | None = None) -> dict[str, dict[str, float | None]]:
    """The splits' metrics, after step at[1] of epoch at[0] (the step a DivergedError names)."""
    if parallel is not None:
        parallel.sync_model()  # every rank holds the same model: what is scored, saved and trained on

    def score(split: str, group: Parallel | None) -> dict[str, float | None]:
        custom = scores.custom if split != "train" else None
        return evaluate(net, loss_fn, data, sources[split], scores.names[split], at, group, custom)

    if parallel is not None and all(isinstance(sources[split], TensorSource) for split in splits):
        return {split: score(split, parallel) for split in splits}
    return on_main(parallel, lambda: {split: score(split, None) for split in splits})


def weights_stamp(net: nn.Module) -> list[tuple[str, int, int]]:
    """What tells whether the weights changed: each parameter and buffer's name, storage and count of in-place
    writes (torch's version counter: an optimizer step, load_state_dict, pruning's masks all change one of them)."""
    return [(name, _address(t), t._version) for name, t in net.state_dict(keep_vars=True).items()]


def _address(tensor: torch.Tensor) -> int:
    try:
        return tensor.data_ptr()
    except RuntimeError:  # no storage of its own (a sparse tensor): the tensor itself
        return id(tensor)


def final_scores(evaluate: Callable[[tuple[str, ...], tuple[int, int]], dict[str, Any]], splits: tuple[str, ...],
                 at: tuple[int, int], net: nn.Module, last: tuple[Any, dict[str, Any]] | None,
                 parallel: Parallel | None = None) -> dict[str, dict[str, float | None]]:
    """The run's final scores of `splits`: those the last epoch scored (last: its weights_stamp and scores) when
    the weights are unchanged since (rank 0 decides for a group, so every rank scores the same splits), the others
    scored now by `evaluate`."""
    same = last is not None and on_main(parallel, lambda: weights_stamp(net) == last[0])
    kept = {split: last[1][split] for split in splits if split in last[1]} if same else {}
    scored = evaluate(tuple(split for split in splits if split not in kept), at)
    return {split: kept[split] if split in kept else scored[split] for split in splits}


def on_main(parallel: Parallel | None, fn: Any, *args: Any) -> Any:
    """fn(*args); in a parallel run rank 0 computes it and every rank gets rank 0's answer (or its error)."""
    return fn(*args) if parallel is None else parallel.from_main(lambda: fn(*args))


@torch.inference_mode()
def evaluate(net: nn.Module, loss_fn: Any, data: Data, source: Any, names: Any, at: tuple[int, int],
             parallel: Parallel | None = None, custom: dict[str, Any] | None = None) -> dict[str, float | None]:
    """One split's metrics (names: the built-in ones; custom: the user's callables)."""
    if len(source) == 0:
        return {}
    outputs, Y = source.outputs(net) if parallel is None else source.outputs(net, parallel)
    loss = float(loss_fn(outputs, Y))
    if not bool(torch.isfinite(outputs).all()):  # the last steps' loss was finite, the weights they left are not
        raise DivergedError(at[0], at[1], loss if not math.isfinite(loss) else math.inf)
    values = compute_metrics(data.task, outputs, Y, loss, names, data.target_scale)
    if custom:  # the user's metrics (held-out splits only)
        values.update(custom_values(custom, outputs.detach().cpu(), Y.detach().cpu()))
    return values
