"""Tuning efficiency and overhead.

Efficiency at equal total epochs: random search and TPE run 64 trials of 10 epochs (640 epochs); TPE + ASHA
runs until it too has spent 640 epochs (pruned trials stop early, so it fits more trials in). 5 seeds, on
digits and mnist1d; for each run the best validation accuracy against epochs spent. Reported: the best at
640 epochs, and the epochs each method needed to reach random's 64-trial best (median over seeds); target:
TPE+ASHA <= 1/3 of random's.

Overhead: what a user calls, `nnopt.tune(f, space={x, y}, sampler=..., trials=1000[, out=DIR])` on a 2-parameter
quadratic (study creation, the trial loop, config.json, trials.json / trials.csv and, with out=, report.html
when report="auto" draws it), against plain Optuna doing the same in the same process (create_study + optimize,
the same sampler settings, a journal file or InMemoryStorage): median ms per trial over repeats run back to back in
rotating order, and the ratio; random and TPE, journal file and in memory. On the journal the same call with
report=True and with report=False runs in the same rounds, and each call's time in build_report is its own line.
Then the one-time start cost in a fresh interpreter, and trials/s of 2 workers vs 1 on trials that train a small
model on one thread.

    .venv/bin/python benchmarks/tune_efficiency.py [--seeds 5] [--trials 64] [--part efficiency|overhead|all]
        [--methods random,tpe,tpe+asha] [--data digits,mnist1d] [--val-fraction 0.15] [--jobs 1] [--json out.json]
        [--overhead-trials 1000] [--repeats 5] [--no-workers]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import optuna
import yaml

import nnopt
from nnopt import api as nnopt_api
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


QUADRATIC = {"x": {"type": "float", "low": -5.0, "high": 5.0}, "y": {"type": "float", "low": -5.0, "high": 5.0}}


def quadratic(params: dict) -> float:
    return (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2


def optuna_quadratic(trial: optuna.Trial) -> float:
    return quadratic({"x": trial.suggest_float("x", -5.0, 5.0), "y": trial.suggest_float("y", -5.0, 5.0)})


def optuna_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler nnopt builds for `name` (search._samplers.make_sampler), written with Optuna's own API."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


@contextlib.contextmanager
def report_timer(spent: list[float]) -> Iterator[None]:
    """Adds the seconds nnopt.tune spends drawing report.html to `spent` (the rest is the trial loop and files)."""
    original = nnopt_api.build_report

    def timed(run_dir):
        started = time.perf_counter()
        try:
            return original(run_dir)
        finally:
            spent.append(time.perf_counter() - started)

    nnopt_api.build_report = timed
    try:
        yield
    finally:
        nnopt_api.build_report = original


def one_round(sampler: str, journal: bool, trials: int, seed: int, folder: Path, turn: int) -> dict:
    """nnopt.tune as a user calls it (report="auto"), the same call with report=True and with report=False (on
    the journal, where there is a report), and the same study in plain Optuna (create_study + optimize, same
    sampler, same storage kind), one after the other in this process, the order rotated by `turn`:
    {nnopt_s, report_s[, drawn_s, drawn_report_s, bare_s], optuna_s}. report_s / drawn_report_s are the times
    the call spent in build_report, inside its own time; each *_cpu_s is the same run's CPU time (this process's:
    what a busy disk's fsync waits and other jobs' turns on the cores leave out)."""
    row = {}

    def run_nnopt(report: bool | str) -> None:
        spent: list[float] = []
        key = {"auto": "nnopt", True: "drawn", False: "bare"}[report]
        out = folder / f"nnopt-{sampler}-{seed}-{key}" if journal else None
        started, cpu = time.perf_counter(), time.process_time()
        with report_timer(spent), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # report="auto"'s note that it left the report out
            nnopt.tune(quadratic, space=QUADRATIC, directions="minimize", sampler=sampler, trials=trials,
                       seed=seed, out=out, report=report)
        row[f"{key}_s"], row[f"{key}_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu
        row["report_s" if key == "nnopt" else f"{key}_report_s"] = sum(spent)

    def run_optuna() -> None:
        started, cpu = time.perf_counter(), time.process_time()
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(folder / f"optuna-{sampler}-{seed}.journal"))) if journal else optuna.storages.InMemoryStorage()
        study = optuna.create_study(storage=storage, sampler=optuna_sampler(sampler, seed), direction="minimize")
        study.optimize(optuna_quadratic, n_trials=trials)
        row["optuna_s"], row["optuna_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu

    runs = [lambda: run_nnopt("auto"), run_optuna] + (
        [lambda: run_nnopt(True), lambda: run_nnopt(False)] if journal else [])
    for i in range(len(runs)):
        runs[(turn + i) % len(runs)]()
    return row


COLD = """
import sys, time
started = time.perf_counter()
if sys.argv[1] == "nnopt":
    import nnopt
    nnopt.tune(lambda p: (p["x"] - 1.0) ** 2 + (p["y"] + 2.0) ** 2, space={SPACE}, directions="minimize",
               sampler="random", trials=1, seed=0, out=sys.argv[2])
else:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(sys.argv[2] + ".journal")), direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -5.0, 5.0) - 1.0) ** 2
                   + (t.suggest_float("y", -5.0, 5.0) + 2.0) ** 2, n_trials=1)
print(time.perf_counter() - started)
"""


def cold_start(folder: Path, repeats: int) -> dict:
    """The one-time cost a user's script pays: a fresh interpreter imports the library and runs one trial to a
    journal file (for nnopt: `import nnopt; nnopt.tune(..., out=DIR)` with its report), median of `repeats`."""
    code = COLD.replace("{SPACE}", repr(QUADRATIC))
    times: dict[str, list[float]] = {"nnopt": [], "optuna": []}
    for repeat in range(repeats):
        for name in ("nnopt", "optuna") if repeat % 2 == 0 else ("optuna", "nnopt"):
            done = subprocess.run([sys.executable, "-c", code, name, str(folder / f"cold-{name}-{repeat}")],
                                  capture_output=True, text=True, check=True)
            times[name].append(float(done.stdout.split()[-1]))
    return {f"{name}_s": statistics.median(values) for name, values in times.items()}


def overhead(trials: int, repeats: int, workers: bool = True) -> dict:
    """ms per trial of nnopt.tune against plain Optuna on the same storage and sampler, a 2-parameter quadratic:
    each (sampler, storage) case run `repeats` times (random in memory 5 times as often), nnopt and Optuna back
    to back in rotating order (on the journal also nnopt with report=True and report=False); medians, the ratio of the medians
    and the median of the runs' ratios. Then the one-time start cost and 2 workers against 1."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict = {"trials": trials, "repeats": repeats, "cpu_count": os.cpu_count(), "load_before": os.getloadavg()}
    cases = [(sampler, journal) for sampler in ("random", "tpe") for journal in (True, False)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for sampler, journal in cases:  # warm-up: lazy imports (the report's matplotlib) are counted by cold_start
            one_round(sampler, journal, 20, 10_000, folder, 0)
        rows: dict[str, list[dict]] = {f"{s}/{'journal' if j else 'memory'}": [] for s, j in cases}
        for repeat in range(repeats):
            for sampler, journal in cases:
                # a random study in memory takes a fraction of a second: 5 runs a repeat, for a steadier median
                for inner in range(1 if journal or sampler == "tpe" else 5):
                    row = one_round(sampler, journal, trials, repeat, folder, turn=repeat + inner)
                    rows[f"{sampler}/{'journal' if journal else 'memory'}"].append(row)
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
                f"{name} {1000 * r[-1]['nnopt_s'] / trials:.2f}/{1000 * r[-1]['optuna_s'] / trials:.2f}"
                + (f" (report=False {1000 * r[-1]['bare_s'] / trials:.2f})" if "bare_s" in r[-1] else "")
                for name, r in rows.items()), flush=True)
        for name, runs in rows.items():
            ms = {key: 1000 * statistics.median(r[key] for r in runs) / trials
                  for key in ("nnopt_s", "report_s", "drawn_s", "drawn_report_s", "bare_s", "optuna_s")
                  if key in runs[0]}
            entry = out[name] = {
                "nnopt_ms_per_trial": ms["nnopt_s"], "report_ms_per_trial": ms["report_s"],
                "optuna_ms_per_trial": ms["optuna_s"], "ratio": ms["nnopt_s"] / ms["optuna_s"],
                "per_pair_ratios": [r["nnopt_s"] / r["optuna_s"] for r in runs],
                "median_pair_ratio": statistics.median(r["nnopt_s"] / r["optuna_s"] for r in runs), "pairs": runs}
            cpu = {key: statistics.median(r[f"{key}_cpu_s"] / r["optuna_cpu_s"] for r in runs)
                   for key in ("nnopt", "drawn", "bare") if f"{key}_cpu_s" in runs[0]}
            entry["median_cpu_ratio"] = cpu["nnopt"]
            line = (f"{name:15} nnopt {ms['nnopt_s']:6.2f} ms/trial (of which report.html {ms['report_s']:.2f})  "
                    f"optuna {ms['optuna_s']:6.2f}  ratio {entry['ratio']:.2f} (median of {len(runs)} runs' "
                    f"ratios {entry['median_pair_ratio']:.2f}; of their CPU times {cpu['nnopt']:.2f})")
            if "drawn_s" in ms:  # the same call with report=True, measured in the same rounds
                entry.update(drawn_ms_per_trial=ms["drawn_s"], drawn_ratio=ms["drawn_s"] / ms["optuna_s"],
                             drawn_report_ms_per_trial=ms["drawn_report_s"],
                             median_drawn_pair_ratio=statistics.median(r["drawn_s"] / r["optuna_s"] for r in runs),
                             median_drawn_cpu_ratio=cpu["drawn"])
                line += (f"\n{'':15} report=True {ms['drawn_s']:6.2f} ms/trial (of which report.html "
                         f"{ms['drawn_report_s']:.2f})  ratio {entry['drawn_ratio']:.2f} (median of runs' ratios "
                         f"{entry['median_drawn_pair_ratio']:.2f}; of their CPU times {cpu['drawn']:.2f})")
            if "bare_s" in ms:  # the same call with report=False, measured in the same rounds
                entry.update(bare_ms_per_trial=ms["bare_s"], bare_ratio=ms["bare_s"] / ms["optuna_s"],
                             median_bare_pair_ratio=statistics.median(r["bare_s"] / r["optuna_s"] for r in runs),
                             median_bare_cpu_ratio=cpu["bare"])
                line += (f"\n{'':15} report=False {ms['bare_s']:6.2f} ms/trial  ratio {entry['bare_ratio']:.2f} "
                         f"(median of runs' ratios {entry['median_bare_pair_ratio']:.2f}; of their CPU times "
                         f"{cpu['bare']:.2f})")
            print(line, flush=True)
        out["cold_start"] = cold = cold_start(folder, 3)
        cold["extra_ms_per_trial"] = 1000 * (cold["nnopt_s"] - cold["optuna_s"]) / trials
        print(f"cold start (fresh interpreter, import + 1 trial, journal): nnopt {cold['nnopt_s']:.2f} s, optuna "
              f"{cold['optuna_s']:.2f} s: {cold['extra_ms_per_trial']:.2f} ms a trial more over {trials} trials",
              flush=True)
        if workers:
            spec = spec_file(folder, "mnist1d", 20)  # about 1 s a trial on one thread
            for n in (1, 2):
                started = time.perf_counter()
                tune(spec, sampler="random", pruner="none", trials=40, workers=n, seed=0, out=folder / f"w{n}")
                out[f"workers{n}_trials_per_s"] = 40 / (time.perf_counter() - started)
            out["workers_speedup"] = out["workers2_trials_per_s"] / out["workers1_trials_per_s"]
            print(f"2 workers vs 1: {out['workers2_trials_per_s']:.2f} vs {out['workers1_trials_per_s']:.2f} "
                  f"trials/s = {out['workers_speedup']:.2f}x", flush=True)
    out["load_after"] = os.getloadavg()
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
    parser.add_argument("--overhead-trials", type=int, default=1000, help="trials of each overhead run")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each overhead pair (medians)")
    parser.add_argument("--no-workers", action="store_true", help="overhead part: skip the 2-workers run")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    report = {}
    if args.part in ("overhead", "all"):
        report["overhead"] = overhead(args.overhead_trials, args.repeats, workers=not args.no_workers)
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
