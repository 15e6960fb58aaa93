"""Compressing user models: a ResNet-18-shaped network and a small residual CNN, written here as a user writes them
(plain nn.Modules, not nnopt specs), through `nnopt.compress.compress` (the same code as `nnopt compress`).

Data: a synthetic 10-class image set generated with torch (--images of 3x32x32: each class a colour mix and an
orientation of a sinusoidal grating, random frequency, phase and contrast, Gaussian noise), split by nnopt
(70 / 15 / 15). Each model is trained once per --seeds seed (its split, initialisation and shuffling; Adam,
--epochs), then compressed three ways, each fine-tuned
--finetune-epochs after pruning: structured 50 % (torch-pruning, group L2) + int8, global 90 % + int4 QAT
(--qat-epochs), int8 round-to-nearest alone. Bytes are the real files (fp32: torch.save of the state dict; the
rest: compressed.nnz); accuracies are on the test split.

Latency, one thread, batch 1 and 64, medians over --rounds rounds in which every configuration is timed in turn
(interleaved, so ratios survive a shared machine): torch eager fp32, torch eager of the structured-pruned network,
torch.ao's dynamic int8 (quantize_dynamic on nn.Linear, the only layer type it quantizes: here only the head),
ONNX Runtime fp32 and static QDQ int8 (nnopt's quantize_onnx_int8, calibrated on training images) of the
original and of the structured-pruned network. nnopt's export takes flat rows, so each module is exported behind
an nn.Unflatten to its image shape (a Reshape in the graph).

    PYTHONPATH=src .venv/bin/python benchmarks/compress_any.py [--width 16] [--images 2000] [--epochs 6]
        [--finetune-epochs 3] [--qat-epochs 2] [--rounds 5] [--models resnet18,rescnn] [--seeds 0,1,2]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnopt.compress import compress, export_onnx, load, ort_latency_ms, quantize_onnx_int8, torch_latency_ms
from nnopt.compress._export import ort_session
from nnopt.models import count_params
from nnopt.train import fit


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 images (CIFAR's 3x3 stem, no max pool): 4 stages of 2 BasicBlocks, widths width x
    (1, 2, 4, 8) (64 is ResNet-18's own), downsampling 1x1-conv shortcuts, global average pooling, a linear head."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        blocks, c_in = [], width
        for stage, mult in enumerate((1, 2, 4, 8)):
            blocks += [BasicBlock(c_in, width * mult, stride=1 if stage == 0 else 2),
                       BasicBlock(width * mult, width * mult)]
            c_in = width * mult
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class ResidualCNN(nn.Module):
    """The small user CNN of the issue: a stem conv, `depth` residual blocks with BatchNorm, 2x2 max pooling
    after the stem, global average pooling, a linear head."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: int = 32, depth: int = 2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.ModuleList(nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)) for _ in range(depth))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.head(x.mean(dim=(2, 3)))


def grating_images(n: int, seed: int = 0, size: int = 32, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, size, size) float32 images and labels: class k is a grating at angle k * pi / classes in a colour
    mix of its own, random frequency, phase and contrast, plus noise."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(classes, 3, generator=torch.Generator().manual_seed(1234)) * 2 - 1
    y = torch.randint(0, classes, (n,), generator=g)
    theta = y.float() * math.pi / classes + torch.randn(n, generator=g) * 0.05
    freq = 0.1 + 0.15 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    contrast = 0.6 + 0.8 * torch.rand(n, generator=g)
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    wave = torch.sin(2 * math.pi * freq[:, None, None] * (xx * torch.cos(theta)[:, None, None]
                                                        + yy * torch.sin(theta)[:, None, None]) + phase[:, None, None])
    images = contrast[:, None, None, None] * colours[y][:, :, None, None] * wave[:, None]
    images = images + 0.5 * torch.randn(images.shape, generator=g)
    return images.numpy().astype(np.float32), y.numpy()


VARIANTS = {
    "structured 50% + int8": {"prune": 0.5, "prune_method": "structured", "quantize": "int8"},
    "global 90% + int4 QAT": {"prune": 0.9, "prune_method": "global", "quantize": "int4"},
    "int8": {"quantize": "int8"},
}


