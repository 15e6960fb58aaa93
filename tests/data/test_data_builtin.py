import json
import random

import numpy as np
import pytest
import torch

from nnopt.data import DATASETS, Data, list_datasets, load_data
from nnopt.data._builtin import _generate_mnist1d, _mnist1d_arrays

EXPECTED = {  # name: (task, input_shape)
    "digits": ("classification", (1, 8, 8)),
    "iris": ("classification", None),
    "wine": ("classification", None),
    "breast_cancer": ("classification", None),
    "diabetes": ("regression", None),
    "mnist1d": ("classification", (1, 40)),
    "moons": ("classification", None),
    "circles": ("classification", None),
    "blobs": ("classification", None),
    "linear": ("regression", None),
}


@pytest.fixture(scope="module")
def loaded():
    """Every built-in loaded once (mnist1d is generated once per process: lru_cache)."""
    return {name: load_data(name) for name in DATASETS.names()}


def test_registry_lists_every_expected_dataset():
    assert DATASETS.names() == list(EXPECTED)
    assert [row["name"] for row in list_datasets()] == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_loads_with_listed_numbers(name, loaded):
    data = loaded[name]
    row = next(r for r in list_datasets() if r["name"] == name)
    task, input_shape = EXPECTED[name]
    assert isinstance(data, Data) and data.source == "builtin" and data.name == name
    assert data.task == task == row["task"]
    assert data.input_shape == input_shape
    assert len(data.train) + len(data.val) + len(data.test) == row["n_samples"]
    assert data.n_features == row["n_features"] == data.train.X.shape[1] == len(data.feature_names)
    assert data.n_classes == row["n_classes"]
    for split in (data.train, data.val, data.test):
        assert split.X.dtype == torch.float32 and split.X.dim() == 2 and split.X.is_contiguous()
        assert split.X.shape[1] == data.n_features and len(split.y) == len(split)
        assert torch.isfinite(split.X).all()
    if task == "classification":
        assert data.train.y.dtype == torch.int64
        assert set(data.train.y.unique().tolist()) == set(range(data.n_classes))
        assert len(data.class_names) == data.n_classes
        assert data.n_outputs == (1 if data.n_classes == 2 else data.n_classes)
        assert data.target_scale is None
    else:
        assert data.train.y.dtype == torch.float32 and data.n_outputs == 1
        assert data.target_scale is not None and data.class_names is None
    if input_shape is not None:
        assert int(np.prod(input_shape)) == data.n_features
    json.dumps(data.describe())
    json.dumps(data.preprocessing)
    assert data.describe()["n_train"] == len(data.train)


def test_listing_does_not_generate_mnist1d():
    before = _mnist1d_arrays.cache_info()
    rows = list_datasets()
    assert _mnist1d_arrays.cache_info() == before
    assert {"name", "task", "n_samples", "n_features", "n_classes", "summary"} == set(rows[0])
    json.dumps(rows)


def test_mnist1d_is_generated_locally_without_touching_global_rng(monkeypatch):
    import mnist1d.data

    def fake_make_dataset(args):  # the real one reseeds the global generators, like this
        assert args.num_samples == 5000 and args.final_seq_length == 40
        np.random.seed(args.seed)
        random.seed(args.seed)
        return {"x": np.zeros((2, 40))}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    monkeypatch.setattr(mnist1d.data, "get_dataset", lambda *a, **k: pytest.fail("must not download"))
    np.random.seed(123)
    random.seed(123)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    assert _generate_mnist1d()["x"].shape == (2, 40)
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py


def test_mnist1d_keeps_its_own_test_split(loaded):
    data = load_data("mnist1d", seed=5)
    assert len(data.test) == 1000 and len(data.train) + len(data.val) == 4000
    assert len(data.val) == 600  # val_fraction of the given train part
    assert torch.equal(data.test.y, loaded["mnist1d"].test.y)  # the given test split ignores the split seed
    assert not torch.equal(data.train.y, loaded["mnist1d"].train.y)


def test_digits_pixels_are_divided_by_16(loaded):
    data = loaded["digits"]
    assert data.preprocessing["x_scale"] == "pixel" and data.preprocessing["x_divisor"] == 16.0
    assert data.train.X.min() >= 0 and data.train.X.max() <= 1 and data.train.X.max() == 1
    assert data.class_names == [str(k) for k in range(10)]


def test_class_names_from_sklearn(loaded):
    assert loaded["iris"].class_names == ["setosa", "versicolor", "virginica"]
    assert loaded["breast_cancer"].class_names == ["malignant", "benign"]


def test_synthetic_data_do_not_change_with_split_seed():
    a, b = load_data("moons", seed=0, scale="none"), load_data("moons", seed=1, scale="none")
    rows = lambda d: sorted(map(tuple, torch.cat([d.train.X, d.val.X, d.test.X]).tolist()))  # noqa: E731
    assert rows(a) == rows(b)


def test_linear_recovers_slope_3_and_intercept_2_by_gradient_descent():
    data = load_data("linear", scale="none")
    assert data.target_scale is None
    X, y = data.train.X, data.train.y
    w, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.3)
    for _ in range(300):
        opt.zero_grad()
        loss = ((X[:, 0] * w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert abs(w.item() - 3.0) < 0.02 and abs(b.item() - 2.0) < 0.02
    assert 0.005 < loss.item() < 0.02  # noise variance 0.1^2


def test_mnist1d_is_cached_on_disk_and_read_back_identically(tmp_path, monkeypatch):
    from nnopt.data import _builtin

    monkeypatch.setenv("NNOPT_CACHE_DIR", str(tmp_path))
    _builtin._mnist1d_arrays.cache_clear()
    try:
        generated = _builtin._mnist1d_arrays()
        files = list(tmp_path.glob("mnist1d-*.npz"))
        assert len(files) == 1
        _builtin._mnist1d_arrays.cache_clear()
        cached = _builtin._mnist1d_arrays()
        assert all(np.array_equal(a, b) for a, b in zip(generated, cached))
        files[0].write_bytes(b"broken")  # a damaged cache is regenerated, not an error
        _builtin._mnist1d_arrays.cache_clear()
        again = _builtin._mnist1d_arrays()
        assert all(np.array_equal(a, b) for a, b in zip(generated, again))
    finally:
        _builtin._mnist1d_arrays.cache_clear()
