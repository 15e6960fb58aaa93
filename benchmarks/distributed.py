"""Data-parallel training speed: 1 vs N processes, synchronous DDP, local SGD, and Hogwild where available.

For a small model (mlp:128,64: all-reduce latency dominates its step), compute-bound ones (mlp:1024,1024; a cnn
on --data digits28), each configuration trains the same spec through nnopt.fit and reports:
- steps/s: global steps (one global batch each) per second of training wall time (the run's own clock, per-epoch
  evaluation included, process start excluded); DDP and local SGD take one per global batch (local SGD
  averages the processes' parameters every --sync-every of them instead of all-reducing every gradient);
  Hogwild counts one per worker batch;
- rows/s: training rows consumed per second (comparable across strategies);
- to target: training wall seconds until val_accuracy first reaches --target (per-epoch resolution);
- call s: the whole nnopt.fit call, process start and data loading included.
--raw adds the floor of any DDP run on this machine: microseconds per step of a bare torch loop (mlp:128,64,
batch 32 per process, Adam, 1 thread) without DDP, and with DistributedDataParallel over gloo on 127.0.0.1.
--raw-widths 1024,1024 --bucket-view: the same for a larger MLP, and 2-process DDP with gradient_as_bucket_view=True
(nnopt's setting: the gradients live in the all-reduce buckets instead of being copied in and out); --raw-only skips
the nnopt.fit runs.
--shard-read: what one DDP rank reads of in-memory rows per epoch, reading only its slice of every global batch
(nnopt's way) against reading every global batch whole and slicing it (the old way, still used when augmenting):
bytes gathered per rank per epoch (the copy that lives through the epoch) and seconds per epoch of drawing the
batches, medians of interleaved rounds, for --shard-rows x --shard-features float32 rows and 2 / 4 / 8 ranks;
no processes are started (rank 0's part is the same code with any world size). --streamed adds the same comparison
for a torch Dataset (--streamed-rows samples, each generated from its index by __getitem__: nothing in memory;
__getitem__ calls counted) and a memory-mapped .npy array (--shard-rows x --shard-features float32, rows read from
disk counted), through nnopt's own sources (load_data + make_source, as fit builds them).

    .venv/bin/python benchmarks/distributed.py [--data mnist1d|digits|digits28] [--epochs 5] [--nproc 2]
        [--device auto] [--threads N] [--models SPEC ...] [--batch-size 64] [--raw]
        [--raw-only] [--raw-widths 128,64] [--raw-steps 1000] [--bucket-view]
    .venv/bin/python benchmarks/distributed.py --shard-read [--shard-rows 60000] [--shard-features 784]
        [--batch-size 64] [--rounds 5] [--streamed [--streamed-rows 20000]]

--device auto uses CUDA with nccl when present (one GPU per process: N processes need N GPUs); Hogwild is CPU only.
"""

from __future__ import annotations

import argparse
import math
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import nnopt
from nnopt.distributed import DDPParallel
from nnopt.errors import NnoptError
from nnopt.train._batches import TensorSource, make_source
from nnopt.train._threads import available_cores

MODELS = ("mlp:128,64", "mlp:1024,1024")
TARGETS = {"digits": 0.9, "digits28": 0.9, "mnist1d": 0.4}  # val accuracy the models reach within a few epochs


def _hogwild_available() -> bool:
    try:
        from nnopt.distributed import train_hogwild  # noqa: F401
    except (ImportError, NnoptError):
        return False
    return True


def measure(model: str, args: argparse.Namespace, nproc: int, strategy: str) -> dict:
    began = time.perf_counter()
    extra = {"sync_every": args.sync_every} if strategy == "local-sgd" else {}
    result = nnopt.fit(model, args.data, optimizer=args.optimizer, batch_size=args.batch_size, epochs=args.epochs,
                       seed=0, device=args.device, nproc=nproc, strategy=strategy, threads=args.threads, **extra)
    call_s = time.perf_counter() - began
    history = result.history
    n_train = result.config["data_info"]["n_train"]
    if strategy == "hogwild":
        steps = sum(row["steps"] for row in history)
    else:
        steps = len(history) * math.ceil(n_train / result.config["batch_size"])
    wall = history[-1]["time_s"]
    reached = next((row["time_s"] for row in history if (row.get("val_accuracy") or 0) >= args.target), None)
    return {"model": model, "strategy": strategy, "procs": nproc, "threads": result.config["threads"],
            "device": result.config["device"], "steps/s": steps / wall, "rows/s": len(history) * n_train / wall,
            "s/epoch": wall / len(history), "to target": reached, "test acc": result.metrics["test"]["accuracy"],
            "call s": call_s}


