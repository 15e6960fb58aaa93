"""Permutation importance: per raw column of a table (a one-hot group permuted as one), scikit-learn's numbers
for single columns, the known answer on real data, the run directory's importance.json, evaluate --importance.

The table is palmerpenguins plus two columns of pure noise (a number and a four-level text column). The species
of a penguin is told apart by its bill length (Adelie against Chinstrap, which share islands and body size) and
its island; the noise columns cannot help on rows the model never trained on.
"""

import json

import numpy as np
import palmerpenguins
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import load_diabetes, load_wine
from sklearn.inspection import permutation_importance as sklearn_importance
from use_helpers import cli

import nnopt
from nnopt.data import column_groups, encode_table
from nnopt.errors import UsageError
from nnopt.inference import load_predictor, permutation_importance
from nnopt.train import compute_metrics, training_targets
from nnopt.train._importance import permutations

NOISE = ("noise_num", "noise_text")


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory):
    table = palmerpenguins.load_penguins()
    rng = np.random.default_rng(7)
    table["noise_num"] = rng.normal(size=len(table))
    table["noise_text"] = rng.choice(list("abcd"), size=len(table))
    path = tmp_path_factory.mktemp("data") / "penguins.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def penguins_run(penguins_csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "penguins"
    code, _, err = cli("train", "--data", penguins_csv, "--target", "species", "--epochs", "20", "--val-fraction",
                       "0.3", "--out", run, "--json")
    assert code == 0, err
    return run


def _one_line(run_cli, *args):
    code, stdout, err = run_cli(*args)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_train_run_ranks_the_informative_column_first_and_noise_near_zero(penguins_run):
    saved = json.loads((penguins_run / "importance.json").read_text())
    config = json.loads((penguins_run / "config.json").read_text())
    kept = [c["column"] for c in config["data_info"]["columns"] if c["type"] in ("numeric", "categorical")]
    assert saved["split"] == "val" and saved["rows"] == config["data_info"]["n_val"] == 103
    assert saved["metric"] == "accuracy" and saved["repeats"] == 5
    summary = json.loads((penguins_run / "summary.json").read_text())
    assert saved["baseline"] == pytest.approx(summary["metrics"]["val"]["accuracy"])
    columns = {e["column"]: e for e in saved["columns"]}
    assert sorted(columns) == sorted(kept) and len(kept) == 9  # one entry per raw column, none per level
    means = [e["importance_mean"] for e in saved["columns"]]
    assert means == sorted(means, reverse=True)
    ranked = [e["column"] for e in saved["columns"]]
    assert "bill_length_mm" in ranked[:2], ranked
    bill = columns["bill_length_mm"]
    assert bill["importance_mean"] > 0.1 and bill["importance_mean"] > 4 * bill["importance_std"]
    for name in NOISE:
        mean, std = columns[name]["importance_mean"], columns[name]["importance_std"]
        assert abs(mean) < 0.01 or abs(mean) < 2 * std, (name, mean, std)


def test_a_one_hot_group_is_permuted_as_one_raw_column(penguins_run, penguins_csv):
    """Shuffling the raw island column and encoding it again gives exactly the group's importance."""
    predictor = load_predictor(penguins_run)
    rows = predictor.rows(penguins_csv)
    groups = column_groups(predictor.table)
    assert len(groups["island"]) == 3 and predictor.n_features > len(groups) == 9
    result = {e["column"]: e for e in permutation_importance(predictor, rows, max_rows=None)}
    assert len(result) == 9

    def accuracy(columns):
        X, _ = encode_table(columns, predictor.table)
        Y = training_targets(_labels(predictor, rows.y), "classification", predictor.n_outputs)
        return compute_metrics("classification", predictor.outputs(predictor.inputs(X)), Y, 0.0, ["accuracy"])[
            "accuracy"]

    baseline = accuracy(rows.columns)
    drops = [baseline - accuracy({**rows.columns, "island": rows.columns["island"][order]})
             for order in permutations(len(rows.X), 5, 0)]
    assert result["island"]["baseline"] == baseline
    assert result["island"]["importance_mean"] == pytest.approx(np.mean(drops), abs=1e-12)
    assert result["island"]["importance_std"] == pytest.approx(np.std(drops), abs=1e-12)
    assert result["island"]["importance_mean"] > 0.05


def _labels(predictor, y):
    import torch

    return torch.from_numpy(predictor.label_codes(y, None))


