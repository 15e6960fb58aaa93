"""Hogwild!: asynchronous lock-free data-parallel SGD on CPU (Niu et al. 2011), the way PyTorch's
mnist_hogwild example does it — the model lives in shared memory and every process steps it without locks.

    result = train_hogwild(spec, nproc=4)   # -> nnopt.train.FitResult, run directory like `nnopt train`

What is Hogwild's own lives here; the epoch loop is nnopt.train's (train_loop), which every process runs with
a HogwildParallel as its strategy object:
- The main process loads the data once and builds the network exactly as `nnopt train` does for the spec
  (train.prepare: same seeding, same weights) or takes the user's nn.Module instance (nnopt.fit(MyNet(), ...)),
  then `net.share_memory()` (the instance's own tensors move to shared memory: it is trained in place and is the
  result's model), and starts workers 1..N-1; it is worker 0 itself. Workers start with the fork start method
  where the platform has it and CUDA is absent (the data and the model are inherited, nothing is pickled), else
  spawn (the tensors travel through torch.multiprocessing's shared memory; a user's model class, loss and metric
  functions must then be importable).
- Every process: one intra-op thread, its own optimizer and schedule over the SHARED parameters, its own
  disjoint shard of the training rows (every process draws the same seeded permutation per epoch and takes
  rows rank::nproc of it) and trains on it in that (random) order, so one worker sees exactly the batches
  `nnopt train` would. Each has its own torch RNG stream for dropout: worker 0 continues the main process's
  stream (as `nnopt train` does), worker r > 0 is seeded seed + r. No locks: updates from different workers
  may interleave, which is the point of Hogwild. Stateful optimizers keep their state per worker. Schedule-free
  optimizers are refused: they keep their averaged weights in the parameters themselves, which workers
  sharing those parameters would overwrite.
- The loop's exchanges at an epoch's end (the epoch's figures, the evaluation, the stop decision) go through
  one pipe per worker to the main process and back; they double as the barrier, so the model is scored once
  every worker has finished the epoch. A waiting worker also watches its parent and exits when the main
  process is gone (killed), instead of waiting forever. History rows carry the metric names of `nnopt train`
  plus rows (training rows processed, all workers), steps and train_s (the slowest worker's training time).
- A worker that dies is seen at the next exchange (its process sentinel is waited on with the pipes): the
  others are terminated and NnoptError names the worker and its exit code. Workers ignore SIGINT; Ctrl-C stops
  the main process, which terminates them.
- Outputs as for `nnopt train` (config.json with "strategy": "hogwild" and "nproc", metrics.jsonl, model.pt,
  summary.json, and the --log loggers' files), without checkpoint.pt: a hogwild run does not resume (each
  worker's optimizer state is its own).

Test hooks (environment variables read by the workers): NNOPT_TEST_HOGWILD_KILL=1 makes worker 1 exit with
code 3 at the start of epoch 1; NNOPT_TEST_HOGWILD_TRACE=DIR makes every worker save the training-row
indices of each epoch to DIR/rank<r>-epoch<e>.pt.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import IterableDataset

from nnopt import errors
from nnopt.config import TrainSpec
from nnopt.data import MemmapSplit, batch_count, epoch_batches
from nnopt.errors import DivergedError, NnoptError, UsageError, param, require_int
from nnopt.optim import create_optimizer, create_schedule
from nnopt.optim._table import is_schedule_free
from nnopt.train import Callback, FitResult, Prepared, prepare, train_loop
from nnopt.train._batches import TensorSource
from nnopt.train._threads import can_fork

KILL_ENV, TRACE_ENV = "NNOPT_TEST_HOGWILD_KILL", "NNOPT_TEST_HOGWILD_TRACE"
GPU_MESSAGE = f"hogwild needs CPU shared memory; use {param('strategy', 'ddp')} on GPUs"


def train_hogwild(spec: TrainSpec, nproc: int, *, module: nn.Module | None = None, loss: Any = None,
                  callbacks: list[Callback] | None = None, metrics: Any = None,
                  start_method: str | None = None) -> FitResult:
    """Train spec's model with `nproc` Hogwild workers; return the FitResult of the shared model.

    module: a user's nn.Module instance to train instead of spec.model (as nnopt.fit takes one); its parameters
    and buffers are moved to shared memory and trained in place, so the instance itself is the trained model
    (result.model). loss: as nnopt.fit's (under spawn it is pickled to the workers).

    metrics: as nnopt.fit's (names, or {name: fn} — under spawn the functions are pickled to the workers, so
    they must be importable, not lambdas).

    start_method: None picks fork where safe (train._threads.can_fork), else spawn (tests pass "spawn" to cover
    that path).
    """
    require_int("nproc", nproc, 1)
    spec.validate()
    if str(spec.device).startswith("cuda"):
        raise UsageError(GPU_MESSAGE)
    # shared-memory Hogwild is a CPU strategy even where a GPU exists
    spec = dataclasses.replace(spec, device="cpu", strategy="hogwild", nproc=nproc)
    p = prepare(spec, module=module, loss=loss)
    train = p.sources["train"]
    if not isinstance(train, TensorSource):
        given, load = _streamed(train)
        raise UsageError(f"hogwild needs the training rows in memory, and {param('data')} is {given}; {load}, "
                         f"or use {param('strategy', 'ddp')}")
    if nproc > len(train):
        raise UsageError(f"{param('nproc', nproc)} is more than the {len(train)} training rows; use "
                         f"{param('nproc')} <= {len(train)}")
    _share(p.net)
    opt = create_optimizer(spec.optimizer, p.net, lr=spec.lr, **spec.optimizer_params)  # refused before any fork
    if is_schedule_free(opt):
        raise UsageError(f"optimizer '{spec.optimizer}' keeps its averaged weights in the shared parameters, "
                         "which hogwild workers would overwrite; choose another optimizer")
    create_schedule(spec.schedule or "constant", opt, epochs=spec.epochs,
                    steps_per_epoch=batch_count(len(train), p.batch), **spec.schedule_params)
    del opt
    method = start_method or ("fork" if can_fork() else "spawn")
    if method != "fork":  # spawn pickles the arguments: shared tensors travel as handles, not copies
        train.X.share_memory_()
        train.Y.share_memory_()
    ctx = mp.get_context(method)
    settings = {"start_method": method}
    done = torch.zeros(nproc, dtype=torch.int64).share_memory_()  # each worker's training rows so far (its slot)
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for rank in range(1, nproc):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(rank, nproc, spec, p, metrics, settings, theirs, done),
                               name=f"nnopt-hogwild-{rank}", daemon=True)
            try:
                proc.start()
            except (pickle.PicklingError, AttributeError, TypeError) as exc:  # spawn pickles the arguments
                raise UsageError(f"hogwild's {method} workers cannot receive the run's settings ({exc}); give "
                                 f"{param('model')}, {param('loss')} and {param('metrics')} classes and functions "
                                 "defined at a module's top level") from None
            theirs.close()
            procs.append(proc)
            conns.append(mine)
        # worker 0 is this process: its callbacks and loggers (which may start threads) are created after the fork
        group = HogwildParallel(0, nproc, conns, procs, settings, done)
        try:
            result = train_loop(spec, p, metrics=metrics, callbacks=callbacks, parallel=group)
        except DivergedError as exc:
            if getattr(exc, "worker", None) is not None:
                raise
            raise DivergedError(exc.epoch, exc.step, exc.loss,
                                hint=f"try a lower {param('lr')} (hogwild worker 0)") from None
        for proc in procs:
            proc.join(timeout=30)
    finally:
        _stop_all(procs, conns)
    return result


class HogwildParallel:
    """One process of a Hogwild group as nnopt.train's loop uses it (train/_parallel.py). Rank 0 is the main
    process: it trains like any worker and is the hub every exchange goes through (one pipe per worker)."""

    def __init__(self, rank: int, world: int, conns: list[Connection], procs: list[Any] | None,
                 settings: dict[str, Any], done: torch.Tensor | None = None):
        self.rank, self.world, self.is_main = rank, world, rank == 0
        # the training rows each worker has done since the run began, in shared memory: a worker writes its own
        # slot after each step (no lock, no sync); the main process's progress bar reads their sum
        self._done = (done if done is not None else torch.zeros(world, dtype=torch.int64)).numpy()
        self._seen = self._batch_rows = self.n_rows = 0
        self.span = (0, 0, 0)
        self.rows_done = self._rows_done if self.is_main else None
        self.max_threads = 1  # the workers share the cores
        self.resumable = False
        self.settings = settings
        self.conns, self.procs = conns, procs or []  # main: a pipe per worker 1..N-1; a worker: its one pipe
        self.epoch = 0
        self.rows = 0

    def wrap(self, net: nn.Module, local_sgd: int | None = None) -> nn.Module:
        return net  # the parameters are in shared memory: every step lands in everyone's model

    def epoch_share(self, n_rows: int, batch: int) -> tuple[int, int]:
        self.n_rows = n_rows
        shard = _shard_size(n_rows, self.world, self.rank)
        return shard, min(batch, shard)  # 'full' / gd: the whole shard

    def batches(self, source: TensorSource, batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor,
                                                                                                   torch.Tensor]]:
        self.epoch += 1
        if self.rank == 1 and self.epoch == 1 and os.environ.get(KILL_ENV) == "1":
            os._exit(3)  # test hook: a worker that dies
        rows = torch.randperm(len(source), generator=generator)[self.rank::self.world]  # same stream everywhere
        if trace := os.environ.get(TRACE_ENV):
            torch.save(rows, Path(trace) / f"rank{self.rank}-epoch{self.epoch}.pt")
        self.rows = len(rows)
        # the shard is already in random order: slice it (one gather, then views)
        return epoch_batches(source.X.index_select(0, rows), source.Y.index_select(0, rows), batch)

    def shard(self, xb: torch.Tensor, yb: torch.Tensor, n_global: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        self._batch_rows = len(xb)
        self.span = (0, len(xb), len(xb))
        return xb, yb, 1.0  # a worker's batch is its own

    def after_step(self) -> None:
        self._seen += self._batch_rows
        self._done[self.rank] = self._seen

    def _rows_done(self, step: int) -> int:
        """Every worker's training rows so far in this epoch. Workers meet at every epoch's end, so each is in
        this epoch (or finished it): the run's count less the whole epochs before this one."""
        return max(0, min(int(self._done.sum()) - (self.epoch - 1) * self.n_rows, self.n_rows))

    def group_losses(self, losses: torch.Tensor) -> torch.Tensor:
        return losses  # each worker checks its own steps: a divergence is reported at the next exchange

    def epoch_summary(self, losses: torch.Tensor, seconds: float) -> dict[str, float]:
        mine = (float(losses.sum()), len(losses), self.rows, seconds)
        parts = self._exchange(mine, lambda values: values)
        steps = sum(part[1] for part in parts)
        return {"train_loss": sum(part[0] for part in parts) / max(steps, 1), "rows": sum(part[2] for part in parts),
                "steps": steps, "train_s": round(max(part[3] for part in parts), 4)}

    def all_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = self._exchange(tensor.detach().cpu().numpy(), lambda values: np.mean(values, axis=0))
        return torch.from_numpy(np.asarray(mean)).to(tensor.device)

    def gather_rows(self, rows: torch.Tensor, n_total: int) -> torch.Tensor:
        joined = self._exchange(rows.detach().cpu().numpy(), lambda values: np.concatenate(values))
        return torch.from_numpy(joined)

    def sync_model(self) -> None:
        self._exchange(None, lambda values: None)  # one model, in shared memory: only wait for every worker

    def from_main(self, fn: Callable[[], Any]) -> Any:
        return self._exchange(None, lambda values: fn())

    def _exchange(self, value: Any, combine: Callable[[list[Any]], Any]) -> Any:
        """combine([every rank's value, in rank order]), computed on the main process and returned on every one."""
        if not self.is_main:
            self.conns[0].send(("value", value))
            return _receive(self.conns[0])
        result = combine([value, *self._collect()])
        for rank, conn in enumerate(self.conns, start=1):
            try:
                conn.send(result)
            except OSError:  # a broken pipe: the worker died after reporting
                raise _died(rank, self.procs[rank - 1], self.epoch) from None
        return result

    def _collect(self) -> list[Any]:
        """Every worker's value; raise as soon as one fails or dies."""
        values: dict[int, Any] = {}
        while len(values) < len(self.conns):
            pending = [conn for rank, conn in enumerate(self.conns) if rank not in values]
            ready = wait(pending + [proc.sentinel for proc in self.procs])
            for rank, conn in enumerate(self.conns):
                if rank in values or conn not in ready and not conn.poll():
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    continue  # the pipe closed: the worker died; its sentinel tells how
                if message[0] != "value":
                    raise _worker_error(rank + 1, self.epoch, message)
                values[rank] = message[1]
            for rank, proc in enumerate(self.procs):
                if proc.sentinel in ready and rank not in values:  # a worker exits only after the last exchange
                    raise _died(rank + 1, proc, self.epoch)
        return [values[r] for r in range(len(self.conns))]


