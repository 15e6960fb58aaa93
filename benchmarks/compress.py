"""Compression of LeNet-300-100 (mlp:300,100): accuracy against bytes on disk for each method, and CPU latency
per runtime (1 thread, median of 30 runs after 5 warm-up runs, batch 1 and 256).

Datasets: sklearn's 8x8 `digits` (64 inputs); `digits28`, the same images in MNIST's layout (each pixel a 3x3
block, 2 pixels of zero padding: 28x28 = 784 uint8 inputs, written as an .npz), so the first layer has MNIST's
784x300 shape, where Deep Compression's pruning pays most (real MNIST cannot be downloaded here); and `mnist1d`.
For each dataset and seed the model is trained once (Adam, --original-epochs, 20 by default); every method starts
from it and runs through `nnopt.compress.compress` (the same code as `nnopt compress`), so bytes are real files and
accuracies are measured on the test split (train accuracy too, to tell underfitting from overfitting). Latencies
(first seed only) are best-of-3 medians to damp a shared machine's noise.

--methods picks from METHODS (the main table; all by default, `none` for none: then only the originals are
trained, e.g. with --original-epochs 130 for the longer-trained baselines); --variants from VARIANTS, the other
settings tried on the way to the ladder's rungs (run only when named). Both match by substring.
--breakdown prints where the bytes of each file go (positions, codes, steps, biases, header) for the first seed.
--part float16-bias measures what rounding a quantized layer's bias to float16 changes, alone: the originals with
int8 and int4 round-to-nearest weights, biases float16 (as nnopt stores them) against float32.

    .venv/bin/python benchmarks/compress.py [--data digits,digits28,mnist1d] [--seeds 0,1,2] [--methods global,ladder]
        [--variants "structured 70,..."] [--original-epochs 20] [--breakdown] [--part methods|float16-bias]
        [--no-latency] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import statistics
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from nnopt.compress import (
    apply_dequantized,
    compress,
    default_epochs,
    export_onnx,
    load,
    ort_latency_ms,
    quantize_model,
    quantize_onnx_int8,
    save_compressed,
    torch_latency_ms,
)
from nnopt.compress._format import read_compressed
from nnopt.compress._quant import QTensor
from nnopt.data import load_data
from nnopt.models import serialized_bytes
from nnopt.train import fit

GRADUAL = {"prune_method": "global", "schedule": "gradual"}
LONG = (5, 0.5)  # the ladder's long rungs: 5x the default fine-tuning steps, QAT for half the default epochs
METHODS = {
    "int8": {"quantize": "int8"},
    "int4": {"quantize": "int4"},
    "int2": {"quantize": "int2"},
    "int2 QAT (3 epochs)": {"quantize": "int2", "qat_epochs": 3},
    "magnitude 90% gradual": {"prune": 0.9, "prune_method": "magnitude", "schedule": "gradual"},
    "global 90% gradual": {"prune": 0.9, **GRADUAL},
    "2:4 + 3 epochs": {"prune": 0.5, "prune_method": "2:4", "finetune_epochs": 3},
    "structured 50% + 3 epochs": {"prune": 0.5, "prune_method": "structured", "finetune_epochs": 3},
    "global 90% gradual + int8": {"prune": 0.9, **GRADUAL, "quantize": "int8"},
    "global 90% gradual + int4 QAT": {"prune": 0.9, **GRADUAL, "quantize": "int4", "qat_epochs": 3},
    "global 95% gradual + int4 QAT": {"prune": 0.95, **GRADUAL, "quantize": "int4", "qat_epochs": 3},
    "global 95% gradual 5x + int4 QAT": {"prune": 0.95, **GRADUAL, "quantize": "int4", "steps": LONG},
    "global 96% gradual 5x + int4 QAT": {"prune": 0.96, **GRADUAL, "quantize": "int4", "steps": LONG},
    "global 97% gradual 5x + int4 QAT": {"prune": 0.97, **GRADUAL, "quantize": "int4", "steps": LONG},
    "global 98% gradual 5x + int4 QAT": {"prune": 0.98, **GRADUAL, "quantize": "int4", "steps": LONG},
    # the ladder's structured rungs: the units out at once, then fine-tuning (5x or the default steps) and QAT
    # (for the default epochs on the 80 % rung, half of them on the 50 % one)
    "structured 80%, 5x steps + int4 QAT": {"prune": 0.8, "prune_method": "structured", "quantize": "int4",
                                            "steps": (5, 1)},
    "structured 50% + int4 QAT": {"prune": 0.5, "prune_method": "structured", "quantize": "int4",
                                  "steps": (1, 0.5)},
    "ladder, --max-accuracy-drop 0.5": {"max_accuracy_drop": 0.5},
}
STRUCTURED_80 = {"prune": 0.8, "prune_method": "structured"}
GLOBAL_95 = {"prune": 0.95, **GRADUAL, "quantize": "int4"}
# settings tried around the ladder's rungs on mnist1d (RESULTS.md), run only when --variants names them: how many
# units the structured rung removes, at which bit width, with how much fine-tuning and QAT; and, at 95 % unstructured
# sparsity, whether another fine-tuning lr, batch or more steps would have recovered what structured pruning keeps
VARIANTS = {
    **{f"structured {p}%, 5x steps + int4 QAT": {"prune": p / 100, "prune_method": "structured", "quantize": "int4",
                                                 "steps": (5, 1)} for p in (70, 75, 85, 90)},
    "structured 80%, 5x steps + int2 QAT": {**STRUCTURED_80, "quantize": "int2", "steps": (5, 1)},
    "structured 80%, 5x steps + int8": {**STRUCTURED_80, "quantize": "int8", "steps": (5, 0)},
    "structured 80%, 5x steps + int4 QAT for half the epochs": {**STRUCTURED_80, "quantize": "int4",
                                                                "steps": (5, 0.5)},
    "structured 80%, default steps + int4 QAT": {**STRUCTURED_80, "quantize": "int4", "steps": (1, 1)},
    "global 95% gradual 5x + int4 QAT, fine-tuning lr 3e-4": {**GLOBAL_95, "steps": LONG, "lr": 3e-4},
    "global 95% gradual 5x + int4 QAT, fine-tuning lr 3e-3": {**GLOBAL_95, "steps": LONG, "lr": 3e-3},
    "global 95% gradual 10x + int4 QAT": {**GLOBAL_95, "steps": (10, 0.5)},
    "global 95% gradual 5x + int4 QAT, batch 32 (same epochs)": {**GLOBAL_95, "steps": LONG, "batch_size": 32},
    # pruned at once, no fine-tuning: how many more units die than under the gradual schedule
    "global 95% one-shot + int4 QAT (3 epochs)": {"prune": 0.95, "prune_method": "global", "quantize": "int4",
                                                  "qat_epochs": 3},
}
POSITION_PARTS = ("mask", "indptr", "indices", "gaps")  # the arrays that say where a sparse tensor's entries are
V1_LAYOUTS = ("dense", "bitmap", "csr")  # what format /1 could choose from: no relative indices


def write_digits28(path: Path) -> Path:
    """sklearn digits in MNIST's layout: np.kron of each 8x8 image (0..16) with a 3x3 block of ones, 2 pixels of
    zero padding, scaled to 0..255 uint8 (28x28, so nnopt divides by 255 as for MNIST)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.pad(np.kron(digits.images, np.ones((1, 3, 3))), ((0, 0), (2, 2), (2, 2)))
    X = np.clip(np.round(images * 255 / 16), 0, 255).astype(np.uint8)
    np.savez(path, X=X, y=digits.target.astype(np.int64))
    return path


