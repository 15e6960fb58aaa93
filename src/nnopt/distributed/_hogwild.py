"""Hogwild!: asynchronous lock-free data-parallel SGD on CPU (Niu et al. 2011), the way PyTorch's
mnist_hogwild example does it — the model lives in shared memory and every worker process steps it
without locks.

    result = train_hogwild(spec, nproc=4)   # -> nnopt.train.FitResult, run directory like `nnopt train`

Design:
- The main process loads the data once and builds the network exactly as `nnopt train` does for the spec
  (train.prepare: same seeding, same weights), then `net.share_memory()`. Workers start with the fork start
  method where the platform has it and CUDA is absent (the data is shared copy-on-write, nothing is pickled),
  else spawn (the tensors travel through torch.multiprocessing's shared memory).
- Each worker: one intra-op thread (spec.threads sets only the main process's, for evaluation), its own
  optimizer and schedule over the SHARED parameters, its own disjoint shard of the training rows (every worker draws the same seeded permutation per epoch and takes
  rows rank::nproc of it) and trains on it in that (random) order, so one worker sees exactly the batches
  `nnopt train` would. Each worker has its own torch RNG stream for dropout: worker 0 continues the main
  process's stream (as `nnopt train` does), worker r > 0 is seeded seed + r. No locks: updates from
  different workers may interleave, which is the point of Hogwild. Stateful optimizers (momentum
  buffers, Adam's moments, ...) keep their state per worker, in the worker: each worker's state follows its
  own gradients only. Schedule-free optimizers are refused: they keep their averaged weights in the
  parameters themselves, which workers sharing those parameters would overwrite.
- Epochs are synchronised through one pipe per worker (it doubles as the barrier): a worker reports its
  epoch (loss sum, steps, rows, lr) and blocks on its pipe; once all have reported, the main process
  evaluates the shared model on train / val with the metrics nnopt.train uses, appends the history row,
  writes metrics.jsonl, runs early stopping and the callbacks, and sends every worker "go" (with val_loss,
  for reduce-on-plateau) or "stop". Unlike a Barrier, a waiting worker also watches its parent and exits
  when the main process is gone (killed), instead of waiting forever. History rows carry the metric names of
  `nnopt train` plus rows (training rows processed, all workers), steps and train_s (the slowest worker's
  training time in the epoch).
- A worker that dies is seen at once (its process sentinel is waited on with the pipes): the others are
  terminated and NnoptError names the worker and its exit code. Workers ignore SIGINT; Ctrl-C stops the
  main process, which terminates them.
- Outputs as for `nnopt train` (config.json with "strategy": "hogwild" and "nproc", metrics.jsonl, model.pt,
  summary.json, and the --log loggers' files), without checkpoint.pt: a hogwild run does not resume.

Test hooks (environment variables read by the workers): NNOPT_TEST_HOGWILD_KILL=1 makes worker 1 exit with
code 3 at the start of epoch 1; NNOPT_TEST_HOGWILD_TRACE=DIR makes every worker save the training-row
indices of each epoch to DIR/rank<r>-epoch<e>.pt.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from torch import nn

from nnopt import errors
from nnopt.config import TrainSpec
from nnopt.data import batch_count, epoch_batches
from nnopt.errors import DivergedError, NnoptError, UsageError, param, require_int
from nnopt.fileio import atomic_write_json, atomic_write_jsonl, make_run_dir
from nnopt.models import count_params
from nnopt.optim import create_optimizer, create_schedule
from nnopt.optim._table import is_schedule_free
from nnopt.train import Callback, FitResult, update_function
from nnopt.train._batches import TensorSource
from nnopt.train._loggers import create_loggers
from nnopt.train._loop import CHECK_EVERY, _check_finite, _describe_source, _early_stop, _evaluate, _write_outputs
from nnopt.train._metrics import check_metric_names
from nnopt.train._prepare import prepare, thread_count
from nnopt.train._threads import can_fork

KILL_ENV, TRACE_ENV = "NNOPT_TEST_HOGWILD_KILL", "NNOPT_TEST_HOGWILD_TRACE"
GPU_MESSAGE = f"hogwild needs CPU shared memory; use {param('strategy', 'ddp')} on GPUs"


@dataclasses.dataclass
class _Job:
    """What every worker needs; pickled only under spawn (then X, Y and the net travel as shared memory)."""

    nproc: int
    net: nn.Module
    X: torch.Tensor
    Y: torch.Tensor
    loss_fn: Any
    optimizer: str
    lr: float | None
    optimizer_params: dict[str, Any]
    schedule: str | None
    schedule_params: dict[str, Any]
    epochs: int
    batch: int  # rows per step; >= len(X) means each worker's whole shard
    seed: int
    clip_grad: float | None
    rng_state: torch.Tensor  # the main process's torch RNG after building the model: worker 0 continues it


def train_hogwild(spec: TrainSpec, nproc: int, *, callbacks: list[Callback] | None = None,
                  start_method: str | None = None) -> FitResult:
    """Train spec's model with `nproc` Hogwild workers; return the FitResult of the shared model.

    start_method: None picks fork where safe (train._threads.can_fork), else spawn (tests pass "spawn" to cover
    that path).
    """
    require_int("nproc", nproc, 1)
    spec.validate()
    if str(spec.device).startswith("cuda"):
        raise UsageError(GPU_MESSAGE)
    if spec.device == "auto":  # shared-memory Hogwild is a CPU strategy even where a GPU exists
        spec = dataclasses.replace(spec, device="cpu")
    p = prepare(spec)
    data, net, arch, batch, loss_fn, sources = p.data, p.net, p.arch, p.batch, p.loss_fn, p.sources
    train = sources["train"]
    if not isinstance(train, TensorSource):
        raise UsageError("hogwild needs the training data in memory; pass arrays or a file, not a torch Dataset")
    n_train = len(train)
    if nproc > n_train:
        raise UsageError(f"{param('nproc', nproc)} is more than the {n_train} training rows; use "
                         f"{param('nproc')} <= {n_train}")
    _share(net)
    opt = create_optimizer(spec.optimizer, net, lr=spec.lr, **spec.optimizer_params)  # validate once, here
    if is_schedule_free(opt):
        raise UsageError(f"optimizer '{spec.optimizer}' keeps its averaged weights in the shared parameters, "
                         "which hogwild workers would overwrite; choose another optimizer")
    lr_used = float(opt.param_groups[0]["lr"])
    worker_batch = _shard_batch(n_train, nproc, 0, batch)
    steps = batch_count(_shard_size(n_train, nproc, 0), worker_batch)
    create_schedule(spec.schedule or "constant", opt, epochs=spec.epochs, steps_per_epoch=steps,
                    **spec.schedule_params)
    del opt
    method = start_method or ("fork" if can_fork() else "spawn")
    metric_list = check_metric_names(data.task, None)
    split_metrics = {"train": [m for m in metric_list if m != "roc_auc"], "val": metric_list, "test": metric_list}
    config = {"command": "train", **spec.to_dict(), "data": _describe_source(spec.data),
              "model": arch.to_string() if arch else type(net).__name__, "lr": lr_used, "batch_size": worker_batch,
              "threads": 1, "device": "cpu", "data_info": data.describe(), "n_params": count_params(net),
              "flops_per_sample": p.flops, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "strategy": "hogwild", "nproc": nproc, "start_method": method}
    run_dir = Path(spec.out) if spec.out else None
    if run_dir is not None:
        make_run_dir(run_dir)
        atomic_write_json(run_dir / "config.json", config)
    callbacks = list(callbacks or [])
    info = {"epochs": spec.epochs, "start_epoch": 0, "steps_per_epoch": steps, "batch_size": worker_batch,
            "lr": lr_used, "n_params": config["n_params"], "device": "cpu", "threads": 1, "nproc": nproc}
    job = _Job(nproc, net, train.X, train.Y, loss_fn, spec.optimizer, spec.lr, dict(spec.optimizer_params),
               spec.schedule, dict(spec.schedule_params), spec.epochs, batch, spec.seed, spec.clip_grad,
               torch.get_rng_state())
    if method != "fork":
        job.X.share_memory_()  # spawn pickles the job: shared tensors travel as handles, not copies
        job.Y.share_memory_()
    ctx = mp.get_context(method)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"loss": float("inf"), "epoch": 0, "bad": 0, "state": None}
    stopped_early = False
    procs: list[Any] = []
    conns: list[Connection] = []
    start = time.perf_counter()
    with thread_count(p.threads):
        try:
            for rank in range(nproc):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(rank, job, theirs), name=f"nnopt-hogwild-{rank}", daemon=True)
                proc.start()
                theirs.close()
                procs.append(proc)
                conns.append(mine)
            # The main process alone evaluates, so it alone logs (like rank 0 of `nnopt train`); created after
            # the fork, since a logger may start a thread (TensorBoard's writer) that a forked worker would lack.
            callbacks += create_loggers(spec.log, run_dir, config, history)
            for cb in callbacks:  # after the fork: a callback may start threads (a progress bar)
                cb.on_fit_start(info)
            for epoch in range(1, spec.epochs + 1):
                reports = _collect(procs, conns, epoch)
                total_steps = sum(r["steps"] for r in reports)
                net.eval()
                row: dict[str, Any] = {"epoch": epoch,
                                       "train_loss": sum(r["loss_sum"] for r in reports) / max(total_steps, 1)}
                for split in ("train", "val"):
                    for key, value in _evaluate(net, loss_fn, data, sources[split], split_metrics[split],
                                                (epoch, total_steps)).items():
                        if not (split == "train" and key == "loss"):
                            row[f"{split}_{key}"] = value
                row["lr"] = reports[0]["lr"]
                row["time_s"] = round(time.perf_counter() - start, 4)
                row["rows"] = sum(r["rows"] for r in reports)
                row["steps"] = total_steps
                row["train_s"] = round(max(r["train_s"] for r in reports), 4)  # the slowest worker's training
                history.append(row)
                stop = _early_stop(spec.early_stopping, best, row, net)
                if run_dir is not None:
                    atomic_write_jsonl(run_dir / "metrics.jsonl", history)
                for cb in callbacks:
                    stop = bool(cb.on_epoch_end(epoch, row)) or stop
                last = stop or epoch == spec.epochs
                _release(procs, conns, ("stop",) if last else ("go", row.get("val_loss")), epoch)
                if stop:
                    stopped_early = epoch < spec.epochs
                    break
            for proc in procs:
                proc.join(timeout=30)
        finally:
            _stop_all(procs, conns)
        if spec.early_stopping and best["state"] is not None:
            net.load_state_dict(best["state"])  # restore the best validation weights
        net.eval()
        final = {split: _evaluate(net, loss_fn, data, sources[split], split_metrics[split], (len(history), 0))
                 for split in ("train", "val", "test")}
    result = FitResult(model=net, history=history, metrics=final, epochs=len(history),
                       wall_s=time.perf_counter() - start, run_dir=run_dir, data=data, config=config,
                       stopped_early=stopped_early)
    if run_dir is not None:
        _write_outputs(run_dir, result, arch, data)
    for cb in callbacks:
        cb.on_fit_end(result)
    return result


def _share(net: nn.Module) -> None:
    """Move parameters and buffers to shared memory; refuse what cannot be shared there."""
    tensors = list(net.parameters()) + list(net.buffers())
    if any(t.device.type != "cpu" for t in tensors):
        raise UsageError(GPU_MESSAGE)
    if any(t.layout != torch.strided for t in tensors) or not all(p.is_leaf for p in net.parameters()):
        raise UsageError("hogwild needs dense leaf parameters to share; this model has sparse or non-leaf ones")
    try:
        net.share_memory()
    except (RuntimeError, TypeError, OSError) as exc:
        raise UsageError(f"cannot put the model in shared memory ({exc}); hogwild needs dense CPU parameters") from None
    if not all(t.is_shared() for t in tensors):
        raise UsageError("cannot put the model in shared memory; hogwild needs dense CPU parameters")


def _shard_size(n: int, nproc: int, rank: int) -> int:
    return len(range(rank, n, nproc))


def _shard_batch(n: int, nproc: int, rank: int, batch: int) -> int:
    """Rows per step: the requested batch, capped at the shard ('full' / gd: the whole shard)."""
    return min(batch, _shard_size(n, nproc, rank))


def _collect(procs: list[Any], conns: list[Connection], epoch: int) -> list[dict[str, Any]]:
    """Wait until every worker has reported `epoch`; raise as soon as one fails or dies."""
    reports: dict[int, dict[str, Any]] = {}
    while len(reports) < len(procs):
        pending = [conns[r] for r in range(len(procs)) if r not in reports]
        ready = wait(pending + [proc.sentinel for proc in procs])
        for rank, conn in enumerate(conns):
            if rank in reports or conn not in ready and not conn.poll():
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                continue  # the pipe closed: the worker died; its sentinel tells how
            if message[0] == "epoch":
                reports[rank] = message[1]
            else:
                raise _worker_error(rank, epoch, message)
        for rank, proc in enumerate(procs):
            if proc.sentinel in ready:  # a worker only exits when told to stop: this one died
                raise _died(rank, proc, epoch)
    return [reports[r] for r in range(len(procs))]


def _release(procs: list[Any], conns: list[Connection], command: tuple, epoch: int) -> None:
    """Send every worker the next command: the end of the epoch barrier."""
    for rank, conn in enumerate(conns):
        try:
            conn.send(command)
        except OSError:  # a broken pipe: the worker died after reporting
            raise _died(rank, procs[rank], epoch) from None


def _died(rank: int, proc: Any, epoch: int) -> NnoptError:
    proc.join(timeout=5)
    return NnoptError(f"hogwild worker {rank} {_exit_text(proc.exitcode)} during epoch {epoch}; "
                      "the other workers were stopped")


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by signal {-code} (exit code {code})"
    return f"exited with code {code}"


def _worker_error(rank: int, epoch: int, message: tuple) -> NnoptError:
    kind = message[0]
    if kind == "diverged":
        worker_epoch, step, loss = message[1:]
        return DivergedError(worker_epoch, step, loss, hint=f"try a lower {param('lr')} (hogwild worker {rank})")
    if kind == "usage":
        cls = getattr(errors, message[1], UsageError)
        return (cls if isinstance(cls, type) and issubclass(cls, UsageError) else UsageError)(message[2])
    return NnoptError(f"hogwild worker {rank} failed during epoch {epoch}: {message[1]}")


def _stop_all(procs: list[Any], conns: list[Connection]) -> None:
    """Terminate workers still running (an error, Ctrl-C, a callback that raised) and close the pipes."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    for conn in conns:
        conn.close()