def _worker(rank: int, world: int, spec: TrainSpec, p: Prepared, metrics: Any, settings: dict[str, Any],
            conn: Connection, done: torch.Tensor) -> None:
    """Hogwild worker `rank` >= 1: the training loop on the shared model, its exchanges through `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    torch.manual_seed(spec.seed + rank)  # dropout masks of its own (worker 0 continues the main stream)
    group = HogwildParallel(rank, world, [conn], None, settings, done)
    try:
        train_loop(spec, p, metrics=metrics, parallel=group)
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



def _streamed(source: Any) -> tuple[str, str]:
    """What a training split that is not in memory was given as, and how to give it in memory."""
    split = getattr(source, "split", None)
    if isinstance(split, MemmapSplit):
        return ("a memory-mapped .npy array (read from disk batch by batch)",
                "give the rows in memory (the arrays of np.load(path) without mmap_mode, or an .npz file)")
    kind = ("a torch DataLoader" if getattr(split, "loader", None) is not None else
            "a torch IterableDataset" if isinstance(getattr(split, "dataset", None), IterableDataset) else
            "a torch Dataset")
    return kind, "pass its samples as arrays (X, y)"


def _shard_size(n: int, nproc: int, rank: int) -> int:
    return len(range(rank, n, nproc))



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
        error = DivergedError(worker_epoch, step, loss, hint=f"try a lower {param('lr')} (hogwild worker {rank})")
        error.worker = rank  # type: ignore[attr-defined]  # named already: train_hogwild passes it on as is
        return error
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

