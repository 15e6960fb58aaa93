"""Tuning efficiency and overhead.

Efficiency at equal total epochs: random search and TPE run 64 trials of 10 epochs (640 epochs); TPE + ASHA
runs until it too has spent 640 epochs (pruned trials stop early, so it fits more trials in). 5 seeds, on
digits and mnist1d; for each run the best validation accuracy against epochs spent. Reported: the best at
640 epochs, and the epochs each method needed to reach random's 64-trial best (median over seeds); target:
TPE+ASHA <= 1/3 of random's.

Overhead: 1000 trials of a trivial objective on the journal-file storage, ms per trial for random and TPE;
then trials/s of 2 workers vs 1 on trials that train a small model on one thread.

    .venv/bin/python benchmarks/tune_efficiency.py [--seeds 5] [--trials 64] [--part efficiency|overhead|all]
        [--methods random,tpe,tpe+asha] [--data digits,mnist1d] [--val-fraction 0.15] [--jobs 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import optuna
import yaml

from nnopt.search import tune

SPACE = {
    "optimizer": {"choices": ["sgd", "momentum", "adam", "rmsprop"]},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "hidden": {"type": "int", "low": 16, "high": 256, "log": True},
    "batch_size": {"choices": [32, 64, 128]},
}
METHODS = {"random": ("random", "none", {}), "tpe": ("tpe", "none", {}), "tpe+asha": ("tpe", "asha", {})}
VARIANTS = {  # other settings to measure with --methods
    "tpe+asha-min3": ("tpe", "asha", {"min_resource": 3}),
    "tpe+hyperband": ("tpe", "hyperband", {}),
    "random+asha": ("random", "asha", {}),
    "tpe+asha-min2": ("tpe", "asha", {"min_resource": 2}),
    "tpe+asha-rf2": ("tpe", "asha", {"reduction_factor": 2}),
    "tpe+asha-rf4": ("tpe", "asha", {"reduction_factor": 4}),
}


def spec_file(folder: Path, data: str, epochs: int, val_fraction: float | None = None) -> Path:
    path = folder / f"{data}.yaml"
    train = {"epochs": epochs, **({"val_fraction": val_fraction} if val_fraction else {})}
    path.write_text(yaml.safe_dump({"data": data, "model": "mlp:{hidden}", "train": train,
                                    "objective": {"metric": "val_accuracy", "direction": "maximize"},
                                    "space": SPACE}))
    return path


def curve(trials: list[dict]) -> list[tuple[int, float]]:
    """(cumulative epochs, best val accuracy so far) after each finished trial, in trial order."""
    spent, best, points = 0, 0.0, []
    for t in sorted(trials, key=lambda t: t["number"]):
        spent += t["user_attrs"].get("epochs_run", 0)
        if t["state"] == "COMPLETE":
            best = max(best, t["values"][0])
        points.append((spent, best))
    return points


def epochs_to_reach(points: list[tuple[int, float]], value: float) -> int | None:
    return next((spent for spent, best in points if best >= value), None)


def one_seed(data: str, seed: int, trials: int, epochs: int, methods: dict,
             val_fraction: float | None = None) -> dict[str, dict]:
    """Every method on one dataset and seed: {method: {seed, best, epochs, wall_s, epochs_to_random_best}}."""
    rows, curves = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = spec_file(folder, data, epochs, val_fraction)
        for name, (sampler, pruner, pruner_params) in methods.items():
            started = time.perf_counter()
            # pruned trials cost less: give ASHA enough trials to spend the same epochs, then cut there
            n = trials if pruner == "none" else 4 * trials
            result = tune(spec, sampler=sampler, pruner=pruner, trials=n, seed=seed,
                          pruner_params=pruner_params or None, out=folder / f"{data}-{name}-{seed}")
            budget = trials * epochs
            curves[name] = [(spent, best) for spent, best in curve(result.trials) if spent <= budget]
            rows[name] = {"seed": seed, "best": curves[name][-1][1], "epochs": curves[name][-1][0],
                          "wall_s": time.perf_counter() - started}
    target = curves["random"][-1][1]
    for name in methods:
        rows[name]["epochs_to_random_best"] = epochs_to_reach(curves[name], target)
    return rows


def efficiency(seeds: int, trials: int, epochs: int, datasets: list[str], methods: dict,
               val_fraction: float | None = None, jobs: int = 1) -> dict:
    """one_seed for every dataset and seed; `jobs` > 1 runs that many (dataset, seed) pairs at once, each in a
    process of its own (the trials run on one thread, so a pair is one core's work; results are the same)."""
    units = [(data, seed) for data in datasets for seed in range(seeds)]
    results = {data: {name: [] for name in methods} for data in datasets}

    def record(data: str, seed: int, rows: dict) -> None:
        for name, row in rows.items():
            results[data][name].append(row)
        print(data, seed, {n: (round(r["best"], 4), r["epochs"], r["epochs_to_random_best"]) for n, r in rows.items()},
              flush=True)

    if jobs <= 1:
        for data, seed in units:
            record(data, seed, one_seed(data, seed, trials, epochs, methods, val_fraction))
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(one_seed, data, seed, trials, epochs, methods, val_fraction): (data, seed)
                       for data, seed in units}
            for future in as_completed(futures):
                record(*futures[future], future.result())
    for rows in results.values():
        for runs in rows.values():
            runs.sort(key=lambda r: r["seed"])
    return results


