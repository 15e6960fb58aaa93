"""Scaling an image folder: test accuracy of a small BatchNorm residual CNN trained by nnopt.fit on a generated RGB
folder, with each `scale` over several seeds, rounds interleaved (seed by seed, every scale in turn).

`none` keeps the decoded pixels in [0, 1], which is what `auto` gave an image folder before it standardized each
channel (the recorded x_scale was "pixel" with divisor 1: the same numbers); `auto` now standardizes each channel
with the train split's means and stds, as it does a float (n, C, H, W) array; `standard` standardizes each pixel.

    python benchmarks/folder_scaling.py                        # 4 classes x 100 PNGs of 32x32, seeds 1-5, 3 epochs
    python benchmarks/folder_scaling.py --seeds 1,2,3 --epochs 5 --per-class 200 --width 16
    python benchmarks/folder_scaling.py --source array --scales auto   # the same pixels as a uint8 array
    python benchmarks/folder_scaling.py --source idx --scales auto     # grey, as MNIST-layout IDX files

--source array gives the same images to nnopt.fit as a uint8 (n, 3, H, W) array in memory; --source idx writes them
grey (the mean of the channels) as train-images-idx3-ubyte / train-labels-idx1-ubyte and trains on the directory.
Run with PYTHONPATH pointing at another checkout's src/ to measure that version's rule on the same images.

The folder (tests/data/imagegen.py write_four_classes: a filled circle, a filled square, vertical stripes in a random
colour on a dark background, or uniform noise) is written once under --dir (default: a temporary directory) from a
fixed seed. tests/data/test_image_folder_scaling.py trains the same setting with seed 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import nnopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))

from imagegen import (FOUR_CLASSES, bn_residual_cnn, four_class_arrays, write_four_class_idx,  # noqa: E402
                      write_four_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--scales", default="none,auto,standard")
    parser.add_argument("--dir", help="where to write the folder (default: a temporary directory)")
    parser.add_argument("--source", choices=("folder", "array", "idx"), default="folder",
                        help="how the images reach nnopt: PNG folder, uint8 array in memory, or IDX files (grey)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scales = args.scales.split(",")
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nnopt-folder-scaling-"))
    channels = 1 if args.source == "idx" else 3
    if args.source == "array":
        data, where = four_class_arrays(args.per_class, args.size), "a uint8 array in memory"
    else:
        root = base / f"{'idx' if args.source == 'idx' else 'shapes'}-{args.per_class}-{args.size}"
        if not root.exists():
            (write_four_class_idx if args.source == "idx" else write_four_classes)(root, args.per_class, args.size)
        data, where = str(root), f"{'IDX files' if args.source == 'idx' else 'PNGs'} under {root}"
    print(f"{len(FOUR_CLASSES) * args.per_class} images of {args.size}x{args.size} as {where}; BN residual CNN "
          f"width {args.width}, {args.epochs} epochs, torch {torch.__version__}, nnopt {nnopt.__version__} "
          f"from {Path(nnopt.__file__).parent}")
    accuracy: dict[str, list[float]] = {scale: [] for scale in scales}
    loads, start = [], time.perf_counter()
    for seed in seeds:
        for scale in scales:
            torch.manual_seed(seed)  # the network's initial weights
            net = bn_residual_cnn(channels, len(FOUR_CLASSES), args.width)
            result = nnopt.fit(net, data, epochs=args.epochs, seed=seed, scale=scale)
            accuracy[scale].append(result.metrics["test"]["accuracy"])
            loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
    print(f"\n| scale | test accuracy, seeds {', '.join(map(str, seeds))} | median | min |\n|---|---|---|---|")
    for scale, values in accuracy.items():
        print(f"| {scale} | {', '.join(f'{v:.3f}' for v in values)} | {statistics.median(values):.3f} | "
              f"{min(values):.3f} |")
    print(f"\n{time.perf_counter() - start:.0f} s; 1-minute load {min(loads):.2f}-{max(loads):.2f} "
          f"(median {statistics.median(loads):.2f})")


if __name__ == "__main__":
    main()
