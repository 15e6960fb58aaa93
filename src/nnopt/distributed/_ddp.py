"""One process of a synchronous data-parallel group: joining it, and the strategy object train.run() uses.

DDPParallel implements train's Parallel protocol with torch.distributed (gloo on CPU, nccl on CUDA, one GPU
per local rank) and DistributedDataParallel: every rank draws the same global batch order, trains on a contiguous
slice of every global batch and scales its mean loss by n_local * world / n_global, so that DDP's gradient
average is exactly the gradient of the global batch's mean loss — the single-process gradient. A rank reads only
its own slices: with the rows in memory one gather of about 1/world of the rows per epoch; from a torch Dataset or
a memory-mapped array only its samples of every global batch (_RankPart), drawn as the whole batch is. An
IterableDataset, a DataLoader with its own collate_fn, and augmented runs read every global batch whole and slice
it.

A group is joined in one of two ways:
- join_local: a process started by nnopt's launcher (_launch.py); the launcher hosts the rendezvous store on
  127.0.0.1 and gives each attempt a fresh port;
- join_env: a process started by torchrun (or with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set by
  hand): the env:// rendezvous, which fails after NNOPT_DIST_TIMEOUT seconds (default 60) instead of hanging;
  under torchrun rank 0 then hosts a fresh store for the round (_fresh_store), so restarts reconnect.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.model_averaging.utils import average_parameters
from torch.nn.parallel import DistributedDataParallel

from nnopt.data._batches import batch_bounds, epoch_order
from nnopt.errors import NnoptError, UsageError, param
from nnopt.train._batches import TensorSource
from nnopt.train._threads import available_cores

T = TypeVar("T")
TIMEOUT_ENV = "NNOPT_DIST_TIMEOUT"
PORT_KEY, STARTED_KEY = "nnopt/store-port", "nnopt/started"  # in torchrun's agent store
DEFAULT_TIMEOUT_S = 60.0
# Collectives may wait this long for a slow rank (rank 0 writing a big checkpoint); a rank that dies is
# seen at once by the launcher (or torchrun), which stops the others.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


class DDPParallel:
    """This process's place in the group: rank, world, the DDP wrapper, its slice of a batch, collectives."""

    def __init__(self, rank: int, world: int, local_world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device
        self.is_main = rank == 0
        self.max_threads = max(1, available_cores() // max(1, local_world))
        self.restarted = False  # under torchrun: an earlier round of this job started (set by join_env)
        self.net: nn.Module | None = None
        self.sync_every: int | None = None  # local SGD: average the parameters every this many steps
        self.steps = 0  # local SGD: steps since the last average
        self.resumable = True
        self.settings: dict[str, Any] = {}
        self.rows_done = None  # rank 0's step x batch counts every rank's rows: it walks every global batch
        self._global_sizes: Iterator[int] | None = None  # the epoch's global batch sizes when batches() sharded
        self.span = (0, 0, 0)
        self._part = _RankPart(rank, world)  # this rank's samples of a streamed source's global batches

    def epoch_share(self, n_rows: int, batch: int) -> tuple[int, int]:
        if self.world > n_rows:
            raise UsageError(f"{self.world} processes but only {n_rows} training samples; use at most {n_rows} "
                             "processes")
        if self.world > batch:
            raise UsageError(f"{param('batch_size', batch)} cannot be split over {self.world} processes; use "
                             f"{param('batch_size')} >= {self.world} or fewer processes")
        return n_rows, batch  # every rank walks every global batch and trains on its slice

    def batches(self, source: Any, batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor,
                                                                                          torch.Tensor]]:
        """This rank's batches of the epoch: only its slice of every global batch (shard() then weights it) —
        rows in memory gathered at once, a streamed source's samples read batch by batch; a source that cannot
        read a part (an IterableDataset) gives every global batch, which shard() slices. The same seeded generator
        on every rank: the same global batches, drawn as one process draws them."""
        in_memory = isinstance(source, TensorSource)
        if not (in_memory or getattr(source, "reads_parts", False)):
            self._global_sizes = None
            return source.batches(batch, generator)
        if not in_memory:
            self._part.sizes.clear()
            self._global_sizes = iter(self._part.sizes.popleft, None)  # filled as the batches are drawn
            return source.batches(batch, generator, self._part)
        n = len(source)
        # the single-process rule (TensorSource.batches): one batch of every row is not shuffled
        index, local, sizes = self.epoch_rows(n, batch, epoch_order(n, generator if batch < n else None))
        self._global_sizes = iter(sizes)
        if index.device != source.X.device:
            index = index.to(source.X.device, non_blocking=True)
        X, Y = source.X.index_select(0, index), source.Y.index_select(0, index)
        return _views(X, Y, local)

    def epoch_rows(self, n: int, batch: int, order: torch.Tensor | None) -> tuple[torch.Tensor, list[int],
                                                                                    list[int]]:
        """The rows of an epoch of n rows in `order` (None: 0..n-1) that this rank trains on, its row count in
        every global batch, and the global batches' sizes. A global batch with fewer rows than ranks leaves some
        ranks without a row: such a rank takes the batch's first row, which shard() weights 0."""
        bounds = batch_bounds(n, batch)
        sizes = [stop - start for start, stop in bounds]
        los = [start + size * self.rank // self.world for (start, _), size in zip(bounds, sizes)]
        his = [start + size * (self.rank + 1) // self.world for (start, _), size in zip(bounds, sizes)]
        local = [max(hi - lo, 1) for lo, hi in zip(los, his)]
        los = [lo if hi > lo else start for lo, hi, (start, _) in zip(los, his, bounds)]
        counts = torch.tensor(local, dtype=torch.long)
        firsts = torch.tensor(los, dtype=torch.long) - (torch.cumsum(counts, 0) - counts)  # position - offset
        positions = torch.repeat_interleave(firsts, counts) + torch.arange(int(counts.sum()))
        return (positions if order is None else order.cpu()[positions]), local, sizes

    def group_losses(self, losses: torch.Tensor) -> torch.Tensor:
        return self.all_mean(losses)

    def epoch_summary(self, losses: torch.Tensor, seconds: float) -> dict[str, float]:
        return {}

    def wrap(self, net: nn.Module, local_sgd: int | None = None) -> nn.Module:
        self.net, self.sync_every, self.steps = net, local_sgd, 0
        if local_sgd:  # each rank steps its own copy; after_step averages them (torch's model-averaging utils)
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        # gradients live in DDP's all-reduce buckets instead of being copied in and out of them (one copy and its
        # memory less; the step-time gain on 2 CPU processes is unsettled: benchmarks/RESULTS.md)
        return DistributedDataParallel(net, device_ids=ids, gradient_as_bucket_view=True)

    def shard(self, xb: torch.Tensor, yb: torch.Tensor, n_global: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        if self._global_sizes is not None:  # batches() already gathered this rank's rows of the global batch
            size = next(self._global_sizes)
            lo, hi = size * self.rank // self.world, size * (self.rank + 1) // self.world
            self.span = (lo, hi, size)
            return xb, yb, (hi - lo) * self.world / size if hi > lo else 0.0
        lo, hi = n_global * self.rank // self.world, n_global * (self.rank + 1) // self.world
        self.span = (lo, hi, n_global)
        if hi > lo:
            return xb[lo:hi], yb[lo:hi], (hi - lo) * self.world / n_global  # contiguous: a view, no copy
        # A last batch with fewer rows than ranks: one row at weight 0 still takes part in the gradient all-reduce.
        return xb[:1], yb[:1], 0.0

    def all_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().to(self.device, copy=True)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)  # gloo has no AVG
        return total / self.world

    def gather_rows(self, rows: torch.Tensor, n_total: int) -> torch.Tensor:
        sizes = [n_total * (r + 1) // self.world - n_total * r // self.world for r in range(self.world)]
        block = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        block[:len(rows)] = rows  # all_gather needs equal shapes: pad to the largest block
        blocks = [torch.empty_like(block) for _ in range(self.world)]
        dist.all_gather(blocks, block)
        return torch.cat([b[:size] for b, size in zip(blocks, sizes, strict=True)])

    def after_step(self) -> None:
        if self.sync_every:
            self.steps += 1
            if self.steps == self.sync_every:
                self._average()

    def _average(self) -> None:
        average_parameters(self.net.parameters(), dist.group.WORLD)  # one all-reduce of the flattened parameters
        self.steps = 0

    def sync_model(self) -> None:
        if self.net is None:
            return
        if self.sync_every and self.steps:
            self._average()
        for buffer in self.net.buffers():
            dist.broadcast(buffer, src=0)

    def from_main(self, fn: Callable[[], T]) -> T:
        box: list[Any] = [None]
        if self.is_main:
            try:
                value = fn()
            except Exception as exc:
                box[0] = ("error", type(exc), str(exc))
                dist.broadcast_object_list(box, src=0)
                raise
            box[0] = ("ok", value)
            dist.broadcast_object_list(box, src=0)
            return value
        dist.broadcast_object_list(box, src=0)
        if box[0][0] == "error":
            raise rebuild_error(box[0][1], box[0][2], "rank 0")
        return box[0][1]

    def close(self, error: BaseException | None = None) -> None:
        """Leave the group and stop gloo's threads now, while Python still runs.

        Left to interpreter shutdown, a gloo thread that frees a tensor of a pending (or failed) all-reduce
        needs the GIL after it is gone, and the process dies of SIGABRT ("terminate called without an active
        exception") instead of exiting: DDP, the group and that work live on in reference cycles and in the
        frames of `error`'s traceback, so both are freed first."""
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            traceback.clear_frames(error.__traceback__)
            error = error.__cause__ or error.__context__
        gc.collect()
        if dist.is_initialized():
            dist.destroy_process_group()
        gc.collect()


class _RankPart:
    """A rank's part of every global batch a streamed source draws (train/_batches.py's Part): of a batch's
    `size` sample indices, those at [size·rank/world, size·(rank+1)/world) — the rows epoch_rows takes from
    memory — or the first one, weighted 0 by shard(), when that is empty. Each batch's size is queued for
    shard(), in the order the batches are drawn (a DataLoader's workers may draw ahead of training)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world
        self.sizes: collections.deque[int] = collections.deque()

    def __call__(self, indices: Sequence[int]) -> Sequence[int]:
        size = len(indices)
        lo, hi = size * self.rank // self.world, size * (self.rank + 1) // self.world
        self.sizes.append(size)
        return indices[lo:hi] if hi > lo else indices[:1]


def _views(X: torch.Tensor, Y: torch.Tensor, counts: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    start = 0
    for count in counts:
        yield X[start:start + count], Y[start:start + count]
        start += count


def rebuild_error(cls: Any, message: str, where: str) -> Exception:
    """The same NnoptError (class and message) on this side; any other error as an NnoptError naming `where`."""
    if isinstance(cls, type) and issubclass(cls, NnoptError):
        exc = cls.__new__(cls)  # not cls(message): DivergedError's constructor takes other arguments
        Exception.__init__(exc, message)
        return exc
    name = getattr(cls, "__name__", str(cls))
    return NnoptError(f"{where} failed: {name}: {message}")


def rendezvous_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds > 0; got '{text}'")
    return value


def device_and_backend(name: str, local_rank: int, local_world: int) -> tuple[torch.device, str]:
    """CPU: gloo. CUDA (--device cuda, or auto with a GPU for every process of this machine): nccl, GPU number
    local_rank. auto with fewer GPUs than processes trains on CPU, as it does without a GPU."""
    enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= local_world
    wants_cuda = str(name).startswith("cuda") or (name == "auto" and enough_gpus)
    if not wants_cuda:
        return torch.device("cpu"), "gloo"
    if not torch.cuda.is_available():
        raise UsageError(f"{param('device', name)} but no CUDA device is available; use "
                         f"{param('device', 'auto')} or {param('device', 'cpu')}")
    count = torch.cuda.device_count()
    if local_world > count:
        raise UsageError(f"{local_world} processes on this machine but {count} GPU(s), one GPU per process; "
                         f"use at most {count} processes per machine or {param('device', 'cpu')}")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank), ("nccl" if dist.is_nccl_available() else "gloo")


def join_local(rank: int, world: int, port: int, device_name: str) -> DDPParallel:
    """Join the launcher's group: its store listens on 127.0.0.1:port (a fresh port for every attempt)."""
    device, backend = device_and_backend(device_name, rank, world)
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and _loopback():
        os.environ["GLOO_SOCKET_IFNAME"] = _loopback()  # peers on this machine talk over loopback only
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=rendezvous_timeout()))
    store.set_timeout(COLLECTIVE_TIMEOUT)
    dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT)
    return DDPParallel(rank, world, world, device)


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when absent or malformed)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def env_rank() -> int:
    """RANK as torchrun sets it (0 when absent or malformed)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def join_env(device_name: str) -> DDPParallel:
    """Join the group torchrun described in the environment (env:// rendezvous)."""
    try:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError("LOCAL_RANK and LOCAL_WORLD_SIZE must be integers; launch with torchrun") from None
    device, backend = device_and_backend(device_name, local_rank, local_world)
    seconds = rendezvous_timeout()
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    with _quiet_stderr():  # c10d logs every failed connection attempt on stderr; the error says it once
        try:
            store, rank, world = next(dist.rendezvous("env://", timeout=timedelta(seconds=seconds)))
        except ValueError as exc:  # a variable missing or malformed
            raise UsageError(f"cannot join the process group: {first_line(exc)}; launch with torchrun, or set "
                             "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT") from None
        except RuntimeError as exc:  # DistNetworkError / DistStoreError: nobody answered in time
            raise UsageError(f"cannot reach the rendezvous at {where} within {seconds:g} s ({first_line(exc)}); "
                             "check MASTER_ADDR / MASTER_PORT (torchrun: --rdzv-endpoint) and that every node is "
                             f"started, or raise {TIMEOUT_ENV}") from None
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            try:
                store, restarted = _fresh_store(store, rank, seconds)
            except RuntimeError as exc:
                raise UsageError(f"reached the rendezvous at {where} but not rank 0's store within {seconds:g} s "
                                 f"({first_line(exc)}); check that the nodes can reach each other, or raise "
                                 f"{TIMEOUT_ENV}") from None
        store.set_timeout(COLLECTIVE_TIMEOUT)
        try:
            dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                                    world_size=world, timeout=COLLECTIVE_TIMEOUT)
        except RuntimeError as exc:
            raise UsageError(f"reached the rendezvous at {where} but not the other ranks ({first_line(exc)}); "
                             "check that the nodes can reach each other (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME "
                             "choose the network interface)") from None
    parallel = DDPParallel(rank, world, local_world, device)
    parallel.restarted = restarted  # rank 0's view is the one that counts (see run_rank)
    return parallel


