"""Compressed ONNX files: bytes, ONNX Runtime latency and agreement with nnopt of LeNet-300-100's deployable files.

Data: `digits28`, sklearn's 8x8 digits in MNIST's layout (each pixel a 3x3 block, 2 pixels of zero padding:
28x28 = 784 inputs, as in benchmarks/compress.py), so the first layer has MNIST's 784x300 shape. LeNet-300-100
(mlp:300,100) is trained once (Adam, --epochs); each variant runs through `nnopt.compress.compress(...,
export="onnx")`, the code of `nnopt compress --export onnx`, and its model.onnx is measured: bytes on disk, ONNX
Runtime latency (1 thread; median over --rounds rounds in which every file is timed in turn, each a median of 30
runs after 5 warm-up runs, so that the ratios to fp32 come from the same moments of a shared machine), test
accuracy, and argmax agreement / largest |logit difference| against nnopt's compressed model on the test rows.

int8 is measured four ways: model.onnx (nnopt's int8 codes and steps, Cast / Mul back to the fp32 weight, folded
by ONNX Runtime at load), ONNX Runtime's static QDQ int8 (model.int8.onnx, activations rounded with calibrated
ranges), its dynamic int8 with nnopt's codes (MatMulInteger, activations rounded per batch), and
MatMulNBits(bits=8) with nnopt's codes, in fp32 compute and at accuracy_level 4 (int8 activations).
`--part export-time` times torch.onnx.export with dynamo=True against the TorchScript exporter (dynamo=False),
interleaved, for LeNet-300-100 and a small CNN.

    .venv/bin/python benchmarks/onnx_size.py [--epochs 10] [--rounds 5] [--part files|export-time] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nnopt.compress import agreement, apply_dequantized, compress, export_onnx, load, ort_latency_ms, ort_predict, \
    quantize_model, quantized_onnx
from nnopt.compress._export import ort_session
from nnopt.data import load_data
from nnopt.models import build_model
from nnopt.train import fit

GRADUAL = {"prune_method": "global", "schedule": "gradual"}
VARIANTS = {
    "int8": {"quantize": "int8"},
    "int4": {"quantize": "int4"},
    "global 90% gradual + int4 QAT": {"prune": 0.9, **GRADUAL, "quantize": "int4", "qat_epochs": 3},
    "structured 50% + 3 epochs": {"prune": 0.5, "prune_method": "structured", "finetune_epochs": 3},
    "structured 50% + int4": {"prune": 0.5, "prune_method": "structured", "finetune_epochs": 3, "quantize": "int4"},
}
BATCHES = (1, 256)


def write_digits28(path: Path) -> Path:
    """sklearn digits in MNIST's layout (benchmarks/compress.py's digits28): 28x28 uint8, 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.pad(np.kron(digits.images, np.ones((1, 3, 3))), ((0, 0), (2, 2), (2, 2)))
    X = np.clip(np.round(images * 255 / 16), 0, 255).astype(np.uint8)
    np.savez(path, X=X, y=digits.target.astype(np.int64))
    return path


def files(args: argparse.Namespace, tmp: Path) -> list[dict]:
    data_path = str(write_digits28(tmp / "digits28.npz"))
    data = load_data(data_path, seed=0)
    run = tmp / "lenet"
    fit("mlp:300,100", data_path, epochs=args.epochs, seed=0, out=run)
    X, y = data.test.X, data.test.y.numpy()
    entries = []
    for name, settings in VARIANTS.items():
        out = tmp / name.replace(" ", "_").replace("%", "").replace("+", "")
        result = compress(run, data_path, export="onnx", out=out, **settings)
        nnopt_logits = load(out / "compressed.nnz")(X).detach().numpy()
        if not entries:  # compress's baseline: the original network in ONNX Runtime
            original = export_onnx(load(run), data.n_features, tmp / "original.onnx")
            entries.append({"name": "fp32 (original)", "path": original, "reference": load(run)(X).detach().numpy()})
        entries.append({"name": name, "path": out / "model.onnx", "reference": nnopt_logits,
                        "spec": result.chosen["model_spec"], "nnz_bytes": result.chosen["file_bytes"]})
        if settings.get("quantize") == "int8" and "prune" not in settings:
            entries.append({"name": "int8 (ORT static QDQ)", "path": out / "model.int8.onnx",
                            "reference": nnopt_logits})
            for label, form, level in (("ORT dynamic, nnopt's codes", "dynamic", None),
                                       ("MatMulNBits(bits=8)", "nbits", None),
                                       ("MatMulNBits(bits=8) accuracy_level 4", "nbits", 4)):
                entries.append({"name": f"int8 {label}", "reference": nnopt_logits,
                                "path": other_form(run, 8, data.n_features, tmp, form, level)})
        if settings == {"quantize": "int4"}:
            entries.append({"name": "int4 MatMulNBits accuracy_level 4", "reference": nnopt_logits,
                            "path": other_form(run, 4, data.n_features, tmp, "nbits", 4)})
    for e in entries:
        logits = ort_predict(e["path"], X)
        e.update(bytes=e["path"].stat().st_size, accuracy=float((logits.argmax(1) == y).mean()),
                 agreement=agreement(e["reference"], logits),
                 max_abs_diff=float(np.abs(logits - e["reference"]).max()))
    sessions = {e["name"]: ort_session(e["path"]) for e in entries}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for e in entries:
            for b in BATCHES:
                times.setdefault((e["name"], b), []).append(ort_latency_ms(sessions[e["name"]], data.n_features,
                                                                           batch=b))
    base = entries[0]
    rows = []
    for e in entries:
        row = {k: v for k, v in e.items() if k not in ("path", "reference")}
        row["ratio_bytes"] = base["bytes"] / e["bytes"]
        for b in BATCHES:
            row[f"ms_b{b}"] = statistics.median(times[(e["name"], b)])
            row[f"vs_fp32_b{b}"] = row[f"ms_b{b}"] / statistics.median(times[(base["name"], b)])
        rows.append(row)
    return rows


