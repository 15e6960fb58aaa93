"""An epoch's training metrics from the batches it trained on (train_metrics="running": no second pass).

Each step's outputs (detached) are folded into sums that stay on the device — a confusion matrix for
classification, per-output sums of the targets, their squares and the errors for regression — and read once at
the epoch's end (one host transfer; in a group of processes one all-reduce first, so every rank reads the sums of
all ranks' rows). The values are those of the model as it moved through the epoch (dropout on), like train_loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nnopt.train._metrics import confusion_scores
from nnopt.train._parallel import Parallel

FOLD_EVERY = 64  # classification: steps whose cells are counted together (a few KB each, kept on the device)


class RunningMetrics:
    def __init__(self, task: str, n_outputs: int, n_classes: int | None, names: Sequence[str],
                 target_scale: tuple[Sequence[float], Sequence[float]] | None, device: torch.device):
        self.task, self.names, self.device = task, set(names), device
        self.binary = task == "classification" and n_outputs == 1
        self.k = (2 if self.binary else int(n_classes or n_outputs)) if task == "classification" else n_outputs
        self.scale = None if target_scale is None else tuple(
            torch.tensor(v, dtype=torch.float64, device=device) for v in target_scale)
        self.reset()

    def reset(self) -> None:
        if self.task == "classification":  # the confusion matrix, and the steps' cells not yet counted in it
            self.sums = torch.zeros(self.k * self.k, dtype=torch.long, device=self.device)
            self.cells: list[torch.Tensor] = []
        else:  # rows; sum y, sum y^2, sum e^2, sum |e| per output
            self.sums = torch.zeros(5, self.k, dtype=torch.float64, device=self.device)

    def add(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if self.task == "classification":  # two small ops a step: the predicted classes, then their cells
            if self.binary:
                cells = torch.add((outputs.reshape(-1) >= 0).long(), targets.reshape(-1).long(), alpha=2)
            else:
                cells = torch.add(outputs.argmax(dim=1), targets.reshape(-1), alpha=self.k)  # target * k + class
            self.cells.append(cells)
            if len(self.cells) == FOLD_EVERY:
                self._fold()
            return
        out, y = outputs.reshape(len(outputs), -1).double(), targets.reshape(len(targets), -1).double()
        if self.scale is not None:  # in the target's own units, as the held-out splits report them
            out, y = out * self.scale[1] + self.scale[0], y * self.scale[1] + self.scale[0]
        error = out - y
        self.sums += torch.stack([torch.full_like(y[0], len(y)), y.sum(0), (y * y).sum(0), (error * error).sum(0),
                                  error.abs().sum(0)])

    def _fold(self) -> None:
        """Count the kept cells into the confusion matrix: one scatter for many steps (bincount would sync to size
        its output)."""
        if self.cells:
            cells = torch.cat(self.cells)
            self.sums.scatter_add_(0, cells, torch.ones_like(cells))
            self.cells = []

    def values(self, parallel: Parallel | None = None) -> dict[str, float | None]:
        """The epoch's metrics besides the loss; with `parallel`, over the rows of every rank (the same values on
        each). Counts travel as float64 sums, exact below 2**53."""
        if self.task == "classification":
            self._fold()
        sums = self.sums
        if parallel is not None:
            sums = (parallel.all_mean(sums.double()) * parallel.world).to(sums.device)
            sums = sums.round().long() if self.sums.dtype == torch.long else sums
        sums = sums.cpu().numpy()
        if self.task == "classification":
            cm = sums.reshape(self.k, self.k)
            out: dict[str, float | None] = {}
            if "accuracy" in self.names:
                out["accuracy"] = float(np.trace(cm) / max(1, cm.sum()))
            if self.names & {"precision", "recall", "f1"}:
                out.update({k: v for k, v in confusion_scores(cm).items() if k in self.names})
            return out
        n, total, squares, sse, sae = sums
        rows = n[0]
        if rows == 0:
            return {}
        out = {}
        if "mse" in self.names:
            out["mse"] = float(np.mean(sse / rows))
        if "mae" in self.names:
            out["mae"] = float(np.mean(sae / rows))
        if "r2" in self.names:  # sklearn's r2_score: a constant target scores 1 if fitted exactly, else 0
            sst = squares - total * total / rows
            r2 = np.where(sst > 0, 1 - sse / np.where(sst > 0, sst, 1), np.where(sse == 0, 1.0, 0.0))
            out["r2"] = float(np.mean(r2)) if rows > 1 else None
        return out