def settings_for(settings: dict, data) -> dict:
    settings = dict(settings)
    if "steps" in settings:  # (fine-tuning, QAT) epochs in multiples of the default
        finetune, qat = settings.pop("steps")
        base = default_epochs(data, None)
        settings.update(finetune_epochs=round(finetune * base), qat_epochs=math.ceil(qat * base))
    return settings


def v1_layout_bytes(path: Path, meta: dict) -> int:
    """The same model and codes written with only the layouts format /1 had (dense, bitmap, CSR)."""
    model_state, header = read_compressed(path)
    with zipfile.ZipFile(path) as zf:
        payload = zf.read("payload.bin")
    qweights = {}
    for entry in header["tensors"]:
        if entry["quant"]:
            spec = entry["arrays"]["scale"]
            scale = torch.from_numpy(np.frombuffer(payload, dtype=spec["dtype"], count=spec["count"],
                                                   offset=spec["offset"]).astype(np.float32))
            weight = model_state[entry["name"]]
            codes = torch.round(weight / scale.reshape(-1, *[1] * (weight.dim() - 1))).to(torch.int8)
            zero_point = torch.zeros_like(scale, dtype=torch.int32)
            qweights[entry["name"]] = QTensor(q=codes, scale=scale, zero_point=zero_point, bits=entry["quant"]["bits"],
                                              scheme="symmetric", shape=tuple(weight.shape))
    from nnopt.compress import load

    model = load(path)
    with tempfile.TemporaryDirectory() as tmp:
        report = save_compressed(Path(tmp) / "v1.nnz", model, meta, qweights, layouts=V1_LAYOUTS)
        back = load(Path(tmp) / "v1.nnz")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))
    return report["file_bytes"]


