"""Streamed data: nnopt.fit on a torch Dataset vs a hand-written DataLoader loop, 0 and 2 workers.

A 200k-row Dataset generates each sample from its index (a fixed function: 32 features from sines of the index,
4 classes by the sign pattern of two projections), so nothing is held in memory. nnopt gets task= and n_classes=
(no pass to read labels) and builds its own DataLoader with num_workers=; the hand loop is what a careful user
writes: a DataLoader over the same training split (same batch size, shuffled, the same workers, persistent), the
same MLP and fused Adam, a validation pass each epoch and a test pass at the end (nnopt's epoch does the same work: it
takes the training metrics from the batches it trained on). Rounds interleave the two, alternating which goes
first; medians are reported. `__getitem__` calls are counted per index in shared memory (workers included):
calls on training indices per training sample per epoch. `--device cuda`: both train on the GPU, the hand loop's
DataLoaders pin memory and copy batches with non_blocking=True (what nnopt's own loaders do on CUDA).

    .venv/bin/python benchmarks/streaming.py [--rows 200000] [--epochs 2] [--rounds 3] [--workers 0 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

import nnopt
from nnopt.data import load_data

BATCH, LR, FEATURES, CLASSES, MODEL = 256, 1e-3, 32, 4, "mlp:64,32"


class Generated(Dataset):
    """Sample i is a fixed function of i; __getitem__ calls are counted per index (shared with workers)."""

    def __init__(self, n: int):
        self.n = n
        self.calls = mp.RawArray("i", n)
        g = torch.Generator().manual_seed(0)
        self.freq = torch.rand(FEATURES, generator=g) * 0.01
        self.phase = torch.rand(FEATURES, generator=g) * 6.28
        self.proj = torch.randn(FEATURES, 2, generator=g)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.calls[i] += 1
        x = torch.sin(i * self.freq + self.phase) + torch.sin(i * 0.37 * self.freq.flip(0))
        s = x @ self.proj
        return x, int(s[0] > 0) * 2 + int(s[1] > 0)

    def reset(self) -> None:
        np.frombuffer(self.calls, dtype=np.int32)[:] = 0

    def counts(self) -> np.ndarray:
        return np.frombuffer(self.calls, dtype=np.int32).copy()


DEVICE = torch.device("cpu")


def loader(ds: Dataset, batch: int, workers: int, shuffle: bool, seed: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None,
                      pin_memory=DEVICE.type == "cuda")


def on_device(batches):
    for xb, yb in batches:
        yield xb.to(DEVICE, non_blocking=True), yb.to(DEVICE, non_blocking=True)


def hand_loop(ds: Generated, splits, epochs: int, workers: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = nnopt.build_model(MODEL, in_features=FEATURES, n_outputs=CLASSES).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)  # the kernel nnopt's adam uses
    train, val, test = (Subset(ds, [int(i) for i in idx]) for idx in splits)  # python ints, as nnopt's split
    train_loader = loader(train, BATCH, workers, True, seed)
    val_loader, test_loader = loader(val, 1024, workers, False, seed), loader(test, 1024, workers, False, seed)

    def accuracy(batches) -> float:
        model.eval()
        right = total = 0
        with torch.inference_mode():
            for xb, yb in on_device(batches):
                right += int((model(xb).argmax(1) == yb).sum())
                total += len(yb)
        model.train()
        return right / total

    for _ in range(epochs):
        losses = []
        for xb, yb in on_device(train_loader):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        float(torch.stack(losses).mean())
        accuracy(val_loader)
    return {"test_accuracy": accuracy(test_loader)}


def nnopt_fit(ds: Generated, epochs: int, workers: int, seed: int) -> dict:
    result = nnopt.fit(MODEL, ds, task="classification", n_classes=CLASSES, epochs=epochs, batch_size=BATCH,
                       lr=LR, num_workers=workers, seed=seed, threads=1, device=DEVICE.type)
    return {"test_accuracy": result.metrics["test"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(1)
    ds = Generated(args.rows)
    data = load_data(ds, task="classification", n_classes=CLASSES)  # nnopt's split, seed 0: both train on it
    splits = [np.asarray(getattr(data, s).dataset.indices) for s in ("train", "val", "test")]
    n_train = len(splits[0])
    small = Generated(3000)  # warm-up: imports and first-call costs are not the loops'
    nnopt_fit(small, 1, 0, 0)
    hand_loop(small, [range(2000), range(2000, 2500), range(2500, 3000)], 1, 0, 0)
    load1 = os.getloadavg()[0]
    results: dict = {}
    for r in range(args.rounds):
        for workers in args.workers:
            order = ["nnopt", "hand"] if r % 2 == 0 else ["hand", "nnopt"]
            for who in order:
                ds.reset()
                began = time.perf_counter()
                out = nnopt_fit(ds, args.epochs, workers, 0) if who == "nnopt" else \
                    hand_loop(ds, splits, args.epochs, workers, 0)
                wall = time.perf_counter() - began
                counts = ds.counts()
                entry = results.setdefault(f"{who}/{workers}", {"samples_per_s": [], "calls_per_train_sample": [],
                                                                "test_accuracy": []})
                entry["samples_per_s"].append(n_train * args.epochs / wall)
                entry["calls_per_train_sample"].append(float(counts[splits[0]].sum()) / (n_train * args.epochs))
                entry["test_accuracy"].append(out["test_accuracy"])
                print(f"round {r} workers {workers} {who}: {wall:.2f} s, "
                      f"{entry['samples_per_s'][-1]:.0f} samples/s, calls/sample/epoch "
                      f"{entry['calls_per_train_sample'][-1]:.3f}", flush=True)
    summary = {"rows": args.rows, "train_rows": n_train, "epochs": args.epochs, "rounds": args.rounds,
               "batch": BATCH, "model": MODEL, "device": args.device, "torch": torch.__version__, "python": platform.python_version(),
               "load_1min_before_after": [round(load1, 2), round(os.getloadavg()[0], 2)], "configs": {}}
    for workers in args.workers:
        mine, hand = results[f"nnopt/{workers}"], results[f"hand/{workers}"]
        ratios = [a / b for a, b in zip(mine["samples_per_s"], hand["samples_per_s"])]
        summary["configs"][str(workers)] = {
            "nnopt_samples_per_s": round(statistics.median(mine["samples_per_s"])),
            "hand_samples_per_s": round(statistics.median(hand["samples_per_s"])),
            "ratio_median": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios],
            "nnopt_calls_per_train_sample": statistics.median(mine["calls_per_train_sample"]),
            "hand_calls_per_train_sample": statistics.median(hand["calls_per_train_sample"]),
            "test_accuracy": {"nnopt": statistics.median(mine["test_accuracy"]),
                              "hand": statistics.median(hand["test_accuracy"])}}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
