"""Default learning rates, batch size and epochs of nnopt's optimizer table, measured.

Every run goes through nnopt.fit, exactly what `nnopt train --optimizer NAME [--lr LR]` runs (default split
70/15/15, default scaling, the optimizer's default batch size unless a part sets one), on one thread.

Parts:
- lr: every optimizer of the table x a 9-point learning-rate grid (the 1-2-5 ladder, 4 points either side of
  CENTER[name]; the previous default is added when it is not on it) x 5 datasets x seeds; mlp:64, 10 epochs.
- gd: gd's grid again with GD_EPOCHS full-batch epochs (10 epochs are only 10 steps of gradient descent).
- batch: Adam, batch 16 / 32 / 64 / 128 / full x 5 lrs x datasets x seeds; mlp:64, 10 epochs.
- epochs: Adam at its default lr and batch, 5 / 10 / 20 / 40 epochs x datasets x seeds; mlp:64.
- model: each optimizer at its previous and its present default on the CLI's default model (mlp:128,64), its
  default epochs, on digits, mnist1d and diabetes: do defaults chosen on one hidden layer hold on two?
- long: the same pairs on mlp:64 with 4x the default epochs (40; gd 400): do they hold on longer runs?
- user: the reported command, `nnopt train --data digits --model mlp:128 --epochs 15`, with the present and the
  previous defaults, against a plain hand-written torch loop (Adam 1e-3, batch 32) on the same splits.

Datasets: digits and mnist1d (built in), penguins (species from the four body measurements, the palmerpenguins
package's table, 342 rows; rows with a missing measurement dropped; the text columns island and sex left out,
since nnopt reads numeric features only), diabetes (built in, regression) and penguins-mass (body mass in grams
from bill length, bill depth and flipper length). The penguins tables are written as CSV files and read as a
user's file is.

Each run records loss_ratio (the last epoch's mean training loss over the first epoch's: what
tests/optim/test_defaults.py asserts), and the validation and test score: accuracy, or R² for regression.
A run that diverges (nnopt's DivergedError, or non-finite outputs at evaluation) scores nothing.

The rule for a default lr (choose()): per dataset, the median validation score over seeds at each lr, normalized
as (score - chance) / (best over the grid - chance), chance being 1 / classes for accuracy and 0 for R² (the
mean's), clipped to [0, 1], then averaged over the datasets (a mean, not a median: an lr that fails on one
dataset must pay for it). The smallest lr whose average is within TOLERANCE of the best is the default: the
optimum is flat on top, a smaller step keeps further from divergence on networks and data the sweep did not
see, and runs longer than 10 epochs want smaller steps, not larger. TOLERANCE is about twice the seed-to-seed
standard error of a grid point's average (printed as "se"; median 0.009 over the optimizers with 3 seeds).
gd's default comes from the gd part, since it trains GD_EPOCHS epochs by default.

    .venv/bin/python benchmarks/defaults_sweep.py [--part lr,gd,batch,epochs,model,long,user]
        [--optimizers adam,gd] [--datasets digits,mnist1d,penguins,diabetes,penguins-mass] [--seeds 3] [--quick]
        [--jobs 1] [--json out.json] [--summarize out.json]
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.resources
import json
import math
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nnopt
from nnopt.config import FULL_BATCH_EPOCHS
from nnopt.errors import DivergedError, NnoptError
from nnopt.optim import OPTIMIZERS

MODEL, EPOCHS, GD_EPOCHS = "mlp:64", 10, FULL_BATCH_EPOCHS
DATASETS = ("digits", "mnist1d", "penguins", "diabetes", "penguins-mass")
PARTS = ("lr", "gd", "batch", "epochs", "model", "long", "user")
LADDER = (1, 2, 5)
TOLERANCE = 0.02  # of the normalized score: lrs closer than this are not told apart (2 standard errors)
# The defaults before this sweep (nnopt 0.1.0), kept here so the comparison can be rerun after the table changed.
PREVIOUS = {"gd": 0.1, "sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 1e-3,
            "adam": 1e-3, "adamw": 1e-3, "nadam": 2e-3, "radam": 1e-3, "adamax": 2e-3, "adadelta": 1.0,
            "adafactor": 1e-2, "muon": 1e-3, "lion": 1e-4, "schedulefree": 2.5e-3}
PREVIOUS_BATCH = 64
# Grid centres, set from a one-seed scan of 13 ladder points around each previous default on four of the
# datasets: the optimum lay 3-100x above the previous default for most optimizers (10 epochs of a small
# network take 40-550 steps, and digits' pixels are scaled to [0, 1], not standardized).
CENTER = {"gd": 0.2, "sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 5e-3,
          "adam": 5e-3, "adamw": 5e-3, "nadam": 5e-3, "radam": 0.02, "adamax": 0.02, "adadelta": 5.0,
          "adafactor": 0.1, "muon": 0.01, "lion": 2e-3, "schedulefree": 0.02}
BATCHES = (16, 32, 64, 128, "full")
EPOCH_COUNTS = (5, 10, 20, 40)


def ladder(center: float, below: int = 4, above: int = 4) -> list[float]:
    """Points of the 1-2-5 ladder (..., 0.01, 0.02, 0.05, 0.1, ...) around `center`, which must be on it."""
    exponent = math.floor(math.log10(center) + 1e-9)
    index = 3 * exponent + min(range(3), key=lambda k: abs(LADDER[k] - center / 10 ** exponent))
    return [float(f"{LADDER[i % 3] * 10.0 ** (i // 3):.0e}") for i in range(index - below, index + above + 1)]


def grid(name: str, points: int = 9) -> list[float]:
    lrs = ladder(CENTER[name], (points - 1) // 2, points // 2)
    return sorted({*lrs, PREVIOUS[name]})


def write_penguins(folder: Path) -> dict[str, tuple[str, str]]:
    """The penguins table as two CSV files: {name: (path, target column)}."""
    source = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
    with source.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    measures = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    rows = [r for r in rows if all(r[c] not in ("", "NA") for c in measures)]
    tables = {"penguins": (measures, "species"), "penguins-mass": (measures[:3], "body_mass_g")}
    paths = {}
    for name, (features, target) in tables.items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*features, target])
            writer.writerows([*(r[c] for c in features), r[target]] for r in rows)
        paths[name] = (str(path), target)
    return paths


@functools.lru_cache(maxsize=16)
def load(dataset: str, seed: int, files: tuple[tuple[str, tuple[str, str]], ...]) -> Any:
    """The split fit() would make from the same source and seed, loaded once per process."""
    path, target = dict(files).get(dataset, (dataset, None))
    return nnopt.load_data(path, target=target, seed=seed)


def run(job: dict[str, Any]) -> dict[str, Any]:
    """One nnopt.fit run -> a flat record (job settings + loss ratio + validation and test scores)."""
    data = load(job["dataset"], job["seed"], job["files"])
    metric = "accuracy" if data.task == "classification" else "r2"
    chance = 1.0 / data.n_classes if metric == "accuracy" else 0.0
    record = {k: v for k, v in job.items() if k != "files"}
    record.update(metric=metric, chance=chance, diverged=False)
    started = time.perf_counter()
    try:
        result = nnopt.fit(job["model"], data, optimizer=job["optimizer"], lr=job["lr"], epochs=job["epochs"],
                           batch_size=job["batch_size"], seed=job["seed"], threads=1, device="cpu")
    except (DivergedError, ValueError) as error:  # ValueError: sklearn's metrics refused non-finite outputs
        record.update(diverged=True, error=str(error)[:200], val=None, test=None, loss_ratio=None)
    else:
        history = result.history
        record.update(lr_used=result.config["lr"], batch_used=result.config["batch_size"], epochs_run=result.epochs,
                      first_loss=history[0]["train_loss"], last_loss=history[-1]["train_loss"],
                      loss_ratio=history[-1]["train_loss"] / history[0]["train_loss"],
                      val=result.metrics["val"].get(metric), test=result.metrics["test"].get(metric))
        if record["val"] is None:
            record["diverged"] = True
    record["wall_s"] = round(time.perf_counter() - started, 3)
    return record


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def execute(jobs: list[dict[str, Any]], processes: int, label: str) -> list[dict[str, Any]]:
    started, records = time.perf_counter(), []
    step = max(1, len(jobs) // 20)

    def note(record: dict[str, Any]) -> None:
        records.append(record)
        if len(records) % step == 0 or len(records) == len(jobs):
            print(f"  {label}: {len(records)}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s", flush=True)

    if processes <= 1:
        _init_worker()
        for job in jobs:
            note(run(job))
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            for record in pool.map(run, jobs, chunksize=4):
                note(record)
    return records


def jobs_for(part: str, optimizers: list[str], datasets: list[str], seeds: list[int], files: tuple,
             quick: bool) -> list[dict[str, Any]]:
    base = {"files": files, "model": MODEL, "epochs": EPOCHS, "batch_size": None}
    points = 5 if quick else 9
    out: list[dict[str, Any]] = []
    for dataset in datasets:
        for seed in seeds:
            common = {**base, "dataset": dataset, "seed": seed}
            if part == "lr":
                out += [{**common, "part": part, "optimizer": name, "lr": lr}
                        for name in optimizers for lr in grid(name, points)]
            elif part == "gd" and "gd" in optimizers:
                out += [{**common, "part": part, "optimizer": "gd", "lr": lr, "epochs": GD_EPOCHS}
                        for lr in grid("gd", points)]
            elif part == "batch":
                out += [{**common, "part": part, "optimizer": "adam", "lr": lr, "batch_size": batch}
                        for batch in BATCHES for lr in ladder(CENTER["adam"], 2, 2)]
            elif part == "epochs":
                out += [{**common, "part": part, "optimizer": "adam", "lr": None, "epochs": epochs}
                        for epochs in EPOCH_COUNTS]
            elif part in ("model", "long") and dataset in ("digits", "mnist1d", "diabetes"):
                for name in optimizers:
                    # each optimizer's default epochs (gd's are GD_EPOCHS), 4x as many for the long runs
                    epochs = GD_EPOCHS if OPTIMIZERS.get(name).full_batch else EPOCHS
                    epochs *= 4 if part == "long" else 1
                    change = {"model": "mlp:128,64"} if part == "model" else {}
                    out += [{**common, "part": part, "optimizer": name, "lr": lr, "epochs": epochs, **change,
                             "which": which} for which, lr in (("previous", PREVIOUS[name]), ("default", None))]
    return out


# ---- the user's command against a hand-written loop ----

def handwritten_adam(seed: int, epochs: int = 15, batch: int = 32, lr: float = 1e-3) -> float:
    """A plain torch loop on nnopt's split of digits: Linear-ReLU-Linear (128 hidden), Adam, shuffled batches."""
    import torch
    from torch import nn

    data = nnopt.load_data("digits", seed=seed)
    (x, y), (xt, yt) = ((torch.as_tensor(s.X, dtype=torch.float32).flatten(1), torch.as_tensor(s.y).long())
                        for s in (data.train, data.test))
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((net(xt).argmax(1) == yt).float().mean())