def flat(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    return nn.Sequential(nn.Unflatten(1, shape), model).eval()


def timed(configs: dict, shape: tuple[int, ...], rounds: int) -> dict:
    """{(name, batch): median ms over rounds}; each round times every configuration once (repeats 10)."""
    n = math.prod(shape)
    times: dict = {}
    for _ in range(rounds):
        for name, (kind, target) in configs.items():
            for batch in (1, 64):
                if kind == "torch":
                    ms = torch_latency_ms(target, shape, batch=batch, repeats=10, warmup=2)
                else:
                    ms = ort_latency_ms(target, n, batch=batch, repeats=10, warmup=2)
                times.setdefault((name, batch), []).append(ms)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, X: np.ndarray, y: np.ndarray, args: argparse.Namespace, work: Path, seed: int = 0,
          timing: bool = True) -> dict:
    shape = tuple(X.shape[1:])
    # trained from the class + its arguments (a factory spec, the class importable from this file), so that the
    # run records the recipe compress() rebuilds the network from
    spec = f"compress_any:ResNet18:width={args.width}" if name == "resnet18" else \
        f"compress_any:ResidualCNN:width={args.cnn_width}"
    work = work / f"seed{seed}"
    source = work / name / "run"
    start = time.perf_counter()
    trained = fit(spec, (X, y), epochs=args.epochs, batch_size=64, lr=3e-3, seed=seed, out=source)
    result = {"model": name, "seed": seed, "spec": spec, "params": count_params(trained.model),
              "train_s": round(time.perf_counter() - start, 1), "original_test": trained.metrics["test"]["accuracy"],
              "variants": {}}
    for variant, settings in VARIANTS.items():
        extra = {"qat_epochs": args.qat_epochs} if "QAT" in variant else {}
        start = time.perf_counter()
        res = compress(source, (X, y), finetune_epochs=args.finetune_epochs, out=work / name / variant.split()[0],
                       **settings, **extra)
        original, row = res.rows[0], res.chosen
        result["variants"][variant] = {"test": row["test"], "drop_pts": 100 * (original["test"] - row["test"]),
                                       "file_bytes": row["file_bytes"], "params": row["params"],
                                       "nonzero_params": row["nonzero_params"], "identical_after_load":
                                       row["identical_after_load"], "seconds": round(time.perf_counter() - start, 1)}
        result["original_file_bytes"], result["original_test_reloaded"] = original["file_bytes"], original["test"]
    if not timing:
        return result
    pruned = load(work / name / "structured" / "compressed.nnz")
    original = load(source)
    calibration = X[:256].reshape(256, -1)
    files = {}
    for tag, net in (("fp32", original), ("pruned", pruned)):
        path = export_onnx(flat(net, shape), math.prod(shape), work / name / f"{tag}.onnx")
        files[tag] = path
        files[tag + "-int8"] = quantize_onnx_int8(path, work / name / f"{tag}.int8.onnx", calibration)
    dynamic = torch.ao.quantization.quantize_dynamic(original, {nn.Linear}, dtype=torch.qint8)
    configs = {"torch fp32": ("torch", original), "torch structured 50%": ("torch", pruned),
               "torch.ao dynamic int8": ("torch", dynamic),
               "ORT fp32": ("ort", ort_session(files["fp32"])), "ORT int8": ("ort", ort_session(files["fp32-int8"])),
               "ORT structured 50%": ("ort", ort_session(files["pruned"])),
               "ORT structured 50% int8": ("ort", ort_session(files["pruned-int8"]))}
    times = timed(configs, shape, args.rounds)
    result["latency_ms"] = {f"{k} @{b}": round(v, 4) for (k, b), v in times.items()}
    result["speedup_vs_torch_fp32"] = {f"{k} @{b}": round(times[("torch fp32", b)] / v, 2)
                                       for (k, b), v in times.items()}
    result["onnx_bytes"] = {k: p.stat().st_size for k, p in files.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16, help="ResNet-18's first-stage width (64 in ResNet-18)")
    parser.add_argument("--cnn-width", type=int, default=32)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="resnet18,rescnn")
    parser.add_argument("--seeds", default="0", help="training seeds (split, initialisation, shuffling), e.g. 0,1,2; "
                                                     "latency is timed on the first")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, y = grating_images(args.images)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        seeds = [int(s) for s in args.seeds.split(",")]
        for seed in seeds:
            for name in args.models.split(","):
                results.append(bench(name, X, y, args, Path(scratch), seed=seed, timing=seed == seeds[0]))
                print(json.dumps(results[-1], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
