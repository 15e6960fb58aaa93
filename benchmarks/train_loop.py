"""Training-loop speed: nnopt.fit vs a hand-written PyTorch loop vs a DataLoader loop.

MLP 64-128-10 on digits repeated to ~57k rows, batch 64, Adam (lr 1e-3), 3 epochs, 1 thread.
All three train on the same training split (nnopt's seeded split of the repeated data); the loops
run round-robin (--repeats times each), and the best and median times are reported. nnopt's time is the whole
fit() call: model build, the per-epoch train metrics (running sums of the batches trained on; --exact adds a run
that scores the training split again after every epoch) and validation scoring, and the final train / val / test
scoring included.

    .venv/bin/python benchmarks/train_loop.py [--repeats 5] [--epochs 3] [--exact]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import nnopt
from nnopt.data import load_data

BATCH, LR, REPEAT_DATA = 64, 1e-3, 32


def make_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nnopt.build_model("mlp:128", in_features=64, n_outputs=10)


def hand_loop(X: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> int:
    """What a careful user writes: index slicing, torch.optim.Adam defaults, loss.item() for the log."""
    model = make_mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    steps, n = 0, len(X)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        running = 0.0
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            steps += 1
    return steps


def dataloader_loop(X: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> int:
    model = make_mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    steps = 0
    for _ in range(epochs):
        running = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            steps += 1
    return steps


def nnopt_fit(data, epochs: int, seed: int, train_metrics: str = "running") -> int:
    result = nnopt.fit("mlp:128", data, optimizer="adam", lr=LR, epochs=epochs, batch_size=BATCH, seed=seed,
                       threads=1, device="cpu", train_metrics=train_metrics)
    return epochs * -(-len(result.data.train) // BATCH)


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    steps = fn()
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--exact", action="store_true", help="also nnopt.fit with train_metrics='exact' (the training "
                                                             "split scored again after every epoch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = load_digits()
    X = digits.data.repeat(REPEAT_DATA, axis=0).astype("float32")
    y = digits.target.repeat(REPEAT_DATA)
    data = load_data((X, y), seed=0)
    Xt, yt = data.train.X, data.train.y
    runs = {
        "hand-written loop": lambda: hand_loop(Xt, yt, args.epochs, 0),
        "DataLoader loop": lambda: dataloader_loop(Xt, yt, args.epochs, 0),
        "nnopt.fit": lambda: nnopt_fit(data, args.epochs, 0),
    }
    if args.exact:
        runs["nnopt.fit exact"] = lambda: nnopt_fit(data, args.epochs, 0, "exact")
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    steps: dict[str, int] = {}
    for _ in range(args.repeats):  # round-robin, so a change in machine load hits every loop alike
        for name, fn in runs.items():
            seconds, steps[name] = timed(fn)
            times[name].append(seconds)
    results = {}
    for name in runs:
        best = min(times[name])
        results[name] = {"best_s": best, "median_s": statistics.median(times[name]), "steps": steps[name],
                         "steps_per_s": steps[name] / best,
                         "median_steps_per_s": steps[name] / statistics.median(times[name])}
    base = results["hand-written loop"]
    for row in results.values():
        row["ratio_vs_hand"] = row["steps_per_s"] / base["steps_per_s"]
        row["median_ratio_vs_hand"] = row["median_steps_per_s"] / base["median_steps_per_s"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"train rows {len(Xt)}, batch {BATCH}, {args.epochs} epochs, 1 thread, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'loop':<20}{'steps':>7}{'best s':>9}{'median s':>10}{'steps/s':>10}{'vs hand':>9}{'median':>8}")
    for name, row in results.items():
        print(f"{name:<20}{row['steps']:>7}{row['best_s']:>9.3f}{row['median_s']:>10.3f}"
              f"{row['steps_per_s']:>10.0f}{row['ratio_vs_hand']:>8.2f}x{row['median_ratio_vs_hand']:>7.2f}x")


if __name__ == "__main__":
    main()