def other_form(run: Path, bits: int, n_features: int, tmp: Path, int8: str, accuracy_level: int | None) -> Path:
    """The original's Linear weights rounded to `bits` (round-to-nearest, per channel: compress's int8 / int4) in
    another form than model.onnx's: int8 dynamic or MatMulNBits, at accuracy_level None (fp32 compute) or 4."""
    variant = load(run)
    qweights = quantize_model(variant, bits)
    apply_dequantized(variant, qweights)
    fp32 = export_onnx(variant, n_features, tmp / f"int{bits}.fp32.onnx")
    return quantized_onnx(fp32, tmp / f"int{bits}.{int8}{accuracy_level or 0}.onnx", qweights, int8=int8,
                          accuracy_level=accuracy_level)


def export_time(args: argparse.Namespace) -> list[dict]:
    """Seconds per export, interleaved, median of --rounds: torch.onnx.export with dynamo=True and with
    dynamo=False (the graph alone, serialized), and nnopt's export_onnx (dynamo, plus the check against torch in
    ONNX Runtime, onnx.checker and the atomic write)."""
    from nnopt.compress._export import OPSET, _dynamo_export, _torchscript_export

    models = {"mlp:300,100": build_model("mlp:300,100", in_features=784, n_outputs=10).eval(),
              "cnn:16,32": build_model("cnn:16,32", in_features=784, n_outputs=10, input_shape=(1, 28, 28)).eval()}
    folder = Path(tempfile.mkdtemp(prefix="nnopt-export-time-"))
    export_onnx(models["mlp:300,100"], 784, folder / "warm.onnx")  # imports and first-call set-up out of the timing
    kinds = {"dynamo": lambda m: _dynamo_export(m, torch.zeros(2, 784), OPSET),
             "torchscript": lambda m: _torchscript_export(m, torch.zeros(2, 784), OPSET),
             "export_onnx": lambda m: export_onnx(m, 784, folder / "m.onnx")}
    rows = []
    for name, model in models.items():
        seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind, run in kinds.items():
                start = time.perf_counter()
                run(model)
                seconds[kind].append(time.perf_counter() - start)
        row = {"model": name, **{f"{k}_s": statistics.median(v) for k, v in seconds.items()}}
        row["ratio"] = row["dynamo_s"] / row["torchscript_s"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--part", choices=("files", "export-time"), default="files")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.part == "export-time":
        rows = export_time(args)
        print("| model | dynamo=True s | TorchScript s | ratio | export_onnx s |\n|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['model']} | {r['dynamo_s']:.3f} | {r['torchscript_s']:.3f} | {r['ratio']:.1f}x "
                  f"| {r['export_onnx_s']:.3f} |")
    else:
        with tempfile.TemporaryDirectory(prefix="nnopt-onnx-size-") as tmp:
            rows = files(args, Path(tmp))
        print("| variant | ONNX bytes | vs fp32 | ms b1 (x fp32) | ms b256 (x fp32) | test acc | agreement "
              "| max abs diff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['name']} | {r['bytes']:,} | {r['ratio_bytes']:.1f}x "
                  f"| {r['ms_b1']:.4f} ({r['vs_fp32_b1']:.2f}) | {r['ms_b256']:.3f} ({r['vs_fp32_b256']:.2f}) "
                  f"| {100 * r['accuracy']:.1f} % "
                  f"| {100 * r['agreement']:.1f} % | {r['max_abs_diff']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
