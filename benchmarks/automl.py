"""nnopt automl against `nnopt train` with its defaults and against the best of `nnopt compare`, per dataset:
test metric, file size and batch-1 latency (1 thread, median) of the model each one hands over.

- defaults: `nnopt train --data D` (mlp:128,64, Adam at its default lr, batch 64, 10 epochs), model.pt's state
  dict bytes, torch eager latency.
- compare: `nnopt compare --data D --lr auto --seeds 1 --epochs 20` (the seven classic optimizers on mlp:128,64);
  the run with the best validation score (not test: that would be choosing on the test split), fp32.
- automl at each budget: its compressed model (compressed.nnz bytes), test score of that model, and the fastest
  batch-1 latency among its runtimes (torch / ONNX Runtime), as automl measured them.

Every run uses seed 0 and the default split (15 % validation, 15 % test), so the test rows are the same for all.

    .venv/bin/python benchmarks/automl.py [--data digits,mnist1d,csv] [--budgets 2m,5m] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import nnopt
from nnopt.compress import torch_latency_ms
from nnopt.models import load_model, serialized_bytes


def write_csv(folder: Path) -> str:
    """breast_cancer as a CSV with text labels: a table as a user would bring it."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    names = np.array(["malignant", "benign"])[raw.target]
    path = folder / "breast_cancer.csv"
    header = ",".join(n.replace(" ", "_") for n in raw.feature_names) + ",diagnosis"
    rows = [",".join(f"{v:.6g}" for v in x) + f",{n}" for x, n in zip(raw.data, names)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def model_row(run_dir: Path, metric: str, test: float) -> dict:
    model, meta = load_model(run_dir)
    latency = min(torch_latency_ms(model, meta["in_features"], batch=1) for _ in range(3))
    return {"test": test, "bytes": serialized_bytes(model), "latency_ms": latency, "params": meta.get("n_params")}


def run(name: str, source: str, target: str | None, budgets: list[str], folder: Path) -> dict:
    metric = "accuracy"
    extra = {"target": target} if target else {}
    start = time.perf_counter()
    default = nnopt.fit("mlp:128,64", source, out=folder / f"{name}-train", **extra)
    rows = {"defaults": {**model_row(folder / f"{name}-train", metric, default.metrics["test"][metric]),
                         "model": "mlp:128,64", "seconds": time.perf_counter() - start}}
    start = time.perf_counter()
    comparison = nnopt.compare(source, "mlp:128,64", lr="auto", seeds=1, epochs=20, out=folder / f"{name}-compare",
                               **extra)
    best = max(comparison.runs, key=lambda r: r["final"].get(f"val_{metric}") or -1)
    again = nnopt.fit("mlp:128,64", source, optimizer=best["optimizer"], lr=best["lr"], epochs=20, seed=best["seed"],
                      out=folder / f"{name}-compare-best", **extra)
    rows["compare best"] = {**model_row(folder / f"{name}-compare-best", metric, again.metrics["test"][metric]),
                            "model": f"mlp:128,64 {best['optimizer']} lr {best['lr']:.3g}",
                            "seconds": time.perf_counter() - start}
    for budget in budgets:
        start = time.perf_counter()
        result = nnopt.automl(source, budget=budget, out=folder / f"{name}-automl-{budget}", **extra)
        s = result.summary
        fastest = min(v for k, v in s["latency_ms"].items() if "batch 1" in k and k.startswith("compressed"))
        rows[f"automl {budget}"] = {"test": s["compressed_test"], "test_fp32": s["test"],
                                    "bytes": s["compressed_bytes"], "fp32_bytes": s["fp32_bytes"],
                                    "latency_ms": fastest, "params": s["params"], "model": s["model"],
                                    "compression": s["compression"], "seconds": time.perf_counter() - start,
                                    "spent_s": s["spent_s"], "budget_s": s["budget_s"], "stages": s["stages"]}
    for label, row in rows.items():
        print(name, label, json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits,mnist1d,csv")
    parser.add_argument("--budgets", default="2m,5m")
    parser.add_argument("--json")
    args = parser.parse_args()
    budgets = args.budgets.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name in args.data.split(","):
            source, target = (write_csv(folder), "diagnosis") if name == "csv" else (name, None)
            results[name] = run(name, source, target, budgets, folder)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
