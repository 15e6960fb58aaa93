import json

import numpy as np
import pytest
import torch

from nnopt.data import Data, Split, apply_preprocessing, detect_task, load_data
from nnopt.errors import DataError, UsageError


def blobs(n=300, k=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) * np.array([1.0, 10.0, 0.1, 5.0])[:d] + y[:, None] + 50.0
    return X, y


# --- task detection -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("labels, task", [
    (["cat", "dog", "cat"], "classification"),
    (np.array([0.5, 1.5, 2.25]), "regression"),
    (np.arange(100) % 2, "classification"),
    (np.arange(1000) % 50, "classification"),      # 50 <= min(50, 100)
    (np.arange(1000) % 51, "regression"),          # 51 > 50
    (np.arange(100) % 11, "regression"),           # 11 > 100 // 10
    (np.arange(100) % 10, "classification"),
    (np.array([1.0, 2.0, 1.0, 2.0]), "classification"),  # integer-valued floats, 2 <= max(2, ...)
    (np.array([0, 1, 2]), "regression"),           # 3 > max(2, min(50, 0))
    (np.array([True, False, True]), "classification"),
    (np.random.default_rng(0).normal(size=(10, 2)), "regression"),
    (torch.tensor([0, 1, 1, 0]), "classification"),
])
def test_detect_task(labels, task):
    assert detect_task(labels) == task


def test_detect_task_on_sklearn_sets():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine

    assert detect_task(load_diabetes().target) == "regression"
    for loader in (load_digits, load_iris, load_wine, load_breast_cancer):
        assert detect_task(loader().target) == "classification"


def test_forced_task_errors():
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(DataError, match=r"labels are not class labels \(found 3.7\); use task='regression'"):
        load_data((X, np.r_[np.zeros(39), 3.7]), task="classification")
    with pytest.raises(DataError, match="labels are not numbers.*use task='classification'"):
        load_data((X, np.array(["a", "b"] * 20)), task="regression")
    with pytest.raises(DataError, match="only one class"):
        load_data((X, np.zeros(40)), task="classification")
    with pytest.raises(DataError, match="unknown task 'clasification'; did you mean 'classification'.*choices"):
        load_data((X, np.zeros(40)), task="clasification")
    with pytest.raises(DataError, match="multi-column targets"):
        load_data((X, np.zeros((40, 2))), task="classification")
    assert load_data((X, np.arange(40) % 3), task="classification").n_classes == 3  # detection alone: regression
    assert load_data((X, np.arange(40) % 2), task="regression").task == "regression"
    assert load_data((X, np.arange(40) % 2), task="auto").task == "classification"


# --- splits -------------------------------------------------------------------------------------------------

def test_split_is_seeded_and_sized():
    X, y = blobs(1000)
    a, b, c = load_data((X, y), seed=3), load_data((X, y), seed=3), load_data((X, y), seed=4)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).X, getattr(b, part).X)
        assert torch.equal(getattr(a, part).y, getattr(b, part).y)
    assert not torch.equal(a.train.X, c.train.X)
    assert (len(a.train), len(a.val), len(a.test)) == (700, 150, 150)
    d = load_data((X, y), val_fraction=0.1, test_fraction=0.3)
    assert (len(d.train), len(d.val), len(d.test)) == (600, 100, 300)


def test_split_is_stratified():
    X, y = blobs(600, k=3)
    data = load_data((X, y), seed=1)
    for part in (data.train, data.val, data.test):
        counts = torch.bincount(part.y, minlength=3)
        assert counts.max() - counts.min() <= 1
    train = {tuple(r) for r in load_data((X, y), scale="none").train.X.tolist()}
    test = {tuple(r) for r in load_data((X, y), scale="none").test.X.tolist()}
    assert not train & test


def test_rare_class_falls_back_to_unstratified_split():
    X, y = blobs(100, k=2)
    y[0] = 7  # one row of class 7
    data = load_data((X, y), task="classification")
    assert data.n_classes == 3 and len(data.train) + len(data.val) + len(data.test) == 100


def test_val_fraction_zero_gives_empty_val_split():
    X, y = blobs(200)
    data = load_data((X, y), val_fraction=0.0)
    assert len(data.val) == 0 and data.val.X.shape == (0, 4) and data.val.X.dtype == torch.float32
    assert data.val.y.dtype == torch.int64 and len(data.train) == 170
    reg = load_data((X, X[:, :2] * 0.37), val_fraction=0)
    assert reg.val.y.shape == (0, 2) and reg.val.y.dtype == torch.float32


def test_test_fraction_zero_gives_empty_test_split():
    X, y = blobs(200)
    data = load_data((X, y), test_fraction=0.0, val_fraction=0.2)
    assert len(data.test) == 0 and data.test.X.shape == (0, 4) and len(data.val) == 40 and len(data.train) == 160
    both = load_data((X, X[:, :1]), test_fraction=0, val_fraction=0)
    assert len(both.train) == 200 and len(both.test) == len(both.val) == 0 and both.test.y.dtype == torch.float32