def overhead(trials: int) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in ("random", "tpe"):
            started = time.perf_counter()
            tune(lambda p: (p["x"] - 0.3) ** 2, space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
                 directions="minimize", sampler=sampler, trials=trials, seed=0, out=Path(tmp) / sampler)
            out[f"{sampler}_ms_per_trial"] = 1000 * (time.perf_counter() - started) / trials
        for sampler in ("random", "tpe"):  # the same loop in plain Optuna, for reference
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(Path(tmp) / f"optuna-{sampler}.journal")))
            sampler_obj = optuna.samplers.RandomSampler(seed=0) if sampler == "random" else \
                optuna.samplers.TPESampler(seed=0)
            study = optuna.create_study(storage=storage, sampler=sampler_obj)
            started = time.perf_counter()
            study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=trials)
            out[f"optuna_{sampler}_ms_per_trial"] = 1000 * (time.perf_counter() - started) / trials
        spec = spec_file(Path(tmp), "mnist1d", 20)  # about 1 s a trial on one thread
        for workers in (1, 2):
            started = time.perf_counter()
            tune(spec, sampler="random", pruner="none", trials=40, workers=workers, seed=0,
                 out=Path(tmp) / f"w{workers}")
            out[f"workers{workers}_trials_per_s"] = 40 / (time.perf_counter() - started)
        out["workers_speedup"] = out["workers2_trials_per_s"] / out["workers1_trials_per_s"]
    return out


def summarize(results: dict) -> None:
    """Medians over seeds; a seed that never reached random's best counts as never (infinitely many epochs)."""
    for data, rows in results.items():
        print(f"\n{data}: median over {len(rows['random'])} seeds")
        budget = statistics.median(r["epochs"] for r in rows["random"])
        for name, runs in rows.items():
            reach = [r["epochs_to_random_best"] for r in runs]
            median = statistics.median(float("inf") if r is None else r for r in reach)
            print(f"  {name:<14} best {statistics.median(r['best'] for r in runs):.4f}  "
                  f"epochs {statistics.median(r['epochs'] for r in runs):>5.0f}  "
                  f"to random's best: {median:>5.0f} ({sum(r is not None for r in reach)}/{len(reach)} reached; "
                  f"{median / budget:.2f} of random's epochs)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--part", choices=["efficiency", "overhead", "all"], default="all")
    parser.add_argument("--data", default="digits,mnist1d", help="comma-separated datasets for the efficiency part")
    parser.add_argument("--val-fraction", type=float, help="validation split of every trial (default 0.15)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {', '.join([*METHODS, *VARIANTS])} (random is always run)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="(dataset, seed) pairs run at once, a process each (epoch counts do not depend on it)")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    report = {}
    if args.part in ("overhead", "all"):
        report["overhead"] = overhead(1000)
        print(json.dumps(report["overhead"], indent=2), flush=True)
    if args.part in ("efficiency", "all"):
        report["efficiency"] = efficiency(args.seeds, args.trials, args.epochs, args.data.split(","),
                                            {name: {**METHODS, **VARIANTS}[name]
                                             for name in dict.fromkeys(["random", *args.methods.split(",")])},
                                            args.val_fraction, args.jobs)
        summarize(report["efficiency"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
