"""Memory-mapped .npy arrays: rows stay on disk (np.load(mmap_mode="r")) and are read batch by batch.

The labels are loaded (one value per row: small beside the rows), so the split is load_data's own (seeded,
stratified) and the labels are encoded as for in-memory arrays. The scaling is fitted on the train rows in
chunks of CHUNK_BYTES, and applied to each batch as it is read: the rows are never in memory all at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnopt.errors import DataError, describe, param
from nnopt.data._prepare import _labels, _split_rows, _targets, detect_task
from nnopt.data._scale import _safe, apply_features, apply_target, eight_bit_images, fit_features, fit_target, \
    resolve_scale
from nnopt.data._types import Data

CHUNK_BYTES = 8 << 20  # rows read at a time when fitting the scaling


@dataclass
class MemmapSplit:
    """One split of a memory-mapped array: the rows it holds (positions in X, in load_data's split order, so a
    seed draws the same batches as from in-memory rows), their labels (as trained on: class codes, or targets
    scaled like in-memory ones) and the scaling each batch gets when read."""

    X: np.ndarray  # the whole array, memory-mapped
    rows: np.ndarray
    y: torch.Tensor
    x_params: dict

    def __len__(self) -> int:
        return len(self.rows)

    def in_disk_order(self, positions: np.ndarray) -> np.ndarray:
        """`positions` reordered so that their rows lie in increasing order on disk (a batch is a set of rows)."""
        return positions[np.argsort(self.rows[positions], kind="stable")]

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """The split's rows at `positions`, scaled, as float32 (n, n_features)."""
        index = self.rows[positions]
        return torch.from_numpy(apply_features(self.X[index].reshape(len(index), -1), self.x_params))

    def chunk(self) -> int:
        """Rows per read when walking the whole split (evaluation, fitting the scaling)."""
        return max(1, CHUNK_BYTES // max(1, self.X[:1].nbytes))

    def empty(self) -> MemmapSplit:
        return MemmapSplit(self.X, self.rows[:0], self.y[:0], self.x_params)


def _npy(path, name: str) -> np.ndarray:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the {param(name)} path")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {path} as a .npy array ({exc}); save it with numpy.save") from None


def is_memmap_source(data) -> bool:
    """A .npy path, or an (X, y) pair whose X is a .npy path or an np.memmap."""
    if isinstance(data, (str, os.PathLike)):
        return Path(data).suffix.lower() == ".npy"
    if isinstance(data, tuple) and len(data) == 2:
        X = data[0]
        return isinstance(X, np.memmap) or (isinstance(X, (str, os.PathLike)) and Path(X).suffix.lower() == ".npy")
    return False


def _arrays(data) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(data, (str, os.PathLike)):  # one file: the last column is the target, as in a table
        whole = _npy(data, "data")
        if whole.ndim != 2 or whole.shape[1] < 2:
            raise DataError(f"{data} holds an array of shape {whole.shape}; a single .npy file must be 2-D with the "
                            "target in its last column, or give (X, y) as two .npy paths (on the command line: --data "
                            "X.npy,y.npy)")
        return whole[:, :-1], np.asarray(whole[:, -1]), Path(data).name
    X, y = data
    X = _npy(X, "data") if isinstance(X, (str, os.PathLike)) else X
    y = _npy(y, "data") if isinstance(y, (str, os.PathLike)) else y
    if X.dtype.kind not in "biuf" or X.ndim < 2:
        raise DataError(f"a memory-mapped X must be a numeric array with one row per sample; got {describe(X)}")
    return X, np.asarray(y), "memmap"


def fit_scaling(X: np.ndarray, rows: np.ndarray, kind: str, pixel_max: float | None, chunk: int,
                channels: int = 1) -> dict:
    """fit_features' parameters for X[rows], from chunks of rows (Chan et al.'s pairwise mean / variance update),
    never holding more than `chunk` rows."""
    if kind not in ("standard", "channel", "minmax") or len(rows) == 0:
        return fit_features(np.zeros((0, int(np.prod(X.shape[1:])))), kind, pixel_max, channels)
    count, mean, m2, low, high = 0, 0.0, 0.0, None, None
    for start in range(0, len(rows), chunk):
        part = np.asarray(X[rows[start:start + chunk]], dtype=np.float64).reshape(len(rows[start:start + chunk]), -1)
        if kind == "channel":  # each channel's values, all positions of all rows, as one column
            part = part.reshape(len(part), channels, -1).transpose(0, 2, 1).reshape(-1, channels)
        if kind == "minmax":
            low = part.min(axis=0) if low is None else np.minimum(low, part.min(axis=0))
            high = part.max(axis=0) if high is None else np.maximum(high, part.max(axis=0))
            continue
        n_b, mean_b = len(part), part.mean(axis=0)
        m2_b = ((part - mean_b) ** 2).sum(axis=0)
        delta, total = mean_b - mean, count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta ** 2 * count * n_b / total
        count = total
    if kind == "minmax":
        return {"x_scale": "minmax", "x_min": low.tolist(), "x_max": (low + _safe(high - low)).tolist()}
    return {"x_scale": kind, "x_mean": mean.tolist(), "x_std": _safe(np.sqrt(m2 / count)).tolist()}


def from_memmap(data, *, task: str | None, val_fraction: float, test_fraction: float, seed: int,
                scale: str) -> Data:
    X, y_raw, name = _arrays(data)
    n = len(X)
    if n == 0:
        raise DataError(f"no rows in {param('data')}: the array is empty")
    y = _labels(y_raw, n, "y", "y")
    if task is None:
        task = detect_task(y)
    (codes,), class_names = _targets(task, [y], None)
    train, val, test = _split_rows(n, codes if task == "classification" else None, False, val_fraction,
                                   test_fraction, seed)
    eight_bit = eight_bit_images(X)
    input_shape = (1, *map(int, X.shape[1:])) if X.ndim == 3 else tuple(map(int, X.shape[1:])) if X.ndim >= 4 \
        else None
    n_features = int(np.prod(X.shape[1:]))
    channels = input_shape[0] if input_shape else None
    kind = resolve_scale(scale, None, channels, images=eight_bit or X.ndim >= 4)
    probe = MemmapSplit(X, np.sort(train), torch.zeros(0), {})
    x_params = fit_scaling(X, probe.rows, kind, None, probe.chunk(), channels or 1)
    target_scale = fit_target(codes[train]) if task == "regression" and scale in ("auto", "standard") else None

    def split(rows: np.ndarray) -> MemmapSplit:
        labels = torch.from_numpy(np.ascontiguousarray(codes[rows], dtype=np.int64)) if task == "classification" \
            else torch.from_numpy(apply_target(codes[rows], target_scale))
        return MemmapSplit(X, rows, labels, x_params)

    names = [f"x{i}" for i in range(n_features)]
    preprocessing = {
        "version": 1, "task": task, "scale": scale, **x_params, "n_features": n_features, "feature_names": names,
        "input_shape": list(input_shape) if input_shape else None, "target": None, "class_names": class_names,
        "y_mean": target_scale[0] if target_scale else None, "y_std": target_scale[1] if target_scale else None}
    out = Data(name=name, task=task, train=split(train), val=split(val), test=split(test), n_features=n_features,
               n_classes=len(class_names) if class_names else None, input_shape=input_shape, feature_names=names,
               class_names=class_names, target_scale=target_scale, preprocessing=preprocessing, source="memmap")
    if X.ndim == 3:  # the array's own (C, L), for a user's module
        out.sample_shape = tuple(int(d) for d in X.shape[1:])
    return out