def _raw_loop(rank: int, world: int, port: int, use_ddp: bool, steps: int, queue: object,
              widths: tuple[int, ...] = (128, 64), bucket_view: bool = False) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    sizes = (40, *widths)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(sizes[-1], 10))
    model = DistributedDataParallel(net, gradient_as_bucket_view=bucket_view) if use_ddp else net
    opt = torch.optim.Adam(net.parameters(), fused=True)
    X, y = torch.randn(32, 40), torch.randint(0, 10, (32,))
    for i in range(steps + 100):
        if i == 100:  # warm-up done
            began = time.perf_counter()
        loss = nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rank == 0:
        queue.put((time.perf_counter() - began) / steps * 1e6)  # type: ignore[attr-defined]
    dist.destroy_process_group()


def raw_step_us(world: int, use_ddp: bool, steps: int = 1000, widths: tuple[int, ...] = (128, 64),
                bucket_view: bool = False) -> float:
    """Microseconds per step of a bare loop on `world` processes (each its own model unless use_ddp; with
    bucket_view, DDP's gradients are views into its all-reduce buckets, as nnopt's DDP sets)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_raw_loop, args=(r, world, port, use_ddp, steps, queue, widths, bucket_view))
             for r in range(world)]
    for proc in procs:
        proc.start()
    value = queue.get(timeout=300)
    for proc in procs:
        proc.join()
    return value


def shard_read(rows: int, features: int, batch: int, rounds: int, worlds: tuple[int, ...] = (2, 4, 8)) -> None:
    """Rank 0's epoch of batches, whole global batches sliced vs its own slices gathered: bytes and seconds."""
    torch.set_num_threads(1)
    source = TensorSource(torch.randn(rows, features), torch.randint(0, 10, (rows,)))
    row_bytes = features * 4 + 8  # a float32 row and its int64 label
    print(f"shard reading: {rows} x {features} float32 rows ({rows * row_bytes / 1e6:.0f} MB), batch {batch} "
          f"(global), 1 thread, {rounds} interleaved rounds; rank 0's epoch")
    print("ranks | read | rows gathered | MB gathered | s/epoch (median) | ratio")
    for world in worlds:
        times: dict[bool, list[float]] = {True: [], False: []}
        gathered: dict[bool, int] = {}
        for _ in range(rounds):
            for whole in (True, False):
                parallel = DDPParallel(0, world, world, torch.device("cpu"))
                parallel.whole_batches = whole
                generator = torch.Generator().manual_seed(0)
                began = time.perf_counter()
                count = 0
                for xb, yb in parallel.batches(source, batch, generator):
                    xb, yb, _ = parallel.shard(xb, yb, len(xb))
                    count += len(xb)
                times[whole].append(time.perf_counter() - began)
                gathered[whole] = rows if whole else count
        for whole in (True, False):
            median = statistics.median(times[whole])
            ratio = statistics.median(times[True]) / median
            print(f"{world} | {'whole batch, sliced' if whole else 'own slice'} | {gathered[whole]} | "
                  f"{gathered[whole] * row_bytes / 1e6:.1f} | {median:.4f} | "
                  f"{'1.00x' if whole else f'{ratio:.2f}x faster'}", flush=True)


class GeneratedSamples(torch.utils.data.Dataset):
    """Sample i (`features` floats, a label of 10) computed from i by __getitem__, which counts its calls."""

    def __init__(self, n: int, features: int):
        self.n, self.calls = n, 0
        g = torch.Generator().manual_seed(0)
        self.freq, self.phase = torch.rand(features, generator=g) * 0.01, torch.rand(features, generator=g) * 6.28
        self.targets = torch.arange(n) % 10  # stated: no pass over the samples to read the labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.calls += 1
        return torch.sin(i * self.freq + self.phase), self.targets[i]