@pytest.mark.parametrize("kwargs, message", [
    ({"val_fraction": 1.5}, r"val_fraction= must be in \[0, 1\); got 1.5"),
    ({"val_fraction": -0.1}, r"val_fraction= must be in \[0, 1\)"),
    ({"test_fraction": 1}, r"test_fraction= must be in \[0, 1\); got 1"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, r"must be < 1"),
])
def test_bad_fractions(kwargs, message):
    with pytest.raises(UsageError, match=message):
        load_data("iris", **kwargs)


# --- scaling ------------------------------------------------------------------------------------------------

def test_standard_scaling_is_fitted_on_train_only():
    X, y = blobs(600)
    raw = load_data((X, y), scale="none", seed=2)
    data = load_data((X, y), scale="auto", seed=2)
    assert torch.allclose(data.train.X.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(data.train.X.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    mean, std = raw.train.X.double().mean(0), raw.train.X.double().std(0, unbiased=False)
    for part in ("val", "test"):
        expected = ((getattr(raw, part).X.double() - mean) / std).float()
        assert torch.allclose(getattr(data, part).X, expected, atol=1e-5)
        assert not torch.allclose(getattr(data, part).X.mean(0), torch.zeros(4), atol=1e-3)
    assert data.preprocessing["x_scale"] == "standard"
    assert np.allclose(data.preprocessing["x_mean"], mean.numpy())
    # the recorded transform reproduces the prepared rows from raw ones
    assert torch.allclose(apply_preprocessing(raw.test.X.numpy(), data.preprocessing), data.test.X, atol=1e-5)
    json.dumps(data.preprocessing)


def test_minmax_none_and_constant_columns():
    X, y = blobs(300)
    X[:, 2] = 5.0
    data = load_data((X, y), scale="minmax")
    assert data.train.X.min() == 0 and data.train.X.max() == 1 and (data.train.X[:, 2] == 0).all()
    std = load_data((X, y), scale="standard")
    assert torch.isfinite(std.train.X).all() and (std.train.X[:, 2] == 0).all()
    none = load_data((X, y), scale="none")
    assert none.preprocessing["x_scale"] == "none" and (none.train.X[:, 2] == 5).all()
    with pytest.raises(DataError, match="unknown scale 'std'.*choices: auto, standard, channel, minmax, none"):
        load_data((X, y), scale="std")


def test_regression_target_is_standardized_and_recorded():
    data = load_data("diabetes")
    mean, std = data.target_scale
    assert abs(data.train.y.mean().item()) < 1e-5 and abs(data.train.y.std(unbiased=False).item() - 1) < 1e-4
    assert 140 < mean[0] < 165 and 70 < std[0] < 85
    assert data.preprocessing["y_mean"] == mean
    raw = load_data("diabetes", scale="none")
    assert raw.target_scale is None and raw.train.y.max() > 300
    assert torch.allclose(data.test.y * std[0] + mean[0], raw.test.y, atol=1e-3)
    assert load_data("diabetes", scale="minmax").target_scale is None


# --- arrays and validation ----------------------------------------------------------------------------------

def test_arrays_from_tensors_lists_and_images():
    X, y = blobs(100, k=2)
    from_tensors = load_data((torch.tensor(X), torch.tensor(y)))
    from_lists = load_data((X.tolist(), y.tolist()))
    assert from_tensors.source == from_lists.source == "arrays" and from_tensors.name == "arrays"
    assert torch.equal(from_tensors.train.X, from_lists.train.X)
    images = np.random.default_rng(0).integers(0, 255, size=(100, 6, 5)).astype(np.uint8)
    data = load_data((images, y))
    assert data.input_shape == (1, 6, 5) and data.n_features == 30
    assert data.preprocessing["x_scale"] == "channel" and len(data.preprocessing["x_mean"]) == 1  # uint8 images
    assert load_data((images.astype(np.float32), y)).preprocessing["x_scale"] == "standard"
    assert load_data((images.reshape(100, 2, 3, 5), y)).input_shape == (2, 3, 5)
    single = load_data((np.linspace(0, 1, 100), np.linspace(0, 1, 100) * 3.3))
    assert single.n_features == 1 and single.task == "regression" and single.train.y.dim() == 1
    multi = load_data((X, X[:, :3] * 1.5))
    assert multi.n_outputs == 3 and multi.train.y.shape[1] == 3 and len(multi.target_scale[0]) == 3


def test_string_labels_round_trip_class_names():
    X, _ = blobs(90)
    labels = np.array(["b", "a", "c"] * 30)
    data = load_data((X, labels), seed=0)
    assert data.class_names == ["a", "b", "c"] and data.n_outputs == 3
    names = [data.class_names[i] for i in data.train.y.tolist()]
    assert set(names) == {"a", "b", "c"}


def test_data_passes_through():
    data = load_data("iris")
    assert load_data(data) is data
    assert isinstance(data.train, Split) and isinstance(data, Data)


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((0, 3)), np.zeros(0), "no rows"),
    (np.ones((10, 3)), np.zeros(9), "X has 10 rows but y has 9"),
    (np.array([["a", "b"]] * 10), np.arange(10), "X must be numeric"),
    (np.array([[1, None]] * 10, dtype=object), np.arange(10), "X must be numeric"),
])
def test_invalid_arrays(X, y, message):
    with pytest.raises(DataError, match=message):
        load_data((X, y))


