"""Callbacks: hooks into the training loop at its start, each epoch, each step and its end. The loop adds its
loggers and, with TrainSpec.progress, the progress bar (train/_progress.py) after the caller's callbacks."""

from __future__ import annotations

from typing import Any

import torch


class Callback:
    """Hooks into the training loop; override any of them. The loop calls them in this order:

        on_train_start(info)
        for each epoch:
            on_epoch_start(epoch)
            on_step_end(epoch, step, loss)     # after every optimizer step
            on_epoch_end(epoch, logs)          # after evaluation; may stop training
        on_train_end(result)

    A hook that raises (e.g. optuna.TrialPruned) aborts the run. In a run on several processes the callbacks run
    in the process that writes the run directory (rank 0, or Hogwild's main process): `on_step_end` then sees that
    process's steps only. `on_step_end` costs nothing when no callback overrides it: the loop calls it only for
    the callbacks that do. `on_fit_start` / `on_fit_end` are the older names of `on_train_start` /
    `on_train_end` and are still called by them."""

    def on_train_start(self, info: dict[str, Any]) -> None:
        """info: epochs, start_epoch, steps_per_epoch, rows (trained per epoch), batch_size, lr, n_params, device,
        threads, world_size."""
        self.on_fit_start(info)

    def on_epoch_start(self, epoch: int) -> None:
        """epoch is 1-based; called before its first batch is drawn."""

    def on_step_end(self, epoch: int, step: int, loss: torch.Tensor) -> None:
        """step is 1-based within the epoch; loss is the step's loss as a 0-dim tensor on the training device
        (this process's share in DDP). Reading it (`float(loss)`) waits for the device: do it only when needed."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        """logs is the metrics.jsonl row for this epoch. Return True to stop training after this epoch."""
        return None

    def on_train_end(self, result: Any) -> None:
        """result: the FitResult."""
        self.on_fit_end(result)

    def on_fit_start(self, info: dict[str, Any]) -> None:
        """Older name of on_train_start."""

    def on_fit_end(self, result: Any) -> None:
        """Older name of on_train_end."""


def step_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """The callbacks that override on_step_end, less those switched off for the run (a ProgressBar with nothing to
    draw sets wants_steps False): the only ones the loop calls after a step."""
    return [cb for cb in callbacks
            if type(cb).on_step_end is not Callback.on_step_end and getattr(cb, "wants_steps", True)]
