"""The local launcher: `nnopt train --nproc N` starts N processes on this machine, restarts them after a crash.

Why not torchrun here: with its default rendezvous, restarted workers reconnected 2 times out of 8 in the
guide's measurements, while a fresh rendezvous port per attempt reconnected 5 of 5. So every attempt gets a
new TCPStore, hosted by this (parent) process on a socket it binds to 127.0.0.1 itself (nothing listens
on other interfaces, and no port can be taken between choosing and binding it), and N processes started
with torch.multiprocessing's spawn context join it (_ddp.join_local).

- A process that exits non-zero or is killed ends the attempt: the others are terminated. With
  --max-restarts K the next attempt (a new port) resumes from the run directory's checkpoint. An nnopt
  error (bad input, divergence) is not retried: it would happen again; it is raised here as it was there.
- Processes write their stderr (torch's C++ logs, warnings) to a scratch log; rank 0 runs the caller's
  callbacks and sends its FitResult back through a file. The parent prints nothing: when it would draw a
  progress bar (progress=True, or "auto" with its stderr a terminal), rank 0 draws it on the parent's stderr,
  which it keeps a copy of before its own goes to the log; the other ranks draw nothing.
- Ctrl-C reaches the parent, which terminates the processes (they ignore SIGINT); they also die with it.

Test hook: NNOPT_TEST_KILL_RANK=r and NNOPT_TEST_KILL_EPOCH=e make rank r SIGKILL itself at the end of epoch e,
in the first attempt only (under torchrun: in the job's first round).
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnopt.config import TrainSpec
from nnopt.errors import NnoptError, UsageError, param
from nnopt.fileio import atomic_write
from nnopt.train import Callback, FitResult, ProgressBar, run, wants_bar
from nnopt.distributed._ddp import join_local, rebuild_error, rendezvous_timeout

KILL_RANK_ENV, KILL_EPOCH_ENV = "NNOPT_TEST_KILL_RANK", "NNOPT_TEST_KILL_EPOCH"


@dataclass
class Job:
    """What every process needs, pickled once by the parent."""

    spec: TrainSpec
    module: nn.Module | None = None
    loss: Any = None
    metrics: list[str] | None = None
    callbacks: list[Callback] = field(default_factory=list)  # rank 0's
    bar_width: int | None = None  # rank 0 draws the progress bar this wide on the parent's stderr; None: no bar


@dataclass
class Failure:
    message: str  # "rank 1 was killed by SIGKILL"
    restartable: bool
    error: Exception | None = None  # the nnopt error to raise as is
    remote_traceback: str | None = None


def launch(spec: TrainSpec, *, module: nn.Module | None = None, loss: Any = None, metrics: list[str] | None = None,
           callbacks: list[Callback] | None = None, resume: bool = False) -> FitResult:
    """Train `spec` on spec.nproc processes of this machine; return rank 0's FitResult."""
    spec.validate()
    payload = _pickle(Job(spec, module, loss, metrics, list(callbacks or []), _bar_width(spec.progress)))
    checkpoint = Path(spec.out) / "checkpoint.pt" if spec.out else None
    before = _stamp(checkpoint)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="nnopt-ddp-") as scratch:
        for attempt in range(spec.max_restarts + 1):
            # a restart continues from the checkpoint this run wrote (not from one left by an older run)
            resume_now = resume or (attempt > 0 and _stamp(checkpoint) not in (None, before))
            folder = Path(scratch) / f"attempt{attempt}"
            folder.mkdir()
            failure = _attempt(ctx, payload, spec.nproc, attempt, resume_now, folder)
            if failure is None:
                with open(folder / "result.pkl", "rb") as fh:
                    return pickle.load(fh)
            if not failure.restartable:
                raise failure.error  # type: ignore[misc]
        after = f" after {spec.max_restarts} restart{'s' if spec.max_restarts > 1 else ''}" if spec.max_restarts else ""
        hint = (f"; the last finished epoch is checkpointed: re-run with {param('out', metavar='DIR')} "
                f"{param('resume', True)}"
                if _stamp(checkpoint) not in (None, before) else "")
        raise NnoptError(f"distributed training failed{after}: {failure.message}{hint}") from (
            _RemoteTraceback(failure.remote_traceback) if failure.remote_traceback else None)


class _RemoteTraceback(Exception):
    """The traceback of the process that failed (shown by `nnopt --debug` as the cause)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _pickle(job: Job) -> bytes:
    try:
        return pickle.dumps(job)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise UsageError(f"nproc > 1 sends the model, loss and callbacks to every process, and one of them cannot "
                         f"be pickled ({exc}); use module-level functions and classes") from None


def _bar_width(setting: bool | str) -> int | None:
    """The width of the progress bar rank 0 draws for the parent: the parent's terminal's (rich measures it), or
    None when the parent would draw none (progress=False, or "auto" and its stderr is not a terminal)."""
    if not wants_bar(setting):
        return None
    from rich.console import Console

    return Console(stderr=True).width


def _progress_bar(width: int | None, terminal: int | None) -> list[Callback]:
    """Rank 0's progress bar, `width` wide, on `terminal`: a copy of the stderr it was started with (the
    parent's), taken before its own went to the log; nothing when width is None (the descriptor is closed)."""
    if terminal is None:
        return []
    if width is None:
        os.close(terminal)
        return []
    from rich.console import Console

    stream = os.fdopen(terminal, "w", encoding="utf-8", errors="replace")
    return [ProgressBar(console=Console(file=stream, force_terminal=True, width=width))]