def test_nan_in_features_names_column_count_and_row():
    X, y = blobs(50)
    X[[4, 9], 2] = np.nan
    X[7, 3] = np.inf
    with pytest.raises(DataError, match=r"column 'x2' has 2 missing or non-finite .*first at row 5\).*1 more "
                                        r"columns; 3 values.*fill them or drop those rows"):
        load_data((X, y))
    with pytest.raises(DataError, match="target 'y' has 1 missing"):
        load_data((blobs(50)[0], np.r_[np.arange(49) * 0.5, np.nan]))


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'digts'; did you mean 'digits'\? choices: digits, iris"
                                        r".*\(or give a path to a \.csv, \.npz, \.parquet file or an IDX directory\)"):
        load_data("digts")
    with pytest.raises(DataError, match=r"unknown dataset 'zzz'; choices"):
        load_data("zzz")
    with pytest.raises(DataError, match=r"file not found: data/train.csv; check the data= path"):
        load_data("data/train.csv")
    with pytest.raises(DataError, match=r"file not found: .*nothing.npz"):
        load_data(tmp_path / "nothing.npz")
    with pytest.raises(DataError, match=r"^data= must be a dataset name, a path, .*; got 3$"):
        load_data(3)
    with pytest.raises(DataError, match="target= applies to .csv"):
        load_data("iris", target="species")


def test_too_few_rows_to_split():
    with pytest.raises(DataError, match=r"too few rows \(1\) to hold out a val split.*val_fraction="):
        load_data((np.arange(4.0).reshape(2, 2), np.array([0.5, 1.5])))
    tiny = load_data((np.arange(4.0).reshape(2, 2), np.array([0.5, 1.5])), val_fraction=0)
    assert (len(tiny.train), len(tiny.val), len(tiny.test)) == (1, 0, 1)


def test_float_images_are_standardized_per_channel(tmp_path):
    """(n, C, H, W) float images: one mean and std per channel over every position of the train rows (what image
    pipelines do), applied the same way to new rows; signals and flat rows keep per-feature statistics."""
    rng = np.random.default_rng(0)
    shift, spread = np.array([5.0, 0.0, -5.0]), np.array([1.0, 2.0, 3.0])
    X = (rng.normal(size=(200, 3, 4, 4)) * spread[None, :, None, None] + shift[None, :, None, None]).astype(np.float32)
    y = rng.integers(0, 2, 200)
    data = load_data((X, y))
    p = data.preprocessing
    assert p["x_scale"] == "channel" and len(p["x_mean"]) == 3 and len(p["x_std"]) == 3
    by_channel = data.train.X.numpy().reshape(-1, 3, 16)
    assert np.allclose(by_channel.mean(axis=(0, 2)), 0, atol=1e-5) and np.allclose(by_channel.std(axis=(0, 2)), 1,
                                                                                       atol=1e-4)
    assert np.allclose(p["x_mean"], shift, atol=0.3) and np.allclose(p["x_std"], spread, rtol=0.1)
    expected = (X[:7] - np.float32(p["x_mean"])[None, :, None, None]) / np.float32(p["x_std"])[None, :, None, None]
    assert torch.allclose(apply_preprocessing(X[:7], p), torch.from_numpy(expected.reshape(7, -1)), atol=1e-5)
    json.dumps(p)
    np.save(tmp_path / "X.npy", X)  # memory-mapped: the same statistics, fitted in chunks
    np.save(tmp_path / "y.npy", y)
    mapped = load_data((str(tmp_path / "X.npy"), str(tmp_path / "y.npy"))).preprocessing
    assert mapped["x_scale"] == "channel" and np.allclose(mapped["x_mean"], p["x_mean"], atol=1e-9)
    assert np.allclose(mapped["x_std"], p["x_std"], rtol=1e-6)
    assert load_data((X, y), scale="standard").preprocessing["x_scale"] == "standard"
    assert load_data((X[:, 0], y)).preprocessing["x_scale"] == "standard"  # (n, A, B): maybe signals
    assert len(load_data((X[:, 0], y), scale="channel").preprocessing["x_mean"]) == 1
    with pytest.raises(DataError, match=r"scale='channel' standardizes each channel of images"):
        load_data((X.reshape(200, -1), y), scale="channel")
    with pytest.raises(DataError, match="do not split into the 3 channels"):
        apply_preprocessing(X.reshape(200, -1)[:, :47], {**p, "n_features": 47})