def accuracy(model: torch.nn.Module, split) -> float:
    model.eval()
    with torch.inference_mode():
        return float((model(split.X).argmax(1) == split.y).float().mean())


def run(data_name: str, source, seed: int, folder: Path, latency: bool, methods: dict, epochs: int,
        breakdown: bool) -> dict:
    run_dir = folder / f"{data_name}-lenet-{seed}"
    trained = fit("mlp:300,100", source, epochs=epochs, seed=seed, out=run_dir)
    data = load_data(source, seed=seed)
    rows = []
    for name, settings in methods.items():
        out = folder / f"{data_name}-{seed}-{len(rows)}"
        result = compress(run_dir, out=out, **settings_for(settings, data))
        original, variant = result.rows[0], result.chosen
        row = {"method": name, "chosen": variant["name"], "test": variant["test"], "val": variant["val"],
               "bytes": variant["file_bytes"], "ratio": variant["ratio"],
               "test_drop_pts": 100 * (original["test"] - variant["test"]),
               "val_drop_pts": 100 * (original["val"] - variant["val"]), "params": variant["params"],
               "nonzero": variant["nonzero_params"], "spec": variant.get("model_spec"), "tried": len(result.rows) - 1,
               "train": accuracy(load(out / "compressed.nnz"), data.train)}
        if breakdown:
            row["breakdown"] = where_the_bytes_go(out / "compressed.nnz")
        if variant.get("prune") and variant["prune"] >= 0.9 and variant.get("quantize"):
            meta = read_compressed(out / "compressed.nnz")[1]["meta"]
            row["bytes_v1_layouts"] = v1_layout_bytes(out / "compressed.nnz", meta)
        rows.append(row)
        print(data_name, seed, json.dumps(row), flush=True)
    original = {"method": "fp32 (torch.save state dict)", "test": trained.metrics["test"]["accuracy"],
                "train": accuracy(trained.model, data.train), "epochs": epochs,
                "bytes": serialized_bytes(trained.model), "ratio": 1.0}
    timings = timing(run_dir, data, folder / f"{data_name}-onnx") if latency else []
    return {"original": original, "methods": rows, "latency": timings}