def user_check(seeds: list[int]) -> dict[str, Any]:
    rows = {}
    settings = {"defaults": {}, "previous defaults": {"lr": PREVIOUS["adam"], "batch_size": PREVIOUS_BATCH}}
    for label, extra in settings.items():
        accs = [nnopt.fit("mlp:128", "digits", epochs=15, seed=s, threads=1, device="cpu", **extra)
                .metrics["test"]["accuracy"] for s in seeds]
        rows[label] = accs
    rows["hand-written Adam 1e-3, batch 32"] = [handwritten_adam(s) for s in seeds]
    for label, accs in rows.items():
        print(f"  {label:<34} test accuracy {statistics.mean(accs):.4f}  ({', '.join(f'{a:.4f}' for a in accs)})")
    return rows


# ---- summaries ----

def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(records: list[dict[str, Any]], key: str) -> dict[str, dict[Any, dict[str, Any]]]:
    """{group: {setting: {dataset: median val, ..., "_ratio": {dataset: median loss ratio}, "_div": n}}}."""
    grouped: dict[str, dict[Any, dict[str, Any]]] = {}
    for r in records:
        group = grouped.setdefault(r["optimizer"], {}).setdefault(r[key], {})
        group.setdefault("_runs", []).append(r)
    for settings in grouped.values():
        for cell in settings.values():
            runs = cell.pop("_runs")
            for dataset in dict.fromkeys(r["dataset"] for r in runs):
                mine = [r for r in runs if r["dataset"] == dataset]
                # a diverged seed scores the chance level: it must pull the median down, not vanish from it
                cell[dataset] = _median([r["chance"] if r["val"] is None else r["val"] for r in mine])
                cell.setdefault("_ratio", {})[dataset] = _median([r["loss_ratio"] for r in mine
                                                                  if r["loss_ratio"] is not None])
                cell.setdefault("_chance", {})[dataset] = mine[0]["chance"]
            cell["_div"] = sum(r["diverged"] for r in runs)
    return grouped