def streamed_read(rows: int, features: int, streamed_rows: int, batch: int, rounds: int,
                  worlds: tuple[int, ...] = (2, 4, 8)) -> None:
    """Rank 0's epoch of a torch Dataset and of a memory-mapped array: every global batch read whole and sliced
    (how a rank read them before) vs its own samples of each (nnopt's way): samples read and seconds."""
    import numpy as np

    from nnopt.data import load_data

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    dataset = GeneratedSamples(streamed_rows, features)
    sources = {"torch Dataset": (make_source(load_data(dataset, seed=0), "train", cpu, (features,)),
                                 lambda: dataset.calls)}
    folder = tempfile.TemporaryDirectory(prefix="nnopt-shard-read-")
    X = np.lib.format.open_memmap(Path(folder.name) / "X.npy", mode="w+", dtype=np.float32, shape=(rows, features))
    for start in range(0, rows, 4096):  # written in chunks: never whole in memory
        X[start:start + 4096] = np.random.default_rng(start).standard_normal((min(4096, rows - start), features))
    X.flush()
    del X
    np.save(Path(folder.name) / "y.npy", np.arange(rows) % 10)
    memmap = make_source(load_data((Path(folder.name) / "X.npy", Path(folder.name) / "y.npy"), seed=0), "train",
                         cpu, (features,))
    read_rows = [0]
    plain_read = memmap.split.read

    def counted(positions):
        read_rows[0] += len(positions)
        return plain_read(positions)

    memmap.split.read = counted
    sources["memory-mapped .npy"] = (memmap, lambda: read_rows[0])
    print(f"streamed shard reading: a torch Dataset of {streamed_rows} generated samples of {features} features, a "
          f"memory-mapped {rows} x {features} float32 array ({rows * features * 4 / 1e6:.0f} MB); train splits "
          f"{', '.join(f'{name} {len(src)}' for name, (src, _) in sources.items())} rows; batch {batch} (global), "
          f"1 thread, {rounds} interleaved rounds; rank 0's epoch")
    print("source | ranks | read | samples read | s/epoch (median) | ratio")
    for name, (source, reads) in sources.items():
        for world in worlds:
            times: dict[bool, list[float]] = {True: [], False: []}
            counts: dict[bool, int] = {}
            generator = torch.Generator()  # one per run, as in fit (the source's DataLoaders hold it)
            for _ in range(rounds):
                for whole in (True, False):
                    parallel = DDPParallel(0, world, world, cpu)
                    parallel.whole_batches = whole
                    generator.manual_seed(0)
                    before, began = reads(), time.perf_counter()
                    for xb, yb in parallel.batches(source, batch, generator):
                        parallel.shard(xb, yb, len(xb))
                    times[whole].append(time.perf_counter() - began)
                    counts[whole] = reads() - before
            for whole in (True, False):
                median = statistics.median(times[whole])
                ratio = statistics.median(times[True]) / median
                print(f"{name} | {world} | {'whole batch, sliced' if whole else 'own samples'} | {counts[whole]} | "
                      f"{median:.4f} | {'1.00x' if whole else f'{ratio:.2f}x faster'}", flush=True)
    folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist1d",
                        help="digits | digits28 (digits as 28x28 images, for a cnn) | mnist1d (default mnist1d)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--nproc", type=int, default=2, help="processes to compare with 1 (default 2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, help="intra-op threads per process (default: nnopt's choice)")
    parser.add_argument("--target", type=float, help="val accuracy for 'to target' (default: 0.9 digits, 0.4 mnist1d)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="model specs (default: %(default)s)")
    parser.add_argument("--no-hogwild", action="store_true", help="skip Hogwild")
    parser.add_argument("--no-local-sgd", action="store_true", help="skip local SGD")
    parser.add_argument("--sync-every", type=int, default=8, help="local SGD's averaging period (default 8)")
    parser.add_argument("--raw", action="store_true", help="also time a bare torch / DDP step loop (1 vs 2 processes)")
    parser.add_argument("--raw-only", action="store_true", help="only the bare loop (implies --raw)")
    parser.add_argument("--raw-widths", default="128,64", help="hidden widths of the bare loop's MLP (40 inputs)")
    parser.add_argument("--raw-steps", type=int, default=1000)
    parser.add_argument("--bucket-view", action="store_true",
                        help="bare loop: also 2-process DDP with gradient_as_bucket_view=True (nnopt's setting)")
    parser.add_argument("--shard-read", action="store_true",
                        help="only: bytes and time of one DDP rank's epoch of in-memory batches, own slice vs whole")
    parser.add_argument("--shard-rows", type=int, default=60000)
    parser.add_argument("--shard-features", type=int, default=784)
    parser.add_argument("--rounds", type=int, default=5, help="--shard-read: interleaved rounds (default 5)")
    parser.add_argument("--streamed", action="store_true",
                        help="--shard-read: also a torch Dataset and a memory-mapped array, own samples vs whole")
    parser.add_argument("--streamed-rows", type=int, default=20000, help="--streamed: samples of the torch Dataset")
    args = parser.parse_args()
    if args.shard_read:
        shard_read(args.shard_rows, args.shard_features, args.batch_size, args.rounds)
        if args.streamed:
            streamed_read(args.shard_rows, args.shard_features, args.streamed_rows, args.batch_size, args.rounds)
        return
    args.target = args.target if args.target is not None else TARGETS.get(args.data, 0.5)
    name = args.data
    if args.data == "digits28":
        from compress import write_digits28  # benchmarks/compress.py

        args.data = str(write_digits28(Path(tempfile.mkdtemp()) / "digits28.npz"))
    configs = [] if args.raw_only else [(1, "ddp"), (args.nproc, "ddp")]
    if not args.no_hogwild and not args.raw_only and _hogwild_available():
        configs.append((args.nproc, "hogwild"))
    if not args.no_local_sgd and not args.raw_only:
        configs.append((args.nproc, "local-sgd"))
    print(f"{name}, batch {args.batch_size} (global), {args.optimizer}, {args.epochs} epochs, target val acc "
          f"{args.target}; {available_cores()} cores, torch {torch.__version__}, {platform.machine()}, "
          f"cuda {'yes' if torch.cuda.is_available() else 'no'}")
    columns = ["model", "strategy", "procs", "threads", "device", "steps/s", "rows/s", "s/epoch", "to target",
               "test acc", "call s"]
    print(" | ".join(columns))
    baseline: dict[str, float] = {}
    for model in args.models if configs else []:
        for nproc, strategy in configs:
            try:
                row = measure(model, args, nproc, strategy)
            except NnoptError as exc:
                print(f"{model} | {strategy} | {nproc} | skipped: {exc}")
                continue
            if nproc == 1:
                baseline[model] = row["rows/s"]
            speed = f" ({row['rows/s'] / baseline[model]:.2f}x rows/s)" if model in baseline and nproc > 1 else ""
            cells = [row["model"], row["strategy"], str(row["procs"]), str(row["threads"]), row["device"],
                     f"{row['steps/s']:.0f}", f"{row['rows/s']:.0f}{speed}", f"{row['s/epoch']:.3f}",
                     "-" if row["to target"] is None else f"{row['to target']:.2f} s", f"{row['test acc']:.4f}",
                     f"{row['call s']:.1f}"]
            print(" | ".join(cells), flush=True)
    if args.raw or args.raw_only:
        widths = tuple(int(w) for w in args.raw_widths.split(","))
        print(f"bare loop, mlp:{args.raw_widths}, batch 32 per process, 1 thread: us/step (rank 0)")
        cases = [(1, False, False, "1 process"), (2, False, False, "2 processes, no DDP (core sharing)"),
                 (1, True, False, "1 process, DDP"), (2, True, False, "2 processes, DDP (gloo, 127.0.0.1)")]
        for world, use_ddp, bucket_view, label in cases:
            us = raw_step_us(world, use_ddp, args.raw_steps, widths, bucket_view)
            print(f"  {label}: {us:.0f}", flush=True)
        if args.bucket_view:  # alternated, so a change in the machine's load hits both alike
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(3):
                for bucket_view in (False, True):
                    times[bucket_view].append(raw_step_us(2, True, args.raw_steps, widths, bucket_view))
            print(f"  2 processes, DDP, copied gradients / gradient_as_bucket_view=True, alternated 3 times: "
                  f"{', '.join(f'{a:.0f} / {b:.0f}' for a, b in zip(times[False], times[True]))} "
                  f"(medians {statistics.median(times[False]):.0f} / {statistics.median(times[True]):.0f})", flush=True)


if __name__ == "__main__":  # required: the processes are started with spawn, which re-imports this file
    main()
