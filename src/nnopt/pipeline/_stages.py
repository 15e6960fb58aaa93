"""The stages of automl, one function each: a stage takes what earlier stages recorded and returns the JSON-able
record automl.json keeps for it (with a one-line `summary`)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nnopt.config import TABLE_KEYS, table_settings
from nnopt.data import Split, load_data
from nnopt.comparison import compare
from nnopt.compress import compress, ladder_for, nnopt_load
from nnopt.compress import default_epochs as compress_epochs
from nnopt.config import TrainSpec, portable_paths, spec_from_mapping
from nnopt.errors import UsageError, param
from nnopt.fileio import atomic_write_text
from nnopt.models import model_costs, on_flat_rows
from nnopt.optim import OPTIMIZERS
from nnopt.pipeline._budget import (
    EXPORT_S,
    LADDER_EPOCHS,
    LADDER_RUNS,
    REPORTS_S,
    Clock,
    Plan,
    min_trial_epochs,
)
from nnopt.search import load_tune_spec, tune
from nnopt.train import compute_metrics, fit, training_targets
from nnopt.train import run as run_training

SCREEN_OPTIMIZERS = ("adam", "adamw", "nesterov", "rmsprop", "momentum")
PROBE_MODEL = "mlp:128,64"
# a network from the middle of the cnn space, timed by the probe when the search is over CNNs
CNN_PROBE = "cnn:16,32"
CNN_PROBE_ROWS = 1024
MAX_TRIALS = 100_000  # the search stops on time, not on a count
MAX_ROUNDS = 6
# replaces a compression that failed the train-rows check on final/: int8 round-to-nearest, no training
FALLBACK = {"prune": None, "prune_method": "global", "quantize": "int8", "schedule": "oneshot", "finetune_epochs": 0,
            "qat_epochs": 0}
CONSTRAINT_KEYS = ("max_params", "max_flops", "max_size_kb", "max_latency_ms")
# The architecture spaces automl searches: nnopt search's presets, the MLP narrowed to 1-3 layers of 16-256 units.
# In a budget of minutes the full preset (up to 6 layers of 512) spent its trials on networks of hundreds of
# thousands of parameters that scored within noise of small ones and came out larger than the defaults even compressed
# (benchmarks/RESULTS.md, automl).
AUTOML_SPACES = {"mlp": {"preset": "mlp", "depth": [1, 3], "width": [16, 32, 64, 128, 256]},
                 "cnn": {"preset": "cnn"}}


def probe(data: Any, seed: int, space: str = "mlp") -> dict[str, Any]:
    """Seconds per epoch of the reference network on this data and machine (one thread, as search trials); for the
    cnn space also of a mid-sized CNN of it, timed on at most CNN_PROBE_ROWS training rows and scaled to all."""
    hidden = data.without_test()
    fit(PROBE_MODEL, hidden, epochs=1, seed=seed, threads=1)  # the first run pays for imports and warm-up
    start = time.perf_counter()
    result = fit(PROBE_MODEL, hidden, epochs=3, seed=seed, threads=1)
    total = time.perf_counter() - start
    epoch_s = max(1e-3, result.wall_s / 3)
    plan = {"epoch_s": epoch_s, "run_s": max(0.0, total - result.wall_s), "finetune_epochs": compress_epochs(data, 64),
            "min_epochs": min_trial_epochs(len(hidden.train)),
            "steps_per_epoch": max(1, math.ceil(len(hidden.train) / 64))}
    if space == "cnn":
        rows, sample = len(hidden.train), hidden
        if rows > CNN_PROBE_ROWS and isinstance(hidden.train, Split):  # rows in memory: time a slice of them
            rows = CNN_PROBE_ROWS
            sample = dataclasses.replace(hidden, train=Split(hidden.train.X[:rows], hidden.train.y[:rows]))
        timed = [fit(CNN_PROBE, sample, epochs=1, seed=seed, threads=1).wall_s for _ in range(2)]  # 1st: warm-up
        plan["searched_epoch_s"] = max(1e-3, timed[-1] * len(hidden.train) / rows)
    return plan


def screen(data: Any, out: Path, timing: Plan, seconds: float, seed: int, draw: Callable) -> dict[str, Any]:
    # the optimizers in SCREEN_OPTIMIZERS' order that the screen's share fits, each with its LR range test
    n = timing.screen_optimizers(seconds, len(SCREEN_OPTIMIZERS))
    epochs = timing.screen_epochs(seconds, n)
    result = compare(data, PROBE_MODEL, optimizers=",".join(SCREEN_OPTIMIZERS[:n]), lr="auto", epochs=epochs,
                     seeds=1, out=out)
    draw(out)
    key = "val_accuracy_mean" if data.task == "classification" else "val_r2_mean"
    rows = [{"optimizer": r["optimizer"], "lr": r["lr"], "val": r.get(key), "diverged": r.get("diverged", 0)}
            for r in result.optimizers]
    ranked = sorted((r for r in rows if r["val"] is not None and not r["diverged"]), key=lambda r: -r["val"])
    if not ranked:
        ranked = rows
    keep = [r["optimizer"] for r in ranked[:2]]
    return {"epochs": epochs, "optimizers": rows, "kept": keep, "lrs": {r["optimizer"]: r["lr"] for r in rows},
            "summary": f"{', '.join(keep)} kept of {n} optimizers ({epochs} epochs each)"}


def search_spec(settings: dict[str, Any], optimizers: list[str], lrs: dict[str, float], epochs: int) -> dict:
    rates = [float(lrs[o]) for o in optimizers if lrs.get(o)]
    low, high = (min(rates) / 4, min(1.0, max(rates) * 3)) if rates else (1e-4, 1e-1)
    # the optimizers' own default lrs always lie in the range: a screen lr that was the luck of a noisy LR range
    # test (or a finder's floor) must not shut the search out of the lr that plain training uses
    defaults = [float(OPTIMIZERS.get(o).default_lr) for o in optimizers]
    low, high = min([low, *defaults]), max([high, *defaults])
    space: dict[str, Any] = {"lr": {"type": "float", "low": low, "high": max(high, low * 2), "log": True},
                             "batch_size": {"choices": [32, 64, 128]}}
    train: dict[str, Any] = {"epochs": epochs}
    if settings.get("test_fraction") is not None:  # trials, search/best, final/ and best.yaml split as automl does
        train["test_fraction"] = settings["test_fraction"]
    if settings.get("augment"):  # images: the augmentation is a hyperparameter like the others
        space["augment"] = {"choices": list(settings["augment"])}
    if len(optimizers) > 1:
        space["optimizer"] = {"choices": list(optimizers)}
    else:
        train["optimizer"] = optimizers[0]
    spec: dict[str, Any] = {"data": settings["data"], "train": train, "space": space, "seed": settings["seed"]}
    if settings.get("model") is not None:  # the user's model: its template, its parameters searched with ours
        spec["model"] = settings["model"]
        spec["space"] = {**space, **(settings["space"] or {})}
    else:
        spec["architecture"] = AUTOML_SPACES[settings["space"]]
    for key in ("target", "task", *TABLE_KEYS):
        if settings.get(key) is not None:
            spec[key] = settings[key]
    if settings.get("objective"):
        spec["objective"] = [settings["objective"]]
    constraints = {k: settings[k] for k in CONSTRAINT_KEYS if settings.get(k) is not None}
    if constraints:
        spec["constraints"] = constraints
    return spec


def search(settings: dict[str, Any], screen: dict[str, Any], out: Path, timing: Plan, clock: Clock, workers: int,
            storage: str | None, study: str | None, seed: int, n_val: int, draw: Callable) -> dict[str, Any]:
    """The study runs in rounds; after each, the stages still to come are re-estimated from the durations of
    the best trials (a bigger winner needs longer to retrain and compress), and the next round gets the rest."""
    epochs = timing.epochs_per_trial(max(0.0, clock.left() - timing.tail_s(max(10, timing.min_epochs))))
    spec = search_spec(settings, screen["kept"], screen["lrs"], epochs)
    result, rounds, started = None, 0, time.monotonic()
    while rounds < MAX_ROUNDS:
        trial_s = _trial_s(result, timing, epochs)
        free = clock.left() - _tail_s(result, timing, epochs)
        if result is not None and free < trial_s:
            break
        timeout = max(trial_s, free / 2 if free > 4 * trial_s and rounds < MAX_ROUNDS - 1 else free)
        result = tune(spec, out=out, retrain=False, sampler="tpe", pruner="asha", trials=MAX_TRIALS, timeout=timeout,
                      workers=workers, storage=storage, study=study or "nnopt-automl", seed=seed)
        rounds += 1
    draw(out)
    if result is None or result.best_params is None:
        raise UsageError(f"no search trial finished in {time.monotonic() - started:.0f} s; give a larger "
                         f"{param('budget')}")
    parsed = load_tune_spec(spec, {})
    counts = result.counts()
    top = next(t for t in result.trials if t["number"] == result.best_trials[0])
    kept, tolerance = smallest_within_noise(result, n_val)
    train = {**parsed.trial_train_spec(kept["params"]), "seed": seed}
    metric = result.objectives[0]["metric"]
    why = (f"the smallest network within one standard error ({100 * tolerance:.2f} points) of the best validation "
           f"score (trial {top['number']}, {top['user_attrs'].get('model')}, {top['values'][0]:.4f})"
           if kept is not top else "the best validation score")
    return {"epochs_per_trial": epochs, "rounds": rounds, "counts": counts,
            "best_trial": kept["number"], "best_value": kept["values"][0], "top_trial": top["number"],
            "top_value": top["values"][0], "tolerance": tolerance, "why": why,
            "best_duration_s": kept.get("duration_s"), "objective": metric, "best_params": kept["params"],
            "model": kept["user_attrs"].get("model"), "params": kept["user_attrs"].get("params"), "train": train,
            "summary": f"{counts['complete']} trained, {counts['pruned']} stopped or rejected; kept "
                       f"{kept['user_attrs'].get('model')} {metric}={kept['values'][0]:.4f}: {why}"}


def smallest_within_noise(result: Any, n_val: int) -> tuple[dict[str, Any], float]:
    """The trial to keep. For R², the one with the fewest parameters among those whose validation score is within
    one standard error of the best: that of the mean squared error R² is made of, (1 - R²) sqrt(2/n) on n
    validation rows for normal residuals (the target's variance, its denominator, taken as known). A regression's
    best validation R² is often a lucky fit: on ames (RESULTS.md, "Real tables") the best of 55 trials, mlp:32,
    retrained with 3 seeds scored 0.72 on test, the smallest within reach, mlp:16,64, 0.88; on diabetes the best
    of 270, mlp:256,64, 0.0, the smallest within reach, mlp:256, 0.14. For accuracy, and any other objective, the
    best: with the same slack (binomial) the smaller network lost 0.6 points on test on both hpc and credit (3
    seeds each), so the best is kept (tolerance 0)."""
    top = next(t for t in result.trials if t["number"] == result.best_trials[0])
    metric, direction = result.objectives[0]["metric"], result.objectives[0]["direction"]
    if metric != "val_r2" or direction != "maximize" or n_val < 1:
        return top, 0.0
    best = top["values"][0]
    tolerance = max(1.0 - best, 0.0) * math.sqrt(2.0 / n_val)
    close = [t for t in result.trials if t["state"] == "COMPLETE" and t["values"]
             and t["values"][0] >= best - tolerance and t["user_attrs"].get("params") is not None]
    if not close:
        return top, tolerance
    return min(close, key=lambda t: (t["user_attrs"]["params"], -t["values"][0], t["number"])), tolerance


def _durations(result: Any) -> list[float]:
    """Durations of the best complete trials (up to 5), slowest first."""
    if result is None:
        return []
    sign = -1 if result.objectives[0]["direction"] == "maximize" else 1
    done = [t for t in result.trials if t["state"] == "COMPLETE" and t["duration_s"] and t["values"]]
    done.sort(key=lambda t: sign * t["values"][0])
    return sorted((t["duration_s"] for t in done[:5]), reverse=True)


def _trial_s(result: Any, timing: Plan, epochs: int) -> float:
    durations = _durations(result)
    return durations[len(durations) // 2] if durations else timing.trial_s(epochs)


def _tail_s(result: Any, timing: Plan, epochs: int) -> float:
    """Seconds the stages after the search need if one of the best trials so far wins: train it twice (train,
    train+val), the compression ladder and the final compression (fine-tuning epochs each), export, reports."""
    durations = _durations(result)
    if not durations:
        return timing.tail_s(epochs)
    slowest = durations[0]
    per_epoch = slowest / epochs
    compress = LADDER_RUNS * (timing.run_s + LADDER_EPOCHS * timing.finetune_epochs * per_epoch)
    return 2.2 * slowest + compress + EXPORT_S + REPORTS_S


def retrain(search: dict[str, Any], run_dir: Path, draw: Callable) -> dict[str, Any]:
    """The best configuration twice: on the train split (search/best: the compression ladder is chosen on
    its validation rows, which it never trained on) and on train + val (final/). The test rows are the same
    in both (same seed and test fraction; the test split is drawn before the validation split)."""
    runs = {}
    for out, extra in ((run_dir / "search" / "best", {}), (run_dir / "final", {"val_fraction": 0.0})):
        # one thread, as the search trials ran: their durations are what the budget was planned on
        mapping = {**search["train"], "threads": 1, **extra, "out": str(out)}
        if out.exists():  # an interrupted retrain starts over: it is one short run
            shutil.rmtree(out)
        runs[out.name] = run_training(spec_from_mapping(TrainSpec, mapping, source="automl"))
        draw(out)
    result = runs["final"]
    # data as an absolute path: the comment's command works from the run directory, where a user finds the file
    best_yaml = portable_paths({**search["train"], "threads": 1, "val_fraction": 0.0})
    import yaml

    rows = "every row (train+val, no test split)" if search["train"].get("test_fraction") == 0 else "train+val"
    header = (f"# the final model of this automl run: the best configuration of the search, trained on {rows}\n"
              "# reproduce: nnopt train --config best.yaml\n")
    atomic_write_text(run_dir / "best.yaml", header + yaml.safe_dump(best_yaml, sort_keys=False))
    shutil.copyfile(run_dir / "final" / "model.pt", run_dir / ".model.pt.tmp")
    (run_dir / ".model.pt.tmp").replace(run_dir / "model.pt")
    model = str(search["train"]["model"])
    return {"epochs": result.epochs, "wall_s": result.wall_s, "model": model,
            "n_params": result.config.get("n_params"), "select_wall_s": runs["best"].wall_s,
            "summary": f"{model} trained {result.epochs} epochs on {rows} in {result.wall_s:.1f} s"}


def compress_final(settings: dict[str, Any], search: dict[str, Any], run_dir: Path, timing: Plan, clock: Clock,
              drop: float, draw: Callable) -> dict[str, Any]:
    """The ladder of nnopt compress, rung by rung on search/best (validation rows it never trained on), smallest
    expected file first; the first rung within the drop is applied to final/. A rung starts only if its
    fine-tuning fits in what is left of the budget (priced from the kept trial's seconds per epoch); otherwise
    the ladder jumps to its last rung, int8 round-to-nearest, which needs no training. final/ has no validation
    rows, so the setting applied to it is checked on its training rows (_train_rows_check): one that loses more
    than `drop` there gives way to int8 round-to-nearest, and that, if it fails too, to fp32."""
    source, target = settings["data"], settings.get("target")
    per_epoch = (search.get("best_duration_s") or timing.trial_s(search["epochs_per_trial"])) / max(
        1, search["epochs_per_trial"])
    best = run_dir / "search" / "best"
    ladder, chosen, how = [], None, ""
    final_s = EXPORT_S + REPORTS_S / 2
    for rung in ladder_for(nnopt_load(best)[0]):
        setting = _rung_setting(rung, timing.finetune_epochs)
        epochs = setting["finetune_epochs"] + setting["qat_epochs"]
        rung_s = timing.run_s + epochs * per_epoch + 1.0
        if epochs and clock.left() - rung_s - (final_s + rung_s / 0.85) < 0:
            how = "the ladder skipped settings whose fine-tuning no longer fit in the budget; "
            continue
        result = compress(best, source, target=target, **table_settings(settings), **setting)
        original, row = result.rows[0], result.rows[-1]
        change = 100 * (original["val"] - row["val"])
        ladder.append({"name": row["name"], "val": row["val"], "original_val": original["val"],
                       "drop_pts": change, "file_bytes": row["file_bytes"], "fp32_bytes": original["file_bytes"]})
        if change <= drop:
            chosen = setting
            ladder[-1]["kept"] = True
            how += (f"{row['name']}: the smallest of the ladder within {drop:g} point{'' if drop == 1 else 's'} "
                    "on validation")
            break
    if chosen is None:  # no rung kept the accuracy: keep the full-precision weights
        chosen = {}
        how += f"fp32: no setting of the ladder stayed within {drop:g} points on validation"
    out = run_dir / "compressed"
    check, refused = None, []
    for attempt in (chosen, *([FALLBACK] if chosen and chosen != FALLBACK else []), {}):
        if out.exists():  # a setting refused by the check below: its files go
            shutil.rmtree(out)
        result = compress(run_dir / "final", source, target=target, export="onnx", out=out,
                          **table_settings(settings), **attempt)
        if not attempt:
            check = None
            break
        check = _train_rows_check(run_dir, out, result.metric)
        if check["drop_pts"] <= drop:
            break
        how += (f"; on final/ (train+val, no validation rows to choose its epochs) {result.chosen['name']} lost "
                f"{check['drop_pts']:.2f} points on its own training rows, so it was replaced")
        refused.append({**check, "name": result.chosen["name"]})
    chosen = attempt
    draw(out)
    kept = result.chosen
    original = result.rows[0]
    return {"setting": chosen or None, "how": how, "ladder": ladder, "train_rows_check": check, "refused": refused,
            "file_bytes": kept["file_bytes"],
            "fp32_bytes": original["file_bytes"], "ratio": kept.get("ratio", 1.0), "name": kept["name"],
            "latency": result.latency,
            "summary": f"{kept['name']}: {kept['file_bytes']:,} bytes, {kept.get('ratio', 1.0):.1f}x smaller than fp32"}


def _train_rows_check(run_dir: Path, compressed: Path, metric: str) -> dict[str, Any]:
    """The compressed final model against final/model.pt on the rows both trained on (final's train split:
    train + val, re-made from final/config.json). final/ has no validation rows, so its compression cannot pick
    its best fine-tuning epoch; a setting that held on search/best's validation rows can still break it, which
    shows on these rows too."""
    name = "accuracy" if metric.endswith("accuracy") else "r2"
    config = json.loads((run_dir / "final" / "config.json").read_text())
    data = load_data(config["data"], **{k: config[k] for k in ("target", "task", "val_fraction", "test_fraction",
                                                              "scale", "seed", *TABLE_KEYS) if config.get(k) is not None})
    targets = training_targets(data.train.y, data.task, data.n_outputs)
    scores = {}
    for key, path in (("fp32", run_dir / "final" / "model.pt"), ("compressed", compressed / "compressed.nnz")):
        model, meta = nnopt_load(path)
        with torch.inference_mode():
            outputs = on_flat_rows(model.eval(), meta)(data.train.X)
        scores[key] = compute_metrics(data.task, outputs, targets, 0.0, [name], data.target_scale)[name]
    return {"metric": name, **scores, "drop_pts": 100 * (scores["fp32"] - scores["compressed"])}


def _rung_setting(rung: Any, finetune_epochs: int) -> dict[str, Any]:
    """compress() keywords of one ladder rung: gradual pruning over its fine-tuning epochs (structured: the units
    out at once, then fine-tuning), then its bit width, with quantization-aware training when the rung asks."""
    epochs = round(rung.finetune * finetune_epochs) if rung.amount > 0 else 0
    return {"prune": rung.amount or None, "prune_method": rung.method, "quantize": rung.bits,
            "schedule": "gradual" if rung.amount > 0 and rung.method != "structured" else "oneshot",
            "finetune_epochs": epochs,
            "qat_epochs": round(rung.qat * finetune_epochs) if rung.bits else 0}


def export_files(run_dir: Path, compressed: dict[str, Any]) -> dict[str, Any]:
    files = []
    for name in ("model.onnx", "model.int8.onnx", "compressed.nnz"):
        source = run_dir / "compressed" / name
        if source.is_file():
            shutil.copyfile(source, run_dir / f".{name}.tmp")
            (run_dir / f".{name}.tmp").replace(run_dir / name)
            files.append(name)
    latency = {}
    for row in compressed.get("latency") or []:
        latency[f"{row['model']} · {row['runtime']} · batch {row['batch']}"] = row["latency_ms"]
    return {"files": files, "latency_ms": latency, "summary": f"wrote {', '.join(files)}"}


def test_final(run_dir: Path, data: Any, settings: dict[str, Any], stages: dict[str, Any],
          constraints: dict[str, Any]) -> dict[str, Any]:
    metric = "accuracy" if data.task == "classification" else "r2"
    final = json.loads((run_dir / "final" / "summary.json").read_text())["metrics"]["test"]
    results = json.loads((run_dir / "compressed" / "results.json").read_text())
    kept = next(v for v in results["variants"] if v["name"] == results["chosen"])
    model, meta = nnopt_load(run_dir / "final" / "model.pt")
    costs = model_costs(model, meta.get("sample_shape") or meta["in_features"],
                        latency="max_latency_ms" in constraints)
    measured = {"max_params": costs["params"], "max_flops": costs["flops"], "max_size_kb": costs["size_kb"],
                "max_latency_ms": costs.get("latency_ms")}
    checks = {k: {"limit": v, "value": measured[k], "ok": measured[k] is not None and measured[k] <= v}
              for k, v in constraints.items()}
    record = {"metric": metric, "final_test": final.get(metric), "compressed_test": kept.get("test"),
              "final_metrics": final, "params": costs["params"], "size_kb": costs["size_kb"],
              "compressed_bytes": kept["file_bytes"], "constraints": checks}
    if not len(data.test):  # test_fraction 0: every row trained or validated, nothing is left to score
        return {**record, "final_test": None, "compressed_test": None, "no_test": no_test_note(run_dir),
                "summary": no_test_note(run_dir)}
    return {**record, "summary": f"test {metric}: final {final.get(metric):.4f}, compressed {kept.get('test'):.4f}"}


def no_test_note(run_dir: Path) -> str:
    """The one line automl shows in place of a test score when it held out no test rows."""
    return (f"no test split (test_fraction 0): score it on your own test file with nnopt evaluate {run_dir} "
            "--data test.csv")