class _Estimator(BaseEstimator):
    """A trained nnopt model as scikit-learn's permutation_importance takes an estimator."""

    def __init__(self, predictor):
        self.predictor = predictor

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.predictor.decode(self.predictor.outputs(self.predictor.inputs(X)))[0]


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_single_columns_give_scikit_learns_numbers(name, tmp_path):
    loader, scoring = {"wine": (load_wine, "accuracy"), "diabetes": (load_diabetes, "r2")}[name]
    X, y = loader(return_X_y=True)
    nnopt.fit("mlp:16", (X, y), epochs=5, out=tmp_path / "run")
    predictor = load_predictor(tmp_path / "run")
    ours = permutation_importance(predictor, X, y, repeats=4, seed=3)
    reference = sklearn_importance(_Estimator(predictor), X, y, scoring=scoring, n_repeats=4, random_state=3)
    names = predictor.feature_names or [f"x{i}" for i in range(X.shape[1])]
    by_name = {e["column"]: e for e in ours}
    assert len(ours) == X.shape[1] and all(e["metric"] == scoring for e in ours)
    tolerance = 0 if scoring == "accuracy" else 1e-6  # R² from float32 targets against float64 ones
    np.testing.assert_allclose([by_name[n]["importance_mean"] for n in names], reference.importances_mean,
                               rtol=0, atol=tolerance)
    np.testing.assert_allclose([by_name[n]["importance_std"] for n in names], reference.importances_std,
                               rtol=0, atol=tolerance)
    assert np.ptp(reference.importances_mean) > 0.01  # the columns differ: the comparison is not of zeros


def test_same_seed_same_numbers_and_the_loss_as_metric(penguins_run, penguins_csv):
    predictor = load_predictor(penguins_run)
    rows = predictor.rows(penguins_csv)
    first = permutation_importance(predictor, rows, seed=4)
    assert permutation_importance(penguins_run, rows, seed=4) == first
    other = permutation_importance(predictor, rows, seed=5)
    assert [e["importance_mean"] for e in other] != [e["importance_mean"] for e in first]
    loss = {e["column"]: e for e in permutation_importance(predictor, penguins_csv, metric="loss", repeats=3)}
    assert loss["bill_length_mm"]["metric"] == "loss" and loss["bill_length_mm"]["importance_mean"] > 0.1
    # a sample of rows: scored on that many, the same sample for every column
    sampled = permutation_importance(predictor, rows, max_rows=50)
    assert len(sampled) == 9 and sampled != first


def test_evaluate_importance_on_the_val_rows_matches_training(run_cli, penguins_run, tmp_path):
    code, stdout, err = run_cli("evaluate", penguins_run, "--importance", "--out", tmp_path / "ev")
    assert code == 0, err
    assert "103 val rows" in stdout and "Permutation importance" in stdout
    assert "bill_length_mm" in stdout and "noise_text" in stdout and " ± " in stdout
    saved = json.loads((tmp_path / "ev" / "importance.json").read_text())
    trained = json.loads((penguins_run / "importance.json").read_text())
    assert saved == trained  # the same rows, permutations and model: the same numbers
    code, stdout, err = run_cli("evaluate", penguins_run, "--importance", "--repeats", "3", "--split", "all",
                                "--out", tmp_path / "ev2", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["split"] == "all" and summary["rows"] == 344
    assert [e["column"] for e in summary["importance"]] == \
        [e["column"] for e in json.loads((tmp_path / "ev2" / "importance.json").read_text())["columns"]]
    assert len(summary["importance"]) == 9
    code, stdout, _ = run_cli("evaluate", penguins_run, "--out", tmp_path / "ev3", "--json")
    assert code == 0 and json.loads(stdout)["importance"] is None and json.loads(stdout)["split"] == "all"
    assert not (tmp_path / "ev3" / "importance.json").exists()


def test_bad_repeats_and_metric(run_cli, penguins_run, tmp_path):
    assert _one_line(run_cli, "evaluate", penguins_run, "--importance", "--repeats", "0", "--out",
                     tmp_path / "ev") == "error: --repeats must be an integer >= 1; got 0\n"
    assert "--repeats: invalid int value: 'two'" in _one_line(run_cli, "evaluate", penguins_run, "--importance",
                                                              "--repeats", "two", "--out", tmp_path / "ev")
    assert "add --importance" in _one_line(run_cli, "evaluate", penguins_run, "--repeats", "3")
    assert not (tmp_path / "ev").exists()
    with pytest.raises(UsageError, match=r"^repeats= must be an integer >= 1; got 0$"):
        nnopt.evaluate(penguins_run, importance=True, repeats=0)
    with pytest.raises(UsageError, match=r"^repeats= must be an integer >= 1; got 2.5$"):
        permutation_importance(penguins_run, np.zeros((2, 2)), [0, 1], repeats=2.5)
    with pytest.raises(UsageError, match=r"^metric= 'acuracy' is not a classification metric; did you mean "):
        permutation_importance(penguins_run, np.zeros((2, 2)), [0, 1], metric="acuracy")
    with pytest.raises(UsageError, match=r"^importance= must be True or False"):
        nnopt.evaluate(penguins_run, importance="yes")


def test_images_are_refused(run_cli, tmp_path):
    code, _, err = cli("train", "--data", "digits", "--model", "mlp:8", "--epochs", "1", "--out", tmp_path / "run",
                       "--json")
    assert code == 0, err
    assert not (tmp_path / "run" / "importance.json").exists()  # not a table: nothing at the end of training
    err = _one_line(run_cli, "evaluate", tmp_path / "run", "--importance", "--out", tmp_path / "ev")
    assert "per table column, and this model reads images (1x8x8)" in err
    assert not (tmp_path / "ev").exists()
