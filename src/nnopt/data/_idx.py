"""MNIST-layout IDX files: a directory with train-images/train-labels (+ optional t10k-*), plain or .gz.

IDX format: 2 zero bytes, a dtype code, the number of dims, then one big-endian uint32 per dim, then the data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from nnopt.errors import DataError
from nnopt.data._types import RawData

IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
PARTS = {  # part -> (file stem, idx kind)
    "train_images": ("train-images", "idx3"), "train_labels": ("train-labels", "idx1"),
    "test_images": ("t10k-images", "idx3"), "test_labels": ("t10k-labels", "idx1"),
}


def _candidates(stem: str, kind: str) -> list[str]:
    names = [f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"]
    return names + [name + ".gz" for name in names]


def find_idx_files(directory: Path) -> dict[str, Path]:
    """The IDX files present in ``directory``, by part; the train pair is required, the t10k pair optional."""
    found: dict[str, Path] = {}
    for part, (stem, kind) in PARTS.items():
        for name in _candidates(stem, kind):
            if (directory / name).is_file():
                found[part] = directory / name
                break
    if "train_images" not in found or "train_labels" not in found:
        missing = [_candidates(*PARTS[p])[0] for p in ("train_images", "train_labels") if p not in found]
        raise DataError(
            f"no MNIST-layout IDX files in {directory}: missing {', '.join(missing)} (optionally .gz or with "
            "a dot before 'idx'); give a directory with train-images-idx3-ubyte and train-labels-idx1-ubyte"
        )
    if ("test_images" in found) != ("test_labels" in found):
        have, lack = ("test_images", "test_labels") if "test_images" in found else ("test_labels", "test_images")
        raise DataError(f"{found[have].name} in {directory} has no matching {_candidates(*PARTS[lack])[0]}; "
                        "add it or remove the t10k file")
    return found


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (plain or gzip) into a numpy array in native byte order."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        magic = raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
        raise DataError(f"{path} is not an IDX file (bad magic number {magic}; expected 0000 + dtype code "
                        "08/09/0b/0c/0d/0e + number of dims); check the file or re-download it")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dims); the file is corrupt")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {dims} ({expected} data bytes) but the file has "
                        f"{len(raw) - header}; the file is truncated or corrupt")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim < 2:
        raise DataError(f"{images_path}: images must have at least 2 dims (n, ...); got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: labels must be 1-D; got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path.name} has {len(images)} images but {labels_path.name} has "
                        f"{len(labels)} labels; they must match")
    return images, labels


def read_idx_dir(directory: Path) -> RawData:
    files = find_idx_files(directory)
    images, labels = _pair(files["train_images"], files["train_labels"])
    test = None
    if "test_images" in files:
        test_images, test_labels = _pair(files["test_images"], files["test_labels"])
        if test_images.shape[1:] != images.shape[1:]:
            raise DataError(f"test images have shape {test_images.shape[1:]} but train images "
                            f"{images.shape[1:]}; they must match")
        test = (test_images, test_labels)
    sample_shape = images.shape[1:]
    input_shape = (1, *sample_shape) if len(sample_shape) == 2 else tuple(sample_shape)
    feature_names = ([f"pixel_{r}_{c}" for r in range(sample_shape[0]) for c in range(sample_shape[1])]
                     if len(sample_shape) == 2 else None)
    # uint8 images are 8-bit pixels, scaled by prepare() as every 8-bit array is (per channel under scale="auto")
    return RawData(X=images, y=labels, source="idx", feature_names=feature_names, input_shape=input_shape,
                   test=test, task="classification")
