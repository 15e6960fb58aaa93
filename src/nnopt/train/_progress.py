"""The training progress bar: one rich bar per epoch (its number, rows/s, ETA) and the last epoch's metrics.

Drawn on stderr when it is a terminal (or when forced); nothing is written otherwise. The bar follows the steps
through on_step_end without reading the loss (no host sync): each step only compares the clock with the time of
the last redraw, and the bar is redrawn at most REFRESH_S apart, by this callback (no refresh thread, so a run
that raises leaves no thread drawing behind it).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from nnopt.train._callbacks import Callback

REFRESH_S = 0.1  # at most 10 redraws a second
SHOWN = ("train_loss", "val_loss", "val_accuracy", "val_r2")  # the metrics shown beside the bar and after it


def wants_bar(setting: bool | str) -> bool:
    """Whether TrainSpec.progress asks for a bar in this process: True, or "auto" with stderr a terminal."""
    return setting is not False and (setting != "auto" or sys.stderr.isatty())


def progress_bars(setting: bool | str, given: list[Callback] | tuple[Callback, ...] = ()) -> list[Callback]:
    """The loop's bar for TrainSpec.progress: True, False or "auto" (drawn when stderr is a terminal); none when
    the callbacks `given` hold a ProgressBar already (one drawing elsewhere: a console of the caller's, or the
    terminal of the process that started this one), so a run never draws two."""
    if not wants_bar(setting) or any(isinstance(cb, ProgressBar) for cb in given):
        return []
    return [ProgressBar(enabled=True)]


class ProgressBar(Callback):
    """An epoch progress bar with rows/s and the ETA, then the last epoch's metrics; rich, on stderr.

    The rows are the whole group's on several processes: DDP's rank 0 walks every global batch, and a Hogwild
    main process reads every worker's count (the loop's info gives group_rows and rows_done).

    enabled: None (auto) draws when stderr is a terminal; True draws on a terminal console even when it is not one;
    False draws nothing. console: a rich Console to draw on instead (tests pass one writing to a buffer)."""

    def __init__(self, enabled: bool | None = None, console: Any = None):
        self.enabled = (console is not None or sys.stderr.isatty()) if enabled is None else bool(enabled)
        self.console = console
        self.wants_steps = self.enabled  # the loop calls on_step_end only when there is a bar to move
        self._progress: Any = None
        self._task: Any = None
        self._rows = self._batch = self._epochs = 0
        self._rows_done: Any = None
        self._began = self._drawn = 0.0
        self._status = ""

    def on_train_start(self, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = self.console or Console(stderr=True, force_terminal=True)
        self._epochs = int(info["epochs"])
        self._batch = int(info["batch_size"])
        self._rows = int(info.get("group_rows") or info.get("rows") or info["steps_per_epoch"] * self._batch)
        self._rows_done = info.get("rows_done")  # the group's rows so far in the epoch, or None: step x batch
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), console=console, auto_refresh=False, transient=True)
        self._task = self._progress.add_task("train", total=self._rows, epoch=info["start_epoch"] + 1,
                                             epochs=self._epochs, rate="", status="")
        self._progress.start()

    def on_epoch_start(self, epoch: int) -> None:
        if self._progress is None:
            return
        self._progress.reset(self._task, total=self._rows, epoch=epoch, epochs=self._epochs, rate="",
                             status=self._status)  # reset replaces every field
        self._began = self._drawn = time.perf_counter()
        self._progress.refresh()

    def on_step_end(self, epoch: int, step: int, loss: Any) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._drawn < REFRESH_S:
            return
        self._drawn = now
        done = min(self._rows_done(step) if self._rows_done is not None else step * self._batch, self._rows)
        self._progress.update(self._task, completed=done, rate=f"{done / max(now - self._began, 1e-9):,.0f} rows/s")
        self._progress.refresh()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if self._progress is None:
            return
        seconds = time.perf_counter() - self._began
        self._status = "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k in SHOWN and isinstance(v, float))
        self._progress.update(self._task, completed=self._rows, rate=f"{self._rows / max(seconds, 1e-9):,.0f} rows/s",
                              status=self._status)
        self._progress.refresh()
        self._last = f"epoch {epoch}/{self._epochs}  {self._status}".rstrip()

    def on_train_end(self, result: Any) -> None:
        if self._progress is None:
            return
        console = self._progress.console
        self.close()
        if getattr(self, "_last", None):
            console.print(self._last, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