def normalized(settings: dict[Any, dict[str, Any]]) -> dict[Any, float]:
    """Mean over datasets of (median score - chance) / (best median score over the settings - chance)."""
    datasets = [d for d in next(iter(settings.values())) if not d.startswith("_")]
    scores: dict[Any, list[float]] = {s: [] for s in settings}
    for dataset in datasets:
        chance = next(iter(settings.values()))["_chance"][dataset]
        best = max(cell[dataset] for cell in settings.values())
        for setting, cell in settings.items():
            gain = (cell[dataset] - chance) / (best - chance) if best > chance else 0.0
            scores[setting].append(min(1.0, max(0.0, gain)))
    return {s: statistics.mean(v) for s, v in scores.items()}


def standard_errors(settings: dict[Any, dict[str, Any]], runs: list[dict[str, Any]]) -> dict[Any, float]:
    """Seed-to-seed standard error of each setting's mean normalized score (each seed normalized like the medians)."""
    first = next(iter(settings.values()))
    datasets = [d for d in first if not d.startswith("_")]
    best = {d: max(cell[d] for cell in settings.values()) for d in datasets}
    per_seed: dict[tuple[Any, int], list[float]] = {}
    for r in runs:
        chance, score = r["chance"], r["chance"] if r["val"] is None else r["val"]
        top = best[r["dataset"]]
        gain = (score - chance) / (top - chance) if top > chance else 0.0
        per_seed.setdefault((r["lr"], r["seed"]), []).append(min(1.0, max(0.0, gain)))
    out = {}
    for setting in settings:
        means = [statistics.mean(v) for (lr, _), v in per_seed.items() if lr == setting]
        out[setting] = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0
    return out


