"""train -> predict / evaluate through the CLI: label names come back, the test split is re-created exactly,
columns are matched by name, regression comes back in the target's units."""

import json

import numpy as np
import pytest
from gpu import same_metrics
from use_helpers import COLUMNS, cli, read_csv, write_iris

import nnopt
from nnopt.data import split_positions


def _test_rows(species):
    """The training run's test rows (seed 0, fractions 0.15), chosen as load_data chooses them."""
    _, codes = np.unique(species, return_inverse=True)
    return split_positions(len(species), codes, False, 0.15, 0.15, 0)[2]


def test_predict_gives_label_names_in_input_order(run_cli, iris_csv, iris_run, iris_summary, tmp_path):
    out = tmp_path / "predictions.csv"
    code, stdout, err = run_cli("predict", iris_run, "--data", iris_csv, "--out", out)
    assert code == 0 and err == "" and "150 predictions" in stdout
    predicted = [row["prediction"] for row in read_csv(out)]
    truth = [row["species"] for row in read_csv(iris_csv)]
    assert len(predicted) == 150 and set(predicted) <= {"setosa", "versicolor", "virginica"}
    test = _test_rows(np.array(truth))
    accuracy = np.mean([predicted[i] == truth[i] for i in test])
    assert accuracy == iris_summary["metrics"]["test"]["accuracy"]


def test_probabilities_are_extra_columns_that_sum_to_one(run_cli, iris_csv, iris_run, tmp_path):
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", iris_run, "--data", iris_csv, "--out", out, "--proba")
    assert code == 0, err
    rows = read_csv(out)
    names = ["setosa", "versicolor", "virginica"]
    assert list(rows[0]) == ["prediction"] + [f"proba_{n}" for n in names]
    for row in rows:
        p = [float(row[f"proba_{n}"]) for n in names]
        assert abs(sum(p) - 1) < 1e-4 and row["prediction"] == names[int(np.argmax(p))]


def test_out_dash_writes_the_csv_to_stdout_and_the_notes_to_stderr(run_cli, iris_csv, iris_run, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli("predict", iris_run, "--data", iris_csv, "--out", "-", "--proba")
    assert code == 0 and "150 predictions" in err and "standard output" in err
    assert list(tmp_path.iterdir()) == []  # no file named '-'
    lines = stdout.splitlines()
    assert lines[0] == "prediction,proba_setosa,proba_versicolor,proba_virginica" and len(lines) == 151
    written = tmp_path / "p.csv"
    assert run_cli("predict", iris_run, "--data", iris_csv, "--out", written, "--proba")[0] == 0
    assert written.read_text() == stdout  # the same CSV as --out FILE writes


def test_evaluate_test_split_equals_training_metrics(run_cli, iris_csv, iris_run, iris_summary, tmp_path):
    code, stdout, err = run_cli("evaluate", iris_run, "--data", iris_csv, "--split", "test", "--json",
                                "--out", tmp_path / "ev")
    assert code == 0 and err == ""
    result = json.loads(stdout)
    assert same_metrics(result["metrics"], iris_summary["metrics"]["test"])  # same rows, scaling, loss
    assert result["rows"] == 22 and (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 1000
    assert sum(map(sum, result["confusion"])) == 22
    code, stdout, _ = run_cli("evaluate", iris_run, "--split", "val", "--json", "--out", tmp_path / "val")
    # the data comes from config.json
    assert code == 0 and same_metrics(json.loads(stdout)["metrics"], iris_summary["metrics"]["val"])
    code, stdout, _ = run_cli("evaluate", iris_run, "--data", iris_csv, "--out", tmp_path / "all")
    assert code == 0 and "150 rows of" in stdout and "accuracy" in stdout


def test_shuffled_columns_are_matched_by_name(run_cli, iris_csv, iris_run, iris_summary, tmp_path):
    shuffled = write_iris(tmp_path / "shuffled.csv", columns=["petal_width", "species", "sepal_length",
                                                               "petal_length", "sepal_width"])
    outs = []
    for name, source in (("a", iris_csv), ("b", shuffled)):
        code, _, err = run_cli("predict", iris_run, "--data", source, "--out", tmp_path / f"{name}.csv", "--proba")
        assert code == 0, err
        outs.append(read_csv(tmp_path / f"{name}.csv"))
    assert outs[0] == outs[1]
    code, stdout, _ = run_cli("evaluate", iris_run, "--data", shuffled, "--split", "test", "--json",
                              "--out", tmp_path / "ev")
    assert code == 0 and same_metrics(json.loads(stdout)["metrics"], iris_summary["metrics"]["test"])


def test_unlabelled_rows_predict(run_cli, iris_csv, iris_run, tmp_path):
    rows = read_csv(iris_csv)
    unlabelled = write_iris(tmp_path / "new.csv", columns=COLUMNS[:4], rows=rows)
    code, _, err = run_cli("predict", iris_run, "--data", unlabelled, "--out", tmp_path / "p.csv")
    assert code == 0, err
    code, _, err = run_cli("predict", iris_run, "--data", iris_csv, "--out", tmp_path / "q.csv")
    assert read_csv(tmp_path / "p.csv") == read_csv(tmp_path / "q.csv")


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "diabetes"
    code, _, err = cli("train", "--data", "diabetes", "--model", "mlp:16", "--epochs", "5", "--out", run, "--json")
    assert code == 0, err
    return run


def test_regression_predictions_are_in_target_units(run_cli, diabetes_run, tmp_path):
    summary = json.loads((diabetes_run / "summary.json").read_text())
    code, stdout, _ = run_cli("evaluate", diabetes_run, "--split", "test", "--json", "--out", tmp_path / "ev")
    assert code == 0 and same_metrics(json.loads(stdout)["metrics"], summary["metrics"]["test"])
    assert (tmp_path / "ev" / "residuals.png").is_file()
    code, _, err = run_cli("predict", diabetes_run, "--data", "diabetes", "--out", tmp_path / "p.csv")
    assert code == 0, err
    predicted = np.array([float(r["prediction"]) for r in read_csv(tmp_path / "p.csv")])
    from sklearn.datasets import load_diabetes

    truth = load_diabetes().target
    assert len(predicted) == len(truth) and 50 < predicted.mean() < 300  # disease progression units, not z-scores
    result = nnopt.predict(diabetes_run, "diabetes")
    np.testing.assert_allclose(result.predictions, predicted, rtol=1e-12)
