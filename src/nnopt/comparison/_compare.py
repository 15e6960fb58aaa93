"""compare(): the same network trained with several optimizers, each at its own learning rate, over K seeds.

Fair by construction: one data split for everyone (seed 0), the same seeds (weight init and batch order)
for every optimizer, and a learning rate per optimizer — given (`adam@3e-4`), suggested by the LR range
test (`lr="auto"`), the best validation score of a small grid (`lr_grid=[...]`), or the table's default.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from nnopt.config import TABLE_KEYS, TrainSpec
from nnopt.comparison._aggregate import summarize, time_to_target
from nnopt.comparison._runs import Job, run_jobs
from nnopt.comparison._spec import (SEED_OPTIMIZERS, check_seeds, check_workers, parse_lr_grid, parse_optimizers,
                                 parse_target)
from nnopt.data import load_data
from nnopt.errors import UsageError, check_keywords, keyword_names, param, require_int
from nnopt.fileio import atomic_write_json, atomic_write_text, make_run_dir
from nnopt.train import find_lr, metric_names


@dataclass
class CompareResult:
    optimizers: list[dict[str, Any]]  # one ranked summary row per optimizer
    runs: list[dict[str, Any]]  # one row per optimizer x seed, with its history
    primary_metric: str
    higher_is_better: bool
    config: dict[str, Any] = field(default_factory=dict)
    lr_find: dict[str, Any] | None = None
    lr_grid: dict[str, dict[str, float | None]] | None = None
    run_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"primary_metric": self.primary_metric, "higher_is_better": self.higher_is_better,
                "optimizers": self.optimizers, "runs": self.runs, "lr_grid": self.lr_grid}


# fit() settings that compare() sets for every run itself, and what to give instead
_SET_PER_RUN = {
    "optimizer": lambda: f"compare() trains each optimizer of {param('optimizers')} (a list, e.g. ['adam', 'sgd'])",
    "seed": lambda: f"compare() trains every optimizer once per seed of {param('seeds')} (a count, or a list)",
    "threads": lambda: f"compare() trains each run on one thread; {param('workers')} runs several at once",
    "callbacks": lambda: "compare() records every run itself; give callbacks to nnopt.fit",
    "resume": lambda: "compare() continues nothing; run it again",
}


def _check_options(options: dict[str, Any]) -> None:
    """Every option a fit() setting compare() passes on, named as the caller spelled it."""
    for key in options:
        if key in _SET_PER_RUN:
            raise UsageError(f"{param(key)} is not compare()'s: {_SET_PER_RUN[key]()}")
    own = keyword_names(compare, skip=("data",))
    shared = [f.name for f in fields(TrainSpec) if f.name not in ("data", *own, *_SET_PER_RUN)]
    check_keywords("compare", options, [*own, *shared, "loss", "metrics"])


def compare(data: Any, model: Any = "mlp:128,64", *, optimizers: Any = SEED_OPTIMIZERS, lr: Any = None,
            lr_grid: Any = None, epochs: int = 20, seeds: int = 3, batch_size: Any = None,
            target_metric: str | None = None, workers: int = 1, out: str | Path | None = None,
            **options: Any) -> CompareResult:
    """Train `model` on `data` with each optimizer and K seeds; rank them by the test metric.

    lr: None (each optimizer's default), "auto" (LR range test per optimizer) or a number for all.
    options: other fit() settings shared by every run (target, task, schedule, scale, ...).
    """
    _check_options(options)
    choices = parse_optimizers(optimizers)
    seed_list = check_seeds(seeds)
    workers = check_workers(workers)
    grid = parse_lr_grid(lr_grid)
    if lr == "auto" and grid is not None:
        raise UsageError(f"use {param('lr', 'auto')} or {param('lr_grid')}, not both")
    if lr not in (None, "auto") and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise UsageError(f"{param('lr')} must be 'auto' or a number > 0; got {lr!r}")
    require_int("epochs", epochs, 1)
    split_keys = ("target", "task", "val_fraction", "test_fraction", "scale", *TABLE_KEYS)
    split = {k: options.pop(k) for k in split_keys if k in options}
    dataset = load_data(data, **split, seed=0)
    target = parse_target(target_metric, dataset.task)
    primary = "accuracy" if dataset.task == "classification" else "r2"
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        make_run_dir(run_dir)

    def job(name: str, rate: float | None, seed: int) -> Job:
        return Job(name, rate, seed, dataset, model, epochs, batch_size, dict(options))

    lrs = {c.name: c.lr for c in choices}
    sources = {c.name: "given" if c.lr is not None else "default" for c in choices}
    lr_find_data, grid_scores = None, None
    pending = [c.name for c in choices if c.lr is None]
    if isinstance(lr, (int, float)) and lr not in (None, "auto"):
        lrs.update({name: float(lr) for name in pending})
        sources.update({name: "given" for name in pending})
    elif lr == "auto":
        lr_find_data = {}
        for name in pending:
            # one thread, as every run of the comparison: torch's default (a thread per core) spun against the
            # other jobs of a busy 2-core machine, 20x slower a step (an image folder's screen: 32 s instead of 2)
            found = find_lr(model, dataset, optimizer=name, seed=seed_list[0], batch_size=batch_size, threads=1,
                            **{k: v for k, v in options.items() if k in ("optimizer_params", "device")})
            lr_find_data[name] = found.to_dict()
            # no descent: the finder gives the optimizer's default lr, and the table says so
            lrs[name], sources[name] = found.suggested, "auto" if found.descent else "default"
    elif grid is not None:
        trials = [job(name, rate, seed_list[0]) for name in pending for rate in grid]
        grid_scores = {name: {} for name in pending}
        for trial, run in zip(trials, run_jobs(trials, workers)):
            grid_scores[trial.optimizer][f"{trial.lr:g}"] = run["final"].get(f"val_{primary}")
        for name in pending:
            scored = {rate: grid_scores[name][f"{rate:g}"] for rate in grid}
            valid = {rate: s for rate, s in scored.items() if s is not None}
            lrs[name] = max(valid, key=valid.get) if valid else grid[0]
            sources[name] = "grid"

    jobs = [job(c.name, lrs[c.name], seed) for c in choices for seed in seed_list]
    runs = run_jobs(jobs, workers)
    for run in runs:
        run["epochs_to_target"], run["time_to_target_s"] = time_to_target(run["history"], target)
    rows = summarize(runs, [c.name for c in choices], sources, f"test_{primary}", True, target)
    config = {
        "command": "compare", "data": data if isinstance(data, (str, os.PathLike)) else f"<{type(data).__name__}>",
        # the split settings, so the best run can be trained again on the same rows (nnopt predict / evaluate)
        **{k: split[k] for k in ("target", "val_fraction", "test_fraction", "scale", *TABLE_KEYS) if k in split},
        "model": str(model), "optimizers": [c.name for c in choices],
        "lr_mode": "auto" if lr == "auto" else "grid" if grid else "given" if lr is not None else "default",
        "lr_grid": grid, "epochs": epochs, "seeds": seed_list, "batch_size": batch_size,
        "target_metric": target.to_dict() if target else None, "workers": workers, "task": dataset.task,
        "primary_metric": primary, "metrics": list(metric_names(dataset.task)), "data_info": dataset.describe(),
        "n_params": next((r.get("n_params") for r in runs if r.get("n_params")), None), "options": options,
        "environment": _environment(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result = CompareResult(rows, runs, f"test_{primary}", True, config, lr_find_data, grid_scores, run_dir)
    if run_dir is not None:
        _write(run_dir, result)
    return result


def _environment() -> dict[str, Any]:
    from nnopt import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "nnopt": __version__,
            "platform": f"{platform.system()} {platform.machine()}", "cpu_count": os.cpu_count(),
            "threads_per_run": 1, "argv": " ".join(sys.argv[1:]) if sys.argv else ""}


def _write(run_dir: Path, result: CompareResult) -> None:
    atomic_write_json(run_dir / "config.json", result.config)
    atomic_write_json(run_dir / "results.json", result.to_dict())
    atomic_write_text(run_dir / "results.csv", results_csv(result))
    if result.lr_find is not None:
        atomic_write_json(run_dir / "lr_find.json", result.lr_find)


def results_csv(result: CompareResult) -> str:
    """One row per optimizer (seed "all": means, with _std columns), then one row per optimizer and seed."""
    metrics = sorted({k for run in result.runs for k in run["final"]})
    head = ["rank", "optimizer", "seed", "lr", "lr_source", "status", "diverged", "epochs", "epochs_to_target",
            "time_to_target_s", "steps_per_s", "wall_s"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head + [c for m in metrics for c in (m, f"{m}_std")])
    for row in result.optimizers:
        writer.writerow([row["rank"], row["optimizer"], "all", row["lr"], row["lr_source"],
                         "diverged" if row["diverged"] == row["seeds"] else "ok", row["diverged"], "",
                         _fmt(row["epochs_to_target_mean"]), _fmt(row["time_to_target_s_mean"]),
                         _fmt(row["steps_per_s_mean"]), _fmt(row["wall_s_mean"])]
                        + [_fmt(row.get(f"{m}_{s}")) for m in metrics for s in ("mean", "std")])
    ranks = {row["optimizer"]: row["rank"] for row in result.optimizers}
    for run in result.runs:
        writer.writerow([ranks[run["optimizer"]], run["optimizer"], run["seed"], run["lr"], "", run["status"],
                         int(run["status"] == "diverged"), run["epochs"], _fmt(run["epochs_to_target"]),
                         _fmt(run["time_to_target_s"]), _fmt(run["steps_per_s"]), _fmt(run["wall_s"])]
                        + [v for m in metrics for v in (_fmt(run["final"].get(m)), "")])
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else value
