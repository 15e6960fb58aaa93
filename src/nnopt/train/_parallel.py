"""The contract between fit()'s loop and a data-parallel strategy.

train/ knows nothing about processes (it is layer 2); nnopt.distributed (layer 3) implements this
protocol with torch.distributed and DistributedDataParallel (DDP, local SGD) and with shared memory and pipes
(Hogwild), and hands an instance to the loop. With no strategy (parallel=None) the loop is the plain
single-process loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

T = TypeVar("T")


class Parallel(Protocol):
    """One process of a synchronous data-parallel group, as run() uses it."""

    rank: int  # 0 .. world - 1
    world: int  # processes in the group
    is_main: bool  # rank 0: writes the run directory
    max_threads: int  # intra-op threads this process may use (the machine's cores shared by its processes)
    resumable: bool  # rank 0 writes checkpoint.pt (Hogwild does not: its workers' optimizer states are their own)
    settings: dict[str, Any]  # what config.json records about the group besides world_size
    # the training rows every process together has done so far in the epoch, given this process's step (what the
    # progress bar shows); None where this process's step x batch is that already (DDP: rank 0 walks every batch)
    rows_done: Callable[[int], int] | None
    # the rows of the last global batch shard() took, (lo, hi, n_global): the augmentation draws its random values
    # for the whole global batch, as one process does, and applies rows lo..hi of them (DDP); Hogwild (0, n, n)
    span: tuple[int, int, int]

    def epoch_share(self, n_rows: int, batch: int) -> tuple[int, int]:
        """The rows this process walks in an epoch and its batch size: DDP every global batch (n_rows, batch);
        Hogwild its shard, the batch capped at the shard."""

    def batches(self, source: Any, batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor,
                                                                                          torch.Tensor]]:
        """The batches this process draws in an epoch (shard() then takes its part of each)."""

    def wrap(self, net: nn.Module, local_sgd: int | None = None) -> nn.Module:
        """The module to train: DistributedDataParallel(net), whose backward averages gradients over ranks; with
        local_sgd=K, net itself, whose parameters after_step() averages every K steps."""

    def after_step(self) -> None:
        """Called after every optimizer step (local SGD averages the parameters here every K steps)."""

    def shard(self, xb: torch.Tensor, yb: torch.Tensor, n_global: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's rows of a global batch of n_global rows, and the weight of its mean loss
        (n_local * world / n_global), so that the averaged gradient is the global batch's gradient."""

    def group_losses(self, losses: torch.Tensor) -> torch.Tensor:
        """The step losses the NaN checks and the train loss read: DDP the mean over ranks of each step's weighted
        share (the global batch's loss, equal on every rank); Hogwild the worker's own steps."""

    def epoch_summary(self, losses: torch.Tensor, seconds: float) -> dict[str, float]:
        """Extra figures of the epoch for its metrics row, the same on every rank: none in DDP; Hogwild the train
        loss over every worker's steps (train_loss), and rows, steps and train_s (the slowest worker's time)."""

    def all_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `tensor` over ranks (every rank passes the same shape)."""

    def gather_rows(self, rows: torch.Tensor, n_total: int) -> torch.Tensor:
        """Every rank's block of rows, in rank order, on every rank: rank r holds rows n_total * r // world up
        to n_total * (r + 1) // world."""

    def sync_model(self) -> None:
        """Make every rank hold the same model before it is evaluated or saved: parameters averaged (local SGD;
        DDP keeps them equal), then rank 0's buffers (BatchNorm's running statistics) everywhere."""

    def from_main(self, fn: Callable[[], T]) -> T:
        """Call fn on rank 0 and give its result to every rank; an error there is raised on every rank."""
