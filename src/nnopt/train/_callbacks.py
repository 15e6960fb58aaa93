"""Callbacks: small hooks into fit(). The library itself logs nothing; the CLI adds ProgressBar."""

from __future__ import annotations

import sys
from typing import Any


class Callback:
    """Override any of these. `on_epoch_end` may return True to stop training after this epoch,
    or raise (e.g. optuna.TrialPruned) to abort it."""

    def on_fit_start(self, info: dict[str, Any]) -> None:
        """info: epochs, start_epoch, steps_per_epoch, batch_size, lr, n_params, device, threads."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        """epoch is 1-based; logs is the metrics.jsonl row for this epoch."""
        return None

    def on_fit_end(self, result: Any) -> None:
        """result: the FitResult."""


class ProgressBar(Callback):
    """An epoch progress bar with the latest losses, drawn with rich on a terminal only."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def on_fit_start(self, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=info["epochs"], completed=info["start_epoch"], status="")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._progress is None:
            return
        shown = [f"{k}={v:.4g}" for k, v in logs.items()
                 if k in ("train_loss", "val_loss", "val_accuracy", "val_r2") and isinstance(v, float)]
        self._progress.update(self._task, completed=epoch, status="  ".join(shown))

    def on_fit_end(self, result: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