def _fresh_store(agent: Any, rank: int, seconds: float) -> tuple[Any, bool]:
    """A new store for this round of a torchrun group, hosted by rank 0 on a fresh port.

    torchrun's agent store lives as long as the job: after a restart it still holds the previous round's
    addresses, and a restarted rank that reads one fails to connect (measured on loopback: 1 restart of 4
    completed). Its restart counter cannot name the round either: an agent whose node did not fail restarts
    its workers without counting. So rank 0 starts a store of its own every round and publishes its port in
    the agent store; the others connect to MASTER_ADDR at the published port, and a stale port (the last
    round's rank 0 is gone: torchrun stops every worker before a new round) refuses until the new one is up.
    Returns the store and, on rank 0, whether an earlier round of this job started (a restart)."""
    host = os.environ["MASTER_ADDR"]
    if rank == 0:
        restarted = agent.check([STARTED_KEY])
        store = dist.TCPStore(host, 0, is_master=True, wait_for_workers=False, timeout=COLLECTIVE_TIMEOUT)
        agent.set(PORT_KEY, str(store.port))
        agent.set(STARTED_KEY, "1")
        return store, restarted
    deadline = time.monotonic() + seconds
    while True:
        port = int(agent.get(PORT_KEY))  # waits (up to the rendezvous timeout) until some rank 0 published one
        try:
            return dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=2)), False
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


def _loopback() -> str | None:
    import socket

    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((n for n in names if n in ("lo", "lo0")), None)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where torch's C++ code logs) to a scratch file inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
