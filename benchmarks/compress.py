"""Compression of LeNet-300-100 (mlp:300,100): accuracy against bytes on disk for each method, and CPU latency
per runtime (1 thread, median of 30 runs after 5 warm-up runs, batch 1 and 256).

For each dataset the model is trained once (Adam, 20 epochs, seed 0); every method starts from it and runs
through `nnopt.compress.compress` (the same code as `nnopt compress`), so bytes are real files and accuracies
are measured on the test split. Latencies are best-of-3 medians to damp the noise of a shared machine.

    .venv/bin/python benchmarks/compress.py [--data digits,mnist1d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from nnopt.compress import compress, export_onnx, ort_latency_ms, quantize_onnx_int8, torch_latency_ms
from nnopt.data import load_data
from nnopt.train import fit

METHODS = {
    "int8": {"quantize": "int8"},
    "int4": {"quantize": "int4"},
    "int2": {"quantize": "int2"},
    "int2 QAT (3 epochs)": {"quantize": "int2", "qat_epochs": 3},
    "magnitude 90% gradual": {"prune": 0.9, "prune_method": "magnitude", "schedule": "gradual"},
    "global 90% gradual": {"prune": 0.9, "prune_method": "global", "schedule": "gradual"},
    "2:4 + 3 epochs": {"prune": 0.5, "prune_method": "2:4", "finetune_epochs": 3},
    "structured 50% + 3 epochs": {"prune": 0.5, "prune_method": "structured", "finetune_epochs": 3},
    "global 90% gradual + int8": {"prune": 0.9, "prune_method": "global", "schedule": "gradual", "quantize": "int8"},
    "global 90% gradual + int4 QAT": {"prune": 0.9, "prune_method": "global", "schedule": "gradual",
                                      "quantize": "int4", "qat_epochs": 3},
    "global 95% gradual + int4 QAT": {"prune": 0.95, "prune_method": "global", "schedule": "gradual",
                                      "quantize": "int4", "qat_epochs": 3},
}


def best_of(fn, rounds: int = 3) -> float:
    return min(fn() for _ in range(rounds))


def run(data_name: str, folder: Path) -> dict:
    run_dir = folder / f"{data_name}-lenet"
    trained = fit("mlp:300,100", data_name, epochs=20, seed=0, out=run_dir)
    data = load_data(data_name, seed=0)
    rows = []
    for name, settings in METHODS.items():
        result = compress(run_dir, **settings)
        original, variant = result.rows
        rows.append({"method": name, "test": variant["test"], "val": variant["val"], "bytes": variant["file_bytes"],
                     "ratio": variant["ratio"], "test_drop_pts": 100 * (original["test"] - variant["test"]),
                     "params": variant["params"], "nonzero": variant["nonzero_params"]})
        print(data_name, json.dumps(rows[-1]), flush=True)
    original = {"method": "fp32 (torch.save state dict)", "test": trained.metrics["test"]["accuracy"],
                "bytes": result.rows[0]["file_bytes"], "ratio": 1.0}
    latency = timing(run_dir, data, folder / f"{data_name}-onnx")
    return {"original": original, "methods": rows, "latency": latency}


def timing(run_dir: Path, data, folder: Path) -> list[dict]:
    """torch fp32, structured-50% torch, ORT fp32 and ORT int8 (static QDQ) at batch 1 and 256."""
    from nnopt.compress import load

    folder.mkdir(parents=True, exist_ok=True)
    model = load(run_dir)
    n = data.n_features
    structured = folder / "structured"
    compress(run_dir, prune=0.5, prune_method="structured", finetune_epochs=3, out=structured)
    small = load(structured / "compressed.nnz")
    fp32 = export_onnx(model, n, folder / "model.onnx")
    int8 = quantize_onnx_int8(fp32, folder / "model.int8.onnx", data.train.X[:512].numpy())
    rows = []
    for batch in (1, 256):
        base = best_of(lambda: torch_latency_ms(model, n, batch=batch))
        for name, value in (("torch fp32", base),
                            ("torch structured 50%", best_of(lambda: torch_latency_ms(small, n, batch=batch))),
                            ("ORT fp32", best_of(lambda: ort_latency_ms(fp32, n, batch=batch))),
                            ("ORT int8 (QDQ)", best_of(lambda: ort_latency_ms(int8, n, batch=batch)))):
            rows.append({"runtime": name, "batch": batch, "latency_ms": value, "speedup": base / value})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="digits,mnist1d")
    parser.add_argument("--json")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data.split(","):
            report[name] = run(name, Path(tmp))
    for name, r in report.items():
        print(f"\n{name}: fp32 {r['original']['test']:.4f} test accuracy, {r['original']['bytes']:,} bytes")
        for row in r["methods"]:
            print(f"  {row['method']:<32} {row['test']:.4f} ({-row['test_drop_pts']:+.2f} pts)  "
                  f"{row['bytes']:>8,} B  {row['ratio']:5.1f}x smaller")
        for row in r["latency"]:
            print(f"  batch {row['batch']:>3}  {row['runtime']:<22} {row['latency_ms']:.4f} ms  {row['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