def _worker(rank: int, job: _Job, conn: Connection) -> None:
    """One Hogwild worker: train its shard epoch by epoch on the shared parameters; report; wait."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    epoch = 0
    try:
        net, X, Y = job.net, job.X, job.Y
        n = len(X)
        batch = _shard_batch(n, job.nproc, rank, job.batch)
        opt = create_optimizer(job.optimizer, net, lr=job.lr, **job.optimizer_params)
        sched = create_schedule(job.schedule or "constant", opt, epochs=job.epochs,
                                steps_per_epoch=batch_count(_shard_size(n, job.nproc, rank), batch),
                                **job.schedule_params)
        params = [p for p in net.parameters() if p.requires_grad]
        update = update_function(opt, sched, params, job.clip_grad)
        shard_gen = torch.Generator().manual_seed(job.seed)  # the same stream in every worker: disjoint shards
        if rank == 0:
            torch.set_rng_state(job.rng_state)  # dropout masks as in `nnopt train`
        else:
            torch.manual_seed(job.seed + rank)  # and different ones in every other worker
        trace = os.environ.get(TRACE_ENV)
        net.train()
        for epoch in range(1, job.epochs + 1):
            if rank == 1 and epoch == 1 and os.environ.get(KILL_ENV) == "1":
                os._exit(3)  # test hook: a worker that dies
            rows = torch.randperm(n, generator=shard_gen)[rank::job.nproc]
            if trace:
                torch.save(rows, Path(trace) / f"rank{rank}-epoch{epoch}.pt")
            began = time.perf_counter()
            lr = float(opt.param_groups[0]["lr"])
            step_losses: list[torch.Tensor] = []
            # the shard is already in random order: slice it (one gather, then views)
            for xb, yb in epoch_batches(X.index_select(0, rows), Y.index_select(0, rows), batch):
                loss_value = job.loss_fn(net(xb), yb)
                update(loss_value)
                step_losses.append(loss_value.detach())
                if len(step_losses) % CHECK_EVERY == 0:
                    _check_finite(step_losses, epoch, len(step_losses) - CHECK_EVERY)
            losses = _check_finite(step_losses, epoch, 0)
            conn.send(("epoch", {"loss_sum": float(losses.sum()), "steps": len(step_losses), "rows": len(rows),
                                 "lr": lr, "train_s": time.perf_counter() - began}))
            command = _receive(conn)
            if command[0] == "stop":
                break
            sched.step_epoch(command[1])
    except DivergedError as exc:
        _send(conn, ("diverged", exc.epoch, exc.step, exc.loss))
        raise SystemExit(1) from None
    except UsageError as exc:
        _send(conn, ("usage", type(exc).__name__, str(exc)))
        raise SystemExit(1) from None
    except (EOFError, BrokenPipeError):
        raise SystemExit(1) from None  # the main process is gone
    except Exception as exc:  # noqa: BLE001 - reported to the main process, which raises it
        _send(conn, ("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        conn.close()


def _receive(conn: Connection) -> tuple:
    """The main process's next command; exit if the main process is gone (a pipe alone would not tell:
    under fork, other workers hold copies of its end)."""
    parent = multiprocessing.parent_process()
    ready = wait([conn] + ([parent.sentinel] if parent is not None else []))
    if conn not in ready:
        raise SystemExit(1)
    return conn.recv()


def _send(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except OSError:
        pass
