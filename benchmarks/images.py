"""Decoding an image folder: nnopt's reader in one process and in its process pool, against a hand-written Pillow
loop (open, convert to RGB, to a numpy array; no resize), round-robin, medians.

--part train: decoded and trained. `nnopt.fit(FOLDER, model=...)` against a hand-written Pillow + torch loop doing
the same: decode every file, a seeded 70 / 15 / 15 split, the same network (nnopt.build_model of the same spec),
Adam at the same lr, batch, epochs and threads, index slicing with `loss.item()` per step, validation accuracy
after each epoch and test accuracy at the end. images/s is files / seconds of the whole thing (nnopt: the whole
fit() call: reading the folder, the per-epoch validation scoring and the final scores included); they alternate,
medians.

    python benchmarks/images.py                     # 10,000 PNGs of 32x32 (3 classes), 3 repeats
    python benchmarks/images.py --files 2000 --repeats 5
    python benchmarks/images.py --part train [--model cnn:16,32] [--epochs 2] [--threads 1] [--repeats 3]
        [--eval-chunk 256] [--exact]
    python benchmarks/images.py --part costs [--repeats 3]   # reading and one scoring pass per split, apart

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


def labelled(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The hand loop's decode (as hand_written) and each file's class: its folder's index in sorted order."""
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows, labels = [], []
    for path in sorted(root.rglob("*.png")):
        with Image.open(path) as img:
            rows.append(np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255)
        labels.append(classes.index(path.parent.name))
    return np.stack(rows), np.asarray(labels)


def hand_train(root: Path, model: str, epochs: int, batch: int, lr: float, seed: int) -> tuple[int, float]:
    """Decode and train by hand; returns (files, test accuracy)."""
    import torch
    import torch.nn.functional as F

    import nnopt

    images, labels = labelled(root)
    X, y = torch.from_numpy(images.reshape(len(images), -1)), torch.from_numpy(labels)
    n = len(X)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = n_test = round(0.15 * n)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    torch.manual_seed(seed)
    net = nnopt.build_model(model, in_features=X.shape[1], n_outputs=int(y.max()) + 1, input_shape=images.shape[1:])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    Xtr, ytr = X[train], y[train]
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(Xtr), generator=g)
        running = 0.0
        for i in range(0, len(Xtr), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
        net.eval()
        with torch.inference_mode():
            float((net(X[val]).argmax(1) == y[val]).float().mean())
    with torch.inference_mode():
        accuracy = float((net(X[test]).argmax(1) == y[test]).float().mean())
    return n, accuracy


def nnopt_train(root: Path, model: str, epochs: int, batch: int, lr: float, seed: int, threads: int,
                eval_chunk: int | None = None, train_metrics: str = "running") -> tuple[int, float]:
    import nnopt
    from nnopt.train import _batches

    saved = _batches.scoring_chunk
    if eval_chunk:  # a fixed number of rows per scoring forward pass instead of the activation-sized chunk
        _batches.scoring_chunk = lambda net, shape, dtype=None: eval_chunk
    try:
        result = nnopt.fit(model, str(root), optimizer="adam", lr=lr, epochs=epochs, batch_size=batch, seed=seed,
                           threads=threads, device="cpu", progress=False, train_metrics=train_metrics)
    finally:
        _batches.scoring_chunk = saved
    rows = result.config["data_info"]
    return rows["n_train"] + rows["n_val"] + rows["n_test"], result.metrics["test"]["accuracy"]


def train_part(root: Path, args: argparse.Namespace) -> None:
    import torch

    import nnopt  # noqa: F401 - imported before the clock starts, for both

    torch.set_num_threads(args.threads)
    runs = {"hand-written Pillow + torch loop": lambda: hand_train(root, args.model, args.epochs, args.batch_size,
                                                                   args.lr, 0),
            f"nnopt.fit(FOLDER, model={args.model!r})": lambda: nnopt_train(root, args.model, args.epochs,
                                                                             args.batch_size, args.lr, 0, args.threads)}
    if args.eval_chunk:
        runs[f"nnopt.fit, scoring {args.eval_chunk} rows a forward pass"] = lambda: nnopt_train(
            root, args.model, args.epochs, args.batch_size, args.lr, 0, args.threads, args.eval_chunk)
    if args.exact:
        runs["nnopt.fit, train_metrics='exact', 8192 rows a scoring pass"] = lambda: nnopt_train(
            root, args.model, args.epochs, args.batch_size, args.lr, 0, args.threads, 8192, "exact")
    times: dict[str, list[float]] = {name: [] for name in runs}
    outcome: dict[str, tuple[int, float]] = {}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):  # alternated, so a change in the machine's load hits both alike
        for name, run in runs.items():
            start = time.perf_counter()
            outcome[name] = run()
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["hand-written Pillow + torch loop"])
    print(f"{args.model}, {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr:g}, "
          f"{args.threads} thread(s); load average before: {load:.2f}, after: {os.getloadavg()[0]:.2f} "
          f"on {len(os.sched_getaffinity(0))} cores")
    print("| decoded + trained | rounds s | median s | images/s | vs hand-written | test accuracy |\n"
          "|---|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        files, accuracy = outcome[name]
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {median:.2f} | {files / median:,.0f} | "
              f"{reference / median:.2f}x | {accuracy:.4f} |")