def where_the_bytes_go(path: Path) -> dict:
    """Each kind of array of a compressed file, compressed alone (LZMA or DEFLATE, the smaller, as the writer
    chooses per member): positions, codes, steps, float values (biases, unquantized tensors), feature statistics;
    then the JSON header as stored and the zip's own bytes. The parts add up to about the file (compressing the
    payload as one member shares a dictionary across parts). Positions: bits per non-zero quantized weight; codes:
    bits per code stored (every weight of a dense layout, the non-zeros of a sparse one)."""
    state, header = read_compressed(path)
    with zipfile.ZipFile(path) as zf:
        payload = zf.read("payload.bin")
        stored = {info.filename: info.compress_size for info in zf.infolist()}
    parts: dict[str, bytes] = {}
    kept = codes = 0  # non-zero quantized weights; codes stored (every weight of a dense layout)
    for entry in header["tensors"]:
        for part, spec in entry["arrays"].items():
            kind = ("positions" if part in POSITION_PARTS else "codes" if part == "codes"
                    else "steps" if part in ("scale", "zero_point") else "float values")
            parts[kind] = parts.get(kind, b"") + payload[spec["offset"]:spec["offset"] + spec["bytes"]]
        if entry["quant"]:
            weight = state[entry["name"]]
            kept += int((weight != 0).sum())
            codes += weight.numel() if entry["layout"] == "dense" else int((weight != 0).sum())
    for spec in header.get("meta_arrays", {}).values():
        parts["feature statistics"] = parts.get("feature statistics", b"") + payload[
            spec["offset"]:spec["offset"] + spec["bytes"]]
    packed = {k: _smaller(v) for k, v in parts.items()}
    out = {"file": path.stat().st_size, **packed, "header": stored["header.json"],
           "zip directory and headers": path.stat().st_size - sum(stored.values()), "kept weights": kept,
           "codes stored": codes}
    if "positions" in packed and kept:
        out["positions, bits per kept weight"] = 8 * packed["positions"] / kept
    if "codes" in packed and codes:
        out["codes, bits per stored code"] = 8 * packed["codes"] / codes
    if header.get("meta_arrays"):  # format /2 kept the statistics in the JSON header, as text
        meta = json.loads(json.dumps(header["meta"]))
        for key, spec in header["meta_arrays"].items():
            values = np.frombuffer(payload, dtype=np.float32, count=spec["count"], offset=spec["offset"])
            meta["preprocessing"][key.split(".", 1)[1]] = [float(v) for v in values.astype(np.float64)]
        old = {**{k: v for k, v in header.items() if k != "meta_arrays"}, "meta": meta}
        text = json.dumps(old, separators=(",", ":")).encode()
        out["header with the statistics as JSON text (format /2)"] = _smaller(text)
    return out


def _smaller(raw: bytes) -> int:
    return min(len(zlib.compress(raw, 9)), len(lzma.compress(raw)))


def float16_bias(data_name: str, source, seed: int, folder: Path, epochs: int) -> list[dict]:
    """The trained original with int8 / int4 round-to-nearest weights, its quantized layers' biases rounded to
    float16 (what nnopt stores and computes with) against the same biases in float32: the largest logit change
    on the test split, the test predictions that change, and the test accuracy of each."""
    run_dir = folder / f"{data_name}-lenet-{seed}"
    fit("mlp:300,100", source, epochs=epochs, seed=seed, out=run_dir)
    data = load_data(source, seed=seed)
    rows = []
    for bits in (8, 4):
        model = load(run_dir)
        qweights = quantize_model(model, bits)
        biases = {name: p.detach().clone() for name, p in model.named_parameters() if name.endswith("bias")}
        half = apply_dequantized(model, qweights)
        with torch.inference_mode():
            half_logits = half(data.test.X)
            for name, value in biases.items():  # the same weights, float32 biases
                model.get_parameter(name).copy_(value)
            full_logits = model(data.test.X)
        row = {"data": data_name, "seed": seed, "bits": bits,
               "max_logit_change": float((half_logits - full_logits).abs().max()),
               "predictions_changed": int((half_logits.argmax(1) != full_logits.argmax(1)).sum()),
               "rows": len(data.test), "test_float16": float((half_logits.argmax(1) == data.test.y).float().mean()),
               "test_float32": float((full_logits.argmax(1) == data.test.y).float().mean())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


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
        timers = (("torch fp32", lambda b: torch_latency_ms(model, n, batch=b)),
                  ("torch structured 50%", lambda b: torch_latency_ms(small, n, batch=b)),
                  ("ORT fp32", lambda b: ort_latency_ms(fp32, n, batch=b)),
                  ("ORT int8 (QDQ)", lambda b: ort_latency_ms(int8, n, batch=b)))
        base = None
        for name, timer in timers:
            value = min(timer(batch) for _ in range(3))
            base = base or value
            rows.append({"runtime": name, "batch": batch, "latency_ms": value, "speedup": base / value})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summarize(name: str, runs: list[dict]) -> None:
    """One markdown row per method: mean over seeds, and each seed's change."""
    tests = [r["original"]["test"] for r in runs]
    trains = [r["original"]["train"] for r in runs]
    fp32_bytes = statistics.mean(r["original"]["bytes"] for r in runs)
    print(f"\n{name}: fp32, {runs[0]['original']['epochs']} epochs: test accuracy "
          f"{', '.join(f'{100 * t:.2f} %' for t in tests)} (mean {100 * statistics.mean(tests):.2f} %); train "
          f"{100 * statistics.mean(trains):.2f} % (mean); {fp32_bytes:,.0f} bytes")
    if not runs[0]["methods"]:
        return
    print("| method | test acc | change, pts (per seed) | bytes | smaller (range) | /1 layouts only | train acc |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, method in enumerate(row["method"] for row in runs[0]["methods"]):
        rows = [r["methods"][i] for r in runs]
        test = statistics.mean(r["test"] for r in rows)
        change = [0.0 - r["test_drop_pts"] for r in rows]
        v1 = [r.get("bytes_v1_layouts") for r in rows]
        ratios = [r["ratio"] for r in rows]
        label = method if "ladder" not in method else f"{method} (kept: {', '.join(r['chosen'] for r in rows)})"
        v1_text = f"{statistics.mean(v1):,.0f}" if all(v1) else ""
        print(f"| {label} | {100 * test:.2f} % | {statistics.mean(change):+.2f} "
              f"({', '.join(f'{c:+.2f}' for c in change)}) | {statistics.mean(r['bytes'] for r in rows):,.0f} | "
              f"{statistics.mean(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}x) | {v1_text} | "
              f"{100 * statistics.mean(r['train'] for r in rows):.2f} % |")
    for row in runs[0]["methods"]:
        if "breakdown" in row:
            parts = ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}"
                              for k, v in row["breakdown"].items())
            print(f"  bytes, seed {runs[0]['seed']}, {row['method']}: {parts}")
    for row in runs[0]["latency"]:
        print(f"  batch {row['batch']:>3}  {row['runtime']:<22} {row['latency_ms']:.4f} ms  {row['speedup']:.2f}x")


