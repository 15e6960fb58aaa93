"""Which way a training run goes: one process, N processes on this machine, a torchrun rank, or Hogwild."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from nnopt.config import TrainSpec
from nnopt.errors import NnoptError, UsageError, param
from nnopt.train import Callback, FitResult, fit_spec
from nnopt.train import run as run_single
from nnopt.distributed._ddp import env_world_size, first_line, join_env
from nnopt.distributed._launch import launch, test_hooks


def wanted(spec: TrainSpec) -> bool:
    """True when `spec` needs more than nnopt.train: several processes, hogwild, or a torchrun rank."""
    return spec.nproc > 1 or spec.strategy != "ddp" or env_world_size() > 1


def fit(model: Any, data: Any, *, loss: Any = None, metrics: list[str] | None = None,
        callbacks: list[Callback] | None = None, resume: bool = False, **options: Any) -> FitResult:
    """nnopt.train.fit with nproc / strategy / max_restarts: `fit("mlp:64", "digits", nproc=2)`."""
    spec, module = fit_spec(model, data, **options)
    return run(spec, module=module, loss=loss, metrics=metrics, callbacks=callbacks, resume=resume)


def run(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None, metrics: list[str] | None = None,
        callbacks: list[Callback] | None = None, resume: bool = False) -> FitResult:
    """Train `spec` as its nproc / strategy and the environment (torchrun's WORLD_SIZE) say."""
    spec.validate()
    under_torchrun = env_world_size() > 1
    if spec.strategy == "hogwild":
        if under_torchrun:
            raise UsageError("hogwild shares memory between processes of one machine; start it with "
                             f"{param('nproc', metavar='N')}, not under torchrun")
        if resume:
            raise UsageError(f"{param('strategy', 'hogwild')} does not resume: it writes no checkpoint, as each "
                             f"worker's optimizer state is its own; train again without {param('resume', True)}, "
                             f"or use {param('strategy', 'ddp')} for a run that resumes")
        return _hogwild()(spec, spec.nproc, module=module, loss=loss, callbacks=callbacks, metrics=metrics)
    options = dict(module=module, loss=loss, metrics=metrics, callbacks=callbacks, resume=resume)
    if under_torchrun:
        if spec.nproc > 1:
            raise UsageError(f"{param('nproc')} is for launching on this machine; under torchrun use "
                             "--nproc-per-node")
        return run_rank(spec, **options)
    if spec.nproc == 1:
        return run_single(spec, **options)
    return launch(spec, **options)


def run_rank(spec: TrainSpec, *, callbacks: list[Callback] | None = None, resume: bool = False,
             **options: Any) -> FitResult:
    """This process is one rank of a group torchrun started: join it, train, leave it.

    After a torchrun restart the run resumes from rank 0's checkpoint."""
    parallel = join_env(spec.device)
    spec = replace(spec, device=str(parallel.device))  # "auto" resolved: data, net and targets agree
    restarted = parallel.from_main(lambda: parallel.restarted)  # rank 0 knows (see _ddp._fresh_store)
    if restarted and not resume and spec.out:
        resume = parallel.from_main(lambda: (Path(spec.out) / "checkpoint.pt").is_file())
    mine = (list(callbacks or []) if parallel.is_main else []) + test_hooks(parallel.rank, int(restarted))
    try:
        result = run_single(spec, callbacks=mine, resume=resume, parallel=parallel, **options)
    except BaseException as exc:  # this process exits; torchrun stops the other ranks (and may restart)
        parallel.close(exc)
        if isinstance(exc, RuntimeError) and (isinstance(exc, dist.DistError) or "gloo" in str(exc)
                                              or "NCCL" in str(exc)):
            raise NnoptError(f"rank {parallel.rank} lost contact with the group ({first_line(exc)}); another "
                             "rank probably failed first: see its output") from exc
        raise
    parallel.close()
    return result


def _hogwild() -> Any:
    try:
        from nnopt.distributed._hogwild import train_hogwild
    except ModuleNotFoundError as exc:
        if exc.name != "nnopt.distributed._hogwild":
            raise
        raise UsageError(f"hogwild is not available in this installation; use {param('strategy', 'ddp')}") from None
    return train_hogwild
