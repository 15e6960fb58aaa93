"""Bad input to evaluate / predict / export: exit 2, one line on stderr naming the problem, nothing written."""

import json

import numpy as np
import pytest
from use_helpers import COLUMNS, read_csv, write_iris


def _one_line(run_cli, *args):
    code, stdout, err = run_cli(*args)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def inputs(iris_csv, tmp_path):
    rows = read_csv(iris_csv)
    unseen = [dict(row) for row in rows]
    unseen[3]["species"] = "daisy"
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"not a model")
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "three.npz", X=np.zeros((5, 3)), y=np.zeros(5))
    return {
        "missing": write_iris(tmp_path / "missing.csv", columns=[c for c in COLUMNS if c != "petal_width"], rows=rows),
        "extra": write_iris(tmp_path / "extra.csv", columns=COLUMNS + ["colour"],
                            rows=[{**row, "colour": 1} for row in rows]),
        "unseen": write_iris(tmp_path / "unseen.csv", rows=unseen),
        "unlabelled": write_iris(tmp_path / "unlabelled.csv", columns=COLUMNS[:4], rows=rows),
        "junk": junk, "three": tmp_path / "three.npz", "empty_dir": tmp_path / "empty",
    }


def test_column_mismatches_name_the_column(run_cli, iris_run, inputs, tmp_path):
    out = tmp_path / "p.csv"
    err = _one_line(run_cli, "predict", iris_run, "--data", inputs["missing"], "--out", out)
    assert "no column 'petal_width'" in err
    assert not out.exists()
    # a column the model does not read is left aside and named in the summary
    code, stdout, err = run_cli("evaluate", iris_run, "--data", inputs["extra"], "--out", tmp_path / "ev", "--json")
    assert code == 0, err
    assert json.loads(stdout)["ignored_columns"] == ["colour"]


def test_wrong_feature_count(run_cli, iris_run, inputs, tmp_path):
    err = _one_line(run_cli, "predict", iris_run, "--data", inputs["three"], "--out", tmp_path / "p.csv")
    assert "3 features per row but the model takes 4 columns (sepal_length, " in err
    err = _one_line(run_cli, "evaluate", iris_run, "--data", "wine", "--out", tmp_path / "ev")
    assert "'wine' has no column 'sepal_length' (and 3 more), a feature the model was trained on" in err


def test_unseen_labels_and_missing_labels(run_cli, iris_run, inputs, tmp_path):
    err = _one_line(run_cli, "evaluate", iris_run, "--data", inputs["unseen"], "--out", tmp_path / "ev")
    assert "never saw: 'daisy' (1 rows)" in err and "setosa" in err
    err = _one_line(run_cli, "evaluate", iris_run, "--data", inputs["unlabelled"], "--out", tmp_path / "ev")
    assert "no labels" in err and "'species'" in err
    assert not (tmp_path / "ev").exists()


def test_not_a_model(run_cli, iris_csv, inputs, tmp_path):
    err = _one_line(run_cli, "predict", inputs["junk"], "--data", iris_csv, "--out", tmp_path / "p.csv")
    assert "not a readable nnopt model" in err
    err = _one_line(run_cli, "export", inputs["empty_dir"], "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert "holds no nnopt model" in err
    err = _one_line(run_cli, "evaluate", tmp_path / "nowhere", "--data", iris_csv)
    assert "model not found" in err


def test_unknown_format_and_split(run_cli, iris_run, iris_csv, tmp_path):
    err = _one_line(run_cli, "export", iris_run, "--format", "onnxx", "--out", tmp_path / "m")
    assert "unknown export format 'onnxx'; did you mean 'onnx'?" in err and "torchscript" in err
    err = _one_line(run_cli, "evaluate", iris_run, "--data", iris_csv, "--split", "tests")
    assert "unknown split 'tests'; did you mean 'test'?" in err
    assert not (tmp_path / "m").exists()


def test_proba_on_a_regressor(run_cli, tmp_path):
    import nnopt

    nnopt.fit("linear", "linear", epochs=1, out=tmp_path / "run")
    err = _one_line(run_cli, "predict", tmp_path / "run", "--data", "linear", "--proba", "--out", tmp_path / "p.csv")
    assert "--proba applies to classifiers" in err


def test_class_indices_evaluate_a_model_of_named_classes_as_its_names_do():
    """A torch Dataset with .classes gives labels as indices; the same labels as an array of 0..K-1 mean those
    classes, where the names are not numbers themselves. A label outside 0..K-1 is still an error."""
    import numpy as np
    from sklearn.datasets import load_iris

    import nnopt

    X, codes = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[codes]
    result = nnopt.fit("mlp:16", (X, names), epochs=5, seed=0)
    by_name = nnopt.evaluate(result, (X, names)).metrics
    assert nnopt.evaluate(result, (X, codes)).metrics == by_name
    with pytest.raises(nnopt.DataError, match=r"labels are whole numbers, read as class indices 0..2 \(setosa, "
                                              r"versicolor, virginica\); 3 is not one \(50 rows\)"):
        nnopt.evaluate(result, (X, np.where(codes == 2, 3, codes)))


@pytest.mark.parametrize("rows", ["x", 0, -1, 2.5, True])
def test_export_check_rows_is_validated(iris_run, tmp_path, rows):
    import nnopt

    with pytest.raises(nnopt.UsageError, match=r"check_rows= must be an integer >= 1; got "):
        nnopt.export(iris_run, "onnx", out=tmp_path / "m.onnx", check_rows=rows)
    assert not (tmp_path / "m.onnx").exists()
