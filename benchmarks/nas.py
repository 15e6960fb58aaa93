"""Architecture search strategies at equal budget: regularized evolution vs random search vs TPE.

Part "synthetic": a NAS-Bench-201-shaped cell (6 edges x 5 operations = 15,625 cells) scored by a fixed random
table of per-edge values plus pairwise interactions, so the optimum is known by enumeration and nothing is
trained. Each strategy gets the same number of evaluations; reported over many seeds: the mean regret
(optimum - best found) and how often the optimum was found.

Part "train": `nnopt search` on real data (digits, mnist1d), the mlp preset, each candidate trained for
the same epochs; each strategy gets the same number of trained candidates, 5 seeds. Reported: the best
validation accuracy found (median and mean over seeds) and its test accuracy after retraining.

    .venv/bin/python benchmarks/nas.py [--part synthetic|train|all] [--seeds 5] [--trials 40] [--epochs 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nnopt.search import evolve, tune
from nnopt.search.nas import search

OPS = ("none", "skip", "conv1x1", "conv3x3", "avgpool")
EDGES = 6
STRATEGIES = ("random", "evolution", "tpe")


def synthetic_table(seed: int = 2019) -> tuple[np.ndarray, np.ndarray]:
    """Per-edge op values and pairwise (edge, op, edge, op) interactions of the synthetic cell."""
    rng = np.random.default_rng(seed)
    unary = rng.normal(0.0, 1.0, size=(EDGES, len(OPS)))
    pair = rng.normal(0.0, 0.5, size=(EDGES, len(OPS), EDGES, len(OPS)))
    return unary, pair


def cell_score(choice: tuple[int, ...], unary: np.ndarray, pair: np.ndarray) -> float:
    value = sum(unary[e, o] for e, o in enumerate(choice))
    value += sum(pair[a, choice[a], b, choice[b]] for a in range(EDGES) for b in range(a + 1, EDGES))
    return float(value)


def synthetic(seeds: int, trials: int) -> dict:
    unary, pair = synthetic_table()
    scores = {c: cell_score(c, unary, pair) for c in itertools.product(range(len(OPS)), repeat=EDGES)}
    optimum = max(scores.values())
    ranked = sorted(scores.values(), reverse=True)
    space = {f"edge{e}": {"choices": list(OPS)} for e in range(EDGES)}

    def objective(params: dict) -> float:
        return scores[tuple(OPS.index(params[f"edge{e}"]) for e in range(EDGES))]

    out = {"cells": len(scores), "optimum": optimum, "trials": trials, "seeds": seeds, "strategies": {}}
    for strategy in STRATEGIES:
        best = []
        started = time.perf_counter()
        for seed in range(seeds):
            if strategy == "evolution":
                result = evolve(space, objective, trials=trials, seed=seed)
            else:
                result = tune(objective, space=space, sampler=strategy, trials=trials, seed=seed)
            best.append(result.best_value)
        regrets = [optimum - b for b in best]
        out["strategies"][strategy] = {
            "mean_regret": statistics.mean(regrets), "median_regret": statistics.median(regrets),
            "found_optimum": sum(r < 1e-12 for r in regrets),
            "mean_rank_of_best": statistics.mean(ranked.index(b) + 1 for b in best),
            "seconds": time.perf_counter() - started,
        }
        print(strategy, json.dumps(out["strategies"][strategy]), flush=True)
    return out


def train(datasets: list[str], seeds: int, trials: int, epochs: int) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in datasets:
            rows: dict = {s: [] for s in STRATEGIES}
            for seed in range(seeds):
                for strategy in STRATEGIES:
                    started = time.perf_counter()
                    result = search(data, space="mlp", strategy=strategy, trials=trials, epochs=epochs, seed=seed,
                                    out=Path(tmp) / f"{data}-{strategy}-{seed}")
                    best = next(t for t in result.trials if t["number"] == result.best_trials[0])
                    summary = result.run_dir / "best" / "summary.json"
                    test = json.loads(summary.read_text())["metrics"]["test"] if summary.is_file() else None
                    rows[strategy].append({
                        "seed": seed, "best_val": result.best_value, "model": best["user_attrs"]["model"],
                        "params": best["user_attrs"]["params"], "latency_ms": best["user_attrs"]["latency_ms"],
                        "test_accuracy": _test_accuracy(test), "seconds": time.perf_counter() - started})
                    print(data, seed, strategy, json.dumps(rows[strategy][-1]), flush=True)
            out[data] = rows
    return out


def _test_accuracy(test: dict | None) -> float | None:
    return test.get("accuracy") if test else None


def summarize(report: dict) -> None:
    if "synthetic" in report:
        s = report["synthetic"]
        print(f"\nsynthetic cell ({s['cells']} cells, optimum {s['optimum']:.4f}), {s['trials']} evaluations, "
              f"{s['seeds']} seeds")
        for name, r in s["strategies"].items():
            print(f"  {name:<10} mean regret {r['mean_regret']:.4f}  optimum found {r['found_optimum']}/"
                  f"{s['seeds']}  mean rank of best {r['mean_rank_of_best']:.1f}")
    for data, rows in report.get("train", {}).items():
        print(f"\n{data}: best val accuracy over {len(rows['random'])} seeds")
        for name, runs in rows.items():
            vals = [r["best_val"] for r in runs]
            tests = [r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]
            print(f"  {name:<10} median {statistics.median(vals):.4f}  mean {statistics.mean(vals):.4f}  "
                  f"test (retrained best) mean {statistics.mean(tests) if tests else float('nan'):.4f}  "
                  f"params median {statistics.median(r['params'] for r in runs):,.0f}  "
                  f"{statistics.median(r['seconds'] for r in runs):.0f} s a search")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["synthetic", "train", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--synthetic-seeds", type=int, default=30)
    parser.add_argument("--synthetic-trials", type=int, default=150)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default="digits,mnist1d")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    report: dict = {}
    if args.part in ("synthetic", "all"):
        report["synthetic"] = synthetic(args.synthetic_seeds, args.synthetic_trials)
    if args.part in ("train", "all"):
        report["train"] = train(args.data.split(","), args.seeds, args.trials, args.epochs)
    summarize(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
