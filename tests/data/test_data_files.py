import numpy as np
import pytest
import torch

from nnopt.data import load_data
from nnopt.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def table(n=60, label=lambda i: i % 3):
    rows = ["a,b,c,label"] + [f"{i * 0.5},{(i * 7) % 11},{i % 4},{label(i)}" for i in range(n)]
    return "\n".join(rows) + "\n"


def test_csv_default_target_is_last_column(tmp_path):
    data = load_data(write(tmp_path / "t.csv", table()))
    assert data.source == "csv" and data.task == "classification" and data.n_classes == 3
    assert data.feature_names == ["a", "b", "c"] and data.preprocessing["target"] == "label"
    assert data.class_names == ["0", "1", "2"] and data.name == str(tmp_path / "t.csv")
    assert len(data.train) + len(data.val) + len(data.test) == 60


def test_csv_target_option_and_string_labels_round_trip(tmp_path):
    species = ["setosa", "virginica", "versicolor"]
    text = "kind,x,y\n" + "".join(f"{species[i % 3]},{i},{i % 5 + 0.5}\n" for i in range(45))
    path = write(tmp_path / "s.csv", text)
    data = load_data(path, target="kind", scale="none")
    assert data.class_names == sorted(species) and data.feature_names == ["x", "y"]
    for split in (data.train, data.test):
        for row, label in zip(split.X.tolist(), split.y.tolist()):
            assert data.class_names[label] == species[int(row[0]) % 3]
    # the text column is a feature when another column is the target: one-hot encoded, one column per level
    as_feature = load_data(path, target="y")
    assert as_feature.feature_names == ["kind=setosa", "kind=versicolor", "kind=virginica", "x"]
    with pytest.raises(DataError, match=r"column 'kind' is given to numeric= but holds text \(row 1: 'setosa'\)"):
        load_data(path, target="y", numeric=["kind"])


def test_csv_numeric_target_by_name_is_regression(tmp_path):
    text = "x,y,z\n" + "".join(f"{i},{i * 0.37 + 1},{i % 2}\n" for i in range(50))
    data = load_data(write(tmp_path / "r.csv", text), target="y")
    assert data.task == "regression" and data.feature_names == ["x", "z"] and data.target_scale is not None


def test_csv_quoted_fields_bom_and_blank_lines(tmp_path):
    text = '\ufeff"a","b","label"\n' + "".join(f'"{i}",{i * 2},"{"yes" if i % 2 else "no, really"}"\n\n'
                                                  for i in range(40))
    data = load_data(write(tmp_path / "q.csv", text))
    assert data.feature_names == ["a", "b"] and data.class_names == ["no, really", "yes"]
    assert len(data.train) + len(data.val) + len(data.test) == 40


@pytest.mark.parametrize("text, kwargs, message", [
    ("", {}, "no rows in .*empty"),
    ("a,b,label\n", {}, "no rows in .*only a header"),
    ("color,b,label\n1,2,0\nred,3,1\n", {"numeric": "color"}, r"column 'color' is given to numeric= but holds "
                                                               r"text in 1 of 2 cells \(row 2: 'red'\)"),
    ("a,b,label\n1,nan,0\n2,inf,1\n", {}, r"column 'b' has 1 infinite values \(first at row 2\); replace them"),
    ("a,b,label\n1,2,0\n2,3\n", {}, r"row 2 has 2 fields but the header has 3"),
    ("a,b,label\n1,2,\n2,3,\n", {}, r"target column 'label' has no values \(all 2 cells are missing\)"),
    ("a,b,label\n1,2,0\n", {"target": "labl"}, r"target='labl' is not a column.*did you mean 'label'\? "
                                                 r"columns: a, b, label"),
    ("label\n1\n2\n", {}, r"need at least one feature and a target"),
])
def test_csv_errors(tmp_path, text, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_data(write(tmp_path / "bad.csv", text), **kwargs)


def test_npz_x_y_layout(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 5)), np.arange(100) % 2
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = load_data(tmp_path / "d.npz")
    assert data.source == "npz" and data.task == "classification" and data.n_features == 5
    assert (len(data.train), len(data.val), len(data.test)) == (70, 15, 15)


def test_npz_train_test_layout_keeps_given_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(200, 3)), rng.normal(size=(50, 3)) + 100
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.arange(200) % 4, x_test=x_test,
             y_test=np.arange(50) % 4)
    data = load_data(tmp_path / "d.npz", scale="none", val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (160, 40, 50)
    assert torch.allclose(data.test.X, torch.tensor(x_test, dtype=torch.float32))
    assert data.train.X.max() < 50  # val carved from train only
    np.savez(tmp_path / "t.npz", x_train=x_train, y_train=np.arange(200) % 4)
    assert len(load_data(tmp_path / "t.npz").train) == 140


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "k.npz", data=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match=r"has keys \['data', 'labels'\]; expected 'X' and 'y', or 'x_train'"):
        load_data(tmp_path / "k.npz")
    np.savez(tmp_path / "h.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(3), x_test=np.zeros((1, 2)))
    with pytest.raises(DataError, match="only one of 'x_test' / 'y_test'"):
        load_data(tmp_path / "h.npz")
    np.savez(tmp_path / "o.npz", X=np.array([[1, "a"]], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match="cannot read .*o.npz"):
        load_data(tmp_path / "o.npz")
    write(tmp_path / "fake.npz", "not a zip")
    with pytest.raises(DataError, match="is not a .npz archive"):
        load_data(tmp_path / "fake.npz")
    with pytest.raises(DataError, match="target= applies to .csv and .parquet"):
        np.savez(tmp_path / "ok.npz", X=np.zeros((30, 2)), y=np.arange(30) % 2)
        load_data(tmp_path / "ok.npz", target="y")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails even where pyarrow is installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    write(tmp_path / "t.parquet", "PAR1")
    with pytest.raises(DataError, match=r"reading \.parquet files needs pyarrow: pip install pyarrow"):
        load_data(tmp_path / "t.parquet")


def test_parquet_read_path(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 60
    pq.write_table(pa.table({"a": np.arange(n) * 0.5, "b": np.arange(n) % 7,
                             "kind": [["x", "y"][i % 2] for i in range(n)]}), tmp_path / "t.parquet")
    data = load_data(tmp_path / "t.parquet")
    assert data.source == "parquet" and data.class_names == ["x", "y"] and data.feature_names == ["a", "b"]


def test_unknown_extension_lists_supported_kinds(tmp_path):
    with pytest.raises(DataError, match=r"unsupported data file 'd.txt' \(extension '.txt'\); supported: .csv, "
                                        r".tsv, .npz, .parquet, or a directory of MNIST-layout IDX files"):
        load_data(write(tmp_path / "d.txt", "1,2\n"))