def summarize_float16(rows: list[dict]) -> None:
    changed = [f"{r['data']} seed {r['seed']} int{r['bits']}: {r['predictions_changed']} of {r['rows']}"
               for r in rows if r["predictions_changed"]]
    print(f"\n{len(rows)} models: largest logit change {max(r['max_logit_change'] for r in rows):.2g}; test "
          f"predictions changed: {'; '.join(changed) or 'none'}; test accuracy changed in "
          f"{sum(r['test_float16'] != r['test_float32'] for r in rows)}")


def pick(table: dict, words: str | None) -> dict:
    """The entries whose name contains one of the comma-separated words."""
    if words is None:
        return dict(table)
    return {name: s for name, s in table.items() if any(w in name for w in words.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="digits,digits28,mnist1d")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", help="only the METHODS whose name contains one of these comma-separated words "
                                          "('none': none; default: all, or none when --variants is given)")
    parser.add_argument("--variants", help="the VARIANTS whose name contains one of these comma-separated words")
    parser.add_argument("--original-epochs", type=int, default=20, help="epochs the original is trained (20)")
    parser.add_argument("--part", choices=["methods", "float16-bias"], default="methods")
    parser.add_argument("--breakdown", action="store_true", help="where each file's bytes go (first seed)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency table")
    parser.add_argument("--json")
    args = parser.parse_args()
    methods = {} if args.methods == "none" or (args.methods is None and args.variants) else pick(METHODS, args.methods)
    if args.variants:
        methods.update(pick(VARIANTS, args.variants))
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data.split(","):
            source = str(write_digits28(Path(tmp) / "digits28.npz")) if name == "digits28" else name
            if args.part == "float16-bias":
                report[name] = [row for seed in seeds
                                for row in float16_bias(name, source, seed, Path(tmp), args.original_epochs)]
            else:
                report[name] = [{"seed": seed, **run(name, source, seed, Path(tmp),
                                                     latency=seed == seeds[0] and not args.no_latency,
                                                     methods=methods, epochs=args.original_epochs,
                                                     breakdown=args.breakdown and seed == seeds[0])}
                                for seed in seeds]
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=2))
    if args.part == "float16-bias":
        summarize_float16([row for rows in report.values() for row in rows])
        return
    for name, runs in report.items():
        summarize(name, runs)


if __name__ == "__main__":
    main()
