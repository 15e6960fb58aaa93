"""prepare(): data, network, loss, batch sources, batch size and threads for a TrainSpec —
shared by fit() and the LR finder so both train exactly the same thing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnopt.config import DEFAULT_EPOCHS, FULL_BATCH_EPOCHS, TrainSpec, table_settings
from nnopt.data import Data, load_data
from nnopt.models import ArchSpec, build_model, flops_per_sample
from nnopt.optim import OPTIMIZERS
from nnopt.train._batches import LoaderSource, TensorSource, make_source
from nnopt.train._setup import make_loss, resolve_batch_size, resolve_device
from nnopt.train._threads import choose_threads


@dataclass
class Prepared:
    data: Data
    arch: ArchSpec | None  # None for a user nn.Module
    net: nn.Module
    loss_fn: Any
    sources: dict[str, TensorSource | LoaderSource]
    batch: int
    device: torch.device
    threads: int
    flops: int


def prepare(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None) -> Prepared:
    entry = OPTIMIZERS.get(spec.optimizer)
    if spec.epochs is None:  # resolved here, where the optimizer is known, so config.json records the count
        spec.epochs = FULL_BATCH_EPOCHS if entry.full_batch else DEFAULT_EPOCHS
    data = load_data(spec.data, target=spec.target, task=spec.task, val_fraction=spec.val_fraction,
                     test_fraction=spec.test_fraction, seed=spec.seed, scale=spec.scale,
                     **table_settings(vars(spec)))
    device = resolve_device(spec.device)
    batch = resolve_batch_size(spec.batch_size, entry.full_batch, spec.optimizer, len(data.train))
    arch = None if module is not None else ArchSpec.parse(spec.model if spec.model is not None else "mlp:128,64")
    torch.manual_seed(spec.seed)  # weight init
    net = module if module is not None else build_model(
        arch, in_features=data.n_features, n_outputs=data.n_outputs, input_shape=data.input_shape, task=data.task)
    flops = flops_per_sample(net, data.n_features)
    threads = spec.threads or (choose_threads(flops, batch) if device.type == "cpu" else torch.get_num_threads())
    net.to(device)
    loss_fn = make_loss(loss, data.task, data.n_outputs)
    sources = {s: make_source(data, s, device, flatten=module is None) for s in ("train", "val", "test")}
    return Prepared(data, arch, net, loss_fn, sources, batch, device, threads, flops)


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """Use `threads` intra-op threads inside the block, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
