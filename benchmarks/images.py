"""Decoding an image folder: nnopt's reader in one process and in its process pool, against a hand-written Pillow
loop (open, convert to RGB, to a numpy array; no resize), round-robin, medians.

    python benchmarks/images.py                     # 10,000 PNGs of 32x32 (3 classes), 3 repeats
    python benchmarks/images.py --files 2000 --repeats 5

The folder is written once under --dir (default: a temporary directory) with seeded noise and shapes.
Results: benchmarks/RESULTS.md, "Image folders".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))


def hand_written(root: Path) -> np.ndarray:
    from PIL import Image

    rows = []
    for path in sorted(root.rglob("*.png")):
        with Image.open(path) as img:
            rows.append(np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255)
    return np.stack(rows)


def nnopt_reader(root: Path, pool: bool) -> np.ndarray:
    from nnopt.data import _images

    saved = _images.pool_size
    cores = len(os.sched_getaffinity(0))
    _images.pool_size = (lambda n_files: cores) if pool else (lambda n_files: 1)  # whatever the machine's load
    try:
        images, _, _ = _images.read_image_folder(root)
    finally:
        _images.pool_size = saved
    return images.X


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="where to write the folder (default: a temporary directory)")
    args = parser.parse_args()
    from imagegen import write_folder

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nnopt-images-"))
    root = base / f"shapes-{args.files}-{args.size}"
    if not root.is_dir():
        start = time.perf_counter()
        write_folder(root, args.files // 3, seed=0, sizes=((args.size, args.size),))
        print(f"wrote {args.files // 3 * 3} PNGs in {time.perf_counter() - start:.1f} s under {root}")
    runs = {"hand-written Pillow loop (1 process)": lambda: hand_written(root),
            "nnopt, 1 process": lambda: nnopt_reader(root, pool=False),
            "nnopt, process pool (one process a core)": lambda: nnopt_reader(root, pool=True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()[0]
    shapes = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            shapes[name] = run().shape
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["hand-written Pillow loop (1 process)"])
    print(f"load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} cores")
    print("| reader | median s | images/s | vs hand-written |\n|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {shapes[name][0] / median:,.0f} | {reference / median:.2f}x |")


if __name__ == "__main__":
    main()
