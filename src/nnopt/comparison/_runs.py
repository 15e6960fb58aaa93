"""One training run of a comparison, and running many of them over worker processes.

Every run uses one thread: a comparison's runs are independent, so processes, not threads, use the cores.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nnopt.errors import DivergedError
from nnopt.train import Callback, fit


@dataclass(frozen=True)
class Job:
    optimizer: str
    lr: float | None
    seed: int
    data: Any
    model: Any
    epochs: int
    batch_size: Any
    options: dict = field(default_factory=dict)


class _Recorder(Callback):
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.info: dict = {}

    def on_fit_start(self, info: dict) -> None:
        self.info = info

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.rows.append(dict(logs))


def run_job(job: Job) -> dict[str, Any]:
    """Train once; a diverged run is a row with status "diverged" (and its history so far), not an error."""
    recorder = _Recorder()
    started = time.perf_counter()
    row: dict[str, Any] = {"optimizer": job.optimizer, "seed": job.seed, "lr": job.lr}
    try:
        result = fit(job.model, job.data, optimizer=job.optimizer, lr=job.lr, epochs=job.epochs,
                     batch_size=job.batch_size, seed=job.seed, threads=1, callbacks=[recorder], **job.options)
    except DivergedError as exc:
        wall = time.perf_counter() - started
        steps = recorder.info.get("steps_per_epoch", 0) * len(recorder.rows)
        return {**row, "lr": recorder.info.get("lr", job.lr), "status": "diverged", "error": str(exc), "final": {},
                "history": recorder.rows, "epochs": len(recorder.rows), "wall_s": wall,
                "steps_per_s": steps / wall if wall else None}
    final = {f"{split}_{k}": v for split, values in result.metrics.items() for k, v in values.items()}
    steps = recorder.info["steps_per_epoch"] * result.epochs
    return {**row, "lr": result.config["lr"], "status": "ok", "error": None, "final": final,
            "history": result.history, "epochs": result.epochs, "wall_s": result.wall_s,
            "steps_per_s": steps / result.wall_s if result.wall_s else None,
            "batch_size": result.config["batch_size"], "n_params": result.config["n_params"]}


def run_jobs(jobs: list[Job], workers: int) -> list[dict[str, Any]]:
    """Run jobs in order (workers=1) or over `workers` spawned processes; results come back in job order."""
    if workers == 1 or len(jobs) == 1:
        return [run_job(job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's thread pools
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                             initializer=_single_thread) as pool:
        return list(pool.map(run_job, jobs))


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)
