"""Built-in datasets: small, offline, deterministic. Each factory returns raw (X, y, meta) before splitting.

The synthetic sets use a fixed data seed (0), so the data never change with the split seed.
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from nnopt.fileio import atomic_write
from nnopt.registry import Entry, Registry

Raw = tuple[np.ndarray, np.ndarray, dict[str, Any]]
DATA_SEED = 0
N_SYNTHETIC = 1000


def _sklearn_bunch(loader_name: str, **meta: Any) -> Raw:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    meta.setdefault("feature_names", [str(name) for name in bunch.feature_names])
    if "target_names" in bunch and "class_names" not in meta:
        meta["class_names"] = [str(name) for name in bunch.target_names]
    return np.asarray(bunch.data), np.asarray(bunch.target), meta


def _digits() -> Raw:
    return _sklearn_bunch("load_digits", task="classification", input_shape=(1, 8, 8), pixel_max=16.0,
                          class_names=[str(k) for k in range(10)])


def _iris() -> Raw:
    return _sklearn_bunch("load_iris", task="classification")


def _wine() -> Raw:
    return _sklearn_bunch("load_wine", task="classification")


def _breast_cancer() -> Raw:
    return _sklearn_bunch("load_breast_cancer", task="classification")


def _diabetes() -> Raw:
    return _sklearn_bunch("load_diabetes", task="regression")


def _generate_mnist1d() -> dict[str, np.ndarray]:
    # Generated locally (mnist1d.data.get_dataset would download a pickle). make_dataset reseeds the global
    # numpy / random generators; restore them so loading data never changes the caller's random streams.
    import mnist1d.data

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def cache_dir() -> Path:
    """Where generated datasets are kept: $NNOPT_CACHE_DIR, else $XDG_CACHE_HOME/nnopt, else ~/.cache/nnopt."""
    if os.environ.get("NNOPT_CACHE_DIR"):
        return Path(os.environ["NNOPT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnopt"


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Generating takes about 7 s; every later process (compare / tune workers) reads the cached copy instead.
    import mnist1d

    path = cache_dir() / f"mnist1d-{getattr(mnist1d, '__version__', 'default')}-default-args.npz"
    arrays = None
    try:
        with np.load(path) as saved:
            arrays = tuple(saved[k] for k in ("x", "y", "x_test", "y_test"))
    except (OSError, KeyError, ValueError):  # absent, or a broken cache: make it again
        ds = _generate_mnist1d()
        arrays = (ds["x"], ds["y"], ds["x_test"], ds["y_test"])
        try:
            atomic_write(path, lambda fh: np.savez(fh, **dict(zip(("x", "y", "x_test", "y_test"), arrays))))
        except OSError:
            pass  # a read-only home: generate again next time
    for array in arrays:
        array.setflags(write=False)  # cached: nobody may change them in place
    return arrays


def _mnist1d() -> Raw:
    x, y, x_test, y_test = _mnist1d_arrays()
    meta = {"task": "classification", "input_shape": (1, 40), "test": (x_test, y_test),
            "feature_names": [f"x{i}" for i in range(x.shape[1])], "class_names": [str(k) for k in range(10)]}
    return x, y, meta


def _two_d(X: np.ndarray, y: np.ndarray) -> Raw:
    return X, y, {"task": "classification", "feature_names": ["x0", "x1"]}


def _moons() -> Raw:
    from sklearn.datasets import make_moons

    return _two_d(*make_moons(n_samples=N_SYNTHETIC, noise=0.2, random_state=DATA_SEED))


def _circles() -> Raw:
    from sklearn.datasets import make_circles

    return _two_d(*make_circles(n_samples=N_SYNTHETIC, noise=0.1, factor=0.5, random_state=DATA_SEED))


def _blobs() -> Raw:
    from sklearn.datasets import make_blobs

    return _two_d(*make_blobs(n_samples=N_SYNTHETIC, centers=3, n_features=2, random_state=DATA_SEED))


def _linear() -> Raw:
    # The classic gradient-descent example: y = 2 + 3x + noise. With scale="none" a linear model recovers 3 and 2.
    rng = np.random.default_rng(DATA_SEED)
    x = 2.0 * rng.random((N_SYNTHETIC, 1))
    y = 2.0 + 3.0 * x[:, 0] + rng.normal(0.0, 0.1, N_SYNTHETIC)
    return x, y, {"task": "regression", "feature_names": ["x"], "target": "y"}


def _entry(name: str, factory, summary: str, task: str, n_samples: int, n_features: int,
           n_classes: int | None) -> Entry:
    extra = {"task": task, "n_samples": n_samples, "n_features": n_features, "n_classes": n_classes}
    return Entry(name, factory, summary, extra=extra)


DATASETS = Registry("dataset", [
    _entry("digits", _digits, "8x8 handwritten digits (sklearn), pixels 0..16", "classification", 1797, 64, 10),
    _entry("iris", _iris, "iris flowers: 4 measurements, 3 species", "classification", 150, 4, 3),
    _entry("wine", _wine, "wine cultivars from 13 chemical measurements", "classification", 178, 13, 3),
    _entry("breast_cancer", _breast_cancer, "breast tumours, malignant or benign, 30 features",
           "classification", 569, 30, 2),
    _entry("diabetes", _diabetes, "disease progression after one year from 10 baseline variables",
           "regression", 442, 10, None),
    _entry("mnist1d", _mnist1d, "MNIST-1D: 1-D digit signals of length 40, generated locally, own test split",
           "classification", 5000, 40, 10),
    _entry("moons", _moons, "two interleaving half circles, noise 0.2", "classification", N_SYNTHETIC, 2, 2),
    _entry("circles", _circles, "two concentric circles, noise 0.1, factor 0.5", "classification",
           N_SYNTHETIC, 2, 2),
    _entry("blobs", _blobs, "three Gaussian blobs in 2-D", "classification", N_SYNTHETIC, 2, 3),
    _entry("linear", _linear, "y = 2 + 3x + N(0, 0.1^2), x ~ 2*U(0, 1): linear regression by GD",
           "regression", N_SYNTHETIC, 1, None),
])


def list_datasets() -> list[dict]:
    """The built-in datasets as plain dicts, from the table's static fields (nothing is generated)."""
    return [
        {"name": entry.name, "task": entry.task, "n_samples": entry.n_samples, "n_features": entry.n_features,
         "n_classes": entry.n_classes, "summary": entry.summary}
        for entry in DATASETS
    ]