def choose(norm: dict[float, float]) -> float:
    best = max(norm.values())
    return min(lr for lr, score in norm.items() if score >= best - TOLERANCE)


def summarize_lr(records: list[dict[str, Any]], epochs_note: str = "") -> dict[str, Any]:
    summary, errors_at_best = {}, []
    for name, settings in table(records, "lr").items():
        norm = normalized(settings)
        se = standard_errors(settings, [r for r in records if r["optimizer"] == name])
        chosen = choose(norm)
        errors_at_best.append(se[max(norm, key=norm.get)])
        summary[name] = {"chosen": chosen, "previous": PREVIOUS.get(name), "grid": {
            lr: {**{k: v for k, v in cell.items() if not k.startswith("_")}, "normalized": norm[lr], "se": se[lr],
                 "loss_ratio": cell["_ratio"], "diverged": cell["_div"]} for lr, cell in sorted(settings.items())}}
        edge = " (at the grid's edge: widen it)" if chosen in (min(settings), max(settings)) else ""
        print(f"\n{name}{epochs_note}: chosen lr {chosen:g}{edge}, previous {PREVIOUS.get(name)}")
        datasets = [d for d in next(iter(settings.values())) if not d.startswith("_")]
        print(f"  {'lr':>8} {'norm':>6} {'se':>6} " + " ".join(f"{d[:13]:>13}" for d in datasets)
              + "  digits ratio  div")
        for lr, cell in sorted(settings.items()):
            mark = "*" if lr == chosen else ("o" if lr == PREVIOUS.get(name) else " ")
            ratio = cell["_ratio"].get("digits")
            print(f" {mark}{lr:>8g} {norm[lr]:6.3f} {se[lr]:6.3f} " + " ".join(f"{cell[d]:13.4f}" for d in datasets)
                  + f"  {'-' if ratio is None else f'{ratio:.3f}':>12} {cell['_div']:>4}")
    if errors_at_best:
        print(f"\nstandard error at each optimizer's best lr: median {statistics.median(errors_at_best):.4f} "
              f"(tolerance {TOLERANCE})")
    return summary