def costs_part(root: Path, args: argparse.Namespace) -> None:
    """Where nnopt.fit's time differs from the hand loop's: reading the folder (nnopt.load_data against the hand
    loop's decode), and one scoring pass over each split at nnopt's scoring chunk (what the final train / val /
    test scores cost), round-robin, medians."""
    import torch

    import nnopt
    from nnopt.train import scoring_chunk
    from nnopt.train._batches import make_source

    torch.set_num_threads(args.threads)
    result = nnopt.fit(args.model, str(root), optimizer="adam", lr=args.lr, epochs=1, batch_size=args.batch_size,
                       seed=0, threads=args.threads, device="cpu", progress=False)
    data, net = result.data, result.model.eval()
    shape = (data.n_features,)
    sources = {split: make_source(data, split, torch.device("cpu"), shape) for split in ("train", "val", "test")}

    def score(split: str) -> None:
        with torch.inference_mode():
            sources[split].outputs(net)

    runs = {"read the folder: hand-written decode (+ labels)": lambda: labelled(root),
            "read the folder: nnopt.load_data (decode, split, scaling)": lambda: nnopt.load_data(str(root)),
            **{f"score the {split} split once ({len(sources[split]):,} rows)": (lambda s=split: score(s))
               for split in sources}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{args.model}: scoring chunk {scoring_chunk(net, shape)} rows, {args.threads} thread(s); load average "
          f"before: {load:.2f}, after: {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} cores")
    print("| part | rounds s | median s |\n|---|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="where to write the folder (default: a temporary directory)")
    parser.add_argument("--part", choices=["decode", "train", "costs"], default="decode",
                        help="decode: the readers (default); train: decoded and trained, nnopt.fit vs a hand loop; "
                             "costs: reading the folder and scoring each split once, timed apart")
    parser.add_argument("--model", default="cnn:16,32", help="--part train: the network (default cnn:16,32)")
    parser.add_argument("--epochs", type=int, default=2, help="--part train: epochs (default 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="--part train: torch threads (default 1)")
    parser.add_argument("--eval-chunk", type=int, help="--part train: also nnopt.fit scoring the splits this many "
                                                       "rows a forward pass (nnopt sizes it by the activations)")
    parser.add_argument("--exact", action="store_true", help="--part train: also nnopt.fit scoring the training "
                        "split after every epoch (train_metrics='exact') in chunks of 8192 rows, as before issue 19")
    args = parser.parse_args()
    from imagegen import write_folder

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nnopt-images-"))
    root = base / f"shapes-{args.files}-{args.size}"
    if not root.is_dir():
        start = time.perf_counter()
        write_folder(root, args.files // 3, seed=0, sizes=((args.size, args.size),))
        print(f"wrote {args.files // 3 * 3} PNGs in {time.perf_counter() - start:.1f} s under {root}")
    if args.part in ("train", "costs"):
        (train_part if args.part == "train" else costs_part)(root, args)
        return
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