def _stamp(path: Path | None) -> int | None:
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None


def _attempt(ctx: Any, payload: bytes, nproc: int, attempt: int, resume: bool, folder: Path) -> Failure | None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(max(16, 2 * nproc))
    port = listener.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=rendezvous_timeout()), master_listen_fd=listener.detach())
    procs: list[Any] = []
    try:
        for rank in range(nproc):
            proc = ctx.Process(target=_process, args=(rank, nproc, port, attempt, resume, payload, str(folder),
                                                      os.getpid()),
                               name=f"nnopt-rank{rank}", daemon=True)
            proc.start()
            procs.append(proc)
        return _watch(procs, folder)
    finally:
        _stop(procs)
        del store


def _watch(procs: list[Any], folder: Path) -> Failure | None:
    """Wait for every process; at the first non-zero exit, describe the failure."""
    running = {proc.sentinel: rank for rank, proc in enumerate(procs)}
    while running:
        failed = []
        for sentinel in wait(list(running)):
            rank = running.pop(sentinel)
            procs[rank].join()
            if procs[rank].exitcode != 0:
                failed.append(rank)
        if failed:
            _stop(procs)  # the others would wait for the dead one in their next all-reduce
            return _describe(failed, procs, folder)
    return None


def _describe(failed: list[int], procs: list[Any], folder: Path) -> Failure:
    records = {}
    for rank in range(len(procs)):
        path = folder / f"rank{rank}.error"
        if path.is_file():
            with open(path, "rb") as fh:
                records[rank] = pickle.load(fh)
    for rank, record in sorted(records.items()):
        if record["nnopt"]:  # bad input or divergence: the same on every attempt
            return Failure(record["message"], False, rebuild_error(record["cls"], record["message"], f"rank {rank}"))
    crashed = [rank for rank in failed if rank not in records]  # killed, or died without a word: a restart may help
    rank = (crashed or failed)[0]
    if rank in records:
        return Failure(f"rank {rank} failed: {records[rank]['cls']}: {records[rank]['message']}", True,
                       remote_traceback=records[rank]["traceback"])
    return Failure(f"rank {rank} {_exit_text(procs[rank].exitcode)}", True)


def _exit_text(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def _stop(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)


def _process(rank: int, world: int, port: int, attempt: int, resume: bool, payload: bytes, folder: str,
             parent: int) -> None:
    """One rank: join the group, train, and (rank 0) hand the result back. Runs in a spawned process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent)
    terminal = os.dup(2) if rank == 0 else None  # the parent's stderr, where a progress bar goes
    log = open(Path(folder) / f"rank{rank}.log", "ab")  # noqa: SIM115 - open for the process's lifetime
    os.dup2(log.fileno(), 2)
    parallel = None
    try:
        job: Job = pickle.loads(payload)
        bar = _progress_bar(job.bar_width, terminal)
        parallel = join_local(rank, world, port, job.spec.device)
        spec = replace(job.spec, device=str(parallel.device))  # "auto" resolved: data, net and targets agree
        callbacks = (job.callbacks + bar if parallel.is_main else []) + test_hooks(rank, attempt)
        result = run(spec, module=job.module, loss=job.loss, metrics=job.metrics, callbacks=callbacks,
                     resume=resume, parallel=parallel)
        if parallel.is_main:
            atomic_write(Path(folder) / "result.pkl", lambda fh: pickle.dump(result, fh))
        parallel.close()
    except BaseException as exc:  # noqa: BLE001 - recorded for the parent, which raises or restarts
        nnopt = isinstance(exc, NnoptError)
        record = {"nnopt": nnopt, "cls": type(exc) if nnopt else type(exc).__name__, "message": str(exc),
                  "traceback": traceback.format_exc()}
        atomic_write(Path(folder) / f"rank{rank}.error", lambda fh: pickle.dump(record, fh))
        if parallel is not None:
            parallel.close(exc)
        sys.exit(exc.exit_code if nnopt else 1)


def test_hooks(rank: int, attempt: int) -> list[Callback]:
    """The crash test hook (see the module docstring); nothing unless both variables are set."""
    if attempt != 0 or os.environ.get(KILL_RANK_ENV) != str(rank) or not os.environ.get(KILL_EPOCH_ENV):
        return []
    return [_KillAt(int(os.environ[KILL_EPOCH_ENV]))]


class _KillAt(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the parent dies (even by SIGKILL), so no orphan keeps training."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent was already gone
        os._exit(1)