def summarize_setting(records: list[dict[str, Any]], key: str, title: str) -> dict[str, Any]:
    """{optimizer: {setting: {dataset: median validation score, "diverged": runs}}}."""
    out: dict[str, Any] = {}
    for name, settings in table(records, key).items():
        print(f"\n{title} ({name})")
        for setting, cell in settings.items():
            datasets = [d for d in cell if not d.startswith("_")]
            print(f"  {str(setting):>12} " + " ".join(f"{d}={cell[d]:.4f}" for d in datasets) + f"  div {cell['_div']}")
            out.setdefault(name, {})[str(setting)] = {d: cell[d] for d in datasets} | {"diverged": cell["_div"]}
    return out


def summarize_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per batch size: every lr's scores, and the best lr's (the batch size is judged at its own best lr)."""
    out = {}
    by_batch: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        by_batch.setdefault(str(r["batch_size"] if r["batch_size"] is not None else "default"), []).append(r)
    print("\nbatch size (adam): best lr per batch size, mean normalized score over datasets (normalized jointly)")
    cells = {}
    for batch, runs in by_batch.items():
        for lr, cell in table(runs, "lr")["adam"].items():
            cells[(batch, lr)] = cell
    norm = normalized(cells)
    for batch in by_batch:
        lrs = {lr: norm[(b, lr)] for (b, lr) in cells if b == batch}
        best_lr = max(lrs, key=lrs.get)
        cell = cells[(batch, best_lr)]
        datasets = [d for d in cell if not d.startswith("_")]
        print(f"  batch {batch:>5}: " + "  ".join(f"lr {lr:g} {s:.3f}" for lr, s in sorted(lrs.items()))
              + f"  | best lr {best_lr:g}: " + " ".join(f"{d}={cell[d]:.4f}" for d in datasets))
        out[batch] = {"normalized": {str(lr): s for lr, s in lrs.items()}, "best_lr": best_lr,
                      "best": {d: cell[d] for d in datasets}}
    return out


def summarize(part: str, records: list[dict[str, Any]]) -> Any:
    if part == "lr":
        return summarize_lr(records)
    if part == "gd":
        return summarize_lr(records, f" at {GD_EPOCHS} full-batch epochs")
    if part == "batch":
        return summarize_batch(records)
    if part == "epochs":
        return summarize_setting(records, "epochs", "epochs (adam at its defaults)")
    titles = {"model": "mlp:128,64, default epochs", "long": "mlp:64, 4x the default epochs"}
    return summarize_setting(records, "which", titles[part])


def markdown(summary: dict[str, Any]) -> str:
    """RESULTS.md's tables from the lr and gd summaries: previous against chosen default, then every grid point."""
    lr_part = {**summary.get("lr", {}), **{name: row for name, row in summary.get("gd", {}).items()}}
    if not lr_part:
        return ""
    first = next(iter(lr_part.values()))["grid"]
    datasets = [d for d in next(iter(first.values())) if d not in ("normalized", "se", "loss_ratio", "diverged")]
    lines = ["| optimizer | previous lr | chosen lr | score (previous → chosen) | digits loss ratio | "
             + " | ".join(datasets) + " |", "|---|---:|---:|---:|---:|" + "---:|" * len(datasets)]

    def pair(old: float | None, new: float | None, digits: int = 3) -> str:
        show = (lambda v: "-" if v is None else f"{v:.{digits}f}")
        return f"{show(old)} → **{show(new)}**"

    for name, row in lr_part.items():
        grid, old, new = row["grid"], row["previous"], row["chosen"]
        cells = [pair(grid[old]["normalized"], grid[new]["normalized"]),
                 pair(grid[old]["loss_ratio"].get("digits"), grid[new]["loss_ratio"].get("digits"), 2)]
        cells += [pair(grid[old][d], grid[new][d]) for d in datasets]
        lines.append(f"| {name} | {old:g} | **{new:g}** | " + " | ".join(cells) + " |")
    lines += ["", "| optimizer | mean normalized validation score at each lr (chosen in bold, previous in italics) |",
              "|---|---|"]
    for name, row in lr_part.items():
        cells = []
        for lr, point in row["grid"].items():
            text = f"{float(lr):g}: {point['normalized']:.3f}"
            cells.append(f"**{text}**" if float(lr) == row["chosen"] else
                         f"*{text}*" if float(lr) == row["previous"] else text)
        lines.append(f"| {name} | " + " · ".join(cells) + " |")
    checks = [part for part in ("model", "long") if part in summary]
    if checks:
        first = next(iter(summary[checks[0]].values()))
        datasets = [d for d in first["previous"] if d != "diverged"]
        titles = {"model": "mlp:128,64", "long": "4x epochs"}
        lines += ["", "| optimizer | " + " | ".join(f"{titles[p]}: {d}" for p in checks for d in datasets) + " |",
                  "|---|" + "---:|" * (len(checks) * len(datasets))]
        for name in summary[checks[0]]:
            cells = [pair(summary[p][name]["previous"][d], summary[p][name]["default"][d]) for p in checks
                     for d in datasets]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--optimizers", default=",".join(e.name for e in OPTIMIZERS),
                        help="comma-separated optimizer names (default: the whole table)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each: a split and an initialization)")
    parser.add_argument("--quick", action="store_true", help="5-point grids, 1 seed, digits and penguins only")
    parser.add_argument("--jobs", type=int, default=1, help="processes (each run uses one thread)")
    parser.add_argument("--json", help="write runs and summaries here")
    parser.add_argument("--summarize", metavar="JSON", help="print the summaries of a --json file's runs; run nothing")
    args = parser.parse_args()
    if args.summarize:
        summaries = {part: summarize(part, records)
                     for part, records in json.loads(Path(args.summarize).read_text())["runs"].items()}
        print("\n" + markdown(summaries))
        return
    parts = [p for p in args.part.split(",") if p]
    for part in parts:
        if part not in PARTS:
            parser.error(f"unknown part '{part}'; choose from {', '.join(PARTS)}")
    optimizers = [o for o in args.optimizers.split(",") if o]
    for name in optimizers:
        try:
            OPTIMIZERS.get(name)
        except NnoptError as error:  # the registry's message, with its did-you-mean
            parser.error(str(error))
    datasets = [d for d in args.datasets.split(",") if d]
    seeds = list(range(1 if args.quick else args.seeds))
    if args.quick:
        datasets = [d for d in datasets if d in ("digits", "penguins")] or datasets[:1]
    report: dict[str, Any] = {"settings": {"model": MODEL, "epochs": EPOCHS, "gd_epochs": GD_EPOCHS, "seeds": seeds,
                                           "datasets": datasets, "tolerance": TOLERANCE}, "runs": {}, "summary": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = tuple(sorted(write_penguins(Path(tmp)).items()))
        for part in parts:
            if part == "user":
                print("\nuser: nnopt train --data digits --model mlp:128 --epochs 15", flush=True)
                report["summary"]["user"] = user_check(seeds)
                continue
            jobs = jobs_for(part, optimizers, datasets, seeds, files, args.quick)
            if not jobs:
                continue
            records = execute(jobs, args.jobs, part)
            report["runs"][part] = records
            report["summary"][part] = summarize(part, records)
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
